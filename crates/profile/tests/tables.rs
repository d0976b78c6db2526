//! Latency tables: JSON and CSV round trips, imports written by other tools, merges, and the
//! errors of malformed or mismatched tables.

use profile::{
    sweep, Axis, FakeEngine, Grid, LatencyModel, LatencyTable, OnDuplicate, Point, SweepOptions,
    Target,
};
use std::sync::atomic::AtomicBool;

fn measured(spec: &str, hidden: Vec<usize>, label: &str) -> LatencyTable {
    let opts = SweepOptions {
        budget_s: None,
        keep_samples: true,
        ..SweepOptions::default()
    };
    let mut e = FakeEngine::parse(spec).unwrap();
    let out = sweep(
        &mut e,
        Grid::over_hidden(hidden).points().unwrap(),
        &opts,
        &AtomicBool::new(false),
    );
    LatencyTable::from_sweep(&out, Some(label.into()))
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("symbiont-tables-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn json_round_trip_is_exact_and_carries_provenance() {
    let t = measured("steps:noise=0.02:seed=4", vec![64, 128, 192], "a");
    let path = tmp("round.json");
    t.save(&path).unwrap();
    let back = LatencyTable::load(&path).unwrap();
    assert_eq!(back, t);
    let target = &back.targets[0];
    let host = target.host.as_ref().unwrap();
    assert!(!host.cpu_model.is_empty() && host.logical_cpus.unwrap() >= 1);
    assert!(target.measured_at.as_ref().unwrap().ends_with('Z'));
    assert_eq!(
        target.symbiont_version.as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(target.settings.as_ref().unwrap()["min_passes"], 3);
    let p = &target.points[0];
    assert!(p.p10_ms.unwrap() <= p.median_ms && p.median_ms <= p.p90_ms.unwrap());
    assert_eq!(p.samples_ms.as_ref().unwrap().len(), p.repetitions.unwrap());
}

#[test]
fn csv_round_trip_keeps_targets_points_and_statistics() {
    let mut t = measured("saw", vec![64, 128], "a, \"quoted\"");
    t.merge(measured("linear", vec![64], "b"), OnDuplicate::Error)
        .unwrap();
    let path = tmp("round.csv");
    t.save_csv(&path).unwrap();
    let back = LatencyTable::load(&path).unwrap();
    assert_eq!(back.targets.len(), 2);
    for (a, b) in t.targets.iter().zip(&back.targets) {
        assert_eq!(
            (&a.label, &a.engine.name, &a.device),
            (&b.label, &b.engine.name, &b.device)
        );
        for (p, q) in a.points.iter().zip(&b.points) {
            let mut p = p.clone();
            p.samples_ms = None;
            assert_eq!(&p, q);
        }
    }
}

#[test]
fn a_minimal_table_from_another_tool_imports_like_a_local_one() {
    let text = r#"{"format": "symbiont-latency-table", "version": 1, "targets": [{
        "label": "phone", "engine": {"name": "tflite"}, "device": "Pixel 7",
        "points": [
          {"hidden": 256, "layers": 1, "batch": 1, "seq": 35, "threads": 4, "dtype": "f32", "median_ms": 3.0},
          {"hidden": 384, "layers": 1, "batch": 1, "seq": 35, "threads": 4, "dtype": "f32", "median_ms": 2.5},
          {"hidden": 512, "layers": 1, "batch": 1, "seq": 35, "threads": 4, "dtype": "f32", "median_ms": 4.0}
        ]}]}"#;
    let t = LatencyTable::from_json(text, "phone.json").unwrap();
    let p256 = Point {
        threads: 4,
        ..Point::lstm(256)
    };
    assert_eq!(t.latency_ms(&p256), Some(3.0));
    assert_eq!(t.snap(&p256, Axis::Hidden).unwrap().hidden, 384);
    assert_eq!(
        t.best_under_budget(&p256, Axis::Hidden, 3.5)
            .unwrap()
            .hidden,
        384
    );
    assert_eq!(t.targets[0].points[0].format, "dense");
}

#[test]
fn merges_combine_a_target_keep_others_apart_and_refuse_ambiguity() {
    let a = measured("steps", vec![64, 128], "x");
    let mut merged = a.clone();
    merged
        .merge(measured("steps", vec![192], "x"), OnDuplicate::Error)
        .unwrap();
    assert_eq!(merged.targets.len(), 1);
    assert_eq!(merged.targets[0].points.len(), 3);
    merged
        .merge(measured("steps", vec![64], "y"), OnDuplicate::Error)
        .unwrap();
    assert_eq!(merged.targets.len(), 2);

    let err = merged
        .clone()
        .merge(a.clone(), OnDuplicate::Error)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("hidden=64") && err.contains("both tables"),
        "{err}"
    );
    let mut slower = a.clone();
    slower.targets[0].points[0].median_ms = 99.0;
    let mut keep_last = merged.clone();
    keep_last
        .merge(slower.clone(), OnDuplicate::KeepLast)
        .unwrap();
    assert_eq!(keep_last.targets[0].points[0].median_ms, 99.0);
    let mut keep_first = merged.clone();
    keep_first.merge(slower, OnDuplicate::KeepFirst).unwrap();
    assert_eq!(
        keep_first.targets[0].points[0].median_ms,
        merged.targets[0].points[0].median_ms
    );

    // Same name, engine and device, but a different curve: two different things called "x".
    let other = measured("saw", vec![1024], "x");
    let err = merged
        .clone()
        .merge(other, OnDuplicate::Error)
        .unwrap_err()
        .to_string();
    assert!(err.contains("engine details"), "{err}");
    let mut elsewhere = measured("steps", vec![1024], "x");
    elsewhere.targets[0].host.as_mut().unwrap().cpu_model = "another CPU".into();
    let err = merged
        .merge(elsewhere, OnDuplicate::Error)
        .unwrap_err()
        .to_string();
    assert!(err.contains("hosts"), "{err}");
}

