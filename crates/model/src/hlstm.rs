//! One H-LSTM layer (hidden-layer LSTM, Dai/Yin/Jha 2018) over a whole sequence: forward and
//! backward (truncated BPTT).
//!
//! Each of the four gate maps of the LSTM becomes a one-hidden-layer network of width M:
//! `pre_k = W2_k · dropout(ReLU(W1_k z + b1_k)) + b2_k` with z = [x_t; h_{t-1}], then the usual
//! i, f, g, o activations, `c_t = f ⊙ c_{t-1} + i ⊙ g`, `h_t = o ⊙ tanh(c_t)`. Gate order i, f,
//! g, o as in lstm.rs. M = 0 (no hidden layer) is the plain LSTM: use lstm.rs; it is rejected here.
//!
//! Speed comes from the same choices as lstm.rs: the x part of all four first layers for all T
//! steps is one GEMM; per step one recurrent (B, H) x (H, 4M) GEMM, one fused ReLU + dropout
//! pass and a grouped second layer (4 GEMMs (B, M) x (M, H)); one fused gate epilogue; and in
//! backward the weight gradients of all steps are single GEMMs. The second-layer activations and
//! the gates are kept gate-major, (4, T, B, ·), so each of the four GEMMs reads and writes a
//! contiguous (B, ·) block and the weight gradients of W2 cover all T·B rows; nothing is copied.

use crate::ModelError;
use kernels::cell::{gates_backward, gates_forward};
use kernels::reduce::add_column_sums;
use kernels::{matmul, Real, Trans};
use std::ops::Range;

/// Dimensions of one layer call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HlstmShape {
    /// Time steps T.
    pub t: usize,
    /// Batch B.
    pub b: usize,
    /// Input width I.
    pub i: usize,
    /// Hidden width H.
    pub h: usize,
    /// Width M of the hidden layer inside each gate (> 0; M = 0 is the plain LSTM).
    pub m: usize,
}

impl HlstmShape {
    pub fn g(&self) -> usize {
        4 * self.h
    }

    /// Checks that every dimension is positive. The message names the field; M = 0 gets its own,
    /// because "no hidden layer in the gates" is a valid model, just not this layer.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.m == 0 {
            return Err(ModelError::Config(
                "H-LSTM gate width m must be > 0 (m = 0 means no hidden layer in the gates, \
                 i.e. the plain LSTM: use the lstm layer instead)"
                    .into(),
            ));
        }
        for (name, v) in [
            ("time steps t", self.t),
            ("batch b", self.b),
            ("input width i", self.i),
            ("hidden width h", self.h),
        ] {
            if v == 0 {
                return Err(ModelError::Config(format!("H-LSTM {name} must be > 0")));
            }
        }
        Ok(())
    }
}

/// `state_dict`-style names and shapes of layer `l`'s tensors, in [`HlstmWeights`] field order:
/// `weight_ih1_l{l}` (4M, I), `weight_hh1_l{l}` (4M, H), `bias1_l{l}` (4M), `weight2_l{l}`
/// (4, H, M), `bias2_l{l}` (G). A model prefixes them (e.g. `rnn.`) when it registers them.
pub fn hlstm_param_specs(l: usize, i: usize, h: usize, m: usize) -> [(String, Vec<usize>); 5] {
    [
        (format!("weight_ih1_l{l}"), vec![4 * m, i]),
        (format!("weight_hh1_l{l}"), vec![4 * m, h]),
        (format!("bias1_l{l}"), vec![4 * m]),
        (format!("weight2_l{l}"), vec![4, h, m]),
        (format!("bias2_l{l}"), vec![4 * h]),
    ]
}

/// The layer's weights, borrowed from the flat parameter buffer.
#[derive(Clone, Copy)]
pub struct HlstmWeights<'a, F> {
    /// First layers, x part, the four gates' (M, I) blocks stacked [i f g o]: (4M, I).
    pub w_ih1: &'a [F],
    /// First layers, h part: (4M, H).
    pub w_hh1: &'a [F],
    /// First-layer bias: (4M).
    pub b1: &'a [F],
    /// Second layers, one (H, M) map per gate (out, in as in nn.Linear): (4, H, M).
    pub w2: &'a [F],
    /// Second-layer bias: (G).
    pub b2: &'a [F],
}

