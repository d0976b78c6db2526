//! `flow::report::write_report` on fixture run folders (a finished run and one still running),
//! written through the record types and hand-made metrics.jsonl lines: the numbers and ratios in
//! report.md (expected values computed here from the fixture), missing pieces as "—", the HTML
//! and SVG well-formed and self-contained, and a missing or malformed flow.json named in the error.
//!
//! `SYMBIONT_REPORT_FIXTURE_OUT=DIR` keeps the finished fixture: its run folder in DIR/run, its
//! report in DIR (for `tools/check_report_html.sh DIR` and `symbiont report DIR/run --out …`).

use flow::record::{
    FlowRecord, HostRecord, LatencyRecord, ModelRecord, ParamCounts, SizingRecord, StageRecord,
};
use flow::report::write_report;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

const DASH: &str = "—";

/// A fresh folder under the system temp dir.
fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let d = std::env::temp_dir().join(format!(
        "symbiont-report-{tag}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn lat(batch: usize, median: f64, p10: f64, p90: f64) -> LatencyRecord {
    LatencyRecord {
        engine: "cpu-sparse".into(),
        format: if batch == 1 { "csr" } else { "bsr4x4" }.into(),
        batch,
        seq: 35,
        threads: 2,
        isa: "avx512".into(),
        median_ms: median,
        p10_ms: p10,
        p90_ms: p90,
        samples: vec![p10, median, median, p90],
    }
}

#[allow(clippy::too_many_arguments)]
fn model(
    label: &str,
    hidden: usize,
    total: usize,
    nonzero: usize,
    total_core: usize,
    nonzero_core: usize,
    valid: Option<f64>,
    test: Option<f64>,
    latency: Vec<LatencyRecord>,
) -> ModelRecord {
    ModelRecord {
        label: label.into(),
        path: format!("{label}/checkpoint"),
        arch: "lstm".into(),
        layers: 2,
        hidden: vec![hidden, hidden],
        gate_hidden: 0,
        params: ParamCounts {
            total,
            nonzero,
            total_core,
            nonzero_core,
        },
        valid_ppl: valid,
        test_ppl: test,
        test_batch: test.map(|_| 1),
        latency,
    }
}

fn stage(name: &str, accepted: bool, density: f64, m: ModelRecord) -> StageRecord {
    StageRecord {
        name: name.into(),
        kind: name.split_once('-').unwrap().1.into(),
        note: format!("{name}: density {density}"),
        accepted,
        density,
        model: m,
        steps: 3000,
        train_seconds: 1234.5,
    }
}

fn baseline() -> ModelRecord {
    // PTB-medium: 2 × 650, vocab 10000.
    model(
        "baseline",
        650,
        19_780_400,
        19_780_400,
        6_770_400,
        6_770_400,
        Some(82.0),
        Some(78.5),
        vec![lat(1, 4.2, 4.1, 4.4), lat(16, 12.8, 12.5, 13.3)],
    )
}

fn final_model() -> ModelRecord {
    model(
        "final",
        512,
        15_375_360,
        9_412_001,
        4_200_448,
        1_050_112,
        Some(84.37),
        Some(80.91),
        vec![lat(1, 1.35, 1.31, 1.42), lat(16, 4.9, 4.8, 5.1)],
    )
}

fn sizing() -> SizingRecord {
    let mut curve = profile::Point::lstm(0);
    curve.layers = 2;
    let points: Vec<(usize, f64)> = (1..=16usize)
        .map(|k| {
            let h = 64 * k;
            // Steps at multiples of 256 (the plateaus the frontier rule exploits).
            (h, 0.3 + 0.9 * h.div_ceil(256) as f64 + 0.0004 * h as f64)
        })
        .collect();
    SizingRecord {
        rule: "frontier".into(),
        curve,
        points,
        frontier: vec![256, 512, 768, 1024],
        seed_wanted: vec![650, 650],
        seed_widths: vec![768, 768],
        units_left: vec![497, 503],
        snapped_widths: vec![512, 512],
        budget_ms: None,
    }
}

fn stages() -> Vec<StageRecord> {
    let m = |label: &str, h: usize, nz: usize, nzc: usize, v: f64, l: Vec<LatencyRecord>| {
        model(label, h, 20_000_000, nz, 7_000_000, nzc, Some(v), None, l)
    };
    vec![
        stage(
            "01-seed",
            true,
            0.1,
            m("seed", 768, 13_700_000, 700_000, 95.2, vec![]),
        ),
        stage(
            "02-grow",
            true,
            0.5,
            m("grow", 768, 16_500_000, 3_500_000, 83.1, vec![]),
        ),
        stage(
            "03-prune",
            true,
            0.25,
            m(
                "prune",
                768,
                14_750_000,
                1_750_000,
                84.0,
                vec![lat(1, 2.9, 2.8, 3.1)],
            ),
        ),
        stage(
            "04-prune",
            false,
            0.12,
            m(
                "prune",
                768,
                13_840_000,
                840_000,
                88.9,
                vec![lat(1, 2.1, 2.0, 2.3)],
            ),
        ),
        stage(
            "05-units",
            true,
            0.25,
            m(
                "units",
                512,
                10_100_000,
                1_100_000,
                84.6,
                vec![lat(1, 1.6, 1.55, 1.7)],
            ),
        ),
    ]
}

/// Metrics of one stage: a start line, training windows every 100 steps, three epochs, the
/// compression events of its kind, and a final line (unless `running`).
fn metrics(kind: &str, start_ppl: f64, end_ppl: f64, running: bool) -> String {
    let mut s = String::from(r#"{"kind":"start","step":0,"epoch":1,"batch":0,"params":1}"#);
    s.push('\n');
    let last = if running { 1700 } else { 3000 };
    for step in (100..=last).step_by(100) {
        let p = end_ppl + (start_ppl - end_ppl) * (-(step as f64) / 600.0).exp();
        s += &format!(
            "{{\"kind\":\"train\",\"epoch\":{},\"step\":{step},\"loss\":{},\"ppl\":{p},\"lr\":1.0,\"grad_norm\":0.5,\"tokens_per_s\":9000.0}}\n",
            step / 1000 + 1,
            p.ln()
        );
        if step % 1000 == 0 {
            s += &format!(
                "{{\"kind\":\"epoch\",\"epoch\":{},\"step\":{step},\"lr\":1.0,\"valid_ppl\":{},\"train_seconds\":10.0}}\n",
                step / 1000,
                p * 1.06
            );
        }
        if matches!(kind, "grow" | "prune" | "units") && step % 500 == 0 && step <= 2000 {
            s += &format!(
                "{{\"kind\":\"compress\",\"phase\":1,\"what\":\"{kind}\",\"step\":{step},\"density\":0.5}}\n"
            );
        }
    }
    if !running {
        s += &format!("{{\"kind\":\"final\",\"valid_ppl\":{end_ppl},\"test_ppl\":{end_ppl}}}\n");
    }
    s
}

fn write_run(dir: &Path, flow: &FlowRecord, running_stage: Option<&str>) {
    std::fs::write(
        dir.join("flow.json"),
        serde_json::to_string_pretty(flow).unwrap(),
    )
    .unwrap();
    let mut names: Vec<(String, bool)> = flow
        .stages
        .iter()
        .map(|s| (s.name.clone(), false))
        .collect();
    names.extend(running_stage.map(|n| (n.to_string(), true)));
    for (k, (name, running)) in names.iter().enumerate() {
        let d = dir.join("stages").join(name);
        std::fs::create_dir_all(&d).unwrap();
        let kind = name.split_once('-').unwrap().1;
        let start = if k == 0 { 900.0 } else { 120.0 };
        let mut text = metrics(kind, start, 82.0 + k as f64, *running);
        if *running {
            text += r#"{"kind":"train","epoch":2,"st"#; // a line being written
        }
        std::fs::write(d.join("metrics.jsonl"), text).unwrap();
    }
}

fn flow_record(finished: bool) -> FlowRecord {
    FlowRecord {
        name: "ptb-medium-symbiotic".into(),
        target: "cpu-sparse".into(),
        config: "configs/flow/ptb-medium.toml".into(),
        symbiont_version: "0.1.0".into(),
        host: HostRecord {
            cpu: "Intel(R) Xeon(R) Platinum 8480+".into(),
            isa: "avx512".into(),
            gemm_isa: "avx512".into(),
            threads: 2,
        },
        status: if finished { "finished" } else { "running" }.into(),
        valid_ppl_limit: Some(86.1),
        baseline: Some(baseline()),
        sizing: Some(sizing()),
        stages: stages(),
        final_model: finished.then(final_model),
    }
}

/// The cells of the row named `row` in the table under `## section`, keyed by column header.
fn row(md: &str, section: &str, row: &str) -> Vec<(String, String)> {
    let body = md
        .split("\n## ")
        .find(|s| s.starts_with(section))
        .unwrap_or_else(|| panic!("no section {section}"));
    let split = |l: &str| -> Vec<String> {
        l.trim()
            .trim_matches('|')
            .split(" | ")
            .map(|c| c.trim().to_string())
            .collect()
    };
    let mut lines = body.lines().filter(|l| l.starts_with('|'));
    let head = split(lines.next().unwrap());
    let line = lines
        .find(|l| split(l)[0] == row)
        .unwrap_or_else(|| panic!("no row {row} in {section}"));
    head.into_iter().zip(split(line)).collect()
}

fn cell(cells: &[(String, String)], col: &str) -> String {
    cells
        .iter()
        .find(|c| c.0 == col)
        .unwrap_or_else(|| panic!("no column {col}: {cells:?}"))
        .1
        .clone()
}

/// Checks that tags nest: every opened element is closed in order (HTML's void `meta` aside).
fn check_nesting(text: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('<') {
        let j = rest[i..].find('>').expect("unclosed tag") + i;
        let tag = &rest[i + 1..j];
        rest = &rest[j + 1..];
        if tag.starts_with('!') || tag.ends_with('/') {
            continue;
        }
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if name == "meta" {
            continue;
        }
        if tag.starts_with('/') {
            assert_eq!(
                stack.pop().as_deref(),
                Some(name.as_str()),
                "</{name}> misplaced"
            );
        } else {
            stack.push(name);
        }
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

#[test]
fn finished_run_numbers_ratios_and_charts() {
    let keep = std::env::var_os("SYMBIONT_REPORT_FIXTURE_OUT").map(PathBuf::from);
    let (run, out) = match &keep {
        Some(d) => (d.join("run"), d.clone()),
        None => {
            let run = temp_dir("finished");
            (run.clone(), run.join("report"))
        }
    };
    std::fs::create_dir_all(&run).unwrap();
    write_run(&run, &flow_record(true), None);
    let paths = write_report(&run, &out).unwrap();
    let md = std::fs::read_to_string(&paths.markdown).unwrap();
    let (b, f) = (baseline(), final_model());

    let base = row(&md, "Models", "baseline");
    assert_eq!(cell(&base, "Params"), "19,780,400");
    assert_eq!(cell(&base, "Params w/o emb+softmax"), "6,770,400");
    assert_eq!(cell(&base, "Valid ppl"), "82.00");
    assert_eq!(
        cell(&base, "Latency b=16 ms: median (p10–p90)"),
        "12.800 (12.500–13.300)"
    );
    let fin = row(&md, "Models", "final");
    assert_eq!(cell(&fin, "Non-zero"), "9,412,001");
    assert_eq!(cell(&fin, "Non-zero w/o emb+softmax"), "1,050,112");
    assert_eq!(cell(&fin, "Test ppl"), "80.91");
    assert_eq!(
        cell(&fin, "Latency b=1 ms: median (p10–p90)"),
        "1.350 (1.310–1.420)"
    );
    // Stages without a latency, and batches a stage was not timed at.
    let grow = row(&md, "Models", "02-grow");
    assert_eq!(cell(&grow, "Latency b=1 ms: median (p10–p90)"), DASH);
    assert_eq!(cell(&grow, "Test ppl"), DASH);
    let units = row(&md, "Models", "05-units");
    assert_eq!(cell(&units, "Latency b=16 ms: median (p10–p90)"), DASH);
    assert_eq!(
        cell(&row(&md, "Models", "04-prune"), "Status"),
        "not accepted"
    );
    assert_eq!(
        cell(&row(&md, "Stages", "04-prune"), "Status"),
        "not accepted"
    );

    let r = row(&md, "Against the baseline", "final");
    let x = |a: f64, b: f64| format!("{:.2}×", a / b);
    let pf = |m: &ModelRecord| m.params.total as f64;
    assert_eq!(cell(&r, "Params ×fewer"), x(pf(&b), pf(&f)));
    assert_eq!(cell(&r, "Non-zero ×fewer"), "2.10×"); // 19,780,400 / 9,412,001
    assert_eq!(cell(&r, "Non-zero ×fewer"), x(19_780_400.0, 9_412_001.0));
    assert_eq!(cell(&r, "Non-zero w/o emb+softmax ×fewer"), "6.45×");
    assert_eq!(cell(&r, "Latency b=1 ×lower"), x(4.2, 1.35));
    assert_eq!(cell(&r, "Latency b=16 ×lower"), "2.61×"); // 12.8 / 4.9
    assert_eq!(cell(&r, "Δ valid ppl"), "+2.37");
    assert_eq!(cell(&r, "Δ test ppl"), format!("{:+.2}", 80.91 - 78.5));
    assert_eq!(cell(&r, "Within limit"), "yes");
    let rejected = row(&md, "Against the baseline", "04-prune");
    assert_eq!(cell(&rejected, "Within limit"), "no");
    assert_eq!(cell(&rejected, "Latency b=1 ×lower"), x(4.2, 2.1));
    assert_eq!(cell(&rejected, "Latency b=16 ×lower"), DASH);

    for want in [
        "Intel(R) Xeon(R) Platinum 8480+",
        "avx512",
        "valid ppl ≤ 86.10",
        "](latency.svg)",
        "](training.svg)",
        "](pareto.svg)",
    ] {
        assert!(md.contains(want), "report.md lacks {want}");
    }
    assert!(!md.contains("No final model yet"));

    assert_eq!(paths.charts.len(), 3);
    for p in &paths.charts {
        let svg = std::fs::read_to_string(p).unwrap();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        check_nesting(&svg);
    }
    let latency = std::fs::read_to_string(out.join("latency.svg")).unwrap();
    assert!(
        latency.contains(">seed 768 (asked 650)</text>"),
        "{latency}"
    );
    assert!(latency.contains(">snapped 512 (497/503 units live)</text>"));
    let training = std::fs::read_to_string(out.join("training.svg")).unwrap();
    assert!(training.contains(">04-prune (not accepted)</text>"));
    let pareto = std::fs::read_to_string(out.join("pareto.svg")).unwrap();
    assert!(pareto.contains(">final · 9.41M nz</text>"));

    let html = std::fs::read_to_string(&paths.html).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    check_nesting(&html);
    assert_eq!(html.matches("<svg").count(), 3);
    assert_eq!(html.matches("</svg>").count(), 3);
    for bad in [
        "http://", "https://", "<script", "<link", "<img", "src=", "@import", "url(",
    ] {
        assert!(!html.contains(bad), "report.html holds {bad}");
    }
    assert!(html.contains("<tr class=\"rejected\"><td>04-prune</td>"));
    assert!(html.contains(&x(4.2, 1.35)));
    if keep.is_none() {
        std::fs::remove_dir_all(&run).unwrap();
    }
}

#[test]
fn running_run_renders_missing_pieces_as_dashes() {
    let run = temp_dir("running");
    let mut flow = flow_record(false);
    flow.stages.truncate(2);
    flow.stages[1].model.latency.clear();
    write_run(&run, &flow, Some("03-prune"));
    let paths = write_report(&run, &run.join("report")).unwrap();
    let md = std::fs::read_to_string(&paths.markdown).unwrap();
    let fin = row(&md, "Models", "final");
    assert_eq!(cell(&fin, "Status"), "not written yet");
    for col in ["Params", "Valid ppl", "Latency b=1 ms: median (p10–p90)"] {
        assert_eq!(cell(&fin, col), DASH, "{col}");
    }
    let r = row(&md, "Against the baseline", "final");
    assert_eq!(cell(&r, "Non-zero ×fewer"), DASH);
    assert_eq!(cell(&r, "Δ valid ppl"), DASH);
    let running = row(&md, "Stages", "03-prune");
    assert_eq!(cell(&running, "Status"), "running");
    assert_eq!(cell(&running, "Note"), "metrics up to step 1700");
    assert!(md.contains("No final model yet (run status: running)"));
    assert!(md.contains("1 unreadable metrics line(s) skipped"));
    // Only the baseline has a latency: the Pareto chart still draws it.
    assert_eq!(paths.charts.len(), 3);
    let html = std::fs::read_to_string(&paths.html).unwrap();
    check_nesting(&html);

    // No latency and no sizing at all: those charts are left out, the report still renders.
    flow.baseline.as_mut().unwrap().latency.clear();
    flow.sizing = None;
    write_run(&run, &flow, None);
    let paths = write_report(&run, &run.join("report2")).unwrap();
    let names: Vec<_> = paths
        .charts
        .iter()
        .map(|p| p.file_name().unwrap())
        .collect();
    assert_eq!(names, ["training.svg"]);
    let md = std::fs::read_to_string(&paths.markdown).unwrap();
    assert!(md.contains("### Latency curve and chosen widths\n\n— (no sizing recorded yet)"));
    assert_eq!(
        cell(&row(&md, "Models", "baseline"), "Params"),
        "19,780,400"
    );
    std::fs::remove_dir_all(&run).unwrap();
}

#[test]
fn missing_or_malformed_flow_json_is_named() {
    let run = temp_dir("broken");
    let e = write_report(&run, &run.join("report"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("flow.json"), "{e}");
    std::fs::write(run.join("flow.json"), "{\"name\": 3").unwrap();
    let e = write_report(&run, &run.join("report"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("flow.json"), "{e}");
    assert!(!run.join("report").join("report.md").exists());
    std::fs::remove_dir_all(&run).unwrap();
}
