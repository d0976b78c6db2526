//! gemm-shapes: `gemm` 0.19 vs `faer` 0.24 at symbiont's exact LSTM GEMM shapes (f32, CPU).
//!
//! Every product is `C (m x n, row-major, dense) = A (m x k) · B (k x n)`, where A and B are
//! *views* of row-major buffers exactly as the engine stores them; a "transposed" operand is the
//! same row-major buffer read with swapped strides (no copy).
//!
//! Usage:
//!   gemm-shapes [--json] [--shapes a,b,..] [--hidden 200,650,1500] [--threads 1,2]
//!               [--min-time-ms 300] [--min-reps 20] [--max-reps 5000] [--max-time-s 15]
//!
//! Default output is a markdown table; `--json` prints one JSON object per line (one row per
//! shape x H x threads x engine, plus one "summary" row per H x threads).

use std::hint::black_box;
use std::time::Instant;

use serde_json::json;

// ----------------------------------------------------------------------------------------------
// Problem sizes (Zaremba-style PTB LSTM): batch, unroll, vocabulary.
const B: usize = 20;
const T: usize = 35;
const V: usize = 10_000;
const TB: usize = T * B; // 700
/// Whether the `gemm` crate was built with its AVX-512 (`x86-v4`) kernels.
const GEMM_X86_V4: bool = cfg!(feature = "gemm-x86-v4");
/// Layers assumed for the per-step weighting in the summary (2-layer LSTM).
const LAYERS: usize = 2;

/// A row-major buffer of `rows x cols` elements, used either as-is or transposed.
#[derive(Clone, Copy, Debug)]
struct Operand {
    rows: usize,
    cols: usize,
    transposed: bool,
}

