//! symbiont-model: parameter layout, hand-written forward/backward layers, the LSTM language
//! model, checkpoints with PyTorch `state_dict` names, and gradient checks.
//!
//! Every layer is a `<layer>_forward` / `<layer>_backward` pair over flat row-major slices,
//! generic over [`kernels::Real`]; backward functions accumulate parameter gradients (`d*`
//! buffers) and write activation gradients.

pub mod backend;
pub mod checkpoint;
pub mod dropout;
pub mod embedding;
pub mod error;
pub mod gradcheck;
pub mod hlstm;
pub mod layout;
pub mod lm;
pub mod lstm;

pub use error::ModelError;
pub use layout::{ParamLayout, TensorSpec};
pub use lm::{LanguageModel, LmConfig, LmState, LmWorkspace};
