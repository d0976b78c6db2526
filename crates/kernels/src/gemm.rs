//! The one GEMM entry point of the engine, over the `gemm` crate (chosen over `faer` by
//! measurement at our shapes: see docs/gemm.md), plus its naive reference.

use crate::shared::{SharedConst, SharedMut};
use crate::Real;

/// Whether an operand is used as stored (row-major) or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trans {
    /// Use the matrix as stored.
    N,
    /// Use its transpose (no copy: the strides are swapped).
    T,
}

/// Products smaller than this many multiply-adds run on the calling thread: below it rayon's
/// fork/join costs more than the second core saves (the per-step recurrent product of PTB-small,
/// 20x800x200 = 3.2M, still gains from two threads).
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// Row-major `c (m x n) = alpha * op(a) * op(b) + beta * c`.
///
/// `op(a)` is `m x k`: `a` is stored `m x k` (Trans::N) or `k x m` (Trans::T); likewise `op(b)` is
/// `k x n`. With `beta == 0` the old contents of `c` are ignored (NaN included).
///
/// # Panics
/// If a slice is shorter than its shape needs (a programming error, not user input).
#[allow(clippy::too_many_arguments)]
pub fn matmul<F: Real>(
    m: usize,
    n: usize,
    k: usize,
    alpha: F,
    a: &[F],
    ta: Trans,
    b: &[F],
    tb: Trans,
    beta: F,
    c: &mut [F],
) {
    let lda = if ta == Trans::N { k } else { m };
    let ldb = if tb == Trans::N { n } else { k };
    matmul_ld(m, n, k, alpha, a, lda, ta, b, ldb, tb, beta, c, n);
}

/// Whether a buffer of `len` values holds a `rows x cols` row-major matrix with row length `ld`.
pub(crate) fn fits(len: usize, rows: usize, cols: usize, ld: usize) -> bool {
    ld >= cols && (rows == 0 || cols == 0 || len >= (rows - 1) * ld + cols)
}

/// [`matmul`] on sub-matrices: `lda`, `ldb`, `ldc` are the row lengths of the stored buffers
/// (≥ the used widths), so a block of columns of a wider matrix can be used in place.
#[allow(clippy::too_many_arguments)]
pub fn matmul_ld<F: Real>(
    m: usize,
    n: usize,
    k: usize,
    alpha: F,
    a: &[F],
    lda: usize,
    ta: Trans,
    b: &[F],
    ldb: usize,
    tb: Trans,
    beta: F,
    c: &mut [F],
    ldc: usize,
) {
    // Stored shapes (rows x cols) of the operands.
    let (a_rows, a_cols) = if ta == Trans::N { (m, k) } else { (k, m) };
    let (b_rows, b_cols) = if tb == Trans::N { (k, n) } else { (n, k) };
    assert!(
        fits(a.len(), a_rows, a_cols, lda),
        "matmul: lhs ({} values, ld {lda}) is not {a_rows}x{a_cols}",
        a.len()
    );
    assert!(
        fits(b.len(), b_rows, b_cols, ldb),
        "matmul: rhs ({} values, ld {ldb}) is not {b_rows}x{b_cols}",
        b.len()
    );
    assert!(
        fits(c.len(), m, n, ldc),
        "matmul: dst ({} values, ld {ldc}) is not {m}x{n}",
        c.len()
    );
    // (row stride, column stride) of each operand as used; the `fits` checks above are the
    // stricter ones (rows do not overlap), so the strided form's own checks pass.
    let view = |data, ld, t| match t {
        Trans::N => StridedView {
            data,
            row_stride: ld,
            col_stride: 1,
        },
        Trans::T => StridedView {
            data,
            row_stride: 1,
            col_stride: ld,
        },
    };
    matmul_strided(
        m,
        n,
        k,
        alpha,
        view(a, lda, ta),
        view(b, ldb, tb),
        beta,
        c,
        ldc,
    );
}

/// A matrix operand read through a (row, column) stride pair from a buffer. Unlike the `ld`
/// forms the rows may overlap: an implicit-GEMM convolution reads its input as a Toeplitz view in
/// which consecutive output positions are `in_c` values apart and consecutive kernel taps one.
#[derive(Clone, Copy, Debug)]
pub struct StridedView<'a, F> {
    pub data: &'a [F],
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<F> StridedView<'_, F> {
    /// Whether every element of a `rows x cols` matrix read through the strides lies inside
    /// `data`.
    fn covers(&self, rows: usize, cols: usize) -> bool {
        rows == 0
            || cols == 0
            || (rows - 1) * self.row_stride + (cols - 1) * self.col_stride < self.data.len()
    }
}

