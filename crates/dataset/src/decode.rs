//! Records decoded for training: what a record must satisfy before its image is decoded
//! ([`RecordRules`]: pixels under the folder's side, class in range; a byte budget of pixels
//! in flight across workers), the one decode of a record ([`decode_at`], shared by the
//! pipelines and the Loader), and the decoded pipeline over a source.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

use shardfeed_image_prep::{DecodeOptions, Decoder, ResizeCrop, RgbImage};
use shardfeed_input_pipeline::tfrecord::TfRecordSource;
use shardfeed_input_pipeline::{Address, BoxError, Pipeline, Plan};
use shardfeed_record_format::Error as RecordError;
use shardfeed_record_format::{Example, ExampleKeys, ImageExample};

use crate::error::Damaged;
use crate::folder::{Manifest, Resize, ShardFolder};
use crate::{Error, Result};

/// A decoded record: its pixels and class.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The image.
    pub image: Arc<RgbImage>,
    /// The class index.
    pub class: i64,
}

/// What a reader asks of records beyond what their folder says: the feature names, and the
/// square side images of another size are made into.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFormat {
    /// Where the image and class are (`None`: shardfeed's `image`/`class`, or TensorFlow's
    /// `image/encoded`/`image/class/label`, whichever the first record has).
    pub keys: Option<ExampleKeys>,
    /// The side of the square every image is made into (shorter side → side, centre crop:
    /// the seed's preparation) when it is not already that square. `None`: a folder of
    /// `crop` shards keeps its size; records of varying size (`fit`, `keep`, another
    /// writer's) become [`DEFAULT_SIDE`] squares.
    pub size: Option<u32>,
}

/// The square side records of varying size are read at when none is asked for (SPEC §2's).
pub const DEFAULT_SIDE: u32 = 160;

/// What a record read for training must satisfy, checked before its image is decoded, and
/// what is done to it after: one rule for `stream`, `train`, `evaluate` and the
/// [`crate::loader::Loader`].
#[derive(Debug, Clone)]
pub struct RecordRules {
    /// The most pixels (width × height) an image may have: the folder's `manifest.json`
    /// size squared, else the first record's size, and never more than
    /// [`crate::limits::MAX_SIZE`] squared.
    pub max_pixels: u64,
    /// Where `max_pixels` came from, for messages (`manifest.json's 160 × 160`).
    pub pixel_source: String,
    /// Classes are `0..classes` (`None`: only negative classes are refused).
    pub classes: Option<u64>,
    /// Where each record's image and class are.
    pub keys: ExampleKeys,
    /// The square each decoded image is made into where it is not already that square
    /// (`None`: images are kept as decoded).
    pub side: Option<u32>,
    /// Why images are resized as they are read, for a reader to say once (`None` where
    /// every record is already the square the reader takes).
    pub note: Option<String>,
    /// Bytes of pixels being decoded at once, across the pipeline's workers.
    budget: Arc<DecodeBudget>,
}

/// The most bytes of pixels a read pipeline's workers decode at once (one image is always
/// let through, whatever its size under the pixel limit).
pub const DECODE_BUDGET: u64 = 512 << 20;

impl RecordRules {
    /// Rules of `max_pixels` and `classes`, `pixel_source` naming where the limit came from.
    pub fn new(max_pixels: u64, pixel_source: impl Into<String>, classes: Option<u64>) -> Self {
        RecordRules {
            max_pixels,
            pixel_source: pixel_source.into(),
            classes,
            keys: ExampleKeys::SHARDFEED,
            side: None,
            note: None,
            budget: Arc::new(DecodeBudget::new(DECODE_BUDGET)),
        }
    }

    /// The rules of records whose size nothing states: the largest side allowed, squared.
    fn largest_allowed() -> Self {
        RecordRules::new(
            u64::from(crate::limits::MAX_SIZE).pow(2),
            format!("the largest side allowed, {}", crate::limits::MAX_SIZE),
            None,
        )
    }

    /// The same rules reading records under `keys`.
    pub fn with_keys(mut self, keys: ExampleKeys) -> Self {
        self.keys = keys;
        self
    }

    /// The same rules making every image a `side` square; `note` says why, once.
    pub fn with_side(mut self, side: u32, note: Option<String>) -> Self {
        self.side = Some(side);
        self.note = note;
        self
    }

    /// The rules of `source`'s records: the limit and classes of the `manifest.json` beside its
    /// first file (when that manifest lists the file), else the first record's size.
    pub fn of_source(source: &TfRecordSource) -> Result<Self> {
        RecordRules::of_source_in(source, None, &RecordFormat::default())
    }

