//! The CUDA backend against the CPU backend (the reference semantics), with the `cuda` feature.
//!
//! On a machine with an NVIDIA GPU (and the cuBLAS and NVRTC libraries): the language model's
//! forward and backward (LSTM and H-LSTM, two layers, dropout and gate dropout, a non-zero
//! carried-in state; also a vocabulary wider than a block and uneven widths) from the same
//! parameters on both, comparing the loss, every row's loss, the logits, the logits' gradient,
//! every parameter's gradient and the final state; dropout masks (bit-identical), GEMMs with
//! offsets and transposes, fills on a support, the sum of squares, one optimizer update of each
//! kind, and three training steps (forward, backward, gradient norm, momentum SGD) with the state,
//! workspace and buffers carried from step to step.
//!
//! Tolerances (`kernels::check::max_rel_diff`, relative to the largest magnitude of the CPU's
//! tensor): 1e-4 for results that went through GEMMs and reductions (their summation orders
//! differ: cuBLAS against the `gemm` crate) and through `expf` against the CPU's vectorized exp;
//! 1e-6 for the element-wise optimizer updates (compiled without fused multiply-adds, so they are
//! expected to be bit-identical; the test prints whether they are); exact for dropout masks.
//!
//! Without a GPU each test says why it did not run the comparison (SYMBIONT_REQUIRE_GPU=1 makes
//! that a failure, as `scripts/gpu-check.sh run` does) and checks what it can: that `Cuda::new`
//! fails with a message instead of panicking, and (where libnvrtc loads; SYMBIONT_REQUIRE_NVRTC=1
//! makes its absence a failure, as tools/nvrtc-check.sh does) that every kernel of `kernels.cu`
//! compiles to PTX with the parameters the launches pass (SYMBIONT_WRITE_PTX=FILE saves it).
#![cfg(feature = "cuda")]

use kernels::check::max_rel_diff;
use kernels::rng::CounterRng;
use kernels::support::Support;
use kernels::Trans;
use model::backend::cuda::{compile_kernels, missing_library, Cuda, KERNEL_SIGNATURES};
use model::backend::{Backend, Cpu, Operand, Update};
use model::dropout::DropoutCtx;
use model::{LanguageModel, LmConfig, LmState};

/// Results through GEMMs, reductions and exp.
const TOL: f64 = 1e-4;
/// Element-wise updates.
const TOL_UPDATE: f64 = 1e-6;

/// The GPU, or `None` after printing why this test cannot compare on one.
fn gpu(test: &str) -> Option<Cuda> {
    match Cuda::new(0) {
        Ok(cuda) => {
            println!("{test}: running on {}", Backend::<f32>::describe(&cuda));
            Some(cuda)
        }
        Err(e) => {
            assert!(!e.0.is_empty(), "Cuda::new failed without saying why");
            let required = std::env::var("SYMBIONT_REQUIRE_GPU").is_ok_and(|v| v == "1");
            assert!(!required, "SYMBIONT_REQUIRE_GPU=1 but {e}");
            println!("{test}: SKIPPED the GPU comparison: {e}");
            None
        }
    }
}

fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let rng = CounterRng::new(seed);
    (0..n)
        .map(|i| (rng.uniform(0, i as u64) * 2.0 - 1.0) * scale)
        .collect()
}

fn down(cuda: &Cuda, buf: &<Cuda as Backend<f32>>::Buf) -> Vec<f32> {
    let mut out = vec![0.0; Backend::<f32>::len(cuda, buf)];
    cuda.download(buf, &mut out).expect("download");
    out
}

fn op<B>(buf: &B, at: usize, trans: Trans) -> Operand<'_, B> {
    Operand { buf, at, trans }
}

