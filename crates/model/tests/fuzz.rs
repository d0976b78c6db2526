//! Fuzzing the safetensors reader and the model loader: a real model file, mutated byte by byte
//! and through its JSON header (numbers swapped for extreme values), must load or fail with an
//! error — never panic, abort or allocate absurdly. `SYMBIONT_FUZZ_CASES` sets the cases per
//! target (tools/fuzz.sh; docs/fuzzing.md).

use kernels::fuzz::{cases, mutate, swap_numbers, Edit};
use model::checkpoint::TensorFile;
use model::{LanguageModel, LmConfig};
use proptest::prelude::*;
use std::collections::HashMap;

/// The bytes of a real checkpoint's model file (2-layer LSTM LM, V = 9, H = 4) and of an H-LSTM.
fn seeds() -> [Vec<u8>; 2] {
    let dir = std::env::temp_dir().join(format!("symbiont-model-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let lstm = LmConfig::lstm(9, 4, 2);
    let hlstm = LmConfig {
        gate_hidden: 3,
        ..LmConfig::lstm(7, 5, 1)
    };
    let out = [lstm, hlstm].map(|cfg| {
        let mut m = LanguageModel::<f32>::new(cfg).unwrap();
        m.init_uniform(0.3, 5);
        let path = dir.join("m.safetensors");
        m.save(&path, HashMap::new()).unwrap();
        std::fs::read(&path).unwrap()
    });
    std::fs::remove_dir_all(&dir).unwrap();
    out
}

fn seed(which: usize) -> &'static [u8] {
    static SEEDS: std::sync::OnceLock<[Vec<u8>; 2]> = std::sync::OnceLock::new();
    &SEEDS.get_or_init(seeds)[which % 2]
}

/// Everything a loader does with a file: parse, read every tensor, build the model.
fn load_all(bytes: &[u8]) {
    let Ok(file) = TensorFile::from_bytes("fuzz.safetensors", bytes) else {
        return;
    };
    for name in file.names() {
        let _ = file.floats(name, None);
        let _ = file.ints(name, None);
    }
    let _ = LanguageModel::<f32>::from_file(&file, 0.0);
    let mut fixed = LanguageModel::<f32>::new(LmConfig::lstm(9, 4, 2)).unwrap();
    let _ = fixed.load_params(&file);
}

/// The file with its JSON header rewritten by `f` and the length prefix set to match.
fn with_header(bytes: &[u8], f: impl Fn(&str) -> String) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    let new = f(header);
    let mut out = (new.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(new.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

#[test]
fn the_seeds_load() {
    for which in 0..2 {
        let file = TensorFile::from_bytes("seed", seed(which)).unwrap();
        LanguageModel::<f32>::from_file(&file, 0.0).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn mutated_bytes_never_panic(
        which in 0usize..2,
        edits in prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..8),
    ) {
        let edits: Vec<Edit> = edits.into_iter().map(|(k, a, v)| Edit::from_draw(k, a, v)).collect();
        load_all(&mutate(seed(which), &edits));
    }

    #[test]
    fn extreme_numbers_in_the_header_never_panic(
        which in 0usize..2,
        swaps in prop::collection::vec((any::<usize>(), any::<usize>()), 1..4),
    ) {
        load_all(&with_header(seed(which), |h| swap_numbers(h, &swaps)));
    }

    #[test]
    fn a_wrong_length_prefix_never_panics(which in 0usize..2, prefix in any::<u64>()) {
        let mut bytes = seed(which).to_vec();
        bytes[..8].copy_from_slice(&prefix.to_le_bytes());
        load_all(&bytes);
    }
}

/// Found by fuzzing (a parallel run with shape-editing mutations): a dimension of 0 makes a tensor
/// hold no data whatever its other dimension claims, and sizes read from it allocated a model the
/// file does not back — `encoder.weight` of shape [2^40, 0] aborted the process.
#[test]
fn sizes_read_from_shapes_must_be_backed_by_data() {
    let file = seed_with(0, "encoder.weight", vec![1usize << 40, 0], Vec::new());
    let err = LanguageModel::<f32>::from_file(&file, 0.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("encoder.weight"), "{err}");
}

/// Found by fuzzing (a parallel session's shape edits): an H-LSTM gate weight of shape [] (0-D)
/// indexed its first dimension before the shape check and panicked.
#[test]
fn a_zero_dimensional_gate_weight_is_a_shape_error() {
    let file = seed_with(1, "rnn.weight_hh1_l0", Vec::new(), vec![0.5]);
    let err = LanguageModel::<f32>::from_file(&file, 0.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("weight_hh1_l0"), "{err}");
}

/// Seed `which` written again with tensor `name` replaced by `shape` and `data` (a file the
/// safetensors layer accepts, so the loader's own checks are what the tests exercise).
fn seed_with(which: usize, name: &str, shape: Vec<usize>, data: Vec<f32>) -> TensorFile {
    use model::checkpoint::{write_tensors, OutTensor, TensorData};
    let seed = TensorFile::from_bytes("seed", seed(which)).unwrap();
    assert!(seed.contains(name), "seed {which} has no `{name}`");
    let tensors: Vec<OutTensor> = seed
        .names()
        .into_iter()
        .map(|n| {
            let (shape, data) = if n == name {
                (shape.clone(), data.clone())
            } else {
                let v = seed
                    .floats(n, None)
                    .unwrap()
                    .iter()
                    .map(|&x| x as f32)
                    .collect();
                (seed.shape(n).unwrap().to_vec(), v)
            };
            OutTensor {
                name: n.to_string(),
                shape,
                data: TensorData::F32Owned(data),
            }
        })
        .collect();
    let path = std::env::temp_dir().join(format!(
        "symbiont-model-fuzz-{}-{name}.safetensors",
        std::process::id()
    ));
    write_tensors(&path, &tensors, HashMap::new()).unwrap();
    let file = TensorFile::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    file
}
