//! Any text, parsed as a `.idx` index: no panic; what parses prints back to text that parses
//! to the same index.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardfeed_record_format::{FileName, Index};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(index) = Index::parse(text, &FileName::unknown()) {
            let again = Index::parse(&index.to_text(), &FileName::unknown()).expect("our own text parses");
            assert_eq!(again, index);
        }
    }
});
