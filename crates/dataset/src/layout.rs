//! The shard folder, one format with one owner: files named `PREFIX{NN}-{COUNT}.tfrec`
//! ([`shard_file_name`]), a `.idx` beside each ([`Index::path_for`]), and `manifest.json`
//! ([`Manifest`]), written by [`crate::shard()`] and read by everything that reads a folder.
//!
//! ```
//! use shardfeed_dataset::{Manifest, ShardInfo, find_shards, shard_file_name};
//!
//! let dir = tempfile::tempdir()?;
//! let manifest = Manifest {
//!     classes: vec!["cat".into(), "dog".into()],
//!     shards: vec![ShardInfo { file: shard_file_name("data", 0, 2), records: 2, per_class: vec![1, 1], bytes: 0 }],
//!     ..Manifest::default()
//! };
//! manifest.write(dir.path())?;
//! assert_eq!(Manifest::read_folder(dir.path())?, Some(manifest));
//! assert!(find_shards(dir.path())?.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
pub use shardfeed_record_format::{Index, count_in_name, provisional_shard_name, shard_file_name};

use crate::{Error, Result};

/// The manifest's file name in a shard folder.
pub const MANIFEST_FILE: &str = "manifest.json";

/// A file left out of the shards, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Skipped {
    /// The file.
    pub file: PathBuf,
    /// Why.
    pub reason: String,
}

/// One shard listed in a manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShardInfo {
    /// Its file name (no folder).
    pub file: String,
    /// Its records.
    pub records: u64,
    /// Records per class, in class order.
    #[serde(default)]
    pub per_class: Vec<u64>,
    /// Its size in bytes.
    #[serde(default)]
    pub bytes: u64,
}

/// `manifest.json`: what a shard run wrote and how. Written by [`crate::shard()`]; read
/// back by every reader of the folder (only `classes` is required of manifests other tools
/// wrote; the rest defaults).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Manifest {
    /// The tool that wrote it.
    #[serde(default)]
    pub tool: String,
    /// Class names; a record's `class` is an index into this list.
    pub classes: Vec<String>,
    /// The shards, in order.
    #[serde(default)]
    pub shards: Vec<ShardInfo>,
    /// Records in all shards.
    #[serde(default)]
    pub records: u64,
    /// Records per class, in class order.
    #[serde(default)]
    pub per_class: Vec<u64>,
    /// Target square size.
    #[serde(default)]
    pub target_size: u32,
    /// JPEG quality of the records.
    #[serde(default)]
    pub quality: u8,
    /// The seed of the file order.
    #[serde(default)]
    pub seed: u64,
    /// `none`, `gzip` or `zlib`.
    #[serde(default = "no_compression")]
    pub compression: String,
    /// Whether DCT-domain scaling was used (pixels then differ from TensorFlow's).
    #[serde(default)]
    pub fast_decode: bool,
    /// `.jpg`/`.jpeg` files found.
    #[serde(default)]
    pub source_count: u64,
    /// Other files in the folder, not read.
    #[serde(default)]
    pub ignored_non_jpeg: u64,
    /// Files left out, with reasons.
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    /// Bytes of the sources read.
    #[serde(default)]
    pub bytes_in: u64,
    /// Bytes of the shards written.
    #[serde(default)]
    pub bytes_out: u64,
    /// Wall time of the run.
    #[serde(default)]
    pub seconds: f64,
}

fn no_compression() -> String {
    "none".to_owned()
}

impl Manifest {
    /// Parses a manifest; `file` names it in errors. At least two distinct, non-empty class
    /// names are required.
    pub fn parse(text: &[u8], file: &Path) -> Result<Self> {
        let bad = |message: String| Error::BadDescription {
            file: file.to_owned(),
            message,
        };
        let manifest: Manifest = serde_json::from_slice(text).map_err(|e| bad(e.to_string()))?;
        if manifest.classes.len() < 2 {
            return Err(bad(format!(
                "{} classes listed: at least 2 are needed",
                manifest.classes.len()
            )));
        }
        let mut seen = std::collections::HashSet::with_capacity(manifest.classes.len());
        for (i, name) in manifest.classes.iter().enumerate() {
            if name.is_empty() {
                return Err(bad(format!("class {i} has an empty name")));
            }
            if !seen.insert(name.as_str()) {
                return Err(bad(format!("class {name:?} is listed twice")));
            }
        }
        Ok(manifest)
    }

    /// Reads and parses the manifest at `path` (at most
    /// [`MAX_DESCRIPTION_BYTES`](crate::limits::MAX_DESCRIPTION_BYTES)).
    pub fn read(path: &Path) -> Result<Self> {
        match Manifest::read_if_exists(path)? {
            Some(manifest) => Ok(manifest),
            None => Err(Error::io("read", path)(std::io::ErrorKind::NotFound.into())),
        }
    }

