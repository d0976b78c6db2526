//! DeepSpeech2's front-end layers (conv, batch norm, hardtanh): both convolution forms (im2col
//! and implicit GEMM) against the direct loops and each other, every backward pass against f64 central differences, and everything against
//! PyTorch (`tools/reference/speech_layers.py` wrote the fixture, in float64).

use kernels::check::{max_abs_diff, max_rel_diff};
use kernels::Real;
use proptest::prelude::*;
use serde_json::Value;
use speech::batchnorm::{BatchNorm, BnCache, BnLayout};
use speech::conv::{
    conv2d_backward, conv2d_backward_in, conv2d_forward, conv2d_forward_in, conv2d_reference,
    output_lengths, Conv2dSpec, ConvForm,
};
use speech::hardtanh::Hardtanh;

/// The fixture script's `det`: deterministic values in [-scale, scale].
fn det(n: usize, seed: f64, scale: f64) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let i = i as f64;
            scale * (0.7310 * i + seed).sin() * (0.0123 * i * seed + 0.5).cos()
        })
        .collect()
}

fn cast<F: Real>(v: &[f64]) -> Vec<F> {
    v.iter().map(|&x| F::from_f64(x)).collect()
}

/// Central differences of `loss` at `x`, step `h`.
fn numeric_grad(x: &[f64], h: f64, mut loss: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut p = x.to_vec();
    (0..x.len())
        .map(|i| {
            p[i] = x[i] + h;
            let up = loss(&p);
            p[i] = x[i] - h;
            let down = loss(&p);
            p[i] = x[i];
            (up - down) / (2.0 * h)
        })
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn assert_grad(name: &str, got: &[f64], want: &[f64]) {
    let rel = max_rel_diff(got, want, 1e-2);
    assert!(rel < 1e-7, "{name}: analytic vs numeric rel diff {rel:e}");
}

// ---- convolution -------------------------------------------------------------------------

fn small_spec(bias: bool) -> Conv2dSpec {
    Conv2dSpec {
        in_c: 2,
        out_c: 3,
        kh: 3,
        kw: 2,
        sh: 2,
        sw: 1,
        ph: 1,
        pw: 2,
        bias,
    }
}

/// The forms that take `s`: the implicit one needs unit time stride.
fn forms(s: &Conv2dSpec) -> Vec<ConvForm> {
    if s.sw == 1 {
        vec![ConvForm::Lowered, ConvForm::Implicit]
    } else {
        vec![ConvForm::Lowered]
    }
}

#[allow(clippy::too_many_arguments)]
fn forward_vec(
    form: ConvForm,
    s: &Conv2dSpec,
    x: &[f64],
    n: usize,
    h: usize,
    w: usize,
    wt: &[f64],
    b: Option<&[f64]>,
) -> Vec<f64> {
    let (ho, wo) = (s.out_h(h).unwrap(), s.out_w(w).unwrap());
    let mut y = vec![0.0; n * s.out_c * ho * wo];
    conv2d_forward_in(form, s, x, n, h, w, wt, b, &mut y);
    y
}

#[test]
fn conv_forms_match_direct_loops() {
    for (spec, n, h, w) in [
        (small_spec(true), 2, 7, 5),
        (small_spec(false), 1, 3, 1),
        (
            Conv2dSpec {
                sh: 3,
                sw: 2,
                ph: 0,
                pw: 0,
                ..small_spec(true)
            },
            2,
            9,
            8,
        ),
        (
            Conv2dSpec {
                in_c: 1,
                out_c: 4,
                kh: 9,
                kw: 5,
                sh: 2,
                sw: 2,
                ph: 0,
                pw: 4,
                bias: true,
            },
            2,
            21,
            7,
        ),
    ] {
        let x = det(n * spec.in_c * h * w, 0.3, 1.0);
        let wt = det(spec.weight_len(), 0.7, 0.5);
        let b = det(spec.out_c, 1.1, 0.5);
        let b = spec.bias.then_some(&b[..]);
        let (want, _, _) = conv2d_reference(&spec, &x, n, h, w, &wt, b);
        for form in forms(&spec) {
            let got = forward_vec(form, &spec, &x, n, h, w, &wt, b);
            let err = max_abs_diff(&got, &want);
            assert!(err < 1e-12, "{spec:?} {form:?} vs direct {err:e}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Random shapes, strides and paddings (f32 fast path vs f64 direct loops).
    #[test]
    fn conv_forms_match_direct_loops_random(
        in_c in 1usize..4, out_c in 1usize..4, kh in 1usize..5, kw in 1usize..5,
        sh in 1usize..4, sw in 1usize..4, ph in 0usize..3, pw in 0usize..3,
        n in 1usize..3, extra_h in 0usize..6, extra_w in 0usize..6, bias: bool, seed in 0.0f64..10.0,
    ) {
        let spec = Conv2dSpec { in_c, out_c, kh, kw, sh, sw, ph, pw, bias };
        // At least the kernel, padding included.
        let h = (kh + extra_h).saturating_sub(2 * ph).max(1);
        let w = (kw + extra_w).saturating_sub(2 * pw).max(1);
        prop_assume!(spec.out_h(h).is_some() && spec.out_w(w).is_some());
        let x = det(n * in_c * h * w, seed, 1.0);
        let wt = det(spec.weight_len(), seed + 1.0, 1.0);
        let b = det(out_c, seed + 2.0, 1.0);
        let b = bias.then_some(&b[..]);
        let (want, ho, wo) = conv2d_reference(&spec, &x, n, h, w, &wt, b);
        let (x32, w32, b32) = (cast::<f32>(&x), cast::<f32>(&wt), b.map(cast::<f32>));
        let want32 = cast::<f32>(&want);
        for form in forms(&spec) {
            let mut y = vec![0.0f32; n * out_c * ho * wo];
            conv2d_forward_in(form, &spec, &x32, n, h, w, &w32, b32.as_deref(), &mut y);
            prop_assert!(max_abs_diff(&y, &want32) < 1e-4, "{:?}", form);
        }
    }

    /// Random unit-time-stride shapes: the implicit form's gradients equal the lowered form's.
    #[test]
    fn conv_implicit_backward_matches_lowered_random(
        in_c in 1usize..4, out_c in 1usize..4, kh in 1usize..6, kw in 1usize..5,
        sh in 1usize..4, ph in 0usize..3, pw in 0usize..3,
        n in 1usize..6, extra_h in 0usize..6, extra_w in 0usize..6, with_dx: bool, seed in 0.0f64..10.0,
    ) {
        let spec = Conv2dSpec { in_c, out_c, kh, kw, sh, sw: 1, ph, pw, bias: true };
        let h = (kh + extra_h).saturating_sub(2 * ph).max(1);
        let w = (kw + extra_w).saturating_sub(2 * pw).max(1);
        prop_assume!(spec.out_h(h).is_some() && spec.out_w(w).is_some());
        let (ho, wo) = (spec.out_h(h).unwrap(), spec.out_w(w).unwrap());
        let x = det(n * in_c * h * w, seed, 1.0);
        let wt = det(spec.weight_len(), seed + 1.0, 1.0);
        let g = det(n * out_c * ho * wo, seed + 2.0, 1.0);
        let mut grads = Vec::new();
        for form in [ConvForm::Lowered, ConvForm::Implicit] {
            let mut dx = vec![f64::NAN; x.len()];
            let (mut dw, mut db) = (vec![0.5; wt.len()], vec![0.25; out_c]);
            let dx_arg = with_dx.then_some(&mut dx[..]);
            conv2d_backward_in(form, &spec, &x, n, h, w, &wt, &g, dx_arg, &mut dw, Some(&mut db));
            grads.push((dx, dw, db));
        }
        let ((dx0, dw0, db0), (dx1, dw1, db1)) = (&grads[0], &grads[1]);
        prop_assert!(max_abs_diff(dw1, dw0) < 1e-10 && max_abs_diff(db1, db0) < 1e-10);
        if with_dx {
            prop_assert!(max_abs_diff(dx1, dx0) < 1e-10);
        }
    }
}

#[test]
fn conv_gradients_match_central_differences() {
    let (n, h, w) = (2, 6, 5);
    for spec in [
        small_spec(true),
        small_spec(false),
        Conv2dSpec {
            sh: 1,
            sw: 3,
            ..small_spec(true)
        },
    ] {
        let x = det(n * spec.in_c * h * w, 0.4, 1.0);
        let wt = det(spec.weight_len(), 0.9, 0.7);
        let b = det(spec.out_c, 1.3, 0.5);
        let b = spec.bias.then_some(&b[..]);
        // The numeric gradients go through the direct loops, not either fast form.
        let reference =
            |x: &[f64], wt: &[f64], b: Option<&[f64]>| conv2d_reference(&spec, x, n, h, w, wt, b).0;
        let g = det(reference(&x, &wt, b).len(), 2.1, 1.0);
        let eps = 1e-6;
        let num_dx = numeric_grad(&x, eps, |p| dot(&reference(p, &wt, b), &g));
        let num_dw = numeric_grad(&wt, eps, |p| dot(&reference(&x, p, b), &g));
        for form in forms(&spec) {
            let (mut dx, mut dw, mut db) = (
                vec![0.0; x.len()],
                vec![0.0; wt.len()],
                vec![0.0; spec.out_c],
            );
            let db_arg = spec.bias.then_some(&mut db[..]);
            conv2d_backward_in(
                form,
                &spec,
                &x,
                n,
                h,
                w,
                &wt,
                &g,
                Some(&mut dx),
                &mut dw,
                db_arg,
            );
            assert_grad(&format!("conv dx {form:?}"), &dx, &num_dx);
            assert_grad(&format!("conv dw {form:?}"), &dw, &num_dw);
            if let Some(b) = b {
                let num_db = numeric_grad(b, eps, |p| dot(&reference(&x, &wt, Some(p)), &g));
                assert_grad(&format!("conv db {form:?}"), &db, &num_db);
            }
        }
    }
}

#[test]
fn conv_weight_gradients_accumulate() {
    let spec = small_spec(true);
    let (n, h, w) = (1, 5, 4);
    let x = det(n * spec.in_c * h * w, 0.2, 1.0);
    let wt = det(spec.weight_len(), 0.5, 1.0);
    let y = forward_vec(ConvForm::Lowered, &spec, &x, n, h, w, &wt, Some(&[0.0; 3]));
    let g = det(y.len(), 0.8, 1.0);
    let (mut dx, mut dw, mut db) = (vec![f64::NAN; x.len()], vec![0.0; wt.len()], vec![0.0; 3]);
    conv2d_backward(
        &spec,
        &x,
        n,
        h,
        w,
        &wt,
        &g,
        Some(&mut dx),
        &mut dw,
        Some(&mut db),
    );
    let (once_w, once_b) = (dw.clone(), db.clone());
    conv2d_backward(
        &spec,
        &x,
        n,
        h,
        w,
        &wt,
        &g,
        Some(&mut dx),
        &mut dw,
        Some(&mut db),
    );
    let twice: Vec<f64> = once_w.iter().map(|v| 2.0 * v).collect();
    assert!(
        max_abs_diff(&dw, &twice) < 1e-12
            && max_abs_diff(&db, &[2.0 * once_b[0], 2.0 * once_b[1], 2.0 * once_b[2]]) < 1e-12
    );
    // dx is overwritten (the NaN it started with is gone; max_abs_diff refuses NaN).
    assert!(max_abs_diff(&dx, &dx.clone()) == 0.0);
}

#[test]
fn deepspeech_output_lengths() {
    let (c1, c2) = (
        Conv2dSpec::deepspeech_conv1(),
        Conv2dSpec::deepspeech_conv2(),
    );
    // 161 frequency bins -> 61 -> 21, so the RNN sees 32 * 21 = 672 features.
    assert_eq!(c1.out_h(161), Some(61));
    assert_eq!(c2.out_h(61), Some(21));
    // deepspeech.pytorch: (len + 2 pad - (k - 1) - 1) // stride + 1 per layer.
    let lens = [20, 100, 11, 1, 0];
    let l1 = output_lengths(&c1, &lens);
    assert_eq!(l1, vec![15, 55, 11, 6, 5]);
    assert_eq!(output_lengths(&c2, &l1), vec![5, 45, 1, 0, 0]);
}

// ---- PyTorch fixture -----------------------------------------------------------------------

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/speech_layers.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// A tensor against the fixture's summary of it (sum, sum of squares, strided sample), relative
/// to its scale. `tol` is for the sample; the sums get a looser bound since they add up rounding.
fn check_summary<F: Real>(name: &str, got: &[F], want: &Value, tol: f64) {
    let shape: usize = want["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .product();
    assert_eq!(got.len(), shape, "{name}: length");
    let stride = want["stride"].as_u64().unwrap() as usize;
    let sample: Vec<f64> = got.iter().step_by(stride).map(|v| v.to_f64()).collect();
    let want_sample = f64s(&want["values"]);
    let rel = max_rel_diff(&sample, &want_sample, 1e-6);
    assert!(rel < tol, "{name}: sample rel diff {rel:e}");
    let sumsq: f64 = got.iter().map(|v| v.to_f64().powi(2)).sum();
    let want_sumsq = want["sumsq"].as_f64().unwrap();
    assert!(
        (sumsq - want_sumsq).abs() <= 10.0 * tol * want_sumsq,
        "{name}: sum of squares {sumsq} vs {want_sumsq}"
    );
    let sum: f64 = got.iter().map(|v| v.to_f64()).sum();
    let scale = (want_sumsq * shape as f64).sqrt();
    assert!(
        (sum - want["sum"].as_f64().unwrap()).abs() <= 10.0 * tol * scale,
        "{name}: sum {sum}"
    );
}

/// Conv1 then conv2 on the fixture's (2, 1, 161, 20) input; loss = sum(y2 * g2).
fn conv_chain_vs_torch<F: Real>(tol: f64) {
    let fx = fixture();
    let fx = &fx["conv"];
    let (c1, c2) = (
        Conv2dSpec::deepspeech_conv1(),
        Conv2dSpec::deepspeech_conv2(),
    );
    let (n, h, w) = (2, 161, 20);
    let x: Vec<F> = cast(&det(n * h * w, 1.0, 1.0));
    let w1: Vec<F> = cast(&det(c1.weight_len(), 2.0, 1.0 / ((41 * 11) as f64).sqrt()));
    let b1: Vec<F> = cast(&det(32, 3.0, 0.1));
    let w2: Vec<F> = cast(&det(
        c2.weight_len(),
        4.0,
        1.0 / ((32 * 21 * 11) as f64).sqrt(),
    ));
    let b2: Vec<F> = cast(&det(32, 5.0, 0.1));
    let mut y1 = vec![F::ZERO; n * 32 * 61 * 15];
    assert_eq!(
        conv2d_forward(&c1, &x, n, h, w, &w1, Some(&b1), &mut y1),
        (61, 15)
    );
    let mut y2 = vec![F::ZERO; n * 32 * 21 * 5];
    assert_eq!(
        conv2d_forward(&c2, &y1, n, 61, 15, &w2, Some(&b2), &mut y2),
        (21, 5)
    );
    check_summary(&format!("{} y1", F::NAME), &y1, &fx["y1"], tol);
    check_summary(&format!("{} y2", F::NAME), &y2, &fx["y2"], tol);
    let g2: Vec<F> = cast(&det(y2.len(), 6.0, 1.0));
    let (mut dy1, mut dw2, mut db2) = (
        vec![F::ZERO; y1.len()],
        vec![F::ZERO; w2.len()],
        vec![F::ZERO; 32],
    );
    conv2d_backward(
        &c2,
        &y1,
        n,
        61,
        15,
        &w2,
        &g2,
        Some(&mut dy1),
        &mut dw2,
        Some(&mut db2),
    );
    let (mut dx, mut dw1, mut db1) = (
        vec![F::ZERO; x.len()],
        vec![F::ZERO; w1.len()],
        vec![F::ZERO; 32],
    );
    conv2d_backward(
        &c1,
        &x,
        n,
        h,
        w,
        &w1,
        &dy1,
        Some(&mut dx),
        &mut dw1,
        Some(&mut db1),
    );
    for (name, got, key) in [
        ("dy1", &dy1, "dy1"),
        ("dw2", &dw2, "dw2"),
        ("db2", &db2, "db2"),
        ("dx", &dx, "dx"),
        ("dw1", &dw1, "dw1"),
        ("db1", &db1, "db1"),
    ] {
        check_summary(&format!("{} {name}", F::NAME), got, &fx[key], tol);
    }
}

#[test]
fn deepspeech_convs_match_pytorch_f64() {
    conv_chain_vs_torch::<f64>(1e-10);
}

#[test]
fn deepspeech_convs_match_pytorch_f32() {
    conv_chain_vs_torch::<f32>(1e-4);
}

// ---- batch norm ----------------------------------------------------------------------------

/// A layer with non-default affine parameters and running statistics.
fn bn_layer(c: usize, seed: f64) -> BatchNorm<f64> {
    let mut bn = BatchNorm::new(c);
    bn.weight = det(c, seed + 1.0, 0.5).iter().map(|v| 1.0 + v).collect();
    bn.bias = det(c, seed + 2.0, 0.5);
    bn.running_mean = det(c, seed + 3.0, 1.0);
    bn.running_var = det(c, seed + 4.0, 1.0).iter().map(|v| 1.5 + v).collect();
    bn
}

/// Training-mode loss `sum(y * g)` on a fresh copy of `bn` (the running statistics do not feed
/// back into the output, but a copy keeps the evaluations independent).
fn bn_loss(bn: &BatchNorm<f64>, layout: &BnLayout, x: &[f64], g: &[f64]) -> f64 {
    let mut y = vec![0.0; x.len()];
    bn.clone()
        .forward_train(layout, x, &mut y, &mut BnCache::default());
    dot(&y, g)
}

#[test]
fn batchnorm_gradients_match_central_differences() {
    for layout in [
        BnLayout::nchw(2, 3, 2, 3),
        BnLayout::rows(7, 4),
        BnLayout::nchw(1, 2, 1, 2),
    ] {
        let c = layout.channels;
        let len = layout.outer * c * layout.inner;
        let bn = bn_layer(c, 0.5);
        // Offsets per position so the channels' means differ from 0.
        let x: Vec<f64> = det(len, 0.9, 2.0)
            .iter()
            .enumerate()
            .map(|(i, v)| v + (i % 5) as f64)
            .collect();
        let g = det(len, 1.7, 1.0);
        let (mut y, mut cache) = (vec![0.0; len], BnCache::default());
        bn.clone().forward_train(&layout, &x, &mut y, &mut cache);
        let (mut dx, mut dwt, mut db) = (vec![0.0; len], vec![0.0; c], vec![0.0; c]);
        bn.backward(&layout, &cache, &g, &mut dx, &mut dwt, &mut db);
        let h = 1e-5;
        assert_grad(
            "bn dx",
            &dx,
            &numeric_grad(&x, h, |p| bn_loss(&bn, &layout, p, &g)),
        );
        let num_dw = numeric_grad(&bn.weight, h, |p| {
            let mut b = bn.clone();
            b.weight = p.to_vec();
            bn_loss(&b, &layout, &x, &g)
        });
        assert_grad("bn dweight", &dwt, &num_dw);
        let num_db = numeric_grad(&bn.bias, h, |p| {
            let mut b = bn.clone();
            b.bias = p.to_vec();
            bn_loss(&b, &layout, &x, &g)
        });
        assert_grad("bn dbias", &db, &num_db);
    }
}

#[test]
#[should_panic(expected = "more than one value per channel")]
fn batchnorm_refuses_one_value_per_channel() {
    let mut bn = BatchNorm::<f32>::new(3);
    bn.forward_train(
        &BnLayout::rows(1, 3),
        &[1.0; 3],
        &mut [0.0; 3],
        &mut BnCache::default(),
    );
}

fn bn_vs_torch<F: Real>(key: &str, layout: BnLayout, tol: f64) {
    let fx = fixture();
    let fx = &fx[key];
    let start = &fx["start"];
    let mut bn = BatchNorm::<F>::new(layout.channels);
    bn.weight = cast(&f64s(&start["weight"]));
    bn.bias = cast(&f64s(&start["bias"]));
    bn.running_mean = cast(&f64s(&start["running_mean"]));
    bn.running_var = cast(&f64s(&start["running_var"]));
    let x: Vec<F> = cast(&f64s(&fx["x"]));
    let g: Vec<F> = cast(&f64s(&fx["g"]));
    let (mut y, mut cache) = (vec![F::ZERO; x.len()], BnCache::default());
    bn.forward_train(&layout, &x, &mut y, &mut cache);
    let c = layout.channels;
    let (mut dx, mut dwt, mut db) = (vec![F::ZERO; x.len()], vec![F::ZERO; c], vec![F::ZERO; c]);
    bn.backward(&layout, &cache, &g, &mut dx, &mut dwt, &mut db);
    let mut y_eval = vec![F::ZERO; x.len()];
    bn.forward_eval(&layout, &x, &mut y_eval);
    for (name, got) in [
        ("y", &y),
        ("dx", &dx),
        ("dweight", &dwt),
        ("dbias", &db),
        ("running_mean", &bn.running_mean),
        ("running_var", &bn.running_var),
        ("y_eval", &y_eval),
    ] {
        let want: Vec<F> = cast(&f64s(&fx[name]));
        let rel = max_rel_diff(got, &want, 1e-3);
        assert!(rel < tol, "{key} {} {name}: rel diff {rel:e}", F::NAME);
    }
}

#[test]
fn batchnorm_matches_pytorch() {
    bn_vs_torch::<f64>("bn2d", BnLayout::nchw(2, 3, 4, 5), 1e-12);
    bn_vs_torch::<f32>("bn2d", BnLayout::nchw(2, 3, 4, 5), 1e-5);
    bn_vs_torch::<f64>("bn_seq", BnLayout::rows(15, 4), 1e-12);
    bn_vs_torch::<f32>("bn_seq", BnLayout::rows(15, 4), 1e-5);
}

// ---- hardtanh ------------------------------------------------------------------------------

#[test]
fn hardtanh_matches_pytorch_and_central_differences() {
    let fx = fixture();
    let fx = &fx["hardtanh"];
    let act = Hardtanh::deepspeech();
    let (x, g) = (f64s(&fx["x"]), f64s(&fx["g"]));
    let (mut y, mut dx) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    act.forward(&x, &mut y);
    act.backward(&x, &g, &mut dx);
    // Exact: a clamp and a mask, no arithmetic.
    assert_eq!(y, f64s(&fx["y"]));
    assert_eq!(dx, f64s(&fx["dx"]));
    assert_eq!(
        (dx[1], dx[5]),
        (0.0, 0.0),
        "zero gradient at the bounds 0 and 20"
    );
    // Central differences away from the kinks (a step of 1e-6 does not cross a bound).
    let loss = |p: &[f64]| {
        let mut y = vec![0.0; p.len()];
        act.forward(p, &mut y);
        dot(&y, &g)
    };
    let num = numeric_grad(&x, 1e-6, loss);
    for (i, (&a, &n)) in dx.iter().zip(&num).enumerate() {
        if x[i].abs() > 1e-5 && (x[i] - 20.0).abs() > 1e-5 {
            assert!(
                (a - n).abs() < 1e-7,
                "hardtanh x[{i}] = {}: {a} vs {n}",
                x[i]
            );
        }
    }
    let (mut y32, mut dx32) = (vec![0.0f32; x.len()], vec![0.0f32; x.len()]);
    let (x32, g32) = (cast::<f32>(&x), cast::<f32>(&g));
    act.forward(&x32, &mut y32);
    act.backward(&x32, &g32, &mut dx32);
    assert!(max_abs_diff(&y32, &cast::<f32>(&f64s(&fx["y"]))) == 0.0);
    // x = 1e-12 and 20 + 1e-9 round to representable f32 values on the same side of the bounds.
    assert!(max_abs_diff(&dx32, &cast::<f32>(&f64s(&fx["dx"]))) == 0.0);
}

#[test]
fn hardtanh_passes_nan_through() {
    let mut y = [0.0f32; 2];
    Hardtanh::deepspeech().forward(&[f32::NAN, 30.0], &mut y);
    assert!(y[0].is_nan() && y[1] == 20.0);
}

/// The backward pass splits a batch into tasks of a few images: with more images than a task
/// holds, dW, db and dx must equal the sums (and pieces) of one call per image, in both forms.
#[test]
fn conv_backward_over_many_images_equals_one_image_at_a_time() {
    let spec = Conv2dSpec {
        in_c: 2,
        out_c: 3,
        kh: 3,
        kw: 4,
        sh: 2,
        sw: 1,
        ph: 1,
        pw: 2,
        bias: true,
    };
    for form in [ConvForm::Lowered, ConvForm::Implicit] {
        many_images_case(form, &spec);
    }
}

fn many_images_case(form: ConvForm, spec: &Conv2dSpec) {
    let spec = *spec;
    let (n, h, w) = (9, 7, 6);
    let x = det(n * 2 * h * w, 1.0, 1.0);
    let weight = det(spec.weight_len(), 2.0, 0.5);
    let (ho, wo) = (spec.out_h(h).unwrap(), spec.out_w(w).unwrap());
    let per_y = 3 * ho * wo;
    let dy = det(n * per_y, 3.0, 1.0);
    let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; weight.len()], vec![0.0; 3]);
    conv2d_backward_in(
        form,
        &spec,
        &x,
        n,
        h,
        w,
        &weight,
        &dy,
        Some(&mut dx),
        &mut dw,
        Some(&mut db),
    );
    let (mut dw1, mut db1) = (vec![0.0; weight.len()], vec![0.0; 3]);
    let per_x = 2 * h * w;
    for b in 0..n {
        let mut dxb = vec![0.0; per_x];
        conv2d_backward_in(
            form,
            &spec,
            &x[b * per_x..(b + 1) * per_x],
            1,
            h,
            w,
            &weight,
            &dy[b * per_y..(b + 1) * per_y],
            Some(&mut dxb),
            &mut dw1,
            Some(&mut db1),
        );
        assert_eq!(
            &dx[b * per_x..(b + 1) * per_x],
            &dxb[..],
            "{form:?} image {b}"
        );
    }
    for (a, b) in dw.iter().zip(&dw1).chain(db.iter().zip(&db1)) {
        assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
    }
    // Without dx the weight gradients are the same.
    let (mut dw2, mut db2) = (vec![0.0; weight.len()], vec![0.0; 3]);
    conv2d_backward_in(
        form,
        &spec,
        &x,
        n,
        h,
        w,
        &weight,
        &dy,
        None,
        &mut dw2,
        Some(&mut db2),
    );
    assert_eq!((dw2, db2), (dw, db));
}
