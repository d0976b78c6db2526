//! The H-LSTM layer against PyTorch: `fixtures/hlstm_tiny.safetensors` was written by
//! `tools/reference/make_hlstm_fixture.py` (torch 2.15.0, seed 20261129) and holds one layer's
//! weights (T=4, B=3, I=5, H=6, M=7), an input, a non-zero initial state, PyTorch's outputs and
//! the gradients of J = Σ r ⊙ h, computed with plain torch ops and autograd (no dropout).

use model::checkpoint::TensorFile;
use model::hlstm::{
    hlstm_backward, hlstm_forward, hlstm_param_specs, HlstmGrads, HlstmShape, HlstmTape,
    HlstmWeights,
};
use std::path::Path;

fn fixture() -> TensorFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hlstm_tiny.safetensors");
    TensorFile::read(&path).expect("fixture present")
}

fn f32s(f: &TensorFile, name: &str, shape: &[usize]) -> Vec<f32> {
    f.floats(name, Some(shape))
        .unwrap()
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

#[test]
fn outputs_and_gradients_match_pytorch() {
    let f = fixture();
    let xs = f.shape("x").unwrap().to_vec();
    let w2s = f.shape("weight2_l0").unwrap().to_vec();
    let s = HlstmShape {
        t: xs[0],
        b: xs[1],
        i: xs[2],
        h: w2s[1],
        m: w2s[2],
    };
    assert_eq!(
        (s.t, s.b, s.i, s.h, s.m),
        (4, 3, 5, 6, 7),
        "fixture sizes changed"
    );
    // The file uses exactly the names and shapes the layer documents for a future checkpoint.
    let [w_ih1, w_hh1, b1, w2, b2] =
        hlstm_param_specs(0, s.i, s.h, s.m).map(|(name, shape)| (f32s(&f, &name, &shape), name));
    let bh = [s.b, s.h];
    let x = f32s(&f, "x", &[s.t, s.b, s.i]);
    let (h0, c0) = (f32s(&f, "h0", &bh), f32s(&f, "c0", &bh));
    let r = f32s(&f, "r", &[s.t, s.b, s.h]);
    let w = HlstmWeights {
        w_ih1: &w_ih1.0,
        w_hh1: &w_hh1.0,
        b1: &b1.0,
        w2: &w2.0,
        b2: &b2.0,
    };

    let mut tape = HlstmTape::new(s).unwrap();
    hlstm_forward(s, w, &x, None, &h0, &c0, &mut tape);
    let want_h = f.floats("h", Some(&[s.t, s.b, s.h])).unwrap();
    let want_c = f.floats("c_final", Some(&bh)).unwrap();
    let (_, c_final) = tape.final_state();
    for (what, got, want) in [("h", tape.output(), &want_h), ("c_final", c_final, &want_c)] {
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            // f32 with a 1e-7-accurate polynomial exp; PyTorch uses libm: tolerance 2e-6 absolute.
            assert!((g as f64 - w).abs() < 2e-6, "{what}[{i}]: {g} vs {w}");
        }
    }

    let mut grads: Vec<Vec<f32>> = [&w_ih1, &w_hh1, &b1, &w2, &b2]
        .iter()
        .map(|(p, _)| vec![0.0; p.len()])
        .collect();
    let mut dx = vec![0.0f32; x.len()];
    let [dw_ih1, dw_hh1, db1, dw2, db2] = grads.as_mut_slice() else {
        unreachable!()
    };
    hlstm_backward(
        s,
        w,
        &x,
        &r,
        &mut tape,
        HlstmGrads {
            dw_ih1,
            dw_hh1,
            db1,
            dw2,
            db2,
        },
        Some(&mut dx),
    );
    let names = [&w_ih1.1, &w_hh1.1, &b1.1, &w2.1, &b2.1];
    let checks = names
        .iter()
        .map(|n| n.as_str())
        .zip(grads.iter().map(Vec::as_slice))
        .chain([("x", dx.as_slice())]);
    for (name, got) in checks {
        let want = f.floats(&format!("grad.{name}"), None).unwrap();
        assert_eq!(got.len(), want.len(), "grad.{name}");
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(scale > 1e-3, "grad.{name} is (nearly) all zero: not a test");
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            // Relative to the tensor's largest gradient: 1e-5.
            assert!(
                (g as f64 - w).abs() <= 1e-5 * scale,
                "grad.{name}[{i}]: {g} vs {w}"
            );
        }
    }
}
