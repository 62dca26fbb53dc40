//! What a read of shards delivered and what its pipeline did, as one value: `stream`'s
//! report (the CLI prints it, or writes it as JSON) and the Python `Loader`'s `stats()` are
//! both made from a [`ReadStats`], summed here over epochs, so the two front ends show the
//! same figures under the same names. Plain values: the front ends choose the presentation.

use std::time::Duration;

use shardfeed_input_pipeline::{StageStats, Stats, Tuning};

use crate::error::Damaged;

/// Totals over the epochs of a read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadStats {
    /// Images delivered in batches.
    pub images: u64,
    /// Batches delivered.
    pub batches: u64,
    /// Wall time of the epochs, summed.
    pub elapsed: Duration,
    /// Time the consumer waited for a batch, summed.
    pub waited: Duration,
    /// Per stage (upstream first), summed over the epochs' pipelines.
    pub stages: Vec<StageStats>,
    /// Images served from the cache (the latest pipeline's count).
    pub cache_hits: u64,
    /// Images decoded again because the cache budget was full (the latest pipeline's).
    pub cache_overflow: u64,
    /// What the tuner chose, as the latest pipeline ended (`None`: nothing tuned).
    pub tuning: Option<Tuning>,
    /// Records left out of their batch because they were damaged, with file and offset.
    pub skipped: Vec<Damaged>,
    /// Records repeated from the epoch's start to give every rank equal batches.
    pub padded: u64,
    /// Records dropped so that every rank has full batches.
    pub dropped: u64,
}

impl ReadStats {
    /// Adds a pipeline's figures: its stages summed by name, the cache and tuner as it left
    /// them, and the consumer's `elapsed` and `waited` time.
    pub fn add_pipeline(&mut self, pipeline: &Stats, elapsed: Duration, waited: Duration) {
        self.elapsed += elapsed;
        self.waited += waited;
        self.cache_hits = pipeline.cache_hits;
        self.cache_overflow = pipeline.cache_overflow;
        self.tuning.clone_from(&pipeline.tuning);
        for stage in &pipeline.stages {
            match self.stages.iter_mut().find(|s| s.name == stage.name) {
                Some(total) => {
                    total.items += stage.items;
                    total.busy += stage.busy;
                    total.waiting_input += stage.waiting_input;
                    total.waiting_output += stage.waiting_output;
                }
                None => self.stages.push(stage.clone()),
            }
        }
    }

    /// Images per second of wall time.
    pub fn images_per_second(&self) -> f64 {
        self.images as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The share of the wall time the consumer spent waiting for input.
    pub fn wait_fraction(&self) -> f64 {
        self.waited.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One epoch's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochStats {
    /// The epoch, from 1.
    pub epoch: u64,
    /// Images delivered in batches during it.
    pub images: u64,
    /// Its wall time.
    pub elapsed: Duration,
    /// Time the consumer waited for a batch.
    pub waited: Duration,
}

impl EpochStats {
    /// Images per second.
    pub fn images_per_second(&self) -> f64 {
        self.images as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(name: &'static str, items: u64, busy_ms: u64) -> StageStats {
        StageStats {
            name,
            threads: 1,
            items,
            busy: Duration::from_millis(busy_ms),
            waiting_input: Duration::ZERO,
            waiting_output: Duration::ZERO,
        }
    }

    #[test]
    fn pipelines_add_up_by_stage_name_and_keep_the_latest_cache_and_tuner() {
        let mut total = ReadStats::default();
        let first = Stats {
            elapsed: Duration::from_secs(1),
            stages: vec![stage("map", 10, 100), stage("batch", 2, 5)],
            cache_hits: 0,
            cache_overflow: 3,
            tuning: None,
        };
        let second = Stats {
            stages: vec![stage("map", 6, 50), stage("consumer", 1, 1)],
            cache_hits: 10,
            cache_overflow: 0,
            ..first.clone()
        };
        total.add_pipeline(&first, Duration::from_secs(2), Duration::from_millis(500));
        total.add_pipeline(&second, Duration::from_secs(2), Duration::ZERO);
        total.images = 16;
        let names: Vec<_> = total.stages.iter().map(|s| (s.name, s.items)).collect();
        assert_eq!(names, [("map", 16), ("batch", 2), ("consumer", 1)]);
        assert_eq!(total.stages[0].busy, Duration::from_millis(150));
        assert_eq!((total.cache_hits, total.cache_overflow), (10, 0));
        assert_eq!(total.images_per_second(), 4.0);
        assert_eq!(total.wait_fraction(), 0.125);
    }
}
