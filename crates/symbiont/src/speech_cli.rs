//! `train`, `eval` and `transcribe` for speech (AN4, DeepSpeech2): a config with
//! `[model] arch = "deepspeech"` or a speech checkpoint folder routes here from the LM commands.

use crate::commands::set_threads;
use crate::{EvalArgs, TrainArgs, TranscribeArgs};
use kernels::device::Device;
use kernels::isa;
use serde_json::json;
use speech::an4::Split;
use speech::checkpoint::load_model;
use speech::config::SpeechConfig;
use speech::data::{featurize, BadFiles, Dataset};
use speech::deepspeech::{DeepSpeech, SpeechPlan};
use speech::labels::decode;
use speech::training::{evaluate, train, Decoder, TrainOptions};
use std::error::Error;
use std::path::PathBuf;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn cpu_only(device: Device, what: &str) -> Result<()> {
    if device != Device::Cpu {
        return Err(format!(
            "speech {what} runs on the CPU only for now; --device {device} is not supported for \
             DeepSpeech models (the CUDA backend covers the word language model)"
        )
        .into());
    }
    Ok(())
}

fn decoder(beam: Option<usize>) -> Result<Decoder> {
    match beam {
        None => Ok(Decoder::Greedy),
        Some(0) => Err("--beam must be at least 1".into()),
        Some(w) => Ok(Decoder::Beam(w)),
    }
}

/// `symbiont train` with a speech config (or `--resume` of a speech run).
pub fn train_speech(args: TrainArgs, threads: Option<usize>, device: Device) -> Result<u8> {
    cpu_only(device, "training")?;
    let config = match (&args.config, &args.resume) {
        (_, Some(dir)) => SpeechConfig::from_file(&dir.join("config.toml"))?,
        (Some(path), None) => SpeechConfig::from_file(path)?,
        (None, None) => return Err("give --config FILE (or --resume DIR)".into()),
    };
    set_threads(threads, 0)?;
    let out = match (&args.out, &args.resume, &args.config) {
        (Some(o), _, _) => o.clone(),
        (None, Some(r), _) => r.clone(),
        (None, None, Some(c)) => {
            let stem = c.file_stem().and_then(|s| s.to_str()).unwrap_or("run");
            PathBuf::from("runs").join(stem)
        }
        (None, None, None) => unreachable!("checked above"),
    };
    let opts = TrainOptions {
        data_dir: config.resolve_data_dir(args.data_dir.as_deref()),
        out: out.clone(),
        max_steps: args.max_steps,
        resume: args.resume.clone(),
        interrupted: Some(&crate::signals::INTERRUPTED),
    };
    crate::signals::install("saving a checkpoint after this step", "without saving")?;
    // Progress goes to stderr in both modes: --json keeps stdout for the one JSON object.
    let quiet = args.no_progress;
    let mut log = |line: String| {
        if !quiet {
            eprintln!("{line}");
        }
    };
    let epochs = config.schedule.epochs;
    let s = train(config, &opts, &mut log)?;
    let rates = s.test.as_ref().map(|e| &e.rates);
    let (status, code) = if s.interrupted {
        ("interrupted", crate::signals::exit_code())
    } else if s.state.epochs < epochs {
        ("max_steps", 0)
    } else {
        ("finished", 0)
    };
    if args.json {
        let out_json = json!({
            "status": status,
            "checkpoint": out.display().to_string(),
            "epochs": s.state.epochs,
            "steps": s.state.steps,
            "params": s.params,
            "rnn_params": s.rnn_params,
            "nonzero_params": s.nonzero_params,
            "density": s.density,
            "units_alive": s.units_alive,
            "train_loss": s.state.history.last().map(|h| h.train_loss),
            "wer": rates.map(|r| r.wer),
            "cer": rates.map(|r| r.cer),
            "wer_mean_utterance": rates.map(|r| r.wer_mean_utterance),
            "split": "test",
            "decoder": "greedy",
            "train_seconds": s.train_seconds,
            "step_seconds": s.step_seconds,
            "audio_seconds_per_second": s.audio_per_second,
            "device": "cpu",
            "isa": isa::active().to_string(),
            "threads": rayon::current_num_threads(),
            "history": s.state.history,
        });
        println!("{}", serde_json::to_string_pretty(&out_json)?);
    } else if let Some(r) = rates {
        println!(
            "{} epochs, {} steps: test WER {:.2}% CER {:.2}% (mean per utterance {:.2}%), \
             {:.1} s of audio per second; checkpoint {}",
            s.state.epochs,
            s.state.steps,
            r.wer,
            r.cer,
            r.wer_mean_utterance,
            s.audio_per_second,
            out.display()
        );
    } else {
        println!(
            "interrupted after {} steps; checkpoint {} (continue with --resume)",
            s.state.steps,
            out.display()
        );
    }
    Ok(code)
}

