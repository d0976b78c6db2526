//! Implicit-GEMM convolution for layers with unit time stride (DeepSpeech2's conv2: 32 → 32
//! channels, 21 x 11 kernel, stride (2, 1)): no im2col matrix. Each image is copied once into
//! channels-last planes, one per phase of the H stride, with the padding written as zeros; each
//! kernel row is then one GEMM whose operand is an overlapping strided view of that copy —
//! consecutive output positions lie `in_c` values apart, consecutive (tap column, channel) pairs
//! one value apart. Output positions run over the padded width, so the last `kw - 1` columns of
//! each output row are computed and dropped (7% at conv2's widths). The lowered form of this
//! layer wrote a 7,392-row column matrix per image: docs/benchmarks.md, "AN4 convolutions".

use super::Conv2dSpec;
use kernels::{matmul_strided, Real, StridedView};

/// Whether this form takes the layer: unit W stride, and a kernel row of `in_c * kw` values long
/// enough to feed a GEMM (conv1's 1 x 11 is not; the lowered form is better there).
pub(super) fn suits(s: &Conv2dSpec) -> bool {
    s.sw == 1 && s.in_c * s.kw >= 64
}

/// Sizes of the channels-last copies of one `h x w` image.
struct Layout {
    c: usize,
    o: usize,
    /// Padded width `w + 2 pw`: the row length of the input planes and of the output positions.
    wp: usize,
    /// Rows per input plane; plane `phase` holds padded rows `r * sh + phase`.
    rows: usize,
    /// Values per input plane, with slack for the overhanging reads of the dropped columns.
    plane: usize,
    ho: usize,
    wo: usize,
    /// Output positions computed, `ho * wp` (`wo` of each `wp` are kept).
    positions: usize,
    /// Kernel rows reaching back from an output row into one plane: `(kh - 1) / sh`.
    reach: usize,
    /// Row length of the padded output gradient: `wp + kw - 1`.
    wq: usize,
}

impl Layout {
    fn new(s: &Conv2dSpec, h: usize, w: usize, ho: usize, wo: usize) -> Self {
        let (c, wp) = (s.in_c, w + 2 * s.pw);
        let rows = (h + 2 * s.ph).div_ceil(s.sh);
        Layout {
            c,
            o: s.out_c,
            wp,
            rows,
            plane: rows * wp * c + s.kw * c,
            ho,
            wo,
            positions: ho * wp,
            reach: (s.kh - 1) / s.sh,
            wq: wp + s.kw - 1,
        }
    }

    /// Values of the padded output gradient, `(rows + reach) * wq` positions of `out_c`, plus
    /// slack for the overhanging reads.
    fn dy_padded_len(&self, s: &Conv2dSpec) -> usize {
        ((self.rows + self.reach) * self.wq + s.kw) * self.o
    }

    /// Values of the input-gradient planes: `sh` planes of `rows * wq` positions of `in_c`.
    fn dx_planes_len(&self, s: &Conv2dSpec) -> usize {
        s.sh * self.rows * self.wq * self.c
    }
}

/// Copies image `img` `(in_c, h, w)` into `planes` (`sh` channels-last planes, zero padding).
fn to_planes<F: Real>(s: &Conv2dSpec, l: &Layout, img: &[F], h: usize, w: usize, planes: &mut [F]) {
    planes.fill(F::ZERO);
    for ch in 0..l.c {
        for (y, src) in img[ch * h * w..(ch + 1) * h * w]
            .chunks_exact(w)
            .enumerate()
        {
            let yp = y + s.ph;
            let base = (yp % s.sh) * l.plane + ((yp / s.sh) * l.wp + s.pw) * l.c + ch;
            for (x, &v) in src.iter().enumerate() {
                planes[base + x * l.c] = v;
            }
        }
    }
}

/// The planes from the first input row that kernel row `i` reads for output row 0 onwards.
fn row_start<'a, F>(s: &Conv2dSpec, l: &Layout, planes: &'a [F], i: usize) -> &'a [F] {
    let (a, phase) = (i / s.sh, i % s.sh);
    &planes[phase * l.plane + a * l.wp * l.c..(phase + 1) * l.plane]
}

/// The weight `(out_c, in_c, kh, kw)` as one `(kw * in_c) x out_c` matrix per kernel row `i`,
/// rows ordered (tap column, channel): the right operand of the forward products.
fn weight_by_row<F: Real>(s: &Conv2dSpec, weight: &[F]) -> Vec<F> {
    let (c, o) = (s.in_c, s.out_c);
    let mut wt = vec![F::ZERO; weight.len()];
    for (idx, &v) in weight.iter().enumerate() {
        let (oc, ch, i, j) = split_index(s, idx);
        wt[((i * s.kw + j) * c + ch) * o + oc] = v;
    }
    wt
}

