//! One LSTM layer over a whole sequence: forward and backward (truncated BPTT).
//!
//! Gate order i, f, g, o (PyTorch's), weights `w_ih` (G, I) and `w_hh` (G, H) with G = 4H, two
//! biases as in `nn.LSTM`. Speed comes from three choices: the input projection for all T steps
//! is one GEMM; only the recurrent (B, H) x (H, G) product stays inside the time loop; the gate
//! non-linearities, cell and hidden updates are one fused pass; and in backward the weight
//! gradients of all steps are again single GEMMs.

use kernels::cell::{gates_backward, gates_forward, split4, split4_mut};
use kernels::reduce::add_column_sums;
use kernels::small_m::{matmul_packed, PackedB};
use kernels::{matmul, Real, Trans};
use rayon::prelude::*;

/// Per-step element-wise passes (gate epilogues) run on all threads from this many B x H
/// values: PTB-medium's 20 x 650 gains, PTB-small's 20 x 200 (4,000) does not.
const PARALLEL_MIN_VALUES: usize = 8192;

/// Batch rows per task of the per-step gate passes: all of them (one task, run on the calling
/// thread: rayon splits no further) below [`PARALLEL_MIN_VALUES`] or on one thread, else an
/// equal share per thread.
fn rows_per_task(s: LstmShape) -> usize {
    let threads = rayon::current_num_threads();
    if s.b * s.h >= PARALLEL_MIN_VALUES && threads > 1 {
        s.b.div_ceil(threads)
    } else {
        s.b.max(1)
    }
}

/// One batch row of the per-step forward pass: (gates, c_prev, c, tanh c, h), as zipped.
type FwdRow<'a, F> = (
    (((&'a mut [F], &'a [F]), &'a mut [F]), &'a mut [F]),
    &'a mut [F],
);
/// One batch row of the per-step backward pass: (gates, c_prev, tanh c, dh, dh_rec), (dc, dgates).
type BwdRow<'a, F> = (
    ((((&'a [F], &'a [F]), &'a [F]), &'a [F]), &'a [F]),
    (&'a mut [F], &'a mut [F]),
);

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
    /// b_ih + b_hh (G), added in the gate epilogue.
    pub bias: Vec<F>,
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
            bias: vec![F::ZERO; g],
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
    // Hoisted input projection for every step at once: gates = x W_ih^T. The biases are added in
    // the gate epilogue (pre-filling the T·B x G buffer with them cost a pass over it).
    for ((r, &a), &b) in tape.bias.iter_mut().zip(w.b_ih).zip(w.b_hh) {
        *r = a + b;
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
        F::ZERO,
        &mut tape.gates,
    );
    let rows_per_task = rows_per_task(s);
    tape.w_hh_fwd.pack_transposed(w.w_hh, h, h, g);
    let bias = split4(&tape.bias);
    for t in 0..s.t {
        let gates_t = &mut tape.gates[t * s.b * g..(t + 1) * s.b * g];
        let (hs_prev, hs_next) = tape.hs[t * bh..(t + 2) * bh].split_at_mut(bh);
        matmul_packed(s.b, F::ONE, hs_prev, h, &tape.w_hh_fwd, F::ONE, gates_t, g);
        let (cs_prev, cs_next) = tape.cs[t * bh..(t + 2) * bh].split_at_mut(bh);
        let tc_t = &mut tape.tc[t * bh..(t + 1) * bh];
        gates_t
            .par_chunks_mut(g)
            .zip(cs_prev.par_chunks(h))
            .zip(cs_next.par_chunks_mut(h))
            .zip(tc_t.par_chunks_mut(h))
            .zip(hs_next.par_chunks_mut(h))
            .with_min_len(rows_per_task)
            .for_each(|((((gates, c_prev), c), tc), h_out): FwdRow<'_, F>| {
                gates_forward(split4_mut(gates), Some(bias), c_prev, c, tc, h_out)
            });
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
    let rows_per_task = rows_per_task(s);
    for t in (0..s.t).rev() {
        let gates_t = &tape.gates[t * s.b * g..(t + 1) * s.b * g];
        let dgates_t = &mut tape.dgates[t * s.b * g..(t + 1) * s.b * g];
        let c_prev = &tape.cs[t * bh..(t + 1) * bh];
        let tc_t = &tape.tc[t * bh..(t + 1) * bh];
        let dh_t = &dh_out[t * bh..(t + 1) * bh];
        gates_t
            .par_chunks(g)
            .zip(c_prev.par_chunks(h))
            .zip(tc_t.par_chunks(h))
            .zip(dh_t.par_chunks(h))
            .zip(tape.dh_next.par_chunks(h))
            .zip(
                tape.dc_next
                    .par_chunks_mut(h)
                    .zip(dgates_t.par_chunks_mut(g)),
            )
            .with_min_len(rows_per_task)
            .for_each(
                |(((((gates, c_prev), tc), dh), dh_rec), (dc, dgates)): BwdRow<'_, F>| {
                    gates_backward(
                        split4(gates),
                        c_prev,
                        tc,
                        dh,
                        dh_rec,
                        dc,
                        split4_mut(dgates),
                    )
                },
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Forward outputs and every gradient of one layer call, run on `threads` threads.
    fn run(s: LstmShape, threads: usize) -> Vec<Vec<f32>> {
        let g = s.g();
        let val = |n: usize, seed: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 1000.0 - 0.5) * 0.2)
                .collect()
        };
        let (w_ih, w_hh) = (val(g * s.i, 1), val(g * s.h, 2));
        let (b_ih, b_hh) = (val(g, 3), val(g, 4));
        let x = val(s.t * s.b * s.i, 5);
        let (h0, c0) = (val(s.b * s.h, 6), val(s.b * s.h, 7));
        let dh_out = val(s.t * s.b * s.h, 8);
        let w = || LstmWeights {
            w_ih: &w_ih,
            w_hh: &w_hh,
            b_ih: &b_ih,
            b_hh: &b_hh,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut tape = LstmTape::new(s);
            lstm_forward(s, w(), &x, &h0, &c0, &mut tape);
            let (mut dw_ih, mut dw_hh) = (vec![0.0; g * s.i], vec![0.0; g * s.h]);
            let (mut db_ih, mut db_hh) = (vec![0.0; g], vec![0.0; g]);
            let mut dx = vec![0.0; s.t * s.b * s.i];
            let grads = LstmGrads {
                dw_ih: &mut dw_ih,
                dw_hh: &mut dw_hh,
                db_ih: &mut db_ih,
                db_hh: &mut db_hh,
            };
            lstm_backward(s, w(), &x, &dh_out, &mut tape, grads, Some(&mut dx));
            vec![tape.output(s).to_vec(), dw_ih, dw_hh, db_ih, db_hh, dx]
        })
    }

    #[test]
    fn threaded_gate_passes_match_the_serial_ones() {
        // B x H = 9,600 takes the parallel per-step passes on 2 and 3 threads (odd row split).
        let s = LstmShape {
            t: 3,
            b: 16,
            i: 40,
            h: 600,
        };
        assert!(s.b * s.h >= PARALLEL_MIN_VALUES);
        let one = run(s, 1);
        for threads in [2, 3] {
            for (name, (a, b)) in ["h", "dw_ih", "dw_hh", "db_ih", "db_hh", "dx"]
                .iter()
                .zip(one.iter().zip(&run(s, threads)))
            {
                for (x, y) in a.iter().zip(b) {
                    assert!(
                        (x - y).abs() <= 1e-5 * (1.0 + x.abs()),
                        "{name} on {threads} threads: {x} vs {y}"
                    );
                }
            }
        }
    }
}
