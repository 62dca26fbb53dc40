//! Any bytes, read as a TFRecord file: no panic, no runaway allocation, and the same records
//! and the same error whether the bytes arrive at once or a few at a time (a pipe, a slow
//! socket: the reader's framing must not depend on how reads are cut).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardfeed_record_format::{Compression, ReaderOptions, RecordReader};

/// Hands out at most `step` bytes per `read`.
struct Trickle<'a> {
    bytes: &'a [u8],
    step: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.bytes.len()).min(self.step);
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let options = ReaderOptions { max_record_len: 1 << 20, ..ReaderOptions::default() };
    let whole: Vec<_> = RecordReader::new(data, options).collect();
    let step = 1 + data.first().map_or(0, |b| usize::from(*b % 13));
    let trickled: Vec<_> = RecordReader::new(Trickle { bytes: data, step }, options).collect();
    assert_eq!(whole.len(), trickled.len());
    for (a, b) in whole.iter().zip(&trickled) {
        match (a, b) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            _ => panic!("the reads disagree: {a:?} vs {b:?}"),
        }
    }
    for compression in [Compression::Gzip, Compression::Zlib] {
        let options = ReaderOptions { compression, ..options };
        for record in RecordReader::new(data, options).take(64) {
            let _ = record;
        }
    }
});