impl<F> HlstmWeights<'_, F> {
    /// Slice lengths against the shape; a mismatch is a programming error (the layout sizes them).
    fn assert_fits(&self, s: HlstmShape, who: &str) {
        let (m4, h) = (4 * s.m, s.h);
        assert_eq!(self.w_ih1.len(), m4 * s.i, "{who}: w_ih1 is not (4M, I)");
        assert_eq!(self.w_hh1.len(), m4 * h, "{who}: w_hh1 is not (4M, H)");
        assert_eq!(self.b1.len(), m4, "{who}: b1 is not (4M)");
        assert_eq!(self.w2.len(), 4 * h * s.m, "{who}: w2 is not (4, H, M)");
        assert_eq!(self.b2.len(), 4 * h, "{who}: b2 is not (G)");
    }
}

/// Gradient accumulators, borrowed from the flat gradient buffer (same shapes as the weights).
pub struct HlstmGrads<'a, F> {
    pub dw_ih1: &'a mut [F],
    pub dw_hh1: &'a mut [F],
    pub db1: &'a mut [F],
    pub dw2: &'a mut [F],
    pub db2: &'a mut [F],
}

/// What forward saves for backward, sized for one shape and reused across batches.
#[derive(Clone, Debug)]
pub struct HlstmTape<F> {
    shape: HlstmShape,
    /// First-layer pre-activations W1 z + b1, [i f g o] blocks of M per row: (T, B, 4M). The
    /// fused ReLU pass overwrites each with ∂a'/∂pre = mask ⊙ [pre > 0], all backward needs.
    pub first: Vec<F>,
    /// Second-layer inputs a' = mask ⊙ ReLU(pre), gate-major: (4, T, B, M).
    pub acts: Vec<F>,
    /// Post-activation gates i, f, g, o, gate-major: (4, T, B, H).
    pub gates: Vec<F>,
    /// Hidden states with the initial one first: (T+1, B, H); the layer output is `hs[B*H..]`.
    pub hs: Vec<F>,
    /// Cell states with the initial one first: (T+1, B, H).
    pub cs: Vec<F>,
    /// tanh(c_t): (T, B, H).
    pub tc: Vec<F>,
    /// Pre-activation gate gradients, gate-major: (4, T, B, H).
    pub dgates: Vec<F>,
    /// Gradient w.r.t. a' of the current step, gate-major: (4, B, M).
    pub dacts: Vec<F>,
    /// Gradient w.r.t. the first-layer pre-activations: (T, B, 4M).
    pub dfirst: Vec<F>,
    /// Gradient flowing into h_{t-1} and c_{t-1}: (B, H) each.
    pub dh_next: Vec<F>,
    pub dc_next: Vec<F>,
}

impl<F: Real> HlstmTape<F> {
    /// A tape for `s`; fails (naming the field) when a dimension is zero, M included.
    pub fn new(s: HlstmShape) -> Result<Self, ModelError> {
        s.validate()?;
        let (tb, bh, m4) = (s.t * s.b, s.b * s.h, 4 * s.m);
        Ok(Self {
            shape: s,
            first: vec![F::ZERO; tb * m4],
            acts: vec![F::ZERO; tb * m4],
            gates: vec![F::ZERO; tb * s.g()],
            hs: vec![F::ZERO; (s.t + 1) * bh],
            cs: vec![F::ZERO; (s.t + 1) * bh],
            tc: vec![F::ZERO; tb * s.h],
            dgates: vec![F::ZERO; tb * s.g()],
            dacts: vec![F::ZERO; s.b * m4],
            dfirst: vec![F::ZERO; tb * m4],
            dh_next: vec![F::ZERO; bh],
            dc_next: vec![F::ZERO; bh],
        })
    }

