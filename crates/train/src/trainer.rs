//! The training loop: truncated BPTT over PTB with the state carried across batches, the
//! Zaremba step schedule, gradient clipping, per-epoch validation, JSONL metrics, a progress
//! bar, atomic checkpoints, exact resume, Ctrl-C and non-finite-loss handling.

use crate::checkpoint::{Checkpoint, TrainerState};
use crate::config::Objective;
use crate::eval::{evaluate_on, EvalResult};
use crate::optim::{clip_factor, OptimState, Optimizer};
use crate::ptb::{Batched, Corpus};
use crate::resident::Resident;
use crate::{TrainConfig, TrainError};
use indicatif::{ProgressBar, ProgressStyle};
use kernels::rng::CounterRng;
use kernels::support::Support;
use model::backend::{Backend, Cpu, DeviceError};
use model::checkpoint::OutTensor;
use model::dropout::DropoutCtx;
use model::{LanguageModel, LmState};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Steps at the start of a session left out of its throughput figure.
pub const WARMUP_STEPS: u64 = 3;

/// Where training is when a hook is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepInfo {
    /// Optimizer steps taken so far, this one included (for `after_*`).
    pub step: u64,
    /// 0-based epoch.
    pub epoch: usize,
    /// Batches per epoch (for schedules counted in epochs).
    pub batches_per_epoch: usize,
}

/// Extension points of the training loop, used by compression (masks, growth, pruning) without
/// the trainer knowing about it. Every method has a no-op default. Gradients, parameters and
/// optimizer state are in the memory of the backend `B` the run trains on.
pub trait TrainHook<B: Backend<f32> = Cpu> {
    /// Called once before the first step, fresh or resumed: restore state saved by
    /// [`TrainHook::state`] (`ckpt.extra`) and make the parameters consistent with it.
    fn start(&mut self, _ckpt: &mut Checkpoint) -> Result<(), TrainError> {
        Ok(())
    }
    /// Called after backward, before clipping: read or change the gradient. It may scale or
    /// zero gradient values, not make new ones: outside the batch's gradient support
    /// ([`LanguageModel::gradient_support`]) the trainer neither reads nor clears them.
    fn after_backward(
        &mut self,
        _be: &B,
        _info: &StepInfo,
        _grads: &mut B::Buf,
    ) -> Result<(), DeviceError> {
        Ok(())
    }
    /// Called after the optimizer step: change parameters or optimizer state. Returns events
    /// to append to metrics.jsonl.
    fn after_step(
        &mut self,
        _be: &B,
        _info: &StepInfo,
        _params: &mut B::Buf,
        _opt: OptimState<'_, B>,
    ) -> Result<Vec<serde_json::Value>, DeviceError> {
        Ok(Vec::new())
    }
    /// Called before every save: bring what [`TrainHook::state`] returns up to date from the
    /// device.
    fn sync(&mut self, _be: &B) -> Result<(), DeviceError> {
        Ok(())
    }
    /// Tensors to save with every checkpoint (`extra.safetensors`).
    fn state(&self) -> Vec<OutTensor<'_>> {
        Vec::new()
    }
}

/// A hook that does nothing: plain dense training.
pub struct NoHook;

impl<B: Backend<f32>> TrainHook<B> for NoHook {}

/// How a call to [`train`] ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// All epochs done; final validation and test results.
    Finished { valid: EvalResult, test: EvalResult },
    /// `--max-steps` reached (checkpoint saved).
    MaxSteps,
    /// Interrupted (Ctrl-C); checkpoint saved.
    Interrupted,
}

/// Options that are not part of the experiment config.
pub struct RunOptions<'a> {
    pub out_dir: PathBuf,
    /// Stop once this many optimizer steps have been taken in total.
    pub max_steps: Option<u64>,
    /// Set by a signal handler; checked after every step.
    pub interrupted: &'a AtomicBool,
    /// Draw a progress bar (on a terminal).
    pub progress: bool,
}

/// Appends JSON lines to `metrics.jsonl`.
struct Metrics {
    file: std::fs::File,
    path: PathBuf,
}

