//! Compressed sparse rows with compact column indices (u16 when K ≤ 65 536, else u32), and its
//! product `y[b, r] += W[r, :] · x[b, :]`.
//!
//! Two kernels, by batch width: up to 7 batch rows, each row's non-zeros are gathered from x
//! (the values and indices stream once), either a vector at a time with the CPU's gather
//! instruction or with one scalar load per non-zero in independent chains — whichever
//! [`gather_mode`] measured faster on this CPU (AMD Zen 3's AVX2 gathers lose to scalar loads,
//! Intel's AVX-512 ones win: docs/benchmarks.md, "CSR gathers"); from 8 batch rows on, x is transposed to (K, B) once so each non-zero becomes
//! one broadcast-multiply-add over a
//! contiguous B-wide row — no gathers, and the work per non-zero is shared by the whole batch
//! (this is the path of the hoisted input projection, whose "batch" is T·B).

use super::Operands;
use crate::isa::Isa;
use crate::simd::{self, Index, Kernel, Simd, Weight};
use crate::timing::median_secs;
use std::cell::RefCell;
use std::ops::Range;
use std::sync::OnceLock;

/// Batch widths from which x is transposed instead of gathered.
pub(crate) const TRANSPOSE_FROM: usize = 8;

/// How the few-batch kernel reads x at the non-zeros' columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatherMode {
    /// The ISA's gather instruction, a vector of non-zeros at a time.
    Vector,
    /// One scalar load and FMA per non-zero, several independent chains per row.
    Scalar,
}

impl GatherMode {
    pub fn name(self) -> &'static str {
        match self {
            GatherMode::Vector => "vector",
            GatherMode::Scalar => "scalar",
        }
    }
}

/// The environment variable that forces a [`GatherMode`] (`vector` or `scalar`) instead of
/// measuring.
pub const GATHER_ENV: &str = "SYMBIONT_CSR_GATHER";

/// The faster few-batch gather mode at `level` on this CPU: forced by [`GATHER_ENV`], else
/// measured once per process and level (about a millisecond) on a 10%-dense 256 x 2048 matrix
/// at batch 1, the recurrent product of a sparse plan. `portable` has no vector kernel.
pub fn gather_mode(level: Isa) -> GatherMode {
    static CHOSEN: [OnceLock<GatherMode>; crate::isa::ALL.len()] =
        [const { OnceLock::new() }; crate::isa::ALL.len()];
    *CHOSEN[level as usize].get_or_init(|| match std::env::var(GATHER_ENV).as_deref() {
        Ok("vector") => GatherMode::Vector,
        Ok("scalar") => GatherMode::Scalar,
        Ok(other) => {
            eprintln!("warning: {GATHER_ENV}={other} is neither `vector` nor `scalar`; measuring");
            measure_gather_mode(level)
        }
        Err(_) => measure_gather_mode(level),
    })
}

/// What the few-batch kernel runs at `level`, for reports: the [`gather_mode`] name, or `none`
/// at `portable` (a plain loop, no hand kernel).
pub fn gather_label(level: Isa) -> &'static str {
    if level == Isa::Portable {
        "none"
    } else {
        gather_mode(level).name()
    }
}

/// Times both modes, alternating, and keeps scalar only when its best time beats the vector
/// mode's by 10%: the modes add in different orders, so a choice that flips between processes on
/// a CPU where they time alike would change results in the last bits for nothing.
fn measure_gather_mode(level: Isa) -> GatherMode {
    if level == Isa::Portable || !level.supported() {
        return GatherMode::Vector;
    }
    let (rows, cols) = (256, 2048);
    let rng = crate::rng::CounterRng::new(11);
    let w: Vec<f32> = (0..(rows * cols) as u64)
        .map(|i| {
            if rng.uniform_f64(0, i) < 0.1 {
                rng.uniform(1, i) - 0.5
            } else {
                0.0
            }
        })
        .collect();
    let m = Csr::from_dense(&w, rows, cols);
    let x: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut y = vec![0f32; rows];
    let mut best = [f64::INFINITY; 2];
    for _ in 0..3 {
        for (slot, mode) in [GatherMode::Vector, GatherMode::Scalar]
            .into_iter()
            .enumerate()
        {
            let o = Operands {
                x: &x,
                ldx: cols,
                nb: 1,
                y: y.as_mut_ptr(),
                ldy: rows,
            };
            // SAFETY: y holds `rows` values, exclusively borrowed for the timing.
            let t = median_secs(7, || unsafe { m.acc_mode(level, mode, o, 0..rows) });
            best[slot] = best[slot].min(t);
        }
    }
    if best[1] < 0.9 * best[0] {
        GatherMode::Scalar
    } else {
        GatherMode::Vector
    }
}

