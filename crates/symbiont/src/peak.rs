//! `symbiont peak`: this machine's GEMM rate at the training shapes, the packed few-row kernel
//! the LSTM step uses, the inference dense kernel beside the gemm crate at the same shapes, and
//! the memory copy bandwidth.

use crate::commands::{isa_line, set_threads};
use crate::PeakArgs;
use kernels::isa;
use kernels::packed::{Format, PackedMatrix};
use kernels::timing::median_secs;
use kernels::{matmul, Trans};
use serde_json::{json, Value};
use std::error::Error;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Timed runs for a product of `flops`: about 2 GFLOP in all, 5 to 2000 runs.
fn reps_for(flops: f64) -> usize {
    ((2e9 / flops) as usize).clamp(5, 2000)
}

/// One row of the report: an `m x n x k` product named `shape`, timed at `secs` per run.
fn row(shape: &str, hidden: usize, (m, n, k): (usize, usize, usize), secs: f64) -> Value {
    let flops = 2.0 * (m * n * k) as f64;
    json!({"shape": shape, "hidden": hidden, "m": m, "n": n, "k": k,
        "median_ms": secs * 1e3, "gflops": flops / secs / 1e9})
}

/// The training GEMMs through `kernels::matmul` (all threads).
fn training_rows(hidden: &[usize]) -> Vec<Value> {
    let (tb, v) = (700usize, 10_000usize);
    let mut rows = Vec::new();
    for &h in hidden {
        let g = 4 * h;
        // (name, m, n, k, ta, tb)
        let shapes = [
            ("input_proj", tb, g, h, Trans::N, Trans::T),
            ("weight_grad", g, h, tb, Trans::T, Trans::N),
            ("softmax_fwd", tb, v, h, Trans::N, Trans::T),
            ("softmax_dw", v, h, tb, Trans::T, Trans::N),
            // The same product from a pre-transposed (V, T·B) gradient.
            ("softmax_dw_pre_t", v, h, tb, Trans::N, Trans::N),
            ("softmax_dx_from_t", tb, h, v, Trans::T, Trans::N),
            ("softmax_dx", tb, h, v, Trans::N, Trans::N),
            ("recurrent_step", 20, g, h, Trans::N, Trans::T),
            // The same product from a transposed (H, G) copy of W_hh, and the step's dh product.
            ("recurrent_step_wt", 20, g, h, Trans::N, Trans::N),
            ("recurrent_dh", 20, h, g, Trans::N, Trans::N),
        ];
        for (name, m, n, k, ta, tbb) in shapes {
            let a = vec![0.5f32; m * k];
            let b = vec![0.25f32; k * n];
            let mut c = vec![0.0f32; m * n];
            let reps = reps_for(2.0 * (m * n * k) as f64);
            let secs = median_secs(reps, || matmul(m, n, k, 1.0, &a, ta, &b, tbb, 0.0, &mut c));
            rows.push(row(name, h, (m, n, k), secs));
        }
    }
    rows
}

/// The step's two products through the packed few-rows kernel the LSTM uses.
fn few_row_rows(hidden: &[usize]) -> Vec<Value> {
    let mut rows = Vec::new();
    for &h in hidden {
        let g = 4 * h;
        for (name, n, k) in [
            ("recurrent_step_few_rows", g, h),
            ("recurrent_dh_few_rows", h, g),
        ] {
            let a = vec![0.5f32; 20 * k];
            let b = vec![0.25f32; k * n];
            let mut c = vec![0.0f32; 20 * n];
            let mut packed = kernels::small_m::PackedB::new();
            packed.pack(&b, n, k, n);
            let secs = median_secs(reps_for(2.0 * (20 * n * k) as f64), || {
                kernels::small_m::matmul_packed(20, 1.0, &a, k, &packed, 0.0, &mut c, n)
            });
            rows.push(row(name, h, (20, n, k), secs));
        }
    }
    rows
}

