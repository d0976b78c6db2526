//! 2-D convolution over NCHW spectrogram batches (H = frequency, W = time), as DeepSpeech2's
//! front end uses it: kernel, stride and zero padding per axis, no dilation, optional bias.
//!
//! The fast path lowers each image to columns (im2col) and runs one GEMM per image through
//! [`kernels::matmul`]; the backward pass is two more GEMMs per image and a col2im scatter. A
//! direct seven-loop [`conv2d_reference`] sits beside it as the test oracle. Everything is generic
//! over [`Real`]: f32 for training, f64 for the gradient checks.

use kernels::{matmul, Real, Trans};
use rayon::prelude::*;

/// Shape of one convolution layer. The weight is stored `(out_c, in_c, kh, kw)` row-major and the
/// bias `(out_c)`, as PyTorch's `nn.Conv2d` stores them, so its tensors load without reordering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dSpec {
    pub in_c: usize,
    pub out_c: usize,
    /// Kernel extent along H (frequency) and W (time).
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    /// Zeros added on both sides of H and W.
    pub ph: usize,
    pub pw: usize,
    pub bias: bool,
}

impl Conv2dSpec {
    /// DeepSpeech2's first layer: `Conv2d(1, 32, (41, 11), stride (2, 2), padding (0, 10))`
    /// (deepspeech.pytorch keeps the bias; the BatchNorm that follows makes it redundant but
    /// harmless).
    pub fn deepspeech_conv1() -> Self {
        Conv2dSpec {
            in_c: 1,
            out_c: 32,
            kh: 41,
            kw: 11,
            sh: 2,
            sw: 2,
            ph: 0,
            pw: 10,
            bias: true,
        }
    }

    /// DeepSpeech2's second layer: `Conv2d(32, 32, (21, 11), stride (2, 1))`, no padding.
    pub fn deepspeech_conv2() -> Self {
        Conv2dSpec {
            in_c: 32,
            out_c: 32,
            kh: 21,
            kw: 11,
            sh: 2,
            sw: 1,
            ph: 0,
            pw: 0,
            bias: true,
        }
    }

    /// Number of weight values, `out_c * in_c * kh * kw`.
    pub fn weight_len(&self) -> usize {
        self.out_c * self.in_c * self.kh * self.kw
    }

    /// Output extent along H for input extent `h`; `None` when the padded input is shorter than
    /// the kernel (PyTorch raises there too).
    pub fn out_h(&self, h: usize) -> Option<usize> {
        out_extent(h, self.kh, self.sh, self.ph)
    }

    /// Output extent along W (time) for input extent `w`; `None` when too short.
    pub fn out_w(&self, w: usize) -> Option<usize> {
        out_extent(w, self.kw, self.sw, self.pw)
    }

    /// Rows of the im2col matrix: one per (channel, kernel row, kernel column).
    fn patch_len(&self) -> usize {
        self.in_c * self.kh * self.kw
    }

    fn check(
        &self,
        n: usize,
        h: usize,
        w: usize,
        x_len: usize,
        weight_len: usize,
    ) -> (usize, usize) {
        assert!(
            self.sh > 0 && self.sw > 0 && self.kh > 0 && self.kw > 0,
            "conv2d: zero kernel or stride in {self:?}"
        );
        assert_eq!(
            x_len,
            n * self.in_c * h * w,
            "conv2d: input is not {n}x{}x{h}x{w}",
            self.in_c
        );
        assert_eq!(
            weight_len,
            self.weight_len(),
            "conv2d: weight length for {self:?}"
        );
        let ho = self
            .out_h(h)
            .unwrap_or_else(|| panic!("conv2d: height {h} < kernel in {self:?}"));
        let wo = self
            .out_w(w)
            .unwrap_or_else(|| panic!("conv2d: width {w} < kernel in {self:?}"));
        (ho, wo)
    }
}

