//! End-to-end tests of the `symbiont` binary on the real PTB files (../shared/data/ptb, or
//! data/ptb as written by tools/get-ptb.sh) with a tiny model, so they run in seconds. Without PTB
//! (a fresh clone before the quickstart), or with `SYMBIONT_TEST_SYNTHETIC_PTB=1`, they run on a
//! synthetic corpus in PTB's format; the checks of PTB's own checksums need the real files.

use std::path::{Path, PathBuf};

mod common;
use common::*;

#[test]
fn gradcheck_passes() {
    let out = run(bin().args(["gradcheck", "--json"]));
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["passed"], true);
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"lstm/dw_hh") && names.contains(&"lm/decoder.weight"),
        "{names:?}"
    );
}

#[test]
fn train_then_eval_gives_a_perplexity() {
    let dir = tmpdir("train-eval");
    let cfg = tiny_config(&dir, "clip_norm = 5.0", 1, 0);
    let out_dir = dir.join("run");
    let out = run(train_cmd(&cfg)
        .arg("--out")
        .arg(&out_dir)
        .args(["--max-steps", "30", "--json"]));
    assert_eq!(out.status.code(), Some(0));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["status"], "max_steps");
    assert_eq!(summary["step"], 30);
    // The levels the kernels and the gemm crate ran at (this process sees the same SYMBIONT_ISA).
    assert_eq!(summary["isa"], kernels::isa::active().name());
    assert_eq!(summary["gemm_isa"], kernels::isa::gemm_level().name());
    let metrics = std::fs::read_to_string(out_dir.join("metrics.jsonl")).unwrap();
    assert!(
        metrics
            .lines()
            .filter(|l| l.contains("\"kind\":\"train\""))
            .count()
            >= 15
    );
    let out = run(bin()
        .args(["eval", "--checkpoint"])
        .arg(&out_dir)
        .args(["--split", "valid", "--batch", "20", "--json", "--data-dir"])
        .arg(ptb_dir()));
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ppl = v["perplexity"].as_f64().unwrap();
    // 30 steps of training beat the uniform guess (the vocabulary: 10000 on PTB) by far, yet are
    // far from converged on PTB.
    if real_ptb() {
        assert!(ppl > 100.0 && ppl < 3000.0, "perplexity {ppl}");
    } else {
        assert!(ppl < 0.9 * corpus_vocab() as f64, "perplexity {ppl}");
    }
    // Batch 20: every row of a stream but the last has a successor (3688 rows on PTB).
    let valid = corpus_tokens("valid");
    if real_ptb() {
        assert_eq!(valid, 73_760);
    }
    assert_eq!(v["tokens"].as_u64().unwrap(), (valid / 20 - 1) * 20);
    assert_eq!(v["engine"], "train");
    assert_eq!(v["isa"], kernels::isa::active().name());
    assert_eq!(v["gemm_isa"], kernels::isa::gemm_level().name());
    // The inference plan scores the same: f32 and CSR agree closely, bf16 weights move it a little.
    for (extra, tol) in [
        (&["--dtype", "f32"][..], 1e-4),
        (&["--format", "csr"], 1e-4),
        (&["--dtype", "bf16"], 1e-2),
    ] {
        let out = run(bin()
            .args(["eval", "--checkpoint"])
            .arg(&out_dir)
            .args(["--split", "valid", "--batch", "20", "--json", "--data-dir"])
            .arg(ptb_dir())
            .args(extra));
        let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let plan_ppl = p["perplexity"].as_f64().unwrap();
        assert!(
            ((plan_ppl - ppl) / ppl).abs() < tol,
            "{extra:?}: {plan_ppl} vs {ppl}"
        );
        assert!(p["engine"].as_str().unwrap().starts_with("plan"));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Trains `cfg` for `total` steps into `dir/a`, and for `stop` steps into `dir/b` then resumes
/// `dir/b` to `total`; asserts the checkpoint files `files` are byte-identical. Returns `dir/a`.
fn assert_resume_is_exact(
    cfg: &Path,
    dir: &Path,
    stop: &str,
    total: &str,
    files: &[&str],
) -> PathBuf {
    let (a, b) = (dir.join("a"), dir.join("b"));
    for (out, steps) in [(&a, total), (&b, stop)] {
        let status = run(train_cmd(cfg)
            .arg("--out")
            .arg(out)
            .args(["--max-steps", steps]))
        .status;
        assert_eq!(status.code(), Some(0));
    }
    let out = run(bin()
        .args(["train", "--resume"])
        .arg(&b)
        .arg("--data-dir")
        .arg(ptb_dir())
        .args(["--max-steps", total]));
    assert_eq!(out.status.code(), Some(0));
    for f in files {
        assert!(
            read(&a.join("checkpoint").join(f)) == read(&b.join("checkpoint").join(f)),
            "{}: {f} differs after resume",
            cfg.display()
        );
    }
    a
}

#[test]
fn resume_reproduces_an_uninterrupted_run_exactly() {
    let dir = tmpdir("resume");
    // Stops mid-epoch, so the resumed run must restore the carried LSTM state, the momentum
    // buffer, the data position and the dropout stream; clipping is active.
    let cfg = tiny_config(&dir, "clip_norm = 0.5\nmomentum = 0.5", 2, 0);
    assert_resume_is_exact(
        &cfg,
        &dir,
        "17",
        "40",
        &["model.safetensors", "optimizer.safetensors"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_inputs_fail_with_exit_2_and_a_named_cause() {
    let dir = tmpdir("errors");
    // Unknown key in the config.
    let cfg = tiny_config(&dir, "clip_norm = 5.0\nclipnorm = 1.0", 1, 0);
    let out = run(&mut train_cmd(&cfg));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tiny.toml") && err.contains("clipnorm"),
        "{err}"
    );

    // Missing data folder.
    let cfg = tiny_config(&dir, "", 1, 0);
    let out = run(bin()
        .arg("train")
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.join("nowhere")));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ptb.train.txt") && err.contains("cannot read"),
        "{err}"
    );

    // A corrupted copy of the corpus.
    let bad = dir.join("bad-ptb");
    std::fs::create_dir_all(&bad).unwrap();
    for f in ["ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"] {
        std::fs::copy(ptb_dir().join(f), bad.join(f)).unwrap();
    }
    let mut text = std::fs::read_to_string(bad.join("ptb.valid.txt")).unwrap();
    let line = text.lines().count() + 1;
    text.push_str(" zyzzyva\n");
    std::fs::write(bad.join("ptb.valid.txt"), text).unwrap();
    if real_ptb() {
        // PTB's published sums catch the change (a synthetic corpus has none).
        let out = run(bin()
            .arg("train")
            .arg("--config")
            .arg(&cfg)
            .arg("--data-dir")
            .arg(&bad));
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("ptb.valid.txt: MD5"), "{err}");
        assert_eq!(line, 3371);
    }

    // Same corpus with checks off: the unknown word is named with its line.
    let text = std::fs::read_to_string(&cfg).unwrap();
    if !text.contains("verify_checksums = false") {
        std::fs::write(
            &cfg,
            text.replace("[data]", "[data]\nverify_checksums = false"),
        )
        .unwrap();
    }
    let out = run(bin()
        .arg("train")
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(&bad));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("ptb.valid.txt:{line}: word `zyzzyva`")),
        "{err}"
    );

    // Eval of something that is not a checkpoint.
    let out = run(bin()
        .args(["eval", "--split", "test", "--checkpoint"])
        .arg(&dir));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no checkpoint here"));

    // Usage error.
    let out = run(bin().args(["eval", "--split", "dev", "--checkpoint", "x"]));
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn diverging_run_stops_and_keeps_the_last_good_checkpoint() {
    let dir = tmpdir("nan");
    // No clipping and an absurd learning rate: the weights blow up within a few steps.
    let cfg = tiny_config(&dir, "", 1, 1);
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("lr = 1.0", "lr = 1e30"),
    )
    .unwrap();
    let out_dir = dir.join("run");
    let out = run(train_cmd(&cfg).arg("--out").arg(&out_dir));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("non-finite") && err.contains("last good checkpoint"),
        "{err}"
    );
    let trainer: serde_json::Value =
        serde_json::from_slice(&read(&out_dir.join("checkpoint/trainer.json"))).unwrap();
    let saved = trainer["step"].as_u64().unwrap();
    assert!(
        saved >= 1,
        "a checkpoint from before the divergence is kept"
    );
    // The kept weights are finite (the reader refuses NaN and infinities)…
    let model =
        model::checkpoint::TensorFile::read(&out_dir.join("checkpoint/model.safetensors")).unwrap();
    for name in model.names() {
        model.floats(name, None).unwrap();
    }
    // …but one step at lr = 1e30 left them so large that the loss overflows: eval says so with
    // exit 2 instead of printing a null perplexity.
    let out = run(bin()
        .args([
            "eval",
            "--split",
            "valid",
            "--batch",
            "50",
            "--json",
            "--checkpoint",
        ])
        .arg(&out_dir)
        .arg("--data-dir")
        .arg(ptb_dir()));
    let err = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert!(v["perplexity"].as_f64().is_some_and(f64::is_finite), "{v}");
        }
        Some(2) => assert!(err.contains("overflows"), "{err}"),
        code => panic!("eval of the kept checkpoint: exit {code:?}: {err}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn inspect(dir: &Path) -> serde_json::Value {
    let out = run(bin().arg("inspect").arg(dir).arg("--json"));
    assert_eq!(out.status.code(), Some(0));
    serde_json::from_slice(&out.stdout).unwrap()
}

