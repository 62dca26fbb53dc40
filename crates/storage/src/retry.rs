//! The one retry policy: what may go away on a retry, backoff, and the range read continued
//! from the first byte not received.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore};

use crate::{MAX_ATTEMPTS, traffic};

/// Whether an error may go away on a retry (network, server, throttling, timeouts), as
/// opposed to a missing object, a refused credential or a bad request.
pub(crate) fn retryable(error: &object_store::Error) -> bool {
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
pub(crate) async fn retrying<T, F, Fut>(mut op: F) -> object_store::Result<T>
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
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((50u64 << attempt.min(6)).min(2000))
}

/// Bytes `range` of an object, streamed; a read that breaks is continued from the first byte
/// not yet received, up to [`MAX_ATTEMPTS`] times.
pub(crate) async fn read_range(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert!(backoff(3) > backoff(2));
        assert_eq!(backoff(30), Duration::from_millis(2000));
    }
}
