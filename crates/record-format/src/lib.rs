//! TFRecord files and `tf.train.Example`, bit-compatible with TensorFlow.
//!
//! This crate reads and writes the container TensorFlow's `tf.data.TFRecordDataset` and
//! `tf.io.TFRecordWriter` use, and nothing about images: a record is a byte payload, usually
//! a serialised [`Example`].
//!
//! - Framing ([`frame`]): `u64` length, masked CRC-32C of the length, payload, masked CRC-32C
//!   of the payload; hardware CRC-32C ([`crc`]).
//! - Reading: [`RecordReader`] streams from any `Read` in constant memory, plain, GZIP or
//!   ZLIB ([`Compression`]). Every error names the file, the record index and the byte offset, and
//!   what is wrong ([`Corruption`]), including stray bytes TensorFlow silently ignores.
//! - Writing: [`RecordWriter`] into any `Write`; [`FileWriter`] writes a whole file
//!   atomically together with its `.idx` file.
//! - Index ([`Index`]): DALI's `tfrecord2idx` text format, written while writing, read back
//!   for counts and random access ([`IndexedFile::read_record`]), or rebuilt by a scan.
//! - Shard names ([`shard_file_name`], [`count_in_name`]): the record count a shard's name
//!   states, written and read in one place; [`atomic`]: the one atomic file write.
//! - Protobuf ([`Example`], [`Feature`], …) with `prost`, no `protoc` needed, and the typed
//!   [`ImageExample`] (`image` bytes + `class` int64).
//!
//! ```
//! use shardfeed_record_format::{FileWriter, ImageExample, RecordReader, ReaderOptions, Compression};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("cat_dog00-1.tfrec");
//! let mut writer = FileWriter::create(&path, Compression::None)?;
//! writer.write_record(&ImageExample { image: b"\xff\xd8\xff...".to_vec(), class: 1, size: None }.to_bytes())?;
//! writer.commit()?;
//!
//! for payload in RecordReader::open(&path, ReaderOptions::default())? {
//!     let record = ImageExample::decode(&payload?)?;
//!     assert_eq!(record.class, 1);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

pub mod atomic;
pub mod bounded;
mod compression;
pub mod crc;
mod error;
mod example;
pub mod frame;
mod index;
mod reader;
mod shard_set;
mod writer;

pub use compression::{Compression, UnknownCompression};
pub use error::{Corruption, Error, FileName, Location, Result};
pub use example::{
    BytesList, Example, ExampleKeys, Feature, Features, FloatList, ImageExample, Int64List, Kind,
};
pub use frame::ReaderOptions;
pub use index::{
    Index, IndexEntry, IndexedFile, MAX_SCAN_BYTES, MAX_SCAN_RECORDS, RandomRead, Scanned,
};
pub use reader::{RecordInfo, RecordReader};
pub use shard_set::{count_in_name, provisional_shard_name, shard_file_name};
pub use writer::{FileWriter, RecordWriter};
