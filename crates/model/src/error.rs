//! The model crate's errors: each names the file involved.

use std::path::PathBuf;

/// What went wrong saving or loading a model or checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A JSON file could not be parsed.
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// burn could not read or write a weights file.
    #[error("{}: {message}", path.display())]
    Record {
        /// The file.
        path: PathBuf,
        /// burn's message.
        message: String,
    },
    /// A file is readable but describes something unusable.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl ModelError {
    pub(crate) fn record(path: PathBuf, error: impl std::fmt::Display) -> Self {
        ModelError::Record {
            path,
            message: error.to_string(),
        }
    }
}
