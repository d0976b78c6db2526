//! The report of a `symbiont compress` run (`symbiont report RUN --out DIR`): from `RUN/flow.json`
//! ([`FlowRecord`]) and the stages' `metrics.jsonl`, writes `report.md` and a self-contained
//! `report.html` (inline CSS and SVG, no scripts, no external resources) with the same tables,
//! and the charts as `.svg` files beside them:
//! - per model (baseline, every stage, final): parameters (total, non-zero, without embedding and
//!   softmax), validation and test perplexity, latency on the target per batch (median, p10–p90);
//! - ratios against the baseline (×fewer parameters, ×lower latency, Δ perplexity);
//! - the host, the accuracy limit, the sizing decisions, the stages (not accepted ones marked);
//! - charts: the latency curve with the frontier and the chosen widths, the training curves of
//!   all stages end to end, and accuracy against latency with the Pareto-optimal models marked.
//!
//! A run still in progress renders: whatever is missing (no final model, a stage without latency)
//! shows as "—". Only a missing or unreadable `flow.json` is an error.

mod charts;
mod metrics;

pub use metrics::{parse_metrics, stage_runs, StageRun};

use crate::record::{FlowRecord, LatencyRecord, ModelRecord};
use crate::svg::esc;
use crate::FlowError;
use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// What stands for a missing value in every table.
pub const MISSING: &str = "—";

/// The files [`write_report`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportPaths {
    pub markdown: PathBuf,
    pub html: PathBuf,
    /// The charts drawn (a chart with nothing to draw yet is left out).
    pub charts: Vec<PathBuf>,
}

/// Writes `out_dir/report.md`, `out_dir/report.html` and the charts' `.svg` files for the run in
/// `run_dir`. Creates `out_dir` when needed.
pub fn write_report(run_dir: &Path, out_dir: &Path) -> Result<ReportPaths, FlowError> {
    let flow = FlowRecord::load(&run_dir.join("flow.json"))?;
    let runs = stage_runs(run_dir, &flow);
    let io = |p: &Path, e: std::io::Error| FlowError::Invalid(format!("{}: {e}", p.display()));
    std::fs::create_dir_all(out_dir).map_err(|e| io(out_dir, e))?;
    let charts = charts::all(&flow, &runs);
    let mut paths = Vec::new();
    for c in &charts {
        if let Some(svg) = &c.standalone {
            let p = out_dir.join(c.file);
            std::fs::write(&p, svg).map_err(|e| io(&p, e))?;
            paths.push(p);
        }
    }
    let tables = tables(&flow, &runs);
    let md = markdown(&flow, &runs, &tables, &charts);
    let html = html(&flow, &runs, &tables, &charts);
    let markdown = out_dir.join("report.md");
    std::fs::write(&markdown, md).map_err(|e| io(&markdown, e))?;
    let html_path = out_dir.join("report.html");
    std::fs::write(&html_path, html).map_err(|e| io(&html_path, e))?;
    Ok(ReportPaths {
        markdown,
        html: html_path,
        charts: paths,
    })
}

/// A table, rendered both as Markdown and as HTML.
#[derive(Clone, Debug)]
struct Table {
    title: &'static str,
    head: Vec<String>,
    /// Right-aligned (numeric) columns.
    right: Vec<bool>,
    /// (cells, CSS class of the row).
    rows: Vec<(Vec<String>, &'static str)>,
    note: Option<String>,
}

/// One row of the model tables.
struct Entry<'a> {
    name: String,
    kind: String,
    status: &'static str,
    model: Option<&'a ModelRecord>,
}

