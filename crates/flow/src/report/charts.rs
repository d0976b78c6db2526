//! The report's three charts, drawn with [`crate::svg`]: the latency curve of the sizing
//! decision (frontier and chosen widths marked), the training curves of every stage end to end,
//! and accuracy against latency (Pareto-optimal models marked). A chart with nothing to draw yet
//! is returned without SVG and a caption saying why.

use super::latency_at;
use super::metrics::StageRun;
use crate::record::{FlowRecord, ModelRecord, SizingRecord};
use crate::svg::{Anchor, Axes, Mark, Plot, Scale, Stroke, TextStyle};

const W: f64 = 960.0;
const H: f64 = 440.0;
const BLUE: &str = "#1f77b4";
const RED: &str = "#d62728";
const GREEN: &str = "#2ca02c";
const ORANGE: &str = "#ff7f0e";
const PURPLE: &str = "#9467bd";
const GREY: &str = "#888888";
const GOLD: &str = "#e0a800";

/// One chart of the report.
pub struct Chart {
    /// File name beside report.md.
    pub file: &'static str,
    pub title: &'static str,
    /// What it shows (or why it is missing).
    pub caption: String,
    /// The `.svg` file's text; `None` when there is nothing to draw.
    pub standalone: Option<String>,
    /// The same chart for inlining into HTML.
    pub inline: Option<String>,
}

fn chart(file: &'static str, title: &'static str, caption: String, plot: Option<Plot>) -> Chart {
    Chart {
        file,
        title,
        caption,
        standalone: plot.as_ref().map(|p| p.finish(true)),
        inline: plot.as_ref().map(|p| p.finish(false)),
    }
}

/// The three charts.
pub fn all(flow: &FlowRecord, runs: &[StageRun]) -> Vec<Chart> {
    vec![
        latency_chart(flow.sizing.as_ref()),
        training_chart(flow, runs),
        pareto_chart(flow, runs),
    ]
}

fn bounds(v: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = v
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
            (l.min(x), h.max(x))
        });
    (lo <= hi).then_some((lo, hi))
}

/// Median latency at `hidden`, interpolated linearly between measured widths.
fn interpolate(points: &[(usize, f64)], hidden: usize) -> f64 {
    let i = points.partition_point(|p| p.0 < hidden);
    if i == 0 {
        return points[0].1;
    }
    if i == points.len() {
        return points[i - 1].1;
    }
    let (a, b) = (points[i - 1], points[i]);
    if b.0 == a.0 {
        return b.1;
    }
    let t = (hidden - a.0) as f64 / (b.0 - a.0) as f64;
    a.1 + t * (b.1 - a.1)
}

/// Labels for chosen widths: one per distinct width, naming the layers when they differ, with
/// `note` (prefix, suffix) around the per-layer values of `extra` ("asked 650", "497/503 live").
fn width_labels(
    what: &str,
    widths: &[usize],
    note: (&str, &str),
    extra: impl Fn(usize) -> Option<String>,
) -> Vec<(usize, String)> {
    let mut distinct: Vec<usize> = widths.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    distinct
        .iter()
        .map(|&w| {
            let layers: Vec<usize> = (0..widths.len()).filter(|&l| widths[l] == w).collect();
            let mut s = if distinct.len() == 1 {
                format!("{what} {w}")
            } else {
                let l: Vec<String> = layers.iter().map(|l| format!("L{l}")).collect();
                format!("{what} {} {w}", l.join(","))
            };
            let mut vals: Vec<String> = layers.iter().filter_map(|&l| extra(l)).collect();
            if vals.iter().all(|v| *v == vals[0]) {
                vals.truncate(1);
            }
            if !vals.is_empty() {
                s += &format!(" ({}{}{})", note.0, vals.join("/"), note.1);
            }
            (w, s)
        })
        .collect()
}

