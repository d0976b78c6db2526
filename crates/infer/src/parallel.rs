//! Splitting one step's work over threads: unit ranges and a low-overhead fork-join.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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

/// A barrier the threads of a [`Team`] spin on between steps: a step at batch 1 lasts
/// microseconds to a fraction of a millisecond, far less than waking a sleeping thread.
///
/// A part that panics poisons the barrier: every thread waiting on it (now or later) panics too,
/// so the whole job unwinds instead of spinning forever for the part that is gone.
pub(crate) struct SpinBarrier {
    arrived: AtomicUsize,
    generation: AtomicUsize,
    poisoned: AtomicBool,
    n: usize,
}

impl SpinBarrier {
    fn new(n: usize) -> SpinBarrier {
        SpinBarrier {
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            poisoned: AtomicBool::new(false),
            n,
        }
    }

    /// Returns when all `n` threads have called `wait` for this generation. Everything a thread
    /// wrote before its `wait` is visible to every thread after theirs (AcqRel on the counter,
    /// Release/Acquire on the generation). Panics if another part of the job panicked.
    pub fn wait(&self) {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
        } else {
            let mut spins = 0u32;
            while self.generation.load(Ordering::Acquire) == generation {
                if self.poisoned.load(Ordering::Acquire) {
                    panic!("another part of this team's job panicked");
                }
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

    fn poison(&self) {
        self.poisoned.store(true, Ordering::Release);
    }
}

/// The job a [`Team`] runs: part index and the shared barrier.
type Job<'a> = dyn Fn(usize, &SpinBarrier) + Sync + 'a;

/// One call of [`Team::run`], published to the workers as a whole: a worker reads the job, its
/// part count and its barrier together, so a worker that lags behind can never combine one run's
/// part count with the next run's job, and it runs each epoch at most once.
struct Run {
    epoch: usize,
    parts: usize,
    /// The caller's job with its lifetime erased: dereferenced only by workers with an index
    /// below `parts`, each before it counts itself in `done`; `Team::run` neither returns nor
    /// unwinds before all of them have.
    job: *const Job<'static>,
    barrier: SpinBarrier,
    done: AtomicUsize,
    panicked: AtomicBool,
}

// SAFETY: `job` points to a `Sync` closure (shared across the team is its purpose); the rest
// is atomics and plain data.
unsafe impl Send for Run {}
unsafe impl Sync for Run {}

struct TeamShared {
    /// The current run (None between runs).
    run: Mutex<Option<Arc<Run>>>,
    /// Held for the whole of `Team::run`: two callers sharing a team take turns (one published
    /// run at a time is what the workers assume).
    caller: Mutex<()>,
    /// Bumped when a run is published and when the team stops: what idle workers spin on.
    epoch: AtomicUsize,
    stop: AtomicBool,
    /// Set by [`Team::rest`]: idle workers park at once instead of spinning for the next run
    /// (other threads need the cores); cleared when a run is published.
    rest: AtomicBool,
}

impl TeamShared {
    fn current(&self) -> Option<Arc<Run>> {
        // Nothing panics while holding the lock, but a poisoned lock still holds valid data.
        self.run.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn publish(&self, run: Option<Arc<Run>>) {
        *self.run.lock().unwrap_or_else(|e| e.into_inner()) = run;
    }
}

/// Persistent threads that run a whole recurrent loop together: a plan keeps its team, so a run
/// pays no thread start, and the workers spin briefly between runs before parking. Part 0 runs
/// on the calling thread.
pub(crate) struct Team {
    shared: Arc<TeamShared>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Team {
    /// A team of `threads` (the caller plus `threads - 1` workers).
    pub fn new(threads: usize) -> Team {
        let shared = Arc::new(TeamShared {
            run: Mutex::new(None),
            caller: Mutex::new(()),
            epoch: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            rest: AtomicBool::new(false),
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

    /// Runs `f(p, barrier)` for `p` in `0..parts`, one part per thread, and returns when all are
    /// done. If a part panics, the others unwind at their next barrier and the panic continues
    /// on the calling thread once every part has stopped touching `f`.
    ///
    /// Panics if `parts` exceeds the team size: the parts share a barrier, so they cannot be
    /// queued on fewer threads.
    pub fn run(&self, parts: usize, f: &Job<'_>) {
        let parts = parts.max(1);
        assert!(
            parts <= self.size(),
            "{parts} parts for a team of {} threads",
            self.size()
        );
        if parts == 1 {
            f(0, &SpinBarrier::new(1));
            return;
        }
        let _turn = self.shared.caller.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY (of the erasure): see `Run::job`; the wait below holds this frame until every
        // worker that may dereference it has finished.
        let job = unsafe { std::mem::transmute::<*const Job<'_>, *const Job<'static>>(f) };
        let epoch = self.shared.epoch.load(Ordering::Acquire) + 1;
        let run = Arc::new(Run {
            epoch,
            parts,
            job,
            barrier: SpinBarrier::new(parts),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
        });
        self.shared.rest.store(false, Ordering::Release);
        self.shared.publish(Some(run.clone()));
        self.shared.epoch.store(epoch, Ordering::Release);
        for w in &self.workers[..parts - 1] {
            w.thread().unpark();
        }
        let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(0, &run.barrier)));
        if mine.is_err() {
            run.barrier.poison();
        }
        let mut spins = 0u32;
        while run.done.load(Ordering::Acquire) < parts - 1 {
            if spins < 1 << 14 {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        self.shared.publish(None);
        if let Err(payload) = mine {
            std::panic::resume_unwind(payload);
        }
        if run.panicked.load(Ordering::Acquire) {
            panic!("a worker thread of the team panicked while running its part");
        }
    }
}

impl Team {
    /// Lets the idle workers park now rather than spin for the next run: for a caller whose
    /// next work runs on other threads (a rayon pool on the same cores), which spinning workers
    /// would slow down (docs/speech.md, "Deployment plan"). The next run wakes them.
    pub fn rest(&self) {
        self.shared.rest.store(true, Ordering::Release);
        for w in &self.workers {
            w.thread().unpark();
        }
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
    // `seen`: the epoch counter this worker last acted on (it starts at 0, not at a fresh load,
    // so a run published before this thread got going is not missed). `last_run`: the epoch of
    // the last run it took, so it takes each run at most once.
    let (mut seen, mut last_run) = (0, 0);
    loop {
        // Spin a while (runs often come back to back), then park until unparked; the clock is
        // read every 1024 spins only.
        let idle = std::time::Instant::now();
        let mut spins = 0u32;
        while shared.epoch.load(Ordering::Acquire) == seen {
            spins = spins.wrapping_add(1);
            let resting = shared.rest.load(Ordering::Relaxed);
            if !resting && (!spins.is_multiple_of(1024) || idle.elapsed() < idle_spin()) {
                std::hint::spin_loop();
            } else {
                std::thread::park();
            }
        }
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        seen = shared.epoch.load(Ordering::Acquire);
        lag(p);
        // A run this worker is part of stays published until it is done, so reading it now (not
        // at the moment the counter moved) is safe; None means a run it had no part in ended.
        let Some(run) = shared.current() else {
            continue;
        };
        if run.epoch <= last_run {
            continue;
        }
        last_run = run.epoch;
        seen = seen.max(run.epoch);
        lag(p);
        if p < run.parts {
            // SAFETY: see `Run::job`: `Team::run` waits for this part's `done` below.
            let job = unsafe { &*run.job };
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(p, &run.barrier)))
                .is_err()
            {
                run.panicked.store(true, Ordering::Release);
                run.barrier.poison();
            }
            run.done.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Tests widen the windows between a worker's reads (where the earlier team read one run's part
/// count with another's epoch): some workers lag by tens of microseconds, so the stress test
/// meets the interleavings that a loaded machine produces only rarely.
#[cfg(test)]
fn lag(p: usize) {
    std::thread::sleep(std::time::Duration::from_micros(50 * (p as u64 % 3)));
}

#[cfg(not(test))]
#[inline(always)]
fn lag(_: usize) {}

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
    fn every_part_runs_exactly_once_when_part_counts_change_below_the_team_size() {
        // A worker that lags behind (see `lag`) used to read the next run's part count with a
        // stale epoch and run that job twice, so its call returned before another part had run
        // (with the same lag the old team failed at run 9). Each run counts its parts; any
        // count but 1 is that bug.
        let team = Team::new(6);
        let total = AtomicUsize::new(0);
        let mut expected = 0;
        for i in 0..3_000usize {
            let parts = [2, 6, 1, 5, 3, 6, 2, 4][i % 8];
            let counts: Vec<AtomicUsize> = (0..6).map(|_| AtomicUsize::new(0)).collect();
            team.run(parts, &|p, _| {
                counts[p].fetch_add(1, Ordering::Relaxed);
                total.fetch_add(1, Ordering::Relaxed);
            });
            for (p, c) in counts.iter().enumerate() {
                let want = usize::from(p < parts);
                assert_eq!(
                    c.load(Ordering::Relaxed),
                    want,
                    "run {i}, {parts} parts, part {p}"
                );
            }
            expected += parts;
        }
        assert_eq!(total.load(Ordering::Relaxed), expected);
    }

    #[test]
    fn a_panicking_caller_part_waits_for_the_workers_before_unwinding() {
        // The job borrows this frame: unwinding past it while workers still run would be a use
        // after free. The workers hold on until the call has returned (or 2 s have passed, which
        // a correct team must wait out): a team that unwinds early is caught with them unfinished.
        let team = Team::new(3);
        let finished = AtomicUsize::new(0);
        let returned = std::sync::atomic::AtomicBool::new(false);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            team.run(3, &|p, _| {
                if p == 0 {
                    panic!("part 0 fails");
                }
                let start = std::time::Instant::now();
                while !returned.load(Ordering::SeqCst)
                    && start.elapsed() < std::time::Duration::from_secs(2)
                {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                finished.fetch_add(1, Ordering::SeqCst);
            })
        }));
        let finished_at_return = finished.load(Ordering::SeqCst);
        returned.store(true, Ordering::SeqCst);
        assert!(result.is_err(), "the caller's panic is propagated");
        assert_eq!(finished_at_return, 2, "both workers had finished");
        // The team is still usable.
        let hits = AtomicUsize::new(0);
        team.run(3, &|_, bar| {
            bar.wait();
            hits.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(hits.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_panicking_worker_part_unwinds_the_job_instead_of_hanging() {
        // Parts 0 and 1 wait at a barrier that part 2 never reaches. The old team spun forever;
        // a generous deadline turns a hang into a failure instead of a stuck test run.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let team = Team::new(3);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                team.run(3, &|p, bar| {
                    if p == 2 {
                        panic!("part 2 fails");
                    }
                    bar.wait();
                })
            }));
            let reused = AtomicUsize::new(0);
            team.run(3, &|_, _| {
                reused.fetch_add(1, Ordering::SeqCst);
            });
            let _ = tx.send((result.is_err(), reused.load(Ordering::SeqCst)));
        });
        let (failed, reused) = rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("the team hung after a worker's part panicked");
        assert!(failed, "the worker's panic reaches the caller");
        assert_eq!(reused, 3);
    }

    #[test]
    #[should_panic(expected = "5 parts for a team of 4 threads")]
    fn more_parts_than_threads_is_refused() {
        Team::new(4).run(5, &|_, _| {});
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
