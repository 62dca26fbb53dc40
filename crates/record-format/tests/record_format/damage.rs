//! Damage of every kind is detected, with the right record and offset.

use shardfeed_record_format::frame::{FRAMING_LEN, encode_header};
use shardfeed_record_format::{Compression, Corruption, ReaderOptions, RecordReader};

use crate::support::{SplitMix, varied_example, write_file};

fn payloads(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = SplitMix(seed);
    (0..n)
        .map(|i| varied_example(&mut rng, i).to_bytes())
        .collect()
}

/// Reads all records with the streaming reader; the payloads, or the first error.
fn stream(
    bytes: &[u8],
    options: ReaderOptions,
) -> Result<Vec<Vec<u8>>, shardfeed_record_format::Error> {
    RecordReader::new(bytes, options).collect()
}

/// Reads all records from a source that hands out at most 3 bytes per `read` (a pipe, a
/// slow socket): the same payloads, or the same first error, as [`stream`].
fn trickled(bytes: &[u8]) -> Result<Vec<Vec<u8>>, shardfeed_record_format::Error> {
    struct Trickle<'a>(&'a [u8]);
    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(3);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    RecordReader::new(Trickle(bytes), ReaderOptions::default()).collect()
}

/// Which record a byte offset of a plain file falls in.
fn record_at(records: &[Vec<u8>], offset: u64) -> u64 {
    let mut end = 0;
    for (i, record) in records.iter().enumerate() {
        end += record.len() as u64 + FRAMING_LEN;
        if offset < end {
            return i as u64;
        }
    }
    records.len() as u64
}

#[test]
fn every_single_bit_flip_of_a_plain_file_is_detected_at_its_record() {
    let records = payloads(3, 7);
    let file = write_file(&records, Compression::None);
    for bit in 0..file.len() * 8 {
        let mut damaged = file.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        let want = record_at(&records, (bit / 8) as u64);
        for (reader, result) in [
            ("stream", stream(&damaged, ReaderOptions::default())),
            ("trickled", trickled(&damaged)),
        ] {
            let error = result.expect_err("a flipped bit is detected");
            let at = error
                .location()
                .unwrap_or_else(|| panic!("{reader}: {error} has a location"));
            assert_eq!(at.index, want, "{reader}, bit {bit}: {error}");
            assert!(
                matches!(
                    error.corruption(),
                    Some(Corruption::LengthCrcMismatch { .. } | Corruption::DataCrcMismatch { .. })
                ),
                "{reader}, bit {bit}: {error}"
            );
        }
    }
}

#[test]
fn a_bit_flip_in_a_compressed_file_never_yields_different_records() {
    let records = payloads(3, 8);
    for compression in [Compression::Gzip, Compression::Zlib] {
        let file = write_file(&records, compression);
        let mut detected = 0;
        for bit in 0..file.len() * 8 {
            let mut damaged = file.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            match stream(&damaged, ReaderOptions::compression(compression)) {
                Err(_) => detected += 1,
                // Only bits the format does not check (gzip's timestamp, OS byte, flags)
                // can flip unnoticed, and then the records are exactly the originals.
                Ok(read) => assert_eq!(read, records, "{compression}, bit {bit}"),
            }
        }
        assert!(
            detected > file.len() * 8 * 9 / 10,
            "{compression}: {detected} detected"
        );
    }
}

#[test]
fn every_cut_inside_a_record_is_reported_as_that_record_truncated() {
    let records = payloads(3, 9);
    let file = write_file(&records, Compression::None);
    let boundaries: Vec<usize> = records
        .iter()
        .scan(0, |end, r| {
            *end += r.len() + FRAMING_LEN as usize;
            Some(*end)
        })
        .collect();
    for cut in 0..file.len() {
        let prefix = &file[..cut];
        let whole_records = boundaries.iter().filter(|&&b| b <= cut).count();
        for result in [stream(prefix, ReaderOptions::default()), trickled(prefix)] {
            if cut == 0 || boundaries.contains(&cut) {
                assert_eq!(result.unwrap(), records[..whole_records], "cut {cut}");
                continue;
            }
            let error = result.expect_err("a cut inside a record is detected");
            let at = error.location().unwrap();
            assert_eq!(at.index, whole_records as u64, "cut {cut}: {error}");
            assert_eq!(
                at.offset,
                if whole_records == 0 {
                    0
                } else {
                    boundaries[whole_records - 1] as u64
                }
            );
            let in_header = cut - (at.offset as usize) < 12;
            match error.corruption().unwrap() {
                Corruption::TrailingBytes { count } if in_header => {
                    assert_eq!(*count as usize, cut - at.offset as usize)
                }
                Corruption::TruncatedPayload { available, .. } if !in_header => {
                    assert_eq!(*available as usize, cut - at.offset as usize)
                }
                other => panic!("cut {cut}: unexpected {other:?}"),
            }
        }
    }
}

