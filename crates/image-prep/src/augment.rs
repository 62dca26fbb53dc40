//! Training-time transforms, as torchvision names them: `RandomResizedCrop` (its sampling
//! rule: 10 tries, then the centre fallback) or resize + `CenterCrop` for evaluation, then
//! `RandomHorizontalFlip`, decoded through [`crate::crop`] (only the crop's region, at the
//! smallest DCT scale that keeps it at least the output). The flip and `Normalize` happen in
//! the one copy into the caller's buffer ([`crate::output`]).
//!
//! Every random draw comes from the caller's uniform source: the read pipeline keys it by
//! (seed, epoch, record), so a record's crop and flip never depend on which thread, rank or
//! worker made it.

use crate::crop::{CropBox, CropResizer};
use crate::{DecodeOptions, Decoder, Result, RgbImage};

/// torchvision's `RandomResizedCrop` parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomResizedCrop {
    /// The crop's area as a fraction of the image's, drawn uniformly (default 0.08–1).
    pub scale: (f64, f64),
    /// The crop's width / height, drawn log-uniformly (default 3/4–4/3).
    pub ratio: (f64, f64),
}

impl Default for RandomResizedCrop {
    fn default() -> Self {
        RandomResizedCrop {
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
        }
    }
}

impl RandomResizedCrop {
    /// Checks the ranges as torchvision does (each a (low, high) pair with low ≤ high; scale
    /// in (0, 1], ratio > 0).
    pub fn check(&self) -> std::result::Result<(), String> {
        let (s0, s1) = self.scale;
        let (r0, r1) = self.ratio;
        if !(s0 > 0.0 && s0 <= s1 && s1 <= 1.0) {
            return Err(format!(
                "scale must be 0 < low ≤ high ≤ 1, not ({s0}, {s1})"
            ));
        }
        if !(r0 > 0.0 && r0 <= r1 && r1.is_finite()) {
            return Err(format!("ratio must be 0 < low ≤ high, not ({r0}, {r1})"));
        }
        Ok(())
    }

    /// torchvision's `RandomResizedCrop.get_params` for a `width` × `height` image, its
    /// uniform draws taken from `uniform` (values in [0, 1)): up to 10 tries of an area
    /// fraction (uniform in `scale`) and an aspect ratio (log-uniform in `ratio`), the sides
    /// `round(√(area·ratio))` × `round(√(area/ratio))`, kept when they fit, placed at a
    /// uniform integer offset; else the centre crop of the whole image clamped to `ratio`.
    pub fn sample(&self, width: u32, height: u32, uniform: &mut impl FnMut() -> f64) -> CropBox {
        let (w_img, h_img) = (f64::from(width), f64::from(height));
        let area = w_img * h_img;
        let (log_low, log_high) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target = area * (self.scale.0 + (self.scale.1 - self.scale.0) * uniform());
            let aspect = (log_low + (log_high - log_low) * uniform()).exp();
            let w = round_half_even((target * aspect).sqrt());
            let h = round_half_even((target / aspect).sqrt());
            if w > 0.0 && w <= w_img && h > 0.0 && h <= h_img {
                let top = below(uniform(), height - h as u32 + 1);
                let left = below(uniform(), width - w as u32 + 1);
                return CropBox {
                    left: f64::from(left),
                    top: f64::from(top),
                    width: w,
                    height: h,
                };
            }
        }
        let in_ratio = w_img / h_img;
        let (w, h) = if in_ratio < self.ratio.0 {
            (w_img, round_half_even(w_img / self.ratio.0))
        } else if in_ratio > self.ratio.1 {
            (round_half_even(h_img * self.ratio.1), h_img)
        } else {
            (w_img, h_img)
        };
        CropBox {
            left: ((w_img - w) / 2.0).floor(),
            top: ((h_img - h) / 2.0).floor(),
            width: w,
            height: h,
        }
    }
}

/// Python's `round` (halves to even), which torchvision's rule uses.
fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        2.0 * (x / 2.0).round()
    } else {
        r
    }
}

/// A uniform integer in `0..n` from a uniform `u` in [0, 1).
fn below(u: f64, n: u32) -> u32 {
    ((u * f64::from(n)) as u32).min(n.saturating_sub(1))
}

/// torchvision's `Resize(round(size / ratio))` (shorter side; the longer
/// `int(new_short × long / short)`) then `CenterCrop(size)` (offsets
/// `int(round((resized − size) / 2))`), as the box of the source image it keeps.
pub fn centre_box(width: u32, height: u32, size: u32, ratio: f64) -> CropBox {
    let short_target = (f64::from(size) / ratio).round().max(f64::from(size)) as u64;
    let (w, h) = (u64::from(width), u64::from(height));
    let (new_w, new_h) = if w <= h {
        (short_target, (short_target * h / w).max(1))
    } else {
        ((short_target * w / h).max(1), short_target)
    };
    let offset = |resized: u64| round_half_even((resized as f64 - f64::from(size)) / 2.0);
    let (sx, sy) = (w as f64 / new_w as f64, h as f64 / new_h as f64);
    CropBox {
        left: offset(new_w) * sx,
        top: offset(new_h) * sy,
        width: f64::from(size) * sx,
        height: f64::from(size) * sy,
    }
}

