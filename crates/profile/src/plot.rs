//! SVG charts of latency against size: one line per curve, frontier points filled, plateaus
//! shaded, several tables overlaid with a legend. SVG only: plotters' bitmap backend needs
//! system font libraries.

use crate::analysis::{Curve, FrontierOptions};
use crate::axis::Axis;
use crate::report::table_curves;
use crate::table::LatencyTable;
use crate::ProfileError;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub curve: Curve,
}

#[derive(Clone, Debug)]
pub struct PlotOptions {
    pub axis: Axis,
    pub title: Option<String>,
    pub width: u32,
    pub height: u32,
    /// `None`: logarithmic when the latencies span more than a factor of 20.
    pub log_y: Option<bool>,
    /// Mark the frontier computed with these options (`None`: do not).
    pub frontier: Option<FrontierOptions>,
    /// Shade plateaus found with this tolerance (`None`: do not).
    pub plateau_tol: Option<f64>,
}

impl Default for PlotOptions {
    fn default() -> Self {
        PlotOptions {
            axis: Axis::Hidden,
            title: None,
            width: 1000,
            height: 600,
            log_y: None,
            frontier: Some(FrontierOptions::default()),
            plateau_tol: Some(0.05),
        }
    }
}

/// The curves of several tables, labelled by what tells them apart: the table name (when there
/// are several tables), the target, and the fields that differ between curves.
pub fn series_from_tables(
    tables: &[(String, LatencyTable)],
    axis: Axis,
    include_unverified: bool,
) -> Vec<Series> {
    let mut raw = Vec::new();
    for (name, table) in tables {
        for tc in table_curves(table, axis, include_unverified) {
            raw.push((
                name.clone(),
                tc.target.label.clone(),
                tc.fixed(axis),
                tc.curve,
            ));
        }
    }
    let names: BTreeSet<&String> = raw.iter().map(|r| &r.0).collect();
    let targets: BTreeSet<&String> = raw.iter().map(|r| &r.1).collect();
    let keys: BTreeSet<&String> = raw.iter().flat_map(|r| r.2.keys()).collect();
    let varying: Vec<&String> = keys
        .into_iter()
        .filter(|k| raw.iter().any(|r| r.2.get(*k) != raw[0].2.get(*k)))
        .collect();
    raw.iter()
        .map(|(name, target, fixed, curve)| {
            let mut parts = Vec::new();
            if names.len() > 1 {
                parts.push(name.clone());
            }
            if (targets.len() > 1 || parts.is_empty() && varying.is_empty())
                && !parts.contains(target)
            {
                parts.push(target.clone());
            }
            for k in &varying {
                let v = fixed.get(*k).map_or("-".to_string(), |v| {
                    v.as_str().map_or(v.to_string(), str::to_string)
                });
                parts.push(format!("{k}={v}"));
            }
            Series {
                label: parts.join(" "),
                curve: curve.clone(),
            }
        })
        .collect()
}

/// The chart as SVG text.
pub fn render_svg(series: &[Series], opts: &PlotOptions) -> Result<String, ProfileError> {
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.curve.points().iter().map(|p| (p.x, p.median_ms)))
        .collect();
    if pts.is_empty() {
        return Err(ProfileError::Plot(
            "nothing to draw: no measured points".into(),
        ));
    }
    let (x0, x1) = bounds(pts.iter().map(|p| p.0));
    let (y0, y1) = bounds(pts.iter().map(|p| p.1));
    check_drawable(y0, y1)?;
    let log = y0 > 0.0 && opts.log_y.unwrap_or(y1 > 20.0 * y0);
    let pad = (x1 - x0).max(1e-9) * 0.02;
    let xr = (x0 - pad)..(x1 + pad);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (opts.width, opts.height)).into_drawing_area();
        if log {
            draw(&root, series, opts, xr, (y0 / 1.15..y1 * 1.15).log_scale())
        } else {
            draw(&root, series, opts, xr, 0.0..y1 * 1.08)
        }
        .map_err(ProfileError::Plot)?;
        root.present()
            .map_err(|e| ProfileError::Plot(e.to_string()))?;
    }
    Ok(svg)
}

