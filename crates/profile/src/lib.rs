//! Latency profiler: engines to time, sweeps, latency tables, frontier analysis and plots.
//!
//! - `engine`: the `Engine` / `Prepared` interface and `Point`, one configuration to time;
//!   `command` (external commands) and `fake` (known curves) implement it here, the inference
//!   plans elsewhere.
//! - `grid` + `sweep`: what to measure and how (shuffled passes, confidence-interval stopping,
//!   budget, Ctrl-C, verification of the frontier).
//! - `table` + `csv`: the versioned latency-table format (docs/profiler.md).
//! - `analysis` + `model` + `report`: frontier, plateaus, snap, budget, hysteresis;
//!   `LatencyModel` for size pickers.
//! - `plot`: SVG charts.

pub mod analysis;
pub mod axis;
pub mod command;
pub mod csv;
pub mod engine;
mod error;
pub mod fake;
pub mod grid;
pub mod model;
pub mod plot;
pub mod provenance;
pub mod report;
pub mod rng;
pub mod stats;
pub mod sweep;
pub mod table;

pub use analysis::{Curve, CurvePoint, FrontierOptions, Hysteresis, Plateau};
pub use axis::Axis;
pub use command::CommandEngine;
pub use engine::{Engine, EngineInfo, Point, Prepared};
pub use error::ProfileError;
pub use fake::{FakeCurve, FakeEngine};
pub use grid::{Grid, Sizes};
pub use model::LatencyModel;
pub use sweep::{sweep, SweepOptions, SweepOutcome, SweepStatus};
pub use table::{LatencyTable, OnDuplicate, TablePoint, Target};
