//! Errors of the model crate.

use thiserror::Error;

/// What can go wrong when building, loading or saving a model.
#[derive(Debug, Error)]
pub enum ModelError {
    /// A configuration value is out of range (the message names the field).
    #[error("invalid model config: {0}")]
    Config(String),
    /// A tensor required by the model is absent from the file.
    #[error("{file}: missing tensor `{name}`")]
    MissingTensor { file: String, name: String },
    /// A tensor has the wrong shape.
    #[error("{file}: tensor `{name}` has shape {got:?}, expected {want:?}")]
    Shape {
        file: String,
        name: String,
        got: Vec<usize>,
        want: Vec<usize>,
    },
    /// A tensor has a dtype we do not read.
    #[error("{file}: tensor `{name}` has dtype {dtype}, expected F32 or F64")]
    Dtype {
        file: String,
        name: String,
        dtype: String,
    },
    /// A tensor holds NaN or an infinity (a diverged or damaged model): never loaded, so nothing
    /// downstream reports a non-finite result as if it were one.
    #[error("{file}: tensor `{name}` holds a non-finite value ({value} at flat index {index})")]
    NonFinite {
        file: String,
        name: String,
        index: usize,
        value: f64,
    },
    /// The file is not valid safetensors.
    #[error("{file}: not a valid safetensors file: {reason}")]
    Format { file: String, reason: String },
    /// I/O failure, with the path.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
