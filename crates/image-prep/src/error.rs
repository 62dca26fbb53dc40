//! The crate's one error type.

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong preparing an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not a JPEG at all (no SOI marker), e.g. a PNG named `.jpg`, or an empty file.
    #[error("not a JPEG file ({0})")]
    NotJpeg(&'static str),
    /// A PNG, WebP, BMP, GIF or TIFF source could not be read (corrupt, truncated, or not
    /// an image format at all).
    #[error("invalid image: {0}")]
    InvalidImage(String),
    /// libjpeg-turbo could not read the image (corrupt or truncated data).
    #[error("invalid JPEG: {0}")]
    InvalidJpeg(String),
    /// The header announces more pixels than allowed; nothing was allocated for them.
    #[error("image of {width}×{height} pixels exceeds the limit of {limit} pixels")]
    TooLarge {
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// The limit ([`DecodeOptions::max_pixels`](crate::DecodeOptions::max_pixels)).
        limit: u64,
    },
    /// The shorter-side resize would make an image larger than the pixel limit (an extreme
    /// aspect ratio: 65,500 × 1 becomes 10,480,000 × 160 at 160 px); refused before its
    /// buffer exists.
    #[error(
        "image of {width}×{height} pixels would be resized to {resized_width}×{resized_height} \
         before the centre crop, over the limit of {limit} pixels (aspect ratio too extreme)"
    )]
    ResizedTooLarge {
        /// Width decoded.
        width: u32,
        /// Height decoded.
        height: u32,
        /// Width after the shorter-side resize.
        resized_width: u32,
        /// Height after the shorter-side resize.
        resized_height: u32,
        /// The limit ([`DecodeOptions::max_pixels`](crate::DecodeOptions::max_pixels)).
        limit: u64,
    },
    /// libjpeg-turbo could not encode an image.
    #[error("JPEG encoding failed: {0}")]
    Encode(String),
    /// The resizer failed (an internal error: sizes are checked before).
    #[error("resize failed: {0}")]
    Resize(String),
    /// A pixel buffer of the wrong size for its dimensions.
    #[error("buffer of {found} bytes for a {width}×{height} RGB image, expected {expected}")]
    BufferSize {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Bytes expected.
        expected: usize,
        /// Bytes found.
        found: usize,
    },
}
