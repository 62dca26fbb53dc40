//! Streaming reader over any `Read`, in constant memory.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use crate::compression::Decoder;
use crate::frame::{FOOTER_LEN, HEADER_LEN, ReaderOptions, check_footer, decode_header, truncated};
use crate::{Corruption, Error, FileName, Location, Result, frame};

/// The buffer between the file and the frame parser.
const BUFFER_BYTES: usize = 256 * 1024;

/// Where a record was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordInfo {
    /// The record's position in the file, from 0.
    pub index: u64,
    /// The byte offset of its header (in the decompressed stream for a compressed file).
    pub offset: u64,
    /// The payload length.
    pub len: u64,
}

impl RecordInfo {
    /// Bytes the whole frame takes: header, payload and footer.
    pub fn framed_len(&self) -> u64 {
        self.len + frame::FRAMING_LEN
    }
}

/// Reads TFRecord frames one after the other from any `Read`, plain or compressed.
///
/// Memory stays constant: one I/O buffer and the caller's payload buffer
/// ([`RecordReader::read_into`]), which only grows as payloads actually arrive, so a corrupt
/// length field never makes it allocate what the file does not hold.
///
/// ```
/// use shardfeed_record_format::{Compression, ReaderOptions, RecordReader, RecordWriter};
///
/// let mut writer = RecordWriter::new(Vec::new(), Compression::Gzip);
/// writer.write_record(b"hello")?;
/// let (bytes, _index) = writer.finish()?;
///
/// let reader = RecordReader::new(&bytes[..], ReaderOptions::compression(Compression::Gzip));
/// let records: Vec<Vec<u8>> = reader.collect::<Result<_, _>>()?;
/// assert_eq!(records, vec![b"hello".to_vec()]);
/// # Ok::<(), shardfeed_record_format::Error>(())
/// ```
pub struct RecordReader<R: Read> {
    source: Decoder<BufReader<R>>,
    file: FileName,
    options: ReaderOptions,
    offset: u64,
    index: u64,
    finished: bool,
}

impl RecordReader<File> {
    /// Opens the file at `path`.
    pub fn open(path: impl AsRef<Path>, options: ReaderOptions) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(&FileName::new(path), 0, e))?;
        Ok(RecordReader::new(file, options).with_file_name(path))
    }
}

impl<R: Read> RecordReader<R> {
    /// Reads records from `inner`.
    pub fn new(inner: R, options: ReaderOptions) -> Self {
        let buffered = BufReader::with_capacity(BUFFER_BYTES, inner);
        RecordReader {
            source: Decoder::new(buffered, options.compression),
            file: FileName::unknown(),
            options,
            offset: 0,
            index: 0,
            finished: false,
        }
    }

    /// Names the file in error messages.
    pub fn with_file_name(mut self, path: impl AsRef<Path>) -> Self {
        self.file = FileName::new(path);
        self
    }

    /// The index of the next record, which is also the number of records read so far.
    pub fn records_read(&self) -> u64 {
        self.index
    }

    /// The offset of the next record (of the decompressed stream for a compressed file).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn location(&self) -> Location {
        Location {
            file: self.file.clone(),
            index: self.index,
            offset: self.offset,
            compression: self.options.compression,
        }
    }

    /// Reads the next payload into `buf` (replacing its contents).
    ///
    /// Returns `Ok(None)` at a clean end of file. After an error the reader is finished.
    pub fn read_into(&mut self, buf: &mut Vec<u8>) -> Result<Option<RecordInfo>> {
        if self.finished {
            return Ok(None);
        }
        let result = self.read_frame(buf);
        if !matches!(result, Ok(Some(_))) {
            self.finished = true;
        }
        result
    }

    fn read_frame(&mut self, buf: &mut Vec<u8>) -> Result<Option<RecordInfo>> {
        let mut header = [0u8; HEADER_LEN];
        let got = read_up_to(&mut self.source, &mut header).map_err(|e| self.io_error(e))?;
        match got {
            0 => return Ok(None),
            HEADER_LEN => {}
            partial => {
                return Err(frame::corrupt(
                    self.location(),
                    Corruption::TrailingBytes {
                        count: partial as u64,
                    },
                ));
            }
        }
        let len = decode_header(&header, &self.options, || self.location())?;

        buf.clear();
        let got = (&mut self.source)
            .take(len)
            .read_to_end(buf)
            .map_err(|e| self.io_error(e))? as u64;
        if got < len {
            return Err(truncated(self.location(), len, HEADER_LEN as u64 + got));
        }
        let mut footer = [0u8; FOOTER_LEN];
        let got = read_up_to(&mut self.source, &mut footer).map_err(|e| self.io_error(e))?;
        if got < FOOTER_LEN {
            return Err(truncated(
                self.location(),
                len,
                HEADER_LEN as u64 + len + got as u64,
            ));
        }
        check_footer(buf, &footer, &self.options, || self.location())?;

        let info = RecordInfo {
            index: self.index,
            offset: self.offset,
            len,
        };
        self.index += 1;
        self.offset += info.framed_len();
        Ok(Some(info))
    }

    fn io_error(&self, source: io::Error) -> Error {
        Error::io(&self.file, self.offset, source)
    }
}

impl<R: Read> Iterator for RecordReader<R> {
    type Item = Result<Vec<u8>>;

    /// The next payload in a fresh `Vec`; use [`RecordReader::read_into`] to reuse one.
    fn next(&mut self) -> Option<Self::Item> {
        let mut buf = Vec::new();
        self.read_into(&mut buf).transpose().map(|r| r.map(|_| buf))
    }
}

/// Fills `buf` as far as the stream allows; returns how many bytes were read (less than
/// `buf.len()` only at the end of the stream).
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
