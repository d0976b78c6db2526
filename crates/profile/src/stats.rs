//! Sample statistics for latency: quantiles, the order-statistic confidence interval of the
//! median, a robust noise estimate, and their summary per configuration.

/// Quantile `q` in [0, 1] of sorted samples, linearly interpolated (R's type 7).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "quantile of no samples");
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// A distribution-free ~95% confidence interval of the median from order statistics: the
/// ranks n/2 ± 0.98·√n (the normal approximation of the binomial). Exact coverage is
/// impossible below 6 samples, where it is the whole range.
pub fn median_ci(sorted: &[f64]) -> (f64, f64) {
    let n = sorted.len();
    assert!(n > 0, "median_ci of no samples");
    let half = 0.98 * (n as f64).sqrt();
    let lo = ((n as f64 / 2.0 - half).floor() as isize).max(1) as usize;
    let hi = ((1.0 + n as f64 / 2.0 + half).ceil() as usize).min(n);
    (sorted[lo - 1], sorted[hi - 1])
}

/// What a configuration's samples say.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
    /// ~95% confidence interval of the median (see `summarize`).
    pub ci_low: f64,
    pub ci_high: f64,
    /// Robust relative spread of single samples: IQR / 1.349 / median (σ/median for normal noise).
    pub noise: f64,
    pub repetitions: usize,
    pub visits: usize,
}

impl Summary {
    /// Half-width of the confidence interval relative to the median.
    pub fn rel_ci(&self) -> f64 {
        (self.ci_high - self.ci_low) / (2.0 * self.median)
    }
}

/// Summarizes `samples` (all visits pooled) given the median of each visit. The interval is
/// the order-statistic interval of the pooled samples, widened to ±1.96 standard errors of the
/// visit medians when there are several visits: samples of one visit share its conditions
/// (cache, frequency, neighbours' load), so disagreement between visits is the honest error.
pub fn summarize(samples: &[f64], visit_medians: &[f64]) -> Summary {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let median = quantile(&s, 0.5);
    let (mut ci_low, mut ci_high) = median_ci(&s);
    let v = visit_medians.len();
    if v >= 2 {
        let mean = visit_medians.iter().sum::<f64>() / v as f64;
        let var = visit_medians
            .iter()
            .map(|m| (m - mean).powi(2))
            .sum::<f64>()
            / (v - 1) as f64;
        let half = 1.96 * (var / v as f64).sqrt();
        ci_low = ci_low.min(median - half).max(0.0);
        ci_high = ci_high.max(median + half);
    }
    let noise = (quantile(&s, 0.75) - quantile(&s, 0.25)) / 1.349 / median;
    Summary {
        median,
        p10: quantile(&s, 0.1),
        p90: quantile(&s, 0.9),
        ci_low,
        ci_high,
        noise,
        repetitions: s.len(),
        visits: v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let s = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&s, 0.5), 3.0);
        assert_eq!(quantile(&s, 0.1), 1.4);
        assert_eq!(quantile(&[7.0], 0.9), 7.0);
    }

    #[test]
    fn median_ci_narrows_with_samples_and_covers_the_median() {
        let s: Vec<f64> = (1..=5).map(|x| x as f64).collect();
        assert_eq!(median_ci(&s), (1.0, 5.0));
        let s: Vec<f64> = (1..=100).map(|x| x as f64).collect();
        // Ranks 40 and 61: the textbook interval for n = 100.
        assert_eq!(median_ci(&s), (40.0, 61.0));
    }

    #[test]
    fn disagreeing_visits_widen_the_interval() {
        let a: Vec<f64> = (0..100).map(|i| 10.0 + (i % 5) as f64 * 0.01).collect();
        let tight = summarize(&a, &[10.02, 10.02, 10.02]);
        let wide = summarize(&a, &[9.0, 10.0, 11.0]);
        assert!(tight.rel_ci() < 0.002, "{tight:?}");
        assert!(wide.rel_ci() > 0.1, "{wide:?}");
        assert_eq!(wide.median, tight.median);
        assert_eq!((wide.repetitions, wide.visits), (100, 3));
    }
}
