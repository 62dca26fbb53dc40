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

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreScheme, PutPayload, RetryConfig,
    WriteMultipart,
};
pub use shardfeed_record_format::RandomRead;

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
}

/// The process's traffic counters.
pub fn traffic() -> &'static Traffic {
    static TRAFFIC: OnceLock<Traffic> = OnceLock::new();
    TRAFFIC.get_or_init(Traffic::default)
}

static RUNTIME: Mutex<Option<(u32, &'static tokio::runtime::Runtime)>> = Mutex::new(None);

/// For a fork hook (`os.register_at_fork(after_in_child=…)`): forgets the parent's runtime at
/// once, so the child's first storage call makes its own. Calls check the process id anyway
/// (a child forked by other means is covered); this only makes it eager.
pub fn after_fork_in_child() {
    let mut slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if slot.is_some_and(|(owner, _)| owner != std::process::id()) {
        *slot = None;
    }
}

/// The process's tokio runtime, made on first use — and anew in a child process: a `fork()`ed
/// child (PyTorch's `DataLoader` workers) inherits the parent's runtime without its threads,
/// and would wait on it for ever. The parent's copy is left alone in the child (dropping it
/// would wait for threads that are not there).
fn runtime() -> &'static tokio::runtime::Runtime {
    let pid = std::process::id();
    let mut slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    match *slot {
        Some((owner, runtime)) if owner == pid => runtime,
        _ => {
            let runtime: &'static tokio::runtime::Runtime = Box::leak(Box::new(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("shardfeed-storage")
                    .enable_all()
                    .build()
                    .expect("a tokio runtime starts"),
            ));
            *slot = Some((pid, runtime));
            runtime
        }
    }
}

/// An `object_store` client, rebuilt on first use in a process other than the one that made
/// it: its connection pool belongs to the parent's runtime, whose threads a forked child
/// does not have.
struct Client {
    made: Mutex<(u32, Arc<dyn ObjectStore>)>,
    make: Box<dyn Fn() -> Result<Arc<dyn ObjectStore>> + Send + Sync>,
}

impl Client {
    fn get(&self) -> Arc<dyn ObjectStore> {
        let pid = std::process::id();
        let mut made = self.made.lock().unwrap_or_else(|p| p.into_inner());
        if made.0 != pid {
            // The same settings built it once already; if they no longer build (the
            // environment changed in the child), the parent's client is the best there is.
            if let Ok(store) = (self.make)() {
                // Forgotten, not dropped: its pool's connections are the parent's.
                std::mem::forget(std::mem::replace(&mut made.1, store));
            }
            made.0 = pid;
        }
        made.1.clone()
    }
}

/// A folder in object storage: a store and a prefix in it.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Client>,
    prefix: ObjectPath,
    url: String,
    writable: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.url).finish()
    }
}

/// An object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Its name in the folder.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