    fn read_if_exists(path: &Path) -> Result<Option<Self>> {
        let limit = crate::limits::MAX_DESCRIPTION_BYTES;
        match crate::remote::read_bounded(path, limit) {
            Ok(Some(text)) => Manifest::parse(&text, path).map(Some),
            Ok(None) => Ok(None),
            Err(message) => Err(Error::BadDescription {
                file: path.to_owned(),
                message,
            }),
        }
    }

    /// The manifest of the shard folder `dir`, if it has one.
    pub fn read_folder(dir: &Path) -> Result<Option<Self>> {
        Manifest::read_if_exists(&dir.join(MANIFEST_FILE))
    }

    /// Writes `dir/manifest.json` atomically (pretty JSON and a newline).
    pub fn write(&self, dir: &Path) -> Result<()> {
        shardfeed_record_format::atomic::write_atomic(&dir.join(MANIFEST_FILE), &self.to_json())?;
        Ok(())
    }

    /// The manifest as written: pretty JSON and a newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut text = serde_json::to_string_pretty(self).expect("a manifest serialises");
        text.push('\n');
        text.into_bytes()
    }

    /// The record count the manifest gives for shard file `name`.
    pub fn records_of(&self, name: &str) -> Option<u64> {
        self.shards
            .iter()
            .find(|s| s.file == name)
            .map(|s| s.records)
    }
}

/// The `.tfrec` files of the shard folder `dir`, sorted by name (the one discovery of
/// shards: every reader of a folder uses it).
pub fn find_shards(dir: &Path) -> Result<Vec<PathBuf>> {
    if crate::remote::is_remote(dir) {
        return crate::remote::find_shards(dir);
    }
    Ok(shardfeed_input_pipeline::tfrecord::TfRecordSource::find(
        dir,
    )?)
}