impl Metrics {
    fn open(dir: &Path) -> Result<Self, TrainError> {
        let path = dir.join("metrics.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        Ok(Self { file, path })
    }

    fn write(&mut self, v: serde_json::Value) -> Result<(), TrainError> {
        writeln!(self.file, "{v}").map_err(|e| TrainError::io(&self.path, e))
    }
}

/// A fresh run's state: model initialised from the config's seed.
pub fn fresh_checkpoint(config: &TrainConfig, corpus: &Corpus) -> Result<Checkpoint, TrainError> {
    let lm = config.lm_config(corpus.vocab.len());
    let mut model = LanguageModel::<f32>::new(lm)?;
    model.init_uniform(config.model.init_scale, config.run.seed);
    let n = model.num_params();
    Ok(Checkpoint {
        config: config.clone(),
        vocab: corpus.vocab.clone(),
        optimizer: Optimizer::new(config.optim.clone(), n),
        carried: LmState::zeros(&model.config, config.data.batch_size),
        model,
        extra: None,
        trainer: TrainerState::fresh(),
    })
}

/// Trains `ckpt` (fresh or resumed) on `corpus` with the backend `be` until the schedule ends,
/// `max_steps` is reached or the run is interrupted. Checkpoints go to
/// `opts.out_dir/checkpoint`. The parameters, optimizer state and carried state live in `be`'s
/// memory while it runs and are back in `ckpt` when it returns, error or not.
pub fn train<B: Backend<f32>>(
    be: &B,
    ckpt: &mut Checkpoint,
    corpus: &Corpus,
    opts: &RunOptions<'_>,
    hook: &mut dyn TrainHook<B>,
) -> Result<Outcome, TrainError> {
    if ckpt.vocab != corpus.vocab {
        return Err(TrainError::Checkpoint {
            path: opts.out_dir.display().to_string(),
            reason: format!(
                "the checkpoint's vocabulary ({} words) differs from the corpus in {} ({} words)",
                ckpt.vocab.len(),
                corpus.dir.display(),
                corpus.vocab.len()
            ),
        });
    }
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| TrainError::io(&opts.out_dir, e))?;
    let mut metrics = Metrics::open(&opts.out_dir)?;
    let cfg = ckpt.config.clone();
    let (b, t) = (cfg.data.batch_size, cfg.data.bptt);
    let data = Batched::new(&corpus.train, b);
    let batches = data.full_batches(t);
    if batches == 0 {
        return Err(TrainError::Data {
            path: corpus.dir.display().to_string(),
            reason: format!("training text too short for batch {b} x bptt {t}"),
        });
    }
    let grad_scale = match cfg.optim.objective {
        Objective::SumOverTime => 1.0 / b as f32,
        Objective::Mean => 1.0 / (b * t) as f32,
    };
    let rng = CounterRng::new(cfg.run.seed ^ 0xD509_0D70);
    hook.start(ckpt)?;
    let mut dev = Resident::adopt(be, ckpt)?;
    let run = Run {
        be,
        corpus,
        opts,
        data: &data,
        batches,
        grad_scale,
        rng,
    };
    let outcome = run.steps(ckpt, &mut dev, hook, &mut metrics);
    let restored = dev.restore(be, ckpt);
    let outcome = outcome?;
    restored?;
    Ok(outcome)
}

/// One call of [`train`]: what the step loop reads.
struct Run<'a, B> {
    be: &'a B,
    corpus: &'a Corpus,
    opts: &'a RunOptions<'a>,
    data: &'a Batched,
    batches: usize,
    grad_scale: f32,
    rng: CounterRng,
}