impl Operand {
    const fn plain(rows: usize, cols: usize) -> Self {
        Operand { rows, cols, transposed: false }
    }
    const fn trans(rows: usize, cols: usize) -> Self {
        Operand { rows, cols, transposed: true }
    }
    fn len(&self) -> usize {
        self.rows * self.cols
    }
    /// (rows, cols) of the logical operand.
    fn shape(&self) -> (usize, usize) {
        if self.transposed {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }
    /// (row stride, col stride) of the logical operand, in elements.
    /// Row-major `rows x cols` buffer: rs = cols, cs = 1. Transposed view: rs = 1, cs = cols.
    fn strides(&self) -> (isize, isize) {
        if self.transposed {
            (1, self.cols as isize)
        } else {
            (self.cols as isize, 1)
        }
    }
    /// Element (i, j) of the logical operand, indexed independently of `strides()` (used by the
    /// f64 reference check so a stride mistake cannot cancel out).
    fn at(&self, buf: &[f32], i: usize, j: usize) -> f32 {
        if self.transposed {
            buf[j * self.cols + i]
        } else {
            buf[i * self.cols + j]
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Shape {
    name: &'static str,
    /// true for the products that run during training (used for the "peak" and the summary).
    training: bool,
    /// how many times the product runs per training step (per the layout in the doc).
    per_step: usize,
    a: Operand,
    b: Operand,
    what: &'static str,
}

impl Shape {
    fn mnk(&self) -> (usize, usize, usize) {
        let (m, k) = self.a.shape();
        let (k2, n) = self.b.shape();
        assert_eq!(k, k2, "{}: inner dims", self.name);
        (m, n, k)
    }
    fn flops(&self) -> f64 {
        let (m, n, k) = self.mnk();
        2.0 * m as f64 * n as f64 * k as f64
    }
}

fn shapes(h: usize) -> Vec<Shape> {
    let g = 4 * h;
    vec![
        Shape {
            name: "input_proj",
            training: true,
            per_step: LAYERS,
            a: Operand::plain(TB, h),  // X [T*B, H]
            b: Operand::trans(g, h),   // W_ih [G, H] read as W_ih^T
            what: "X(TBxH) . W_ih^T -> (TB x G)",
        },
        Shape {
            name: "recurrent_step",
            training: true,
            per_step: T * LAYERS,
            a: Operand::plain(B, h),   // h [B, H]
            b: Operand::trans(g, h),   // W_hh [G, H] read as W_hh^T
            what: "h(BxH) . W_hh^T -> (B x G)",
        },
        Shape {
            name: "recurrent_dh",
            training: true,
            per_step: T * LAYERS,
            a: Operand::plain(B, g),   // dgates [B, G]
            b: Operand::plain(g, h),   // W_hh [G, H]
            what: "dgates(BxG) . W_hh -> (B x H)",
        },
        Shape {
            name: "weight_grad",
            training: true,
            // dW_ih and dW_hh per layer
            per_step: 2 * LAYERS,
            a: Operand::trans(TB, g),  // dgates [T*B, G] read as dgates^T
            b: Operand::plain(TB, h),  // X [T*B, H]
            what: "dgates^T(GxTB) . X(TBxH) -> (G x H)",
        },
        Shape {
            name: "input_dx",
            training: true,
            per_step: LAYERS,
            a: Operand::plain(TB, g),  // dgates [T*B, G]
            b: Operand::plain(g, h),   // W_ih [G, H]
            what: "(extra) dgates(TBxG) . W_ih -> (TB x H)",
        },
        Shape {
            name: "softmax_fwd",
            training: true,
            per_step: 1,
            a: Operand::plain(TB, h),  // h [T*B, H]
            b: Operand::trans(V, h),   // Dec [V, H] read as Dec^T
            what: "h(TBxH) . Dec^T -> (TB x V)",
        },
        Shape {
            name: "softmax_dw",
            training: true,
            per_step: 1,
            a: Operand::trans(TB, V),  // dlogits [T*B, V] read as dlogits^T
            b: Operand::plain(TB, h),  // h [T*B, H]
            what: "dlogits^T(VxTB) . h(TBxH) -> (V x H)",
        },
        Shape {
            name: "softmax_dx",
            training: true,
            per_step: 1,
            a: Operand::plain(TB, V),  // dlogits [T*B, V]
            b: Operand::plain(V, h),   // Dec [V, H]
            what: "dlogits(TBxV) . Dec(VxH) -> (TB x H)",
        },
        Shape {
            name: "gemv_b1",
            training: false,
            per_step: 0,
            a: Operand::plain(1, h),   // x [1, H]
            b: Operand::trans(g, h),   // W [G, H] read as W^T
            what: "x(1xH) . W^T -> (1 x G)  (batch-1 inference)",
        },
    ]
}

// ----------------------------------------------------------------------------------------------
// Engines

#[derive(Clone, Copy, Debug, PartialEq)]
enum Engine {
    Gemm,
    Faer,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Gemm => "gemm",
            Engine::Faer => "faer",
        }
    }
}

/// `gemm` crate call. NOTE the argument order of `gemm::gemm`: every matrix is given as
/// (ptr, col_stride, row_stride) -- column stride FIRST. Semantics: dst = alpha*dst + beta*lhs*rhs;
/// with read_dst = false, alpha is ignored and dst is overwritten.
fn run_gemm(sh: &Shape, a: &[f32], b: &[f32], c: &mut [f32], threads: usize) {
    let (m, n, k) = sh.mnk();
    let (a_rs, a_cs) = sh.a.strides();
    let (b_rs, b_cs) = sh.b.strides();
    assert_eq!(a.len(), sh.a.len());
    assert_eq!(b.len(), sh.b.len());
    assert_eq!(c.len(), m * n);
    let par = if threads <= 1 {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(threads)
    };
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,          // dst_cs
            n as isize, // dst_rs (row-major m x n)
            false,      // read_dst
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            0.0f32, // alpha (ignored: read_dst = false)
            1.0f32, // beta: scale of lhs*rhs
            false,
            false,
            false,
            par,
        );
    }
}

fn faer_view<'a>(op: &Operand, buf: &'a [f32]) -> faer::MatRef<'a, f32> {
    let v = faer::MatRef::from_row_major_slice(buf, op.rows, op.cols);
    if op.transposed {
        v.transpose()
    } else {
        v
    }
}

