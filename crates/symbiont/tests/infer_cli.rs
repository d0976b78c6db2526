//! `symbiont bench` and `symbiont infer` on the real binary: the JSON contract of the acceptance
//! checks, formats agreeing with each other, and clear errors for bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_symbiont"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name)
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the symbiont binary runs")
}

fn json(out: &Output) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

#[test]
fn bench_reports_latency_quantiles_and_rates() {
    let out = run(bin().args([
        "bench",
        "--layers",
        "2",
        "--hidden",
        "48",
        "--input",
        "20",
        "--batch",
        "2",
        "--seq",
        "7",
        "--reps",
        "5",
        "--min-time",
        "0",
        "--threads",
        "1",
        "--json",
    ]));
    let r = json(&out);
    let (p10, med, p90) = (
        r["p10_ms"].as_f64().unwrap(),
        r["median_ms"].as_f64().unwrap(),
        r["p90_ms"].as_f64().unwrap(),
    );
    assert!(0.0 < p10 && p10 <= med && med <= p90, "{r}");
    assert!(r["reps"].as_u64().unwrap() >= 5);
    assert!(r["gb_per_s"].as_f64().unwrap() > 0.0 && r["copy_gb_per_s"].as_f64().unwrap() > 0.0);
    // Two layers: 4·48·20 + 4·48·48 + 2 · 4·48·48 multiply-adds per step and batch row.
    let macs = 4 * 48 * 20 + 4 * 48 * 48 + 2 * 4 * 48 * 48;
    assert_eq!(
        r["flops_per_run"].as_f64().unwrap(),
        (2 * 7 * 2 * macs) as f64
    );
    assert_eq!(r["matrices"].as_array().unwrap().len(), 4);
}

#[test]
fn bench_sparse_picks_sparse_formats_and_honours_a_fixed_one() {
    let out = run(bin().args([
        "bench",
        "--hidden",
        "256",
        "--density",
        "0.05",
        "--reps",
        "3",
        "--min-time",
        "0",
        "--threads",
        "1",
        "--json",
    ]));
    let r = json(&out);
    assert_eq!(r["format"], "auto");
    let hh = &r["matrices"][1];
    assert_eq!(hh["name"], "weight_hh_l0");
    assert!(
        hh["format"].as_str().unwrap() != "dense",
        "5% density should not stay dense: {hh}"
    );
    let out = run(bin().args([
        "bench",
        "--hidden",
        "64",
        "--density",
        "0.5",
        "--mask",
        "blocks:4x4",
        "--format",
        "bsr4x4",
        "--reps",
        "3",
        "--min-time",
        "0",
        "--threads",
        "1",
        "--dtype",
        "f32",
        "--json",
    ]));
    let r = json(&out);
    assert!(
        r["matrices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["format"] == "bsr4x4"),
        "{r}"
    );
}

#[test]
fn bench_times_a_pytorch_file_with_bf16_weights() {
    // The bidirectional stack of the inference fixture is stored with a `bi.` prefix, so use the
    // H-LSTM fixture (bare names) and the LM fixture (word-language-model names).
    for (file, layers) in [
        ("hlstm_tiny.safetensors", 1),
        ("lstm_lm_tiny.safetensors", 2),
    ] {
        let out = run(bin().args(["bench", "--model"]).arg(fixture(file)).args([
            "--reps",
            "3",
            "--min-time",
            "0",
            "--dtype",
            "bf16",
            "--threads",
            "2",
            "--json",
        ]));
        let r = json(&out);
        assert_eq!(r["layers"], layers, "{file}");
        assert_eq!(r["dtype"], "bf16");
        assert!(r["median_ms"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn bench_rejects_bad_configurations_with_a_message() {
    for (args, msg) in [
        (vec!["bench", "--json"], "--hidden"),
        (
            vec!["bench", "--hidden", "32", "--density", "0", "--json"],
            "density 0 is not in (0, 1]",
        ),
        (
            vec!["bench", "--hidden", "32", "--format", "coo", "--json"],
            "unknown matrix format `coo`",
        ),
        (
            vec!["bench", "--hidden", "32", "--dtype", "f16", "--json"],
            "unknown dtype `f16`",
        ),
        (
            vec!["bench", "--hidden", "32", "--mask", "stripes", "--json"],
            "unknown mask `stripes`",
        ),
    ] {
        let out = run(bin().args(&args));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(msg), "{args:?}: {err}");
    }
    let out = run(bin().args(["bench", "--model", "/nonexistent.safetensors", "--json"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.safetensors"));
}

#[test]
fn infer_formats_agree_on_a_model_file() {
    let model = fixture("lstm_lm_tiny.safetensors");
    let logits = |extra: &[&str]| -> Vec<f64> {
        let r = json(&run(bin()
            .arg("infer")
            .arg("--model")
            .arg(&model)
            .args(["--tokens", "1 4 2 9 3", "--all-steps", "--json"])
            .args(extra)));
        r["logits"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
            .collect()
    };
    let dense = logits(&[]);
    assert_eq!(dense.len(), 5 * 11);
    for extra in [
        &["--format", "csr"][..],
        &["--format", "bsr1x8"],
        &["--format", "auto"],
        &["--threads", "2"],
    ] {
        let got = logits(extra);
        // Fails on NaN and on a length mismatch (kernels::check).
        let worst = kernels::check::max_abs_diff(&got, &dense);
        assert!(worst < 1e-5, "{extra:?}: {worst}");
    }
    let bf16 = logits(&["--dtype", "bf16"]);
    let worst = kernels::check::max_abs_diff(&bf16, &dense);
    assert!(
        worst > 0.0 && worst < 2e-2,
        "bf16 rounds the weights a little: {worst}"
    );
}
