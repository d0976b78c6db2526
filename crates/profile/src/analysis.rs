//! Analysis of one latency curve: the frontier (non-dominated sizes, noise-aware), plateaus,
//! `snap`, the best size under a latency budget, and the hysteresis strength.

use crate::ProfileError;

/// One measured size of a curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CurvePoint {
    /// The axis value (hidden size, density, …).
    pub x: f64,
    pub median_ms: f64,
    /// Standard error of the median (0 when unknown).
    pub se_ms: f64,
}

impl CurvePoint {
    pub fn exact(x: f64, median_ms: f64) -> CurvePoint {
        CurvePoint {
            x,
            median_ms,
            se_ms: 0.0,
        }
    }

    /// From a ~95% confidence interval of the median.
    pub fn from_ci(x: f64, median_ms: f64, ci_low: f64, ci_high: f64) -> CurvePoint {
        let se_ms = ((ci_high - ci_low) / (2.0 * 1.96)).max(0.0);
        CurvePoint {
            x,
            median_ms,
            se_ms: if se_ms.is_finite() { se_ms } else { 0.0 },
        }
    }
}

/// How the frontier treats noise. A size d is left off the frontier only when a larger size f is
/// **clearly** at least as fast: `L(f) ≤ L(d) − noise_sigmas·√(se_d² + se_f²)`. Sizes within
/// noise of each other are ties, and ties stay on the frontier: deciding them by which size drew
/// the luckier samples made the frontier differ from sweep to sweep (measured on two 127-point
/// sweeps of our dense engine: 68% agreement with strict domination, 39% with a flat-stretch
/// thinning rule, 98% with this rule at 2σ; docs/benchmarks.md). Noise-free curves are exact:
/// with zero standard errors, equal or faster larger sizes exclude d, so a step curve keeps the
/// top of each step. `rel_tol` is the plateau tolerance (sizes within it form one plateau) and
/// does not move the frontier.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrontierOptions {
    pub rel_tol: f64,
    pub noise_sigmas: f64,
}

impl Default for FrontierOptions {
    fn default() -> Self {
        FrontierOptions {
            rel_tol: 0.01,
            noise_sigmas: 2.0,
        }
    }
}

/// A run of consecutive sizes whose latencies stay within a relative tolerance of each other.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Plateau {
    /// First and last index into the curve (inclusive).
    pub first: usize,
    pub last: usize,
    pub min_ms: f64,
    pub max_ms: f64,
}

/// The largest latency ratio of a smaller size over a larger one. Above 1 the curve has
/// hysteresis: `smaller` is that much slower than `larger`. At most 1 means monotonic.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hysteresis {
    pub strength: f64,
    /// Indices into the curve.
    pub smaller: usize,
    pub larger: usize,
}

/// Latency against one axis, ascending in the axis value, one point per value.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    points: Vec<CurvePoint>,
}

impl Curve {
    /// Sorts the points; rejects repeated axis values and latencies that are not positive.
    pub fn new(mut points: Vec<CurvePoint>) -> Result<Curve, ProfileError> {
        if let Some(p) = points.iter().find(|p| {
            !(p.x.is_finite()
                && p.median_ms.is_finite()
                && p.median_ms > 0.0
                && p.se_ms.is_finite())
        }) {
            return Err(ProfileError::Analysis(format!(
                "curve point {p:?} is not a positive finite latency"
            )));
        }
        points.sort_by(|a, b| a.x.total_cmp(&b.x));
        if let Some(w) = points.windows(2).find(|w| w[0].x == w[1].x) {
            return Err(ProfileError::Analysis(format!(
                "size {} appears twice in one curve",
                w[0].x
            )));
        }
        Ok(Curve { points })
    }

