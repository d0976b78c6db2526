//! The prepared stack: packed weights, buffers kept between calls, and the step loop.
//!
//! Per layer and direction: the input projection of all T steps is one product over T·B rows
//! (bias folded in), written into the gate buffer; then per step the recurrent product adds
//! `W_hh h_{t-1}` to that step's gates in place and the fused epilogue turns them into c_t and
//! h_t, written straight into the layer's output (which is the next layer's input). Threads own
//! ranges of hidden units across all four gates, so one fork-join per step suffices (two for
//! the H-LSTM, whose gate hidden layer must be complete before its second layer). Whether a
//! layer's steps are split over threads at all is measured when the plan is built.

use crate::matrix::{FormatChoice, GateMatrix, Tuning};
use crate::parallel::{split_units, unit_align, SharedMut, Team};
use crate::weights::{CellWeights, LayerWeights};
use crate::InferError;
use kernels::packed::Format;
use kernels::rng::CounterRng;
use std::ops::Range;
use std::time::Instant;

/// Weight storage precision of the dense matrices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    /// bf16 weights, widened to f32 in the kernel (activations and accumulation stay f32).
    Bf16,
}

impl std::str::FromStr for Dtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Dtype, String> {
        match s {
            "f32" => Ok(Dtype::F32),
            "bf16" => Ok(Dtype::Bf16),
            _ => Err(format!("unknown dtype `{s}`: expected f32 or bf16")),
        }
    }
}

/// How to build a plan.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    pub dtype: Dtype,
    pub format: FormatChoice,
    /// Most threads one step may use (1 = single-threaded).
    pub threads: usize,
    /// Batch width the plan is tuned for (formats and threading are measured at it).
    pub batch: usize,
    /// Sequence length the plan is tuned for (the input projection's width is seq · batch).
    pub seq: usize,
    /// Threads per recurrent step: `None` measures 1, 2, 4, … up to `threads` per layer and keeps
    /// the fastest; `Some(n)` fixes it.
    pub step_threads: Option<usize>,
    /// With `step_threads` fixed above 1: the threads own batch rows (whole sequences, no
    /// barrier per step; LSTM cells) instead of hidden units. Measured plans choose it themselves.
    pub split_batch: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            dtype: Dtype::F32,
            format: FormatChoice::Fixed(Format::Dense),
            threads: rayon::current_num_threads(),
            batch: 1,
            seq: 35,
            step_threads: None,
            split_batch: false,
        }
    }
}

pub(crate) enum Cell {
    Lstm {
        w_ih: GateMatrix,
        w_hh: GateMatrix,
        bias: Vec<f32>,
    },
    Hlstm {
        m: usize,
        w_ih1: GateMatrix,
        w_hh1: GateMatrix,
        b1: Vec<f32>,
        w2: GateMatrix,
        b2: Vec<f32>,
    },
}

struct Direction {
    cell: Cell,
    reverse: bool,
    /// Threads the step loop is split over (1, 2, 4, … or the plan's threads: whichever measured
    /// fastest).
    parts: usize,
    /// With `parts > 1`: whether the threads own batch rows (whole independent sequences, no
    /// barrier between steps; LSTM cells only) rather than hidden units.
    by_batch: bool,
}

struct Layer {
    input: usize,
    hidden: usize,
    dirs: Vec<Direction>,
}

impl Layer {
    fn output(&self) -> usize {
        self.hidden * self.dirs.len()
    }
}

/// Recurrent state of a stack: h and c per layer (unidirectional stacks only), (B, H) each.
#[derive(Clone, Debug)]
pub struct StackState {
    pub batch: usize,
    pub h: Vec<Vec<f32>>,
    pub c: Vec<Vec<f32>>,
}

/// A prepared LSTM / H-LSTM stack.
pub struct StackPlan {
    layers: Vec<Layer>,
    threads: usize,
    team: std::sync::Arc<Team>,
    // Buffers kept between calls (grown on demand, never shrunk).
    outs: Vec<Vec<f32>>,
    bufs: DirBuffers,
}

/// One row of a matrix description: name, format, non-zeros, bytes.
#[derive(Clone, Debug)]
pub struct MatrixInfo {
    pub name: String,
    pub format: String,
    pub rows: usize,
    pub cols: usize,
    pub nnz: usize,
    pub bytes: usize,
    /// Read at every step (recurrent) rather than once per run (the hoisted input projection).
    pub per_step: bool,
}

