//! TFRecord files as a pipeline source: record counts from the `.idx` files (or a scan when
//! a file has none), and fetching any record by address.
//!
//! Plain files are read at each record's indexed offset with one positioned read into a
//! per-thread buffer, both CRCs checked. (They were memory-mapped until the scale run showed
//! the mapped pages counting toward the reader's resident memory: 1.5 GB of RSS for one epoch
//! of 250,000 records, growing with the data. Reads through the page cache keep it flat at
//! the same speed.) Compressed files cannot be read at an offset: each has a cursor that
//! decompresses forward and keeps the records it passes over until they are asked for;
//! since the plan reads every file front to back within a window (interleave, then a
//! shuffle buffer), the kept records stay within that window (`in_flight` + shuffle buffer).
//! A pass that reads only some records (a rank's share, a resumed epoch) says which
//! ([`TfRecordSource::expect`]), and the others are not kept.
//!
//! ```
//! use shardfeed_input_pipeline::tfrecord::TfRecordSource;
//! use shardfeed_input_pipeline::{Parallelism, Plan};
//! use shardfeed_record_format::{Compression, FileWriter, ReaderOptions};
//!
//! let dir = tempfile::tempdir()?;
//! for shard in 0..3 {
//!     let mut writer = FileWriter::create(dir.path().join(format!("data{shard:02}-2.tfrec")), Compression::None)?;
//!     writer.write_record(b"a")?;
//!     writer.write_record(b"b")?;
//!     writer.commit()?;
//! }
//! let files = TfRecordSource::find(dir.path())?;
//! let source = TfRecordSource::open(&files, ReaderOptions::default())?;
//! assert_eq!(source.counts(), [2, 2, 2]);
//! let pipeline = source.pipeline(|plan| plan.interleave(16, 1)).parallelism(Parallelism::Fixed(2));
//! assert_eq!(pipeline.iter().items().count(), 6);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use shardfeed_record_format::{
    Compression, Error as RecordError, FileName, Index, IndexedFile, ReaderOptions, RecordReader,
    count_in_name,
};

use crate::{Address, Error, Pipeline, Plan, Result};

/// Opens TFRecord files as a source ([`TfRecordSource::open`]): record counts from their
/// `.idx` files, or a scan where a file has none.
pub fn tfrecord_dataset(
    files: &[impl AsRef<Path>],
    options: ReaderOptions,
) -> Result<TfRecordSource> {
    TfRecordSource::open(files, options)
}

/// Where a file's record count came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountSource {
    /// The `.idx` file beside it.
    IndexFile,
    /// A scan of the whole file (it had no `.idx`).
    Scan,
}

/// One file of a [`TfRecordSource`].
#[derive(Debug, Clone)]
pub struct TfRecordFile {
    /// The file.
    pub path: PathBuf,
    /// Its number of records.
    pub records: u64,
    /// How that number was found.
    pub counted_by: CountSource,
}

enum FileData {
    Plain(IndexedFile),
    Compressed(Mutex<Cursor>),
}

/// TFRecord files, counted and ready to be read by record address.
pub struct TfRecordSource {
    files: Vec<TfRecordFile>,
    data: Vec<FileData>,
}

