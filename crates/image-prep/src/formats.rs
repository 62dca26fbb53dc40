//! Source images other than JPEG — PNG (8 or 16 bits, palette, grey, alpha), WebP, BMP, GIF
//! (its first frame) and TIFF — decoded by the `image` crate into the same [`RgbImage`] the
//! JPEG decoder makes, under the same pixel limit (checked on the header, before any pixel
//! buffer exists). Transparency is composited on white (as a browser or Pillow's paste onto
//! a white background shows it): a record is opaque RGB.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits};

use crate::{DecodeOptions, Error, Result, RgbImage};

/// What kind of source a file is, by its name's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    /// `.jpg`/`.jpeg`: libjpeg-turbo, as TensorFlow decodes.
    Jpeg,
    /// `.png`, `.webp`, `.bmp`, `.gif`, `.tif`/`.tiff`: the `image` crate, the format read
    /// from the bytes.
    Other,
}

impl SourceFormat {
    /// The format of a file named with `extension` (any case), or `None` for a file that is
    /// not an image source.
    pub fn of_extension(extension: &str) -> Option<SourceFormat> {
        let extension = extension.to_ascii_lowercase();
        match extension.as_str() {
            "jpg" | "jpeg" => Some(SourceFormat::Jpeg),
            "png" | "webp" | "bmp" | "gif" | "tif" | "tiff" => Some(SourceFormat::Other),
            _ => None,
        }
    }
}

/// Decodes a non-JPEG source to 8-bit RGB: 16-bit samples scaled to 8, grey expanded,
/// palettes looked up, alpha composited on white; more than `options.max_pixels` pixels is
/// [`Error::TooLarge`], found from the header.
pub fn decode_other(bytes: &[u8], options: &DecodeOptions) -> Result<RgbImage> {
    if bytes.is_empty() {
        return Err(Error::InvalidImage("empty file".to_owned()));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::InvalidImage(e.to_string()))?;
    if reader.format().is_none() {
        return Err(Error::InvalidImage("not a known image format".to_owned()));
    }
    // Any one allocation (the widest decode: 16-bit RGBA) bounded by the pixel limit.
    let mut limits = Limits::default();
    limits.max_alloc = Some(options.max_pixels.saturating_mul(8).saturating_add(1 << 20));
    reader.limits(limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| Error::InvalidImage(e.to_string()))?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > options.max_pixels {
        return Err(Error::TooLarge {
            width,
            height,
            limit: options.max_pixels,
        });
    }
    let _ = decoder.set_limits(Limits::default());
    let image =
        DynamicImage::from_decoder(decoder).map_err(|e| Error::InvalidImage(e.to_string()))?;
    Ok(to_rgb_on_white(image))
}

/// 8-bit RGB; where the image has alpha, each pixel composited on white:
/// `round(c·a/255 + 255·(255−a)/255)`.
fn to_rgb_on_white(image: DynamicImage) -> RgbImage {
    let (width, height) = (image.width(), image.height());
    if !image.color().has_alpha() {
        let rgb = image.into_rgb8();
        return RgbImage {
            width,
            height,
            pixels: rgb.into_raw(),
        };
    }
    let rgba = image.into_rgba8();
    let mut pixels = Vec::with_capacity(width as usize * height as usize * 3);
    for p in rgba.as_raw().chunks_exact(4) {
        let a = u32::from(p[3]);
        for &c in &p[..3] {
            let value = (u32::from(c) * a + 255 * (255 - a) + 127) / 255;
            pixels.push(value as u8);
        }
    }
    RgbImage {
        width,
        height,
        pixels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(color: image::ColorType, width: u32, height: u32, raw: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        image::ImageEncoder::write_image(
            image::codecs::png::PngEncoder::new(&mut bytes),
            raw,
            width,
            height,
            color.into(),
        )
        .unwrap();
        bytes
    }

    #[test]
    fn alpha_is_composited_on_white_and_sixteen_bits_scale_to_eight() {
        // Two RGBA pixels: opaque red, half-transparent black.
        let bytes = png(
            image::ColorType::Rgba8,
            2,
            1,
            &[255, 0, 0, 255, 0, 0, 0, 128],
        );
        let image = decode_other(&bytes, &DecodeOptions::default()).unwrap();
        assert_eq!((image.width, image.height), (2, 1));
        assert_eq!(image.pixels, [255, 0, 0, 127, 127, 127]);
        // 16-bit grey 0xFFFF and 0x8080 (big-endian samples, as PNG stores them).
        let bytes = png(image::ColorType::L16, 2, 1, &[0xff, 0xff, 0x80, 0x80]);
        let image = decode_other(&bytes, &DecodeOptions::default()).unwrap();
        assert_eq!(image.pixels, [255, 255, 255, 128, 128, 128]);
        // 16-bit RGBA (native-endian samples in memory): opaque blue, fully transparent red.
        let samples: [u16; 8] = [0, 0, 0xffff, 0xffff, 0xffff, 0, 0, 0];
        let raw: Vec<u8> = samples.iter().flat_map(|v| v.to_ne_bytes()).collect();
        let bytes = png(image::ColorType::Rgba16, 2, 1, &raw);
        let image = decode_other(&bytes, &DecodeOptions::default()).unwrap();
        assert_eq!(image.pixels, [0, 0, 255, 255, 255, 255]);
    }

    #[test]
    fn too_many_pixels_are_refused_from_the_header_and_garbage_is_named() {
        let bytes = png(image::ColorType::Rgb8, 40, 30, &[9; 40 * 30 * 3]);
        let small = DecodeOptions {
            max_pixels: 1000,
            ..DecodeOptions::default()
        };
        let error = decode_other(&bytes, &small).unwrap_err();
        assert!(
            matches!(
                error,
                Error::TooLarge {
                    width: 40,
                    height: 30,
                    limit: 1000
                }
            ),
            "{error}"
        );
        let error = decode_other(b"not an image at all", &DecodeOptions::default()).unwrap_err();
        assert_eq!(error.to_string(), "invalid image: not a known image format");
        let error = decode_other(&bytes[..bytes.len() / 2], &DecodeOptions::default()).unwrap_err();
        assert!(error.to_string().starts_with("invalid image: "), "{error}");
    }
}
