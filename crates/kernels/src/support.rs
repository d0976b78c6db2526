//! The support of a sparse gradient: sorted, disjoint index ranges of a flat buffer outside which
//! the buffer is known to be zero.
//!
//! Why: the embedding gradient of a batch touches only the rows of the batch's tokens (PTB:
//! ≤ 700 of 10,000 rows, a third of PTB-medium's parameters). Zeroing the gradient, its norm and
//! a plain SGD update then only need to visit those rows instead of three dense passes over the
//! whole buffer every step.

use crate::reduce::{sum_squares_pieces, CHUNK};
use crate::Real;
use rayon::prelude::*;
use std::ops::Range;

/// Pieces handed to one rayon task (the chunk size of the dense passes in `reduce`).
const PIECE: usize = 1 << 15;

/// Sorted, disjoint, non-empty ranges of `0..len`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Support {
    len: usize,
    ranges: Vec<Range<usize>>,
}

impl Support {
    /// Every index of a buffer of `len` values.
    pub fn full(len: usize) -> Self {
        Self::from_ranges(len, std::iter::once(0..len))
    }

    /// No index (a buffer that is all zero).
    pub fn empty(len: usize) -> Self {
        Self {
            len,
            ranges: Vec::new(),
        }
    }

    /// The union of `ranges` (any order, overlaps allowed) in a buffer of `len` values.
    ///
    /// # Panics
    /// If a range ends past `len` (a programming error).
    pub fn from_ranges(len: usize, ranges: impl IntoIterator<Item = Range<usize>>) -> Self {
        let mut sorted: Vec<Range<usize>> = ranges.into_iter().filter(|r| !r.is_empty()).collect();
        sorted.sort_unstable_by_key(|r| r.start);
        let mut merged: Vec<Range<usize>> = Vec::with_capacity(sorted.len());
        for r in sorted {
            assert!(r.end <= len, "Support: range {r:?} is outside 0..{len}");
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        Self {
            len,
            ranges: merged,
        }
    }

    /// Length of the buffer this support describes (not the number of indices: [`Self::count`]).
    pub fn buffer_len(&self) -> usize {
        self.len
    }

    /// The ranges, sorted and disjoint.
    pub fn ranges(&self) -> &[Range<usize>] {
        &self.ranges
    }

    /// Number of indices in the support.
    pub fn count(&self) -> usize {
        self.ranges.iter().map(|r| r.len()).sum()
    }

    /// The ranges cut into pieces of at most [`PIECE`] values (units of parallel work).
    fn pieces(&self) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        for r in &self.ranges {
            let mut s = r.start;
            while s < r.end {
                let e = (s + PIECE).min(r.end);
                out.push(s..e);
                s = e;
            }
        }
        out
    }

    /// Runs `f(piece of x, same piece of y)` over the support, in parallel.
    ///
    /// # Panics
    /// If `x` or `y` is not `len` long.
    pub fn par_zip_mut<A: Send, B: Sync>(
        &self,
        x: &mut [A],
        y: &[B],
        f: impl Fn(&mut [A], &[B]) + Sync + Send,
    ) {
        assert_eq!(x.len(), self.len, "Support: buffer length");
        assert_eq!(y.len(), self.len, "Support: buffer length");
        let pieces = self.pieces();
        split_disjoint_mut(x, &pieces)
            .into_par_iter()
            .zip(pieces.par_iter())
            .for_each(|(xs, r)| f(xs, &y[r.clone()]));
    }

    /// The first index outside the support where `x` is not zero, if any (a check for code that
    /// promises to write only inside it).
    pub fn first_nonzero_outside<F: Real>(&self, x: &[F]) -> Option<usize> {
        assert_eq!(x.len(), self.len, "Support: buffer length");
        let mut start = 0;
        for r in self
            .ranges
            .iter()
            .chain(std::iter::once(&(self.len..self.len)))
        {
            if let Some(i) = x[start..r.start].iter().position(|&v| v != F::ZERO) {
                return Some(start + i);
            }
            start = r.end;
        }
        None
    }

    /// Sets the support's values of `x` to `v` (outside it, `x` is left as is).
    pub fn fill<F: Real>(&self, x: &mut [F], v: F) {
        assert_eq!(x.len(), self.len, "Support: buffer length");
        let pieces = self.pieces();
        split_disjoint_mut(x, &pieces)
            .into_par_iter()
            .for_each(|xs| xs.fill(v));
    }

