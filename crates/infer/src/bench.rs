//! Timing helpers shared by `symbiont bench` and the profiler's CPU engines: repeated runs with
//! warm-up and order statistics, and the machine's memory bandwidth measured in the same run.

use rayon::prelude::*;
use std::time::Instant;

/// Latency samples of one configuration, in milliseconds.
#[derive(Clone, Debug)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    /// The q-quantile (nearest rank) of the samples.
    pub fn quantile(&self, q: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        v[i.min(v.len() - 1)]
    }

    pub fn median(&self) -> f64 {
        self.quantile(0.5)
    }
}

/// Runs `f` `warmup` times untimed, then until both `min_reps` runs and `min_secs` seconds are
/// done (at most `max_reps`), timing each run.
pub fn time_runs(
    warmup: usize,
    min_reps: usize,
    max_reps: usize,
    min_secs: f64,
    mut f: impl FnMut(),
) -> Samples {
    for _ in 0..warmup {
        f();
    }
    let mut out = Vec::new();
    let start = Instant::now();
    while out.len() < max_reps.max(1)
        && (out.len() < min_reps || start.elapsed().as_secs_f64() < min_secs)
    {
        let t = Instant::now();
        f();
        out.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Samples(out)
}

/// Memory bandwidth of this machine at the current rayon thread count, over 256 MiB buffers
/// (far beyond the caches).
#[derive(Clone, Copy, Debug)]
pub struct Bandwidth {
    /// Bytes read plus bytes written per second by a parallel copy, GB/s.
    pub copy_gbs: f64,
    /// Bytes read per second by a parallel sum (what streaming weights needs), GB/s.
    pub read_gbs: f64,
}

pub fn memory_bandwidth() -> Bandwidth {
    let n = 64 << 20;
    let src: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
    let mut dst = vec![0f32; n];
    let chunk = n.div_ceil(rayon::current_num_threads()).max(1 << 16);
    let copy = time_runs(1, 5, 5, 0.0, || {
        dst.par_chunks_mut(chunk)
            .zip(src.par_chunks(chunk))
            .for_each(|(d, s)| d.copy_from_slice(s));
    });
    let read = time_runs(1, 5, 5, 0.0, || {
        let s: f32 = src
            .par_chunks(chunk)
            .map(|c| {
                // Sixteen lanes so the sum vectorizes and the loads, not the adds, limit it.
                let mut lanes = [0f32; 16];
                for v in c.chunks_exact(16) {
                    for l in 0..16 {
                        lanes[l] += v[l];
                    }
                }
                lanes.iter().sum::<f32>()
            })
            .sum();
        std::hint::black_box(s);
    });
    std::hint::black_box(&dst);
    let bytes = (n * 4) as f64;
    Bandwidth {
        copy_gbs: 2.0 * bytes / copy.median() / 1e6,
        read_gbs: bytes / read.median() / 1e6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_order_statistics() {
        let s = Samples(vec![5.0, 1.0, 4.0, 2.0, 3.0]);
        assert_eq!(s.median(), 3.0);
        assert_eq!(s.quantile(0.0), 1.0);
        assert_eq!(s.quantile(1.0), 5.0);
        assert_eq!(s.quantile(0.1), 1.0);
    }

    #[test]
    fn time_runs_honours_the_repetition_bounds() {
        let mut calls = 0;
        let s = time_runs(2, 3, 10, 0.0, || calls += 1);
        assert_eq!(s.0.len(), 3);
        assert_eq!(calls, 5);
        let s = time_runs(0, 1, 4, 10.0, || {
            std::thread::sleep(std::time::Duration::from_millis(1))
        });
        assert_eq!(s.0.len(), 4, "max_reps caps a long min_secs");
    }
}
