//! Batch buffers the decode workers write transformed images into, each at its place in its
//! batch, so the consumer never touches a pixel: in deterministic mode item `p` of an epoch is
//! slot `p % batch` of batch `p / batch`; the consumer takes the batch's buffer once all its
//! items arrived, moves the written slots together (a damaged record leaves a gap) and hands
//! the buffer to numpy as it is. A buffer numpy lets go of comes back to the loader's
//! [`BufferPool`] and is written again: a batch of 224² float32 images is 19 MB, and a buffer
//! freshly allocated is mapped and cleared by the kernel page by page as the workers first
//! write it (measured: 5 % of an augmenting loader's CPU time). All of the loader's
//! raw-buffer handling is here.

use std::collections::HashMap;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::sync::{Arc, Mutex};

use shardfeed_image_prep::RgbImage;
use shardfeed_image_prep::output::PixelWriter;

use super::{Dtype, Pixels};

/// The open batch buffers of one epoch's transform pipeline.
pub(crate) struct Slabs {
    batch: usize,
    /// Elements per image.
    per: usize,
    dtype: Dtype,
    open: Mutex<HashMap<u64, Arc<Slab>>>,
    pool: Arc<BufferPool>,
}

/// Batch buffers given back (their numpy arrays dropped), kept for the next batches: at most
/// [`BufferPool::KEPT`]; one of another size or type is not taken (and goes when others come).
#[derive(Debug, Default)]
pub struct BufferPool {
    kept: Mutex<Vec<Pixels>>,
}

impl BufferPool {
    /// Buffers kept at most. Only buffers the loader had in flight come back (being written,
    /// made ahead for the workers, held by the training step), so the pool holds no more
    /// than the loader's peak; the bound is for a consumer that gathers many batches and
    /// then drops them together.
    pub const KEPT: usize = 16;

    /// Keeps `pixels`' buffer for a later batch (the oldest kept one goes past
    /// [`BufferPool::KEPT`]).
    pub fn give(&self, pixels: Pixels) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= Self::KEPT {
            kept.remove(0);
        }
        kept.push(pixels);
    }

    /// A kept buffer of `dtype` whose capacity is `len` elements, emptied.
    fn take(&self, dtype: Dtype, len: usize) -> Option<Pixels> {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let found = kept.iter().position(|p| {
            let capacity = match (p, dtype) {
                (Pixels::F32(v), Dtype::Float32) => v.capacity(),
                (Pixels::U8(v), Dtype::Uint8) => v.capacity(),
                (Pixels::F16(v), Dtype::Float16) | (Pixels::Bf16(v), Dtype::Bfloat16) => {
                    v.capacity()
                }
                _ => return false,
            };
            capacity == len
        })?;
        Some(kept.swap_remove(found))
    }
}

enum Slab {
    F32(RawBuf<f32>),
    U16(RawBuf<u16>),
    U8(RawBuf<u8>),
}

/// A buffer of `cap` elements of which nothing is initialised until written slot by slot.
struct RawBuf<T> {
    ptr: *mut T,
    cap: usize,
}

// SAFETY: the buffer is plain memory; threads write disjoint slots (each position of an epoch
// is mapped once, by one worker), and it is read only by its one owner after every write
// happened (the items of a batch are sent after their slot was written).
unsafe impl<T: Send> Send for RawBuf<T> {}
// SAFETY: as above; `&RawBuf` only hands out a slot to the worker that maps its position.
unsafe impl<T: Send> Sync for RawBuf<T> {}

impl<T> RawBuf<T> {
    /// `vec`'s buffer (emptied; `T` has no `Drop`), or a new one of `len` elements.
    fn new(len: usize, vec: Option<Vec<T>>) -> Self {
        let mut vec = ManuallyDrop::new(vec.unwrap_or_else(|| Vec::with_capacity(len)));
        vec.clear();
        assert!(vec.capacity() >= len, "a buffer of the batch's size");
        RawBuf {
            ptr: vec.as_mut_ptr(),
            cap: vec.capacity(),
        }
    }