/// `got` against `want` within `tol`, naming `what` (and printing the error found).
fn close(what: &str, got: &[f32], want: &[f32], tol: f64) {
    let rel = max_rel_diff(got, want, 1e-6);
    println!("  {what}: max relative difference {rel:.2e}");
    assert!(
        rel <= tol,
        "{what}: relative difference {rel:.3e} > {tol:e}"
    );
}

#[test]
fn kernels_compile_with_nvrtc() {
    if let Some(missing) = missing_library("nvrtc") {
        let required = std::env::var("SYMBIONT_REQUIRE_NVRTC").is_ok_and(|v| v == "1");
        assert!(!required, "SYMBIONT_REQUIRE_NVRTC=1 but {missing}");
        println!("kernels_compile_with_nvrtc: SKIPPED: {missing}");
        return;
    }
    let ptx = compile_kernels().unwrap_or_else(|e| panic!("{e}"));
    let text = ptx.to_src();
    if let Some(path) = std::env::var_os("SYMBIONT_WRITE_PTX") {
        std::fs::write(&path, &text).expect("writing the PTX");
        println!("wrote the PTX to {}", path.to_string_lossy());
    }
    for (name, sig) in KERNEL_SIGNATURES {
        // The entry's parameter list: `.param .u64 name_param_0, ...`.
        let entry = format!(".entry {name}(");
        let at = text
            .find(&entry)
            .unwrap_or_else(|| panic!("the PTX has no kernel {name}"));
        let params = &text[at + entry.len()..];
        let params = &params[..params.find(')').expect("closing parenthesis")];
        let types: String = params
            .split(',')
            .map(|p| match p.split_whitespace().nth(1) {
                Some(".u64") => '8',
                Some(".f32") => 'F',
                Some(".u32") => 'I',
                other => panic!("{name}: unexpected PTX parameter {other:?}"),
            })
            .collect();
        // Pointers, long longs and unsigned long longs are all .u64 in PTX.
        let want: String = sig
            .chars()
            .map(|c| if "PLU".contains(c) { '8' } else { c })
            .collect();
        assert_eq!(types, want, "PTX parameters of {name} against {sig}");
    }
    println!(
        "kernels_compile_with_nvrtc: {} kernels compiled to {} bytes of PTX, parameters as declared",
        KERNEL_SIGNATURES.len(),
        text.len()
    );
}

#[test]
fn a_missing_gpu_is_an_error_not_a_panic() {
    // On a GPU machine this starts the device (and must succeed or say why); elsewhere it must
    // fail with a message. Either way nothing panics.
    match Cuda::new(0) {
        Ok(cuda) => println!("found {}", Backend::<f32>::describe(&cuda)),
        Err(e) => println!("no GPU: {e}"),
    }
    let far = Cuda::new(999).err().expect("there is no GPU 999");
    assert!(!far.0.is_empty());
}

