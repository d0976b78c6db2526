//! `symbiont compress` as a user runs it, on a synthetic corpus in PTB format (no PTB needed): a
//! whole flow, its final model in `bench`/`infer`, resuming a finished run, and the refusals
//! (bad config fields, another config over a run, a folder that is not a run) with exit 2 before
//! any training.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_symbiont"))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("symbiont-compress-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> Output {
    let out = bin().args(args).output().expect("binary runs");
    eprintln!(
        "symbiont {}: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

const RECIPE: &str = r#"
[model]
arch = "lstm"
hidden = 12
layers = 2
init_scale = 0.1
[data]
batch_size = 8
bptt = 10
eval_batch_size = 4
verify_checksums = false
[optim]
kind = "sgd"
lr = 1.0
clip_norm = 5.0
[schedule]
epochs = 1
[run]
seed = 5
checkpoint_every = 50
"#;

const FLOW: &str = r#"
[flow]
target = "cpu-dense"
train = "recipe.toml"
tolerance = 0.2

[baseline]
from = "train"
steps = 80

[profile]
hidden = "8:24:8"
budget_s = 5

[seed]
arch = "lstm"
widths = [10]
density = 0.5

[grow]
to = 1.0
accumulate = 4
steps = 200

[prune]
densities = [0.5]
steps = 40

[finish]
steps = 40
"#;

/// A folder with a synthetic corpus, the recipe and `flow` as tiny-flow.toml.
fn setup(name: &str, flow: &str) -> PathBuf {
    let d = tmpdir(name);
    std::fs::create_dir_all(d.join("data")).unwrap();
    flow::synthetic::write_corpus(&d.join("data"), 30, 8_000, 3).unwrap();
    std::fs::write(d.join("recipe.toml"), RECIPE).unwrap();
    std::fs::write(d.join("tiny-flow.toml"), flow).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_flow_runs_end_to_end_and_its_model_serves() {
    let d = setup("full", FLOW);
    let (cfg, runp, data) = (d.join("tiny-flow.toml"), d.join("run"), d.join("data"));
    let out = run(&[
        "--threads",
        "1",
        "compress",
        "--config",
        s(&cfg),
        "--out",
        s(&runp),
        "--data-dir",
        s(&data),
        "--json",
        "--no-progress",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let rec: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("--json prints flow.json");
    assert_eq!(rec["status"], "finished");
    assert_eq!(rec["name"], "tiny-flow");
    assert_eq!(rec["target"], "cpu-dense");
    // Measured here: the table exists and the seed width is one of its widths.
    assert!(runp.join("table.json").is_file());
    let seed = rec["sizing"]["seed_widths"][0].as_u64().unwrap();
    assert!(
        [16, 24].contains(&seed),
        "10 units asked, measured widths 8/16/24: {seed}"
    );
    let model = runp.join("final/model.safetensors");
    assert!(runp.join("final/model.onnx").is_file(), "no ONNX export");
    let bench = run(&["bench", "--model", s(&model), "--reps", "2", "--json"]);
    assert_eq!(bench.status.code(), Some(0));
    let infer = run(&["infer", "--model", s(&model), "--tokens", "1,2,3", "--json"]);
    assert_eq!(infer.status.code(), Some(0));
    // The report of the run: Markdown and self-contained HTML naming the final model.
    let rep = d.join("report");
    let report = run(&["report", s(&runp), "--out", s(&rep)]);
    assert_eq!(report.status.code(), Some(0));
    let md = std::fs::read_to_string(rep.join("report.md")).unwrap();
    let html = std::fs::read_to_string(rep.join("report.html")).unwrap();
    assert!(md.contains("final") && md.contains("baseline"), "{md}");
    assert!(
        html.contains("<svg") && !html.contains("src=\"http"),
        "external resource in HTML"
    );
    // Resuming a finished run trains nothing again and writes the same model.
    let before = std::fs::read(&model).unwrap();
    let again = run(&[
        "--threads",
        "1",
        "compress",
        "--resume",
        s(&runp),
        "--data-dir",
        s(&data),
        "--no-progress",
    ]);
    assert_eq!(again.status.code(), Some(0));
    // The run keeps its name (not that of its own copy, RUN/flow.toml).
    assert!(String::from_utf8_lossy(&again.stderr).contains("flow tiny-flow for cpu-dense"));
    assert_eq!(std::fs::read(&model).unwrap(), before);
    // Another config over the same run folder is refused.
    let other = d.join("other.toml");
    std::fs::write(&other, FLOW.replace("tolerance = 0.2", "tolerance = 0.3")).unwrap();
    let clash = run(&["compress", "--config", s(&other), "--out", s(&runp)]);
    assert_eq!(clash.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&clash.stderr).contains("another flow config"));
}

#[test]
fn bad_input_is_refused_before_any_training() {
    let d = setup(
        "bad",
        &FLOW.replace("densities = [0.5]", "densities = [1.5]"),
    );
    let runp = d.join("run");
    let out = run(&[
        "compress",
        "--config",
        s(&d.join("tiny-flow.toml")),
        "--out",
        s(&runp),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[prune] densities") && err.contains("tiny-flow.toml"),
        "{err}"
    );
    assert!(!runp.exists(), "a refused config left a run folder");
    // --resume of a folder that holds no run.
    let empty = d.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = run(&["compress", "--resume", s(&empty)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a compress run"));
    // Neither --config nor --resume.
    assert_eq!(run(&["compress"]).status.code(), Some(2));
}
