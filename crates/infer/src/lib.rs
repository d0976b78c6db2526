//! Prepared inference plans for LSTM / H-LSTM stacks and language models.
//!
//! A plan is built once from weights (trained by symbiont or imported from PyTorch): every
//! weight matrix packed in the format measured fastest for it (dense f32, bf16, CSR, BSR),
//! buffers kept between calls, no autograd state. It runs whole sequences or one step at a time
//! with a carried state, at any batch width.

pub mod bench;
mod error;
mod lm;
mod matrix;
mod parallel;
mod plan;
mod synthetic;
mod weights;

pub use error::InferError;
pub use lm::{ModelPlan, Steps};
pub use matrix::FormatChoice;
pub use plan::{Dtype, MatrixInfo, PlanOptions, StackPlan, StackState};
pub use synthetic::{MaskShape, SyntheticSpec};
pub use weights::{CellWeights, LayerWeights, ModelWeights};
