//! A bounded, resumable streaming dataflow for training input, on crossbeam channels: the
//! stages of `tf.data` (interleave, parallel map, cache, shuffle, repeat, batch, prefetch,
//! take) with errors that reach the consumer, prompt shutdown, and exact mid-epoch resume.
//!
//! It knows nothing of images or of training; [`tfrecord`] has ready-made TFRecord sources.
//!
//! # How it works
//!
//! The *order* of the items is planned from item counts and seeds alone ([`Plan`]): shuffle
//! the sources, interleave them `cycle_length` at a time exactly as TensorFlow does, pass
//! them through a shuffle buffer, repeat. The plan yields addresses (source, index), cheap
//! integers, so the shuffle buffer holds 2048 addresses, not 2048 decoded images, and any
//! position can be reached again by replaying integers. The *data* is then made in
//! parallel by the map workers, which fetch each item by address and apply the (fused) map
//! functions, consulting the cache first:
//!
//! ```text
//!                 tokens: at most W chunks in flight (returned when a chunk is batched)
//!        ┌──────────────────────────────────────────────────────────────────────┐
//!        ▼                                                                      │
//!  ┌────────────┐ Chunk<Address> ┌────────────────┐ Chunk<Result<T>> ┌──────────┴───┐ Result<Batch<T>> ┌──────────────┐
//!  │ planner    │── bounded N ──▶│ map worker ×N  │─── bounded N ───▶│ batcher      │── bounded P ────▶│ consumer     │
//!  │ sources    │                │ cache? → fetch │                  │ reorder (if  │   (prefetch)     │ PipelineIter │
//!  │ interleave │                │ → maps (fused) │                  │ deterministic│                  │ state, stats │
//!  │ shuffle    │                │ panics caught  │                  │ ) → batch(B) │                  │              │
//!  │ repeat/take│                └────────────────┘                  └──────────────┘                  └──────────────┘
//!  └────────────┘        every blocking wait also selects on a stop channel closed by Drop
//! ```
//!
//! Channels carry chunks of `C` consecutive items (default 32), so the graph costs one
//! message per chunk, not per item.
//!
//! # Guarantees
//!
//! - Items are `Result`s: a failing or panicking map function becomes an [`Error`] at the
//!   consumer, in its place in the stream, carrying the callee's message (for TFRecord
//!   sources: file, record index and byte offset). A panic in the pipeline's own threads
//!   ends the stream with [`Error::Panic`]; nothing hangs.
//! - Dropping the [`PipelineIter`] closes a stop channel every blocking wait selects on;
//!   threads exit at once (a worker inside a map function after that item) and are joined.
//! - Memory is bounded: at most W chunks of C items between the planner and the batcher
//!   (default W = 2 × map threads + 2), one batch being built, P = `prefetch` batches queued
//!   and one held by the consumer: [`Pipeline::peak_items`] = W × C + B × (P + 2) (320 items
//!   for the tutorial's B = 32 on 2 cores). The cache ([`Pipeline::cache`]) is bounded by
//!   its byte budget.
//! - With [`Pipeline::deterministic`]`(true)` the sequence depends only on the plan and
//!   the seed, never on the parallelism or timing.
//! - Every item appears exactly once per epoch: each epoch's shuffle buffer drains at the
//!   epoch's end.
//! - [`PipelineIter::state`] is a 24-byte [`ResumeState`]; [`Pipeline::iter_from`] continues
//!   exactly there (in deterministic mode).
//! - [`PipelineIter::stats`]: per-stage items/s, busy time and time blocked.
//!
//! ```
//! use shardfeed_input_pipeline::{Parallelism, Pipeline, Plan, Repeat};
//!
//! // Three sources of 4, 2 and 3 items; an item is (source, index) squared for the example.
//! let plan = Plan::new(vec![4, 2, 3]).seed(7).shuffle_sources(true).interleave(2, 1).shuffle(4).repeat(Repeat::Epochs(2));
//! let pipeline = Pipeline::new(plan, |a| Ok::<_, std::convert::Infallible>(a.source * 10 + a.index as u32))
//!     .map(|x| Ok::<_, std::convert::Infallible>(x * x))
//!     .parallelism(Parallelism::Fixed(2))
//!     .deterministic(true)
//!     .batch(4, true);
//! let batches: Vec<Vec<u32>> = pipeline.iter().map(|b| b.unwrap().items).collect();
//! assert_eq!(batches.len(), 18 / 4);
//! # Ok::<(), shardfeed_input_pipeline::Error>(())
//! ```
//!
//! # The tutorial's training input
//!
//! Shards on disk, split by files, streamed as the tutorial streams them (interleave 16 →
//! parse → shuffle 2048 → batch 32), here deterministic and resumable:
//!
//! ```
//! # use shardfeed_record_format::{Compression, FileWriter};
//! # let dir = tempfile::tempdir()?;
//! # std::env::set_current_dir(dir.path())?;
//! # std::fs::create_dir("shards")?;
//! # for shard in 0..16 {
//! #     let mut writer = FileWriter::create(format!("shards/data{shard:02}-8.tfrec"), Compression::None)?;
//! #     for i in 0..8 {
//! #         writer.write_record(&shardfeed_record_format::ImageExample { image: vec![shard, i], class: i64::from(i % 2), size: None }.to_bytes())?;
//! #     }
//! #     writer.commit()?;
//! # }
//! use shardfeed_input_pipeline::{split::split_tfrecords, tfrecord::TfRecordSource, Repeat};
//! use shardfeed_record_format::{ImageExample, ReaderOptions};
//!
//! let files = TfRecordSource::find("shards")?;
//! let split = split_tfrecords(&files, 0.19, 42, ReaderOptions::default())?; // counts from .idx
//! let steps_per_epoch = split.counts.steps_per_epoch(32);
//! let pipeline = split
//!     .train
//!     .parsed_pipeline(
//!         |plan| plan.seed(42).shuffle_sources(true).interleave(16, 1).shuffle(2048).repeat(Repeat::Forever),
//!         ImageExample::decode,
//!     )
//!     .deterministic(true)
//!     .batch(32, true);
//! let mut batches = pipeline.iter();
//! let first = batches.next().unwrap()?;      // 32 records, in a reproducible order
//! let state = batches.state().to_bytes();    // 24 bytes: resume exactly here later
//! # assert_eq!((first.items.len(), steps_per_epoch, state.len()), (32, 3, 24));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

pub mod autotune;
mod cache;
mod error;
mod pipeline;
mod plan;
mod rng;
pub mod split;
mod stats;
pub mod tfrecord;

pub use autotune::{TuneChange, Tuning};
pub use cache::{CacheBudget, CacheOverflow};
pub use error::{BoxError, Error, Result};
pub use pipeline::{Batch, Parallelism, Pipeline, PipelineIter, ResumeState, TuningHandle};
pub use plan::{Address, Plan, PlanIter, Planned, Repeat};
pub use rng::Rng;
pub use stats::{StageStats, Stats};
