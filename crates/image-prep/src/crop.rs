//! Crops decoded from only the part of the JPEG they need, then resized: the fused path
//! behind training-time crops ([`crate::augment`]).
//!
//! [`Decoder::decode_crop`] picks the smallest DCT scaling factor `M/8` that keeps the crop at
//! least the output size, and asks libjpeg-turbo for the crop's region only
//! (`tj3SetCroppingRegion`: its left edge moved down to the scaled iMCU width, rows above and
//! below skipped). [`CropResizer::resize`] then resamples the exact (possibly fractional) box
//! inside the decoded region to the output size with an antialiased bilinear filter (the
//! filter torchvision's `resized_crop(antialias=True)` and Pillow use), its support clamped to
//! the box's pixels as if the box had been cut out first.

use fast_image_resize::images::{CroppedImage, Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use turbojpeg::raw;

use crate::{DecodeOptions, Decoder, Error, JpegInfo, Result, RgbImage};

/// A box in an image's pixel coordinates; it may be fractional (a centre crop of a resized
/// image maps back to one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropBox {
    /// Left edge.
    pub left: f64,
    /// Top edge.
    pub top: f64,
    /// Width (> 0).
    pub width: f64,
    /// Height (> 0).
    pub height: f64,
}

impl CropBox {
    /// The whole of a `width` × `height` image.
    pub fn whole(width: u32, height: u32) -> Self {
        CropBox {
            left: 0.0,
            top: 0.0,
            width: f64::from(width),
            height: f64::from(height),
        }
    }

    /// The box scaled by `factor` (into a scaled decode's pixels).
    fn scaled(&self, factor: f64) -> Self {
        CropBox {
            left: self.left * factor,
            top: self.top * factor,
            width: self.width * factor,
            height: self.height * factor,
        }
    }
}

/// A decoded region and where the asked box lies in it.
#[derive(Debug, Clone)]
pub struct DecodedCrop {
    /// The pixels decoded: the box's region (widened to the iMCU grid) at the scale chosen.
    pub image: RgbImage,
    /// The box, in `image`'s pixels.
    pub within: CropBox,
    /// The scaling factor used, in eighths (8: full size).
    pub eighths: u32,
}

/// libjpeg-turbo's iMCU (width, height) for a `TJSAMP` value (`tjMCUWidth`,
/// `tjMCUHeight`); `None` for one it does not name (such JPEGs are decoded whole, then
/// cropped).
fn mcu_size(subsampling: i32) -> Option<(u32, u32)> {
    match subsampling {
        x if x == raw::TJSAMP_TJSAMP_444 || x == raw::TJSAMP_TJSAMP_GRAY => Some((8, 8)),
        x if x == raw::TJSAMP_TJSAMP_440 => Some((8, 16)),
        x if x == raw::TJSAMP_TJSAMP_441 => Some((8, 32)),
        x if x == raw::TJSAMP_TJSAMP_422 => Some((16, 8)),
        x if x == raw::TJSAMP_TJSAMP_420 => Some((16, 16)),
        x if x == raw::TJSAMP_TJSAMP_411 => Some((32, 8)),
        _ => None,
    }
}