/// Column indices of the non-zeros, as narrow as K allows.
#[derive(Clone, Debug)]
pub enum Indices {
    U16(Vec<u16>),
    U32(Vec<u32>),
}

impl Indices {
    pub fn len(&self) -> usize {
        match self {
            Indices::U16(v) => v.len(),
            Indices::U32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, i: usize) -> usize {
        match self {
            Indices::U16(v) => v[i] as usize,
            Indices::U32(v) => v[i] as usize,
        }
    }

    pub fn bytes_per_index(&self) -> usize {
        match self {
            Indices::U16(_) => 2,
            Indices::U32(_) => 4,
        }
    }
}

/// A `[rows, cols]` matrix in CSR form.
#[derive(Clone, Debug)]
pub struct Csr {
    pub rows: usize,
    pub cols: usize,
    /// Start of each row's non-zeros; `rows + 1` entries.
    pub row_ptr: Vec<u32>,
    pub col_idx: Indices,
    /// f32 values; empty when the values are stored as bf16 (`vals16`).
    pub vals: Vec<f32>,
    /// bf16 values (round to nearest even), widened in the kernels; empty for f32 storage.
    pub vals16: Vec<u16>,
}

impl Csr {
    /// Keeps the non-zero entries of a row-major dense matrix.
    pub fn from_dense(w: &[f32], rows: usize, cols: usize) -> Csr {
        assert_eq!(w.len(), rows * cols);
        let mut row_ptr = Vec::with_capacity(rows + 1);
        let mut idx = Vec::new();
        let mut vals = Vec::new();
        row_ptr.push(0u32);
        for r in 0..rows {
            for (c, &v) in w[r * cols..(r + 1) * cols].iter().enumerate() {
                if v != 0.0 {
                    idx.push(c as u32);
                    vals.push(v);
                }
            }
            row_ptr.push(vals.len() as u32);
        }
        let col_idx = if cols <= 1 << 16 {
            Indices::U16(idx.iter().map(|&c| c as u16).collect())
        } else {
            Indices::U32(idx)
        };
        Csr {
            rows,
            cols,
            row_ptr,
            col_idx,
            vals,
            vals16: Vec::new(),
        }
    }

    /// The same matrix with bf16 values: 4 bytes per non-zero instead of 6.
    pub fn into_bf16(mut self) -> Csr {
        self.vals16 = self.vals.iter().map(|&v| super::f32_to_bf16(v)).collect();
        self.vals = Vec::new();
        self
    }

    /// Value of non-zero `p` as f32.
    pub fn value(&self, p: usize) -> f32 {
        if self.vals16.is_empty() {
            self.vals[p]
        } else {
            super::bf16_to_f32(self.vals16[p])
        }
    }

    /// Values `s..e` as f32 (borrowed for f32 storage, widened into `buf` for bf16).
    fn values<'a>(&'a self, s: usize, e: usize, buf: &'a mut Vec<f32>) -> &'a [f32] {
        if self.vals16.is_empty() {
            &self.vals[s..e]
        } else {
            buf.clear();
            buf.extend(self.vals16[s..e].iter().map(|&v| super::bf16_to_f32(v)));
            buf
        }
    }

    pub fn nnz(&self) -> usize {
        self.col_idx.len()
    }

    /// Bytes read by one product: values, indices and row pointers.
    pub fn bytes(&self) -> usize {
        self.vals.len() * 4
            + self.vals16.len() * 2
            + self.col_idx.len() * self.col_idx.bytes_per_index()
            + self.row_ptr.len() * 4
    }

    /// Adds `W[r, :] · x[b, :]` to `y[b * ldy + r]` for `r` in `rows`, `b < nb`, with the
    /// few-batch kernel in this CPU's faster [`GatherMode`] at `level`.
    ///
    /// # Safety
    /// As `dense_acc`: `y` valid for the touched elements, no concurrent access to them.
    pub(crate) unsafe fn acc(&self, level: Isa, o: Operands<'_>, rows: Range<usize>) {
        let mode = if o.nb < TRANSPOSE_FROM {
            gather_mode(level)
        } else {
            GatherMode::Vector
        };
        // SAFETY: forwarded contract.
        unsafe { self.acc_mode(level, mode, o, rows) }
    }

