//! Rates of the packed products at the LSTM shapes, single-threaded: each format at batch 1, 2, 4,
//! 16, 35 (the hoisted projection of one sequence), 140 and 560 (batch 4 and 16 over 35 steps),
//! and the `gemm` crate for comparison (on one thread too).
//!
//! Run: `cargo run --release -p symbiont-infer --example kernel_rates -- H|ROWSxCOLS [DENSITY [FORMAT]]`
//! (`SYMBIONT_ISA=avx2` etc. picks the level of the hand kernels).

use kernels::packed::{Format, PackedMatrix, BLOCK_SHAPES};
use kernels::timing::median_secs;
use kernels::{matmul, Trans};

fn main() {
    // One thread for everything, the `gemm` crate's comparison row included.
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()
        .expect("the global pool is not built yet");
    // `H` (one H x H gate block) or `ROWSxCOLS` (e.g. `10000x200`, the PTB-small decoder).
    let shape = std::env::args().nth(1).unwrap_or_else(|| "650".into());
    let (rows, cols): (usize, usize) = match shape.split_once('x') {
        Some((r, c)) => (r.parse().expect("ROWS"), c.parse().expect("COLS")),
        None => {
            let h = shape.parse().expect("H");
            (h, h)
        }
    };
    let density: f64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let rng = kernels::rng::CounterRng::new(3);
    let w: Vec<f32> = (0..(rows * cols) as u64)
        .map(|i| {
            if rng.uniform_f64(0, i) < density {
                rng.uniform(1, i) - 0.5
            } else {
                0.0
            }
        })
        .collect();
    let mut formats = vec![
        Format::Dense,
        Format::Bf16,
        Format::Panel,
        Format::Bf16Panel,
        Format::Bf16Amx,
    ];
    if density < 1.0 {
        formats.push(Format::Csr);
        formats.extend(BLOCK_SHAPES.iter().map(|&(r, c)| Format::Bsr(r, c)));
    }
    // Optional third argument: only this format (e.g. `csr`), for profiling one kernel.
    if let Some(only) = std::env::args().nth(3) {
        let only: Format = only.parse().expect("a format name");
        formats.retain(|f| *f == only);
    }
    let level = kernels::isa::from_env().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2)
    });
    println!(
        "one block {rows}x{cols}, density {density}, ISA {level} (gemm crate: {})",
        kernels::isa::gemm_level()
    );
    for nb in [1usize, 2, 4, 16, 35, 140, 560] {
        let x: Vec<f32> = (0..nb * cols).map(|i| (i as f32 * 0.1).sin()).collect();
        let mut y = vec![0f32; nb * rows];
        for f in &formats {
            let m = PackedMatrix::pack(&w, rows, cols, *f);
            let s = median_secs(15, || m.acc(&x, cols, nb, &mut y, rows, 0..rows));
            println!(
                "nb {nb:>3} {:<8} {:>9.1} us  {:>6.1} GFLOP/s  {:>6.1} GB/s",
                f.to_string(),
                s * 1e6,
                2.0 * (nb * rows * cols) as f64 * density / s / 1e9,
                m.bytes() as f64 / s / 1e9
            );
        }
        let s = median_secs(15, || {
            matmul(nb, rows, cols, 1.0, &x, Trans::N, &w, Trans::T, 1.0, &mut y)
        });
        println!(
            "nb {nb:>3} gemm     {:>9.1} us  {:>6.1} GFLOP/s",
            s * 1e6,
            2.0 * (nb * rows * cols) as f64 / s / 1e9
        );
    }
}
