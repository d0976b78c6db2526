//! Fuzzing the inference loader: PyTorch-named safetensors files (a word LM, a bidirectional
//! H-LSTM stack, a bare `nn.LSTM`), mutated byte by byte and through their JSON header, must load
//! and build a plan, or fail with an error — never panic or allocate absurdly.
//! `SYMBIONT_FUZZ_CASES` sets the cases per target (tools/fuzz.sh; docs/fuzzing.md).

use infer::{MaskShape, ModelPlan, ModelWeights, PlanOptions, SyntheticSpec};
use kernels::fuzz::{cases, mutate, swap_numbers, Edit};
use model::checkpoint::TensorFile;
use proptest::prelude::*;

fn seeds() -> Vec<Vec<u8>> {
    let dir = std::env::temp_dir().join(format!("symbiont-infer-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spec = |gate_width, bidirectional, vocab| SyntheticSpec {
        layers: 2,
        input: 6,
        hidden: 5,
        gate_width,
        bidirectional,
        density: 0.5,
        mask: MaskShape::Random,
        vocab,
        seed: 3,
    };
    let out = [spec(0, false, 11), spec(3, true, 0), spec(0, false, 0)]
        .iter()
        .map(|s| {
            let path = dir.join("w.safetensors");
            s.build().unwrap().save(&path).unwrap();
            std::fs::read(&path).unwrap()
        })
        .collect();
    std::fs::remove_dir_all(&dir).unwrap();
    out
}

fn seed(which: usize) -> &'static [u8] {
    static SEEDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    let s = SEEDS.get_or_init(seeds);
    &s[which % s.len()]
}

/// Load, then prepare a single-threaded plan without timing candidates (a fixed format).
fn load_and_plan(bytes: &[u8]) {
    let Ok(file) = TensorFile::from_bytes("fuzz.safetensors", bytes) else {
        return;
    };
    let Ok(w) = ModelWeights::from_file(&file) else {
        return;
    };
    let opts = PlanOptions {
        threads: 1,
        format: "dense".parse().unwrap(),
        step_threads: Some(1),
        ..PlanOptions::default()
    };
    let _ = ModelPlan::new(&w, &opts);
}

#[test]
fn the_seeds_load() {
    for which in 0..3 {
        let file = TensorFile::from_bytes("seed", seed(which)).unwrap();
        ModelWeights::from_file(&file).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn mutated_bytes_never_panic(
        which in 0usize..3,
        edits in prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..8),
    ) {
        let edits: Vec<Edit> = edits.into_iter().map(|(k, a, v)| Edit::from_draw(k, a, v)).collect();
        load_and_plan(&mutate(seed(which), &edits));
    }

    #[test]
    fn extreme_numbers_in_the_header_never_panic(
        which in 0usize..3,
        swaps in prop::collection::vec((any::<usize>(), any::<usize>()), 1..4),
    ) {
        let bytes = seed(which);
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header = swap_numbers(std::str::from_utf8(&bytes[8..8 + n]).unwrap(), &swaps);
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&bytes[8 + n..]);
        load_and_plan(&out);
    }
}
