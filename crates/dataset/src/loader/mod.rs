//! Training batches for another framework's loop (the Python package's `Loader`): numpy-ready
//! pixel buffers, one rank's share of each epoch, exact resume, damaged records skipped or
//! reported.
//!
//! # One epoch, many ranks
//!
//! Epoch `e`'s order is the one `shardfeed train` uses: the files shuffled (seeded),
//! interleaved 16 at a time, passed through a shuffle buffer ([`Plan`]); it is computed from
//! the record counts alone. The order is cut into *steps* of `world_size × batch_size`
//! records; in each step rank `r` takes the `r`-th run of `batch_size`. So every rank gets
//! the same number of batches, and the ranks' batches are disjoint and together the epoch.
//! What does not fill a whole step (fewer than `world_size × batch_size` records):
//!
//! - `drop_remainder = true` (the default): dropped, on every rank (counted:
//!   [`EpochShare::dropped`]); a different part of the data each epoch, since the order changes.
//! - `drop_remainder = false`: split into `world_size` equal last batches of
//!   ⌈tail / world_size⌉ records; where the tail does not divide evenly, the last ranks' last
//!   batches are completed with records from the start of the epoch's order (counted:
//!   [`EpochShare::padded`]). With one rank nothing is padded.
//!
//! # Resume
//!
//! A [`Position`] is (epoch, records of that epoch's order consumed by all ranks together);
//! it is the same on every rank after the same number of batches. Continuing from it cuts the
//! rest of the epoch into steps again, so it may be continued by a different number of ranks:
//! the rest of the epoch is still covered exactly once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shardfeed_input_pipeline::split::split_files;
use shardfeed_input_pipeline::tfrecord::TfRecordSource;
use shardfeed_input_pipeline::{
    Address, BoxError, CacheBudget, CacheOverflow, Pipeline, PipelineIter, Plan, Repeat, Stats,
};
use shardfeed_record_format::ReaderOptions;

use crate::decode::{Decoded, RecordDecoder, RecordRules, decode_at};
pub use crate::error::Damaged;
use crate::folder::Resolved;
use crate::transform::{Transform, TransformWorker, Transformed, transform_at};
pub use batches::{EpochBatches, LoaderBatch, Pixels, Traced};
pub use config::{Dtype, Layout, LoaderConfig, OnDamaged, SplitPart};
use shardfeed_image_prep::output::{Axes, PixelWriter};
pub use slabs::BufferPool;

mod batches;
mod config;
mod pipelines;
mod slabs;
mod state;
use crate::{Error, Result};
use pipelines::{decode_pipeline, transform_pipeline};

/// A decoded record, or why it could not be.
#[derive(Debug, Clone)]
enum Slot {
    Image(Address, Decoded),
    Transformed(Address, Box<Transformed>),
    /// Written by its worker into its batch's buffer ([`slabs::Slabs`]).
    Written {
        address: Address,
        position: u64,
        class: i64,
        applied: shardfeed_image_prep::augment::Applied,
    },
    Damaged(Arc<Damaged>),
}

/// Where a run of epochs stands: the epoch, and how many records of its order all ranks
/// together have consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Position {
    /// The epoch, from 0.
    pub epoch: u64,
    /// Records of the epoch's order consumed.
    pub offset: u64,
}

/// What a saved [`Position`] is checked against before it is used: the data and the order's
/// settings (not the ranks, which may change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoaderState {
    /// `shardfeed.loader/1`.
    pub format: String,
    /// Where to continue.
    pub epoch: u64,
    /// Records of the epoch consumed by all ranks.
    pub offset: u64,
    /// Records per epoch.
    pub records: u64,
    /// A fingerprint of the files (names and counts) and of the order's settings, in hex.
    pub fingerprint: String,
    /// The batch size.
    pub batch_size: usize,
    /// The ranks when it was saved (informational: a different number may continue).
    pub world_size: usize,
    /// The transform's output side when it was saved, where it was changed from the one the
    /// loader was made with (progressive resizing; absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
}

/// The state's format tag.
pub const STATE_FORMAT: &str = "shardfeed.loader/1";

/// The largest epoch a state may name (a run of a trillion epochs is not a run).
pub const MAX_EPOCH: u64 = 1 << 40;

/// One rank's records for (the rest of) one epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochShare {
    /// The epoch.
    pub epoch: u64,
    /// The offset it starts from.
    pub start: u64,
    /// The records, in batch order.
    pub addresses: Vec<Address>,
    /// Batches.
    pub batches: u64,
    /// Records repeated to even out the last batches (this rank's).
    pub padded: u64,
    /// Records left out because they did not fill a step (all ranks).
    pub dropped: u64,
}

