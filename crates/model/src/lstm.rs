//! One LSTM layer over a whole sequence: forward and backward (truncated BPTT).
//!
//! Gate order i, f, g, o (PyTorch's), weights `w_ih` (G, I) and `w_hh` (G, H) with G = 4H, two
//! biases as in `nn.LSTM`. Speed comes from three choices: the input projection for all T steps
//! is one GEMM; only the recurrent (B, H) x (H, G) product stays inside the time loop; the gate
//! non-linearities, cell and hidden updates are one fused pass; and in backward the weight
//! gradients of all steps are again single GEMMs.

use crate::cell::{gates_backward, gates_forward, split4, split4_mut};
use kernels::reduce::add_column_sums;
use kernels::small_m::{matmul_packed, PackedB};
use kernels::{matmul, Real, Trans};

/// Dimensions of one layer call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LstmShape {
    /// Time steps T.
    pub t: usize,
    /// Batch B.
    pub b: usize,
    /// Input width I.
    pub i: usize,
    /// Hidden width H.
    pub h: usize,
}

impl LstmShape {
    pub fn g(&self) -> usize {
        4 * self.h
    }
}

/// The layer's weights, borrowed from the flat parameter buffer.
#[derive(Clone, Copy)]
pub struct LstmWeights<'a, F> {
    pub w_ih: &'a [F], // (G, I)
    pub w_hh: &'a [F], // (G, H)
    pub b_ih: &'a [F], // (G)
    pub b_hh: &'a [F], // (G)
}

/// Gradient accumulators, borrowed from the flat gradient buffer.
pub struct LstmGrads<'a, F> {
    pub dw_ih: &'a mut [F],
    pub dw_hh: &'a mut [F],
    pub db_ih: &'a mut [F],
    pub db_hh: &'a mut [F],
}

/// What forward saves for backward, sized for one shape and reused across batches.
#[derive(Clone, Debug, Default)]
pub struct LstmTape<F> {
    /// Post-activation gates [i f g o] per step: (T, B, G).
    pub gates: Vec<F>,
    /// Hidden states with the initial one first: (T+1, B, H); the layer output is `hs[B*H..]`.
    pub hs: Vec<F>,
    /// Cell states with the initial one first: (T+1, B, H).
    pub cs: Vec<F>,
    /// tanh(c_t): (T, B, H).
    pub tc: Vec<F>,
    /// Pre-activation gate gradients: (T, B, G).
    pub dgates: Vec<F>,
    /// W_hhᵀ (H x G) packed for the per-step forward product, refreshed by every forward, and
    /// W_hh (G x H) packed for the backward's dh product, refreshed by every backward: the
    /// few-rows kernel streams the packed strips 2x faster than the `gemm` crate reads the
    /// weight (`symbiont peak`: `recurrent_*_few_rows` vs `recurrent_*`).
    pub w_hh_fwd: PackedB<F>,
    pub w_hh_bwd: PackedB<F>,
    /// Gradient flowing into h_{t-1} and c_{t-1}: (B, H) each.
    pub dh_next: Vec<F>,
    pub dc_next: Vec<F>,
}

impl<F: Real> LstmTape<F> {
    pub fn new(s: LstmShape) -> Self {
        let (tb, bh, g) = (s.t * s.b, s.b * s.h, s.g());
        Self {
            gates: vec![F::ZERO; tb * g],
            hs: vec![F::ZERO; (s.t + 1) * bh],
            cs: vec![F::ZERO; (s.t + 1) * bh],
            tc: vec![F::ZERO; tb * s.h],
            dgates: vec![F::ZERO; tb * g],
            w_hh_fwd: PackedB::new(),
            w_hh_bwd: PackedB::new(),
            dh_next: vec![F::ZERO; bh],
            dc_next: vec![F::ZERO; bh],
        }
    }

    /// The layer output h_1..h_T: (T, B, H).
    pub fn output(&self, s: LstmShape) -> &[F] {
        &self.hs[s.b * s.h..]
    }

    /// Final (h_T, c_T), to carry into the next batch.
    pub fn final_state(&self, s: LstmShape) -> (&[F], &[F]) {
        let bh = s.b * s.h;
        (&self.hs[s.t * bh..], &self.cs[s.t * bh..])
    }
}