    /// [`Csr::acc`] with the few-batch kernel's gather mode chosen by the caller (tests run both).
    ///
    /// # Safety
    /// As [`Csr::acc`].
    pub(crate) unsafe fn acc_mode(
        &self,
        level: Isa,
        mode: GatherMode,
        o: Operands<'_>,
        rows: Range<usize>,
    ) {
        let Operands { nb, .. } = o;
        if nb >= TRANSPOSE_FROM {
            // SAFETY: forwarded contract.
            unsafe { self.acc_transposed(level, o, rows) };
            return;
        }
        let (rp, f32v) = (&self.row_ptr, self.vals16.is_empty());
        let r = &rows;
        // SAFETY (every arm): forwarded contract; row_ptr bounds each row's non-zeros.
        let done = unsafe {
            match (&self.col_idx, f32v) {
                (Indices::U16(c), true) => {
                    simd::run(level, Gather::new(rp, c, &self.vals, o, r, mode)).is_ok()
                }
                (Indices::U32(c), true) => {
                    simd::run(level, Gather::new(rp, c, &self.vals, o, r, mode)).is_ok()
                }
                (Indices::U16(c), false) => {
                    simd::run(level, Gather::new(rp, c, &self.vals16, o, r, mode)).is_ok()
                }
                (Indices::U32(c), false) => {
                    simd::run(level, Gather::new(rp, c, &self.vals16, o, r, mode)).is_ok()
                }
            }
        };
        if !done {
            // SAFETY: forwarded contract.
            unsafe { self.acc_scalar(o, rows) }
        }
    }

    unsafe fn acc_scalar(&self, o: Operands<'_>, rows: Range<usize>) {
        let Operands { x, ldx, nb, y, ldy } = o;
        for r in rows {
            let (s, e) = (self.row_ptr[r] as usize, self.row_ptr[r + 1] as usize);
            for b in 0..nb {
                let xb = &x[b * ldx..];
                let mut acc = 0f32;
                for p in s..e {
                    acc += self.value(p) * xb[self.col_idx.get(p)];
                }
                // SAFETY: caller contract.
                unsafe { *y.add(b * ldy + r) += acc };
            }
        }
    }