/// The smallest scaling factor, in eighths, that keeps a `width` × `height` box at least
/// `out_width` × `out_height` (8 when none smaller does), among 1/8, 2/8 and 4/8: the factors
/// libjpeg-turbo's SIMD code decodes (its 3/8, 5/8, 6/8 and 7/8 IDCTs, and the 6/4–14/8 ones
/// the chroma then needs, are plain C: measured slower than a full-size SIMD decode and the
/// resize).
pub fn crop_eighths(width: f64, height: f64, out_width: u32, out_height: u32) -> u32 {
    [1, 2, 4]
        .into_iter()
        .find(|&m| {
            width * f64::from(m) >= f64::from(out_width) * 8.0
                && height * f64::from(m) >= f64::from(out_height) * 8.0
        })
        .unwrap_or(8)
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Decoder {
    /// Decodes only what `crop` (in the JPEG's pixels) needs for an `out` (width, height)
    /// output: at the smallest `M/8` scale that keeps the box at least `out`
    /// (`options.dct_scaling`; full size otherwise), and only the box's region. The box is
    /// clamped to the image. The image's pixels count against `options.max_pixels` as in
    /// [`Decoder::decode`].
    pub fn decode_crop(
        &mut self,
        jpeg: &[u8],
        options: &DecodeOptions,
        crop: CropBox,
        out: (u32, u32),
    ) -> Result<DecodedCrop> {
        let info = self.probe_within(jpeg, options)?;
        self.decode_probed_crop(jpeg, &info, options, crop, out)
    }

    /// [`Decoder::decode_crop`] of the JPEG whose header this decoder has just read
    /// ([`Decoder::probe_within`]: `info`), without reading it again.
    pub(crate) fn decode_probed_crop(
        &mut self,
        jpeg: &[u8],
        info: &JpegInfo,
        options: &DecodeOptions,
        crop: CropBox,
        out: (u32, u32),
    ) -> Result<DecodedCrop> {
        let crop = clamp(crop, info.width, info.height);
        let subsampling = self.subsampling();
        // libjpeg-turbo's scaled 4:1:1 and 4:4:1 chroma is coarse (measured: up to 21 levels
        // off the reference at 2/8): those rare JPEGs are decoded at full size.
        let coarse_chroma =
            subsampling == raw::TJSAMP_TJSAMP_411 || subsampling == raw::TJSAMP_TJSAMP_441;
        let eighths = if options.dct_scaling && !coarse_chroma {
            crop_eighths(crop.width, crop.height, out.0, out.1)
        } else {
            8
        };
        let divisor = gcd(eighths, 8);
        let factor = (eighths / divisor, 8 / divisor);
        let scaled_size = |side: u32| (u64::from(side) * u64::from(eighths)).div_ceil(8) as u32;
        let (scaled_width, scaled_height) = (scaled_size(info.width), scaled_size(info.height));
        let scaled = crop.scaled(f64::from(eighths) / 8.0);
        // The region is widened by an iMCU on each side where the chroma is subsampled that
        // way (within the image): chroma upsampling at a region's edge replicates the edge
        // where the whole decode has a neighbour, so the box's own pixels come out as the
        // whole decode's only with one iMCU of context around them (measured: up to 3 levels
        // off at 4:2:0 without it). Full-resolution chroma (4:4:4, grey) needs none: every
        // block decodes alone, and the rows below the box are not entropy-decoded at all.
        let region = mcu_size(subsampling).map(|(mcu_width, mcu_height)| {
            let step = scaled_size(mcu_width).max(1);
            let margin_x = if mcu_width > 8 { step } else { 0 };
            let margin_y = if mcu_height > 8 {
                scaled_size(mcu_height).max(1)
            } else {
                0
            };
            let left = (scaled.left.floor() as u32).min(scaled_width - 1);
            let top = (scaled.top.floor() as u32).min(scaled_height - 1);
            let x0 = (left / step * step).saturating_sub(margin_x);
            let y0 = top.saturating_sub(margin_y);
            let right = (scaled.left + scaled.width).ceil() as u32 + margin_x;
            let bottom = (scaled.top + scaled.height).ceil() as u32 + margin_y;
            let x1 = right.clamp(x0 + 1, scaled_width);
            let y1 = bottom.clamp(y0 + 1, scaled_height);
            [x0, y0, x1 - x0, y1 - y0]
        });
        let image = self.decompress(jpeg, info, options, factor, region)?;
        let [x0, y0, ..] = region.unwrap_or([0; 4]);
        Ok(DecodedCrop {
            within: clamp(
                CropBox {
                    left: scaled.left - f64::from(x0),
                    top: scaled.top - f64::from(y0),
                    ..scaled
                },
                image.width,
                image.height,
            ),
            image,
            eighths,
        })
    }
}

/// `crop` moved and cut to lie inside a `width` × `height` image, at least a pixel's
/// hundredth wide and high.
fn clamp(crop: CropBox, width: u32, height: u32) -> CropBox {
    let (w, h) = (f64::from(width), f64::from(height));
    let left = crop.left.clamp(0.0, w - 0.01);
    let top = crop.top.clamp(0.0, h - 0.01);
    CropBox {
        left,
        top,
        width: crop.width.clamp(0.01, w - left),
        height: crop.height.clamp(0.01, h - top),
    }
}

/// Resamples a box of an image to an output size; keeps its scratch buffers. One per thread.
#[derive(Default)]
pub struct CropResizer {
    resizer: Resizer,
}

impl CropResizer {
    /// A new resizer.
    pub fn new() -> Self {
        CropResizer::default()
    }

    /// `crop` of `image` resampled to `out` (width, height), antialiased bilinear, the filter
    /// reading only the whole pixels the box touches (as if the box had been cut out first).
    pub fn resize(&mut self, image: &RgbImage, crop: CropBox, out: (u32, u32)) -> Result<RgbImage> {
        let crop = clamp(crop, image.width, image.height);
        let x0 = crop.left.floor() as u32;
        let y0 = crop.top.floor() as u32;
        let x1 = ((crop.left + crop.width).ceil() as u32).clamp(x0 + 1, image.width);
        let y1 = ((crop.top + crop.height).ceil() as u32).clamp(y0 + 1, image.height);
        let resize_error = |e: &dyn std::fmt::Display| Error::Resize(e.to_string());
        let source = ImageRef::new(image.width, image.height, &image.pixels, PixelType::U8x3)
            .map_err(|e| resize_error(&e))?;
        let view =
            CroppedImage::new(&source, x0, y0, x1 - x0, y1 - y0).map_err(|e| resize_error(&e))?;
        let mut resized = Image::new(out.0, out.1, PixelType::U8x3);
        let options = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
            .crop(
                crop.left - f64::from(x0),
                crop.top - f64::from(y0),
                crop.width,
                crop.height,
            );
        self.resizer
            .resize(&view, &mut resized, &options)
            .map_err(|e| resize_error(&e))?;
        RgbImage::new(out.0, out.1, resized.into_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_keeps_the_crop_at_least_the_output() {
        assert_eq!(crop_eighths(1000.0, 1000.0, 224, 224), 2); // 250 ≥ 224
        assert_eq!(crop_eighths(500.0, 500.0, 224, 224), 4);
        assert_eq!(crop_eighths(448.0, 448.0, 224, 224), 4);
        assert_eq!(crop_eighths(300.0, 300.0, 224, 224), 8); // 6/8 would do, but is slow C
        assert_eq!(crop_eighths(224.0, 224.0, 224, 224), 8);
        assert_eq!(crop_eighths(100.0, 100.0, 224, 224), 8); // upscaled from full size
        assert_eq!(crop_eighths(2000.0, 300.0, 224, 224), 8); // the shorter side decides
    }

    #[test]
    fn boxes_are_clamped_inside_the_image() {
        let b = clamp(
            CropBox {
                left: -3.0,
                top: 5.0,
                width: 500.0,
                height: 2.0,
            },
            100,
            50,
        );
        assert_eq!((b.left, b.top, b.width, b.height), (0.0, 5.0, 100.0, 2.0));
    }
}
