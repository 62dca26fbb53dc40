//! JPEG decoding with libjpeg-turbo (through the TurboJPEG 3 API), into RGB.
//!
//! By default the decode matches TensorFlow's `tf.image.decode_jpeg(channels=3)`: libjpeg-turbo
//! with the fast integer IDCT (TF's default `dct_method`) and fancy upsampling; grayscale is
//! expanded to RGB; Adobe CMYK/YCCK is converted as TF does (`R = C·K / 255`, the channels
//! being stored inverted). Optional DCT-domain scaling decodes at 1/2, 1/4 or 1/8 size when
//! the image is that much larger than the target: much faster, but not TF's pixels.

use std::ffi::{CStr, c_int};

use turbojpeg::raw;

use crate::{Error, Result};

/// The most scans a progressive JPEG may have (encoders write about 10; libjpeg-turbo's advice
/// for untrusted input is a limit in the hundreds).
pub const MAX_SCANS: c_int = 500;

/// libjpeg-turbo's working memory (progressive coefficient buffers, in MB) for an image of
/// `max_pixels`: 64 16-bit coefficients per 8×8 block of each of up to 4 components, and room
/// for its small buffers.
fn working_memory_mb(max_pixels: u64) -> c_int {
    let bytes = max_pixels.saturating_mul(4 * 2);
    c_int::try_from((bytes >> 20) + 64).unwrap_or(c_int::MAX)
}

/// How to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// libjpeg-turbo's fast integer IDCT, as TensorFlow's default decode (default `true`).
    /// `false`: the accurate integer IDCT (libjpeg-turbo's own default).
    pub fast_idct: bool,
    /// Decode at 1/2, 1/4 or 1/8 size when the shorter side stays at least the target
    /// (default `false`: changes pixels beyond TensorFlow's; see `--fast-decode`).
    pub dct_scaling: bool,
    /// The most pixels (width × height) an image may have, decoded or after the shorter-side
    /// resize; larger ones are refused before anything is allocated for them. Default 100
    /// million (e.g. 10,000 × 10,000).
    pub max_pixels: u64,
    /// Turn each JPEG upright as its EXIF orientation says (default `false`: TensorFlow's
    /// pixels, which ignore it).
    pub exif_orientation: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            fast_idct: true,
            dct_scaling: false,
            max_pixels: 100_000_000,
            exif_orientation: false,
        }
    }
}

/// The colour model of a JPEG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorModel {
    /// One channel.
    Gray,
    /// YCbCr or RGB (decoded to RGB directly).
    Color,
    /// Adobe CMYK or YCCK (converted to RGB).
    Cmyk,
}

/// What the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JpegInfo {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Colour model.
    pub color: ColorModel,
}

/// An 8-bit RGB image, rows top to bottom, no padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width × height × 3` bytes.
    pub pixels: Vec<u8>,
}

impl RgbImage {
    /// An image from its pixels, checking the buffer size.
    pub fn new(width: u32, height: u32, pixels: Vec<u8>) -> Result<Self> {
        let expected = width as usize * height as usize * 3;
        if pixels.len() != expected {
            return Err(Error::BufferSize {
                width,
                height,
                expected,
                found: pixels.len(),
            });
        }
        Ok(RgbImage {
            width,
            height,
            pixels,
        })
    }

    /// The `width` × `height` rectangle at (`left`, `top`), which must lie inside.
    pub fn cut(&self, left: u32, top: u32, width: u32, height: u32) -> RgbImage {
        assert!(left + width <= self.width && top + height <= self.height);
        let row_bytes = self.width as usize * 3;
        let (left, width) = (left as usize * 3, width as usize * 3);
        let mut pixels = Vec::with_capacity(width * height as usize);
        for row in self
            .pixels
            .chunks_exact(row_bytes)
            .skip(top as usize)
            .take(height as usize)
        {
            pixels.extend_from_slice(&row[left..left + width]);
        }
        RgbImage {
            width: (width / 3) as u32,
            height,
            pixels,
        }
    }
}

/// Refuses an image of more than `options.max_pixels` pixels, from its header.
fn check_pixels(info: &JpegInfo, options: &DecodeOptions) -> Result<()> {
    let pixels = u64::from(info.width) * u64::from(info.height);
    if pixels > options.max_pixels {
        return Err(Error::TooLarge {
            width: info.width,
            height: info.height,
            limit: options.max_pixels,
        });
    }
    Ok(())
}