impl<B: Backend<f32>> Run<'_, B> {
    fn steps(
        &self,
        ckpt: &mut Checkpoint,
        dev: &mut Resident<B>,
        hook: &mut dyn TrainHook<B>,
        metrics: &mut Metrics,
    ) -> Result<Outcome, TrainError> {
        let Run {
            be,
            corpus,
            opts,
            data,
            batches,
            grad_scale,
            rng,
        } = *self;
        let cfg = ckpt.config.clone();
        let (b, t) = (cfg.data.batch_size, cfg.data.bptt);
        // Already at the step limit (`--max-steps 0`, or a resume at its limit): no step is taken.
        if opts.max_steps.is_some_and(|m| ckpt.trainer.step >= m) {
            save_finite(be, ckpt, dev, opts, hook)?;
            metrics.write(json!({
                "kind": "max_steps", "step": ckpt.trainer.step, "epoch": ckpt.trainer.epoch + 1,
                "batch": ckpt.trainer.batch,
            }))?;
            return Ok(Outcome::MaxSteps);
        }
        let mut ws = ckpt.model.workspace_on(be, t, b)?;
        let n = ckpt.model.num_params();
        // Where the gradients may be non-zero: the gradient support of the last step.
        let mut written = Support::empty(n);
        // Checked by the CLI tests (every training run there, hooks included): the hook left the
        // gradient zero outside the support, which the zeroing and the update rely on.
        let check_support = std::env::var_os("SYMBIONT_CHECK_GRADIENT_SUPPORT").is_some();
        metrics.write(json!({
        "kind": "start", "step": ckpt.trainer.step, "epoch": ckpt.trainer.epoch + 1,
        "batch": ckpt.trainer.batch, "params": ckpt.model.num_params(),
        "params_without_embeddings": ckpt.model.num_params() - ckpt.model.num_embedding_params(),
        "threads": rayon::current_num_threads(), "config": cfg,
    }))?;

        // Steady-state throughput of this session: steps after the first WARMUP_STEPS.
        let (mut session_steps, mut steady_secs, mut steady_tokens) = (0u64, 0.0f64, 0u64);
        while ckpt.trainer.epoch < cfg.schedule.epochs {
            let epoch = ckpt.trainer.epoch;
            let lr = cfg.schedule.lr(cfg.optim.lr, epoch);
            if ckpt.trainer.batch == 0 {
                dev.carried.reset_on(be)?;
            }
            let bar = progress_bar(opts.progress, batches as u64, ckpt.trainer.batch as u64);
            let (mut win_loss, mut win_tokens, mut win_start) = (0.0f64, 0usize, Instant::now());
            let (mut epoch_loss, mut epoch_tokens) = (0.0f64, 0usize);
            let session_start = Instant::now();
            let seconds_before = ckpt.trainer.train_seconds;
            while ckpt.trainer.batch < batches {
                let step_start = Instant::now();
                let bi = ckpt.trainer.batch;
                let (x, y) = data.get(bi * t, t);
                // Zero what the last step wrote, and visit only the embedding rows of this batch
                // below (PTB-medium: a third of the parameters is the embedding, ≤ 7% of it used).
                be.fill_on(&mut dev.grads, &written, 0.0)?;
                let support = ckpt.model.gradient_support(x);
                let ctx = DropoutCtx {
                    rng,
                    p: cfg.model.dropout,
                    step: ckpt.trainer.step,
                };
                let batch = (x, y, Some(ctx), Some(grad_scale));
                let sum =
                    ckpt.model
                        .forward_on(be, &dev.params, &mut ws, batch, &mut dev.carried)?;
                // A mean loss whose perplexity overflows (e^709) is divergence too: the weights that
                // gave it are no model, finite or not.
                if !(sum / (b * t) as f64).exp().is_finite() {
                    return Err(non_finite("loss", ckpt, opts));
                }
                ckpt.model
                    .backward_on(be, &dev.params, &mut ws, &mut dev.grads)?;
                let info = StepInfo {
                    step: ckpt.trainer.step + 1,
                    epoch,
                    batches_per_epoch: batches,
                };
                hook.after_backward(be, &info, &mut dev.grads)?;
                if check_support {
                    let mut grads = vec![0.0f32; n];
                    be.download(&dev.grads, &mut grads)?;
                    if let Some(i) = support.first_nonzero_outside(&grads) {
                        return Err(TrainError::Hook(format!(
                        "step {}: gradient {i} is non-zero outside the batch's gradient support \
                         after the after_backward hook (a hook may only scale or zero gradients, \
                         and LanguageModel::gradient_support must cover what backward writes)",
                        info.step
                    )));
                    }
                }
                let norm = be.sum_squares_on(&dev.grads, &support)?.sqrt();
                if !norm.is_finite() {
                    return Err(non_finite("gradient norm", ckpt, opts));
                }
                // Clipping folded into the update (one pass over the gradients instead of two).
                let coef = clip_factor(norm, cfg.optim.clip_norm);
                let (params, grads, state) = dev.parts();
                ckpt.optimizer
                    .update_on(be, params, grads, state, coef, lr, &support)?;
                written = support;
                let (params, _, state) = dev.parts();
                for event in hook.after_step(be, &info, params, state)? {
                    metrics.write(event)?;
                }
                ckpt.trainer.step += 1;
                ckpt.trainer.batch += 1;
                ckpt.trainer.tokens += (t * b) as u64;
                ckpt.trainer.train_seconds = seconds_before + session_start.elapsed().as_secs_f64();
                session_steps += 1;
                if session_steps > WARMUP_STEPS {
                    steady_secs += step_start.elapsed().as_secs_f64();
                    steady_tokens += (t * b) as u64;
                    ckpt.trainer.session_tokens_per_s = Some(steady_tokens as f64 / steady_secs);
                }
                win_loss += sum;
                win_tokens += t * b;
                epoch_loss += sum;
                epoch_tokens += t * b;
                bar.inc(1);

                let step = ckpt.trainer.step;
                if step.is_multiple_of(cfg.run.log_every as u64) || ckpt.trainer.batch == batches {
                    let secs = win_start.elapsed().as_secs_f64();
                    let loss = win_loss / win_tokens as f64;
                    let tps = win_tokens as f64 / secs;
                    bar.set_message(format!(
                        "epoch {} loss {loss:.3} ppl {:.1} lr {lr:.4} {:.1}k tok/s",
                        epoch + 1,
                        loss.exp(),
                        tps / 1e3
                    ));
                    metrics.write(json!({
                    "kind": "train", "epoch": epoch + 1, "step": step, "batch": ckpt.trainer.batch,
                    "loss": loss, "ppl": loss.exp(), "lr": lr, "grad_norm": norm,
                    "tokens_per_s": tps, "steps_per_s": (win_tokens / (t * b)) as f64 / secs,
                }))?;
                    (win_loss, win_tokens, win_start) = (0.0, 0, Instant::now());
                }
                let interrupted = opts.interrupted.load(Ordering::SeqCst);
                let max_hit = opts.max_steps.is_some_and(|m| step >= m);
                let periodic = cfg.run.checkpoint_every > 0
                    && step.is_multiple_of(cfg.run.checkpoint_every as u64);
                if (interrupted || max_hit || periodic) && ckpt.trainer.batch < batches {
                    save_finite(be, ckpt, dev, opts, hook)?;
                    if interrupted || max_hit {
                        bar.abandon();
                        metrics.write(json!({
                            "kind": if interrupted { "interrupted" } else { "max_steps" },
                            "step": step, "epoch": epoch + 1, "batch": ckpt.trainer.batch,
                        }))?;
                        return Ok(if interrupted {
                            Outcome::Interrupted
                        } else {
                            Outcome::MaxSteps
                        });
                    }
                }
            }
            bar.finish_and_clear();
            let valid = evaluate_on(
                be,
                &ckpt.model,
                &dev.params,
                &corpus.valid,
                cfg.data.eval_batch_size,
                t,
            )?;
            if !valid.perplexity.is_finite() {
                return Err(non_finite("validation perplexity", ckpt, opts));
            }
            ckpt.trainer.valid_ppl.push(valid.perplexity);
            ckpt.trainer.epoch += 1;
            ckpt.trainer.batch = 0;
            let train_loss = epoch_loss / epoch_tokens.max(1) as f64;
            metrics.write(json!({
                "kind": "epoch", "epoch": epoch + 1, "step": ckpt.trainer.step, "lr": lr,
                "train_ppl_this_session": train_loss.exp(), "valid_loss": valid.loss,
                "valid_ppl": valid.perplexity, "valid_batch": cfg.data.eval_batch_size,
                "train_seconds": ckpt.trainer.train_seconds,
            }))?;
            eprintln!(
                "epoch {:>2}/{}  lr {lr:.4}  train ppl {:.2}  valid ppl {:.2}  ({:.0} s so far)",
                epoch + 1,
                cfg.schedule.epochs,
                train_loss.exp(),
                valid.perplexity,
                ckpt.trainer.train_seconds
            );
            save_finite(be, ckpt, dev, opts, hook)?;
            let step = ckpt.trainer.step;
            if opts.interrupted.load(Ordering::SeqCst) {
                return Ok(Outcome::Interrupted);
            }
            if opts.max_steps.is_some_and(|m| step >= m) && ckpt.trainer.epoch < cfg.schedule.epochs
            {
                return Ok(Outcome::MaxSteps);
            }
        }
        let eval_batch = cfg.data.eval_batch_size;
        let valid = evaluate_on(be, &ckpt.model, &dev.params, &corpus.valid, eval_batch, t)?;
        let test = evaluate_on(be, &ckpt.model, &dev.params, &corpus.test, eval_batch, t)?;
        for (what, r) in [("validation", &valid), ("test", &test)] {
            if !r.perplexity.is_finite() {
                return Err(non_finite(&format!("{what} perplexity"), ckpt, opts));
            }
        }
        metrics.write(json!({
            "kind": "final", "step": ckpt.trainer.step, "valid_ppl": valid.perplexity,
            "test_ppl": test.perplexity, "eval_batch": cfg.data.eval_batch_size,
            "train_seconds": ckpt.trainer.train_seconds,
        }))?;
        Ok(Outcome::Finished { valid, test })
    }
}