fn latency_chart(sizing: Option<&SizingRecord>) -> Chart {
    let (file, title) = ("latency.svg", "Latency curve and chosen widths");
    let Some(s) = sizing.filter(|s| !s.points.is_empty()) else {
        return chart(file, title, "no sizing recorded yet".into(), None);
    };
    let mut pts = s.points.clone();
    pts.sort_by_key(|p| p.0);
    let chosen = s.seed_widths.iter().chain(&s.snapped_widths).copied();
    let xs = pts.iter().map(|p| p.0).chain(chosen).map(|h| h as f64);
    let (x0, x1) = bounds(xs).unwrap_or((0.0, 1.0));
    let ys = pts.iter().map(|p| p.1).chain(s.budget_ms);
    let (y0, y1) = bounds(ys).unwrap_or((0.0, 1.0));
    let pad = (x1 - x0).max(1.0) * 0.03;
    let c = &s.curve;
    let heading = format!(
        "Latency on the target: {} layer(s), batch {}, seq {}, {} thread(s), {}, density {}",
        c.layers, c.batch, c.seq, c.threads, c.dtype, c.density
    );
    let axes = Axes {
        title: &heading,
        x_label: "hidden units per layer",
        y_label: "median latency (ms)",
        x: Scale::linear(x0 - pad, x1 + pad),
        y: Scale::fit(y0, y1, 20.0, true, 0.08),
    };
    let mut legend = vec![
        (
            Mark::Line(Stroke::solid(BLUE, 1.5)),
            "median latency".to_string(),
        ),
        (
            Mark::Dot {
                fill: BLUE,
                stroke: Stroke::solid(BLUE, 1.0),
                r: 4.0,
            },
            "frontier".into(),
        ),
        (Mark::Diamond(ORANGE), "seed widths".into()),
    ];
    if !s.snapped_widths.is_empty() {
        legend.push((Mark::Diamond(GREEN), "snapped widths".into()));
    }
    if let Some(b) = s.budget_ms {
        legend.push((
            Mark::Line(Stroke::dashed(RED, 1.5)),
            format!("budget {b:.3} ms"),
        ));
    }
    let items: Vec<(Mark, &str)> = legend.iter().map(|(m, l)| (*m, l.as_str())).collect();
    let mut p = Plot::new(W, H, &axes, &items);
    let line: Vec<(f64, f64)> = pts.iter().map(|q| p.at(q.0 as f64, q.1)).collect();
    p.svg.polyline(&line, Stroke::solid(BLUE, 1.5));
    for (q, px) in pts.iter().zip(&line) {
        let on = s.frontier.contains(&q.0);
        let tip = format!(
            "hidden {}: {:.3} ms{}",
            q.0,
            q.1,
            if on { " (frontier)" } else { "" }
        );
        let (fill, r) = if on { (BLUE, 4.0) } else { ("white", 2.5) };
        p.svg
            .circle(*px, r, fill, Some(Stroke::solid(BLUE, 1.0)), Some(&tip));
    }
    if let Some(b) = s.budget_ms {
        let y = p.y.map(b);
        p.svg
            .line((p.area.0, y), (p.area.2, y), Stroke::dashed(RED, 1.5));
    }
    let seed = width_labels("seed", &s.seed_widths, ("asked ", ""), |l| {
        let asked = *s.seed_wanted.get(l)?;
        (asked != s.seed_widths[l]).then(|| asked.to_string())
    });
    let snapped = width_labels("snapped", &s.snapped_widths, ("", " units live"), |l| {
        s.units_left.get(l).map(usize::to_string)
    });
    let marks = seed
        .iter()
        .map(|w| (w, ORANGE))
        .chain(snapped.iter().map(|w| (w, GREEN)));
    for ((w, label), color) in marks {
        let (x, y) = p.at(*w as f64, interpolate(&pts, *w));
        p.svg
            .line((x, p.area.1), (x, p.area.3), Stroke::dashed(color, 1.0));
        p.svg
            .diamond((x, y), 6.0, color, Stroke::solid("#333", 0.8));
        p.occupy((x - 6.0, y - 6.0, x + 6.0, y + 6.0));
        let top = p.area.1 + 14.0;
        let cands: Vec<(f64, f64, Anchor)> = (0..10)
            .flat_map(|k| {
                let y = top + 15.0 * k as f64;
                [(x + 4.0, y, Anchor::Start), (x - 4.0, y, Anchor::End)]
            })
            .collect();
        p.place(&cands, label, TextStyle::new(11.5).color("#333").bold());
    }
    let caption = format!(
        "Measured median latency against hidden size ({} rule); filled dots: the frontier; \
         diamonds and dashed lines: the widths chosen for the seed and after snapping.",
        s.rule
    );
    chart(file, title, caption, Some(p))
}

