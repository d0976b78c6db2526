//! Training and evaluating the DeepSpeech2 model on AN4: CTC loss averaged over the batch's
//! utterances, global gradient-norm clipping, the LM trainer's optimizers, the learning rate
//! annealed per epoch, SortaGrad, a checkpoint at every epoch end (resumable), and test-set
//! WER / CER with greedy or prefix-beam decoding.

use crate::checkpoint::{load_model, load_run, save_run, EpochRecord, TrainState};
use crate::config::SpeechConfig;
use crate::data::{epoch_order, BadFiles, Dataset};
use crate::deepspeech::{ctc_batch, Batch, DeepSpeech, Mode};
use crate::features::Spectrogram;
use crate::labels::{decode, LABELS};
use crate::metrics::{error_rates, ErrorRates};
use crate::{an4::Split, beam::prefix_beam_search, ctc::greedy_decode};
use flow::CompressHook;
use model::backend::Cpu;
use model::checkpoint::{write_tensors, TensorFile};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use train::optim::{clip_factor, grad_norm, OptimState, Optimizer};
use train::trainer::{StepInfo, TrainHook};

/// How logits become label sequences.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoder {
    Greedy,
    /// Prefix beam search with this many prefixes kept per frame.
    Beam(usize),
}

impl Decoder {
    pub fn decode(&self, logits: &[f32]) -> Vec<u32> {
        match *self {
            Decoder::Greedy => greedy_decode(logits, LABELS),
            Decoder::Beam(width) => prefix_beam_search(logits, LABELS, width),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Decoder::Greedy => "greedy".into(),
            Decoder::Beam(w) => format!("beam-{w}"),
        }
    }
}

/// A test-set evaluation.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub rates: ErrorRates,
    /// Mean CTC loss per utterance.
    pub loss: f64,
    /// (reference, hypothesis) per utterance, in corpus order.
    pub transcripts: Vec<(String, String)>,
    pub seconds: f64,
    pub audio_seconds: f64,
}

/// Runs `model` (BatchNorm in eval mode) over `data` in length-sorted batches of `batch`.
pub fn evaluate(
    model: &mut DeepSpeech,
    data: &Dataset,
    batch: usize,
    decoder: Decoder,
) -> Evaluation {
    let start = Instant::now();
    let mut hyps = vec![String::new(); data.len()];
    let mut loss = 0.0;
    for idx in data.length_batches(batch) {
        let specs: Vec<_> = idx.iter().map(|&i| &data.features[i]).collect();
        let targets: Vec<Vec<u32>> = idx.iter().map(|&i| data.targets[i].clone()).collect();
        let b = Batch::new(&specs, targets);
        let acts = model.forward(&b, Mode::Eval);
        let mut scratch = vec![0.0; acts.logits.len()];
        loss += ctc_batch(&acts, &b.targets, 1.0, &mut scratch).0;
        for (k, &i) in idx.iter().enumerate() {
            hyps[i] = decode(&decoder.decode(&acts.utterance_logits(k)));
        }
    }
    let transcripts: Vec<(String, String)> = data
        .utterances
        .iter()
        .zip(hyps)
        .map(|(u, h)| (u.text.clone(), h))
        .collect();
    let rates = error_rates(transcripts.iter().map(|(r, h)| (r.as_str(), h.as_str())));
    Evaluation {
        rates,
        loss: loss / data.len() as f64,
        transcripts,
        seconds: start.elapsed().as_secs_f64(),
        audio_seconds: data.seconds(),
    }
}

/// Where and how long to train.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub data_dir: PathBuf,
    pub out: PathBuf,
    /// Stop (with a checkpoint) after this many steps in all.
    pub max_steps: Option<u64>,
    /// Continue the run saved in this folder.
    pub resume: Option<PathBuf>,
    /// Checked before every step: once set, the run saves its checkpoint (resumable at the next
    /// batch) and returns without a final evaluation (the CLI sets it on SIGINT / SIGTERM).
    pub interrupted: Option<&'static AtomicBool>,
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    pub state: TrainState,
    pub params: usize,
    pub rnn_params: usize,
    /// Non-zero parameters (what pruning leaves).
    pub nonzero_params: usize,
    /// Density of the compression masks (1 without `[compress]`).
    pub density: f64,
    /// Live hidden units per recurrent layer.
    pub units_alive: Vec<usize>,
    /// The last evaluation on the test set (after the last epoch run, or at a step limit); none
    /// when the run was interrupted.
    pub test: Option<Evaluation>,
    /// Stopped by [`TrainOptions::interrupted`].
    pub interrupted: bool,
    /// Training audio seconds per second of training steps (batch assembly, forward, CTC,
    /// backward, clipping, update, compression), over this invocation.
    pub audio_per_second: f64,
    /// Seconds spent in training steps, and in this invocation overall.
    pub step_seconds: f64,
    pub train_seconds: f64,
}