    /// The wide-batch kernel: x transposed to (K, B') in a per-thread scratch buffer, B' = B
    /// rounded up to [`XT_ALIGN`] so every row of x^T is whole vectors (no masked loads at AVX2
    /// or NEON) and one pass over a row's non-zeros covers up to six vectors of the batch (48
    /// lanes at AVX2, 96 at AVX-512, 24 at NEON).
    unsafe fn acc_transposed(&self, level: Isa, o: Operands<'_>, rows: Range<usize>) {
        let Operands { x, ldx, nb, y, ldy } = o;
        thread_local! {
            static SCRATCH: RefCell<(Vec<f32>, Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
        }
        // Rows are computed in tiles of TILE: a tile's results (TILE, B) are added to y batch row
        // by batch row, TILE contiguous values at a time, instead of B scattered writes per row.
        const TILE: usize = 16;
        let ld = nb.next_multiple_of(XT_ALIGN);
        SCRATCH.with(|s| {
            let (xt, tile, vbuf) = &mut *s.borrow_mut();
            let k = self.cols;
            xt.clear();
            xt.resize(k * ld, 0.0);
            // Transposed in column tiles so the writes stay inside a (TILE, B) block of xt.
            for c0 in (0..k).step_by(TILE) {
                let c1 = (c0 + TILE).min(k);
                for b in 0..nb {
                    for (c, &v) in x[b * ldx + c0..b * ldx + c1].iter().enumerate() {
                        xt[(c0 + c) * ld + b] = v;
                    }
                }
            }
            tile.clear();
            tile.resize(TILE * ld, 0.0);
            for r0 in rows.clone().step_by(TILE) {
                let r1 = (r0 + TILE).min(rows.end);
                for r in r0..r1 {
                    let yr = &mut tile[(r - r0) * ld..(r - r0 + 1) * ld];
                    let (s, e) = (self.row_ptr[r] as usize, self.row_ptr[r + 1] as usize);
                    let vals = self.values(s, e, vbuf);
                    // SAFETY: indices < K, so every xt row read is in bounds.
                    let done = unsafe {
                        match &self.col_idx {
                            Indices::U16(ci) => {
                                simd::run(level, AxpyRows::new(vals, &ci[s..e], xt, ld, yr)).is_ok()
                            }
                            Indices::U32(ci) => {
                                simd::run(level, AxpyRows::new(vals, &ci[s..e], xt, ld, yr)).is_ok()
                            }
                        }
                    };
                    if !done {
                        yr.iter_mut().for_each(|v| *v = 0.0);
                        match &self.col_idx {
                            Indices::U16(ci) => axpy_rows(vals, &ci[s..e], xt, ld, yr),
                            Indices::U32(ci) => axpy_rows(vals, &ci[s..e], xt, ld, yr),
                        }
                    }
                }
                for b in 0..nb {
                    for r in r0..r1 {
                        // SAFETY: caller contract.
                        unsafe { *y.add(b * ldy + r) += tile[(r - r0) * ld + b] };
                    }
                }
            }
        });
    }
}

/// Row stride of the transposed x, in floats: a whole number of AVX2 vectors (two NEON ones;
/// AVX-512 masks its last vector, which costs it nothing).
const XT_ALIGN: usize = 8;

/// `yr += Σ_p vals[p] · xt[idx[p], :]`: the compiler vectorizes the B-wide inner loop.
#[inline(always)]
fn axpy_rows<I: Copy + Into<u32>>(vals: &[f32], idx: &[I], xt: &[f32], nb: usize, yr: &mut [f32]) {
    let yr = &mut yr[..nb];
    for (&v, &c) in vals.iter().zip(idx) {
        let c = c.into() as usize;
        let xr = &xt[c * nb..c * nb + nb];
        for (y, &xv) in yr.iter_mut().zip(xr) {
            *y = v.mul_add(xv, *y);
        }
    }
}

/// The few-batch kernel, written once over the lane width: each row's non-zeros `LANES` at a
/// time, their x values gathered per batch row (the values and indices stream once).
struct Gather<'a, I, V> {
    row_ptr: &'a [u32],
    idx: &'a [I],
    vals: &'a [V],
    o: Operands<'a>,
    rows: Range<usize>,
    mode: GatherMode,
}

impl<'a, I, V> Gather<'a, I, V> {
    fn new(
        row_ptr: &'a [u32],
        idx: &'a [I],
        vals: &'a [V],
        o: Operands<'a>,
        rows: &Range<usize>,
        mode: GatherMode,
    ) -> Self {
        let rows = rows.clone();
        Gather {
            row_ptr,
            idx,
            vals,
            o,
            rows,
            mode,
        }
    }
}

impl<I: Index, V: Weight> Kernel for Gather<'_, I, V> {
    type Out = ();

    #[inline(always)]
    unsafe fn run<S: Simd>(self) {
        let Gather {
            row_ptr,
            idx,
            vals,
            o,
            rows,
            mode,
        } = self;
        let Operands { x, ldx, nb, y, ldy } = o;
        let (vp, ip, xp) = (vals.as_ptr(), idx.as_ptr(), x.as_ptr());
        for r in rows {
            let s = row_ptr[r] as usize;
            let n = row_ptr[r + 1] as usize - s;
            // SAFETY: row_ptr bounds the row's non-zeros; forwarded contract for x and y.
            unsafe {
                let (v, i, yr) = (vp.add(s), ip.add(s), y.add(r));
                match mode {
                    GatherMode::Scalar => by_width::<Scalar, I, V>(v, i, n, xp, ldx, nb, yr, ldy),
                    GatherMode::Vector => {
                        by_width::<Gathered<S>, I, V>(v, i, n, xp, ldx, nb, yr, ldy)
                    }
                }
            }
        }
    }
}

/// One row of the few-batch product at `NB` ≤ 4 batch rows, in one [`GatherMode`].
trait RowKernel<I, V> {
    unsafe fn row<const NB: usize>(
        vals: *const V,
        idx: *const I,
        n: usize,
        x: *const f32,
        ldx: usize,
        y: *mut f32,
        ldy: usize,
    );
}

/// [`GatherMode::Vector`]: [`gather_row`].
struct Gathered<S>(std::marker::PhantomData<S>);

/// [`GatherMode::Scalar`]: [`scalar_row`].
struct Scalar;

impl<S: Simd, I: Index, V: Weight> RowKernel<I, V> for Gathered<S> {
    #[inline(always)]
    unsafe fn row<const NB: usize>(
        vals: *const V,
        idx: *const I,
        n: usize,
        x: *const f32,
        ldx: usize,
        y: *mut f32,
        ldy: usize,
    ) {
        // SAFETY: forwarded contract.
        unsafe { gather_row::<S, I, V, NB>(vals, idx, n, x, ldx, y, ldy) }
    }
}

