//! Errors of the speech crate; each names the file (and line) at fault.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SpeechError {
    /// A file is missing or unreadable.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A file is readable but not what it should be (format, rate, channels, content).
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

impl SpeechError {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    pub fn invalid(path: impl AsRef<std::path::Path>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.as_ref().display().to_string(),
            reason: reason.into(),
        }
    }
}
