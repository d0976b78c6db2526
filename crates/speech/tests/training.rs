//! Training on a small corpus written here in AN4's layout: the loss falls, a run stopped by a
//! step limit and resumed ends with the same model bit for bit as one uninterrupted run, and a
//! bad audio file stops the run naming it unless skipping is asked for.

use speech::checkpoint::load_run;
use speech::config::SpeechConfig;
use speech::training::{train, TrainOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("symbiont-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A tone whose pitch says the word: "HI" is 440 Hz, "LO" 220 Hz.
fn write_tone(path: &Path, hz: f64, seconds: f64) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let n = (seconds * 16_000.0) as usize;
    for i in 0..n {
        let v = (2.0 * std::f64::consts::PI * hz * i as f64 / 16_000.0).sin() * 8000.0;
        w.write_sample(v as i16).unwrap();
    }
    w.finalize().unwrap();
}

/// `train` and `test` utterances alternating HI / LO, of slightly different lengths.
fn corpus(name: &str, train: usize, test: usize) -> PathBuf {
    let d = temp(name);
    std::fs::create_dir_all(d.join("etc")).unwrap();
    for (split, count) in [("an4_train", train), ("an4_test", test)] {
        std::fs::create_dir_all(d.join("wav").join(split)).unwrap();
        let (mut ids, mut text) = (String::new(), String::new());
        for i in 0..count {
            let (word, hz) = if i % 2 == 0 {
                ("HI", 440.0)
            } else {
                ("LO", 220.0)
            };
            let id = format!("{split}-{i}");
            write_tone(
                &d.join(format!("wav/{split}/{id}.wav")),
                hz,
                0.4 + 0.02 * i as f64,
            );
            ids.push_str(&format!("{split}/{id}\n"));
            text.push_str(&format!("<s> {word} </s> ({id})\n"));
        }
        std::fs::write(d.join(format!("etc/{split}.fileids")), ids).unwrap();
        std::fs::write(d.join(format!("etc/{split}.transcription")), text).unwrap();
    }
    d
}

fn config(epochs: usize) -> SpeechConfig {
    let text = format!(
        r#"
[model]
arch = "deepspeech"
hidden = 8
layers = 2
conv_channels = 2
[data]
batch = 2
[optim]
kind = "adam"
lr = 3e-3
clip_norm = 400.0
[schedule]
epochs = {epochs}
anneal = 1.1
[run]
seed = 3
log_every = 0
eval_every = 0
"#
    );
    SpeechConfig::from_toml(&text, "test").unwrap()
}

fn options(data: &Path, out: &Path, max_steps: Option<u64>, resume: bool) -> TrainOptions {
    TrainOptions {
        data_dir: data.to_path_buf(),
        out: out.to_path_buf(),
        max_steps,
        resume: resume.then(|| out.to_path_buf()),
        interrupted: None,
    }
}

/// An interruption already requested: the run stops before its first step.
static STOP: AtomicBool = AtomicBool::new(true);

#[test]
fn the_loss_falls_and_a_resumed_run_matches_an_uninterrupted_one() {
    let data = corpus("resume", 8, 2);
    let (whole, split) = (temp("whole"), temp("split"));
    let s = train(config(3), &options(&data, &whole, None, false), &mut |_| {}).unwrap();
    assert_eq!(s.state.steps, 12);
    let h = &s.state.history;
    assert!(
        h[2].train_loss < h[0].train_loss,
        "loss did not fall: {:?}",
        h.iter().map(|e| e.train_loss).collect::<Vec<_>>()
    );
    // Stopped mid-epoch 2 (step 6 of 12), then resumed twice to the end.
    let first = train(
        config(3),
        &options(&data, &split, Some(6), false),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!((first.state.steps, first.state.epochs), (6, 1));
    // Interrupted (SIGINT in the CLI) before its first step: it saves where it stands, trains
    // nothing and skips the final evaluation; the resumed run below loses no batch.
    let stopped = train(
        config(3),
        &TrainOptions {
            interrupted: Some(&STOP),
            ..options(&data, &split, None, true)
        },
        &mut |_| {},
    )
    .unwrap();
    assert!(stopped.interrupted && stopped.test.is_none());
    assert_eq!((stopped.state.steps, stopped.state.epochs), (6, 1));
    assert_eq!(load_run(&split).unwrap().state.batches_in_epoch, 2);
    train(
        config(3),
        &options(&data, &split, Some(9), true),
        &mut |_| {},
    )
    .unwrap();
    let end = train(config(3), &options(&data, &split, None, true), &mut |_| {}).unwrap();
    assert_eq!(end.state.steps, 12);
    let (a, b) = (load_run(&whole).unwrap(), load_run(&split).unwrap());
    assert_eq!(
        a.model.params, b.model.params,
        "parameters differ after resuming"
    );
    for (x, y) in a.model.norms.iter().zip(&b.model.norms) {
        assert_eq!(x.running_mean, y.running_mean);
        assert_eq!(x.running_var, y.running_var);
    }
    assert_eq!(a.moments, b.moments);
}

fn augmented_config(epochs: usize) -> SpeechConfig {
    let text = config(epochs).to_toml().replace(
        "[optim]",
        r#"[data.augment]
speed = [0.9, 1.1]
gain_db = [-6.0, 6.0]
noise_prob = 0.5
noise_snr_db = [10.0, 20.0]
freq_masks = 1
freq_mask_width = 10
time_masks = 1
time_mask_width = 5

[optim]"#,
    );
    SpeechConfig::from_toml(&text, "augment test").unwrap()
}

#[test]
fn an_augmented_run_trains_on_other_features_and_resumes_exactly() {
    let data = corpus("augment", 8, 2);
    let (plain, whole, split) = (temp("a-plain"), temp("a-whole"), temp("a-split"));
    assert!(augmented_config(2).data.augment.is_some());
    train(config(2), &options(&data, &plain, None, false), &mut |_| {}).unwrap();
    let mut lines = Vec::new();
    train(
        augmented_config(2),
        &options(&data, &whole, None, false),
        &mut |l| lines.push(l),
    )
    .unwrap();
    assert!(lines.iter().any(|l| l.contains("augmented features")));
    train(
        augmented_config(2),
        &options(&data, &split, Some(5), false),
        &mut |_| {},
    )
    .unwrap();
    train(
        augmented_config(2),
        &options(&data, &split, None, true),
        &mut |_| {},
    )
    .unwrap();
    let (p, a, b) = (
        load_run(&plain).unwrap(),
        load_run(&whole).unwrap(),
        load_run(&split).unwrap(),
    );
    assert_eq!(a.model.params, b.model.params, "resuming changed the run");
    assert_ne!(
        p.model.params, a.model.params,
        "augmentation changed nothing"
    );
}

#[test]
fn a_bad_audio_file_stops_the_run_naming_it_unless_skipping_is_asked() {
    let data = corpus("bad", 4, 2);
    let bad = data.join("wav/an4_train/an4_train-1.wav");
    std::fs::write(&bad, b"RIFF not really").unwrap();
    let out = temp("bad-out");
    let err = train(config(1), &options(&data, &out, None, false), &mut |_| {}).unwrap_err();
    assert!(err.contains("an4_train-1.wav"), "{err}");
    let mut cfg = config(1);
    cfg.data.skip_bad_files = true;
    let mut lines = Vec::new();
    let s = train(cfg, &options(&data, &out, None, false), &mut |l| {
        lines.push(l)
    })
    .unwrap();
    assert_eq!(s.state.steps, 2, "3 utterances in batches of 2");
    assert!(lines
        .iter()
        .any(|l| l.contains("skipped") && l.contains("an4_train-1.wav")));
}

fn compress_config(epochs: usize) -> SpeechConfig {
    let mut text = config(epochs).to_toml();
    text.push_str(
        r#"
[compress]
[[compress.phase]]
what = "prune"
scope = "per-tensor"
curve = "cubic"
from = 1.0
to = 0.4
start = "2 steps"
end = "8 steps"
every = "2 steps"
[[compress.phase]]
what = "units"
curve = "step"
from = 1.0
to = 0.5
start = "9 steps"
end = "10 steps"
every = "1 steps"
"#,
    );
    SpeechConfig::from_toml(&text, "compress test").unwrap()
}

#[test]
fn the_shared_compression_hook_prunes_and_removes_units_and_resumes_exactly() {
    let data = corpus("compress", 8, 2);
    let (whole, split) = (temp("c-whole"), temp("c-split"));
    let mut events = Vec::new();
    let s = train(
        compress_config(3),
        &options(&data, &whole, None, false),
        &mut |l| events.push(l),
    )
    .unwrap();
    assert!((s.density - 0.4).abs() < 0.02, "density {}", s.density);
    assert_eq!(s.units_alive, vec![4, 4]);
    assert!(
        events.iter().any(|e| e.contains("\"what\":\"prune\"")),
        "{events:?}"
    );
    assert!(s.nonzero_params < s.params);
    // Pruned weights stay zero in the saved model; a run stopped between events resumes exactly.
    train(
        compress_config(3),
        &options(&data, &split, Some(5), false),
        &mut |_| {},
    )
    .unwrap();
    train(
        compress_config(3),
        &options(&data, &split, None, true),
        &mut |_| {},
    )
    .unwrap();
    let (a, b) = (load_run(&whole).unwrap(), load_run(&split).unwrap());
    assert_eq!(
        a.model.params, b.model.params,
        "parameters differ after resuming"
    );
    let units = a.model.unit_structure();
    let masked: usize = a
        .model
        .layout
        .tensors()
        .iter()
        .filter(|t| compress::UnitStructure::maskable(&units, &t.name, &t.shape, false))
        .map(|t| {
            a.model.params[t.range()]
                .iter()
                .filter(|&&v| v == 0.0)
                .count()
        })
        .sum();
    assert!(masked > 0);
}

#[test]
fn an_hlstm_model_trains_and_its_loss_falls() {
    let data = corpus("hlstm", 8, 2);
    let out = temp("hlstm-out");
    let text = config(3)
        .to_toml()
        .replace("cell = \"lstm\"", "cell = \"hlstm\"\ngate_hidden = 4");
    let cfg = SpeechConfig::from_toml(&text, "hlstm test").unwrap();
    assert_eq!(cfg.deepspeech().gate_hidden, 4);
    let s = train(cfg, &options(&data, &out, None, false), &mut |_| {}).unwrap();
    let h = &s.state.history;
    assert!(h[2].train_loss < h[0].train_loss, "{h:?}");
    let m = load_run(&out).unwrap().model;
    assert!(m.layout.find("rnns.1.rnn.weight2_l0_reverse").is_some());
    // The cell is checked: gate_hidden without the H-LSTM, or an unknown cell, is refused.
    let bad = config(1)
        .to_toml()
        .replace("cell = \"lstm\"", "cell = \"lstm\"\ngate_hidden = 4");
    assert!(SpeechConfig::from_toml(&bad, "t")
        .unwrap_err()
        .contains("hlstm"));
    let bad = config(1)
        .to_toml()
        .replace("cell = \"lstm\"", "cell = \"gru\"");
    assert!(SpeechConfig::from_toml(&bad, "t")
        .unwrap_err()
        .contains("gru"));
}