/// Row-major `c (m x n, row length ldc) = alpha * a (m x k) * b (k x n) + beta * c` with both
/// operands given as [`StridedView`]s (overlapping reads allowed). Threads as [`matmul`].
///
/// # Panics
/// If a view reaches past its buffer or `c` is shorter than its shape (programming errors).
#[allow(clippy::too_many_arguments)]
pub fn matmul_strided<F: Real>(
    m: usize,
    n: usize,
    k: usize,
    alpha: F,
    a: StridedView<'_, F>,
    b: StridedView<'_, F>,
    beta: F,
    c: &mut [F],
    ldc: usize,
) {
    assert!(
        a.covers(m, k),
        "matmul_strided: lhs view ({} values, strides {}/{}) does not hold {m}x{k}",
        a.data.len(),
        a.row_stride,
        a.col_stride
    );
    assert!(
        b.covers(k, n),
        "matmul_strided: rhs view ({} values, strides {}/{}) does not hold {k}x{n}",
        b.data.len(),
        b.row_stride,
        b.col_stride
    );
    assert!(
        fits(c.len(), m, n, ldc),
        "matmul_strided: dst ({} values, ld {ldc}) is not {m}x{n}",
        c.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for row in c.chunks_mut(ldc).take(m) {
            scale_in_place(&mut row[..n], beta);
        }
        return;
    }
    let threads = rayon::current_num_threads();
    let parallel = threads > 1 && m * n * k >= PARALLEL_MIN_MACS;
    // SAFETY: `covers` and `fits` above bound every element reached; `c` is borrowed mutably, so
    // it aliases neither view.
    unsafe {
        gemm_raw(
            m,
            n,
            k,
            c.as_mut_ptr(),
            ldc,
            a.data.as_ptr(),
            (a.row_stride as isize, a.col_stride as isize),
            b.data.as_ptr(),
            (b.row_stride as isize, b.col_stride as isize),
            alpha,
            beta,
            parallel,
        );
    }
}

/// `c (m x n) += a (m x k) · b^T` with `b` stored `n x k`, single-threaded, through raw
/// pointers: the packed inference products use it for wide batches (the decoder over every step,
/// batched evaluation), where the gemm crate's packed microkernel beats a dot-product kernel.
///
/// # Safety
/// `a` valid for `m` rows of `lda`, `b` for `n` rows of `ldb` (≥ k used), `c` for `m` rows of
/// `ldc` (≥ n used), and no other thread touches those `c` elements during the call.
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul_acc_bt_serial(
    m: usize,
    n: usize,
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
) {
    // SAFETY: forwarded contract; op(b) = b^T has row stride 1 and column stride ldb.
    unsafe {
        gemm_raw(
            m,
            n,
            k,
            c,
            ldc,
            a,
            (lda as isize, 1),
            b,
            (1, ldb as isize),
            1.0,
            1.0,
            false,
        )
    }
}

