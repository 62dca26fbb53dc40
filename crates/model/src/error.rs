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

/// A boxed error from the caller's data or observer.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What can stop a run.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    /// Saving or loading the model or a checkpoint.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The run folder already holds a run's files, and neither resuming nor replacing it
    /// was asked for.
    #[error("{folder} already holds a run ({found})")]
    AlreadyRun {
        /// The run folder.
        folder: PathBuf,
        /// The files of a run found there, comma-separated.
        found: String,
    },
    /// Resuming was asked for, but the folder has no checkpoint.
    #[error("no checkpoint in {0}")]
    NoCheckpoint(PathBuf),
    /// The caller's data failed (its error names the file and offset).
    #[error(transparent)]
    Data(BoxError),
    /// The training data ended before the epoch did.
    #[error("the training stream ended after {step} of {steps} steps of epoch {epoch}")]
    StreamEnded {
        /// The epoch (from 1).
        epoch: u64,
        /// Steps done in it.
        step: u64,
        /// Steps it should have had.
        steps: u64,
    },
    /// The observer failed to save its own files.
    #[error(transparent)]
    Observer(BoxError),
    /// `metrics.csv` could not be written.
    #[error("cannot write {path}: {source}")]
    Metrics {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: csv::Error,
    },
}