fn run_faer(sh: &Shape, a: &[f32], b: &[f32], c: &mut [f32], threads: usize) {
    let (m, n, _k) = sh.mnk();
    let av = faer_view(&sh.a, a);
    let bv = faer_view(&sh.b, b);
    let cv = faer::MatMut::from_row_major_slice_mut(c, m, n);
    let par = if threads <= 1 {
        faer::Par::Seq
    } else {
        faer::Par::rayon(threads)
    };
    faer::linalg::matmul::matmul(cv, faer::Accum::Replace, av, bv, 1.0f32, par);
}

fn run(engine: Engine, sh: &Shape, a: &[f32], b: &[f32], c: &mut [f32], threads: usize) {
    match engine {
        Engine::Gemm => run_gemm(sh, a, b, c, threads),
        Engine::Faer => run_faer(sh, a, b, c, threads),
    }
}

// ----------------------------------------------------------------------------------------------
// Data, verification

fn fill(buf: &mut [f32], seed: u64) {
    // xorshift64*, values uniform in [-1, 1)
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for x in buf.iter_mut() {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        let r = s.wrapping_mul(0x2545_F491_4F6C_DD1D);
        *x = ((r >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
    }
}

fn max_abs(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// max_ij |x - y| / max_ij |y|  (normwise relative error)
fn rel_err(x: &[f32], y: &[f32]) -> f64 {
    let d = x.iter().zip(y).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    d as f64 / (max_abs(y) as f64).max(1e-30)
}

/// Check sampled entries of `c` against an f64 dot product computed from the raw buffers.
fn ref_check(sh: &Shape, a: &[f32], b: &[f32], c: &[f32]) -> f64 {
    let (m, n, k) = sh.mnk();
    let mut worst = 0.0f64;
    let mut s = 12345u64;
    let scale = max_abs(c) as f64;
    for t in 0..64 {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        // always include the corners
        let (i, j) = match t {
            0 => (0, 0),
            1 => (m - 1, n - 1),
            2 => (0, n - 1),
            3 => (m - 1, 0),
            _ => (((s >> 33) as usize) % m, ((s >> 13) as usize) % n),
        };
        let mut acc = 0.0f64;
        for p in 0..k {
            acc += sh.a.at(a, i, p) as f64 * sh.b.at(b, p, j) as f64;
        }
        let e = (c[i * n + j] as f64 - acc).abs() / scale.max(1e-30);
        worst = worst.max(e);
    }
    worst
}

// ----------------------------------------------------------------------------------------------
// Timing

struct Opts {
    json: bool,
    shapes: Option<Vec<String>>,
    hidden: Vec<usize>,
    threads: Vec<usize>,
    min_time_s: f64,
    min_reps: usize,
    max_reps: usize,
    max_time_s: f64,
}

fn parse_list(s: &str) -> Vec<usize> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| x.trim().parse().unwrap_or_else(|_| panic!("bad number {x:?}")))
        .collect()
}

fn parse_args() -> Opts {
    let mut o = Opts {
        json: false,
        shapes: None,
        hidden: vec![200, 650, 1500],
        threads: vec![1, 2],
        min_time_s: 0.3,
        min_reps: 20,
        max_reps: 5000,
        max_time_s: 15.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--json" => o.json = true,
            "--shapes" => o.shapes = Some(val().split(',').map(String::from).collect()),
            "--hidden" => o.hidden = parse_list(&val()),
            "--threads" => o.threads = parse_list(&val()),
            "--min-time-ms" => o.min_time_s = val().parse::<f64>().unwrap() / 1e3,
            "--min-reps" => o.min_reps = val().parse().unwrap(),
            "--max-reps" => o.max_reps = val().parse().unwrap(),
            "--max-time-s" => o.max_time_s = val().parse().unwrap(),
            "-h" | "--help" => {
                println!(
                    "gemm-shapes [--json] [--shapes a,b,..] [--hidden 200,650,1500] [--threads 1,2]\n\
                     \x20           [--min-time-ms 300] [--min-reps 20] [--max-reps 5000] [--max-time-s 15]\n\
                     shapes: input_proj recurrent_step recurrent_dh weight_grad input_dx softmax_fwd\n\
                     \x20       softmax_dw softmax_dx gemv_b1"
                );
                std::process::exit(0);
            }
            other => panic!("unknown argument {other:?} (try --help)"),
        }
    }
    o
}