    /// The shape this tape was built for.
    pub fn shape(&self) -> HlstmShape {
        self.shape
    }

    /// The layer output h_1..h_T: (T, B, H).
    pub fn output(&self) -> &[F] {
        &self.hs[self.shape.b * self.shape.h..]
    }

    /// Final (h_T, c_T), to carry into the next batch.
    pub fn final_state(&self) -> (&[F], &[F]) {
        let bh = self.shape.b * self.shape.h;
        let t = self.shape.t;
        (&self.hs[t * bh..], &self.cs[t * bh..])
    }
}

/// Runs the layer over x: (T, B, I) from (h0, c0): (B, H) each, filling `tape`. `mask` is the
/// inverted-dropout mask of the gates' hidden layer, (T, B, 4M) like the first-layer
/// pre-activations (values 0 or 1/(1-p)); `None` means no dropout.
pub fn hlstm_forward<F: Real>(
    s: HlstmShape,
    w: HlstmWeights<'_, F>,
    x: &[F],
    mask: Option<&[F]>,
    h0: &[F],
    c0: &[F],
    tape: &mut HlstmTape<F>,
) {
    // Every length below is fixed by the shape the tape was validated with: mismatches are bugs.
    assert_eq!(tape.shape, s, "hlstm_forward: tape built for another shape");
    w.assert_fits(s, "hlstm_forward");
    let (h, m, m4, bh, bm) = (s.h, s.m, 4 * s.m, s.b * s.h, s.b * s.m);
    let tb = s.t * s.b;
    assert_eq!(x.len(), tb * s.i, "hlstm_forward: x is not (T, B, I)");
    assert_eq!(h0.len(), bh, "hlstm_forward: h0 is not (B, H)");
    assert_eq!(c0.len(), bh, "hlstm_forward: c0 is not (B, H)");
    if let Some(mask) = mask {
        assert_eq!(mask.len(), tb * m4, "hlstm_forward: mask is not (T, B, 4M)");
    }
    tape.hs[..bh].copy_from_slice(h0);
    tape.cs[..bh].copy_from_slice(c0);
    // Hoisted x part of all four first layers for every step at once: first = x W1x^T + b1.
    for row in tape.first.chunks_exact_mut(m4) {
        row.copy_from_slice(w.b1);
    }
    matmul(
        tb,
        m4,
        s.i,
        F::ONE,
        x,
        Trans::N,
        w.w_ih1,
        Trans::T,
        F::ONE,
        &mut tape.first,
    );
    // Second-layer biases preloaded in each gate plane, so the grouped GEMMs only accumulate.
    for (plane, b2) in tape
        .gates
        .chunks_exact_mut(tb * h)
        .zip(w.b2.chunks_exact(h))
    {
        for row in plane.chunks_exact_mut(h) {
            row.copy_from_slice(b2);
        }
    }
    for t in 0..s.t {
        let rows = t * s.b * m4..(t + 1) * s.b * m4;
        let first_t = &mut tape.first[rows.clone()];
        matmul(
            s.b,
            m4,
            h,
            F::ONE,
            &tape.hs[t * bh..(t + 1) * bh],
            Trans::N,
            w.w_hh1,
            Trans::T,
            F::ONE,
            first_t,
        );
        // ReLU and dropout in one pass, gathering each gate's M-wide block into its plane.
        let mut acts_t = planes_mut(&mut tape.acts, t * bm..(t + 1) * bm);
        let mask_t = mask.map(|mk| &mk[rows]);
        for b in 0..s.b {
            for (k, act) in acts_t.iter_mut().enumerate() {
                let r = b * m4 + k * m..b * m4 + (k + 1) * m;
                relu_dropout_forward(
                    &mut first_t[r.clone()],
                    mask_t.map(|mk| &mk[r]),
                    &mut act[b * m..(b + 1) * m],
                );
            }
        }
        // Grouped second layer: gate k's (B, M) x (M, H) product into its own plane.
        let mut gates_t = planes_mut(&mut tape.gates, t * bh..(t + 1) * bh);
        for (k, (gate, act)) in gates_t.iter_mut().zip(&acts_t).enumerate() {
            matmul(
                s.b,
                h,
                m,
                F::ONE,
                act,
                Trans::N,
                &w.w2[k * h * m..(k + 1) * h * m],
                Trans::T,
                F::ONE,
                gate,
            );
        }
        let (cs_prev, cs_next) = tape.cs[t * bh..(t + 2) * bh].split_at_mut(bh);
        gates_forward(
            gates_t,
            None,
            cs_prev,
            cs_next,
            &mut tape.tc[t * bh..(t + 1) * bh],
            &mut tape.hs[(t + 1) * bh..(t + 2) * bh],
        );
    }
}