/// The weight as one `(kw * out_c) x in_c` matrix per kernel row `i`, tap columns reversed:
/// the right operand of the input-gradient products (a correlation with the flipped kernel).
fn weight_flipped<F: Real>(s: &Conv2dSpec, weight: &[F]) -> Vec<F> {
    let (c, o) = (s.in_c, s.out_c);
    let mut wf = vec![F::ZERO; weight.len()];
    for (idx, &v) in weight.iter().enumerate() {
        let (oc, ch, i, j) = split_index(s, idx);
        wf[((i * s.kw + (s.kw - 1 - j)) * o + oc) * c + ch] = v;
    }
    wf
}

/// `(out channel, in channel, kernel row, kernel column)` of a flat weight index.
fn split_index(s: &Conv2dSpec, idx: usize) -> (usize, usize, usize, usize) {
    let j = idx % s.kw;
    let i = (idx / s.kw) % s.kh;
    let ch = (idx / (s.kw * s.kh)) % s.in_c;
    (idx / (s.kw * s.kh * s.in_c), ch, i, j)
}

/// Scratch of one worker, kept across its images.
#[derive(Default)]
pub(super) struct Scratch<F> {
    planes: Vec<F>,
    positions: Vec<F>,
    dy_padded: Vec<F>,
    dx_planes: Vec<F>,
}

/// Weight reorderings shared by every image of a call.
pub(super) struct Weights<F> {
    by_row: Vec<F>,
    flipped: Option<Vec<F>>,
}

impl<F: Real> Weights<F> {
    /// `with_flipped` when input gradients will be asked for.
    pub(super) fn new(s: &Conv2dSpec, weight: &[F], with_flipped: bool) -> Self {
        Weights {
            by_row: weight_by_row(s, weight),
            flipped: with_flipped.then(|| weight_flipped(s, weight)),
        }
    }
}

/// One image's forward pass into `out` `(out_c, ho, wo)` (overwritten, bias added).
pub(super) fn forward_image<F: Real>(
    s: &Conv2dSpec,
    img: &[F],
    (h, w, ho, wo): (usize, usize, usize, usize),
    weights: &Weights<F>,
    bias: Option<&[F]>,
    scratch: &mut Scratch<F>,
    out: &mut [F],
) {
    let l = Layout::new(s, h, w, ho, wo);
    let (c, o, kc) = (l.c, l.o, s.kw * l.c);
    scratch.planes.resize(s.sh * l.plane, F::ZERO);
    to_planes(s, &l, img, h, w, &mut scratch.planes);
    // Channels-last output over every computed position: positions x out_c.
    scratch.positions.resize(l.positions * o, F::ZERO);
    for i in 0..s.kh {
        let input = StridedView {
            data: row_start(s, &l, &scratch.planes, i),
            row_stride: c,
            col_stride: 1,
        };
        let weight = StridedView {
            data: &weights.by_row[i * kc * o..(i + 1) * kc * o],
            row_stride: o,
            col_stride: 1,
        };
        let beta = if i == 0 { F::ZERO } else { F::ONE };
        matmul_strided(
            l.positions,
            o,
            kc,
            F::ONE,
            input,
            weight,
            beta,
            &mut scratch.positions,
            o,
        );
    }
    for (oc, plane) in out.chunks_exact_mut(ho * wo).enumerate() {
        let b = bias.map_or(F::ZERO, |b| b[oc]);
        for (oy, row) in plane.chunks_exact_mut(wo).enumerate() {
            let src = &scratch.positions[oy * l.wp * o..];
            for (ox, v) in row.iter_mut().enumerate() {
                *v = src[ox * o + oc] + b;
            }
        }
    }
}

