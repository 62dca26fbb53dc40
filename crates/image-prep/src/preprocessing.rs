//! How a model's input is made from a source image, as data: stored in a model's card
//! (`model.json`) and used both to build training batches and to prepare images for
//! prediction, so the two can never drift apart. The one place `/ 255` is computed.

use serde::{Deserialize, Serialize};

/// How a square is cut from the resized image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Crop {
    /// The shorter side is resized to the target (bilinear, half-pixel centres, no
    /// antialias, as `tf.image.resize`), then the centre square is kept, offset
    /// `(excess) // 2`.
    #[default]
    ShorterSideThenCentre,
}

/// The preprocessing of a model's input: decode to RGB, resize and crop to `size` × `size`
/// ([`Crop`]), then each `u8` value times `1 / divide_by` as `f32`, HWC.
///
/// ```
/// use shardfeed_image_prep::Preprocessing;
///
/// let p = Preprocessing::for_size(160);
/// let mut out = Vec::new();
/// p.extend_f32(&[0, 51, 255], &mut out);
/// assert_eq!(out, [0.0, 51.0 * (1.0 / 255.0), 1.0]);
/// assert_eq!(serde_json::to_string(&p)?, r#"{"size":160,"crop":"shorter_side_then_centre","divide_by":255}"#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// The side of the square the model takes, in pixels.
    pub size: u32,
    /// How the square is cut.
    pub crop: Crop,
    /// Values are divided by this (255: into [0, 1]).
    pub divide_by: u32,
}

impl Default for Preprocessing {
    /// SPEC §2's: 160 px, shorter side then centre crop, `/ 255`.
    fn default() -> Self {
        Preprocessing::for_size(160)
    }
}

impl Preprocessing {
    /// The seed's preprocessing at another size.
    pub fn for_size(size: u32) -> Self {
        Preprocessing {
            size,
            crop: Crop::ShorterSideThenCentre,
            divide_by: 255,
        }
    }

    /// The factor each value is multiplied by (`1 / divide_by`).
    pub fn scale(&self) -> f32 {
        1.0 / self.divide_by as f32
    }

    /// Appends `pixels` (RGB `u8`, HWC) to `out` as `f32`, each times [`Self::scale`].
    pub fn extend_f32(&self, pixels: &[u8], out: &mut Vec<f32>) {
        let scale = self.scale();
        out.extend(pixels.iter().map(|&v| f32::from(v) * scale));
    }

    /// In words, for people reading `model.json`.
    pub fn describe(&self) -> String {
        format!(
            "decode RGB; resize the shorter side to {} (bilinear, half-pixel); centre crop; /{}",
            self.size, self.divide_by
        )
    }
}
