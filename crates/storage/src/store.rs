//! `Store`: a folder in object storage, opened from a URL (credentials from the environment),
//! with blocking list, size, get (capped), put, multipart upload, copy and delete.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreScheme, PutPayload, RetryConfig, WriteMultipart,
};

use crate::ranged::RangedReader;
use crate::retry::{backoff, retryable, retrying};
use crate::runtime::{Client, runtime};
use crate::{
    Error, MAX_ATTEMPTS, PART_BYTES, Result, SECRET_IN_URL, carries_secret, redact, traffic,
};

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
        traffic().listings.fetch_add(1, Ordering::Relaxed);
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

    /// Every object under the folder, at any depth, by name relative to it (`cat/1.jpg`),
    /// sorted: a source tree labelled by its folders. One listing (paged by the store).
    pub fn list_all(&self) -> Result<Vec<Object>> {
        use futures::TryStreamExt;
        traffic().listings.fetch_add(1, Ordering::Relaxed);
        let store = self.inner.get();
        let prefix = self.prefix.clone();
        let metas = runtime()
            .block_on(retrying(|| {
                let (store, prefix) = (store.clone(), prefix.clone());
                async move { store.list(Some(&prefix)).try_collect::<Vec<_>>().await }
            }))
            .map_err(self.failed("list", None))?;
        let mut objects: Vec<Object> = metas
            .into_iter()
            .filter_map(|meta| {
                let parts: Vec<String> = meta
                    .location
                    .prefix_match(&self.prefix)?
                    .map(|part| part.as_ref().to_owned())
                    .collect();
                (!parts.is_empty()).then(|| Object {
                    name: parts.join("/"),
                    size: meta.size,
                })
            })
            .collect();
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(objects)
    }

    /// The size of object `name`.
    pub fn size(&self, name: &str) -> Result<u64> {
        traffic().heads.fetch_add(1, Ordering::Relaxed);
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
        traffic().gets.fetch_add(1, Ordering::Relaxed);
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
        RangedReader::new(self.inner.clone(), self.path_of(name), size)
    }

    /// Writes object `name` in one request (visible whole or not at all).
    pub fn put(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        traffic().puts.fetch_add(1, Ordering::Relaxed);
        let path = self.path_of(name);
        let store = self.inner.get();
        let payload = PutPayload::from(bytes);
        runtime()
            .block_on(retrying(|| store.put(&path, payload.clone())))
            .map(drop)
            .map_err(self.failed("write", Some(name)))
    }

    /// Writes object `name` only where none of that name exists (a conditional put:
    /// `If-None-Match: *` on S3); `false` where one does. Retried like every request: a
    /// retry may find the object its own first try made, so a caller that must know writes
    /// bytes of its own and compares.
    pub fn put_new(&self, name: &str, bytes: Vec<u8>) -> Result<bool> {
        let path = self.path_of(name);
        let store = self.inner.get();
        let payload = PutPayload::from(bytes);
        traffic().puts.fetch_add(1, Ordering::Relaxed);
        let put = || {
            let options = object_store::PutOptions::from(object_store::PutMode::Create);
            store.put_opts(&path, payload.clone(), options)
        };
        match runtime().block_on(retrying(put)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(self.failed("write", Some(name))(e)),
        }
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
                // `NotFound` here is the upload's own id gone (`NoSuchUpload`): its completion
                // answer was lost, so `finish` aborted an upload the server had already
                // completed or dropped. Whole objects are rewritten whole: upload again.
                Err(UploadError::Store(e))
                    if (retryable(&e) || matches!(e, object_store::Error::NotFound { .. }))
                        && attempt + 1 < MAX_ATTEMPTS =>
                {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_refused_naming_it() {
        let error = Store::open("s3://").unwrap_err().to_string();
        assert!(error.starts_with("s3://"), "{error}");
    }
}
