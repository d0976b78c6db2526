//! Speech checkpoints: a folder with `model.safetensors` (parameters under deepspeech.pytorch's
//! `state_dict` names, BatchNorm running statistics, the model shape in the metadata),
//! `config.toml` (the training config), and for resuming `optimizer.safetensors` and
//! `state.json`. Every file is written atomically, so an interrupted save leaves the previous one.

use crate::config::SpeechConfig;
use crate::deepspeech::{DeepSpeech, DeepSpeechConfig};
use model::checkpoint::{write_atomic, write_tensors, OutTensor, TensorData, TensorFile};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// The metadata key holding the model shape, and the format tag.
const SHAPE_KEY: &str = "deepspeech";
const FORMAT_KEY: &str = "format";
const FORMAT: &str = "symbiont-deepspeech-1";

/// Where a training run stands at the end of an epoch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs completed.
    pub epochs: usize,
    pub steps: u64,
    /// Optimizer steps taken (Adam's bias correction).
    pub optimizer_steps: u64,
    /// Batches of epoch `epochs + 1` already trained on (a run stopped by a step limit).
    #[serde(default)]
    pub batches_in_epoch: usize,
    /// One record per completed epoch.
    pub history: Vec<EpochRecord>,
}

/// What one epoch did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub lr: f64,
    /// Mean CTC loss per utterance over the epoch.
    pub train_loss: f64,
    pub seconds: f64,
    /// Test-set rates (percent), when evaluated after this epoch.
    pub test_wer: Option<f64>,
    pub test_cer: Option<f64>,
    pub test_wer_mean_utterance: Option<f64>,
    /// Batches skipped for a non-finite loss or gradient.
    pub skipped_batches: usize,
}

fn err(path: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", path.display())
}

/// Writes the model into `dir/model.safetensors`.
pub fn save_model(dir: &Path, model: &DeepSpeech) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    let mut tensors: Vec<OutTensor<'_>> = model
        .layout
        .tensors()
        .iter()
        .map(|t| OutTensor {
            name: t.name.clone(),
            shape: t.shape.clone(),
            data: TensorData::F32(&model.params[t.range()]),
        })
        .collect();
    for (prefix, bn) in model.norm_names().into_iter().zip(&model.norms) {
        for (suffix, values) in [
            ("running_mean", &bn.running_mean),
            ("running_var", &bn.running_var),
        ] {
            tensors.push(OutTensor {
                name: format!("{prefix}.{suffix}"),
                shape: vec![values.len()],
                data: TensorData::F32(values),
            });
        }
    }
    let shape = serde_json::to_string(&model.config).expect("config serializes");
    let meta = HashMap::from([
        (SHAPE_KEY.to_string(), shape),
        (FORMAT_KEY.to_string(), FORMAT.to_string()),
    ]);
    let path = dir.join("model.safetensors");
    write_tensors(&path, &tensors, meta).map_err(|e| e.to_string())
}

/// Whether `dir` holds a speech checkpoint.
pub fn is_speech_checkpoint(dir: &Path) -> bool {
    let path = dir.join("model.safetensors");
    TensorFile::read(&path)
        .map(|f| f.metadata().get(FORMAT_KEY).map(String::as_str) == Some(FORMAT))
        .unwrap_or(false)
}

/// Reads `dir/model.safetensors`, checking every tensor's name and shape.
pub fn load_model(dir: &Path) -> Result<DeepSpeech, String> {
    let path = dir.join("model.safetensors");
    let file = TensorFile::read(&path).map_err(|e| e.to_string())?;
    if file.metadata().get(FORMAT_KEY).map(String::as_str) != Some(FORMAT) {
        return Err(err(
            &path,
            format!("not a symbiont speech model (metadata `{FORMAT_KEY}` is not {FORMAT})"),
        ));
    }
    let shape = file
        .metadata()
        .get(SHAPE_KEY)
        .ok_or_else(|| err(&path, format!("metadata has no `{SHAPE_KEY}` model shape")))?;
    let config: DeepSpeechConfig =
        serde_json::from_str(shape).map_err(|e| err(&path, format!("model shape: {e}")))?;
    let mut model = DeepSpeech::new(config, 0).map_err(|e| err(&path, e))?;
    for t in model.layout.tensors().to_vec() {
        let values = file
            .floats(&t.name, Some(&t.shape))
            .map_err(|e| e.to_string())?;
        for (p, v) in model.params[t.range()].iter_mut().zip(values) {
            *p = v as f32;
        }
    }
    for (prefix, bn) in model.norm_names().into_iter().zip(model.norms.iter_mut()) {
        let n = bn.running_mean.len();
        for (suffix, dst) in [
            ("running_mean", &mut bn.running_mean),
            ("running_var", &mut bn.running_var),
        ] {
            let values = file
                .floats(&format!("{prefix}.{suffix}"), Some(&[n]))
                .map_err(|e| e.to_string())?;
            for (d, v) in dst.iter_mut().zip(values) {
                *d = v as f32;
            }
        }
    }
    Ok(model)
}

/// Saves everything a resumed run needs: model, config, optimizer moments, state.
pub fn save_run(
    dir: &Path,
    model: &DeepSpeech,
    config: &SpeechConfig,
    moments: [&[f32]; 2],
    state: &TrainState,
) -> Result<(), String> {
    save_model(dir, model)?;
    let cfg = dir.join("config.toml");
    write_atomic(&cfg, config.to_toml().as_bytes()).map_err(|e| e.to_string())?;
    let tensors: Vec<OutTensor<'_>> = ["m", "v"]
        .iter()
        .zip(moments)
        .filter(|(_, m)| !m.is_empty())
        .map(|(name, m)| OutTensor {
            name: name.to_string(),
            shape: vec![m.len()],
            data: TensorData::F32(m),
        })
        .collect();
    write_tensors(&dir.join("optimizer.safetensors"), &tensors, HashMap::new())
        .map_err(|e| e.to_string())?;
    let json = serde_json::to_string_pretty(state).expect("state serializes");
    write_atomic(&dir.join("state.json"), json.as_bytes()).map_err(|e| e.to_string())
}

/// A run read back by [`load_run`].
pub struct SavedRun {
    pub model: DeepSpeech,
    pub config: SpeechConfig,
    /// The optimizer's first and second moments (empty when it has none).
    pub moments: [Vec<f32>; 2],
    pub state: TrainState,
}

/// Reads a run saved by [`save_run`].
pub fn load_run(dir: &Path) -> Result<SavedRun, String> {
    let model = load_model(dir)?;
    let config = SpeechConfig::from_file(&dir.join("config.toml"))?;
    if config.deepspeech() != model.config {
        return Err(err(
            dir,
            "config.toml and model.safetensors disagree on the model shape",
        ));
    }
    let opt_path = dir.join("optimizer.safetensors");
    let file = TensorFile::read(&opt_path).map_err(|e| e.to_string())?;
    let n = model.params.len();
    let mut moments = [Vec::new(), Vec::new()];
    for (slot, name) in moments.iter_mut().zip(["m", "v"]) {
        if file.contains(name) {
            *slot = file
                .floats(name, Some(&[n]))
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|v| v as f32)
                .collect();
        }
    }
    let state_path = dir.join("state.json");
    let text = std::fs::read_to_string(&state_path).map_err(|e| err(&state_path, e))?;
    let state = serde_json::from_str(&text).map_err(|e| err(&state_path, e))?;
    Ok(SavedRun {
        model,
        config,
        moments,
        state,
    })
}
