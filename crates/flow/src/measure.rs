//! Measurements on the target: the latency table the sizes come from (a profiler sweep with the
//! target's CPU engine) and the latency of a whole language model through the plan the target
//! deploys (dense for `cpu-dense`; per-matrix format chosen by timing for `cpu-sparse`).

use crate::config::Target;
use crate::record::{HostRecord, LatencyRecord};
use crate::FlowError;
use infer::bench::time_runs;
use infer::{Dtype, FormatChoice, ModelPlan, ModelWeights, PlanOptions, Steps};
use kernels::packed::Format;
use kernels::rng::CounterRng;
use profile::{Grid, LatencyTable, Point, Sizes, SweepOptions};
use std::sync::atomic::AtomicBool;

/// The per-layer curve a flow sizes from: one layer of `gate_width` (0 = LSTM), input tied to
/// hidden, batch 1, `seq` steps, `threads` threads, f32, at `density` ("dense" at 1, "auto"
/// below). `hidden` is a placeholder: the curve runs along it.
pub fn curve_point(gate_width: usize, seq: usize, threads: usize, density: f64) -> Point {
    Point {
        hidden: 1,
        input: 1,
        gate_width,
        layers: 1,
        batch: 1,
        seq,
        threads,
        dtype: "f32".into(),
        density,
        format: if density < 1.0 { "auto" } else { "dense" }.into(),
    }
}

/// What [`measure_table`] sweeps.
pub struct TableSpec {
    pub target: Target,
    pub hidden: Vec<usize>,
    /// H-LSTM gate width of the seed (0 = LSTM).
    pub gate_width: usize,
    pub densities: Vec<f64>,
    pub seq: usize,
    pub threads: usize,
    /// Seconds the sweep may take (0 = the profiler's default adaptivity without a limit).
    pub budget_s: f64,
}

/// Sweeps the target's engine over `spec` and returns the table (verified frontier points).
/// Fails when the engine fails or the sweep is cut short.
pub fn measure_table(spec: &TableSpec, stop: &AtomicBool) -> Result<LatencyTable, FlowError> {
    let mut grid = Grid::over_hidden(spec.hidden.clone());
    grid.gate_width = Sizes::Values(vec![spec.gate_width]);
    grid.seq = vec![spec.seq];
    grid.threads = vec![spec.threads];
    grid.density = spec.densities.clone();
    let points = grid
        .points()
        .map_err(|e| FlowError::Invalid(format!("[profile]: {e}")))?;
    let mut engine = crate::engines::cpu_engine(spec.target.name()).map_err(FlowError::Invalid)?;
    let opts = SweepOptions {
        budget_s: (spec.budget_s > 0.0).then_some(spec.budget_s),
        ..SweepOptions::default()
    };
    let outcome = profile::sweep(engine.as_mut(), points, &opts, stop);
    match &outcome.status {
        profile::SweepStatus::Complete => {}
        profile::SweepStatus::Failed(e) => {
            return Err(FlowError::Invalid(format!(
                "measuring the latency table failed: {e}"
            )))
        }
        profile::SweepStatus::Interrupted => {
            return Err(FlowError::Invalid(
                "measuring the latency table was interrupted".into(),
            ))
        }
    }
    Ok(LatencyTable::from_sweep(
        &outcome,
        Some(spec.target.name().into()),
    ))
}

/// The plan format a target deploys.
pub fn target_format(target: Target) -> FormatChoice {
    match target {
        Target::CpuDense => FormatChoice::Fixed(Format::Dense),
        Target::CpuSparse => FormatChoice::Auto,
    }
}

/// How long one latency measurement runs.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub warmup: usize,
    pub min_reps: usize,
    pub min_secs: f64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            warmup: 3,
            min_reps: 30,
            min_secs: 1.0,
        }
    }
}

/// A language model prepared for timing on a target: its plan, its own thread pool and a fixed
/// token sequence.
struct Timed {
    plan: ModelPlan,
    seq: usize,
    batch: usize,
    pool: rayon::ThreadPool,
    tokens: Vec<u32>,
    samples: Vec<f64>,
}

