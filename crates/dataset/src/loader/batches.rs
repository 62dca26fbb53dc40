//! One epoch's batches for a rank ([`EpochBatches`]), and the one fill copy of decoded
//! records into the layout and type the caller asked for ([`LoaderBatch`], [`Pixels`]).

use super::*;
use shardfeed_image_prep::RgbImage;
use shardfeed_image_prep::augment::Applied;

/// A batch as numpy takes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Pixels {
    /// [`Dtype::Float32`].
    F32(Vec<f32>),
    /// [`Dtype::Uint8`].
    U8(Vec<u8>),
    /// [`Dtype::Float16`] bits.
    F16(Vec<u16>),
    /// [`Dtype::Bfloat16`] bits.
    Bf16(Vec<u16>),
}

/// Where an image of a batch came from and what was done to it: enough to trace and replay it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Traced {
    /// The file's index among [`Loader::files`].
    pub file: u32,
    /// The record's index in its file.
    pub record: u64,
    /// The crop box (in the record's pixels) and flip, where a transform made the image.
    pub applied: Option<Applied>,
}

impl Traced {
    fn of(address: Address, applied: Option<Applied>) -> Self {
        Traced {
            file: address.source,
            record: address.index,
            applied,
        }
    }
}

/// One batch: `len` images of `side × side × 3` in the configured layout, and their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderBatch {
    /// The pixels.
    pub pixels: Pixels,
    /// One class per image.
    pub labels: Vec<i64>,
    /// The images' side.
    pub side: usize,
    /// Damaged records left out of this batch.
    pub skipped: Vec<Damaged>,
    /// Each image's record and transform, in batch order.
    pub traced: Vec<Traced>,
}

impl LoaderBatch {
    /// Images in the batch.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether it holds no image (every record of it was damaged and skipped).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// A rank's batches to the end of one epoch; dropping it stops the workers.
pub struct EpochBatches {
    pub(super) iter: PipelineIter<Slot>,
    pub(super) share: EpochShare,
    pub(super) yielded: u64,
    pub(super) config: LoaderConfig,
    pub(super) writer: Arc<PixelWriter>,
    /// The batch buffers the transform workers write into (deterministic mode).
    pub(super) slabs: Option<Arc<super::slabs::Slabs>>,
    /// How many batches ahead of the consumer the workers may be ([`super::slabs::Slabs::prepare`]).
    pub(super) ahead: u64,
    /// The images' side: the transform's, else the first image's.
    pub(super) side: Option<usize>,
    pub(super) waited: Duration,
    pub(super) started: Instant,
}

impl EpochBatches {
    /// The records of this epoch's rest.
    pub fn share(&self) -> &EpochShare {
        &self.share
    }

    /// Where this epoch's batch pixels go back when their user is done with them
    /// ([`super::BufferPool::give`]), to be written again by a later batch: where the workers
    /// write into batch buffers (a transform, deterministic order); `None` otherwise.
    pub fn buffers(&self) -> Option<&Arc<super::BufferPool>> {
        self.slabs.as_ref().map(|slabs| slabs.pool())
    }

    /// The position after the batches yielded so far (the same on every rank).
    pub fn position(&self) -> Position {
        if self.yielded >= self.share.batches {
            return Position {
                epoch: self.share.epoch + 1,
                offset: 0,
            };
        }
        let step = (self.config.batch_size * self.config.world_size) as u64;
        Position {
            epoch: self.share.epoch,
            offset: self.share.start + self.yielded * step,
        }
    }

    /// Batches yielded.
    pub fn yielded(&self) -> u64 {
        self.yielded
    }

    /// The pipeline's stage figures so far.
    pub fn stats(&self) -> Stats {
        self.iter.stats()
    }

    /// Time the consumer waited for batches, and the time since start.
    pub fn consumer(&self) -> (Duration, Duration) {
        (self.waited, self.started.elapsed())
    }

    /// Adds this epoch's pipeline and consumer figures to `totals` (when it ends or is
    /// dropped; the batches' counts are added as they are served).
    pub fn add_to(&self, totals: &mut crate::stats::ReadStats) {
        totals.add_pipeline(&self.stats(), self.started.elapsed(), self.waited);
    }

