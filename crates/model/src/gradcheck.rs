//! f64 central-difference gradient checks for every backward and for the whole model.
//!
//! Each check builds a scalar objective J from a layer's output (J = Σ r ⊙ y with a fixed random
//! r, or the loss itself), computes the analytic gradient with the layer's `_backward`, and
//! compares it element by element with (J(θ+ε) − J(θ−ε)) / 2ε. `symbiont gradcheck` runs them all.

use crate::dropout::{dropout_backward, dropout_forward, DropoutCtx};
use crate::embedding::{embedding_backward, embedding_forward};
use crate::hlstm::{
    hlstm_backward, hlstm_forward, HlstmGrads, HlstmShape, HlstmTape, HlstmWeights,
};
use crate::lstm::{lstm_backward, lstm_forward, LstmGrads, LstmShape, LstmTape, LstmWeights};
use crate::{LanguageModel, LmConfig, LmState};
use kernels::rng::CounterRng;
use kernels::softmax::softmax_xent;

/// Outcome of one gradient check.
#[derive(Clone, Debug)]
pub struct CheckResult {
    /// What was checked, e.g. `lstm/dw_hh`.
    pub name: String,
    /// Number of elements compared.
    pub checked: usize,
    /// Largest |analytic − numeric|.
    pub max_abs_err: f64,
    /// Largest |analytic − numeric| / max(|analytic|, |numeric|, 1e-3).
    pub max_rel_err: f64,
    pub passed: bool,
}

const EPS: f64 = 1e-6;
const ATOL: f64 = 1e-7;
const RTOL: f64 = 1e-5;

/// Compares analytic and numeric gradients with |a − n| ≤ ATOL + RTOL·max(|a|, |n|).
pub fn compare(name: &str, analytic: &[f64], numeric: &[f64]) -> CheckResult {
    assert_eq!(analytic.len(), numeric.len());
    let mut max_abs = 0.0f64;
    let mut max_rel = 0.0f64;
    let mut passed = true;
    for (&a, &n) in analytic.iter().zip(numeric) {
        let err = (a - n).abs();
        let scale = a.abs().max(n.abs());
        max_abs = max_abs.max(err);
        max_rel = max_rel.max(err / scale.max(1e-3));
        // Written so that NaN fails.
        let within = err <= ATOL + RTOL * scale;
        if !within {
            passed = false;
        }
    }
    CheckResult {
        name: name.to_string(),
        checked: analytic.len(),
        max_abs_err: max_abs,
        max_rel_err: max_rel,
        passed,
    }
}

/// Central differences of `f` at `x`, one coordinate at a time.
pub fn numeric_grad(x: &[f64], mut f: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = x[i];
            x[i] = orig + EPS;
            let up = f(&x);
            x[i] = orig - EPS;
            let down = f(&x);
            x[i] = orig;
            (up - down) / (2.0 * EPS)
        })
        .collect()
}

