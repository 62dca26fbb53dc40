//! The fast path: frames parsed straight out of a byte slice or a memory-mapped file,
//! handing out borrowed payloads with no copy.

use std::fs::File;
use std::path::Path;

use crate::frame::{FOOTER_LEN, HEADER_LEN, ReaderOptions, check_footer, decode_header, truncated};
use crate::{Compression, Corruption, Error, FileName, Location, Result, frame};

/// One record borrowed from a slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The record's position in the file, from 0.
    pub index: u64,
    /// The byte offset of its header.
    pub offset: u64,
    /// The payload.
    pub data: &'a [u8],
}

/// Iterates over the records of an uncompressed TFRecord file held in memory.
///
/// ```
/// use shardfeed_record_format::{Compression, ReaderOptions, RecordWriter, SliceReader};
///
/// let mut writer = RecordWriter::new(Vec::new(), Compression::None);
/// writer.write_record(b"first")?;
/// writer.write_record(b"second")?;
/// let (bytes, _index) = writer.finish()?;
///
/// let payloads: Vec<&[u8]> = SliceReader::new(&bytes, ReaderOptions::default())
///     .map(|record| record.map(|r| r.data))
///     .collect::<Result<_, _>>()?;
/// assert_eq!(payloads, [&b"first"[..], &b"second"[..]]);
/// # Ok::<(), shardfeed_record_format::Error>(())
/// ```
pub struct SliceReader<'a> {
    bytes: &'a [u8],
    position: usize,
    index: u64,
    file: FileName,
    options: ReaderOptions,
    finished: bool,
}

impl<'a> SliceReader<'a> {
    /// Reads the records in `bytes`, which hold plain frames: with `options.compression`
    /// other than `None` the first item is [`Error::CompressedInPlace`] (decompress with
    /// [`RecordReader`](crate::RecordReader) instead).
    pub fn new(bytes: &'a [u8], options: ReaderOptions) -> Self {
        SliceReader {
            bytes,
            position: 0,
            index: 0,
            file: FileName::unknown(),
            options,
            finished: false,
        }
    }

    /// Names the file in error messages.
    pub fn with_file_name(mut self, file: FileName) -> Self {
        self.file = file;
        self
    }

    /// Starts at `offset`, counting records from `index` (for resuming or random access).
    pub fn starting_at(mut self, offset: u64, index: u64) -> Self {
        self.position = usize::try_from(offset).unwrap_or(usize::MAX);
        self.index = index;
        self
    }

    fn location(&self) -> Location {
        Location {
            file: self.file.clone(),
            index: self.index,
            offset: self.position as u64,
            compression: Compression::None,
        }
    }

    fn read_frame(&mut self) -> Result<Option<RecordRef<'a>>> {
        if self.options.compression != Compression::None {
            return Err(Error::CompressedInPlace {
                file: self.file.clone(),
                compression: self.options.compression,
            });
        }
        let rest = self.bytes.get(self.position..).unwrap_or_default();
        if rest.is_empty() {
            return Ok(None);
        }
        let Some((header, after_header)) = rest.split_first_chunk::<HEADER_LEN>() else {
            return Err(frame::corrupt(
                self.location(),
                Corruption::TrailingBytes {
                    count: rest.len() as u64,
                },
            ));
        };
        let len = decode_header(header, &self.options, || self.location())?;
        let (data, footer) = match usize::try_from(len)
            .ok()
            .and_then(|len| after_header.split_at_checked(len))
            .and_then(|(data, tail)| Some((data, tail.first_chunk::<FOOTER_LEN>()?)))
        {
            Some(found) => found,
            None => return Err(truncated(self.location(), len, rest.len() as u64)),
        };
        check_footer(data, footer, &self.options, || self.location())?;
        let record = RecordRef {
            index: self.index,
            offset: self.position as u64,
            data,
        };
        self.position += HEADER_LEN + data.len() + FOOTER_LEN;
        self.index += 1;
        Ok(Some(record))
    }
}

impl<'a> Iterator for SliceReader<'a> {
    type Item = Result<RecordRef<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let result = self.read_frame();
        if !matches!(result, Ok(Some(_))) {
            self.finished = true;
        }
        result.transpose()
    }
}

/// An uncompressed TFRecord file mapped into memory, for [`SliceReader`]'s zero-copy scan.
pub struct MappedFile {
    map: Option<memmap2::Mmap>,
    file: FileName,
}

impl MappedFile {
    /// Maps the file at `path` read-only.
    ///
    /// The file must not be truncated or rewritten by another process while mapped: the
    /// operating system would then fault on access (our own writers never rewrite a file in
    /// place; they write a temporary file and rename it).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let file_name = FileName::new(path.as_ref());
        let file = File::open(path.as_ref()).map_err(|e| Error::io(&file_name, 0, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(&file_name, 0, e))?
            .len();
        // An empty file cannot be mapped on every platform; it has no records anyway.
        let map = if len == 0 {
            None
        } else {
            // SAFETY: the map is read-only and private to this process; see the doc comment
            // for the one external condition (no concurrent truncation).
            let map =
                unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(&file_name, 0, e))?;
            #[cfg(unix)]
            let _ = map.advise(memmap2::Advice::Sequential);
            Some(map)
        };
        Ok(MappedFile {
            map,
            file: file_name,
        })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or_default()
    }

    /// Iterates over the file's records.
    pub fn records(&self, options: ReaderOptions) -> SliceReader<'_> {
        SliceReader::new(self.bytes(), options).with_file_name(self.file.clone())
    }
}
