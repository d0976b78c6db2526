//! The one GEMM entry point of the engine, over the `gemm` crate (chosen over `faer` by
//! measurement at our shapes: see docs/gemm.md), plus its naive reference.

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
    assert!(a.len() >= m * k, "matmul: lhs has {} < {m}x{k}", a.len());
    assert!(b.len() >= k * n, "matmul: rhs has {} < {k}x{n}", b.len());
    assert!(c.len() >= m * n, "matmul: dst has {} < {m}x{n}", c.len());
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        scale_in_place(&mut c[..m * n], beta);
        return;
    }
    // (row stride, column stride) of each operand as used.
    let (a_rs, a_cs) = match ta {
        Trans::N => (k as isize, 1),
        Trans::T => (1, m as isize),
    };
    let (b_rs, b_cs) = match tb {
        Trans::N => (n as isize, 1),
        Trans::T => (1, k as isize),
    };
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 && m * n * k >= PARALLEL_MIN_MACS {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    let read_dst = beta != F::ZERO;
    // SAFETY: the asserts above guarantee every (row, col) reached through these strides lies
    // inside the three slices; `c` is borrowed mutably so it cannot alias `a` or `b`.
    // The gemm crate computes dst = alpha_dst * dst + beta_prod * lhs * rhs, hence the swap.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            read_dst,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
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
