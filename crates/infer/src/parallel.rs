//! Splitting one step's work over threads: unit ranges and a low-overhead fork-join.

use kernels::fpmode::FlushDenormals;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// A barrier the threads of a [`team`] spin on between steps: a step at batch 1 lasts
/// microseconds to a fraction of a millisecond, far less than waking a sleeping thread.
pub(crate) struct SpinBarrier {
    arrived: AtomicUsize,
    generation: AtomicUsize,
    n: usize,
}

impl SpinBarrier {
    fn new(n: usize) -> SpinBarrier {
        SpinBarrier {
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            n,
        }
    }

    /// Returns when all `n` threads have called `wait` for this generation. Everything a thread
    /// wrote before its `wait` is visible to every thread after theirs (AcqRel on the counter,
    /// Release/Acquire on the generation).
    pub fn wait(&self) {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
        } else {
            let mut spins = 0u32;
            while self.generation.load(Ordering::Acquire) == generation {
                // Spin first (a step is short); after a while yield, so that a team larger than
                // the free cores does not spin through the time slice of the thread it waits for.
                if spins < 4096 {
                    spins += 1;
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
    }
}

/// Runs `f(p, barrier)` for `p` in `0..parts` on `parts` threads (this one and `parts - 1`
/// scoped ones) that share one [`SpinBarrier`]: a whole recurrent loop runs as one team, with a
/// barrier per step instead of a fork-join per step (which costs a wake-up per step).
pub(crate) fn team(parts: usize, f: impl Fn(usize, &SpinBarrier) + Sync) {
    let barrier = SpinBarrier::new(parts.max(1));
    if parts <= 1 {
        f(0, &barrier);
        return;
    }
    std::thread::scope(|s| {
        for p in 1..parts {
            let (f, barrier) = (&f, &barrier);
            s.spawn(move || {
                let _ftz = FlushDenormals::new();
                f(p, barrier)
            });
        }
        f(0, &barrier);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn team_steps_see_each_others_writes() {
        // Each of 3 threads writes its slot at step s, then after the barrier reads the others'
        // slots of step s: a missing happens-before would show as a stale value.
        let slots: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
        let bad = AtomicUsize::new(0);
        team(3, |p, bar| {
            for s in 1..200 {
                slots[p].store(s, Ordering::Relaxed);
                bar.wait();
                if slots.iter().any(|v| v.load(Ordering::Relaxed) != s) {
                    bad.fetch_add(1, Ordering::Relaxed);
                }
                bar.wait();
            }
        });
        assert_eq!(bad.load(Ordering::Relaxed), 0);
    }

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