/// The `.tfrec` files of the shard folder `dir` ([`find_shards`]), checked against its
/// `manifest.json` when it has one: a shard the manifest lists and the folder lacks (a
/// half-finished copy), a shard the folder holds and the manifest does not list (a stray
/// file, another run's), or a size that differs is an [`Error::FolderMismatch`] naming the
/// file. `ignore_manifest` reads the files as they are; a folder without a manifest (written
/// by TensorFlow, or a split run not merged yet) is read as it is.
pub fn checked_shards(dir: &Path, ignore_manifest: bool) -> Result<Vec<PathBuf>> {
    let files = find_shards(dir)?;
    if ignore_manifest {
        return Ok(files);
    }
    let Some(manifest) = Manifest::read_folder(dir)? else {
        return Ok(files);
    };
    let mismatch = |message: String| Error::FolderMismatch {
        folder: dir.to_owned(),
        message,
    };
    let name_of = |path: &Path| {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let present: std::collections::HashMap<String, &PathBuf> =
        files.iter().map(|path| (name_of(path), path)).collect();
    let listed: std::collections::HashSet<&str> =
        manifest.shards.iter().map(|s| s.file.as_str()).collect();
    for shard in &manifest.shards {
        let Some(path) = present.get(&shard.file) else {
            return Err(mismatch(format!(
                "{} is listed in manifest.json but not in the folder",
                shard.file
            )));
        };
        let size = if crate::remote::is_remote(path) {
            crate::remote::size(path)?
        } else {
            std::fs::metadata(path)
                .map_err(Error::io("read", path.as_path()))?
                .len()
        };
        if shard.bytes != 0 && size != shard.bytes {
            return Err(mismatch(format!(
                "{} has {size} bytes, manifest.json says {}",
                shard.file, shard.bytes
            )));
        }
    }
    if let Some(stray) = files
        .iter()
        .find(|path| !listed.contains(name_of(path).as_str()))
    {
        return Err(mismatch(format!(
            "{} is not listed in manifest.json",
            name_of(stray)
        )));
    }
    Ok(files)
}

/// What a reader should hear about the shard folder `dir` before reading it: temporary files
/// a shard run left behind (it was killed), and shards without a `manifest.json` (a run that
/// did not finish, or shards another tool wrote: class names then come from the records).
pub fn folder_warnings(dir: &Path) -> Vec<String> {
    let names: Vec<String> = if crate::remote::is_remote(dir) {
        match crate::remote::list(dir) {
            Ok(objects) => objects.into_iter().map(|o| o.name).collect(),
            Err(_) => return Vec::new(),
        }
    } else {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect()
    };
    let mut warnings = Vec::new();
    let temporary: Vec<&String> = names.iter().filter(|n| n.ends_with(".tmp")).collect();
    if let Some(first) = temporary.first() {
        warnings.push(format!(
            "{} holds {} temporary file(s) ({first}, …): a shard run there was killed before it finished; its shards may be incomplete",
            dir.display(),
            temporary.len()
        ));
    }
    let shards = names
        .iter()
        .any(|n| n.ends_with(".tfrec") && !n.starts_with('.'));
    let parts = names.iter().any(|n| crate::workers::is_part_file(n));
    if shards && parts && !names.iter().any(|n| n == MANIFEST_FILE) {
        warnings.push(format!(
            "{} holds the parts of a distributed shard run but no {MANIFEST_FILE}: the parts are not merged yet, or a worker has not finished",
            dir.display()
        ));
    } else if shards && !names.iter().any(|n| n == MANIFEST_FILE) {
        warnings.push(format!(
            "{} has shards but no {MANIFEST_FILE}: written by another tool, or by a shard run that did not finish",
            dir.display()
        ));
    }
    warnings
}

/// Whether `name` is a file the shard step writes into a folder (shards, their indexes,
/// the manifest, and temporary files).
pub fn is_dataset_file(name: &str) -> bool {
    name.ends_with(".tfrec")
        || name.ends_with(".tfrec.idx")
        || name == MANIFEST_FILE
        || crate::workers::is_part_file(name)
        || name.ends_with(".tmp")
}

/// A path argument as a local path: `file://PATH` becomes `PATH`; any other URL (`s3://`,
/// `gs://`, `az://`, `http(s)://`, …) is refused with [`Error::UnsupportedUrl`] rather than
/// taken for a folder named `s3:`.
///
/// ```
/// use std::path::PathBuf;
/// use shardfeed_dataset::layout::local_path;
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
/// use shardfeed_dataset::layout::location;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_manifest_reads_back_equal() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = Manifest {
            tool: "shardfeed 0.1.0".into(),
            classes: vec!["cat".into(), "dog".into(), "bird".into()],
            shards: vec![
                ShardInfo {
                    file: shard_file_name("x", 0, 3),
                    records: 3,
                    per_class: vec![1, 1, 1],
                    bytes: 900,
                },
                ShardInfo {
                    file: shard_file_name("x", 1, 1),
                    records: 1,
                    per_class: vec![0, 1, 0],
                    bytes: 300,
                },
            ],
            records: 4,
            per_class: vec![1, 2, 1],
            target_size: 64,
            quality: 90,
            seed: 7,
            compression: "gzip".into(),
            fast_decode: true,
            source_count: 6,
            ignored_non_jpeg: 2,
            skipped: vec![Skipped {
                file: "a/b.jpg".into(),
                reason: "no label".into(),
            }],
            bytes_in: 5000,
            bytes_out: 1200,
            seconds: 1.25,
        };
        manifest.write(dir.path()).unwrap();
        let back = Manifest::read_folder(dir.path()).unwrap().unwrap();
        assert_eq!(back, manifest);
        assert_eq!(back.records_of("x01-1.tfrec"), Some(1));
        assert_eq!(back.records_of("x02-1.tfrec"), None);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["manifest.json"]);
    }

    /// The duplicate check is one pass with a set: a million names (quadratic, half a
    /// trillion comparisons) parse at once, and a duplicate at the end is found.
    #[test]
    fn a_million_class_names_are_checked_in_one_pass() {
        let mut names: Vec<String> = (0..1_000_000).map(|i| format!("c{i}")).collect();
        let text = |names: &[String]| {
            serde_json::to_vec(&serde_json::json!({ "classes": names })).unwrap()
        };
        let file = Path::new("manifest.json");
        assert_eq!(
            Manifest::parse(&text(&names), file).unwrap().classes.len(),
            1_000_000
        );
        names.push("c999999".into());
        let error = Manifest::parse(&text(&names), file)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(r#"class "c999999" is listed twice"#),
            "{error}"
        );
    }

    #[test]
    fn a_manifest_is_checked_and_names_its_file() {
        let file = Path::new("dir/manifest.json");
        let parse = |text: &str| Manifest::parse(text.as_bytes(), file);
        let ok = parse(r#"{"tool": "x", "classes": ["a", "b"], "shards": [{"file": "d00-1.tfrec", "records": 1, "bytes": 9}]}"#).unwrap();
        assert_eq!(ok.records_of("d00-1.tfrec"), Some(1));
        assert_eq!(ok.compression, "none");
        for (text, says) in [
            ("{", "EOF"),
            (r#"{"classes": ["a"]}"#, "1 classes listed"),
            (r#"{"classes": ["a", ""]}"#, "class 1 has an empty name"),
            (r#"{"classes": ["a", "a"]}"#, "listed twice"),
            (r#"{"classes": ["a", 3]}"#, "invalid type"),
            (
                r#"{"classes": ["a", "b"], "shards": [{"file": "x"}]}"#,
                "records",
            ),
        ] {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.contains("dir/manifest.json"), "{error}");
            assert!(error.contains(says), "{text}: {error}");
        }
    }
}