/// The model, its optimizer, the run's state and its compression hook.
struct Run {
    model: DeepSpeech,
    opt: Optimizer,
    state: TrainState,
    hook: Option<CompressHook>,
    grads: Vec<f32>,
    batches_per_epoch: usize,
    /// Audio seconds and seconds of training steps in this invocation.
    audio: f64,
    step_seconds: f64,
}

/// The training examples of an epoch: its features (augmented or not) and the targets.
#[derive(Clone, Copy)]
struct Examples<'a> {
    features: &'a [Spectrogram],
    targets: &'a [Vec<u32>],
}

const COMPRESS_FILE: &str = "compress.safetensors";

/// Builds the run: resumed from `opts.resume`, or fresh (optionally from `[run] init_from`).
fn start_run(
    config: SpeechConfig,
    opts: &TrainOptions,
    batches_per_epoch: usize,
    log: &mut dyn FnMut(String),
) -> Result<(Run, SpeechConfig), String> {
    let (model, config, moments, state) = match &opts.resume {
        Some(dir) => {
            let r = load_run(dir)?;
            log(format!(
                "resuming {} after epoch {} (step {})",
                dir.display(),
                r.state.epochs,
                r.state.steps
            ));
            (r.model, r.config, r.moments, r.state)
        }
        None => {
            let model = match &config.run.init_from {
                Some(dir) => {
                    let m = load_model(dir)?;
                    if m.config != config.deepspeech() {
                        return Err(format!(
                            "[run] init_from = {}: its model shape {:?} is not the config's {:?}",
                            dir.display(),
                            m.config,
                            config.deepspeech()
                        ));
                    }
                    log(format!("starting from the weights of {}", dir.display()));
                    m
                }
                None => DeepSpeech::new(config.deepspeech(), config.run.seed)?,
            };
            (
                model,
                config,
                [Vec::new(), Vec::new()],
                TrainState::default(),
            )
        }
    };
    let mut opt = Optimizer::new(config.optim.clone(), model.params.len());
    let [m, v] = moments;
    if !m.is_empty() {
        opt.m = m;
    }
    if !v.is_empty() {
        opt.v = v;
    }
    opt.steps = state.optimizer_steps;
    let mut run = Run {
        grads: vec![0.0; model.params.len()],
        model,
        opt,
        state,
        hook: None,
        batches_per_epoch,
        audio: 0.0,
        step_seconds: 0.0,
    };
    if let Some(table) = &config.compress {
        let total = (batches_per_epoch * config.schedule.epochs) as u64;
        let mut hook = CompressHook::<Cpu>::new(
            table,
            "[compress]",
            Box::new(run.model.unit_structure()),
            &run.model.layout,
            config.run.seed,
            batches_per_epoch,
            total,
        )
        .map_err(|e| e.to_string())?;
        let extra = match &opts.resume {
            Some(dir) if dir.join(COMPRESS_FILE).is_file() => {
                Some(TensorFile::read(&dir.join(COMPRESS_FILE)).map_err(|e| e.to_string())?)
            }
            _ => None,
        };
        let fresh = run.state.steps == 0;
        hook.restore(extra.as_ref(), fresh, &mut run.model.params, &mut run.opt)
            .map_err(|e| e.to_string())?;
        run.hook = Some(hook);
    }
    Ok((run, config))
}

