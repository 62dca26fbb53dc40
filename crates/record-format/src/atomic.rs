//! The one way shardfeed writes a file: into a temporary file beside the target
//! (`.NAME.PID-N.tmp`, created exclusively, so two writers never share one), synced to disk,
//! then renamed over the target, so a reader never sees a partly written file under its final
//! name; the directory is fsynced after the rename, so the new name survives a power cut.
//! Every crate that writes a file (shards, indexes, manifests, models, checkpoints,
//! metrics, plots) uses [`write_atomic`] or, for a file written in pieces, [`temp_path_for`]
//! with the same sync-then-rename order.
//!
//! ```
//! use shardfeed_record_format::atomic::write_atomic;
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("manifest.json");
//! write_atomic(&path, b"{}\n")?;
//! assert_eq!(std::fs::read(&path)?, b"{}\n");
//! assert_eq!(std::fs::read_dir(dir.path())?.count(), 1, "no temporary file left");
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A temporary file's name for `path`: `.NAME.PID-N.tmp` in the same directory (the final
/// rename stays on one file system), unique to this process and call.
pub fn temp_path_for(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}-{n}.tmp", std::process::id()))
}

/// Creates a new temporary file for `path` ([`temp_path_for`]) exclusively (`create_new`:
/// a file of that name already there is never opened, whoever made it); returns it and its
/// path.
pub fn create_temp_for(path: &Path) -> io::Result<(File, PathBuf)> {
    loop {
        let temp_path = temp_path_for(path);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp_path)
        {
            Ok(file) => return Ok((file, temp_path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The name of the file a temporary file named `name` stands for (`.NAME.PID-N.tmp` →
/// `NAME`; the older `.NAME.tmp` too), or `None` where `name` is not a temporary file.
///
/// ```
/// use shardfeed_record_format::atomic::target_of_temp;
///
/// assert_eq!(target_of_temp(".data03.tfrec.4711-2.tmp"), Some("data03.tfrec"));
/// assert_eq!(target_of_temp(".data03.tfrec.tmp"), Some("data03.tfrec"));
/// assert_eq!(target_of_temp("data03.tfrec"), None);
/// ```
pub fn target_of_temp(name: &str) -> Option<&str> {
    let inner = name.strip_suffix(".tmp")?.strip_prefix('.')?;
    let unique = |tail: &str| {
        tail.split_once('-').is_some_and(|(pid, n)| {
            [pid, n]
                .iter()
                .all(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
        })
    };
    match inner.rsplit_once('.') {
        Some((target, tail)) if unique(tail) => Some(target),
        _ => Some(inner),
    }
}

/// Makes a rename into `path`'s directory durable: the directory's entry table fsynced
/// (without it a power cut after the rename can bring back the old name).
pub fn sync_dir_of(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    sync_dir(dir)
}

/// Makes the renames into directory `dir` durable (its entry table fsynced).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A failed atomic write: the step and the file it was writing.
#[derive(Debug)]
pub struct AtomicWriteError {
    /// The file being written when it failed: the temporary file, or the target for the
    /// rename.
    pub path: PathBuf,
    /// The I/O error.
    pub source: io::Error,
}

impl std::fmt::Display for AtomicWriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot write {}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for AtomicWriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl From<AtomicWriteError> for io::Error {
    fn from(error: AtomicWriteError) -> Self {
        io::Error::new(error.source.kind(), error)
    }
}

/// Writes `bytes` to `path` through a synced temporary file and a rename; on failure the
/// temporary file is removed and `path` is left as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
    let (mut file, temp_path) = create_temp_for(path).map_err(|source| AtomicWriteError {
        path: path.to_owned(),
        source,
    })?;
    let result = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|source| AtomicWriteError {
            path: temp_path.clone(),
            source,
        })
        .and_then(|()| {
            fs::rename(&temp_path, path)
                .and_then(|()| sync_dir_of(path))
                .map_err(|source| AtomicWriteError {
                    path: path.to_owned(),
                    source,
                })
        });
    if result.is_err() {
        let _ = fs::remove_file(&temp_path);
    }
    result
}

/// [`write_atomic`] with this crate's error (the file and offset 0).
pub(crate) fn write_record_file_atomically(path: &Path, bytes: &[u8]) -> crate::Result<()> {
    write_atomic(path, bytes)
        .map_err(|e| crate::Error::io(&crate::FileName::new(&e.path), 0, e.source))
}
