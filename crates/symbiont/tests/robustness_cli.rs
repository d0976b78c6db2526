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

/// A change to one tensor of a model file.
type Change<'a> = (&'a str, &'a dyn Fn(&mut [f32]));

/// A copy of `ckpt` (a checkpoint folder) whose model file has `changes` applied.
fn tampered_checkpoint(ckpt: &Path, out: &Path, changes: &[Change<'_>]) {
    use model::checkpoint::{write_tensors, OutTensor, TensorData};
    std::fs::create_dir_all(out).unwrap();
    for entry in std::fs::read_dir(ckpt).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, out.join(p.file_name().unwrap())).unwrap();
    }
    let f = TensorFile::read(&ckpt.join("model.safetensors")).unwrap();
    let tensors: Vec<OutTensor> = f
        .names()
        .into_iter()
        .map(|n| {
            let mut v: Vec<f32> = f
                .floats(n, None)
                .unwrap()
                .iter()
                .map(|&x| x as f32)
                .collect();
            for (tensor, change) in changes {
                if n == *tensor {
                    change(&mut v);
                }
            }
            OutTensor {
                name: n.to_string(),
                shape: f.shape(n).unwrap().to_vec(),
                data: TensorData::F32Owned(v),
            }
        })
        .collect();
    write_tensors(
        &out.join("model.safetensors"),
        &tensors,
        f.metadata().clone(),
    )
    .unwrap();
}

#[test]
fn eval_infer_and_bench_refuse_non_finite_weights_and_outputs() {
    let dir = tmpdir("nonfinite");
    let cfg = tiny_config(&dir, "", 1, 0);
    let run_dir = dir.join("run");
    let out = run(train_cmd(&cfg)
        .arg("--out")
        .arg(&run_dir)
        .args(["--max-steps", "3"]));
    assert_eq!(out.status.code(), Some(0));
    let ckpt = run_dir.join("checkpoint");
    let nan = dir.join("nan");
    tampered_checkpoint(&ckpt, &nan, &[("rnn.weight_hh_l0", &|w| w[5] = f32::NAN)]);
    // Finite weights whose logits overflow f32: the top layer's gates saturate (input, candidate
    // and output gates open), so every unit's h is about tanh(1) = 0.76 from the first step, and
    // word 0's 16 decoder weights of 3e38 sum to ~4e39.
    let huge = dir.join("huge");
    let open_gates = |b: &mut [f32]| {
        let h = b.len() / 4;
        b[..h].fill(20.0);
        b[2 * h..].fill(20.0);
    };
    tampered_checkpoint(
        &ckpt,
        &huge,
        &[
            ("rnn.bias_ih_l1", &open_gates),
            ("decoder.weight", &|w| w[..16].fill(3e38)),
        ],
    );
    let expect_refusal = |cmd: &mut Command, needle: &str| {
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{needle}: stdout {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(err.contains(needle), "{err}");
    };
    for (folder, needle) in [(&nan, "holds a non-finite value"), (&huge, "not finite")] {
        let needle_eval = if folder == &nan {
            needle
        } else {
            "the loss over"
        };
        expect_refusal(
            bin()
                .args(["eval", "--json", "--split", "valid", "--checkpoint"])
                .arg(folder)
                .arg("--data-dir")
                .arg(ptb_dir()),
            needle_eval,
        );
        let model = folder.join("model.safetensors");
        let needle_infer = if folder == &nan {
            needle
        } else {
            "the logits overflow"
        };
        expect_refusal(
            bin()
                .args(["infer", "--json", "--tokens", "1 2 3", "--model"])
                .arg(&model),
            needle_infer,
        );
        expect_refusal(
            bin()
                .args([
                    "bench", "--json", "--batch", "1", "--seq", "4", "--reps", "3", "--model",
                ])
                .arg(&model),
            needle,
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