/// The backward pass of consecutive images `x`/`dy` (one task's share): `dw_part` (weight
/// layout) accumulates in image order; `dx`, when given, is overwritten per image.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward_images<F: Real>(
    s: &Conv2dSpec,
    x: &[F],
    (h, w, ho, wo): (usize, usize, usize, usize),
    weights: &Weights<F>,
    dy: &[F],
    mut dx: Option<&mut [F]>,
    dw_part: &mut [F],
) {
    let l = Layout::new(s, h, w, ho, wo);
    let (c, o, kc) = (l.c, l.o, s.kw * l.c);
    let img_len = c * h * w;
    let mut scratch = Scratch::default();
    scratch.planes.resize(s.sh * l.plane, F::ZERO);
    scratch.positions.resize(l.positions * o, F::ZERO);
    // Weight gradient by kernel row, (tap column, channel) x out_c like `Weights::by_row`.
    let mut dw_by_row = vec![F::ZERO; dw_part.len()];
    for (b, (img, g)) in x
        .chunks_exact(img_len)
        .zip(dy.chunks_exact(o * ho * wo))
        .enumerate()
    {
        to_planes(s, &l, img, h, w, &mut scratch.planes);
        // dY channels-last over the computed positions, zero in the dropped columns.
        scratch.positions.fill(F::ZERO);
        for (oc, plane) in g.chunks_exact(ho * wo).enumerate() {
            for (oy, row) in plane.chunks_exact(wo).enumerate() {
                let dst = &mut scratch.positions[oy * l.wp * o..];
                for (ox, &v) in row.iter().enumerate() {
                    dst[ox * o + oc] = v;
                }
            }
        }
        for i in 0..s.kh {
            // dW_i (kc x o) += input_i^T (kc x positions) * dY (positions x o).
            let input_t = StridedView {
                data: row_start(s, &l, &scratch.planes, i),
                row_stride: 1,
                col_stride: c,
            };
            let grad = StridedView {
                data: &scratch.positions,
                row_stride: o,
                col_stride: 1,
            };
            matmul_strided(
                kc,
                o,
                l.positions,
                F::ONE,
                input_t,
                grad,
                F::ONE,
                &mut dw_by_row[i * kc * o..(i + 1) * kc * o],
                o,
            );
        }
        if let Some(dx) = dx.as_deref_mut() {
            input_gradient(s, &l, weights, g, &mut scratch);
            let dimg = &mut dx[b * img_len..(b + 1) * img_len];
            scatter_input_gradient(s, &l, &scratch.dx_planes, (h, w), dimg);
        }
    }
    for (idx, d) in dw_part.iter_mut().enumerate() {
        let (oc, ch, i, j) = split_index(s, idx);
        *d += dw_by_row[((i * s.kw + j) * c + ch) * o + oc];
    }
}

/// The input gradient of one image in plane space, into `scratch.dx_planes`: for each kernel row,
/// the padded output gradient read as a strided view times the flipped kernel row.
fn input_gradient<F: Real>(
    s: &Conv2dSpec,
    l: &Layout,
    weights: &Weights<F>,
    g: &[F],
    scratch: &mut Scratch<F>,
) {
    let (c, o, ko) = (l.c, l.o, s.kw * l.o);
    let flipped = weights
        .flipped
        .as_ref()
        .expect("conv2d implicit: input gradient asked without flipped weights");
    // dY with `reach` zero rows above and kw - 1 zero columns on each side, channels-last.
    scratch.dy_padded.clear();
    scratch.dy_padded.resize(l.dy_padded_len(s), F::ZERO);
    for (oc, plane) in g.chunks_exact(l.ho * l.wo).enumerate() {
        for (oy, row) in plane.chunks_exact(l.wo).enumerate() {
            let dst = &mut scratch.dy_padded[((oy + l.reach) * l.wq + s.kw - 1) * o..];
            for (ox, &v) in row.iter().enumerate() {
                dst[ox * o + oc] = v;
            }
        }
    }
    scratch.dx_planes.clear();
    scratch.dx_planes.resize(l.dx_planes_len(s), F::ZERO);
    let plane_positions = l.rows * l.wq;
    for i in 0..s.kh {
        let (a, phase) = (i / s.sh, i % s.sh);
        // dX_phase (positions x in_c) += dY view (positions x kw*out_c) * flipped_i.
        let grad = StridedView {
            data: &scratch.dy_padded[(l.reach - a) * l.wq * o..],
            row_stride: o,
            col_stride: 1,
        };
        let weight = StridedView {
            data: &flipped[i * ko * c..(i + 1) * ko * c],
            row_stride: c,
            col_stride: 1,
        };
        let dst = &mut scratch.dx_planes[phase * plane_positions * c..][..plane_positions * c];
        matmul_strided(plane_positions, c, ko, F::ONE, grad, weight, F::ONE, dst, c);
    }
}

/// Reads the real (unpadded) input positions out of the gradient planes into `dimg`
/// `(in_c, h, w)` (overwritten).
fn scatter_input_gradient<F: Real>(
    s: &Conv2dSpec,
    l: &Layout,
    dx_planes: &[F],
    (h, w): (usize, usize),
    dimg: &mut [F],
) {
    let c = l.c;
    for ch in 0..c {
        for (y, row) in dimg[ch * h * w..(ch + 1) * h * w]
            .chunks_exact_mut(w)
            .enumerate()
        {
            let yp = y + s.ph;
            let base = ((yp % s.sh) * l.rows * l.wq + (yp / s.sh) * l.wq + s.pw) * c + ch;
            for (x, v) in row.iter_mut().enumerate() {
                *v = dx_planes[base + x * c];
            }
        }
    }
}
