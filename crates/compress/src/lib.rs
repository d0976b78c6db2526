//! symbiont-compress: masks over the parameter layout, gradient-based connection growth,
//! magnitude pruning (one-shot, iterative, Zhu & Gupta's cubic gradual schedule), unstructured or
//! in tiles (`blocks`).
//!
//! Nothing here knows about training loops: the trainer calls these functions through hooks
//! (design.md: `train` and `compress` do not depend on each other).

pub mod blocks;
pub mod grow;
pub mod mask;
pub mod prune;
pub mod schedule;
pub mod structure;
pub mod units;

pub use mask::MaskSet;
pub use structure::UnitStructure;
