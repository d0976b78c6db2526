//! The assembled DeepSpeech2 model: its hand-written backward against central differences of
//! the CTC loss, and padding that does not change an utterance's output.

use speech::deepspeech::{ctc_batch, Batch, DeepSpeech, DeepSpeechConfig, Mode, BINS};
use speech::features::Spectrogram;

fn tiny() -> DeepSpeech {
    let cfg = DeepSpeechConfig {
        hidden: 6,
        layers: 2,
        conv_channels: 3,
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
    let model = tiny();
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
            assert!(
                err < 3e-2,
                "{}[{}]: analytic {an:.6e} vs central difference {fd:.6e}",
                t.name,
                i - r.start
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
    let mut model = tiny();
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