fn non_finite(what: &str, ckpt: &Checkpoint, opts: &RunOptions<'_>) -> TrainError {
    let dir = opts.out_dir.join(crate::checkpoint::DIR_NAME);
    let kept = if crate::checkpoint::Checkpoint::locate(&opts.out_dir).is_ok() {
        format!("the last good checkpoint in {} is kept", dir.display())
    } else {
        format!(
            "no checkpoint was written to {} yet",
            opts.out_dir.display()
        )
    };
    TrainError::NonFinite(format!(
        "the {what} became non-finite at step {} (epoch {}, batch {}); stopped without saving, \
         {kept} (try a lower lr or a tighter clip_norm)",
        ckpt.trainer.step + 1,
        ckpt.trainer.epoch + 1,
        ckpt.trainer.batch + 1,
    ))
}

/// Saves the checkpoint (the device's state copied into it for the save) unless a weight is
/// non-finite: a diverged model never replaces the last good checkpoint.
fn save_finite<B: Backend<f32>>(
    be: &B,
    ckpt: &mut Checkpoint,
    dev: &Resident<B>,
    opts: &RunOptions<'_>,
    hook: &mut dyn TrainHook<B>,
) -> Result<(), TrainError> {
    hook.sync(be)?;
    dev.sync(be, ckpt)?;
    let saved = save_synced(ckpt, opts, &*hook);
    Resident::<B>::unsync(ckpt);
    saved
}

fn save_synced<B: Backend<f32>>(
    ckpt: &Checkpoint,
    opts: &RunOptions<'_>,
    hook: &dyn TrainHook<B>,
) -> Result<(), TrainError> {
    if let Some(i) = ckpt.model.params.iter().position(|v| !v.is_finite()) {
        let name = ckpt
            .model
            .layout
            .tensors()
            .iter()
            .find(|t| t.range().contains(&i))
            .map_or("?", |t| t.name.as_str());
        return Err(non_finite(&format!("weights (`{name}`)"), ckpt, opts));
    }
    ckpt.save(&opts.out_dir, &hook.state())?;
    Ok(())
}

fn progress_bar(enabled: bool, len: u64, pos: u64) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} {elapsed_precise} ETA {eta_precise}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_position(pos);
    bar
}