/// The inference recurrent product `y (nb x 4H) += x (nb x H) · Wᵀ` for batch 1 and 16: the
/// dense packed kernel of the inference plans (`infer_dense_b*`) and the gemm crate on the same
/// operands (`gemm_b*`), both on one thread so the kernels, not the thread counts, are compared.
/// Also returns, per (H, batch), the ratio of the two times.
fn inference_rows(hidden: &[usize]) -> Result<(Vec<Value>, Vec<Value>)> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    let (mut rows, mut ratios) = (Vec::new(), Vec::new());
    for &h in hidden {
        let g = 4 * h;
        let w: Vec<f32> = (0..g * h)
            .map(|i| ((i % 97) as f32 - 48.0) / 512.0)
            .collect();
        let packed = PackedMatrix::pack(&w, g, h, Format::Dense);
        for nb in [1usize, 16] {
            let x: Vec<f32> = (0..nb * h)
                .map(|i| ((i % 31) as f32 - 15.0) / 64.0)
                .collect();
            let mut y = vec![0.0f32; nb * g];
            let reps = reps_for(2.0 * (nb * g * h) as f64);
            let (infer_s, gemm_s) = pool.install(|| {
                let infer_s = median_secs(reps, || packed.acc(&x, h, nb, &mut y, g, 0..g));
                let gemm_s = median_secs(reps, || {
                    matmul(nb, g, h, 1.0, &x, Trans::N, &w, Trans::T, 1.0, &mut y)
                });
                (infer_s, gemm_s)
            });
            rows.push(row(&format!("infer_dense_b{nb}"), h, (nb, g, h), infer_s));
            rows.push(row(&format!("gemm_b{nb}"), h, (nb, g, h), gemm_s));
            ratios.push(json!({"hidden": h, "batch": nb, "infer_ms": infer_s * 1e3,
                "gemm_ms": gemm_s * 1e3, "infer_over_gemm": infer_s / gemm_s}));
        }
    }
    Ok((rows, ratios))
}

pub fn peak(args: PeakArgs, threads: Option<usize>) -> Result<u8> {
    set_threads(threads, 0)?;
    let mut rows = training_rows(&args.hidden);
    rows.extend(few_row_rows(&args.hidden));
    let best = rows
        .iter()
        .map(|r| r["gflops"].as_f64().unwrap_or(0.0))
        .fold(0.0, f64::max);
    let (infer_rows, ratios) = inference_rows(&args.hidden)?;
    rows.extend(infer_rows);
    // Copy bandwidth over 256 MiB (far beyond the caches): bytes copied per second.
    let n = 64 << 20;
    let src = vec![1.0f32; n];
    let mut dst = vec![0.0f32; n];
    let secs = median_secs(5, || dst.copy_from_slice(&src));
    let copy_gbs = (n * 4) as f64 / secs / 1e9;
    if args.json {
        println!(
            "{}",
            json!({"threads": rayon::current_num_threads(), "gemm_peak_gflops": best,
                "copy_gb_per_s": copy_gbs, "isa": isa::active().name(),
                "gemm_isa": isa::gemm_level().name(), "gemm": rows, "infer_vs_gemm": ratios})
        );
        return Ok(0);
    }
    println!("{}", isa_line());
    for r in &rows {
        println!(
            "{:<23} H={:<5} {:>5}x{:<6}x{:<6} {:>9.3} ms {:>7.1} GFLOP/s",
            r["shape"].as_str().unwrap_or(""),
            r["hidden"],
            r["m"],
            r["n"],
            r["k"],
            r["median_ms"].as_f64().unwrap_or(0.0),
            r["gflops"].as_f64().unwrap_or(0.0)
        );
    }
    println!(
        "GEMM peak at training shapes: {best:.1} GFLOP/s ({} threads)",
        rayon::current_num_threads()
    );
    for r in &ratios {
        println!(
            "inference dense kernel / gemm crate, 1 thread, H={} batch {}: {:.2}x the time",
            r["hidden"],
            r["batch"],
            r["infer_over_gemm"].as_f64().unwrap_or(0.0)
        );
    }
    println!("copy bandwidth: {copy_gbs:.1} GB/s (bytes copied per second, 256 MiB buffers)");
    Ok(0)
}