impl StackPlan {
    /// Packs the layers. With `FormatChoice::Auto` each gate block is timed in each candidate
    /// format; with more than one thread each direction's step is timed split and unsplit.
    pub fn new(layers: &[LayerWeights], opts: &PlanOptions) -> Result<StackPlan, InferError> {
        if layers.is_empty() {
            return Err(InferError::Config(
                "a stack needs at least one layer".into(),
            ));
        }
        if opts.threads == 0 || opts.batch == 0 || opts.seq == 0 {
            return Err(InferError::Config(
                "plan threads, batch and seq must be > 0".into(),
            ));
        }
        if opts.format == FormatChoice::Fixed(Format::Bf16Amx) && !kernels::packed::amx_available()
        {
            // Without tiles the format runs a scalar stand-in, ~15x slower than bf16-panel.
            return Err(InferError::Config(format!(
                "format bf16-amx needs AMX-BF16 tiles, which the active ISA level ({}) lacks; \
                 use bf16-panel, or --dtype bf16 and let the plan choose",
                kernels::isa::active()
            )));
        }
        if matches!(
            opts.format,
            FormatChoice::Auto | FormatChoice::Fixed(Format::Csr | Format::CsrBf16)
        ) {
            // The CSR kernel's gather mode is measured on first use: do it here, on the caller's
            // thread, not inside a timed product on a busy team.
            kernels::packed::gather_mode(kernels::isa::active());
        }
        let step = Tuning::for_plan(opts, opts.batch);
        let hoisted = Tuning::for_plan(opts, opts.batch * opts.seq);
        let mut out = Vec::new();
        for (l, lw) in layers.iter().enumerate() {
            let (i, h) = (lw.input, lw.hidden);
            if l > 0 && i != layers[l - 1].output() {
                return Err(InferError::Config(format!(
                    "layer {l} input {i} != layer {} output",
                    l - 1
                )));
            }
            let mut dirs = Vec::new();
            for (d, cw) in lw.directions.iter().enumerate() {
                let cell = match cw {
                    CellWeights::Lstm { w_ih, w_hh, bias } => Cell::Lstm {
                        w_ih: GateMatrix::pack(w_ih, h, i, &hoisted)?,
                        w_hh: GateMatrix::pack(w_hh, h, h, &step)?,
                        bias: bias.clone(),
                    },
                    CellWeights::Hlstm {
                        m,
                        w_ih1,
                        w_hh1,
                        b1,
                        w2,
                        b2,
                    } => Cell::Hlstm {
                        m: *m,
                        w_ih1: GateMatrix::pack(w_ih1, *m, i, &hoisted)?,
                        w_hh1: GateMatrix::pack(w_hh1, *m, h, &step)?,
                        b1: b1.clone(),
                        w2: GateMatrix::pack(w2, h, *m, &step)?,
                        b2: b2.clone(),
                    },
                };
                dirs.push(Direction {
                    cell,
                    reverse: d == 1,
                    parts: 1,
                    by_batch: false,
                });
            }
            out.push(Layer {
                input: i,
                hidden: h,
                dirs,
            });
        }
        let mut plan = StackPlan {
            layers: out,
            threads: opts.threads,
            team: std::sync::Arc::new(Team::new(opts.threads)),
            outs: Vec::new(),
            bufs: DirBuffers::default(),
        };
        match opts.step_threads {
            Some(n) => plan
                .layers
                .iter_mut()
                .flat_map(|l| l.dirs.iter_mut())
                .for_each(|d| {
                    d.parts = n.clamp(1, opts.threads);
                    d.by_batch = opts.split_batch && matches!(d.cell, Cell::Lstm { .. });
                }),
            None if opts.threads > 1 => plan.tune_threads(opts.batch),
            None => {}
        }
        Ok(plan)
    }

    /// Runs this plan on `other`'s thread team from now on (its own threads stop): plans run one
    /// after another, as the layers of a model that sums directions between them, then keep one
    /// set of workers on the cores instead of one per plan spinning against the others. Both
    /// plans must have been built for the same number of threads.
    pub fn share_team(&mut self, other: &StackPlan) -> Result<(), InferError> {
        if other.threads != self.threads {
            return Err(InferError::Input(format!(
                "a plan built for {} threads cannot run on a team of {}",
                self.threads, other.threads
            )));
        }
        self.team = other.team.clone();
        Ok(())
    }

    /// Lets the plan's idle worker threads park at once instead of spinning for the next run:
    /// call it when other parallel work (another thread pool) follows on the same cores.
    pub fn rest(&self) {
        self.team.rest();
    }

