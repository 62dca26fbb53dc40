//! Shard folders in object storage (`s3://`, `gs://`, `az://`/`abfs://`, read-only
//! `http(s)://`), through Apache Arrow's `object_store`, as blocking calls: the rest of
//! shardfeed is threads, not futures, and the local-file path never touches this crate or its
//! runtime.
//!
//! - [`Store::open`]: a URL, with credentials and endpoints from `object_store`'s standard
//!   environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//!   `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, `GOOGLE_APPLICATION_CREDENTIALS`,
//!   `AZURE_STORAGE_ACCOUNT_NAME`, …).
//! - [`Store::reader`]: an object as a [`RandomRead`] for `record-format`'s indexed reads:
//!   [`chunk_bytes`] range reads (8 MiB), [`READ_AHEAD_CHUNKS`] of read-ahead per object, at most
//!   [`PREFETCH_BUDGET_BYTES`] prefetched in the process; a read that breaks (a dropped
//!   connection, a 5xx, a throttle, a timeout) is retried with backoff from the byte where it
//!   broke, so a record is never duplicated or lost.
//! - [`Store::upload`]: a local file by multipart upload (visible only once complete; a failed
//!   upload is aborted, then retried from the start), [`Store::put`] for small objects.
//!
//! Settings from the environment: `SHARDFEED_READ_CHUNK_BYTES` (range read size, default
//! 8 MiB), `SHARDFEED_STORAGE_RETRIES` (`object_store`'s retries per request, default 4;
//! ours, [`MAX_ATTEMPTS`], come on top). One tokio runtime (two threads) serves the
//! process, created on first use.

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;

mod ranged;
mod retry;
mod runtime;
mod store;

pub use ranged::{RangedReader, held_chunk_bytes};
pub use runtime::after_fork_in_child;
pub use shardfeed_record_format::RandomRead;
pub use store::{Object, Store};

/// Bytes of one range read, unless `SHARDFEED_READ_CHUNK_BYTES` says otherwise.
pub const CHUNK_BYTES: u64 = 8 << 20;

/// Bytes of one range read: [`CHUNK_BYTES`], or `SHARDFEED_READ_CHUNK_BYTES` (at least 4096),
/// read once per process.
pub fn chunk_bytes() -> u64 {
    static CHUNK: OnceLock<u64> = OnceLock::new();
    *CHUNK.get_or_init(|| {
        std::env::var("SHARDFEED_READ_CHUNK_BYTES")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(CHUNK_BYTES, |v| v.max(4096))
    })
}
/// Chunks read ahead of the one being read, per object.
pub const READ_AHEAD_CHUNKS: u64 = 2;
/// Prefetched bytes the process holds at most (chunks a reader asks for are always fetched).
pub const PREFETCH_BUDGET_BYTES: u64 = 256 << 20;
/// Attempts of one range read or upload before its error is returned.
pub const MAX_ATTEMPTS: u32 = 10;
/// Part size of multipart uploads.
pub const PART_BYTES: usize = 8 << 20;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong with object storage; every variant names the URL.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A URL this crate cannot use.
    #[error("{url}: {message}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        message: String,
    },
    /// A request that failed (after its retries).
    #[error("cannot {action} {url}: {source}")]
    Store {
        /// What was being done (`list`, `read`, `upload`, …).
        action: &'static str,
        /// The object or folder.
        url: String,
        /// The cause.
        source: Box<object_store::Error>,
    },
    /// An object read whole that is larger than its kind of object may be.
    #[error("{url} is {size} bytes, over the limit of {limit} for this object")]
    TooLarge {
        /// The object.
        url: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A local file being uploaded could not be read.
    #[error("cannot read {path} to upload it: {source}")]
    Local {
        /// The local file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the object (or folder) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Store { source, .. } if matches!(**source, object_store::Error::NotFound { .. }))
    }
}