fn random(n: usize, seed: u64, scale: f64) -> Vec<f64> {
    let rng = CounterRng::new(seed);
    (0..n)
        .map(|i| (rng.uniform_f64(7, i as u64) * 2.0 - 1.0) * scale)
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Embedding: d table (with a repeated token so scatter-add accumulates).
pub fn check_embedding() -> Vec<CheckResult> {
    let (v, e) = (6, 3);
    let tokens = [1u32, 4, 1, 0, 5];
    let table = random(v * e, 5, 1.0);
    let r = random(tokens.len() * e, 6, 1.0);
    let mut dt = vec![0.0; v * e];
    embedding_backward(&r, e, &tokens, &mut dt);
    let num = numeric_grad(&table, |t| {
        let mut out = vec![0.0; tokens.len() * e];
        embedding_forward(t, e, &tokens, &mut out);
        dot(&out, &r)
    });
    vec![compare("embedding/dtable", &dt, &num)]
}

/// Softmax cross-entropy: d logits of s · Σ loss.
pub fn check_softmax_xent() -> Vec<CheckResult> {
    let (n, v, s) = (4, 7, 0.37);
    let targets = [2u32, 0, 6, 2];
    let logits = random(n * v, 8, 3.0);
    let mut g = logits.clone();
    let mut loss = vec![0.0; n];
    softmax_xent(&mut g, v, &targets, Some(s), &mut loss);
    let num = numeric_grad(&logits, |l| {
        let mut l = l.to_vec();
        let mut loss = vec![0.0; n];
        softmax_xent(&mut l, v, &targets, None, &mut loss);
        s * loss.iter().sum::<f64>()
    });
    vec![compare("softmax_xent/dlogits", &g, &num)]
}

/// Dropout with a fixed mask: dx.
pub fn check_dropout() -> Vec<CheckResult> {
    let ctx = DropoutCtx {
        rng: CounterRng::new(11),
        p: 0.4,
        step: 3,
    };
    let x = random(40, 9, 1.0);
    let r = random(40, 10, 1.0);
    let mut mask = vec![0.0; 40];
    let mut out = vec![0.0; 40];
    dropout_forward(&ctx, 1, &x, &mut mask, &mut out);
    let mut dx = r.clone();
    dropout_backward(&mask, &mut dx);
    let num = numeric_grad(&x, |x| {
        let (mut m, mut o) = (vec![0.0; 40], vec![0.0; 40]);
        dropout_forward(&ctx, 1, x, &mut m, &mut o);
        dot(&o, &r)
    });
    vec![compare("dropout/dx", &dx, &num)]
}

/// One LSTM layer over a sequence from a non-zero initial state: all weights and dx.
pub fn check_lstm() -> Vec<CheckResult> {
    let s = LstmShape {
        t: 4,
        b: 2,
        i: 3,
        h: 5,
    };
    let g = s.g();
    let x = random(s.t * s.b * s.i, 12, 1.0);
    let (h0, c0) = (random(s.b * s.h, 13, 0.5), random(s.b * s.h, 14, 0.5));
    let w_ih = random(g * s.i, 15, 0.6);
    let w_hh = random(g * s.h, 16, 0.6);
    let b_ih = random(g, 17, 0.3);
    let b_hh = random(g, 18, 0.3);
    let r = random(s.t * s.b * s.h, 19, 1.0);
    let j = |x: &[f64], w_ih: &[f64], w_hh: &[f64], b_ih: &[f64], b_hh: &[f64]| {
        let mut tape = LstmTape::new(s);
        lstm_forward(
            s,
            LstmWeights {
                w_ih,
                w_hh,
                b_ih,
                b_hh,
            },
            x,
            &h0,
            &c0,
            &mut tape,
        );
        dot(tape.output(s), &r)
    };
    let w = LstmWeights {
        w_ih: &w_ih,
        w_hh: &w_hh,
        b_ih: &b_ih,
        b_hh: &b_hh,
    };
    let mut tape = LstmTape::new(s);
    lstm_forward(s, w, &x, &h0, &c0, &mut tape);
    let (mut dw_ih, mut dw_hh, mut db_ih, mut db_hh) = (
        vec![0.0; g * s.i],
        vec![0.0; g * s.h],
        vec![0.0; g],
        vec![0.0; g],
    );
    let mut dx = vec![0.0; x.len()];
    lstm_backward(
        s,
        w,
        &x,
        &r,
        &mut tape,
        LstmGrads {
            dw_ih: &mut dw_ih,
            dw_hh: &mut dw_hh,
            db_ih: &mut db_ih,
            db_hh: &mut db_hh,
        },
        Some(&mut dx),
    );
    vec![
        compare(
            "lstm/dw_ih",
            &dw_ih,
            &numeric_grad(&w_ih, |p| j(&x, p, &w_hh, &b_ih, &b_hh)),
        ),
        compare(
            "lstm/dw_hh",
            &dw_hh,
            &numeric_grad(&w_hh, |p| j(&x, &w_ih, p, &b_ih, &b_hh)),
        ),
        compare(
            "lstm/db_ih",
            &db_ih,
            &numeric_grad(&b_ih, |p| j(&x, &w_ih, &w_hh, p, &b_hh)),
        ),
        compare(
            "lstm/db_hh",
            &db_hh,
            &numeric_grad(&b_hh, |p| j(&x, &w_ih, &w_hh, &b_ih, p)),
        ),
        compare(
            "lstm/dx",
            &dx,
            &numeric_grad(&x, |p| j(p, &w_ih, &w_hh, &b_ih, &b_hh)),
        ),
    ]
}

/// One H-LSTM layer over a sequence from a non-zero initial state, with a fixed dropout mask on
/// the gates' hidden layer (zeros and 1/(1-p)): all five weights and dx.
pub fn check_hlstm() -> Vec<CheckResult> {
    let s = HlstmShape {
        t: 3,
        b: 2,
        i: 3,
        h: 4,
        m: 5,
    };
    let (g, m4) = (s.g(), 4 * s.m);
    let x = random(s.t * s.b * s.i, 40, 1.0);
    let (h0, c0) = (random(s.b * s.h, 41, 0.5), random(s.b * s.h, 42, 0.5));
    let w_ih1 = random(m4 * s.i, 43, 0.6);
    let w_hh1 = random(m4 * s.h, 44, 0.6);
    let b1 = random(m4, 45, 0.3);
    let w2 = random(4 * s.h * s.m, 46, 0.6);
    let b2 = random(g, 47, 0.3);
    let r = random(s.t * s.b * s.h, 48, 1.0);
    // About 30% dropped; the kept ones scaled by 1/(1-p) as dropout_forward does.
    let p = 0.3;
    let mask: Vec<f64> = random(s.t * s.b * m4, 49, 1.0)
        .iter()
        .map(|&u| {
            if u < 2.0 * p - 1.0 {
                0.0
            } else {
                1.0 / (1.0 - p)
            }
        })
        .collect();
    assert!(mask.contains(&0.0) && mask.iter().any(|&v| v > 1.0));
    let j = |x: &[f64], w: HlstmWeights<'_, f64>| {
        let mut tape = HlstmTape::new(s).expect("valid shape");
        hlstm_forward(s, w, x, Some(&mask), &h0, &c0, &mut tape);
        dot(tape.output(), &r)
    };
    let w = HlstmWeights {
        w_ih1: &w_ih1,
        w_hh1: &w_hh1,
        b1: &b1,
        w2: &w2,
        b2: &b2,
    };
    let mut tape = HlstmTape::new(s).expect("valid shape");
    hlstm_forward(s, w, &x, Some(&mask), &h0, &c0, &mut tape);
    let (mut dw_ih1, mut dw_hh1, mut db1, mut dw2, mut db2) = (
        vec![0.0; w_ih1.len()],
        vec![0.0; w_hh1.len()],
        vec![0.0; b1.len()],
        vec![0.0; w2.len()],
        vec![0.0; b2.len()],
    );
    let mut dx = vec![0.0; x.len()];
    hlstm_backward(
        s,
        w,
        &x,
        &r,
        &mut tape,
        HlstmGrads {
            dw_ih1: &mut dw_ih1,
            dw_hh1: &mut dw_hh1,
            db1: &mut db1,
            dw2: &mut dw2,
            db2: &mut db2,
        },
        Some(&mut dx),
    );
    vec![
        compare(
            "hlstm/dw_ih1",
            &dw_ih1,
            &numeric_grad(&w_ih1, |p| j(&x, HlstmWeights { w_ih1: p, ..w })),
        ),
        compare(
            "hlstm/dw_hh1",
            &dw_hh1,
            &numeric_grad(&w_hh1, |p| j(&x, HlstmWeights { w_hh1: p, ..w })),
        ),
        compare(
            "hlstm/db1",
            &db1,
            &numeric_grad(&b1, |p| j(&x, HlstmWeights { b1: p, ..w })),
        ),
        compare(
            "hlstm/dw2",
            &dw2,
            &numeric_grad(&w2, |p| j(&x, HlstmWeights { w2: p, ..w })),
        ),
        compare(
            "hlstm/db2",
            &db2,
            &numeric_grad(&b2, |p| j(&x, HlstmWeights { b2: p, ..w })),
        ),
        compare("hlstm/dx", &dx, &numeric_grad(&x, |p| j(p, w))),
    ]
}

