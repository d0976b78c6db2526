//! Dense products `y[b, r] += W[r, :] · x[b, :]` over a block of rows, for f32 and bf16 weights.
//!
//! The weights stay in the `[rows, K]` layout (each output is one contiguous dot product): batch-1
//! products are bound by the bytes of W, and this layout streams W exactly once, front to back,
//! while x stays in L1. Several rows and batch rows share each load (register blocking): at batch
//! 1 eight rows, at batch 2 four rows by two, beyond that four by four. bf16 weights are widened
//! exactly to f32 (a 16-bit shift) and accumulated in f32, so only the weights are rounded.
//!
//! The kernels are written once over the lane width (`crate::simd`) and run at the process's ISA
//! level; at `portable`, f32 products go to the gemm crate and bf16 ones to a plain lane loop the
//! compiler vectorizes. Tests check every level the machine has against the same reference.

use super::{zeroed_lines, Lines, Operands};
use crate::isa::Isa;
use crate::simd::{self, Kernel, Simd, Weight};
use std::ops::Range;

/// Weight storage of a dense matrix.
#[derive(Clone, Copy)]
pub(crate) enum DenseWeights<'a> {
    F32(&'a [f32]),
    Bf16(&'a [u16]),
}

/// A row-major dense matrix: `k` columns per row, rows `ld ≥ k` values apart.
///
/// The packer pads `ld` to a whole number of 64-byte lines and aligns the buffer (see
/// `packed::ALIGN`): an unaligned 64-byte load spans two cache lines, and from L2 that halves the
/// batch-1 product's rate (400 x 400 f32 on one core, a loop of 20 000 products: 14.2 us each
/// with 16-byte-aligned rows, 7.3 us with 64-byte-aligned ones; docs/inference.md).
#[derive(Clone, Copy)]
pub(crate) struct DenseRows<'a> {
    pub w: DenseWeights<'a>,
    pub k: usize,
    pub ld: usize,
}

impl<'a> DenseRows<'a> {
    pub fn new(w: DenseWeights<'a>, k: usize, ld: usize) -> Self {
        DenseRows { w, k, ld }
    }
}

/// bf16 → f32 (exact: bf16 is the upper half of an f32).
#[inline(always)]
pub fn bf16_to_f32(v: u16) -> f32 {
    f32::from_bits((v as u32) << 16)
}

/// f32 → bf16 with round-to-nearest-even; NaN stays NaN.
pub fn f32_to_bf16(v: f32) -> u16 {
    let bits = v.to_bits();
    if v.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    ((bits + round) >> 16) as u16
}

/// From this many batch rows on, f32 products go through the gemm crate.
const WIDE_BATCH: usize = 64;

/// Adds `W[r, :] · x[b, :]` to `y[b * ldy + r]` for `r` in `rows`, `b < nb`, at `level`.
///
/// # Safety
/// `y` must be valid for writes at every `b * ldy + r` touched, and no other thread may access
/// those elements during the call. `w` holds at least `(rows.end - 1) * ld + k` values and `x` at
/// least `(nb - 1) * ldx + k` (checked by the caller); the CPU supports `level`.
pub(crate) unsafe fn dense_acc(level: Isa, m: DenseRows<'_>, o: Operands<'_>, rows: Range<usize>) {
    let Operands { x, ldx, nb, y, ldy } = o;
    let DenseRows { w, k, ld } = m;
    // Wide batches are compute-bound: the gemm crate's packed microkernel is faster there
    // (docs/benchmarks.md, `kernel_rates`); the weights are read in place as the transposed
    // operand. At `portable` every f32 product goes there: it is vectorized for any CPU.
    if let DenseWeights::F32(w) = w {
        if nb >= WIDE_BATCH || level == Isa::Portable {
            // SAFETY: w has rows.end rows of k, ld apart; x has nb rows of ldx ≥ k; y's rows
            // b·ldy + rows are the caller's to write.
            unsafe {
                crate::gemm::matmul_acc_bt_serial(
                    nb,
                    rows.len(),
                    k,
                    x.as_ptr(),
                    ldx,
                    w.as_ptr().add(rows.start * ld),
                    ld,
                    y.add(rows.start),
                    ldy,
                )
            };
            return;
        }
    }
    // SAFETY: forwarded caller contract.
    let Err(DenseKernel { m, o, rows }) = (unsafe { simd::run(level, DenseKernel { m, o, rows }) })
    else {
        return;
    };
    match m.w {
        // bf16 at `portable`, several batch rows: blocks of rows widened to f32, then the gemm
        // crate (the plain loop runs at ~20 GFLOP/s whatever the batch; `kernel_rates`).
        DenseWeights::Bf16(w) if nb >= 4 => {
            const BLOCK: usize = 64;
            let mut r0 = rows.start;
            while r0 < rows.end {
                let r1 = (r0 + BLOCK).min(rows.end);
                with_widened(&w[r0 * ld..(r1 - 1) * ld + k], |wf| {
                    // SAFETY: wf holds rows r0..r1 of k, ld apart; forwarded contract for x, y.
                    unsafe {
                        crate::gemm::matmul_acc_bt_serial(
                            nb,
                            r1 - r0,
                            k,
                            x.as_ptr(),
                            ldx,
                            wf.as_ptr(),
                            ld,
                            y.add(r0),
                            ldy,
                        )
                    }
                });
                r0 = r1;
            }
        }
        // SAFETY: forwarded caller contract.
        _ => unsafe { portable_dense_acc(m, o, rows) },
    }
}