/// Runs the layer over x: (T, B, I) from (h0, c0): (B, H) each, filling `tape`.
pub fn lstm_forward<F: Real>(
    s: LstmShape,
    w: LstmWeights<'_, F>,
    x: &[F],
    h0: &[F],
    c0: &[F],
    tape: &mut LstmTape<F>,
) {
    let (h, g, bh) = (s.h, s.g(), s.b * s.h);
    let tb = s.t * s.b;
    assert_eq!(x.len(), tb * s.i, "lstm_forward: x is not (T, B, I)");
    tape.hs[..bh].copy_from_slice(h0);
    tape.cs[..bh].copy_from_slice(c0);
    // Hoisted input projection for every step at once: gates = x W_ih^T + b_ih + b_hh.
    for row in tape.gates.chunks_exact_mut(g) {
        for ((r, &a), &b) in row.iter_mut().zip(w.b_ih).zip(w.b_hh) {
            *r = a + b;
        }
    }
    matmul(
        tb,
        g,
        s.i,
        F::ONE,
        x,
        Trans::N,
        w.w_ih,
        Trans::T,
        F::ONE,
        &mut tape.gates,
    );
    tape.w_hh_fwd.pack_transposed(w.w_hh, h, h, g);
    for t in 0..s.t {
        let gates_t = &mut tape.gates[t * s.b * g..(t + 1) * s.b * g];
        let (hs_prev, hs_next) = tape.hs[t * bh..(t + 2) * bh].split_at_mut(bh);
        matmul_packed(s.b, F::ONE, hs_prev, h, &tape.w_hh_fwd, F::ONE, gates_t, g);
        let (cs_prev, cs_next) = tape.cs[t * bh..(t + 2) * bh].split_at_mut(bh);
        let tc_t = &mut tape.tc[t * bh..(t + 1) * bh];
        for b in 0..s.b {
            let row = &mut gates_t[b * g..(b + 1) * g];
            let r = b * h..(b + 1) * h;
            gates_forward(
                split4_mut(row),
                &cs_prev[r.clone()],
                &mut cs_next[r.clone()],
                &mut tc_t[r.clone()],
                &mut hs_next[r],
            );
        }
    }
}

/// Back-propagates `dh_out`: (T, B, H) (the gradient of the loss w.r.t. the layer output) through
/// the sequence saved in `tape`. The carried-in state is treated as a constant (truncated BPTT).
/// Accumulates the weight gradients; writes dx: (T, B, I) when given.
pub fn lstm_backward<F: Real>(
    s: LstmShape,
    w: LstmWeights<'_, F>,
    x: &[F],
    dh_out: &[F],
    tape: &mut LstmTape<F>,
    grads: LstmGrads<'_, F>,
    dx: Option<&mut [F]>,
) {
    let (h, g, bh) = (s.h, s.g(), s.b * s.h);
    let tb = s.t * s.b;
    assert_eq!(
        dh_out.len(),
        tb * h,
        "lstm_backward: dh_out is not (T, B, H)"
    );
    tape.w_hh_bwd.pack(w.w_hh, h, g, h);
    tape.dh_next.fill(F::ZERO);
    tape.dc_next.fill(F::ZERO);
    for t in (0..s.t).rev() {
        let gates_t = &tape.gates[t * s.b * g..(t + 1) * s.b * g];
        let dgates_t = &mut tape.dgates[t * s.b * g..(t + 1) * s.b * g];
        let c_prev = &tape.cs[t * bh..(t + 1) * bh];
        let tc_t = &tape.tc[t * bh..(t + 1) * bh];
        let dh_t = &dh_out[t * bh..(t + 1) * bh];
        for b in 0..s.b {
            let r = b * h..(b + 1) * h;
            gates_backward(
                split4(&gates_t[b * g..(b + 1) * g]),
                &c_prev[r.clone()],
                &tc_t[r.clone()],
                &dh_t[r.clone()],
                &tape.dh_next[r.clone()],
                &mut tape.dc_next[r],
                split4_mut(&mut dgates_t[b * g..(b + 1) * g]),
            );
        }
        if t > 0 {
            // dh_{t-1} = dgates_t W_hh
            matmul_packed(
                s.b,
                F::ONE,
                dgates_t,
                g,
                &tape.w_hh_bwd,
                F::ZERO,
                &mut tape.dh_next,
                h,
            );
        }
    }
    // Weight gradients of all steps at once.
    matmul(
        g,
        h,
        tb,
        F::ONE,
        &tape.dgates,
        Trans::T,
        &tape.hs[..tb * h],
        Trans::N,
        F::ONE,
        grads.dw_hh,
    );
    matmul(
        g,
        s.i,
        tb,
        F::ONE,
        &tape.dgates,
        Trans::T,
        x,
        Trans::N,
        F::ONE,
        grads.dw_ih,
    );
    add_column_sums(&tape.dgates, g, grads.db_ih);
    add_column_sums(&tape.dgates, g, grads.db_hh);
    if let Some(dx) = dx {
        matmul(
            tb,
            s.i,
            g,
            F::ONE,
            &tape.dgates,
            Trans::N,
            w.w_ih,
            Trans::N,
            F::ZERO,
            dx,
        );
    }
}
