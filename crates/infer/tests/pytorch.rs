//! The inference plans against PyTorch on the same weights (fixtures/infer_tiny.safetensors and
//! fixtures/hlstm_tiny.safetensors, made by tools/reference/make_infer_fixture.py and
//! make_hlstm_fixture.py) and against symbiont's training forward, for every packed format,
//! one and two threads, whole sequences and streaming.

use infer::{Dtype, FormatChoice, ModelPlan, ModelWeights, PlanOptions, StackPlan, Steps};
use model::checkpoint::TensorFile;
use std::path::PathBuf;

fn fixture(name: &str) -> TensorFile {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name);
    TensorFile::read(&p).unwrap()
}

fn floats(f: &TensorFile, name: &str) -> Vec<f32> {
    f.floats(name, None)
        .unwrap()
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

/// Largest |got - want| relative to the largest |want|; fails on NaN and on length mismatch.
fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    kernels::check::max_rel_diff(got, want, f64::MIN_POSITIVE) as f32
}

/// Every packed format and dtype, at 1 and 2 threads (measured, and with the step loop split by
/// units and by batch rows), for batch `b` and `t` steps, with the tolerance of each.
fn configs(b: usize, t: usize) -> Vec<(PlanOptions, f32)> {
    let f = |s: &str| s.parse::<FormatChoice>().unwrap();
    let formats = [
        (f("dense"), Dtype::F32, 1e-5),
        (f("csr"), Dtype::F32, 1e-5),
        (f("bsr4x4"), Dtype::F32, 1e-5),
        (f("bsr1x8"), Dtype::F32, 1e-5),
        (f("bsr8x1"), Dtype::F32, 1e-5),
        (f("auto"), Dtype::F32, 1e-5),
        // bf16 rounds the weights (8 mantissa bits): ~1e-2 relative on the outputs.
        (f("dense"), Dtype::Bf16, 2e-2),
    ];
    let mut out = Vec::new();
    for threads in [1, 2] {
        for (format, dtype, tol) in formats {
            let opts = PlanOptions {
                dtype,
                format,
                threads,
                batch: b,
                seq: t,
                step_threads: None,
                split_batch: false,
            };
            out.push((opts.clone(), tol));
            if threads > 1 {
                // Both ways of splitting the step loop, whatever the measurement would pick.
                for split_batch in [false, true] {
                    out.push((
                        PlanOptions {
                            step_threads: Some(threads),
                            split_batch,
                            ..opts.clone()
                        },
                        tol,
                    ));
                }
            }
        }
    }
    out
}

/// The fixture's sparse word language model (V = 50), its tokens (T = 6, B = 3, time-major) and
/// PyTorch's logits of every step.
fn tiny_lm() -> (ModelWeights, Vec<u32>, Vec<f32>) {
    let f = fixture("infer_tiny.safetensors");
    let w = ModelWeights::from_file_prefixed(&f, "lm.").unwrap();
    assert_eq!(w.vocab(), Some(50));
    let tokens = f
        .ints("lm.tokens", None)
        .unwrap()
        .into_iter()
        .map(|v| v as u32)
        .collect();
    (w, tokens, floats(&f, "lm.logits"))
}

