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
use crate::cache::{CacheBudget, CacheStore, DiskCache, DiskStore};
use crate::stats::PipelineCounters;
use crate::{Address, BoxError, Error, Plan, Result, Stats};

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
trait CacheCounters: Send + Sync {
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

impl<T: Send + Sync> CacheCounters for DiskStore<T> {
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

    /// Like [`Pipeline::cache`], but in a file: for datasets whose items do not fit in
    /// memory. Each item is stored with a CRC-32C, checked when read back.
    pub fn cache_on_disk(mut self, cache: DiskCache<T>) -> Result<Self> {
        let store = Arc::new(DiskStore::create(self.plan.counts(), cache)?);
        let upstream = self.func.clone();
        let disk = store.clone();
        self.func = Arc::new(move || {
            let mut upstream = upstream();
            let disk = disk.clone();
            Box::new(move |address, position| {
                disk.get_or_compute(address, position, || upstream(address, position))
            })
        });
        self.cache_stats = Some(store);
        Ok(self)
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

/// Consecutive items of the stream, from `start`: the unit every channel carries.
struct Chunk<V> {
    start: u64,
    addresses: Vec<Address>,
    values: Vec<V>,
}

struct Planner {
    /// Set when the planner returns: no more work will come.
    done: Arc<AtomicBool>,
    plan: crate::plan::PlanIter,
    chunk: usize,
    tokens: Receiver<()>,
    work: Sender<Chunk<Address>>,
    stop: Receiver<()>,
    counters: Arc<PipelineCounters>,
}

/// Sets the flag when dropped (the planner returned or panicked).
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

impl Planner {
    fn run(mut self) {
        let _done = SetOnDrop(self.done.clone());
        loop {
            let start = self.plan.position();
            let addresses: Vec<Address> = self
                .plan
                .by_ref()
                .take(self.chunk)
                .map(|p| p.address)
                .collect();
            if addresses.is_empty() {
                return;
            }
            let len = addresses.len() as u64;
            let waiting = Instant::now();
            select! {
                recv(self.tokens) -> token => if token.is_err() { return },
                recv(self.stop) -> _ => return,
            }
            let chunk = Chunk {
                start,
                addresses,
                values: Vec::new(),
            };
            select! {
                send(self.work, chunk) -> sent => if sent.is_err() { return },
                recv(self.stop) -> _ => return,
            }
            self.counters.plan.add_waiting_output(waiting);
            self.counters.plan.add_items(len);
        }
    }
}

struct Worker<T> {
    /// This worker's number: it takes work while `index < active` (all the time when not tuned).
    index: usize,
    active: Option<Arc<AtomicUsize>>,
    /// The planner has returned: a parked worker with nothing left to wait for exits (it
    /// holds a sender of the batcher's channel, which would otherwise never close).
    planned: Arc<AtomicBool>,
    func: ItemFn<T>,
    stopped: Arc<AtomicBool>,
    work: Receiver<Chunk<Address>>,
    done: Sender<Chunk<Result<T>>>,
    stop: Receiver<()>,
    counters: Arc<PipelineCounters>,
}

impl<T> Worker<T> {
    fn run(self) {
        let mut func = (self.func)();
        loop {
            if let Some(active) = &self.active {
                // Tuned out: parked (not counted as waiting) until wanted again.
                while self.index >= active.load(Ordering::Relaxed) {
                    if self.planned.load(Ordering::Acquire) && self.work.is_empty() {
                        return;
                    }
                    select! {
                        recv(self.stop) -> _ => return,
                        default(PARK) => {}
                    }
                }
            }
            let waiting = Instant::now();
            let chunk = select! {
                recv(self.work) -> work => match work { Ok(work) => work, Err(_) => return },
                recv(self.stop) -> _ => return,
            };
            self.counters.map.add_waiting_input(waiting);
            let busy = Instant::now();
            let mut values = Vec::with_capacity(chunk.addresses.len());
            for (offset, &address) in chunk.addresses.iter().enumerate() {
                if self.stopped.load(Ordering::Relaxed) {
                    return;
                }
                let value = self.call(&mut func, address, chunk.start + offset as u64);
                if matches!(value, Err(Error::Panic { .. })) {
                    // Whatever state the function held may be half-updated: start afresh.
                    func = (self.func)();
                }
                values.push(value);
            }
            self.counters.map.add_busy(busy);
            let len = values.len() as u64;
            let done = Chunk {
                start: chunk.start,
                addresses: chunk.addresses,
                values,
            };
            let waiting = Instant::now();
            select! {
                send(self.done, done) -> sent => if sent.is_err() { return },
                recv(self.stop) -> _ => return,
            }
            self.counters.map.add_waiting_output(waiting);
            self.counters.map.add_items(len);
        }
    }

    /// The item at `address`; a failure or panic becomes an [`Error`] in its place.
    fn call(&self, func: &mut WorkerFn<T>, address: Address, position: u64) -> Result<T> {
        match catch_unwind(AssertUnwindSafe(|| func(address, position))) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(match error.downcast::<Error>() {
                Ok(ours) => *ours,
                Err(source) => Error::Item {
                    address,
                    position,
                    source,
                },
            }),
            Err(payload) => Err(Error::Panic {
                stage: "map",
                position,
                message: Error::panic_message(payload.as_ref()),
            }),
        }
    }
}

struct Batcher<T> {
    done: Receiver<Chunk<Result<T>>>,
    tokens: Sender<()>,
    out: Sender<Result<Batch<T>>>,
    stop: Receiver<()>,
    counters: Arc<PipelineCounters>,
    deterministic: bool,
    next_position: u64,
    batch_size: usize,
    drop_remainder: bool,
    /// A token per batch the consumer has room for.
    prefetch: Receiver<()>,
}

/// Whether the batcher goes on.
enum Flow {
    Continue,
    Stop,
}

impl<T> Batcher<T> {
    fn run(mut self) {
        let mut reorder: BTreeMap<u64, Chunk<Result<T>>> = BTreeMap::new();
        let mut batch = Batch::with_capacity(self.batch_size);
        loop {
            let waiting = Instant::now();
            let received = select! {
                recv(self.done) -> done => done,
                recv(self.stop) -> _ => return,
            };
            self.counters.batch.add_waiting_input(waiting);
            let Ok(chunk) = received else { break };
            let busy = Instant::now();
            if self.deterministic {
                reorder.insert(chunk.start, chunk);
                while let Some(chunk) = reorder.remove(&self.next_position) {
                    self.next_position += chunk.values.len() as u64;
                    if let Flow::Stop = self.accept(&mut batch, chunk) {
                        return;
                    }
                }
            } else if let Flow::Stop = self.accept(&mut batch, chunk) {
                return;
            }
            self.counters.batch.add_busy(busy);
        }
        if !batch.items.is_empty() && !self.drop_remainder {
            self.send(Ok(batch));
        }
    }

