//! The lowered convolution: each image becomes an im2col column matrix, `(in_c*kh*kw, ho*wo)`,
//! and the layer one GEMM per image through [`kernels::matmul`]; the backward pass is two more
//! GEMMs and a col2im scatter. It handles every stride and padding; the DeepSpeech2 front end
//! uses it for conv1 (one input channel, time stride 2), where the column matrix is small.

use super::Conv2dSpec;
use kernels::{matmul, Real, Trans};

/// Lowers one image `(in_c, h, w)` to `cols`, `(in_c*kh*kw, ho*wo)` row-major: row
/// `(c, i, j)` holds the input value under kernel tap `(i, j)` for every output position, zero
/// where the tap falls in the padding.
#[allow(clippy::too_many_arguments)]
fn im2col<F: Real>(
    s: &Conv2dSpec,
    img: &[F],
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    cols: &mut [F],
) {
    let mut row = 0;
    for c in 0..s.in_c {
        let plane = &img[c * h * w..(c + 1) * h * w];
        for i in 0..s.kh {
            for j in 0..s.kw {
                let out = &mut cols[row * ho * wo..(row + 1) * ho * wo];
                let (lo, hi) = valid_outputs(s, j, w, wo);
                for oy in 0..ho {
                    // Input row under this tap; signed because the padding is above row 0.
                    let y = (oy * s.sh + i) as isize - s.ph as isize;
                    let dst = &mut out[oy * wo..(oy + 1) * wo];
                    if y < 0 || y >= h as isize || lo >= hi {
                        dst.fill(F::ZERO);
                        continue;
                    }
                    let src = &plane[y as usize * w..(y as usize + 1) * w];
                    dst[..lo].fill(F::ZERO);
                    dst[hi..].fill(F::ZERO);
                    let x0 = lo * s.sw + j - s.pw;
                    if s.sw == 1 {
                        dst[lo..hi].copy_from_slice(&src[x0..x0 + (hi - lo)]);
                    } else {
                        for (d, &v) in dst[lo..hi].iter_mut().zip(src[x0..].iter().step_by(s.sw)) {
                            *d = v;
                        }
                    }
                }
                row += 1;
            }
        }
    }
}

/// The output columns `lo..hi` whose input column under kernel tap column `j` is inside the
/// image (not in the padding): `0 <= ox*sw + j - pw < w`.
fn valid_outputs(s: &Conv2dSpec, j: usize, w: usize, wo: usize) -> (usize, usize) {
    // ox*sw >= pw - j, and ox*sw + j - pw <= w - 1.
    let lo = s.pw.saturating_sub(j).div_ceil(s.sw).min(wo);
    let hi = if w + s.pw > j {
        ((w + s.pw - j - 1) / s.sw + 1).min(wo)
    } else {
        0
    };
    (lo, hi.max(lo))
}

/// The adjoint of [`im2col`]: adds each column value back to the input position it was read
/// from (overlapping windows sum), into `img`, which the caller zeroes.
fn col2im<F: Real>(
    s: &Conv2dSpec,
    cols: &[F],
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    img: &mut [F],
) {
    let mut row = 0;
    for c in 0..s.in_c {
        let plane = &mut img[c * h * w..(c + 1) * h * w];
        for i in 0..s.kh {
            for j in 0..s.kw {
                let src_row = &cols[row * ho * wo..(row + 1) * ho * wo];
                let (lo, hi) = valid_outputs(s, j, w, wo);
                for oy in 0..ho {
                    let y = (oy * s.sh + i) as isize - s.ph as isize;
                    if y < 0 || y >= h as isize || lo >= hi {
                        continue;
                    }
                    let dst = &mut plane[y as usize * w..(y as usize + 1) * w];
                    let x0 = lo * s.sw + j - s.pw;
                    let src = &src_row[oy * wo + lo..oy * wo + hi];
                    for (d, &v) in dst[x0..].iter_mut().step_by(s.sw).zip(src) {
                        *d += v;
                    }
                }
                row += 1;
            }
        }
    }
}

/// One image's forward product: `out` `(out_c, ho*wo)` receives the bias (if any) plus
/// `weight * cols`; `cols` is scratch, resized here.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward_image<F: Real>(
    s: &Conv2dSpec,
    img: &[F],
    (h, w, ho, wo): (usize, usize, usize, usize),
    weight: &[F],
    bias: Option<&[F]>,
    cols: &mut Vec<F>,
    out: &mut [F],
) {
    let (k, p) = (s.patch_len(), ho * wo);
    cols.resize(k * p, F::ZERO);
    im2col(s, img, h, w, ho, wo, cols);
    // The bias is written first and the product added onto it (beta = 1).
    let beta = super::fill_bias(out, p, bias);
    matmul(
        s.out_c,
        p,
        k,
        F::ONE,
        weight,
        Trans::N,
        cols,
        Trans::N,
        beta,
        out,
    );
}

/// The backward pass of the images `x`/`dy` hold (consecutive, one task's share): `dw_part`
/// (weight layout) accumulates in image order; `dx`, when given, is overwritten per image.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward_images<F: Real>(
    s: &Conv2dSpec,
    x: &[F],
    (h, w, ho, wo): (usize, usize, usize, usize),
    weight: &[F],
    dy: &[F],
    mut dx: Option<&mut [F]>,
    dw_part: &mut [F],
) {
    let (k, p, o) = (s.patch_len(), ho * wo, s.out_c);
    let img_len = s.in_c * h * w;
    // One buffer holds an image's columns (for dW), then its column gradients (for dx).
    let mut cols = vec![F::ZERO; k * p];
    for (b, (img, g)) in x
        .chunks_exact(img_len)
        .zip(dy.chunks_exact(o * p))
        .enumerate()
    {
        im2col(s, img, h, w, ho, wo, &mut cols);
        // dW (o x k) += dY (o x p) * cols^T (p x k).
        matmul(
            o,
            k,
            p,
            F::ONE,
            g,
            Trans::N,
            &cols,
            Trans::T,
            F::ONE,
            dw_part,
        );
        let Some(dx) = dx.as_deref_mut() else {
            continue;
        };
        // dcols (k x p) = W^T (k x o) * dY (o x p), then scattered back to the image.
        matmul(
            k,
            p,
            o,
            F::ONE,
            weight,
            Trans::T,
            g,
            Trans::N,
            F::ZERO,
            &mut cols,
        );
        let dimg = &mut dx[b * img_len..(b + 1) * img_len];
        dimg.fill(F::ZERO);
        col2im(s, &cols, h, w, ho, wo, dimg);
    }
}
