//! The worker graph's threads: the planner (the order, in chunks), the map workers and the
//! batcher (reordering in deterministic mode, batching, prefetch tokens).

use super::*;

/// Consecutive items of the stream, from `start`: the unit every channel carries.
pub(crate) struct Chunk<V> {
    pub(crate) start: u64,
    pub(crate) addresses: Vec<Address>,
    pub(crate) values: Vec<V>,
}

pub(crate) struct Planner {
    /// Set when the planner returns: no more work will come.
    pub(crate) done: Arc<AtomicBool>,
    pub(crate) plan: crate::plan::PlanIter,
    pub(crate) chunk: usize,
    pub(crate) tokens: Receiver<()>,
    pub(crate) work: Sender<Chunk<Address>>,
    pub(crate) stop: Receiver<()>,
    pub(crate) counters: Arc<PipelineCounters>,
}

/// Sets the flag when dropped (the planner returned or panicked).
pub(crate) struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

impl Planner {
    pub(crate) fn run(mut self) {
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

pub(crate) struct Worker<T> {
    /// This worker's number: it takes work while `index < active` (all the time when not tuned).
    pub(crate) index: usize,
    pub(crate) active: Option<Arc<AtomicUsize>>,
    /// The planner has returned: a parked worker with nothing left to wait for exits (it
    /// holds a sender of the batcher's channel, which would otherwise never close).
    pub(crate) planned: Arc<AtomicBool>,
    pub(crate) func: ItemFn<T>,
    pub(crate) stopped: Arc<AtomicBool>,
    pub(crate) work: Receiver<Chunk<Address>>,
    pub(crate) done: Sender<Chunk<Result<T>>>,
    pub(crate) stop: Receiver<()>,
    pub(crate) counters: Arc<PipelineCounters>,
}

impl<T> Worker<T> {
    pub(crate) fn run(self) {
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
    pub(crate) fn call(
        &self,
        func: &mut WorkerFn<T>,
        address: Address,
        position: u64,
    ) -> Result<T> {
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

pub(crate) struct Batcher<T> {
    pub(crate) done: Receiver<Chunk<Result<T>>>,
    pub(crate) tokens: Sender<()>,
    pub(crate) out: Sender<Result<Batch<T>>>,
    pub(crate) stop: Receiver<()>,
    pub(crate) counters: Arc<PipelineCounters>,
    pub(crate) deterministic: bool,
    pub(crate) next_position: u64,
    pub(crate) batch_size: usize,
    pub(crate) drop_remainder: bool,
    /// A token per batch the consumer has room for.
    pub(crate) prefetch: Receiver<()>,
}

/// Whether the batcher goes on.
pub(crate) enum Flow {
    Continue,
    Stop,
}

impl<T> Batcher<T> {
    pub(crate) fn run(mut self) {
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

    pub(crate) fn accept(&mut self, batch: &mut Batch<T>, chunk: Chunk<Result<T>>) -> Flow {
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

    pub(crate) fn send(&self, item: Result<Batch<T>>) -> Flow {
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
