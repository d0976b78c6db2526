//! Subnormal numbers never reach the kernels: a decaying state and subnormal weights are flushed
//! to zero by the plan itself (no floating-point mode is changed; see `kernels::cell::flush_subnormal`).

use infer::{CellWeights, FormatChoice, LayerWeights, PlanOptions, StackPlan};

/// One LSTM layer whose cell state halves every step: input gate shut (bias -100), forget gate
/// 0.5 (bias 0), candidate 0, output gate open (bias 20). From c = 1 the state is 2^-t: normal
/// up to step 126, subnormal from step 127 unless flushed.
fn halving_layer(h: usize, w_hh_value: f32) -> LayerWeights {
    let mut bias = vec![0.0f32; 4 * h];
    bias[..h].fill(-100.0);
    bias[3 * h..].fill(20.0);
    LayerWeights {
        input: 1,
        hidden: h,
        directions: vec![CellWeights::Lstm {
            w_ih: vec![0.0; 4 * h],
            w_hh: vec![w_hh_value; 4 * h * h],
            bias,
        }],
    }
}

#[test]
fn a_decaying_state_is_flushed_to_zero_instead_of_turning_subnormal() {
    let h = 16;
    for threads in [1, 2] {
        let opts = PlanOptions {
            threads,
            batch: 1,
            seq: 1,
            ..PlanOptions::default()
        };
        let mut plan = StackPlan::new(&[halving_layer(h, 0.0)], &opts).unwrap();
        let mut state = plan.zero_state(1);
        state.c[0].fill(1.0);
        // One step at a time, so the state is seen after every step.
        for step in 1..=200 {
            let out = plan.run(&[0.0], 1, 1, Some(&mut state)).unwrap();
            assert!(
                out.iter().all(|v| !v.is_subnormal()),
                "{threads} threads, step {step}: h {out:?}"
            );
            let c = &state.c[0];
            assert!(
                c.iter().all(|v| !v.is_subnormal()),
                "{threads} threads, step {step}: c {c:?}"
            );
            if step <= 126 {
                // 2^-step is normal: the flush must not touch it.
                let want = 0.5f32.powi(step);
                assert!(
                    c.iter().all(|&v| v == want),
                    "step {step}: c {c:?}, want {want:e}"
                );
            } else {
                assert!(c.iter().all(|&v| v == 0.0), "step {step}: c {c:?}");
            }
        }
    }
}

#[test]
fn subnormal_weights_are_packed_as_zeros() {
    // A recurrent matrix of subnormal values only: packed sparse, it holds no entry.
    let layer = halving_layer(16, f32::MIN_POSITIVE / 4.0);
    let opts = PlanOptions {
        format: "csr".parse::<FormatChoice>().unwrap(),
        ..PlanOptions::default()
    };
    let plan = StackPlan::new(&[layer], &opts).unwrap();
    let recurrent: Vec<_> = plan.matrices().into_iter().filter(|m| m.per_step).collect();
    assert!(!recurrent.is_empty());
    for m in recurrent {
        assert_eq!(
            m.nnz, 0,
            "{} in {}: {} entries kept",
            m.name, m.format, m.nnz
        );
    }
}