fn with_threads<R: Send>(n: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn bidirectional_stack_matches_pytorch_in_every_format() {
    let f = fixture("infer_tiny.safetensors");
    let w = ModelWeights::from_file_prefixed(&f, "bi.").unwrap();
    assert_eq!(w.layers.len(), 2);
    assert_eq!(w.layers[0].directions.len(), 2);
    assert_eq!(w.layers[1].input, 40);
    let x = floats(&f, "bi.x");
    let want = floats(&f, "bi.y");
    let (t, b) = (7, 2);
    for (opts, tol) in configs(b, t) {
        let (threads, format, dtype) = (opts.threads, opts.format, opts.dtype);
        let got = with_threads(threads, || {
            let mut plan = StackPlan::new(&w.layers, &opts).unwrap();
            plan.run(&x, t, b, None).unwrap().to_vec()
        });
        let e = rel_err(&got, &want);
        assert!(
            e < tol,
            "{format:?} {dtype:?} threads {threads}: rel err {e}"
        );
    }
}

#[test]
fn bidirectional_stack_refuses_a_streaming_state() {
    let f = fixture("infer_tiny.safetensors");
    let w = ModelWeights::from_file_prefixed(&f, "bi.").unwrap();
    let mut plan = StackPlan::new(&w.layers, &PlanOptions::default()).unwrap();
    let mut state = plan.zero_state(1);
    let err = plan.run(&[0.0; 5], 1, 1, Some(&mut state)).unwrap_err();
    assert!(err.to_string().contains("bidirectional"), "{err}");
}

#[test]
fn sparse_language_model_matches_pytorch_whole_and_streaming() {
    let (w, tokens, want) = tiny_lm();
    let (t, b, v) = (6, 3, 50);
    for (opts, tol) in configs(b, t) {
        let (threads, format, dtype) = (opts.threads, opts.format, opts.dtype);
        with_threads(threads, || {
            let mut plan = ModelPlan::new(&w, &opts).unwrap();
            let all = plan
                .run_tokens(&tokens, t, b, None, Steps::All)
                .unwrap()
                .to_vec();
            let e = rel_err(&all, &want);
            assert!(
                e < tol,
                "{format:?} {dtype:?} threads {threads}: rel err {e}"
            );
            let last = plan
                .run_tokens(&tokens, t, b, None, Steps::Last)
                .unwrap()
                .to_vec();
            // Batch blocking differs between T·B and B rows: last-bit differences only.
            assert!(rel_err(&last, &all[(t - 1) * b * v..]) < 1e-6);
            // One step at a time with a carried state gives the same logits.
            let mut state = plan.stack().zero_state(b);
            for s in 0..t {
                let step = plan
                    .run_tokens(
                        &tokens[s * b..(s + 1) * b],
                        1,
                        b,
                        Some(&mut state),
                        Steps::Last,
                    )
                    .unwrap();
                let e = rel_err(step, &all[s * b * v..(s + 1) * b * v]);
                assert!(e < 1e-6, "streaming step {s}: {e}");
            }
        });
    }
}

#[test]
fn hlstm_layer_matches_pytorch_from_a_non_zero_state() {
    let f = fixture("hlstm_tiny.safetensors");
    let w = ModelWeights::from_file(&f).unwrap();
    let (t, b, h) = (4, 3, 6);
    let x = floats(&f, "x");
    for (opts, tol) in configs(b, t) {
        let (threads, format, dtype) = (opts.threads, opts.format, opts.dtype);
        with_threads(threads, || {
            let mut plan = StackPlan::new(&w.layers, &opts).unwrap();
            let mut state = plan.zero_state(b);
            state.h[0] = floats(&f, "h0");
            state.c[0] = floats(&f, "c0");
            let out = plan.run(&x, t, b, Some(&mut state)).unwrap().to_vec();
            let e = rel_err(&out, &floats(&f, "h"));
            assert!(e < tol, "{format:?} {dtype:?}: h rel err {e}");
            assert!(rel_err(&state.c[0], &floats(&f, "c_final")) < tol);
            assert_eq!(state.h[0], out[(t - 1) * b * h..]);
        });
    }
}

#[test]
fn export_then_import_computes_the_same_function() {
    let f = fixture("infer_tiny.safetensors");
    let dir = std::env::temp_dir().join(format!("symbiont-infer-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for prefix in ["bi.", "lm."] {
        let w = ModelWeights::from_file_prefixed(&f, prefix).unwrap();
        let path = dir.join(format!("{prefix}safetensors"));
        w.save(&path).unwrap();
        let back = ModelWeights::load(&path).unwrap();
        let opts = PlanOptions {
            threads: 1,
            ..PlanOptions::default()
        };
        let (t, b) = (3, 1);
        let mut a = ModelPlan::new(&w, &opts).unwrap();
        let mut c = ModelPlan::new(&back, &opts).unwrap();
        if w.vocab().is_some() {
            let toks = [1, 7, 3];
            assert_eq!(
                a.run_tokens(&toks, t, b, None, Steps::All).unwrap(),
                c.run_tokens(&toks, t, b, None, Steps::All).unwrap()
            );
        } else {
            let x: Vec<f32> = (0..t * b * w.input())
                .map(|i| (i as f32 * 0.37).sin())
                .collect();
            assert_eq!(
                a.run(&x, t, b, None, Steps::All).unwrap(),
                c.run(&x, t, b, None, Steps::All).unwrap()
            );
        }
    }
    // The bare stack is written with nn.LSTM names, the LM with the word-language-model names.
    let bare = TensorFile::read(&dir.join("bi.safetensors")).unwrap();
    assert!(bare.contains("weight_hh_l1_reverse") && !bare.contains("encoder.weight"));
    let lm = TensorFile::read(&dir.join("lm.safetensors")).unwrap();
    assert!(lm.contains("rnn.weight_ih_l0") && lm.contains("decoder.bias"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn batch_one_matches_pytorch_sequence_by_sequence() {
    // Batch 1 takes its own kernels (8-row dot products, no batch blocking): each of the
    // fixture's three sequences alone must give its column of PyTorch's logits.
    let (w, tokens, want) = tiny_lm();
    let (t, b, v) = (6, 3, 50);
    for (opts, tol) in configs(1, t) {
        let (threads, format, dtype) = (opts.threads, opts.format, opts.dtype);
        with_threads(threads, || {
            let mut plan = ModelPlan::new(&w, &opts).unwrap();
            for col in 0..b {
                let seq: Vec<u32> = (0..t).map(|s| tokens[s * b + col]).collect();
                let want_col: Vec<f32> = (0..t)
                    .flat_map(|s| {
                        want[(s * b + col) * v..(s * b + col + 1) * v]
                            .iter()
                            .copied()
                    })
                    .collect();
                let got = plan
                    .run_tokens(&seq, t, 1, None, Steps::All)
                    .unwrap()
                    .to_vec();
                let e = rel_err(&got, &want_col);
                assert!(
                    e < tol,
                    "{format:?} {dtype:?} threads {threads} sequence {col}: rel err {e}"
                );
            }
        });
    }
}

#[test]
fn plan_equals_the_training_forward_on_a_larger_model() {
    // A symbiont LM with unequal layer widths and a width that is not a multiple of 16.
    let dir = std::env::temp_dir().join(format!("symbiont-infer-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = model::LmConfig::lstm(37, 52, 2);
    config.embedding = 20;
    config.hidden_sizes = vec![52, 33];
    let mut lm = model::LanguageModel::<f32>::new(config).unwrap();
    lm.init_uniform(0.3, 11);
    let path = dir.join("lm.safetensors");
    lm.save(&path, Default::default()).unwrap();
    let w = ModelWeights::load(&path).unwrap();
    // Batch 2 and batch 1 (which runs its own kernels).
    for (t, b) in [(9, 2), (9, 1)] {
        let tokens: Vec<u32> = (0..t * b).map(|i| (i * 7 % 37) as u32).collect();
        let mut ws = lm.workspace(t, b);
        let mut state = model::LmState::zeros(&lm.config, b);
        lm.forward(&mut ws, &tokens, &vec![0; t * b], &mut state, None, None);
        let want = ws.logits.clone();
        for threads in [1, 2] {
            let opts = PlanOptions {
                threads,
                batch: b,
                seq: t,
                ..PlanOptions::default()
            };
            let got = with_threads(threads, || {
                let mut plan = ModelPlan::new(&w, &opts).unwrap();
                plan.run_tokens(&tokens, t, b, None, Steps::All)
                    .unwrap()
                    .to_vec()
            });
            let e = rel_err(&got, &want);
            assert!(e < 1e-5, "batch {b}, threads {threads}: rel err {e}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn malformed_files_name_the_tensor() {
    let dir = std::env::temp_dir().join(format!("symbiont-infer-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, tensors: Vec<(&str, Vec<usize>)>| {
        let out: Vec<model::checkpoint::OutTensor<'_>> = tensors
            .into_iter()
            .map(|(n, shape)| {
                let len = shape.iter().product();
                model::checkpoint::OutTensor {
                    name: n.to_string(),
                    shape,
                    data: model::checkpoint::TensorData::F32Owned(vec![0.1; len]),
                }
            })
            .collect();
        let p = dir.join(name);
        model::checkpoint::write_tensors(&p, &out, Default::default()).unwrap();
        p
    };
    let no_lstm = write("a.safetensors", vec![("encoder.weight", vec![4, 2])]);
    let e = ModelWeights::load(&no_lstm).unwrap_err().to_string();
    assert!(e.contains("no LSTM layer found"), "{e}");
    let missing = write(
        "b.safetensors",
        vec![("weight_ih_l0", vec![8, 3]), ("bias_ih_l0", vec![8])],
    );
    let e = ModelWeights::load(&missing).unwrap_err().to_string();
    assert!(e.contains("weight_hh_l0"), "{e}");
    let wrong = write(
        "c.safetensors",
        vec![
            ("weight_ih_l0", vec![8, 3]),
            ("weight_hh_l0", vec![8, 3]),
            ("bias_ih_l0", vec![8]),
        ],
    );
    let e = ModelWeights::load(&wrong).unwrap_err().to_string();
    assert!(e.contains("weight_hh_l0") && e.contains("[8, 2]"), "{e}");
    let chain = write(
        "d.safetensors",
        vec![
            ("weight_ih_l0", vec![8, 3]),
            ("weight_hh_l0", vec![8, 2]),
            ("bias_ih_l0", vec![8]),
            ("weight_ih_l1", vec![8, 5]),
            ("weight_hh_l1", vec![8, 2]),
            ("bias_ih_l1", vec![8]),
        ],
    );
    let e = ModelWeights::load(&chain).unwrap_err().to_string();
    assert!(
        e.contains("layer 1 reads 5 inputs but layer 0 writes 2"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_decoder_without_its_bias_is_refused_as_eval_refuses_it() {
    // Inference used to fill a missing `decoder.bias` with zeros where `eval` and `--resume`
    // refuse the file: one model, two verdicts.
    use model::checkpoint::{write_tensors, OutTensor, TensorData};
    let f = fixture("infer_tiny.safetensors");
    let tensors: Vec<OutTensor> = f
        .names()
        .into_iter()
        .filter(|n| n.starts_with("lm.") && *n != "lm.decoder.bias" && *n != "lm.tokens")
        .map(|n| OutTensor {
            name: n.to_string(),
            shape: f.shape(n).unwrap().to_vec(),
            data: TensorData::F32Owned(floats(&f, n)),
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("symbiont-infer-{}-nobias", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lm.safetensors");
    write_tensors(&path, &tensors, Default::default()).unwrap();
    let file = TensorFile::read(&path).unwrap();
    let err = ModelWeights::from_file_prefixed(&file, "lm.")
        .unwrap_err()
        .to_string();
    assert!(err.contains("decoder.bias"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