impl Store {
    /// The folder at `url`; credentials, region and endpoint from the environment.
    pub fn open(url: &str) -> Result<Store> {
        let bad = |message: String| Error::BadUrl {
            url: redact(url),
            message,
        };
        if carries_secret(url) {
            return Err(bad(SECRET_IN_URL.to_owned()));
        }
        let trimmed = url.trim_end_matches('/');
        let parsed = url::Url::parse(trimmed).map_err(|e| bad(e.to_string()))?;
        let (scheme, path) = ObjectStoreScheme::parse(&parsed)
            .map_err(|e| bad(format!("not an object storage URL ({e})")))?;
        let prefix = ObjectPath::parse(path).map_err(|e| bad(e.to_string()))?;
        // object_store's own retries of each request (it also continues a broken body); ours
        // (MAX_ATTEMPTS) come on top, for what outlasts them.
        let max_retries = std::env::var("SHARDFEED_STORAGE_RETRIES")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(4);
        let retry = RetryConfig {
            max_retries,
            retry_timeout: Duration::from_secs(60),
            ..RetryConfig::default()
        };
        let client = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(10))
            .with_timeout(Duration::from_secs(60));
        let client = match std::env::var("AWS_ALLOW_HTTP") {
            Ok(v) if v.eq_ignore_ascii_case("true") || v == "1" => client.with_allow_http(true),
            _ => client,
        };
        // Every builder takes the same settings; each reads its own part of the environment.
        macro_rules! build {
            ($builder:expr, $url:expr, $client:expr) => {
                Arc::new(
                    $builder
                        .with_url($url)
                        .with_retry(retry)
                        .with_client_options($client)
                        .build()
                        .map_err(|e| bad(e.to_string()))?,
                ) as Arc<dyn ObjectStore>
            };
        }
        let (inner, writable) = match scheme {
            ObjectStoreScheme::AmazonS3 => (
                build!(
                    object_store::aws::AmazonS3Builder::from_env(),
                    trimmed,
                    client
                ),
                true,
            ),
            ObjectStoreScheme::GoogleCloudStorage => (
                build!(
                    object_store::gcp::GoogleCloudStorageBuilder::from_env(),
                    trimmed,
                    client
                ),
                true,
            ),
            ObjectStoreScheme::MicrosoftAzure => (
                build!(
                    object_store::azure::MicrosoftAzureBuilder::from_env(),
                    trimmed,
                    client
                ),
                true,
            ),
            ObjectStoreScheme::Http => (
                build!(
                    object_store::http::HttpBuilder::new(),
                    &parsed[..url::Position::BeforePath],
                    client.with_allow_http(true)
                ),
                false,
            ),
            other => return Err(bad(format!("{other:?} is not object storage"))),
        };
        let again = trimmed.to_owned();
        let client = Client {
            made: Mutex::new((std::process::id(), inner)),
            make: Box::new(move || Store::open(&again).map(|store| store.inner.get())),
        };
        Ok(Store {
            inner: Arc::new(client),
            prefix,
            url: trimmed.to_owned(),
            writable,
        })
    }

    /// The folder's URL (no trailing `/`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of object `name` in the folder.
    pub fn url_of(&self, name: &str) -> String {
        format!("{}/{name}", self.url)
    }

    /// Whether objects can be written here (`http(s)://` is read only).
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    fn path_of(&self, name: &str) -> ObjectPath {
        self.prefix.child(name)
    }

    fn failed(
        &self,
        action: &'static str,
        name: Option<&str>,
    ) -> impl FnOnce(object_store::Error) -> Error {
        let url = name.map_or_else(|| self.url.clone(), |n| self.url_of(n));
        move |source| Error::Store {
            action,
            url,
            source: Box::new(source),
        }
    }

    /// The objects directly in the folder, by name.
    pub fn list(&self) -> Result<Vec<Object>> {
        let store = self.inner.get();
        let listing = runtime()
            .block_on(retrying(|| store.list_with_delimiter(Some(&self.prefix))))
            .map_err(self.failed("list", None))?;
        let mut objects: Vec<Object> = listing
            .objects
            .into_iter()
            .filter_map(|meta| {
                Some(Object {
                    name: meta.location.filename()?.to_owned(),
                    size: meta.size,
                })
            })
            .collect();
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(objects)
    }

    /// The size of object `name`.
    pub fn size(&self, name: &str) -> Result<u64> {
        let path = self.path_of(name);
        let store = self.inner.get();
        runtime()
            .block_on(retrying(|| store.head(&path)))
            .map(|meta| meta.size)
            .map_err(self.failed("read", Some(name)))
    }

    /// Object `name` whole, in one request (retried; a body that breaks is continued by
    /// `object_store`, which checks the object did not change meanwhile). An object over
    /// `limit` bytes is refused ([`Error::TooLarge`]) before its body is read.
    pub fn get(&self, name: &str, limit: u64) -> Result<Vec<u8>> {
        let path = self.path_of(name);
        let store = self.inner.get();
        let result = runtime()
            .block_on(retrying(|| async {
                let got = store.get(&path).await?;
                if got.meta.size > limit {
                    return Ok(Err(got.meta.size));
                }
                let bytes = got.bytes().await?;
                traffic()
                    .bytes_read
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                Ok(Ok(bytes))
            }))
            .map_err(self.failed("read", Some(name)))?;
        traffic().reads.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(bytes) if bytes.len() as u64 <= limit => Ok(bytes.to_vec()),
            Ok(bytes) => Err(self.too_large(name, bytes.len() as u64, limit)),
            Err(size) => Err(self.too_large(name, size, limit)),
        }
    }

    fn too_large(&self, name: &str, size: u64, limit: u64) -> Error {
        Error::TooLarge {
            url: self.url_of(name),
            size,
            limit,
        }
    }

    /// Object `name` of `size` bytes as a [`RandomRead`] with read-ahead.
    pub fn reader(&self, name: &str, size: u64) -> RangedReader {
        RangedReader {
            shared: Arc::new(ReaderShared {
                store: self.inner.clone(),
                path: self.path_of(name),
                size,
                chunks: Mutex::new(Chunks::default()),
            }),
        }
    }

    /// Writes object `name` in one request (visible whole or not at all).
    pub fn put(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        let path = self.path_of(name);
        let store = self.inner.get();
        let payload = PutPayload::from(bytes);
        runtime()
            .block_on(retrying(|| store.put(&path, payload.clone())))
            .map(drop)
            .map_err(self.failed("write", Some(name)))
    }

    /// Uploads the local file `local` as object `name` by multipart upload: the object
    /// appears only when every part is in. A failed upload is aborted (its parts deleted)
    /// and started again, up to [`MAX_ATTEMPTS`] times.
    pub fn upload(&self, name: &str, local: &Path) -> Result<()> {
        let path = self.path_of(name);
        let mut attempt = 0;
        loop {
            match runtime().block_on(upload_once(&*self.inner.get(), &path, local)) {
                Ok(()) => {
                    traffic().uploads.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(UploadError::Local(source)) => {
                    return Err(Error::Local {
                        path: local.to_owned(),
                        source,
                    });
                }
                Err(UploadError::Store(e)) if retryable(&e) && attempt + 1 < MAX_ATTEMPTS => {
                    attempt += 1;
                    traffic().retries.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(backoff(attempt));
                }
                Err(UploadError::Store(e)) => return Err(self.failed("upload", Some(name))(e)),
            }
        }
    }

    /// Copies object `name` of `source` (a folder of the same store: a bucket's other prefix)
    /// to object `name` here, server-side; the copy replaces an object of that name.
    pub fn copy_from(&self, source: &Store, name: &str) -> Result<()> {
        let (from, to) = (source.path_of(name), self.path_of(name));
        let store = self.inner.get();
        runtime()
            .block_on(retrying(|| store.copy(&from, &to)))
            .map_err(self.failed("copy into", Some(name)))
    }

    /// Deletes object `name` (absent already: fine).
    pub fn delete(&self, name: &str) -> Result<()> {
        let path = self.path_of(name);
        let store = self.inner.get();
        match runtime().block_on(retrying(|| store.delete(&path))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.failed("delete", Some(name))(e)),
        }
    }
}

