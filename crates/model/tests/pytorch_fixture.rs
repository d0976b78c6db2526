//! The LSTM language model against PyTorch: `fixtures/lstm_lm_tiny.safetensors` was written by
//! `tools/reference/make_lstm_lm_fixture.py` (torch 2.15.0, seed 20261128) and holds a tiny
//! 2-layer word LM's weights, a batch, PyTorch's logits, loss and the gradient of J = loss · T.

use model::checkpoint::TensorFile;
use model::{LanguageModel, LmState};
use std::path::Path;

fn fixture() -> TensorFile {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/lstm_lm_tiny.safetensors");
    TensorFile::read(&path).expect("fixture present")
}

fn tokens(f: &TensorFile, name: &str) -> Vec<u32> {
    f.ints(name, None)
        .unwrap()
        .into_iter()
        .map(|v| v as u32)
        .collect()
}

#[test]
fn forward_loss_and_gradients_match_pytorch() {
    let f = fixture();
    let model = LanguageModel::<f32>::from_file(&f, 0.0).unwrap();
    assert_eq!(model.config.layers, 2);
    let shape = f.shape("input").unwrap().to_vec();
    let (t, b) = (shape[0], shape[1]);
    let input = tokens(&f, "input");
    let target = tokens(&f, "target");
    let mut ws = model.workspace(t, b);
    let mut state = LmState::zeros(&model.config, b);

    // Logits: forward without gradient.
    let sum = model.forward(&mut ws, &input, &target, &mut state, None, None);
    let want_logits = f.floats("logits", None).unwrap();
    for (i, (&got, &want)) in ws.logits.iter().zip(&want_logits).enumerate() {
        // f32 with a 1e-7-accurate polynomial exp; PyTorch uses libm: tolerance 2e-6 absolute.
        assert!(
            (got as f64 - want).abs() < 2e-6,
            "logit {i}: {got} vs {want}"
        );
    }
    let loss = sum / (t * b) as f64;
    let want_loss = f.floats("loss", None).unwrap()[0];
    assert!(
        (loss - want_loss).abs() < 1e-6,
        "loss {loss} vs {want_loss}"
    );

    // Gradients of J = mean CE · T, i.e. grad_scale = T / (T·B) = 1 / B per token.
    state.reset();
    model.forward(
        &mut ws,
        &input,
        &target,
        &mut state,
        None,
        Some(1.0 / b as f32),
    );
    let mut grads = vec![0.0f32; model.num_params()];
    model.backward(&mut ws, &mut grads);
    for spec in model.layout.tensors() {
        let want = f
            .floats(&format!("grad.{}", spec.name), Some(&spec.shape))
            .unwrap();
        let got = &grads[spec.range()];
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            // Relative to the tensor's largest gradient: 1e-5.
            assert!(
                (g as f64 - w).abs() <= 1e-5 * scale.max(1e-3),
                "grad.{}[{i}]: {g} vs {w}",
                spec.name
            );
        }
    }
}