#[derive(Clone, Debug)]
struct Stats {
    reps: usize,
    median: f64,
    p10: f64,
    p90: f64,
    min: f64,
}

fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        0.5 * (v[v.len() / 2 - 1] + v[v.len() / 2])
    };
    Stats { reps: v.len(), median, p10: q(0.1), p90: q(0.9), min: v[0] }
}

/// Interleaved timing: gemm, faer, gemm, faer, ... until each engine has at least `min_reps`
/// samples AND at least `min_time_s` of accumulated time, capped by `max_reps` per engine and
/// `max_time_s` wall (the cap only applies after 5 samples each).
fn time_pair(
    sh: &Shape,
    a: &[f32],
    b: &[f32],
    cg: &mut [f32],
    cf: &mut [f32],
    threads: usize,
    o: &Opts,
) -> (Stats, Stats) {
    // warm-up: a few calls each, at least ~50 ms or 3 calls
    let w0 = Instant::now();
    let mut w = 0;
    while w < 3 || (w0.elapsed().as_secs_f64() < 0.05 && w < 1000) {
        run(Engine::Gemm, sh, a, b, cg, threads);
        run(Engine::Faer, sh, a, b, cf, threads);
        w += 1;
    }
    let mut tg = Vec::new();
    let mut tf = Vec::new();
    let (mut sg, mut sf) = (0.0f64, 0.0f64);
    let start = Instant::now();
    loop {
        let t = Instant::now();
        run(Engine::Gemm, sh, black_box(a), black_box(b), black_box(&mut *cg), threads);
        let d = t.elapsed().as_secs_f64();
        tg.push(d);
        sg += d;
        let t = Instant::now();
        run(Engine::Faer, sh, black_box(a), black_box(b), black_box(&mut *cf), threads);
        let d = t.elapsed().as_secs_f64();
        tf.push(d);
        sf += d;
        let n = tg.len();
        let done = n >= o.min_reps && sg >= o.min_time_s && sf >= o.min_time_s;
        let capped = n >= o.max_reps || (n >= 5 && start.elapsed().as_secs_f64() >= o.max_time_s);
        if done || capped {
            break;
        }
    }
    (stats(tg), stats(tf))
}

// ----------------------------------------------------------------------------------------------

struct Row {
    shape: &'static str,
    what: &'static str,
    training: bool,
    per_step: usize,
    h: usize,
    threads: usize,
    m: usize,
    n: usize,
    k: usize,
    flops: f64,
    g: Stats,
    f: Stats,
}

fn gf(flops: f64, s: f64) -> f64 {
    flops / s / 1e9
}

