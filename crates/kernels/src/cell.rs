//! The LSTM gate epilogue, once for every engine: the cell's arithmetic ([`lstm_cell`]: the four
//! activations σ, σ, tanh, σ, c = f ⊙ c_prev + i ⊙ g and h = o ⊙ tanh(c), states flushed from
//! subnormal to zero) and the fused passes over four gate planes built on it — training's forward
//! that keeps the activations for backward ([`gates_forward`]) and its backward
//! ([`gates_backward`]), and inference's in-place step ([`gates_step`]). Each pass is kept out of
//! line so LLVM sees its slices do not alias and vectorizes the loop.

use crate::Real;

/// One unit of the cell: the post-activation gates, the new cell state, tanh of it, and h.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cell<F> {
    pub i: F,
    pub f: F,
    pub g: F,
    pub o: F,
    pub c: F,
    pub tanh_c: F,
    pub h: F,
}

/// The cell's arithmetic on one unit, from the pre-activations and the previous cell state.
#[inline(always)]
pub fn lstm_cell<F: Real>(pi: F, pf: F, pg: F, po: F, c_prev: F) -> Cell<F> {
    let i = pi.sigmoid();
    let f = pf.sigmoid();
    let g = pg.tanh();
    let o = po.sigmoid();
    let c = flush_subnormal(f * c_prev + i * g);
    let tanh_c = c.tanh();
    let h = flush_subnormal(o * tanh_c);
    Cell {
        i,
        f,
        g,
        o,
        c,
        tanh_c,
        h,
    }
}

/// A state decaying towards zero (a forget gate below 1 and no input, step after step) turns
/// subnormal, and every product with a subnormal operand takes a microcode assist (~100x slower).
/// Flushing the states here, and subnormal weights when inference packs them, keeps subnormals out
/// of the kernels with IEEE arithmetic everywhere, rather than a flush-to-zero mode set in MXCSR,
/// under which compiled Rust would run in a floating-point environment LLVM assumes never changes.
/// Cost: docs/benchmarks.md, "Subnormal states without FTZ".
#[inline(always)]
pub fn flush_subnormal<F: Real>(x: F) -> F {
    // A select on |x| (NaN compares false and is kept): vectorizes to a compare and a blend.
    let abs = if x < F::ZERO { -x } else { x };
    if abs < F::MIN_POSITIVE {
        F::ZERO
    } else {
        x
    }
}

/// Inference's step on one batch row: pre-activations in the four planes, `c` updated in place,
/// h written to `h`; nothing kept for a backward.
#[inline(always)]
pub fn gates_step<F: Real>(gi: &[F], gf: &[F], gg: &[F], go: &[F], c: &mut [F], h: &mut [F]) {
    let n = c.len();
    // Equal lengths stated up front remove the bounds checks that keep the loop scalar.
    let (gi, gf, gg, go, h) = (&gi[..n], &gf[..n], &gg[..n], &go[..n], &mut h[..n]);
    for j in 0..n {
        let cell = lstm_cell(gi[j], gf[j], gg[j], go[j], c[j]);
        c[j] = cell.c;
        h[j] = cell.h;
    }
}

/// The four H-wide gate slices [i f g o] of one row laid out gate after gate.
pub fn split4_mut<F>(row: &mut [F]) -> [&mut [F]; 4] {
    let h = row.len() / 4;
    let (i, rest) = row.split_at_mut(h);
    let (f, rest) = rest.split_at_mut(h);
    let (g, o) = rest.split_at_mut(h);
    [i, f, g, o]
}

/// Read-only [`split4_mut`].
pub fn split4<F>(row: &[F]) -> [&[F]; 4] {
    let h = row.len() / 4;
    [&row[..h], &row[h..2 * h], &row[2 * h..3 * h], &row[3 * h..]]
}

/// Fused gate epilogue: pre-activations in the four gate planes (plus `bias` when given) are
/// replaced by their activations (σ, σ, tanh, σ), then c = f ⊙ c_prev + i ⊙ g, tanh(c) and
/// h = o ⊙ tanh(c). The planes may be the four parts of one [i f g o] row (LSTM) or four
/// separate gate-major blocks (H-LSTM).
// Not inlined: as a separate function its slices keep their no-alias guarantee, which LLVM
// needs to vectorize the loop.
#[inline(never)]
pub fn gates_forward<F: Real>(
    gates: [&mut [F]; 4],
    bias: Option<[&[F]; 4]>,
    c_prev: &[F],
    c: &mut [F],
    tc: &mut [F],
    h_out: &mut [F],
) {
    match bias {
        Some(bias) => gates_forward_impl::<F, true>(gates, bias, c_prev, c, tc, h_out),
        None => gates_forward_impl::<F, false>(gates, [&[]; 4], c_prev, c, tc, h_out),
    }
}

