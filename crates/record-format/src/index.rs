//! Record index files in NVIDIA DALI's `tfrecord2idx` text format, and random access.
//!
//! `NAME.tfrec.idx` holds one line per record, `offset length`, where `offset` is the byte
//! offset of the record's header and `length` the whole frame's size (12 + payload + 4),
//! exactly as DALI's `tfrecord2idx` writes it. For a compressed file the offsets count bytes
//! of the decompressed record stream (DALI itself reads only plain files).

use std::fmt::Write as _;
use std::fs::File;
use std::io::BufReader;
#[cfg(unix)]
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::frame::{FRAMING_LEN, HEADER_LEN, ReaderOptions, check_footer, decode_header};
use crate::reader::RecordReader;
use crate::{Compression, Corruption, Error, FileName, Location, Result, frame};

/// One record's place in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IndexEntry {
    /// The byte offset of the record's header.
    pub offset: u64,
    /// The whole frame's size: 12 + payload + 4 bytes.
    pub len: u64,
}

impl IndexEntry {
    /// The payload's length.
    pub fn payload_len(&self) -> u64 {
        self.len - FRAMING_LEN
    }

    /// The offset just past this record.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// The records of one file: count, offsets and sizes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    entries: Vec<IndexEntry>,
}

impl Index {
    /// The index file's path for a record file: the record file's name plus `.idx`.
    pub fn path_for(record_file: impl AsRef<Path>) -> PathBuf {
        let mut name = record_file.as_ref().as_os_str().to_owned();
        name.push(".idx");
        PathBuf::from(name)
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file has no records.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, in file order.
    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// The record stream's total size (of the decompressed stream for a compressed file).
    pub fn stream_len(&self) -> u64 {
        self.entries.last().map_or(0, IndexEntry::end)
    }

    pub(crate) fn push(&mut self, entry: IndexEntry) {
        self.entries.push(entry);
    }

    /// The text of the index file.
    pub fn to_text(&self) -> String {
        let mut text = String::with_capacity(self.entries.len() * 14);
        for entry in &self.entries {
            writeln!(text, "{} {}", entry.offset, entry.len)
                .expect("writing to a String cannot fail");
        }
        text
    }

    /// Parses an index file's text. `file` names it in errors.
    ///
    /// Every line must be `offset length` in decimal, each frame at least 16 bytes and
    /// starting where the previous one ended (as in a file written front to back).
    pub fn parse(text: &str, file: &FileName) -> Result<Self> {
        let mut entries = Vec::new();
        let mut expected_offset = 0u64;
        for (number, line) in text.lines().enumerate() {
            let bad = |message: String| Error::BadIndex {
                file: file.clone(),
                line: number + 1,
                message,
            };
            if line.trim().is_empty() {
                continue;
            }
            let mut fields = line.split_ascii_whitespace();
            let mut number_field = |what: &str| -> Result<u64> {
                let field = fields
                    .next()
                    .ok_or_else(|| bad(format!("missing {what}")))?;
                field
                    .parse::<u64>()
                    // The field itself is not echoed: an index may be a link to any file.
                    .map_err(|_| {
                        bad(format!(
                            "{what} is not a non-negative integer (a field of {} bytes)",
                            field.len()
                        ))
                    })
            };
            let offset = number_field("offset")?;
            let len = number_field("length")?;
            if fields.next().is_some() {
                return Err(bad("more than two fields".to_owned()));
            }
            if len < FRAMING_LEN {
                return Err(bad(format!(
                    "length {len} is shorter than the 16 framing bytes"
                )));
            }
            if offset != expected_offset {
                return Err(bad(format!(
                    "offset {offset} does not follow the previous record, which ends at {expected_offset}"
                )));
            }
            expected_offset = offset
                .checked_add(len)
                .ok_or_else(|| bad(format!("offset {offset} + length {len} overflows")))?;
            entries.push(IndexEntry { offset, len });
        }
        Ok(Index { entries })
    }

    /// The largest index a data file of `data_bytes` can have: one line per frame of at least
    /// 16 bytes, each line at most two 20-digit numbers, a space and a newline.
    pub fn max_bytes_for(data_bytes: u64) -> u64 {
        (data_bytes / 16 + 1).saturating_mul(42)
    }

    /// Reads and parses the index file at `path`, bounded by [`Index::max_bytes_for`] the data
    /// file beside it (its name without `.idx`; 1 GiB when there is none): a FIFO, a device or
    /// a huge file in its place is refused unread ([`crate::bounded::read_bounded`]).
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = FileName::new(path);
        let data = path.with_extension("");
        let limit = match std::fs::metadata(&data) {
            Ok(meta) if path.extension().is_some_and(|e| e == "idx") => {
                Index::max_bytes_for(meta.len())
            }
            _ => 1 << 30,
        };
        let bytes =
            crate::bounded::read_bounded(path, limit).map_err(|e| Error::io(&file, 0, e))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            let invalid = std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "stream did not contain valid UTF-8",
            );
            Error::io(&file, 0, invalid)
        })?;
        Index::parse(&text, &file)
    }

    /// Writes the index file at `path` atomically.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::atomic::write_record_file_atomically(path.as_ref(), self.to_text().as_bytes())
    }

    /// Rebuilds the index of a record file by reading it through (for files other tools
    /// wrote). Every frame is checked as `options` say; the first damaged one is an error.
    pub fn scan(path: impl AsRef<Path>, options: ReaderOptions) -> Result<Self> {
        Index::scan_limited(path, options, Scanned::default())
    }

    /// [`Index::scan`] within the limits of `scanned`.
    pub fn scan_limited(
        path: impl AsRef<Path>,
        options: ReaderOptions,
        mut scanned: Scanned,
    ) -> Result<Self> {
        let path = path.as_ref();
        let mut reader = RecordReader::open(path, options)?;
        let mut scratch = Vec::new();
        let mut index = Index::default();
        while let Some(info) = reader.read_into(&mut scratch)? {
            scanned.add(info.framed_len(), path)?;
            index.push(IndexEntry {
                offset: info.offset,
                len: info.framed_len(),
            });
        }
        Ok(index)
    }
}