/// Runs `f` on `w` widened from bf16 to f32, in a per-thread scratch buffer.
fn with_widened<R>(w: &[u16], f: impl FnOnce(&[f32]) -> R) -> R {
    thread_local! {
        static WIDE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    WIDE.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.clear();
        buf.extend(w.iter().map(|&v| bf16_to_f32(v)));
        f(&buf)
    })
}

/// Portable kernel: 8 f32 lanes per row, one row and one batch row at a time (bf16 weights at
/// the `portable` level; tests run it everywhere against the same reference).
pub(crate) unsafe fn portable_dense_acc(m: DenseRows<'_>, o: Operands<'_>, rows: Range<usize>) {
    let Operands { x, ldx, nb, y, ldy } = o;
    const L: usize = 8;
    let DenseRows { w, k, ld } = m;
    let row_value = |r: usize, j: usize| match w {
        DenseWeights::F32(w) => w[r * ld + j],
        DenseWeights::Bf16(w) => bf16_to_f32(w[r * ld + j]),
    };
    for r in rows {
        for b in 0..nb {
            let xb = &x[b * ldx..b * ldx + k];
            let mut lanes = [0f32; L];
            let main = k / L * L;
            match w {
                DenseWeights::F32(w) => {
                    let wr = &w[r * ld..r * ld + main];
                    for (wc, xc) in wr.chunks_exact(L).zip(xb.chunks_exact(L)) {
                        for l in 0..L {
                            lanes[l] = wc[l].mul_add(xc[l], lanes[l]);
                        }
                    }
                }
                DenseWeights::Bf16(w) => {
                    let wr = &w[r * ld..r * ld + main];
                    for (wc, xc) in wr.chunks_exact(L).zip(xb.chunks_exact(L)) {
                        for l in 0..L {
                            lanes[l] = bf16_to_f32(wc[l]).mul_add(xc[l], lanes[l]);
                        }
                    }
                }
            }
            let mut s: f32 = lanes.iter().sum();
            for (j, xv) in xb.iter().enumerate().skip(main) {
                s += row_value(r, j) * xv;
            }
            // SAFETY: caller contract.
            unsafe { *y.add(b * ldy + r) += s };
        }
    }
}

/// The row-major kernel, written once over the lane width: `R` weight rows by `NB` batch rows
/// share each load (at batch 1 eight rows, at batch 2 four by two, beyond that four by four where
/// 16 accumulators fit the registers, four by two where they do not).
struct DenseKernel<'a> {
    m: DenseRows<'a>,
    o: Operands<'a>,
    rows: Range<usize>,
}

