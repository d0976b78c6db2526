//! Layer widths from measured latency (issue 13: the seed architecture and the final snap, and
//! the sizing ablations). The symbiotic rule gives a layer that needs `want` units the largest
//! measured width that is no slower than the smallest measured width ≥ `want`: on a curve with
//! latency hysteresis a dominated size is never kept, since the larger, no slower width is free
//! capacity. The ablation rules ignore the measurements: the width as asked (smaller is better)
//! or rounded up to a multiple (the usual "multiple of 64" habit).

use crate::FlowError;
use profile::{Axis, LatencyModel, Point};
use std::fmt;
use std::str::FromStr;

/// How a layer's width is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizingRule {
    /// Snap up along the measured curve to the largest width that is no slower.
    Frontier,
    /// The width asked for (the "smaller is better" ablation).
    AsIs,
    /// The width rounded up to a multiple of this (the "multiples of 64" ablation).
    Multiple(usize),
}

impl fmt::Display for SizingRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizingRule::Frontier => f.write_str("frontier"),
            SizingRule::AsIs => f.write_str("as-is"),
            SizingRule::Multiple(m) => write!(f, "multiple:{m}"),
        }
    }
}

impl FromStr for SizingRule {
    type Err = String;

    /// `frontier`, `as-is`, or `multiple:N` (N ≥ 1).
    fn from_str(s: &str) -> Result<SizingRule, String> {
        match s {
            "frontier" => Ok(SizingRule::Frontier),
            "as-is" => Ok(SizingRule::AsIs),
            _ => s
                .strip_prefix("multiple:")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&n| n >= 1)
                .map(SizingRule::Multiple)
                .ok_or_else(|| {
                    format!(
                        "unknown sizing rule `{s}`: expected frontier, as-is or multiple:N (N ≥ 1)"
                    )
                }),
        }
    }
}

/// The width a layer that needs at least `want` units gets under `rule`, on the target whose
/// latency `model` holds along the hidden axis through `base` (its layers, batch, seq, threads,
/// dtype and density fix the curve).
pub fn layer_width(
    rule: SizingRule,
    model: &dyn LatencyModel,
    base: &Point,
    want: usize,
) -> Result<usize, FlowError> {
    if want == 0 {
        return Err(FlowError::Invalid("a layer needs at least one unit".into()));
    }
    match rule {
        SizingRule::AsIs => Ok(want),
        SizingRule::Multiple(m) => Ok(want.next_multiple_of(m.max(1))),
        SizingRule::Frontier => {
            let curve = model
                .curve_along(base, Axis::Hidden)
                .ok_or_else(|| no_curve(base))?;
            let points = curve.points();
            let first_fit = points
                .iter()
                .position(|p| p.x >= want as f64)
                .ok_or_else(|| {
                    FlowError::Invalid(format!(
                        "width {want} is above the largest measured one ({}); profile wider sizes",
                        points.last().map_or(0.0, |p| p.x)
                    ))
                })?;
            let i = curve.snap(points[first_fit].x).unwrap_or(first_fit);
            Ok(points[i].x.round() as usize)
        }
    }
}

/// Latency-budget mode: the widest measured layer whose median latency is within `budget_ms`.
pub fn widest_under_budget(
    model: &dyn LatencyModel,
    base: &Point,
    budget_ms: f64,
) -> Result<usize, FlowError> {
    if !(budget_ms.is_finite() && budget_ms > 0.0) {
        return Err(FlowError::Invalid(format!(
            "the latency budget must be a positive number of ms (got {budget_ms})"
        )));
    }
    let curve = model
        .curve_along(base, Axis::Hidden)
        .ok_or_else(|| no_curve(base))?;
    let i = curve.best_under(budget_ms).ok_or_else(|| {
        FlowError::Invalid(format!(
            "no measured width runs within {budget_ms} ms (the fastest takes {:.3} ms)",
            curve
                .points()
                .iter()
                .map(|p| p.median_ms)
                .fold(f64::INFINITY, f64::min)
        ))
    })?;
    Ok(curve.points()[i].x.round() as usize)
}