/// The most records a scan of one file takes in (its index is then 1 GiB).
pub const MAX_SCAN_RECORDS: u64 = 1 << 26;
/// The most bytes of records (framing included, after decompression) a scan of one file reads.
pub const MAX_SCAN_BYTES: u64 = 1 << 40;

/// Records and bytes a scan has read, checked against its limits ([`MAX_SCAN_RECORDS`] and
/// [`MAX_SCAN_BYTES`] by default): every scan of a whole file (an index rebuilt, `inspect`)
/// counts here.
#[derive(Debug, Clone, Copy)]
pub struct Scanned {
    /// Records read.
    pub records: u64,
    /// Bytes of records read (framing included).
    pub bytes: u64,
    max_records: u64,
    max_bytes: u64,
}

impl Default for Scanned {
    fn default() -> Self {
        Scanned::limited(MAX_SCAN_RECORDS, MAX_SCAN_BYTES)
    }
}

impl Scanned {
    /// Nothing read yet, with these limits.
    pub fn limited(max_records: u64, max_bytes: u64) -> Self {
        Scanned {
            records: 0,
            bytes: 0,
            max_records,
            max_bytes,
        }
    }

    /// Counts one record of `framed_len` bytes of file `path`; past a limit, the error.
    pub fn add(&mut self, framed_len: u64, path: &Path) -> Result<()> {
        self.records += 1;
        self.bytes = self.bytes.saturating_add(framed_len);
        let over = |what: String, limit: u64| Error::ScanLimit {
            file: FileName::new(path),
            what,
            limit,
        };
        if self.records > self.max_records {
            return Err(over(format!("{} records", self.records), self.max_records));
        }
        if self.bytes > self.max_bytes {
            return Err(over(
                format!("{} bytes of records", self.bytes),
                self.max_bytes,
            ));
        }
        Ok(())
    }
}