/// The whole LSTM language model (2 unequal layers, dropout on, non-zero carried state).
pub fn check_language_model() -> Vec<CheckResult> {
    check_lm(
        LmConfig {
            embedding: 3,
            // Unequal layers: exercises per-layer widths (as left by structured pruning).
            hidden_sizes: vec![4, 5],
            dropout: 0.3,
            ..LmConfig::lstm(7, 4, 2)
        },
        "lm",
    )
}

/// The whole H-LSTM language model (2 layers, gate width 3, both dropouts on).
pub fn check_hlstm_language_model() -> Vec<CheckResult> {
    check_lm(
        LmConfig {
            embedding: 3,
            dropout: 0.3,
            gate_hidden: 3,
            gate_dropout: 0.25,
            ..LmConfig::lstm(7, 4, 2)
        },
        "hlstm-lm",
    )
}

/// Every tensor of a language model with `config`: J = scale · Σ cross-entropy.
fn check_lm(config: LmConfig, prefix: &str) -> Vec<CheckResult> {
    let (t, b) = (3, 2);
    let mut model = LanguageModel::<f64>::new(config.clone()).expect("valid config");
    model.init_uniform(0.5, 21);
    let tokens = [1u32, 5, 0, 6, 3, 3];
    let targets = [5u32, 0, 6, 3, 3, 2];
    let mut state0 = LmState::<f64>::zeros(&config, b);
    for (k, v) in state0.h.iter_mut().chain(state0.c.iter_mut()).enumerate() {
        *v = random(v.len(), 30 + k as u64, 0.5);
    }
    let ctx = DropoutCtx {
        rng: CounterRng::new(22),
        p: 0.0, // replaced by the config's probability
        step: 9,
    };
    let scale = 0.7;
    let mut ws = model.workspace(t, b);
    let mut state = state0.clone();
    model.forward(
        &mut ws,
        &tokens,
        &targets,
        &mut state,
        Some(ctx),
        Some(scale),
    );
    let mut grads = vec![0.0; model.num_params()];
    model.backward(&mut ws, &mut grads);
    let params = model.params.clone();
    let num = numeric_grad(&params, |p| {
        let mut m = model.clone();
        m.params.copy_from_slice(p);
        let mut st = state0.clone();
        let mut ws = m.workspace(t, b);
        scale * m.forward(&mut ws, &tokens, &targets, &mut st, Some(ctx), None)
    });
    model
        .layout
        .tensors()
        .iter()
        .map(|spec| {
            compare(
                &format!("{prefix}/{}", spec.name),
                &grads[spec.range()],
                &num[spec.range()],
            )
        })
        .collect()
}

/// Every check, in order.
pub fn run_all() -> Vec<CheckResult> {
    let mut all = Vec::new();
    all.extend(check_embedding());
    all.extend(check_softmax_xent());
    all.extend(check_dropout());
    all.extend(check_lstm());
    all.extend(check_hlstm());
    all.extend(check_language_model());
    all.extend(check_hlstm_language_model());
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gradient_check_passes() {
        for r in run_all() {
            assert!(r.passed, "{r:?}");
            assert!(r.checked > 0);
        }
    }

    #[test]
    fn comparison_catches_a_wrong_gradient() {
        let num = numeric_grad(&[1.0, 2.0], |x| x[0] * x[0] + 3.0 * x[1]);
        assert!(compare("ok", &[2.0, 3.0], &num).passed);
        assert!(!compare("bad", &[2.0, 3.001], &num).passed);
        assert!(!compare("nan", &[f64::NAN, 3.0], &num).passed);
    }
}
