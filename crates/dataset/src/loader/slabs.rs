//! Batch buffers the decode workers write transformed images into, each at its place in its
//! batch, so the consumer never touches a pixel: in deterministic mode item `p` of an epoch is
//! slot `p % batch` of batch `p / batch`; the consumer takes the batch's buffer once all its
//! items arrived, moves the written slots together (a damaged record leaves a gap) and hands
//! the buffer to numpy as it is. All of the loader's raw-buffer handling is here.

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
    fn new(len: usize) -> Self {
        let mut vec = ManuallyDrop::new(Vec::<T>::with_capacity(len));
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
    /// Buffers for batches of `batch` images of `side × side × 3` `dtype` elements.
    pub(crate) fn new(batch: usize, side: usize, dtype: Dtype) -> Self {
        Slabs {
            batch,
            per: side * side * 3,
            dtype,
            open: Mutex::new(HashMap::new()),
        }
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
                Arc::new(match self.dtype {
                    Dtype::Float32 => Slab::F32(RawBuf::new(len)),
                    Dtype::Float16 | Dtype::Bfloat16 => Slab::U16(RawBuf::new(len)),
                    Dtype::Uint8 => Slab::U8(RawBuf::new(len)),
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
        let slabs = Slabs::new(4, 2, Dtype::Uint8);
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
}
