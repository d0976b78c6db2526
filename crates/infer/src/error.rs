//! The inference crate's error type.

use model::ModelError;

/// Everything that can go wrong building or running a plan from user input.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// Reading or writing a weights file failed (missing tensor, wrong shape or dtype, I/O); the
    /// message names the file and tensor.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The tensors of a file do not form a model we can run (the message names the tensor).
    #[error("{file}: {reason}")]
    Layout { file: String, reason: String },
    /// A plan or run option is out of range (the message names it).
    #[error("{0}")]
    Config(String),
    /// An input does not fit the plan (wrong width, token outside the vocabulary, ...).
    #[error("{0}")]
    Input(String),
}