enum UploadError {
    Local(std::io::Error),
    Store(object_store::Error),
}

async fn upload_once(
    store: &dyn ObjectStore,
    path: &ObjectPath,
    local: &Path,
) -> Result<(), UploadError> {
    use std::io::Read;
    let mut file = std::fs::File::open(local).map_err(UploadError::Local)?;
    let upload = store
        .put_multipart(path)
        .await
        .map_err(UploadError::Store)?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
    let mut buffer = vec![0; PART_BYTES];
    loop {
        let n = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let _ = writer.abort().await;
                traffic().aborted.fetch_add(1, Ordering::Relaxed);
                return Err(UploadError::Local(e));
            }
        };
        if let Err(e) = writer.wait_for_capacity(4).await {
            let _ = writer.abort().await;
            traffic().aborted.fetch_add(1, Ordering::Relaxed);
            return Err(UploadError::Store(e));
        }
        writer.write(&buffer[..n]);
    }
    // `finish` aborts the upload itself when a part or the completion fails.
    writer.finish().await.map_err(|e| {
        traffic().aborted.fetch_add(1, Ordering::Relaxed);
        UploadError::Store(e)
    })?;
    Ok(())
}

/// Whether an error may go away on a retry (network, server, throttling, timeouts), as
/// opposed to a missing object, a refused credential or a bad request.
fn retryable(error: &object_store::Error) -> bool {
    use object_store::Error as E;
    !matches!(
        error,
        E::NotFound { .. }
            | E::InvalidPath { .. }
            | E::NotSupported { .. }
            | E::AlreadyExists { .. }
            | E::Precondition { .. }
            | E::NotModified { .. }
            | E::NotImplemented
            | E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::UnknownConfigurationKey { .. }
    )
}