    fn accept(&mut self, batch: &mut Batch<T>, chunk: Chunk<Result<T>>) -> Flow {
        let positions = chunk.start..;
        for ((value, address), position) in
            chunk.values.into_iter().zip(chunk.addresses).zip(positions)
        {
            let flow = match value {
                Ok(value) => {
                    batch.items.push(value);
                    batch.addresses.push(address);
                    batch.end = position + 1;
                    if batch.items.len() == self.batch_size {
                        let full = std::mem::replace(batch, Batch::with_capacity(self.batch_size));
                        self.send(Ok(full))
                    } else {
                        Flow::Continue
                    }
                }
                Err(error) => self.send(Err(error)),
            };
            if let Flow::Stop = flow {
                return Flow::Stop;
            }
        }
        // Every item of the chunk is in a batch now: let the planner send another chunk.
        let _ = self.tokens.try_send(());
        Flow::Continue
    }

    fn send(&self, item: Result<Batch<T>>) -> Flow {
        let waiting = Instant::now();
        let room = select! {
            recv(self.prefetch) -> token => token.is_ok(),
            recv(self.stop) -> _ => false,
        };
        let sent = room
            && select! {
                send(self.out, item) -> sent => sent.is_ok(),
                recv(self.stop) -> _ => false,
            };
        self.counters.batch.add_waiting_output(waiting);
        self.counters.batch.add_items(1);
        if sent { Flow::Continue } else { Flow::Stop }
    }
}

/// A batch of items, with their addresses.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch<T> {
    /// The items.
    pub items: Vec<T>,
    /// Each item's source and index.
    pub addresses: Vec<Address>,
    /// The stream position just after the last item (deterministic mode: where a resumed
    /// pipeline continues).
    pub end: u64,
}

impl<T> Batch<T> {
    fn with_capacity(size: usize) -> Self {
        Batch {
            items: Vec::with_capacity(size),
            addresses: Vec::with_capacity(size),
            end: 0,
        }
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the batch has no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Where a pipeline stands, in 24 bytes: the stream position of the next item, its epoch,
/// and a fingerprint of the plan it belongs to. The order from there follows from the plan
/// (file list, counts, seed, settings), so nothing else needs saving: not the shuffle
/// buffer, not the file offsets, not the random generators' states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeState {
    /// Items delivered since the start of the stream (all epochs).
    pub position: u64,
    /// The epoch of the next item.
    pub epoch: u64,
    /// [`Plan::fingerprint`] of the pipeline.
    pub fingerprint: u64,
}

impl ResumeState {
    /// The state as 24 little-endian bytes.
    pub fn to_bytes(&self) -> [u8; 24] {
        let mut bytes = [0u8; 24];
        bytes[..8].copy_from_slice(&self.position.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.epoch.to_le_bytes());
        bytes[16..].copy_from_slice(&self.fingerprint.to_le_bytes());
        bytes
    }

