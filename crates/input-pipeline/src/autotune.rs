//! Run-time tuning of the map workers and the prefetch depth (tf.data's `AUTOTUNE`, but
//! visible): a tuner thread looks at the stage counters every [`TICK`], and over each window
//! of at least [`WINDOW`] decides from two measured fractions:
//!
//! - `wait`: the share of wall time the consumer spent waiting for a batch;
//! - `busy`: the share of the active map workers' wall time spent working (not waiting for
//!   addresses, not blocked on a full output).
//!
//! The consumer waits (`wait` > [`GROW_WAIT`]) and the workers are busy (`busy` >
//! [`BUSY`]): the map stage is the bottleneck, so add workers (half again, up to the cap).
//! The consumer waits while the workers have time to spare: the supply is bursty, so deepen
//! the prefetch buffer by one batch (up to [`MAX_PREFETCH`]). The consumer never waits
//! (`wait` < [`SHRINK_WAIT`]) and one worker fewer would still be under [`SHRINK_BUSY`] busy:
//! park workers down to as many as would be [`KEEP_BUSY`] busy (one at least), leaving their
//! cores to the consumer (the training step). Every change is recorded
//! with the figures behind it, so `stream` and `train` can print what was chosen and why.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};

use crate::stats::PipelineCounters;
pub use crate::stats::{TuneChange, Tuning};

/// How often the tuner looks.
pub(crate) const TICK: Duration = Duration::from_millis(50);
/// The shortest window a decision is made over.
pub(crate) const WINDOW: Duration = Duration::from_millis(250);
/// A window longer than this without a decision starts afresh (old figures age out).
const STALE: Duration = Duration::from_secs(2);
/// The consumer waiting more than this share of the time asks for more supply.
pub const GROW_WAIT: f64 = 0.02;
/// The consumer waiting less than this share of the time lets a worker go.
pub const SHRINK_WAIT: f64 = 0.005;
/// Workers busier than this are the bottleneck.
pub const BUSY: f64 = 0.7;
/// A worker goes only if the others would stay under this busy.
pub const SHRINK_BUSY: f64 = 0.5;
/// Workers left after a shrink: as many as would be this busy.
pub const KEEP_BUSY: f64 = 0.4;
/// The deepest prefetch buffer the tuner sets, in batches.
pub const MAX_PREFETCH: usize = 8;

/// The tuner's state, shared with the workers (how many may take work), the consumer and the
/// batcher (prefetch tokens) and whoever reads [`Tuning`].
pub(crate) struct Tuner {
    pub(crate) active: Arc<AtomicUsize>,
    pub(crate) tuning: Arc<Mutex<Tuning>>,
}

/// The counters at the start of a window.
#[derive(Clone, Copy)]
struct Mark {
    at: Instant,
    consumer_wait: Duration,
    map_busy: Duration,
    consumed: u64,
}

impl Mark {
    fn now(counters: &PipelineCounters) -> Mark {
        let (consumer_wait, map_busy, consumed) = counters.tuning_figures();
        Mark {
            at: Instant::now(),
            consumer_wait,
            map_busy,
            consumed,
        }
    }
}

impl Tuner {
    /// A tuner that starts with all `max_workers` active (a short run or the first epoch's
    /// decode is not held back while it measures) and `prefetch` batches of buffer, deepened
    /// up to `max_prefetch` (the capacity of the pipeline's prefetch channels).
    pub(crate) fn new(max_workers: usize, prefetch: usize, max_prefetch: usize) -> Tuner {
        Tuner {
            active: Arc::new(AtomicUsize::new(max_workers)),
            tuning: Arc::new(Mutex::new(Tuning {
                workers: max_workers,
                max_workers,
                prefetch,
                max_prefetch,
                last_wait: 0.0,
                last_busy: 0.0,
                changes: Vec::new(),
            })),
        }
    }

