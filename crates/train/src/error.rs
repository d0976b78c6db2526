//! Errors of the training crate; every variant names the file or field at fault.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TrainError {
    /// A data file is missing or unreadable.
    #[error("{path}: {reason}")]
    Data { path: String, reason: String },
    /// A data file's MD5 differs from the published one.
    #[error("{path}: MD5 {got} does not match the expected {want}; the file is corrupt or not Mikolov's PTB (set `verify_checksums = false` in [data] for another corpus in the same format)")]
    Checksum {
        path: String,
        got: String,
        want: String,
    },
    /// A word of valid/test is not in the training vocabulary.
    #[error("{path}:{line}: word `{word}` is not in the training vocabulary")]
    UnknownWord {
        path: String,
        line: usize,
        word: String,
    },
    /// The config file is invalid.
    #[error("{path}: {reason}")]
    Config { path: String, reason: String },
    /// A checkpoint is missing, incomplete or inconsistent.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: String, reason: String },
    /// The loss or gradient norm stopped being finite.
    #[error("{0}")]
    NonFinite(String),
    /// A training hook (or the model's gradient support) broke its contract: a programming
    /// error, found by the check the CLI tests turn on.
    #[error("{0}")]
    Hook(String),
    #[error(transparent)]
    Model(#[from] model::ModelError),
    /// The device (GPU) failed an operation.
    #[error("device: {0}")]
    Device(#[from] model::backend::DeviceError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl TrainError {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}
