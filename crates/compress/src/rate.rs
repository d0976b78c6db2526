//! Rate curves: how much to prune (or grow) as training advances.

/// Zhu & Gupta's gradual pruning ("To prune, or not to prune", 2017; Distiller's AGP):
/// sparsity s(t) = s_f + (s_i − s_f)(1 − (t − t_0)/(t_1 − t_0))³ for t in [t_0, t_1],
/// s_i before and s_f after. Steps are whatever unit the caller counts in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CubicSchedule {
    pub initial_sparsity: f64,
    pub final_sparsity: f64,
    pub start: u64,
    pub end: u64,
}

impl CubicSchedule {
    pub fn sparsity_at(&self, step: u64) -> f64 {
        if step <= self.start || self.end <= self.start {
            return if step >= self.end {
                self.final_sparsity
            } else {
                self.initial_sparsity
            };
        }
        if step >= self.end {
            return self.final_sparsity;
        }
        let x = (step - self.start) as f64 / (self.end - self.start) as f64;
        self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * (1.0 - x).powi(3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cubic_schedule_endpoints_and_shape() {
        let s = CubicSchedule {
            initial_sparsity: 0.0,
            final_sparsity: 0.9,
            start: 100,
            end: 1100,
        };
        assert_eq!(s.sparsity_at(0), 0.0);
        assert_eq!(s.sparsity_at(100), 0.0);
        assert_eq!(s.sparsity_at(1100), 0.9);
        assert_eq!(s.sparsity_at(5000), 0.9);
        // Halfway: 0.9 * (1 - 0.125).
        assert!((s.sparsity_at(600) - 0.9 * 0.875).abs() < 1e-12);
        // Monotone non-decreasing, fastest early.
        let v: Vec<f64> = (100..=1100)
            .step_by(100)
            .map(|t| s.sparsity_at(t))
            .collect();
        assert!(v.windows(2).all(|w| w[1] >= w[0]));
        assert!(v[1] - v[0] > v[10] - v[9]);
    }
}
