//! DeepSpeech2 on the compression seam: silenced units contribute exactly nothing (so removing
//! them cannot change the function), importance ranks weak units first, and the shared
//! compression hook prunes the speech model inside its trainer.

use compress::UnitStructure;
use speech::deepspeech::{Batch, DeepSpeech, DeepSpeechConfig, Mode, BINS};
use speech::features::Spectrogram;

/// Both cells: LSTM (`gate_hidden` 0) and H-LSTM.
const CELLS: [usize; 2] = [0, 3];

fn model(gate_hidden: usize) -> DeepSpeech {
    let cfg = DeepSpeechConfig {
        hidden: 6,
        layers: 2,
        conv_channels: 2,
        gate_hidden,
    };
    let mut m = DeepSpeech::new(cfg, 11).unwrap();
    // Non-trivial BatchNorm affine parameters, so zeroing them is observable.
    for t in m.layout.tensors().to_vec() {
        if t.shape.len() == 1 && !t.name.starts_with("conv.seq_module.0") {
            for (k, p) in m.params[t.range()].iter_mut().enumerate() {
                *p += 0.3 + 0.1 * k as f32;
            }
        }
    }
    m
}

fn batch() -> Batch {
    let spec = |frames: usize, seed: f32| Spectrogram {
        frames,
        bins: BINS,
        values: (0..frames * BINS)
            .map(|i| (i as f32 * 0.37 + seed).sin())
            .collect(),
    };
    let (a, b) = (spec(28, 0.1), spec(22, 0.7));
    Batch::new(&[&a, &b], vec![vec![], vec![]])
}

fn logits(m: &DeepSpeech, mode: Mode) -> Vec<f32> {
    let mut m = m.clone();
    let acts = m.forward(&batch(), mode);
    (0..acts.n).flat_map(|b| acts.utterance_logits(b)).collect()
}

/// Adds noise to the columns that read units `units` of layer `l` (its recurrent matrices and
/// the consumer matrices of the next layer or the output).
fn perturb_readers(m: &mut DeepSpeech, l: usize, units: &[usize]) {
    let h = m.config.hidden;
    let one = if m.config.gate_hidden > 0 { "1" } else { "" };
    let mut readers = vec![
        format!("rnns.{l}.rnn.weight_hh{one}_l0"),
        format!("rnns.{l}.rnn.weight_hh{one}_l0_reverse"),
    ];
    if l + 1 < m.config.layers {
        readers.push(format!("rnns.{}.rnn.weight_ih{one}_l0", l + 1));
        readers.push(format!("rnns.{}.rnn.weight_ih{one}_l0_reverse", l + 1));
    } else {
        readers.push("fc.0.module.1.weight".into());
    }
    for name in readers {
        let r = m.layout.find(&name).unwrap().range();
        for (row, chunk) in m.params[r].chunks_exact_mut(h).enumerate() {
            for &j in units {
                chunk[j] += 0.5 + 0.01 * row as f32;
            }
        }
    }
}

#[test]
fn silenced_units_contribute_nothing_in_training_and_eval_mode() {
    for cell in CELLS {
        silenced_units_contribute_nothing(cell);
    }
}

fn silenced_units_contribute_nothing(cell: usize) {
    let model = || model(cell);
    let units = model().unit_structure();
    for (l, dead) in [(0usize, vec![1usize, 4]), (1, vec![0, 5])] {
        let mut silenced = model();
        let layout = silenced.layout.clone();
        units
            .silence_units(&layout, &mut silenced.params, l, &dead)
            .unwrap();
        for mode in [Mode::Train, Mode::Eval] {
            let before = logits(&silenced, mode);
            let mut perturbed = silenced.clone();
            perturb_readers(&mut perturbed, l, &dead);
            assert_eq!(
                before,
                logits(&perturbed, mode),
                "layer {l} {mode:?}: silenced units still reach the output"
            );
            // Not vacuous: the same perturbation changes a model whose units are alive.
            let mut alive = model();
            let base = logits(&alive, mode);
            perturb_readers(&mut alive, l, &dead);
            assert_ne!(base, logits(&alive, mode), "layer {l} {mode:?}");
        }
    }
    let mut m = model();
    let layout = m.layout.clone();
    assert!(units
        .silence_units(&layout, &mut m.params, 2, &[0])
        .is_err());
    assert!(units
        .silence_units(&layout, &mut m.params, 0, &[6])
        .is_err());
}

#[test]
fn importance_ranks_the_weakest_unit_first_and_only_matrices_are_masked() {
    let mut m = model(0);
    let units = m.unit_structure();
    let h = m.config.hidden;
    for name in ["rnns.1.rnn.weight_ih_l0", "rnns.1.rnn.weight_hh_l0"] {
        let r = m.layout.find(name).unwrap().range();
        let width = r.len() / (4 * h);
        for gate in 0..4 {
            let row = gate * h + 3;
            m.params[r.start + row * width..r.start + (row + 1) * width]
                .iter_mut()
                .for_each(|v| *v *= 1e-3);
        }
    }
    let imp = units.unit_importance(&m.layout, &m.params, 1).unwrap();
    let weakest = (0..h).min_by(|&a, &b| imp[a].total_cmp(&imp[b])).unwrap();
    assert_eq!(weakest, 3, "{imp:?}");
    let masked: Vec<&str> = m
        .layout
        .tensors()
        .iter()
        .filter(|t| units.maskable(&t.name, &t.shape, false))
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(masked.len(), 4 * 2 + 1, "{masked:?}");
    assert!(masked
        .iter()
        .all(|n| n.contains(".rnn.weight_") || n.starts_with("fc.")));
}

#[test]
fn compaction_removes_silenced_units_and_keeps_the_outputs() {
    for cell in CELLS {
        compaction_keeps_the_outputs(cell);
    }
}

fn compaction_keeps_the_outputs(cell: usize) {
    let mut m = model(cell);
    let units = m.unit_structure();
    let layout = m.layout.clone();
    units
        .silence_units(&layout, &mut m.params, 0, &[1, 4])
        .unwrap();
    units
        .silence_units(&layout, &mut m.params, 1, &[0, 5])
        .unwrap();
    assert_eq!(m.silent_units(0), vec![1, 4]);
    assert_eq!(m.silent_units(1), vec![0, 5]);
    let c = m.compact().unwrap();
    assert_eq!(c.config.hidden, 4);
    assert!(c.params.len() < m.params.len());
    for mode in [Mode::Eval, Mode::Train] {
        let (a, b) = (logits(&m, mode), logits(&c, mode));
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                "{mode:?}: {x} vs {y}"
            );
        }
    }
    // Uneven removal cannot be expressed with one width.
    units
        .silence_units(&layout, &mut m.params, 1, &[2])
        .unwrap();
    let err = m.compact().unwrap_err();
    assert!(err.contains("[4, 3]"), "{err}");
}
