//! Fuzzing the flow configs (`symbiont compress --config`): the repository's flow files mutated
//! byte by byte and with extreme numbers must parse and validate, or fail with an error naming
//! `[section] key` — never panic or hang. `SYMBIONT_FUZZ_CASES` sets the cases per target.

use flow::config::FlowConfig;
use kernels::fuzz::{cases, mutate, swap_numbers, Edit};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

const FLOWS: [&str; 5] = [
    include_str!("../../../configs/demo-symbiotic.toml"),
    include_str!("../../../configs/ptb-symbiotic-cpu-dense.toml"),
    include_str!("../../../configs/ptb-symbiotic-cpu-sparse.toml"),
    include_str!("../../../configs/ptb-symbiotic-cpu-sparse-hlstm.toml"),
    include_str!("../../../configs/ablation/multiple64.toml"),
];

/// The configs' folder: relative paths inside (the training recipe) resolve as in a real run.
fn base(which: usize) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    if which == 4 {
        root.join("ablation")
    } else {
        root
    }
}

/// Seed `which` with its latency table pointed at a file that exists and a reported baseline in
/// place of a checkpoint: both are made by earlier commands (runs/…), and a missing one would end
/// every case early.
fn seed(which: usize) -> &'static str {
    static SEEDS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz.rs");
    &SEEDS.get_or_init(|| {
        FLOWS
            .iter()
            .map(|text| {
                text.lines()
                    .map(|l| {
                        if l.starts_with("table = ") {
                            format!("table = {:?}", here.display().to_string())
                        } else if l == "from = \"checkpoint\"" {
                            "from = \"reported\"\nvalid_ppl = 150.0\ntest_ppl = 140.0".into()
                        } else if l.starts_with("path = ") {
                            String::new()
                        } else {
                            l.to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .collect()
    })[which]
}

fn parse(which: usize, text: &str) {
    let _ = FlowConfig::from_toml(text, "fuzz.toml", &base(which), "fuzz");
}

#[test]
fn the_seeds_load() {
    for which in 0..FLOWS.len() {
        FlowConfig::from_toml(seed(which), "seed", &base(which), "seed").unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn mutated_flow_configs_never_panic(
        which in 0usize..5,
        edits in prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..8),
    ) {
        let edits: Vec<Edit> = edits.into_iter().map(|(k, a, v)| Edit::from_draw(k, a, v)).collect();
        parse(which, &String::from_utf8_lossy(&mutate(seed(which).as_bytes(), &edits)));
    }

    #[test]
    fn extreme_numbers_in_flow_configs_never_panic(
        which in 0usize..5,
        swaps in prop::collection::vec((any::<usize>(), any::<usize>()), 1..4),
    ) {
        parse(which, &swap_numbers(seed(which), &swaps));
    }
}
