//! Few-row products `c (m x n) = alpha * a (m x k) * B + beta * c` against a `B (k x n)` that is
//! reused across many calls: the per-step recurrent products of LSTM training (m = batch = 20,
//! B = W_hh or its transpose, 1.7–36 MB, used by all 35 steps of a batch).
//!
//! Why not the `gemm` crate: at these shapes it reaches 35–70 GFLOP/s on two cores against
//! 170–190 for large products (`symbiont peak`, rows `recurrent_*`): its blocking is made for
//! large m and it re-reads B with the weight's row stride. Here B is packed once into 32-column
//! strips stored contiguously (`[strip][k][32]`, zero-padded), so each call streams it front to
//! back; a block of rows of `a` keeps its accumulators in registers for the whole k loop (12
//! rows x 2 vectors at AVX-512, 6 x 2 at AVX2, 6 x 4 at NEON; `crate::simd`). At the `portable`
//! level each strip goes through the `gemm` crate instead. Reading B in place (row stride
//! 2.6–24 KB; a removed first version of this kernel) measured 25–69 GFLOP/s: every k step
//! touches a new page. Columns are split between threads in whole strips.

use crate::gemm::fits;
use crate::isa::{self, Isa};
use crate::simd::{self, Kernel, Simd};
use crate::Real;
use rayon::prelude::*;
use std::any::TypeId;

/// Most rows of `a` per register block: 12 x 2 accumulators + 2 B vectors + 1 broadcast fit in
/// the 32 AVX-512 registers (AVX2's 16 registers take 6 rows: [`Simd::ACC_REGS`]).
const MAX_ROWS: usize = 12;
/// Columns of a strip (two AVX-512 vectors of f32, four AVX2 ones).
pub const STRIP: usize = 32;
/// Products smaller than this many multiply-adds stay on the calling thread.
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// B (k x n) packed in 32-column strips, each `k x 32` contiguous, columns past n zero; the
/// buffer starts on a cache line, so each strip row (two AVX-512 vectors of f32) is two whole
/// lines rather than three partial ones.
#[derive(Clone, Debug)]
pub struct PackedB<F> {
    k: usize,
    n: usize,
    data: crate::packed::Lines<F>,
}

impl<F> Default for PackedB<F> {
    fn default() -> Self {
        Self {
            k: 0,
            n: 0,
            data: crate::packed::Lines::new(crate::packed::ALIGN),
        }
    }
}

impl<F: Real> PackedB<F> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rows (the product's inner dimension).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Sizes the buffer for a k x n B and fills each strip in parallel: `fill(j0, w, strip)`
    /// writes the strip of columns `j0..j0 + w` (w ≤ 32; lanes past w must be zero).
    fn fill_strips(&mut self, k: usize, n: usize, fill: impl Fn(usize, usize, &mut [F]) + Sync) {
        self.k = k;
        self.n = n;
        self.data.resize(n.div_ceil(STRIP) * STRIP * k, F::ZERO);
        self.data
            .par_chunks_mut((k * STRIP).max(1))
            .enumerate()
            .for_each(|(s, strip)| {
                let j0 = s * STRIP;
                fill(j0, (n - j0).min(STRIP), strip)
            });
    }

    /// Packs B = `b` (k x n, row length `ldb`).
    ///
    /// # Panics
    /// If `b` is shorter than its shape needs.
    pub fn pack(&mut self, b: &[F], ldb: usize, k: usize, n: usize) {
        assert!(
            ldb >= n && (k == 0 || n == 0 || b.len() >= (k - 1) * ldb + n),
            "PackedB::pack: b is not {k}x{n} with row length {ldb}"
        );
        self.fill_strips(k, n, |j0, w, strip| {
            for (kk, dst) in strip.chunks_exact_mut(STRIP).enumerate() {
                dst[..w].copy_from_slice(&b[kk * ldb + j0..kk * ldb + j0 + w]);
                dst[w..].fill(F::ZERO);
            }
        });
    }

    /// Packs B = `bt`ᵀ, where `bt` is n x k (row length `ldbt`): e.g. W_hh (4H x H) for the
    /// forward product h W_hhᵀ.
    ///
    /// # Panics
    /// If `bt` is shorter than its shape needs.
    pub fn pack_transposed(&mut self, bt: &[F], ldbt: usize, k: usize, n: usize) {
        assert!(
            ldbt >= k && (k == 0 || n == 0 || bt.len() >= (n - 1) * ldbt + k),
            "PackedB::pack_transposed: bt is not {n}x{k} with row length {ldbt}"
        );
        self.fill_strips(k, n, |j0, w, strip| {
            // Blocks of 64 k so the strip's destination rows stay in L1 while 32 source rows
            // are read across them.
            for k0 in (0..k).step_by(64) {
                let k1 = (k0 + 64).min(k);
                for jj in 0..STRIP {
                    if jj < w {
                        let src = &bt[(j0 + jj) * ldbt..(j0 + jj) * ldbt + k];
                        for kk in k0..k1 {
                            strip[kk * STRIP + jj] = src[kk];
                        }
                    } else {
                        for kk in k0..k1 {
                            strip[kk * STRIP + jj] = F::ZERO;
                        }
                    }
                }
            }
        });
    }
}

