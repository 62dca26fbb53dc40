//! The shard folder and the workflows on it, as a library: what `shardfeed shard`, `stream`,
//! `train`, `evaluate` and `predict` do with files, without burn, clap or anyhow.
//!
//! - [`folder`]: the folder's format, with one owner for writing and reading: shard names
//!   (`PREFIX{NN}-{COUNT}.tfrec`), discovery ([`find_shards`]), `manifest.json`
//!   ([`Manifest`]), the `.idx` beside each shard, a folder read once ([`folder::ShardFolder`]:
//!   one listing, one manifest read), the one argument rule ([`folder::resolve`]) and the
//!   writer's lock.
//! - [`label`]: labels from file names (`cat.123.jpg` → `cat`) and the class list;
//!   [`labels`]: the other label sources (class folders, a CSV of `file,label` rows).
//! - [`shard()`]: list → label → seeded shuffle → prepare in parallel → write atomically →
//!   manifest, reporting progress, returning the [`Manifest`] it wrote
//!   (counts, shards, skipped files with reasons).
//! - [`classes`]: a folder's class names (manifest, given, or a scan of the records).
//! - [`stream`]: SPEC §3's read pipeline (decode, cache, shuffle, batch) and
//!   [`FloatBatch`], the `f32` batch a model takes; [`stats`]: what a read delivered and
//!   what its pipeline did, one value for `stream`'s report and the `Loader`'s `stats()`.
//! - [`order`]: the one training order (file shuffle, interleave 16, shuffle buffer) of
//!   `train`, `stream` and the [`loader`].
//! - [`run`]: a training run's data side: the seeded split by files, the training and
//!   validation pipelines, `run.json`.
//! - [`loader`]: batches for another framework's loop (the Python package): one rank's
//!   share of each epoch, numpy-ready buffers, exact resume, damaged records skipped or raised.
//! - [`workers`]: one shard run split across machines (`W` workers, each its own shards and
//!   a part manifest) and the [`workers::merge`] that makes the whole.
//! - [`remote`]: shard folders in object storage (`s3://`, `gs://`, `az://`, `http(s)://`)
//!   behind the same calls: listing, manifest, `.idx`, ranged reads.
//! - [`images`]: JPEG files prepared as a model's input (for prediction).
//! - [`synthetic`]: a deterministic synthetic labelled folder, for trying things out.
//!
//! ```
//! use shardfeed_dataset::folder::Location;
//! use shardfeed_dataset::{Manifest, ShardConfig, shard, synthetic};
//!
//! let dir = tempfile::tempdir()?;
//! let config = synthetic::GenData { n_train: 12, n_test: 0, sides: (40, 60), ..Default::default() };
//! synthetic::generate(dir.path(), &config)?;
//!
//! let out = dir.path().join("shards");
//! let settings = ShardConfig {
//!     input: Location::local(dir.path().join("train")),
//!     out: Location::local(&out),
//!     shards: 4,
//!     size: 32,
//!     ..ShardConfig::default()
//! };
//! let manifest = shard(&settings, |_progress| {})?;
//! assert_eq!((manifest.records, manifest.shards.len()), (12, 4));
//! assert_eq!(Manifest::read_folder(&out)?, Some(manifest));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

pub mod classes;
mod decode;
mod error;
pub mod folder;
pub use folder::remote;
pub mod images;
pub mod inspect;
pub mod label;
pub mod labels;
pub mod limits;
pub mod loader;

pub mod order;
pub mod run;
mod shard;
pub mod stats;
pub mod stream;
pub mod synthetic;
pub mod transform;
pub mod workers;

pub use error::{Error, Result};
pub use folder::{
    MANIFEST_FILE, Manifest, Resize, ShardInfo, SizeRange, Skipped, find_shards, folder_warnings,
    shard_file_name,
};
pub use label::{Classes, is_jpeg_name, label_of};
pub use limits::MAX_FILE_BYTES;
pub use shard::{Progress, ShardConfig, SkipKind, Verify, shard, skip_summary};
pub use stream::{Decoded, FloatBatch, to_float_batch};
