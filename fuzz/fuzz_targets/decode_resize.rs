//! Any bytes as a JPEG through decode → shorter-side resize → centre crop under size limits,
//! as `shard`, `predict` and the read path meet them: a header over the pixel limit is refused
//! before any buffer exists, a resize that would pass it (an extreme aspect ratio) is refused
//! before its buffer exists, and what comes through is the target square. The first two bytes
//! choose the target side (8–263) and the pixel limit (1 Ki–2 Mi pixels); the rest is the JPEG.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardfeed_image_prep::{DecodeOptions, Decoder, Error, ResizeCrop, resized_size};

fuzz_target!(|data: &[u8]| {
    let [side, limit, jpeg @ ..] = data else {
        return;
    };
    let target = 8 + u32::from(*side);
    let max_pixels = 1u64 << (10 + limit % 12);
    let options = DecodeOptions {
        max_pixels,
        ..DecodeOptions::default()
    };
    let mut decoder = Decoder::new().expect("a decoder");
    let header = decoder.probe(jpeg).ok();
    let image = match decoder.decode(jpeg, &options, Some(target)) {
        Ok(image) => image,
        Err(Error::TooLarge { width, height, limit }) => {
            assert_eq!(limit, max_pixels);
            assert!(u64::from(width) * u64::from(height) > max_pixels);
            return;
        }
        Err(_) => return,
    };
    let info = header.expect("a decoded image has a header");
    assert_eq!((image.width, image.height), (info.width, info.height));
    assert!(u64::from(image.width) * u64::from(image.height) <= max_pixels);
    assert_eq!(image.pixels.len(), image.width as usize * image.height as usize * 3);
    let (resized_w, resized_h) = resized_size(image.width, image.height, target);
    match ResizeCrop::new().apply(&image, target, max_pixels) {
        Ok(square) => {
            assert!(u64::from(resized_w) * u64::from(resized_h) <= max_pixels);
            assert_eq!((square.width, square.height), (target, target));
            assert_eq!(square.pixels.len(), (target * target * 3) as usize);
        }
        Err(Error::ResizedTooLarge { .. }) => {
            assert!(u64::from(resized_w) * u64::from(resized_h) > max_pixels);
        }
        Err(other) => panic!("resize of a decoded image failed: {other}"),
    }
});
