//! Experiment configuration files (TOML). Unknown keys and impossible values are errors that
//! name the file, found before any training starts.

use crate::TrainError;
use model::LmConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A whole training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub model: ModelSection,
    #[serde(default)]
    pub data: DataSection,
    pub optim: OptimConfig,
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub run: RunSection,
    /// `[compress]`: masks, pruning and growth schedules. Kept as raw TOML here and validated by
    /// the compression crate (train does not depend on it; the CLI connects them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress: Option<toml::Table>,
}

/// `[model]`: the architecture and its initialisation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// "lstm" (stacked LSTM) or "hlstm" (gates are one-hidden-layer MLPs of width
    /// `gate_hidden`).
    #[serde(default = "default_arch")]
    pub arch: String,
    pub hidden: usize,
    pub layers: usize,
    /// Embedding width; 0 = same as `hidden` (Zaremba).
    #[serde(default)]
    pub embedding: usize,
    #[serde(default)]
    pub dropout: f64,
    /// H-LSTM gate width M (arch = "hlstm"; 0 = same as `hidden`, the method's default).
    #[serde(default)]
    pub gate_hidden: usize,
    /// Dropout on the H-LSTM gates' hidden layer.
    #[serde(default)]
    pub gate_dropout: f64,
    /// Every weight starts ~ U(-init_scale, init_scale).
    pub init_scale: f64,
}

fn default_arch() -> String {
    "lstm".into()
}

/// `[data]`: where the corpus is and how it is cut.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Folder with ptb.{train,valid,test}.txt; overridden by `--data-dir`. When absent:
    /// `../shared/data/ptb`, then `data/ptb` (where tools/get-ptb.sh puts it).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default = "default_bptt")]
    pub bptt: usize,
    /// Batch used for the per-epoch validation and the final test inside `train`.
    #[serde(default = "default_eval_batch")]
    pub eval_batch_size: usize,
    /// Check the published MD5 sums (turn off only for another corpus in PTB format).
    #[serde(default = "yes")]
    pub verify_checksums: bool,
}

fn default_batch() -> usize {
    20
}
fn default_bptt() -> usize {
    35
}
fn default_eval_batch() -> usize {
    10
}
fn yes() -> bool {
    true
}

impl Default for DataSection {
    fn default() -> Self {
        Self {
            dir: None,
            batch_size: default_batch(),
            bptt: default_bptt(),
            eval_batch_size: default_eval_batch(),
            verify_checksums: true,
        }
    }
}

/// Which optimizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimKind {
    Sgd,
    Adam,
    AdamW,
}

/// What the gradient is the gradient of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// Cross-entropy summed over the bptt steps, averaged over the batch (TF PTB tutorial /
    /// Zaremba: what lr = 1 and clip = 5 were tuned for).
    SumOverTime,
    /// Mean over all tokens (PyTorch's word_language_model).
    Mean,
}

/// `[optim]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    pub kind: OptimKind,
    pub lr: f64,
    /// Global gradient-norm clip (0 = off).
    #[serde(default)]
    pub clip_norm: f64,
    #[serde(default = "default_objective")]
    pub objective: Objective,
    /// SGD momentum (0 = plain SGD).
    #[serde(default)]
    pub momentum: f64,
    /// L2 for SGD/Adam (added to the gradient); decoupled decay for AdamW.
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    #[serde(default = "default_eps")]
    pub eps: f64,
}

fn default_objective() -> Objective {
    Objective::SumOverTime
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_eps() -> f64 {
    1e-8
}

/// `[schedule]`: Zaremba's step decay: lr for the first `decay_start` epochs, then multiplied by
/// `decay` at every later epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    pub epochs: usize,
    #[serde(default)]
    pub decay_start: usize,
    #[serde(default = "one")]
    pub decay: f64,
}

fn one() -> f64 {
    1.0
}

impl ScheduleConfig {
    /// Learning rate of 0-based epoch `epoch`.
    pub fn lr(&self, base: f64, epoch: usize) -> f64 {
        let k = (epoch + 1).saturating_sub(self.decay_start) as i32;
        base * self.decay.powi(k)
    }
}