/// A record file with its index, for reading any record by number.
///
/// ```
/// use shardfeed_record_format::{Compression, FileWriter, IndexedFile, ReaderOptions};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("data00-3.tfrec");
/// let mut writer = FileWriter::create(&path, Compression::None)?;
/// for word in ["zero", "one", "two"] {
///     writer.write_record(word.as_bytes())?;
/// }
/// writer.commit()?;
///
/// let mut file = IndexedFile::open(&path, ReaderOptions::default())?;
/// assert_eq!(file.len(), 3);
/// assert_eq!(file.read_record(2)?, b"two");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct IndexedFile {
    file: Box<dyn RandomRead>,
    name: FileName,
    index: Index,
    options: ReaderOptions,
    path: PathBuf,
}

impl IndexedFile {
    /// Opens `path` with its `.idx` file when there is one, or builds the index by a scan.
    ///
    /// For an uncompressed file, an index whose last record does not end exactly at the end
    /// of the file is rejected as stale ([`Error::IndexMismatch`]).
    pub fn open(path: impl AsRef<Path>, options: ReaderOptions) -> Result<Self> {
        let path = path.as_ref();
        let index_path = Index::path_for(path);
        let index = if index_path.exists() {
            Index::read(&index_path)?
        } else {
            Index::scan(path, options)?
        };
        IndexedFile::with_index(path, index, options)
    }

    /// Opens `path` with an index the caller already has.
    pub fn with_index(
        path: impl AsRef<Path>,
        index: Index,
        options: ReaderOptions,
    ) -> Result<Self> {
        let path = path.as_ref();
        let name = FileName::new(path);
        let file = File::open(path).map_err(|e| Error::io(&name, 0, e))?;
        IndexedFile::from_reader(path, Box::new(file), index, options)
    }

