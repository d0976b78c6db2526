//! Plans that share one thread team (`StackPlan::share_team`) and teams told to rest
//! (`StackPlan::rest`) compute what plans with their own teams do: layers run one after another
//! on the same workers, and a rested team wakes for the next run.

use infer::{MaskShape, PlanOptions, StackPlan, SyntheticSpec};
use kernels::rng::CounterRng;

fn plan(seed: u64, threads: usize) -> StackPlan {
    let w = SyntheticSpec {
        layers: 1,
        input: 24,
        hidden: 64,
        gate_width: 0,
        bidirectional: true,
        density: 1.0,
        mask: MaskShape::Random,
        vocab: 0,
        seed,
    }
    .build()
    .unwrap();
    let opts = PlanOptions {
        threads,
        format: "dense".parse().unwrap(),
        step_threads: Some(threads),
        seq: 7,
        ..PlanOptions::default()
    };
    StackPlan::new(&w.layers, &opts).unwrap()
}

#[test]
fn plans_on_one_team_match_plans_on_their_own() {
    let (t, b) = (7, 2);
    let rng = CounterRng::new(9);
    let x: Vec<f32> = (0..t * b * 24)
        .map(|i| rng.uniform(0, i as u64) - 0.5)
        .collect();
    let expected: Vec<Vec<f32>> = (1..=3)
        .map(|s| plan(s, 2).run(&x, t, b, None).unwrap().to_vec())
        .collect();
    let mut plans: Vec<StackPlan> = (1..=3).map(|s| plan(s, 2)).collect();
    let (first, rest) = plans.split_at_mut(1);
    for p in rest {
        p.share_team(&first[0]).unwrap();
    }
    for round in 0..3 {
        for (p, e) in plans.iter_mut().zip(&expected) {
            let y = p.run(&x, t, b, None).unwrap();
            assert_eq!(y.len(), t * b * 2 * 64);
            assert_eq!(y, &e[..], "round {round}");
        }
        // Rest, then wait past a spin so the workers are parked when the next run comes.
        plans[0].rest();
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let mut other = plan(1, 1);
    let e = other.share_team(&plans[0]).unwrap_err().to_string();
    assert!(e.contains("threads"), "{e}");
}
