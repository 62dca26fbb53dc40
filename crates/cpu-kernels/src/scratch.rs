//! Per-thread scratch buffers, reused from call to call so that the large im2col blocks are
//! not freshly allocated (and page-faulted in) by every convolution.

use std::cell::RefCell;

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's scratch buffer of at least `len` floats (contents unspecified).
///
/// The buffer is taken out of the thread-local slot for the call, so a nested call on the
/// same thread (rayon may run another task while this one waits) gets a fresh buffer
/// instead of a double borrow.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buffer = SCRATCH.with(|slot| std::mem::take(&mut *slot.borrow_mut()));
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    let result = f(&mut buffer[..len]);
    SCRATCH.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.len() < buffer.len() {
            *slot = buffer;
        }
    });
    result
}
