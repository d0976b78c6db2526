//! What a `symbiont compress` run leaves behind, as serde types: `RUN/flow.json` (one
//! [`FlowRecord`], rewritten after every stage) is what `symbiont report` and scripts read.
//!
//! Run folder layout:
//! - `flow.toml`: the flow config as given (resume reads it back);
//! - `flow.json`: this record;
//! - `table.json`: the target's latency table (measured by the run or copied from `[profile] table`);
//! - `stages/NN-name/`: one training run per stage (`metrics.jsonl`, `checkpoint/`) and its
//!   `stage.json` ([`StageRecord`]) once finished;
//! - `final/model.safetensors` (PyTorch names; `symbiont infer` / `bench` load it), `final/model.onnx`,
//!   `final/final.json` (the final [`ModelRecord`]).

use serde::{Deserialize, Serialize};

/// Parameter counts (see [`crate::count_params`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ParamCounts {
    pub total: usize,
    pub nonzero: usize,
    /// Without the embedding and the softmax (decoder).
    pub total_core: usize,
    pub nonzero_core: usize,
}

impl From<&crate::Counts> for ParamCounts {
    fn from(c: &crate::Counts) -> ParamCounts {
        ParamCounts {
            total: c.total,
            nonzero: c.nonzero,
            total_core: c.total_core,
            nonzero_core: c.nonzero_core,
        }
    }
}

/// A latency measured on the target: whole language model (embedding, LSTM stack, decoder), one
/// plan run of `seq` tokens for `batch` streams.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyRecord {
    /// What ran it: `cpu-dense` (dense plan) or `cpu-sparse` (plan in `format`).
    pub engine: String,
    /// The matrix format the plan used (`dense`, `csr`, `bsr4x4`, …, as `symbiont bench` prints).
    pub format: String,
    pub batch: usize,
    pub seq: usize,
    pub threads: usize,
    pub isa: String,
    pub median_ms: f64,
    pub p10_ms: f64,
    pub p90_ms: f64,
    /// Every timed run, ms.
    pub samples: Vec<f64>,
}

/// A model at one point of the flow (baseline, a stage's result, or the final model).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    pub label: String,
    /// Checkpoint folder or safetensors file, relative to the run folder where inside it.
    pub path: String,
    /// `lstm` or `hlstm`.
    pub arch: String,
    pub layers: usize,
    pub hidden: Vec<usize>,
    /// H-LSTM gate width (0 for LSTM).
    pub gate_hidden: usize,
    pub params: ParamCounts,
    /// Perplexity on the validation split (eval batch of the training config).
    pub valid_ppl: Option<f64>,
    /// Perplexity on the test split, where measured, with `test_batch` streams (1 = the
    /// published protocol: baseline and final model; stages: the recipe's eval batch).
    pub test_ppl: Option<f64>,
    #[serde(default)]
    pub test_batch: Option<usize>,
    /// Latencies on the target: batch 1 first, then the deployment batch.
    #[serde(default)]
    pub latency: Vec<LatencyRecord>,
}

/// One finished stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// `NN-name`, also its folder under `stages/`.
    pub name: String,
    /// `seed`, `grow`, `prune`, `units`, `snap`, `finish`.
    pub kind: String,
    /// What the stage did, in words (densities, widths, why it stopped).
    pub note: String,
    /// Whether its result was kept: a prune step that broke the accuracy constraint is recorded
    /// with `accepted = false` and the flow continues from the previous stage's model.
    pub accepted: bool,
    /// Non-zero share of the masked tensors at the end of the stage.
    pub density: f64,
    pub model: ModelRecord,
    pub steps: u64,
    pub train_seconds: f64,
}

/// The host a run measured on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostRecord {
    /// `lscpu`'s model name (or `/proc/cpuinfo`'s), "unknown" where neither exists.
    pub cpu: String,
    pub isa: String,
    pub gemm_isa: String,
    pub threads: usize,
}

/// The sizing decisions: the latency curve used and the widths chosen from it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SizingRecord {
    /// `frontier`, `as-is` or `multiple:N`.
    pub rule: String,
    /// The profile point fixing the curve (layers, batch, seq, threads, dtype, density, gate width).
    pub curve: profile::Point,
    /// Measured (hidden, median ms) of that curve, ascending in hidden.
    pub points: Vec<(usize, f64)>,
    /// Hidden sizes on the frontier of that curve.
    pub frontier: Vec<usize>,
    /// Per layer: the width the seed asked for and the width the rule gave.
    pub seed_wanted: Vec<usize>,
    pub seed_widths: Vec<usize>,
    /// Per layer after the units stage: the live units left and the snapped width.
    #[serde(default)]
    pub units_left: Vec<usize>,
    #[serde(default)]
    pub snapped_widths: Vec<usize>,
    /// Latency-budget mode: the budget and the widest measured width within it.
    pub budget_ms: Option<f64>,
}

/// `RUN/flow.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowRecord {
    pub name: String,
    /// `cpu-dense` or `cpu-sparse`.
    pub target: String,
    /// The config file the run started from.
    pub config: String,
    pub symbiont_version: String,
    pub host: HostRecord,
    /// `running` until the final model is written, then `finished`.
    pub status: String,
    /// The accuracy bar: validation perplexity no worse than this (baseline × (1 + tolerance)).
    pub valid_ppl_limit: Option<f64>,
    pub baseline: Option<ModelRecord>,
    pub sizing: Option<SizingRecord>,
    pub stages: Vec<StageRecord>,
    #[serde(rename = "final")]
    pub final_model: Option<ModelRecord>,
}

impl FlowRecord {
    pub fn load(path: &std::path::Path) -> Result<FlowRecord, crate::FlowError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| crate::FlowError::Invalid(format!("{}: {e}", path.display())))?;
        serde_json::from_str(&text)
            .map_err(|e| crate::FlowError::Invalid(format!("{}: {e}", path.display())))
    }
}
