//! Records of varying size on the read side: `fit`/`keep` shards and another writer's
//! records become squares as they are read (the seed's resize + centre crop, the same pixels
//! `shard --resize crop` makes), said once in a note; `crop` shards stay as they are; other
//! writers' keys are found without flags (TensorFlow's) or named (`RecordFormat::keys`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use shardfeed_dataset::folder::{Location, Resize};
use shardfeed_dataset::loader::{Dtype, Loader, LoaderConfig, Pixels, Position};
use shardfeed_dataset::stream::RecordFormat;
use shardfeed_dataset::{Error, ShardConfig, find_shards, shard, synthetic};
use shardfeed_image_prep::{DecodeOptions, Preparer};
use shardfeed_input_pipeline::Parallelism;
use shardfeed_record_format::{Example, ExampleKeys, Feature, FileWriter, ImageExample};

fn sources(dir: &Path, n: usize) -> PathBuf {
    let config = synthetic::GenData {
        n_train: n,
        n_test: 0,
        sides: (30, 70),
        ..Default::default()
    };
    synthetic::generate(dir, &config).unwrap();
    dir.join("train")
}

fn shards(input: &Path, out: &Path, resize: Resize, size: u32) -> Vec<PathBuf> {
    let config = ShardConfig {
        input: Location::local(input),
        out: Location::local(out),
        shards: 3,
        size,
        resize,
        ..ShardConfig::default()
    };
    shard(&config, |_| {}).unwrap();
    find_shards(out).unwrap()
}

/// Every image of one epoch (one rank, nothing dropped) as (class, side, pixels), sorted.
fn epoch(loader: &Loader) -> Vec<(i64, usize, Vec<u8>)> {
    let mut batches = loader.epoch(Position::default());
    let mut images = Vec::new();
    while let Some(batch) = batches.next_batch() {
        let batch = batch.unwrap();
        let Pixels::U8(pixels) = &batch.pixels else {
            panic!("uint8 asked for")
        };
        let plane = batch.side * batch.side * 3;
        for (i, label) in batch.labels.iter().enumerate() {
            images.push((
                *label,
                batch.side,
                pixels[i * plane..(i + 1) * plane].to_vec(),
            ));
        }
    }
    images.sort();
    images
}

fn config(format: RecordFormat) -> LoaderConfig {
    LoaderConfig {
        batch_size: 4,
        drop_remainder: false,
        dtype: Dtype::Uint8,
        jobs: Parallelism::Fixed(2),
        format,
        ..LoaderConfig::default()
    }
}

fn sized(size: u32) -> RecordFormat {
    RecordFormat {
        keys: None,
        size: Some(size),
    }
}

#[test]
fn kept_originals_become_the_squares_crop_shards_hold() {
    let dir = tempfile::tempdir().unwrap();
    let input = sources(dir.path(), 14);
    let kept = shards(&input, &dir.path().join("keep"), Resize::Keep, 160);
    let loader = Loader::open(&kept, config(sized(40))).unwrap();
    let note = loader.note().expect("a note says the records are resized");
    assert!(
        note.contains("resize keep") && note.contains("40 × 40"),
        "{note}"
    );
    let read = epoch(&loader);
    assert_eq!(read.len(), 14);
    assert!(read.iter().all(|(_, side, _)| *side == 40));
    // The same pixels as the shard step's preparation at 40 px, before its JPEG encode.
    let mut preparer = Preparer::new(40, 95, DecodeOptions::default()).unwrap();
    let labels = ["cat", "dog"];
    let mut want: Vec<(i64, usize, Vec<u8>)> = std::fs::read_dir(&input)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let label = labels.iter().position(|l| name.starts_with(l)).unwrap() as i64;
            let image = preparer
                .resize_and_crop(&std::fs::read(&path).unwrap())
                .unwrap();
            (label, 40, image.pixels)
        })
        .collect();
    want.sort();
    assert_eq!(read, want);
    // Without a size asked for: SPEC's 160.
    let default = Loader::open(&kept, config(RecordFormat::default())).unwrap();
    assert!(epoch(&default).iter().all(|(_, side, _)| *side == 160));
}

