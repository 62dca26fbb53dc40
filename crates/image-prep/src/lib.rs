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
//! let tensor = preparer.to_tensor(&record_jpeg, shardfeed_image_prep::Layout::Hwc)?;
//! assert_eq!(tensor.len(), 160 * 160 * 3);
//! assert!(tensor.iter().all(|v| (0.0..=1.0).contains(v)));
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

/// The memory order of a tensor's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Height, width, channel (TensorFlow's order).
    Hwc,
    /// Channel, height, width (burn's and PyTorch's order).
    Chw,
}

/// Everything one thread needs to turn a source JPEG into a record JPEG, and a record JPEG
/// into a tensor: a decoder, a resizer and an encoder, reused between images.
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

    /// Decodes a record image into `f32` values in [0, 1] (`value / 255`), in `layout`.
    pub fn to_tensor(&mut self, jpeg: &[u8], layout: Layout) -> Result<Vec<f32>> {
        let image = self.decoder.decode(jpeg, &self.options, None)?;
        Ok(to_tensor(&image, layout))
    }

    /// The decoder, for probing headers.
    pub fn decoder(&mut self) -> &mut Decoder {
        &mut self.decoder
    }
}

/// `value / 255` as `f32`, in `layout` ([`Preprocessing::scale`]).
pub fn to_tensor(image: &RgbImage, layout: Layout) -> Vec<f32> {
    let scale = Preprocessing::default().scale();
    match layout {
        Layout::Hwc => {
            let mut out = Vec::with_capacity(image.pixels.len());
            Preprocessing::default().extend_f32(&image.pixels, &mut out);
            out
        }
        Layout::Chw => {
            let plane = image.width as usize * image.height as usize;
            let mut out = vec![0.0; plane * 3];
            for (i, pixel) in image.pixels.chunks_exact(3).enumerate() {
                for (channel, &value) in pixel.iter().enumerate() {
                    out[channel * plane + i] = f32::from(value) * scale;
                }
            }
            out
        }
    }
}