/// The four planes of a gate-major (4, T, B, ·) buffer, restricted to `r` within each plane.
fn planes<F>(buf: &[F], r: Range<usize>) -> [&[F]; 4] {
    let n = buf.len() / 4;
    std::array::from_fn(|k| &buf[k * n + r.start..k * n + r.end])
}

/// Mutable [`planes`]: split first so the four borrows are provably disjoint.
fn planes_mut<F>(buf: &mut [F], r: Range<usize>) -> [&mut [F]; 4] {
    let n = buf.len() / 4;
    let (p0, rest) = buf.split_at_mut(n);
    let (p1, rest) = rest.split_at_mut(n);
    let (p2, p3) = rest.split_at_mut(n);
    [
        &mut p0[r.clone()],
        &mut p1[r.clone()],
        &mut p2[r.clone()],
        &mut p3[r],
    ]
}

/// `act = mask ⊙ ReLU(pre)`, and `pre` replaced by ∂act/∂pre = mask ⊙ [pre > 0].
// Computed as `on * pre` rather than a select so that a NaN pre-activation stays NaN (as
// PyTorch's ReLU keeps it) and a diverging run is noticed.
#[inline(never)]
fn relu_dropout_forward<F: Real>(pre: &mut [F], mask: Option<&[F]>, act: &mut [F]) {
    let n = act.len();
    let pre = &mut pre[..n];
    match mask {
        Some(mask) => {
            for ((p, &k), a) in pre.iter_mut().zip(&mask[..n]).zip(act.iter_mut()) {
                let on = if *p > F::ZERO { k } else { F::ZERO };
                *a = on * *p;
                *p = on;
            }
        }
        None => {
            for (p, a) in pre.iter_mut().zip(act.iter_mut()) {
                let on = if *p > F::ZERO { F::ONE } else { F::ZERO };
                *a = on * *p;
                *p = on;
            }
        }
    }
}

