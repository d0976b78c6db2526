//! The assembled DeepSpeech2 model: its hand-written backward against central differences of
//! the CTC loss, and padding that does not change an utterance's output.

use speech::deepspeech::{ctc_batch, Batch, DeepSpeech, DeepSpeechConfig, Mode, BINS};
use speech::features::Spectrogram;

/// A small model with LSTM cells (`gate_hidden` 0) or H-LSTM cells.
fn tiny(gate_hidden: usize) -> DeepSpeech {
    let cfg = DeepSpeechConfig {
        hidden: 6,
        layers: 2,
        conv_channels: 3,
        gate_hidden,
    };
    DeepSpeech::new(cfg, 7).unwrap()
}

fn spec(frames: usize, seed: u32) -> Spectrogram {
    let values = (0..frames * BINS)
        .map(|i| {
            let x = (i as u32)
                .wrapping_mul(2654435761)
                .wrapping_add(seed.wrapping_mul(40503));
            (x >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        })
        .collect();
    Spectrogram {
        frames,
        bins: BINS,
        values,
    }
}

fn batch() -> Batch {
    let (a, b) = (spec(30, 1), spec(24, 2));
    Batch::new(&[&a, &b], vec![vec![3, 4, 4], vec![1, 2]])
}

/// The batch-mean CTC loss in training mode (f64 accumulated), with running statistics left
/// untouched between calls.
fn loss(model: &DeepSpeech, b: &Batch) -> f64 {
    let mut m = model.clone();
    let acts = m.forward(b, Mode::Train);
    let mut d = vec![0.0; acts.logits.len()];
    ctc_batch(&acts, &b.targets, 1.0, &mut d).0 / b.n as f64
}

#[test]
fn backward_matches_central_differences_of_the_ctc_loss() {
    for gate_hidden in [0, 4] {
        check_central_differences(tiny(gate_hidden));
    }
}

fn check_central_differences(model: DeepSpeech) {
    let b = batch();
    let mut m = model.clone();
    let mut acts = m.forward(&b, Mode::Train);
    let mut d = vec![0.0; acts.logits.len()];
    ctc_batch(&acts, &b.targets, 1.0 / b.n as f32, &mut d);
    let mut grads = vec![0.0; model.params.len()];
    m.backward(&b, &mut acts, &d, &mut grads);
    // Every tensor: its three largest-gradient entries and one more, by central differences.
    let mut checked = 0;
    let mut worst: f64 = 0.0;
    for t in model.layout.tensors() {
        let r = t.range();
        let mut idx: Vec<usize> = r.clone().collect();
        idx.sort_by(|&a, &b| grads[b].abs().total_cmp(&grads[a].abs()));
        for &i in idx.iter().take(3).chain([&r.start]) {
            let eps = 1e-3f32;
            let (mut plus, mut minus) = (model.clone(), model.clone());
            plus.params[i] += eps;
            minus.params[i] -= eps;
            let fd = (loss(&plus, &b) - loss(&minus, &b)) / (2.0 * eps as f64);
            let an = grads[i] as f64;
            let err = (fd - an).abs() / (fd.abs() + an.abs()).max(1e-2);
            // The model runs in f32: rounding of the logits moves the loss by ~1e-6, which a
            // 2e-3 wide difference turns into ~5e-4 of noise. Below that, agreement is all a
            // difference can show (conv biases before a BatchNorm have near-zero gradients).
            let resolution = 1e-3;
            assert!(
                err < 3e-2 || (fd - an).abs() < resolution,
                "{}[{}] (gate_hidden {}): analytic {an:.6e} vs central difference {fd:.6e}",
                t.name,
                i - r.start,
                model.config.gate_hidden
            );
            worst = worst.max(err);
            checked += 1;
        }
    }
    assert!(checked >= 4 * model.layout.tensors().len());
    assert!(worst.is_finite());
}

#[test]
fn an_utterance_decodes_the_same_alone_and_padded_in_a_batch() {
    for gate_hidden in [0, 4] {
        same_alone_and_padded(tiny(gate_hidden));
    }
}

fn same_alone_and_padded(mut model: DeepSpeech) {
    let (a, b) = (spec(30, 1), spec(24, 2));
    let both = Batch::new(&[&a, &b], vec![vec![], vec![]]);
    let alone = Batch::new(&[&b], vec![vec![]]);
    let x = model.forward(&both, Mode::Eval);
    let y = model.forward(&alone, Mode::Eval);
    let (lx, ly) = (x.utterance_logits(1), y.utterance_logits(0));
    assert_eq!(lx.len(), ly.len());
    assert!(!lx.is_empty());
    for (p, q) in lx.iter().zip(&ly) {
        assert!((p - q).abs() <= 1e-5 * (1.0 + q.abs()), "{p} vs {q}");
    }
}

// ---- PyTorch fixture (tools/reference/deepspeech_model.py, float64) --------------------------

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

/// max |a - b| / max(|b|) over a tensor, failing on NaN and on a length mismatch.
fn rel_err(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
    a.iter().zip(b).fold(0.0, |m, (&x, &y)| {
        let e = (x as f64 - y).abs() / scale;
        assert!(!e.is_nan(), "NaN");
        m.max(e)
    })
}

#[test]
fn forward_loss_gradients_and_running_stats_match_pytorch() {
    // LSTM layers (torch's nn.LSTM on packed sequences), and H-LSTM layers (plain torch ops,
    // `deepspeech_model.py --gate-hidden 3`).
    for name in ["deepspeech_model.json", "deepspeech_hlstm_model.json"] {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        let fx: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        check_against_pytorch(&fx);
    }
}

fn check_against_pytorch(fx: &serde_json::Value) {
    let cfg: DeepSpeechConfig = serde_json::from_value(fx["config"].clone()).unwrap();
    let gate_hidden = cfg.gate_hidden;
    let mut model = DeepSpeech::new(cfg, 0).unwrap();
    let names: Vec<String> = model
        .layout
        .tensors()
        .iter()
        .map(|t| t.name.clone())
        .collect();
    let given = fx["params"].as_object().unwrap();
    assert_eq!(given.len(), names.len(), "PyTorch has {:?}", given.keys());
    for t in model.layout.tensors().to_vec() {
        let v = floats(&given[&t.name]);
        assert_eq!(v.len(), t.len(), "{}", t.name);
        for (p, x) in model.params[t.range()].iter_mut().zip(v) {
            *p = x as f32;
        }
    }
    let lengths: Vec<usize> = serde_json::from_value(fx["lengths"].clone()).unwrap();
    let targets: Vec<Vec<u32>> = serde_json::from_value(fx["targets"].clone()).unwrap();
    let features: Vec<f32> = floats(&fx["features"]).iter().map(|&v| v as f32).collect();
    let batch = Batch {
        n: lengths.len(),
        frames: *lengths.iter().max().unwrap(),
        features,
        lengths,
        targets,
    };
    let mut acts = model.forward(&batch, Mode::Train);
    let out_lengths: Vec<usize> = serde_json::from_value(fx["out_lengths"].clone()).unwrap();
    assert_eq!(acts.out_lengths, out_lengths);
    for (b, want) in fx["logits"].as_array().unwrap().iter().enumerate() {
        let e = rel_err(&acts.utterance_logits(b), &floats(want));
        assert!(
            e < 1e-4,
            "gate_hidden {gate_hidden}, utterance {b} logits: relative error {e:.2e}"
        );
    }
    let mut d = vec![0.0; acts.logits.len()];
    let (loss, impossible) = ctc_batch(&acts, &batch.targets, 1.0 / batch.n as f32, &mut d);
    assert_eq!(impossible, 0);
    let want_loss = fx["loss"].as_f64().unwrap();
    let got = loss / batch.n as f64;
    assert!(
        (got - want_loss).abs() < 1e-4 * want_loss.abs(),
        "loss {got} vs {want_loss}"
    );
    let mut grads = vec![0.0; model.params.len()];
    model.backward(&batch, &mut acts, &d, &mut grads);
    for t in model.layout.tensors() {
        let e = rel_err(&grads[t.range()], &floats(&fx["grads"][&t.name]));
        assert!(
            e < 1e-3,
            "gate_hidden {gate_hidden}, {} gradient: relative error {e:.2e}",
            t.name
        );
    }
    for (prefix, bn) in model.norm_names().iter().zip(&model.norms) {
        for (suffix, got) in [
            ("running_mean", &bn.running_mean),
            ("running_var", &bn.running_var),
        ] {
            let want = floats(&fx["running"][format!("{prefix}.{suffix}")]);
            let e = rel_err(got, &want);
            assert!(e < 1e-5, "{prefix}.{suffix}: relative error {e:.2e}");
        }
    }
}
