//! The one small timing loop of the kernel-level measurements (`symbiont peak`, the `few_rows`
//! and `kernel_rates` examples): one untimed warm-up call, then the median of `reps` timed calls.
//! Sweeps and plans have their own, statistically fuller harness (`symbiont-profile`).

use std::time::Instant;

/// Median seconds of `reps` (≥ 1) calls of `f`, after one untimed call.
pub fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut v: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_warm_up_and_every_rep_and_returns_a_sample() {
        let mut calls = 0;
        let t = median_secs(5, || calls += 1);
        assert_eq!(calls, 6);
        assert!(t.is_finite() && t >= 0.0);
        let mut calls = 0;
        median_secs(0, || calls += 1);
        assert_eq!(calls, 2, "at least one timed call");
    }
}
