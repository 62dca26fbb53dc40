//! The caches: memoisation of everything upstream of `cache()`, by item address, in memory
//! or in a file.
//!
//! Slots are indexed densely (source offset + index), each a `OnceLock`, so cached reads take
//! no lock and any epoch order, resumed or not, is served from it. The budget counts bytes as
//! the caller's `size_of` reports them; it is never exceeded: an item that does not fit is an
//! error ([`CacheOverflow::Error`]) or is recomputed every epoch and counted
//! ([`CacheOverflow::Recompute`]).
//!
//! An item is computed once, except at an epoch boundary with several workers: when the
//! next epoch plans an item whose first computation is still in flight, a second worker
//! computes it too (both results are equal; the cache keeps one). Nothing waits on a lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::{Address, Error};

/// What to do with an item that would push the cache past its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheOverflow {
    /// Fail the item with [`Error::CacheBudget`] (the default: never degrade silently).
    #[default]
    Error,
    /// Do not cache it; compute it again each epoch, counted in
    /// [`Stats::cache_overflow`](crate::Stats::cache_overflow).
    Recompute,
}

/// How much the cache may hold.
#[derive(Clone)]
pub struct CacheBudget<T> {
    /// The most bytes cached, as counted by `size_of`.
    pub bytes: u64,
    /// The bytes an item costs.
    pub size_of: Arc<dyn Fn(&T) -> u64 + Send + Sync>,
    /// What to do when an item does not fit.
    pub overflow: CacheOverflow,
}

impl<T> CacheBudget<T> {
    /// A budget of `bytes`, items measured by `size_of`, overflow an error.
    pub fn new(bytes: u64, size_of: impl Fn(&T) -> u64 + Send + Sync + 'static) -> Self {
        CacheBudget {
            bytes,
            size_of: Arc::new(size_of),
            overflow: CacheOverflow::Error,
        }
    }

    /// With this overflow behaviour.
    pub fn on_overflow(mut self, overflow: CacheOverflow) -> Self {
        self.overflow = overflow;
        self
    }
}

/// One write-once slot per item, found by address (source offset + index).
struct Slots<V> {
    offsets: Vec<u64>,
    slots: Vec<OnceLock<V>>,
}

impl<V> Slots<V> {
    fn new(counts: &[u64]) -> Self {
        let mut offsets = Vec::with_capacity(counts.len());
        let mut total = 0;
        for &count in counts {
            offsets.push(total);
            total += count;
        }
        Slots {
            offsets,
            slots: (0..total).map(|_| OnceLock::new()).collect(),
        }
    }

    fn get(&self, address: Address) -> Option<&OnceLock<V>> {
        let offset = *self.offsets.get(address.source as usize)?;
        self.slots
            .get(usize::try_from(offset + address.index).ok()?)
    }
}

/// What happens to an item that does not fit: recomputed next time (counted) or an error.
fn overflowed<T>(
    overflow: CacheOverflow,
    counter: &AtomicU64,
    value: T,
    budget: u64,
    cached: u64,
    position: u64,
) -> Result<T, crate::BoxError> {
    match overflow {
        CacheOverflow::Recompute => {
            counter.fetch_add(1, Ordering::Relaxed);
            Ok(value)
        }
        CacheOverflow::Error => Err(Box::new(Error::CacheBudget {
            budget,
            cached,
            position,
        })),
    }
}

pub(crate) struct CacheStore<T> {
    slots: Slots<T>,
    budget: CacheBudget<T>,
    cached_bytes: AtomicU64,
    pub(crate) hits: AtomicU64,
    pub(crate) overflow: AtomicU64,
}

impl<T: Clone> CacheStore<T> {
    pub(crate) fn new(counts: &[u64], budget: CacheBudget<T>) -> Self {
        CacheStore {
            slots: Slots::new(counts),
            budget,
            cached_bytes: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            overflow: AtomicU64::new(0),
        }
    }

    /// The cached value, or `compute`'s, cached when it fits.
    pub(crate) fn get_or_compute(
        &self,
        address: Address,
        position: u64,
        compute: impl FnOnce() -> Result<T, crate::BoxError>,
    ) -> Result<T, crate::BoxError> {
        let slot = self.slots.get(address);
        if let Some(value) = slot.and_then(OnceLock::get) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(value.clone());
        }
        let value = compute()?;
        let Some(slot) = slot else { return Ok(value) };
        let size = (self.budget.size_of)(&value);
        let reserved =
            self.cached_bytes
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cached| {
                    cached
                        .checked_add(size)
                        .filter(|&total| total <= self.budget.bytes)
                });
        match reserved {
            Ok(_) => {
                if slot.set(value.clone()).is_err() {
                    // Another worker cached the same item first; give the bytes back.
                    self.cached_bytes.fetch_sub(size, Ordering::AcqRel);
                }
                Ok(value)
            }
            Err(cached) => overflowed(
                self.budget.overflow,
                &self.overflow,
                value,
                self.budget.bytes,
                cached,
                position,
            ),
        }
    }
}
