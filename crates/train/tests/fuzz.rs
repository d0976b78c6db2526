//! Fuzzing the training inputs: the repository's configs (with and without a `[compress]`
//! schedule, LSTM and H-LSTM) mutated byte by byte and with extreme numbers, and a PTB-format
//! corpus mutated on disk, must load or fail with an error naming the problem — never panic or
//! hang. `SYMBIONT_FUZZ_CASES` sets the cases per target (tools/fuzz.sh; docs/fuzzing.md).

use kernels::fuzz::{cases, mutate, swap_numbers, Edit};
use proptest::prelude::*;
use train::ptb::load_ptb;
use train::TrainConfig;

const CONFIGS: [&str; 4] = [
    include_str!("../../../configs/ptb-small.toml"),
    include_str!("../../../configs/ptb-small-prune.toml"),
    include_str!("../../../configs/ptb-small-hlstm.toml"),
    include_str!("../../../configs/flow/demo-recipe.toml"),
];

/// What training does with a config before it allocates: parse, validate, derive the model
/// config and the batch count of an epoch.
fn use_config(text: &str) {
    if let Ok(cfg) = TrainConfig::from_toml(text, "fuzz.toml") {
        let _ = cfg.lm_config(10_000);
        let _ = train::ptb::batches_per_epoch(929_589, cfg.data.batch_size, cfg.data.bptt);
        let _ = cfg.to_toml();
    }
}

/// A small corpus in PTB's format: lines of words from a 40-word vocabulary.
fn corpus_text(lines: usize, seed: usize) -> String {
    (0..lines)
        .map(|l| {
            let words: Vec<String> = (0..8)
                .map(|k| format!("w{}", (l * 7 + k * 3 + seed) % 40))
                .collect();
            format!(" {} \n", words.join(" "))
        })
        .collect()
}

#[test]
fn the_seeds_load() {
    for text in CONFIGS {
        TrainConfig::from_toml(text, "seed").unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn mutated_configs_never_panic(
        which in 0usize..4,
        edits in prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..8),
    ) {
        let edits: Vec<Edit> = edits.into_iter().map(|(k, a, v)| Edit::from_draw(k, a, v)).collect();
        use_config(&String::from_utf8_lossy(&mutate(CONFIGS[which].as_bytes(), &edits)));
    }

    #[test]
    fn extreme_numbers_in_configs_never_panic(
        which in 0usize..4,
        swaps in prop::collection::vec((any::<usize>(), any::<usize>()), 1..4),
    ) {
        use_config(&swap_numbers(CONFIGS[which], &swaps));
    }
}

proptest! {
    // Each case writes three files: a tenth of the cases of the in-memory targets.
    #![proptest_config(ProptestConfig::with_cases((cases() / 10).max(16)))]

    #[test]
    fn a_mutated_corpus_loads_with_ids_in_range_or_is_refused(
        edits in prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..8),
        split in 0usize..3,
    ) {
        let dir = std::env::temp_dir().join(format!(
            "symbiont-ptb-fuzz-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let edits: Vec<Edit> = edits.into_iter().map(|(k, a, v)| Edit::from_draw(k, a, v)).collect();
        for (k, name) in ["train", "valid", "test"].iter().enumerate() {
            let text = corpus_text(if k == 0 { 60 } else { 12 }, k);
            let bytes = if k == split { mutate(text.as_bytes(), &edits) } else { text.into_bytes() };
            std::fs::write(dir.join(format!("ptb.{name}.txt")), bytes).unwrap();
        }
        if let Ok(c) = load_ptb(&dir, false) {
            let v = c.vocab.len() as u32;
            prop_assert!(c.train.iter().chain(&c.valid).chain(&c.test).all(|&id| id < v));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Found by fuzzing (a parallel session's corpus mutations): an empty training split read as a
/// corpus without a vocabulary, failing later far from the cause.
#[test]
fn an_empty_training_split_is_refused_naming_the_file() {
    let dir = std::env::temp_dir().join(format!("symbiont-ptb-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ptb.train.txt"), "").unwrap();
    for split in ["valid", "test"] {
        std::fs::write(dir.join(format!("ptb.{split}.txt")), corpus_text(3, 0)).unwrap();
    }
    let err = load_ptb(&dir, false).unwrap_err().to_string();
    assert!(err.contains("ptb.train.txt"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
