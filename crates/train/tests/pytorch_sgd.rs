//! Five truncated-BPTT SGD steps with gradient clipping against PyTorch
//! (`fixtures/lstm_lm_tiny.safetensors`, made by tools/reference/make_lstm_lm_fixture.py): the
//! loss before each step, the pre-clip gradient norm (clipping triggers on steps 0 and 1) and
//! the weights after the last step.

use model::checkpoint::TensorFile;
use model::{LanguageModel, LmState};
use std::path::Path;
use train::config::{Objective, OptimConfig, OptimKind};
use train::optim::{clip_grad_norm, Optimizer};

#[test]
fn five_clipped_sgd_steps_match_pytorch() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/lstm_lm_tiny.safetensors");
    let f = TensorFile::read(&path).unwrap();
    let mut model = LanguageModel::<f32>::from_file(&f, 0.0).unwrap();
    let shape = f.shape("steps_input").unwrap().to_vec();
    let (steps, t, b) = (shape[0], shape[1], shape[2]);
    let inputs: Vec<u32> = f
        .ints("steps_input", None)
        .unwrap()
        .iter()
        .map(|&v| v as u32)
        .collect();
    let targets: Vec<u32> = f
        .ints("steps_target", None)
        .unwrap()
        .iter()
        .map(|&v| v as u32)
        .collect();
    let lr = f.floats("sgd_lr", None).unwrap()[0];
    let clip = f.floats("sgd_clip", None).unwrap()[0];
    let want_losses = f.floats("sgd_losses", None).unwrap();
    let want_norms = f.floats("sgd_grad_norms", None).unwrap();
    let mut opt = Optimizer::new(
        OptimConfig {
            kind: OptimKind::Sgd,
            lr,
            clip_norm: clip,
            objective: Objective::SumOverTime,
            momentum: 0.0,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        },
        model.num_params(),
    );
    let mut ws = model.workspace(t, b);
    let mut state = LmState::zeros(&model.config, b);
    let mut grads = vec![0.0f32; model.num_params()];
    let mut clipped = 0;
    for k in 0..steps {
        let span = k * t * b..(k + 1) * t * b;
        grads.fill(0.0);
        let sum = model.forward(
            &mut ws,
            &inputs[span.clone()],
            &targets[span.clone()],
            &mut state,
            None,
            Some(1.0 / b as f32),
        );
        let loss = sum / (t * b) as f64;
        assert!(
            (loss - want_losses[k]).abs() < 2e-6,
            "step {k}: loss {loss} vs {}",
            want_losses[k]
        );
        model.backward(&mut ws, &mut grads);
        let norm = clip_grad_norm(&mut grads, clip);
        assert!(
            (norm - want_norms[k]).abs() < 2e-5 * want_norms[k],
            "step {k}: norm {norm} vs {}",
            want_norms[k]
        );
        clipped += (norm > clip) as usize;
        opt.step(&mut model.params, &grads, lr);
    }
    assert!(clipped >= 2, "the fixture should exercise clipping");
    for spec in model.layout.tensors() {
        let want = f
            .floats(&format!("final.{}", spec.name), Some(&spec.shape))
            .unwrap();
        for (i, (&got, &w)) in model.params[spec.range()].iter().zip(&want).enumerate() {
            assert!(
                (got as f64 - w).abs() < 1e-5,
                "final.{}[{i}]: {got} vs {w}",
                spec.name
            );
        }
    }
}
