//! The training few-row products (`small_m`) at every ISA level this CPU has, beside the gemm
//! crate on the same shape, alternating levels round by round so a slow stretch of the machine
//! hits them all alike.
//!
//! Run: `cargo run --release -p symbiont-kernels --example few_rows -- [H,H,..] [ROUNDS]`

use kernels::isa;
use kernels::small_m::{matmul_packed_at, PackedB};
use kernels::timing::median_secs;
use kernels::{matmul, Trans};

fn main() {
    let hidden: Vec<usize> = std::env::args()
        .nth(1)
        .map(|s| s.split(',').filter_map(|v| v.parse().ok()).collect())
        .unwrap_or_else(|| vec![200, 650, 1500]);
    let rounds: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let m = 20;
    println!(
        "threads {}, gemm crate at {}; GFLOP/s per round",
        rayon::current_num_threads(),
        isa::gemm_level()
    );
    for &h in &hidden {
        for (name, n, k) in [("step", 4 * h, h), ("dh", h, 4 * h)] {
            let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
            let mut c = vec![0f32; m * n];
            let mut packed = PackedB::new();
            packed.pack(&b, n, k, n);
            let flops = 2.0 * (m * n * k) as f64;
            let reps = ((1e9 / flops) as usize).clamp(5, 1000);
            let mut rows: Vec<(String, Vec<f64>)> = isa::supported()
                .iter()
                .map(|l| (l.to_string(), Vec::new()))
                .chain([("gemm".to_string(), Vec::new())])
                .collect();
            for _ in 0..rounds {
                for (i, level) in isa::supported().into_iter().enumerate() {
                    let s = median_secs(reps, || {
                        matmul_packed_at(level, m, 1.0, &a, k, &packed, 0.0, &mut c, n)
                    });
                    rows[i].1.push(flops / s / 1e9);
                }
                let s = median_secs(reps, || {
                    matmul(m, n, k, 1.0, &a, Trans::N, &b, Trans::N, 0.0, &mut c)
                });
                rows.last_mut()
                    .expect("the gemm row")
                    .1
                    .push(flops / s / 1e9);
            }
            for (label, rates) in rows {
                let r: Vec<String> = rates.iter().map(|v| format!("{v:6.1}")).collect();
                println!(
                    "{name:<4} H={h:<5} {m}x{n}x{k:<6} {label:<9} {}",
                    r.join(" ")
                );
            }
        }
    }
}