    /// Slot `[start, start + len)`.
    ///
    /// # Safety
    /// No other slot handed out overlaps it, and nothing reads the buffer while it is held.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slot(&self, start: usize, len: usize) -> &mut [MaybeUninit<T>] {
        assert!(start + len <= self.cap, "a slot inside the batch");
        // SAFETY: in bounds (checked), and exclusive by the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start).cast(), len) }
    }

    /// The written slots (`written`, ascending slot indices of `per` elements) moved to the
    /// front, as a `Vec` owning the buffer.
    ///
    /// # Safety
    /// Every slot in `written` was written whole.
    unsafe fn into_vec(self, written: &[usize], per: usize) -> Vec<T> {
        let this = ManuallyDrop::new(self);
        for (to, &from) in written.iter().enumerate() {
            assert!(to <= from && (from + 1) * per <= this.cap);
            if to != from {
                // SAFETY: both ranges are in bounds; `ptr::copy` allows overlap.
                unsafe { std::ptr::copy(this.ptr.add(from * per), this.ptr.add(to * per), per) };
            }
        }
        // SAFETY: the pointer and capacity came from a `Vec<T>`; the first
        // `written.len() × per` elements are initialised (moved from written slots).
        unsafe { Vec::from_raw_parts(this.ptr, written.len() * per, this.cap) }
    }
}

impl<T> Drop for RawBuf<T> {
    fn drop(&mut self) {
        // SAFETY: the pointer and capacity came from a `Vec<T>`; no element is claimed
        // initialised, so none is dropped (the element types have no `Drop` anyway).
        unsafe { drop(Vec::from_raw_parts(self.ptr, 0, self.cap)) };
    }
}

impl Slabs {
    /// Buffers for batches of `batch` images of `side × side × 3` `dtype` elements, taken
    /// from `pool` where it has one.
    pub(crate) fn new(batch: usize, side: usize, dtype: Dtype, pool: Arc<BufferPool>) -> Self {
        Slabs {
            batch,
            per: side * side * 3,
            dtype,
            open: Mutex::new(HashMap::new()),
            pool,
        }
    }

    /// Where the buffers come from, and go back to.
    pub(crate) fn pool(&self) -> &Arc<BufferPool> {
        &self.pool
    }

    /// Makes the buffers of batches `batches` that are not made yet, in the calling thread:
    /// the consumer makes them ahead of the workers, so they come from its allocator arena,
    /// whose freed batches (numpy's) they reuse, rather than being mapped fresh, page by page,
    /// by a worker thread's arena each batch.
    pub(crate) fn prepare(&self, batches: std::ops::Range<u64>) {
        for batch in batches {
            drop(self.slab(batch));
        }
    }