    /// The plan's thread team (also used for the decoder of a model plan).
    pub(crate) fn team(&self) -> std::sync::Arc<Team> {
        self.team.clone()
    }

    /// Input width of the first layer.
    pub fn input(&self) -> usize {
        self.layers[0].input
    }

    /// Output width of the last layer.
    pub fn output(&self) -> usize {
        self.layers.last().expect("non-empty").output()
    }

    pub fn bidirectional(&self) -> bool {
        self.layers.iter().any(|l| l.dirs.len() > 1)
    }

    /// Multiply-adds of one step of one batch row (all layers, directions and matrices, counting
    /// the stored values: zeros of a dense matrix count, pruned ones of a sparse one do not).
    pub fn macs_per_step(&self) -> usize {
        self.matrices().iter().map(|m| m.nnz).sum()
    }

    /// Bytes of weights one step reads (every matrix once).
    pub fn weight_bytes(&self) -> usize {
        self.matrices().iter().map(|m| m.bytes).sum()
    }

    /// Bytes of weights a run over `t` steps reads: the hoisted input projections once, the
    /// recurrent matrices at every step.
    pub fn bytes_per_run(&self, t: usize) -> usize {
        self.matrices()
            .iter()
            .map(|m| if m.per_step { t * m.bytes } else { m.bytes })
            .sum()
    }

    /// Each matrix of the plan with the format chosen for it.
    pub fn matrices(&self) -> Vec<MatrixInfo> {
        let mut v = Vec::new();
        for (l, layer) in self.layers.iter().enumerate() {
            for (d, dir) in layer.dirs.iter().enumerate() {
                let s = if d == 0 { "" } else { "_reverse" };
                let mats: Vec<(&str, &GateMatrix, bool)> = match &dir.cell {
                    Cell::Lstm { w_ih, w_hh, .. } => {
                        vec![("weight_ih", w_ih, false), ("weight_hh", w_hh, true)]
                    }
                    Cell::Hlstm {
                        w_ih1, w_hh1, w2, ..
                    } => {
                        vec![
                            ("weight_ih1", w_ih1, false),
                            ("weight_hh1", w_hh1, true),
                            ("weight2", w2, true),
                        ]
                    }
                };
                for (name, m, per_step) in mats {
                    v.push(MatrixInfo {
                        name: format!("{name}_l{l}{s}"),
                        format: m.formats(),
                        rows: 4 * m.rows,
                        cols: m.cols,
                        nnz: m.nnz(),
                        bytes: m.bytes(),
                        per_step,
                    });
                }
            }
        }
        v
    }

    /// Threads each layer's steps are split over, per direction.
    pub fn step_threads(&self) -> Vec<usize> {
        self.layers
            .iter()
            .flat_map(|l| l.dirs.iter().map(|d| d.parts))
            .collect()
    }