    /// The tuner thread's body: until `stop` closes.
    pub(crate) fn run(
        active: Arc<AtomicUsize>,
        tuning: Arc<Mutex<Tuning>>,
        counters: Arc<PipelineCounters>,
        prefetch_tokens: Sender<()>,
        stop: Receiver<()>,
    ) {
        let mut mark = Mark::now(&counters);
        loop {
            select! {
                recv(stop) -> _ => return,
                default(TICK) => {}
            }
            let now = Mark::now(&counters);
            let window = now.at - mark.at;
            // A decision needs time and at least two batches taken (or waited for).
            let waited = now.consumer_wait.saturating_sub(mark.consumer_wait);
            if window < WINDOW || (now.consumed < mark.consumed + 2 && waited < window / 2) {
                continue;
            }
            let workers = active.load(Ordering::Relaxed);
            let wait = waited.as_secs_f64() / window.as_secs_f64();
            let busy = now.map_busy.saturating_sub(mark.map_busy).as_secs_f64()
                / (workers as f64 * window.as_secs_f64());
            let mut state = tuning.lock().unwrap_or_else(|p| p.into_inner());
            state.last_wait = wait;
            state.last_busy = busy;
            let figures = format!(
                "consumer waited {:.1}% of {:.2} s with {workers} workers {:.0}% busy",
                100.0 * wait,
                window.as_secs_f64(),
                100.0 * busy
            );
            let decision = decide(wait, busy, workers, &state);
            let changed = match decision {
                Decision::Workers(n) => {
                    active.store(n, Ordering::Relaxed);
                    state.workers = n;
                    let unit = if n == 1 { "worker" } else { "workers" };
                    Some(format!("{figures}: {n} {unit}"))
                }
                Decision::Prefetch(n) => {
                    // One more token in circulation is one more batch the batcher may queue.
                    if prefetch_tokens.try_send(()).is_ok() {
                        state.prefetch = n;
                        Some(format!("{figures} (bursty supply): prefetch {n} batches"))
                    } else {
                        None
                    }
                }
                Decision::Keep => None,
            };
            if let Some(why) = changed {
                let change = TuneChange {
                    at: counters.started.elapsed(),
                    workers: state.workers,
                    prefetch: state.prefetch,
                    why,
                };
                state.changes.push(change);
                mark = now;
            } else if window > STALE {
                mark = now;
            }
        }
    }
}

/// What to change after a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Workers(usize),
    Prefetch(usize),
    Keep,
}

fn decide(wait: f64, busy: f64, workers: usize, state: &Tuning) -> Decision {
    if wait > GROW_WAIT {
        if busy > BUSY && workers < state.max_workers {
            return Decision::Workers((workers + workers.div_ceil(2)).min(state.max_workers));
        }
        if busy <= BUSY && state.prefetch < state.max_prefetch {
            return Decision::Prefetch(state.prefetch + 1);
        }
    } else if wait < SHRINK_WAIT
        && workers > 1
        && busy * (workers as f64) / ((workers - 1) as f64) < SHRINK_BUSY
    {
        // As many as would be KEEP_BUSY busy, one fewer at least.
        let needed = (busy * workers as f64 / KEEP_BUSY).ceil() as usize;
        return Decision::Workers(needed.clamp(1, workers - 1));
    }
    Decision::Keep
}

#[cfg(test)]
mod tests {
    use super::Decision::{Keep, Prefetch, Workers};
    use super::*;

    /// Each case: the consumer waited `wait` of the window, the workers were `busy`, with
    /// `workers` of at most 16 active and `prefetch` batches of buffer; then what to do.
    fn check(cases: &[(f64, f64, usize, usize, Decision)]) {
        for &(wait, busy, workers, prefetch, expected) in cases {
            let state = Tuning {
                workers,
                max_workers: 16,
                prefetch,
                max_prefetch: MAX_PREFETCH,
                last_wait: 0.0,
                last_busy: 0.0,
                changes: Vec::new(),
            };
            assert_eq!(
                decide(wait, busy, workers, &state),
                expected,
                "waited {wait}, {workers} workers {busy} busy, prefetch {prefetch}"
            );
        }
    }

    #[test]
    fn a_waiting_consumer_and_busy_workers_add_half_again_up_to_the_cap() {
        check(&[
            (0.3, 0.95, 2, 2, Workers(3)),
            (0.3, 0.95, 8, 2, Workers(12)),
            (0.3, 0.95, 12, 2, Workers(16)),
            // At the cap, busy workers: nothing more to do (a deeper buffer would not help).
            (0.3, 0.95, 16, 2, Keep),
        ]);
    }

    #[test]
    fn a_waiting_consumer_and_idle_workers_deepen_the_prefetch() {
        check(&[
            (0.05, 0.4, 4, 2, Prefetch(3)),
            (0.05, 0.4, 4, MAX_PREFETCH, Keep),
        ]);
    }

    #[test]
    fn a_consumer_that_never_waits_lets_spare_workers_go() {
        check(&[
            // 4 workers 20% busy: 2 would be 40% busy.
            (0.001, 0.2, 4, 2, Workers(2)),
            // 16 workers 2% busy: one does it.
            (0.0, 0.02, 16, 2, Workers(1)),
            // 4 workers 35% busy: 3 would be 47% busy (under 50%); 4 × 0.35 / 0.4 → 3.
            (0.001, 0.35, 4, 2, Workers(3)),
            // 2 workers 40% busy: 1 would be 80% busy, too close to being the bottleneck.
            (0.001, 0.4, 2, 2, Keep),
            (0.001, 0.0, 1, 2, Keep),
            // Between the thresholds nothing changes (no oscillation).
            (0.01, 0.1, 4, 2, Keep),
        ]);
    }
}
