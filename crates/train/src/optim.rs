//! Optimizers over the flat parameter buffer: SGD (optional momentum, L2) with global-norm
//! clipping, Adam and AdamW. Their state shares the parameter layout.

use crate::config::{OptimConfig, OptimKind};
use kernels::reduce::{scale, sum_squares};
use kernels::support::Support;
use model::backend::{infallible, Backend, Cpu, DeviceError, Update};

/// The factor PyTorch's `clip_grad_norm_` scales gradients of global L2 norm `norm` by:
/// max_norm / (norm + 1e-6) when below 1, else 1. `max_norm = 0` disables clipping.
pub fn clip_factor(norm: f64, max_norm: f64) -> f32 {
    if max_norm > 0.0 && norm.is_finite() {
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            return coef as f32;
        }
    }
    1.0
}

/// The global L2 norm of `grads`.
pub fn grad_norm(grads: &[f32]) -> f64 {
    sum_squares(grads).sqrt()
}

/// Scales `grads` so that their global L2 norm is at most `max_norm` (PyTorch's
/// `clip_grad_norm_`). Returns the norm before clipping. The trainer instead passes
/// [`clip_factor`] to [`Optimizer::step_scaled`], which saves a pass over the gradients.
pub fn clip_grad_norm(grads: &mut [f32], max_norm: f64) -> f64 {
    let norm = grad_norm(grads);
    let coef = clip_factor(norm, max_norm);
    if coef < 1.0 {
        scale(coef, grads);
    }
    norm
}

/// An optimizer and its state.
#[derive(Clone, Debug)]
pub struct Optimizer {
    pub config: OptimConfig,
    /// Momentum buffer (SGD) or first moment (Adam); empty when unused.
    pub m: Vec<f32>,
    /// Second moment (Adam); empty when unused.
    pub v: Vec<f32>,
    /// Number of steps taken (Adam's bias correction).
    pub steps: u64,
}

impl Optimizer {
    pub fn new(config: OptimConfig, n: usize) -> Self {
        let (m, v) = match config.kind {
            OptimKind::Sgd if config.momentum > 0.0 => (vec![0.0; n], Vec::new()),
            OptimKind::Sgd => (Vec::new(), Vec::new()),
            OptimKind::Adam | OptimKind::AdamW => (vec![0.0; n], vec![0.0; n]),
        };
        Self {
            config,
            m,
            v,
            steps: 0,
        }
    }

    /// One update with learning rate `lr`.
    pub fn step(&mut self, params: &mut Vec<f32>, grads: &Vec<f32>, lr: f64) {
        self.step_scaled(params, grads, 1.0, lr);
    }

    /// [`Self::step_scaled`] for gradients that are zero outside `support`. Where a zero
    /// gradient leaves a parameter unchanged (plain SGD without weight decay) only the support is
    /// visited, which gives the same parameters bit for bit; the other optimizers decay their
    /// state everywhere and take the dense pass.
    pub fn step_scaled_on(
        &mut self,
        params: &mut Vec<f32>,
        grads: &Vec<f32>,
        gs: f32,
        lr: f64,
        support: &Support,
    ) {
        let (mut m, mut v) = (std::mem::take(&mut self.m), std::mem::take(&mut self.v));
        let r = self.update_on(
            &Cpu,
            params,
            grads,
            OptimState::host(&mut m, &mut v),
            gs,
            lr,
            support,
        );
        (self.m, self.v) = (m, v);
        infallible(r)
    }

    /// One update from the gradients `gs * grads` (`gs`: the clipping factor), bit for bit
    /// the update after scaling the gradients in place, without that extra pass over them.
    pub fn step_scaled(&mut self, params: &mut Vec<f32>, grads: &Vec<f32>, gs: f32, lr: f64) {
        let dense = Support::full(params.len());
        self.step_scaled_on(params, grads, gs, lr, &dense);
    }

    /// One update on `be` of `params` from `gs * grads`, with the optimizer's state buffers
    /// (`self.m` / `self.v` moved into `be`'s memory by the caller). Counts the step.
    #[allow(clippy::too_many_arguments)]
    pub fn update_on<B: Backend<f32>>(
        &mut self,
        be: &B,
        params: &mut B::Buf,
        grads: &B::Buf,
        state: OptimState<'_, B>,
        gs: f32,
        lr: f64,
        support: &Support,
    ) -> Result<(), DeviceError> {
        assert_eq!(
            be.len(params),
            be.len(grads),
            "update: params and grads differ"
        );
        self.steps += 1;
        let c = &self.config;
        let (wd, lr32) = (c.weight_decay as f32, lr as f32);
        let update = match c.kind {
            OptimKind::Sgd if c.momentum > 0.0 => Update::Momentum {
                lr: lr32,
                gs,
                wd,
                mu: c.momentum as f32,
            },
            OptimKind::Sgd => Update::Sgd { lr: lr32, gs, wd },
            OptimKind::Adam | OptimKind::AdamW => {
                let (b1, b2) = (c.beta1, c.beta2);
                let bc1 = 1.0 - b1.powi(self.steps as i32);
                let bc2 = 1.0 - b2.powi(self.steps as i32);
                Update::Adam {
                    gs,
                    wd,
                    lr: lr32,
                    decoupled: c.kind == OptimKind::AdamW,
                    b1: b1 as f32,
                    b2: b2 as f32,
                    eps: c.eps as f32,
                    step_size: (lr / bc1) as f32,
                    inv_sqrt_bc2: (1.0 / bc2.sqrt()) as f32,
                }
            }
        };
        be.update(params, grads, [state.m, state.v], update, support)
    }
}

