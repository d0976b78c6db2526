//! Property tests of the analysis on random curves: the frontier is never dominated and
//! explains every size it leaves out; snap, budget, hysteresis and plateaus agree with brute
//! force; ranges parse to the sizes they describe.

use profile::grid::parse_sizes;
use profile::{Curve, CurvePoint, FrontierOptions};
use proptest::prelude::*;

fn curves() -> impl Strategy<Value = Curve> {
    prop::collection::vec((0.1f64..100.0, 0.0f64..0.05), 1..60).prop_map(|v| {
        // Coarse latencies make ties (flat stretches) common.
        let pts = v
            .iter()
            .enumerate()
            .map(|(i, &(ms, rel_se))| {
                let ms = (ms * 4.0).round() / 4.0 + 0.25;
                CurvePoint {
                    x: 16.0 * (i + 1) as f64,
                    median_ms: ms,
                    se_ms: rel_se * ms,
                }
            })
            .collect();
        Curve::new(pts).unwrap()
    })
}

fn options() -> impl Strategy<Value = FrontierOptions> {
    (0.0f64..0.1, 0.0f64..3.0).prop_map(|(rel_tol, noise_sigmas)| FrontierOptions {
        rel_tol,
        noise_sigmas,
    })
}

/// Curves with exact ties (coarse medians) and standard errors that make the noise margin
/// decide, including zero, so the fast frontier's shortcuts meet their borderlines.
fn noisy_curves() -> impl Strategy<Value = Curve> {
    prop::collection::vec((0u32..40, 0u32..6), 1..200).prop_map(|v| {
        let pts = v
            .iter()
            .enumerate()
            .map(|(i, &(ms, se))| CurvePoint {
                x: (i + 1) as f64,
                median_ms: 1.0 + f64::from(ms) * 0.125,
                se_ms: f64::from(se) * 0.0625,
            })
            .collect();
        Curve::new(pts).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]
    #[test]
    fn the_fast_frontier_equals_the_pairwise_definition(
        c in prop_oneof![curves(), noisy_curves()],
        o in options(),
        sigmas in prop::sample::select(vec![0.0, 1.0, 2.0, 3.0]),
    ) {
        for opts in [o, FrontierOptions { noise_sigmas: sigmas, ..o }] {
            prop_assert_eq!(c.frontier(&opts), c.frontier_reference(&opts));
        }
        // Every point's snap at once equals snapping it alone (and finding it by its x).
        let alone: Vec<usize> = c.points().iter().map(|p| c.snap(p.x).unwrap()).collect();
        prop_assert_eq!(c.snap_all(), alone);
        for (i, p) in c.points().iter().enumerate() {
            prop_assert_eq!(c.index_of(p.x), Some(i));
            prop_assert_eq!(c.index_of(p.x + 0.5), None);
        }
    }
}

proptest! {
    #[test]
    fn the_frontier_is_never_clearly_dominated_and_explains_what_it_leaves_out(c in curves(), o in options()) {
        let p = c.points();
        let l = |i: usize| p[i].median_ms;
        let f = c.frontier(&o);
        prop_assert_eq!(f.last().copied(), Some(p.len() - 1), "the largest size is on the frontier");
        prop_assert!(f.windows(2).all(|w| w[0] < w[1]));
        let clearly_faster = |j: usize, i: usize| {
            l(j) <= l(i) - o.noise_sigmas * (p[i].se_ms.powi(2) + p[j].se_ms.powi(2)).sqrt()
        };
        for &i in &f {
            prop_assert!((i + 1..p.len()).all(|j| !clearly_faster(j, i)), "frontier size {} is clearly dominated", i);
        }
        for i in (0..p.len()).filter(|i| !f.contains(i)) {
            prop_assert!((i + 1..p.len()).any(|j| clearly_faster(j, i)), "size {} left out without reason", i);
        }
    }

    #[test]
    fn without_tolerance_the_frontier_is_the_non_dominated_set(c in curves()) {
        let p = c.points();
        let want: Vec<usize> = (0..p.len()).filter(|&i| (i + 1..p.len()).all(|j| p[j].median_ms > p[i].median_ms)).collect();
        prop_assert_eq!(c.frontier(&FrontierOptions { rel_tol: 0.0, noise_sigmas: 0.0 }), want);
    }

    #[test]
    fn snap_is_at_least_the_size_no_slower_and_maximal(c in curves(), k in 0usize..60) {
        let p = c.points();
        let i = k % p.len();
        let s = c.snap(p[i].x).unwrap();
        prop_assert!(s >= i);
        prop_assert!(p[s].median_ms <= p[i].median_ms);
        prop_assert!((s + 1..p.len()).all(|j| p[j].median_ms > p[i].median_ms));
        prop_assert_eq!(c.snap(p[i].x + 0.5), None);
    }

    #[test]
    fn the_budget_answer_is_within_budget_and_maximal(c in curves(), budget in 0.0f64..110.0) {
        let p = c.points();
        match c.best_under(budget) {
            Some(b) => {
                prop_assert!(p[b].median_ms <= budget);
                prop_assert!((b + 1..p.len()).all(|j| p[j].median_ms > budget));
            }
            None => prop_assert!(p.iter().all(|q| q.median_ms > budget)),
        }
    }

    #[test]
    fn hysteresis_is_the_largest_ratio_of_a_smaller_size_over_a_larger(c in curves()) {
        let p = c.points();
        let brute = (0..p.len())
            .flat_map(|i| (i + 1..p.len()).map(move |j| (i, j)))
            .map(|(i, j)| p[i].median_ms / p[j].median_ms)
            .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
        let h = c.hysteresis();
        prop_assert_eq!(h.map(|h| h.strength), brute);
        if let Some(h) = h {
            prop_assert!(h.smaller < h.larger);
            prop_assert_eq!(h.strength, p[h.smaller].median_ms / p[h.larger].median_ms);
        }
    }

    #[test]
    fn plateaus_partition_the_curve_into_maximal_level_runs(c in curves(), tol in 0.0f64..0.3) {
        let p = c.points();
        let pl = c.plateaus(tol);
        prop_assert_eq!(pl[0].first, 0);
        prop_assert_eq!(pl.last().unwrap().last, p.len() - 1);
        for w in pl.windows(2) {
            prop_assert_eq!(w[0].last + 1, w[1].first);
            // The next size would have broken the plateau.
            let next = p[w[1].first].median_ms;
            prop_assert!(w[0].max_ms.max(next) > w[0].min_ms.min(next) * (1.0 + tol));
        }
        for q in &pl {
            let run = &p[q.first..=q.last];
            let lo = run.iter().map(|x| x.median_ms).fold(f64::INFINITY, f64::min);
            let hi = run.iter().map(|x| x.median_ms).fold(0.0, f64::max);
            prop_assert_eq!((lo, hi), (q.min_ms, q.max_ms));
            prop_assert!(hi <= lo * (1.0 + tol));
        }
    }

    #[test]
    fn ranges_parse_to_the_sizes_they_describe(a in 1usize..500, n in 0usize..200, step in 1usize..64) {
        let b = a + n;
        let v = parse_sizes("--hidden", &format!("{a}:{b}:{step}")).unwrap();
        prop_assert_eq!(v.len(), n / step + 1);
        prop_assert!(v.iter().all(|&x| x >= a && x <= b && (x - a) % step == 0));
    }
}