fn table_error(text: &str) -> String {
    LatencyTable::from_json(text, "bad.json")
        .unwrap_err()
        .to_string()
}

fn with_point(point: &str) -> String {
    format!(
        r#"{{"format": "symbiont-latency-table", "version": 1, "targets": [{{"label": "l", "engine": {{"name": "e"}},
        "device": "d", "points": [{point}]}}]}}"#
    )
}

const GOOD: &str = r#"{"hidden": 8, "layers": 1, "batch": 1, "seq": 35, "threads": 1, "dtype": "f32", "median_ms": 1.0}"#;

#[test]
fn malformed_tables_name_the_file_and_the_field() {
    let cases: Vec<(String, &str)> = vec![
        ("{ not json".into(), "bad.json: line 1 column 3: not JSON"),
        (
            r#"{"version": 1, "targets": []}"#.into(),
            "bad.json: format: missing",
        ),
        (
            r#"{"format": "other", "version": 1}"#.into(),
            "bad.json: format: \"other\"",
        ),
        (
            r#"{"format": "symbiont-latency-table", "version": 2}"#.into(),
            "bad.json: version: 2 is newer",
        ),
        (
            with_point(&GOOD.replace(r#", "median_ms": 1.0"#, "")),
            "bad.json: targets[0].points[0]: missing field `median_ms`",
        ),
        (
            with_point(&GOOD.replace("\"hidden\": 8", "\"hidden\": \"big\"")),
            "bad.json: targets[0].points[0].hidden: invalid type",
        ),
        (
            with_point(&GOOD.replace("median_ms", "medain_ms")),
            "unknown field `medain_ms`",
        ),
        (
            with_point(&GOOD.replace("1.0}", "-1.0}")),
            "bad.json: targets[0].points[0].median_ms: -1 is not a positive",
        ),
        (
            with_point(&GOOD.replace("1.0}", "1.0, \"p10_ms\": 2.0}")),
            "bad.json: targets[0].points[0].p10_ms: 2 exceeds median_ms",
        ),
        (
            with_point(&GOOD.replace("\"layers\": 1", "\"layers\": 0")),
            "bad.json: targets[0].points[0].layers: must be positive",
        ),
        (
            with_point(&GOOD.replace("1.0}", "1.0, \"density\": 1.5}")),
            "bad.json: targets[0].points[0].density",
        ),
        (
            with_point(&format!("{GOOD}, {GOOD}")),
            "bad.json: targets[0].points[1]: same configuration as points[0]",
        ),
    ];
    for (text, want) in cases {
        let err = table_error(&text);
        assert!(err.contains(want), "expected `{want}` in `{err}`");
    }
    assert!(LatencyTable::from_json(&with_point(GOOD), "ok.json").is_ok());
    let missing = LatencyTable::load(std::path::Path::new("/nonexistent/t.json"))
        .unwrap_err()
        .to_string();
    assert!(missing.starts_with("/nonexistent/t.json: "), "{missing}");
}

#[test]
fn malformed_csv_names_the_line_and_column() {
    let header = "hidden,layers,batch,seq,threads,dtype,median_ms";
    let cases = [
        (
            format!("{header}\n8,1,1,35,1,f32,fast\n"),
            "bad.csv: line 2 column `median_ms`: `fast` is not a valid value",
        ),
        (
            format!("{header},speed\n8,1,1,35,1,f32,1,2\n"),
            "bad.csv: line 1: unknown column `speed`",
        ),
        (
            "hidden,median_ms\n8,1\n".to_string(),
            "bad.csv: line 2 column `layers`: is required",
        ),
        (
            format!("{header}\n8,1,1,35,1\n"),
            "bad.csv: line 2: 5 cells for 7 columns",
        ),
        (
            format!("{header}\n8,1,1,35,1,\"f32,1\n"),
            "unterminated quoted cell",
        ),
    ];
    for (text, want) in cases {
        let path = tmp("bad.csv");
        std::fs::write(&path, text).unwrap();
        let err = LatencyTable::load(&path).unwrap_err().to_string();
        assert!(
            err.contains(want.trim_start_matches("bad.csv")) && err.contains("bad.csv"),
            "expected `{want}` in `{err}`"
        );
    }
    let t: Target = LatencyTable::load(&{
        let p = tmp("ok.csv");
        std::fs::write(&p, format!("{header}\n8,1,1,35,1,f32,1.5\n")).unwrap();
        p
    })
    .unwrap()
    .targets
    .remove(0);
    assert_eq!(
        (t.label.as_str(), t.points[0].input, t.points[0].median_ms),
        ("imported", 8, 1.5)
    );
}