/// A TurboJPEG decompressor. Not `Sync`: keep one per thread.
pub struct Decoder {
    handle: raw::tjhandle,
}

// SAFETY: a TurboJPEG handle may be used from any thread, one thread at a time; `&mut self`
// on every call guarantees that.
unsafe impl Send for Decoder {}

impl Decoder {
    /// A new decompressor.
    pub fn new() -> Result<Self> {
        // SAFETY: plain FFI call; a null handle is checked below.
        let handle = unsafe { raw::tj3Init(raw::TJINIT_TJINIT_DECOMPRESS as c_int) };
        if handle.is_null() {
            return Err(Error::InvalidJpeg(
                "cannot initialise libjpeg-turbo".to_owned(),
            ));
        }
        let mut decoder = Decoder { handle };
        // libjpeg-turbo's guard against progressive JPEGs crafted with thousands of scans,
        // each a pass over the whole coefficient buffer.
        decoder.set(raw::TJPARAM_TJPARAM_SCANLIMIT, MAX_SCANS)?;
        Ok(decoder)
    }

    fn last_error(&self) -> String {
        // SAFETY: the handle is valid; TurboJPEG returns a NUL-terminated string it owns.
        unsafe { CStr::from_ptr(raw::tj3GetErrorStr(self.handle)) }
            .to_string_lossy()
            .trim()
            .to_owned()
    }

    fn get(&self, param: raw::TJPARAM) -> c_int {
        // SAFETY: the handle is valid.
        unsafe { raw::tj3Get(self.handle, param as c_int) }
    }

    fn set(&mut self, param: raw::TJPARAM, value: c_int) -> Result<()> {
        // SAFETY: the handle is valid.
        if unsafe { raw::tj3Set(self.handle, param as c_int, value) } != 0 {
            return Err(Error::InvalidJpeg(self.last_error()));
        }
        Ok(())
    }

    /// Reads the header: size and colour model. Allocates nothing for the pixels.
    pub fn probe(&mut self, jpeg: &[u8]) -> Result<JpegInfo> {
        match jpeg {
            [] => return Err(Error::NotJpeg("empty file")),
            [0xff, 0xd8, 0xff, ..] => {}
            [0x89, b'P', b'N', b'G', ..] => return Err(Error::NotJpeg("a PNG image")),
            [b'G', b'I', b'F', ..] => return Err(Error::NotJpeg("a GIF image")),
            _ => return Err(Error::NotJpeg("no JPEG start-of-image marker")),
        }
        // SAFETY: the pointer and length describe `jpeg`, which outlives the call.
        if unsafe {
            raw::tj3DecompressHeader(self.handle, jpeg.as_ptr(), jpeg.len() as raw::size_t)
        } != 0
        {
            return Err(Error::InvalidJpeg(self.last_error()));
        }
        let width = self.get(raw::TJPARAM_TJPARAM_JPEGWIDTH);
        let height = self.get(raw::TJPARAM_TJPARAM_JPEGHEIGHT);
        if width <= 0 || height <= 0 {
            return Err(Error::InvalidJpeg(format!(
                "header gives a {width}×{height} image"
            )));
        }
        let color = match self.get(raw::TJPARAM_TJPARAM_COLORSPACE) as raw::TJCS {
            raw::TJCS_TJCS_GRAY => ColorModel::Gray,
            raw::TJCS_TJCS_CMYK | raw::TJCS_TJCS_YCCK => ColorModel::Cmyk,
            _ => ColorModel::Color,
        };
        Ok(JpegInfo {
            width: width as u32,
            height: height as u32,
            color,
        })
    }

    /// Decodes to RGB. With `options.dct_scaling` and a `target`, decodes at the smallest
    /// of 1/2, 1/4, 1/8 that keeps the shorter side at least `target`.
    pub fn decode(
        &mut self,
        jpeg: &[u8],
        options: &DecodeOptions,
        target: Option<u32>,
    ) -> Result<RgbImage> {
        let info = self.probe_within(jpeg, options)?;
        let denominator = match target {
            Some(target) if options.dct_scaling => {
                dct_denominator(info.width.min(info.height), target)
            }
            _ => 1,
        };
        self.decompress(jpeg, &info, options, (1, denominator), None)
    }