/// `floor((len + 2 pad - k) / stride) + 1`, or `None` if the padded length is below `k`.
fn out_extent(len: usize, k: usize, stride: usize, pad: usize) -> Option<usize> {
    let padded = len + 2 * pad;
    (padded >= k).then(|| (padded - k) / stride + 1)
}

/// Output time lengths for utterances of `lengths` input frames, as deepspeech.pytorch's
/// `get_seq_lens` computes them (same formula as the layer, so each utterance's valid frames are
/// known after a padded batch goes through). An utterance too short for the kernel maps to 0.
pub fn output_lengths(spec: &Conv2dSpec, lengths: &[usize]) -> Vec<usize> {
    lengths
        .iter()
        .map(|&l| spec.out_w(l).unwrap_or(0))
        .collect()
}

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

/// Images per task of the backward pass: each task sums its images' weight gradients in order
/// and the tasks' sums are added in task order, so the result does not depend on the thread
/// count or on scheduling.
const IMAGES_PER_TASK: usize = 4;

/// Forward pass: `x` is `(n, in_c, h, w)`, `y` receives `(n, out_c, ho, wo)` (overwritten).
/// Returns `(ho, wo)`. Images run in parallel, each lowered by im2col into its own scratch.
///
/// # Panics
/// On a length that does not match the shapes, a bias present iff `spec.bias` violated, or an
/// input smaller than the kernel (programming errors).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_forward<F: Real>(
    spec: &Conv2dSpec,
    x: &[F],
    n: usize,
    h: usize,
    w: usize,
    weight: &[F],
    bias: Option<&[F]>,
    y: &mut [F],
) -> (usize, usize) {
    let (ho, wo) = spec.check(n, h, w, x.len(), weight.len());
    assert_eq!(
        bias.is_some(),
        spec.bias,
        "conv2d: bias presence disagrees with {spec:?}"
    );
    let (k, p, o) = (spec.patch_len(), ho * wo, spec.out_c);
    assert_eq!(
        y.len(),
        n * o * p,
        "conv2d: output is not {n}x{o}x{ho}x{wo}"
    );
    if n == 0 || p == 0 {
        return (ho, wo);
    }
    let img_len = spec.in_c * h * w;
    y.par_chunks_mut(o * p)
        .zip(x.par_chunks(img_len))
        .for_each_init(Vec::new, |cols, (out, img)| {
            cols.resize(k * p, F::ZERO);
            im2col(spec, img, h, w, ho, wo, cols);
            // The bias is written first and the product added onto it (beta = 1).
            let beta = match bias {
                Some(bias) => {
                    for (row, &bv) in out.chunks_exact_mut(p).zip(bias) {
                        row.fill(bv);
                    }
                    F::ONE
                }
                None => F::ZERO,
            };
            matmul(o, p, k, F::ONE, weight, Trans::N, cols, Trans::N, beta, out);
        });
    (ho, wo)
}