    /// Reads the bytes of [`ResumeState::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bytes: &[u8; 24] = bytes
            .try_into()
            .map_err(|_| Error::InvalidState(format!("{} bytes, expected 24", bytes.len())))?;
        let word =
            |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        Ok(ResumeState {
            position: word(0),
            epoch: word(1),
            fingerprint: word(2),
        })
    }
}

/// The running pipeline: yields batches (or errors) in the order described by
/// [`Pipeline::deterministic`]. Dropping it stops and joins every thread.
pub struct PipelineIter<T> {
    out: Option<Receiver<Result<Batch<T>>>>,
    stop: Option<Sender<()>>,
    stopped: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
    failure: Arc<Mutex<Option<Error>>>,
    counters: Arc<PipelineCounters>,
    cache_stats: Option<Arc<dyn CacheCounters>>,
    fingerprint: u64,
    epoch_len: u64,
    position: u64,
    deterministic: bool,
    /// Handed back to the batcher for each batch taken.
    prefetch: Sender<()>,
    tuning: Option<Arc<Mutex<Tuning>>>,
}

/// Reads a running pipeline's [`Tuning`] from anywhere (cheap to clone; `None` when the
/// pipeline is not tuned).
#[derive(Clone)]
pub struct TuningHandle(Option<Arc<Mutex<Tuning>>>);

impl TuningHandle {
    /// What the tuner has chosen so far.
    pub fn get(&self) -> Option<Tuning> {
        self.0
            .as_ref()
            .map(|t| t.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

impl<T> PipelineIter<T> {
    /// What the tuner has chosen so far (`None` with [`Parallelism::Fixed`]).
    pub fn tuning(&self) -> Option<Tuning> {
        self.tuning_handle().get()
    }

    /// A handle that reads [`PipelineIter::tuning`] while something else owns the iterator.
    pub fn tuning_handle(&self) -> TuningHandle {
        TuningHandle(self.tuning.clone())
    }

    /// Where the consumer stands: resume from here with [`Pipeline::iter_from`].
    pub fn state(&self) -> ResumeState {
        ResumeState {
            position: self.position,
            epoch: self.position.checked_div(self.epoch_len).unwrap_or(0),
            fingerprint: self.fingerprint,
        }
    }

    /// Per-stage statistics so far.
    pub fn stats(&self) -> Stats {
        let mut stats = self.counters.snapshot();
        if let Some(tuning) = self.tuning() {
            if let Some(map) = stats.stages.iter_mut().find(|s| s.name == "map") {
                map.threads = tuning.workers;
            }
            stats.tuning = Some(tuning);
        }
        if let Some(cache) = &self.cache_stats {
            stats.cache_hits = cache.hits();
            stats.cache_overflow = cache.overflow();
        }
        stats
    }

    /// The items one by one instead of in batches.
    pub fn items(self) -> impl Iterator<Item = Result<T>> {
        self.flat_map(|batch| match batch {
            Ok(batch) => batch.items.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(error) => vec![Err(error)],
        })
    }
}

impl<T> Iterator for PipelineIter<T> {
    type Item = Result<Batch<T>>;

    fn next(&mut self) -> Option<Self::Item> {
        let out = self.out.as_ref()?;
        let waiting = Instant::now();
        let received = out.recv();
        self.counters.consumer.add_waiting_input(waiting);
        if received.is_ok() {
            // Room for one more batch; the channel never holds more tokens than batches fit.
            let _ = self.prefetch.try_send(());
        }
        match received {
            Ok(Ok(batch)) => {
                self.counters.consumer.add_items(1);
                self.position = if self.deterministic {
                    batch.end
                } else {
                    self.position + batch.len() as u64
                };
                Some(Ok(batch))
            }
            Ok(Err(error)) => Some(Err(error)),
            Err(_) => {
                self.out = None;
                let failure = self
                    .failure
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                failure.map(Err)
            }
        }
    }
}

impl<T> Drop for PipelineIter<T> {
    fn drop(&mut self) {
        // Closing the stop channel wakes every thread blocked on a channel; a worker inside
        // the caller's function stops after that item (it checks the flag between items).
        self.stopped.store(true, Ordering::Relaxed);
        self.stop = None;
        self.out = None;
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}
