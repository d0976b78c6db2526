//! The deployment plan (`SpeechPlan`: BatchNorms folded, recurrent layers on `infer`'s kernels)
//! against the model's own eval-mode forward pass: LSTM and H-LSTM cells, dense and pruned
//! weights, dense, CSR, BSR and measured formats, one and several utterances; and the inputs it
//! refuses.

use infer::{FormatChoice, PlanOptions};
use kernels::packed::Format;
use kernels::rng::CounterRng;
use speech::deepspeech::{Batch, DeepSpeech, DeepSpeechConfig, Mode, SpeechPlan, BINS};
use speech::features::Spectrogram;

/// A small model whose BatchNorms are far from the identity (so folding them matters), with
/// `zeros` of every recurrent matrix pruned.
fn model(gate_hidden: usize, zeros: f64) -> DeepSpeech {
    let config = DeepSpeechConfig {
        hidden: 12,
        layers: 2,
        conv_channels: 3,
        gate_hidden,
    };
    let mut m = DeepSpeech::new(config, 7).unwrap();
    let rng = CounterRng::new(11);
    for (i, p) in m.params.iter_mut().enumerate() {
        *p += (rng.uniform(0, i as u64) - 0.5) * 0.2;
    }
    for t in m.layout.tensors().to_vec() {
        if t.name.contains(".rnn.") && t.name.contains("weight") {
            for i in t.range() {
                if (rng.uniform(1, i as u64) as f64) < zeros {
                    m.params[i] = 0.0;
                }
            }
        }
    }
    for (k, bn) in m.norms.iter_mut().enumerate() {
        for c in 0..bn.running_mean.len() {
            bn.running_mean[c] = rng.uniform(2 + k as u64, c as u64) - 0.5;
            bn.running_var[c] = 0.5 + rng.uniform(20 + k as u64, c as u64);
        }
    }
    m
}

fn spectrogram(frames: usize, seed: u64) -> Spectrogram {
    let rng = CounterRng::new(seed);
    Spectrogram {
        frames,
        bins: BINS,
        values: (0..frames * BINS)
            .map(|i| rng.uniform(0, i as u64) * 3.0 - 1.5)
            .collect(),
    }
}

fn options(format: FormatChoice, threads: usize) -> PlanOptions {
    PlanOptions {
        format,
        threads,
        seq: 10,
        ..PlanOptions::default()
    }
}

/// Largest |a − b| / (1 + |b|); fails on NaN and on a length mismatch.
fn max_rel_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).fold(0.0, |m, (&x, &y)| {
        let d = (x as f64 - y as f64).abs() / (1.0 + (y as f64).abs());
        assert!(d.is_finite(), "non-finite logit: {x} vs {y}");
        m.max(d)
    })
}

fn check(m: &mut DeepSpeech, format: FormatChoice, threads: usize, n: usize, frames: usize) {
    let specs: Vec<Spectrogram> = (0..n).map(|b| spectrogram(frames, 40 + b as u64)).collect();
    let refs: Vec<&Spectrogram> = specs.iter().collect();
    let expected = m
        .forward(&Batch::new(&refs, vec![Vec::new(); n]), Mode::Eval)
        .logits;
    let mut plan = SpeechPlan::new(m, &options(format, threads)).unwrap();
    let got = plan.run(&refs).unwrap();
    let d = max_rel_diff(&got, &expected);
    assert!(
        d < 2e-5,
        "{format:?}, {n} x {frames} frames: differs by {d}"
    );
    assert!(
        expected.iter().any(|&v| v.abs() > 0.1),
        "logits all near zero"
    );
}

#[test]
fn the_plan_computes_the_eval_forward_pass_in_every_format() {
    for gate_hidden in [0, 5] {
        let mut dense = model(gate_hidden, 0.0);
        check(&mut dense, FormatChoice::Fixed(Format::Dense), 1, 1, 60);
        check(&mut dense, FormatChoice::Fixed(Format::Dense), 2, 3, 47);
        let mut pruned = model(gate_hidden, 0.7);
        for format in [
            FormatChoice::Fixed(Format::Csr),
            FormatChoice::Fixed(Format::Bsr(4, 1)),
            FormatChoice::Auto,
        ] {
            check(&mut pruned, format, 2, 1, 53);
        }
        check(&mut pruned, FormatChoice::Fixed(Format::Csr), 1, 2, 38);
    }
}

#[test]
fn the_plan_reports_its_matrices_with_their_non_zeros() {
    let m = model(0, 0.7);
    let plan = SpeechPlan::new(&m, &options(FormatChoice::Fixed(Format::Csr), 1)).unwrap();
    let mats = plan.matrices();
    // 2 layers x 2 directions x (input, recurrent) matrices, each reported per gate or whole.
    assert!(
        mats.iter().any(|x| x.name.starts_with("rnns.1.")),
        "{mats:?}"
    );
    let nnz: usize = mats.iter().map(|x| x.nnz).sum();
    let expected: usize = m
        .layout
        .tensors()
        .iter()
        .filter(|t| t.name.contains(".rnn.") && t.name.contains("weight"))
        .map(|t| m.params[t.range()].iter().filter(|&&v| v != 0.0).count())
        .sum();
    assert_eq!(nnz, expected);
}

#[test]
fn utterances_of_different_lengths_or_too_short_are_refused() {
    let m = model(0, 0.0);
    let mut plan = SpeechPlan::new(&m, &options(FormatChoice::Fixed(Format::Dense), 1)).unwrap();
    let (a, b) = (spectrogram(40, 1), spectrogram(41, 2));
    let e = plan.run(&[&a, &b]).unwrap_err().to_string();
    assert!(e.contains("one length"), "{e}");
    let e = plan.run(&[&spectrogram(2, 3)]).unwrap_err().to_string();
    assert!(e.contains("too few"), "{e}");
    assert!(plan.run(&[]).is_err());
}