    /// [`RecordRules::of_source`], with the manifest of `folder` (already read) where the
    /// first file is in it, rather than read again, and what the reader asks (`format`):
    ///
    /// - `crop` shards (manifest): the limit is `target_size`², images stay as they are
    ///   unless `format.size` asks for another square;
    /// - `fit`/`keep` shards (manifest): the limit is the largest image the manifest lists
    ///   (never more than [`DecodeOptions`]'s 100 million pixels); every image becomes a
    ///   `format.size` (else [`DEFAULT_SIDE`]) square, and `note` says so;
    /// - no manifest: the first record's keys are detected (or `format.keys` taken); a record
    ///   that states its size, or keys other than shardfeed's, means sizes vary (the limit is the largest
    ///   side allowed, squared; images become squares as above); else the seed's rule: the
    ///   limit is the first record's size (squares of it stay as they are).
    pub fn of_source_in(
        source: &TfRecordSource,
        folder: Option<&ShardFolder>,
        format: &RecordFormat,
    ) -> Result<Self> {
        let largest = u64::from(crate::limits::MAX_SIZE).pow(2);
        let Some(first) = source.files().first() else {
            return Ok(RecordRules::new(largest, "the largest side allowed", None));
        };
        let dir = first.path.parent().unwrap_or(Path::new("."));
        let name = first
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        let manifest = match folder {
            Some(folder) if folder.path() == dir => folder.manifest().cloned(),
            _ => Manifest::read_folder(dir)?,
        };
        let keys = format.keys.clone();
        if let Some(manifest) = manifest
            && manifest.records_of(name).is_some()
        {
            let classes = Some(manifest.classes.len() as u64);
            let keys = keys.unwrap_or_default();
            if manifest.resize == Resize::Crop {
                let side = u64::from(manifest.target_size);
                let rules = RecordRules::new(
                    (side * side).min(largest),
                    format!("manifest.json's {side} × {side}"),
                    classes,
                )
                .with_keys(keys);
                return Ok(match format.size {
                    Some(asked) if u64::from(asked) != side => rules.with_side(
                        asked,
                        Some(format!(
                            "the {side} × {side} records are resized to {asked} × {asked} as they are read"
                        )),
                    ),
                    _ => rules,
                });
            }
            let most = DecodeOptions::default().max_pixels;
            let (max_pixels, range) = match manifest.sizes {
                Some(s) => (
                    s.max_pixels.min(most),
                    format!(
                        "{}–{} × {}–{}",
                        s.min_width, s.max_width, s.min_height, s.max_height
                    ),
                ),
                None => (most, "sizes not recorded".to_owned()),
            };
            let side = format.size.unwrap_or(DEFAULT_SIDE);
            return Ok(RecordRules::new(
                max_pixels,
                format!("manifest.json's largest image, {max_pixels} pixels"),
                classes,
            )
            .with_keys(keys)
            .with_side(
                side,
                Some(varying_note(
                    &format!("resize {} ({range})", manifest.resize),
                    side,
                )),
            ));
        }
        let probed = source
            .files()
            .iter()
            .position(|f| f.records > 0)
            .and_then(|i| first_record(source, i, keys.as_ref()));
        let Some(first) = probed else {
            let rules = RecordRules::largest_allowed().with_keys(keys.unwrap_or_default());
            return Ok(match format.size {
                Some(side) => rules.with_side(side, None),
                None => rules,
            });
        };
        let (w, h) = first.size;
        if first.states_size || first.keys != ExampleKeys::SHARDFEED {
            let side = format.size.unwrap_or(DEFAULT_SIDE);
            return Ok(RecordRules::largest_allowed()
                .with_keys(first.keys)
                .with_side(
                    side,
                    Some(varying_note("no manifest.json; sizes may vary", side)),
                ));
        }
        let rules = if u64::from(w) * u64::from(h) <= largest {
            RecordRules::new(
                u64::from(w) * u64::from(h),
                format!("the first record's {w} × {h}"),
                None,
            )
        } else {
            RecordRules::largest_allowed()
        }
        .with_keys(first.keys);
        Ok(match format.size {
            Some(side) if (side, side) != (w, h) => rules.with_side(
                side,
                Some(format!(
                    "the {w} × {h} records are resized to {side} × {side} as they are read"
                )),
            ),
            _ => rules,
        })
    }