impl Kernel for DenseKernel<'_> {
    type Out = ();

    #[inline(always)]
    unsafe fn run<S: Simd>(self) {
        let DenseKernel { m, o, rows } = self;
        let DenseRows { w, k, ld } = m;
        let wide = S::ACC_REGS >= 16;
        // SAFETY: forwarded contract of `dense_acc`.
        unsafe {
            match (w, o.nb) {
                (DenseWeights::F32(w), 1) => sweep::<S, f32, 8, 1>(w, k, ld, o, rows),
                (DenseWeights::F32(w), 2) => sweep::<S, f32, 4, 2>(w, k, ld, o, rows),
                (DenseWeights::F32(w), _) if wide => sweep::<S, f32, 4, 4>(w, k, ld, o, rows),
                (DenseWeights::F32(w), _) => sweep::<S, f32, 4, 2>(w, k, ld, o, rows),
                (DenseWeights::Bf16(w), 1) => sweep::<S, u16, 8, 1>(w, k, ld, o, rows),
                (DenseWeights::Bf16(w), 2) => sweep::<S, u16, 4, 2>(w, k, ld, o, rows),
                (DenseWeights::Bf16(w), _) if wide => sweep::<S, u16, 4, 4>(w, k, ld, o, rows),
                (DenseWeights::Bf16(w), _) => sweep::<S, u16, 4, 2>(w, k, ld, o, rows),
            }
        }
    }
}

/// `R` rows by `NB` batch rows: R·NB accumulators, each W load used NB times and each x load R
/// times; whole vectors, then one partial vector for the last `k % LANES` columns.
#[inline(always)]
unsafe fn block<S: Simd, T: Weight, const R: usize, const NB: usize>(
    w: *const T,
    k: usize,
    ld: usize,
    x: *const f32,
    ldx: usize,
    y: *mut f32,
    ldy: usize,
) {
    // SAFETY (whole body): pointers are in bounds by the caller's contract; partial loads read
    // nothing past column k.
    unsafe {
        let mut acc = [[S::zero(); NB]; R];
        let mut j = 0;
        while j + S::LANES <= k {
            let mut xv = [S::zero(); NB];
            for (b, v) in xv.iter_mut().enumerate() {
                *v = S::load(x.add(b * ldx + j));
            }
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let wv = T::load::<S>(w.add(r * ld + j));
                for b in 0..NB {
                    acc_r[b] = S::fma(wv, xv[b], acc_r[b]);
                }
            }
            j += S::LANES;
        }
        if j < k {
            let n = k - j;
            let mut xv = [S::zero(); NB];
            for (b, v) in xv.iter_mut().enumerate() {
                *v = S::load_part(x.add(b * ldx + j), n);
            }
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let wv = T::load_part::<S>(w.add(r * ld + j), n);
                for b in 0..NB {
                    acc_r[b] = S::fma(wv, xv[b], acc_r[b]);
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            for (b, a) in acc_r.iter().enumerate() {
                *y.add(b * ldy + r) += S::sum(*a);
            }
        }
    }
}

/// Rows in blocks of `R`, then the rest as one shorter block; batch rows in blocks of `NB`,
/// then singles.
#[inline(always)]
unsafe fn sweep<S: Simd, T: Weight, const R: usize, const NB: usize>(
    w: &[T],
    k: usize,
    ld: usize,
    o: Operands<'_>,
    rows: Range<usize>,
) {
    let (wp, y) = (w.as_ptr(), o.y);
    let mut r = rows.start;
    // SAFETY (whole body): forwarded contract of `dense_acc`.
    unsafe {
        while r + R <= rows.end {
            row_block::<S, T, R, NB>(wp.add(r * ld), k, ld, Operands { y: y.add(r), ..o });
            r += R;
        }
        // The last rows.end - r < R rows as one block of that height: a block's time is set
        // by its FMA dependency chains, not its height, so single rows (the earlier tail)
        // cost as much each as a full block (at H = 650 the thread with 330 units spent
        // 43 block-times per gate against 40 for the one with 320, and the other waited).
        let (w, o) = (wp.add(r * ld), Operands { y: y.add(r), ..o });
        match rows.end - r {
            0 => {}
            1 => row_block::<S, T, 1, NB>(w, k, ld, o),
            2 => row_block::<S, T, 2, NB>(w, k, ld, o),
            3 => row_block::<S, T, 3, NB>(w, k, ld, o),
            4 => row_block::<S, T, 4, NB>(w, k, ld, o),
            5 => row_block::<S, T, 5, NB>(w, k, ld, o),
            6 => row_block::<S, T, 6, NB>(w, k, ld, o),
            7 => row_block::<S, T, 7, NB>(w, k, ld, o),
            _ => unreachable!("the tail is shorter than a block of R ≤ 8 rows"),
        }
    }
}

