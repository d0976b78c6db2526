//! Splitting one step's work over threads: unit ranges and a low-overhead fork-join.

use kernels::fpmode::FlushDenormals;
use std::ops::Range;

/// A raw output pointer that threads share to write disjoint elements of one buffer.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub *mut f32);

impl SharedMut {
    /// The pointer. A method, not the field: closures then capture the whole `SharedMut` (which
    /// is `Sync`) rather than the bare pointer field (which is not).
    #[inline(always)]
    pub fn get(self) -> *mut f32 {
        self.0
    }
}

// SAFETY: only used to write disjoint index sets from the parts of one fork-join; the buffer
// outlives the join.
unsafe impl Send for SharedMut {}
// SAFETY: as above.
unsafe impl Sync for SharedMut {}

/// Splits `0..n` into `parts` ranges whose boundaries are multiples of 16 (vector width of the
/// epilogue, and a multiple of every block height), except the end.
pub(crate) fn split_units(n: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.max(1);
    let chunk = n.div_ceil(parts).div_ceil(16) * 16;
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    while start < n {
        let end = (start + chunk.max(16)).min(n);
        out.push(start..end);
        start = end;
    }
    if out.is_empty() {
        out.push(0..0);
    }
    out
}

/// Runs `f(0)`, …, `f(parts - 1)`, in parallel when there is more than one, each with
/// flush-to-zero/denormals-are-zero set on its thread.
pub(crate) fn for_parts(parts: usize, f: impl Fn(usize) + Sync) {
    let run = |p: usize| {
        let _ftz = FlushDenormals::new();
        f(p)
    };
    match parts {
        0 => {}
        1 => run(0),
        2 => {
            rayon::join(|| run(0), || run(1));
        }
        n => rayon::scope(|s| {
            for p in 1..n {
                let run = &run;
                s.spawn(move |_| run(p));
            }
            run(0);
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_ranges_cover_everything_once_and_align() {
        for n in [1, 15, 16, 17, 200, 650, 1500] {
            for parts in 1..5 {
                let r = split_units(n, parts);
                assert!(r.len() <= parts);
                assert_eq!(r[0].start, 0);
                assert_eq!(r.last().unwrap().end, n);
                for w in r.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                    assert_eq!(w[0].end % 16, 0);
                }
            }
        }
    }
}
