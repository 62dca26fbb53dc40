//! Shorter side → target, then a centre crop, as the tutorial does with `tf.image.resize`
//! (bilinear, half-pixel centres, no antialiasing).
//!
//! `fast_image_resize`'s SIMD `Interpolation(Bilinear)` keeps the two-tap kernel whatever
//! the scale (no antialiasing) and samples at pixel centres, as TensorFlow does; it rounds to
//! the nearest byte where TensorFlow's `tf.cast` truncates, hence the ±1 tolerance (measured
//! against TensorFlow's own pixels in the tests).

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::{Error, Result, RgbImage};

/// The size after "shorter side → target": the other side is `floor(long × target / short)`.
pub fn resized_size(width: u32, height: u32, target: u32) -> (u32, u32) {
    let scale = |long: u32, short: u32| {
        ((u64::from(long) * u64::from(target)) / u64::from(short)).max(1) as u32
    };
    if width <= height {
        (target, scale(height, width))
    } else {
        (scale(width, height), target)
    }
}

/// Resizes images; keeps its scratch buffers between calls. One per thread.
#[derive(Default)]
pub struct ResizeCrop {
    resizer: Resizer,
}

impl ResizeCrop {
    /// A new resizer.
    pub fn new() -> Self {
        ResizeCrop::default()
    }

    /// Shorter side → `target` (bilinear, no antialiasing), then the centre `target` ×
    /// `target` square, with offsets `(excess) // 2`. The resized image may hold at most
    /// `max_pixels` pixels ([`Error::ResizedTooLarge`] otherwise, before any allocation).
    pub fn apply(&mut self, image: &RgbImage, target: u32, max_pixels: u64) -> Result<RgbImage> {
        let (width, height) = resized_size(image.width, image.height, target);
        if u64::from(width) * u64::from(height) > max_pixels {
            return Err(Error::ResizedTooLarge {
                width: image.width,
                height: image.height,
                resized_width: width,
                resized_height: height,
                limit: max_pixels,
            });
        }
        let source = ImageRef::new(image.width, image.height, &image.pixels, PixelType::U8x3)
            .map_err(|e| Error::Resize(e.to_string()))?;
        let mut resized = Image::new(width, height, PixelType::U8x3);
        let options =
            ResizeOptions::new().resize_alg(ResizeAlg::Interpolation(FilterType::Bilinear));
        self.resizer
            .resize(&source, &mut resized, &options)
            .map_err(|e| Error::Resize(e.to_string()))?;
        Ok(crop_centre(width, height, resized.buffer(), target))
    }
}

/// The centre `target` square of a `width` × `height` RGB buffer, offsets `(excess) // 2`.
fn crop_centre(width: u32, height: u32, pixels: &[u8], target: u32) -> RgbImage {
    let left = ((width - target) / 2) as usize;
    let top = ((height - target) / 2) as usize;
    let row_bytes = width as usize * 3;
    let mut out = Vec::with_capacity(target as usize * target as usize * 3);
    for row in pixels
        .chunks_exact(row_bytes)
        .skip(top)
        .take(target as usize)
    {
        out.extend_from_slice(&row[left * 3..(left + target as usize) * 3]);
    }
    RgbImage {
        width: target,
        height: target,
        pixels: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shorter_side_becomes_the_target() {
        assert_eq!(resized_size(442, 332, 160), (213, 160)); // floor(442 × 160 / 332)
        assert_eq!(resized_size(332, 442, 160), (160, 213));
        assert_eq!(resized_size(1, 1, 160), (160, 160));
        assert_eq!(resized_size(2000, 50, 160), (6400, 160));
    }

    #[test]
    fn an_extreme_aspect_ratio_is_refused_before_its_buffer_exists() {
        let thin = RgbImage::new(65_500, 1, vec![7; 65_500 * 3]).unwrap();
        let error = ResizeCrop::new()
            .apply(&thin, 160, 100_000_000)
            .unwrap_err();
        assert!(
            matches!(
                error,
                Error::ResizedTooLarge {
                    width: 65_500,
                    height: 1,
                    resized_width: 10_480_000,
                    resized_height: 160,
                    limit: 100_000_000
                }
            ),
            "{error}"
        );
        // At the limit exactly it resizes.
        let wide = RgbImage::new(40, 10, vec![7; 40 * 10 * 3]).unwrap();
        let square = ResizeCrop::new().apply(&wide, 16, 64 * 16).unwrap();
        assert_eq!((square.width, square.height), (16, 16));
        assert!(ResizeCrop::new().apply(&wide, 16, 64 * 16 - 1).is_err());
    }
}
