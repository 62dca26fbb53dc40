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

/// Serialises an item for the disk cache.
pub type Encode<T> = Arc<dyn Fn(&T) -> Vec<u8> + Send + Sync>;
/// Reads an item back from the disk cache.
pub type Decode<T> = Arc<dyn Fn(&[u8]) -> Result<T, crate::BoxError> + Send + Sync>;

/// How items are written to and read from a disk cache.
#[derive(Clone)]
pub struct DiskCache<T> {
    /// The folder for the cache file (a file `shardfeed-cache-*.bin` is created there and
    /// removed when the pipeline and its clones are dropped).
    pub dir: std::path::PathBuf,
    /// The most bytes written to the file.
    pub bytes: u64,
    /// Serialises an item.
    pub encode: Encode<T>,
    /// Reads an item back.
    pub decode: Decode<T>,
    /// What to do when an item does not fit.
    pub overflow: CacheOverflow,
}

impl<T> DiskCache<T> {
    /// A disk cache of at most `bytes` in `dir`, with these (de)serialisers.
    pub fn new(
        dir: impl Into<std::path::PathBuf>,
        bytes: u64,
        encode: impl Fn(&T) -> Vec<u8> + Send + Sync + 'static,
        decode: impl Fn(&[u8]) -> Result<T, crate::BoxError> + Send + Sync + 'static,
    ) -> Self {
        DiskCache {
            dir: dir.into(),
            bytes,
            encode: Arc::new(encode),
            decode: Arc::new(decode),
            overflow: CacheOverflow::Error,
        }
    }

    /// With this overflow behaviour.
    pub fn on_overflow(mut self, overflow: CacheOverflow) -> Self {
        self.overflow = overflow;
        self
    }
}

/// Items appended to one file, each followed by its masked CRC-32C, found again by address;
/// a damaged cache file is an error naming the file and offset, never wrong data.
pub(crate) struct DiskStore<T> {
    config: DiskCache<T>,
    path: std::path::PathBuf,
    file: std::fs::File,
    /// (offset, length) of each cached item.
    slots: Slots<(u64, u64)>,
    append: std::sync::Mutex<u64>,
    pub(crate) hits: AtomicU64,
    pub(crate) overflow: AtomicU64,
}

impl<T> DiskStore<T> {
    pub(crate) fn create(counts: &[u64], config: DiskCache<T>) -> Result<Self, Error> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "shardfeed-cache-{}-{}.bin",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = config.dir.join(name);
        let io = |e| {
            Error::Record(shardfeed_record_format::Error::Io {
                file: shardfeed_record_format::FileName::new(&path),
                offset: 0,
                source: e,
            })
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io)?;
        Ok(DiskStore {
            config,
            file,
            slots: Slots::new(counts),
            append: std::sync::Mutex::new(0),
            hits: AtomicU64::new(0),
            overflow: AtomicU64::new(0),
            path,
        })
    }

    fn io_error(&self, offset: u64, source: std::io::Error) -> crate::BoxError {
        Box::new(shardfeed_record_format::Error::Io {
            file: shardfeed_record_format::FileName::new(&self.path),
            offset,
            source,
        })
    }

    /// The cached value, or `compute`'s, written to disk when it fits.
    pub(crate) fn get_or_compute(
        &self,
        address: Address,
        position: u64,
        compute: impl FnOnce() -> Result<T, crate::BoxError>,
    ) -> Result<T, crate::BoxError> {
        let slot = self.slots.get(address);
        if let Some(&(offset, len)) = slot.and_then(OnceLock::get) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return self.read(offset, len);
        }
        let value = compute()?;
        let Some(slot) = slot else { return Ok(value) };
        let mut bytes = (self.config.encode)(&value);
        bytes.extend_from_slice(&shardfeed_record_format::crc::masked_crc32c(&bytes).to_le_bytes());
        let mut end = self.append.lock().unwrap_or_else(|p| p.into_inner());
        if slot.get().is_some() {
            return Ok(value); // another worker wrote it meanwhile
        }
        let offset = *end;
        if offset + bytes.len() as u64 > self.config.bytes {
            return overflowed(
                self.config.overflow,
                &self.overflow,
                value,
                self.config.bytes,
                offset,
                position,
            );
        }
        write_at(&self.file, &bytes, offset).map_err(|e| self.io_error(offset, e))?;
        *end += bytes.len() as u64;
        let _ = slot.set((offset, bytes.len() as u64));
        Ok(value)
    }

    fn read(&self, offset: u64, len: u64) -> Result<T, crate::BoxError> {
        let mut bytes = vec![0u8; len as usize];
        read_exact_at(&self.file, &mut bytes, offset).map_err(|e| self.io_error(offset, e))?;
        let (data, crc) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes(crc.try_into().expect("4 crc bytes"));
        let computed = shardfeed_record_format::crc::masked_crc32c(data);
        if stored != computed {
            return Err(format!(
                "disk cache {} damaged at offset {offset}: crc mismatch (stored {stored:#010x}, computed {computed:#010x})",
                self.path.display()
            )
            .into());
        }
        (self.config.decode)(data)
    }
}

impl<T> Drop for DiskStore<T> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(unix)]
fn write_at(file: &std::fs::File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
}

#[cfg(unix)]
fn read_exact_at(file: &std::fs::File, bytes: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, bytes, offset)
}

#[cfg(windows)]
fn write_at(file: &std::fs::File, mut bytes: &[u8], mut offset: u64) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(file, bytes, offset)?;
        bytes = &bytes[n..];
        offset += n as u64;
    }
    Ok(())
}

#[cfg(windows)]
fn read_exact_at(
    file: &std::fs::File,
    mut bytes: &mut [u8],
    mut offset: u64,
) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_read(file, bytes, offset)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        bytes = &mut bytes[n..];
        offset += n as u64;
    }
    Ok(())
}
