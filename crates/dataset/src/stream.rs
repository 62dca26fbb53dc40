//! SPEC §3's read pipeline: the pieces training, evaluation and `stream` share, and
//! [`stream`], the pipeline without a model, measured.
//!
//! interleave 16 → parse `tf.train.Example` → JPEG decode (in the parallel map, one decoder
//! per worker) → cache of the decoded `u8` pixels (4× smaller than TensorFlow's `f32` cache)
//! → repeat → shuffle 2048 → batch → prefetch → the consumer, which converts each batch to
//! `f32` ([`Preprocessing::extend_f32`], the one `/ 255`) as a training step receives it.

use std::time::{Duration, Instant};

use shardfeed_image_prep::Preprocessing;
use shardfeed_input_pipeline::tfrecord::TfRecordSource;
use shardfeed_input_pipeline::{CacheBudget, CacheOverflow, Parallelism, Pipeline, Plan, Repeat};
use shardfeed_record_format::{Compression, ReaderOptions};

pub use crate::decode::{
    DECODE_BUDGET, DEFAULT_SIDE, Decoded, RecordFormat, RecordRules, decoded_pipeline,
};
use crate::folder::{Location, ShardFolder};
use crate::stats::{EpochStats, ReadStats};
use crate::transform::{Transform, augmented_pipeline};
use crate::{Error, Result};

/// What to stream and how.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// The shard folder (local, or in object storage).
    pub shards: Location,
    /// Passes over the data.
    pub epochs: u64,
    /// Batch size (the last, partial batch is dropped).
    pub batch: usize,
    /// Cache the decoded images in memory (within `cache_budget` bytes).
    pub cache: bool,
    /// The most bytes of decoded pixels cached; images past it are decoded again each epoch
    /// (counted and reported).
    pub cache_budget: u64,
    /// Reproducible order.
    pub deterministic: bool,
    /// Seed of the file and shuffle order.
    pub seed: u64,
    /// Decode threads.
    pub jobs: Parallelism,
    /// The shards' compression.
    pub compression: Compression,
    /// The records' feature names and the square images are made into.
    pub format: RecordFormat,
    /// Read the shard files as they are, even where they disagree with `manifest.json`.
    pub ignore_manifest: bool,
    /// A training-time crop and flip drawn per record and epoch (`stream --crop`): every
    /// epoch decodes anew (no cache).
    pub transform: Option<Transform>,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            shards: Location::local("shards"),
            epochs: 3,
            batch: 32,
            cache: true,
            cache_budget: 4 << 30,
            deterministic: false,
            seed: 42,
            jobs: Parallelism::Auto,
            compression: Compression::None,
            format: RecordFormat::default(),
            ignore_manifest: false,
            transform: None,
        }
    }
}

/// What a run measured (the CLI prints it, or writes it as JSON).
#[derive(Debug, Clone)]
pub struct StreamReport {
    /// Shard files read.
    pub files: usize,
    /// Records per epoch.
    pub records: u64,
    /// Per epoch.
    pub epochs: Vec<EpochStats>,
    /// The run's totals: images, batches, stages, cache, tuner ([`ReadStats`], what the
    /// Python `Loader`'s `stats()` shows too).
    pub stats: ReadStats,
    /// Checksum of every value delivered (proves the work was done).
    pub checksum: f64,
    /// Why images were resized as they were read ([`RecordRules::note`]).
    pub note: Option<String>,
}

/// The shard files of a folder, opened (counts from `.idx`), checked against its manifest
/// unless `ignore_manifest` ([`ShardFolder::checked_shards`]).
pub fn open_shards(
    dir: &Location,
    compression: Compression,
    ignore_manifest: bool,
) -> Result<TfRecordSource> {
    open_shards_in(&ShardFolder::open(dir)?, compression, ignore_manifest)
}

/// [`open_shards`] on a folder already listed.
pub fn open_shards_in(
    folder: &ShardFolder,
    compression: Compression,
    ignore_manifest: bool,
) -> Result<TfRecordSource> {
    let files = folder.checked_shards(ignore_manifest)?;
    if files.is_empty() {
        return Err(Error::NoShards(folder.path().to_owned()));
    }
    folder.open_source(&files, ReaderOptions::compression(compression))
}

/// The tutorial's order ([`crate::order::training_order`] with its buffer of 2048).
pub fn tutorial_plan(plan: Plan, seed: u64, repeat: Repeat) -> Plan {
    crate::order::training_order(plan, seed, crate::order::SHUFFLE_BUFFER, repeat)
}

/// The tutorial's read pipeline over `source`, under the rules of its records
/// ([`RecordRules::of_source`]).
pub fn read_pipeline(source: TfRecordSource, config: &StreamConfig) -> Result<Pipeline<Decoded>> {
    let rules = RecordRules::of_source(&source)?;
    read_pipeline_with(source, rules, config)
}

/// [`read_pipeline`] under `rules`.
fn read_pipeline_with(
    source: TfRecordSource,
    rules: RecordRules,
    config: &StreamConfig,
) -> Result<Pipeline<Decoded>> {
    let (seed, epochs) = (config.seed, config.epochs);
    let pipeline = decoded_pipeline(source, rules, |plan| {
        tutorial_plan(plan, seed, Repeat::Epochs(epochs))
    })
    .parallelism(config.jobs)
    .deterministic(config.deterministic)
    .batch(config.batch, true)
    .prefetch(2);
    Ok(if config.cache {
        pipeline.cache(
            CacheBudget::new(config.cache_budget, |d: &Decoded| {
                d.image.pixels.len() as u64
            })
            .on_overflow(CacheOverflow::Recompute),
        )
    } else {
        pipeline
    })
}