    /// Decompresses the JPEG whose header was just read (`info`) at the scaling factor
    /// `num/denom` (one TurboJPEG supports), all of it or only `region` (`x, y, width,
    /// height` in the scaled image's pixels, `x` a multiple of the scaled iMCU width), to RGB.
    pub(crate) fn decompress(
        &mut self,
        jpeg: &[u8],
        info: &JpegInfo,
        options: &DecodeOptions,
        (num, denom): (u32, u32),
        region: Option<[u32; 4]>,
    ) -> Result<RgbImage> {
        // SAFETY: the handle is valid; the caller passes a factor TurboJPEG supports.
        let scaled = unsafe {
            raw::tj3SetScalingFactor(
                self.handle,
                raw::tjscalingfactor {
                    num: num as c_int,
                    denom: denom as c_int,
                },
            )
        };
        if scaled != 0 {
            return Err(Error::InvalidJpeg(self.last_error()));
        }
        self.set(raw::TJPARAM_TJPARAM_FASTDCT, c_int::from(options.fast_idct))?;
        self.set(
            raw::TJPARAM_TJPARAM_MAXMEMORY,
            working_memory_mb(options.max_pixels),
        )?;
        let (full_width, full_height) = (
            (u64::from(info.width) * u64::from(num)).div_ceil(u64::from(denom)) as u32,
            (u64::from(info.height) * u64::from(num)).div_ceil(u64::from(denom)) as u32,
        );
        let [x, y, width, height] = region.unwrap_or([0, 0, full_width, full_height]);
        let whole = [x, y, width, height] == [0, 0, full_width, full_height];
        // The handle keeps its cropping region between calls: set on every decode (all zero:
        // the whole image).
        let crop = if whole {
            [0; 4]
        } else {
            [x, y, width, height].map(|v| v as c_int)
        };
        // SAFETY: the handle is valid and has just read this JPEG's header; TurboJPEG checks
        // the region against the scaled size and the iMCU alignment.
        let cropped = unsafe {
            raw::tj3SetCroppingRegion(
                self.handle,
                raw::tjregion {
                    x: crop[0],
                    y: crop[1],
                    w: crop[2],
                    h: crop[3],
                },
            )
        };
        if cropped != 0 {
            return Err(Error::InvalidJpeg(self.last_error()));
        }
        let (format, channels) = match info.color {
            ColorModel::Cmyk => (raw::TJPF_TJPF_CMYK, 4),
            _ => (raw::TJPF_TJPF_RGB, 3),
        };
        let len = width as usize * height as usize * channels;
        // Not zeroed first: TurboJPEG writes every byte of a successful decode.
        let mut buffer: Vec<u8> = Vec::with_capacity(len);
        // SAFETY: `buffer` has room for height rows of width × channels bytes, the size
        // TurboJPEG writes for this scaling factor, region and pixel format (pitch 0 = packed
        // rows); nothing reads it before the decode succeeded.
        let status = unsafe {
            raw::tj3Decompress8(
                self.handle,
                jpeg.as_ptr(),
                jpeg.len() as raw::size_t,
                buffer.as_mut_ptr(),
                0,
                format as c_int,
            )
        };
        if status != 0 {
            // Warnings (e.g. a truncated file) count as failures, as in TensorFlow.
            return Err(Error::InvalidJpeg(self.last_error()));
        }
        // SAFETY: the decode succeeded, so all `len` bytes were written.
        unsafe { buffer.set_len(len) };
        let pixels = if channels == 4 {
            cmyk_to_rgb(&buffer)
        } else {
            buffer
        };
        RgbImage::new(width, height, pixels)
    }

    /// The chroma subsampling of the JPEG whose header was just read, as TurboJPEG's
    /// `TJSAMP` (`-1`: one it does not name).
    pub(crate) fn subsampling(&self) -> c_int {
        self.get(raw::TJPARAM_TJPARAM_SUBSAMP)
    }

