//! The flow's library steps on small random models and token streams (no PTB needed): counts
//! against the state dict, compaction against the uncompacted model's perplexity, evaluation
//! through a plan against the training engine's.

use flow::{compact_units, count_params, evaluate_checked, evaluate_with_plan, FlowError};
use infer::{Dtype, FormatChoice};
use kernels::rng::CounterRng;
use model::{LanguageModel, LmConfig};

fn model(vocab: usize, hidden: usize, layers: usize, seed: u64) -> LanguageModel<f32> {
    let mut m = LanguageModel::<f32>::new(LmConfig::lstm(vocab, hidden, layers)).unwrap();
    m.init_uniform(0.3, seed);
    m
}

fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let rng = CounterRng::new(seed);
    (0..n as u64)
        .map(|i| (rng.bits(0, i) % vocab as u64) as u32)
        .collect()
}

#[test]
fn counts_match_the_state_dict() {
    let mut m = model(37, 12, 2, 1);
    // Zero a few weights of the recurrent matrix and of the decoder.
    for spec in m.layout.tensors() {
        if spec.name == "rnn.weight_hh_l1" || spec.name == "decoder.weight" {
            let r = spec.range();
            for v in &mut m.params[r.start..r.start + 20] {
                *v = 0.0;
            }
        }
    }
    let c = count_params(&m);
    let dict = m.state_dict();
    let (mut total, mut nonzero, mut core, mut core_nz) = (0, 0, 0, 0);
    for t in &dict {
        let model::checkpoint::TensorData::F32Owned(values) = &t.data else {
            panic!("{}: f32 values expected", t.name)
        };
        let nz = values.iter().filter(|v| **v != 0.0).count();
        total += values.len();
        nonzero += nz;
        if !(t.name.starts_with("encoder.") || t.name.starts_with("decoder.")) {
            core += values.len();
            core_nz += nz;
        }
    }
    assert_eq!((c.total, c.nonzero), (total, nonzero));
    assert_eq!((c.total_core, c.nonzero_core), (core, core_nz));
    assert_eq!(c.nonzero, c.total - 40);
    // Layer 1: 4H x H + 4H x H + 2 x 4H parameters, 20 of them zeroed.
    let h = 12;
    assert_eq!(
        c.layers[1],
        (2 * 4 * h * h + 2 * 4 * h, 2 * 4 * h * h + 2 * 4 * h - 20)
    );
    assert_eq!(c.tensors.len(), dict.len());
}

#[test]
fn compaction_removes_silent_units_and_keeps_the_perplexity() {
    let mut m = model(41, 16, 2, 2);
    compress::units::silence_units(&mut m, 0, &[1, 5, 9]).unwrap();
    compress::units::silence_units(&mut m, 1, &[0, 15]).unwrap();
    let c = compact_units(&m).unwrap();
    assert_eq!(c.hidden_before, vec![16, 16]);
    assert_eq!(c.hidden_after, vec![13, 14]);
    assert!(c.model.num_params() < m.num_params());
    let t = tokens(400, 41, 3);
    let before = train::eval::evaluate(&m, &t, 4, 10).perplexity;
    let after = train::eval::evaluate(&c.model, &t, 4, 10).perplexity;
    assert!(
        ((after - before) / before).abs() < 1e-5,
        "{before} vs {after}"
    );
    // A layer with every unit silent is refused by name.
    let all: Vec<usize> = (0..16).collect();
    compress::units::silence_units(&mut m, 1, &all).unwrap();
    let err = compact_units(&m).err().expect("refused");
    assert!(err.to_string().contains("layer 1"), "{err}");
}

#[test]
fn the_plan_scores_like_the_training_engine() {
    let m = model(53, 24, 2, 4);
    let t = tokens(1000, 53, 5);
    let want = train::eval::evaluate(&m, &t, 5, 12);
    for format in [
        FormatChoice::Auto,
        FormatChoice::Fixed(kernels::packed::Format::Csr),
    ] {
        let got = evaluate_with_plan(&m, &t, 5, 12, Dtype::F32, format).unwrap();
        assert_eq!(got.tokens, want.tokens);
        assert!(
            ((got.perplexity - want.perplexity) / want.perplexity).abs() < 1e-4,
            "{} vs {}",
            got.perplexity,
            want.perplexity
        );
    }
    // Nothing to score is an error, not a NaN perplexity.
    let err = evaluate_with_plan(&m, &t[..7], 5, 12, Dtype::F32, FormatChoice::Auto).unwrap_err();
    assert!(
        matches!(err, FlowError::Invalid(_)) && err.to_string().contains("7 tokens"),
        "{err}"
    );
}

#[test]
fn nothing_to_score_and_non_finite_plan_results_are_errors() {
    let mut m = model(31, 8, 1, 6);
    let t = tokens(300, 31, 7);
    let ok = evaluate_checked(&m, &t, 4, 10).unwrap();
    assert_eq!(
        ok.perplexity,
        train::eval::evaluate(&m, &t, 4, 10).perplexity
    );
    // More streams than tokens: nothing to score (it was a NaN perplexity with exit 0).
    let err = evaluate_checked(&m, &t, 1000, 10).unwrap_err().to_string();
    assert!(err.contains("300 tokens in 1000 streams"), "{err}");
    // A NaN weight: an error through the plan, not a NaN perplexity.
    let r = m.layout.find("decoder.weight").unwrap().range();
    m.params[r.start] = f32::NAN;
    let err = evaluate_with_plan(&m, &t, 4, 10, Dtype::F32, FormatChoice::Auto)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("decoder.weight") && err.contains("non-finite"),
        "{err}"
    );
    // And through the training engine (`eval`'s default): it printed a null perplexity.
    let err = evaluate_checked(&m, &t, 4, 10).unwrap_err().to_string();
    assert!(err.contains("NaN or infinite"), "{err}");
}