#[test]
fn a_compressed_file_cut_short_is_an_error() {
    let records = payloads(4, 10);
    for compression in [Compression::Gzip, Compression::Zlib] {
        let file = write_file(&records, compression);
        for cut in [file.len() / 3, file.len() / 2, file.len() - 1] {
            assert!(
                stream(&file[..cut], ReaderOptions::compression(compression)).is_err(),
                "{compression} cut {cut}"
            );
        }
    }
}

#[test]
fn an_absurd_length_is_refused_before_allocating() {
    let mut file = encode_header(1 << 62).to_vec();
    file.extend_from_slice(&[0; 64]);
    for result in [stream(&file, ReaderOptions::default()), trickled(&file)] {
        let error = result.unwrap_err();
        assert_eq!(
            error.corruption(),
            Some(&Corruption::AbsurdLength {
                length: 1 << 62,
                limit: 1 << 30
            })
        );
    }
    // Without a limit, a huge length on a short file is a truncation, found without
    // allocating the announced size (this would abort the test process otherwise).
    let unlimited = ReaderOptions {
        max_record_len: u64::MAX,
        ..ReaderOptions::default()
    };
    let error = stream(&file, unlimited).unwrap_err();
    assert!(
        matches!(error.corruption(), Some(Corruption::TruncatedPayload { length, .. }) if *length == 1 << 62)
    );
}

#[test]
fn verify_false_skips_crc_checks_but_not_framing_checks() {
    let records = payloads(2, 11);
    let mut file = write_file(&records, Compression::None);
    let last = file.len() - 1;
    file[20] ^= 0xff; // inside record 0's payload
    file[last] ^= 0xff; // record 1's data CRC
    let unchecked = ReaderOptions {
        verify: false,
        ..ReaderOptions::default()
    };
    let read = stream(&file, unchecked).unwrap();
    assert_eq!(read.len(), 2);
    assert_ne!(
        read[0], records[0],
        "the damaged payload is handed over as is"
    );
    assert!(stream(&file, ReaderOptions::default()).is_err());
    assert!(
        stream(&file[..file.len() - 2], unchecked).is_err(),
        "truncation is still detected"
    );
}

#[test]
fn errors_name_the_file_when_opened_by_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.tfrec");
    let mut file = write_file(&payloads(1, 12), Compression::None);
    file.truncate(file.len() - 3);
    std::fs::write(&path, &file).unwrap();
    let error = RecordReader::open(&path, ReaderOptions::default())
        .unwrap()
        .next()
        .unwrap()
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("corrupted record 0 at offset 0 in "),
        "{message}"
    );
    assert!(message.contains("bad.tfrec: truncated record"), "{message}");

    let missing = dir.path().join("missing.tfrec");
    let error = RecordReader::open(&missing, ReaderOptions::default())
        .err()
        .unwrap();
    assert!(error.to_string().contains("missing.tfrec"), "{error}");
}

#[test]
fn compressed_offsets_say_they_count_the_decompressed_stream() {
    let records = payloads(2, 13);
    let mut plain = write_file(&records, Compression::None);
    let last = plain.len() - 1;
    plain[last] ^= 1;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut encoder, &plain).unwrap();
    let gzipped = encoder.finish().unwrap();
    let error = stream(&gzipped, ReaderOptions::compression(Compression::Gzip)).unwrap_err();
    assert_eq!(error.location().unwrap().index, 1);
    assert!(
        error
            .to_string()
            .contains("of the gzip-decompressed stream"),
        "{error}"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Random files and a random bit: the flip is found, in the record that holds the bit.
    #[test]
    fn any_bit_flip_of_any_file_is_detected(seed in proptest::prelude::any::<u64>(), n in 1usize..6, bit in proptest::prelude::any::<proptest::sample::Index>()) {
        let records = payloads(n, seed);
        let mut file = write_file(&records, Compression::None);
        let bit = bit.index(file.len() * 8);
        file[bit / 8] ^= 1 << (bit % 8);
        for result in [stream(&file, ReaderOptions::default()), trickled(&file)] {
            let error = result.expect_err("a flipped bit is detected");
            proptest::prop_assert_eq!(error.location().unwrap().index, record_at(&records, (bit / 8) as u64));
        }
    }
}