/// [`gates_forward`] with the bias added to the pre-activations first (when `BIAS`).
#[inline(always)]
fn gates_forward_impl<F: Real, const BIAS: bool>(
    gates: [&mut [F]; 4],
    bias: [&[F]; 4],
    c_prev: &[F],
    c: &mut [F],
    tc: &mut [F],
    h_out: &mut [F],
) {
    let n = c.len();
    let [gi, gf, gg, go] = gates;
    // Equal lengths stated up front remove the bounds checks that keep the loop scalar.
    let (gi, gf, gg, go) = (&mut gi[..n], &mut gf[..n], &mut gg[..n], &mut go[..n]);
    let (c_prev, tc, h_out) = (&c_prev[..n], &mut tc[..n], &mut h_out[..n]);
    let m = if BIAS { n } else { 0 };
    let [bi, bf, bg, bo] = bias;
    let (bi, bf, bg, bo) = (&bi[..m], &bf[..m], &bg[..m], &bo[..m]);
    for j in 0..n {
        let (mut pi, mut pf, mut pg, mut po) = (gi[j], gf[j], gg[j], go[j]);
        if BIAS {
            pi += bi[j];
            pf += bf[j];
            pg += bg[j];
            po += bo[j];
        }
        let cell = lstm_cell(pi, pf, pg, po, c_prev[j]);
        gi[j] = cell.i;
        gf[j] = cell.f;
        gg[j] = cell.g;
        go[j] = cell.o;
        c[j] = cell.c;
        tc[j] = cell.tanh_c;
        h_out[j] = cell.h;
    }
}

/// Fused backward of [`gates_forward`], writing the pre-activation gate gradients into the four
/// planes of `dgates`. `dc` holds dc_t from the step after on entry and dc_{t-1} on exit.
#[inline(never)]
pub fn gates_backward<F: Real>(
    gates: [&[F]; 4],
    c_prev: &[F],
    tc: &[F],
    dh_out: &[F],
    dh_rec: &[F],
    dc: &mut [F],
    dgates: [&mut [F]; 4],
) {
    let n = c_prev.len();
    let [gi, gf, gg, go] = gates;
    let [di, df, dg, d_o] = dgates;
    // Equal lengths stated up front remove the bounds checks that keep the loop scalar.
    let (gi, gf, gg, go) = (&gi[..n], &gf[..n], &gg[..n], &go[..n]);
    let (di, df, dg, d_o) = (&mut di[..n], &mut df[..n], &mut dg[..n], &mut d_o[..n]);
    let (tc, dh_out, dh_rec, dc) = (&tc[..n], &dh_out[..n], &dh_rec[..n], &mut dc[..n]);
    for j in 0..n {
        let (i, f, gv, o, t) = (gi[j], gf[j], gg[j], go[j], tc[j]);
        let dh = dh_out[j] + dh_rec[j];
        let dcv = dc[j] + dh * o * (F::ONE - t * t);
        d_o[j] = dh * t * o * (F::ONE - o);
        di[j] = dcv * gv * i * (F::ONE - i);
        df[j] = dcv * c_prev[j] * f * (F::ONE - f);
        dg[j] = dcv * i * (F::ONE - gv * gv);
        dc[j] = dcv * f;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cell_follows_the_lstm_equations() {
        for &(pi, pf, pg, po, c0) in &[(0.3f64, -1.2, 0.7, 2.0, -0.4), (-3.0, 4.0, -0.2, -0.5, 1.5)]
        {
            let s = |x: f64| 1.0 / (1.0 + (-x).exp());
            let c = s(pf) * c0 + s(pi) * pg.tanh();
            let h = s(po) * c.tanh();
            let got = lstm_cell(pi, pf, pg, po, c0);
            assert!((got.c - c).abs() < 1e-15 && (got.h - h).abs() < 1e-15);
            let got32 = lstm_cell(pi as f32, pf as f32, pg as f32, po as f32, c0 as f32);
            assert!((got32.c as f64 - c).abs() < 1e-6, "{} vs {c}", got32.c);
            assert!((got32.h as f64 - h).abs() < 1e-6, "{} vs {h}", got32.h);
        }
    }

    #[test]
    fn subnormal_states_flush_to_zero_and_nan_stays() {
        assert_eq!(flush_subnormal(1e-40f32), 0.0);
        assert_eq!(flush_subnormal(-1e-40f32), 0.0);
        assert_eq!(flush_subnormal(1e-30f32), 1e-30);
        assert!(flush_subnormal(f32::NAN).is_nan());
        // A forget gate near 0 and no input: c would be subnormal.
        let cell = lstm_cell(-200.0f32, -5.0, 0.0, 0.0, 1e-36);
        assert_eq!(cell.c, 0.0);
    }

    #[test]
    fn the_inference_step_equals_the_training_forward() {
        let n = 37;
        let plane = |k: usize| -> Vec<f32> {
            (0..n)
                .map(|j| ((j * 7 + k * 13) % 23) as f32 * 0.3 - 3.0)
                .collect()
        };
        let c_prev: Vec<f32> = (0..n).map(|j| (j % 5) as f32 * 0.4 - 1.0).collect();
        let (mut gi, mut gf, mut gg, mut go) = (plane(0), plane(1), plane(2), plane(3));
        let (mut c, mut h) = (c_prev.clone(), vec![0.0; n]);
        gates_step(&gi, &gf, &gg, &go, &mut c, &mut h);
        let (mut c2, mut tc, mut h2) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        gates_forward(
            [&mut gi, &mut gf, &mut gg, &mut go],
            None,
            &c_prev,
            &mut c2,
            &mut tc,
            &mut h2,
        );
        assert_eq!(c, c2);
        assert_eq!(h, h2);
        assert!(h.iter().any(|&v| v != 0.0));
    }
}