fn entries<'a>(flow: &'a FlowRecord, runs: &'a [StageRun]) -> Vec<Entry<'a>> {
    let mut v = vec![Entry {
        name: "baseline".into(),
        kind: "baseline".into(),
        status: if flow.baseline.is_some() {
            "reference"
        } else {
            "not measured yet"
        },
        model: flow.baseline.as_ref(),
    }];
    for r in runs {
        v.push(Entry {
            name: r.name.clone(),
            kind: r
                .record
                .as_ref()
                .map_or_else(|| stage_kind(&r.name).to_string(), |s| s.kind.clone()),
            status: r.status(),
            model: r.record.as_ref().map(|s| &s.model),
        });
    }
    v.push(Entry {
        name: "final".into(),
        kind: "final".into(),
        status: if flow.final_model.is_some() {
            "final"
        } else {
            "not written yet"
        },
        model: flow.final_model.as_ref(),
    });
    v
}

/// `02-prune` → `prune`.
fn stage_kind(name: &str) -> &str {
    name.split_once('-').map_or(name, |(_, k)| k)
}

fn row_class(status: &str) -> &'static str {
    match status {
        "not accepted" => "rejected",
        "running" | "not written yet" | "not measured yet" => "pending",
        "final" => "final",
        _ => "",
    }
}

/// 6813600 → "6,813,600".
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| MISSING.to_string(), f)
}

fn ppl(v: Option<f64>) -> String {
    opt(v.filter(|x| x.is_finite()), |x| format!("{x:.2}"))
}

/// `base / x` as "4.21×".
fn ratio(base: Option<f64>, x: Option<f64>) -> String {
    match (base, x) {
        (Some(b), Some(x)) if x > 0.0 && b.is_finite() && x.is_finite() => {
            format!("{:.2}×", b / x)
        }
        _ => MISSING.into(),
    }
}

/// `x − base` as "+1.23".
fn delta(base: Option<f64>, x: Option<f64>) -> String {
    match (base, x) {
        (Some(b), Some(x)) if b.is_finite() && x.is_finite() => format!("{:+.2}", x - b),
        _ => MISSING.into(),
    }
}

/// The latency of `m` at `batch` (the first record for it).
pub fn latency_at(m: Option<&ModelRecord>, batch: usize) -> Option<&LatencyRecord> {
    m?.latency.iter().find(|l| l.batch == batch)
}

fn latency_cell(l: Option<&LatencyRecord>) -> String {
    opt(l, |l| {
        format!("{:.3} ({:.3}–{:.3})", l.median_ms, l.p10_ms, l.p90_ms)
    })
}

/// Test perplexity, with its batch where that is not 1.
fn test_ppl(m: &ModelRecord) -> String {
    match (m.test_ppl, m.test_batch) {
        (Some(p), Some(b)) if b != 1 && p.is_finite() => format!("{p:.2} (batch {b})"),
        (p, _) => ppl(p),
    }
}

fn hidden(m: &ModelRecord) -> String {
    let h: Vec<String> = m.hidden.iter().map(usize::to_string).collect();
    let mut s = format!("{} {}", m.arch, h.join("/"));
    if m.gate_hidden > 0 {
        let _ = write!(s, " (M={})", m.gate_hidden);
    }
    s
}