    /// The same rules with classes `0..classes`.
    pub fn with_classes(mut self, classes: u64) -> Self {
        self.classes = Some(classes);
        self
    }

    fn check_class(&self, class: i64) -> std::result::Result<(), String> {
        match self.classes {
            _ if class < 0 => Err(format!("class {class} is negative")),
            Some(n) if class as u64 >= n => Err(format!(
                "class {class} is not below the {n} classes of the run"
            )),
            _ => Ok(()),
        }
    }
}

/// The note of a read that makes records of varying size into `side` squares.
fn varying_note(what: &str, side: u32) -> String {
    format!(
        "records of varying size ({what}) are resized (shorter side → {side}) and centre-cropped to {side} × {side} as they are read; ask for another side with --size (Python: size=)"
    )
}

/// What the first record of a file says about the rest.
struct FirstRecord {
    /// Its keys (given, or detected).
    keys: ExampleKeys,
    /// Its image's size, from the image's header.
    size: (u32, u32),
    /// Whether it states its size in features (`width`/`height`).
    states_size: bool,
}

/// The first record of file `file`, if it parses (under `keys`, else detected ones).
fn first_record(
    source: &TfRecordSource,
    file: usize,
    keys: Option<&ExampleKeys>,
) -> Option<FirstRecord> {
    let address = Address {
        source: file as u32,
        index: 0,
    };
    let mut decoder = Decoder::new().ok()?;
    source
        .fetch_with(address, |payload| {
            let example = Example::decode(payload).ok()?;
            let keys = match keys {
                Some(keys) => keys.clone(),
                None => ExampleKeys::detect(&example)?,
            };
            let record = ImageExample::from_example_with(&example, &keys).ok()?;
            let info = decoder.probe(&record.image).ok()?;
            Some(FirstRecord {
                keys,
                size: (info.width, info.height),
                states_size: record.size.is_some(),
            })
        })
        .ok()
        .flatten()
}

/// Bytes of pixels in flight, shared by a pipeline's decode workers: a worker waits while
/// others hold the budget, so N workers never hold N of the largest images allowed at once.
#[derive(Debug)]
struct DecodeBudget {
    capacity: u64,
    used: Mutex<u64>,
    freed: Condvar,
}

impl DecodeBudget {
    fn new(capacity: u64) -> Self {
        DecodeBudget {
            capacity,
            used: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// Holds `bytes` until the guard drops; waits while they do not fit beside what others
    /// hold (never when nothing is held).
    fn take(&self, bytes: u64) -> BudgetGuard<'_> {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used > 0 && *used + bytes > self.capacity {
            used = self.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += bytes;
        BudgetGuard {
            budget: self,
            bytes,
        }
    }
}

struct BudgetGuard<'a> {
    budget: &'a DecodeBudget,
    bytes: u64,
}

impl Drop for BudgetGuard<'_> {
    fn drop(&mut self) {
        let mut used = self.budget.used.lock().unwrap_or_else(|e| e.into_inner());
        *used -= self.bytes;
        self.budget.freed.notify_all();
    }
}

/// One decode worker's reusable state: a JPEG decoder and a resizer.
pub(crate) struct RecordDecoder {
    decoder: Decoder,
    resizer: ResizeCrop,
}

impl RecordDecoder {
    /// A new worker state.
    pub(crate) fn new() -> shardfeed_image_prep::Result<Self> {
        Ok(RecordDecoder {
            decoder: Decoder::new()?,
            resizer: ResizeCrop::new(),
        })
    }
}

/// Parses a record and checks it against `rules` (class in range, the image's header under
/// the pixel limit): the one check before any image of a record read for training is
/// decoded. Returns the record and its image's pixel count. `Err` says why it is unusable.
pub(crate) fn checked_record(
    decoder: &mut Decoder,
    rules: &RecordRules,
    payload: &[u8],
) -> std::result::Result<(ImageExample, u64), String> {
    let example = ImageExample::decode_with(payload, &rules.keys).map_err(|e| e.to_string())?;
    rules.check_class(example.class)?;
    let info = decoder.probe(&example.image).map_err(|e| e.to_string())?;
    let pixels = u64::from(info.width) * u64::from(info.height);
    if pixels > rules.max_pixels {
        return Err(format!(
            "image of {}×{} pixels, over the limit of {} pixels ({})",
            info.width, info.height, rules.max_pixels, rules.pixel_source
        ));
    }
    Ok((example, pixels))
}

