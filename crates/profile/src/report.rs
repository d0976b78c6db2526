//! Frontier reports of whole tables: curves per target, and what `symbiont frontier` prints
//! (JSON or text).

use crate::analysis::{Curve, FrontierOptions};
use crate::axis::{group_curves, Axis};
use crate::model::curve_point;
use crate::table::{LatencyTable, TablePoint, Target};
use crate::Point;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

type SizeField = fn(&Point) -> usize;

/// One curve of a table: its points (ascending along the axis) and their `Curve`.
pub struct TableCurve<'a> {
    pub target: &'a Target,
    pub points: Vec<&'a TablePoint>,
    pub curve: Curve,
    /// Points of this curve left out because they failed verification.
    pub excluded: Vec<&'a TablePoint>,
}

impl TableCurve<'_> {
    /// The fields that are the same along the curve (all but the axis); a tied input size or
    /// gate width reads "hidden".
    pub fn fixed(&self, axis: Axis) -> BTreeMap<String, Value> {
        let pts: Vec<Point> = self.points.iter().map(|p| p.point()).collect();
        let mut out = BTreeMap::new();
        let Some(first) = pts.first() else { return out };
        let v = serde_json::to_value(first).expect("a Point serializes");
        for (k, val) in v.as_object().expect("an object") {
            if k != axis.name() {
                out.insert(k.clone(), val.clone());
            }
        }
        if axis == Axis::Hidden {
            let fields: [(&str, SizeField); 2] =
                [("input", |p| p.input), ("gate_width", |p| p.gate_width)];
            for (name, field) in fields {
                if pts.iter().all(|p| field(p) == p.hidden) {
                    out.insert(name.into(), "hidden".into());
                }
            }
        }
        out
    }
}

/// Every curve of every target along `axis`. Points that failed verification are left out
/// unless `include_unverified`.
pub fn table_curves(
    table: &LatencyTable,
    axis: Axis,
    include_unverified: bool,
) -> Vec<TableCurve<'_>> {
    let mut out = Vec::new();
    for target in &table.targets {
        let configs: Vec<Point> = target.points.iter().map(TablePoint::point).collect();
        for idx in group_curves(&configs, axis) {
            let (points, excluded): (Vec<&TablePoint>, Vec<&TablePoint>) = idx
                .iter()
                .map(|&i| &target.points[i])
                .partition(|p| include_unverified || p.verified != Some(false));
            if points.is_empty() {
                continue;
            }
            let curve = Curve::new(points.iter().map(|p| curve_point(p, axis)).collect())
                .expect("validated tables have distinct positive points");
            out.push(TableCurve {
                target,
                points,
                curve,
                excluded,
            });
        }
    }
    out
}

/// What to compute for `symbiont frontier`.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    pub axis: Axis,
    pub frontier: FrontierOptions,
    /// Relative tolerance of plateau segmentation.
    pub plateau_tol: f64,
    pub include_unverified: bool,
    /// Also report the best size under this latency (ms).
    pub budget_ms: Option<f64>,
    /// Also report snap of this size.
    pub snap: Option<f64>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            axis: Axis::Hidden,
            frontier: FrontierOptions::default(),
            plateau_tol: 0.05,
            include_unverified: false,
            budget_ms: None,
            snap: None,
        }
    }
}

/// `symbiont frontier --json`.
#[derive(Serialize)]
pub struct Report {
    pub axis: &'static str,
    pub complete: bool,
    /// The frontier points of every curve, in curve order.
    pub frontier: Vec<ReportPoint>,
    pub curves: Vec<CurveReport>,
}

#[derive(Serialize)]
pub struct ReportPoint {
    pub target: String,
    #[serde(flatten)]
    pub point: TablePoint,
}

