//! Any bytes, decoded as a `tf.train.Example`: no panic; what decodes re-encodes to bytes
//! that decode to the same Example.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardfeed_record_format::{Example, ImageExample};

fuzz_target!(|data: &[u8]| {
    if let Ok(example) = Example::decode(data) {
        let again = Example::decode(&example.to_bytes()).expect("our own encoding decodes");
        assert_eq!(again.to_bytes(), example.to_bytes());
        for (name, _) in example.feature_map() {
            let _ = example.single_bytes(name);
            let _ = example.single_int64(name);
            let _ = example.float_list(name);
        }
    }
    let _ = ImageExample::decode(data);
});
