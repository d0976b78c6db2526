//! Run checkpoints: a folder with the weights (`model.safetensors`, PyTorch names), optimizer
//! state and the carried LSTM state (`optimizer.safetensors`), the config, the vocabulary and
//! the trainer's position (`trainer.json`).
//!
//! Atomicity: a checkpoint is written completely into `checkpoint.tmp/`, then swapped in with
//! renames (`checkpoint` → `checkpoint.old`, `checkpoint.tmp` → `checkpoint`, delete `.old`).
//! A crash at any moment leaves a complete `checkpoint/` or `checkpoint.old/`, and loading
//! falls back to the latter.

use crate::optim::Optimizer;
use crate::ptb::Vocab;
use crate::{TrainConfig, TrainError};
use model::checkpoint::{sync_dir, write_atomic, write_tensors, OutTensor, TensorData, TensorFile};
use model::{LanguageModel, LmState};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where training stands; `trainer.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// 0-based epoch to continue in.
    pub epoch: usize,
    /// Next batch index inside that epoch.
    pub batch: usize,
    /// Optimizer steps taken so far.
    pub step: u64,
    /// Training tokens processed so far.
    pub tokens: u64,
    /// Validation perplexity after each finished epoch.
    pub valid_ppl: Vec<f64>,
    /// Wall-clock seconds spent training so far (all sessions).
    pub train_seconds: f64,
    /// Training throughput of the latest session, timed over its steps after the first
    /// `WARMUP_STEPS` (allocation and first-touch costs excluded, validation excluded).
    #[serde(default)]
    pub session_tokens_per_s: Option<f64>,
    pub symbiont_version: String,
}

impl TrainerState {
    /// The position of a run that has not taken a step yet.
    pub fn fresh() -> TrainerState {
        TrainerState {
            epoch: 0,
            batch: 0,
            step: 0,
            tokens: 0,
            valid_ppl: Vec::new(),
            train_seconds: 0.0,
            session_tokens_per_s: None,
            symbiont_version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// Everything needed to continue a run or evaluate its model.
pub struct Checkpoint {
    pub config: TrainConfig,
    pub vocab: Vocab,
    pub model: LanguageModel<f32>,
    pub optimizer: Optimizer,
    pub carried: LmState<f32>,
    pub trainer: TrainerState,
    /// State saved by training hooks (masks, growth accumulators), when the run has any.
    pub extra: Option<TensorFile>,
}

pub const DIR_NAME: &str = "checkpoint";

fn ckpt_err(path: &Path, reason: impl Into<String>) -> TrainError {
    TrainError::Checkpoint {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

impl Checkpoint {
    /// Writes the checkpoint as `run_dir/checkpoint/`, atomically. Returns its path.
    /// `extra` (hook state) goes to `extra.safetensors` when non-empty.
    pub fn save(&self, run_dir: &Path, extra: &[OutTensor<'_>]) -> Result<PathBuf, TrainError> {
        let final_dir = run_dir.join(DIR_NAME);
        let tmp = run_dir.join(format!("{DIR_NAME}.tmp"));
        let old = run_dir.join(format!("{DIR_NAME}.old"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;

        let mut meta = HashMap::new();
        meta.insert("symbiont.version".into(), env!("CARGO_PKG_VERSION").into());
        meta.insert("symbiont.step".into(), self.trainer.step.to_string());
        self.model.save(&tmp.join("model.safetensors"), meta)?;

        let mut tensors = Vec::new();
        if !self.optimizer.m.is_empty() {
            tensors.push(flat("optim.m", &self.optimizer.m));
        }
        if !self.optimizer.v.is_empty() {
            tensors.push(flat("optim.v", &self.optimizer.v));
        }
        tensors.push(OutTensor {
            name: "optim.steps".into(),
            shape: vec![1],
            data: TensorData::I64(vec![self.optimizer.steps as i64]),
        });
        for l in 0..self.carried.h.len() {
            let shape = vec![self.carried.batch, self.model.config.hidden_of(l)];
            tensors.push(OutTensor {
                name: format!("carried.h_l{l}"),
                shape: shape.clone(),
                data: TensorData::F32(&self.carried.h[l]),
            });
            tensors.push(OutTensor {
                name: format!("carried.c_l{l}"),
                shape,
                data: TensorData::F32(&self.carried.c[l]),
            });
        }
        write_tensors(&tmp.join("optimizer.safetensors"), &tensors, HashMap::new())?;
        if !extra.is_empty() {
            write_tensors(&tmp.join("extra.safetensors"), extra, HashMap::new())?;
        }
        write_atomic(&tmp.join("config.toml"), self.config.to_toml().as_bytes())?;
        write_atomic(&tmp.join("vocab.txt"), self.vocab.to_text().as_bytes())?;
        let json = serde_json::to_string_pretty(&self.trainer).expect("trainer state serializes");
        write_atomic(&tmp.join("trainer.json"), json.as_bytes())?;

        // The files are synced one by one; the folder's entries, and below the run folder's
        // renames, are synced too, so after a crash `locate` finds a whole checkpoint.
        sync_dir(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
        if final_dir.exists() {
            if old.exists() {
                std::fs::remove_dir_all(&old).map_err(|e| TrainError::io(&old, e))?;
            }
            std::fs::rename(&final_dir, &old).map_err(|e| TrainError::io(&final_dir, e))?;
        }
        std::fs::rename(&tmp, &final_dir).map_err(|e| TrainError::io(&tmp, e))?;
        let parent = if run_dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            run_dir
        };
        sync_dir(parent).map_err(|e| TrainError::io(parent, e))?;
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| TrainError::io(&old, e))?;
        }
        Ok(final_dir)
    }

    /// Finds the checkpoint folder for `path`: a checkpoint folder itself, or a run folder
    /// holding `checkpoint/` (or, after a crash mid-swap, `checkpoint.old/`).
    pub fn locate(path: &Path) -> Result<PathBuf, TrainError> {
        if path.join("trainer.json").is_file() {
            return Ok(path.to_path_buf());
        }
        for name in [DIR_NAME.to_string(), format!("{DIR_NAME}.old")] {
            let p = path.join(name);
            if p.join("trainer.json").is_file() {
                return Ok(p);
            }
        }
        Err(ckpt_err(
            path,
            "no checkpoint here (expected trainer.json, or a checkpoint/ folder holding one)",
        ))
    }

    /// Loads a checkpoint (see [`Checkpoint::locate`] for what `path` may be).
    pub fn load(path: &Path) -> Result<Self, TrainError> {
        let dir = Self::locate(path)?;
        let config = TrainConfig::from_file(&dir.join("config.toml"))?;
        let vocab_path = dir.join("vocab.txt");
        let vocab = Vocab::from_text(
            &std::fs::read_to_string(&vocab_path).map_err(|e| TrainError::io(&vocab_path, e))?,
        );
        let trainer_path = dir.join("trainer.json");
        let trainer: TrainerState = serde_json::from_str(
            &std::fs::read_to_string(&trainer_path)
                .map_err(|e| TrainError::io(&trainer_path, e))?,
        )
        .map_err(|e| ckpt_err(&trainer_path, format!("malformed trainer.json: {e}")))?;

        let weights = TensorFile::read(&dir.join("model.safetensors"))?;
        // Widths come from the weights: structured pruning may have left layers narrower than
        // the config's `hidden`. Vocabulary, depth and cell kind must agree with the config.
        let mut model = LanguageModel::<f32>::from_file(&weights, config.model.dropout)?;
        model.config.gate_dropout = config.model.gate_dropout;
        let want = config.lm_config(vocab.len());
        if model.config.vocab != want.vocab
            || model.config.layers != want.layers
            || model.config.gate_hidden != want.gate_hidden
        {
            return Err(ckpt_err(
                &dir,
                format!(
                    "model.safetensors (vocab {}, {} layers, gate width {}) does not match config.toml (vocab {}, {} layers, gate width {})",
                    model.config.vocab, model.config.layers, model.config.gate_hidden, want.vocab, want.layers, want.gate_hidden
                ),
            ));
        }

        let opt_file = TensorFile::read(&dir.join("optimizer.safetensors"))?;
        let n = model.num_params();
        let mut optimizer = Optimizer::new(config.optim.clone(), n);
        for (name, buf) in [("optim.m", &mut optimizer.m), ("optim.v", &mut optimizer.v)] {
            if !buf.is_empty() {
                let vals = opt_file.floats(name, Some(&[n]))?;
                buf.iter_mut().zip(vals).for_each(|(b, v)| *b = v as f32);
            }
        }
        optimizer.steps = opt_file.ints("optim.steps", Some(&[1]))?[0] as u64;
        let batch = config.data.batch_size;
        let mut carried = LmState::<f32>::zeros(&model.config, batch);
        for l in 0..model.config.layers {
            let shape = [batch, model.config.hidden_of(l)];
            for (name, buf) in [
                (format!("carried.h_l{l}"), &mut carried.h[l]),
                (format!("carried.c_l{l}"), &mut carried.c[l]),
            ] {
                let vals = opt_file.floats(&name, Some(&shape))?;
                buf.iter_mut().zip(vals).for_each(|(b, v)| *b = v as f32);
            }
        }
        let extra_path = dir.join("extra.safetensors");
        let extra = if extra_path.is_file() {
            Some(TensorFile::read(&extra_path)?)
        } else if config.compress.is_some() && trainer.step > 0 {
            // Every step of a compression run saves its masks: without them a resume would
            // start from all-ones masks and bring the pruned weights back.
            return Err(ckpt_err(
                &extra_path,
                "missing: this compression run's masks are lost, and resuming without them \
                 would bring pruned weights back",
            ));
        } else {
            None
        };
        Ok(Self {
            config,
            vocab,
            model,
            optimizer,
            carried,
            trainer,
            extra,
        })
    }
}

fn flat<'a>(name: &str, v: &'a [f32]) -> OutTensor<'a> {
    OutTensor {
        name: name.into(),
        shape: vec![v.len()],
        data: TensorData::F32(v),
    }
}