#[test]
fn crop_shards_stay_as_they_are_unless_another_side_is_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let input = sources(dir.path(), 9);
    let cropped = shards(&input, &dir.path().join("crop"), Resize::Crop, 32);
    let loader = Loader::open(&cropped, config(RecordFormat::default())).unwrap();
    assert_eq!(loader.note(), None);
    assert!(epoch(&loader).iter().all(|(_, side, _)| *side == 32));
    let same = Loader::open(&cropped, config(sized(32))).unwrap();
    assert_eq!(same.note(), None, "the folder's own size: nothing to say");
    let smaller = Loader::open(&cropped, config(sized(24))).unwrap();
    assert!(
        smaller
            .note()
            .unwrap()
            .contains("32 × 32 records are resized to 24 × 24")
    );
    assert!(epoch(&smaller).iter().all(|(_, side, _)| *side == 24));
}

#[test]
fn fitted_shards_are_read_at_the_side_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let input = sources(dir.path(), 8);
    let out = dir.path().join("fit");
    let config_fit = ShardConfig {
        input: Location::local(&input),
        out: Location::local(&out),
        shards: 2,
        resize: Resize::Fit,
        max_side: 48,
        ..ShardConfig::default()
    };
    let manifest = shard(&config_fit, |_| {}).unwrap();
    let sizes = manifest.sizes.unwrap();
    assert!(sizes.max_width.max(sizes.max_height) <= 48);
    let loader = Loader::open(&find_shards(&out).unwrap(), config(sized(24))).unwrap();
    let read = epoch(&loader);
    assert_eq!(read.len(), 8);
    assert!(read.iter().all(|(_, side, _)| *side == 24));
}

fn tf_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tf-image-keys")
}

#[test]
fn tensorflow_image_keys_are_found_without_flags() {
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tf_fixture().join("expected.json")).unwrap())
            .unwrap();
    let mut files: Vec<PathBuf> = expected["files"]
        .as_object()
        .unwrap()
        .keys()
        .map(|name| tf_fixture().join(name))
        .collect();
    files.sort();
    let loader = Loader::open(&files, config(RecordFormat::default())).unwrap();
    assert!(loader.note().unwrap().contains("no manifest.json"));
    let read = epoch(&loader);
    let mut want: BTreeMap<i64, usize> = BTreeMap::new();
    for records in expected["files"].as_object().unwrap().values() {
        for record in records.as_array().unwrap() {
            *want.entry(record["label"].as_i64().unwrap()).or_default() += 1;
        }
    }
    let mut got: BTreeMap<i64, usize> = BTreeMap::new();
    for (label, side, _) in &read {
        assert_eq!(*side, 160);
        *got.entry(*label).or_default() += 1;
    }
    assert_eq!(got, want);
}

#[test]
fn other_names_are_read_when_named_and_refused_naming_the_feature_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let input = sources(dir.path(), 4);
    let jpegs: Vec<Vec<u8>> = std::fs::read_dir(&input)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    let path = dir.path().join("other.tfrec");
    let mut writer = FileWriter::create(&path, shardfeed_record_format::Compression::None).unwrap();
    for (i, jpeg) in jpegs.iter().enumerate() {
        let example = Example::new()
            .with("jpeg", Feature::bytes([jpeg.clone()]))
            .with("y", Feature::int64s([(i % 2) as i64]));
        writer.write_record(&example.to_bytes()).unwrap();
    }
    writer.commit().unwrap();
    let named = RecordFormat {
        keys: Some(ExampleKeys::named("jpeg", "y")),
        size: Some(32),
    };
    let loader = Loader::open(std::slice::from_ref(&path), config(named)).unwrap();
    let read = epoch(&loader);
    assert_eq!(read.iter().map(|r| r.0).sum::<i64>(), 2);
    assert!(read.iter().all(|(_, side, _)| *side == 32));
    let unnamed = Loader::open(&[path], config(sized(32))).unwrap();
    let error = unnamed
        .epoch(Position::default())
        .next_batch()
        .unwrap()
        .unwrap_err();
    assert!(matches!(error, Error::DamagedRecord(_)), "{error}");
    assert!(
        error.to_string().contains(r#"feature "image" is missing"#),
        "{error}"
    );
    // A record that states its size with shardfeed's keys parses it back.
    let record = ImageExample {
        image: jpegs[0].clone(),
        class: 1,
        size: Some((3, 4)),
    };
    assert_eq!(ImageExample::decode(&record.to_bytes()).unwrap(), record);
}
