//! Inverted dropout with counter-based masks (Zaremba et al.: non-recurrent connections only).
//!
//! The mask at element `i` of site `s` in training step `k` is a pure function of
//! (seed, k, s, i), so resuming a run reproduces the masks an uninterrupted run would draw.

use kernels::rng::CounterRng;
use kernels::Real;

/// Where a dropout mask comes from: the run's seed and a stream id unique to (step, site).
#[derive(Clone, Copy, Debug)]
pub struct DropoutCtx {
    pub rng: CounterRng,
    /// Probability of dropping an element, in [0, 1).
    pub p: f64,
    /// Stream id: the training step; combined with the site inside the model.
    pub step: u64,
}

impl DropoutCtx {
    /// The stream for one dropout site of this step.
    pub fn stream(&self, site: u64) -> u64 {
        self.step.wrapping_mul(1024).wrapping_add(site)
    }
}

/// Writes the mask (0 or 1/(1-p)) into `mask` and `out = x * mask`.
pub fn dropout_forward<F: Real>(
    ctx: &DropoutCtx,
    site: u64,
    x: &[F],
    mask: &mut [F],
    out: &mut [F],
) {
    let keep = F::from_f64(1.0 / (1.0 - ctx.p));
    let stream = ctx.stream(site);
    let p = ctx.p as f32;
    for (i, (m, o)) in mask.iter_mut().zip(out.iter_mut()).enumerate() {
        *m = if ctx.rng.uniform(stream, i as u64) < p {
            F::ZERO
        } else {
            keep
        };
        *o = x[i] * *m;
    }
}

/// Writes only the mask (0 or 1/(1-p)), for layers that apply it themselves.
pub fn dropout_mask<F: Real>(ctx: &DropoutCtx, site: u64, mask: &mut [F]) {
    let keep = F::from_f64(1.0 / (1.0 - ctx.p));
    let stream = ctx.stream(site);
    let p = ctx.p as f32;
    for (i, m) in mask.iter_mut().enumerate() {
        *m = if ctx.rng.uniform(stream, i as u64) < p {
            F::ZERO
        } else {
            keep
        };
    }
}

/// `dx = dout * mask` (in place on `d`).
pub fn dropout_backward<F: Real>(mask: &[F], d: &mut [F]) {
    for (g, &m) in d.iter_mut().zip(mask) {
        *g *= m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_about_p_and_rescales() {
        let ctx = DropoutCtx {
            rng: CounterRng::new(3),
            p: 0.3,
            step: 11,
        };
        let x = vec![1.0f32; 50_000];
        let mut mask = vec![0.0; x.len()];
        let mut out = vec![0.0; x.len()];
        dropout_forward(&ctx, 2, &x, &mut mask, &mut out);
        let dropped = out.iter().filter(|&&v| v == 0.0).count() as f64 / x.len() as f64;
        assert!((dropped - 0.3).abs() < 0.01, "dropped {dropped}");
        let mean: f64 = out.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64;
        assert!((mean - 1.0).abs() < 0.02, "mean {mean}");
        // Same coordinates, same mask; another step, another mask.
        let mut mask2 = vec![0.0; x.len()];
        dropout_forward(&ctx, 2, &x, &mut mask2, &mut out);
        assert_eq!(mask, mask2);
        let ctx3 = DropoutCtx { step: 12, ..ctx };
        dropout_forward(&ctx3, 2, &x, &mut mask2, &mut out);
        assert_ne!(mask, mask2);
    }
}
