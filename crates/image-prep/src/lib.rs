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

pub mod augment;
pub mod crop;
mod decode;
mod encode;
mod error;
mod exif;
mod formats;
pub mod output;
mod preprocessing;
mod resize;

pub use decode::{ColorModel, DecodeOptions, Decoder, JpegInfo, RgbImage, dct_denominator};
pub use encode::Encoder;
pub use error::{Error, Result};
pub use exif::{apply_orientation, jpeg_orientation};
pub use formats::{SourceFormat, decode_other};
pub use preprocessing::{Crop, Preprocessing};
pub use resize::{ResizeCrop, fitted_size, resized_size};

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
        self.resize_and_crop_as(jpeg, SourceFormat::Jpeg)
    }

    /// [`Preparer::resize_and_crop`] for a source of `format`.
    pub fn resize_and_crop_as(&mut self, bytes: &[u8], format: SourceFormat) -> Result<RgbImage> {
        let decoded = self.decode_as(bytes, format, Some(self.target))?;
        self.resizer
            .apply(&decoded, self.target, self.options.max_pixels)
    }

    /// The record image of a source JPEG: decode, resize, crop, encode.
    pub fn prepare(&mut self, jpeg: &[u8]) -> Result<Vec<u8>> {
        self.prepare_as(jpeg, SourceFormat::Jpeg)
    }

    /// [`Preparer::prepare`] for a source of `format`.
    pub fn prepare_as(&mut self, bytes: &[u8], format: SourceFormat) -> Result<Vec<u8>> {
        let square = self.resize_and_crop_as(bytes, format)?;
        self.encoder.encode(&square)
    }

    /// A source decoded to RGB under the pixel limit: a JPEG by libjpeg-turbo (at a DCT
    /// scale keeping the shorter side ≥ `target`, where that is on), another format by
    /// [`decode_other`].
    pub fn decode_as(
        &mut self,
        bytes: &[u8],
        format: SourceFormat,
        target: Option<u32>,
    ) -> Result<RgbImage> {
        match format {
            SourceFormat::Jpeg => {
                let image = self.decoder.decode(bytes, &self.options, target)?;
                Ok(match self.orientation(bytes) {
                    Some(orientation) => apply_orientation(image, orientation),
                    None => image,
                })
            }
            SourceFormat::Other => decode_other(bytes, &self.options),
        }
    }

    /// The EXIF orientation a JPEG source is turned by: `None` unless the options apply
    /// orientations ([`DecodeOptions::exif_orientation`]) and the source states one other
    /// than upright (1).
    pub fn orientation(&self, jpeg: &[u8]) -> Option<u8> {
        if !self.options.exif_orientation {
            return None;
        }
        jpeg_orientation(jpeg).filter(|&o| o != 1)
    }

    /// The record image of a source JPEG kept at its own aspect ratio: decoded, downscaled
    /// so the longer side is at most `max_side` (never upscaled, [`ResizeCrop::fit`]).
    /// With DCT scaling on, decoded at the smallest 1/2, 1/4 or 1/8 that keeps the longer
    /// side at least `max_side`.
    pub fn fit(&mut self, jpeg: &[u8], max_side: u32) -> Result<RgbImage> {
        self.fit_as(jpeg, SourceFormat::Jpeg, max_side)
    }

    /// [`Preparer::fit`] for a source of `format`.
    pub fn fit_as(
        &mut self,
        bytes: &[u8],
        format: SourceFormat,
        max_side: u32,
    ) -> Result<RgbImage> {
        if format == SourceFormat::Other {
            let decoded = decode_other(bytes, &self.options)?;
            return self.resizer.fit(decoded, max_side);
        }
        let jpeg = bytes;
        let info = self.decoder.probe(jpeg)?;
        let (long, short) = (info.width.max(info.height), info.width.min(info.height));
        // The shorter side that keeps the longer one at `max_side` (DCT scaling's target).
        let short_target =
            (u64::from(short) * u64::from(max_side)).div_ceil(u64::from(long).max(1));
        let decoded = self.decode_as(
            jpeg,
            SourceFormat::Jpeg,
            Some(short_target.clamp(1, u64::from(u32::MAX)) as u32),
        )?;
        self.resizer.fit(decoded, max_side)
    }

    /// Encodes `image` as a record JPEG (the quality given, 4:4:4).
    pub fn encode(&mut self, image: &RgbImage) -> Result<Vec<u8>> {
        self.encoder.encode(image)
    }

    /// Checks a source JPEG that is kept as it is: its header only (`decode: false`), or its
    /// whole entropy-coded data under the size limit (`decode: true`: every Huffman code of
    /// every scan read and every libjpeg-turbo warning an error, as a full decode finds
    /// them, but at the 1/8 DCT scale, so the inverse DCT and colour work are an eighth
    /// squared); its width and height.
    pub fn check(&mut self, jpeg: &[u8], decode: bool) -> Result<(u32, u32)> {
        let info = self.decoder.probe(jpeg)?;
        if decode {
            let eighth = DecodeOptions {
                dct_scaling: true,
                ..self.options
            };
            self.decoder.decode(jpeg, &eighth, Some(1))?;
            return Ok((info.width, info.height));
        }
        if u64::from(info.width) * u64::from(info.height) > self.options.max_pixels {
            return Err(Error::TooLarge {
                width: info.width,
                height: info.height,
                limit: self.options.max_pixels,
            });
        }
        Ok((info.width, info.height))
    }

    /// The decoder, for probing headers.
    pub fn decoder(&mut self) -> &mut Decoder {
        &mut self.decoder
    }
}
