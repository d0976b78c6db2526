//! `ProfileError`: the one error type of the profiler crate.

/// Everything that can go wrong while profiling, reading tables, analysing or plotting.
/// Messages are complete sentences for the CLI to print after `error: `.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// An engine could not prepare or run a configuration. Other crates' engines construct this
    /// with their own message.
    #[error("{0}")]
    Engine(String),
    /// An external command failed: it could not start, exited non-zero, timed out, or printed
    /// no usable result line. `stderr_tail` is the end of what it wrote on stderr.
    #[error("command `{command}`: {reason}{}", tail_suffix(stderr_tail))]
    Command {
        command: String,
        reason: String,
        stderr_tail: String,
    },
    /// A sweep specification (a range, a list, a flag value) could not be used.
    #[error("invalid {flag} `{value}`: {reason}")]
    Spec {
        flag: String,
        value: String,
        reason: String,
    },
    /// A latency table is malformed, of another format or version, or inconsistent; `field` is
    /// the JSON path (or CSV line and column) of the offending value.
    #[error("{file}: {field}: {reason}")]
    Table {
        file: String,
        field: String,
        reason: String,
    },
    /// Tables cannot be merged without a choice the user has to make (the same configuration
    /// measured twice, or two different targets under one name).
    #[error("cannot merge: {0}")]
    Merge(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Drawing a plot failed.
    #[error("plot: {0}")]
    Plot(String),
    /// The data cannot answer the question asked (no curve, a size that was not measured).
    #[error("{0}")]
    Analysis(String),
}

fn tail_suffix(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("\n--- end of its stderr ---\n{}", tail.trim_end())
    }
}

impl ProfileError {
    /// An I/O error with the path it concerns.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        ProfileError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// A malformed-table error.
    pub fn table(
        file: impl Into<String>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        ProfileError::Table {
            file: file.into(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn spec(flag: &str, value: &str, reason: impl Into<String>) -> Self {
        ProfileError::Spec {
            flag: flag.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}
