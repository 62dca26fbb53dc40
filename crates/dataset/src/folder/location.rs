//! Path arguments: local paths (`file://` too) and object-storage URLs, classified once.

use std::path::PathBuf;

use crate::{Error, Result};

/// A path argument as a local path: `file://PATH` becomes `PATH`; any other URL (`s3://`,
/// `gs://`, `az://`, `http(s)://`, …) is refused with [`Error::UnsupportedUrl`] rather than
/// taken for a folder named `s3:`.
///
/// ```
/// use std::path::PathBuf;
/// use shardfeed_dataset::folder::local_path;
///
/// assert_eq!(local_path("shards".as_ref()).unwrap(), PathBuf::from("shards"));
/// assert_eq!(local_path("file:///data/x".as_ref()).unwrap(), PathBuf::from("/data/x"));
/// assert!(local_path("s3://bucket/x".as_ref()).unwrap_err().to_string().contains("s3://bucket/x"));
/// assert_eq!(local_path("./s3:/x".as_ref()).unwrap(), PathBuf::from("./s3:/x"));
/// ```
pub fn local_path(text: &std::ffi::OsStr) -> Result<PathBuf> {
    match classify(text) {
        Classified::Path(path) => Ok(path),
        Classified::Url(url) => Err(Error::UnsupportedUrl {
            url: shardfeed_storage::redact(&url),
            reason: "a local path is needed here (object storage URLs are taken where shards or source images are read or written)".to_owned(),
        }),
    }
}

/// A path argument where object storage is supported: a local path (`file://PATH` too), or
/// an `s3://`, `gs://`, `az://`/`abfs(s)://` or `http(s)://` URL, kept as written in the
/// `PathBuf` (see [`crate::remote`]); another scheme is refused.
///
/// ```
/// use std::path::PathBuf;
/// use shardfeed_dataset::folder::location;
///
/// assert_eq!(location("s3://bucket/x".as_ref()).unwrap(), PathBuf::from("s3://bucket/x"));
/// assert_eq!(location("file:///data/x".as_ref()).unwrap(), PathBuf::from("/data/x"));
/// assert!(location("ftp://host/x".as_ref()).unwrap_err().to_string().contains("not supported"));
/// // Credentials belong in the environment: refused, and not echoed.
/// let error = location("https://me:s3cr3t@host/x".as_ref()).unwrap_err().to_string();
/// assert!(error.starts_with("https://***@host/x: credentials in a URL") && !error.contains("s3cr3t"));
/// ```
pub fn location(text: &std::ffi::OsStr) -> Result<PathBuf> {
    match classify(text) {
        Classified::Path(path) => Ok(path),
        Classified::Url(url) if shardfeed_storage::carries_secret(&url) => {
            Err(Error::UnsupportedUrl {
                url: shardfeed_storage::redact(&url),
                reason: shardfeed_storage::SECRET_IN_URL.to_owned(),
            })
        }
        Classified::Url(url) if shardfeed_storage::is_remote_url(&url) => Ok(PathBuf::from(url)),
        Classified::Url(url) => Err(Error::UnsupportedUrl {
            reason: format!(
                "the scheme {}:// is not supported (s3://, gs://, az://, abfs://, http(s):// and file:// are)",
                url.split("://").next().unwrap_or_default()
            ),
            url: shardfeed_storage::redact(&url),
        }),
    }
}

enum Classified {
    Path(PathBuf),
    Url(String),
}

fn classify(text: &std::ffi::OsStr) -> Classified {
    let Some(utf8) = text.to_str() else {
        return Classified::Path(PathBuf::from(text));
    };
    let Some((scheme, rest)) = utf8.split_once("://") else {
        return Classified::Path(PathBuf::from(text));
    };
    let is_scheme = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !is_scheme {
        return Classified::Path(PathBuf::from(text));
    }
    if scheme.eq_ignore_ascii_case("file") {
        // file:///abs/path (empty host) or file://localhost/abs/path.
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        if path.starts_with('/') {
            return Classified::Path(PathBuf::from(path));
        }
    }
    Classified::Url(utf8.to_owned())
}
