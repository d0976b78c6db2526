//! `symbiont export` on the real binary: a small random model (built here, nothing trained)
//! exported from a model file and from a run folder, the written safetensors equal to the source,
//! the ONNX file present, and exit 2 with a message for bad input (a missing path, a folder
//! without a checkpoint, a file that is not a language model, --out equal to the source folder).

use model::checkpoint::TensorFile;
use model::{LanguageModel, LmConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_symbiont"))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("symbiont-export-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn export(args: &[&Path], out: &Path) -> Output {
    let mut cmd = bin();
    cmd.arg("export");
    cmd.args(args);
    cmd.arg("--out").arg(out).arg("--json");
    cmd.output().expect("the symbiont binary runs")
}

fn tiny() -> LanguageModel<f32> {
    let config = LmConfig {
        embedding: 6,
        hidden_sizes: vec![8, 5],
        ..LmConfig::lstm(13, 8, 2)
    };
    let mut m = LanguageModel::<f32>::new(config).unwrap();
    m.init_uniform(0.4, 11);
    m
}

fn refused(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains(needle), "`{needle}` not in: {stderr}");
}

#[test]
fn export_writes_safetensors_and_onnx_from_a_file_or_a_run_folder() {
    let dir = tmpdir("ok");
    let m = tiny();
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let file = src.join("model.safetensors");
    m.save(&file, HashMap::new()).unwrap();

    let out_dir = dir.join("out");
    let out = export(&[&file], &out_dir);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let (st, onnx) = (
        PathBuf::from(r["safetensors"].as_str().unwrap()),
        PathBuf::from(r["onnx"].as_str().unwrap()),
    );
    assert_eq!(st, out_dir.join("model.safetensors"));
    assert_eq!(onnx, out_dir.join("model.onnx"));
    assert_eq!(r["hidden"], serde_json::json!([8, 5]));
    assert_eq!(r["vocab"], 13);
    // The ONNX file holds at least every weight as f32.
    let onnx_len = std::fs::metadata(&onnx).unwrap().len() as usize;
    assert!(onnx_len > 4 * m.num_params(), "{onnx_len} bytes");
    let back = LanguageModel::<f32>::from_file(&TensorFile::read(&st).unwrap(), 0.0).unwrap();
    assert_eq!(back.config, m.config);
    assert_eq!(back.params, m.params);

    // A run folder: its checkpoint/ holds trainer.json and model.safetensors.
    let ckpt = dir.join("run/checkpoint");
    std::fs::create_dir_all(&ckpt).unwrap();
    std::fs::write(ckpt.join("trainer.json"), "{}").unwrap();
    std::fs::copy(&file, ckpt.join("model.safetensors")).unwrap();
    let out2 = dir.join("out2");
    let out = export(&[&dir.join("run")], &out2);
    assert_eq!(out.status.code(), Some(0));
    assert!(out2.join("model.onnx").is_file() && out2.join("model.safetensors").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn export_refuses_bad_input_with_exit_2() {
    let dir = tmpdir("bad");
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let file = src.join("model.safetensors");
    tiny().save(&file, HashMap::new()).unwrap();
    let out_dir = dir.join("out");

    refused(
        &export(&[&dir.join("missing.safetensors")], &out_dir),
        "no such file",
    );
    refused(&export(&[&dir], &out_dir), "no checkpoint here");
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"not a safetensors file").unwrap();
    refused(&export(&[&junk], &out_dir), "junk.safetensors");
    // Writing next to the source would overwrite it.
    refused(&export(&[&file], &src), "the model is read from there");
    // Nothing was written for any of them.
    assert!(!out_dir.exists());
    assert!(!src.join("model.onnx").exists());

    // A run folder: neither it nor its checkpoint folder may be --out.
    let ckpt = dir.join("run/checkpoint");
    std::fs::create_dir_all(&ckpt).unwrap();
    std::fs::write(ckpt.join("trainer.json"), "{}").unwrap();
    std::fs::copy(&file, ckpt.join("model.safetensors")).unwrap();
    refused(
        &export(&[&dir.join("run")], &ckpt),
        "the model is read from there",
    );
    refused(
        &export(&[&dir.join("run")], &dir.join("run")),
        "the model is read from there",
    );
    // --out naming a file.
    refused(&export(&[&file], &junk), "not a folder");
    std::fs::remove_dir_all(&dir).unwrap();
}
