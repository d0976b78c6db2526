//! The spectrogram against an independent numpy implementation (`tools/reference/spectrogram.py`
//! wrote the fixture: numpy's FFT, reflect padding and symmetric Hamming window).

use speech::features::{spectrogram, SpectrogramSpec};

/// The fixture's signal: the same formula as the script, rounded to 16-bit steps.
fn signal() -> Vec<f32> {
    let (rate, n) = (16_000.0f64, 4000usize);
    let pi2 = 2.0 * std::f64::consts::PI;
    (0..n)
        .map(|i| {
            let t = i as f64 / rate;
            let chirp =
                (pi2 * (440.0 * t + 0.5 * (3000.0 - 440.0) / (n as f64 / rate) * t * t)).sin();
            let x = 0.4 * chirp + 0.2 * (pi2 * 1000.0 * t).sin() + 0.1 * (pi2 * 5500.0 * t).sin();
            ((x * 32767.0).round() / 32768.0) as f32
        })
        .collect()
}

#[test]
fn matches_numpy() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/spectrogram.json"
    ))
    .unwrap();
    let want: serde_json::Value = serde_json::from_str(&text).unwrap();
    let values: Vec<f32> = want["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let got = spectrogram(&signal(), SpectrogramSpec::deepspeech(16_000)).unwrap();
    assert_eq!(got.frames, want["frames"].as_u64().unwrap() as usize);
    assert_eq!(got.bins, want["bins"].as_u64().unwrap() as usize);
    // The fixture holds 6 decimals; the normalised values are O(1).
    let err = kernels::check::max_abs_diff(&got.values, &values);
    assert!(err < 2e-5, "max |difference| {err}");
}
