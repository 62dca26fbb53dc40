//! The crate's one error type, and the location every framing error carries.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::Compression;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The file an error happened in, when known (a reader over any `Read` may have no name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FileName(Option<Arc<Path>>);

impl FileName {
    /// A name for the file at `path`.
    pub fn new(path: impl AsRef<Path>) -> Self {
        FileName(Some(Arc::from(path.as_ref())))
    }

    /// No name: the bytes came from a stream.
    pub fn unknown() -> Self {
        FileName(None)
    }

    /// The path, when known.
    pub fn path(&self) -> Option<&Path> {
        self.0.as_deref()
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(path) => write!(f, "{}", path.display()),
            None => f.write_str("<stream>"),
        }
    }
}

/// Where a record is: its file, its index in the file (from 0) and the byte offset of its frame.
///
/// For a compressed file the offset counts bytes of the *decompressed* record stream, which is
/// what TensorFlow reports too; the message says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, when known.
    pub file: FileName,
    /// The record's position in the file, from 0.
    pub index: u64,
    /// The byte offset of the record's 12-byte header.
    pub offset: u64,
    /// The file's compression, which says what `offset` counts.
    pub compression: Compression,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {} at offset {}", self.index, self.offset)?;
        if self.compression != Compression::None {
            write!(f, " of the {}-decompressed stream", self.compression)?;
        }
        write!(f, " in {}", self.file)
    }
}