/// Forward (evaluation and training) and backward of `config` on the CPU and the GPU.
fn lm_parity(cuda: &Cuda, config: LmConfig, label: &str) {
    let (t, b) = (5, 3);
    let tb = t * b;
    let mut model = LanguageModel::<f32>::new(config.clone()).expect("config");
    model.init_uniform(0.3, 7);
    let v = config.vocab as u64;
    let ids = |seed| -> Vec<u32> {
        let rng = CounterRng::new(seed);
        (0..tb as u64)
            .map(|i| (rng.bits(0, i) % v) as u32)
            .collect()
    };
    let (tokens, targets) = (ids(1), ids(2));
    let dropout = DropoutCtx {
        rng: CounterRng::new(99),
        p: 0.0, // the model's own probabilities replace it
        step: 3,
    };
    // A non-zero carried-in state.
    let mut state0 = LmState::zeros(&config, b);
    for (l, (h, c)) in state0.h.iter_mut().zip(state0.c.iter_mut()).enumerate() {
        *h = values(h.len(), 10 + l as u64, 0.5);
        *c = values(c.len(), 20 + l as u64, 0.5);
    }
    let scale = 1.0 / b as f32;
    println!("{label}:");

    // Evaluation forward: the logits (bias added) and the loss.
    let mut ws = model.workspace(t, b);
    let mut st = state0.clone();
    let loss_cpu = model.forward(&mut ws, &tokens, &targets, &mut st, None, None);
    let params = cuda.upload(&model.params).expect("upload");
    let mut wsd = model.workspace_on(cuda, t, b).expect("workspace");
    let mut std_ = LmState::upload(cuda, &state0).expect("state");
    let batch = (&tokens[..], &targets[..], None, None);
    let loss_gpu = model
        .forward_on(cuda, &params, &mut wsd, batch, &mut std_)
        .expect("forward");
    println!("  eval loss: cpu {loss_cpu} gpu {loss_gpu}");
    assert!(((loss_gpu - loss_cpu) / loss_cpu).abs() < TOL, "eval loss");
    close("eval logits", &down(cuda, &wsd.logits), &ws.logits, TOL);
    let row_cpu: Vec<f32> = ws.row_loss.iter().map(|&x| x as f32).collect();
    let row_gpu: Vec<f32> = wsd.row_loss.iter().map(|&x| x as f32).collect();
    close("eval row losses", &row_gpu, &row_cpu, TOL);

    // Training forward with dropout, then backward.
    let mut st = state0.clone();
    let loss_cpu = model.forward(
        &mut ws,
        &tokens,
        &targets,
        &mut st,
        Some(dropout),
        Some(scale),
    );
    let mut grads = vec![0.0f32; model.layout.total()];
    model.backward(&mut ws, &mut grads);
    let mut std_ = LmState::upload(cuda, &state0).expect("state");
    let batch = (&tokens[..], &targets[..], Some(dropout), Some(scale));
    let loss_gpu = model
        .forward_on(cuda, &params, &mut wsd, batch, &mut std_)
        .expect("training forward");
    println!("  training loss: cpu {loss_cpu} gpu {loss_gpu}");
    assert!(
        ((loss_gpu - loss_cpu) / loss_cpu).abs() < TOL,
        "training loss"
    );
    close(
        "logits' gradient",
        &down(cuda, &wsd.logits),
        &ws.logits,
        TOL,
    );
    let mut gd = cuda.zeros(model.layout.total()).expect("grads");
    model
        .backward_on(cuda, &params, &mut wsd, &mut gd)
        .expect("backward");
    let gd = down(cuda, &gd);
    for spec in model.layout.tensors() {
        let r = spec.range();
        close(
            &format!("gradient of {}", spec.name),
            &gd[r.clone()],
            &grads[r],
            TOL,
        );
    }
    let host = std_.download(cuda).expect("state");
    for l in 0..config.layers {
        close(&format!("final h of layer {l}"), &host.h[l], &st.h[l], TOL);
        close(&format!("final c of layer {l}"), &host.c[l], &st.c[l], TOL);
    }
}

#[test]
fn lstm_language_model_matches_the_cpu() {
    let Some(cuda) = gpu("lstm_language_model_matches_the_cpu") else {
        return;
    };
    let config = LmConfig {
        embedding: 12,
        dropout: 0.3,
        ..LmConfig::lstm(40, 16, 2)
    };
    lm_parity(&cuda, config, "LSTM, 2 layers, dropout 0.3");
}

#[test]
fn hlstm_language_model_matches_the_cpu() {
    let Some(cuda) = gpu("hlstm_language_model_matches_the_cpu") else {
        return;
    };
    let config = LmConfig {
        embedding: 10,
        dropout: 0.25,
        gate_hidden: 6,
        gate_dropout: 0.2,
        hidden_sizes: vec![14, 9],
        ..LmConfig::lstm(37, 14, 2)
    };
    lm_parity(
        &cuda,
        config,
        "H-LSTM, 2 layers, M = 6, dropout 0.25, gate dropout 0.2",
    );
}

