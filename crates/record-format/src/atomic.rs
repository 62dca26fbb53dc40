//! The one way shardfeed writes a file: into `.NAME.tmp` beside the target, synced to disk,
//! then renamed over the target, so a reader never sees a partly written file under its final
//! name. Every crate that writes a file (shards, indexes, manifests, models, checkpoints,
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

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// `.NAME.tmp` in the same directory as `path`, so the final rename stays on one file system.
pub fn temp_path_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
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
    let temp_path = temp_path_for(path);
    let result = File::create(&temp_path)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .map_err(|source| AtomicWriteError {
            path: temp_path.clone(),
            source,
        })
        .and_then(|()| {
            fs::rename(&temp_path, path).map_err(|source| AtomicWriteError {
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
