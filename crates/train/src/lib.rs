//! symbiont-train: the PTB corpus, optimizers and learning-rate schedules, experiment configs,
//! and the training loop with metrics, atomic checkpoints, resume and evaluation.

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod eval;
pub mod optim;
pub mod ptb;
pub mod resident;
pub mod trainer;

pub use config::TrainConfig;
pub use error::TrainError;