impl Timed {
    fn new(
        model: &model::LanguageModel<f32>,
        target: Target,
        batch: usize,
        seq: usize,
        threads: usize,
    ) -> Result<Timed, FlowError> {
        let file = model::checkpoint::TensorFile::from_tensors("model", &model.state_dict());
        let weights = ModelWeights::from_file(&file)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .build()
            .map_err(|e| FlowError::Invalid(format!("cannot start {threads} threads: {e}")))?;
        let opts = PlanOptions {
            dtype: Dtype::F32,
            format: target_format(target),
            threads: threads.max(1),
            batch,
            seq,
            step_threads: None,
            split_batch: false,
        };
        let plan = pool.install(|| ModelPlan::new(&weights, &opts))?;
        let vocab = plan.vocab().ok_or_else(|| {
            FlowError::Invalid("the model has no decoder: nothing to time end to end".into())
        })?;
        let rng = CounterRng::new(0x1a7e);
        let tokens: Vec<u32> = (0..(seq * batch) as u64)
            .map(|i| (rng.bits(0, i) % vocab as u64) as u32)
            .collect();
        Ok(Timed {
            plan,
            seq,
            batch,
            pool,
            tokens,
            samples: Vec::new(),
        })
    }

    /// Times one round of runs (after `warmup` untimed ones), adding to the samples.
    fn round(&mut self, warmup: usize, reps: usize, secs: f64) -> Result<(), FlowError> {
        let Timed {
            plan,
            seq: t,
            batch: b,
            pool,
            tokens,
            samples,
        } = self;
        let (t, b) = (*t, *b);
        let mut failure = None;
        let s = pool.install(|| {
            time_runs(warmup, reps, 100_000, secs, || {
                if let Err(e) = plan.run_tokens(tokens, t, b, None, Steps::All) {
                    failure.get_or_insert(e);
                }
            })
        });
        if let Some(e) = failure {
            return Err(e.into());
        }
        samples.extend(s.0);
        Ok(())
    }

    fn record(self, target: Target, batch: usize, seq: usize, threads: usize) -> LatencyRecord {
        let mut formats: Vec<String> = self
            .plan
            .stack()
            .matrices()
            .iter()
            .map(|m| m.format.to_string())
            .chain(self.plan.decoder_format())
            .collect();
        formats.sort();
        formats.dedup();
        let s = infer::bench::Samples(self.samples);
        LatencyRecord {
            engine: target.name().into(),
            format: formats.join("+"),
            batch,
            seq,
            threads: threads.max(1),
            isa: kernels::isa::active().name().into(),
            median_ms: s.median(),
            p10_ms: s.quantile(0.1),
            p90_ms: s.quantile(0.9),
            samples: s.0,
        }
    }
}

/// Latency of the whole language model `model` (embedding, stack, decoder) on `target`: one
/// plan run of `seq` tokens for `batch` streams from a zero state, on its own pool of `threads`.
pub fn measure_model(
    model: &model::LanguageModel<f32>,
    target: Target,
    batch: usize,
    seq: usize,
    threads: usize,
    timing: Timing,
) -> Result<LatencyRecord, FlowError> {
    let mut m = Timed::new(model, target, batch, seq, threads)?;
    m.round(timing.warmup, timing.min_reps, timing.min_secs)?;
    Ok(m.record(target, batch, seq, threads))
}

/// Rounds of [`measure_side_by_side`]: each model's runs are spread over them, in turn, so slow
/// phases of a noisy machine hit every model alike.
pub const SIDE_BY_SIDE_ROUNDS: usize = 5;

/// The latency of several models measured side by side: every model is prepared first, then
/// timed in turn over [`SIDE_BY_SIDE_ROUNDS`] rounds (each round a fifth of `timing`).
pub fn measure_side_by_side(
    models: &[&model::LanguageModel<f32>],
    target: Target,
    batch: usize,
    seq: usize,
    threads: usize,
    timing: Timing,
) -> Result<Vec<LatencyRecord>, FlowError> {
    let mut timed: Vec<Timed> = models
        .iter()
        .map(|m| Timed::new(m, target, batch, seq, threads))
        .collect::<Result<_, _>>()?;
    let rounds = SIDE_BY_SIDE_ROUNDS;
    for r in 0..rounds {
        for t in timed.iter_mut() {
            let warmup = if r == 0 { timing.warmup } else { 1 };
            t.round(
                warmup,
                timing.min_reps.div_ceil(rounds),
                timing.min_secs / rounds as f64,
            )?;
        }
    }
    Ok(timed
        .into_iter()
        .map(|t| t.record(target, batch, seq, threads))
        .collect())
}

/// This machine: CPU model, ISA levels, threads.
pub fn host() -> HostRecord {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    HostRecord {
        cpu,
        isa: kernels::isa::active().name().into(),
        gemm_isa: kernels::isa::gemm_level().name().into(),
        threads: rayon::current_num_threads(),
    }
}