/// The one call into the gemm crate. Strides are (row, column) of the operands as used.
///
/// # Safety
/// Every element reached through the pointers and strides must be valid; `c`'s elements must not
/// be written by anyone else during the call.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_raw<F: Real>(
    m: usize,
    n: usize,
    k: usize,
    c: *mut F,
    ldc: usize,
    a: *const F,
    (a_rs, a_cs): (isize, isize),
    b: *const F,
    (b_rs, b_cs): (isize, isize),
    alpha: F,
    beta: F,
    parallel: bool,
) {
    let threads = rayon::current_num_threads();
    if parallel && threads > 1 && m.max(n) >= threads * SPLIT_ALIGN {
        // Our own split: the larger of m and n cut into one block per thread, each block a
        // single-threaded crate call. The crate's own rayon parallelism measured slower at the
        // training shapes: PTB-medium, `train --max-steps 14`, 4 alternations of the two in one
        // build: 1,813–1,901 tokens/s with the crate's threads, 1,839–2,485 with this split.
        split_gemm(
            threads,
            m,
            n,
            k,
            SharedMut(c),
            ldc,
            SharedConst(a),
            (a_rs, a_cs),
            SharedConst(b),
            (b_rs, b_cs),
            alpha,
            beta,
        );
        return;
    }
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // The gemm crate computes dst = alpha_dst * dst + beta_prod * lhs * rhs, hence the swap.
    // SAFETY: forwarded from this function's contract.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
            1,
            ldc as isize,
            beta != F::ZERO,
            a,
            a_cs,
            a_rs,
            b,
            b_cs,
            b_rs,
            beta,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Block boundaries of [`split_gemm`] are multiples of this many rows or columns (a 64-byte
/// line of f32 in C's rows).
const SPLIT_ALIGN: usize = 16;

/// The product cut along the larger of m and n into `parts` blocks (boundaries at multiples of
/// [`SPLIT_ALIGN`]), each run by one single-threaded crate call on its own rayon task.
///
/// # Safety
/// As [`gemm_raw`].
#[allow(clippy::too_many_arguments)]
unsafe fn split_gemm<F: Real>(
    parts: usize,
    m: usize,
    n: usize,
    k: usize,
    c: SharedMut<F>,
    ldc: usize,
    a: SharedConst<F>,
    a_strides: (isize, isize),
    b: SharedConst<F>,
    b_strides: (isize, isize),
    alpha: F,
    beta: F,
) {
    let by_cols = n >= m;
    let len = if by_cols { n } else { m };
    let units = len.div_ceil(SPLIT_ALIGN);
    let bounds: Vec<(usize, usize)> = (0..parts)
        .map(|p| {
            let (u0, u1) = (units * p / parts, units * (p + 1) / parts);
            ((u0 * SPLIT_ALIGN).min(len), (u1 * SPLIT_ALIGN).min(len))
        })
        .filter(|(lo, hi)| lo < hi)
        .collect();
    rayon::scope(|s| {
        for &(lo, hi) in &bounds {
            s.spawn(move |_| {
                // SAFETY: block [lo, hi) of C's columns (or rows) belongs to this task only; the
                // shifted operands stay inside the caller's checked extents.
                unsafe {
                    if by_cols {
                        gemm_raw(
                            m,
                            hi - lo,
                            k,
                            c.get().add(lo),
                            ldc,
                            a.get(),
                            a_strides,
                            b.get().offset(lo as isize * b_strides.1),
                            b_strides,
                            alpha,
                            beta,
                            false,
                        )
                    } else {
                        gemm_raw(
                            hi - lo,
                            n,
                            k,
                            c.get().add(lo * ldc),
                            ldc,
                            a.get().offset(lo as isize * a_strides.0),
                            a_strides,
                            b.get(),
                            b_strides,
                            alpha,
                            beta,
                            false,
                        )
                    }
                }
            });
        }
    });
}

fn scale_in_place<F: Real>(c: &mut [F], beta: F) {
    if beta == F::ZERO {
        c.fill(F::ZERO);
    } else {
        c.iter_mut().for_each(|x| *x *= beta);
    }
}

/// Naive triple loop with the same contract as [`matmul`]; the test oracle.
#[allow(clippy::too_many_arguments)]
pub fn matmul_reference<F: Real>(
    m: usize,
    n: usize,
    k: usize,
    alpha: F,
    a: &[F],
    ta: Trans,
    b: &[F],
    tb: Trans,
    beta: F,
    c: &mut [F],
) {
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f64;
            for p in 0..k {
                let av = match ta {
                    Trans::N => a[i * k + p],
                    Trans::T => a[p * m + i],
                };
                let bv = match tb {
                    Trans::N => b[p * n + j],
                    Trans::T => b[j * k + p],
                };
                acc += av.to_f64() * bv.to_f64();
            }
            let old = if beta == F::ZERO {
                0.0
            } else {
                beta.to_f64() * c[i * n + j].to_f64()
            };
            c[i * n + j] = F::from_f64(alpha.to_f64() * acc + old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::CounterRng;
    use proptest::prelude::*;

    fn random(len: usize, seed: u64) -> Vec<f32> {
        let rng = CounterRng::new(seed);
        (0..len)
            .map(|i| rng.uniform(0, i as u64) * 2.0 - 1.0)
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn matches_reference(m in 1usize..40, n in 1usize..70, k in 0usize..50,
                             ta in any::<bool>(), tb in any::<bool>(), beta in prop_oneof![Just(0.0f32), Just(1.0f32), Just(0.5f32)],
                             seed in 0u64..1000) {
            let ta = if ta { Trans::T } else { Trans::N };
            let tb = if tb { Trans::T } else { Trans::N };
            let a = random(m * k, seed);
            let b = random(k * n, seed + 1);
            let c0 = random(m * n, seed + 2);
            let mut fast = c0.clone();
            let mut slow = c0.clone();
            matmul(m, n, k, 0.75, &a, ta, &b, tb, beta, &mut fast);
            matmul_reference(m, n, k, 0.75, &a, ta, &b, tb, beta, &mut slow);
            for (x, y) in fast.iter().zip(&slow) {
                prop_assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
            }
        }
    }

    #[test]
    fn split_products_match_reference_by_rows_and_columns() {
        // Above the parallel threshold, on 2 and 3 threads: split along n (n ≥ m) and along m,
        // sizes not multiples of the block alignment, every transpose and beta.
        for threads in [2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for (m, n, k) in [(37, 301, 97), (301, 37, 97), (130, 130, 70)] {
                for (ta, tb) in [
                    (Trans::N, Trans::N),
                    (Trans::T, Trans::N),
                    (Trans::N, Trans::T),
                    (Trans::T, Trans::T),
                ] {
                    for beta in [0.0f32, 0.5] {
                        let a = random(m * k, 11);
                        let b = random(k * n, 12);
                        let c0 = random(m * n, 13);
                        let mut fast = if beta == 0.0 {
                            vec![f32::NAN; m * n]
                        } else {
                            c0.clone()
                        };
                        let mut slow = c0.clone();
                        pool.install(|| matmul(m, n, k, 0.75, &a, ta, &b, tb, beta, &mut fast));
                        matmul_reference(m, n, k, 0.75, &a, ta, &b, tb, beta, &mut slow);
                        for (x, y) in fast.iter().zip(&slow) {
                            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{m}x{n}x{k} {ta:?}{tb:?} beta {beta} threads {threads}: {x} vs {y}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn strided_views_with_overlapping_rows_match_elementwise_sums() {
        // A Toeplitz lhs (row stride 3, column stride 1: rows overlap) and a column-major rhs,
        // small and above the parallel threshold, beta 0 (NaN in c ignored) and 0.5.
        for (m, n, k) in [(7, 5, 9), (300, 40, 120)] {
            for beta in [0.0f32, 0.5] {
                let a = random((m - 1) * 3 + k, 21);
                let b = random(k * n, 22);
                let c0 = random(m * (n + 2), 23);
                let mut fast = if beta == 0.0 {
                    vec![f32::NAN; m * (n + 2)]
                } else {
                    c0.clone()
                };
                let a_view = StridedView {
                    data: &a,
                    row_stride: 3,
                    col_stride: 1,
                };
                let b_view = StridedView {
                    data: &b,
                    row_stride: 1,
                    col_stride: k,
                };
                matmul_strided(m, n, k, 0.75, a_view, b_view, beta, &mut fast, n + 2);
                for i in 0..m {
                    for j in 0..n {
                        let dot: f64 = (0..k)
                            .map(|p| a[i * 3 + p] as f64 * b[j * k + p] as f64)
                            .sum();
                        let want = 0.75 * dot + beta as f64 * c0[i * (n + 2) + j] as f64;
                        let got = fast[i * (n + 2) + j] as f64;
                        assert!(
                            (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "{m}x{n}x{k} beta {beta} ({i},{j}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "does not hold")]
    fn strided_view_reaching_past_its_buffer_is_refused() {
        let a = vec![0.0f32; 10];
        let view = StridedView {
            data: &a,
            row_stride: 3,
            col_stride: 1,
        };
        let mut c = vec![0.0f32; 4];
        // 4 rows of 2 read up to index 3*3 + 1 = 10: one past the end.
        matmul_strided(4, 1, 2, 1.0, view, view, 0.0, &mut c, 1);
    }

    #[test]
    fn large_parallel_product_matches_reference() {
        let (m, n, k) = (70, 300, 90);
        let a = random(m * k, 7);
        let b = random(n * k, 8);
        let mut fast = vec![f32::NAN; m * n];
        let mut slow = vec![0.0; m * n];
        matmul(m, n, k, 1.0, &a, Trans::N, &b, Trans::T, 0.0, &mut fast);
        matmul_reference(m, n, k, 1.0, &a, Trans::N, &b, Trans::T, 0.0, &mut slow);
        for (x, y) in fast.iter().zip(&slow) {
            assert!((x - y).abs() <= 1e-4, "{x} vs {y}");
        }
    }
}
