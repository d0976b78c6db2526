//! The profiler's CPU engines: symbiont's own dense and sparse inference plans, timed in
//! process (one full-sequence run per sample).

use infer::{Dtype, FormatChoice, MaskShape, ModelPlan, PlanOptions, Steps, SyntheticSpec};
use kernels::packed::Format;
use profile::{Engine, EngineInfo, Point, Prepared, ProfileError};

/// `cpu-dense` or `cpu-sparse`.
pub fn cpu_engine(kind: &str) -> Result<Box<dyn Engine>, String> {
    match kind {
        "cpu-dense" => Ok(Box::new(CpuEngine { sparse: false })),
        "cpu-sparse" => Ok(Box::new(CpuEngine { sparse: true })),
        other => Err(format!(
            "unknown engine `{other}`: expected cpu-dense, cpu-sparse or command"
        )),
    }
}

struct CpuEngine {
    sparse: bool,
}

struct CpuRun {
    plan: ModelPlan,
    x: Vec<f32>,
    t: usize,
    b: usize,
    pool: rayon::ThreadPool,
}

impl Engine for CpuEngine {
    fn info(&self) -> EngineInfo {
        let name = if self.sparse {
            "cpu-sparse"
        } else {
            "cpu-dense"
        };
        EngineInfo::new(name, format!("symbiont {}", env!("CARGO_PKG_VERSION")))
    }

    fn prepare(&mut self, p: &Point) -> Result<Box<dyn Prepared>, ProfileError> {
        let err = |e: String| ProfileError::Engine(e);
        let dtype: Dtype = p.dtype.parse().map_err(err)?;
        let format: FormatChoice = if self.sparse {
            match p.format.as_str() {
                "" | "auto" => FormatChoice::Auto,
                f => f.parse().map_err(err)?,
            }
        } else {
            if p.density < 1.0 {
                return Err(err(format!(
                    "cpu-dense times dense weights; density {} needs --engine cpu-sparse",
                    p.density
                )));
            }
            FormatChoice::Fixed(Format::Dense)
        };
        let spec = SyntheticSpec {
            layers: p.layers,
            input: p.input,
            hidden: p.hidden,
            gate_width: p.gate_width,
            bidirectional: false,
            density: p.density,
            mask: MaskShape::Random,
            vocab: 0,
            seed: 1,
        };
        let weights = spec.build().map_err(|e| err(e.to_string()))?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(p.threads.max(1))
            .build()
            .map_err(|e| err(format!("cannot start {} threads: {e}", p.threads)))?;
        let opts = PlanOptions {
            dtype,
            format,
            threads: p.threads.max(1),
            batch: p.batch,
            seq: p.seq,
            step_threads: None,
            split_batch: false,
        };
        let plan = pool
            .install(|| ModelPlan::new(&weights, &opts))
            .map_err(|e| err(e.to_string()))?;
        let x: Vec<f32> = (0..p.seq * p.batch * p.input)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
            .collect();
        Ok(Box::new(CpuRun {
            plan,
            x,
            t: p.seq,
            b: p.batch,
            pool,
        }))
    }
}

impl Prepared for CpuRun {
    fn run(&mut self) -> Result<Vec<f64>, ProfileError> {
        let CpuRun {
            plan,
            x,
            t,
            b,
            pool,
        } = self;
        pool.install(|| {
            let start = std::time::Instant::now();
            plan.run(x, *t, *b, None, Steps::All)
                .map_err(|e| ProfileError::Engine(e.to_string()))?;
            Ok(vec![start.elapsed().as_secs_f64() * 1e3])
        })
    }
}