#[derive(Serialize)]
pub struct CurveReport {
    pub target: String,
    pub engine: String,
    pub engine_version: String,
    pub device: String,
    pub fixed: BTreeMap<String, Value>,
    pub sizes: usize,
    pub frontier: Vec<ReportPoint>,
    pub plateaus: Vec<PlateauReport>,
    pub hysteresis: Option<HysteresisReport>,
    /// `[size, snap(size)]` for every size.
    pub snap: Vec<[Value; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_under_budget: Option<BudgetReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapped: Option<[Value; 2]>,
    /// Sizes left out because they failed verification.
    pub excluded: Vec<Value>,
}

#[derive(Serialize)]
pub struct PlateauReport {
    pub from: Value,
    pub to: Value,
    pub sizes: usize,
    pub min_ms: f64,
    pub max_ms: f64,
}

#[derive(Serialize)]
pub struct HysteresisReport {
    /// Largest latency ratio of a smaller size over a larger one (> 1: hysteresis).
    pub strength: f64,
    pub smaller: Value,
    pub smaller_ms: f64,
    pub larger: Value,
    pub larger_ms: f64,
    /// Whether the gap exceeds the frontier's noise margin.
    pub significant: bool,
}

#[derive(Serialize)]
pub struct BudgetReport {
    pub budget_ms: f64,
    pub best: Option<ReportPoint>,
}

/// An axis value as JSON: integers for sizes, reals for density.
pub fn axis_value(axis: Axis, x: f64) -> Value {
    if axis == Axis::Density {
        x.into()
    } else {
        (x.round() as u64).into()
    }
}

fn report_point(target: &Target, p: &TablePoint) -> ReportPoint {
    let mut point = p.clone();
    point.samples_ms = None;
    ReportPoint {
        target: target.label.clone(),
        point,
    }
}

pub fn report(table: &LatencyTable, opts: &ReportOptions) -> Report {
    let axis = opts.axis;
    let ax = |x: f64| axis_value(axis, x);
    let mut curves = Vec::new();
    for tc in table_curves(table, axis, opts.include_unverified) {
        let c = &tc.curve;
        let cp = c.points();
        let rp = |i: usize| report_point(tc.target, tc.points[i]);
        let hysteresis = c.hysteresis().map(|h| {
            let (s, l) = (cp[h.smaller], cp[h.larger]);
            let margin = (opts.frontier.rel_tol * s.median_ms)
                .max(opts.frontier.noise_sigmas * (s.se_ms.powi(2) + l.se_ms.powi(2)).sqrt());
            HysteresisReport {
                strength: h.strength,
                smaller: ax(s.x),
                smaller_ms: s.median_ms,
                larger: ax(l.x),
                larger_ms: l.median_ms,
                significant: s.median_ms - l.median_ms > margin,
            }
        });
        curves.push(CurveReport {
            target: tc.target.label.clone(),
            engine: tc.target.engine.name.clone(),
            engine_version: tc.target.engine.version.clone(),
            device: tc.target.device.clone(),
            fixed: tc.fixed(axis),
            sizes: c.len(),
            frontier: c.frontier(&opts.frontier).into_iter().map(rp).collect(),
            plateaus: c
                .plateaus(opts.plateau_tol)
                .into_iter()
                .map(|p| PlateauReport {
                    from: ax(cp[p.first].x),
                    to: ax(cp[p.last].x),
                    sizes: p.last - p.first + 1,
                    min_ms: p.min_ms,
                    max_ms: p.max_ms,
                })
                .collect(),
            hysteresis,
            snap: cp
                .iter()
                .zip(c.snap_all())
                .map(|(p, j)| [ax(p.x), ax(cp[j].x)])
                .collect(),
            best_under_budget: opts.budget_ms.map(|b| BudgetReport {
                budget_ms: b,
                best: c.best_under(b).map(rp),
            }),
            snapped: opts
                .snap
                .map(|x| [ax(x), c.snap(x).map_or(Value::Null, |i| ax(cp[i].x))]),
            excluded: tc
                .excluded
                .iter()
                .map(|p| ax(axis.get(&p.point())))
                .collect(),
        });
    }
    Report {
        axis: axis.name(),
        complete: table.complete,
        frontier: curves
            .iter()
            .flat_map(|c| c.frontier.iter().map(clone_rp))
            .collect(),
        curves,
    }
}

fn clone_rp(r: &ReportPoint) -> ReportPoint {
    ReportPoint {
        target: r.target.clone(),
        point: r.point.clone(),
    }
}

impl Report {
    /// The report for people.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        if !self.complete {
            s += "note: the table is incomplete\n";
        }
        for c in &self.curves {
            let fixed: Vec<String> = c
                .fixed
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().map_or(v.to_string(), str::to_string)))
                .collect();
            let engine = [c.engine.as_str(), c.engine_version.as_str()].join(" ");
            s += &format!(
                "{} ({} on {}): {} sizes along {}; {}\n",
                c.target,
                engine.trim(),
                c.device,
                c.sizes,
                self.axis,
                fixed.join(" ")
            );
            s += &format!("  frontier ({} sizes):\n", c.frontier.len());
            for f in &c.frontier {
                let x = axis_value_of(self.axis, &f.point);
                let spread = match (f.point.p10_ms, f.point.p90_ms) {
                    (Some(a), Some(b)) => format!("  p10-p90 {a:.4}-{b:.4}"),
                    _ => String::new(),
                };
                let ver = match f.point.verified {
                    Some(true) => "  verified",
                    Some(false) => "  FAILED verification",
                    None => "",
                };
                s += &format!("    {x:>8}  {:>10.4} ms{spread}{ver}\n", f.point.median_ms);
            }
            let levels = c.plateaus.iter().filter(|p| p.sizes > 1).count();
            s += &format!(
                "  plateaus: {} ({} of more than one size)\n",
                c.plateaus.len(),
                levels
            );
            if let Some(h) = &c.hysteresis {
                s += &format!(
                    "  hysteresis strength {:.3}: {} takes {:.4} ms, {} takes {:.4} ms{}\n",
                    h.strength,
                    h.smaller,
                    h.smaller_ms,
                    h.larger,
                    h.larger_ms,
                    if h.significant { "" } else { " (within noise)" }
                );
            }
            if let Some(b) = &c.best_under_budget {
                match &b.best {
                    Some(p) => {
                        s += &format!(
                            "  best under {} ms: {} ({:.4} ms)\n",
                            b.budget_ms,
                            axis_value_of(self.axis, &p.point),
                            p.point.median_ms
                        )
                    }
                    None => s += &format!("  best under {} ms: none\n", b.budget_ms),
                }
            }
            if let Some([from, to]) = &c.snapped {
                s += &format!("  snap({from}) = {to}\n");
            }
            if !c.excluded.is_empty() {
                let ex: Vec<String> = c.excluded.iter().map(Value::to_string).collect();
                s += &format!("  left out (failed verification): {}\n", ex.join(", "));
            }
        }
        s
    }
}