impl RecordRules {
    /// Holds `pixels` RGBA-sized bytes of the shared decode budget until the guard drops.
    pub(crate) fn hold_pixels(&self, pixels: u64) -> impl Drop + '_ {
        self.budget.take(pixels * 4)
    }
}

/// Parses a record, checks it against `rules` and decodes its image, as TensorFlow's
/// `decode_jpeg(channels=3)` does, then makes it the rules' square where it is not one
/// (the seed's shorter side → side and centre crop, the function `shard` uses). `Err` says
/// why the record is unusable.
fn decode_record(
    worker: &mut RecordDecoder,
    rules: &RecordRules,
    payload: &[u8],
) -> std::result::Result<Decoded, String> {
    let (example, pixels) = checked_record(&mut worker.decoder, rules, payload)?;
    let _held = rules.hold_pixels(pixels);
    let options = DecodeOptions {
        max_pixels: rules.max_pixels,
        ..DecodeOptions::default()
    };
    let mut image = worker
        .decoder
        .decode(&example.image, &options, None)
        .map_err(|e| e.to_string())?;
    if let Some(side) = rules.side
        && (image.width, image.height) != (side, side)
    {
        // The resized image (before its crop) is bounded like a decoded one.
        let limit = DecodeOptions::default().max_pixels;
        image = worker
            .resizer
            .apply(&image, side, limit)
            .map_err(|e| e.to_string())?;
    }
    Ok(Decoded {
        image: Arc::new(image),
        class: example.class,
    })
}

/// Reads the record at `address` of `source` and decodes it under `rules`: `Ok(Err(damage))`
/// for a record whose frame is sound but which is unusable (bad `Example`, bad or oversized
/// image, class out of range), named by file, index and offset; `Err` for what the record
/// layer reports (a bad frame or CRC, an I/O failure).
pub(crate) fn decode_at(
    source: &TfRecordSource,
    worker: &mut RecordDecoder,
    rules: &RecordRules,
    address: Address,
) -> std::result::Result<std::result::Result<Decoded, Damaged>, RecordError> {
    read_at(source, address, |payload| {
        decode_record(worker, rules, payload)
    })
}

/// The record at `address` of `source` made into a `T` by `make`: `Ok(Err(damage))` where
/// `make` says the record is unusable (named by file, index and offset), `Err` for what the
/// record layer reports.
pub(crate) fn read_at<T>(
    source: &TfRecordSource,
    address: Address,
    make: impl FnOnce(&[u8]) -> std::result::Result<T, String>,
) -> std::result::Result<std::result::Result<T, Damaged>, RecordError> {
    let made = source.fetch_with(address, make)?;
    Ok(made.map_err(|reason| Damaged {
        path: source.files()[address.source as usize].path.clone(),
        offset: source.record_offset(address),
        record: address.index,
        reason,
    }))
}

/// A pipeline of `source`'s records, parsed, checked against `rules` and decoded (one
/// decoder per worker), over the plan `configure` makes. A bad frame or CRC fails as the
/// record layer reports it; any other unusable record as [`Error::DamagedRecord`].
pub fn decoded_pipeline(
    source: TfRecordSource,
    rules: RecordRules,
    configure: impl FnOnce(Plan) -> Plan,
) -> Pipeline<Decoded> {
    let plan = configure(source.plan());
    let source = Arc::new(source);
    Pipeline::new_init(
        plan,
        RecordDecoder::new,
        move |worker: &mut RecordDecoder,
              address: Address|
              -> std::result::Result<Decoded, BoxError> {
            match decode_at(&source, worker, &rules, address)? {
                Ok(decoded) => Ok(decoded),
                Err(damaged) => Err(Error::DamagedRecord(Box::new(damaged)).into()),
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two workers whose images together pass the budget decode one after the other; one
    /// image over the whole budget still goes through alone.
    #[test]
    fn the_decode_budget_holds_workers_back_until_bytes_are_freed() {
        let budget = Arc::new(DecodeBudget::new(100));
        let first = budget.take(60);
        let (sent, received) = std::sync::mpsc::channel();
        let waiting = {
            let budget = budget.clone();
            std::thread::spawn(move || {
                let _second = budget.take(60);
                sent.send(()).unwrap();
            })
        };
        assert!(
            received
                .recv_timeout(std::time::Duration::from_millis(200))
                .is_err(),
            "the second 60 bytes went past a budget of 100"
        );
        drop(first);
        received
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("freed bytes let the waiting worker go on");
        waiting.join().unwrap();
        let _huge = budget.take(1000);
    }
}
