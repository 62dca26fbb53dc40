//! The worker graph that runs a [`Plan`]: a planner thread, a pool of map workers, a
//! batcher, and the consumer's iterator, joined by bounded crossbeam channels.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, select};

use crate::autotune::{Tuner, Tuning};
use crate::cache::{CacheBudget, CacheStore};
use crate::stats::PipelineCounters;
use crate::{Address, BoxError, Error, Plan, Result, Stats};

mod iter;
mod stages;

pub use iter::{Batch, PipelineIter, ResumeState, TuningHandle};
use stages::*;

/// One map worker's function from an address (and its position in the plan) to an item. It
/// may hold state of its own ([`Pipeline::map_init`]): each worker makes one when it starts.
type WorkerFn<T> = Box<dyn FnMut(Address, u64) -> Result<T, BoxError>>;

/// Makes each map worker's [`WorkerFn`], in that worker's thread.
type ItemFn<T> = Arc<dyn Fn() -> WorkerFn<T> + Send + Sync>;

/// How many threads a parallel stage uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Parallelism {
    /// Tuned while running, between 1 and one per available core, and the prefetch depth
    /// with it (TensorFlow's `AUTOTUNE`; see [`crate::autotune`]).
    #[default]
    Auto,
    /// Tuned while running, between 1 and this many (at least 1): `--jobs N`.
    AutoUpTo(usize),
    /// Exactly this many (at least 1), and exactly the prefetch depth set: nothing tuned.
    Fixed(usize),
}

impl Parallelism {
    /// The most threads the stage runs (for a tuned stage: the cap).
    pub fn threads(self) -> usize {
        match self {
            Parallelism::Auto => std::thread::available_parallelism().map_or(1, |n| n.get()),
            Parallelism::AutoUpTo(n) | Parallelism::Fixed(n) => n.max(1),
        }
    }

    /// Whether workers and prefetch are tuned at run time.
    pub fn is_tuned(self) -> bool {
        !matches!(self, Parallelism::Fixed(_))
    }
}

/// How often a parked (tuned-out) worker looks whether it is wanted again.
const PARK: Duration = Duration::from_millis(5);

/// The settings of a pipeline's stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Settings {
    parallelism: Parallelism,
    deterministic: bool,
    batch_size: usize,
    drop_remainder: bool,
    prefetch: usize,
    chunk: usize,
    in_flight: Option<usize>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            parallelism: Parallelism::Auto,
            deterministic: false,
            batch_size: 1,
            drop_remainder: false,
            prefetch: 2,
            chunk: 32,
            in_flight: None,
        }
    }
}

impl Settings {
    /// The deepest prefetch buffer, in batches: the set depth, or the tuner's limit.
    fn max_prefetch(&self) -> usize {
        if self.parallelism.is_tuned() {
            crate::autotune::MAX_PREFETCH.max(self.prefetch)
        } else {
            self.prefetch
        }
    }

    /// Chunks allowed between the planner and the batcher.
    fn window_chunks(&self) -> usize {
        match self.in_flight {
            Some(items) => items.div_ceil(self.chunk).max(1),
            None => 2 * self.parallelism.threads() + 2,
        }
    }
}

/// A dataset: a [`Plan`] of item addresses, a function that turns an address into an item
/// (fetch, then any maps, fused into one parallel stage, with an optional cache at the point
/// where `cache` was called), and batching settings. Cheap to clone; each
/// [`Pipeline::iter`] starts threads of its own, and clones share one cache.
pub struct Pipeline<T> {
    plan: Plan,
    func: ItemFn<T>,
    cache_stats: Option<Arc<dyn CacheCounters>>,
    settings: Settings,
}

impl<T> Clone for Pipeline<T> {
    fn clone(&self) -> Self {
        Pipeline {
            plan: self.plan.clone(),
            func: self.func.clone(),
            cache_stats: self.cache_stats.clone(),
            settings: self.settings,
        }
    }
}

/// Read access to a cache's counters, whatever its item type.
pub(crate) trait CacheCounters: Send + Sync {
    fn hits(&self) -> u64;
    fn overflow(&self) -> u64;
}

impl<T: Send + Sync> CacheCounters for CacheStore<T> {
    fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
    fn overflow(&self) -> u64 {
        self.overflow.load(Ordering::Relaxed)
    }
}

