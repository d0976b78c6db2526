//! symbiont-kernels: the CPU compute seam of the engine.
//!
//! Everything here works on flat row-major slices. Model code (forward/backward pairs) is written
//! once, generic over [`Real`] (f32 for training and inference, f64 for gradient checks), against
//! these kernels. A naive reference sits beside each fast kernel and is its test oracle.

pub mod activation;
pub mod cell;
pub mod check;
pub mod device;
pub mod fuzz;
pub mod gemm;
pub mod isa;
pub mod memory;
pub mod packed;
pub mod real;
pub mod reduce;
pub mod rng;
pub mod shared;
mod simd;
pub mod small_m;
pub mod softmax;
pub mod support;
pub mod timing;

pub use gemm::{matmul, matmul_reference, matmul_strided, StridedView, Trans};
pub use real::Real;
