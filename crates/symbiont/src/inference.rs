//! `symbiont infer` and `symbiont bench`: the CLI over the `infer` crate's prepared plans.

use crate::commands::set_threads;
use clap::Args;
use infer::bench::{memory_bandwidth, time_runs};
use infer::{
    Dtype, FormatChoice, MaskShape, ModelPlan, ModelWeights, PlanOptions, Steps, SyntheticSpec,
};
use kernels::rng::CounterRng;
use serde_json::json;
use std::error::Error;
use std::path::PathBuf;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

#[derive(Args)]
pub struct InferArgs {
    /// Model weights (safetensors, PyTorch `state_dict` names): the word-language-model layout
    /// (`encoder.weight`, `rnn.weight_ih_l0`, …, `decoder.weight`, `decoder.bias`).
    #[arg(long)]
    pub model: PathBuf,
    /// Token ids separated by spaces or commas, e.g. "3 17 5".
    #[arg(long)]
    pub tokens: String,
    /// Print the logits of every step (a list per step) instead of only the last.
    #[arg(long)]
    pub all_steps: bool,
    /// Weight storage of the dense matrices: f32 or bf16 (bf16 rounds the weights).
    #[arg(long, default_value = "f32")]
    pub dtype: Dtype,
    /// Matrix format: dense, csr, bsr, bsrRxC, or auto (the fastest measured per matrix).
    #[arg(long, default_value = "dense")]
    pub format: FormatChoice,
    /// Print JSON: {"logits": [...]} (required: the output is for machines).
    #[arg(long)]
    pub json: bool,
}

pub fn infer(args: InferArgs, threads: Option<usize>) -> Result<u8> {
    set_threads(threads, 0)?;
    if !args.json {
        return Err("infer prints JSON only: add --json".into());
    }
    let weights = ModelWeights::load(&args.model)?;
    let v = weights.vocab().ok_or_else(|| {
        format!(
            "{}: no `encoder.weight`: infer takes token ids, so it needs a word language model",
            args.model.display()
        )
    })?;
    let mut tokens = Vec::new();
    for t in args
        .tokens
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
    {
        let id: u32 = t
            .parse()
            .map_err(|_| format!("--tokens: `{t}` is not a token id"))?;
        if id as usize >= v {
            return Err(format!("--tokens: id {id} is outside the vocabulary of {v} words").into());
        }
        tokens.push(id);
    }
    if tokens.is_empty() {
        return Err("--tokens: no token ids given".into());
    }
    let t = tokens.len();
    let opts = PlanOptions {
        dtype: args.dtype,
        format: args.format,
        threads: rayon::current_num_threads(),
        batch: 1,
        seq: t,
        step_threads: None,
        split_batch: false,
    };
    let mut plan = ModelPlan::new(&weights, &opts)?;
    let steps = if args.all_steps {
        Steps::All
    } else {
        Steps::Last
    };
    let width = plan.output();
    let out = plan.run_tokens(&tokens, t, 1, None, steps)?;
    if let Some(i) = out.iter().position(|v| !v.is_finite()) {
        return Err(format!(
            "the logits overflow: {} at step {}, word {} (the weights are finite but too large)",
            out[i],
            if args.all_steps { i / width } else { t - 1 },
            i % width
        )
        .into());
    }
    let rows: Vec<&[f32]> = out.chunks_exact(width).collect();
    let logits = if args.all_steps {
        json!(rows)
    } else {
        json!(rows[0])
    };
    println!(
        "{}",
        json!({ "logits": logits, "steps": t, "vocab": width })
    );
    Ok(0)
}