/// What is wrong with a damaged TFRecord frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    /// The masked CRC-32C of the 8 length bytes does not match the stored one.
    #[error("length crc mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    LengthCrcMismatch {
        /// The masked CRC in the file.
        stored: u32,
        /// The masked CRC of the length bytes as read.
        computed: u32,
    },
    /// The masked CRC-32C of the payload does not match the stored one.
    #[error(
        "data crc mismatch in the payload at offset {payload_offset} (stored {stored:#010x}, computed {computed:#010x})"
    )]
    DataCrcMismatch {
        /// Where the payload starts (the record offset + 12); TensorFlow's `corrupted record at N`.
        payload_offset: u64,
        /// The masked CRC in the file.
        stored: u32,
        /// The masked CRC of the payload as read.
        computed: u32,
    },
    /// Fewer than the 12 header bytes exist where an index says a record starts.
    #[error("truncated header: {available} of 12 bytes")]
    TruncatedHeader {
        /// How many header bytes there were.
        available: u64,
    },
    /// The file ends inside the payload or its trailing CRC.
    #[error(
        "truncated record: needs {needed} bytes ({length}-byte payload + 16 framing), {available} present"
    )]
    TruncatedPayload {
        /// The payload length from the header.
        length: u64,
        /// Bytes the whole frame needs.
        needed: u64,
        /// Bytes present from the record's offset to the end of the file.
        available: u64,
    },
    /// The header announces a payload longer than the reader's limit (a corrupt header, or a
    /// record too big to be sane); nothing of that size was allocated.
    #[error("record length {length} exceeds the limit of {limit} bytes")]
    AbsurdLength {
        /// The payload length from the header.
        length: u64,
        /// [`ReaderOptions::max_record_len`](crate::ReaderOptions::max_record_len).
        limit: u64,
    },
    /// 1 to 11 stray bytes after the last complete record: too short to be a header.
    /// TensorFlow reads such a file without a word; we report it.
    #[error(
        "{count} stray bytes after the last record (a partial header; TensorFlow ignores them)"
    )]
    TrailingBytes {
        /// How many bytes follow the last complete record.
        count: u64,
    },
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A damaged frame.
    #[error("corrupted {at}: {problem}")]
    Corrupt {
        /// The damaged record.
        at: Location,
        /// What is wrong with it.
        problem: Corruption,
    },
    /// The operating system failed to read, write or open a file.
    #[error("i/o error at offset {offset} in {file}: {source}")]
    Io {
        /// The file.
        file: FileName,
        /// The offset being read or written (of the decompressed stream for a compressed file).
        offset: u64,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A record's payload is not a valid `tf.train.Example` protobuf.
    #[error("invalid tf.train.Example: {0}")]
    InvalidExample(#[from] prost::DecodeError),
    /// A feature the caller needs is absent from an Example.
    #[error("feature {name:?} is missing")]
    MissingFeature {
        /// The feature's key.
        name: String,
    },
    /// A feature's value is out of the range the caller needs (a size of 0 or below).
    #[error("feature {name:?} is {value}, expected {expected}")]
    BadFeatureValue {
        /// The feature's key.
        name: String,
        /// The value found.
        value: i64,
        /// What it should be.
        expected: &'static str,
    },
    /// A feature holds another kind of list than the caller needs.
    #[error("feature {name:?} is {found}, expected {expected}")]
    WrongFeatureType {
        /// The feature's key.
        name: String,
        /// The kind needed.
        expected: &'static str,
        /// The kind found (`empty` for a feature with no list).
        found: &'static str,
    },
    /// A feature holds a list of another length than the caller needs.
    #[error("feature {name:?} has {found} values, expected {expected}")]
    WrongFeatureLength {
        /// The feature's key.
        name: String,
        /// The length needed.
        expected: usize,
        /// The length found.
        found: usize,
    },
    /// An error about one record's content, with where the record is.
    #[error("{at}: {source}")]
    InRecord {
        /// The record.
        at: Location,
        /// What is wrong with its content.
        #[source]
        source: Box<Error>,
    },
    /// An index file that does not parse.
    #[error("bad index {file} line {line}: {message}")]
    BadIndex {
        /// The index file.
        file: FileName,
        /// The line, from 1.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// An index that does not describe its record file.
    #[error("index does not match {file}: {message}")]
    IndexMismatch {
        /// The record file.
        file: FileName,
        /// What differs.
        message: String,
    },
    /// A compressed file handed to a reader that parses plain frames in place.
    #[error("cannot parse {compression}-compressed {file} in place: read it with RecordReader")]
    CompressedInPlace {
        /// The file.
        file: FileName,
        /// Its compression.
        compression: Compression,
    },
    /// A shard that holds a different number of records than its name states.
    #[error(
        "{file} holds {found} records but its name says {named}: it was cut short at a record boundary, or renamed"
    )]
    CountMismatch {
        /// The file.
        file: FileName,
        /// The count in its name.
        named: u64,
        /// The records it holds.
        found: u64,
    },
    /// A scan of a file without an index passed the limits of a scan (a compressed file that
    /// expands past them is refused rather than indexed without bound).
    #[error(
        "{file}: {what}, past the limit of a scan ({limit}); a compressed file that expands this far is refused"
    )]
    ScanLimit {
        /// The file.
        file: FileName,
        /// What passed the limit (`67108865 records`, `1099511627777 bytes of records`).
        what: String,
        /// The limit.
        limit: u64,
    },
    /// A record number past the end of a file.
    #[error("record {index} out of range: {file} has {count} records")]
    RecordOutOfRange {
        /// The file.
        file: FileName,
        /// The record asked for.
        index: u64,
        /// How many records the file has.
        count: u64,
    },
}

impl Error {
    /// The record location, for framing errors and errors about a record's content.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Error::Corrupt { at, .. } | Error::InRecord { at, .. } => Some(at),
            _ => None,
        }
    }

    /// The framing damage, when this is a framing error.
    pub fn corruption(&self) -> Option<&Corruption> {
        match self {
            Error::Corrupt { problem, .. } => Some(problem),
            _ => None,
        }
    }

    /// Attaches the record's location to an error about its content.
    pub fn in_record(self, at: Location) -> Error {
        match self {
            already @ (Error::Corrupt { .. } | Error::InRecord { .. }) => already,
            other => Error::InRecord {
                at,
                source: Box::new(other),
            },
        }
    }

    pub(crate) fn io(file: &FileName, offset: u64, source: io::Error) -> Error {
        Error::Io {
            file: file.clone(),
            offset,
            source,
        }
    }
}