/// Writes the chart; the file name must end in `.svg`.
pub fn write_svg(path: &Path, series: &[Series], opts: &PlotOptions) -> Result<(), ProfileError> {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase) {
        Some(e) if e == "svg" => {}
        Some(e) if e == "png" => {
            return Err(ProfileError::Plot(
                "PNG is not supported (it would need system font libraries); write .svg and convert it, e.g. `rsvg-convert -o plot.png plot.svg`".into(),
            ))
        }
        _ => return Err(ProfileError::Plot(format!("{}: the output file must end in .svg", path.display()))),
    }
    let svg = render_svg(series, opts)?;
    std::fs::write(path, svg).map_err(|e| ProfileError::io(path, e))
}

/// Most decades of latency one chart shows. plotters' log axis loops forever once the padded
/// range's ratio overflows f64 (latencies 1e-160..1e160 hung `symbiont plot`); real tables span a
/// few decades, so a wider one is refused as what it is, corrupt or mixed-up values.
const MAX_DECADES: f64 = 30.0;

/// Refuses latency ranges no axis can draw: non-finite, or wider than [`MAX_DECADES`].
fn check_drawable(y0: f64, y1: f64) -> Result<(), ProfileError> {
    if !(y0.is_finite() && y1.is_finite()) || y1 * 1.15 > f64::MAX / 2.0 {
        return Err(ProfileError::Plot(format!(
            "latencies from {y0:e} to {y1:e} ms cannot be drawn (not finite, or too close to \
             the largest f64)"
        )));
    }
    if y0 > 0.0 && (y1 / y0).log10() > MAX_DECADES {
        return Err(ProfileError::Plot(format!(
            "latencies span {y0:e} to {y1:e} ms, {:.0} decades: more than the {MAX_DECADES} a \
             chart shows; check the table for corrupt values",
            (y1 / y0).log10()
        )));
    }
    Ok(())
}

fn bounds(v: impl Iterator<Item = f64>) -> (f64, f64) {
    v.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    })
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

fn draw<DB: DrawingBackend, Y>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    series: &[Series],
    opts: &PlotOptions,
    xr: Range<f64>,
    yr: Y,
) -> Result<(), String>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let mut title = opts
        .title
        .clone()
        .unwrap_or_else(|| format!("latency against {}", opts.axis.name()));
    let marks: Vec<&str> = [
        opts.frontier.map(|_| "filled dots: frontier"),
        opts.plateau_tol.map(|_| "bands: plateaus"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !marks.is_empty() {
        title += &format!(" ({})", marks.join(", "));
    }
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(xr, yr)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc(opts.axis.name())
        .x_label_formatter(&|x| {
            if opts.axis == Axis::Density {
                format!("{x:.2}")
            } else {
                format!("{x:.0}")
            }
        })
        .y_desc("latency (ms)")
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(e)?;
    for (k, s) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let pts = s.curve.points();
        if let Some(tol) = opts.plateau_tol {
            let bands = s
                .curve
                .plateaus(tol)
                .into_iter()
                .filter(|p| p.last > p.first);
            chart
                .draw_series(bands.map(|p| {
                    // Padded by 3% so that a perfectly flat plateau still shows.
                    let (lo, hi) = (p.min_ms / 1.03, p.max_ms * 1.03);
                    Rectangle::new(
                        [(pts[p.first].x, lo), (pts[p.last].x, hi)],
                        color.mix(0.15).filled(),
                    )
                }))
                .map_err(e)?;
        }
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (p.x, p.median_ms)),
                color.stroke_width(1),
            ))
            .map_err(e)?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        let front: Vec<usize> = opts.frontier.map_or(Vec::new(), |f| s.curve.frontier(&f));
        chart
            .draw_series(pts.iter().enumerate().map(|(i, p)| {
                let on = front.binary_search(&i).is_ok();
                let style = if on {
                    color.filled()
                } else {
                    color.stroke_width(1)
                };
                Circle::new((p.x, p.median_ms), if on { 4 } else { 2 }, style)
            }))
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(e)?;
    Ok(())
}