#[derive(Args)]
pub struct BenchArgs {
    /// Time this model (safetensors with PyTorch names: an nn.LSTM stack or a word language
    /// model, run whole: embedding, stack, logits of every step) instead of a synthetic one.
    #[arg(long, conflicts_with_all = ["layers", "hidden", "input", "gate_width", "bidirectional", "vocab", "density", "mask"])]
    pub model: Option<PathBuf>,
    /// Synthetic: stacked layers.
    #[arg(long)]
    pub layers: Option<usize>,
    /// Synthetic: hidden width H.
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Synthetic: input width of the first layer (default: H).
    #[arg(long)]
    pub input: Option<usize>,
    /// Synthetic: H-LSTM gate width M (0 = plain LSTM).
    #[arg(long)]
    pub gate_width: Option<usize>,
    /// Synthetic: bidirectional layers.
    #[arg(long)]
    pub bidirectional: bool,
    /// Synthetic: add an embedding and a decoder over this vocabulary (0 = the stack only).
    #[arg(long)]
    pub vocab: Option<usize>,
    /// Synthetic: fraction of each weight matrix that is non-zero.
    #[arg(long)]
    pub density: Option<f64>,
    /// Synthetic: where the zeros go: random, or blocks:RxC (whole blocks, as block pruning
    /// leaves them).
    #[arg(long)]
    pub mask: Option<MaskShape>,
    /// Batch width B.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Sequence length T.
    #[arg(long, default_value_t = 35)]
    pub seq: usize,
    /// Matrix format: dense, csr, bsr, bsrRxC or auto (per matrix, the fastest measured).
    /// Default: dense for dense weights, auto for sparse ones.
    #[arg(long)]
    pub format: Option<FormatChoice>,
    /// Weight storage of the dense matrices: f32, or bf16 (widened to f32 in the kernel).
    #[arg(long, default_value = "f32")]
    pub dtype: Dtype,
    /// Threads per recurrent step (default: measured per layer, 1 or all, split by units or
    /// by batch rows).
    #[arg(long)]
    pub step_threads: Option<usize>,
    /// With --step-threads above 1: what the threads own, hidden units (a barrier per step; the
    /// default) or batch rows (whole sequences; LSTM layers).
    #[arg(long, value_enum, requires = "step_threads")]
    pub step_split: Option<StepSplitArg>,
    /// Untimed runs first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed runs, at least.
    #[arg(long, default_value_t = 20)]
    pub reps: usize,
    /// Keep timing until this many seconds have passed (and --reps runs are done).
    #[arg(long, default_value_t = 1.0)]
    pub min_time: f64,
    /// Seed of the synthetic weights and inputs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Speech models (`--model` a speech checkpoint folder): seconds of audio per utterance.
    #[arg(long, default_value_t = 1.0)]
    pub audio_seconds: f64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn bench(args: BenchArgs, threads: Option<usize>) -> Result<u8> {
    if let Some(dir) = args.model.as_deref().filter(|p| p.is_dir()) {
        if speech::checkpoint::is_speech_checkpoint(dir) {
            return crate::speech_cli::bench_speech(args, threads);
        }
    }
    set_threads(threads, 0)?;
    let threads = rayon::current_num_threads();
    let (weights, source) = match &args.model {
        Some(path) => (ModelWeights::load(path)?, path.display().to_string()),
        None => {
            let hidden = args
                .hidden
                .ok_or("bench needs --model FILE or a synthetic --hidden H")?;
            let spec = SyntheticSpec {
                layers: args.layers.unwrap_or(1),
                input: args.input.unwrap_or(hidden),
                hidden,
                gate_width: args.gate_width.unwrap_or(0),
                bidirectional: args.bidirectional,
                density: args.density.unwrap_or(1.0),
                mask: args.mask.unwrap_or(MaskShape::Random),
                vocab: args.vocab.unwrap_or(0),
                seed: args.seed,
            };
            (spec.build()?, "synthetic".to_string())
        }
    };
    if args.batch == 0 || args.seq == 0 || args.reps == 0 {
        return Err("--batch, --seq and --reps must be > 0".into());
    }
    let format = args
        .format
        .unwrap_or_else(|| FormatChoice::default_for(&weights.layers));
    let (t, b) = (args.seq, args.batch);
    let opts = PlanOptions {
        dtype: args.dtype,
        format,
        threads,
        batch: b,
        seq: t,
        step_threads: args.step_threads,
        split_batch: args.step_split == Some(StepSplitArg::Batch),
    };
    let build = std::time::Instant::now();
    let mut plan = ModelPlan::new(&weights, &opts)?;
    let build_ms = build.elapsed().as_secs_f64() * 1e3;
    let rng = CounterRng::new(args.seed ^ 0x5eed);
    let tokens: Vec<u32> = match plan.vocab() {
        Some(v) => (0..(t * b) as u64)
            .map(|i| (rng.bits(0, i) % v as u64) as u32)
            .collect(),
        None => Vec::new(),
    };
    let x: Vec<f32> = if tokens.is_empty() {
        (0..(t * b * plan.stack().input()) as u64)
            .map(|i| rng.uniform(1, i) * 2.0 - 1.0)
            .collect()
    } else {
        Vec::new()
    };
    let mut failure = None;
    let samples = time_runs(args.warmup, args.reps, 100_000, args.min_time, || {
        let r = if tokens.is_empty() {
            plan.run(&x, t, b, None, Steps::All).map(|_| ())
        } else {
            plan.run_tokens(&tokens, t, b, None, Steps::All).map(|_| ())
        };
        if let Err(e) = r {
            failure.get_or_insert(e);
        }
    });
    if let Some(e) = failure {
        return Err(e.into());
    }
    // One more, untimed run to check what was timed: latencies of a model whose output
    // overflows are not reported as a result.
    let out = if tokens.is_empty() {
        plan.run(&x, t, b, None, Steps::All)?
    } else {
        plan.run_tokens(&tokens, t, b, None, Steps::All)?
    };
    if let Some(i) = out.iter().position(|v| !v.is_finite()) {
        return Err(format!(
            "the model's output is not finite ({} at flat index {i}): the weights are finite but \
             too large; no latency is reported",
            out[i]
        )
        .into());
    }
    let bw = memory_bandwidth();
    let median = samples.median();
    let bytes = plan.bytes_per_run(t) as f64;
    let flops = 2.0 * (t * b * plan.macs_per_step()) as f64;
    let gbs = bytes / median / 1e6;
    let floor_ms = bytes / (bw.copy_gbs * 1e6);
    let matrices: Vec<_> = plan
        .stack()
        .matrices()
        .iter()
        .map(|m| json!({"name": m.name, "format": m.format, "rows": m.rows, "cols": m.cols, "nnz": m.nnz, "bytes": m.bytes}))
        .collect();
    let mut report = json!({
        "source": source,
        "layers": weights.layers.len(),
        "hidden": weights.layers[0].hidden,
        "input": weights.input(),
        "directions": weights.layers[0].directions.len(),
        "vocab": plan.vocab(),
        "batch": b,
        "seq": t,
        "threads": threads,
        "isa": kernels::isa::active().name(),
        "gemm_isa": kernels::isa::gemm_level().name(),
        "dtype": format!("{:?}", args.dtype).to_lowercase(),
        "format": match format { FormatChoice::Auto => "auto".to_string(), FormatChoice::Fixed(f) => f.to_string() },
        "median_ms": median,
        "p10_ms": samples.quantile(0.1),
        "p90_ms": samples.quantile(0.9),
        "reps": samples.0.len(),
        "plan_build_ms": build_ms,
        "bytes_per_run": bytes,
        "flops_per_run": flops,
        "gb_per_s": gbs,
        "gflop_per_s": flops / median / 1e6,
        "copy_gb_per_s": bw.copy_gbs,
        "read_gb_per_s": bw.read_gbs,
        "bandwidth_floor_ms": floor_ms,
        "floor_share": floor_ms / median,
        "step_threads": plan.stack().step_threads(),
        "step_split": plan.stack().step_split(),
        "matrices": matrices,
        "decoder_format": plan.decoder_format(),
    });
    let csr = |f: &str| f.contains("csr");
    if plan.stack().matrices().iter().any(|m| csr(&m.format))
        || plan.decoder_format().is_some_and(|f| csr(&f))
    {
        // Which few-batch CSR kernel ran (measured per CPU; docs/benchmarks.md, "CSR gathers").
        report["csr_gather"] = json!(kernels::packed::gather_label(kernels::isa::active()));
    }
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{source}: L={} H={} B={b} T={t} threads={threads} {}\n  latency median {median:.3} ms (p10 {:.3}, p90 {:.3}, {} runs)\n  {:.1} GB/s of weights, {:.1} GFLOP/s; memory copy {:.1} GB/s, read {:.1} GB/s: {:.0}% of the bandwidth floor ({floor_ms:.3} ms)",
            report["layers"], report["hidden"], report["format"].as_str().unwrap_or(""),
            samples.quantile(0.1), samples.quantile(0.9), samples.0.len(),
            gbs, flops / median / 1e6, bw.copy_gbs, bw.read_gbs, 100.0 * floor_ms / median
        );
        println!("  {}", crate::commands::isa_line());
        for m in plan.stack().matrices() {
            println!(
                "  {:<22} {:>6}x{:<6} {:<10} nnz {:>9}  {:>7.2} MB",
                m.name,
                m.rows,
                m.cols,
                m.format,
                m.nnz,
                m.bytes as f64 / 1e6
            );
        }
    }
    Ok(0)
}

/// What the threads of a split step loop own (`--step-split`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StepSplitArg {
    /// Hidden units: every thread runs every sequence, a barrier per step.
    Units,
    /// Batch rows: every thread runs its own sequences, no barrier.
    Batch,
}