#[test]
fn wider_shapes_match_the_cpu() {
    let Some(cuda) = gpu("wider_shapes_match_the_cpu") else {
        return;
    };
    // A vocabulary wider than a block (several columns per softmax thread, transposes of partial
    // 32 x 32 tiles) and layers of different widths.
    let config = LmConfig {
        embedding: 33,
        dropout: 0.1,
        hidden_sizes: vec![70, 45],
        ..LmConfig::lstm(701, 70, 2)
    };
    lm_parity(&cuda, config, "LSTM, V = 701, H = 70 / 45");
    let config = LmConfig {
        embedding: 20,
        gate_hidden: 37,
        gate_dropout: 0.3,
        ..LmConfig::lstm(300, 50, 1)
    };
    lm_parity(&cuda, config, "H-LSTM, V = 300, H = 50, M = 37, one layer");
}

#[test]
fn dropout_masks_are_bit_identical() {
    let Some(cuda) = gpu("dropout_masks_are_bit_identical") else {
        return;
    };
    let n = 100_003;
    for (seed, step, site, p) in [
        (1u64, 0u64, 0u64, 0.5f64),
        (42, 17, 3, 0.3),
        (7, 1 << 40, 101, 0.65),
    ] {
        let ctx = DropoutCtx {
            rng: CounterRng::new(seed),
            p,
            step,
        };
        let mut want = vec![0.0f32; n];
        Cpu.dropout_mask(&ctx, site, &mut want).unwrap();
        let mut got = cuda.zeros(n).unwrap();
        cuda.dropout_mask(&ctx, site, &mut got).unwrap();
        assert_eq!(
            down(&cuda, &got),
            want,
            "mask of seed {seed} step {step} site {site}"
        );
        // dropout_forward from an offset: the same mask and x * mask.
        let x = values(n + 5, 3, 2.0);
        let (mut m_cpu, mut o_cpu) = (vec![0.0f32; n], vec![0.0f32; n]);
        Cpu.dropout_forward(&ctx, site, &x, 5, &mut m_cpu, &mut o_cpu)
            .unwrap();
        let xd = cuda.upload(&x).unwrap();
        let (mut md, mut od) = (cuda.zeros(n).unwrap(), cuda.zeros(n).unwrap());
        cuda.dropout_forward(&ctx, site, &xd, 5, &mut md, &mut od)
            .unwrap();
        assert_eq!(down(&cuda, &md), m_cpu);
        assert_eq!(down(&cuda, &od), o_cpu);
    }
}

#[test]
fn gemm_fill_and_sum_of_squares_match_the_cpu() {
    let Some(cuda) = gpu("gemm_fill_and_sum_of_squares_match_the_cpu") else {
        return;
    };
    let (m, n, k) = (7, 5, 9);
    let a = values(3 + m * k, 1, 1.0);
    let b = values(2 + k * n, 2, 1.0);
    let c0 = values(4 + m * n, 3, 1.0);
    let (ad, bd) = (cuda.upload(&a).unwrap(), cuda.upload(&b).unwrap());
    for (ta, tb) in [
        (Trans::N, Trans::N),
        (Trans::T, Trans::N),
        (Trans::N, Trans::T),
        (Trans::T, Trans::T),
    ] {
        let mut want = c0.clone();
        Cpu.gemm(
            m,
            n,
            k,
            0.7,
            op(&a, 3, ta),
            op(&b, 2, tb),
            0.5,
            &mut want,
            4,
        )
        .unwrap();
        let mut cd = cuda.upload(&c0).unwrap();
        cuda.gemm(
            m,
            n,
            k,
            0.7,
            op(&ad, 3, ta),
            op(&bd, 2, tb),
            0.5,
            &mut cd,
            4,
        )
        .unwrap();
        close(
            &format!("gemm {ta:?} {tb:?}"),
            &down(&cuda, &cd),
            &want,
            1e-5,
        );
    }
    // fill_on a support of several ranges leaves the rest alone.
    let x = values(1000, 4, 1.0);
    let support = Support::from_ranges(1000, [3..10, 100..400, 999..1000]);
    let mut want = x.clone();
    Cpu.fill_on(&mut want, &support, 0.25).unwrap();
    let mut xd = cuda.upload(&x).unwrap();
    cuda.fill_on(&mut xd, &support, 0.25).unwrap();
    assert_eq!(down(&cuda, &xd), want);
    // The sum of squares over a support (zero outside it).
    let mut y = values(5000, 5, 3.0);
    let support = Support::from_ranges(5000, [0..100, 2000..4500]);
    for (i, v) in y.iter_mut().enumerate() {
        if !support.ranges().iter().any(|r| r.contains(&i)) {
            *v = 0.0;
        }
    }
    let want: f64 = Backend::<f32>::sum_squares_on(&Cpu, &y, &support).unwrap();
    let got = cuda
        .sum_squares_on(&cuda.upload(&y).unwrap(), &support)
        .unwrap();
    println!("  sum of squares: cpu {want} gpu {got}");
    assert!(((got - want) / want).abs() < 1e-12, "sum of squares");
}