/// Every `k`-th point so that at most `max` remain (the last one kept).
fn thin<T: Copy>(v: &[T], max: usize) -> Vec<T> {
    if v.len() <= max {
        return v.to_vec();
    }
    let k = v.len().div_ceil(max);
    let mut out: Vec<T> = v.iter().step_by(k).copied().collect();
    if !(v.len() - 1).is_multiple_of(k) {
        out.push(v[v.len() - 1]);
    }
    out
}

fn compress_color(what: &str) -> &'static str {
    match what {
        "prune" => ORANGE,
        "grow" => GREEN,
        "units" => PURPLE,
        _ => GREY,
    }
}

fn training_chart(flow: &FlowRecord, runs: &[StageRun]) -> Chart {
    let (file, title) = ("training.svg", "Training curves, all stages end to end");
    // (run, offset on the common step axis)
    let mut segs = Vec::new();
    let mut offset = 0u64;
    for r in runs
        .iter()
        .filter(|r| !r.train.is_empty() || !r.valid.is_empty())
    {
        segs.push((r, offset));
        offset += r.last_step().saturating_sub(r.first_step);
    }
    let ppls = segs
        .iter()
        .flat_map(|(r, _)| {
            r.train
                .iter()
                .map(|p| p.1)
                .chain(r.valid.iter().map(|v| v.2))
        })
        .chain(flow.valid_ppl_limit);
    let Some((y0, y1)) = bounds(ppls) else {
        return chart(file, title, "no training metrics yet".into(), None);
    };
    let axes = Axes {
        title: "Perplexity during training (stages laid end to end)",
        x_label: "optimizer steps (all stages)",
        y_label: "perplexity",
        x: Scale::linear(0.0, offset.max(1) as f64),
        y: Scale::fit(y0, y1, 4.0, false, 0.05),
    };
    let events: Vec<&str> = ["prune", "grow", "units"]
        .into_iter()
        .filter(|w| {
            segs.iter()
                .any(|(r, _)| r.compress.iter().any(|c| c.1 == *w))
        })
        .collect();
    let mut legend = vec![
        (
            Mark::Line(Stroke::solid(BLUE, 1.2)),
            "training ppl".to_string(),
        ),
        (
            Mark::Dot {
                fill: RED,
                stroke: Stroke::solid(RED, 1.0),
                r: 3.5,
            },
            "validation ppl (per epoch)".into(),
        ),
        (Mark::Line(Stroke::dashed(GREY, 1.0)), "stage start".into()),
    ];
    if segs.iter().any(|(r, _)| r.status() == "not accepted") {
        legend.push((Mark::Band("#fbe9e9"), "not accepted".into()));
    }
    for w in &events {
        legend.push((
            Mark::Line(Stroke::solid(compress_color(w), 2.0)),
            format!("{w} event"),
        ));
    }
    if flow.valid_ppl_limit.is_some() {
        legend.push((
            Mark::Line(Stroke::dashed(RED, 1.0)),
            "valid ppl limit".into(),
        ));
    }
    let items: Vec<(Mark, &str)> = legend.iter().map(|(m, l)| (*m, l.as_str())).collect();
    let mut p = Plot::new(W, H, &axes, &items);
    let (top, bottom) = (p.area.1, p.area.3);
    for (k, (r, off)) in segs.iter().enumerate() {
        let x = |step: u64| (off + step.saturating_sub(r.first_step)) as f64;
        let (xa, xb) = (p.x.map(x(r.first_step)), p.x.map(x(r.last_step())));
        if r.status() == "not accepted" {
            p.svg.rect(xa, top, xb - xa, bottom - top, "#fbe9e9", None);
        }
        if k > 0 {
            p.svg
                .line((xa, top), (xa, bottom), Stroke::dashed(GREY, 1.0));
        }
        let train: Vec<(f64, f64)> = thin(&r.train, 1500)
            .iter()
            .map(|t| p.at(x(t.0), t.1))
            .collect();
        p.svg.polyline(&train, Stroke::solid(BLUE, 1.2));
        let valid: Vec<(f64, f64)> = r.valid.iter().map(|v| p.at(x(v.0), v.2)).collect();
        p.svg.polyline(&valid, Stroke::solid(RED, 1.2));
        for (v, px) in r.valid.iter().zip(&valid) {
            let tip = format!("{} epoch {}: valid ppl {:.2}", r.name, v.1, v.2);
            p.svg.circle(*px, 3.5, RED, None, Some(&tip));
        }
        for (step, what) in &r.compress {
            let px = p.x.map(x(*step));
            let s = Stroke::solid(compress_color(what), 2.0);
            p.svg.line((px, bottom), (px, bottom - 9.0), s);
        }
        let mut label = r.name.clone();
        if r.status() != "accepted" {
            label += &format!(" ({})", r.status());
        }
        let cands: Vec<(f64, f64, Anchor)> = (0..8)
            .map(|j| (xa + 4.0, top + 13.0 + 14.0 * j as f64, Anchor::Start))
            .collect();
        p.place(&cands, &label, TextStyle::new(11.0).color("#444"));
    }
    if let Some(l) = flow.valid_ppl_limit {
        let y = p.y.map(l);
        p.svg
            .line((p.area.0, y), (p.area.2, y), Stroke::dashed(RED, 1.0));
    }
    let caption = "Training perplexity (log windows) and validation perplexity (per epoch) of every \
                   stage, laid end to end on one step axis; dashed lines mark where a stage starts, \
                   ticks on the axis the compression events."
        .to_string();
    chart(file, title, caption, Some(p))
}