fn axis_value_of(axis: &str, p: &TablePoint) -> Value {
    let a = Axis::parse(axis).expect("report axes are valid");
    axis_value(a, a.get(&p.point()))
}

/// How two frontiers (e.g. of two consecutive sweeps) agree, matching points by configuration.
#[derive(Serialize)]
pub struct Comparison {
    pub common: usize,
    pub only_first: Vec<Value>,
    pub only_second: Vec<Value>,
    /// common / size of the union.
    pub agreement: f64,
    /// common / size of the first frontier.
    pub first_found_in_second: f64,
}

pub fn compare(first: &Report, second: &Report) -> Comparison {
    let axis = Axis::parse(first.axis).expect("report axes are valid");
    let cfg = |r: &ReportPoint| r.point.point();
    let a: Vec<Point> = first.frontier.iter().map(cfg).collect();
    let b: Vec<Point> = second.frontier.iter().map(cfg).collect();
    let common = a.iter().filter(|p| b.contains(p)).count();
    let only = |x: &[Point], y: &[Point]| -> Vec<Value> {
        x.iter()
            .filter(|p| !y.contains(p))
            .map(|p| axis_value(axis, axis.get(p)))
            .collect()
    };
    let union = a.len() + b.len() - common;
    Comparison {
        common,
        only_first: only(&a, &b),
        only_second: only(&b, &a),
        agreement: if union == 0 {
            1.0
        } else {
            common as f64 / union as f64
        },
        first_found_in_second: if a.is_empty() {
            1.0
        } else {
            common as f64 / a.len() as f64
        },
    }
}
