//! Batch normalisation as DeepSpeech2 uses it, matching PyTorch's `BatchNorm2d` and
//! `BatchNorm1d`: per-channel statistics, eps 1e-5, affine weight/bias, running mean/variance
//! updated with momentum 0.1 in training mode and used in eval mode.
//!
//! One implementation serves both layouts through [`BnLayout`]: a tensor seen as
//! `(outer, channels, inner)`, so NCHW is `(N, C, H*W)` and deepspeech.pytorch's `SequenceWise`
//! BatchNorm1d over `(T*N, F)` rows is `(T*N, F, 1)`. Statistics run in f64 whatever `F` is, so an
//! f32 batch of many frames does not lose the variance to cancellation.

use kernels::Real;

/// How a flat tensor maps to channels: value `(o, c, i)` sits at `(o * channels + c) * inner + i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BnLayout {
    pub outer: usize,
    pub channels: usize,
    pub inner: usize,
}

impl BnLayout {
    /// `BatchNorm2d` over an `(n, c, h, w)` tensor.
    pub fn nchw(n: usize, c: usize, h: usize, w: usize) -> Self {
        BnLayout {
            outer: n,
            channels: c,
            inner: h * w,
        }
    }

    /// Sequence-wise `BatchNorm1d` over `rows` feature vectors of length `features` (the
    /// `(T, N, F)` activations flattened to `(T*N, F)`).
    pub fn rows(rows: usize, features: usize) -> Self {
        BnLayout {
            outer: rows,
            channels: features,
            inner: 1,
        }
    }

    fn len(&self) -> usize {
        self.outer * self.channels * self.inner
    }

    /// Values per channel: the batch the statistics are taken over.
    fn per_channel(&self) -> usize {
        self.outer * self.inner
    }

    /// Calls `f(index)` for every flat index of channel `c`.
    #[inline]
    fn for_channel(&self, c: usize, mut f: impl FnMut(usize)) {
        for o in 0..self.outer {
            let base = (o * self.channels + c) * self.inner;
            for i in base..base + self.inner {
                f(i);
            }
        }
    }
}

/// Parameters and running statistics of one batch-norm layer (PyTorch's initial values:
/// weight 1, bias 0, running mean 0, running variance 1).
#[derive(Clone, Debug)]
pub struct BatchNorm<F: Real> {
    pub weight: Vec<F>,
    pub bias: Vec<F>,
    pub running_mean: Vec<F>,
    pub running_var: Vec<F>,
    /// Weight of the new batch in the running statistics (PyTorch's default 0.1).
    pub momentum: f64,
    pub eps: f64,
}

/// What training-mode backward needs from the forward pass: the normalised input and each
/// channel's `1 / sqrt(var + eps)`.
#[derive(Clone, Debug, Default)]
pub struct BnCache<F: Real> {
    pub xhat: Vec<F>,
    pub inv_std: Vec<F>,
}

impl<F: Real> BatchNorm<F> {
    /// A fresh layer over `channels` channels with PyTorch's defaults.
    pub fn new(channels: usize) -> Self {
        BatchNorm {
            weight: vec![F::ONE; channels],
            bias: vec![F::ZERO; channels],
            running_mean: vec![F::ZERO; channels],
            running_var: vec![F::ONE; channels],
            momentum: 0.1,
            eps: 1e-5,
        }
    }

    fn check(&self, layout: &BnLayout, x: &[F], y: &[F]) {
        assert_eq!(
            self.weight.len(),
            layout.channels,
            "batchnorm: {layout:?} vs parameters"
        );
        assert_eq!(x.len(), layout.len(), "batchnorm: input is not {layout:?}");
        assert_eq!(y.len(), x.len(), "batchnorm: output length");
    }

