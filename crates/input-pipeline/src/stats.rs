//! Per-stage statistics: items, busy time and time blocked, shared with the caller.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counters of one stage, updated by its threads.
#[derive(Debug, Default)]
pub(crate) struct StageCounters {
    items: AtomicU64,
    busy_nanos: AtomicU64,
    waiting_input_nanos: AtomicU64,
    waiting_output_nanos: AtomicU64,
}

impl StageCounters {
    pub(crate) fn add_items(&self, n: u64) {
        self.items.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_busy(&self, since: Instant) {
        self.busy_nanos.fetch_add(nanos(since), Ordering::Relaxed);
    }

    pub(crate) fn add_waiting_input(&self, since: Instant) {
        self.waiting_input_nanos
            .fetch_add(nanos(since), Ordering::Relaxed);
    }

    pub(crate) fn add_waiting_output(&self, since: Instant) {
        self.waiting_output_nanos
            .fetch_add(nanos(since), Ordering::Relaxed);
    }

    fn snapshot(&self, name: &'static str, threads: usize) -> StageStats {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StageStats {
            name,
            threads,
            items: load(&self.items),
            busy: Duration::from_nanos(load(&self.busy_nanos)),
            waiting_input: Duration::from_nanos(load(&self.waiting_input_nanos)),
            waiting_output: Duration::from_nanos(load(&self.waiting_output_nanos)),
        }
    }
}

fn nanos(since: Instant) -> u64 {
    since.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64
}

/// The counters of a whole pipeline.
#[derive(Debug)]
pub(crate) struct PipelineCounters {
    pub(crate) started: Instant,
    pub(crate) plan: StageCounters,
    pub(crate) map: StageCounters,
    pub(crate) batch: StageCounters,
    pub(crate) consumer: StageCounters,
    pub(crate) cache_hits: AtomicU64,
    pub(crate) cache_overflow: AtomicU64,
    pub(crate) map_threads: usize,
}

impl PipelineCounters {
    pub(crate) fn new(map_threads: usize) -> Arc<Self> {
        Arc::new(PipelineCounters {
            started: Instant::now(),
            plan: StageCounters::default(),
            map: StageCounters::default(),
            batch: StageCounters::default(),
            consumer: StageCounters::default(),
            cache_hits: AtomicU64::new(0),
            cache_overflow: AtomicU64::new(0),
            map_threads,
        })
    }

    /// What the tuner decides from: the consumer's wait, the map stage's busy time, batches taken.
    pub(crate) fn tuning_figures(&self) -> (Duration, Duration, u64) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (
            Duration::from_nanos(load(&self.consumer.waiting_input_nanos)),
            Duration::from_nanos(load(&self.map.busy_nanos)),
            load(&self.consumer.items),
        )
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            elapsed: self.started.elapsed(),
            stages: vec![
                self.plan.snapshot("plan", 1),
                self.map.snapshot("map", self.map_threads),
                self.batch.snapshot("batch", 1),
                self.consumer.snapshot("consumer", 1),
            ],
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
            cache_overflow: self.cache_overflow.load(Ordering::Relaxed),
            tuning: None,
        }
    }
}

/// One stage's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct StageStats {
    /// `plan`, `map`, `batch` or `consumer`.
    pub name: &'static str,
    /// Threads of the stage.
    pub threads: usize,
    /// Items (for `batch` and `consumer`: batches) that left the stage.
    pub items: u64,
    /// Time spent working, summed over the stage's threads.
    pub busy: Duration,
    /// Time spent waiting for input (for `consumer`: the caller waiting for a batch).
    pub waiting_input: Duration,
    /// Time spent blocked on a full output channel (back-pressure).
    pub waiting_output: Duration,
}

impl StageStats {
    /// Items per second of wall time.
    pub fn items_per_second(&self, elapsed: Duration) -> f64 {
        self.items as f64 / elapsed.as_secs_f64().max(1e-9)
    }
}

/// A snapshot of a pipeline's statistics ([`crate::PipelineIter::stats`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// Time since the pipeline started.
    pub elapsed: Duration,
    /// The stages, upstream first.
    pub stages: Vec<StageStats>,
    /// Items served from the cache.
    pub cache_hits: u64,
    /// Items not cached because the budget was full (with [`crate::CacheOverflow::Recompute`]).
    pub cache_overflow: u64,
    /// What the tuner chose (`None` when nothing is tuned: [`crate::Parallelism::Fixed`]).
    pub tuning: Option<Tuning>,
}

impl Stats {
    /// The stage called `name`.
    pub fn stage(&self, name: &str) -> Option<&StageStats> {
        self.stages.iter().find(|s| s.name == name)
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for stage in &self.stages {
            writeln!(
                f,
                "{:<9} x{:<2} {:>9} items {:>10.0}/s  busy {:>7.2}s  wait-in {:>7.2}s  wait-out {:>7.2}s",
                stage.name,
                stage.threads,
                stage.items,
                stage.items_per_second(self.elapsed),
                stage.busy.as_secs_f64(),
                stage.waiting_input.as_secs_f64(),
                stage.waiting_output.as_secs_f64(),
            )?;
        }
        write!(
            f,
            "cache hits {}, not cached (over budget) {}",
            self.cache_hits, self.cache_overflow
        )?;
        if let Some(tuning) = &self.tuning {
            write!(f, "\n{}", tuning.summary())?;
        }
        Ok(())
    }
}

/// One decision of the tuner.
#[derive(Debug, Clone, PartialEq)]
pub struct TuneChange {
    /// Time since the pipeline started.
    pub at: Duration,
    /// Active map workers after the change.
    pub workers: usize,
    /// Prefetch depth after the change, in batches.
    pub prefetch: usize,
    /// The figures behind it, in words.
    pub why: String,
}

/// What the tuner chose, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuning {
    /// Active map workers now.
    pub workers: usize,
    /// The most it may use (`Parallelism::Auto`: the cores; `AutoUpTo(n)`: n).
    pub max_workers: usize,
    /// Prefetch depth now, in batches.
    pub prefetch: usize,
    /// The deepest it may set.
    pub max_prefetch: usize,
    /// The consumer's wait and the workers' busy share over the last full window.
    pub last_wait: f64,
    /// See `last_wait`.
    pub last_busy: f64,
    /// Every change, oldest first.
    pub changes: Vec<TuneChange>,
}

impl Tuning {
    /// One line: the choice and the figures behind it.
    pub fn summary(&self) -> String {
        let why = match self.changes.last() {
            Some(change) => format!(
                "{} change{}, the last at {:.1} s: {}",
                self.changes.len(),
                if self.changes.len() == 1 { "" } else { "s" },
                change.at.as_secs_f64(),
                change.why
            ),
            None => "no change from the start".to_owned(),
        };
        format!(
            "autotune: {} of at most {} map workers, prefetch {} of at most {} batches \
             (last window: consumer waited {:.1}% of the time, workers {:.0}% busy; {why})",
            self.workers,
            self.max_workers,
            self.prefetch,
            self.max_prefetch,
            100.0 * self.last_wait,
            100.0 * self.last_busy,
        )
    }
}