impl<T: Clone + Send + Sync + 'static> Pipeline<T> {
    /// Items of a list, in the list's order (one source); shuffle, repeat and the rest are
    /// set on the plan with [`Pipeline::map_plan`].
    pub fn from_items(items: Vec<T>) -> Self {
        let items = Arc::new(items);
        let plan = Plan::new(vec![items.len() as u64]);
        Pipeline::new(plan, move |address: Address| {
            Ok::<_, BoxError>(items[address.index as usize].clone())
        })
    }

    /// Keeps every item the upstream functions produce in memory, within `budget`, so that
    /// later epochs skip them (TensorFlow's `cache()`).
    pub fn cache(mut self, budget: CacheBudget<T>) -> Self {
        let store = Arc::new(CacheStore::new(self.plan.counts(), budget));
        let upstream = self.func.clone();
        let cache = store.clone();
        self.func = Arc::new(move || {
            let mut upstream = upstream();
            let cache = cache.clone();
            Box::new(move |address, position| {
                cache.get_or_compute(address, position, || upstream(address, position))
            })
        });
        self.cache_stats = Some(store);
        self
    }
}

impl<T: Send + 'static> Pipeline<T> {
    /// The items of `plan`, each made by `fetch` from its address, in parallel.
    pub fn new<E: Into<BoxError>>(
        plan: Plan,
        fetch: impl Fn(Address) -> Result<T, E> + Send + Sync + 'static,
    ) -> Self {
        let fetch = Arc::new(fetch);
        Pipeline {
            plan,
            func: Arc::new(move || {
                let fetch = fetch.clone();
                Box::new(move |address, _| fetch(address).map_err(Into::into))
            }),
            cache_stats: None,
            settings: Settings::default(),
        }
    }

    /// Like [`Pipeline::new`], with state of each worker's own (a decoder, a buffer): `init`
    /// makes it the first time a worker fetches an item, and `fetch` borrows it for every item
    /// that worker fetches, as rayon's `map_init` does. A failed `init` fails that item and is
    /// tried again for the next; a worker whose `fetch` panicked starts with a fresh state.
    pub fn new_init<S: 'static, E: Into<BoxError>, E2: Into<BoxError>>(
        plan: Plan,
        init: impl Fn() -> Result<S, E2> + Send + Sync + 'static,
        fetch: impl Fn(&mut S, Address) -> Result<T, E> + Send + Sync + 'static,
    ) -> Self {
        // The addresses themselves, mapped with per-worker state: one fused stage, as before.
        Pipeline::new(plan, Ok::<Address, BoxError>).map_init(init, fetch)
    }

    /// [`Pipeline::new_init`] whose `fetch` also hears each item's position in the whole
    /// stream (from 0, across epochs: `position / records` is its epoch), for work that
    /// depends on the epoch (a training-time crop drawn per record and epoch).
    pub fn new_init_at<S: 'static, E: Into<BoxError>, E2: Into<BoxError>>(
        plan: Plan,
        init: impl Fn() -> Result<S, E2> + Send + Sync + 'static,
        fetch: impl Fn(&mut S, Address, u64) -> Result<T, E> + Send + Sync + 'static,
    ) -> Self {
        let positioned: Pipeline<(Address, u64)> = Pipeline {
            plan,
            func: Arc::new(|| Box::new(|address, position| Ok((address, position)))),
            cache_stats: None,
            settings: Settings::default(),
        };
        positioned.map_init(init, move |state, (address, position)| {
            fetch(state, address, position)
        })
    }

    /// Applies `f` to every item, in the same parallel stage (TF's `map`; maps are fused).
    pub fn map<U: Send + 'static, E: Into<BoxError>>(
        self,
        f: impl Fn(T) -> Result<U, E> + Send + Sync + 'static,
    ) -> Pipeline<U> {
        let upstream = self.func;
        let f = Arc::new(f);
        Pipeline {
            plan: self.plan,
            func: Arc::new(move || {
                let mut upstream = upstream();
                let f = f.clone();
                Box::new(move |address, position| {
                    f(upstream(address, position)?).map_err(Into::into)
                })
            }),
            cache_stats: self.cache_stats,
            settings: self.settings,
        }
    }

    /// Like [`Pipeline::map`], with state of each worker's own: `init` makes it the first
    /// time a worker maps an item, and `f` borrows it for every item that worker maps (rayon's
    /// `map_init`). A failed `init` fails that item and is tried again for the next; a worker
    /// whose `f` panicked starts with a fresh state.
    ///
    /// ```
    /// use shardfeed_input_pipeline::{BoxError, Parallelism, Pipeline};
    ///
    /// // Each worker keeps one buffer for all its items instead of allocating one per item.
    /// let pipeline = Pipeline::from_items((0..100u32).collect())
    ///     .map_init(
    ///         || Ok::<_, BoxError>(Vec::<u32>::with_capacity(16)),
    ///         |buffer, n| {
    ///             buffer.clear();
    ///             buffer.extend(0..=n % 4);
    ///             Ok::<_, BoxError>(buffer.iter().sum::<u32>())
    ///         },
    ///     )
    ///     .parallelism(Parallelism::Fixed(3))
    ///     .deterministic(true);
    /// let sums: Vec<u32> = pipeline.iter().items().collect::<Result<_, _>>()?;
    /// assert_eq!(&sums[..5], [0, 1, 3, 6, 0]);
    /// # Ok::<(), shardfeed_input_pipeline::Error>(())
    /// ```
    pub fn map_init<S: 'static, U: Send + 'static, E: Into<BoxError>, E2: Into<BoxError>>(
        self,
        init: impl Fn() -> Result<S, E2> + Send + Sync + 'static,
        f: impl Fn(&mut S, T) -> Result<U, E> + Send + Sync + 'static,
    ) -> Pipeline<U> {
        let upstream = self.func;
        let (init, f) = (Arc::new(init), Arc::new(f));
        Pipeline {
            plan: self.plan,
            func: Arc::new(move || {
                let mut upstream = upstream();
                let (init, f) = (init.clone(), f.clone());
                let mut state: Option<S> = None;
                Box::new(move |address, position| {
                    let item = upstream(address, position)?;
                    let state = match &mut state {
                        Some(state) => state,
                        empty => empty.insert(init().map_err(Into::into)?),
                    };
                    f(state, item).map_err(Into::into)
                })
            }),
            cache_stats: self.cache_stats,
            settings: self.settings,
        }
    }

    /// Changes the plan (shuffle, interleave, repeat, take), keeping the item counts.
    ///
    /// # Panics
    /// If `f` changes the counts, which the cache and the fetch function rely on.
    pub fn map_plan(mut self, f: impl FnOnce(Plan) -> Plan) -> Self {
        let counts = self.plan.counts().to_vec();
        self.plan = f(self.plan);
        assert_eq!(
            self.plan.counts(),
            counts,
            "map_plan must keep the item counts"
        );
        self
    }

    /// Threads of the map stage (default: one per core).
    pub fn parallelism(mut self, parallelism: Parallelism) -> Self {
        self.settings.parallelism = parallelism;
        self
    }

    /// `true`: items reach the consumer in plan order, whatever the parallelism (and the
    /// pipeline can be resumed exactly). `false` (the default, as in the tutorial): in the
    /// order workers finish them, which never waits for a slow item.
    pub fn deterministic(mut self, deterministic: bool) -> Self {
        self.settings.deterministic = deterministic;
        self
    }

    /// Groups items into batches of `size`; with `drop_remainder` a last, smaller batch is
    /// dropped. Default: batches of 1.
    pub fn batch(mut self, size: usize, drop_remainder: bool) -> Self {
        self.settings.batch_size = size.max(1);
        self.settings.drop_remainder = drop_remainder;
        self
    }

    /// Batches kept ready ahead of the consumer (default 2, at least 1).
    pub fn prefetch(mut self, batches: usize) -> Self {
        self.settings.prefetch = batches.max(1);
        self
    }

    /// Items handed to a map worker at once (default 32). Channels carry chunks, so the
    /// graph's cost per item is its cost per message divided by this; smaller chunks spread
    /// a few slow items more evenly over the workers.
    pub fn chunk(mut self, items: usize) -> Self {
        self.settings.chunk = items.max(1);
        self
    }

    /// The most items between the planner and the batcher: queued, being mapped, or waiting
    /// to be put in order, rounded up to whole chunks. Default: (2 × map threads + 2) chunks.
    pub fn in_flight(mut self, items: usize) -> Self {
        self.settings.in_flight = Some(items.max(1));
        self
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The most items alive in the pipeline at once: the in-flight window, the batch being
    /// built, the prefetched batches and the one the consumer holds.
    pub fn peak_items(&self) -> usize {
        let s = &self.settings;
        s.window_chunks() * s.chunk + s.batch_size * (s.max_prefetch() + 2)
    }

    /// Starts the threads and iterates from the beginning.
    pub fn iter(&self) -> PipelineIter<T> {
        self.spawn(0)
    }

    /// Starts the threads and continues where `state` was taken. Exact when the pipeline is
    /// deterministic; otherwise the items in flight when the state was taken may come again
    /// or be missed.
    pub fn iter_from(&self, state: &ResumeState) -> Result<PipelineIter<T>> {
        let expected = self.plan.fingerprint();
        if state.fingerprint != expected {
            return Err(Error::StateMismatch {
                expected,
                found: state.fingerprint,
            });
        }
        Ok(self.spawn(state.position))
    }

    fn spawn(&self, start: u64) -> PipelineIter<T> {
        let settings = self.settings;
        let threads = settings.parallelism.threads();
        let window = settings.window_chunks();
        let counters = PipelineCounters::new(threads);
        let failure: Arc<Mutex<Option<Error>>> = Arc::default();
        let stopped = Arc::new(AtomicBool::new(false));
        let (stop_tx, stop_rx) = bounded::<()>(0);
        let (tokens_tx, tokens_rx) = bounded::<()>(window);
        for _ in 0..window {
            tokens_tx
                .send(())
                .expect("the token channel holds `window` tokens");
        }
        let (work_tx, work_rx) = bounded::<Chunk<Address>>(threads);
        let (done_tx, done_rx) = bounded::<Chunk<Result<T>>>(threads);
        // The batcher sends a batch only with a token; the consumer hands one back for each
        // batch it takes, and the tuner adds one to deepen the buffer.
        let max_prefetch = settings.max_prefetch();
        let (out_tx, out_rx) = bounded::<Result<Batch<T>>>(max_prefetch);
        let (prefetch_tx, prefetch_rx) = bounded::<()>(max_prefetch);
        for _ in 0..settings.prefetch {
            prefetch_tx
                .send(())
                .expect("the prefetch channel holds max_prefetch tokens");
        }
        // A tuned pipeline starts with every worker (a short run or the first epoch's decode
        // is not held back while the tuner measures); the tuner parks and wakes them.
        let tuner = settings
            .parallelism
            .is_tuned()
            .then(|| Tuner::new(threads, settings.prefetch, max_prefetch));

        let mut handles = Vec::with_capacity(threads + 3);
        let planned = Arc::new(AtomicBool::new(false));
        let planner = Planner {
            done: planned.clone(),
            plan: self.plan.iter_from(start),
            chunk: settings.chunk,
            tokens: tokens_rx,
            work: work_tx,
            stop: stop_rx.clone(),
            counters: counters.clone(),
        };
        let stop_rx_tuner = stop_rx.clone();
        handles.push(spawn_guarded("plan", failure.clone(), move || {
            planner.run()
        }));
        for index in 0..threads {
            let worker = Worker {
                index,
                active: tuner.as_ref().map(|t| t.active.clone()),
                planned: planned.clone(),
                func: self.func.clone(),
                stopped: stopped.clone(),
                work: work_rx.clone(),
                done: done_tx.clone(),
                stop: stop_rx.clone(),
                counters: counters.clone(),
            };
            handles.push(spawn_guarded("map", failure.clone(), move || worker.run()));
        }
        drop((work_rx, done_tx));
        let batcher = Batcher {
            done: done_rx,
            tokens: tokens_tx,
            out: out_tx,
            stop: stop_rx,
            counters: counters.clone(),
            deterministic: settings.deterministic,
            next_position: start,
            batch_size: settings.batch_size,
            drop_remainder: settings.drop_remainder,
            prefetch: prefetch_rx,
        };
        handles.push(spawn_guarded("batch", failure.clone(), move || {
            batcher.run()
        }));
        if let Some(tuner) = &tuner {
            let (active, tuning) = (tuner.active.clone(), tuner.tuning.clone());
            let (counters, tokens, stop) = (counters.clone(), prefetch_tx.clone(), stop_rx_tuner);
            handles.push(spawn_guarded("tune", failure.clone(), move || {
                Tuner::run(active, tuning, counters, tokens, stop)
            }));
        }

        PipelineIter {
            out: Some(out_rx),
            stop: Some(stop_tx),
            stopped,
            handles,
            failure,
            counters,
            cache_stats: self.cache_stats.clone(),
            fingerprint: self.plan.fingerprint(),
            epoch_len: self.plan.epoch_len(),
            position: start,
            deterministic: settings.deterministic,
            prefetch: prefetch_tx,
            tuning: tuner.map(|t| t.tuning),
        }
    }
}

/// Runs `body` on a new thread; a panic is stored in `failure` for the consumer.
fn spawn_guarded(
    stage: &'static str,
    failure: Arc<Mutex<Option<Error>>>,
    body: impl FnOnce() + Send + 'static,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("shardfeed-{stage}"))
        .spawn(move || {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(body)) {
                let error = Error::Panic {
                    stage,
                    position: 0,
                    message: Error::panic_message(payload.as_ref()),
                };
                let mut slot = failure.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert(error);
            }
        })
        .expect("the operating system can start a thread")
}
