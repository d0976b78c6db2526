//! symbiont-flow: the symbiotic flow as a library (issue 13), so that the CLI keeps only
//! arguments and printing and every stage can be driven and tested without PTB:
//! - [`hook`]: the training↔compression hook (masks through every update, the `[compress]`
//!   schedule's prune and grow phases);
//! - [`run`]: run setup (config and checkpoint reconciliation, the hook a config asks for);
//! - [`evaluate`]: perplexity through a prepared inference plan;
//! - [`count`]: parameter counts (all, non-zero, without embedding and softmax, per layer);
//! - [`compact`]: silenced hidden units removed into a smaller dense model;
//! - [`sizing`]: layer widths from measured latency (the frontier rule, the ablation rules, the
//!   widest layer within a latency budget);
//! - [`engines`]: the profiler's CPU engines (symbiont's dense and sparse plans).

pub mod compact;
pub mod count;
pub mod engines;
pub mod evaluate;
pub mod hook;
pub mod run;
pub mod sizing;

pub use compact::{compact_units, Compacted};
pub use count::{count_params, Counts, TensorCount};
pub use evaluate::{evaluate_checked, evaluate_with_plan};
pub use hook::CompressHook;

/// What a flow step can fail with; each variant names the file, tensor or field in its message.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error(transparent)]
    Train(#[from] train::TrainError),
    #[error(transparent)]
    Model(#[from] model::ModelError),
    #[error(transparent)]
    Infer(#[from] infer::InferError),
    /// A request the flow refuses (message says which input and why).
    #[error("{0}")]
    Invalid(String),
}