/// `op` until it succeeds, fails for good, or [`MAX_ATTEMPTS`] attempts have failed.
async fn retrying<T, F, Fut>(mut op: F) -> object_store::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = object_store::Result<T>>,
{
    let mut attempt = 0;
    loop {
        match op().await {
            Err(e) if retryable(&e) && attempt + 1 < MAX_ATTEMPTS => {
                attempt += 1;
                traffic().retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff(attempt)).await;
            }
            result => return result,
        }
    }
}

/// 50 ms, doubling, at most 2 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((50u64 << attempt.min(6)).min(2000))
}

/// Bytes `range` of an object, streamed; a read that breaks is continued from the first byte
/// not yet received, up to [`MAX_ATTEMPTS`] times.
async fn read_range(
    store: &dyn ObjectStore,
    path: &ObjectPath,
    range: Range<u64>,
) -> object_store::Result<Vec<u8>> {
    let want = usize::try_from(range.end - range.start).unwrap_or(usize::MAX);
    let mut got: Vec<u8> = Vec::with_capacity(want);
    let mut attempt = 0;
    loop {
        let start = range.start + got.len() as u64;
        if start >= range.end {
            got.truncate(want);
            traffic().reads.fetch_add(1, Ordering::Relaxed);
            return Ok(got);
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(start..range.end)),
            ..GetOptions::default()
        };
        let error = match store.get_opts(path, options).await {
            Ok(result) => {
                let mut stream = result.into_stream();
                let mut error = None;
                while let Some(piece) = stream.next().await {
                    match piece {
                        Ok(bytes) => {
                            traffic()
                                .bytes_read
                                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                            got.extend_from_slice(&bytes);
                        }
                        Err(e) => {
                            error = Some(e);
                            break;
                        }
                    }
                }
                match error {
                    None if (got.len() as u64) < range.end - range.start => {
                        // The body ended early without an error: the object is shorter
                        // than the caller believes (or the connection closed cleanly).
                        object_store::Error::Generic {
                            store: "shardfeed",
                            source: format!(
                                "the response ended at byte {} of {}..{}",
                                range.start + got.len() as u64,
                                range.start,
                                range.end
                            )
                            .into(),
                        }
                    }
                    None => continue,
                    Some(e) => e,
                }
            }
            Err(e) => e,
        };
        if !retryable(&error) || attempt + 1 >= MAX_ATTEMPTS {
            return Err(error);
        }
        attempt += 1;
        traffic().retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(backoff(attempt)).await;
    }
}

/// An object read by offset through [`chunk_bytes`] range reads, [`READ_AHEAD_CHUNKS`]
/// ahead of the reader. A chunk is dropped once every byte of it has been read in this pass
/// (a pass reads each record once, in whatever order the shuffle asks), or when the reader is
/// two chunks past it or has reached the object's end (a rank reads only some records).
#[derive(Clone)]
pub struct RangedReader {
    shared: Arc<ReaderShared>,
}

struct ReaderShared {
    store: Arc<Client>,
    path: ObjectPath,
    size: u64,
    chunks: Mutex<Chunks>,
}

#[derive(Default)]
struct Chunks {
    /// The chunks held, by number.
    slots: BTreeMap<u64, Arc<Slot>>,
    /// The pass, and bytes of each chunk read in it (kept when the chunk is dropped, so that
    /// a straggler's read completes it). A chunk read whole is not read ahead again in its
    /// pass; a read of it starts a new pass.
    served: BTreeMap<u64, (u64, u64)>,
    /// Passes over the object begun, less one.
    pass: u64,
}

/// One chunk: being fetched, fetched, or failed.
struct Slot {
    state: Mutex<Option<Result<Bytes, String>>>,
    ready: Condvar,
    /// Counted in [`PREFETCHED`]: fetched ahead and not yet asked for.
    prefetched: std::sync::atomic::AtomicBool,
    bytes: u64,
}

impl Slot {
    /// A reader asks for it: it no longer counts against the read-ahead budget.
    fn claim(&self) {
        if self.prefetched.swap(false, Ordering::Relaxed) {
            PREFETCHED.fetch_sub(self.bytes, Ordering::Relaxed);
        }
    }

