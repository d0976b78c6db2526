//! The fake engine's known curves, swept and analysed end to end: the frontier, plateaus, snap,
//! the best size under a budget and the hysteresis strength must come out exactly.

use profile::grid::parse_sizes;
use profile::report::{report, ReportOptions};
use profile::{
    sweep, Axis, FakeCurve, FakeEngine, FrontierOptions, Grid, LatencyModel, LatencyTable, Point,
    SweepOptions, SweepStatus,
};
use std::sync::atomic::AtomicBool;

fn quick() -> SweepOptions {
    SweepOptions {
        budget_s: None,
        ..SweepOptions::default()
    }
}

/// Sweeps hidden 32..2048 step 16 (the acceptance grid) with `engine`.
fn measure(mut engine: FakeEngine, opts: &SweepOptions) -> LatencyTable {
    let points = Grid::over_hidden(parse_sizes("--hidden", "32:2048:16").unwrap())
        .points()
        .unwrap();
    let out = sweep(&mut engine, points, opts, &AtomicBool::new(false));
    assert!(
        matches!(out.status, SweepStatus::Complete),
        "{:?}",
        out.status
    );
    LatencyTable::from_sweep(&out, None)
}

fn frontier_sizes(t: &LatencyTable) -> Vec<usize> {
    t.targets[0]
        .frontier(&Point::lstm(32), Axis::Hidden, &FrontierOptions::default())
        .iter()
        .map(|p| p.hidden)
        .collect()
}

fn steps() -> FakeEngine {
    FakeEngine::new(FakeCurve::Steps {
        width: 128,
        base_ms: 0.5,
        step_ms: 1.0,
    })
}

#[test]
fn steps_frontier_plateaus_snap_and_budget() {
    let t = measure(steps(), &quick());
    let target = &t.targets[0];
    assert_eq!(target.points.len(), 127);
    let multiples: Vec<usize> = (1..=16).map(|k| 128 * k).collect();
    assert_eq!(frontier_sizes(&t), multiples);
    assert!(target
        .points
        .iter()
        .filter(|p| p.hidden % 128 == 0)
        .all(|p| p.verified == Some(true)));
    let base = Point::lstm(32);
    for h in [32usize, 48, 128, 144, 1008, 2048] {
        let want = h.div_ceil(128) * 128;
        let snapped = target.snap(&Point::lstm(h), Axis::Hidden).unwrap();
        assert_eq!((snapped.hidden, snapped.input), (want, want), "snap({h})");
    }
    assert_eq!(
        target.snap(&Point::lstm(100), Axis::Hidden),
        None,
        "100 was not measured"
    );
    // 0.5 + k ms for sizes up to 128·k: a 5 ms budget allows k = 4.
    assert_eq!(
        target
            .best_under_budget(&base, Axis::Hidden, 5.0)
            .unwrap()
            .hidden,
        512
    );
    assert_eq!(target.best_under_budget(&base, Axis::Hidden, 1.0), None);
    let r = report(&t, &ReportOptions::default());
    let plateaus: Vec<(u64, u64)> = r.curves[0]
        .plateaus
        .iter()
        .map(|p| (p.from.as_u64().unwrap(), p.to.as_u64().unwrap()))
        .collect();
    let mut want = vec![(32, 128)];
    want.extend((1..16).map(|k| (128 * k + 16, 128 * (k + 1))));
    assert_eq!(plateaus, want);
    let h = r.curves[0].hysteresis.as_ref().unwrap();
    assert!(
        h.strength <= 1.0 && !h.significant,
        "a staircase has no hysteresis: {}",
        h.strength
    );
}

#[test]
fn saw_tooth_frontier_snap_budget_and_hysteresis() {
    // L(h) = 0.5 + 0.01·h + 0.02·(h mod 256): the first sizes of each period (h mod 256 ≤ 80)
    // beat the next period's start (0.03·r < 2.56); the rest are dominated.
    let saw = FakeEngine::new(FakeCurve::Saw {
        period: 256,
        base_ms: 0.5,
        trend_ms: 0.01,
        ramp_ms: 0.02,
    });
    let t = measure(saw, &quick());
    let want: Vec<usize> = parse_sizes("--hidden", "32:2048:16")
        .unwrap()
        .into_iter()
        .filter(|h| h % 256 <= 80)
        .collect();
    assert_eq!(frontier_sizes(&t), want);
    let target = &t.targets[0];
    // L(240) = 7.7 ms; 576 (= 512 + 64) takes 7.54 ms, 592 takes 8.02, 768 takes 8.18.
    assert_eq!(
        target.snap(&Point::lstm(240), Axis::Hidden).unwrap().hidden,
        576
    );
    assert_eq!(
        target.snap(&Point::lstm(592), Axis::Hidden).unwrap().hidden,
        592
    );
    assert_eq!(
        target
            .best_under_budget(&Point::lstm(32), Axis::Hidden, 8.0)
            .unwrap()
            .hidden,
        576
    );
    let r = report(&t, &ReportOptions::default());
    let h = r.curves[0].hysteresis.as_ref().unwrap();
    assert!((h.strength - 7.7 / 3.06).abs() < 1e-9, "{}", h.strength);
    assert_eq!(
        (h.smaller.as_u64(), h.larger.as_u64()),
        (Some(240), Some(256))
    );
    assert!(h.significant);
}

#[test]
fn noisy_steps_keep_every_step_top_and_the_plateaus_recover_the_steps() {
    // With noise, sizes on one step are ties (within noise of each other) and stay on the
    // frontier; the step tops are always there, and the plateau segmentation finds the steps.
    let tops: Vec<usize> = (1..=16).map(|k| 128 * k).collect();
    for seed in 1..=4 {
        let opts = SweepOptions { seed, ..quick() };
        let t = measure(steps().with_noise(0.005, seed), &opts);
        let f = frontier_sizes(&t);
        assert!(tops.iter().all(|s| f.contains(s)), "seed {seed}: {f:?}");
        let r = report(&t, &ReportOptions::default());
        let ends: Vec<u64> = r.curves[0]
            .plateaus
            .iter()
            .map(|p| p.to.as_u64().unwrap())
            .collect();
        assert_eq!(
            ends,
            tops.iter().map(|&s| s as u64).collect::<Vec<_>>(),
            "seed {seed}"
        );
    }
}

#[test]
fn a_monotonic_curve_is_all_frontier() {
    let t = measure(
        FakeEngine::new(FakeCurve::Quadratic {
            base_ms: 0.1,
            coef_ms: 3.6e-5,
        }),
        &quick(),
    );
    assert_eq!(frontier_sizes(&t).len(), 127);
    let r = report(&t, &ReportOptions::default());
    assert!(r.curves[0].hysteresis.as_ref().unwrap().strength < 1.0);
    assert!(r.curves[0].snap.iter().all(|[a, b]| a == b));
}