    /// Reads the header and refuses an image over `options.max_pixels` (before anything is
    /// allocated for it).
    pub(crate) fn probe_within(
        &mut self,
        jpeg: &[u8],
        options: &DecodeOptions,
    ) -> Result<JpegInfo> {
        let info = self.probe(jpeg)?;
        check_pixels(&info, options)?;
        Ok(info)
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { raw::tj3Destroy(self.handle) };
    }
}

/// The DCT scaling denominator (1, 2, 4 or 8) for a shorter side of `short` and a target.
pub fn dct_denominator(short: u32, target: u32) -> u32 {
    [8, 4, 2]
        .into_iter()
        .find(|&d| short / d >= target)
        .unwrap_or(1)
}

/// Adobe (inverted) CMYK to RGB the way TensorFlow converts it: `R = C·K / 255`, truncated.
fn cmyk_to_rgb(cmyk: &[u8]) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(cmyk.len() / 4 * 3);
    for pixel in cmyk.chunks_exact(4) {
        let k = u32::from(pixel[3]);
        for &channel in &pixel[..3] {
            rgb.push((u32::from(channel) * k / 255) as u8);
        }
    }
    rgb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dct_scaling_keeps_the_shorter_side_at_least_the_target() {
        assert_eq!(dct_denominator(360, 160), 2);
        assert_eq!(dct_denominator(1280, 160), 8);
        assert_eq!(dct_denominator(700, 160), 4);
        assert_eq!(dct_denominator(319, 160), 1);
        assert_eq!(dct_denominator(100, 160), 1);
    }

    /// A 64×64 progressive JPEG, as libjpeg-turbo writes one (about 10 scans).
    fn progressive() -> Vec<u8> {
        let pixels: Vec<u8> = (0..64 * 64 * 3).map(|i| (i * 7 % 251) as u8).collect();
        let mut compressor = turbojpeg::Compressor::new().unwrap();
        compressor.set_progressive(true).unwrap();
        compressor
            .compress_to_vec(turbojpeg::Image {
                pixels: pixels.as_slice(),
                width: 64,
                pitch: 64 * 3,
                height: 64,
                format: turbojpeg::PixelFormat::RGB,
            })
            .unwrap()
    }

    /// `jpeg` with its last scan repeated until it has `scans` scans.
    fn with_scans(jpeg: &[u8], scans: usize) -> Vec<u8> {
        // Markers cannot occur inside entropy-coded data (0xFF is stuffed), so every FF DA
        // starts a scan.
        let starts: Vec<usize> = (0..jpeg.len() - 1)
            .filter(|&i| jpeg[i..i + 2] == [0xff, 0xda])
            .collect();
        assert!(
            starts.len() > 2 && starts.len() < scans,
            "{} scans",
            starts.len()
        );
        let last = *starts.last().unwrap();
        let end = jpeg.len() - 2; // EOI
        let mut crafted = jpeg[..end].to_vec();
        for _ in starts.len()..scans {
            crafted.extend_from_slice(&jpeg[last..end]);
        }
        crafted.extend_from_slice(&jpeg[end..]);
        crafted
    }

    #[test]
    fn a_progressive_jpeg_with_too_many_scans_is_refused() {
        let mut decoder = Decoder::new().unwrap();
        let options = DecodeOptions::default();
        let jpeg = progressive();
        let image = decoder.decode(&jpeg, &options, None).unwrap();
        assert_eq!((image.width, image.height), (64, 64));
        let error = decoder
            .decode(&with_scans(&jpeg, 2_000), &options, None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("500") && error.to_lowercase().contains("scan"),
            "{error}"
        );
    }

    #[test]
    fn working_memory_covers_the_largest_image_allowed() {
        // 100 megapixels of 4 components at 2 bytes per coefficient: 800 MB, and 64 more.
        assert_eq!(working_memory_mb(100_000_000), 762 + 64);
        assert_eq!(working_memory_mb(u64::MAX), c_int::MAX);
    }

    #[test]
    fn cmyk_converts_like_tensorflow() {
        assert_eq!(
            cmyk_to_rgb(&[255, 0, 128, 255, 255, 255, 255, 0]),
            [255, 0, 128, 0, 0, 0]
        );
        assert_eq!(cmyk_to_rgb(&[200, 100, 50, 128]), [100, 50, 25]);
    }
}