    fn failed(&self) -> bool {
        matches!(
            *self.state.lock().unwrap_or_else(|p| p.into_inner()),
            Some(Err(_))
        )
    }

    fn wait(&self) -> Result<Bytes, String> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(result) = state.as_ref() {
                return result.clone();
            }
            state = self.ready.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.claim();
        HELD.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Bytes of prefetched chunks held in the process, not yet asked for.
static PREFETCHED: AtomicU64 = AtomicU64::new(0);
/// Bytes of all chunks held (being fetched or fetched) in the process.
static HELD: AtomicU64 = AtomicU64::new(0);

/// Bytes of object chunks the process holds now: `(all, prefetched and not yet read)`.
/// A reader holds at most the chunk being read, the one before it and [`READ_AHEAD_CHUNKS`]
/// ahead; a reader that reached the end of its object holds none.
pub fn held_chunk_bytes() -> (u64, u64) {
    (
        HELD.load(Ordering::Relaxed),
        PREFETCHED.load(Ordering::Relaxed),
    )
}

impl ReaderShared {
    fn chunk_range(&self, chunk: u64) -> Range<u64> {
        let start = chunk * chunk_bytes();
        start..(start + chunk_bytes()).min(self.size)
    }

    /// The slot of `chunk`, its fetch started if it was not; `None` for a prefetch over
    /// budget or past the end.
    fn slot(self: &Arc<Self>, chunk: u64, prefetch: bool) -> Option<Arc<Slot>> {
        let range = self.chunk_range(chunk);
        if range.start >= self.size {
            return None;
        }
        let bytes = range.end - range.start;
        let mut chunks = self.chunks.lock().unwrap_or_else(|p| p.into_inner());
        let pass = chunks.pass;
        let read_whole = chunks
            .served
            .get(&chunk)
            .is_some_and(|&(at, n)| at == pass && n >= bytes);
        if prefetch && read_whole {
            return None;
        }
        if read_whole {
            // Read whole in this pass, and asked for again: a new pass.
            chunks.pass += 1;
        }
        match chunks.slots.get(&chunk) {
            // A chunk that failed (after its retries) is fetched again when next asked for:
            // an outage that has ended does not fail every later read.
            Some(slot) if slot.failed() => {
                chunks.slots.remove(&chunk);
            }
            Some(slot) => return Some(slot.clone()),
            None => {}
        }
        if prefetch {
            let held = PREFETCHED.fetch_add(bytes, Ordering::Relaxed);
            if held + bytes > PREFETCH_BUDGET_BYTES {
                PREFETCHED.fetch_sub(bytes, Ordering::Relaxed);
                return None;
            }
        }
        HELD.fetch_add(bytes, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            state: Mutex::new(None),
            ready: Condvar::new(),
            prefetched: std::sync::atomic::AtomicBool::new(prefetch),
            bytes,
        });
        chunks.slots.insert(chunk, slot.clone());
        let (store, path, filling) = (self.store.get(), self.path.clone(), slot.clone());
        runtime().spawn(async move {
            let result = read_range(&*store, &path, range)
                .await
                .map(Bytes::from)
                .map_err(|e| e.to_string());
            *filling.state.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
            filling.ready.notify_all();
        });
        Some(slot)
    }

    /// Drops the chunks before `chunk` (the reader has moved past them).
    fn drop_before(&self, chunk: u64) {
        let mut chunks = self.chunks.lock().unwrap_or_else(|p| p.into_inner());
        let keep = chunks.slots.split_off(&chunk);
        chunks.slots = keep;
    }

    /// Counts `n` bytes of `chunk` read; drops it when every byte of it has been.
    fn served(&self, chunk: u64, n: u64) {
        let bytes = {
            let range = self.chunk_range(chunk);
            range.end - range.start
        };
        let mut chunks = self.chunks.lock().unwrap_or_else(|p| p.into_inner());
        let pass = chunks.pass;
        let served = chunks.served.entry(chunk).or_insert((pass, 0));
        if served.0 != pass {
            *served = (pass, 0);
        }
        served.1 += n;
        if served.1 >= bytes {
            chunks.slots.remove(&chunk);
        }
    }

    /// Drops every chunk: the reader reached the end of the object (a read under way keeps
    /// its own hold on the chunk it reads).
    fn drop_all(&self) {
        self.chunks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .slots
            .clear();
    }
}

