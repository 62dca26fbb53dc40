//! A JPEG's EXIF orientation (the camera's "which way is up", tag 0x0112 of IFD0 in the
//! APP1 `Exif` segment) and the turn or flip that shows the image upright. TensorFlow's
//! `decode_jpeg` ignores it, and so does shardfeed unless asked (`--exif-orientation
//! apply`), which turns each image as Pillow's `ImageOps.exif_transpose` does.

use crate::RgbImage;

/// The orientation (1–8) a JPEG's EXIF data states, or `None` (no EXIF, no orientation
/// tag, or a value out of range). Reads the markers before the first scan only, every
/// length checked against the bytes there.
pub fn jpeg_orientation(jpeg: &[u8]) -> Option<u8> {
    if !jpeg.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut at = 2;
    while at + 4 <= jpeg.len() {
        if jpeg[at] != 0xFF {
            return None;
        }
        let marker = jpeg[at + 1];
        if marker == 0xFF {
            at += 1; // fill byte
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            return None; // start of scan, end of image: no EXIF before the pixels
        }
        let length = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        let segment = jpeg.get(at + 4..at + 2 + length)?;
        if marker == 0xE1
            && let Some(tiff) = segment.strip_prefix(b"Exif\0\0")
            && let Some(orientation) = tiff_orientation(tiff)
        {
            return Some(orientation);
        }
        at += 2 + length;
    }
    None
}

/// Tag 0x0112 of IFD0 of a TIFF structure (EXIF's), 1–8.
fn tiff_orientation(tiff: &[u8]) -> Option<u8> {
    let little = match tiff.get(..2)? {
        b"II" => true,
        b"MM" => false,
        _ => return None,
    };
    let u16_at = |at: usize| -> Option<u16> {
        let b: [u8; 2] = tiff.get(at..at + 2)?.try_into().ok()?;
        Some(if little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = tiff.get(at..at + 4)?.try_into().ok()?;
        Some(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    if u16_at(2)? != 42 {
        return None;
    }
    let ifd = usize::try_from(u32_at(4)?).ok()?;
    let entries = usize::from(u16_at(ifd)?);
    for entry in 0..entries {
        let at = ifd + 2 + entry * 12;
        // Tag 0x0112, type SHORT (3), one value, kept in the entry itself.
        if u16_at(at)? == 0x0112 && u16_at(at + 2)? == 3 && u32_at(at + 4)? == 1 {
            let value = u16_at(at + 8)?;
            return (1..=8).contains(&value).then_some(value as u8);
        }
    }
    None
}

/// `image` turned and flipped as EXIF orientation `orientation` says, to show it upright
/// (1: as it is; 2: mirrored; 3: turned 180°; 4: flipped; 5: transposed; 6: turned 90°
/// clockwise; 7: transversed; 8: turned 90° anticlockwise).
pub fn apply_orientation(image: RgbImage, orientation: u8) -> RgbImage {
    let (w, h) = (image.width as usize, image.height as usize);
    let swaps = orientation >= 5;
    let (out_w, out_h) = if swaps { (h, w) } else { (w, h) };
    // The source pixel of output pixel (x, y).
    let source = |x: usize, y: usize| -> (usize, usize) {
        match orientation {
            2 => (w - 1 - x, y),
            3 => (w - 1 - x, h - 1 - y),
            4 => (x, h - 1 - y),
            5 => (y, x),
            6 => (y, h - 1 - x),
            7 => (w - 1 - y, h - 1 - x),
            8 => (w - 1 - y, x),
            _ => (x, y),
        }
    };
    if !(2..=8).contains(&orientation) {
        return image;
    }
    let mut pixels = vec![0u8; image.pixels.len()];
    for y in 0..out_h {
        for x in 0..out_w {
            let (sx, sy) = source(x, y);
            let from = (sy * w + sx) * 3;
            let to = (y * out_w + x) * 3;
            pixels[to..to + 3].copy_from_slice(&image.pixels[from..from + 3]);
        }
    }
    RgbImage {
        width: out_w as u32,
        height: out_h as u32,
        pixels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2×3 image whose pixels are numbered 0..6 row by row (each pixel's three values its
    /// number), turned as `orientation`: the numbers row by row.
    fn turned(orientation: u8) -> (u32, u32, Vec<u8>) {
        let pixels = (0..6u8).flat_map(|i| [i, i, i]).collect();
        let image = apply_orientation(RgbImage::new(2, 3, pixels).unwrap(), orientation);
        let numbers = image.pixels.chunks(3).map(|p| p[0]).collect();
        (image.width, image.height, numbers)
    }

    #[test]
    fn each_orientation_turns_the_image_upright() {
        // 0 1
        // 2 3
        // 4 5
        assert_eq!(turned(1), (2, 3, vec![0, 1, 2, 3, 4, 5]));
        assert_eq!(turned(2), (2, 3, vec![1, 0, 3, 2, 5, 4]));
        assert_eq!(turned(3), (2, 3, vec![5, 4, 3, 2, 1, 0]));
        assert_eq!(turned(4), (2, 3, vec![4, 5, 2, 3, 0, 1]));
        assert_eq!(turned(5), (3, 2, vec![0, 2, 4, 1, 3, 5]));
        assert_eq!(turned(6), (3, 2, vec![4, 2, 0, 5, 3, 1]));
        assert_eq!(turned(7), (3, 2, vec![5, 3, 1, 4, 2, 0]));
        assert_eq!(turned(8), (3, 2, vec![1, 3, 5, 0, 2, 4]));
    }

    #[test]
    fn the_orientation_tag_is_found_in_either_byte_order_and_garbage_is_none() {
        let exif = |tiff: &[u8]| -> Vec<u8> {
            let mut segment = b"Exif\0\0".to_vec();
            segment.extend_from_slice(tiff);
            let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE1];
            jpeg.extend_from_slice(&((segment.len() + 2) as u16).to_be_bytes());
            jpeg.extend_from_slice(&segment);
            jpeg.extend_from_slice(&[0xFF, 0xDA, 0, 2]);
            jpeg
        };
        let le = [
            b'I', b'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0,
        ];
        let be = [
            b'M', b'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 8, 0, 0,
        ];
        assert_eq!(jpeg_orientation(&exif(&le)), Some(6));
        assert_eq!(jpeg_orientation(&exif(&be)), Some(8));
        assert_eq!(jpeg_orientation(&exif(&le[..15])), None, "cut short");
        assert_eq!(jpeg_orientation(&[0xFF, 0xD8]), None);
        assert_eq!(
            jpeg_orientation(&[0xFF, 0xD8, 0xFF, 0xE1, 0xFF, 0xFF]),
            None
        );
    }
}
