//! End-to-end robustness of `symbiont train`: stop signals save a checkpoint that resumes, and
//! the thread count changes results by rounding only (see docs/results.md, "Determinism").

mod common;
use common::*;
use model::checkpoint::TensorFile;
use std::path::Path;
use std::process::Command;

fn a_stop_signal_saves_a_checkpoint_that_resumes(signal: &str, code: i32) {
    let dir = tmpdir(&format!("sig{signal}"));
    let cfg = tiny_config(&dir, "clip_norm = 5.0", 1, 0);
    let out_dir = dir.join("run");
    let child = train_cmd(&cfg)
        .arg("--out")
        .arg(&out_dir)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until training has started (the first metrics line exists), then interrupt.
    let metrics = out_dir.join("metrics.jsonl");
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(&metrics)
        .map(|m| m.contains("\"kind\":\"train\""))
        .unwrap_or(false)
    {
        assert!(start.elapsed().as_secs() < 60, "training did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "SIG{signal}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trainer: serde_json::Value =
        serde_json::from_slice(&read(&out_dir.join("checkpoint/trainer.json"))).unwrap();
    let step = trainer["step"].as_u64().unwrap();
    assert!(step >= 2);
    let out = run(bin()
        .args(["train", "--resume"])
        .arg(&out_dir)
        .arg("--data-dir")
        .arg(ptb_dir())
        .args(["--max-steps"])
        .arg((step + 3).to_string())
        .arg("--json"));
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["step"].as_u64().unwrap(), step + 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ctrl_c_saves_a_checkpoint_that_resumes() {
    a_stop_signal_saves_a_checkpoint_that_resumes("INT", 130);
}

#[test]
fn sigterm_saves_a_checkpoint_that_resumes() {
    // A scheduler or `docker stop` sends SIGTERM: it used to end the run with 143 and nothing
    // saved since the last checkpoint.
    a_stop_signal_saves_a_checkpoint_that_resumes("TERM", 143);
}

/// Trains the tiny config widened to 96 units (so the threaded GEMM split and gate passes are
/// used) for 30 steps on `threads` threads; returns the weights file's bytes.
fn trained_weights(dir: &Path, threads: usize, name: &str) -> Vec<u8> {
    let cfg = tiny_config(dir, "clip_norm = 0.5\nmomentum = 0.5", 1, 0);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("hidden = 16", "hidden = 96");
    std::fs::write(&cfg, text).unwrap();
    let out_dir = dir.join(name);
    let out = run(train_cmd(&cfg).arg("--out").arg(&out_dir).args([
        "--max-steps",
        "30",
        "--threads",
        &threads.to_string(),
    ]));
    assert_eq!(out.status.code(), Some(0));
    read(&out_dir.join("checkpoint/model.safetensors"))
}

#[test]
fn the_same_seed_and_thread_count_give_the_same_bytes_and_other_counts_differ_by_rounding() {
    let dir = tmpdir("threads");
    let two = trained_weights(&dir, 2, "two");
    // Twice on 2 threads: bit for bit (a race between threads would show here).
    assert!(
        two == trained_weights(&dir, 2, "two-again"),
        "2 threads, two runs: weights differ"
    );
    // On 1 thread the GEMM blocks are cut differently, so sums are taken in another order: the
    // weights may differ in the last bits, never by more.
    let one = trained_weights(&dir, 1, "one");
    let (a, b) = (dir.join("one.safetensors"), dir.join("two.safetensors"));
    std::fs::write(&a, &one).unwrap();
    std::fs::write(&b, &two).unwrap();
    let (fa, fb) = (TensorFile::read(&a).unwrap(), TensorFile::read(&b).unwrap());
    assert_eq!(fa.names(), fb.names());
    for name in fa.names() {
        let (wa, wb) = (
            fa.floats(name, None).unwrap(),
            fb.floats(name, None).unwrap(),
        );
        let worst = kernels::check::max_rel_diff(&wa, &wb, 1e-3);
        assert!(
            worst < 1e-4,
            "{name}: 1 vs 2 threads differ by {worst:e} (relative)"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
