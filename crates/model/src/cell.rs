//! The LSTM gate epilogue shared by the LSTM and H-LSTM layers: the four activations, the cell
//! and hidden updates (forward) and their gradients (backward), over four gate planes of the
//! same width. One fused pass each; kept out of line so LLVM sees the slices do not alias and
//! vectorizes the loop.

use kernels::Real;

/// The four H-wide gate slices [i f g o] of one row laid out gate after gate.
pub(crate) fn split4_mut<F>(row: &mut [F]) -> [&mut [F]; 4] {
    let h = row.len() / 4;
    let (i, rest) = row.split_at_mut(h);
    let (f, rest) = rest.split_at_mut(h);
    let (g, o) = rest.split_at_mut(h);
    [i, f, g, o]
}

/// Read-only [`split4_mut`].
pub(crate) fn split4<F>(row: &[F]) -> [&[F]; 4] {
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
pub(crate) fn gates_forward<F: Real>(
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
        let i = pi.sigmoid();
        let f = pf.sigmoid();
        let gv = pg.tanh();
        let o = po.sigmoid();
        let cv = f * c_prev[j] + i * gv;
        let t = cv.tanh();
        gi[j] = i;
        gf[j] = f;
        gg[j] = gv;
        go[j] = o;
        c[j] = cv;
        tc[j] = t;
        h_out[j] = o * t;
    }
}

/// Fused backward of [`gates_forward`], writing the pre-activation gate gradients into the four
/// planes of `dgates`. `dc` holds dc_t from the step after on entry and dc_{t-1} on exit.
#[inline(never)]
pub(crate) fn gates_backward<F: Real>(
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