    /// The sum of squares of `x` over the support — bit for bit `reduce::sum_squares(x)` when
    /// `x` is zero elsewhere: the same chunk grid, the same f64 lane of every element, the same
    /// order of additions; the skipped zeros would each have added an exact +0.
    pub fn sum_squares<F: Real>(&self, x: &[F]) -> f64 {
        assert_eq!(x.len(), self.len, "Support: buffer length");
        // The dense chunks the support touches, each with its support pieces.
        let mut chunks: Vec<(usize, Vec<Range<usize>>)> = Vec::new();
        for r in &self.ranges {
            let mut s = r.start;
            while s < r.end {
                let c = s / CHUNK;
                let e = r.end.min((c + 1) * CHUNK);
                match chunks.last_mut() {
                    Some((last, pieces)) if *last == c => pieces.push(s..e),
                    _ => chunks.push((c, std::iter::once(s..e).collect())),
                }
                s = e;
            }
        }
        let partials: Vec<f64> = chunks
            .par_iter()
            .map(|(c, pieces)| {
                let c0 = c * CHUNK;
                let shifted = pieces.iter().map(|r| r.start - c0..r.end - c0);
                sum_squares_pieces(&x[c0..(c0 + CHUNK).min(x.len())], shifted)
            })
            .collect();
        let sum: f64 = partials.iter().sum();
        // An empty f64 sum is -0.0; the dense sum of a non-empty buffer adds at least one +0.0
        // partial, which turns it into +0.0.
        if self.len == 0 {
            sum
        } else {
            sum + 0.0
        }
    }
}

/// Mutable views of the sorted, disjoint `pieces` of `x`.
fn split_disjoint_mut<'a, A>(x: &'a mut [A], pieces: &[Range<usize>]) -> Vec<&'a mut [A]> {
    let mut out = Vec::with_capacity(pieces.len());
    let (mut rest, mut offset) = (x, 0);
    for r in pieces {
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(r.start - offset);
        let (piece, tail) = tail.split_at_mut(r.len());
        out.push(piece);
        rest = tail;
        offset = r.end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ranges_are_sorted_merged_and_empty_ones_dropped() {
        let s = Support::from_ranges(100, [50..60, 5..10, 8..20, 20..25, 30..30, 70..71]);
        assert_eq!(s.ranges(), &[5..25, 50..60, 70..71]);
        assert_eq!(s.count(), 31);
        assert_eq!(Support::full(7).ranges(), std::slice::from_ref(&(0..7)));
        assert_eq!(Support::full(0).ranges(), &[] as &[Range<usize>]);
        assert_eq!(Support::empty(9).count(), 0);
    }

    #[test]
    #[should_panic(expected = "outside 0..10")]
    fn a_range_past_the_end_is_refused() {
        Support::from_ranges(10, std::iter::once(3..11));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn passes_over_the_support_equal_dense_passes(
            len in 0usize..200_000,
            raw in prop::collection::vec((0usize..200_000, 0usize..70_000), 0..12),
        ) {
            let ranges: Vec<_> = raw.iter().map(|&(s, l)| s.min(len)..(s + l).min(len)).collect();
            let support = Support::from_ranges(len, ranges.clone());
            let inside = |i: usize| ranges.iter().any(|r| r.contains(&i));
            // Values non-zero only inside the support.
            let x: Vec<f32> = (0..len).map(|i| if inside(i) { (i % 13) as f32 - 6.0 } else { 0.0 }).collect();
            let dense = crate::reduce::sum_squares(&x);
            let sparse = support.sum_squares(&x);
            prop_assert_eq!(dense.to_bits(), sparse.to_bits(), "{} vs {}", dense, sparse);

            prop_assert_eq!(support.first_nonzero_outside(&x), None);
            let mut w = x.clone();
            if let Some(i) = (0..len).rev().find(|&i| !inside(i)) {
                w[i] = 1.0;
                // x is zero outside the support, so the one value set there is the first.
                prop_assert_eq!(support.first_nonzero_outside(&w), Some(i));
            }
            let mut y = vec![1.0f32; len];
            support.fill(&mut y, 0.0);
            for (i, &v) in y.iter().enumerate() {
                prop_assert_eq!(v, if inside(i) { 0.0 } else { 1.0 });
            }

            let mut z = vec![0.0f32; len];
            support.par_zip_mut(&mut z, &x, |z, x| z.iter_mut().zip(x).for_each(|(z, &x)| *z = x + 1.0));
            for (i, &v) in z.iter().enumerate() {
                prop_assert_eq!(v, if inside(i) { x[i] + 1.0 } else { 0.0 });
            }
        }
    }
}