    /// How each layer's step loop is split, per direction: `serial`, `units` (threads own
    /// hidden units, a barrier per step) or `batch` (threads own batch rows, no barrier).
    pub fn step_split(&self) -> Vec<&'static str> {
        self.layers
            .iter()
            .flat_map(|l| l.dirs.iter())
            .map(|d| match (d.parts, d.by_batch) {
                (1, _) => "serial",
                (_, false) => "units",
                (_, true) => "batch",
            })
            .collect()
    }

    /// A zero state for streaming with batch `b`.
    pub fn zero_state(&self, b: usize) -> StackState {
        StackState {
            batch: b,
            h: self
                .layers
                .iter()
                .map(|l| vec![0.0; b * l.hidden])
                .collect(),
            c: self
                .layers
                .iter()
                .map(|l| vec![0.0; b * l.hidden])
                .collect(),
        }
    }

    /// Runs `x` (T, B, I) through the stack and returns the last layer's output (T, B, out).
    /// With a state the run starts from it and leaves the final state in it (streaming; one
    /// step at a time is `t = 1`); without, it starts from zero. Bidirectional stacks run whole
    /// sequences only.
    pub fn run(
        &mut self,
        x: &[f32],
        t: usize,
        b: usize,
        mut state: Option<&mut StackState>,
    ) -> Result<&[f32], InferError> {
        let i0 = self.input();
        if t == 0 || b == 0 {
            return Err(InferError::Input(
                "empty input: need at least one step and one batch row".into(),
            ));
        }
        if x.len() != t * b * i0 {
            return Err(InferError::Input(format!(
                "input has {} values, expected T x B x I = {t} x {b} x {i0} = {}",
                x.len(),
                t * b * i0
            )));
        }
        if let Some(s) = &state {
            if self.bidirectional() {
                return Err(InferError::Input(
                    "a bidirectional stack reads the whole sequence: it cannot carry a streaming state".into(),
                ));
            }
            if s.batch != b || s.h.len() != self.layers.len() {
                return Err(InferError::Input(format!(
                    "state is for batch {}, input has batch {b}",
                    s.batch
                )));
            }
        }
        let n_layers = self.layers.len();
        self.outs.resize_with(n_layers, Vec::new);
        for l in 0..n_layers {
            let (input, rest) = self.outs.split_at_mut(l);
            let x_l: &[f32] = if l == 0 { x } else { &input[l - 1] };
            let layer = &self.layers[l];
            let out = &mut rest[0];
            out.resize(t * b * layer.output(), 0.0);
            for (d, dir) in layer.dirs.iter().enumerate() {
                let st = state
                    .as_deref_mut()
                    .map(|s| (&mut s.h[l][..], &mut s.c[l][..]));
                run_direction(
                    dir,
                    layer.input,
                    layer.hidden,
                    x_l,
                    t,
                    b,
                    out,
                    d * layer.hidden,
                    layer.output(),
                    st,
                    Scratch {
                        team: &self.team,
                        bufs: &mut self.bufs,
                    },
                    self.threads,
                );
            }
        }
        Ok(&self.outs[n_layers - 1])
    }

    /// Picks, per direction, whether a step is split over the plan's threads: times a few steps
    /// each way on random input.
    fn tune_threads(&mut self, b: usize) {
        const TUNE_MIN_SAMPLES: usize = 8;
        const TUNE_MAX_SAMPLES: usize = 96;
        const TUNE_MIN_SPAN: std::time::Duration = std::time::Duration::from_millis(100);
        // Long enough that a step's cache behaviour (W_hh streamed or resident) shows, short
        // enough to keep plan building cheap.
        let t = 12;
        let rng = CounterRng::new(5);
        // Print every option's timings (to see why a plan chose what it did).
        let debug = std::env::var_os("SYMBIONT_TUNE_DEBUG").is_some();
        /// One direction of one layer being tuned: its input, an output buffer, its options
        /// (threads, split by batch rows) and their timings.
        struct Candidate {
            l: usize,
            d: usize,
            x: Vec<f32>,
            out: Vec<f32>,
            options: Vec<(usize, bool)>,
            times: Vec<Vec<f64>>,
        }
        let mut candidates = Vec::new();
        for (l, layer) in self.layers.iter().enumerate() {
            let x: Vec<f32> = (0..(t * b * layer.input) as u64)
                .map(|i| rng.uniform(0, i) - 0.5)
                .collect();
            for (d, dir) in layer.dirs.iter().enumerate() {
                // Serial, split by units, and (LSTM cells, at least one batch row per thread)
                // split by batch rows, over 2, 4, 8, … threads up to the plan's: a step too
                // small to feed 16 threads may still gain from 2, so more threads never force
                // a slower split (issue 12; bench/thread_scaling.sh).
                let mut options = vec![(1, false)];
                let mut parts = 2;
                while parts < self.threads * 2 {
                    let n = parts.min(self.threads);
                    options.push((n, false));
                    if b >= n && matches!(dir.cell, Cell::Lstm { .. }) {
                        options.push((n, true));
                    }
                    parts *= 2;
                }
                candidates.push(Candidate {
                    l,
                    d,
                    x: x.clone(),
                    out: vec![0f32; t * b * layer.output()],
                    times: vec![Vec::new(); options.len()],
                    options,
                });
            }
        }
        // Every option of every layer runs once per round, so that a slow phase of the machine
        // hits them all: timed one after the other, a busy second at batch 16 made the single
        // thread look faster and the plan ran its steps at half speed; tuned layer by layer, a
        // stretch of the other core being taken (tens of ms on this VM) covered all of one
        // layer's samples and gave it a serial plan in two of three builds (`SYMBIONT_TUNE_DEBUG=1
        // symbiont bench --layers 2 --hidden 200 --batch 16 --seq 35 --threads 2 --json`).
        let tuning = Instant::now();
        for rep in 0..=TUNE_MAX_SAMPLES {
            if rep > TUNE_MIN_SAMPLES && tuning.elapsed() >= TUNE_MIN_SPAN {
                break;
            }
            for c in candidates.iter_mut() {
                let (input, hidden, out_w) = (
                    self.layers[c.l].input,
                    self.layers[c.l].hidden,
                    self.layers[c.l].output(),
                );
                for (o, &(parts, by_batch)) in c.options.iter().enumerate() {
                    let dir = &mut self.layers[c.l].dirs[c.d];
                    (dir.parts, dir.by_batch) = (parts, by_batch);
                    if parts > 1 {
                        // Wake the workers first: during the serial option before this one
                        // they parked, and waking a parked thread (an idle vCPU here) cost the
                        // first threaded run up to milliseconds, which back-to-back runs never
                        // pay; untimed, the threaded options lost to serial at batch 16 while
                        // running 1.3-1.6x faster than it in the plan (the command above, and
                        // the same with `--step-threads 1` / `--step-threads 2 --step-split
                        // batch`: 7.2-9.4 vs 5.4-5.8 ms).
                        self.team.run(parts, &|_, _| {});
                    }
                    let start = Instant::now();
                    run_direction(
                        &self.layers[c.l].dirs[c.d],
                        input,
                        hidden,
                        &c.x,
                        t,
                        b,
                        &mut c.out,
                        c.d * hidden,
                        out_w,
                        None,
                        Scratch {
                            team: &self.team,
                            bufs: &mut self.bufs,
                        },
                        self.threads,
                    );
                    if rep > 0 {
                        c.times[o].push(start.elapsed().as_secs_f64());
                    }
                }
            }
        }
        for c in candidates {
            let mut best = (f64::INFINITY, c.options[0]);
            for (o, mut v) in c.times.into_iter().enumerate() {
                v.sort_by(f64::total_cmp);
                if debug {
                    eprintln!(
                        "tune layer {} dir {} (parts, by batch) {:?}: {v:?}",
                        c.l, c.d, c.options[o]
                    );
                }
                // The lower quartile: the machine's noise only ever slows a run down (a
                // descheduled thread stalls the whole barrier loop), so the low samples show
                // what each option can do; the minimum alone let one lucky run decide.
                let typical = v[v.len() / 4];
                if typical < best.0 {
                    best = (typical, c.options[o]);
                }
            }
            let dir = &mut self.layers[c.l].dirs[c.d];
            (dir.parts, dir.by_batch) = best.1;
        }
    }
}