/// Every batch some model was timed at, ascending.
fn batches(es: &[Entry<'_>]) -> Vec<usize> {
    let set: BTreeSet<usize> = es
        .iter()
        .filter_map(|e| e.model)
        .flat_map(|m| m.latency.iter().map(|l| l.batch))
        .collect();
    set.into_iter().collect()
}

fn tables(flow: &FlowRecord, runs: &[StageRun]) -> Vec<Table> {
    let es = entries(flow, runs);
    vec![
        models_table(&es),
        ratios_table(&es, flow),
        latency_table(&es),
        stages_table(runs),
    ]
}

fn models_table(es: &[Entry<'_>]) -> Table {
    let bs = batches(es);
    let mut head: Vec<String> = [
        "Model",
        "Kind",
        "Status",
        "Hidden",
        "Params",
        "Non-zero",
        "Params w/o emb+softmax",
        "Non-zero w/o emb+softmax",
        "Valid ppl",
        "Test ppl",
    ]
    .map(String::from)
    .to_vec();
    head.extend(
        bs.iter()
            .map(|b| format!("Latency b={b} ms: median (p10–p90)")),
    );
    let mut right = vec![false; 4];
    right.resize(head.len(), true);
    let rows = es
        .iter()
        .map(|e| {
            let m = e.model;
            let mut c = vec![e.name.clone(), e.kind.clone(), e.status.to_string()];
            c.push(opt(m, hidden));
            c.push(opt(m, |m| thousands(m.params.total)));
            c.push(opt(m, |m| thousands(m.params.nonzero)));
            c.push(opt(m, |m| thousands(m.params.total_core)));
            c.push(opt(m, |m| thousands(m.params.nonzero_core)));
            c.push(ppl(m.and_then(|m| m.valid_ppl)));
            c.push(opt(m, test_ppl));
            c.extend(bs.iter().map(|&b| latency_cell(latency_at(m, b))));
            (c, row_class(e.status))
        })
        .collect();
    Table {
        title: "Models",
        head,
        right,
        rows,
        note: Some(
            "Validation perplexity at the training config's eval batch; test perplexity at batch 1 \
             (the published protocol) unless marked with its batch. Latency: the whole language \
             model on the target, one plan run of `seq` tokens."
                .into(),
        ),
    }
}

fn ratios_table(es: &[Entry<'_>], flow: &FlowRecord) -> Table {
    let bs = batches(es);
    let base = flow.baseline.as_ref();
    let mut head: Vec<String> = [
        "Model",
        "Status",
        "Params ×fewer",
        "Non-zero ×fewer",
        "Non-zero w/o emb+softmax ×fewer",
    ]
    .map(String::from)
    .to_vec();
    head.extend(bs.iter().map(|b| format!("Latency b={b} ×lower")));
    head.extend(["Δ valid ppl", "Δ test ppl", "Within limit"].map(String::from));
    let mut right = vec![false; 2];
    right.resize(head.len(), true);
    let f = |m: Option<&ModelRecord>, g: fn(&ModelRecord) -> usize| m.map(|m| g(m) as f64);
    let rows = es
        .iter()
        .skip(1)
        .map(|e| {
            let m = e.model;
            let mut c = vec![e.name.clone(), e.status.to_string()];
            c.push(ratio(f(base, |m| m.params.total), f(m, |m| m.params.total)));
            c.push(ratio(
                f(base, |m| m.params.nonzero),
                f(m, |m| m.params.nonzero),
            ));
            c.push(ratio(
                f(base, |m| m.params.nonzero_core),
                f(m, |m| m.params.nonzero_core),
            ));
            for &b in &bs {
                let lat = |m| latency_at(m, b).map(|l| l.median_ms);
                c.push(ratio(lat(base), lat(m)));
            }
            let v = |m: Option<&ModelRecord>| m.and_then(|m| m.valid_ppl);
            let t = |m: Option<&ModelRecord>| m.and_then(|m| m.test_ppl);
            c.push(delta(v(base), v(m)));
            c.push(delta(t(base), t(m)));
            c.push(match (flow.valid_ppl_limit, v(m)) {
                (Some(l), Some(p)) if p <= l => "yes".into(),
                (Some(_), Some(_)) => "no".into(),
                _ => MISSING.into(),
            });
            (c, row_class(e.status))
        })
        .collect();
    Table {
        title: "Against the baseline",
        head,
        right,
        rows,
        note: Some(
            "×fewer / ×lower: baseline ÷ model (above 1 is better); Δ ppl: model − baseline \
             (below 0 is better)."
                .into(),
        ),
    }
}

fn latency_table(es: &[Entry<'_>]) -> Table {
    let head = [
        "Model",
        "Batch",
        "Seq",
        "Engine",
        "Format",
        "Threads",
        "ISA",
        "Median ms",
        "p10 ms",
        "p90 ms",
        "Runs",
    ]
    .map(String::from)
    .to_vec();
    let right = vec![
        false, true, true, false, false, true, false, true, true, true, true,
    ];
    let mut rows = Vec::new();
    for e in es {
        let Some(m) = e.model else { continue };
        if m.latency.is_empty() {
            let mut c = vec![e.name.clone()];
            c.resize(head.len(), MISSING.to_string());
            rows.push((c, row_class(e.status)));
        }
        for l in &m.latency {
            let c = vec![
                e.name.clone(),
                l.batch.to_string(),
                l.seq.to_string(),
                l.engine.clone(),
                l.format.clone(),
                l.threads.to_string(),
                l.isa.clone(),
                format!("{:.3}", l.median_ms),
                format!("{:.3}", l.p10_ms),
                format!("{:.3}", l.p90_ms),
                l.samples.len().to_string(),
            ];
            rows.push((c, row_class(e.status)));
        }
    }
    Table {
        title: "Latency measurements",
        head,
        right,
        rows,
        note: None,
    }
}

fn duration(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.2} h", s / 3600.0)
    }
}

fn stages_table(runs: &[StageRun]) -> Table {
    let head = [
        "Stage", "Kind", "Status", "Density", "Hidden", "Steps", "Training", "Note",
    ]
    .map(String::from)
    .to_vec();
    let right = vec![false, false, false, true, false, true, true, false];
    let rows = runs
        .iter()
        .map(|r| {
            let c = match &r.record {
                Some(s) => vec![
                    s.name.clone(),
                    s.kind.clone(),
                    r.status().to_string(),
                    format!("{:.1}%", s.density * 100.0),
                    hidden(&s.model),
                    thousands(s.steps as usize),
                    duration(s.train_seconds),
                    s.note.clone(),
                ],
                None => {
                    let seen = if r.has_metrics {
                        format!("metrics up to step {}", r.last_step())
                    } else {
                        "no metrics yet".to_string()
                    };
                    let mut c = vec![r.name.clone(), stage_kind(&r.name).into(), "running".into()];
                    c.extend([MISSING, MISSING, MISSING, MISSING].map(String::from));
                    c.push(seen);
                    c
                }
            };
            (c, row_class(r.status()))
        })
        .collect();
    Table {
        title: "Stages",
        head,
        right,
        rows,
        note: None,
    }
}

/// (label, value) lines of the run's header.
fn header(flow: &FlowRecord) -> Vec<(&'static str, String)> {
    let h = &flow.host;
    let base_valid = flow.baseline.as_ref().and_then(|b| b.valid_ppl);
    let limit = match (flow.valid_ppl_limit, base_valid) {
        (Some(l), Some(b)) => format!(
            "valid ppl ≤ {l:.2} (baseline {b:.2} {:+.1}%)",
            (l / b - 1.0) * 100.0
        ),
        (Some(l), None) => format!("valid ppl ≤ {l:.2}"),
        _ => MISSING.into(),
    };
    vec![
        ("Run", flow.name.clone()),
        ("Status", flow.status.clone()),
        ("Target", flow.target.clone()),
        ("Config", flow.config.clone()),
        ("Host CPU", h.cpu.clone()),
        (
            "ISA",
            format!(
                "{} (gemm crate: {}), {} threads",
                h.isa, h.gemm_isa, h.threads
            ),
        ),
        ("Accuracy limit", limit),
        ("symbiont", flow.symbiont_version.clone()),
    ]
}

/// The headline: the final model against the baseline.
fn summary(flow: &FlowRecord) -> String {
    let (Some(b), Some(f)) = (&flow.baseline, &flow.final_model) else {
        return format!(
            "No final model yet (run status: {}): the tables show what the run has measured so far.",
            flow.status
        );
    };
    let lat = |m: &ModelRecord| latency_at(Some(m), 1).map(|l| l.median_ms);
    format!(
        "Final model against the baseline: {} fewer non-zero parameters ({} without embedding and \
         softmax), {} lower batch-1 latency, validation perplexity {} → {} (Δ {}).",
        ratio(Some(b.params.nonzero as f64), Some(f.params.nonzero as f64)),
        ratio(
            Some(b.params.nonzero_core as f64),
            Some(f.params.nonzero_core as f64)
        ),
        ratio(lat(b), lat(f)),
        ppl(b.valid_ppl),
        ppl(f.valid_ppl),
        delta(b.valid_ppl, f.valid_ppl),
    )
}

/// (label, value) lines of the sizing decisions.
fn sizing(flow: &FlowRecord) -> Vec<(&'static str, String)> {
    let Some(s) = &flow.sizing else {
        return vec![("Sizing", MISSING.into())];
    };
    let c = &s.curve;
    let list = |v: &[usize]| {
        if v.is_empty() {
            MISSING.to_string()
        } else {
            v.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    vec![
        ("Rule", s.rule.clone()),
        (
            "Curve",
            format!(
                "{} layer(s), batch {}, seq {}, {} thread(s), {}, density {}, format {}, gate width {}",
                c.layers, c.batch, c.seq, c.threads, c.dtype, c.density, c.format, c.gate_width
            ),
        ),
        ("Frontier", list(&s.frontier)),
        ("Seed widths asked", list(&s.seed_wanted)),
        ("Seed widths", list(&s.seed_widths)),
        ("Units left", list(&s.units_left)),
        ("Snapped widths", list(&s.snapped_widths)),
        ("Latency budget", opt(s.budget_ms, |b| format!("{b:.3} ms"))),
    ]
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn markdown(
    flow: &FlowRecord,
    runs: &[StageRun],
    tables: &[Table],
    charts: &[charts::Chart],
) -> String {
    let mut s = format!("# Run report: {}\n\n", flow.name);
    for (k, v) in header(flow) {
        let _ = writeln!(s, "- **{k}**: {}", md_cell(&v));
    }
    let _ = writeln!(s, "\n{}\n", summary(flow));
    for t in tables {
        let _ = writeln!(s, "## {}\n", t.title);
        let cells: Vec<String> = t.head.iter().map(|h| md_cell(h)).collect();
        let _ = writeln!(s, "| {} |", cells.join(" | "));
        let align: Vec<&str> = t
            .right
            .iter()
            .map(|&r| if r { "---:" } else { "---" })
            .collect();
        let _ = writeln!(s, "|{}|", align.join("|"));
        for (row, _) in &t.rows {
            let cells: Vec<String> = row.iter().map(|c| md_cell(c)).collect();
            let _ = writeln!(s, "| {} |", cells.join(" | "));
        }
        if let Some(n) = &t.note {
            let _ = writeln!(s, "\n{n}");
        }
        s.push('\n');
    }
    s.push_str("## Sizing\n\n");
    for (k, v) in sizing(flow) {
        let _ = writeln!(s, "- **{k}**: {}", md_cell(&v));
    }
    s.push_str("\n## Charts\n\n");
    for c in charts {
        match &c.standalone {
            Some(_) => {
                let _ = writeln!(
                    s,
                    "### {}\n\n![{}]({})\n\n{}\n",
                    c.title, c.title, c.file, c.caption
                );
            }
            None => {
                let _ = writeln!(s, "### {}\n\n{} ({})\n", c.title, MISSING, c.caption);
            }
        }
    }
    let skipped: usize = runs.iter().map(|r| r.skipped_lines).sum();
    if skipped > 0 {
        let _ = writeln!(s, "{skipped} unreadable metrics line(s) skipped.\n");
    }
    s
}

const CSS: &str = "body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;margin:24px auto;\
max-width:1180px;color:#222;line-height:1.4;padding:0 12px}\
h1{font-size:1.6em;margin-bottom:.3em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}\
h3{font-size:1.05em}dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px}\
dt{font-weight:bold}dd{margin:0}table{border-collapse:collapse;font-size:13px;margin:6px 0;\
display:block;overflow-x:auto}th,td{border:1px solid #ccc;padding:3px 7px;vertical-align:top}\
th{background:#f3f3f3;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums;\
white-space:nowrap}tr.rejected td{color:#999;background:#fbf3f3}tr.pending td{color:#777;\
font-style:italic}tr.final td{background:#f1f8f1;font-weight:bold}.note{color:#555;font-size:13px}\
.summary{background:#f6f8fa;border-left:4px solid #4a7;padding:8px 12px}\
figure{margin:12px 0}figure svg{max-width:100%;height:auto;border:1px solid #ddd}\
figcaption{color:#555;font-size:13px}";

/// Markdown's `code` spans as HTML `<code>` (in text already escaped).
fn code_spans(s: &str) -> String {
    let mut out = String::new();
    for (k, part) in s.split('`').enumerate() {
        if k % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

fn html_table(s: &mut String, t: &Table) {
    let _ = writeln!(s, "<h2>{}</h2>\n<table>\n<thead><tr>", esc(t.title));
    for h in &t.head {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr></thead>\n<tbody>\n");
    for (row, class) in &t.rows {
        if class.is_empty() {
            s.push_str("<tr>");
        } else {
            let _ = write!(s, "<tr class=\"{class}\">");
        }
        for (k, c) in row.iter().enumerate() {
            let num = t.right.get(k).copied().unwrap_or(false);
            let _ = write!(
                s,
                "<td{}>{}</td>",
                if num { " class=\"num\"" } else { "" },
                esc(c)
            );
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody>\n</table>\n");
    if let Some(n) = &t.note {
        let _ = writeln!(s, "<p class=\"note\">{}</p>", code_spans(&esc(n)));
    }
}

fn html_list(s: &mut String, items: &[(&'static str, String)]) {
    s.push_str("<dl>\n");
    for (k, v) in items {
        let _ = writeln!(s, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    }
    s.push_str("</dl>\n");
}

fn html(
    flow: &FlowRecord,
    runs: &[StageRun],
    tables: &[Table],
    charts: &[charts::Chart],
) -> String {
    let title = format!("Run report: {}", flow.name);
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{t}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{t}</h1>\n",
        t = esc(&title)
    );
    html_list(&mut s, &header(flow));
    let _ = writeln!(s, "<p class=\"summary\">{}</p>", esc(&summary(flow)));
    for t in tables {
        html_table(&mut s, t);
    }
    s.push_str("<h2>Sizing</h2>\n");
    html_list(&mut s, &sizing(flow));
    s.push_str("<h2>Charts</h2>\n");
    for c in charts {
        let _ = writeln!(s, "<h3>{}</h3>", esc(c.title));
        match &c.inline {
            Some(svg) => {
                let _ = writeln!(
                    s,
                    "<figure>\n{svg}<figcaption>{}</figcaption>\n</figure>",
                    esc(&c.caption)
                );
            }
            None => {
                let _ = writeln!(s, "<p class=\"note\">{MISSING} ({})</p>", esc(&c.caption));
            }
        }
    }
    let skipped: usize = runs.iter().map(|r| r.skipped_lines).sum();
    if skipped > 0 {
        let _ = writeln!(
            s,
            "<p class=\"note\">{skipped} unreadable metrics line(s) skipped.</p>"
        );
    }
    s.push_str("</body>\n</html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(thousands(6_813_600), "6,813,600");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(ratio(Some(10.0), Some(4.0)), "2.50×");
        assert_eq!(ratio(Some(10.0), None), MISSING);
        assert_eq!(delta(Some(100.0), Some(98.5)), "-1.50");
        assert_eq!(stage_kind("03-prune"), "prune");
        assert_eq!(code_spans("a `b` c"), "a <code>b</code> c");
    }
}