/// Backward pass for `dy` `(n, out_c, ho, wo)`: `dx` `(n, in_c, h, w)`, when asked for (a first
/// layer's input needs no gradient), is overwritten, while `dw` (weight-shaped) and `db`
/// (`out_c`) are *accumulated into*, so gradients of several batches or utterances can sum in
/// place like PyTorch's `.grad`. The im2col columns are recomputed from `x` rather than kept
/// from the forward pass: they are `kh*kw` times the input (451x for conv1), too large to hold
/// for every layer of a batch.
///
/// # Panics
/// As [`conv2d_forward`], and if `db` is given without a bias or vice versa.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward<F: Real>(
    spec: &Conv2dSpec,
    x: &[F],
    n: usize,
    h: usize,
    w: usize,
    weight: &[F],
    dy: &[F],
    dx: Option<&mut [F]>,
    dw: &mut [F],
    db: Option<&mut [F]>,
) {
    let (ho, wo) = spec.check(n, h, w, x.len(), weight.len());
    assert_eq!(
        db.is_some(),
        spec.bias,
        "conv2d: bias gradient presence disagrees with {spec:?}"
    );
    let (k, p, o) = (spec.patch_len(), ho * wo, spec.out_c);
    assert_eq!(
        dy.len(),
        n * o * p,
        "conv2d: output gradient is not {n}x{o}x{ho}x{wo}"
    );
    if let Some(dx) = dx.as_deref() {
        assert_eq!(dx.len(), x.len(), "conv2d: input gradient length");
    }
    assert_eq!(dw.len(), weight.len(), "conv2d: weight gradient length");
    if n == 0 {
        return;
    }
    let img_len = spec.in_c * h * w;
    let tasks = n.div_ceil(IMAGES_PER_TASK);
    let dx_parts: Vec<Option<&mut [F]>> = match dx {
        Some(dx) => dx.chunks_mut(img_len * IMAGES_PER_TASK).map(Some).collect(),
        None => (0..tasks).map(|_| None).collect(),
    };
    let parts: Vec<(Vec<F>, Vec<F>)> = dx_parts
        .into_par_iter()
        .enumerate()
        .map(|(task, mut dx_part)| {
            let (mut dw_part, mut db_part) = (vec![F::ZERO; o * k], vec![F::ZERO; o]);
            // One buffer holds an image's columns (for dW), then its column gradients (for dx).
            let mut cols = vec![F::ZERO; k * p];
            let first = task * IMAGES_PER_TASK;
            for b in first..(first + IMAGES_PER_TASK).min(n) {
                let g = &dy[b * o * p..(b + 1) * o * p];
                for (d, row) in db_part.iter_mut().zip(g.chunks_exact(p)) {
                    *d += row.iter().fold(F::ZERO, |s, &v| s + v);
                }
                im2col(
                    spec,
                    &x[b * img_len..(b + 1) * img_len],
                    h,
                    w,
                    ho,
                    wo,
                    &mut cols,
                );
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
                    &mut dw_part,
                );
                let Some(dx) = dx_part.as_deref_mut() else {
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
                let local = b - first;
                let dimg = &mut dx[local * img_len..(local + 1) * img_len];
                dimg.fill(F::ZERO);
                col2im(spec, &cols, h, w, ho, wo, dimg);
            }
            (dw_part, db_part)
        })
        .collect();
    let mut db = db;
    for (dw_part, db_part) in parts {
        for (d, v) in dw.iter_mut().zip(dw_part) {
            *d += v;
        }
        if let Some(db) = db.as_deref_mut() {
            for (d, v) in db.iter_mut().zip(db_part) {
                *d += v;
            }
        }
    }
}

/// Direct convolution by definition, one output value at a time: the oracle for
/// [`conv2d_forward`]. Returns `(y, ho, wo)`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_reference<F: Real>(
    spec: &Conv2dSpec,
    x: &[F],
    n: usize,
    h: usize,
    w: usize,
    weight: &[F],
    bias: Option<&[F]>,
) -> (Vec<F>, usize, usize) {
    let (ho, wo) = spec.check(n, h, w, x.len(), weight.len());
    let s = spec;
    let mut y = vec![F::ZERO; n * s.out_c * ho * wo];
    for b in 0..n {
        for oc in 0..s.out_c {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = bias.map_or(F::ZERO, |bias| bias[oc]);
                    for c in 0..s.in_c {
                        for i in 0..s.kh {
                            for j in 0..s.kw {
                                let yy = (oy * s.sh + i) as isize - s.ph as isize;
                                let xx = (ox * s.sw + j) as isize - s.pw as isize;
                                if yy < 0 || xx < 0 || yy >= h as isize || xx >= w as isize {
                                    continue;
                                }
                                let xv = x[((b * s.in_c + c) * h + yy as usize) * w + xx as usize];
                                let wv = weight[((oc * s.in_c + c) * s.kh + i) * s.kw + j];
                                acc += xv * wv;
                            }
                        }
                    }
                    y[((b * s.out_c + oc) * ho + oy) * wo + ox] = acc;
                }
            }
        }
    }
    (y, ho, wo)
}