/// `c = alpha * a * B + beta * c` for row-major `a (m x k)` and `c (m x n)` with row lengths
/// `lda`, `ldc`, and the packed `b`, at the process's ISA level ([`isa::active`]). With
/// `beta == 0` the old contents of `c` are ignored (NaN included).
///
/// # Panics
/// If a slice is shorter than its shape needs (a programming error, not user input).
#[allow(clippy::too_many_arguments)]
pub fn matmul_packed<F: Real>(
    m: usize,
    alpha: F,
    a: &[F],
    lda: usize,
    b: &PackedB<F>,
    beta: F,
    c: &mut [F],
    ldc: usize,
) {
    matmul_packed_at(isa::active(), m, alpha, a, lda, b, beta, c, ldc)
}

/// [`matmul_packed`] at an explicit level: the register-blocked kernel for f32 at the SIMD
/// levels, one `gemm`-crate call per strip at `portable`, and a plain loop for f64 (gradient
/// checks).
///
/// # Panics
/// As [`matmul_packed`], and if this CPU lacks `level`.
#[allow(clippy::too_many_arguments)]
pub fn matmul_packed_at<F: Real>(
    level: Isa,
    m: usize,
    alpha: F,
    a: &[F],
    lda: usize,
    b: &PackedB<F>,
    beta: F,
    c: &mut [F],
    ldc: usize,
) {
    let (n, k) = (b.n, b.k);
    assert!(fits(a.len(), m, k, lda), "matmul_packed: a is not {m}x{k}");
    assert!(fits(c.len(), m, n, ldc), "matmul_packed: c is not {m}x{n}");
    assert!(level.supported(), "ISA level {level} is not supported here");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // An empty sum: c = beta * c (zeros when beta = 0, whatever c held).
        for row in c.chunks_mut(ldc).take(m) {
            for v in &mut row[..n] {
                *v = if beta == F::ZERO { F::ZERO } else { beta * *v };
            }
        }
        return;
    }
    if TypeId::of::<F>() != TypeId::of::<f32>() {
        portable(m, alpha, a, lda, b, beta, c, ldc);
        return;
    }
    let as_f32 = |x: F| x.to_f64() as f32;
    let op = Operands {
        m,
        n,
        k,
        alpha: as_f32(alpha),
        a: a.as_ptr().cast::<f32>(),
        lda,
        b: b.data.as_ptr().cast::<f32>(),
        beta: as_f32(beta),
        c: c.as_mut_ptr().cast::<f32>(),
        ldc,
    };
    // SAFETY: F is f32 (checked through TypeId), so the casts keep the layouts; the shapes
    // were checked above (k, m, n > 0) and the packed strips cover n.div_ceil(32) * 32
    // columns of k rows; `c` is borrowed mutably for the call.
    unsafe { run_split(level, &op) };
}

