//! Index files: DALI's format, written while writing, read back, rebuilt by a scan.

use std::fs;

use shardfeed_record_format::{
    Compression, Error, FileName, FileWriter, Index, IndexedFile, ReaderOptions,
};

use crate::support::fixtures;

#[test]
fn the_index_of_the_tensorflow_file_is_dalis_offset_and_framed_length() {
    let path = fixtures().join("tf-written/cat_dog00-8.tfrec");
    let expected: serde_json::Value =
        serde_json::from_slice(&fs::read(fixtures().join("tf-written/expected.json")).unwrap())
            .unwrap();
    let text: String = expected["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let offset = r["record_offset"].as_u64().unwrap();
            let framed = r["record_length"].as_u64().unwrap() + 16;
            format!("{offset} {framed}\n")
        })
        .collect();
    let index = Index::scan(&path, ReaderOptions::default()).unwrap();
    assert_eq!(index.to_text(), text);
    assert_eq!(Index::parse(&text, &FileName::unknown()).unwrap(), index);
    assert_eq!(index.stream_len(), fs::metadata(&path).unwrap().len());
}

#[test]
fn the_written_index_matches_a_scan_for_every_compression() {
    let dir = tempfile::tempdir().unwrap();
    for compression in Compression::ALL {
        let path = dir.path().join(format!("{compression}00-50.tfrec"));
        let mut writer = FileWriter::create(&path, compression).unwrap();
        for i in 0..50u32 {
            writer.write_record(&vec![i as u8; i as usize * 7]).unwrap();
        }
        let written = writer.commit().unwrap();
        let on_disk = Index::read(Index::path_for(&path)).unwrap();
        let scanned = Index::scan(&path, ReaderOptions::compression(compression)).unwrap();
        assert_eq!(written, on_disk);
        assert_eq!(written, scanned);
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(names.is_empty(), "no temporary file is left: {names:?}");
    }
}

#[test]
fn a_dropped_writer_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data00-1.tfrec");
    let mut writer = FileWriter::create(&path, Compression::None).unwrap();
    writer.write_record(b"never committed").unwrap();
    drop(writer);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn bad_index_lines_are_reported_with_their_line_number() {
    let file = FileName::new("x.tfrec.idx");
    for (text, line, needle) in [
        (
            "0 20\n20 abc\n",
            2,
            "length is not a non-negative integer (a field of 3 bytes)",
        ),
        // What is not a number is not echoed (the index may be a link to a secret file).
        (
            "password=hunter2 20\n",
            1,
            "offset is not a non-negative integer (a field of 16 bytes)",
        ),
        (
            "0 20\n21 20\n",
            2,
            "offset 21 does not follow the previous record, which ends at 20",
        ),
        ("0 10\n", 1, "shorter than the 16 framing bytes"),
        ("0\n", 1, "missing length"),
        ("0 20 5\n", 1, "more than two fields"),
        ("0 20\n20 18446744073709551615\n", 2, "overflows"),
    ] {
        match Index::parse(text, &file) {
            Err(Error::BadIndex {
                line: got, message, ..
            }) => {
                assert_eq!(got, line, "{text:?}");
                assert!(message.contains(needle), "{text:?}: {message}");
                assert!(!message.contains("hunter2"), "{message}");
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
}

#[test]
fn a_stale_index_is_rejected_and_out_of_range_reads_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data00-2.tfrec");
    let mut writer = FileWriter::create(&path, Compression::None).unwrap();
    writer.write_record(b"one").unwrap();
    writer.write_record(b"two").unwrap();
    writer.commit().unwrap();

    let mut file = IndexedFile::open(&path, ReaderOptions::default()).unwrap();
    let error = file.read_record(2).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("record 2 out of range: {} has 2 records", path.display())
    );

    fs::write(Index::path_for(&path), "0 19\n").unwrap();
    let error = IndexedFile::open(&path, ReaderOptions::default())
        .err()
        .unwrap();
    assert!(matches!(error, Error::IndexMismatch { .. }), "{error}");

    // Without an index file, the index comes from a scan.
    fs::remove_file(Index::path_for(&path)).unwrap();
    let mut file = IndexedFile::open(&path, ReaderOptions::default()).unwrap();
    assert_eq!(file.read_record(1).unwrap(), b"two");
}

/// A GZIP file of 5,000 empty records (a small bomb: 80,000 bytes of frames from a few
/// hundred bytes) scanned within limits of 1,000 records, then of 8,000 bytes: each scan stops
/// at its limit with the file named, instead of indexing without bound.
#[test]
fn a_scan_stops_at_its_limits_with_the_file_named() {
    use shardfeed_record_format::Scanned;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.tfrec.gz");
    let mut writer = FileWriter::create(&path, Compression::Gzip).unwrap();
    for _ in 0..5000 {
        writer.write_record(b"").unwrap();
    }
    writer.commit().unwrap();
    println!("{} bytes on disk", fs::metadata(&path).unwrap().len());
    let options = ReaderOptions::compression(Compression::Gzip);
    let error = Index::scan_limited(&path, options, Scanned::limited(1000, u64::MAX))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("bomb.tfrec.gz: 1001 records, past the limit of a scan (1000)"),
        "{error}"
    );
    let error = Index::scan_limited(&path, options, Scanned::limited(u64::MAX, 8000))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("8016 bytes of records, past the limit of a scan (8000)"),
        "{error}"
    );
    assert_eq!(Index::scan(&path, options).unwrap().len(), 5000);
}

/// An `.idx` larger than any index of the data file beside it (42 bytes a line, a line per
/// 16 bytes of data) is refused unread, naming the limit.
#[test]
fn an_index_too_large_for_its_data_file_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data00-1.tfrec");
    let mut writer = FileWriter::create(&path, Compression::None).unwrap();
    writer.write_record(b"x").unwrap();
    writer.commit().unwrap();
    let data = fs::metadata(&path).unwrap().len();
    let limit = Index::max_bytes_for(data);
    let index = Index::path_for(&path);
    fs::write(&index, "0 17\n".repeat(limit as usize / 5 + 1)).unwrap();
    let error = Index::read(&index).unwrap_err().to_string();
    assert!(
        error.contains(&format!("exceeds the limit of {limit}")),
        "{error}"
    );
}
