//! Output buffers that a kernel writes in full before anything reads them, allocated without
//! zeroing: zeroing every activation and gradient first would be one more pass over memory
//! per layer (about 0.4 GB per training step of the seed CNN), on one thread.

use std::mem::{ManuallyDrop, MaybeUninit};

/// `len` floats not yet written.
pub(crate) fn uninit_vec(len: usize) -> Vec<MaybeUninit<f32>> {
    let mut buffer = Vec::with_capacity(len);
    // SAFETY: `MaybeUninit` needs no initialisation and the capacity is `len`.
    unsafe { buffer.set_len(len) };
    buffer
}

/// `buffer` as floats, once every element has been written.
///
/// # Safety
/// Every element of `buffer` must be initialised.
pub(crate) unsafe fn assume_vec_written(buffer: Vec<MaybeUninit<f32>>) -> Vec<f32> {
    let mut buffer = ManuallyDrop::new(buffer);
    let (len, capacity) = (buffer.len(), buffer.capacity());
    // SAFETY: the same allocation, capacity and length; `MaybeUninit<f32>` has `f32`'s layout;
    // the caller guarantees every element is initialised.
    unsafe { Vec::from_raw_parts(buffer.as_mut_ptr().cast(), len, capacity) }
}

/// A vector of `len` floats, every one of them written by `fill`.
///
/// # Safety
/// Unless it panics, `fill` must initialise every element of the slice it is given.
pub(crate) unsafe fn vec_written_by(
    len: usize,
    fill: impl FnOnce(&mut [MaybeUninit<f32>]),
) -> Vec<f32> {
    let mut buffer = uninit_vec(len);
    fill(&mut buffer);
    // SAFETY: the caller guarantees `fill` initialised every element.
    unsafe { assume_vec_written(buffer) }
}

/// `slice` as floats, once every element has been written.
///
/// # Safety
/// Every element of `slice` must be initialised.
pub(crate) unsafe fn assume_written(slice: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout; the caller guarantees initialisation.
    unsafe { &mut *(std::ptr::from_mut(slice) as *mut [f32]) }
}

/// Zeroes `slice` and returns it as floats.
pub(crate) fn zeroed(slice: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: writes `slice.len()` zero floats inside `slice`; all-zero bytes are 0.0, so
    // every element is then initialised.
    unsafe {
        slice.as_mut_ptr().write_bytes(0, slice.len());
        assume_written(slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_vectors_keep_what_was_written() {
        // SAFETY: the closure writes every element.
        let v = unsafe {
            vec_written_by(1000, |out| {
                for (i, o) in out.iter_mut().enumerate() {
                    o.write(i as f32);
                }
            })
        };
        assert_eq!(v.len(), 1000);
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as f32));
        let mut raw = [MaybeUninit::new(7.0f32); 5];
        assert_eq!(zeroed(&mut raw[1..4]), [0.0; 3]);
        // SAFETY: initialised above.
        assert_eq!(
            unsafe { assume_written(&mut raw) },
            [7.0, 0.0, 0.0, 0.0, 7.0]
        );
    }
}
