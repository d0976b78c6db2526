//! The subcommands: argument handling and printing around the library calls.

use crate::devices::on_device;
use crate::signals;
use crate::{CompactArgs, EvalArgs, GradcheckArgs, InspectArgs, IsaArgs, TrainArgs};
use kernels::device::Device;
use kernels::isa;
use model::backend::Backend;
use serde_json::json;
use std::error::Error;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;
use train::checkpoint::{Checkpoint, DIR_NAME};
use train::ptb::{load_ptb, load_split, Split};
use train::trainer::{fresh_checkpoint, train as run_training, Outcome, RunOptions};
use train::TrainConfig;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Whether `train` was given a speech config (`[model] arch = "deepspeech"`) or a speech run
/// to resume.
fn is_speech_run(args: &TrainArgs) -> bool {
    match (&args.resume, &args.config) {
        (Some(dir), _) => speech::checkpoint::is_speech_checkpoint(dir),
        (None, Some(path)) => {
            std::fs::read_to_string(path).is_ok_and(|text| speech::config::is_speech_config(&text))
        }
        (None, None) => false,
    }
}

/// Sizes rayon's global pool: `--threads`, else the config's, else all cores.
pub(crate) fn set_threads(cli: Option<usize>, config: usize) -> Result<()> {
    let n = cli.unwrap_or(config);
    if n > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| format!("cannot start {n} threads: {e}"))?;
    }
    Ok(())
}

pub fn train(args: TrainArgs, threads: Option<usize>, device: Device) -> Result<u8> {
    if is_speech_run(&args) {
        return crate::speech_cli::train_speech(args, threads, device);
    }
    let file_config = args
        .config
        .as_deref()
        .map(TrainConfig::from_file)
        .transpose()?;
    let (mut ckpt_opt, run_dir_default) = match &args.resume {
        Some(path) => {
            let ckpt = Checkpoint::load(path)?;
            let dir = Checkpoint::locate(path)?;
            let run_dir = if dir
                .file_name()
                .is_some_and(|n| n == DIR_NAME || n == "checkpoint.old")
            {
                dir.parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from("."))
            } else {
                dir.clone()
            };
            (Some(ckpt), run_dir)
        }
        None => {
            let Some(cfg_path) = &args.config else {
                return Err("give --config FILE (or --resume DIR to continue a run)".into());
            };
            let stem = cfg_path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("run");
            (None, PathBuf::from("runs").join(stem))
        }
    };
    let config = match (&file_config, &ckpt_opt) {
        (Some(c), Some(ck)) => {
            flow::run::check_compatible(c, &ck.config)?;
            c.clone()
        }
        (Some(c), None) => c.clone(),
        (None, Some(ck)) => ck.config.clone(),
        (None, None) => unreachable!("checked above"),
    };
    set_threads(threads, config.run.threads)?;
    let data_dir = config.resolve_data_dir(args.data_dir.as_deref());
    let corpus = load_ptb(&data_dir, config.data.verify_checksums)?;
    let out_dir = args.out.clone().unwrap_or(run_dir_default);
    let mut ckpt = match ckpt_opt.take() {
        Some(mut ck) => {
            ck.config = config.clone();
            ck.optimizer.config = config.optim.clone();
            eprintln!(
                "resuming at step {} (epoch {}, batch {}) into {}",
                ck.trainer.step,
                ck.trainer.epoch + 1,
                ck.trainer.batch,
                out_dir.display()
            );
            ck
        }
        None => fresh_checkpoint(&config, &corpus)?,
    };
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    std::fs::write(out_dir.join("config.toml"), config.to_toml())
        .map_err(|e| format!("{}: {e}", out_dir.display()))?;
    eprintln!(
        "PTB from {}: {} / {} / {} tokens, vocab {}; model {} params ({} without embedding/softmax); {} threads",
        data_dir.display(),
        corpus.train.len(),
        corpus.valid.len(),
        corpus.test.len(),
        corpus.vocab.len(),
        ckpt.model.num_params(),
        ckpt.model.num_params() - ckpt.model.num_embedding_params(),
        rayon::current_num_threads()
    );
    signals::install("saving a checkpoint after this step", "without saving")?;
    let opts = RunOptions {
        out_dir: out_dir.clone(),
        max_steps: args.max_steps,
        interrupted: &signals::INTERRUPTED,
        progress: !args.no_progress && std::io::stderr().is_terminal(),
    };
    let origin = args
        .config
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the checkpoint's config.toml".into());
    let (outcome, on) = on_device!(device, |be| {
        let on = Backend::<f32>::describe(be);
        eprintln!("training on {on}");
        let mut hook = flow::run::training_hook(&config, &corpus, &ckpt, &origin)?;
        (
            run_training(be, &mut ckpt, &corpus, &opts, hook.as_mut())?,
            on,
        )
    });
    let ckpt_dir = out_dir.join(DIR_NAME);
    let tr = &ckpt.trainer;
    let tokens_per_s = tr.tokens as f64 / tr.train_seconds.max(1e-9);
    let (status, code) = match &outcome {
        Outcome::Finished { .. } => ("finished", 0),
        Outcome::MaxSteps => ("max_steps", 0),
        Outcome::Interrupted => ("interrupted", signals::exit_code()),
    };
    let mut summary = json!({
        "status": status, "step": tr.step, "epoch": tr.epoch, "checkpoint": ckpt_dir,
        "train_seconds": tr.train_seconds, "tokens_per_s": tokens_per_s,
        "session_tokens_per_s": tr.session_tokens_per_s, "valid_ppl_per_epoch": tr.valid_ppl,
        "isa": isa::active().name(), "gemm_isa": isa::gemm_level().name(), "device": on,
    });
    if let Outcome::Finished { valid, test } = &outcome {
        summary["valid_ppl"] = json!(valid.perplexity);
        summary["test_ppl"] = json!(test.perplexity);
        summary["eval_batch"] = json!(config.data.eval_batch_size);
        eprintln!(
            "done: valid ppl {:.2}, test ppl {:.2} (eval batch {}); checkpoint {}",
            valid.perplexity,
            test.perplexity,
            config.data.eval_batch_size,
            ckpt_dir.display()
        );
    } else {
        eprintln!(
            "stopped ({status}) at step {}; checkpoint {} (continue with --resume {})",
            tr.step,
            ckpt_dir.display(),
            out_dir.display()
        );
    }
    if args.json {
        println!("{summary}");
    }
    Ok(code)
}

