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

/// The size after "longer side at most `max_side`": unchanged when it already fits (never
/// upscaled), else the longer side is `max_side` and the other `round(short × max_side /
/// long)`, at least 1.
pub fn fitted_size(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let long = width.max(height);
    if long <= max_side {
        return (width, height);
    }
    let scale = |short: u32| {
        ((u64::from(short) * u64::from(max_side) + u64::from(long) / 2) / u64::from(long)).max(1)
            as u32
    };
    if width >= height {
        (max_side, scale(height))
    } else {
        (scale(width), max_side)
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
        // The centre square, offsets `(excess) // 2`.
        let resized = RgbImage::new(width, height, resized.into_vec())?;
        Ok(resized.cut((width - target) / 2, (height - target) / 2, target, target))
    }
}

impl ResizeCrop {
    /// Downscales `image` so its longer side is at most `max_side` ([`fitted_size`]; an image
    /// that fits is returned as it is). Antialiased (a bilinear filter widened to the
    /// scale, as Pillow's `reduce`/`resize` and `tf.image.resize(antialias=True)`): these
    /// records are kept for later crops, not fed to a model as they are.
    pub fn fit(&mut self, image: RgbImage, max_side: u32) -> Result<RgbImage> {
        let (width, height) = fitted_size(image.width, image.height, max_side);
        if (width, height) == (image.width, image.height) {
            return Ok(image);
        }
        let source = ImageRef::new(image.width, image.height, &image.pixels, PixelType::U8x3)
            .map_err(|e| Error::Resize(e.to_string()))?;
        let mut resized = Image::new(width, height, PixelType::U8x3);
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
        self.resizer
            .resize(&source, &mut resized, &options)
            .map_err(|e| Error::Resize(e.to_string()))?;
        RgbImage::new(width, height, resized.into_vec())
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
    fn the_longer_side_fits_and_nothing_is_upscaled() {
        assert_eq!(fitted_size(1024, 768, 512), (512, 384));
        assert_eq!(fitted_size(768, 1024, 512), (384, 512));
        assert_eq!(
            fitted_size(400, 360, 512),
            (400, 360),
            "already fits: unchanged"
        );
        assert_eq!(fitted_size(5000, 3, 512), (512, 1), "never below 1");
        assert_eq!(fitted_size(1001, 667, 500), (500, 333)); // 333.17 rounds to 333
        let image = RgbImage::new(40, 20, vec![9; 40 * 20 * 3]).unwrap();
        let fitted = ResizeCrop::new().fit(image.clone(), 10).unwrap();
        assert_eq!((fitted.width, fitted.height), (10, 5));
        assert!(
            fitted.pixels.iter().all(|&v| v == 9),
            "a flat image stays flat"
        );
        assert_eq!(ResizeCrop::new().fit(image.clone(), 64).unwrap(), image);
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
