//! The engine interface: a configuration to time (`Point`), what an engine says about itself
//! (`EngineInfo`), and the `Engine` / `Prepared` traits every timed backend implements.

use crate::ProfileError;
use std::collections::BTreeMap;

/// One configuration to time.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Point {
    pub hidden: usize,
    /// Input size, resolved; the CLI defaults it to `hidden`.
    pub input: usize,
    /// H-LSTM gate width M; 0 = plain LSTM.
    pub gate_width: usize,
    pub layers: usize,
    pub batch: usize,
    pub seq: usize,
    pub threads: usize,
    /// "f32" | "bf16".
    pub dtype: String,
    /// Fraction of non-zero weights, 1.0 = dense.
    pub density: f64,
    /// "dense" | "csr" | "bsr" | "auto" (engine-defined names).
    pub format: String,
}

impl Point {
    /// A single-layer dense f32 LSTM of width `hidden` (input = hidden), batch 1, 35 steps,
    /// 1 thread: the reference configuration of the method's tables.
    pub fn lstm(hidden: usize) -> Point {
        Point {
            hidden,
            input: hidden,
            gate_width: 0,
            layers: 1,
            batch: 1,
            seq: 35,
            threads: 1,
            dtype: "f32".into(),
            density: 1.0,
            format: "dense".into(),
        }
    }

    /// `hidden=256 input=256 …` — for messages and engine errors.
    pub fn describe(&self) -> String {
        format!(
            "hidden={} input={} gate_width={} layers={} batch={} seq={} threads={} dtype={} density={} format={}",
            self.hidden,
            self.input,
            self.gate_width,
            self.layers,
            self.batch,
            self.seq,
            self.threads,
            self.dtype,
            self.density,
            self.format
        )
    }

    /// The configuration as `(name, value)` pairs, in the order of the struct; the names are
    /// the command engine's placeholders and the table's field names.
    pub fn fields(&self) -> [(&'static str, String); 10] {
        [
            ("hidden", self.hidden.to_string()),
            ("input", self.input.to_string()),
            ("gate_width", self.gate_width.to_string()),
            ("layers", self.layers.to_string()),
            ("batch", self.batch.to_string()),
            ("seq", self.seq.to_string()),
            ("threads", self.threads.to_string()),
            ("dtype", self.dtype.clone()),
            ("density", self.density.to_string()),
            ("format", self.format.clone()),
        ]
    }
}

/// What an engine says about itself; recorded as the provenance of every table it measures.
/// Construct with `EngineInfo::new(name, version)` and set the other fields as needed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EngineInfo {
    /// Short name: "cpu-dense", "cpu-sparse", "command", "fake".
    pub name: String,
    /// Version of the engine (crate version, library version, …).
    pub version: String,
    /// The device it runs on when it is not this machine's CPU (a GPU name, a phone model);
    /// `None` records the CPU model from /proc/cpuinfo.
    pub device: Option<String>,
    /// True when one `run` already warms up and repeats internally (an external command that
    /// times itself): the sweep then skips its own warm-up runs and calls `run` once per visit.
    pub self_timed: bool,
    /// Anything else worth recording (library versions, kernel choices, the command template).
    pub details: BTreeMap<String, String>,
}

impl EngineInfo {
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> EngineInfo {
        EngineInfo {
            name: name.into(),
            version: version.into(),
            ..EngineInfo::default()
        }
    }
}

/// Something that can be timed: an inference engine, an external command, a fake.
pub trait Engine {
    fn info(&self) -> EngineInfo;
    /// Builds whatever the configuration needs (weights, buffers); not timed.
    fn prepare(&mut self, point: &Point) -> Result<Box<dyn Prepared>, ProfileError>;
}

/// A configuration made ready to run.
pub trait Prepared {
    /// Runs the configuration once and returns latency samples in milliseconds: one sample for
    /// in-process engines, possibly many for an external command that times itself.
    fn run(&mut self) -> Result<Vec<f64>, ProfileError>;
}