/// `R` weight rows against every batch row: blocks of `NB` batch rows, then singles.
#[inline(always)]
unsafe fn row_block<S: Simd, T: Weight, const R: usize, const NB: usize>(
    w: *const T,
    k: usize,
    ld: usize,
    o: Operands<'_>,
) {
    let Operands { x, ldx, nb, y, ldy } = o;
    let x = x.as_ptr();
    // SAFETY (whole body): forwarded contract of `dense_acc` for these rows.
    unsafe {
        let mut b = 0;
        while b + NB <= nb {
            block::<S, T, R, NB>(w, k, ld, x.add(b * ldx), ldx, y.add(b * ldy), ldy);
            b += NB;
        }
        while b < nb {
            block::<S, T, R, 1>(w, k, ld, x.add(b * ldx), ldx, y.add(b * ldy), ldy);
            b += 1;
        }
    }
}

/// Most batch rows per register block of the panel kernel: 2 x 12 = 24 accumulators at
/// AVX-512 (2 x 6 at AVX2, [`Simd::ACC_REGS`]).
const PANEL_NB: usize = 12;

/// Panel layout: `y[b, r] += W[r, :] · x[b, :]` with W stored as 32-row panels, each `[K][32]`
/// (see `pack_panels`). Each x value is broadcast against two vectors of a panel's rows (the
/// whole panel at 16 lanes, halves at 8): 2·NB accumulators, no horizontal reductions; the
/// layout for wide batches (the hoisted input projection over T·B rows, batch ≥ 8).
/// `rows.start` must be a multiple of 32.
struct PanelKernel<'a> {
    w: DenseWeights<'a>,
    k: usize,
    o: Operands<'a>,
    rows: Range<usize>,
}

impl Kernel for PanelKernel<'_> {
    type Out = ();

    #[inline(always)]
    unsafe fn run<S: Simd>(self) {
        let PanelKernel { w, k, o, rows } = self;
        // SAFETY: forwarded contract.
        unsafe {
            match w {
                DenseWeights::F32(w) => panel_sweep::<S, f32>(w, k, o, rows),
                DenseWeights::Bf16(w) => panel_sweep::<S, u16>(w, k, o, rows),
            }
        }
    }
}

#[inline(always)]
unsafe fn panel_sweep<S: Simd, T: Weight>(w: &[T], k: usize, o: Operands<'_>, rows: Range<usize>) {
    let Operands { x, ldx, nb, y, ldy } = o;
    let chunk = 2 * S::LANES;
    let max_nb = (S::ACC_REGS / 2).min(PANEL_NB);
    let mut r0 = rows.start;
    while r0 < rows.end {
        let nr = (rows.end - r0).min(PANEL_ROWS);
        for c0 in (0..nr).step_by(chunk) {
            // SAFETY (block): panel r0 / 32 holds k * 32 values; x holds nb rows of ldx ≥ k.
            unsafe {
                let panel = w.as_ptr().add(r0 / PANEL_ROWS * k * PANEL_ROWS + c0);
                let n_rows = (nr - c0).min(chunk);
                // Balanced batch blocks: 35 rows run as 12 + 12 + 11, not 12 + 12 + 4 + 4 + 1 +
                // 1 + 1, whose single-row blocks (2 accumulators) wait on the FMA latency at a
                // quarter of the rate.
                let blocks = nb.div_ceil(max_nb);
                let mut b0 = 0;
                for blk in 0..blocks {
                    let rows_here = (nb - b0).div_ceil(blocks - blk);
                    let (xb, yb) = (x.as_ptr().add(b0 * ldx), y.add(b0 * ldy + r0 + c0));
                    macro_rules! dispatch {
                        ($($n:literal)*) => {
                            match rows_here {
                                $($n => panel_block::<S, T, $n>(panel, k, xb, ldx, yb, ldy, n_rows),)*
                                _ => unreachable!("batch blocks hold 1..=12 rows"),
                            }
                        };
                    }
                    dispatch!(1 2 3 4 5 6 7 8 9 10 11 12);
                    b0 += rows_here;
                }
            }
        }
        r0 += nr;
    }
}

