//! Reading the files TensorFlow itself wrote (`fixtures/tf-written`), intact and damaged.

use std::fs;
use std::path::PathBuf;

use serde_json::Value;
use sha2::{Digest, Sha256};
use shardfeed_record_format::{
    Corruption, Error, ImageExample, IndexedFile, ReaderOptions, RecordReader,
};

use crate::support::fixtures;

fn dir() -> PathBuf {
    fixtures().join("tf-written")
}

fn expected() -> Value {
    serde_json::from_slice(&fs::read(dir().join("expected.json")).unwrap()).unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The number TensorFlow printed after `at ` in its error message.
fn tensorflow_offset(damaged: &str) -> u64 {
    let message = expected()["damaged"][damaged]["tensorflow"]["error"]
        .as_str()
        .unwrap()
        .to_owned();
    let after = &message[message.find(" at ").unwrap() + 4..];
    after
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

fn records_tensorflow_read(damaged: &str) -> u64 {
    expected()["damaged"][damaged]["tensorflow"]["records_read"]
        .as_u64()
        .unwrap()
}

/// Reads a file with both readers; returns the payloads before the first error and the error.
fn read_both_ways(name: &str) -> (Vec<Vec<u8>>, Option<Error>) {
    let path = dir().join(name);
    let mut streamed = Vec::new();
    let mut stream_error = None;
    for record in RecordReader::open(&path, ReaderOptions::default()).unwrap() {
        match record {
            Ok(payload) => streamed.push(payload),
            Err(e) => stream_error = Some(e),
        }
    }
    // The same file read again in 7-byte pieces (`BufReader` with a tiny buffer): the
    // readers' framing must not depend on how the bytes arrive.
    let file = std::io::BufReader::with_capacity(7, fs::File::open(&path).unwrap());
    let mut pieces = Vec::new();
    let mut pieces_error = None;
    for record in RecordReader::new(file, ReaderOptions::default()).with_file_name(&path) {
        match record {
            Ok(payload) => pieces.push(payload),
            Err(e) => pieces_error = Some(e),
        }
    }
    assert_eq!(streamed, pieces, "{name}: both reads agree on the records");
    assert_eq!(
        stream_error.as_ref().map(ToString::to_string),
        pieces_error.as_ref().map(ToString::to_string),
        "{name}: both reads agree on the error"
    );
    (streamed, stream_error)
}

#[test]
fn every_record_matches_what_tensorflow_wrote() {
    let expected = expected();
    let file_bytes = fs::read(dir().join("cat_dog00-8.tfrec")).unwrap();
    assert_eq!(
        sha256_hex(&file_bytes),
        expected["file_sha256"].as_str().unwrap()
    );

    let (payloads, error) = read_both_ways("cat_dog00-8.tfrec");
    assert!(error.is_none(), "{error:?}");
    let records = expected["records"].as_array().unwrap();
    assert_eq!(payloads.len(), records.len());
    assert_eq!(payloads.len() as u64, expected["count"].as_u64().unwrap());

    let reader =
        RecordReader::open(dir().join("cat_dog00-8.tfrec"), ReaderOptions::default()).unwrap();
    let mut reader = reader;
    let mut buf = Vec::new();
    for (record, want) in records.iter().enumerate() {
        let info = reader.read_into(&mut buf).unwrap().unwrap();
        assert_eq!(info.index, record as u64);
        assert_eq!(info.offset, want["record_offset"].as_u64().unwrap());
        assert_eq!(info.len, want["record_length"].as_u64().unwrap());
        let offset = info.offset as usize;
        let length_crc =
            u32::from_le_bytes(file_bytes[offset + 8..offset + 12].try_into().unwrap());
        let end = offset + 12 + info.len as usize;
        let data_crc = u32::from_le_bytes(file_bytes[end..end + 4].try_into().unwrap());
        assert_eq!(
            length_crc as u64,
            want["length_crc_masked"].as_u64().unwrap()
        );
        assert_eq!(data_crc as u64, want["data_crc_masked"].as_u64().unwrap());
        assert_eq!(
            shardfeed_record_format::frame::encode_header(info.len)[8..],
            file_bytes[offset + 8..offset + 12]
        );
        assert_eq!(
            shardfeed_record_format::frame::encode_footer(&buf),
            file_bytes[end..end + 4]
        );

        let example = ImageExample::decode(&buf).unwrap();
        assert_eq!(example.class, want["class"].as_i64().unwrap());
        assert_eq!(
            example.image.len() as u64,
            want["image_len"].as_u64().unwrap()
        );
        assert_eq!(
            sha256_hex(&example.image),
            want["image_sha256"].as_str().unwrap()
        );
        assert_eq!(payloads[record], buf);
    }
    assert!(reader.read_into(&mut buf).unwrap().is_none());
}

#[test]
fn random_access_reads_each_record_of_the_tensorflow_file() {
    let expected = expected();
    let mut file =
        IndexedFile::open(dir().join("cat_dog00-8.tfrec"), ReaderOptions::default()).unwrap();
    assert_eq!(file.len(), 8);
    for (i, want) in expected["records"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .rev()
    {
        let image = ImageExample::decode(&file.read_record(i).unwrap())
            .unwrap()
            .image;
        assert_eq!(sha256_hex(&image), want["image_sha256"].as_str().unwrap());
    }
}

#[test]
fn a_flipped_payload_bit_is_reported_where_tensorflow_reports_it() {
    let (payloads, error) = read_both_ways("corrupt_payload.tfrec");
    assert_eq!(
        payloads.len() as u64,
        records_tensorflow_read("corrupt_payload.tfrec")
    );
    let error = error.expect("the damage is reported");
    let at = error.location().unwrap();
    assert_eq!(at.index, 3);
    assert_eq!(
        at.offset,
        expected()["records"][3]["record_offset"].as_u64().unwrap()
    );
    assert!(at.file.path().unwrap().ends_with("corrupt_payload.tfrec"));
    match error.corruption().unwrap() {
        Corruption::DataCrcMismatch { payload_offset, .. } => {
            assert_eq!(*payload_offset, tensorflow_offset("corrupt_payload.tfrec"));
        }
        other => panic!("expected a data crc mismatch, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.starts_with("corrupted record 3 at offset 8280 in "),
        "{message}"
    );
    assert!(
        message.contains("data crc mismatch in the payload at offset 8292"),
        "{message}"
    );
}

#[test]
fn a_cut_payload_is_reported_where_tensorflow_reports_it() {
    let (payloads, error) = read_both_ways("truncated.tfrec");
    assert_eq!(
        payloads.len() as u64,
        records_tensorflow_read("truncated.tfrec")
    );
    let error = error.expect("the truncation is reported");
    let at = error.location().unwrap();
    assert_eq!(
        (at.index, at.offset),
        (5, tensorflow_offset("truncated.tfrec"))
    );
    let file_bytes = expected()["damaged"]["truncated.tfrec"]["file_bytes"]
        .as_u64()
        .unwrap();
    assert_eq!(
        error.corruption(),
        Some(&Corruption::TruncatedPayload {
            length: 2378,
            needed: 2378 + 16,
            available: file_bytes - at.offset,
        })
    );
}

#[test]
fn stray_trailing_bytes_that_tensorflow_ignores_are_reported() {
    let (payloads, error) = read_both_ways("trailing_partial_header.tfrec");
    assert_eq!(
        payloads.len() as u64,
        records_tensorflow_read("trailing_partial_header.tfrec")
    );
    let error = error.expect("the stray bytes are reported");
    assert_eq!(
        error.corruption(),
        Some(&Corruption::TrailingBytes { count: 7 })
    );
    let at = error.location().unwrap();
    assert_eq!((at.index, at.offset), (8, 22553));
}
