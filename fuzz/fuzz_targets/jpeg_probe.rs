//! Any bytes as a source JPEG, as `shardfeed shard` meets them in a user's folder: probing the
//! header never panics or crashes (libjpeg-turbo's errors come back as `Err`); what probes as
//! a small image also goes through the whole shard step (decode, resize, crop, encode), and
//! what that returns is a JPEG of the target square.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardfeed_image_prep::{DecodeOptions, Decoder, Preparer};

/// Decode only images up to this many pixels, to keep executions fast (the shard step's own
/// limit, 100 M pixels, is checked by the unit tests).
const FUZZ_MAX_PIXELS: u64 = 1 << 18;

fuzz_target!(|data: &[u8]| {
    let mut decoder = Decoder::new().expect("a decoder");
    let Ok(info) = decoder.probe(data) else { return };
    assert!(info.width > 0 && info.height > 0);
    let options = DecodeOptions {
        max_pixels: FUZZ_MAX_PIXELS,
        ..DecodeOptions::default()
    };
    let mut preparer = Preparer::new(16, 90, options).expect("a preparer");
    if let Ok(record) = preparer.prepare(data) {
        let again = decoder.probe(&record).expect("our own output probes");
        assert_eq!((again.width, again.height), (16, 16));
    }
});
