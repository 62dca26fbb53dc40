//! One source file → one record, in the shard step's ordered parallel map (one [`Preparer`]
//! per worker), by the run's [`Resize`] mode: the seed's square crop, an aspect-kept fit
//! under a longest side, or the source's own bytes, checked.

use std::sync::Arc;

use shardfeed_image_prep::{Preparer, SourceFormat};
use shardfeed_input_pipeline::{Address, BoxError, Pipeline, Plan};
use shardfeed_record_format::{Feature, ImageExample};

use super::{Input, ShardConfig};
use crate::folder::Resize;

/// How a source kept as it is (`Resize::Keep`) is checked before its bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    /// Decoded whole, as a reader will (a truncated or corrupt file is skipped and named).
    #[default]
    Decode,
    /// Only its header parsed (faster; damage past the header reaches the readers, which
    /// skip or refuse the record by file and offset).
    Headers,
}

impl std::str::FromStr for Verify {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "decode" => Ok(Verify::Decode),
            "headers" => Ok(Verify::Headers),
            other => Err(format!("{other:?} is not a check (decode or headers)")),
        }
    }
}

/// The feature `--keep-names` stores each source's relative path under (bytes).
pub const NAME_FEATURE: &str = "name";

/// A prepared record, its image's size where it varies, and the size of its source.
pub(super) struct Prepared {
    pub(super) record: Vec<u8>,
    pub(super) size: Option<(u32, u32)>,
    pub(super) source_bytes: u64,
}

/// The ordered parallel map: read, then by mode decode, resize, crop and encode (`crop`),
/// decode, fit and encode (`fit`), or check (`keep`); serialise.
pub(super) fn prepare_pipeline(config: &ShardConfig, inputs: Arc<[Input]>) -> Pipeline<Prepared> {
    let (size, quality, decode) = (config.size, config.quality, config.decode);
    let (resize, max_side, verify) = (config.resize, config.max_side, config.verify);
    let names = config.keep_names.then(|| config.input.clone());
    let plan = Plan::new(vec![inputs.len() as u64]);
    // One store per source folder for the run (object storage), shared by the workers:
    // the input location's own.
    let stores = crate::remote::Stores::default();
    if let Ok(Some(store)) = config.input.store() {
        stores.keep(&store);
    }
    Pipeline::new_init(
        plan,
        move || Preparer::new(size, quality, decode),
        move |preparer: &mut Preparer, address: Address| -> Result<Prepared, BoxError> {
            let input = &inputs[address.index as usize];
            let source = crate::images::read_source(&stores, &input.path)?;
            let source_bytes = source.len() as u64;
            let format = crate::label::source_format(&input.path).unwrap_or(SourceFormat::Jpeg);
            let (image, size) = match (resize, format) {
                (Resize::Crop, _) => (preparer.prepare_as(&source, format)?, None),
                (Resize::Fit, _) => {
                    let fitted = preparer.fit_as(&source, format, max_side)?;
                    let size = (fitted.width, fitted.height);
                    (preparer.encode(&fitted)?, Some(size))
                }
                (Resize::Keep, SourceFormat::Jpeg) if preparer.orientation(&source).is_none() => {
                    let size = preparer.check(&source, verify == Verify::Decode)?;
                    (source, Some(size))
                }
                // A PNG, WebP, … (or a JPEG turned upright: `--exif-orientation apply`) is
                // encoded once, at its own size: records are JPEGs that read upright.
                (Resize::Keep, _) => {
                    let decoded = preparer.decode_as(&source, format, None)?;
                    let size = (decoded.width, decoded.height);
                    (preparer.encode(&decoded)?, Some(size))
                }
            };
            let example = ImageExample {
                image,
                class: input.class,
                size,
            }
            .to_example();
            // `--keep-names`: the source's path under the source folder, to trace a record
            // back to its file.
            let record = match &names {
                Some(root) => example
                    .with(
                        NAME_FEATURE,
                        Feature::bytes([super::sources::relative(root, &input.path).into_bytes()]),
                    )
                    .to_bytes(),
                None => example.to_bytes(),
            };
            Ok(Prepared {
                record,
                size,
                source_bytes,
            })
        },
    )
    .parallelism(config.jobs)
    .deterministic(true)
    .chunk(4)
}
