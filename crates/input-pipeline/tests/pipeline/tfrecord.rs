//! TFRecord sources: counts from `.idx` files or scans, reading by address, errors with
//! file and offset, and the validation split.

use std::path::{Path, PathBuf};

use shardfeed_input_pipeline::split::{DEFAULT_VALIDATION_FRACTION, split_tfrecords};
use shardfeed_input_pipeline::tfrecord::{CountSource, TfRecordSource};
use shardfeed_input_pipeline::{Parallelism, Repeat};
use shardfeed_record_format::{Compression, FileWriter, ImageExample, Index, ReaderOptions};

/// `files` shards of `per_file` records each; record payloads say where they are.
fn write_shards(
    dir: &Path,
    files: usize,
    per_file: usize,
    compression: Compression,
) -> Vec<PathBuf> {
    (0..files)
        .map(|shard| {
            let path = dir.join(format!("data{shard:02}-{per_file}.tfrec"));
            let mut writer = FileWriter::create(&path, compression).unwrap();
            for i in 0..per_file {
                let record = ImageExample {
                    image: format!("{shard}/{i}").into_bytes(),
                    class: (i % 2) as i64,
                    size: None,
                };
                writer.write_record(&record.to_bytes()).unwrap();
            }
            writer.commit().unwrap();
            path
        })
        .collect()
}

#[test]
fn every_record_of_every_file_is_read_once_per_epoch_plain_and_compressed() {
    for compression in Compression::ALL {
        let dir = tempfile::tempdir().unwrap();
        let files = write_shards(dir.path(), 5, 40, compression);
        let source = TfRecordSource::open(&files, ReaderOptions::compression(compression)).unwrap();
        assert_eq!(source.counts(), [40; 5]);
        assert!(
            source
                .files()
                .iter()
                .all(|f| f.counted_by == CountSource::IndexFile)
        );
        let pipeline = source
            .parsed_pipeline(
                |plan| {
                    plan.seed(3)
                        .shuffle_sources(true)
                        .interleave(16, 1)
                        .shuffle(64)
                        .repeat(Repeat::Epochs(2))
                },
                |payload| {
                    ImageExample::decode(payload).map(|r| String::from_utf8(r.image).unwrap())
                },
            )
            .parallelism(Parallelism::Fixed(3));
        let mut seen: Vec<String> = pipeline.iter().items().map(Result::unwrap).collect();
        seen.sort();
        let mut expected: Vec<String> = (0..5)
            .flat_map(|s| (0..40).map(move |i| format!("{s}/{i}")))
            .flat_map(|r| [r.clone(), r])
            .collect();
        expected.sort();
        assert_eq!(seen, expected, "{compression}");
    }
}

#[test]
fn files_without_an_index_are_counted_by_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_shards(dir.path(), 2, 7, Compression::None);
    std::fs::remove_file(Index::path_for(&files[1])).unwrap();
    let source = TfRecordSource::open(&files, ReaderOptions::default()).unwrap();
    assert_eq!(source.counts(), [7, 7]);
    assert_eq!(source.files()[0].counted_by, CountSource::IndexFile);
    assert_eq!(source.files()[1].counted_by, CountSource::Scan);
    assert_eq!(TfRecordSource::find(dir.path()).unwrap(), files);
}

#[test]
fn a_stale_index_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_shards(dir.path(), 1, 3, Compression::None);
    std::fs::write(Index::path_for(&files[0]), "0 20\n").unwrap();
    let error = TfRecordSource::open(&files, ReaderOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("data00-3.tfrec") && error.contains("covers 20 bytes"),
        "{error}"
    );
}

#[test]
fn a_damaged_record_reaches_the_consumer_with_file_and_offset() {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/tf-written/corrupt_payload.tfrec");
    // No .idx beside the fixture: the scan finds the damage already, naming file and offset.
    let error = TfRecordSource::open(&[&fixture], ReaderOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("corrupt_payload.tfrec") && error.contains("at offset 8280"),
        "{error}"
    );

    // With an index (as our own shards have), the damage surfaces while streaming, in place.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("cat_dog00-8.tfrec");
    std::fs::copy(&fixture, &copy).unwrap();
    let intact = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/tf-written/cat_dog00-8.tfrec");
    Index::scan(&intact, ReaderOptions::default())
        .unwrap()
        .write(Index::path_for(&copy))
        .unwrap();
    let source = TfRecordSource::open(&[&copy], ReaderOptions::default()).unwrap();
    let results: Vec<_> = source
        .pipeline(|p| p)
        .deterministic(true)
        .iter()
        .items()
        .collect();
    assert_eq!(results.len(), 8);
    let error = results[3].as_ref().unwrap_err().to_string();
    assert!(
        error.starts_with("corrupted record 3 at offset 8280 in ")
            && error.contains("cat_dog00-8.tfrec"),
        "{error}"
    );
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 7);
}

#[test]
fn the_split_counts_records_for_the_steps() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = write_shards(dir.path(), 16, 25, Compression::None);
    files.reverse(); // the split sorts first, so listing order does not matter
    let split = split_tfrecords(
        &files,
        DEFAULT_VALIDATION_FRACTION,
        42,
        ReaderOptions::default(),
    )
    .unwrap();
    assert_eq!(split.validation.files().len(), 3);
    assert_eq!(split.train.files().len(), 13);
    assert_eq!(split.counts.train_records, 325);
    assert_eq!(split.counts.validation_records, 75);
    assert_eq!(split.counts.steps_per_epoch(32), 10);
    assert_eq!(split.counts.validation_steps(32), 2);
    files.sort();
    let again = split_tfrecords(
        &files,
        DEFAULT_VALIDATION_FRACTION,
        42,
        ReaderOptions::default(),
    )
    .unwrap();
    let names = |s: &TfRecordSource| s.files().iter().map(|f| f.path.clone()).collect::<Vec<_>>();
    assert_eq!(names(&again.validation), names(&split.validation));
}

/// A compressed file is read forward. Told which records a pass fetches (a rank of four, a
/// resumed epoch), its cursor keeps none of the others it passes over; not told, it keeps
/// them until they are asked for (a full pass asks for every one).
#[test]
fn a_compressed_cursor_keeps_only_the_records_the_pass_asks_for() {
    use shardfeed_input_pipeline::Address;
    let dir = tempfile::tempdir().unwrap();
    let files = write_shards(dir.path(), 1, 100, Compression::Gzip);
    let options = ReaderOptions::compression(Compression::Gzip);
    let at = |index: u64| Address { source: 0, index };
    let rank: Vec<Address> = (0..100).filter(|i| i % 4 == 1).map(at).collect();
    let resumed: Vec<Address> = (60..100).map(at).collect();
    for (pass, told) in [(&rank, false), (&rank, true), (&resumed, true)] {
        let source = TfRecordSource::open(&files, options).unwrap();
        if told {
            source.expect(pass);
        }
        for &address in pass {
            let payload = source.fetch(address).unwrap();
            let example = ImageExample::decode(&payload).unwrap();
            assert_eq!(example.image, format!("0/{}", address.index).into_bytes());
        }
        let kept = source.records_kept();
        if told {
            assert_eq!(kept, 0, "records of other ranks kept");
        } else {
            assert_eq!(
                kept, 73,
                "every record passed over is kept when the pass is not told"
            );
        }
    }
}
