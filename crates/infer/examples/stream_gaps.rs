//! Streaming latency of a synthetic 2-layer LSTM: one step at a time at batch 1 through
//! `ModelPlan::run` with a carried state, back to back or with idle gaps between the steps (a
//! server answering requests that arrive now and then). Prints the median and p90 of 1 900 steps.
//!
//! Run: `cargo run --release -p symbiont-infer --example stream_gaps -- HIDDEN THREADS GAP_US`

use infer::{MaskShape, ModelPlan, PlanOptions, Steps, SyntheticSpec};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse().expect("HIDDEN THREADS GAP_US as integers"))
        .collect();
    let [hidden, threads, gap_us] = args[..] else {
        panic!("usage: stream_gaps HIDDEN THREADS GAP_US");
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("the global pool is not built yet");
    let spec = SyntheticSpec {
        layers: 2,
        input: hidden,
        hidden,
        gate_width: 0,
        bidirectional: false,
        density: 1.0,
        mask: MaskShape::Random,
        vocab: 0,
        seed: 1,
    };
    let w = spec.build().expect("a valid synthetic model");
    let opts = PlanOptions {
        threads,
        batch: 1,
        seq: 1,
        ..PlanOptions::default()
    };
    let mut plan = ModelPlan::new(&w, &opts).expect("a plan");
    let x = vec![0.1f32; hidden];
    let mut state = plan.stack().zero_state(1);
    let mut times = Vec::new();
    for i in 0..2000 {
        // Sleep in short naps, as an idle server thread would, until the gap has passed.
        let idle = Instant::now();
        while idle.elapsed() < Duration::from_micros(gap_us as u64) {
            std::thread::sleep(Duration::from_micros(50));
        }
        let start = Instant::now();
        plan.run(&x, 1, 1, Some(&mut state), Steps::Last)
            .expect("a step");
        if i >= 100 {
            times.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "H={hidden} threads={threads} gap={gap_us}us step_threads={:?}: p50 {:.1} us  p90 {:.1} us",
        plan.stack().step_threads(),
        times[times.len() / 2],
        times[times.len() * 9 / 10]
    );
}