impl RandomRead for RangedReader {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let shared = &self.shared;
        let end = (offset + buf.len() as u64).min(shared.size);
        if offset >= end {
            return Ok(0);
        }
        let chunk_bytes = chunk_bytes();
        let first = offset / chunk_bytes;
        let mut at = offset;
        while at < end {
            let chunk = at / chunk_bytes;
            let slot = shared
                .slot(chunk, false)
                .expect("a chunk inside the object");
            slot.claim();
            for ahead in 1..=READ_AHEAD_CHUNKS {
                shared.slot(chunk + ahead, true);
            }
            let data = slot.wait().map_err(std::io::Error::other)?;
            let chunk_start = chunk * chunk_bytes;
            let from = (at - chunk_start) as usize;
            let to = ((end - chunk_start) as usize).min(data.len());
            if from >= to {
                return Err(std::io::Error::other(format!(
                    "chunk {chunk} holds {} bytes, fewer than expected",
                    data.len()
                )));
            }
            let n = to - from;
            let into = (at - offset) as usize;
            buf[into..into + n].copy_from_slice(&data[from..to]);
            at += n as u64;
            shared.served(chunk, n as u64);
        }
        // Readers move forward through a file (interleave, then shuffle within a window):
        // the chunk before the first one read may still serve a straggling worker.
        if end == shared.size {
            shared.drop_all();
        } else {
            shared.drop_before(first.saturating_sub(1));
        }
        Ok((end - offset) as usize)
    }

    fn size(&self) -> std::io::Result<u64> {
        Ok(self.shared.size)
    }
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
    fn a_bad_url_is_refused_naming_it() {
        let error = Store::open("s3://").unwrap_err().to_string();
        assert!(error.starts_with("s3://"), "{error}");
    }

    fn reader_over(store: Arc<dyn ObjectStore>, name: &str, size: u64) -> RangedReader {
        let again = store.clone();
        let client = Client {
            made: Mutex::new((std::process::id(), store)),
            make: Box::new(move || Ok(again.clone())),
        };
        RangedReader {
            shared: Arc::new(ReaderShared {
                store: Arc::new(client),
                path: ObjectPath::from(name),
                size,
                chunks: Mutex::new(Chunks::default()),
            }),
        }
    }

    /// A chunk whose read failed is fetched again by the next read: an outage that ended
    /// (here: an object that was missing, then written) does not fail every later read.
    #[test]
    fn a_failed_chunk_is_fetched_again_by_the_next_read() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let reader = reader_over(store.clone(), "x", 10);
        let mut buf = [0u8; 4];
        assert!(
            reader.read_at(&mut buf, 0).is_err(),
            "the object is missing"
        );
        runtime()
            .block_on(store.put(
                &ObjectPath::from("x"),
                PutPayload::from(b"0123456789".to_vec()),
            ))
            .unwrap();
        assert_eq!(reader.read_at(&mut buf, 0).unwrap(), 4);
        assert_eq!(&buf, b"0123");
    }

    /// Every byte read once (in any order): no chunk is held afterwards, none counts against
    /// the read-ahead budget; a new pass reads ahead again.
    #[test]
    fn chunks_read_whole_are_dropped() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let size = 3 * chunk_bytes() + 100;
        let data: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        runtime()
            .block_on(store.put(&ObjectPath::from("y"), PutPayload::from(data.clone())))
            .unwrap();
        let reader = reader_over(store, "y", size);
        let piece = chunk_bytes() / 2 + 1;
        let mut offsets: Vec<u64> = (0..size).step_by(piece as usize).collect();
        offsets.swap(0, 3);
        offsets.reverse();
        for pass in 0..2 {
            for &offset in &offsets {
                let mut buf = vec![0u8; piece.min(size - offset) as usize];
                reader.read_at(&mut buf, offset).unwrap();
                assert_eq!(buf, data[offset as usize..offset as usize + buf.len()]);
            }
            let chunks = reader.shared.chunks.lock().unwrap();
            assert!(
                chunks.slots.is_empty(),
                "pass {pass}: chunks {:?} held",
                chunks.slots.keys()
            );
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

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert!(backoff(3) > backoff(2));
        assert_eq!(backoff(30), Duration::from_millis(2000));
    }
}
