//! [`BlockCache`], a global allocator for training on the CPU: the system allocator, except
//! that large blocks (≥ 1 MiB) are kept when freed and handed out again for the next request
//! of the same size, and fresh ones are backed by transparent huge pages where Linux offers
//! them.
//!
//! Why: a training step allocates the same few hundred large tensors (up to 105 MB each) every
//! step. From the system allocator each is a fresh `mmap` whose every 4 KiB page faults on
//! first touch — measured here (2-core VM) as about half the time of a step with our fast
//! convolution. TensorFlow avoids this with its own arena allocator; this is ours. Declare it
//! in a binary:
//!
//! ```
//! #[global_allocator]
//! static ALLOCATOR: shardfeed_cpu_kernels::BlockCache = shardfeed_cpu_kernels::BlockCache;
//!
//! let big = vec![1.0f32; 1 << 20];
//! drop(big); // kept for the next 4 MiB request
//! assert_eq!(vec![0.0f32; 1 << 20].iter().sum::<f32>(), 0.0);
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;

/// Blocks at least this large are cached.
const LARGE: usize = 1 << 20;
/// The most bytes kept in the cache; a block that would exceed it is returned to the system.
const MAX_CACHED_BYTES: usize = 2 << 30;
/// The most blocks kept.
const MAX_CACHED_BLOCKS: usize = 512;

struct Cache {
    /// `(size, align, address)` of each free block.
    blocks: Vec<(usize, usize, usize)>,
    bytes: usize,
}

static CACHE: Mutex<Cache> = Mutex::new(Cache {
    blocks: Vec::new(),
    bytes: 0,
});

/// The system allocator with a cache of large freed blocks (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct BlockCache;

fn lock() -> std::sync::MutexGuard<'static, Cache> {
    CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A cached block of exactly this layout, if any.
fn take(layout: Layout) -> Option<*mut u8> {
    let mut cache = lock();
    let at = cache
        .blocks
        .iter()
        .rposition(|&(size, align, _)| size == layout.size() && align == layout.align())?;
    let (size, _, address) = cache.blocks.swap_remove(at);
    cache.bytes -= size;
    Some(address as *mut u8)
}

/// Keeps a freed block, returning the oldest blocks to the system to stay within the limits
/// (so a cache full of sizes no longer asked for makes room for today's); false when the
/// block alone is over the limit.
fn keep(ptr: *mut u8, layout: Layout) -> bool {
    if layout.size() > MAX_CACHED_BYTES {
        return false;
    }
    let mut cache = lock();
    if cache.blocks.capacity() == 0 {
        // Allocating under the lock is fine: this size is far below `LARGE`, so the
        // allocation goes straight to the system allocator without taking the lock.
        cache.blocks.reserve_exact(MAX_CACHED_BLOCKS);
    }
    while cache.bytes + layout.size() > MAX_CACHED_BYTES || cache.blocks.len() >= MAX_CACHED_BLOCKS
    {
        let (size, align, address) = cache.blocks.remove(0);
        cache.bytes -= size;
        // SAFETY: a cached block came from `System` with exactly this size and alignment
        // and is in no one's hands (it was removed from the cache under the lock).
        unsafe {
            System.dealloc(
                address as *mut u8,
                Layout::from_size_align_unchecked(size, align),
            )
        };
    }
    cache
        .blocks
        .push((layout.size(), layout.align(), ptr as usize));
    cache.bytes += layout.size();
    true
}

/// Asks Linux to back a fresh block with 2 MiB pages (one fault per 2 MiB, not per 4 KiB).
fn advise_huge_pages(ptr: *mut u8, size: usize) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = (ptr as usize).next_multiple_of(HUGE);
        let end = (ptr as usize + size) / HUGE * HUGE;
        if end > start {
            // SAFETY: the range lies inside a block we own; MADV_HUGEPAGE changes only how
            // the kernel backs it, never its contents. A failure (THP disabled) is harmless.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, size);
}

// SAFETY: every block comes from `System` with the caller's layout and goes back to it with
// that layout; a cached block is handed out only for a request of exactly its layout, and
// only once (it is removed from the cache under the lock).
unsafe impl GlobalAlloc for BlockCache {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() < LARGE {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.alloc(layout) };
        }
        if let Some(ptr) = take(layout) {
            return ptr;
        }
        // SAFETY: forwarded with the caller's guarantees.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            advise_huge_pages(ptr, layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() < LARGE {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.alloc_zeroed(layout) };
        }
        if let Some(ptr) = take(layout) {
            // SAFETY: the block is `layout.size()` bytes and ours alone.
            unsafe { ptr.write_bytes(0, layout.size()) };
            return ptr;
        }
        // SAFETY: forwarded with the caller's guarantees.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            advise_huge_pages(ptr, layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= LARGE && keep(ptr, layout) {
            return;
        }
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}
