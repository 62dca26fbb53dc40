//! Helpers shared by the test modules.

use std::path::PathBuf;

use shardfeed_record_format::{Compression, Example, Feature, RecordWriter};

/// The repository's `fixtures/` folder.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// A small deterministic generator (SplitMix64), so tests need no RNG crate.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// A varied Example: image bytes, a class, and lists of every kind, some empty.
pub fn varied_example(rng: &mut SplitMix, i: usize) -> Example {
    let image_len = rng.below(300) as usize;
    let floats: Vec<f32> = (0..rng.below(5))
        .map(|_| f32::from_bits(rng.next_u64() as u32))
        .filter(|f| !f.is_nan())
        .chain([0.5, -0.0, f32::INFINITY, f32::MIN_POSITIVE])
        .collect();
    let int64s: Vec<i64> = (0..rng.below(5))
        .map(|_| rng.next_u64() as i64)
        .chain([i64::MIN, i64::MAX, -1, 0])
        .collect();
    let names: Vec<Vec<u8>> = (0..rng.below(4))
        .map(|_| {
            let len = rng.below(20) as usize;
            rng.bytes(len)
        })
        .collect();
    Example::new()
        .with("image", Feature::bytes([rng.bytes(image_len)]))
        .with("class", Feature::int64s([i as i64 % 3]))
        .with("floats", Feature::floats(floats))
        .with("int64s", Feature::int64s(int64s))
        .with("names", Feature::bytes(names))
        .with("empty_floats", Feature::floats([]))
}

/// The bytes of a file holding `payloads`, and the payloads themselves.
pub fn write_file(payloads: &[Vec<u8>], compression: Compression) -> Vec<u8> {
    let mut writer = RecordWriter::new(Vec::new(), compression);
    for payload in payloads {
        writer
            .write_record(payload)
            .expect("writing to memory cannot fail");
    }
    writer.finish().expect("writing to memory cannot fail").0
}
