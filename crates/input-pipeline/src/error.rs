//! The crate's one error type.

use crate::Address;

/// A boxed error from a caller's function.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a pipeline. Every variant says which item it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The fetch or map function failed for an item; its message carries the details (for
    /// TFRecord sources: file, record index and byte offset).
    #[error("{source}")]
    Item {
        /// The item's source and index.
        address: Address,
        /// The item's position in the stream.
        position: u64,
        /// The function's error.
        #[source]
        source: BoxError,
    },
    /// A stage's thread panicked; the pipeline stops and reports it instead of hanging.
    #[error("internal error in the {stage} stage at item {position} (a panic, caught): {message}")]
    Panic {
        /// The stage (`plan`, `map`, `batch`).
        stage: &'static str,
        /// The position being processed, when known.
        position: u64,
        /// The panic's message.
        message: String,
    },
    /// The in-memory cache would grow past its budget (with [`crate::CacheOverflow::Error`]).
    #[error(
        "cache budget of {budget} bytes exceeded at item {position} ({cached} bytes cached); raise the budget or cache less"
    )]
    CacheBudget {
        /// The budget.
        budget: u64,
        /// Bytes cached before this item.
        cached: u64,
        /// The item that did not fit.
        position: u64,
    },
    /// A resume state from another pipeline (other files, counts or settings).
    #[error(
        "the resume state belongs to another pipeline (fingerprint {found:#x}, this one is {expected:#x})"
    )]
    StateMismatch {
        /// This pipeline's fingerprint.
        expected: u64,
        /// The state's.
        found: u64,
    },
    /// A resume state that does not parse.
    #[error("invalid resume state: {0}")]
    InvalidState(String),
    /// Reading TFRecord files.
    #[error(transparent)]
    Record(#[from] shardfeed_record_format::Error),
}

impl Error {
    /// The message of a caught panic's payload.
    pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned())
    }
}
