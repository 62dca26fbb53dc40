//! `shardfeed stream --json`: the report as one JSON document, made from the library's
//! plain values ([`StreamReport`], its [`ReadStats`]: the figures the Python `Loader`'s
//! `stats()` shows under the same names).

use serde::Serialize;
use shardfeed_dataset::stats::{EpochStats, ReadStats};
use shardfeed_dataset::stream::StreamReport;
use shardfeed_input_pipeline::{StageStats, Tuning};

/// The document.
#[derive(Debug, Serialize)]
pub struct StreamJson {
    /// Shard files read.
    files: usize,
    /// Records per epoch.
    records: u64,
    /// Images delivered in batches, all epochs.
    images: u64,
    /// Batches delivered.
    batches: u64,
    /// Wall seconds of the run.
    seconds: f64,
    /// Images per second over the run.
    images_per_second: f64,
    /// Seconds the consumer waited for a batch.
    waited_seconds: f64,
    /// Per epoch.
    epochs: Vec<EpochJson>,
    /// Per stage (`plan`, `map`, `batch`, `consumer`).
    stages: Vec<StageJson>,
    /// Images served from the cache.
    cache_hits: u64,
    /// Images decoded again because the cache budget was full.
    cache_overflow: u64,
    /// Checksum of every value delivered.
    checksum: f64,
    /// What the tuner chose and why (`null` when nothing was tuned).
    autotune: Option<AutotuneJson>,
}

#[derive(Debug, Serialize)]
struct EpochJson {
    epoch: u64,
    images: u64,
    seconds: f64,
    images_per_second: f64,
    waited_seconds: f64,
}

#[derive(Debug, Serialize)]
struct StageJson {
    name: &'static str,
    threads: usize,
    items: u64,
    busy_seconds: f64,
    waiting_input_seconds: f64,
    waiting_output_seconds: f64,
}

#[derive(Debug, Serialize)]
struct AutotuneJson {
    workers: usize,
    max_workers: usize,
    prefetch: usize,
    max_prefetch: usize,
    summary: String,
    changes: Vec<ChangeJson>,
}

#[derive(Debug, Serialize)]
struct ChangeJson {
    at_seconds: f64,
    workers: usize,
    prefetch: usize,
    why: String,
}

impl From<&StreamReport> for StreamJson {
    fn from(report: &StreamReport) -> Self {
        let stats: &ReadStats = &report.stats;
        StreamJson {
            files: report.files,
            records: report.records,
            images: stats.images,
            batches: stats.batches,
            seconds: stats.elapsed.as_secs_f64(),
            images_per_second: stats.images_per_second(),
            waited_seconds: stats.waited.as_secs_f64(),
            epochs: report.epochs.iter().map(EpochJson::from).collect(),
            stages: stats.stages.iter().map(StageJson::from).collect(),
            cache_hits: stats.cache_hits,
            cache_overflow: stats.cache_overflow,
            checksum: report.checksum,
            autotune: stats.tuning.as_ref().map(AutotuneJson::from),
        }
    }
}

impl From<&EpochStats> for EpochJson {
    fn from(e: &EpochStats) -> Self {
        EpochJson {
            epoch: e.epoch,
            images: e.images,
            seconds: e.elapsed.as_secs_f64(),
            images_per_second: e.images_per_second(),
            waited_seconds: e.waited.as_secs_f64(),
        }
    }
}

impl From<&StageStats> for StageJson {
    fn from(s: &StageStats) -> Self {
        StageJson {
            name: s.name,
            threads: s.threads,
            items: s.items,
            busy_seconds: s.busy.as_secs_f64(),
            waiting_input_seconds: s.waiting_input.as_secs_f64(),
            waiting_output_seconds: s.waiting_output.as_secs_f64(),
        }
    }
}

impl From<&Tuning> for AutotuneJson {
    fn from(t: &Tuning) -> Self {
        AutotuneJson {
            workers: t.workers,
            max_workers: t.max_workers,
            prefetch: t.prefetch,
            max_prefetch: t.max_prefetch,
            summary: t.summary(),
            changes: t
                .changes
                .iter()
                .map(|c| ChangeJson {
                    at_seconds: c.at.as_secs_f64(),
                    workers: c.workers,
                    prefetch: c.prefetch,
                    why: c.why.clone(),
                })
                .collect(),
        }
    }
}
