//! SVG charts: overlaid tables get distinguishing legend labels; frontier points and plateaus
//! are drawn; only .svg files are written.

use profile::plot::{render_svg, series_from_tables, write_svg, PlotOptions};
use profile::{sweep, Axis, FakeEngine, Grid, LatencyTable, SweepOptions};
use std::sync::atomic::AtomicBool;

fn table(spec: &str, densities: Vec<f64>) -> LatencyTable {
    let mut g = Grid::over_hidden((1..=16).map(|k| 64 * k).collect());
    g.density = densities;
    let opts = SweepOptions {
        budget_s: None,
        ..SweepOptions::default()
    };
    let out = sweep(
        &mut FakeEngine::parse(spec).unwrap(),
        g.points().unwrap(),
        &opts,
        &AtomicBool::new(false),
    );
    LatencyTable::from_sweep(&out, None)
}

#[test]
fn densities_and_machines_are_told_apart_in_the_legend() {
    let dense_sparse = vec![("cpu".to_string(), table("steps:width=256", vec![1.0, 0.5]))];
    let s = series_from_tables(&dense_sparse, Axis::Hidden, false);
    let labels: Vec<&str> = s.iter().map(|x| x.label.as_str()).collect();
    assert_eq!(
        labels,
        ["density=1.0 format=dense", "density=0.5 format=auto"]
    );
    let machines = vec![
        ("laptop".to_string(), table("steps:width=256", vec![1.0])),
        ("server".to_string(), table("linear", vec![1.0])),
    ];
    let s = series_from_tables(&machines, Axis::Hidden, false);
    assert_eq!(s[0].label, "laptop");
    assert_eq!(s[1].label, "server");

    let svg = render_svg(&s, &PlotOptions::default()).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("laptop") && svg.contains("server"));
    assert!(svg.contains("latency against hidden"));
    // Frontier points are filled circles of radius 4: 4 steps ends + 16 linear sizes.
    assert_eq!(svg.matches(r#"r="4""#).count(), 20, "{svg}");
    let plain = PlotOptions {
        frontier: None,
        plateau_tol: None,
        ..PlotOptions::default()
    };
    assert_eq!(
        render_svg(&s, &plain).unwrap().matches(r#"r="4""#).count(),
        0
    );
}

#[test]
fn only_svg_files_are_written() {
    let s = series_from_tables(
        &[("t".into(), table("saw", vec![1.0]))],
        Axis::Hidden,
        false,
    );
    let dir = std::env::temp_dir().join(format!("symbiont-plots-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = write_svg(&dir.join("p.png"), &s, &PlotOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("PNG is not supported"), "{err}");
    assert!(write_svg(&dir.join("p.txt"), &s, &PlotOptions::default()).is_err());
    write_svg(&dir.join("p.svg"), &s, &PlotOptions::default()).unwrap();
    assert!(std::fs::read_to_string(dir.join("p.svg"))
        .unwrap()
        .contains("</svg>"));
    assert!(render_svg(&[], &PlotOptions::default()).is_err());
}

/// Renders on a thread: a chart that hangs (as latencies spanning 1e-160..1e160 did) fails the
/// test after a generous deadline instead of stalling the run.
fn render_within_deadline(medians: &[f64]) -> Result<String, String> {
    use profile::{Curve, CurvePoint};
    let points: Vec<CurvePoint> = medians
        .iter()
        .enumerate()
        .map(|(i, &m)| CurvePoint::exact(16.0 * (i + 1) as f64, m))
        .collect();
    let series = vec![profile::plot::Series {
        label: "t".into(),
        curve: Curve::new(points).map_err(|e| e.to_string())?,
    }];
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(render_svg(&series, &PlotOptions::default()).map_err(|e| e.to_string()));
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("the chart did not render within 60 s")
}

#[test]
fn extreme_and_degenerate_latency_ranges_draw_or_are_refused_never_hang() {
    // 320 decades: refused, naming the span.
    let err = render_within_deadline(&[1e-160, 1.0, 1e160]).unwrap_err();
    assert!(err.contains("decades"), "{err}");
    let err = render_within_deadline(&[1e-10, 1.0, 1e300]).unwrap_err();
    assert!(
        err.contains("decades") || err.contains("cannot be drawn"),
        "{err}"
    );
    // Flat, tiny, subnormal-adjacent, huge-but-narrow and ordinary ranges draw.
    for medians in [
        &[2.0, 2.0, 2.0][..],
        &[1e-300, 2e-300, 3e-300],
        &[1e200, 3e200],
        &[0.5],
        &[0.1, 10.0, 1000.0],
    ] {
        let svg = render_within_deadline(medians).unwrap_or_else(|e| panic!("{medians:?}: {e}"));
        assert!(svg.contains("<svg"), "{medians:?}");
    }
}
