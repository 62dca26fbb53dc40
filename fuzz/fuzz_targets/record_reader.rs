//! Any bytes, read as a TFRecord file by every reader: no panic, no runaway allocation, and
//! the streaming and slice readers agree on the records and on the error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardfeed_record_format::{Compression, ReaderOptions, RecordReader, SliceReader};

fuzz_target!(|data: &[u8]| {
    let options = ReaderOptions { max_record_len: 1 << 20, ..ReaderOptions::default() };
    let streamed: Vec<_> = RecordReader::new(data, options).collect();
    let sliced: Vec<_> = SliceReader::new(data, options).map(|r| r.map(|r| r.data.to_vec())).collect();
    assert_eq!(streamed.len(), sliced.len());
    for (a, b) in streamed.iter().zip(&sliced) {
        match (a, b) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            _ => panic!("readers disagree: {a:?} vs {b:?}"),
        }
    }
    for compression in [Compression::Gzip, Compression::Zlib] {
        let options = ReaderOptions { compression, ..options };
        for record in RecordReader::new(data, options).take(64) {
            let _ = record;
        }
    }
});
