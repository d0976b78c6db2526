//! `LatencyModel`: what size pickers ask of measured latency (implemented by targets and tables).

use crate::analysis::{Curve, CurvePoint, FrontierOptions};
use crate::axis::Axis;
use crate::table::{LatencyTable, TablePoint, Target};
use crate::Point;

/// Measured latency of configurations, and the decisions made from it along one axis. Points
/// that failed verification are not part of the model.
pub trait LatencyModel {
    /// Median latency (ms) of exactly this configuration, if measured.
    fn latency_ms(&self, point: &Point) -> Option<f64>;

    /// The curve through `base` along `axis` (every other field as in `base`; along `hidden`,
    /// an input size or gate width equal to the hidden size moves with it). `None` if no
    /// point of it was measured.
    fn curve_along(&self, base: &Point, axis: Axis) -> Option<Curve>;

    /// `point` moved to the largest size along `axis` whose latency is no higher than its own
    /// (itself at least); `None` if `point` was not measured.
    fn snap(&self, point: &Point, axis: Axis) -> Option<Point> {
        let c = self.curve_along(point, axis)?;
        let i = c.snap(axis.get(point))?;
        Some(axis.with(point, c.points()[i].x))
    }

    /// The largest size along `axis` (from `base`) whose median latency is within `budget_ms`.
    fn best_under_budget(&self, base: &Point, axis: Axis, budget_ms: f64) -> Option<Point> {
        let c = self.curve_along(base, axis)?;
        let i = c.best_under(budget_ms)?;
        Some(axis.with(base, c.points()[i].x))
    }

    /// The frontier of the curve through `base`, ascending.
    fn frontier(&self, base: &Point, axis: Axis, opts: &FrontierOptions) -> Vec<Point> {
        self.curve_along(base, axis).map_or(Vec::new(), |c| {
            c.frontier(opts)
                .into_iter()
                .map(|i| axis.with(base, c.points()[i].x))
                .collect()
        })
    }
}

fn usable(p: &TablePoint) -> bool {
    p.verified != Some(false)
}

/// The curve point of a table point: its median and, when recorded, its confidence interval.
pub fn curve_point(p: &TablePoint, axis: Axis) -> CurvePoint {
    let x = axis.get(&p.point());
    match (p.ci_low_ms, p.ci_high_ms) {
        (Some(lo), Some(hi)) => CurvePoint::from_ci(x, p.median_ms, lo, hi),
        _ => CurvePoint::exact(x, p.median_ms),
    }
}

impl LatencyModel for Target {
    fn latency_ms(&self, point: &Point) -> Option<f64> {
        self.find(point).filter(|p| usable(p)).map(|p| p.median_ms)
    }

    fn curve_along(&self, base: &Point, axis: Axis) -> Option<Curve> {
        let pts: Vec<CurvePoint> = self
            .points
            .iter()
            .filter(|p| usable(p))
            .filter(|p| {
                let q = p.point();
                axis.with(base, axis.get(&q)) == q
            })
            .map(|p| curve_point(p, axis))
            .collect();
        if pts.is_empty() {
            return None;
        }
        Curve::new(pts).ok()
    }
}

/// A table answers when exactly one of its targets does (select a target for the others).
impl LatencyModel for LatencyTable {
    fn latency_ms(&self, point: &Point) -> Option<f64> {
        unique(self.targets.iter().filter_map(|t| t.latency_ms(point)))
    }

    fn curve_along(&self, base: &Point, axis: Axis) -> Option<Curve> {
        unique(
            self.targets
                .iter()
                .filter_map(|t| t.curve_along(base, axis)),
        )
    }
}

fn unique<T>(mut it: impl Iterator<Item = T>) -> Option<T> {
    let first = it.next()?;
    it.next().is_none().then_some(first)
}
