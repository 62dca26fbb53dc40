//! Readers check a shard folder against its `manifest.json`: a half-copied folder, a stray
//! shard or a shard of another size is an error naming the file, not a silent subset or
//! superset; `ignore_manifest` reads the files as they are; a folder without a manifest reads
//! as it is.

use shardfeed_dataset::folder::Location;
use std::path::Path;

use shardfeed_dataset::folder::checked_shards;
use shardfeed_dataset::stream::{StreamConfig, stream};
use shardfeed_dataset::{ShardConfig, shard, synthetic};
use shardfeed_input_pipeline::Parallelism;

fn folder(dir: &Path) -> std::path::PathBuf {
    let data = synthetic::GenData {
        n_train: 40,
        n_test: 0,
        sides: (30, 40),
        ..Default::default()
    };
    synthetic::generate(dir, &data).unwrap();
    let out = dir.join("out");
    let config = ShardConfig {
        input: Location::local(dir.join("train")),
        out: Location::local(out.clone()),
        shards: 4,
        size: 16,
        jobs: Parallelism::Fixed(2),
        ..ShardConfig::default()
    };
    shard(&config, |_| {}).unwrap();
    out
}

#[test]
fn a_folder_that_disagrees_with_its_manifest_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = folder(dir.path());
    assert_eq!(checked_shards(&out, false).unwrap().len(), 4);
    let stream_config = StreamConfig {
        shards: Location::local(out.clone()),
        epochs: 1,
        batch: 4,
        jobs: Parallelism::Fixed(2),
        ..StreamConfig::default()
    };
    assert!(stream(&stream_config).is_ok());

    // A shard missing (an interrupted copy).
    let moved = dir.path().join("data02-10.tfrec");
    std::fs::rename(out.join("data02-10.tfrec"), &moved).unwrap();
    let error = checked_shards(&out, false).unwrap_err().to_string();
    assert!(
        error.contains("data02-10.tfrec is listed in manifest.json but not in the folder"),
        "{error}"
    );
    assert!(error.contains("--ignore-manifest"), "{error}");
    let error = stream(&stream_config).unwrap_err().to_string();
    assert!(error.contains("data02-10.tfrec is listed"), "{error}");
    assert_eq!(checked_shards(&out, true).unwrap().len(), 3);
    let as_they_are = StreamConfig {
        ignore_manifest: true,
        ..stream_config.clone()
    };
    assert_eq!(stream(&as_they_are).unwrap().records, 30);
    std::fs::rename(&moved, out.join("data02-10.tfrec")).unwrap();

    // A stray shard.
    std::fs::copy(out.join("data00-10.tfrec"), out.join("extra00-10.tfrec")).unwrap();
    let error = checked_shards(&out, false).unwrap_err().to_string();
    assert!(
        error.contains("extra00-10.tfrec is not listed in manifest.json"),
        "{error}"
    );
    std::fs::remove_file(out.join("extra00-10.tfrec")).unwrap();

    // A shard of another size (cut, or replaced).
    let file = out.join("data01-10.tfrec");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 1]).unwrap();
    let error = checked_shards(&out, false).unwrap_err().to_string();
    assert!(
        error.contains(&format!(
            "data01-10.tfrec has {} bytes, manifest.json says {}",
            bytes.len() - 1,
            bytes.len()
        )),
        "{error}"
    );
    std::fs::write(&file, &bytes).unwrap();

    // Without a manifest: read as it is.
    std::fs::remove_file(out.join("manifest.json")).unwrap();
    assert_eq!(checked_shards(&out, false).unwrap().len(), 4);
}