    fn slab(&self, batch: u64) -> Arc<Slab> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.entry(batch)
            .or_insert_with(|| {
                let len = self.batch * self.per;
                Arc::new(match (self.dtype, self.pool.take(self.dtype, len)) {
                    (Dtype::Float32, Some(Pixels::F32(v))) => Slab::F32(RawBuf::new(len, Some(v))),
                    (Dtype::Float32, _) => Slab::F32(RawBuf::new(len, None)),
                    (Dtype::Uint8, Some(Pixels::U8(v))) => Slab::U8(RawBuf::new(len, Some(v))),
                    (Dtype::Uint8, _) => Slab::U8(RawBuf::new(len, None)),
                    (_, Some(Pixels::F16(v) | Pixels::Bf16(v))) => {
                        Slab::U16(RawBuf::new(len, Some(v)))
                    }
                    (_, _) => Slab::U16(RawBuf::new(len, None)),
                })
            })
            .clone()
    }

    /// Writes `image` (mirrored when `flip`) as item `position` of the epoch. Called once per
    /// position, by the worker that maps it (the pipeline maps each position once).
    pub(crate) fn write(&self, position: u64, image: &RgbImage, flip: bool, writer: &PixelWriter) {
        assert_eq!(image.pixels.len(), self.per, "an image of the batch's side");
        let slab = self.slab(position / self.batch as u64);
        let start = (position % self.batch as u64) as usize * self.per;
        // SAFETY: slot `position % batch` of this batch is this position's alone, and the
        // consumer reads the buffer only after this item (sent after this returns) arrived.
        unsafe {
            match &*slab {
                Slab::F32(buf) => writer.write_f32_uninit(image, flip, buf.slot(start, self.per)),
                Slab::U16(buf) => writer.write_u16_uninit(image, flip, buf.slot(start, self.per)),
                Slab::U8(buf) => writer.write_u8_uninit(image, flip, buf.slot(start, self.per)),
            }
        }
        // `slab` drops here, before the item is sent: the consumer finds it the last owner.
    }

    /// The pixels of the batch whose items at `positions` (ascending, of one batch) were
    /// written; a batch none of whose items was written gives an empty buffer.
    pub(crate) fn take(&self, positions: &[u64]) -> Pixels {
        let empty = || match self.dtype {
            Dtype::Float32 => Pixels::F32(Vec::new()),
            Dtype::Uint8 => Pixels::U8(Vec::new()),
            Dtype::Float16 => Pixels::F16(Vec::new()),
            Dtype::Bfloat16 => Pixels::Bf16(Vec::new()),
        };
        let Some(&first) = positions.first() else {
            return empty();
        };
        let batch = first / self.batch as u64;
        let slots: Vec<usize> = positions
            .iter()
            .map(|&p| {
                assert_eq!(p / self.batch as u64, batch, "one batch's items");
                (p % self.batch as u64) as usize
            })
            .collect();
        let slab = self
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&batch)
            .expect("a written batch has its buffer");
        let slab =
            Arc::into_inner(slab).expect("the workers let go of a batch before its items arrive");
        // SAFETY: every slot in `slots` belongs to an item that arrived, each sent after its
        // slot was written whole.
        unsafe {
            match slab {
                Slab::F32(buf) => Pixels::F32(buf.into_vec(&slots, self.per)),
                Slab::U16(buf) if self.dtype == Dtype::Float16 => {
                    Pixels::F16(buf.into_vec(&slots, self.per))
                }
                Slab::U16(buf) => Pixels::Bf16(buf.into_vec(&slots, self.per)),
                Slab::U8(buf) => Pixels::U8(buf.into_vec(&slots, self.per)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardfeed_image_prep::output::{Axes, Element};

    fn image(value: u8) -> RgbImage {
        RgbImage::new(2, 2, vec![value; 12]).unwrap()
    }

    #[test]
    fn slots_written_out_of_order_come_out_in_order_with_gaps_closed() {
        let pool = Arc::new(BufferPool::default());
        let slabs = Slabs::new(4, 2, Dtype::Uint8, pool.clone());
        let writer = PixelWriter::new(Element::U8, Axes::Hwc, None).unwrap();
        // Batch 1 (positions 4..8): 6 and 4 written, 5 damaged (never written), 7 written.
        for p in [6, 4, 7] {
            slabs.write(p, &image(p as u8), false, &writer);
        }
        let Pixels::U8(pixels) = slabs.take(&[4, 6, 7]) else {
            panic!("uint8")
        };
        let expected: Vec<u8> = [4u8, 6, 7].iter().flat_map(|&v| [v; 12]).collect();
        assert_eq!(pixels, expected);
        // A batch of which nothing was written.
        assert_eq!(slabs.take(&[]), Pixels::U8(Vec::new()));
        // Buffers never taken are freed with the slabs.
        slabs.write(9, &image(9), false, &writer);
        drop(slabs);
    }

    #[test]
    fn a_buffer_given_back_is_written_again() {
        let pool = Arc::new(BufferPool::default());
        let slabs = Slabs::new(2, 2, Dtype::Float32, pool.clone());
        let writer = PixelWriter::new(Element::F32, Axes::Hwc, None).unwrap();
        for p in [0, 1] {
            slabs.write(p, &image(p as u8 + 1), false, &writer);
        }
        let pixels = slabs.take(&[0, 1]);
        let Pixels::F32(first) = &pixels else {
            panic!("float32")
        };
        let (address, values) = (first.as_ptr(), first.clone());
        pool.give(pixels);
        // Another size, another type: not taken.
        assert!(pool.take(Dtype::Float32, 7).is_none());
        assert!(pool.take(Dtype::Uint8, 24).is_none());
        // The next batch is written into the same memory, with its own values.
        for p in [2, 3] {
            slabs.write(p, &image(p as u8 + 5), false, &writer);
        }
        let Pixels::F32(second) = slabs.take(&[2, 3]) else {
            panic!("float32")
        };
        assert_eq!(second.as_ptr(), address);
        assert_ne!(second, values);
        let fresh = Slabs::new(2, 2, Dtype::Float32, Arc::default());
        for p in [2, 3] {
            fresh.write(p, &image(p as u8 + 5), false, &writer);
        }
        assert_eq!(Pixels::F32(second), fresh.take(&[2, 3]));
        // At most KEPT are kept.
        for _ in 0..BufferPool::KEPT + 3 {
            pool.give(Pixels::U8(vec![0; 24]));
        }
        assert_eq!(pool.kept.lock().unwrap().len(), BufferPool::KEPT);
    }
}
