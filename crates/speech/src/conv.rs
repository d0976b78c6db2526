//! 2-D convolution over NCHW spectrogram batches (H = frequency, W = time), as DeepSpeech2's
//! front end uses it: kernel, stride and zero padding per axis, no dilation, optional bias.
//!
//! Two forms, both GEMMs through the `kernels` crate: [`lowered`] (im2col, every stride) and
//! [`implicit`] (no column matrix; unit time stride and a wide kernel row, i.e. DeepSpeech2's
//! conv2). [`ConvForm::for_spec`] picks one; [`conv2d_reference`], a direct seven-loop
//! convolution, sits beside both as the test oracle. Everything is generic over [`Real`]: f32
//! for training, f64 for the gradient checks.

mod implicit;
mod lowered;

use kernels::Real;
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

/// Which GEMM formulation runs a layer. Both compute the same function; the choice is speed
/// (docs/benchmarks.md, "AN4 convolutions").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvForm {
    /// im2col + one GEMM per image: any stride and padding.
    Lowered,
    /// One GEMM per kernel row over a strided view of a channels-last copy: unit time stride.
    Implicit,
}

impl ConvForm {
    /// The faster form for `spec`: [`ConvForm::Implicit`] where it applies.
    pub fn for_spec(spec: &Conv2dSpec) -> Self {
        if implicit::suits(spec) {
            ConvForm::Implicit
        } else {
            ConvForm::Lowered
        }
    }

    fn check(self, spec: &Conv2dSpec) {
        assert!(
            self == ConvForm::Lowered || spec.sw == 1,
            "conv2d: the implicit form needs unit time stride, not {spec:?}"
        );
    }
}

/// If there is a bias, writes it into every row of `out` (rows of `p`) and returns one (the
/// product is added onto it); otherwise returns zero (the product overwrites).
fn fill_bias<F: Real>(out: &mut [F], p: usize, bias: Option<&[F]>) -> F {
    match bias {
        Some(bias) => {
            for (row, &bv) in out.chunks_exact_mut(p).zip(bias) {
                row.fill(bv);
            }
            F::ONE
        }
        None => F::ZERO,
    }
}

/// Images per task of the backward pass: each task sums its images' weight gradients in order
/// and the tasks' sums are added in task order, so the result does not depend on the thread
/// count or on scheduling.
const IMAGES_PER_TASK: usize = 4;

/// Forward pass: `x` is `(n, in_c, h, w)`, `y` receives `(n, out_c, ho, wo)` (overwritten).
/// Returns `(ho, wo)`. Images run in parallel, in the form [`ConvForm::for_spec`] picks.
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
    let form = ConvForm::for_spec(spec);
    conv2d_forward_in(form, spec, x, n, h, w, weight, bias, y)
}

/// [`conv2d_forward`] in a given form (the tests run both).
///
/// # Panics
/// As [`conv2d_forward`], and for [`ConvForm::Implicit`] on a time stride other than one.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_forward_in<F: Real>(
    form: ConvForm,
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
    form.check(spec);
    assert_eq!(
        bias.is_some(),
        spec.bias,
        "conv2d: bias presence disagrees with {spec:?}"
    );
    let (p, o) = (ho * wo, spec.out_c);
    assert_eq!(
        y.len(),
        n * o * p,
        "conv2d: output is not {n}x{o}x{ho}x{wo}"
    );
    if n == 0 || p == 0 {
        return (ho, wo);
    }
    let img_len = spec.in_c * h * w;
    let dims = (h, w, ho, wo);
    let images = y.par_chunks_mut(o * p).zip(x.par_chunks(img_len));
    match form {
        ConvForm::Lowered => images.for_each_init(Vec::new, |cols, (out, img)| {
            lowered::forward_image(spec, img, dims, weight, bias, cols, out)
        }),
        ConvForm::Implicit => {
            let weights = implicit::Weights::new(spec, weight, false);
            images.for_each_init(implicit::Scratch::default, |scratch, (out, img)| {
                implicit::forward_image(spec, img, dims, &weights, bias, scratch, out)
            })
        }
    }
    (ho, wo)
}

/// Backward pass for `dy` `(n, out_c, ho, wo)`: `dx` `(n, in_c, h, w)`, when asked for (a first
/// layer's input needs no gradient), is overwritten, while `dw` (weight-shaped) and `db`
/// (`out_c`) are *accumulated into*, so gradients of several batches or utterances can sum in
/// place like PyTorch's `.grad`. Whatever the form needs from the input is recomputed from `x`
/// rather than kept from the forward pass (an im2col matrix is `kh*kw` times the input).
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
    let form = ConvForm::for_spec(spec);
    conv2d_backward_in(form, spec, x, n, h, w, weight, dy, dx, dw, db)
}

/// [`conv2d_backward`] in a given form (the tests run both).
///
/// # Panics
/// As [`conv2d_backward`], and for [`ConvForm::Implicit`] on a time stride other than one.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward_in<F: Real>(
    form: ConvForm,
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
    form.check(spec);
    assert_eq!(
        db.is_some(),
        spec.bias,
        "conv2d: bias gradient presence disagrees with {spec:?}"
    );
    let (p, o) = (ho * wo, spec.out_c);
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
    let dims = (h, w, ho, wo);
    let weights =
        (form == ConvForm::Implicit).then(|| implicit::Weights::new(spec, weight, dx.is_some()));
    let tasks = n.div_ceil(IMAGES_PER_TASK);
    let dx_parts: Vec<Option<&mut [F]>> = match dx {
        Some(dx) => dx.chunks_mut(img_len * IMAGES_PER_TASK).map(Some).collect(),
        None => (0..tasks).map(|_| None).collect(),
    };
    let parts: Vec<Vec<F>> = dx_parts
        .into_par_iter()
        .enumerate()
        .map(|(task, dx_part)| {
            let images = task * IMAGES_PER_TASK..((task + 1) * IMAGES_PER_TASK).min(n);
            let xs = &x[images.start * img_len..images.end * img_len];
            let gs = &dy[images.start * o * p..images.end * o * p];
            let mut dw_part = vec![F::ZERO; weight.len()];
            match &weights {
                None => lowered::backward_images(spec, xs, dims, weight, gs, dx_part, &mut dw_part),
                Some(weights) => {
                    implicit::backward_images(spec, xs, dims, weights, gs, dx_part, &mut dw_part)
                }
            }
            dw_part
        })
        .collect();
    for dw_part in parts {
        for (d, v) in dw.iter_mut().zip(dw_part) {
            *d += v;
        }
    }
    if let Some(db) = db {
        // Summed image by image, in order: the same value whatever the thread count.
        for g in dy.chunks_exact(o * p) {
            for (d, row) in db.iter_mut().zip(g.chunks_exact(p)) {
                *d += row.iter().fold(F::ZERO, |s, &v| s + v);
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
