//! symbiont-flow: the symbiotic flow as a library (issue 13), so that the CLI keeps only
//! arguments and printing and every stage can be driven and tested without PTB:
//! - [`pipeline`]: the flow end to end (`symbiont compress`): baseline, latency table, seed,
//!   stages, final model; [`stage`]: one training stage; [`config`]: the flow config, validated;
//!   [`record`]: what a run leaves (`flow.json`, `stage.json`); [`measure`]: latency tables and
//!   whole-model latency on the target; [`synthetic`]: a PTB-format corpus for tests and demos;
//! - [`hook`]: the training↔compression hook (masks through every update, the `[compress]`
//!   schedule's prune and grow phases);
//! - [`run`]: run setup (config and checkpoint reconciliation, the hook a config asks for);
//! - [`evaluate`]: perplexity through a prepared inference plan;
//! - [`count`]: parameter counts (all, non-zero, without embedding and softmax, per layer);
//! - [`compact`]: silenced hidden units removed into a smaller dense model;
//! - [`sizing`]: layer widths from measured latency (the frontier rule, the ablation rules, the
//!   widest layer within a latency budget);
//! - [`engines`]: the profiler's CPU engines (symbiont's dense and sparse plans);
//! - [`report`]: the report of a compress run (`report.md`, a self-contained `report.html`,
//!   SVG charts) from its `flow.json` and the stages' metrics;
//! - [`svg`]: the small SVG writer the report's charts are drawn with;
//! - [`onnx`]: ONNX export of a word language model (LSTM op / Scan over H-LSTM steps).

pub mod compact;
pub mod config;
pub mod count;
pub mod engines;
pub mod evaluate;
pub mod hook;
pub mod measure;
pub mod onnx;
pub mod pipeline;
pub mod record;
pub mod report;
pub mod run;
pub mod sizing;
pub mod stage;
pub mod svg;
pub mod synthetic;

pub use compact::{compact_units, Compacted};
pub use count::{count_params, Counts, TensorCount};
pub use evaluate::{evaluate_checked, evaluate_checked_on, evaluate_with_plan};
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
