//! Deterministic reductions and element-wise updates over parameter-sized buffers.
//!
//! Parallel sums split the input into fixed chunks and add the partial results in chunk order, so
//! the result does not depend on thread timing (needed for bit-exact `--resume`).

use crate::Real;
use rayon::prelude::*;

/// Elements per partial sum (the chunk grid `support::Support::sum_squares` follows too).
pub(crate) const CHUNK: usize = 1 << 16;
/// f64 accumulators of the serial sum of squares.
pub(crate) const LANES: usize = 8;

/// Sum of squares in f64, deterministic for a given input.
pub fn sum_squares<F: Real>(x: &[F]) -> f64 {
    let partials: Vec<f64> = x.par_chunks(CHUNK).map(sum_squares_serial).collect();
    partials.iter().sum()
}

/// Eight independent f64 accumulators: a single running sum is a serial dependency that keeps
/// the loop scalar (4x slower on a 4.6M-parameter gradient, every step).
pub(crate) fn sum_squares_serial<F: Real>(x: &[F]) -> f64 {
    sum_squares_pieces(x, std::iter::once(0..x.len()))
}

/// [`sum_squares_serial`] of `chunk` visiting only `pieces` (sorted, disjoint, relative to the
/// chunk) in its main part: every element keeps its f64 lane and its place in that lane's order,
/// so when the chunk is zero outside the pieces the result is bit for bit the whole chunk's
/// (each skipped zero would add an exact +0). The last `len % LANES` elements are summed from the
/// chunk itself. `support::Support::sum_squares` relies on this.
pub(crate) fn sum_squares_pieces<F: Real>(
    chunk: &[F],
    pieces: impl Iterator<Item = std::ops::Range<usize>>,
) -> f64 {
    let main = chunk.len() / LANES * LANES;
    let mut acc = [0.0f64; LANES];
    let add = |acc: &mut [f64; LANES], i: usize| {
        let v = chunk[i].to_f64();
        acc[i % LANES] += v * v;
    };
    for r in pieces {
        let (lo, hi) = (r.start, r.end.min(main));
        // Up to the next lane-0 element one at a time, whole groups of LANES (the shape the
        // compiler vectorizes), then the rest one at a time.
        let first_group = lo.next_multiple_of(LANES).min(hi);
        (lo..first_group).for_each(|i| add(&mut acc, i));
        let groups = (hi - first_group) / LANES * LANES;
        for c in chunk[first_group..first_group + groups].chunks_exact(LANES) {
            for (a, v) in acc.iter_mut().zip(c) {
                let v = v.to_f64();
                *a += v * v;
            }
        }
        (first_group + groups..hi).for_each(|i| add(&mut acc, i));
    }
    let tail: f64 = chunk[main..].iter().map(|v| v.to_f64() * v.to_f64()).sum();
    acc.iter().sum::<f64>() + tail
}

/// `y += a * x`, parallel.
pub fn axpy<F: Real>(a: F, x: &[F], y: &mut [F]) {
    assert_eq!(x.len(), y.len());
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(y, x)| y.iter_mut().zip(x).for_each(|(y, &x)| *y += a * x));
}

/// `x[i] = v` for every i, parallel (zeroing PTB-medium's 79 MB gradient buffer: 11 → 8 ms per
/// step against one memset, in the phase timing of docs/benchmarks.md).
pub fn fill<F: Real>(x: &mut [F], v: F) {
    x.par_chunks_mut(CHUNK).for_each(|c| c.fill(v));
}

/// `x *= a`, parallel.
pub fn scale<F: Real>(a: F, x: &mut [F]) {
    x.par_chunks_mut(CHUNK)
        .for_each(|c| c.iter_mut().for_each(|v| *v *= a));
}

/// `out[j] += sum_i m[i, j]` for a row-major (rows, cols) matrix: the bias gradient.
pub fn add_column_sums<F: Real>(m: &[F], cols: usize, out: &mut [F]) {
    assert_eq!(out.len(), cols);
    assert_eq!(m.len() % cols.max(1), 0);
    if cols == 0 {
        return;
    }
    // Parallel over column blocks: each task owns its slice of `out`, rows summed in order.
    const COLS_PER_TASK: usize = 1024;
    out.par_chunks_mut(COLS_PER_TASK)
        .enumerate()
        .for_each(|(blk, o)| {
            let start = blk * COLS_PER_TASK;
            for row in m.chunks_exact(cols) {
                let width = o.len();
                for (acc, &v) in o.iter_mut().zip(&row[start..start + width]) {
                    *acc += v;
                }
            }
        });
}

/// True when every element is finite.
pub fn all_finite<F: Real>(x: &[F]) -> bool {
    x.par_chunks(CHUNK).all(|c| c.iter().all(|v| v.is_finite()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_sums_match_naive() {
        let (rows, cols) = (7, 2500);
        let m: Vec<f64> = (0..rows * cols).map(|i| (i % 13) as f64 - 6.0).collect();
        let mut out = vec![1.0; cols];
        add_column_sums(&m, cols, &mut out);
        for j in 0..cols {
            let want: f64 = 1.0 + (0..rows).map(|i| m[i * cols + j]).sum::<f64>();
            assert_eq!(out[j], want);
        }
    }

    #[test]
    fn sum_squares_and_finite() {
        let x: Vec<f32> = (0..200_000).map(|i| (i % 3) as f32).collect();
        let want: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
        assert_eq!(sum_squares(&x), want); // exact: small integers
        let odd: Vec<f32> = (0..70_001)
            .map(|i| ((i * 37) % 101) as f32 * 0.01 - 0.5)
            .collect();
        let want: f64 = odd.iter().map(|&v| (v as f64) * (v as f64)).sum();
        assert!((sum_squares(&odd) - want).abs() < 1e-9 * want);
        assert!(all_finite(&x));
        let mut y = x.clone();
        y[150_000] = f32::NAN;
        assert!(!all_finite(&y));
    }
}
