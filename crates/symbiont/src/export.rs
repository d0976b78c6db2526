//! `symbiont export`: a trained word language model written as `model.safetensors` (PyTorch
//! names) and `model.onnx` (opset 17; see `flow::onnx`) into a new folder.

use clap::Args;
use model::checkpoint::TensorFile;
use model::LanguageModel;
use serde_json::json;
use std::collections::HashMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use train::checkpoint::Checkpoint;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

#[derive(Args)]
pub struct ExportArgs {
    /// A checkpoint: a run folder, its checkpoint/ folder, or a model .safetensors file.
    pub checkpoint: PathBuf,
    /// Folder for model.safetensors and model.onnx (created if missing; must not be the folder
    /// the model is read from).
    #[arg(long)]
    pub out: PathBuf,
    /// Print JSON: {"safetensors", "onnx", "vocab", "hidden", "gate_hidden", "opset", …}.
    #[arg(long)]
    pub json: bool,
}

pub fn export(args: ExportArgs) -> Result<u8> {
    let (model_file, sources) = locate(&args.checkpoint)?;
    if let Ok(out) = args.out.canonicalize() {
        if sources
            .iter()
            .any(|s| s.canonicalize().is_ok_and(|s| s == out))
        {
            return Err(format!(
                "--out {}: the model is read from there; give another folder",
                args.out.display()
            )
            .into());
        }
        if !out.is_dir() {
            return Err(format!("--out {}: not a folder", args.out.display()).into());
        }
    }
    let file = TensorFile::read(&model_file)?;
    let model = LanguageModel::<f32>::from_file(&file, 0.0)?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("--out {}: cannot create it: {e}", args.out.display()))?;
    let (st, onnx) = (
        args.out.join("model.safetensors"),
        args.out.join("model.onnx"),
    );
    let mut meta = HashMap::new();
    meta.insert(
        "symbiont.exported_from".into(),
        model_file.display().to_string(),
    );
    model.save(&st, meta)?;
    flow::onnx::export_onnx(&model, &onnx)?;
    let c = &model.config;
    let hidden: Vec<usize> = (0..c.layers).map(|l| c.hidden_of(l)).collect();
    if args.json {
        println!(
            "{}",
            json!({
                "safetensors": st, "onnx": onnx, "source": model_file, "vocab": c.vocab,
                "embedding": c.embedding_width(), "hidden": hidden, "gate_hidden": c.gate_hidden,
                "opset": flow::onnx::OPSET, "ir_version": flow::onnx::IR_VERSION,
            })
        );
    } else {
        println!(
            "vocab {}, hidden {hidden:?}, gate width {}: wrote {} and {}",
            c.vocab,
            c.gate_hidden,
            st.display(),
            onnx.display()
        );
    }
    Ok(0)
}

/// The model file `path` names and the folders it is read from (which `--out` may not be).
fn locate(path: &Path) -> Result<(PathBuf, Vec<PathBuf>)> {
    if path.is_file() {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        return Ok((path.to_path_buf(), vec![parent]));
    }
    if !path.exists() {
        return Err(format!("{}: no such file or folder", path.display()).into());
    }
    let dir = Checkpoint::locate(path)?;
    Ok((dir.join("model.safetensors"), vec![dir, path.to_path_buf()]))
}