impl Run {
    /// One training step on `idx`; returns (summed loss, utterances counted, skipped).
    fn step(
        &mut self,
        examples: Examples,
        idx: &[usize],
        epoch: usize,
        lr: f64,
        clip: f64,
        log: &mut dyn FnMut(String),
    ) -> Result<(f64, usize, f64, bool), String> {
        let t0 = Instant::now();
        let specs: Vec<_> = idx.iter().map(|&i| &examples.features[i]).collect();
        let targets = idx.iter().map(|&i| examples.targets[i].clone()).collect();
        let batch = Batch::new(&specs, targets);
        let mut acts = self.model.forward(&batch, Mode::Train);
        let mut dlogits = vec![0.0; acts.logits.len()];
        let n = batch.n as f32;
        let (loss, impossible) = ctc_batch(&acts, &batch.targets, 1.0 / n, &mut dlogits);
        self.grads.fill(0.0);
        self.model
            .backward(&batch, &mut acts, &dlogits, &mut self.grads);
        self.state.steps += 1;
        let info = StepInfo {
            step: self.state.steps,
            epoch,
            batches_per_epoch: self.batches_per_epoch,
        };
        if let Some(h) = self.hook.as_mut() {
            h.after_backward(&Cpu, &info, &mut self.grads)
                .map_err(|e| e.to_string())?;
        }
        let norm = grad_norm(&self.grads);
        self.audio += specs.iter().map(|s| s.frames as f64 / 100.0).sum::<f64>();
        let finite = loss.is_finite() && norm.is_finite();
        if finite {
            let gs = clip_factor(norm, clip);
            self.opt
                .step_scaled(&mut self.model.params, &self.grads, gs, lr);
        }
        // The hook runs even after a skipped update: its phases fire at fixed steps.
        if let Some(h) = self.hook.as_mut() {
            let state = OptimState::host(&mut self.opt.m, &mut self.opt.v);
            let events = h
                .after_step(&Cpu, &info, &mut self.model.params, state)
                .map_err(|e| e.to_string())?;
            for e in events {
                log(format!("step {}: {e}", self.state.steps));
            }
        }
        self.step_seconds += t0.elapsed().as_secs_f64();
        Ok((loss, batch.n - impossible, norm, finite))
    }