#[test]
fn optimizer_updates_match_the_cpu() {
    let Some(cuda) = gpu("optimizer_updates_match_the_cpu") else {
        return;
    };
    let n = 70_001;
    let (p0, g, m0, v0) = (
        values(n, 1, 0.5),
        values(n, 2, 0.1),
        values(n, 3, 0.05),
        values(n, 4, 0.01)
            .iter()
            .map(|x| x.abs())
            .collect::<Vec<_>>(),
    );
    let adam = |decoupled| Update::Adam {
        gs: 0.9,
        wd: 0.01,
        lr: 1e-3,
        decoupled,
        b1: 0.9,
        b2: 0.999,
        eps: 1e-8,
        step_size: 1e-3 / (1.0 - 0.9f32.powi(3)),
        inv_sqrt_bc2: 1.0 / (1.0 - 0.999f32.powi(3)).sqrt(),
    };
    let updates = [
        (
            "sgd",
            Update::Sgd {
                lr: 0.5,
                gs: 0.8,
                wd: 0.0,
            },
        ),
        (
            "sgd with decay",
            Update::Sgd {
                lr: 0.5,
                gs: 0.8,
                wd: 1e-4,
            },
        ),
        (
            "momentum",
            Update::Momentum {
                lr: 0.1,
                gs: 0.8,
                wd: 1e-4,
                mu: 0.9,
            },
        ),
        ("adam", adam(false)),
        ("adamw", adam(true)),
    ];
    let full = Support::full(n);
    for (name, u) in updates {
        let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
        Cpu.update(&mut p, &g, [Some(&mut m), Some(&mut v)], u, &full)
            .unwrap();
        let mut pd = cuda.upload(&p0).unwrap();
        let gd = cuda.upload(&g).unwrap();
        let (mut md, mut vd) = (cuda.upload(&m0).unwrap(), cuda.upload(&v0).unwrap());
        cuda.update(&mut pd, &gd, [Some(&mut md), Some(&mut vd)], u, &full)
            .unwrap();
        let (pg, mg, vg) = (down(&cuda, &pd), down(&cuda, &md), down(&cuda, &vd));
        println!("  {name}: bit-identical: {}", pg == p && mg == m && vg == v);
        close(&format!("{name} parameters"), &pg, &p, TOL_UPDATE);
        close(&format!("{name} first state"), &mg, &m, TOL_UPDATE);
        close(&format!("{name} second state"), &vg, &v, TOL_UPDATE);
    }
}