const PRUNE: &str = r#"
[compress]
tensors = "weights"
[[compress.phase]]
what = "prune"
curve = "cubic"
from = 1.0
to = 0.3
start = "2 steps"
end = "10 steps"
every = "2 steps"
"#;

#[test]
fn block_pruning_leaves_whole_tiles_that_the_block_sparse_kernels_run() {
    let dir = tmpdir("block-prune");
    let cfg = tiny_config(&dir, "clip_norm = 5.0\nmomentum = 0.9", 1, 0);
    let block = PRUNE.replace(
        "tensors = \"weights\"",
        "tensors = \"weights\"\nblock = \"4x4\"",
    );
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap() + &block).unwrap();
    let out_dir = dir.join("run");
    let out = run(train_cmd(&cfg)
        .arg("--out")
        .arg(&out_dir)
        .args(["--max-steps", "14"]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let weights = out_dir.join("checkpoint/model.safetensors");
    let f = model::checkpoint::TensorFile::read(&weights).unwrap();
    for name in [
        "rnn.weight_ih_l0",
        "rnn.weight_hh_l0",
        "rnn.weight_ih_l1",
        "rnn.weight_hh_l1",
    ] {
        let shape = f.shape(name).unwrap().to_vec();
        let w = f.floats(name, None).unwrap();
        let (rows, cols) = (shape[0], shape[1]);
        let zeros = w.iter().filter(|&&v| v == 0.0).count() as f64;
        let density = 1.0 - zeros / w.len() as f64;
        assert!(
            (density - 0.3).abs() < 16.0 / w.len() as f64 + 0.01,
            "{name}: {density}"
        );
        // Every 4x4 tile is all zero or all trained (non-zero).
        for r0 in (0..rows).step_by(4) {
            for c0 in (0..cols).step_by(4) {
                let tile: Vec<f64> = (r0..r0 + 4)
                    .flat_map(|r| (c0..c0 + 4).map(move |c| (r, c)))
                    .map(|(r, c)| w[r * cols + c])
                    .collect();
                let z = tile.iter().filter(|&&v| v == 0.0).count();
                assert!(z == 0 || z == 16, "{name} tile ({r0}, {c0}): {tile:?}");
            }
        }
    }
    // The block-sparse plan gives the dense plan's logits on the pruned model.
    let logits = |format: &str| -> serde_json::Value {
        let out = run(bin().arg("infer").arg("--model").arg(&weights).args([
            "--tokens",
            "1 5 9 2 7",
            "--format",
            format,
            "--json",
        ]));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["logits"].clone()
    };
    let (dense, bsr) = (logits("dense"), logits("bsr4x4"));
    for (a, b) in dense
        .as_array()
        .unwrap()
        .iter()
        .zip(bsr.as_array().unwrap())
    {
        let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
        assert!((a - b).abs() < 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gradual_pruning_reaches_its_density_and_pruned_weights_stay_zero() {
    let dir = tmpdir("prune");
    // Momentum on: pruned weights must not be revived by the momentum buffer either.
    let cfg = tiny_config(&dir, "clip_norm = 5.0\nmomentum = 0.9", 1, 0);
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap() + PRUNE).unwrap();
    let out_dir = dir.join("run");
    // 10 more steps after the schedule ends.
    let out = run(train_cmd(&cfg)
        .arg("--out")
        .arg(&out_dir)
        .args(["--max-steps", "20"]));
    assert_eq!(out.status.code(), Some(0));
    let v = inspect(&out_dir);
    for t in v["tensors"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let density = t["density"].as_f64().unwrap();
        if name.starts_with("rnn.weight_") {
            assert!((density - 0.3).abs() < 0.01, "{name}: density {density}");
        } else {
            assert!(density > 0.99, "{name} is not masked: density {density}");
        }
    }
    let metrics = std::fs::read_to_string(out_dir.join("metrics.jsonl")).unwrap();
    let prunes: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| e["kind"] == "compress")
        .collect();
    assert_eq!(prunes.len(), 5, "pruned at steps 2, 4, 6, 8, 10");
    let densities: Vec<f64> = prunes
        .iter()
        .map(|e| e["density"].as_f64().unwrap())
        .collect();
    assert!(densities.windows(2).all(|w| w[1] < w[0]), "{densities:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resume_with_masks_reproduces_an_uninterrupted_run() {
    let dir = tmpdir("prune-resume");
    let cfg = tiny_config(&dir, "clip_norm = 5.0\nmomentum = 0.9", 1, 0);
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap() + PRUNE).unwrap();
    // Stops at step 5, in the middle of the pruning schedule.
    let files = [
        "model.safetensors",
        "optimizer.safetensors",
        "extra.safetensors",
    ];
    let a = assert_resume_is_exact(&cfg, &dir, "5", "14", &files);
    // Without its masks the run cannot resume exactly: refused, naming the file.
    std::fs::remove_file(a.join("checkpoint/extra.safetensors")).unwrap();
    let out = run(bin()
        .args(["train", "--resume"])
        .arg(&a)
        .args(["--max-steps", "16", "--data-dir"])
        .arg(ptb_dir()));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("extra.safetensors") && err.contains("masks"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_impossible_schedule_is_refused_before_training() {
    let dir = tmpdir("bad-schedule");
    let cfg = tiny_config(&dir, "clip_norm = 5.0", 1, 0);
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg).unwrap() + &PRUNE.replace("to = 0.3", "to = 1.3"),
    )
    .unwrap();
    let out = run(train_cmd(&cfg).arg("--out").arg(dir.join("run")));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tiny.toml") && err.contains("to must be in (0, 1]"),
        "{err}"
    );
    assert!(!dir.join("run/checkpoint").exists(), "nothing trained");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn growth_from_a_sparse_seed_raises_density_by_gradient() {
    let dir = tmpdir("grow");
    let cfg = tiny_config(&dir, "clip_norm = 5.0", 1, 0);
    let grow = r#"
[compress]
tensors = "weights"
initial_density = 0.5
[[compress.phase]]
what = "grow"
curve = "linear"
from = 0.5
to = 0.8
start = "4 steps"
end = "8 steps"
every = "2 steps"
accumulate = 3
"#;
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap() + grow).unwrap();
    let out_dir = dir.join("run");
    let out = run(train_cmd(&cfg)
        .arg("--out")
        .arg(&out_dir)
        .args(["--max-steps", "12"]));
    assert_eq!(out.status.code(), Some(0));
    let metrics = std::fs::read_to_string(out_dir.join("metrics.jsonl")).unwrap();
    let grows: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| e["what"] == "grow")
        .collect();
    assert_eq!(grows.len(), 3, "grown at steps 4, 6, 8");
    let first = grows[0]["density_before"].as_f64().unwrap();
    assert!((first - 0.5).abs() < 0.02, "random seed density {first}");
    let last = grows[2]["density"].as_f64().unwrap();
    assert!((last - 0.8).abs() < 0.01, "density after growth {last}");
    // Grown connections start at zero and then train: the final weights are denser than the seed.
    let v = inspect(&out_dir);
    for t in v["tensors"].as_array().unwrap() {
        if t["name"].as_str().unwrap().starts_with("rnn.weight_") {
            let d = t["density"].as_f64().unwrap();
            assert!(d > 0.75 && d <= 0.81, "{}: {d}", t["name"]);
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn structured_unit_pruning_then_compaction_keeps_the_function() {
    let dir = tmpdir("units");
    let cfg = tiny_config(&dir, "clip_norm = 5.0\nmomentum = 0.5", 1, 0);
    let units = r#"
[compress]
[[compress.phase]]
what = "units"
curve = "linear"
from = 1.0
to = 0.5
start = "2 steps"
end = "6 steps"
every = "2 steps"
"#;
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap() + units).unwrap();
    let run_dir = dir.join("run");
    let out = run(train_cmd(&cfg)
        .arg("--out")
        .arg(&run_dir)
        .args(["--max-steps", "10"]));
    assert_eq!(out.status.code(), Some(0));
    let small = dir.join("small");
    let out = run(bin()
        .arg("compact")
        .arg(&run_dir)
        .arg("--out")
        .arg(&small)
        .arg("--json"));
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["hidden_before"], serde_json::json!([16, 16]));
    assert_eq!(v["hidden_after"], serde_json::json!([8, 8]));
    assert_eq!(inspect(&small)["layers"][1]["hidden"], 8);
    // Same perplexity from the masked and the compacted model.
    let ppl = |d: &Path| {
        let out = run(bin()
            .args([
                "eval",
                "--split",
                "valid",
                "--batch",
                "50",
                "--json",
                "--checkpoint",
            ])
            .arg(d)
            .arg("--data-dir")
            .arg(ptb_dir()));
        assert_eq!(out.status.code(), Some(0));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["perplexity"]
            .as_f64()
            .unwrap()
    };
    let (a, b) = (ppl(&run_dir), ppl(&small));
    assert!((a - b).abs() < 1e-4 * a, "masked {a} vs compacted {b}");
    // The compacted run trains on.
    let out = run(bin()
        .args(["train", "--resume"])
        .arg(&small)
        .arg("--data-dir")
        .arg(ptb_dir())
        .args(["--max-steps", "13"]));
    assert_eq!(out.status.code(), Some(0));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn adam_and_adamw_train_and_resume_exactly() {
    for kind in ["adam", "adamw"] {
        let dir = tmpdir(kind);
        let cfg = tiny_config(&dir, "clip_norm = 5.0\nweight_decay = 0.01", 1, 0);
        let text = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("kind = \"sgd\"", &format!("kind = \"{kind}\""))
            .replace("lr = 1.0", "lr = 0.003");
        std::fs::write(&cfg, text).unwrap();
        let a = assert_resume_is_exact(
            &cfg,
            &dir,
            "5",
            "12",
            &["model.safetensors", "optimizer.safetensors"],
        );
        // Adam's two moment buffers are in the checkpoint.
        let opt = std::fs::read(a.join("checkpoint/optimizer.safetensors")).unwrap();
        let header = String::from_utf8_lossy(&opt[8..512.min(opt.len())]).to_string();
        assert!(
            header.contains("optim.m") && header.contains("optim.v"),
            "{header}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn infer_gives_pytorchs_logits_on_pytorchs_weights() {
    // The fixture holds a PyTorch word LM, a (T, B) batch and PyTorch's logits (T, B, V).
    let fixture = repo_root().join("fixtures/lstm_lm_tiny.safetensors");
    let f = model::checkpoint::TensorFile::read(&fixture).unwrap();
    let shape = f.shape("input").unwrap().to_vec();
    let (t, b) = (shape[0], shape[1]);
    let input = f.ints("input", None).unwrap();
    let want = f.floats("logits", None).unwrap();
    let v = want.len() / (t * b);
    // Stream 1 of the batch, as a batch of one.
    let tokens: Vec<String> = (0..t).map(|i| input[i * b + 1].to_string()).collect();
    let out = run(bin()
        .arg("infer")
        .arg("--model")
        .arg(&fixture)
        .arg("--tokens")
        .arg(tokens.join(" "))
        .args(["--all-steps", "--json"]));
    assert_eq!(out.status.code(), Some(0));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = got["logits"].as_array().unwrap();
    assert_eq!(rows.len(), t);
    for (i, row) in rows.iter().enumerate() {
        for (j, x) in row.as_array().unwrap().iter().enumerate() {
            let w = want[(i * b + 1) * v + j];
            assert!(
                (x.as_f64().unwrap() - w).abs() < 2e-6,
                "step {i} logit {j}: {x} vs {w}"
            );
        }
    }
    // Last step only.
    let out = run(bin()
        .arg("infer")
        .arg("--model")
        .arg(&fixture)
        .arg("--tokens")
        .arg(tokens.join(","))
        .arg("--json"));
    let last: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(last["logits"], rows[t - 1]);
    // Out-of-vocabulary id.
    let out = run(bin()
        .arg("infer")
        .arg("--model")
        .arg(&fixture)
        .args(["--tokens", "1 99", "--json"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("id 99 is outside the vocabulary of 11"));
}

#[test]
fn step_limits_are_exact_and_self_overwrites_and_absurd_values_are_refused() {
    let dir = tmpdir("edges");
    let cfg = tiny_config(&dir, "clip_norm = 5.0", 1, 0);
    // --max-steps 0 takes no step; a resume at its limit takes none either.
    let run_dir = dir.join("run");
    let out = run(train_cmd(&cfg)
        .arg("--out")
        .arg(&run_dir)
        .args(["--max-steps", "0", "--json"]));
    assert_eq!(out.status.code(), Some(0));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["step"], 0);
    let out = run(train_cmd(&cfg)
        .arg("--out")
        .arg(&run_dir)
        .args(["--max-steps", "3", "--json"]));
    assert_eq!(out.status.code(), Some(0));
    let out = run(bin()
        .args(["train", "--resume"])
        .arg(&run_dir)
        .args(["--max-steps", "3", "--json", "--data-dir"])
        .arg(ptb_dir()));
    assert_eq!(out.status.code(), Some(0));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["step"], 3, "a resume at its step limit trained on");
    // compact onto its own source is refused, the source kept.
    let before = read(&run_dir.join("checkpoint/model.safetensors"));
    let out = run(bin()
        .arg("compact")
        .arg(&run_dir)
        .arg("--out")
        .arg(&run_dir));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("would overwrite"));
    assert_eq!(read(&run_dir.join("checkpoint/model.safetensors")), before);
    // bench with no timed run.
    let out = run(bin().args(["bench", "--hidden", "8", "--reps", "0"]));
    assert_eq!(out.status.code(), Some(2));
    // Sizes beyond memory: exit 2 naming the size and the bytes, not a panic or an abort.
    let out = run(bin().args(["bench", "--hidden", "1000000000"]));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("hidden 1000000000") && err.contains("GB"),
        "{err}"
    );
    let big = dir.join("big.toml");
    std::fs::write(
        &big,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("hidden = 16", "hidden = 1000000000"),
    )
    .unwrap();
    let out = run(train_cmd(&big).arg("--out").arg(dir.join("big")));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("hidden [1000000000") && err.contains("GB"),
        "{err}"
    );
    // A phase end far beyond u64 steps once multiplied by the epoch length: refused, not wrapped.
    let huge = dir.join("huge.toml");
    std::fs::write(
        &huge,
        std::fs::read_to_string(&cfg).unwrap()
            + "[compress]\n[[compress.phase]]\nwhat = \"prune\"\nfrom = 1.0\nto = 0.5\n\
               start = \"0 steps\"\nend = \"396883411297781 epochs\"\nevery = \"1 steps\"\n",
    )
    .unwrap();
    let out = run(train_cmd(&huge).arg("--out").arg(dir.join("huge")));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("after the run's last step"));
    std::fs::remove_dir_all(&dir).unwrap();
}
