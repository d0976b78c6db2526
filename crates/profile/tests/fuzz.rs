//! Fuzzing the latency-table readers: real tables (JSON and CSV, from a sweep of the fake
//! engine) mutated byte by byte and with extreme numbers in place of their values must parse
//! and validate, or fail with an error — and a table that loads must answer the frontier and
//! size queries without panicking. `SYMBIONT_FUZZ_CASES` sets the cases per target.

use kernels::fuzz::{cases, mutate, swap_numbers, Edit};
use profile::csv::{from_csv, to_csv};
use profile::{
    sweep, Axis, FakeEngine, FrontierOptions, Grid, LatencyModel, LatencyTable, SweepOptions,
};
use proptest::prelude::*;
use std::sync::atomic::AtomicBool;

fn seeds() -> (String, String) {
    let opts = SweepOptions {
        budget_s: None,
        keep_samples: true,
        ..SweepOptions::default()
    };
    let mut e = FakeEngine::parse("steps:noise=0.02:seed=4").unwrap();
    let out = sweep(
        &mut e,
        Grid::over_hidden(vec![64, 128, 192, 256]).points().unwrap(),
        &opts,
        &AtomicBool::new(false),
    );
    let t = LatencyTable::from_sweep(&out, Some("fuzz".into()));
    (serde_json::to_string_pretty(&t).unwrap(), to_csv(&t))
}

fn seed() -> &'static (String, String) {
    static SEEDS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    SEEDS.get_or_init(seeds)
}

/// What commands do with a loaded table: validate, then ask for frontiers.
fn use_table(t: Result<LatencyTable, profile::ProfileError>) {
    let Ok(t) = t else { return };
    if t.validate("fuzz").is_err() {
        return;
    }
    for target in &t.targets {
        for p in target.points.iter().take(3) {
            let base = p.point();
            let _ = target.frontier(&base, Axis::Hidden, &FrontierOptions::default());
            let _ = target.snap(&base, Axis::Hidden);
            let _ = target.best_under_budget(&base, Axis::Hidden, 1.0);
        }
    }
    let _ = to_csv(&t);
}

fn parse_both(json: &str, csv: &str) {
    use_table(LatencyTable::from_json(json, "fuzz.json"));
    use_table(from_csv(csv, "fuzz.csv"));
}

#[test]
fn the_seeds_load() {
    let (json, csv) = seed();
    LatencyTable::from_json(json, "seed.json").unwrap();
    from_csv(csv, "seed.csv").unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn mutated_bytes_never_panic(
        edits in prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..8),
    ) {
        let edits: Vec<Edit> = edits.into_iter().map(|(k, a, v)| Edit::from_draw(k, a, v)).collect();
        let (json, csv) = seed();
        let json = String::from_utf8_lossy(&mutate(json.as_bytes(), &edits)).into_owned();
        let csv = String::from_utf8_lossy(&mutate(csv.as_bytes(), &edits)).into_owned();
        parse_both(&json, &csv);
    }

    #[test]
    fn extreme_numbers_never_panic(
        swaps in prop::collection::vec((any::<usize>(), any::<usize>()), 1..6),
    ) {
        let (json, csv) = seed();
        parse_both(&swap_numbers(json, &swaps), &swap_numbers(csv, &swaps));
    }
}
