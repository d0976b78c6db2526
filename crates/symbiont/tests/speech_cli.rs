//! Speech through the CLI as a user runs it, on a small corpus of tones written here in AN4's
//! layout: `train` with a speech config, `eval --json` with the keys the acceptance checks read,
//! `transcribe`, `compact`, `bench` of the deployment plan, and the refusals (an AN4 split that does not exist, a GPU) with exit 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("symbiont-speech-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_symbiont"))
        .args(args)
        .output()
        .expect("binary runs");
    eprintln!(
        "symbiont {}: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

fn tone(path: &Path, hz: f64, seconds: f64) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..(seconds * 16_000.0) as usize {
        let v = (2.0 * std::f64::consts::PI * hz * i as f64 / 16_000.0).sin() * 8000.0;
        w.write_sample(v as i16).unwrap();
    }
    w.finalize().unwrap();
}

fn corpus(d: &Path) {
    std::fs::create_dir_all(d.join("etc")).unwrap();
    for (split, count) in [("an4_train", 6), ("an4_test", 3)] {
        std::fs::create_dir_all(d.join("wav").join(split)).unwrap();
        let (mut ids, mut text) = (String::new(), String::new());
        for i in 0..count {
            let (word, hz) = if i % 2 == 0 {
                ("HI", 440.0)
            } else {
                ("LO", 220.0)
            };
            let id = format!("{split}-{i}");
            tone(&d.join(format!("wav/{split}/{id}.wav")), hz, 0.5);
            ids.push_str(&format!("{split}/{id}\n"));
            text.push_str(&format!("<s> {word} </s> ({id})\n"));
        }
        std::fs::write(d.join(format!("etc/{split}.fileids")), ids).unwrap();
        std::fs::write(d.join(format!("etc/{split}.transcription")), text).unwrap();
    }
}

const CONFIG: &str = r#"
[model]
arch = "deepspeech"
hidden = 8
layers = 2
conv_channels = 2
[data]
batch = 3
[optim]
kind = "adam"
lr = 1e-3
clip_norm = 400.0
[schedule]
epochs = 2
"#;