pub fn eval(args: EvalArgs, threads: Option<usize>, device: Device) -> Result<u8> {
    if speech::checkpoint::is_speech_checkpoint(&args.checkpoint) {
        return crate::speech_cli::eval_speech(args, threads, device);
    }
    if args.beam.is_some() {
        return Err("--beam decodes speech models; this is a language-model checkpoint".into());
    }
    let ckpt = Checkpoint::load(&args.checkpoint)?;
    set_threads(threads, ckpt.config.run.threads)?;
    if args.batch == 0 || args.bptt == 0 {
        return Err("--batch and --bptt must be > 0".into());
    }
    let split = Split::parse(&args.split).expect("clap restricts the values");
    let data_dir = ckpt.config.resolve_data_dir(args.data_dir.as_deref());
    let tokens = load_split(
        &data_dir,
        split,
        &ckpt.vocab,
        ckpt.config.data.verify_checksums,
    )?;
    let start = Instant::now();
    let plan = args.dtype.is_some() || args.format.is_some();
    if plan && device != Device::Cpu {
        return Err(format!(
            "--dtype and --format choose a CPU inference plan; they do not run on --device {device}"
        )
        .into());
    }
    let (r, engine) = if plan {
        let dtype = args.dtype.unwrap_or(infer::Dtype::F32);
        let format = args
            .format
            .unwrap_or(infer::FormatChoice::Fixed(kernels::packed::Format::Dense));
        let r =
            flow::evaluate_with_plan(&ckpt.model, &tokens, args.batch, args.bptt, dtype, format)?;
        (r, format!("plan-{dtype:?}").to_lowercase())
    } else {
        on_device!(device, |be| (
            flow::evaluate_checked_on(be, &ckpt.model, &tokens, args.batch, args.bptt)?,
            if device == Device::Cpu {
                "train".to_string()
            } else {
                format!("train on {}", Backend::<f32>::describe(be))
            },
        ))
    };
    let secs = start.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{}",
            json!({
                "perplexity": r.perplexity, "loss": r.loss, "tokens": r.tokens, "split": args.split,
                "batch": args.batch, "checkpoint": Checkpoint::locate(&args.checkpoint)?, "seconds": secs,
                "engine": engine, "isa": isa::active().name(), "gemm_isa": isa::gemm_level().name(),
            })
        );
    } else {
        println!(
            "{} perplexity {:.2} (loss {:.4}, {} tokens, batch {}, {:.1} s)",
            args.split, r.perplexity, r.loss, r.tokens, args.batch, secs
        );
    }
    Ok(0)
}

/// `symbiont isa`: the detected, active and supported levels and the gemm crate's level.
pub fn isa(args: IsaArgs) -> Result<u8> {
    let supported: Vec<&str> = isa::supported().iter().map(|l| l.name()).collect();
    if args.supported {
        for name in &supported {
            println!("{name}");
        }
        return Ok(0);
    }
    let (detected, active, gemm) = (isa::detected(), isa::active(), isa::gemm_level());
    let gather = kernels::packed::gather_label(active);
    if args.json {
        println!(
            "{}",
            json!({"detected": detected.name(), "active": active.name(),
                "supported": supported, "gemm_isa": gemm.name(), "csr_gather": gather})
        );
    } else {
        println!("detected   {detected}");
        let why = if isa_forced() { isa::ENV } else { "detected" };
        println!("active     {active} ({why})");
        println!("supported  {}", supported.join(" "));
        println!("gemm crate {gemm}");
        println!(
            "csr gather {gather} (few-batch sparse products; measured, or {})",
            kernels::packed::GATHER_ENV
        );
    }
    Ok(0)
}

/// Whether `SYMBIONT_ISA` chose the active level.
fn isa_forced() -> bool {
    std::env::var(isa::ENV).is_ok_and(|v| !v.trim().is_empty())
}

