//! Hardtanh, DeepSpeech2's activation: `clamp(x, min, max)` with min 0 and max 20 (a ReLU capped
//! so the recurrent layers' inputs stay bounded).

use kernels::Real;

/// The clamp bounds, as PyTorch's `nn.Hardtanh(min_val, max_val)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hardtanh {
    pub min: f64,
    pub max: f64,
}

impl Hardtanh {
    /// DeepSpeech2's `Hardtanh(0, 20)`.
    pub fn deepspeech() -> Self {
        Hardtanh {
            min: 0.0,
            max: 20.0,
        }
    }

    /// `y = clamp(x, min, max)` elementwise (`y` overwritten). NaN passes through as NaN, as in
    /// PyTorch, so a diverging model is not hidden.
    pub fn forward<F: Real>(&self, x: &[F], y: &mut [F]) {
        assert_eq!(x.len(), y.len(), "hardtanh: output length");
        let (lo, hi) = (F::from_f64(self.min), F::from_f64(self.max));
        for (o, &v) in y.iter_mut().zip(x) {
            *o = if v < lo {
                lo
            } else if v > hi {
                hi
            } else {
                v
            };
        }
    }

    /// `dx = dy` where `min < x < max` strictly, else 0 (`dx` overwritten). PyTorch's
    /// `hardtanh_backward` also gives 0 *at* the bounds, which matters here: the ReLU-like lower
    /// bound 0 is hit exactly by every clipped value when the activation runs in place on its
    /// output.
    pub fn backward<F: Real>(&self, x: &[F], dy: &[F], dx: &mut [F]) {
        assert_eq!(x.len(), dy.len(), "hardtanh: gradient length");
        assert_eq!(x.len(), dx.len(), "hardtanh: input gradient length");
        let (lo, hi) = (F::from_f64(self.min), F::from_f64(self.max));
        for ((d, &v), &g) in dx.iter_mut().zip(x).zip(dy) {
            *d = if v > lo && v < hi { g } else { F::ZERO };
        }
    }
}
