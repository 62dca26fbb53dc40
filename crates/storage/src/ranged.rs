//! `RangedReader`: an object read by offset through range reads with read-ahead, the chunks
//! it holds counted (`held_chunk_bytes`) and let go once read.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use shardfeed_record_format::RandomRead;

use crate::retry::read_range;
use crate::runtime::{Client, runtime};
use crate::{PREFETCH_BUDGET_BYTES, READ_AHEAD_CHUNKS, chunk_bytes};

/// An object read by offset through [`chunk_bytes`] range reads, [`READ_AHEAD_CHUNKS`]
/// ahead of the reader. A chunk is dropped once every byte of it has been read in this pass
/// (a pass reads each record once, in whatever order the shuffle asks), or when the reader is
/// two chunks past it or has reached the object's end (a rank reads only some records).
#[derive(Clone)]
pub struct RangedReader {
    shared: Arc<ReaderShared>,
}

impl RangedReader {
    /// Object `path` of `size` bytes through `store`.
    pub(crate) fn new(store: Arc<Client>, path: ObjectPath, size: u64) -> Self {
        RangedReader {
            shared: Arc::new(ReaderShared {
                store,
                path,
                size,
                chunks: Mutex::new(Chunks::default()),
            }),
        }
    }
}

struct ReaderShared {
    store: Arc<Client>,
    path: ObjectPath,
    size: u64,
    chunks: Mutex<Chunks>,
}

#[derive(Default)]
struct Chunks {
    /// The chunks held, by number.
    slots: BTreeMap<u64, Arc<Slot>>,
    /// The pass, and bytes of each chunk read in it (kept when the chunk is dropped, so that
    /// a straggler's read completes it). A chunk read whole is not read ahead again in its
    /// pass; a read of it starts a new pass.
    served: BTreeMap<u64, (u64, u64)>,
    /// Passes over the object begun, less one.
    pass: u64,
}

/// One chunk: being fetched, fetched, or failed.
struct Slot {
    state: Mutex<Option<Result<Bytes, String>>>,
    ready: Condvar,
    /// Counted in [`PREFETCHED`]: fetched ahead and not yet asked for.
    prefetched: std::sync::atomic::AtomicBool,
    bytes: u64,
}

impl Slot {
    /// A reader asks for it: it no longer counts against the read-ahead budget.
    fn claim(&self) {
        if self.prefetched.swap(false, Ordering::Relaxed) {
            PREFETCHED.fetch_sub(self.bytes, Ordering::Relaxed);
        }
    }

    fn failed(&self) -> bool {
        matches!(
            *self.state.lock().unwrap_or_else(|p| p.into_inner()),
            Some(Err(_))
        )
    }

    fn wait(&self) -> Result<Bytes, String> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(result) = state.as_ref() {
                return result.clone();
            }
            state = self.ready.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.claim();
        HELD.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Bytes of prefetched chunks held in the process, not yet asked for.
static PREFETCHED: AtomicU64 = AtomicU64::new(0);
/// Bytes of all chunks held (being fetched or fetched) in the process.
static HELD: AtomicU64 = AtomicU64::new(0);

/// Bytes of object chunks the process holds now: `(all, prefetched and not yet read)`.
/// A reader holds at most the chunk being read, the one before it and [`READ_AHEAD_CHUNKS`]
/// ahead; a reader that reached the end of its object holds none.
pub fn held_chunk_bytes() -> (u64, u64) {
    (
        HELD.load(Ordering::Relaxed),
        PREFETCHED.load(Ordering::Relaxed),
    )
}

impl ReaderShared {
    fn chunk_range(&self, chunk: u64) -> Range<u64> {
        let start = chunk * chunk_bytes();
        start..(start + chunk_bytes()).min(self.size)
    }

    /// The slot of `chunk`, its fetch started if it was not; `None` for a prefetch over
    /// budget or past the end.
    fn slot(self: &Arc<Self>, chunk: u64, prefetch: bool) -> Option<Arc<Slot>> {
        let range = self.chunk_range(chunk);
        if range.start >= self.size {
            return None;
        }
        let bytes = range.end - range.start;
        let mut chunks = self.chunks.lock().unwrap_or_else(|p| p.into_inner());
        let pass = chunks.pass;
        let read_whole = chunks
            .served
            .get(&chunk)
            .is_some_and(|&(at, n)| at == pass && n >= bytes);
        if prefetch && read_whole {
            return None;
        }
        if read_whole {
            // Read whole in this pass, and asked for again: a new pass.
            chunks.pass += 1;
        }
        match chunks.slots.get(&chunk) {
            // A chunk that failed (after its retries) is fetched again when next asked for:
            // an outage that has ended does not fail every later read.
            Some(slot) if slot.failed() => {
                chunks.slots.remove(&chunk);
            }
            Some(slot) => return Some(slot.clone()),
            None => {}
        }
        if prefetch {
            let held = PREFETCHED.fetch_add(bytes, Ordering::Relaxed);
            if held + bytes > PREFETCH_BUDGET_BYTES {
                PREFETCHED.fetch_sub(bytes, Ordering::Relaxed);
                return None;
            }
        }
        HELD.fetch_add(bytes, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            state: Mutex::new(None),
            ready: Condvar::new(),
            prefetched: std::sync::atomic::AtomicBool::new(prefetch),
            bytes,
        });
        chunks.slots.insert(chunk, slot.clone());
        let (store, path, filling) = (self.store.get(), self.path.clone(), slot.clone());
        runtime().spawn(async move {
            let result = read_range(&*store, &path, range)
                .await
                .map(Bytes::from)
                .map_err(|e| e.to_string());
            *filling.state.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
            filling.ready.notify_all();
        });
        Some(slot)
    }