/// The working buffers of one direction's run, kept by the plan between runs.
#[derive(Default)]
struct DirBuffers {
    /// Gate pre-activations of every step.
    gates: Vec<f32>,
    /// The H-LSTM's second-layer pre-activations of one step.
    pre: Vec<f32>,
    /// h_{-1} (zero, or a copy of the streaming state).
    zero_h: Vec<f32>,
    /// The cell state when no streaming state is given.
    c: Vec<f32>,
}

/// What a direction borrows from the plan.
struct Scratch<'a> {
    team: &'a Team,
    bufs: &'a mut DirBuffers,
}

/// One direction of one layer over the whole sequence, writing h_t into columns
/// `col0 .. col0 + H` of `out` (T, B, ldo).
#[allow(clippy::too_many_arguments)]
fn run_direction(
    dir: &Direction,
    input: usize,
    h: usize,
    x: &[f32],
    t: usize,
    b: usize,
    out: &mut [f32],
    col0: usize,
    ldo: usize,
    state: Option<(&mut [f32], &mut [f32])>,
    s: Scratch<'_>,
    threads: usize,
) {
    // Gate pre-activations of every step: (T, B, G), G = 4H for the LSTM, 4M for the H-LSTM.
    let (g, w_in, bias) = match &dir.cell {
        Cell::Lstm { w_ih, bias, .. } => (4 * h, w_ih, bias),
        Cell::Hlstm { m, w_ih1, b1, .. } => (4 * m, w_ih1, b1),
    };
    let DirBuffers {
        gates,
        pre,
        zero_h,
        c,
    } = s.bufs;
    gates.resize(t * b * g, 0.0);
    let pieces = w_in.balanced_pieces(threads, unit_align(w_in.row_align()));
    let gp = SharedMut(gates.as_mut_ptr());
    s.team.run(pieces.len(), &|p, _| {
        // SAFETY: part p writes the columns of its pieces of each gate block, disjoint across
        // parts; `gates` holds T·B rows of G and outlives the join.
        unsafe { w_in.set_pieces(bias, x, input, t * b, gp.get(), g, &pieces[p]) };
    });

    match state {
        Some((sh, sc)) => {
            // h_{-1} is copied: during the loop the output rows, not the state, feed the steps.
            zero_h.clear();
            zero_h.extend_from_slice(sh);
            step_loop(dir, h, t, b, gates, out, col0, ldo, zero_h, sc, pre, s.team);
            let last = if dir.reverse { 0 } else { t - 1 };
            for bb in 0..b {
                let src = (last * b + bb) * ldo + col0;
                sh[bb * h..(bb + 1) * h].copy_from_slice(&out[src..src + h]);
            }
        }
        None => {
            zero_h.clear();
            zero_h.resize(b * h, 0.0);
            c.clear();
            c.resize(b * h, 0.0);
            step_loop(dir, h, t, b, gates, out, col0, ldo, zero_h, c, pre, s.team);
        }
    }
}

