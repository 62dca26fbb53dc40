//! Path arguments: local paths (`file://` too) and object-storage URLs, classified once,
//! at the edge, into a [`Location`] (or, where only a local path will do, a `PathBuf`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use shardfeed_storage::Store;

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

/// Where a command reads or writes: a local path, or an object-storage URL (`s3://`,
/// `gs://`, `az://`/`abfs(s)://`, `http(s)://`) with the store it opens, the store opened
/// at most once and shared by the value's clones. Parsed once, at the edge (the CLI's flags,
/// the Python package's arguments: [`Location::parse`]); everything below asks it, not the
/// text, whether it is local. Errors and reports name it as the user wrote it.
///
/// ```
/// use std::path::Path;
/// use shardfeed_dataset::folder::Location;
///
/// let remote = Location::parse("s3://bucket/x".as_ref()).unwrap();
/// assert_eq!((remote.path(), remote.as_local()), (Path::new("s3://bucket/x"), None));
/// assert_eq!(remote.join("data00-3.tfrec").to_string(), "s3://bucket/x/data00-3.tfrec");
/// let local = Location::parse("file:///data/x".as_ref()).unwrap();
/// assert_eq!(local.as_local(), Some(Path::new("/data/x")));
/// assert!(Location::parse("ftp://host/x".as_ref()).unwrap_err().to_string().contains("not supported"));
/// // Credentials belong in the environment: refused, and not echoed.
/// let error = Location::parse("https://me:s3cr3t@host/x".as_ref()).unwrap_err().to_string();
/// assert!(error.starts_with("https://***@host/x: credentials in a URL") && !error.contains("s3cr3t"));
/// ```
#[derive(Debug, Clone)]
pub struct Location {
    /// As written (a URL without its trailing `/`).
    path: PathBuf,
    place: Place,
}

#[derive(Debug, Clone)]
enum Place {
    Local,
    /// The store, once opened.
    Remote(Arc<OnceLock<Store>>),
}

impl Location {
    /// A path argument where object storage is supported: a local path (`file://PATH`
    /// too), or a URL of a supported scheme; another scheme, or a URL carrying
    /// credentials, is refused with [`Error::UnsupportedUrl`].
    pub fn parse(text: &std::ffi::OsStr) -> Result<Location> {
        match classify(text) {
            Classified::Path(path) => Ok(Location::local(path)),
            Classified::Url(url) if shardfeed_storage::carries_secret(&url) => {
                Err(Error::UnsupportedUrl {
                    url: shardfeed_storage::redact(&url),
                    reason: shardfeed_storage::SECRET_IN_URL.to_owned(),
                })
            }
            Classified::Url(url) if shardfeed_storage::is_remote_url(&url) => {
                Ok(Location::remote(url.trim_end_matches('/')))
            }
            Classified::Url(url) => Err(Error::UnsupportedUrl {
                reason: format!(
                    "the scheme {}:// is not supported (s3://, gs://, az://, abfs://, http(s):// and file:// are)",
                    url.split("://").next().unwrap_or_default()
                ),
                url: shardfeed_storage::redact(&url),
            }),
        }
    }

    /// A local path, taken as it is (never a URL).
    pub fn local(path: impl Into<PathBuf>) -> Location {
        Location {
            path: path.into(),
            place: Place::Local,
        }
    }

    fn remote(url: &str) -> Location {
        Location {
            path: PathBuf::from(url),
            place: Place::Remote(Arc::default()),
        }
    }

    /// The location of a path as earlier code carries it: a URL held in a `PathBuf` (from
    /// a listing of this module) is remote, anything else local.
    pub(crate) fn of_path(path: &Path) -> Location {
        match path.to_str() {
            Some(url) if shardfeed_storage::is_remote_url(url) => {
                Location::remote(url.trim_end_matches('/'))
            }
            _ => Location::local(path),
        }
    }