/// The plain loop over the packed strips (f64 gradient checks; the test oracle's companion).
#[allow(clippy::too_many_arguments)]
fn portable<F: Real>(
    m: usize,
    alpha: F,
    a: &[F],
    lda: usize,
    b: &PackedB<F>,
    beta: F,
    c: &mut [F],
    ldc: usize,
) {
    let (n, k) = (b.n, b.k);
    for (s, strip) in b.data.chunks_exact((k * STRIP).max(1)).enumerate() {
        let j0 = s * STRIP;
        let w = (n - j0).min(STRIP);
        for i in 0..m {
            let mut acc = [F::ZERO; STRIP];
            for kk in 0..k {
                let x = a[i * lda + kk];
                for (acc, &bv) in acc.iter_mut().zip(&strip[kk * STRIP..(kk + 1) * STRIP]) {
                    *acc += x * bv;
                }
            }
            for (jj, &v) in acc[..w].iter().enumerate() {
                let dst = &mut c[i * ldc + j0 + jj];
                *dst = if beta == F::ZERO {
                    alpha * v
                } else {
                    alpha * v + beta * *dst
                };
            }
        }
    }
}

/// The raw operands of one product (checked by [`matmul_packed_at`]).
#[derive(Clone, Copy)]
struct Operands {
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: *const f32,
    lda: usize,
    /// The packed strips.
    b: *const f32,
    beta: f32,
    c: *mut f32,
    ldc: usize,
}
// SAFETY: the threads of `run_split` write disjoint column strips of `c` and only read `a`, `b`.
unsafe impl Send for Operands {}
unsafe impl Sync for Operands {}

/// Splits the strips into one run per thread (when worth it) and runs them.
///
/// # Safety
/// `op` must describe valid operands with m, n, k > 0 (as checked by [`matmul_packed_at`]),
/// nothing else may access `c` during the call, and the CPU supports `level`.
unsafe fn run_split(level: Isa, op: &Operands) {
    let strips = op.n.div_ceil(STRIP);
    let threads = rayon::current_num_threads().min(strips);
    if threads <= 1 || op.m * op.n * op.k < PARALLEL_MIN_MACS {
        // SAFETY: the bounds were checked by the caller for the whole column range.
        unsafe { strips_at(level, op, 0, strips) };
        return;
    }
    let per = strips.div_ceil(threads);
    rayon::scope(|s| {
        for t in 1..threads {
            let (s0, s1) = ((t * per).min(strips), ((t + 1) * per).min(strips));
            if s0 < s1 {
                // SAFETY: as above; each task owns the columns of strips [s0, s1).
                s.spawn(move |_| unsafe { strips_at(level, op, s0, s1) });
            }
        }
        // SAFETY: as above; the calling thread owns the first run.
        unsafe { strips_at(level, op, 0, per.min(strips)) };
    });
}

/// Strips `[s0, s1)` at `level`: the register-blocked kernel, or at `portable` one
/// single-threaded `gemm`-crate call per strip (a `k x 32` matrix with row stride 32).
///
/// # Safety
/// As [`run_split`]; no other thread writes these columns.
unsafe fn strips_at(level: Isa, op: &Operands, s0: usize, s1: usize) {
    // SAFETY: forwarded contract.
    if let Err(kernel) = unsafe { simd::run(level, Strips { op, s0, s1 }) } {
        let Strips { op, s0, s1 } = kernel;
        for s in s0..s1 {
            let j = s * STRIP;
            // SAFETY: strip s holds k rows of 32 values; columns j..j + w of c are this call's.
            unsafe {
                crate::gemm::gemm_raw(
                    op.m,
                    (op.n - j).min(STRIP),
                    op.k,
                    op.c.add(j),
                    op.ldc,
                    op.a,
                    (op.lda as isize, 1),
                    op.b.add(s * op.k * STRIP),
                    (STRIP as isize, 1),
                    op.alpha,
                    op.beta,
                    false,
                )
            };
        }
    }
}

