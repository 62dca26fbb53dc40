//! Writing TFRecord files: frames into any `Write`, or a whole file written atomically with
//! its `.idx` index.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::compression::Encoder;
use crate::frame::{self, encode_footer, encode_header};
use crate::index::{Index, IndexEntry};
use crate::{Compression, Error, FileName, Result};

const BUFFER_BYTES: usize = 256 * 1024;

/// Writes TFRecord frames into any `Write`, optionally compressed, and records an
/// [`Index`] entry for each.
///
/// Call [`RecordWriter::finish`]: it writes a compressed stream's trailer; dropping the writer
/// instead leaves a compressed stream unterminated.
pub struct RecordWriter<W: Write> {
    sink: Encoder<W>,
    file: FileName,
    offset: u64,
    index: Index,
}

impl<W: Write> RecordWriter<W> {
    /// Writes into `inner`, compressed as asked. Wrap a `File` in a `BufWriter` yourself, or
    /// use [`FileWriter`], which does.
    pub fn new(inner: W, compression: Compression) -> Self {
        RecordWriter {
            sink: Encoder::new(inner, compression),
            file: FileName::unknown(),
            offset: 0,
            index: Index::default(),
        }
    }

    /// Names the file in error messages.
    pub fn with_file_name(mut self, file: FileName) -> Self {
        self.file = file;
        self
    }

    /// Appends one record; returns where it went (offset of the uncompressed stream).
    pub fn write_record(&mut self, data: &[u8]) -> Result<IndexEntry> {
        let entry = IndexEntry {
            offset: self.offset,
            len: data.len() as u64 + frame::FRAMING_LEN,
        };
        let header = encode_header(data.len() as u64);
        let footer = encode_footer(data);
        self.sink
            .write_all(&header)
            .and_then(|()| self.sink.write_all(data))
            .and_then(|()| self.sink.write_all(&footer))
            .map_err(|e| Error::io(&self.file, self.offset, e))?;
        self.offset += entry.len;
        self.index.push(entry);
        Ok(entry)
    }

    /// Records written so far.
    pub fn records_written(&self) -> u64 {
        self.index.len() as u64
    }

    /// Bytes of the uncompressed record stream written so far.
    pub fn bytes_written(&self) -> u64 {
        self.offset
    }

    /// The index of the records written so far.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Ends the stream (writing a compressed stream's trailer), flushes, and returns the
    /// inner writer and the index.
    pub fn finish(self) -> Result<(W, Index)> {
        let file = self.file;
        let offset = self.offset;
        let mut inner = self
            .sink
            .finish()
            .map_err(|e| Error::io(&file, offset, e))?;
        inner.flush().map_err(|e| Error::io(&file, offset, e))?;
        Ok((inner, self.index))
    }
}

/// Writes one TFRecord file atomically, with its index.
///
/// Records go to a temporary file beside the target (`.NAME.PID-N.tmp`, created exclusively); [`FileWriter::commit`]
/// flushes it to disk, renames it to the target name and writes `NAME.idx` the same way. An
/// interrupted or failed write, or a writer dropped without `commit`, leaves no file under
/// the target name (a dropped writer removes its temporary file).
///
/// ```
/// use shardfeed_record_format::{Compression, FileWriter, Index};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("data00-2.tfrec");
/// let mut writer = FileWriter::create(&path, Compression::None)?;
/// writer.write_record(b"a")?;
/// writer.write_record(b"bc")?;
/// let index = writer.commit()?;
/// assert_eq!(index.len(), 2);
/// assert_eq!(Index::read(Index::path_for(&path))?, index);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FileWriter {
    writer: Option<RecordWriter<BufWriter<File>>>,
    path: PathBuf,
    temp_path: PathBuf,
}

impl FileWriter {
    /// Starts writing the file at `path`.
    pub fn create(path: impl AsRef<Path>, compression: Compression) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let (file, temp_path) = crate::atomic::create_temp_for(&path)
            .map_err(|e| Error::io(&FileName::new(&path), 0, e))?;
        let writer = RecordWriter::new(BufWriter::with_capacity(BUFFER_BYTES, file), compression)
            .with_file_name(FileName::new(&temp_path));
        Ok(FileWriter {
            writer: Some(writer),
            path,
            temp_path,
        })
    }

    /// Appends one record.
    pub fn write_record(&mut self, data: &[u8]) -> Result<IndexEntry> {
        self.writer_mut().write_record(data)
    }

    /// Records written so far.
    pub fn records_written(&self) -> u64 {
        self.writer
            .as_ref()
            .map_or(0, RecordWriter::records_written)
    }

    /// The path the file will have once committed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn writer_mut(&mut self) -> &mut RecordWriter<BufWriter<File>> {
        self.writer
            .as_mut()
            .expect("the writer is only taken by commit, which consumes self")
    }

    /// Finishes the file, syncs it, renames it into place and writes its `.idx` file.
    ///
    /// On failure the temporary file is removed; the error names the file and offset.
    pub fn commit(self) -> Result<Index> {
        let path = self.path.clone();
        self.commit_as(path)
    }

    /// Like [`FileWriter::commit`], under another final name (in the same directory), for
    /// names that depend on what was written, such as a shard's record count.
    pub fn commit_as(mut self, path: impl AsRef<Path>) -> Result<Index> {
        let writer = self
            .writer
            .take()
            .expect("the writer is only taken by commit, which consumes self");
        let result = self.finish_and_rename(writer, path.as_ref());
        if result.is_err() {
            let _ = fs::remove_file(&self.temp_path);
        }
        result
    }

    fn finish_and_rename(
        &self,
        writer: RecordWriter<BufWriter<File>>,
        path: &Path,
    ) -> Result<Index> {
        let temp_name = FileName::new(&self.temp_path);
        let written = writer.bytes_written();
        let (buffered, index) = writer.finish()?;
        let file = buffered
            .into_inner()
            .map_err(|e| Error::io(&temp_name, written, e.into_error()))?;
        file.sync_all()
            .map_err(|e| Error::io(&temp_name, written, e))?;
        drop(file);
        // The records first: a crash between the two renames leaves a complete file without
        // an index, which readers rebuild by a scan, never an index without its file.
        fs::rename(&self.temp_path, path)
            .and_then(|()| crate::atomic::sync_dir_of(path))
            .map_err(|e| Error::io(&FileName::new(path), 0, e))?;
        crate::atomic::write_record_file_atomically(
            &Index::path_for(path),
            index.to_text().as_bytes(),
        )?;
        Ok(index)
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        if self.writer.is_some() {
            // Not committed: leave nothing behind. Nothing more can be done if this fails.
            let _ = fs::remove_file(&self.temp_path);
        }
    }
}