impl<I: Index, V: Weight> RowKernel<I, V> for Scalar {
    #[inline(always)]
    unsafe fn row<const NB: usize>(
        vals: *const V,
        idx: *const I,
        n: usize,
        x: *const f32,
        ldx: usize,
        y: *mut f32,
        ldy: usize,
    ) {
        // SAFETY (every arm): forwarded contract; NB is 1..=4 (`by_width`).
        unsafe {
            match NB {
                1 => scalar_row::<I, V, 1, 8>(vals, idx, n, x, ldx, y, ldy),
                2 => scalar_row::<I, V, 2, 4>(vals, idx, n, x, ldx, y, ldy),
                3 => scalar_row::<I, V, 3, 2>(vals, idx, n, x, ldx, y, ldy),
                _ => scalar_row::<I, V, 4, 2>(vals, idx, n, x, ldx, y, ldy),
            }
        }
    }
}

/// One row at `nb` < 8 batch rows: 1–4 in one call, 5–7 as a block of four, then the rest one at
/// a time.
///
/// # Safety
/// As [`gather_row`] for `nb` batch rows.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn by_width<K: RowKernel<I, V>, I, V>(
    v: *const V,
    i: *const I,
    n: usize,
    xp: *const f32,
    ldx: usize,
    nb: usize,
    yr: *mut f32,
    ldy: usize,
) {
    // SAFETY (every arm): forwarded contract; batch row b starts at b·ldx in x and b·ldy in y.
    unsafe {
        match nb {
            1 => K::row::<1>(v, i, n, xp, ldx, yr, ldy),
            2 => K::row::<2>(v, i, n, xp, ldx, yr, ldy),
            3 => K::row::<3>(v, i, n, xp, ldx, yr, ldy),
            _ => {
                K::row::<4>(v, i, n, xp, ldx, yr, ldy);
                for b in 4..nb {
                    let (xb, yb) = (xp.add(b * ldx), yr.add(b * ldy));
                    K::row::<1>(v, i, n, xb, ldx, yb, ldy);
                }
            }
        }
    }
}

#[inline(always)]
unsafe fn gather_row<S: Simd, I: Index, V: Weight, const NB: usize>(
    vals: *const V,
    idx: *const I,
    n: usize,
    x: *const f32,
    ldx: usize,
    y: *mut f32,
    ldy: usize,
) {
    // SAFETY (whole body): indices < K and x holds NB rows of K (caller); lanes past n are
    // neither loaded nor gathered.
    unsafe {
        let mut acc = [S::zero(); NB];
        let mut p = 0;
        while p < n {
            let lanes = (n - p).min(S::LANES);
            let iv = I::load::<S>(idx.add(p), lanes);
            let vv = if lanes == S::LANES {
                V::load::<S>(vals.add(p))
            } else {
                V::load_part::<S>(vals.add(p), lanes)
            };
            for (b, a) in acc.iter_mut().enumerate() {
                let xg = S::gather(x.add(b * ldx), iv, lanes);
                *a = S::fma(vv, xg, *a);
            }
            p += S::LANES;
        }
        for (b, a) in acc.iter().enumerate() {
            *y.add(b * ldy) += S::sum(*a);
        }
    }
}

/// [`gather_row`] with scalar loads of x, in `U` independent chains per batch row (eight at
/// NB = 1, four at 2, two from 3 on: the batch rows add chains of their own).
#[inline(always)]
unsafe fn scalar_row<I: Index, V: Weight, const NB: usize, const U: usize>(
    vals: *const V,
    idx: *const I,
    n: usize,
    x: *const f32,
    ldx: usize,
    y: *mut f32,
    ldy: usize,
) {
    // SAFETY (whole body): p < n for every read; indices < K and x holds NB rows of K (caller).
    unsafe {
        let mut acc = [[0f32; U]; NB];
        let mut p = 0;
        while p + U <= n {
            for u in 0..U {
                let c = (*idx.add(p + u)).into() as usize;
                let v = (*vals.add(p + u)).to_f32();
                for (b, a) in acc.iter_mut().enumerate() {
                    a[u] = v.mul_add(*x.add(b * ldx + c), a[u]);
                }
            }
            p += U;
        }
        while p < n {
            let c = (*idx.add(p)).into() as usize;
            let v = (*vals.add(p)).to_f32();
            for (b, a) in acc.iter_mut().enumerate() {
                a[0] = v.mul_add(*x.add(b * ldx + c), a[0]);
            }
            p += 1;
        }
        for (b, a) in acc.iter().enumerate() {
            *y.add(b * ldy) += a.iter().sum::<f32>();
        }
    }
}