/// Strips `[s0, s1)` of the product, written once over the lane width: each strip in column
/// chunks of `CV` vectors (the whole 32-column strip as two vectors at 16 lanes or four at 8),
/// each chunk in balanced blocks of rows whose CV x rows accumulators fit the level's registers.
struct Strips<'a> {
    op: &'a Operands,
    s0: usize,
    s1: usize,
}

impl Kernel for Strips<'_> {
    type Out = ();

    #[inline(always)]
    unsafe fn run<S: Simd>(self) {
        // Two vectors x 12 rows at 16 lanes, two x 6 at 8 (against four x 3 at 8 lanes: 132-150
        // vs 113-130 GFLOP/s on two cores, the chunk's 16 columns of B stay in L1; `few_rows`
        // example, docs/benchmarks.md "ISA levels"); four x 6 at NEON's 4 lanes (fewer loads per
        // FMA; not measured on hardware).
        // SAFETY: forwarded contract.
        unsafe {
            if S::LANES >= 8 {
                strips::<S, 2>(self)
            } else {
                strips::<S, 4>(self)
            }
        }
    }
}

/// The strips in chunks of `CV` vectors of columns.
#[inline(always)]
unsafe fn strips<S: Simd, const CV: usize>(k: Strips<'_>) {
    let Strips { op, s0, s1 } = k;
    let max_rows = (S::ACC_REGS / CV).min(MAX_ROWS);
    // Balanced row blocks: 20 rows run as 10 + 10, not 12 + 8.
    let blocks = op.m.div_ceil(max_rows);
    let chunk = CV * S::LANES;
    for s in s0..s1 {
        let j0 = s * STRIP;
        let width = (op.n - j0).min(STRIP);
        for c0 in (0..width).step_by(chunk) {
            // SAFETY: strip s starts at s * k * 32 and holds k rows of 32 values.
            let b = unsafe { op.b.add(s * op.k * STRIP + c0) };
            let cols = (width - c0).min(chunk);
            let mut r0 = 0;
            for blk in 0..blocks {
                let rows = (op.m - r0).div_ceil(blocks - blk);
                // SAFETY: rows r0..r0 + rows of a and c, columns j0 + c0 .. + cols of c.
                unsafe { block_dispatch::<S, CV>(op, b, r0, rows, j0 + c0, cols) };
                r0 += rows;
            }
        }
    }
}

#[inline(always)]
unsafe fn block_dispatch<S: Simd, const CV: usize>(
    op: &Operands,
    b: *const f32,
    r0: usize,
    rows: usize,
    j: usize,
    cols: usize,
) {
    macro_rules! dispatch {
        ($($n:literal)*) => {
            match rows {
                // SAFETY: forwarded contract.
                $($n => unsafe { block::<S, CV, $n>(op, b, r0, j, cols) },)*
                _ => unreachable!("row blocks hold 1..=12 rows"),
            }
        };
    }
    dispatch!(1 2 3 4 5 6 7 8 9 10 11 12);
}

