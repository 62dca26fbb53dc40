//! Any bytes as a PNG, WebP, BMP, GIF or TIFF source (`image-prep/src/formats.rs`) under a
//! pixel limit, and as a JPEG's EXIF orientation (`exif.rs`): a header over the limit is
//! refused before its buffer exists, what decodes is opaque RGB of the header's size, and an
//! orientation found is 1–8 and turns the image into the size it says. The first byte
//! chooses the pixel limit (1 Ki–2 Mi pixels); the rest is the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardfeed_image_prep::{
    DecodeOptions, Error, RgbImage, apply_orientation, decode_other, jpeg_orientation,
};

fuzz_target!(|data: &[u8]| {
    let [limit, bytes @ ..] = data else {
        return;
    };
    let max_pixels = 1u64 << (10 + limit % 12);
    let options = DecodeOptions {
        max_pixels,
        ..DecodeOptions::default()
    };
    match decode_other(bytes, &options) {
        Ok(image) => {
            assert!(u64::from(image.width) * u64::from(image.height) <= max_pixels);
            assert_eq!(image.pixels.len(), image.width as usize * image.height as usize * 3);
        }
        Err(Error::TooLarge { width, height, limit }) => {
            assert_eq!(limit, max_pixels);
            assert!(u64::from(width) * u64::from(height) > max_pixels);
        }
        Err(_) => {}
    }
    if let Some(orientation) = jpeg_orientation(bytes) {
        assert!((1..=8).contains(&orientation));
        let image = RgbImage::new(3, 2, (0..18).collect()).expect("3×2");
        let turned = apply_orientation(image, orientation);
        let want = if orientation >= 5 { (2, 3) } else { (3, 2) };
        assert_eq!((turned.width, turned.height), want);
    }
});