/// `[run]`: seed, logging and checkpoint cadence, threads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Steps between metric lines.
    #[serde(default = "default_log_every")]
    pub log_every: usize,
    /// Steps between mid-epoch checkpoints (0 = only at epoch ends).
    #[serde(default = "default_ckpt_every")]
    pub checkpoint_every: usize,
    /// Worker threads (0 = all cores).
    #[serde(default)]
    pub threads: usize,
}

fn default_seed() -> u64 {
    1
}
fn default_log_every() -> usize {
    100
}
fn default_ckpt_every() -> usize {
    500
}

impl Default for RunSection {
    fn default() -> Self {
        Self {
            seed: default_seed(),
            log_every: default_log_every(),
            checkpoint_every: default_ckpt_every(),
            threads: 0,
        }
    }
}

impl TrainConfig {
    /// Reads and validates a config file.
    pub fn from_file(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    pub fn from_toml(text: &str, origin: &str) -> Result<Self, TrainError> {
        let cfg: TrainConfig = toml::from_str(text).map_err(|e| TrainError::Config {
            path: origin.into(),
            reason: e.to_string(),
        })?;
        cfg.validate().map_err(|reason| TrainError::Config {
            path: origin.into(),
            reason,
        })?;
        Ok(cfg)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("config serializes")
    }

    fn validate(&self) -> Result<(), String> {
        let m = &self.model;
        if m.arch != "lstm" && m.arch != "hlstm" {
            return Err(format!(
                "[model] arch = \"{}\" is not supported (known: \"lstm\", \"hlstm\")",
                m.arch
            ));
        }
        if m.arch == "lstm" && (m.gate_hidden != 0 || m.gate_dropout != 0.0) {
            return Err("[model] gate_hidden and gate_dropout need arch = \"hlstm\"".into());
        }
        if !(0.0..1.0).contains(&m.gate_dropout) {
            return Err(format!(
                "[model] gate_dropout must be in [0, 1), got {}",
                m.gate_dropout
            ));
        }
        if m.hidden == 0 || m.layers == 0 {
            return Err("[model] hidden and layers must be > 0".into());
        }
        if !(0.0..1.0).contains(&m.dropout) {
            return Err(format!(
                "[model] dropout must be in [0, 1), got {}",
                m.dropout
            ));
        }
        // Weights start ~ U(−init_scale, init_scale) in f32: beyond 100 no model trains.
        if !(m.init_scale > 0.0 && m.init_scale <= 100.0) {
            return Err(format!(
                "[model] init_scale must be in (0, 100], got {}",
                m.init_scale
            ));
        }
        let d = &self.data;
        if d.batch_size == 0 || d.bptt == 0 || d.eval_batch_size == 0 {
            return Err("[data] batch_size, bptt and eval_batch_size must be > 0".into());
        }
        let o = &self.optim;
        // Every optimizer value is applied in f32: a finite f64 beyond f32's range is infinite.
        let f32_finite = |v: f64| v.is_finite() && v.abs() <= f32::MAX as f64;
        if !(o.lr > 0.0 && f32_finite(o.lr)) {
            return Err(format!(
                "[optim] lr must be > 0 and finite in f32, got {}",
                o.lr
            ));
        }
        for (key, v) in [("clip_norm", o.clip_norm), ("weight_decay", o.weight_decay)] {
            if !(v >= 0.0 && f32_finite(v)) {
                return Err(format!("[optim] {key} must be ≥ 0 and finite, got {v}"));
            }
        }
        if !(0.0..1.0).contains(&o.momentum) {
            return Err(format!(
                "[optim] momentum must be in [0, 1), got {}",
                o.momentum
            ));
        }
        if !(0.0..1.0).contains(&o.beta1) || !(0.0..1.0).contains(&o.beta2) {
            return Err(format!(
                "[optim] beta1 and beta2 must be in [0, 1), got {} and {}",
                o.beta1, o.beta2
            ));
        }
        if !(o.eps > 0.0 && f32_finite(o.eps)) {
            return Err(format!("[optim] eps must be > 0 and finite, got {}", o.eps));
        }
        let s = &self.schedule;
        if s.epochs == 0 {
            return Err("[schedule] epochs must be > 0".into());
        }
        if !(s.decay > 0.0 && s.decay <= 1.0) {
            return Err(format!(
                "[schedule] decay must be in (0, 1], got {}",
                s.decay
            ));
        }
        if self.run.log_every == 0 {
            return Err("[run] log_every must be > 0".into());
        }
        Ok(())
    }

    /// The model architecture for a vocabulary of `vocab` words.
    pub fn lm_config(&self, vocab: usize) -> LmConfig {
        LmConfig {
            vocab,
            embedding: self.model.embedding,
            hidden: self.model.hidden,
            hidden_sizes: Vec::new(),
            gate_hidden: match (self.model.arch.as_str(), self.model.gate_hidden) {
                ("hlstm", 0) => self.model.hidden,
                ("hlstm", m) => m,
                _ => 0,
            },
            gate_dropout: self.model.gate_dropout,
            layers: self.model.layers,
            dropout: self.model.dropout,
        }
    }

    /// The data folder: `--data-dir`, else `[data] dir`, else the first of
    /// `../shared/data/ptb` and `data/ptb` that exists (the first when neither does, so the
    /// error names it).
    pub fn resolve_data_dir(&self, cli: Option<&Path>) -> PathBuf {
        if let Some(p) = cli {
            return p.to_path_buf();
        }
        if let Some(p) = &self.data.dir {
            return p.clone();
        }
        default_data_dir()
    }
}

/// `../shared/data/ptb` if present, else `data/ptb` if present, else `../shared/data/ptb`.
pub fn default_data_dir() -> PathBuf {
    let shared = PathBuf::from("../shared/data/ptb");
    let local = PathBuf::from("data/ptb");
    if !shared.exists() && local.exists() {
        local
    } else {
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"
[model]
hidden = 200
layers = 2
init_scale = 0.1
[optim]
kind = "sgd"
lr = 1.0
clip_norm = 5.0
[schedule]
epochs = 13
decay_start = 4
decay = 0.5
"#;

    #[test]
    fn parses_with_defaults_and_computes_zaremba_lr() {
        let c = TrainConfig::from_toml(SMALL, "t.toml").unwrap();
        assert_eq!(c.data.batch_size, 20);
        assert_eq!(c.data.bptt, 35);
        assert_eq!(c.optim.objective, Objective::SumOverTime);
        let lrs: Vec<f64> = (0..7).map(|e| c.schedule.lr(1.0, e)).collect();
        assert_eq!(lrs, vec![1.0, 1.0, 1.0, 1.0, 0.5, 0.25, 0.125]);
        // Round trip.
        assert_eq!(TrainConfig::from_toml(&c.to_toml(), "x").unwrap(), c);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = TrainConfig::from_toml(
            &SMALL.replace("layers = 2", "layers = 2\nlayer = 3"),
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("t.toml:") && err.contains("layer"), "{err}");
        let err = TrainConfig::from_toml(&SMALL.replace("lr = 1.0", "lr = -1.0"), "t.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("[optim] lr"), "{err}");
        let err = TrainConfig::from_toml(&SMALL.replace("\"sgd\"", "\"rmsprop\""), "t.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("rmsprop"), "{err}");
        // Non-finite and out-of-range values that the comparisons alone let through.
        for (from, to, key) in [
            ("clip_norm = 5.0", "clip_norm = nan", "[optim] clip_norm"),
            ("lr = 1.0", "lr = 1e300", "[optim] lr"),
            (
                "lr = 1.0",
                "lr = 1.0\nweight_decay = nan",
                "[optim] weight_decay",
            ),
            ("lr = 1.0", "lr = 1.0\neps = inf", "[optim] eps"),
            (
                "init_scale = 0.1",
                "init_scale = 1e300",
                "[model] init_scale",
            ),
        ] {
            assert!(SMALL.contains(from), "fixture lacks {from}");
            let err = TrainConfig::from_toml(&SMALL.replace(from, to), "t.toml")
                .err()
                .unwrap_or_else(|| panic!("{to} was accepted"))
                .to_string();
            assert!(err.contains(key), "{to}: {err}");
        }
    }
}