    pub fn points(&self) -> &[CurvePoint] {
        &self.points
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Index of axis value `x`, if measured (a binary search: the points are sorted by x).
    pub fn index_of(&self, x: f64) -> Option<usize> {
        let tol = 1e-9 * x.abs().max(1.0);
        let i = self.points.partition_point(|p| p.x < x - tol);
        (i < self.points.len() && (self.points[i].x - x).abs() <= tol).then_some(i)
    }

    /// Indices of the frontier, ascending. The largest size is always on it; every frontier
    /// point is strictly faster than every larger size. See `FrontierOptions` for the noise
    /// margin and when it applies.
    ///
    /// Point i is dominated when some larger size j has `m_j <= m_i - k·sqrt(se_i² + se_j²)`.
    /// Two suffix minima bound that test from both sides (`sqrt(a² + b²)` lies between
    /// `max(a, b)` and `a + b`), so almost every point is decided in O(1) and only the rare
    /// borderline ones scan their larger sizes: O(n) on measured tables where the pairwise
    /// scan (`frontier_reference`) took 1.9 s at 10 000 points and over 2 minutes at 100 000
    /// (docs/benchmarks.md, "Frontier and plot at 200 000 points").
    pub fn frontier(&self, opts: &FrontierOptions) -> Vec<usize> {
        let pts = &self.points;
        let n = pts.len();
        let k = opts.noise_sigmas;
        // min over j > i of m_j, and of m_j + k·se_j.
        let (mut min_m, mut min_mse) = (vec![f64::INFINITY; n], vec![f64::INFINITY; n]);
        for i in (0..n.saturating_sub(1)).rev() {
            let f = &pts[i + 1];
            min_m[i] = min_m[i + 1].min(f.median_ms);
            min_mse[i] = min_mse[i + 1].min(f.median_ms + k * f.se_ms);
        }
        (0..n)
            .filter(|&i| {
                let d = &pts[i];
                // A margin keeps the shortcuts off the borderline, where rounding could make
                // them disagree with the exact test.
                let eps = 1e-9 * d.median_ms.abs().max(1e-300);
                if min_mse[i] + k * d.se_ms < d.median_ms - eps {
                    return false; // dominated for sure
                }
                if min_m[i] + k * d.se_ms > d.median_ms + eps || min_mse[i] > d.median_ms + eps {
                    return true; // no larger size can dominate it
                }
                !Self::dominated_by_a_larger(pts, i, k)
            })
            .collect()
    }

    /// The exact test of [`Curve::frontier`] for point `i`: some larger size is faster by more
    /// than the noise margin.
    fn dominated_by_a_larger(pts: &[CurvePoint], i: usize, k: f64) -> bool {
        let d = &pts[i];
        pts[i + 1..].iter().any(|f| {
            let noise = k * (d.se_ms * d.se_ms + f.se_ms * f.se_ms).sqrt();
            f.median_ms <= d.median_ms - noise
        })
    }

    /// [`Curve::frontier`] by the definition, every pair compared: the reference the fast one is
    /// tested against.
    pub fn frontier_reference(&self, opts: &FrontierOptions) -> Vec<usize> {
        (0..self.points.len())
            .filter(|&i| !Self::dominated_by_a_larger(&self.points, i, opts.noise_sigmas))
            .collect()
    }

    /// Greedy left-to-right segmentation: a plateau grows while its max/min latency ratio stays
    /// within `1 + rel_tol`.
    pub fn plateaus(&self, rel_tol: f64) -> Vec<Plateau> {
        let mut out: Vec<Plateau> = Vec::new();
        for (i, p) in self.points.iter().enumerate() {
            let l = p.median_ms;
            match out.last_mut() {
                Some(pl) if pl.max_ms.max(l) <= pl.min_ms.min(l) * (1.0 + rel_tol) => {
                    pl.last = i;
                    pl.min_ms = pl.min_ms.min(l);
                    pl.max_ms = pl.max_ms.max(l);
                }
                _ => out.push(Plateau {
                    first: i,
                    last: i,
                    min_ms: l,
                    max_ms: l,
                }),
            }
        }
        out
    }

    /// `snap(x)`: the largest size whose latency is no higher than that of `x` (≥ `x`), or
    /// `None` when `x` was not measured.
    pub fn snap(&self, x: f64) -> Option<usize> {
        self.snap_within(x, 0.0)
    }

    /// `snap` allowing the larger size to be up to `rel_tol` slower.
    pub fn snap_within(&self, x: f64, rel_tol: f64) -> Option<usize> {
        let i = self.index_of(x)?;
        let limit = self.points[i].median_ms * (1.0 + rel_tol);
        (i..self.points.len())
            .rev()
            .find(|&j| self.points[j].median_ms <= limit)
    }

    /// [`Curve::snap`] of every point, in O(n log n): the suffix minima of the latencies do
    /// not decrease, so the last size at least as fast as point i is the last index whose
    /// suffix minimum is ≤ its latency (calling `snap` per point was quadratic; `symbiont
    /// frontier` reports it for every size).
    pub fn snap_all(&self) -> Vec<usize> {
        let n = self.points.len();
        let mut suffix_min = vec![f64::INFINITY; n];
        for i in (0..n).rev() {
            let next = suffix_min.get(i + 1).copied().unwrap_or(f64::INFINITY);
            suffix_min[i] = next.min(self.points[i].median_ms);
        }
        self.points
            .iter()
            .map(|p| suffix_min.partition_point(|&m| m <= p.median_ms) - 1)
            .collect()
    }

    /// The largest size whose median latency is within `budget_ms`.
    pub fn best_under(&self, budget_ms: f64) -> Option<usize> {
        (0..self.points.len())
            .rev()
            .find(|&j| self.points[j].median_ms <= budget_ms)
    }

    /// The hysteresis strength; `None` below two points.
    pub fn hysteresis(&self) -> Option<Hysteresis> {
        let n = self.points.len();
        if n < 2 {
            return None;
        }
        let mut best: Option<Hysteresis> = None;
        let mut min_after = n - 1; // index of the fastest size above i
        for i in (0..n - 1).rev() {
            if self.points[i + 1].median_ms < self.points[min_after].median_ms {
                min_after = i + 1;
            }
            let strength = self.points[i].median_ms / self.points[min_after].median_ms;
            if best.is_none_or(|b| strength > b.strength) {
                best = Some(Hysteresis {
                    strength,
                    smaller: i,
                    larger: min_after,
                });
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(ms: &[f64]) -> Curve {
        Curve::new(
            ms.iter()
                .enumerate()
                .map(|(i, &m)| CurvePoint::exact((i + 1) as f64, m))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn frontier_of_a_small_curve() {
        //            1    2    3    4    5    6
        let c = curve(&[1.0, 3.0, 2.0, 2.0, 4.0, 3.5]);
        assert_eq!(c.frontier(&FrontierOptions::default()), vec![0, 3, 5]);
        assert_eq!(c.snap(2.0), Some(3));
        assert_eq!(c.snap(5.0), Some(5));
        assert_eq!(c.snap(2.5), None);
        assert_eq!(c.best_under(2.5), Some(3));
        assert_eq!(c.best_under(0.5), None);
        let h = c.hysteresis().unwrap();
        assert_eq!((h.strength, h.smaller, h.larger), (1.5, 1, 3));
    }

    #[test]
    fn exact_curves_use_plain_domination_and_plateaus_group_the_ties() {
        let c = curve(&[1.0, 2.0, 1.97, 2.02, 1.99, 3.0]);
        // Zero standard errors: a larger size that is at least as fast excludes a size.
        assert_eq!(c.frontier(&FrontierOptions::default()), vec![0, 2, 4, 5]);
        let plateaus: Vec<_> = c.plateaus(0.05).iter().map(|p| (p.first, p.last)).collect();
        assert_eq!(plateaus, vec![(0, 0), (1, 4), (5, 5)]);
        assert_eq!(c.snap_within(2.0, 0.02), Some(4));
        // A rising curve keeps every size, however small the steps.
        let ms: Vec<f64> = (0..20).map(|i| 1.01f64.powi(i)).collect();
        assert_eq!(
            curve(&ms).frontier(&FrontierOptions::default()),
            (0..20).collect::<Vec<_>>()
        );
        let c = curve(&[1.0, 2.0, 2.001, 2.002, 1.999, 2.003, 3.0]);
        assert_eq!(c.frontier(&FrontierOptions::default()), vec![0, 4, 5, 6]);
    }

    #[test]
    fn sizes_within_noise_of_a_faster_larger_size_are_ties_and_stay() {
        let mut pts: Vec<CurvePoint> = [1.0, 2.0, 1.95, 2.1]
            .iter()
            .enumerate()
            .map(|(i, &m)| CurvePoint::exact(i as f64, m))
            .collect();
        let opts = FrontierOptions {
            rel_tol: 0.0,
            noise_sigmas: 1.0,
        };
        // Exact: 1.95 at size 2 excludes the slower size 1.
        assert_eq!(
            Curve::new(pts.clone()).unwrap().frontier(&opts),
            vec![0, 2, 3]
        );
        // With standard errors of 0.05 the 0.05 ms difference is within 1σ·√2: a tie, kept.
        for p in &mut pts[1..] {
            p.se_ms = 0.05;
        }
        assert_eq!(
            Curve::new(pts.clone()).unwrap().frontier(&opts),
            vec![0, 1, 2, 3]
        );
        // Clearly faster (beyond the noise) still excludes.
        pts[2].median_ms = 1.8;
        assert_eq!(Curve::new(pts).unwrap().frontier(&opts), vec![0, 2, 3]);
    }

    #[test]
    fn monotonic_curves_have_no_hysteresis() {
        let c = curve(&[1.0, 2.0, 4.0]);
        assert_eq!(c.frontier(&FrontierOptions::default()), vec![0, 1, 2]);
        assert_eq!(c.plateaus(0.5).len(), 3);
        assert_eq!(c.hysteresis().unwrap().strength, 0.5);
        assert!(Curve::new(vec![
            CurvePoint::exact(1.0, 1.0),
            CurvePoint::exact(1.0, 2.0)
        ])
        .is_err());
        assert!(Curve::new(vec![CurvePoint::exact(1.0, f64::NAN)]).is_err());
    }
}