    fn save(&mut self, out: &Path, config: &SpeechConfig) -> Result<(), String> {
        self.state.optimizer_steps = self.opt.steps;
        save_run(
            out,
            &self.model,
            config,
            [&self.opt.m, &self.opt.v],
            &self.state,
        )?;
        if let Some(h) = self.hook.as_mut() {
            TrainHook::<Cpu>::sync(h, &Cpu).map_err(|e| e.to_string())?;
            write_tensors(&out.join(COMPRESS_FILE), &h.state(), HashMap::new())
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

fn stop_requested(opts: &TrainOptions) -> bool {
    opts.interrupted.is_some_and(|f| f.load(Ordering::SeqCst))
}

/// Saves a run stopped by a signal so that it resumes at batch `at` of the current epoch.
fn save_interrupted(
    run: &mut Run,
    config: &SpeechConfig,
    opts: &TrainOptions,
    at: usize,
    log: &mut dyn FnMut(String),
) -> Result<(), String> {
    run.state.batches_in_epoch = at;
    run.save(&opts.out, config)?;
    log(format!(
        "interrupted: checkpoint saved after step {} (resume with --resume {})",
        run.state.steps,
        opts.out.display()
    ));
    Ok(())
}

/// Trains (or resumes) a model; `log` receives progress lines.
pub fn train(
    config: SpeechConfig,
    opts: &TrainOptions,
    log: &mut dyn FnMut(String),
) -> Result<TrainSummary, String> {
    let bad = if config.data.skip_bad_files {
        BadFiles::Skip
    } else {
        BadFiles::Fail
    };
    let load = |split| Dataset::load(&opts.data_dir, split, bad).map_err(|e| e.to_string());
    let (train_set, test_set) = (load(Split::Train)?, load(Split::Test)?);
    for s in train_set.skipped.iter().chain(&test_set.skipped) {
        log(format!("warning: skipped {s}"));
    }
    let batches = train_set.length_batches(config.data.batch);
    let (mut run, config) = start_run(config, opts, batches.len(), log)?;
    log(format!(
        "model {} parameters ({} recurrent); train {} utterances ({:.0} s), test {}",
        run.model.params.len(),
        run.model.rnn_params(),
        train_set.len(),
        train_set.seconds(),
        test_set.len()
    ));
    let started = Instant::now();
    let mut last_eval = None;
    let mut interrupted = false;
    'epochs: for epoch in run.state.epochs..config.schedule.epochs {
        if stop_requested(opts) {
            // Before this epoch's augmentation: where the last run stopped stays the same.
            let at = run.state.batches_in_epoch;
            save_interrupted(&mut run, &config, opts, at, log)?;
            interrupted = true;
            break;
        }
        let lr = config.schedule.lr(config.optim.lr, epoch);
        let t0 = Instant::now();
        let (mut loss_sum, mut utts, mut skipped) = (0.0, 0usize, 0usize);
        // A run stopped mid-epoch resumes at the first batch it had not trained on.
        let done = std::mem::take(&mut run.state.batches_in_epoch);
        let order = epoch_order(batches.len(), epoch, config.run.seed, config.data.sortagrad);
        let augmented = match &config.data.augment {
            Some(a) => {
                let t = Instant::now();
                let f = train_set
                    .augmented_features(a, config.run.seed, epoch)
                    .map_err(|e| e.to_string())?;
                log(format!(
                    "epoch {}: augmented features in {:.1} s",
                    epoch + 1,
                    t.elapsed().as_secs_f64()
                ));
                Some(f)
            }
            None => None,
        };
        let features = augmented.as_deref().unwrap_or(&train_set.features);
        for (k, &bi) in order.iter().enumerate().skip(done) {
            if stop_requested(opts) {
                save_interrupted(&mut run, &config, opts, k, log)?;
                interrupted = true;
                break 'epochs;
            }
            if opts.max_steps.is_some_and(|m| run.state.steps >= m) {
                run.state.batches_in_epoch = k;
                run.save(&opts.out, &config)?;
                log(format!(
                    "stopped at the step limit ({} steps)",
                    run.state.steps
                ));
                break 'epochs;
            }
            let clip = config.optim.clip_norm;
            let (loss, n, norm, finite) = run.step(
                Examples {
                    features,
                    targets: &train_set.targets,
                },
                &batches[bi],
                epoch,
                lr,
                clip,
                log,
            )?;
            if !finite {
                skipped += 1;
                log(format!(
                    "step {}: non-finite loss or gradient, update skipped",
                    run.state.steps
                ));
                continue;
            }
            loss_sum += loss;
            utts += n;
            if config.run.log_every > 0 && (k + 1) % config.run.log_every == 0 {
                log(format!(
                    "epoch {} step {} batch {}/{}: loss {:.3}, grad norm {:.1}, {:.1} s",
                    epoch + 1,
                    run.state.steps,
                    k + 1,
                    batches.len(),
                    loss / n.max(1) as f64,
                    norm,
                    t0.elapsed().as_secs_f64()
                ));
            }
        }
        if stop_requested(opts) {
            // Every batch is trained: a resumed run goes straight to this epoch's evaluation.
            save_interrupted(&mut run, &config, opts, order.len(), log)?;
            interrupted = true;
            break;
        }
        let evaluate_now = (config.run.eval_every > 0 && (epoch + 1) % config.run.eval_every == 0)
            || epoch + 1 == config.schedule.epochs;
        let test = evaluate_now.then(|| {
            evaluate(
                &mut run.model,
                &test_set,
                config.data.batch,
                Decoder::Greedy,
            )
        });
        let record = EpochRecord {
            epoch: epoch + 1,
            lr,
            train_loss: loss_sum / utts.max(1) as f64,
            seconds: t0.elapsed().as_secs_f64(),
            test_wer: test.as_ref().map(|e| e.rates.wer),
            test_cer: test.as_ref().map(|e| e.rates.cer),
            test_wer_mean_utterance: test.as_ref().map(|e| e.rates.wer_mean_utterance),
            skipped_batches: skipped,
        };
        log(format!(
            "epoch {} done: train loss {:.3}, lr {:.2e}, {:.0} s{}",
            epoch + 1,
            record.train_loss,
            lr,
            record.seconds,
            test.as_ref()
                .map(|e| format!(", test WER {:.2}% CER {:.2}%", e.rates.wer, e.rates.cer))
                .unwrap_or_default()
        ));
        run.state.history.push(record);
        run.state.epochs = epoch + 1;
        run.save(&opts.out, &config)?;
        last_eval = test;
    }
    let train_seconds = started.elapsed().as_secs_f64();
    let test = match last_eval {
        _ if interrupted => None,
        Some(e) => Some(e),
        None => Some(evaluate(
            &mut run.model,
            &test_set,
            config.data.batch,
            Decoder::Greedy,
        )),
    };
    let (density, units_alive) = match &run.hook {
        Some(h) => (h.density(), h.units_alive()),
        None => (1.0, vec![run.model.config.hidden; run.model.config.layers]),
    };
    Ok(TrainSummary {
        params: run.model.params.len(),
        rnn_params: run.model.rnn_params(),
        nonzero_params: run.model.params.iter().filter(|&&v| v != 0.0).count(),
        density,
        units_alive,
        state: run.state,
        test,
        interrupted,
        audio_per_second: run.audio / run.step_seconds.max(1e-9),
        step_seconds: run.step_seconds,
        train_seconds,
    })
}
