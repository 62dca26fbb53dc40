//! Training-time transforms in the read pipeline: a record's crop (random or centre) and flip
//! drawn from a generator keyed by (seed, epoch, file, record) — never by the thread, rank or
//! worker that reads it — its JPEG decoded only where the crop lies and resized in the decode
//! worker; the caller copies it out once, mirrored and normalised in its type and layout.

use std::sync::Arc;

use shardfeed_image_prep::augment::{Applied, Augment, Augmenter, CropKind};
use shardfeed_image_prep::output::{Axes, Element, Normalize, PixelWriter};
use shardfeed_image_prep::{DecodeOptions, RgbImage};
use shardfeed_input_pipeline::tfrecord::TfRecordSource;
use shardfeed_input_pipeline::{Address, BoxError, Pipeline, Plan, Rng};
use shardfeed_record_format::Error as RecordError;

use crate::decode::{Decoded, RecordRules, checked_record, read_at};
use crate::error::Damaged;
use crate::{Error, Result};

/// What is done to every record as it is read: a crop to a square, a flip, a normalisation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    /// The crop, output side and flip.
    pub augment: Augment,
    /// `Normalize(mean, std)` on values in [0, 1] (`None`: values / 255, or the bytes).
    pub normalize: Option<Normalize>,
}

impl Transform {
    /// Checks the numbers: the side in [`crate::limits`]'s range, scale/ratio as torchvision
    /// checks them, the flip a probability, the normalisation's stds positive.
    pub fn check(&self) -> Result<()> {
        crate::limits::check_size(self.augment.size)?;
        let invalid = |why: String| Err(Error::Invalid(why));
        match self.augment.crop {
            CropKind::Random(rrc) => {
                if let Err(why) = rrc.check() {
                    return invalid(format!("RandomResizedCrop: {why}"));
                }
            }
            CropKind::Centre { ratio } => {
                if !(ratio > 0.0 && ratio <= 1.0) {
                    return invalid(format!("CenterCrop: ratio must be in (0, 1], not {ratio}"));
                }
            }
        }
        if !(0.0..=1.0).contains(&self.augment.flip) {
            return invalid(format!(
                "RandomHorizontalFlip: p must be in [0, 1], not {}",
                self.augment.flip
            ));
        }
        if let Some(n) = &self.normalize
            && let Err(why) = n.check()
        {
            return invalid(why);
        }
        Ok(())
    }

    /// torchvision's `RandomResizedCrop(size)` (scale 0.08–1, ratio 3/4–4/3) and
    /// `RandomHorizontalFlip(0.5)`, values / 255: `stream --crop random`, `train --augment`.
    pub fn random(size: u32) -> Self {
        Transform {
            augment: Augment {
                crop: CropKind::Random(Default::default()),
                size,
                flip: 0.5,
                dct_scaling: true,
            },
            normalize: None,
        }
    }

    /// Evaluation's `Resize(size / 0.875)` + `CenterCrop(size)`, no flip, values / 255:
    /// `stream --crop center`.
    pub fn centre(size: u32) -> Self {
        Transform {
            augment: Augment {
                crop: CropKind::Centre { ratio: 0.875 },
                size,
                flip: 0.0,
                dct_scaling: true,
            },
            normalize: None,
        }
    }

    /// The same transform at another output side (progressive resizing).
    pub fn at_size(mut self, size: u32) -> Self {
        self.augment.size = size;
        self
    }
}

/// A record transformed: its crop resized (`u8` HWC, not yet flipped: the copy out mirrors
/// it), class, and what was done to it.
#[derive(Debug, Clone)]
pub struct Transformed {
    /// The resized crop (`size × size`).
    pub image: RgbImage,
    /// The class index.
    pub class: i64,
    /// The crop box (in the record's pixels) and flip.
    pub applied: Applied,
}

/// One decode worker's state for transforms.
pub(crate) struct TransformWorker {
    augmenter: Augmenter,
}

impl TransformWorker {
    pub(crate) fn new() -> shardfeed_image_prep::Result<Self> {
        Ok(TransformWorker {
            augmenter: Augmenter::new()?,
        })
    }
}

/// The draws of record `address` in `epoch` under `seed`: the same wherever it is read.
pub fn record_draws(seed: u64, epoch: u64, address: Address) -> impl FnMut() -> f64 {
    let mut rng = Rng::for_record(seed, epoch, address.source, address.index);
    move || rng.next_f64()
}

/// The box and flip record `address` gets in `epoch` for an image of `width` × `height`
/// (what [`transform_at`] applies; for tests and replay).
pub fn draw_for(
    augment: &Augment,
    seed: u64,
    epoch: u64,
    address: Address,
    (width, height): (u32, u32),
) -> Applied {
    let mut uniform = record_draws(seed, epoch, address);
    shardfeed_image_prep::augment::draw(augment, width, height, &mut uniform)
}

/// Reads the record at `address`, checks it against `rules`, and transforms it with the
/// draws keyed by (`seed`, `epoch`, `address`): damage as in [`crate::decode`]. The copy out
/// (type, layout, normalisation, the flip) is the caller's.
#[allow(clippy::too_many_arguments)]
pub(crate) fn transform_at(
    source: &TfRecordSource,
    worker: &mut TransformWorker,
    rules: &RecordRules,
    transform: &Transform,
    seed: u64,
    epoch: u64,
    address: Address,
) -> std::result::Result<std::result::Result<Transformed, Damaged>, RecordError> {
    read_at(source, address, |payload| {
        let (example, pixels) = checked_record(worker.augmenter.decoder(), rules, payload)?;
        let _held = rules.hold_pixels(pixels);
        let options = DecodeOptions {
            max_pixels: rules.max_pixels,
            ..DecodeOptions::default()
        };
        let mut uniform = record_draws(seed, epoch, address);
        let (image, applied) = worker
            .augmenter
            .apply(&example.image, &options, &transform.augment, &mut uniform)
            .map_err(|e| e.to_string())?;
        Ok(Transformed {
            image,
            class: example.class,
            applied,
        })
    })
}

/// A pipeline of `source`'s records transformed into [`Decoded`] `u8` images (flipped where
/// drawn), over the plan `configure` makes: the draws keyed by (`seed`, the epoch of each
/// item's position, record). What `stream --crop` and `train --augment` read; damage as
/// [`crate::decode::decoded_pipeline`]'s.
pub fn augmented_pipeline(
    source: TfRecordSource,
    rules: RecordRules,
    transform: Transform,
    seed: u64,
    configure: impl FnOnce(Plan) -> Plan,
) -> Pipeline<Decoded> {
    let plan = configure(source.plan());
    let records = source.total_records().max(1);
    let source = Arc::new(source);
    let writer = PixelWriter::new(Element::U8, Axes::Hwc, None).expect("no Normalize");
    Pipeline::new_init_at(
        plan,
        TransformWorker::new,
        move |worker: &mut TransformWorker,
              address: Address,
              position: u64|
              -> std::result::Result<Decoded, BoxError> {
            let epoch = position / records;
            match transform_at(&source, worker, &rules, &transform, seed, epoch, address)? {
                Ok(done) => {
                    let image = match done.applied.flip {
                        false => done.image,
                        true => {
                            let (image, per) = (&done.image, done.image.pixels.len());
                            let mirrored = writer.batch_u8(std::iter::once((image, true)), 1, per);
                            RgbImage::new(image.width, image.height, mirrored)?
                        }
                    };
                    Ok(Decoded {
                        image: Arc::new(image),
                        class: done.class,
                    })
                }
                Err(damaged) => Err(Error::DamagedRecord(Box::new(damaged)).into()),
            }
        },
    )
}