    /// As written: the path, or the URL in a `PathBuf` (how errors and reports name it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// For printing: [`Path::display`] of [`Location::path`].
    pub fn display(&self) -> std::path::Display<'_> {
        self.path.display()
    }

    /// The local path, or `None` for object storage.
    pub fn as_local(&self) -> Option<&Path> {
        match self.place {
            Place::Local => Some(&self.path),
            Place::Remote(_) => None,
        }
    }

    /// Whether it is in object storage.
    pub fn is_remote(&self) -> bool {
        matches!(self.place, Place::Remote(_))
    }

    /// The same place, a local path made absolute (symbolic links resolved) where it
    /// exists: how a run records its folder, valid from any working directory.
    pub fn absolute(&self) -> Location {
        match self.place {
            Place::Local => {
                std::fs::canonicalize(&self.path).map_or_else(|_| self.clone(), Location::local)
            }
            Place::Remote(_) => self.clone(),
        }
    }

    /// `name` inside it (a file of a folder, or a folder below it).
    pub fn join(&self, name: impl AsRef<str>) -> Location {
        let name = name.as_ref();
        match self.place {
            Place::Local => Location::local(self.path.join(name)),
            Place::Remote(_) => Location::remote(&format!("{}/{name}", self.url())),
        }
    }

    /// The folder it is in (`.` for a bare local file name), and its own name; `None` for
    /// a bucket or a root.
    pub fn parent(&self) -> Option<(Location, String)> {
        match self.place {
            Place::Local => {
                let name = self.path.file_name()?.to_string_lossy().into_owned();
                let dir = match self.path.parent() {
                    Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
                    _ => PathBuf::from("."),
                };
                Some((Location::local(dir), name))
            }
            Place::Remote(_) => {
                let (folder, name) = self.url().rsplit_once('/')?;
                let real = !name.is_empty()
                    && !folder.ends_with(':')
                    && !folder.ends_with("//")
                    && folder.contains("://");
                real.then(|| (Location::remote(folder), name.to_owned()))
            }
        }
    }

    /// Its store (object storage), opened on first use and kept; `None` for a local path.
    pub fn store(&self) -> Result<Option<Store>> {
        match &self.place {
            Place::Local => Ok(None),
            Place::Remote(cell) => {
                if let Some(store) = cell.get() {
                    return Ok(Some(store.clone()));
                }
                let store = Store::open(self.url())?;
                Ok(Some(cell.get_or_init(|| store).clone()))
            }
        }
    }

    fn url(&self) -> &str {
        self.path.to_str().unwrap_or_default()
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.path.display().fmt(f)
    }
}

impl PartialEq for Location {
    fn eq(&self, other: &Location) -> bool {
        self.path == other.path && self.is_remote() == other.is_remote()
    }
}

impl std::str::FromStr for Location {
    type Err = Error;
    fn from_str(text: &str) -> Result<Location> {
        Location::parse(text.as_ref())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Location {
        Location::parse(text.as_ref()).unwrap()
    }

    #[test]
    fn a_file_names_its_folder_and_itself_locally_and_in_object_storage() {
        let (dir, name) = parse("s3://b/x/data00-3.tfrec").parent().unwrap();
        assert_eq!(
            (dir.to_string().as_str(), name.as_str()),
            ("s3://b/x", "data00-3.tfrec")
        );
        assert!(dir.is_remote());
        assert!(
            parse("s3://b").parent().is_none(),
            "a bucket is in no folder"
        );
        let (dir, name) = parse("data00-3.tfrec").parent().unwrap();
        assert_eq!(
            (dir.as_local(), name.as_str()),
            (Some(Path::new(".")), "data00-3.tfrec")
        );
        let (dir, _) = parse("/d/shards/a.tfrec").parent().unwrap();
        assert_eq!(dir, Location::local("/d/shards"));
        assert_ne!(
            parse("s3://b/x"),
            Location::local("s3://b/x"),
            "the place, not the text"
        );
        assert_eq!(parse("s3://b/x/").join("y").to_string(), "s3://b/x/y");
    }

    #[test]
    fn a_local_place_opens_no_store_and_a_relative_one_becomes_absolute() {
        let here = parse(".");
        assert!(here.store().unwrap().is_none());
        let absolute = here.absolute();
        assert!(absolute.as_local().unwrap().is_absolute());
        assert_eq!(
            parse("./no/such/folder").absolute(),
            parse("./no/such/folder")
        );
    }
}