/// The register block: R rows x CV vectors of columns accumulate over the whole k loop,
/// streaming the chunk of the strip `b` (k rows, 32 apart) once; `cols` ≤ CV lanes of them are
/// stored (the strip's zero padding is computed but never written).
#[inline(always)]
unsafe fn block<S: Simd, const CV: usize, const R: usize>(
    op: &Operands,
    mut b: *const f32,
    r0: usize,
    j: usize,
    cols: usize,
) {
    const { assert!(R <= MAX_ROWS) };
    // SAFETY (whole body): a holds rows r0..r0 + R of k; the strip holds k rows of 32 values
    // from its start, and the chunk's CV vectors lie inside them; c's stores are limited to
    // `cols` columns from j.
    unsafe {
        let mut acc = [[S::zero(); CV]; R];
        let a = op.a.add(r0 * op.lda);
        for kk in 0..op.k {
            let mut bv = [S::zero(); CV];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = S::load(b.add(v * S::LANES));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = S::splat(*a.add(r * op.lda + kk));
                for v in 0..CV {
                    acc[v] = S::fma(x, bv[v], acc[v]);
                }
            }
            b = b.add(STRIP);
        }
        let alpha = S::splat(op.alpha);
        let beta = S::splat(op.beta);
        for (r, acc) in acc.iter().enumerate() {
            let c = op.c.add((r0 + r) * op.ldc + j);
            for (h, &v) in acc.iter().enumerate() {
                let n = cols.saturating_sub(h * S::LANES).min(S::LANES);
                if n == 0 {
                    break;
                }
                let p = c.add(h * S::LANES);
                let mut out = S::mul(alpha, v);
                if n == S::LANES {
                    if op.beta != 0.0 {
                        out = S::fma(beta, S::load(p), out);
                    }
                    S::store(p, out);
                } else {
                    if op.beta != 0.0 {
                        out = S::fma(beta, S::load_part(p, n), out);
                    }
                    S::store_part(p, n, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::matmul_reference;
    use crate::rng::CounterRng;
    use crate::Trans;
    use proptest::prelude::*;

    fn random(len: usize, seed: u64) -> Vec<f32> {
        let rng = CounterRng::new(seed);
        (0..len)
            .map(|i| rng.uniform(0, i as u64) * 2.0 - 1.0)
            .collect()
    }

    /// `a`, `b`, `c` stored with padded rows (ld = width + pad) to exercise the strides.
    #[allow(clippy::too_many_arguments)]
    fn check(
        m: usize,
        n: usize,
        k: usize,
        pad: usize,
        alpha: f32,
        beta: f32,
        transposed: bool,
        seed: u64,
    ) {
        let (lda, ldb, ldc) = (k + pad, n + pad, n + pad);
        let a = random(m * lda, seed);
        let b = random(k * ldb, seed + 1);
        let c0 = random(m * ldc, seed + 2);
        let mut fast = c0.clone();
        if beta == 0.0 {
            // The old contents must be ignored, NaN included.
            for i in 0..m {
                fast[i * ldc..i * ldc + n].fill(f32::NAN);
            }
        }
        let mut packed = PackedB::new();
        if transposed {
            // Store b transposed (n x ldbt) and pack from that.
            let ldbt = k + pad;
            let mut bt = random(n * ldbt, seed + 3);
            for kk in 0..k {
                for jj in 0..n {
                    bt[jj * ldbt + kk] = b[kk * ldb + jj];
                }
            }
            packed.pack_transposed(&bt, ldbt, k, n);
        } else {
            packed.pack(&b, ldb, k, n);
        }
        assert_eq!((packed.k(), packed.n()), (k, n));
        for level in isa::supported() {
            let mut got = fast.clone();
            matmul_packed_at(level, m, alpha, &a, lda, &packed, beta, &mut got, ldc);
            compare(
                level,
                &got,
                &c0,
                &a,
                &b,
                m,
                n,
                k,
                (lda, ldb, ldc),
                alpha,
                beta,
            );
        }
    }

    /// `got` (the fast product over `c0`) against the reference on compact copies.
    #[allow(clippy::too_many_arguments)]
    fn compare(
        level: Isa,
        fast: &[f32],
        c0: &[f32],
        a: &[f32],
        b: &[f32],
        m: usize,
        n: usize,
        k: usize,
        (lda, ldb, ldc): (usize, usize, usize),
        alpha: f32,
        beta: f32,
    ) {
        // The reference on compact copies.
        let pick = |src: &[f32], rows: usize, cols: usize, ld: usize| -> Vec<f32> {
            (0..rows)
                .flat_map(|r| src[r * ld..r * ld + cols].to_vec())
                .collect()
        };
        let mut want = pick(c0, m, n, ldc);
        matmul_reference(
            m,
            n,
            k,
            alpha,
            &pick(a, m, k, lda),
            Trans::N,
            &pick(b, k, n, ldb),
            Trans::N,
            beta,
            &mut want,
        );
        for i in 0..m {
            for jj in 0..ldc {
                let got = fast[i * ldc + jj];
                if jj < n {
                    let w = want[i * n + jj];
                    assert!(
                        (got - w).abs() <= 1e-5 * (1.0 + w.abs()) * (k as f32).sqrt().max(1.0),
                        "{level} ({m}x{n}x{k}) [{i},{jj}]: {got} vs {w}"
                    );
                } else {
                    // Padding columns beyond n are never written.
                    assert_eq!(
                        got.to_bits(),
                        c0[i * ldc + jj].to_bits(),
                        "{level} pad [{i},{jj}]"
                    );
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        #[test]
        fn matches_reference(m in 1usize..30, n in 1usize..100, k in 0usize..60, pad in 0usize..3,
                             alpha in prop_oneof![Just(1.0f32), Just(0.5f32)],
                             beta in prop_oneof![Just(0.0f32), Just(1.0f32), Just(0.25f32)],
                             transposed in any::<bool>(), seed in 0u64..1000) {
            check(m, n, k, pad, alpha, beta, transposed, seed);
        }
    }

    #[test]
    fn training_shapes_split_across_threads_match_reference() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        // PTB-medium's per-step products (forward, then dh), and a 3-thread split with a tail.
        pool.install(|| {
            check(20, 2600, 650, 0, 1.0, 1.0, true, 1);
            check(20, 650, 2600, 0, 1.0, 0.0, false, 2);
        });
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        pool.install(|| check(13, 1000, 1100, 1, 0.5, 0.25, true, 3));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// The plain loop (f64's path) against the reference, in f32.
        #[test]
        fn portable_path_matches_reference(m in 1usize..20, n in 1usize..70, k in 1usize..40,
                                           beta in prop_oneof![Just(0.0f32), Just(0.5f32)],
                                           seed in 0u64..1000) {
            let a = random(m * k, seed);
            let b = random(k * n, seed + 1);
            let c0 = random(m * n, seed + 2);
            let mut packed = PackedB::new();
            packed.pack(&b, n, k, n);
            let mut got = c0.clone();
            portable(m, 0.5, &a, k, &packed, beta, &mut got, n);
            let mut want = c0.clone();
            matmul_reference(m, n, k, 0.5, &a, Trans::N, &b, Trans::N, beta, &mut want);
            for (x, y) in got.iter().zip(&want) {
                prop_assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
            }
        }
    }

    #[test]
    fn f64_takes_the_generic_path() {
        let (m, n, k) = (5, 7, 9);
        let a: Vec<f64> = (0..m * k).map(|i| i as f64 * 0.1).collect();
        let b: Vec<f64> = (0..k * n).map(|i| 1.0 - i as f64 * 0.01).collect();
        let mut c = vec![1.0f64; m * n];
        let mut want = c.clone();
        let mut packed = PackedB::new();
        packed.pack(&b, n, k, n);
        matmul_packed(m, 1.0, &a, k, &packed, 1.0, &mut c, n);
        matmul_reference(m, n, k, 1.0, &a, Trans::N, &b, Trans::N, 1.0, &mut want);
        for (x, y) in c.iter().zip(&want) {
            assert!((x - y).abs() < 1e-12, "{x} vs {y}");
        }
    }
}