/// Which crop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CropKind {
    /// [`RandomResizedCrop`] (training).
    Random(RandomResizedCrop),
    /// Resize the shorter side to `size / ratio`, then the centre `size` square (evaluation;
    /// torchvision's `Resize(256)` + `CenterCrop(224)` is ratio 0.875).
    Centre {
        /// `size` / the resized shorter side.
        ratio: f64,
    },
}

/// A crop, its output side and a flip probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    /// The crop.
    pub crop: CropKind,
    /// The output square's side.
    pub size: u32,
    /// The probability of a horizontal flip (0: never).
    pub flip: f64,
    /// Decode at a DCT scale `M/8` where the crop stays at least `size` (default `true`).
    pub dct_scaling: bool,
}

/// What was done to one image, for tracing and replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Applied {
    /// The box of the source image that was kept.
    pub crop: CropBox,
    /// Whether it is to be mirrored (done in the copy out: [`crate::output`]).
    pub flip: bool,
}

/// The crop and flip `augment` gives a `width` × `height` image: the flip's draw first, then
/// the crop's (the one order of the draws, wherever they are made).
pub fn draw(
    augment: &Augment,
    width: u32,
    height: u32,
    uniform: &mut impl FnMut() -> f64,
) -> Applied {
    let flip = augment.flip > 0.0 && uniform() < augment.flip;
    let crop = match augment.crop {
        CropKind::Random(rrc) => rrc.sample(width, height, uniform),
        CropKind::Centre { ratio } => centre_box(width, height, augment.size, ratio),
    };
    Applied { crop, flip }
}

/// One worker's state for [`Augment`]: a decoder and a resizer.
pub struct Augmenter {
    decoder: Decoder,
    resizer: CropResizer,
}

impl Augmenter {
    /// A new worker state.
    pub fn new() -> Result<Self> {
        Ok(Augmenter {
            decoder: Decoder::new()?,
            resizer: CropResizer::new(),
        })
    }

    /// The decoder (to probe a header).
    pub fn decoder(&mut self) -> &mut Decoder {
        &mut self.decoder
    }

    /// `augment` applied to a JPEG: the crop drawn (from `uniform` after the flip's draw),
    /// the crop's region decoded, resized to `size` × `size`. The pixels are not yet flipped:
    /// [`Applied::flip`] says whether the copy out mirrors them.
    pub fn apply(
        &mut self,
        jpeg: &[u8],
        options: &DecodeOptions,
        augment: &Augment,
        uniform: &mut impl FnMut() -> f64,
    ) -> Result<(RgbImage, Applied)> {
        let info = self.decoder.probe_within(jpeg, options)?;
        let Applied { crop, flip } = draw(augment, info.width, info.height, uniform);
        let options = DecodeOptions {
            dct_scaling: augment.dct_scaling,
            ..*options
        };
        let out = (augment.size, augment.size);
        let decoded = self
            .decoder
            .decode_probed_crop(jpeg, &info, &options, crop, out)?;
        let image = self.resizer.resize(&decoded.image, decoded.within, out)?;
        Ok((image, Applied { crop, flip }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_rounding() {
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(3.5), 4.0);
        assert_eq!(round_half_even(2.4), 2.0);
        assert_eq!(round_half_even(2.6), 3.0);
    }

    #[test]
    fn the_centre_box_is_resize_then_centre_crop() {
        // 500×375 → Resize(256): 341×256 → CenterCrop(224): left round(58.5) = 58 → ×500/341.
        let b = centre_box(500, 375, 224, 0.875);
        assert!((b.left - 58.0 * 500.0 / 341.0).abs() < 1e-9, "{b:?}");
        assert!((b.top - 16.0 * 375.0 / 256.0).abs() < 1e-9, "{b:?}");
        assert!((b.width - 224.0 * 500.0 / 341.0).abs() < 1e-9, "{b:?}");
        assert!((b.height - 224.0 * 375.0 / 256.0).abs() < 1e-9, "{b:?}");
    }

    #[test]
    fn the_fallback_is_the_centre_clamped_to_the_ratio() {
        // Every try fails for a 1000×10 strip with draws that ask for the whole area.
        let rrc = RandomResizedCrop::default();
        let mut ones = || 0.999_999;
        let b = rrc.sample(1000, 10, &mut ones);
        assert_eq!((b.width, b.height), (13.0, 10.0)); // round(10 × 4/3)
        assert_eq!((b.left, b.top), (493.0, 0.0));
    }
}
