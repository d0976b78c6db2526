//! The CTC loss and its gradient against PyTorch's `ctc_loss` over `log_softmax` (float64,
//! reduction 'sum', blank 0, zero_infinity False); `tools/reference/ctc_fixture.py` wrote the
//! fixture. The unit tests in `ctc.rs` check brute-force enumeration and central differences;
//! this adds an independent implementation at larger T and C, and the edge cases' conventions.

use kernels::check::{max_abs_diff, max_rel_diff};
use serde_json::Value;
use speech::ctc::ctc_loss;

fn fixture() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/ctc.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn matches_pytorch() {
    let fx = fixture();
    let cases = fx["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 6, "fixture cases");
    let mut impossible = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let c = case["c"].as_u64().unwrap() as usize;
        let t = case["t"].as_u64().unwrap() as usize;
        // The logits are float32 values stored exactly as f64.
        let logits: Vec<f32> = f64s(&case["logits"]).iter().map(|&v| v as f32).collect();
        assert_eq!(logits.len(), t * c, "{name}: logits");
        let target: Vec<u32> = case["target"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let mut grad = vec![0.0f32; t * c];
        let loss = ctc_loss(&logits, c, &target, Some(&mut grad));
        if case["loss"].as_str() == Some("inf") {
            // PyTorch gives +inf (and a NaN gradient); ours gives +inf and leaves `grad` alone.
            impossible += 1;
            assert_eq!(loss, f64::INFINITY, "{name}: loss");
            assert!(grad.iter().all(|&g| g == 0.0), "{name}: gradient touched");
            continue;
        }
        let want = case["loss"].as_f64().unwrap();
        let rel = (loss - want).abs() / want.abs().max(1e-12);
        assert!(
            rel < 1e-9,
            "{name}: loss {loss} vs torch {want} (rel {rel:e})"
        );
        // The gradient is returned in f32: relative to its largest magnitude, ~1e-7 is rounding.
        let want_grad: Vec<f32> = f64s(&case["grad"]).iter().map(|&v| v as f32).collect();
        let rel = max_rel_diff(&grad, &want_grad, 1e-3);
        assert!(
            rel < 1e-5,
            "{name}: gradient rel diff {rel:e} (abs {:e})",
            max_abs_diff(&grad, &want_grad)
        );
        // Each frame's gradient is softmax minus a distribution over labels: rows sum to 0.
        for row in grad.chunks_exact(c) {
            let s: f64 = row.iter().map(|&v| v as f64).sum();
            assert!(s.abs() < 1e-5, "{name}: gradient row sums to {s}");
        }
    }
    assert_eq!(impossible, 1, "the impossible case must be in the fixture");
}