/// What the threads of a step loop share: the gate pre-activations (T, B, g), the cell state
/// and the layer output.
struct LoopBuffers {
    g: usize,
    gp: SharedMut<f32>,
    cp: SharedMut<f32>,
    layout: OutLayout,
}

impl LoopBuffers {
    #[allow(clippy::too_many_arguments)]
    fn new(
        gates: &mut [f32],
        out: &mut [f32],
        c: &mut [f32],
        t: usize,
        b: usize,
        h: usize,
        ldo: usize,
        col0: usize,
    ) -> LoopBuffers {
        LoopBuffers {
            g: gates.len() / (t * b),
            gp: SharedMut(gates.as_mut_ptr()),
            cp: SharedMut(c.as_mut_ptr()),
            layout: OutLayout {
                out: SharedMut(out.as_mut_ptr()),
                len: out.len(),
                b,
                h,
                ldo,
                col0,
            },
        }
    }
}

/// Where a direction's outputs h_t sit in the layer output (T, B, ldo): columns
/// `col0 .. col0 + h` of each row.
#[derive(Clone, Copy)]
struct OutLayout {
    out: SharedMut<f32>,
    len: usize,
    b: usize,
    h: usize,
    ldo: usize,
    col0: usize,
}

impl OutLayout {
    /// h_{t-1} for batch rows `rows` at loop step `s` (time `tt`), with its row stride: those
    /// rows of the initial state `h0` (B, h) on the first step, else of the previous step's
    /// output.
    ///
    /// # Safety
    /// The previous step's rows must be complete and not written while the slice is used.
    unsafe fn prev_h<'a>(
        &self,
        h0: &'a [f32],
        s: usize,
        tt: usize,
        reverse: bool,
        rows: Range<usize>,
    ) -> (&'a [f32], usize) {
        if s == 0 {
            return (&h0[rows.start * self.h..rows.end * self.h], self.h);
        }
        let pt = if reverse { tt + 1 } else { tt - 1 };
        let start = (pt * self.b + rows.start) * self.ldo + self.col0;
        let len = (rows.len() - 1) * self.ldo + self.h;
        debug_assert!(start + len <= self.len);
        // SAFETY: inside the output buffer (checked above in debug builds); forwarded contract.
        (
            unsafe { std::slice::from_raw_parts(self.out.get().add(start), len) },
            self.ldo,
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn step_loop(
    dir: &Direction,
    h: usize,
    t: usize,
    b: usize,
    gates: &mut [f32],
    out: &mut [f32],
    col0: usize,
    ldo: usize,
    h0: &[f32],
    c: &mut [f32],
    pre: &mut Vec<f32>,
    team: &Team,
) {
    let buffers = LoopBuffers::new(gates, out, c, t, b, h, ldo, col0);
    if let (Cell::Lstm { w_hh, .. }, true, true) = (&dir.cell, dir.by_batch, dir.parts > 1) {
        return step_loop_by_batch(dir.reverse, w_hh, dir.parts, buffers, t, h0, team);
    }
    let step_align = match &dir.cell {
        Cell::Lstm { w_hh, .. } => w_hh.row_align(),
        Cell::Hlstm { w2, .. } => w2.row_align(),
    };
    let units = split_units(h, dir.parts, unit_align(step_align));
    let LoopBuffers { g, gp, cp, layout } = buffers;
    let op = layout.out;
    if let Cell::Hlstm { .. } = dir.cell {
        pre.resize(b * 4 * h, 0.0);
    }
    let pp = SharedMut(pre.as_mut_ptr());
    let hidden_ranges = match &dir.cell {
        Cell::Hlstm { m, w_hh1, .. } => split_units(*m, dir.parts, unit_align(w_hh1.row_align())),
        Cell::Lstm { .. } => Vec::new(),
    };
    // The backwards sweep only matters when a thread's share of W_hh overflows its L2; below
    // that one piece per step saves the per-piece call overhead (small H is latency-bound).
    let chunk = match &dir.cell {
        Cell::Lstm { w_hh, .. } if w_hh.bytes() / units.len().max(1) > L2_BYTES / 2 => SWEEP_CHUNK,
        _ => h.max(1),
    };
    // One team for the whole loop: part p owns units[p] (and hidden_ranges[p] of the H-LSTM's
    // gate hidden layers) at every step; a barrier ends each step (and each H-LSTM phase).
    team.run(units.len().max(hidden_ranges.len()), &|p, barrier| {
        let r = units.get(p).cloned().unwrap_or(0..0);
        for s in 0..t {
            let tt = if dir.reverse { t - 1 - s } else { s };
            // SAFETY: row `tt ∓ 1` of `out` was completed before the last barrier and no part
            // writes it during this step (they write row `tt`).
            let (hp, ldh) = unsafe { layout.prev_h(h0, s, tt, dir.reverse, 0..b) };
            let g_t = tt * b * g;
            let h_out = tt * b * ldo + col0;
            match &dir.cell {
                Cell::Lstm { w_hh, .. } => {
                    // SAFETY: part p touches only units r of every gate, of c and of h_t:
                    // disjoint across parts; all buffers outlive the team.
                    unsafe {
                        // Odd steps sweep the rows backwards: the rows a thread touched last are
                        // still in its L2 cache and are read first, so a W_hh share larger than
                        // L2 is not evicted entirely every step (LRU thrashing).
                        if s % 2 == 0 {
                            for ch in r.clone().step_by(chunk) {
                                let ch = ch..(ch + chunk).min(r.end);
                                w_hh.acc_units(hp, ldh, b, gp.get().add(g_t), g, ch);
                            }
                        } else {
                            for ch in r.clone().step_by(chunk).rev() {
                                let ch = ch..(ch + chunk).min(r.end);
                                w_hh.acc_units(hp, ldh, b, gp.get().add(g_t), g, ch);
                            }
                        }
                        lstm_epilogue(
                            gp.get().add(g_t),
                            g,
                            h,
                            b,
                            r.clone(),
                            cp.get(),
                            op.get().add(h_out),
                            ldo,
                        );
                    }
                }
                Cell::Hlstm {
                    m, w_hh1, w2, b2, ..
                } => {
                    let m = *m;
                    let hr = hidden_ranges.get(p).cloned().unwrap_or(0..0);
                    // SAFETY: part p touches units hr of each gate's hidden layer only.
                    unsafe {
                        w_hh1.acc_units(hp, ldh, b, gp.get().add(g_t), g, hr.clone());
                        relu_units(gp.get().add(g_t), g, m, b, hr);
                    }
                    barrier.wait();
                    // SAFETY: the gate hidden layers of step tt are complete (barrier above) and
                    // only read here; part p writes units r of `pre`, c and h_t.
                    unsafe {
                        let z = std::slice::from_raw_parts(gp.get().add(g_t), (b - 1) * g + g);
                        for bb in 0..b {
                            for k in 0..4 {
                                let dst = pp.get().add(bb * 4 * h + k * h);
                                for j in r.clone() {
                                    *dst.add(j) = b2[k * h + j];
                                }
                            }
                        }
                        w2.acc_units_per_gate(z, g, m, b, pp.get(), 4 * h, r.clone());
                        lstm_epilogue(
                            pp.get(),
                            4 * h,
                            h,
                            b,
                            r.clone(),
                            cp.get(),
                            op.get().add(h_out),
                            ldo,
                        );
                    }
                }
            }
            barrier.wait();
        }
    });
}

/// The LSTM step loop with the batch rows split between threads: each thread runs whole
/// sequences (its rows of h, c and the gates, every unit, all of W_hh), so the threads never
/// wait for each other until the end. Each reads all of W_hh per step instead of its share, which
/// pays when W_hh stays in L2 or the product is compute-bound (several batch rows per thread);
/// the plan times it against the unit split.
fn step_loop_by_batch(
    reverse: bool,
    w_hh: &GateMatrix,
    parts: usize,
    buffers: LoopBuffers,
    t: usize,
    h0: &[f32],
    team: &Team,
) {
    let LoopBuffers { g, gp, cp, layout } = buffers;
    let OutLayout {
        out: op,
        b,
        h,
        ldo,
        col0,
        ..
    } = layout;
    let rows = split_units(b, parts, 1);
    team.run(rows.len(), &|p, _| {
        let br = rows[p].clone();
        let nb = br.len();
        if nb == 0 {
            return;
        }
        for s in 0..t {
            let tt = if reverse { t - 1 - s } else { s };
            // SAFETY: these rows of `out` were written by this thread in the last step; other
            // parts touch other batch rows only.
            let (hp, ldh) = unsafe { layout.prev_h(h0, s, tt, reverse, br.clone()) };
            let g_t = (tt * b + br.start) * g;
            let h_out = (tt * b + br.start) * ldo + col0;
            // SAFETY: part p touches only its batch rows of the gates, c and h_t; all buffers
            // outlive the team.
            unsafe {
                w_hh.acc_units(hp, ldh, nb, gp.get().add(g_t), g, 0..h);
                lstm_epilogue(
                    gp.get().add(g_t),
                    g,
                    h,
                    nb,
                    0..h,
                    cp.get().add(br.start * h),
                    op.get().add(h_out),
                    ldo,
                );
            }
        }
    });
}

/// Units per piece of a step's row sweep (a multiple of 16, the block alignment).
const SWEEP_CHUNK: usize = 32;

/// L2 cache per core assumed by the sweep order (2 MiB on the Xeons we measure; a wrong guess
/// only costs a few call overheads per step).
const L2_BYTES: usize = 2 << 20;

/// ReLU in place on units `r` of the four gate hidden layers of each batch row.
///
/// # Safety
/// `z` holds `b` rows of `ldz` ≥ 4M values; no other thread touches units `r`.
unsafe fn relu_units(z: *mut f32, ldz: usize, m: usize, b: usize, r: Range<usize>) {
    for bb in 0..b {
        for k in 0..4 {
            // SAFETY: inside row bb, gate k, units r.
            let row = unsafe {
                std::slice::from_raw_parts_mut(z.add(bb * ldz + k * m + r.start), r.len())
            };
            for v in row {
                *v = v.max(0.0);
            }
        }
    }
}

/// The fused gate epilogue on units `r`: gates (B, ldg) with planes i, f, g, o of width `h`;
/// c (B, h) updated in place; h_t written to `h_out` (B, ldh).
///
/// # Safety
/// The pointers cover those extents and no other thread touches units `r` of them.
#[allow(clippy::too_many_arguments)]
unsafe fn lstm_epilogue(
    gates: *const f32,
    ldg: usize,
    h: usize,
    b: usize,
    r: Range<usize>,
    c: *mut f32,
    h_out: *mut f32,
    ldh: usize,
) {
    let n = r.len();
    for bb in 0..b {
        // SAFETY: the four planes, c and h_t rows of batch row bb restricted to units r.
        unsafe {
            let g = gates.add(bb * ldg + r.start);
            let plane = |k: usize| std::slice::from_raw_parts(g.add(k * h), n);
            epilogue_row(
                plane(0),
                plane(1),
                plane(2),
                plane(3),
                std::slice::from_raw_parts_mut(c.add(bb * h + r.start), n),
                std::slice::from_raw_parts_mut(h_out.add(bb * ldh + r.start), n),
            );
        }
    }
}

#[inline(never)]
fn epilogue_row(gi: &[f32], gf: &[f32], gg: &[f32], go: &[f32], c: &mut [f32], h: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if kernels::isa::active().avx512() {
        // SAFETY: the process runs at an AVX-512 level, which only a CPU with AVX-512F gets.
        unsafe { epilogue_row_avx512(gi, gf, gg, go, c, h) };
        return;
    }
    // The crate's baseline (x86-64-v3: AVX2 + FMA, .cargo/config.toml; NEON on aarch64).
    epilogue_body(gi, gf, gg, go, c, h);
}

/// The same loop compiled for 16-lane vectors: at H = 200 the epilogue was ~8% of a thread's
/// samples in 8-lane (AVX2) form (`perf record symbiont bench --layers 2 --hidden 200 --batch 1
/// --seq 35 --threads 2 --json`, then `perf report --no-children --sort pid,sym`; 2.1–2.8% of all
/// samples per thread against ~32% for the thread's whole run). An end-to-end A/B was within
/// this VM's noise.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn epilogue_row_avx512(
    gi: &[f32],
    gf: &[f32],
    gg: &[f32],
    go: &[f32],
    c: &mut [f32],
    h: &mut [f32],
) {
    epilogue_body(gi, gf, gg, go, c, h);
}

#[inline(always)]
fn epilogue_body(gi: &[f32], gf: &[f32], gg: &[f32], go: &[f32], c: &mut [f32], h: &mut [f32]) {
    kernels::cell::gates_step(gi, gf, gg, go, c, h);
}