/// A batch as a training step receives it: `f32` values / 255, HWC, and the labels.
pub fn batch_to_f32(items: &[Decoded], out: &mut Vec<f32>, labels: &mut Vec<i64>) {
    let preprocessing = Preprocessing::default();
    out.clear();
    labels.clear();
    for item in items {
        preprocessing.extend_f32(&item.image.pixels, out);
        labels.push(item.class);
    }
}

/// A batch of images of one size as a model takes it: `f32` HWC values made by
/// [`Preprocessing::extend_f32`], and the labels.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatBatch {
    /// `len × side × side × 3` values.
    pub pixels: Vec<f32>,
    /// One class per image.
    pub labels: Vec<i64>,
    /// The images' side.
    pub side: usize,
}

/// Converts decoded records to a [`FloatBatch`] (all images must share one square size).
pub fn to_float_batch(items: &[Decoded]) -> Result<FloatBatch> {
    let side = items.first().map_or(0, |d| d.image.width as usize);
    check_square(items, side)?;
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    batch_to_f32(items, &mut pixels, &mut labels);
    Ok(FloatBatch {
        pixels,
        labels,
        side,
    })
}

/// Checks that every image is `side × side` ([`Error::MixedSizes`] names the first that is not).
pub(crate) fn check_square(items: &[Decoded], side: usize) -> Result<()> {
    match items
        .iter()
        .find(|d| d.image.width as usize != side || d.image.height as usize != side)
    {
        Some(odd) => Err(Error::MixedSizes {
            width: odd.image.width,
            height: odd.image.height,
            side,
        }),
        None => Ok(()),
    }
}

/// Streams the shards for `config.epochs` epochs and measures it.
pub fn stream(config: &StreamConfig) -> Result<StreamReport> {
    stream_in(&ShardFolder::open(&config.shards)?, config)
}

/// [`stream`] over a folder already listed (`config.shards` is not listed again).
pub fn stream_in(folder: &ShardFolder, config: &StreamConfig) -> Result<StreamReport> {
    let source = open_shards_in(folder, config.compression, config.ignore_manifest)?;
    let mut rules = RecordRules::of_source_in(&source, Some(folder), &config.format)?;
    if config.transform.is_some() {
        // The transform makes its own square.
        (rules.side, rules.note) = (None, None);
    }
    let note = rules.note.clone();
    let files = source.files().len();
    let records = source.total_records();
    if records < config.batch as u64 {
        return Err(Error::TooFewRecords {
            records,
            folder: folder.path().to_owned(),
            batch: config.batch,
        });
    }
    let pipeline = match config.transform {
        None => read_pipeline_with(source, rules, config)?,
        Some(transform) => {
            transform.check()?;
            let (seed, epochs) = (config.seed, config.epochs);
            augmented_pipeline(source, rules, transform, seed, |plan| {
                tutorial_plan(plan, seed, Repeat::Epochs(epochs))
            })
            .parallelism(config.jobs)
            .deterministic(config.deterministic)
            .batch(config.batch, true)
            .prefetch(2)
        }
    };
    let mut iter = pipeline.iter();
    let mut epochs = Vec::new();
    let (mut values, mut labels) = (Vec::new(), Vec::new());
    let mut checksum = 0.0f64;
    let mut stats = ReadStats::default();
    let started = Instant::now();
    let mut epoch_start = Instant::now();
    let mut epoch_images = 0u64;
    let (mut waited, mut waited_in_epoch) = (Duration::ZERO, Duration::ZERO);
    loop {
        let waiting = Instant::now();
        let Some(batch) = iter.next() else { break };
        let wait = waiting.elapsed();
        waited += wait;
        waited_in_epoch += wait;
        let batch = batch?;
        batch_to_f32(&batch.items, &mut values, &mut labels);
        checksum += f64::from(values[values.len() / 2]) + labels.iter().sum::<i64>() as f64;
        stats.images += batch.len() as u64;
        stats.batches += 1;
        epoch_images += batch.len() as u64;
        if stats.images >= records * (epochs.len() as u64 + 1) {
            end_epoch(&mut epochs, epoch_images, epoch_start, waited_in_epoch);
            epoch_start = Instant::now();
            epoch_images = 0;
            waited_in_epoch = Duration::ZERO;
        }
    }
    if epoch_images > 0 {
        end_epoch(&mut epochs, epoch_images, epoch_start, waited_in_epoch);
    }
    stats.add_pipeline(&iter.stats(), started.elapsed(), waited);
    Ok(StreamReport {
        files,
        records,
        epochs,
        stats,
        checksum,
        note,
    })
}

fn end_epoch(epochs: &mut Vec<EpochStats>, images: u64, start: Instant, waited: Duration) {
    epochs.push(EpochStats {
        epoch: epochs.len() as u64 + 1,
        images,
        elapsed: start.elapsed(),
        waited,
    });
}