#[test]
fn train_eval_transcribe_and_compact_a_speech_model() {
    let d = tmpdir("flow");
    let data = d.join("an4");
    corpus(&data);
    let config = d.join("an4-tiny.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let (run_dir, data_s) = (d.join("run"), data.to_str().unwrap());
    let out = run(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data_s,
        "--out",
        run_dir.to_str().unwrap(),
        "--json",
        "--max-steps",
        "3",
    ]);
    let t = json(&out);
    assert_eq!(t["steps"], 3);
    assert_eq!(t["device"], "cpu");
    for key in [
        "wer",
        "cer",
        "wer_mean_utterance",
        "audio_seconds_per_second",
    ] {
        assert!(
            t[key].as_f64().is_some_and(f64::is_finite),
            "train --json lacks {key}: {t}"
        );
    }
    let run_s = run_dir.to_str().unwrap();
    let e = json(&run(&[
        "eval",
        "--checkpoint",
        run_s,
        "--split",
        "test",
        "--data-dir",
        data_s,
        "--json",
    ]));
    for key in ["wer", "cer", "wer_mean_utterance"] {
        let v = e[key].as_f64().unwrap();
        assert!((0.0..=100.0 * 10.0).contains(&v), "{key} = {v}");
    }
    assert_eq!(e["utterances"], 3);
    assert_eq!(e["decoder"], "greedy");
    // The training run's final test rates are the checkpoint's.
    assert_eq!(e["wer"], t["wer"]);
    let b = json(&run(&[
        "eval",
        "--checkpoint",
        run_s,
        "--split",
        "test",
        "--data-dir",
        data_s,
        "--beam",
        "4",
        "--json",
    ]));
    assert_eq!(b["decoder"], "beam-4");
    let bad = run(&[
        "eval",
        "--checkpoint",
        run_s,
        "--split",
        "valid",
        "--data-dir",
        data_s,
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("AN4 has no `valid` split"));
    let wav0 = data.join("wav/an4_test/an4_test-0.wav");
    let wav1 = data.join("wav/an4_test/an4_test-1.wav");
    // A longer file than the first: the plan built for the first length runs it too.
    let wav2 = d.join("longer.wav");
    tone(&wav2, 330.0, 0.8);
    let tr = run(&[
        "transcribe",
        "--model",
        run_s,
        wav0.to_str().unwrap(),
        wav1.to_str().unwrap(),
        wav2.to_str().unwrap(),
    ]);
    assert!(tr.status.success());
    let lines: Vec<String> = String::from_utf8_lossy(&tr.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    // The deployment plan transcribes what the training forward pass decodes.
    let mut model = speech::checkpoint::load_model(Path::new(run_s)).unwrap();
    for (line, wav) in lines.iter().zip([&wav0, &wav1, &wav2]) {
        let spec = speech::data::featurize(wav).unwrap();
        let batch = speech::deepspeech::Batch::new(&[&spec], vec![Vec::new()]);
        let acts = model.forward(&batch, speech::deepspeech::Mode::Eval);
        let greedy = speech::training::Decoder::Greedy.decode(&acts.utterance_logits(0));
        let want = speech::labels::decode(&greedy);
        assert_eq!(line, &format!("{}\t{want}", wav.display()));
    }
    let small = d.join("small");
    let c = json(&run(&[
        "compact",
        run_s,
        "--out",
        small.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(c["hidden_before"], 8);
    let bench = |format: &str| {
        json(&run(&[
            "--threads",
            "1",
            "bench",
            "--model",
            run_s,
            "--audio-seconds",
            "0.5",
            "--reps",
            "3",
            "--min-time",
            "0",
            "--format",
            format,
            "--json",
        ]))
    };
    for format in ["dense", "csr"] {
        let b = bench(format);
        assert_eq!(b["engine"], "plan");
        assert!(b["median_ms"].as_f64().is_some_and(|v| v > 0.0), "{b}");
        assert!(b["ms_per_audio_second"].as_f64().unwrap() > 0.0);
        for stage in ["front_end", "recurrent", "output"] {
            let ms = b["stage_median_ms"][stage].as_f64().unwrap();
            assert!(
                ms > 0.0 && ms <= b["p90_ms"].as_f64().unwrap(),
                "{stage}: {b}"
            );
        }
        let mats = b["matrices"].as_array().unwrap();
        assert!(!mats.is_empty(), "{b}");
        let csr = mats
            .iter()
            .filter(|m| m["format"].as_str().unwrap().contains("csr"))
            .count();
        assert_eq!(csr > 0, format == "csr", "{b}");
    }
    let gpu = run(&[
        "--device",
        "cuda:0",
        "train",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(gpu.status.code(), Some(2));
}

#[test]
fn a_stop_signal_saves_a_speech_checkpoint_that_resumes() {
    // Speech training once ignored SIGINT / SIGTERM (a background run ignores SIGINT; SIGTERM
    // killed it) and lost everything since its last epoch.
    let d = tmpdir("signal");
    let data = d.join("an4");
    corpus(&data);
    let config = d.join("an4-long.toml");
    std::fs::write(&config, CONFIG.replace("epochs = 2", "epochs = 100000")).unwrap();
    let run_dir = d.join("run");
    let child = Command::new(env!("CARGO_BIN_EXE_symbiont"))
        .args(["--threads", "1", "train", "--json", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .arg("--out")
        .arg(&run_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The first epoch's checkpoint exists: training runs; interrupt it.
    let state = run_dir.join("state.json");
    let start = std::time::Instant::now();
    while !state.is_file() {
        assert!(start.elapsed().as_secs() < 120, "training did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "interrupted");
    assert!(v["wer"].is_null());
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let steps = saved["steps"].as_u64().unwrap();
    assert_eq!(v["steps"].as_u64(), Some(steps));
    assert!(steps >= 2, "{saved}");
    let r = json(&run(&[
        "--threads",
        "1",
        "train",
        "--resume",
        run_dir.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--max-steps",
        &(steps + 2).to_string(),
        "--json",
    ]));
    assert_eq!(r["status"], "max_steps");
    assert_eq!(r["steps"].as_u64(), Some(steps + 2));
    std::fs::remove_dir_all(&d).unwrap();
}
