//! One epoch's batches for a rank ([`EpochBatches`]), and the one fill copy of decoded
//! records into the layout and type the caller asked for ([`LoaderBatch`], [`Pixels`]).

use super::*;

/// A batch as numpy takes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Pixels {
    /// [`Dtype::Float32`].
    F32(Vec<f32>),
    /// [`Dtype::Uint8`].
    U8(Vec<u8>),
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
    pub(super) side: Option<usize>,
    pub(super) waited: Duration,
    pub(super) started: Instant,
}

impl EpochBatches {
    /// The records of this epoch's rest.
    pub fn share(&self) -> &EpochShare {
        &self.share
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
        let mut skipped = Vec::new();
        for slot in items {
            match slot {
                Slot::Image(decoded) => images.push(decoded),
                Slot::Damaged(damaged) => match self.config.on_damaged {
                    OnDamaged::Raise => {
                        return Err(Error::DamagedRecord(Box::new((*damaged).clone())));
                    }
                    OnDamaged::Skip => skipped.push((*damaged).clone()),
                },
            }
        }
        // The side is the first image's: a batch whose every record was skipped sets nothing.
        let side = match (self.side, images.first()) {
            (Some(side), _) => side,
            (None, Some(first)) => *self.side.insert(first.image.width as usize),
            (None, None) => 0,
        };
        crate::stream::check_square(&images, side)?;
        let labels = images.iter().map(|d| d.class).collect();
        let pixels = fill_pixels(&images, side, self.config.dtype, self.config.layout);
        Ok(LoaderBatch {
            pixels,
            labels,
            side,
            skipped,
        })
    }
}

/// The one copy: decoded HWC bytes into the batch's buffer, converted and laid out.
fn fill_pixels(images: &[Decoded], side: usize, dtype: Dtype, layout: Layout) -> Pixels {
    let plane = side * side;
    let len = images.len() * plane * 3;
    match (dtype, layout) {
        (Dtype::Float32, Layout::Nhwc) => {
            let preprocessing = Preprocessing::default();
            let mut out = Vec::with_capacity(len);
            for d in images {
                preprocessing.extend_f32(&d.image.pixels, &mut out);
            }
            Pixels::F32(out)
        }
        (Dtype::Uint8, Layout::Nhwc) => {
            let mut out = Vec::with_capacity(len);
            for d in images {
                out.extend_from_slice(&d.image.pixels);
            }
            Pixels::U8(out)
        }
        (Dtype::Float32, Layout::Nchw) => {
            let scale = Preprocessing::default().scale();
            let mut out = vec![0f32; len];
            for (d, image) in images.iter().zip(out.chunks_exact_mut(plane * 3)) {
                let (r, rest) = image.split_at_mut(plane);
                let (g, b) = rest.split_at_mut(plane);
                for (i, px) in d.image.pixels.chunks_exact(3).enumerate() {
                    r[i] = f32::from(px[0]) * scale;
                    g[i] = f32::from(px[1]) * scale;
                    b[i] = f32::from(px[2]) * scale;
                }
            }
            Pixels::F32(out)
        }
        (Dtype::Uint8, Layout::Nchw) => {
            let mut out = vec![0u8; len];
            for (d, image) in images.iter().zip(out.chunks_exact_mut(plane * 3)) {
                let (r, rest) = image.split_at_mut(plane);
                let (g, b) = rest.split_at_mut(plane);
                for (i, px) in d.image.pixels.chunks_exact(3).enumerate() {
                    r[i] = px[0];
                    g[i] = px[1];
                    b[i] = px[2];
                }
            }
            Pixels::U8(out)
        }
    }
}