/// Shard files opened for loading (see the module docs).
pub struct Loader {
    files: Vec<PathBuf>,
    counts: Arc<[u64]>,
    config: LoaderConfig,
    order: Plan,
    base: Pipeline<Slot>,
    source: Arc<TfRecordSource>,
    /// Why images are resized as they are read ([`RecordRules::note`]).
    note: Option<String>,
    /// The rules records are checked against (for the transform path's per-epoch pipelines).
    rules: RecordRules,
    /// The one copy out: type, layout, normalisation.
    writer: Arc<PixelWriter>,
    /// Batch buffers given back for the next batches.
    pool: Arc<BufferPool>,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("files", &self.files)
            .field("counts", &self.counts)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Loader {
    /// Why images are resized as they are read, to say once (`None`: every record is
    /// already the square served).
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// Opens shard files (given in any order: they are sorted, as `shardfeed train` sorts
    /// them), applying the configured split.
    pub fn open(files: &[PathBuf], config: LoaderConfig) -> Result<Loader> {
        Loader::open_from(files, config, None)
    }

    /// [`Loader::open`] on the files `resolved` found ([`crate::folder::resolve`]): their
    /// folders' listings, manifests and stores are used, not asked for again.
    pub fn open_resolved(resolved: &Resolved, config: LoaderConfig) -> Result<Loader> {
        Loader::open_from(&resolved.files, config, Some(resolved))
    }

    fn open_from(
        files: &[PathBuf],
        config: LoaderConfig,
        resolved: Option<&Resolved>,
    ) -> Result<Loader> {
        crate::limits::check_batch(config.batch_size, config.world_size)?;
        crate::limits::check_jobs(config.jobs)?;
        if config.world_size == 0 || config.rank >= config.world_size {
            return Err(Error::Invalid(format!(
                "rank {} is not below world_size {}",
                config.rank, config.world_size
            )));
        }
        let mut sorted = files.to_vec();
        sorted.sort();
        sorted.dedup();
        if sorted.is_empty() {
            return Err(Error::Invalid("no shard files given".into()));
        }
        let files = match config.split {
            None => sorted,
            Some((part, fraction)) => {
                if !(0.0..1.0).contains(&fraction) {
                    return Err(Error::Invalid(format!(
                        "validation fraction {fraction} is not in [0, 1)"
                    )));
                }
                let split = split_files(&sorted, fraction, config.seed);
                match part {
                    SplitPart::Train => split.train,
                    SplitPart::Validation => split.validation,
                }
            }
        };
        if files.is_empty() {
            return Err(Error::Invalid(format!(
                "the {} side of the split holds no file",
                if matches!(config.split, Some((SplitPart::Train, _))) {
                    "training"
                } else {
                    "validation"
                }
            )));
        }
        let options = ReaderOptions::compression(config.compression);
        let source = match resolved {
            Some(resolved) => resolved.open_source(&files, options)?,
            None => crate::remote::open_source(&files, options)?,
        };
        let counts: Arc<[u64]> = source.counts().into();
        let records: u64 = counts.iter().sum();
        let step = (config.batch_size * config.world_size) as u64;
        if config.drop_remainder && records < step {
            return Err(Error::TooFewRecords {
                records,
                folder: files[0].parent().unwrap_or(Path::new(".")).to_path_buf(),
                batch: step as usize,
            });
        }
        if records == 0 {
            return Err(Error::Invalid("the shard files hold no record".into()));
        }
        let order = crate::order::training_order(
            Plan::new(counts.clone()),
            config.seed,
            config.shuffle,
            Repeat::Forever,
        );
        let folder = resolved.and_then(|r| r.folder_of(&files[0]));
        let mut rules = RecordRules::of_source_in(&source, folder, &config.format)?;
        if let Some(transform) = &config.transform {
            transform.check()?;
            // The transform makes its own square: no resize to the reader's side, no note.
            rules.side = None;
            rules.note = None;
        }
        let note = rules.note.clone();
        let writer = PixelWriter::new(
            config.dtype.element(),
            match config.layout {
                Layout::Nhwc => Axes::Hwc,
                Layout::Nchw => Axes::Chw,
            },
            config.transform.and_then(|t| t.normalize),
        )
        .map_err(Error::Invalid)?;
        let source = Arc::new(source);
        let base = decode_pipeline(source.clone(), rules.clone(), counts.clone());
        let base = if config.cache && config.transform.is_none() {
            base.cache(
                CacheBudget::new(config.cache_budget, |slot: &Slot| match slot {
                    Slot::Image(_, d) => d.image.pixels.len() as u64,
                    Slot::Transformed(..) | Slot::Written { .. } | Slot::Damaged(_) => 0,
                })
                .on_overflow(CacheOverflow::Recompute),
            )
        } else {
            base
        };
        Ok(Loader {
            files,
            counts,
            config,
            order,
            base,
            source,
            note,
            rules,
            writer: Arc::new(writer),
            pool: Arc::default(),
        })
    }

    /// The files read (after the split), sorted.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Records per epoch (all ranks).
    pub fn records(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The settings.
    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// This rank's batches in a whole epoch.
    pub fn batches_per_epoch(&self) -> u64 {
        let (steps, tail) = self.steps(self.records());
        steps + u64::from(tail > 0 && !self.config.drop_remainder)
    }

    fn steps(&self, records: u64) -> (u64, u64) {
        let step = (self.config.batch_size * self.config.world_size) as u64;
        (records / step, records % step)
    }

    /// Epoch `epoch`'s order, all ranks (the order `shardfeed train` reads the same files in).
    pub fn epoch_order(&self, epoch: u64) -> Vec<Address> {
        let records = self.records();
        self.order
            .iter_from(epoch * records)
            .take(records as usize)
            .map(|p| p.address)
            .collect()
    }

    /// This rank's records from `position` to the end of its epoch.
    pub fn share(&self, position: Position) -> EpochShare {
        let order = self.epoch_order(position.epoch);
        let (w, r, b) = (
            self.config.world_size,
            self.config.rank,
            self.config.batch_size,
        );
        let start = (position.offset as usize).min(order.len());
        let rest = &order[start..];
        let step = w * b;
        let steps = rest.len() / step;
        let mut addresses = Vec::with_capacity(steps * b + b);
        for s in 0..steps {
            addresses.extend_from_slice(&rest[s * step + r * b..s * step + (r + 1) * b]);
        }
        let tail = &rest[steps * step..];
        let (mut batches, mut padded, mut dropped) = (steps as u64, 0, 0);
        if !tail.is_empty() {
            if self.config.drop_remainder {
                dropped = tail.len() as u64;
            } else {
                let per = tail.len().div_ceil(w);
                for i in r * per..(r + 1) * per {
                    if let Some(&address) = tail.get(i) {
                        addresses.push(address);
                    } else {
                        addresses.push(order[(i - tail.len()) % order.len()]);
                        padded += 1;
                    }
                }
                batches += 1;
            }
        }
        EpochShare {
            epoch: position.epoch,
            start: start as u64,
            addresses,
            batches,
            padded,
            dropped,
        }
    }

    /// Starts the workers on this rank's batches from `position` to the end of its epoch.
    pub fn epoch(&self, position: Position) -> EpochBatches {
        self.epoch_at_size(position, None)
    }

    /// [`Loader::epoch`] with the transform's output side changed to `size` (progressive
    /// resizing; `None` or no transform: as configured).
    pub fn epoch_at_size(&self, position: Position, size: Option<u32>) -> EpochBatches {
        let share = self.share(position);
        // A compressed file is read forward: its cursor keeps only this rank's records of
        // those it passes over.
        self.source.expect(&share.addresses);
        let plan = Plan::with_order(self.counts.clone(), share.addresses.clone());
        let mut slabs = None;
        let pipeline = match self.config.transform {
            None => self.base.clone().map_plan(|_| plan),
            Some(transform) => {
                let transform = match size {
                    Some(size) => transform.at_size(size),
                    None => transform,
                };
                // In deterministic mode item `p` is slot `p % batch` of batch `p / batch`:
                // the workers write each image into its batch's buffer.
                if self.config.deterministic {
                    slabs = Some(Arc::new(slabs::Slabs::new(
                        self.config.batch_size,
                        transform.augment.size as usize,
                        self.config.dtype,
                        self.pool.clone(),
                    )));
                }
                transform_pipeline(
                    self.source.clone(),
                    self.rules.clone(),
                    transform,
                    (self.config.seed, position.epoch),
                    plan,
                    slabs.clone().map(|s| (s, self.writer.clone())),
                )
            }
        };
        let side = self
            .config
            .transform
            .map(|t| size.unwrap_or(t.augment.size) as usize);
        // The batches the workers may be filling while the consumer holds one: made ahead.
        let ahead = (pipeline.peak_items() / self.config.batch_size + 1) as u64;
        if let Some(slabs) = &slabs {
            slabs.prepare(0..ahead.min(share.batches));
        }
        let iter = pipeline
            .parallelism(self.config.jobs)
            .deterministic(self.config.deterministic)
            .batch(self.config.batch_size, false)
            .prefetch(2)
            .iter();
        EpochBatches {
            iter,
            share,
            yielded: 0,
            config: self.config.clone(),
            writer: self.writer.clone(),
            slabs,
            ahead,
            side,
            waited: Duration::ZERO,
            started: Instant::now(),
        }
    }
}