fn main() {
    let o = parse_args();
    let t_all = Instant::now();

    // spin up the global rayon pool once so its start-up cost is not attributed to anyone
    rayon::broadcast(|_| ());
    let rayon_threads = rayon::current_num_threads();
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    for &t in &o.threads {
        if t > rayon_threads {
            eprintln!("warning: {t} threads requested but the global rayon pool has {rayon_threads}");
        }
    }

    let mut rows: Vec<Row> = Vec::new();

    for &h in &o.hidden {
        for sh in shapes(h) {
            if let Some(sel) = &o.shapes {
                if !sel.iter().any(|s| s == sh.name) {
                    continue;
                }
            }
            let (m, n, k) = sh.mnk();
            let mut a = vec![0.0f32; sh.a.len()];
            let mut b = vec![0.0f32; sh.b.len()];
            fill(&mut a, 1 + h as u64);
            fill(&mut b, 1000 + h as u64);
            let mut cg = vec![0.0f32; m * n];
            let mut cf = vec![0.0f32; m * n];

            // ---- verification, once per shape (and H): every engine x thread count vs gemm/1t,
            // plus sampled entries against an f64 reference built from the raw buffers.
            run(Engine::Gemm, &sh, &a, &b, &mut cg, 1);
            let r = ref_check(&sh, &a, &b, &cg);
            let mut worst = r;
            for &t in &o.threads {
                for e in [Engine::Gemm, Engine::Faer] {
                    cf.fill(f32::NAN);
                    run(e, &sh, &a, &b, &mut cf, t);
                    let err = rel_err(&cf, &cg);
                    worst = worst.max(err);
                    if !(err < 1e-4) {
                        panic!(
                            "{} H={h}: {} with {t} threads disagrees with gemm/1t: rel err {err:e}",
                            sh.name,
                            e.name()
                        );
                    }
                }
            }
            if !(r < 1e-4) {
                panic!("{} H={h}: gemm disagrees with f64 reference: rel err {r:e}", sh.name);
            }
            eprintln!(
                "[{:6.1}s] {:<15} H={:<5} m={m} n={n} k={k}: verified (max rel err {worst:.1e})",
                t_all.elapsed().as_secs_f64(),
                sh.name,
                h
            );

            for &t in &o.threads {
                let (g, f) = time_pair(&sh, &a, &b, &mut cg, &mut cf, t, &o);
                let flops = sh.flops();
                eprintln!(
                    "[{:6.1}s]   threads={t}: gemm {:8.2} GF/s ({} reps)  faer {:8.2} GF/s  ratio faer/gemm {:.3}",
                    t_all.elapsed().as_secs_f64(),
                    gf(flops, g.median),
                    g.reps,
                    gf(flops, f.median),
                    f.median / g.median
                );
                rows.push(Row {
                    shape: sh.name,
                    what: sh.what,
                    training: sh.training,
                    per_step: sh.per_step,
                    h,
                    threads: t,
                    m,
                    n,
                    k,
                    flops,
                    g,
                    f,
                });
            }
        }
    }

    // ---- per-step weighted summary (per H x threads, over training shapes)
    struct Sum {
        h: usize,
        threads: usize,
        gemm_ms: f64,
        faer_ms: f64,
        softmax_gemm_ms: f64,
        softmax_faer_ms: f64,
        complete: bool,
    }
    let mut sums: Vec<Sum> = Vec::new();
    for &h in &o.hidden {
        for &t in &o.threads {
            let sel: Vec<&Row> =
                rows.iter().filter(|r| r.h == h && r.threads == t && r.training).collect();
            if sel.is_empty() {
                continue;
            }
            let w = |f: &dyn Fn(&Row) -> f64, soft: bool| -> f64 {
                sel.iter()
                    .filter(|r| !soft || r.shape.starts_with("softmax"))
                    .map(|r| r.per_step as f64 * f(r) * 1e3)
                    .sum()
            };
            sums.push(Sum {
                h,
                threads: t,
                gemm_ms: w(&|r| r.g.median, false),
                faer_ms: w(&|r| r.f.median, false),
                softmax_gemm_ms: w(&|r| r.g.median, true),
                softmax_faer_ms: w(&|r| r.f.median, true),
                complete: sel.len() == 8,
            });
        }
    }

    // ---- peak at training shapes, 2 threads (or the largest thread count measured)
    let peak_t = *o.threads.iter().max().unwrap_or(&1);
    let mut peak: Option<(f64, &'static str, &'static str, usize)> = None;
    for r in rows.iter().filter(|r| r.training && r.threads == peak_t) {
        for (e, s) in [("gemm", &r.g), ("faer", &r.f)] {
            let v = gf(r.flops, s.median);
            if peak.map_or(true, |p| v > p.0) {
                peak = Some((v, e, r.shape, r.h));
            }
        }
    }

    if o.json {
        for r in &rows {
            for (e, s) in [("gemm", &r.g), ("faer", &r.f)] {
                let j = json!({
                    "kind": "measurement",
                    "shape": r.shape,
                    "what": r.what,
                    "training": r.training,
                    "per_step": r.per_step,
                    "H": r.h,
                    "threads": r.threads,
                    "engine": e,
                    "m": r.m, "n": r.n, "k": r.k,
                    "flops": r.flops,
                    "reps": s.reps,
                    "median_s": s.median,
                    "p10_s": s.p10,
                    "p90_s": s.p90,
                    "min_s": s.min,
                    "gflops_median": gf(r.flops, s.median),
                    "ratio_faer_over_gemm": r.f.median / r.g.median,
                    "gemm_x86_v4": GEMM_X86_V4,
                });
                println!("{j}");
            }
        }
        for s in &sums {
            println!(
                "{}",
                json!({
                    "kind": "summary",
                    "H": s.h,
                    "threads": s.threads,
                    "layers": LAYERS,
                    "all_training_shapes": s.complete,
                    "step_gemm_ms": s.gemm_ms,
                    "step_faer_ms": s.faer_ms,
                    "step_ratio_faer_over_gemm": s.faer_ms / s.gemm_ms,
                    "softmax_gemm_ms": s.softmax_gemm_ms,
                    "softmax_faer_ms": s.softmax_faer_ms,
                })
            );
        }
        if let Some((v, e, sh, h)) = peak {
            println!(
                "{}",
                json!({"kind": "peak", "threads": peak_t, "gflops": v, "engine": e, "shape": sh, "H": h})
            );
        }
    } else {
        println!(
            "gemm-shapes: f32, row-major, B={B} T={T} V={V}; {ncpu} CPUs visible, rayon pool {rayon_threads} threads; gemm x86-v4 (AVX-512) feature: {}",
            if GEMM_X86_V4 { "on" } else { "off" }
        );
        println!();
        println!(
            "| shape | H | threads | m x n x k | gemm GFLOP/s | faer GFLOP/s | gemm ms p50 [p10-p90] | faer ms p50 [p10-p90] | ratio faer/gemm |"
        );
        println!("|---|---:|---:|---|---:|---:|---:|---:|---:|");
        for r in &rows {
            let ms = |s: &Stats| format!("{:.3} [{:.3}-{:.3}]", s.median * 1e3, s.p10 * 1e3, s.p90 * 1e3);
            println!(
                "| {}{} | {} | {} | {}x{}x{} | {:.1} | {:.1} | {} | {} | {:.2} |",
                r.shape,
                if r.training { "" } else { " (inference)" },
                r.h,
                r.threads,
                r.m,
                r.n,
                r.k,
                gf(r.flops, r.g.median),
                gf(r.flops, r.f.median),
                ms(&r.g),
                ms(&r.f),
                r.f.median / r.g.median
            );
        }
        if !sums.is_empty() {
            println!();
            println!(
                "Per-training-step GEMM time (sum of median x calls/step over training shapes, {LAYERS} layers; \
                 input_proj x{LAYERS}, recurrent_* x{}, weight_grad x{}, input_dx x{LAYERS}, softmax_* x1):",
                T * LAYERS,
                2 * LAYERS
            );
            println!();
            println!("| H | threads | gemm ms/step | faer ms/step | ratio | softmax-only gemm ms | softmax-only faer ms |");
            println!("|---:|---:|---:|---:|---:|---:|---:|");
            for s in &sums {
                println!(
                    "| {} | {} | {:.1}{} | {:.1} | {:.2} | {:.1} | {:.1} |",
                    s.h,
                    s.threads,
                    s.gemm_ms,
                    if s.complete { "" } else { " (partial)" },
                    s.faer_ms,
                    s.faer_ms / s.gemm_ms,
                    s.softmax_gemm_ms,
                    s.softmax_faer_ms
                );
            }
        }
        if let Some((v, e, sh, h)) = peak {
            println!();
            println!(
                "GEMM peak at our shapes ({peak_t} threads, f32): {v:.1} GFLOP/s ({e}, {sh}, H={h})"
            );
        }
    }
    eprintln!("total {:.1}s", t_all.elapsed().as_secs_f64());
}