impl TfRecordSource {
    /// The `*.tfrec` files of a directory, in name order.
    pub fn find(dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
        let dir = dir.as_ref();
        let io_error = |e| {
            Error::Record(RecordError::Io {
                file: FileName::new(dir),
                offset: 0,
                source: e,
            })
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_error)? {
            let path = entry.map_err(io_error)?.path();
            if path.extension().is_some_and(|e| e == "tfrec") && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        Ok(files)
    }

    /// Opens `files`: counts their records from `.idx` files, or by a scan where a file has
    /// none. An index that does not match its file is an error, not a silent rescan, and so is
    /// a count that differs from the one the file's name states ([`count_in_name`]).
    pub fn open(files: &[impl AsRef<Path>], options: ReaderOptions) -> Result<Self> {
        let mut infos = Vec::with_capacity(files.len());
        let mut data = Vec::with_capacity(files.len());
        for path in files {
            let path = path.as_ref();
            let index_path = Index::path_for(path);
            let (index, counted_by) = if index_path.exists() {
                (Index::read(&index_path)?, CountSource::IndexFile)
            } else {
                (Index::scan(path, options)?, CountSource::Scan)
            };
            let records = index.len() as u64;
            data.push(match options.compression {
                // Rejects an index that does not cover the file exactly, naming both sizes.
                Compression::None => {
                    FileData::Plain(IndexedFile::with_index(path, index, options)?)
                }
                _ => FileData::Compressed(Mutex::new(Cursor::new(path, options))),
            });
            // A file cut at a record boundary still parses; the count its name states (the
            // tutorial's `PREFIX{shard:02}-{count}.tfrec`) tells.
            if let Some(named) = count_in_name(path)
                && named != records
            {
                return Err(RecordError::CountMismatch {
                    file: FileName::new(path),
                    named,
                    found: records,
                }
                .into());
            }
            infos.push(TfRecordFile {
                path: path.to_path_buf(),
                records,
                counted_by,
            });
        }
        Ok(TfRecordSource { files: infos, data })
    }

    /// Files the caller opened itself (objects in object storage, read through a
    /// [`shardfeed_record_format::RandomRead`]), each with its index: the same count check
    /// against the name as [`TfRecordSource::open`]. Uncompressed files only.
    pub fn from_indexed(files: Vec<(PathBuf, IndexedFile)>) -> Result<Self> {
        let mut infos = Vec::with_capacity(files.len());
        let mut data = Vec::with_capacity(files.len());
        for (path, file) in files {
            let records = file.len() as u64;
            if let Some(named) = count_in_name(&path)
                && named != records
            {
                return Err(RecordError::CountMismatch {
                    file: FileName::new(&path),
                    named,
                    found: records,
                }
                .into());
            }
            infos.push(TfRecordFile {
                path,
                records,
                counted_by: CountSource::IndexFile,
            });
            data.push(FileData::Plain(file));
        }
        Ok(TfRecordSource { files: infos, data })
    }

    /// The files, in the order given.
    pub fn files(&self) -> &[TfRecordFile] {
        &self.files
    }

    /// Records per file.
    pub fn counts(&self) -> Vec<u64> {
        self.files.iter().map(|f| f.records).collect()
    }

    /// Records in all files.
    pub fn total_records(&self) -> u64 {
        self.files.iter().map(|f| f.records).sum()
    }

    /// A plan over these files' records (one epoch, in order; configure it further).
    pub fn plan(&self) -> Plan {
        Plan::new(self.counts())
    }

    /// The byte offset of a record's frame in its file, where the file's index is held (plain
    /// files); `None` for compressed files or an address out of range.
    pub fn record_offset(&self, address: Address) -> Option<u64> {
        match self.data.get(address.source as usize)? {
            FileData::Plain(file) => {
                let i = usize::try_from(address.index).ok()?;
                file.index().entries().get(i).map(|entry| entry.offset)
            }
            FileData::Compressed(_) => None,
        }
    }

    /// Says which records the coming pass fetches (a rank's share, the rest of a resumed
    /// epoch): a compressed file's cursor then keeps, of the records it passes over, only
    /// those. Plain files are read by offset and keep nothing anyway.
    pub fn expect(&self, addresses: &[Address]) {
        let mut wanted: Vec<Option<Vec<bool>>> = vec![None; self.data.len()];
        for (i, data) in self.data.iter().enumerate() {
            if matches!(data, FileData::Compressed(_)) {
                wanted[i] = Some(vec![false; self.files[i].records as usize]);
            }
        }
        for address in addresses {
            if let Some(Some(file)) = wanted.get_mut(address.source as usize)
                && let Some(slot) = file.get_mut(address.index as usize)
            {
                *slot = true;
            }
        }
        for (data, wanted) in self.data.iter().zip(wanted) {
            if let FileData::Compressed(cursor) = data {
                let mut cursor = cursor.lock().unwrap_or_else(|p| p.into_inner());
                cursor.kept.retain(|&index, _| {
                    wanted
                        .as_ref()
                        .is_some_and(|w| w.get(index as usize).copied().unwrap_or(false))
                });
                cursor.wanted = wanted;
            }
        }
    }

    /// Records compressed files' cursors hold, passed over and not yet fetched.
    pub fn records_kept(&self) -> usize {
        self.data
            .iter()
            .map(|data| match data {
                FileData::Compressed(cursor) => {
                    cursor.lock().unwrap_or_else(|p| p.into_inner()).kept.len()
                }
                FileData::Plain(_) => 0,
            })
            .sum()
    }

    /// The payload of one record, both CRCs checked (as the options say).
    pub fn fetch(&self, address: Address) -> Result<Vec<u8>, RecordError> {
        self.fetch_with(address, |payload| payload.to_vec())
    }

    /// Calls `f` on the payload of one record, both CRCs checked, without copying it out of
    /// the memory map (plain files).
    pub fn fetch_with<R>(
        &self,
        address: Address,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, RecordError> {
        let file_name = || {
            self.files
                .get(address.source as usize)
                .map_or_else(FileName::unknown, |f| FileName::new(&f.path))
        };
        let out_of_range = |count: usize| RecordError::RecordOutOfRange {
            file: file_name(),
            index: address.index,
            count: count as u64,
        };
        let data = self
            .data
            .get(address.source as usize)
            .ok_or_else(|| out_of_range(0))?;
        match data {
            FileData::Plain(file) => {
                let i = usize::try_from(address.index).unwrap_or(usize::MAX);
                // The buffer is taken out of the thread's slot while `f` runs, so a nested
                // fetch (if `f` ever made one) would get a fresh one rather than panic.
                let mut buffer = READ_BUFFER.take();
                let result = file.with_plain_record(i, &mut buffer, f);
                READ_BUFFER.set(buffer);
                result
            }
            FileData::Compressed(cursor) => {
                let payload = cursor
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .fetch(address.index)?;
                Ok(f(&payload))
            }
        }
    }

    /// A pipeline of `parse(payload)` for these files' records, over the plan `configure`
    /// makes of [`TfRecordSource::plan`]; `parse` sees each payload in place (no copy).
    pub fn parsed_pipeline<T: Send + 'static, E: Into<crate::BoxError>>(
        self,
        configure: impl FnOnce(Plan) -> Plan,
        parse: impl Fn(&[u8]) -> Result<T, E> + Send + Sync + 'static,
    ) -> Pipeline<T> {
        let plan = configure(self.plan());
        let source = Arc::new(self);
        Pipeline::new(plan, move |address| -> Result<T, crate::BoxError> {
            source.fetch_with(address, &parse)?.map_err(Into::into)
        })
    }

    /// Like [`TfRecordSource::parsed_pipeline`], with state of each worker's own (a JPEG
    /// decoder): `init` makes it once per worker, `parse` borrows it for each payload
    /// ([`Pipeline::new_init`]).
    pub fn parsed_pipeline_init<S: 'static, T: Send + 'static, E, E2>(
        self,
        configure: impl FnOnce(Plan) -> Plan,
        init: impl Fn() -> Result<S, E2> + Send + Sync + 'static,
        parse: impl Fn(&mut S, &[u8]) -> Result<T, E> + Send + Sync + 'static,
    ) -> Pipeline<T>
    where
        E: Into<crate::BoxError>,
        E2: Into<crate::BoxError>,
    {
        let plan = configure(self.plan());
        let source = Arc::new(self);
        Pipeline::new_init(
            plan,
            init,
            move |state: &mut S, address| -> Result<T, crate::BoxError> {
                source
                    .fetch_with(address, |payload| parse(state, payload))?
                    .map_err(Into::into)
            },
        )
    }

    /// A pipeline of these files' record payloads, over the plan `configure` makes of
    /// [`TfRecordSource::plan`].
    pub fn pipeline(self, configure: impl FnOnce(Plan) -> Plan) -> Pipeline<Vec<u8>> {
        let plan = configure(self.plan());
        let source = Arc::new(self);
        Pipeline::new(plan, move |address| source.fetch(address))
    }
}

thread_local! {
    /// Each reading thread's frame buffer (a record's size; reused for every record).
    static READ_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Reads a compressed file forward, keeping records passed over until they are fetched —
/// only those the pass asks for, when it said which ([`TfRecordSource::expect`]).
struct Cursor {
    path: PathBuf,
    options: ReaderOptions,
    reader: Option<RecordReader<File>>,
    next: u64,
    kept: HashMap<u64, Vec<u8>>,
    /// The records of this file the pass asks for (`None`: every record).
    wanted: Option<Vec<bool>>,
}

impl Cursor {
    fn new(path: &Path, options: ReaderOptions) -> Self {
        Cursor {
            path: path.to_path_buf(),
            options,
            reader: None,
            next: 0,
            kept: HashMap::new(),
            wanted: None,
        }
    }

    fn fetch(&mut self, index: u64) -> Result<Vec<u8>, RecordError> {
        if let Some(data) = self.kept.remove(&index) {
            return Ok(data);
        }
        if index < self.next || self.reader.is_none() {
            // A new epoch (or the first read): start over.
            self.reader = Some(RecordReader::open(&self.path, self.options)?);
            self.next = 0;
            self.kept.clear();
        }
        let result = self.read_until(index);
        if result.is_err() {
            self.reader = None;
        }
        result
    }

    fn read_until(&mut self, index: u64) -> Result<Vec<u8>, RecordError> {
        let reader = self.reader.as_mut().expect("opened by fetch");
        loop {
            let mut data = Vec::new();
            if reader.read_into(&mut data)?.is_none() {
                return Err(RecordError::RecordOutOfRange {
                    file: FileName::new(&self.path),
                    index,
                    count: self.next,
                });
            }
            let current = self.next;
            self.next += 1;
            if current == index {
                return Ok(data);
            }
            let asked_for = self
                .wanted
                .as_ref()
                .is_none_or(|wanted| wanted.get(current as usize).copied().unwrap_or(false));
            if asked_for {
                self.kept.insert(current, data);
            }
        }
    }
}