/// Whether `text` is a URL of a scheme [`Store::open`] takes (`s3://`, `s3a://`, `gs://`,
/// `az://`, `abfs://`, `abfss://`, `adl://`, `azure://`, `http://`, `https://`).
pub fn is_remote_url(text: &str) -> bool {
    let Some((scheme, _)) = text.split_once("://") else {
        return false;
    };
    matches!(
        scheme.to_ascii_lowercase().as_str(),
        "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss" | "adl" | "azure" | "http" | "https"
    )
}

/// `url` with what may be a secret hidden: the user info (`user:token@`) and the query
/// (`?sig=…`, a SAS or presigned URL) each become `***`. Every message and stored path of a
/// URL shows this form.
///
/// ```
/// use shardfeed_storage::redact;
/// assert_eq!(redact("https://me:tok@host/x?sig=abc"), "https://***@host/x?***");
/// assert_eq!(redact("s3://bucket/x"), "s3://bucket/x");
/// ```
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (rest, query) = match rest.split_once(['?', '#']) {
        Some((before, _)) => (before, "?***"),
        None => (rest, ""),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let rest = match rest[..authority_end].rfind('@') {
        Some(at) => format!("***@{}", &rest[at + 1..]),
        None => rest.to_owned(),
    };
    format!("{scheme}://{rest}{query}")
}

/// Whether `url` carries what may be a secret (user info, a query): [`Store::open`] refuses
/// such a URL, naming it redacted.
pub fn carries_secret(url: &str) -> bool {
    redact(url) != url
}

/// What to say about a URL that carries credentials.
pub const SECRET_IN_URL: &str = "credentials in a URL (user:token@, a SAS or presigned query) are refused: they would be printed in messages and saved in run.json, manifests and reports; give them in the environment instead (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AZURE_STORAGE_SAS_KEY, GOOGLE_APPLICATION_CREDENTIALS, …)";

/// Counters of one process's object-storage traffic (for `stats`, tests and benchmarks).
#[derive(Debug, Default)]
pub struct Traffic {
    /// Range or whole-object reads that succeeded.
    pub reads: AtomicU64,
    /// Bytes received (including bytes of reads that broke and were continued).
    pub bytes_read: AtomicU64,
    /// Reads and uploads retried after an error.
    pub retries: AtomicU64,
    /// Multipart uploads completed.
    pub uploads: AtomicU64,
    /// Multipart uploads aborted.
    pub aborted: AtomicU64,
    /// Folder listings.
    pub listings: AtomicU64,
    /// Whole-object reads asked for (manifests, indexes, sources; found or not).
    pub gets: AtomicU64,
    /// Size queries (`HEAD`).
    pub heads: AtomicU64,
    /// Single-request writes (`PUT`, conditional or not).
    pub puts: AtomicU64,
}

/// The process's traffic counters.
pub fn traffic() -> &'static Traffic {
    static TRAFFIC: OnceLock<Traffic> = OnceLock::new();
    TRAFFIC.get_or_init(Traffic::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_storage_urls_are_told_from_paths() {
        for url in [
            "s3://b/x",
            "S3://b",
            "gs://b/x",
            "az://c/x",
            "abfss://c@a/x",
            "https://h/x",
        ] {
            assert!(is_remote_url(url), "{url}");
        }
        for path in ["shards", "/data/x", "file:///x", "./s3:/x", "ftp://h/x"] {
            assert!(!is_remote_url(path), "{path}");
        }
    }

    #[test]
    fn urls_with_credentials_are_refused_without_echoing_them() {
        for (url, shown) in [
            ("https://me:s3cret@host/x", "https://***@host/x"),
            ("az://c/x?sv=2024&sig=s3cret", "az://c/x?***"),
            ("https://host/x#s3cret", "https://host/x?***"),
            ("s3://me@bucket/x/y@z", "s3://***@bucket/x/y@z"),
        ] {
            let error = Store::open(url).unwrap_err().to_string();
            assert!(
                !error.contains("s3cret") && !error.contains("me@"),
                "{error}"
            );
            assert!(
                error.starts_with(shown) && error.contains("environment"),
                "{error}"
            );
        }
        assert!(!carries_secret("s3://bucket/x/a@b.tfrec"));
    }
}
