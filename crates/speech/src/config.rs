//! A speech training config (`configs/an4-*.toml`): `[model] arch = "deepspeech"` tells it from a
//! language-model config. `[optim]` is the LM trainer's (SGD / momentum / Adam / AdamW, clip).

use crate::augment::AugmentConfig;
use crate::deepspeech::DeepSpeechConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use train::config::OptimConfig;

/// The whole config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeechConfig {
    pub model: ModelSection,
    #[serde(default)]
    pub data: DataSection,
    pub optim: OptimConfig,
    pub schedule: ScheduleSection,
    #[serde(default)]
    pub run: RunSection,
    /// The compression schedule (the LM's `[compress]`: masks, prune, grow and units phases).
    #[serde(default)]
    pub compress: Option<toml::Table>,
}

/// `[model]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Must be "deepspeech".
    pub arch: String,
    pub hidden: usize,
    pub layers: usize,
    #[serde(default = "default_channels")]
    pub conv_channels: usize,
    /// "lstm" (default) or "hlstm" (gates are one-hidden-layer MLPs).
    #[serde(default = "default_cell")]
    pub cell: String,
    /// The H-LSTM gates' hidden width M (default: `hidden`).
    #[serde(default)]
    pub gate_hidden: Option<usize>,
}

fn default_cell() -> String {
    "lstm".into()
}

fn default_channels() -> usize {
    32
}

/// `[data]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// The corpus folder (default: ../shared/data/an4, else data/an4).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Visit the first epoch shortest utterances first.
    #[serde(default = "yes")]
    pub sortagrad: bool,
    /// Leave out unreadable audio files with a warning instead of stopping.
    #[serde(default)]
    pub skip_bad_files: bool,
    /// `[data.augment]`: speed, gain, noise and SpecAugment masks on the training set.
    #[serde(default)]
    pub augment: Option<AugmentConfig>,
}

impl Default for DataSection {
    fn default() -> Self {
        DataSection {
            dir: None,
            batch: default_batch(),
            sortagrad: true,
            skip_bad_files: false,
            augment: None,
        }
    }
}

fn default_batch() -> usize {
    20
}
fn yes() -> bool {
    true
}

/// `[schedule]`: `epochs` epochs, the learning rate divided by `anneal` after each
/// (deepspeech.pytorch's 1.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSection {
    pub epochs: usize,
    #[serde(default = "one")]
    pub anneal: f64,
}

fn one() -> f64 {
    1.0
}

impl ScheduleSection {
    /// Learning rate of 0-based `epoch`.
    pub fn lr(&self, base: f64, epoch: usize) -> f64 {
        base / self.anneal.powi(epoch as i32)
    }
}

/// `[run]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Steps between progress lines.
    #[serde(default = "default_log_every")]
    pub log_every: usize,
    /// Epochs between test-set evaluations (0 = only at the end).
    #[serde(default = "one_usize")]
    pub eval_every: usize,
    /// Start from this checkpoint's weights and BatchNorm statistics (a fresh optimizer and
    /// schedule): how a compression run fine-tunes a trained baseline.
    #[serde(default)]
    pub init_from: Option<PathBuf>,
}

impl Default for RunSection {
    fn default() -> Self {
        RunSection {
            seed: default_seed(),
            log_every: default_log_every(),
            eval_every: 1,
            init_from: None,
        }
    }
}

fn default_seed() -> u64 {
    1
}
fn default_log_every() -> usize {
    10
}
fn one_usize() -> usize {
    1
}

/// Whether a config text is a speech config (`[model] arch = "deepspeech"`): how the CLI tells
/// which trainer to run.
pub fn is_speech_config(text: &str) -> bool {
    let Ok(value) = text.parse::<toml::Table>() else {
        return false;
    };
    value
        .get("model")
        .and_then(|m| m.get("arch"))
        .and_then(|a| a.as_str())
        == Some("deepspeech")
}

