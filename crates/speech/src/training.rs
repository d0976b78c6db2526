//! Training and evaluating the DeepSpeech2 model on AN4: CTC loss averaged over the batch's
//! utterances, global gradient-norm clipping, the LM trainer's optimizers, the learning rate
//! annealed per epoch, SortaGrad, a checkpoint at every epoch end (resumable), and test-set
//! WER / CER with greedy or prefix-beam decoding.

use crate::checkpoint::{load_run, save_run, EpochRecord, TrainState};
use crate::config::SpeechConfig;
use crate::data::{epoch_order, BadFiles, Dataset};
use crate::deepspeech::{ctc_batch, Batch, DeepSpeech, Mode};
use crate::labels::{decode, LABELS};
use crate::metrics::{error_rates, ErrorRates};
use crate::{an4::Split, beam::prefix_beam_search, ctc::greedy_decode};
use std::path::{Path, PathBuf};
use std::time::Instant;
use train::optim::{clip_factor, grad_norm, Optimizer};

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
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    pub state: TrainState,
    pub params: usize,
    pub rnn_params: usize,
    /// The last evaluation on the test set (after the last epoch run, or at a step limit).
    pub test: Evaluation,
    /// Training audio seconds processed per wall-clock second, over this invocation.
    pub audio_per_second: f64,
    pub train_seconds: f64,
}

/// Trains (or resumes) a model; `log` receives progress lines.
pub fn train(
    config: SpeechConfig,
    opts: &TrainOptions,
    log: &mut dyn FnMut(String),
) -> Result<TrainSummary, String> {
    let (mut model, config, moments, mut state) = match &opts.resume {
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
            let m = DeepSpeech::new(config.deepspeech(), config.run.seed)?;
            (m, config, [Vec::new(), Vec::new()], TrainState::default())
        }
    };
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
    log(format!(
        "model {} parameters ({} recurrent); train {} utterances ({:.0} s), test {}",
        model.params.len(),
        model.rnn_params(),
        train_set.len(),
        train_set.seconds(),
        test_set.len()
    ));
    let mut opt = Optimizer::new(config.optim.clone(), model.params.len());
    if !moments[0].is_empty() {
        opt.m = moments[0].clone();
    }
    if !moments[1].is_empty() {
        opt.v = moments[1].clone();
    }
    opt.steps = state.optimizer_steps;
    let batches = train_set.length_batches(config.data.batch);
    let mut grads = vec![0.0f32; model.params.len()];
    let started = Instant::now();
    let mut audio = 0.0;
    let mut last_eval = None;
    let save = |model: &DeepSpeech, opt: &Optimizer, state: &TrainState| {
        save_run(&opts.out, model, &config, [&opt.m, &opt.v], state)
    };
    'epochs: for epoch in state.epochs..config.schedule.epochs {
        let lr = config.schedule.lr(config.optim.lr, epoch);
        let t0 = Instant::now();
        let (mut loss_sum, mut utts, mut skipped) = (0.0, 0usize, 0usize);
        // A run stopped mid-epoch resumes at the first batch it had not trained on.
        let done = std::mem::take(&mut state.batches_in_epoch);
        for (k, &bi) in epoch_order(batches.len(), epoch, config.run.seed, config.data.sortagrad)
            .iter()
            .enumerate()
            .skip(done)
        {
            if opts.max_steps.is_some_and(|m| state.steps >= m) {
                state.batches_in_epoch = k;
                state.optimizer_steps = opt.steps;
                save(&model, &opt, &state)?;
                log(format!("stopped at the step limit ({} steps)", state.steps));
                break 'epochs;
            }
            let idx = &batches[bi];
            let specs: Vec<_> = idx.iter().map(|&i| &train_set.features[i]).collect();
            let targets = idx.iter().map(|&i| train_set.targets[i].clone()).collect();
            let batch = Batch::new(&specs, targets);
            let mut acts = model.forward(&batch, Mode::Train);
            let mut dlogits = vec![0.0; acts.logits.len()];
            let n = batch.n as f32;
            let (loss, impossible) = ctc_batch(&acts, &batch.targets, 1.0 / n, &mut dlogits);
            grads.fill(0.0);
            model.backward(&batch, &mut acts, &dlogits, &mut grads);
            let norm = grad_norm(&grads);
            state.steps += 1;
            audio += specs.iter().map(|s| s.frames as f64 / 100.0).sum::<f64>();
            if !loss.is_finite() || !norm.is_finite() {
                skipped += 1;
                log(format!(
                    "step {}: non-finite loss or gradient, batch skipped",
                    state.steps
                ));
                continue;
            }
            let gs = clip_factor(norm, config.optim.clip_norm);
            opt.step_scaled(&mut model.params, &grads, gs, lr);
            loss_sum += loss;
            utts += batch.n - impossible;
            if config.run.log_every > 0 && (k + 1) % config.run.log_every == 0 {
                log(format!(
                    "epoch {} step {} batch {}/{}: loss {:.3} (frames {}), grad norm {:.1}, {:.1} s",
                    epoch + 1,
                    state.steps,
                    k + 1,
                    batches.len(),
                    loss / (batch.n - impossible).max(1) as f64,
                    batch.frames,
                    norm,
                    t0.elapsed().as_secs_f64()
                ));
            }
        }
        let evaluate_now = (config.run.eval_every > 0 && (epoch + 1) % config.run.eval_every == 0)
            || epoch + 1 == config.schedule.epochs;
        let test = evaluate_now
            .then(|| evaluate(&mut model, &test_set, config.data.batch, Decoder::Greedy));
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
        state.history.push(record);
        state.epochs = epoch + 1;
        state.optimizer_steps = opt.steps;
        save(&model, &opt, &state)?;
        last_eval = test;
    }
    let train_seconds = started.elapsed().as_secs_f64();
    let test = match last_eval {
        Some(e) => e,
        None => evaluate(&mut model, &test_set, config.data.batch, Decoder::Greedy),
    };
    Ok(TrainSummary {
        params: model.params.len(),
        rnn_params: model.rnn_params(),
        state,
        test,
        audio_per_second: audio / train_seconds.max(1e-9),
        train_seconds,
    })
}

/// Loads a checkpoint folder's model (see [`crate::checkpoint`]).
pub fn load_model(dir: &Path) -> Result<DeepSpeech, String> {
    crate::checkpoint::load_model(dir)
}