    /// The next batch, filled in the configured type and layout.
    pub fn next_batch(&mut self) -> Option<Result<LoaderBatch>> {
        if let Some(slabs) = &self.slabs {
            let next = self.yielded + 1;
            slabs.prepare(next..(next + self.ahead).min(self.share.batches));
        }
        let waiting = Instant::now();
        let batch = self.iter.next()?;
        self.waited += waiting.elapsed();
        let batch = match batch {
            Ok(batch) => batch,
            Err(error) => return Some(Err(error.into())),
        };
        let result = self.fill(batch.items);
        if result.is_ok() {
            self.yielded += 1;
        }
        Some(result)
    }

    fn fill(&mut self, items: Vec<Slot>) -> Result<LoaderBatch> {
        let mut images = Vec::with_capacity(items.len());
        let mut transformed = Vec::new();
        let (mut written, mut written_labels) = (Vec::new(), Vec::new());
        let mut traced = Vec::with_capacity(items.len());
        let mut skipped = Vec::new();
        for slot in items {
            match slot {
                Slot::Image(address, decoded) => {
                    traced.push(Traced::of(address, None));
                    images.push(decoded);
                }
                Slot::Transformed(address, done) => {
                    traced.push(Traced::of(address, Some(done.applied)));
                    transformed.push(*done);
                }
                Slot::Written {
                    address,
                    position,
                    class,
                    applied,
                } => {
                    traced.push(Traced::of(address, Some(applied)));
                    written.push(position);
                    written_labels.push(class);
                }
                Slot::Damaged(damaged) => match self.config.on_damaged {
                    OnDamaged::Raise => {
                        return Err(Error::DamagedRecord(Box::new((*damaged).clone())));
                    }
                    OnDamaged::Skip => skipped.push((*damaged).clone()),
                },
            }
        }
        if let Some(slabs) = &self.slabs {
            return Ok(LoaderBatch {
                pixels: slabs.take(&written),
                labels: written_labels,
                side: self.side.unwrap_or(0),
                skipped,
                traced,
            });
        }
        if !transformed.is_empty() || self.config.transform.is_some() {
            let side = self.side.unwrap_or(0);
            let labels = transformed.iter().map(|t| t.class).collect();
            let images = transformed.iter().map(|t| (&t.image, t.applied.flip));
            let pixels = fill_pixels(images, side, &self.writer, self.config.dtype);
            return Ok(LoaderBatch {
                pixels,
                labels,
                side,
                skipped,
                traced,
            });
        }
        // The side is the first image's: a batch whose every record was skipped sets nothing.
        let side = match (self.side, images.first()) {
            (Some(side), _) => side,
            (None, Some(first)) => *self.side.insert(first.image.width as usize),
            (None, None) => 0,
        };
        crate::stream::check_square(&images, side)?;
        let labels = images.iter().map(|d| d.class).collect();
        let unflipped = images.iter().map(|d| (&*d.image, false));
        let pixels = fill_pixels(unflipped, side, &self.writer, self.config.dtype);
        Ok(LoaderBatch {
            pixels,
            labels,
            side,
            skipped,
            traced,
        })
    }
}

/// The one copy: decoded HWC bytes (mirrored where asked) into the batch's buffer, converted
/// and laid out by the loader's [`PixelWriter`] (values / 255 as
/// [`shardfeed_image_prep::Preprocessing`] scales them, normalised by a transform's
/// `Normalize`), on the consumer's thread: each image written once, into the buffer numpy
/// takes.
fn fill_pixels<'a>(
    images: impl ExactSizeIterator<Item = (&'a RgbImage, bool)>,
    side: usize,
    writer: &PixelWriter,
    dtype: Dtype,
) -> Pixels {
    let (count, per) = (images.len(), side * side * 3);
    match dtype {
        Dtype::Float32 => Pixels::F32(writer.batch_f32(images, count, per)),
        Dtype::Uint8 => Pixels::U8(writer.batch_u8(images, count, per)),
        Dtype::Float16 => Pixels::F16(writer.batch_u16(images, count, per)),
        Dtype::Bfloat16 => Pixels::Bf16(writer.batch_u16(images, count, per)),
    }
}
