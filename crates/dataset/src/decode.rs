//! Records decoded for training: what a record must satisfy before its image is decoded
//! ([`RecordRules`]: pixels under the folder's side, class in range; a byte budget of pixels
//! in flight across workers), the one decode of a record ([`decode_at`], shared by the
//! pipelines and the Loader), and the decoded pipeline over a source.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

use shardfeed_image_prep::{DecodeOptions, Decoder, RgbImage};
use shardfeed_input_pipeline::tfrecord::TfRecordSource;
use shardfeed_input_pipeline::{Address, BoxError, Pipeline, Plan};
use shardfeed_record_format::Error as RecordError;
use shardfeed_record_format::ImageExample;

use crate::error::Damaged;
use crate::folder::{Manifest, ShardFolder};
use crate::{Error, Result};

/// A decoded record: its pixels and class.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The image.
    pub image: Arc<RgbImage>,
    /// The class index.
    pub class: i64,
}

/// What a record read for training must satisfy, checked before its image is decoded: one
/// rule for `stream`, `train`, `evaluate` and the [`crate::loader::Loader`].
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
            budget: Arc::new(DecodeBudget::new(DECODE_BUDGET)),
        }
    }

    /// The rules of `source`'s records: the limit and classes of the `manifest.json` beside its
    /// first file (when that manifest lists the file), else the first record's size.
    pub fn of_source(source: &TfRecordSource) -> Result<Self> {
        RecordRules::of_source_in(source, None)
    }

    /// [`RecordRules::of_source`], with the manifest of `folder` (already read) where the
    /// first file is in it, rather than read again.
    pub fn of_source_in(source: &TfRecordSource, folder: Option<&ShardFolder>) -> Result<Self> {
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
        if let Some(manifest) = manifest
            && manifest.records_of(name).is_some()
        {
            let side = u64::from(manifest.target_size);
            return Ok(RecordRules::new(
                (side * side).min(largest),
                format!("manifest.json's {side} × {side}"),
                Some(manifest.classes.len() as u64),
            ));
        }
        let probed = source
            .files()
            .iter()
            .position(|f| f.records > 0)
            .and_then(|i| first_image_size(source, i));
        Ok(match probed {
            Some((w, h)) if u64::from(w) * u64::from(h) <= largest => RecordRules::new(
                u64::from(w) * u64::from(h),
                format!("the first record's {w} × {h}"),
                None,
            ),
            _ => RecordRules::new(
                largest,
                format!("the largest side allowed, {}", crate::limits::MAX_SIZE),
                None,
            ),
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

/// The header size of the first record of file `file`, if it parses.
fn first_image_size(source: &TfRecordSource, file: usize) -> Option<(u32, u32)> {
    let address = Address {
        source: file as u32,
        index: 0,
    };
    let mut decoder = Decoder::new().ok()?;
    source
        .fetch_with(address, |payload| {
            let example = ImageExample::decode(payload).ok()?;
            let info = decoder.probe(&example.image).ok()?;
            Some((info.width, info.height))
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

/// Parses a record, checks it against `rules` and decodes its image with `decoder`, as
/// TensorFlow's `decode_jpeg(channels=3)` does. `Err` says why the record is unusable.
fn decode_record(
    decoder: &mut Decoder,
    rules: &RecordRules,
    payload: &[u8],
) -> std::result::Result<Decoded, String> {
    let example = ImageExample::decode(payload).map_err(|e| e.to_string())?;
    rules.check_class(example.class)?;
    let info = decoder.probe(&example.image).map_err(|e| e.to_string())?;
    let pixels = u64::from(info.width) * u64::from(info.height);
    if pixels > rules.max_pixels {
        return Err(format!(
            "image of {}×{} pixels, over the limit of {} pixels ({})",
            info.width, info.height, rules.max_pixels, rules.pixel_source
        ));
    }
    let _held = rules.budget.take(pixels * 4);
    let options = DecodeOptions {
        max_pixels: rules.max_pixels,
        ..DecodeOptions::default()
    };
    let image = decoder
        .decode(&example.image, &options, None)
        .map_err(|e| e.to_string())?;
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
    decoder: &mut Decoder,
    rules: &RecordRules,
    address: Address,
) -> std::result::Result<std::result::Result<Decoded, Damaged>, RecordError> {
    let decoded = source.fetch_with(address, |payload| decode_record(decoder, rules, payload))?;
    Ok(decoded.map_err(|reason| Damaged {
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
        Decoder::new,
        move |decoder: &mut Decoder, address: Address| -> std::result::Result<Decoded, BoxError> {
            match decode_at(&source, decoder, &rules, address)? {
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