/// Back-propagates `dh_out`: (T, B, H) (the gradient of the loss w.r.t. the layer output) through
/// the sequence saved in `tape` (the dropout mask is folded into it by forward). The carried-in
/// state is treated as a constant (truncated BPTT). Accumulates the weight gradients; writes
/// dx: (T, B, I) when given.
pub fn hlstm_backward<F: Real>(
    s: HlstmShape,
    w: HlstmWeights<'_, F>,
    x: &[F],
    dh_out: &[F],
    tape: &mut HlstmTape<F>,
    grads: HlstmGrads<'_, F>,
    dx: Option<&mut [F]>,
) {
    assert_eq!(
        tape.shape, s,
        "hlstm_backward: tape built for another shape"
    );
    w.assert_fits(s, "hlstm_backward");
    let (h, m, m4, bh, bm) = (s.h, s.m, 4 * s.m, s.b * s.h, s.b * s.m);
    let tb = s.t * s.b;
    assert_eq!(x.len(), tb * s.i, "hlstm_backward: x is not (T, B, I)");
    assert_eq!(
        dh_out.len(),
        tb * h,
        "hlstm_backward: dh_out is not (T, B, H)"
    );
    tape.dh_next.fill(F::ZERO);
    tape.dc_next.fill(F::ZERO);
    for t in (0..s.t).rev() {
        let r = t * bh..(t + 1) * bh;
        gates_backward(
            planes(&tape.gates, r.clone()),
            &tape.cs[r.clone()],
            &tape.tc[r.clone()],
            &dh_out[r.clone()],
            &tape.dh_next,
            &mut tape.dc_next,
            planes_mut(&mut tape.dgates, r.clone()),
        );
        // Through the grouped second layer: dA'_k = dG_k W2_k, (B, H) x (H, M) per gate.
        let dgates_t = planes(&tape.dgates, r);
        for (k, (dact, dg)) in tape.dacts.chunks_exact_mut(bm).zip(dgates_t).enumerate() {
            matmul(
                s.b,
                m,
                h,
                F::ONE,
                dg,
                Trans::N,
                &w.w2[k * h * m..(k + 1) * h * m],
                Trans::N,
                F::ZERO,
                dact,
            );
        }
        // Through dropout and ReLU (one multiply by the saved ∂a'/∂pre), scattered back to the
        // [i f g o] rows of the first layer so that its products stay single GEMMs.
        let rows = t * s.b * m4..(t + 1) * s.b * m4;
        let dfirst_t = &mut tape.dfirst[rows.clone()];
        let first_t = &tape.first[rows];
        for b in 0..s.b {
            for k in 0..4 {
                let r = b * m4 + k * m..b * m4 + (k + 1) * m;
                let dact = &tape.dacts[k * bm + b * m..k * bm + (b + 1) * m];
                for ((d, &da), &on) in dfirst_t[r.clone()].iter_mut().zip(dact).zip(&first_t[r]) {
                    *d = da * on;
                }
            }
        }
        if t > 0 {
            // dh_{t-1} = dfirst_t W1h: the MLP path replaces the LSTM's W_hh.
            matmul(
                s.b,
                h,
                m4,
                F::ONE,
                dfirst_t,
                Trans::N,
                w.w_hh1,
                Trans::N,
                F::ZERO,
                &mut tape.dh_next,
            );
        }
    }
    // Weight gradients of all steps at once: per gate dW2_k += dG_k^T A'_k over T·B rows ...
    let dgates = planes(&tape.dgates, 0..tb * h);
    let acts = planes(&tape.acts, 0..tb * m);
    for (k, (dw2, db2)) in grads
        .dw2
        .chunks_exact_mut(h * m)
        .zip(grads.db2.chunks_exact_mut(h))
        .enumerate()
    {
        matmul(
            h,
            m,
            tb,
            F::ONE,
            dgates[k],
            Trans::T,
            acts[k],
            Trans::N,
            F::ONE,
            dw2,
        );
        add_column_sums(dgates[k], h, db2);
    }
    // ... and the first layers' dW1h += dF^T H_prev, dW1x += dF^T X.
    matmul(
        m4,
        h,
        tb,
        F::ONE,
        &tape.dfirst,
        Trans::T,
        &tape.hs[..tb * h],
        Trans::N,
        F::ONE,
        grads.dw_hh1,
    );
    matmul(
        m4,
        s.i,
        tb,
        F::ONE,
        &tape.dfirst,
        Trans::T,
        x,
        Trans::N,
        F::ONE,
        grads.dw_ih1,
    );
    add_column_sums(&tape.dfirst, m4, grads.db1);
    if let Some(dx) = dx {
        matmul(
            tb,
            s.i,
            m4,
            F::ONE,
            &tape.dfirst,
            Trans::N,
            w.w_ih1,
            Trans::N,
            F::ZERO,
            dx,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> HlstmShape {
        HlstmShape {
            t: 2,
            b: 3,
            i: 4,
            h: 5,
            m: 6,
        }
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|k| (((k * 7919 + seed * 104_729) % 1000) as f32 / 1000.0 - 0.5) * 0.8)
            .collect()
    }

    struct Params {
        w_ih1: Vec<f32>,
        w_hh1: Vec<f32>,
        b1: Vec<f32>,
        w2: Vec<f32>,
        b2: Vec<f32>,
    }

    impl Params {
        fn new(s: HlstmShape) -> Self {
            let [a, b, c, d, e] = hlstm_param_specs(0, s.i, s.h, s.m)
                .map(|(_, shape)| shape.iter().product::<usize>());
            Self {
                w_ih1: values(a, 1),
                w_hh1: values(b, 2),
                b1: values(c, 3),
                w2: values(d, 4),
                b2: values(e, 5),
            }
        }

        fn weights(&self) -> HlstmWeights<'_, f32> {
            HlstmWeights {
                w_ih1: &self.w_ih1,
                w_hh1: &self.w_hh1,
                b1: &self.b1,
                w2: &self.w2,
                b2: &self.b2,
            }
        }
    }

    #[test]
    fn zero_gate_width_is_rejected_and_points_to_the_lstm() {
        let s = HlstmShape { m: 0, ..shape() };
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("gate width m"), "{err}");
        assert!(err.contains("plain LSTM"), "{err}");
        assert!(HlstmTape::<f32>::new(s).is_err());
    }

    #[test]
    fn every_dimension_is_validated() {
        assert!(shape().validate().is_ok());
        for (s, field) in [
            (HlstmShape { t: 0, ..shape() }, "time steps t"),
            (HlstmShape { b: 0, ..shape() }, "batch b"),
            (HlstmShape { i: 0, ..shape() }, "input width i"),
            (HlstmShape { h: 0, ..shape() }, "hidden width h"),
        ] {
            let err = HlstmTape::<f32>::new(s).unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn param_specs_follow_the_documented_layout() {
        let specs = hlstm_param_specs(1, 3, 4, 5);
        let want: [(&str, &[usize]); 5] = [
            ("weight_ih1_l1", &[20, 3]),
            ("weight_hh1_l1", &[20, 4]),
            ("bias1_l1", &[20]),
            ("weight2_l1", &[4, 4, 5]),
            ("bias2_l1", &[16]),
        ];
        for ((name, shape), (wn, ws)) in specs.iter().zip(want) {
            assert_eq!((name.as_str(), shape.as_slice()), (wn, ws));
        }
    }

    #[test]
    #[should_panic(expected = "tape built for another shape")]
    fn a_tape_of_another_shape_is_a_programming_error() {
        let s = shape();
        let p = Params::new(s);
        let mut tape = HlstmTape::new(HlstmShape { m: 7, ..s }).unwrap();
        let x = vec![0.0; s.t * s.b * s.i];
        let z = vec![0.0; s.b * s.h];
        hlstm_forward(s, p.weights(), &x, None, &z, &z, &mut tape);
    }

    #[test]
    #[should_panic(expected = "w2 is not (4, H, M)")]
    fn a_weight_of_the_wrong_size_is_a_programming_error() {
        let s = shape();
        let mut p = Params::new(s);
        p.w2.pop();
        let mut tape = HlstmTape::new(s).unwrap();
        let x = vec![0.0; s.t * s.b * s.i];
        let z = vec![0.0; s.b * s.h];
        hlstm_forward(s, p.weights(), &x, None, &z, &z, &mut tape);
    }

    #[test]
    fn no_mask_is_an_all_ones_mask() {
        let s = shape();
        let p = Params::new(s);
        let x = values(s.t * s.b * s.i, 6);
        let (h0, c0) = (values(s.b * s.h, 7), values(s.b * s.h, 8));
        let ones = vec![1.0; s.t * s.b * 4 * s.m];
        let mut a = HlstmTape::new(s).unwrap();
        let mut b = HlstmTape::new(s).unwrap();
        hlstm_forward(s, p.weights(), &x, None, &h0, &c0, &mut a);
        hlstm_forward(s, p.weights(), &x, Some(&ones), &h0, &c0, &mut b);
        assert_eq!(a.output(), b.output());
        assert_eq!(a.final_state(), b.final_state());
        assert!(a.output().iter().all(|v| v.is_finite()));
        // Some units are off and some on, so the ReLU path is actually exercised.
        assert!(a.acts.contains(&0.0) && a.acts.iter().any(|&v| v > 0.0));
    }
}
