//! What a running pipeline hands out: [`Batch`]es through [`PipelineIter`], its
//! [`ResumeState`], and a [`TuningHandle`] on the tuner's choice.

use super::*;

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
    pub(crate) fn with_capacity(size: usize) -> Self {
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
    pub(crate) out: Option<Receiver<Result<Batch<T>>>>,
    pub(crate) stop: Option<Sender<()>>,
    pub(crate) stopped: Arc<AtomicBool>,
    pub(crate) handles: Vec<JoinHandle<()>>,
    pub(crate) failure: Arc<Mutex<Option<Error>>>,
    pub(crate) counters: Arc<PipelineCounters>,
    pub(crate) cache_stats: Option<Arc<dyn CacheCounters>>,
    pub(crate) fingerprint: u64,
    pub(crate) epoch_len: u64,
    pub(crate) position: u64,
    pub(crate) deterministic: bool,
    /// Handed back to the batcher for each batch taken.
    pub(crate) prefetch: Sender<()>,
    pub(crate) tuning: Option<Arc<Mutex<Tuning>>>,
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