    /// Training-mode forward: normalises each channel by its batch mean and biased variance,
    /// writes `y`, fills `cache` for [`BatchNorm::backward`], and moves the running statistics
    /// toward the batch's, with the *unbiased* variance as PyTorch does.
    ///
    /// # Panics
    /// On shape mismatches, or with one value per channel (PyTorch refuses it: the unbiased
    /// variance is undefined).
    pub fn forward_train(
        &mut self,
        layout: &BnLayout,
        x: &[F],
        y: &mut [F],
        cache: &mut BnCache<F>,
    ) {
        self.check(layout, x, y);
        let m = layout.per_channel();
        assert!(
            m > 1,
            "batchnorm: training needs more than one value per channel, got {m}"
        );
        cache.xhat.resize(x.len(), F::ZERO);
        cache.inv_std.resize(layout.channels, F::ZERO);
        let mo = self.momentum;
        for c in 0..layout.channels {
            // Two passes (mean, then squared deviations): stable for large offsets.
            let mut sum = 0.0;
            layout.for_channel(c, |i| sum += x[i].to_f64());
            let mean = sum / m as f64;
            let mut ss = 0.0;
            layout.for_channel(c, |i| ss += (x[i].to_f64() - mean).powi(2));
            let var = ss / m as f64;
            let inv_std = 1.0 / (var + self.eps).sqrt();
            let (g, b) = (self.weight[c].to_f64(), self.bias[c].to_f64());
            let xhat = &mut cache.xhat;
            layout.for_channel(c, |i| {
                let xh = (x[i].to_f64() - mean) * inv_std;
                xhat[i] = F::from_f64(xh);
                y[i] = F::from_f64(g * xh + b);
            });
            cache.inv_std[c] = F::from_f64(inv_std);
            let unbiased = ss / (m - 1) as f64;
            let rm = self.running_mean[c].to_f64();
            let rv = self.running_var[c].to_f64();
            self.running_mean[c] = F::from_f64((1.0 - mo) * rm + mo * mean);
            self.running_var[c] = F::from_f64((1.0 - mo) * rv + mo * unbiased);
        }
    }

    /// Eval-mode forward: normalises with the running statistics (a per-channel affine map).
    pub fn forward_eval(&self, layout: &BnLayout, x: &[F], y: &mut [F]) {
        self.check(layout, x, y);
        for c in 0..layout.channels {
            let (scale, shift) = self.eval_affine(c, self.weight[c], self.bias[c]);
            layout.for_channel(c, |i| y[i] = F::from_f64(x[i].to_f64() * scale + shift));
        }
    }

    /// Channel `c` in eval mode as y = scale · x + shift, for affine `weight` and `bias` (the
    /// layer's own, or a flat buffer's copy of them): what a folded deployment multiplies in.
    pub fn eval_affine(&self, c: usize, weight: F, bias: F) -> (f64, f64) {
        let inv_std = 1.0 / (self.running_var[c].to_f64() + self.eps).sqrt();
        let scale = weight.to_f64() * inv_std;
        (scale, bias.to_f64() - self.running_mean[c].to_f64() * scale)
    }

    /// Training-mode backward from `dy`: `dx` is overwritten; `dweight` and `dbias` are
    /// accumulated into. With `M` values per channel,
    /// `dx = weight * inv_std / M * (M dy - sum(dy) - xhat * sum(dy * xhat))`: the batch
    /// statistics depend on every input, hence the two correction sums.
    pub fn backward(
        &self,
        layout: &BnLayout,
        cache: &BnCache<F>,
        dy: &[F],
        dx: &mut [F],
        dweight: &mut [F],
        dbias: &mut [F],
    ) {
        self.check(layout, dy, dx);
        assert_eq!(
            cache.xhat.len(),
            dy.len(),
            "batchnorm: cache is not from this shape"
        );
        assert_eq!(
            dweight.len(),
            layout.channels,
            "batchnorm: weight gradient length"
        );
        assert_eq!(
            dbias.len(),
            layout.channels,
            "batchnorm: bias gradient length"
        );
        let m = layout.per_channel() as f64;
        for c in 0..layout.channels {
            let (mut sum_dy, mut sum_dy_xhat) = (0.0, 0.0);
            layout.for_channel(c, |i| {
                sum_dy += dy[i].to_f64();
                sum_dy_xhat += dy[i].to_f64() * cache.xhat[i].to_f64();
            });
            dbias[c] += F::from_f64(sum_dy);
            dweight[c] += F::from_f64(sum_dy_xhat);
            let k = self.weight[c].to_f64() * cache.inv_std[c].to_f64() / m;
            layout.for_channel(c, |i| {
                let v = m * dy[i].to_f64() - sum_dy - cache.xhat[i].to_f64() * sum_dy_xhat;
                dx[i] = F::from_f64(k * v);
            });
        }
    }
}
