//! The shard folder, one format with one owner: files named `PREFIX{NN}-{COUNT}.tfrec`
//! ([`shard_file_name`]), a `.idx` beside each ([`Index::path_for`]), and `manifest.json`
//! ([`Manifest`]), written by [`crate::shard()`] and read by everything that reads a folder.
//!
//! - names: every file name a folder holds (shards, indexes, manifests, part manifests,
//!   temporary and lock files) and which worker owns which shard ([`Workers`]);
//! - [`ShardFolder`]: a folder read once — one listing, one manifest read — with its shards,
//!   their check against the manifest, the compression rule and the warnings;
//! - [`resolve`]: the one rule from what a user names (folders, files, URLs, globs) to shard
//!   files, for the CLI and Python alike;
//! - [`Location`]: a place (local path, or object-storage URL with its store) parsed once at
//!   the edge; [`local_path`] where only a local path will do;
//! - [`remote`]: the one place that tells a local path from an object-storage URL and reads
//!   or writes either; the writer's lock (one `shard` run per folder) beside it.
//!
//! ```
//! use shardfeed_dataset::{Manifest, ShardInfo, find_shards, shard_file_name};
//!
//! let dir = tempfile::tempdir()?;
//! let manifest = Manifest {
//!     classes: vec!["cat".into(), "dog".into()],
//!     shards: vec![ShardInfo { file: shard_file_name("data", 0, 2), records: 2, per_class: vec![1, 1], bytes: 0 }],
//!     ..Manifest::default()
//! };
//! manifest.write(dir.path())?;
//! assert_eq!(Manifest::read_folder(dir.path())?, Some(manifest));
//! assert!(find_shards(dir.path())?.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod listing;
mod location;
pub(crate) mod lock;
mod manifest;
mod names;
pub mod remote;
mod resolve;

pub use listing::{ShardFolder, checked_shards, find_shards, folder_warnings};
pub use location::{Location, local_path};
pub use manifest::{Manifest, Resize, ShardInfo, SizeRange, Skipped};
pub(crate) use names::own_files;
pub use names::{
    Index, MANIFEST_FILE, Workers, count_in_name, is_dataset_file, is_part_file, is_shard_name,
    part_file_name, provisional_shard_name, shard_file_name, shard_number_of, target_of_temp,
};
pub(crate) use remote::{files_in, files_under};
pub use resolve::{Resolved, resolve};
