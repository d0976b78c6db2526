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

/// How the frontier treats noise. A size d is on the frontier when it is strictly faster than
/// every larger size, unless it is both
/// - within the margin `max(rel_tol·L, noise_sigmas·√(se_d² + se_f²))` of a larger frontier
///   size f (no more than "noise" faster), and
/// - level with its neighbourhood: within `noise_sigmas` standard errors of the size below it,
///   or within the margin of one of the (dominated) sizes between it and f. It then lies on a
///   flat stretch rather than on a rising slope.
///
/// Such a flat stretch belongs to its largest member: without this rule, whichever member of a
/// plateau drew the luckiest samples would appear on the frontier, differently in every sweep.
/// A rising curve keeps every size even where the steps between neighbours are small.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrontierOptions {
    pub rel_tol: f64,
    pub noise_sigmas: f64,
}

impl Default for FrontierOptions {
    fn default() -> Self {
        FrontierOptions {
            rel_tol: 0.01,
            noise_sigmas: 1.0,
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

    /// Index of axis value `x`, if measured.
    pub fn index_of(&self, x: f64) -> Option<usize> {
        self.points
            .iter()
            .position(|p| (p.x - x).abs() <= 1e-9 * x.abs().max(1.0))
    }

    /// Indices of the frontier, ascending. The largest size is always on it; every frontier
    /// point is strictly faster than every larger size. See `FrontierOptions` for the noise
    /// margin and when it applies.
    pub fn frontier(&self, opts: &FrontierOptions) -> Vec<usize> {
        let pts = &self.points;
        let noise = |a: &CurvePoint, b: &CurvePoint| {
            opts.noise_sigmas * (a.se_ms * a.se_ms + b.se_ms * b.se_ms).sqrt()
        };
        let margin = |a: &CurvePoint, b: &CurvePoint| {
            (opts.rel_tol * a.median_ms.min(b.median_ms)).max(noise(a, b))
        };
        let mut front: Vec<usize> = Vec::new(); // descending while built
        let mut suffix_min = f64::INFINITY;
        for (i, p) in pts.iter().enumerate().rev() {
            if p.median_ms < suffix_min {
                // Within the margin of a larger frontier size and level with its neighbourhood
                // (the size below, or a dominated size before that frontier size): a flat
                // stretch, which belongs to its largest member. A size that rises clearly above
                // the one below it, right before the next frontier size, sits on a slope.
                let near_larger = front
                    .iter()
                    .any(|&f| pts[f].median_ms - p.median_ms <= margin(p, &pts[f]));
                let flat_below =
                    i > 0 && p.median_ms - pts[i - 1].median_ms <= noise(&pts[i - 1], p);
                let next = front.last().copied().unwrap_or(pts.len());
                let flat_above = pts[i + 1..next]
                    .iter()
                    .any(|q| q.median_ms - p.median_ms <= margin(p, q));
                if !(near_larger && (flat_below || flat_above)) {
                    front.push(i);
                }
            }
            suffix_min = suffix_min.min(p.median_ms);
        }
        front.reverse();
        front
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
    fn tolerance_hands_a_noisy_plateau_to_its_largest_member() {
        let c = curve(&[1.0, 2.0, 1.97, 2.02, 1.99, 3.0]);
        let strict = FrontierOptions {
            rel_tol: 0.0,
            noise_sigmas: 0.0,
        };
        assert_eq!(c.frontier(&strict), vec![0, 2, 4, 5]);
        let tolerant = FrontierOptions {
            rel_tol: 0.03,
            noise_sigmas: 0.0,
        };
        assert_eq!(c.frontier(&tolerant), vec![0, 4, 5]);
        let plateaus: Vec<_> = c.plateaus(0.05).iter().map(|p| (p.first, p.last)).collect();
        assert_eq!(plateaus, vec![(0, 0), (1, 4), (5, 5)]);
        assert_eq!(c.snap_within(2.0, 0.02), Some(4));
    }

    #[test]
    fn a_rising_slope_keeps_sizes_within_the_tolerance() {
        // Steps of 1% everywhere: each size is within a 3% tolerance of the next, but rises
        // clearly (no noise) above the one below.
        let ms: Vec<f64> = (0..20).map(|i| 1.01f64.powi(i)).collect();
        let c = curve(&ms);
        let tolerant = FrontierOptions {
            rel_tol: 0.03,
            noise_sigmas: 1.0,
        };
        assert_eq!(c.frontier(&tolerant), (0..20).collect::<Vec<_>>());
        // The first size of a plateau rises above the previous plateau but is level with the
        // dominated size above it: it belongs to the plateau.
        let c = curve(&[1.0, 2.0, 2.001, 2.002, 1.999, 2.003, 3.0]);
        assert_eq!(c.frontier(&tolerant), vec![0, 5, 6]);
    }

    #[test]
    fn noise_margin_uses_standard_errors() {
        let mut pts: Vec<CurvePoint> = [1.0, 1.95, 1.951, 2.0]
            .iter()
            .enumerate()
            .map(|(i, &m)| CurvePoint::exact(i as f64, m))
            .collect();
        let noise_only = FrontierOptions {
            rel_tol: 0.0,
            noise_sigmas: 1.0,
        };
        assert_eq!(
            Curve::new(pts.clone()).unwrap().frontier(&noise_only),
            vec![0, 1, 2, 3]
        );
        for p in &mut pts[1..] {
            p.se_ms = 0.05;
        }
        assert_eq!(Curve::new(pts).unwrap().frontier(&noise_only), vec![0, 3]);
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