/// One line for the text output of bench and peak: the hand kernels' level and the gemm crate's.
pub(crate) fn isa_line() -> String {
    format!(
        "ISA: hand kernels at {} ({}), gemm crate at {}",
        isa::active(),
        if isa_forced() { isa::ENV } else { "detected" },
        isa::gemm_level()
    )
}

pub fn gradcheck(args: GradcheckArgs, threads: Option<usize>) -> Result<u8> {
    set_threads(threads, 0)?;
    let results = model::gradcheck::run_all();
    let failed = results.iter().filter(|r| !r.passed).count();
    if args.json {
        let rows: Vec<_> = results
            .iter()
            .map(|r| json!({"check": r.name, "elements": r.checked, "max_abs_err": r.max_abs_err, "max_rel_err": r.max_rel_err, "passed": r.passed}))
            .collect();
        println!(
            "{}",
            json!({"passed": failed == 0, "failed": failed, "checks": rows})
        );
    } else {
        println!(
            "{:<28} {:>8} {:>12} {:>12}  result",
            "check (f64, central diff.)", "elems", "max abs err", "max rel err"
        );
        for r in &results {
            println!(
                "{:<28} {:>8} {:>12.3e} {:>12.3e}  {}",
                r.name,
                r.checked,
                r.max_abs_err,
                r.max_rel_err,
                if r.passed { "ok" } else { "FAILED" }
            );
        }
        println!("{} checks, {} failed", results.len(), failed);
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

pub fn inspect(args: InspectArgs) -> Result<u8> {
    let path = &args.checkpoint;
    let model = if path.is_file() {
        let file = model::checkpoint::TensorFile::read(path)?;
        model::LanguageModel::<f32>::from_file(&file, 0.0)?
    } else {
        Checkpoint::load(path)?.model
    };
    let c = flow::count_params(&model);
    let (total, nonzero, total_core, nonzero_core) =
        (c.total, c.nonzero, c.total_core, c.nonzero_core);
    let tensors: Vec<_> = c
        .tensors
        .iter()
        .map(|t| {
            json!({"name": t.name, "shape": t.shape, "params": t.params, "nonzero": t.nonzero,
            "density": t.nonzero as f64 / t.params.max(1) as f64})
        })
        .collect();
    let per_layer: Vec<_> = c
        .layers
        .iter()
        .enumerate()
        .map(|(l, &(t, nz))| json!({"layer": l, "hidden": model.config.hidden_of(l), "params": t, "nonzero": nz}))
        .collect();
    let summary = json!({
        "params_total": total, "params_nonzero": nonzero,
        "params_without_embeddings": total_core, "params_nonzero_without_embeddings": nonzero_core,
        "density": nonzero as f64 / total.max(1) as f64, "vocab": model.config.vocab,
        "embedding": model.config.embedding_width(), "layers": per_layer, "tensors": tensors,
    });
    if args.json {
        println!("{summary}");
    } else {
        println!(
            "{:<24} {:>14} {:>12} {:>8}",
            "tensor", "shape", "non-zero", "density"
        );
        for t in &tensors {
            println!(
                "{:<24} {:>14} {:>12} {:>7.1}%",
                t["name"].as_str().unwrap_or(""),
                format!(
                    "{:?}",
                    t["shape"]
                        .as_array()
                        .map(|a| a
                            .iter()
                            .map(|v| v.as_u64().unwrap_or(0))
                            .collect::<Vec<_>>())
                        .unwrap_or_default()
                ),
                t["nonzero"],
                t["density"].as_f64().unwrap_or(0.0) * 100.0
            );
        }
        println!("total {total} params, {nonzero} non-zero; without embedding/softmax {total_core}, {nonzero_core} non-zero");
    }
    Ok(0)
}

/// Whether two paths name the same existing file or folder.
pub(crate) fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

pub fn compact(args: CompactArgs) -> Result<u8> {
    if speech::checkpoint::is_speech_checkpoint(&args.checkpoint) {
        return crate::speech_cli::compact_speech(args);
    }
    let mut ckpt = Checkpoint::load(&args.checkpoint)?;
    // Writing OUT/checkpoint over the source would replace the model being compacted.
    let source = Checkpoint::locate(&args.checkpoint)?;
    let target = args.out.join(DIR_NAME);
    if same_path(&source, &target) || same_path(&source, &args.out) {
        return Err(format!(
            "--out {} would overwrite the checkpoint being compacted ({}); choose another folder",
            args.out.display(),
            source.display()
        )
        .into());
    }
    let params_before = ckpt.model.num_params();
    let (before, after) = flow::compact::compact_checkpoint(&mut ckpt)?;
    let n = ckpt.model.num_params();
    let dir = ckpt.save(&args.out, &[])?;
    let summary = json!({"checkpoint": dir, "hidden_before": before, "hidden_after": after,
        "params_before": params_before, "params_after": n});
    if args.json {
        println!("{summary}");
    } else {
        println!(
            "hidden {before:?} -> {after:?}; {params_before} -> {n} parameters; written to {}",
            dir.display()
        );
    }
    Ok(0)
}