/// The optimizer's state buffers in a backend's memory: the momentum or first moment, and the
/// second moment (each `None` when the optimizer has none).
pub struct OptimState<'a, B: Backend<f32>> {
    pub m: Option<&'a mut B::Buf>,
    pub v: Option<&'a mut B::Buf>,
}

impl<'a> OptimState<'a, Cpu> {
    /// [`Optimizer::m`] and [`Optimizer::v`] on the host (an empty vector: no such buffer).
    pub fn host(m: &'a mut Vec<f32>, v: &'a mut Vec<f32>) -> Self {
        Self {
            m: (!m.is_empty()).then_some(m),
            v: (!v.is_empty()).then_some(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Objective;

    fn cfg(kind: OptimKind) -> OptimConfig {
        OptimConfig {
            kind,
            lr: 0.1,
            clip_norm: 0.0,
            objective: Objective::Mean,
            momentum: 0.0,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    #[test]
    fn clip_matches_pytorch_rule() {
        let mut g = vec![3.0f32, 4.0];
        assert_eq!(clip_grad_norm(&mut g, 10.0), 5.0);
        assert_eq!(g, vec![3.0, 4.0]);
        let n = clip_grad_norm(&mut g, 1.0);
        assert_eq!(n, 5.0);
        let k = (1.0 / (5.0 + 1e-6)) as f32;
        assert_eq!(g, vec![3.0 * k, 4.0 * k]);
    }

    #[test]
    fn scaled_step_equals_step_after_clipping_bit_for_bit() {
        for kind in [OptimKind::Sgd, OptimKind::Adam, OptimKind::AdamW] {
            for momentum in [0.0, 0.9] {
                let mut c = cfg(kind);
                c.momentum = momentum;
                c.weight_decay = 0.01;
                let grads: Vec<f32> = (0..1000)
                    .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.3)
                    .collect();
                let params: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.013).sin()).collect();
                let (mut a, mut b) = (Optimizer::new(c.clone(), 1000), Optimizer::new(c, 1000));
                let (mut pa, mut pb) = (params.clone(), params);
                for _ in 0..3 {
                    let mut clipped = grads.clone();
                    let norm = clip_grad_norm(&mut clipped, 5.0);
                    let coef = clip_factor(norm, 5.0);
                    assert!(coef < 1.0);
                    a.step(&mut pa, &clipped, 0.1);
                    b.step_scaled(&mut pb, &grads, coef, 0.1);
                }
                let bits = |p: &[f32]| p.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&pa), bits(&pb), "{kind:?} momentum {momentum}");
            }
        }
    }

    #[test]
    fn step_on_the_support_equals_the_dense_step_bit_for_bit() {
        let n = 100_000;
        let support = Support::from_ranges(n, [10..300, 40_000..40_650, 41_300..41_950, 70_000..n]);
        let inside = |i: usize| support.ranges().iter().any(|r| r.contains(&i));
        let grads: Vec<f32> = (0..n)
            .map(|i| {
                if inside(i) {
                    ((i * 37 % 101) as f32 - 50.0) * 0.3
                } else {
                    0.0
                }
            })
            .collect();
        let params: Vec<f32> = (0..n).map(|i| (i as f32 * 0.013).sin()).collect();
        for kind in [OptimKind::Sgd, OptimKind::Adam, OptimKind::AdamW] {
            for (momentum, wd) in [(0.0, 0.0), (0.9, 0.0), (0.0, 0.01)] {
                let mut c = cfg(kind);
                c.momentum = momentum;
                c.weight_decay = wd;
                let (mut a, mut b) = (Optimizer::new(c.clone(), n), Optimizer::new(c, n));
                let (mut pa, mut pb) = (params.clone(), params.clone());
                for _ in 0..3 {
                    let norm = grad_norm(&grads);
                    assert_eq!(norm.to_bits(), support.sum_squares(&grads).sqrt().to_bits());
                    let coef = clip_factor(norm, 5.0);
                    a.step_scaled(&mut pa, &grads, coef, 0.1);
                    b.step_scaled_on(&mut pb, &grads, coef, 0.1, &support);
                }
                let bits = |p: &[f32]| p.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&pa), bits(&pb), "{kind:?} momentum {momentum} wd {wd}");
                assert_eq!(a.steps, b.steps);
            }
        }
    }

    #[test]
    fn adam_first_step_moves_each_weight_by_lr() {
        // With bias correction, Adam's first step is lr * g / (|g| + eps') = ±lr.
        let mut o = Optimizer::new(cfg(OptimKind::Adam), 3);
        let mut p = vec![1.0f32, 1.0, 1.0];
        o.step(&mut p, &vec![0.5, -2.0, 1e-3], 0.1);
        for (got, want) in p.iter().zip([0.9f32, 1.1, 0.9]) {
            assert!((got - want).abs() < 1e-4, "{got} vs {want}");
        }
    }

    #[test]
    fn sgd_momentum_and_adamw_decay() {
        let mut c = cfg(OptimKind::Sgd);
        c.momentum = 0.5;
        let mut o = Optimizer::new(c, 1);
        let mut p = vec![0.0f32];
        o.step(&mut p, &vec![1.0], 1.0); // m = 1, p = -1
        o.step(&mut p, &vec![1.0], 1.0); // m = 1.5, p = -2.5
        assert_eq!(p, vec![-2.5]);

        let mut c = cfg(OptimKind::AdamW);
        c.weight_decay = 0.5;
        let mut o = Optimizer::new(c, 1);
        let mut p = vec![2.0f32];
        o.step(&mut p, &vec![0.0], 0.1); // decoupled: p *= 1 - 0.05, no gradient step
        assert!((p[0] - 1.9).abs() < 1e-6, "{}", p[0]);
    }
}