/// `symbiont eval` of a speech checkpoint.
pub fn eval_speech(args: EvalArgs, threads: Option<usize>, device: Device) -> Result<u8> {
    cpu_only(device, "evaluation")?;
    set_threads(threads, 0)?;
    if args.dtype.is_some() || args.format.is_some() {
        return Err(
            "--dtype and --format choose an LM inference plan; speech models evaluate in f32"
                .into(),
        );
    }
    let split = match args.split.as_str() {
        "train" => Split::Train,
        "test" => Split::Test,
        other => return Err(format!("AN4 has no `{other}` split: use test or train").into()),
    };
    let dec = decoder(args.beam)?;
    let config = SpeechConfig::from_file(&args.checkpoint.join("config.toml")).ok();
    let data_dir = match (&args.data_dir, &config) {
        (Some(d), _) => d.clone(),
        (None, Some(c)) => c.resolve_data_dir(None),
        (None, None) => speech::config::default_data_dir(),
    };
    let mut model = load_model(&args.checkpoint)?;
    let data = Dataset::load(&data_dir, split, BadFiles::Fail)?;
    let e = evaluate(&mut model, &data, args.batch.max(1), dec);
    let r = &e.rates;
    if args.json {
        let out = json!({
            "checkpoint": args.checkpoint.display().to_string(),
            "split": args.split,
            "wer": r.wer,
            "cer": r.cer,
            "wer_mean_utterance": r.wer_mean_utterance,
            "loss": e.loss,
            "utterances": r.utterances,
            "words": r.words,
            "decoder": dec.describe(),
            "params": model.params.len(),
            "rnn_params": model.rnn_params(),
            "seconds": e.seconds,
            "audio_seconds": e.audio_seconds,
            "device": "cpu",
            "isa": isa::active().to_string(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{} ({} utterances, {} words, {}): WER {:.2}% CER {:.2}% (mean per utterance {:.2}%), \
             CTC loss {:.3}; {:.1} s for {:.0} s of audio",
            args.split,
            r.utterances,
            r.words,
            dec.describe(),
            r.wer,
            r.cer,
            r.wer_mean_utterance,
            e.loss,
            e.seconds,
            e.audio_seconds
        );
    }
    Ok(0)
}

/// `symbiont transcribe --model DIR FILE.wav…`: one line per file.
pub fn transcribe(args: TranscribeArgs, threads: Option<usize>, device: Device) -> Result<u8> {
    cpu_only(device, "transcription")?;
    set_threads(threads, 0)?;
    let dec = decoder(args.beam)?;
    let model = load_model(&args.model)?;
    // The deployment plan (BatchNorms folded, recurrent layers on infer's kernels), built for
    // the first file's length; it runs any length after.
    let mut plan: Option<SpeechPlan> = None;
    for file in &args.files {
        let spec = featurize(file)?;
        let t = model.config.output_frames(spec.frames);
        if t == 0 {
            return Err(format!(
                "{}: {} frames ({:.2} s) are too short for the model's convolutions",
                file.display(),
                spec.frames,
                spec.frames as f64 / 100.0
            )
            .into());
        }
        let plan = match &mut plan {
            Some(p) => p,
            None => plan.insert(SpeechPlan::new(&model, &plan_options(&model, 1, t))?),
        };
        // One utterance: the (T, 1, 29) logits are (T, 29).
        let logits = plan
            .run(&[&spec])
            .map_err(|e| format!("{}: {e}", file.display()))?;
        let text = decode(&dec.decode(&logits));
        if args.files.len() > 1 {
            println!("{}\t{text}", file.display());
        } else {
            println!("{text}");
        }
    }
    Ok(0)
}

/// Plan options for `model` at `batch` utterances of `seq` output frames, on all threads: dense
/// matrices, or formats timed per matrix when the recurrent weights are mostly zero.
fn plan_options(model: &DeepSpeech, batch: usize, seq: usize) -> infer::PlanOptions {
    infer::PlanOptions {
        format: infer::FormatChoice::default_for(&model.recurrent_weights()),
        threads: rayon::current_num_threads(),
        batch,
        seq,
        ..infer::PlanOptions::default()
    }
}

/// `symbiont compact` of a speech checkpoint: the model without its silenced units, in `--out`
/// (model.safetensors, and config.toml with the new width when the source has one).
pub fn compact_speech(args: crate::CompactArgs) -> Result<u8> {
    if crate::commands::same_path(&args.checkpoint, &args.out) {
        return Err(format!(
            "--out {} would overwrite the checkpoint being compacted; choose another folder",
            args.out.display()
        )
        .into());
    }
    let model = load_model(&args.checkpoint)?;
    let small = model.compact()?;
    speech::checkpoint::save_model(&args.out, &small)?;
    let source_config = args.checkpoint.join("config.toml");
    if source_config.is_file() {
        let mut config = SpeechConfig::from_file(&source_config)?;
        config.model.hidden = small.config.hidden;
        config.compress = None;
        config.run.init_from = None;
        let path = args.out.join("config.toml");
        std::fs::write(&path, config.to_toml()).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let nonzero =
        |m: &speech::deepspeech::DeepSpeech| m.params.iter().filter(|&&v| v != 0.0).count();
    let summary = json!({
        "checkpoint": args.out.display().to_string(),
        "hidden_before": model.config.hidden,
        "hidden_after": small.config.hidden,
        "params_before": model.params.len(),
        "params_after": small.params.len(),
        "nonzero_before": nonzero(&model),
        "nonzero_after": nonzero(&small),
    });
    if args.json {
        println!("{summary}");
    } else {
        println!(
            "hidden {} -> {}; {} -> {} parameters ({} -> {} non-zero); written to {}",
            model.config.hidden,
            small.config.hidden,
            model.params.len(),
            small.params.len(),
            nonzero(&model),
            nonzero(&small),
            args.out.display()
        );
    }
    Ok(0)
}

/// `symbiont bench --model DIR` of a speech checkpoint: the latency of its deployment plan
/// (`SpeechPlan`: BatchNorms folded, recurrent layers on `infer`'s dense or sparse kernels) on
/// `--batch` utterances of `--audio-seconds` each, timed by the plans' harness
/// (`infer::bench::time_runs`). `--format` defaults to dense, or to `auto` (measured per matrix)
/// when any recurrent matrix is at least half zeros (`FormatChoice::default_for`, as the LM bench).
pub fn bench_speech(args: crate::inference::BenchArgs, threads: Option<usize>) -> Result<u8> {
    set_threads(threads, 0)?;
    let dir = args.model.clone().expect("a speech checkpoint folder");
    if args.batch == 0 || args.reps == 0 {
        return Err("--batch and --reps must be > 0".into());
    }
    if !(args.audio_seconds.is_finite() && args.audio_seconds > 0.0) {
        return Err("--audio-seconds must be positive".into());
    }
    let model = load_model(&dir)?;
    let frames = (args.audio_seconds * 100.0).round() as usize;
    let out_frames = model.config.output_frames(frames);
    if out_frames == 0 {
        return Err(format!(
            "--audio-seconds {}: too short for the model's convolutions",
            args.audio_seconds
        )
        .into());
    }
    let format = args
        .format
        .unwrap_or_else(|| infer::FormatChoice::default_for(&model.recurrent_weights()));
    let opts = infer::PlanOptions {
        dtype: args.dtype,
        format,
        threads: rayon::current_num_threads(),
        batch: args.batch,
        seq: out_frames,
        step_threads: args.step_threads,
        split_batch: args.step_split == Some(crate::inference::StepSplitArg::Batch),
    };
    let build = std::time::Instant::now();
    let mut plan = SpeechPlan::new(&model, &opts)?;
    let build_ms = build.elapsed().as_secs_f64() * 1e3;
    let spec = speech::engine::synthetic_spectrogram(frames, args.seed);
    let specs = vec![&spec; args.batch];
    let mut failure = None;
    let mut stages: [Vec<f64>; 3] = Default::default();
    let samples =
        infer::bench::time_runs(
            args.warmup,
            args.reps,
            100_000,
            args.min_time,
            || match plan.run(&specs) {
                Ok(_) => {
                    for (all, s) in stages.iter_mut().zip(plan.stage_seconds()) {
                        all.push(s * 1e3);
                    }
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            },
        );
    // The warm-up runs come first: keep the timed ones.
    let stage_median = |k: usize| {
        let all = &stages[k];
        let mut v = all[all.len().saturating_sub(samples.0.len())..].to_vec();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    if let Some(e) = failure {
        return Err(e.into());
    }
    let audio = args.audio_seconds * args.batch as f64;
    let (median, p10, p90) = (
        samples.median(),
        samples.quantile(0.1),
        samples.quantile(0.9),
    );
    let (nnz, size) = plan
        .matrices()
        .iter()
        .fold((0, 0), |(z, n), m| (z + m.nnz, n + m.rows * m.cols));
    let density = nnz as f64 / size.max(1) as f64;
    let matrices: Vec<_> = plan
        .matrices()
        .iter()
        .map(|m| {
            json!({"name": m.name, "format": m.format, "rows": m.rows, "cols": m.cols,
                   "nnz": m.nnz, "bytes": m.bytes})
        })
        .collect();
    let out = json!({
        "model": dir.display().to_string(),
        "kind": "deepspeech",
        "engine": "plan",
        "hidden": model.config.hidden,
        "layers": model.config.layers,
        "gate_hidden": model.config.gate_hidden,
        "params": model.params.len(),
        "nonzero_params": model.params.iter().filter(|&&v| v != 0.0).count(),
        "recurrent_density": density,
        "batch": args.batch,
        "audio_seconds": args.audio_seconds,
        "format": format!("{format:?}"),
        "dtype": format!("{:?}", args.dtype),
        "build_ms": build_ms,
        "step_threads": plan.step_threads(),
        "matrices": matrices,
        "median_ms": median,
        "stage_median_ms": {
            "front_end": stage_median(0),
            "recurrent": stage_median(1),
            "output": stage_median(2),
        },
        "p10_ms": p10,
        "p90_ms": p90,
        "ms_per_audio_second": median / audio,
        "real_time_factor": median / 1e3 / audio,
        "reps": samples.0.len(),
        "threads": rayon::current_num_threads(),
        "isa": isa::active().to_string(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{} (hidden {}, {} layers): batch {} x {:.2} s of audio: median {:.2} ms (p10 {:.2}, \
             p90 {:.2}), {:.2} ms per second of audio",
            dir.display(),
            model.config.hidden,
            model.config.layers,
            args.batch,
            args.audio_seconds,
            median,
            p10,
            p90,
            median / audio
        );
    }
    Ok(0)
}
