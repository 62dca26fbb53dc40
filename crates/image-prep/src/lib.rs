//! Image preparation for shardfeed: JPEG decode (libjpeg-turbo), TensorFlow-matching resize
//! and centre crop, JPEG encode, and [`Preprocessing`], the one description of how a model's
//! input is made (size, crop, scale) from which both training batches and predictions are
//! computed. Knows nothing of TFRecord framing or file names.
//!
//! ```
//! use shardfeed_image_prep::{DecodeOptions, Preparer, RgbImage, Encoder};
//!
//! // A 300×200 gradient, encoded as a JPEG source file would be.
//! let pixels = (0..300 * 200).flat_map(|i| [(i % 300) as u8, (i / 300) as u8, 128]).collect();
//! let source = Encoder::new(90)?.encode(&RgbImage::new(300, 200, pixels)?)?;
//!
//! let mut preparer = Preparer::new(160, 95, DecodeOptions::default())?;
//! let record_jpeg = preparer.prepare(&source)?;            // 160×160, q95, 4:4:4
//! let image = preparer.decoder().decode(&record_jpeg, &DecodeOptions::default(), None)?;
//! let mut input = Vec::new();
//! shardfeed_image_prep::Preprocessing::for_size(160).extend_f32(&image.pixels, &mut input);
//! assert_eq!(input.len(), 160 * 160 * 3);
//! assert!(input.iter().all(|v| (0.0..=1.0).contains(v)));
//! # Ok::<(), shardfeed_image_prep::Error>(())
//! ```

#![deny(missing_docs)]

mod decode;
mod encode;
mod error;
mod preprocessing;
mod resize;

pub use decode::{ColorModel, DecodeOptions, Decoder, JpegInfo, RgbImage, dct_denominator};
pub use encode::Encoder;
pub use error::{Error, Result};
pub use preprocessing::{Crop, Preprocessing};
pub use resize::{ResizeCrop, resized_size};

/// Everything one thread needs to turn a source JPEG into a record JPEG: a decoder, a
/// resizer and an encoder, reused between images.
pub struct Preparer {
    decoder: Decoder,
    resizer: ResizeCrop,
    encoder: Encoder,
    target: u32,
    options: DecodeOptions,
}

impl Preparer {
    /// Prepares images to `target` × `target`, encoded at `quality`.
    pub fn new(target: u32, quality: u8, options: DecodeOptions) -> Result<Self> {
        Ok(Preparer {
            decoder: Decoder::new()?,
            resizer: ResizeCrop::new(),
            encoder: Encoder::new(quality)?,
            target,
            options,
        })
    }

    /// Decodes a source JPEG to RGB, resized and cropped to the target square.
    pub fn resize_and_crop(&mut self, jpeg: &[u8]) -> Result<RgbImage> {
        let decoded = self
            .decoder
            .decode(jpeg, &self.options, Some(self.target))?;
        self.resizer
            .apply(&decoded, self.target, self.options.max_pixels)
    }

    /// The record image of a source JPEG: decode, resize, crop, encode.
    pub fn prepare(&mut self, jpeg: &[u8]) -> Result<Vec<u8>> {
        let square = self.resize_and_crop(jpeg)?;
        self.encoder.encode(&square)
    }

    /// The decoder, for probing headers.
    pub fn decoder(&mut self) -> &mut Decoder {
        &mut self.decoder
    }
}