/// A model on the accuracy–latency chart.
struct Dot {
    label: String,
    lat: f64,
    ppl: f64,
    nonzero: usize,
    /// Fill colour; `None`: hollow (a stage not accepted).
    fill: Option<&'static str>,
}

fn short_count(n: usize) -> String {
    if n >= 1_000_000 {
        format!("{:.2}M", n as f64 / 1e6)
    } else if n >= 1_000 {
        format!("{:.1}k", n as f64 / 1e3)
    } else {
        n.to_string()
    }
}

fn dots(flow: &FlowRecord, runs: &[StageRun], batch: usize) -> Vec<Dot> {
    let mut models: Vec<(String, &ModelRecord, Option<&'static str>)> = Vec::new();
    if let Some(b) = &flow.baseline {
        models.push(("baseline".into(), b, Some("rgba(90,90,90,0.75)")));
    }
    for r in runs {
        if let Some(s) = &r.record {
            let fill = s.accepted.then_some("rgba(31,119,180,0.6)");
            models.push((s.name.clone(), &s.model, fill));
        }
    }
    if let Some(f) = &flow.final_model {
        models.push(("final".into(), f, Some("rgba(214,39,40,0.8)")));
    }
    models
        .into_iter()
        .filter_map(|(label, m, fill)| {
            Some(Dot {
                label,
                lat: latency_at(Some(m), batch)?.median_ms,
                ppl: m.valid_ppl.filter(|p| p.is_finite())?,
                nonzero: m.params.nonzero,
                fill,
            })
        })
        .collect()
}

/// Whether no other dot is at least as good in both and better in one.
fn pareto(d: &[Dot]) -> Vec<bool> {
    d.iter()
        .map(|a| {
            !d.iter()
                .any(|b| b.lat <= a.lat && b.ppl <= a.ppl && (b.lat < a.lat || b.ppl < a.ppl))
        })
        .collect()
}

fn pareto_chart(flow: &FlowRecord, runs: &[StageRun]) -> Chart {
    let (file, title) = ("pareto.svg", "Accuracy against latency");
    let all_models = flow
        .baseline
        .iter()
        .chain(
            runs.iter()
                .filter_map(|r| r.record.as_ref().map(|s| &s.model)),
        )
        .chain(flow.final_model.iter());
    let batches: Vec<usize> = all_models
        .flat_map(|m| m.latency.iter().map(|l| l.batch))
        .collect();
    let batch = if batches.contains(&1) {
        1
    } else {
        batches.iter().copied().min().unwrap_or(1)
    };
    let d = dots(flow, runs, batch);
    if d.is_empty() {
        let why = "no model has both a validation perplexity and a latency yet".to_string();
        return chart(file, title, why, None);
    }
    let opt = pareto(&d);
    let (x0, x1) = bounds(d.iter().map(|p| p.lat)).unwrap_or((0.0, 1.0));
    let (y0, y1) =
        bounds(d.iter().map(|p| p.ppl).chain(flow.valid_ppl_limit)).unwrap_or((0.0, 1.0));
    let heading = format!(
        "Validation perplexity against batch-{batch} latency (marker area ∝ non-zero parameters)"
    );
    let axes = Axes {
        title: &heading,
        x_label: &format!("median latency, batch {batch} (ms)"),
        y_label: "validation perplexity",
        x: Scale::fit(x0, x1, 20.0, true, 0.12),
        y: Scale::fit(y0, y1, f64::INFINITY, false, 0.15),
    };
    let dot = |fill: &'static str, stroke: &'static str| Mark::Dot {
        fill,
        stroke: Stroke::solid(stroke, 1.0),
        r: 5.0,
    };
    let mut legend = vec![
        (dot("rgba(90,90,90,0.75)", "#333"), "baseline"),
        (dot("rgba(31,119,180,0.6)", "#333"), "stage"),
        (dot("white", GREY), "stage not accepted"),
        (dot("rgba(214,39,40,0.8)", "#333"), "final"),
        (dot("white", GOLD), "Pareto-optimal"),
    ];
    if flow.valid_ppl_limit.is_some() {
        legend.push((Mark::Line(Stroke::dashed(RED, 1.0)), "valid ppl limit"));
    }
    let mut p = Plot::new(W, H, &axes, &legend);
    if let Some(l) = flow.valid_ppl_limit {
        let y = p.y.map(l);
        p.svg
            .line((p.area.0, y), (p.area.2, y), Stroke::dashed(RED, 1.0));
        p.occupy((p.area.2 - 4.0, y - 2.0, p.area.2, y + 2.0));
    }
    // The Pareto front as a staircase, fastest first.
    let mut front: Vec<&Dot> = d.iter().zip(&opt).filter(|x| *x.1).map(|x| x.0).collect();
    front.sort_by(|a, b| a.lat.total_cmp(&b.lat));
    let mut stairs = Vec::new();
    for (k, f) in front.iter().enumerate() {
        if k > 0 {
            stairs.push(p.at(f.lat, front[k - 1].ppl));
        }
        stairs.push(p.at(f.lat, f.ppl));
    }
    p.svg.polyline(&stairs, Stroke::dashed(GOLD, 1.5));
    for w in stairs.windows(2) {
        let (a, b) = (w[0], w[1]);
        p.occupy((
            a.0.min(b.0) - 2.0,
            a.1.min(b.1) - 2.0,
            a.0.max(b.0) + 2.0,
            a.1.max(b.1) + 2.0,
        ));
    }
    let max_nz = d.iter().map(|x| x.nonzero).max().unwrap_or(1).max(1) as f64;
    let radius = |nz: usize| 4.0 + 12.0 * (nz as f64 / max_nz).sqrt();
    let mut order: Vec<usize> = (0..d.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(d[i].nonzero));
    for &i in &order {
        let (c, r) = (p.at(d[i].lat, d[i].ppl), radius(d[i].nonzero));
        if opt[i] {
            p.svg
                .circle(c, r + 3.0, "none", Some(Stroke::solid(GOLD, 2.5)), None);
        }
        let tip = format!(
            "{}: {:.3} ms, valid ppl {:.2}, {} non-zero parameters",
            d[i].label, d[i].lat, d[i].ppl, d[i].nonzero
        );
        let (fill, stroke) = d[i].fill.map_or(("white", GREY), |f| (f, "#333"));
        p.svg
            .circle(c, r, fill, Some(Stroke::solid(stroke, 1.0)), Some(&tip));
        p.occupy((c.0 - r, c.1 - r, c.0 + r, c.1 + r));
    }
    for (i, x) in d.iter().enumerate() {
        let (c, r) = (
            p.at(x.lat, x.ppl),
            radius(x.nonzero) + if opt[i] { 4.0 } else { 1.0 },
        );
        let cands = [
            (c.0 + r + 3.0, c.1 + 4.0, Anchor::Start),
            (c.0 - r - 3.0, c.1 + 4.0, Anchor::End),
            (c.0, c.1 - r - 4.0, Anchor::Middle),
            (c.0, c.1 + r + 13.0, Anchor::Middle),
            (c.0 + r, c.1 - r - 4.0, Anchor::Start),
            (c.0 - r, c.1 - r - 4.0, Anchor::End),
            (c.0 + r, c.1 + r + 13.0, Anchor::Start),
            (c.0 - r, c.1 + r + 13.0, Anchor::End),
            (c.0 + r + 3.0, c.1 + 18.0, Anchor::Start),
            (c.0 + r + 3.0, c.1 - 10.0, Anchor::Start),
        ];
        let label = format!("{} · {} nz", x.label, short_count(x.nonzero));
        let style = TextStyle::new(11.0).color(if opt[i] { "#222" } else { "#666" });
        p.place(&cands, &label, if opt[i] { style.bold() } else { style });
    }
    let caption = format!(
        "Each model with a validation perplexity and a batch-{batch} latency: the baseline, every \
         finished stage and the final model. Gold rings and the dashed staircase: the \
         Pareto-optimal models (no other is both faster and more accurate)."
    );
    chart(file, title, caption, Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        let pts = [(100, 1.0), (200, 3.0)];
        assert_eq!(interpolate(&pts, 150), 2.0);
        assert_eq!(interpolate(&pts, 50), 1.0);
        assert_eq!(interpolate(&pts, 300), 3.0);
        assert_eq!(thin(&[1, 2, 3, 4, 5], 2), vec![1, 4, 5]);
        let l = width_labels("seed", &[650, 650], ("", ""), |_| None);
        assert_eq!(l, vec![(650, "seed 650".to_string())]);
        let l = width_labels("seed", &[650, 650], ("asked ", ""), |_| Some("600".into()));
        assert_eq!(l, vec![(650, "seed 650 (asked 600)".to_string())]);
        let l = width_labels("seed", &[512, 640], ("x", ""), |l| Some(l.to_string()));
        assert_eq!(l[1], (640, "seed L1 640 (x1)".to_string()));
        let l = width_labels("snapped", &[512, 512], ("", " live"), |l| {
            Some(l.to_string())
        });
        assert_eq!(l[0], (512, "snapped 512 (0/1 live)".to_string()));
        let mk = |lat, ppl| Dot {
            label: String::new(),
            lat,
            ppl,
            nonzero: 1,
            fill: None,
        };
        let d = [mk(1.0, 100.0), mk(2.0, 90.0), mk(2.0, 95.0), mk(0.5, 120.0)];
        assert_eq!(pareto(&d), vec![true, true, false, true]);
    }
}