impl SpeechConfig {
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, String> {
        let cfg: SpeechConfig = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        cfg.validate().map_err(|e| format!("{origin}: {e}"))?;
        Ok(cfg)
    }

    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("config serializes")
    }

    pub fn deepspeech(&self) -> DeepSpeechConfig {
        DeepSpeechConfig {
            hidden: self.model.hidden,
            layers: self.model.layers,
            conv_channels: self.model.conv_channels,
            gate_hidden: match self.model.cell.as_str() {
                "hlstm" => self.model.gate_hidden.unwrap_or(self.model.hidden),
                _ => 0,
            },
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.model.arch != "deepspeech" {
            return Err(format!(
                "[model] arch = \"{}\": speech configs take \"deepspeech\"",
                self.model.arch
            ));
        }
        match (self.model.cell.as_str(), self.model.gate_hidden) {
            ("lstm", None) | ("hlstm", None) => {}
            ("hlstm", Some(m)) if m > 0 => {}
            ("hlstm", Some(_)) => return Err("[model] gate_hidden must be positive".into()),
            ("lstm", Some(_)) => {
                return Err("[model] gate_hidden is the H-LSTM's: set cell = \"hlstm\"".into())
            }
            (other, _) => {
                return Err(format!(
                    "[model] cell = \"{other}\": use \"lstm\" or \"hlstm\""
                ))
            }
        }
        self.deepspeech().validate()?;
        if self.data.batch == 0 {
            return Err("[data] batch must be positive".into());
        }
        if let Some(a) = &self.data.augment {
            a.validate()?;
        }
        if self.schedule.epochs == 0 {
            return Err("[schedule] epochs must be positive".into());
        }
        if self.schedule.anneal.is_nan() || self.schedule.anneal < 1.0 {
            return Err(format!(
                "[schedule] anneal = {}: must be ≥ 1 (the lr is divided by it every epoch)",
                self.schedule.anneal
            ));
        }
        if !(self.optim.lr > 0.0 && self.optim.lr.is_finite()) {
            return Err(format!("[optim] lr = {}: must be positive", self.optim.lr));
        }
        Ok(())
    }

    /// The corpus folder: `--data-dir`, else `[data] dir`, else ../shared/data/an4 if present,
    /// else data/an4 if present, else ../shared/data/an4 (so the error names it).
    pub fn resolve_data_dir(&self, cli: Option<&Path>) -> PathBuf {
        cli.map(Path::to_path_buf)
            .or_else(|| self.data.dir.clone())
            .unwrap_or_else(default_data_dir)
    }
}

/// ../shared/data/an4 if present, else data/an4 if present, else ../shared/data/an4.
pub fn default_data_dir() -> PathBuf {
    let shared = PathBuf::from("../shared/data/an4");
    let local = PathBuf::from("data/an4");
    if !shared.exists() && local.exists() {
        local
    } else {
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_speech_configs_parse() {
        for (name, text) in [
            (
                "baseline",
                include_str!("../../../configs/an4-baseline-cpu.toml"),
            ),
            (
                "augment",
                include_str!("../../../configs/an4-augment-cpu.toml"),
            ),
            (
                "augment",
                include_str!("../../../configs/an4-augment-long-cpu.toml"),
            ),
            ("prune", include_str!("../../../configs/an4-prune-cpu.toml")),
            (
                "augment",
                include_str!("../../../configs/an4-augment-prune-cpu.toml"),
            ),
            (
                "augment",
                include_str!("../../../configs/an4-augment-units-cpu.toml"),
            ),
        ] {
            assert!(is_speech_config(text), "{name}");
            let c = SpeechConfig::from_toml(text, name).unwrap();
            assert_eq!(c.data.augment.is_some(), name == "augment", "{name}");
        }
    }

    #[test]
    fn a_bad_augment_key_or_range_is_an_error_naming_it() {
        let base = include_str!("../../../configs/an4-augment-cpu.toml");
        let typo = base.replace("noise_prob", "noise_probability");
        let e = SpeechConfig::from_toml(&typo, "typo").unwrap_err();
        assert!(e.contains("noise_probability"), "{e}");
        let reversed = base.replace("speed = [0.9, 1.1]", "speed = [1.1, 0.9]");
        let e = SpeechConfig::from_toml(&reversed, "reversed").unwrap_err();
        assert!(e.contains("speed"), "{e}");
    }
}
