//! Helpers shared by the end-to-end CLI tests: the binary, the corpus (PTB or a synthetic
//! corpus in its format), temporary folders and a tiny training config.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_symbiont"));
    // Every training run here checks, after each hook call, that the gradient is zero outside
    // the batch's support (the sparse zeroing and update rely on it).
    cmd.env("SYMBIONT_CHECK_GRADIENT_SUPPORT", "1");
    cmd
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether the tests read the real PTB (else a synthetic corpus in its format).
pub fn real_ptb() -> bool {
    static REAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REAL.get_or_init(|| {
        std::env::var_os("SYMBIONT_TEST_SYNTHETIC_PTB").is_none()
            && real_ptb_dir().join("ptb.train.txt").exists()
    })
}

pub fn real_ptb_dir() -> PathBuf {
    let root = repo_root();
    let shared = root.join("../shared/data/ptb");
    if shared.join("ptb.train.txt").exists() {
        shared
    } else {
        root.join("data/ptb")
    }
}

/// The corpus folder: PTB, or a synthetic corpus in its format written once per test process.
pub fn ptb_dir() -> PathBuf {
    static SYNTHETIC: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if real_ptb() {
        return real_ptb_dir();
    }
    SYNTHETIC
        .get_or_init(|| {
            let d = std::env::temp_dir()
                .join(format!("symbiont-cli-{}-synthetic-ptb", std::process::id()));
            std::fs::create_dir_all(&d).unwrap();
            flow::synthetic::write_corpus(&d, 2000, 100_000, 17).unwrap();
            d
        })
        .clone()
}

/// Tokens of a split file as the loader counts them (every word and one end of sentence per line).
pub fn corpus_tokens(split: &str) -> u64 {
    let text = std::fs::read_to_string(ptb_dir().join(format!("ptb.{split}.txt"))).unwrap();
    text.lines()
        .map(|l| l.split_whitespace().count() as u64 + 1)
        .sum()
}

/// Distinct words of the training file, end of sentence included.
pub fn corpus_vocab() -> usize {
    let text = std::fs::read_to_string(ptb_dir().join("ptb.train.txt")).unwrap();
    let mut words: std::collections::HashSet<&str> = text.split_whitespace().collect();
    words.insert("<eos>");
    words.len()
}

pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("symbiont-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A tiny but real config: 2 x 16 LSTM with dropout, batch 4, bptt 8.
pub fn tiny_config(dir: &Path, extra_optim: &str, epochs: usize, ckpt_every: usize) -> PathBuf {
    let text = format!(
        r#"
[model]
hidden = 16
layers = 2
dropout = 0.2
init_scale = 0.1
[data]
batch_size = 4
bptt = 8
eval_batch_size = 50
[optim]
kind = "sgd"
lr = 1.0
{extra_optim}
[schedule]
epochs = {epochs}
decay_start = 1
decay = 0.5
[run]
seed = 7
log_every = 2
checkpoint_every = {ckpt_every}
"#
    );
    let text = if real_ptb() {
        text
    } else {
        text.replace("[data]", "[data]\nverify_checksums = false")
    };
    let p = dir.join("tiny.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// `symbiont train --config CFG --data-dir PTB`, to add the rest to.
pub fn train_cmd(cfg: &Path) -> Command {
    let mut c = bin();
    c.arg("train")
        .arg("--config")
        .arg(cfg)
        .arg("--data-dir")
        .arg(ptb_dir());
    c
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("binary runs");
    if !out.status.success() {
        eprintln!("stderr: {}", String::from_utf8_lossy(&out.stderr));
    }
    out
}

pub fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}