    /// Drops the chunks before `chunk` (the reader has moved past them).
    fn drop_before(&self, chunk: u64) {
        let mut chunks = self.chunks.lock().unwrap_or_else(|p| p.into_inner());
        let keep = chunks.slots.split_off(&chunk);
        chunks.slots = keep;
    }

    /// Counts `n` bytes of `chunk` read; drops it when every byte of it has been.
    fn served(&self, chunk: u64, n: u64) {
        let bytes = {
            let range = self.chunk_range(chunk);
            range.end - range.start
        };
        let mut chunks = self.chunks.lock().unwrap_or_else(|p| p.into_inner());
        let pass = chunks.pass;
        let served = chunks.served.entry(chunk).or_insert((pass, 0));
        if served.0 != pass {
            *served = (pass, 0);
        }
        served.1 += n;
        if served.1 >= bytes {
            chunks.slots.remove(&chunk);
        }
    }

    /// Drops every chunk: the reader reached the end of the object (a read under way keeps
    /// its own hold on the chunk it reads).
    fn drop_all(&self) {
        self.chunks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .slots
            .clear();
    }
}

impl RandomRead for RangedReader {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let shared = &self.shared;
        let end = (offset + buf.len() as u64).min(shared.size);
        if offset >= end {
            return Ok(0);
        }
        let chunk_bytes = chunk_bytes();
        let first = offset / chunk_bytes;
        let mut at = offset;
        while at < end {
            let chunk = at / chunk_bytes;
            let slot = shared
                .slot(chunk, false)
                .expect("a chunk inside the object");
            slot.claim();
            for ahead in 1..=READ_AHEAD_CHUNKS {
                shared.slot(chunk + ahead, true);
            }
            let data = slot.wait().map_err(std::io::Error::other)?;
            let chunk_start = chunk * chunk_bytes;
            let from = (at - chunk_start) as usize;
            let to = ((end - chunk_start) as usize).min(data.len());
            if from >= to {
                return Err(std::io::Error::other(format!(
                    "chunk {chunk} holds {} bytes, fewer than expected",
                    data.len()
                )));
            }
            let n = to - from;
            let into = (at - offset) as usize;
            buf[into..into + n].copy_from_slice(&data[from..to]);
            at += n as u64;
            shared.served(chunk, n as u64);
        }
        // Readers move forward through a file (interleave, then shuffle within a window):
        // the chunk before the first one read may still serve a straggling worker.
        if end == shared.size {
            shared.drop_all();
        } else {
            shared.drop_before(first.saturating_sub(1));
        }
        Ok((end - offset) as usize)
    }

    fn size(&self) -> std::io::Result<u64> {
        Ok(self.shared.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::{ObjectStore, PutPayload};

    fn reader_over(store: Arc<dyn ObjectStore>, name: &str, size: u64) -> RangedReader {
        let again = store.clone();
        let client = Client {
            made: Mutex::new((std::process::id(), store)),
            make: Box::new(move || Ok(again.clone())),
        };
        RangedReader {
            shared: Arc::new(ReaderShared {
                store: Arc::new(client),
                path: ObjectPath::from(name),
                size,
                chunks: Mutex::new(Chunks::default()),
            }),
        }
    }

    /// A chunk whose read failed is fetched again by the next read: an outage that ended
    /// (here: an object that was missing, then written) does not fail every later read.
    #[test]
    fn a_failed_chunk_is_fetched_again_by_the_next_read() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let reader = reader_over(store.clone(), "x", 10);
        let mut buf = [0u8; 4];
        assert!(
            reader.read_at(&mut buf, 0).is_err(),
            "the object is missing"
        );
        runtime()
            .block_on(store.put(
                &ObjectPath::from("x"),
                PutPayload::from(b"0123456789".to_vec()),
            ))
            .unwrap();
        assert_eq!(reader.read_at(&mut buf, 0).unwrap(), 4);
        assert_eq!(&buf, b"0123");
    }

    /// Every byte read once (in any order): no chunk is held afterwards, none counts against
    /// the read-ahead budget; a new pass reads ahead again.
    #[test]
    fn chunks_read_whole_are_dropped() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let size = 3 * chunk_bytes() + 100;
        let data: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        runtime()
            .block_on(store.put(&ObjectPath::from("y"), PutPayload::from(data.clone())))
            .unwrap();
        let reader = reader_over(store, "y", size);
        let piece = chunk_bytes() / 2 + 1;
        let mut offsets: Vec<u64> = (0..size).step_by(piece as usize).collect();
        offsets.swap(0, 3);
        offsets.reverse();
        for pass in 0..2 {
            for &offset in &offsets {
                let mut buf = vec![0u8; piece.min(size - offset) as usize];
                reader.read_at(&mut buf, offset).unwrap();
                assert_eq!(buf, data[offset as usize..offset as usize + buf.len()]);
            }
            let chunks = reader.shared.chunks.lock().unwrap();
            assert!(
                chunks.slots.is_empty(),
                "pass {pass}: chunks {:?} held",
                chunks.slots.keys()
            );
        }
    }
}
