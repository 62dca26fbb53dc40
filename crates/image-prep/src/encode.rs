//! JPEG encoding as the tutorial's shards hold it: quality 95, 4:4:4 (no chroma
//! subsampling), optimised Huffman tables (TF's `encode_jpeg(optimize_size=True,
//! chroma_downsampling=False)`).

use turbojpeg::{Compressor, Image, PixelFormat, Subsamp};

use crate::{Error, Result, RgbImage};

/// A TurboJPEG compressor with the shard settings. One per thread.
pub struct Encoder {
    compressor: Compressor,
}

impl Encoder {
    /// An encoder at `quality` (1–100), 4:4:4, optimised Huffman tables: the records' format.
    pub fn new(quality: u8) -> Result<Self> {
        Encoder::with_settings(quality, false, true)
    }

    /// An encoder at `quality`, with 4:2:0 chroma subsampling or 4:4:4, and optimised Huffman
    /// tables or the standard ones (`with_settings(90, true, false)` writes JPEGs as cameras
    /// and web sites do).
    pub fn with_settings(quality: u8, subsample_chroma: bool, optimize: bool) -> Result<Self> {
        let error = |e: turbojpeg::Error| Error::Encode(e.to_string());
        let mut compressor = Compressor::new().map_err(error)?;
        compressor
            .set_quality(i32::from(quality.clamp(1, 100)))
            .map_err(error)?;
        let subsampling = if subsample_chroma {
            Subsamp::Sub2x2
        } else {
            Subsamp::None
        };
        compressor.set_subsamp(subsampling).map_err(error)?;
        compressor.set_optimize(optimize).map_err(error)?;
        Ok(Encoder { compressor })
    }

    /// Encodes an RGB image.
    pub fn encode(&mut self, image: &RgbImage) -> Result<Vec<u8>> {
        let view = Image {
            pixels: image.pixels.as_slice(),
            width: image.width as usize,
            pitch: image.width as usize * 3,
            height: image.height as usize,
            format: PixelFormat::RGB,
        };
        self.compressor
            .compress_to_vec(view)
            .map_err(|e| Error::Encode(e.to_string()))
    }
}