/// `yr = Σ_p vals[p] · xt[idx[p], :]` (overwrites `yr`), written once over the lane width: the
/// B-wide rows of x^T are accumulated in up to six vectors at a time, in two sets (even and odd
/// non-zeros) so the FMA latency chain is halved.
struct AxpyRows<'a, I> {
    vals: &'a [f32],
    idx: &'a [I],
    xt: &'a [f32],
    nb: usize,
    yr: &'a mut [f32],
}

impl<'a, I> AxpyRows<'a, I> {
    fn new(vals: &'a [f32], idx: &'a [I], xt: &'a [f32], nb: usize, yr: &'a mut [f32]) -> Self {
        AxpyRows {
            vals,
            idx,
            xt,
            nb,
            yr,
        }
    }
}

impl<I: Copy + Into<u32>> Kernel for AxpyRows<'_, I> {
    type Out = ();

    #[inline(always)]
    unsafe fn run<S: Simd>(self) {
        let AxpyRows {
            vals,
            idx,
            xt,
            nb,
            yr,
        } = self;
        let mut c0 = 0;
        while c0 < nb {
            // Two sets of up to six accumulators: 12 registers, within AVX2's 16.
            let w = (nb - c0).min(6 * S::LANES);
            // SAFETY: the chunk [c0, c0 + w) is inside every xt row and yr; idx < K rows of xt.
            unsafe {
                match w.div_ceil(S::LANES) {
                    1 => axpy_chunk::<S, I, 1>(vals, idx, xt, nb, c0, w, yr),
                    2 => axpy_chunk::<S, I, 2>(vals, idx, xt, nb, c0, w, yr),
                    3 => axpy_chunk::<S, I, 3>(vals, idx, xt, nb, c0, w, yr),
                    4 => axpy_chunk::<S, I, 4>(vals, idx, xt, nb, c0, w, yr),
                    5 => axpy_chunk::<S, I, 5>(vals, idx, xt, nb, c0, w, yr),
                    _ => axpy_chunk::<S, I, 6>(vals, idx, xt, nb, c0, w, yr),
                }
            }
            c0 += w;
        }
    }
}

/// Loads vector `v` of a `w`-wide chunk starting at `p` (partial for the chunk's last vector).
#[inline(always)]
unsafe fn chunk_load<S: Simd>(p: *const f32, v: usize, w: usize) -> S::V {
    let n = (w - v * S::LANES).min(S::LANES);
    // SAFETY: the caller's chunk holds w values from p.
    unsafe {
        if n == S::LANES {
            S::load(p.add(v * S::LANES))
        } else {
            S::load_part(p.add(v * S::LANES), n)
        }
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn axpy_chunk<S: Simd, I: Copy + Into<u32>, const V: usize>(
    vals: &[f32],
    idx: &[I],
    xt: &[f32],
    nb: usize,
    c0: usize,
    w: usize,
    yr: &mut [f32],
) {
    // SAFETY (whole body): xt has K rows of nb; idx < K; loads and stores stay inside the chunk.
    unsafe {
        let mut acc = [[S::zero(); V]; 2];
        let xp = xt.as_ptr();
        let n = vals.len();
        let mut p = 0;
        while p + 2 <= n {
            for (u, acc_u) in acc.iter_mut().enumerate() {
                let vv = S::splat(vals[p + u]);
                let row = xp.add(idx[p + u].into() as usize * nb + c0);
                for (k, a) in acc_u.iter_mut().enumerate() {
                    *a = S::fma(vv, chunk_load::<S>(row, k, w), *a);
                }
            }
            p += 2;
        }
        if p < n {
            let vv = S::splat(vals[p]);
            let row = xp.add(idx[p].into() as usize * nb + c0);
            for (k, a) in acc[0].iter_mut().enumerate() {
                *a = S::fma(vv, chunk_load::<S>(row, k, w), *a);
            }
        }
        let out = yr.as_mut_ptr().add(c0);
        let [even, odd] = acc;
        for (k, (e, o)) in even.iter().zip(&odd).enumerate() {
            let sum = S::add(*e, *o);
            let n = (w - k * S::LANES).min(S::LANES);
            if n == S::LANES {
                S::store(out.add(k * S::LANES), sum);
            } else {
                S::store_part(out.add(k * S::LANES), n, sum);
            }
        }
    }
}