    /// A file read through `file` (an object in object storage, say), named `path` in
    /// errors, with its index. The same checks as [`IndexedFile::with_index`]; only
    /// uncompressed files can be read this way (a compressed one is refused with
    /// [`Error::CompressedInPlace`]).
    pub fn from_reader(
        path: impl AsRef<Path>,
        file: Box<dyn RandomRead>,
        index: Index,
        options: ReaderOptions,
    ) -> Result<Self> {
        let path = path.as_ref();
        let name = FileName::new(path);
        if options.compression == Compression::None {
            let size = file.size().map_err(|e| Error::io(&name, 0, e))?;
            if index.stream_len() != size {
                return Err(Error::IndexMismatch {
                    file: name,
                    message: format!(
                        "the index covers {} bytes in {} records, the file has {size} bytes",
                        index.stream_len(),
                        index.len()
                    ),
                });
            }
        }
        Ok(IndexedFile {
            file,
            name,
            index,
            options,
            path: path.to_path_buf(),
        })
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the file has no records.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Reads record `i`'s payload, checking its frame as the options say.
    ///
    /// Uncompressed files are read at the record's offset (one positioned read); compressed
    /// ones are decompressed from the start up to the record, which costs O(offset).
    pub fn read_record(&mut self, i: usize) -> Result<Vec<u8>> {
        let (entry, at) = self.locate(i)?;
        let data = match self.options.compression {
            Compression::None => self.read_plain(entry, &at, &mut Vec::new())?.to_vec(),
            _ => self.read_compressed(i, &at)?,
        };
        self.check_len(i, entry, data.len())?;
        Ok(data)
    }

    /// Calls `f` on record `i`'s payload, both CRCs checked as the options say, read with one
    /// positioned read into `buffer` (reused between calls; no other copy). Takes `&self`:
    /// threads may share the file. Uncompressed files only; a compressed one gives
    /// [`Error::CompressedInPlace`] (use [`IndexedFile::read_record`]).
    pub fn with_plain_record<R>(
        &self,
        i: usize,
        buffer: &mut Vec<u8>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        if self.options.compression != Compression::None {
            return Err(Error::CompressedInPlace {
                file: self.name.clone(),
                compression: self.options.compression,
            });
        }
        let (entry, at) = self.locate(i)?;
        let data = self.read_plain(entry, &at, buffer)?;
        self.check_len(i, entry, data.len())?;
        Ok(f(data))
    }

    /// Record `i`'s index entry and location.
    fn locate(&self, i: usize) -> Result<(IndexEntry, Location)> {
        let entry = *self
            .index
            .entries
            .get(i)
            .ok_or_else(|| Error::RecordOutOfRange {
                file: self.name.clone(),
                index: i as u64,
                count: self.index.len() as u64,
            })?;
        let at = Location {
            file: self.name.clone(),
            index: i as u64,
            offset: entry.offset,
            compression: self.options.compression,
        };
        Ok((entry, at))
    }

    /// A payload of `len` bytes must fill the framed length the index gives.
    fn check_len(&self, i: usize, entry: IndexEntry, len: usize) -> Result<()> {
        if len as u64 + FRAMING_LEN != entry.len {
            return Err(Error::IndexMismatch {
                file: self.name.clone(),
                message: format!(
                    "record {i}: the index says {} framed bytes, the file has {}",
                    entry.len,
                    len as u64 + FRAMING_LEN
                ),
            });
        }
        Ok(())
    }

    fn read_plain<'b>(
        &self,
        entry: IndexEntry,
        at: &Location,
        buffer: &'b mut Vec<u8>,
    ) -> Result<&'b [u8]> {
        if entry.payload_len() > self.options.max_record_len {
            return Err(frame::corrupt(
                at.clone(),
                Corruption::AbsurdLength {
                    length: entry.payload_len(),
                    limit: self.options.max_record_len,
                },
            ));
        }
        buffer.clear();
        buffer.resize(usize::try_from(entry.len).unwrap_or(usize::MAX), 0);
        let got = self
            .file
            .read_at(buffer, entry.offset)
            .map_err(|e| Error::io(&self.name, entry.offset, e))?;
        let frame_bytes = &buffer[..got];
        let Some((header, rest)) = frame_bytes.split_first_chunk::<HEADER_LEN>() else {
            return Err(frame::corrupt(
                at.clone(),
                Corruption::TruncatedHeader {
                    available: got as u64,
                },
            ));
        };
        let len = decode_header(header, &self.options, || at.clone())?;
        let Some((data, footer)) = usize::try_from(len)
            .ok()
            .and_then(|len| rest.split_at_checked(len))
            .and_then(|(data, tail)| Some((data, tail.first_chunk::<4>()?)))
        else {
            return Err(frame::truncated(at.clone(), len, got as u64));
        };
        check_footer(data, footer, &self.options, || at.clone())?;
        Ok(data)
    }

    fn read_compressed(&self, i: usize, at: &Location) -> Result<Vec<u8>> {
        if !self.file.is_local_file() {
            return Err(Error::CompressedInPlace {
                file: self.name.clone(),
                compression: self.options.compression,
            });
        }
        let file = File::open(&self.path).map_err(|e| Error::io(&self.name, 0, e))?;
        let mut reader =
            RecordReader::new(BufReader::new(file), self.options).with_file_name(&self.path);
        let mut data = Vec::new();
        for _ in 0..=i {
            if reader.read_into(&mut data)?.is_none() {
                return Err(Error::IndexMismatch {
                    file: self.name.clone(),
                    message: format!(
                        "{at}: the file ends after {} records",
                        reader.records_read()
                    ),
                });
            }
        }
        Ok(data)
    }
}

/// Bytes read by offset, from any thread: a local file, or an object in object storage
/// (`shardfeed-storage`'s ranged reader).
pub trait RandomRead: Send + Sync {
    /// Fills as much of `buf` as the data holds at `offset`; returns how much (less than
    /// `buf.len()` only at the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize>;
    /// The data's size in bytes.
    fn size(&self) -> std::io::Result<u64>;
    /// Whether this is a local file (which compressed reads reopen by path).
    fn is_local_file(&self) -> bool {
        false
    }
}

impl RandomRead for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        read_file_at(self, buf, offset)
    }
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn is_local_file(&self) -> bool {
        true
    }
}

/// Reads as much of `buf` as the file holds at `offset`.
fn read_file_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    #[cfg(unix)]
    {
        let mut filled = 0;
        while filled < buf.len() {
            match FileExt::read_at(file, &mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = file;
        file.seek(SeekFrom::Start(offset))?;
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(&mut buf[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        Ok(filled)
    }
}
