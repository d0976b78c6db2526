//! Splitting one step's work over threads: unit ranges and a low-overhead fork-join.

use kernels::fpmode::FlushDenormals;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

pub(crate) use kernels::shared::SharedMut;

/// Splits `0..n` into at most `parts` ranges of nearly equal size whose inner boundaries are
/// multiples of `align` (the matrices' row alignment, at least a cache line of f32 so threads do
/// not write the same line of h or c). Balanced to the nearest multiple: the earlier rule (every
/// part a multiple of 32 rounded up) gave 128 / 72 units at H = 200, so one thread did 64% of
/// each step.
pub(crate) fn split_units(n: usize, parts: usize, align: usize) -> Vec<Range<usize>> {
    let parts = parts.max(1);
    let align = align.max(1);
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    for i in 1..=parts {
        let end = if i == parts {
            n
        } else {
            let ideal = (i * n + parts / 2) / parts;
            ((ideal + align / 2) / align * align).min(n)
        };
        if end > start {
            out.push(start..end);
            start = end;
        }
    }
    if out.is_empty() {
        out.push(0..0);
    }
    out
}

/// The alignment of unit ranges for matrices of row alignment `row_align`: at least 16 rows
/// (one 64-byte line of f32 outputs).
pub(crate) fn unit_align(row_align: usize) -> usize {
    row_align.max(16)
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

/// The job a [`Team`] runs: part index and the shared barrier.
type Job<'a> = dyn Fn(usize, &SpinBarrier) + Sync + 'a;

struct TeamShared {
    /// The current job, type-erased to 'static; valid while `Team::run` waits for it.
    job: std::sync::Mutex<Option<&'static Job<'static>>>,
    /// Parts of the current job (workers with a higher index sit it out).
    parts: AtomicUsize,
    epoch: AtomicUsize,
    done: AtomicUsize,
    stop: std::sync::atomic::AtomicBool,
    barrier: std::sync::Mutex<std::sync::Arc<SpinBarrier>>,
}

/// Persistent threads that run a whole recurrent loop together: a plan keeps its team, so a run
/// pays no thread start, and the workers spin briefly between runs before parking. Part 0 runs
/// on the calling thread.
pub(crate) struct Team {
    shared: std::sync::Arc<TeamShared>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Team {
    /// A team of `threads` (the caller plus `threads - 1` workers).
    pub fn new(threads: usize) -> Team {
        let shared = std::sync::Arc::new(TeamShared {
            job: std::sync::Mutex::new(None),
            parts: AtomicUsize::new(0),
            epoch: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            stop: std::sync::atomic::AtomicBool::new(false),
            barrier: std::sync::Mutex::new(std::sync::Arc::new(SpinBarrier::new(1))),
        });
        let workers = (1..threads.max(1))
            .map(|p| {
                let shared = shared.clone();
                std::thread::spawn(move || worker(p, &shared))
            })
            .collect();
        Team { shared, workers }
    }

    /// Threads in the team, the caller included.
    pub fn size(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `f(p, barrier)` for `p` in `0..parts` (at most the team size), one part per thread,
    /// and returns when all are done.
    pub fn run(&self, parts: usize, f: &Job<'_>) {
        let parts = parts.clamp(1, self.size());
        if parts == 1 {
            let _ftz = FlushDenormals::new();
            f(0, &SpinBarrier::new(1));
            return;
        }
        let barrier = std::sync::Arc::new(SpinBarrier::new(parts));
        // SAFETY: the job reference is erased to 'static only for the workers' use during this
        // call: they read it after the epoch bump below and signal `done` when they no longer
        // touch it, and this function returns only after every participant has done so.
        let job: &'static Job<'static> =
            unsafe { std::mem::transmute::<&Job<'_>, &'static Job<'static>>(f) };
        *self.shared.job.lock().expect("team lock") = Some(job);
        *self.shared.barrier.lock().expect("team lock") = barrier.clone();
        self.shared.parts.store(parts, Ordering::Release);
        self.shared.done.store(0, Ordering::Release);
        self.shared.epoch.fetch_add(1, Ordering::AcqRel);
        for w in &self.workers {
            w.thread().unpark();
        }
        {
            let _ftz = FlushDenormals::new();
            f(0, &barrier);
        }
        let mut spins = 0u32;
        while self.shared.done.load(Ordering::Acquire) < parts - 1 {
            if spins < 1 << 14 {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        *self.shared.job.lock().expect("team lock") = None;
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.epoch.fetch_add(1, Ordering::AcqRel);
        for w in self.workers.drain(..) {
            w.thread().unpark();
            let _ = w.join();
        }
    }
}

/// How long an idle worker spins for the next job before it parks: `SYMBIONT_SPIN_US`
/// microseconds, 2 000 by default (the role of OpenMP's `KMP_BLOCKTIME`).
///
/// Waking a parked worker costs a futex wake and, on a VM, the wake of an idle vCPU. Streaming
/// one step at a time at H = 200 with 1 ms between steps (`examples/stream_gaps.rs`), the median
/// step took 97–103 µs with workers parking after ~0.5 ms (the earlier fixed spin count) and
/// 51–59 µs with 2 ms in one series; 89–101 vs 75–92 µs in a later, noisier one. Back to back it
/// takes 23–39 µs. Longer spins burn a core while idle.
fn idle_spin() -> std::time::Duration {
    static SPIN: std::sync::OnceLock<std::time::Duration> = std::sync::OnceLock::new();
    *SPIN.get_or_init(|| {
        let micros = std::env::var("SYMBIONT_SPIN_US")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(2_000);
        std::time::Duration::from_micros(micros)
    })
}

fn worker(p: usize, shared: &TeamShared) {
    let _ftz = FlushDenormals::new();
    // The epoch starts at 0 and only `run` and `drop` advance it: starting from 0 (not from a
    // fresh load) a job published before this thread got going is not missed.
    let mut seen = 0;
    loop {
        // Spin a while (runs often come back to back), then park until unparked; the clock is
        // read every 1024 spins only.
        let idle = std::time::Instant::now();
        let mut spins = 0u32;
        while shared.epoch.load(Ordering::Acquire) == seen {
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(1024) || idle.elapsed() < idle_spin() {
                std::hint::spin_loop();
            } else {
                std::thread::park();
            }
        }
        seen = shared.epoch.load(Ordering::Acquire);
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        if p < shared.parts.load(Ordering::Acquire) {
            let job = *shared.job.lock().expect("team lock");
            let barrier = shared.barrier.lock().expect("team lock").clone();
            if let Some(job) = job {
                job(p, &barrier);
            }
            shared.done.fetch_add(1, Ordering::AcqRel);
        }
    }
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
        let team = Team::new(3);
        team.run(3, &|p, bar| {
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
        // The team is reused: a second job with fewer parts.
        let hits = AtomicUsize::new(0);
        for _ in 0..50 {
            team.run(2, &|_, bar| {
                hits.fetch_add(1, Ordering::Relaxed);
                bar.wait();
            });
        }
        assert_eq!(hits.load(Ordering::Relaxed), 100);
    }

    #[test]
    fn unit_ranges_cover_everything_once_align_and_balance() {
        for n in [1, 15, 16, 17, 200, 650, 1500] {
            for parts in 1..5 {
                for align in [16, 32] {
                    let r = split_units(n, parts, align);
                    assert!(r.len() <= parts);
                    assert_eq!(r[0].start, 0);
                    assert_eq!(r.last().unwrap().end, n);
                    for w in r.windows(2) {
                        assert_eq!(w[0].end, w[1].start);
                        assert_eq!(w[0].end % align, 0);
                    }
                    // Each part within one alignment step of an equal share.
                    if n >= parts * align {
                        for part in &r {
                            let share = n as f64 / parts as f64;
                            assert!(
                                (part.len() as f64 - share).abs() <= align as f64,
                                "{n} in {parts} by {align}: {r:?}"
                            );
                        }
                    }
                }
            }
        }
        assert_eq!(split_units(200, 2, 16), vec![0..96, 96..200]);
        assert_eq!(split_units(650, 2, 16), vec![0..320, 320..650]);
    }
}