fn no_curve(base: &Point) -> FlowError {
    FlowError::Invalid(format!(
        "the latency table has no curve along hidden for layers {}, gate width {}, batch {}, seq {}, threads {}, {} at density {} (profile the target at that configuration)",
        base.layers, base.gate_width, base.batch, base.seq, base.threads, base.dtype, base.density
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use profile::{Curve, CurvePoint};

    /// A measured curve with hysteresis: latency grows with width, except that 512 runs faster
    /// than 384 and 448 (and 1024 is as fast as 960).
    struct Measured;

    const LATENCY: [(usize, f64); 16] = [
        (64, 0.10),
        (128, 0.20),
        (192, 0.30),
        (256, 0.40),
        (320, 0.50),
        (384, 0.60),
        (448, 0.70),
        (512, 0.55),
        (576, 0.90),
        (640, 1.00),
        (704, 1.10),
        (768, 1.20),
        (832, 1.30),
        (896, 1.40),
        (960, 1.50),
        (1024, 1.50),
    ];

    impl LatencyModel for Measured {
        fn latency_ms(&self, p: &Point) -> Option<f64> {
            LATENCY
                .iter()
                .find(|(h, _)| *h == p.hidden)
                .map(|(_, ms)| *ms)
        }

        fn curve_along(&self, base: &Point, axis: Axis) -> Option<Curve> {
            (axis == Axis::Hidden && base.batch == 1).then(|| {
                Curve::new(
                    LATENCY
                        .iter()
                        .map(|&(h, ms)| CurvePoint::exact(h as f64, ms))
                        .collect(),
                )
                .unwrap()
            })
        }
    }

    #[test]
    fn the_frontier_rule_never_keeps_a_dominated_width() {
        let base = Point::lstm(64);
        let width = |want| layer_width(SizingRule::Frontier, &Measured, &base, want).unwrap();
        // 400 units: the smallest measured width that fits is 448, which 512 beats.
        assert_eq!(width(400), 512);
        assert_eq!(width(330), 512, "384 and 448 are slower than 512 too");
        assert_eq!(width(300), 320, "nothing larger is as fast as 320");
        assert_eq!(width(512), 512);
        assert_eq!(width(950), 1024, "equal latency: the larger width is free");
        assert_eq!(width(1), 64);
        // The ablations ignore the measurements.
        assert_eq!(
            layer_width(SizingRule::AsIs, &Measured, &base, 400).unwrap(),
            400
        );
        let m64 = layer_width(SizingRule::Multiple(64), &Measured, &base, 400).unwrap();
        assert_eq!(m64, 448);
    }

    #[test]
    fn budgets_and_bad_requests() {
        let base = Point::lstm(64);
        assert_eq!(widest_under_budget(&Measured, &base, 0.58).unwrap(), 512);
        assert_eq!(widest_under_budget(&Measured, &base, 0.45).unwrap(), 256);
        let err = widest_under_budget(&Measured, &base, 0.05)
            .unwrap_err()
            .to_string();
        assert!(err.contains("0.100 ms"), "{err}");
        assert!(widest_under_budget(&Measured, &base, f64::NAN).is_err());
        let err = layer_width(SizingRule::Frontier, &Measured, &base, 2000).unwrap_err();
        assert!(
            err.to_string().contains("largest measured one (1024)"),
            "{err}"
        );
        let other = Point {
            batch: 16,
            ..Point::lstm(64)
        };
        let err = layer_width(SizingRule::Frontier, &Measured, &other, 100).unwrap_err();
        assert!(err.to_string().contains("batch 16"), "{err}");
        assert!(layer_width(SizingRule::AsIs, &Measured, &base, 0).is_err());
    }

    #[test]
    fn rules_parse_and_print() {
        for s in ["frontier", "as-is", "multiple:64"] {
            assert_eq!(s.parse::<SizingRule>().unwrap().to_string(), s);
        }
        assert!("multiple:0".parse::<SizingRule>().is_err());
        assert!("smallest"
            .parse::<SizingRule>()
            .unwrap_err()
            .contains("multiple:N"));
    }
}