#[test]
fn training_steps_match_the_cpu() {
    let Some(cuda) = gpu("training_steps_match_the_cpu") else {
        return;
    };
    // Three steps of forward, backward, gradient norm and momentum SGD with the state carried from batch
    // to batch and the workspace, gradients and optimizer state reused, on both devices.
    let config = LmConfig {
        dropout: 0.2,
        gate_hidden: 5,
        gate_dropout: 0.1,
        ..LmConfig::lstm(23, 8, 2)
    };
    let (t, b) = (4, 2);
    let mut model = LanguageModel::<f32>::new(config.clone()).expect("config");
    model.init_uniform(0.2, 11);
    let n = model.layout.total();
    let full = Support::full(n);
    let mut ws = model.workspace(t, b);
    let mut st = LmState::zeros(&config, b);
    let (mut p, mut g, mut m, mut v) = (
        model.params.clone(),
        vec![0.0; n],
        vec![0.0; n],
        vec![0.0; n],
    );
    let mut wsd = model.workspace_on(&cuda, t, b).unwrap();
    let mut std_ = LmState::zeros_on(&cuda, &config, b).unwrap();
    let mut pd = cuda.upload(&model.params).unwrap();
    let (mut gd, mut md, mut vd) = (
        cuda.zeros(n).unwrap(),
        cuda.zeros(n).unwrap(),
        cuda.zeros(n).unwrap(),
    );
    for step in 0..3u64 {
        let ids = |seed: u64| -> Vec<u32> {
            let rng = CounterRng::new(seed);
            (0..(t * b) as u64)
                .map(|i| (rng.bits(step, i) % 23) as u32)
                .collect()
        };
        let (tokens, targets) = (ids(5), ids(6));
        let dropout = Some(DropoutCtx {
            rng: CounterRng::new(3),
            p: 0.0,
            step,
        });
        // Momentum SGD: linear in the gradient, so the devices' rounding differences stay as
        // small in the parameters (Adam's first steps are ~lr·sign(g), which would turn a
        // rounding-level gradient of either sign into a difference of 2·lr).
        let u = Update::Momentum {
            lr: 0.5,
            gs: 1.0,
            wd: 1e-4,
            mu: 0.9,
        };
        // CPU: the model's own parameters are `p`, copied in for each forward.
        model.params.copy_from_slice(&p);
        Cpu.fill_on(&mut g, &full, 0.0).unwrap();
        let loss = model.forward(&mut ws, &tokens, &targets, &mut st, dropout, Some(0.5));
        model.backward(&mut ws, &mut g);
        let norm = Backend::<f32>::sum_squares_on(&Cpu, &g, &full).unwrap();
        Cpu.update(&mut p, &g, [Some(&mut m), Some(&mut v)], u, &full)
            .unwrap();
        // GPU.
        cuda.fill_on(&mut gd, &full, 0.0).unwrap();
        let batch = (&tokens[..], &targets[..], dropout, Some(0.5));
        let loss_d = model
            .forward_on(&cuda, &pd, &mut wsd, batch, &mut std_)
            .unwrap();
        model.backward_on(&cuda, &pd, &mut wsd, &mut gd).unwrap();
        let norm_d = cuda.sum_squares_on(&gd, &full).unwrap();
        cuda.update(&mut pd, &gd, [Some(&mut md), Some(&mut vd)], u, &full)
            .unwrap();
        println!("  step {step}: loss cpu {loss} gpu {loss_d}, |g|² cpu {norm} gpu {norm_d}");
        assert!(((loss_d - loss) / loss).abs() < TOL, "loss of step {step}");
        assert!(
            ((norm_d - norm) / norm).abs() < TOL,
            "gradient norm of step {step}"
        );
        close(
            &format!("parameters after step {step}"),
            &down(&cuda, &pd),
            &p,
            TOL,
        );
    }
    let host = std_.download(&cuda).unwrap();
    for l in 0..config.layers {
        close(
            &format!("carried h of layer {l}"),
            &host.h[l],
            &st.h[l],
            TOL,
        );
    }
}
