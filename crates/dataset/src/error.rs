//! The crate's one error type. Every variant names the file (and, from the record layer, the
//! record and byte offset) it is about; none names a command-line flag.

use std::path::{Path, PathBuf};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong with a dataset folder.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder could not be read, created, written or removed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done (`read`, `create`, `remove`, …).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A source folder without an image file (JPEG, PNG, WebP, BMP, GIF, TIFF).
    #[error("no .jpg or .jpeg files (nor .png, .webp, .bmp, .gif, .tif) in {0}")]
    NoJpegs(PathBuf),
    /// A file name without a `.`-separated label before its extension.
    #[error("no label in file name {0}: expected LABEL.ID.jpg")]
    NoLabel(PathBuf),
    /// A label outside the explicit class list.
    #[error("label {label:?} of {path} is not one of the classes {classes}")]
    UnknownLabel {
        /// The file.
        path: PathBuf,
        /// Its label.
        label: String,
        /// The class list, comma-separated.
        classes: String,
    },
    /// A source file's label could not be found (`--labels folder|csv:FILE`): a file outside
    /// every class folder, a labels row naming no source, a source with no row, a duplicate
    /// or empty row; `place` names the file, and the row's line where there is one.
    #[error("{place}: {}{message}", file.as_ref().map_or(String::new(), |f| format!("{f}: ")))]
    Label {
        /// Where (`labels.csv line 7`, or the source folder).
        place: String,
        /// The source, relative to the source folder, where the problem is one file's.
        file: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A class list with no class, or a class named twice.
    #[error("invalid class list: {0}")]
    InvalidClasses(String),
    /// No file of a source folder has a usable label.
    #[error("no labelled files in {0} (names must look like LABEL.ID.jpg)")]
    NoLabelledFiles(PathBuf),
    /// Every file of a source folder was skipped.
    #[error("no usable files in {folder}: all {skipped} were skipped")]
    NothingUsable {
        /// The source folder.
        folder: PathBuf,
        /// Files skipped.
        skipped: usize,
    },
    /// The run was stopped (SIGINT, SIGTERM); what it wrote was removed.
    #[error("interrupted: removed the {removed} finished shard(s) this run wrote in {folder}")]
    Interrupted {
        /// The output folder.
        folder: std::path::PathBuf,
        /// Finished shards removed (a shard being written is removed too).
        removed: usize,
    },
    /// A file that could not be used, in strict mode.
    #[error("{path}: {reason}")]
    Unusable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The output folder holds files, and replacing them was not asked for.
    #[error("{0} is not empty")]
    OutputNotEmpty(PathBuf),
    /// A URL where a local path is needed, or of a scheme that is not supported.
    #[error("{url}: {reason}")]
    UnsupportedUrl {
        /// The URL.
        url: String,
        /// Why it cannot be used here.
        reason: String,
    },
    /// Parts of a distributed shard run that do not make a whole (missing, stale, from
    /// different runs), found by [`crate::workers::merge`].
    #[error("cannot merge the parts in {folder}: {message}")]
    Merge {
        /// The shard folder.
        folder: PathBuf,
        /// What is wrong, naming the part or shard file.
        message: String,
    },
    /// Another run holds the writer's lock of the folder (or of this worker's share of it).
    #[error("{lock}: another shard run is writing there ({holder}); wait for it to finish{hint}")]
    Locked {
        /// The lock file (or object).
        lock: PathBuf,
        /// Who holds it, as the holder wrote it (process, host, start time, run).
        holder: String,
        /// What to do where a lock outlives its holder (object storage), or nothing.
        hint: String,
    },
    /// A setting out of its range.
    #[error("{0}")]
    Invalid(String),
    /// A shard folder that disagrees with its `manifest.json`.
    #[error(
        "{folder} does not match its manifest.json: {message} (an interrupted copy, or files added by hand?); pass --ignore-manifest (Python: ignore_manifest=True) to read the files as they are"
    )]
    FolderMismatch {
        /// The shard folder.
        folder: PathBuf,
        /// What differs, naming the file.
        message: String,
    },
    /// A folder without shard files.
    #[error("no .tfrec files in {0}")]
    NoShards(PathBuf),
    /// Fewer records than one batch.
    #[error("{records} records in {folder}: fewer than one batch of {batch}")]
    TooFewRecords {
        /// Records found.
        records: u64,
        /// The folder (or the training files' folder).
        folder: PathBuf,
        /// The batch size.
        batch: usize,
    },
    /// A `manifest.json` (or `run.json`) that does not parse or lists unusable classes.
    #[error("bad {file}: {message}")]
    BadDescription {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A record whose class is unusable.
    #[error("{file}: record {index} has class {class} (must be ≥ 0)")]
    NegativeClass {
        /// The shard file.
        file: PathBuf,
        /// The record's index in it.
        index: u64,
        /// Its class value.
        class: i64,
    },
    /// Images of different sizes in one batch.
    #[error("images of different sizes in one batch ({width}×{height} and {side}×{side})")]
    MixedSizes {
        /// The odd image's width.
        width: u32,
        /// Its height.
        height: u32,
        /// The first image's side.
        side: usize,
    },
    /// The shards of a run changed since it started.
    #[error("the shards in {0} changed since the run started (files or record counts)")]
    ShardsChanged(PathBuf),
    /// A damaged record (bad CRC, not an `Example`, an undecodable image), with its file,
    /// record and byte offset.
    #[error("{0}")]
    DamagedRecord(Box<Damaged>),
    /// A saved loader state that does not belong to this loader.
    #[error("cannot resume from this state: {0}")]
    BadLoaderState(String),
    /// Object storage (names the URL).
    #[error(transparent)]
    Storage(#[from] shardfeed_storage::Error),
    /// The TFRecord layer: names the file, record and byte offset.
    #[error(transparent)]
    Record(#[from] shardfeed_record_format::Error),
    /// The input pipeline (a record that failed to decode names its file and offset).
    #[error(transparent)]
    Pipeline(#[from] shardfeed_input_pipeline::Error),
    /// Image preparation.
    #[error(transparent)]
    Image(#[from] shardfeed_image_prep::Error),
}

impl Error {
    /// An [`Error::Io`].
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}

impl From<shardfeed_record_format::atomic::AtomicWriteError> for Error {
    fn from(error: shardfeed_record_format::atomic::AtomicWriteError) -> Self {
        Error::Io {
            action: "write",
            path: error.path,
            source: error.source,
        }
    }
}

/// A damaged record: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Damaged {
    /// The shard file.
    pub path: PathBuf,
    /// The byte offset of the record's frame (`None` where unknown: compressed files).
    pub offset: Option<u64>,
    /// The record's index in the file, from 0.
    pub record: u64,
    /// What is wrong.
    pub reason: String,
}

impl Damaged {
    /// The damage a record-layer error describes (a bad frame or CRC, with its location), or
    /// `None` for an error that is not damage (I/O): that one stays an error.
    pub fn from_record_error(
        path: &Path,
        error: &shardfeed_record_format::Error,
    ) -> Option<Damaged> {
        let at = error.location()?;
        Some(Damaged {
            path: path.to_path_buf(),
            offset: Some(at.offset),
            record: at.index,
            reason: error
                .corruption()
                .map_or_else(|| error.to_string(), ToString::to_string),
        })
    }
}

impl std::fmt::Display for Damaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "damaged record {}", self.record)?;
        if let Some(offset) = self.offset {
            write!(f, " at offset {offset}")?;
        }
        write!(f, " in {}: {}", self.path.display(), self.reason)
    }
}
