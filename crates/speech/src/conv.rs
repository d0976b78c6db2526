//! 2-D convolution over NCHW spectrogram batches (H = frequency, W = time), as DeepSpeech2's
//! front end uses it: kernel, stride and zero padding per axis, no dilation, optional bias.
//!
//! The fast path lowers each image to columns (im2col) and runs one GEMM per image through
//! [`kernels::matmul`]; the backward pass is two more GEMMs per image and a col2im scatter. A
//! direct seven-loop [`conv2d_reference`] sits beside it as the test oracle. Everything is generic
//! over [`Real`]: f32 for training, f64 for the gradient checks.

use kernels::{matmul, Real, Trans};

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
                for oy in 0..ho {
                    // Input row under this tap; signed because the padding is above row 0.
                    let y = (oy * s.sh + i) as isize - s.ph as isize;
                    let dst = &mut out[oy * wo..(oy + 1) * wo];
                    if y < 0 || y >= h as isize {
                        dst.fill(F::ZERO);
                        continue;
                    }
                    let src = &plane[y as usize * w..(y as usize + 1) * w];
                    for (ox, d) in dst.iter_mut().enumerate() {
                        let x = (ox * s.sw + j) as isize - s.pw as isize;
                        *d = if x >= 0 && x < w as isize {
                            src[x as usize]
                        } else {
                            F::ZERO
                        };
                    }
                }
                row += 1;
            }
        }
    }
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
                for oy in 0..ho {
                    let y = (oy * s.sh + i) as isize - s.ph as isize;
                    if y < 0 || y >= h as isize {
                        continue;
                    }
                    let dst = &mut plane[y as usize * w..(y as usize + 1) * w];
                    for (ox, &v) in src_row[oy * wo..(oy + 1) * wo].iter().enumerate() {
                        let x = (ox * s.sw + j) as isize - s.pw as isize;
                        if x >= 0 && x < w as isize {
                            dst[x as usize] += v;
                        }
                    }
                }
                row += 1;
            }
        }
    }
}

/// Forward pass: `x` is `(n, in_c, h, w)`, `y` receives `(n, out_c, ho, wo)` (overwritten).
/// Returns `(ho, wo)`. `cols` is scratch, grown as needed and reusable across calls.
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
    cols: &mut Vec<F>,
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
    cols.resize(k * p, F::ZERO);
    for b in 0..n {
        let img = &x[b * spec.in_c * h * w..(b + 1) * spec.in_c * h * w];
        im2col(spec, img, h, w, ho, wo, cols);
        let out = &mut y[b * o * p..(b + 1) * o * p];
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
    }
    (ho, wo)
}

/// Backward pass for `dy` `(n, out_c, ho, wo)`: `dx` `(n, in_c, h, w)` is overwritten, while
/// `dw` (weight-shaped) and `db` (`out_c`) are *accumulated into*, so gradients of several batches
/// or utterances can sum in place like PyTorch's `.grad`. The im2col columns are recomputed from
/// `x` rather than kept from the forward pass: they are `kh*kw` times the input (451x for conv1),
/// too large to hold for every layer of a batch.
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
    dx: &mut [F],
    dw: &mut [F],
    mut db: Option<&mut [F]>,
    cols: &mut Vec<F>,
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
    assert_eq!(dx.len(), x.len(), "conv2d: input gradient length");
    assert_eq!(dw.len(), weight.len(), "conv2d: weight gradient length");
    // One buffer holds the image's columns (for dW) and then its column gradients (for dx).
    cols.resize(k * p, F::ZERO);
    let img_len = spec.in_c * h * w;
    for b in 0..n {
        let g = &dy[b * o * p..(b + 1) * o * p];
        if let Some(db) = db.as_deref_mut() {
            for (d, row) in db.iter_mut().zip(g.chunks_exact(p)) {
                *d += row.iter().fold(F::ZERO, |s, &v| s + v);
            }
        }
        im2col(spec, &x[b * img_len..(b + 1) * img_len], h, w, ho, wo, cols);
        // dW (o x k) += dY (o x p) * cols^T (p x k).
        matmul(o, k, p, F::ONE, g, Trans::N, cols, Trans::T, F::ONE, dw);
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
            cols,
        );
        let dimg = &mut dx[b * img_len..(b + 1) * img_len];
        dimg.fill(F::ZERO);
        col2im(spec, cols, h, w, ho, wo, dimg);
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