#[inline(always)]
unsafe fn panel_block<S: Simd, T: Weight, const NB: usize>(
    pp: *const T,
    k: usize,
    x: *const f32,
    ldx: usize,
    y: *mut f32,
    ldy: usize,
    nr: usize,
) {
    // SAFETY (block): the panel holds k rows of 32 and the chunk's two vectors lie inside them;
    // x holds NB rows of ldx ≥ k; y's NB rows have nr valid columns from here (partial stores).
    unsafe {
        let mut acc = [[S::zero(); 2]; NB];
        for j in 0..k {
            let w0 = T::load::<S>(pp.add(j * PANEL_ROWS));
            let w1 = T::load::<S>(pp.add(j * PANEL_ROWS + S::LANES));
            for (b, a) in acc.iter_mut().enumerate() {
                let xv = S::splat(*x.add(b * ldx + j));
                a[0] = S::fma(w0, xv, a[0]);
                a[1] = S::fma(w1, xv, a[1]);
            }
        }
        for (b, a) in acc.iter().enumerate() {
            for (h, &v) in a.iter().enumerate() {
                let n = nr.saturating_sub(h * S::LANES).min(S::LANES);
                if n == 0 {
                    break;
                }
                let p = y.add(b * ldy + h * S::LANES);
                if n == S::LANES {
                    S::store(p, S::add(S::load(p), v));
                } else {
                    S::store_part(p, n, S::add(S::load_part(p, n), v));
                }
            }
        }
    }
}

/// Rows per panel of the panel layout.
pub(crate) const PANEL_ROWS: usize = 32;

/// Row-major `[rows, k]` → 32-row panels `[rows/32][k][32]` (last panel zero-padded).
pub(crate) fn pack_panels<T: Copy + Default>(w: &[T], rows: usize, k: usize) -> Lines<T> {
    let panels = rows.div_ceil(PANEL_ROWS);
    let mut out = zeroed_lines(panels * k * PANEL_ROWS);
    for r in 0..rows {
        let (p, i) = (r / PANEL_ROWS, r % PANEL_ROWS);
        for j in 0..k {
            out[(p * k + j) * PANEL_ROWS + i] = w[r * k + j];
        }
    }
    out
}

/// Panel layout product (see [`PanelKernel`]) at `level`; at `portable` each panel (a `k x 32`
/// matrix with row stride 32; bf16 widened first) goes through the gemm crate.
///
/// # Safety
/// As `dense_acc`; `rows.start` is a multiple of 32.
pub(crate) unsafe fn panel_acc(
    level: Isa,
    w: DenseWeights<'_>,
    k: usize,
    o: Operands<'_>,
    rows: Range<usize>,
) {
    // SAFETY: forwarded contract.
    let Err(PanelKernel { w, k, o, rows }) =
        (unsafe { simd::run(level, PanelKernel { w, k, o, rows }) })
    else {
        return;
    };
    let mut r0 = rows.start;
    while r0 < rows.end {
        let nr = (rows.end - r0).min(PANEL_ROWS);
        let at = r0 / PANEL_ROWS * k * PANEL_ROWS;
        let product = |panel: &[f32]| {
            // SAFETY: the panel holds k rows of 32; x holds nb rows of ldx ≥ k; y's rows
            // r0..r0 + nr of every batch row are the caller's.
            unsafe {
                crate::gemm::gemm_raw(
                    o.nb,
                    nr,
                    k,
                    o.y.add(r0),
                    o.ldy,
                    o.x.as_ptr(),
                    (o.ldx as isize, 1),
                    panel.as_ptr(),
                    (PANEL_ROWS as isize, 1),
                    1.0,
                    1.0,
                    false,
                )
            }
        };
        match w {
            DenseWeights::F32(w) => product(&w[at..at + k * PANEL_ROWS]),
            // Widened once per call: k·32 conversions against nb·k·32 multiply-adds.
            DenseWeights::Bf16(w) => with_widened(&w[at..at + k * PANEL_ROWS], product),
        }
        r0 += nr;
    }
}
