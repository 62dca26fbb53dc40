//! `shardfeed stream`: every record decoded once per epoch, the cache used, errors with file
//! and offset, and the command's output.

use shardfeed_dataset::folder::Location;
use std::path::Path;
use std::process::Command;

use crate::generated::generated_shards;
use shardfeed_dataset::ShardConfig;
use shardfeed_dataset::stream::{StreamConfig, open_shards, read_pipeline, stream};
use shardfeed_dataset::synthetic::GenData;
use shardfeed_dataset::to_float_batch;
use shardfeed_input_pipeline::Parallelism;

fn shards(dir: &Path, n: usize) -> std::path::PathBuf {
    let data = GenData {
        n_train: n,
        n_test: 0,
        seed: 9,
        sides: (40, 80),
        ..GenData::default()
    };
    let config = ShardConfig {
        shards: 5,
        size: 32,
        ..ShardConfig::default()
    };
    generated_shards(dir, &data, config)
}

#[test]
fn every_record_is_decoded_and_later_epochs_come_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let out = shards(dir.path(), 70);
    let config = StreamConfig {
        shards: Location::local(out),
        epochs: 3,
        batch: 8,
        jobs: Parallelism::Fixed(1),
        ..StreamConfig::default()
    };
    let report = stream(&config).unwrap();
    assert_eq!(report.records, 70);
    assert_eq!(report.files, 5);
    // 210 images in batches of 8, the remainder dropped: 26 batches.
    assert_eq!(report.epochs.iter().map(|e| e.images).sum::<u64>(), 208);
    assert_eq!(report.epochs.len(), 3);
    assert_eq!(
        report.stats.cache_hits, 140,
        "epochs 2 and 3 from the cache"
    );
    let no_cache = stream(&StreamConfig {
        cache: false,
        ..config.clone()
    })
    .unwrap();
    assert_eq!(no_cache.stats.cache_hits, 0);
    assert_eq!(
        no_cache.checksum, report.checksum,
        "same values with or without the cache"
    );
    // Whole batches, every pixel and label, in a deterministic order: the cache changes none.
    let batches = |cache: bool| -> Vec<(Vec<f32>, Vec<i64>)> {
        let config = StreamConfig {
            cache,
            deterministic: true,
            ..config.clone()
        };
        let source = open_shards(&config.shards, config.compression, false).unwrap();
        read_pipeline(source, &config)
            .unwrap()
            .iter()
            .map(|batch| {
                let batch = to_float_batch(&batch.unwrap().items).unwrap();
                (batch.pixels, batch.labels)
            })
            .collect()
    };
    let (cached, uncached) = (batches(true), batches(false));
    assert_eq!(cached.len(), 26);
    assert_eq!(cached[0].0.len(), 8 * 32 * 32 * 3);
    assert!(cached == uncached, "a batch differs with the cache");
    assert!(cached[0].0 != cached[1].0, "batches hold different images");
}

#[test]
fn the_deterministic_stream_repeats_exactly_and_holds_every_record_once_per_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let out = shards(dir.path(), 45);
    let config = StreamConfig {
        shards: Location::local(out),
        epochs: 2,
        batch: 1,
        deterministic: true,
        ..StreamConfig::default()
    };
    let run = |jobs| -> Vec<(u32, u64)> {
        let source = open_shards(&config.shards, config.compression, false).unwrap();
        let pipeline = read_pipeline(
            source,
            &StreamConfig {
                jobs: Parallelism::Fixed(jobs),
                ..config.clone()
            },
        )
        .unwrap();
        pipeline
            .iter()
            .flat_map(|b| b.unwrap().addresses)
            .map(|a| (a.source, a.index))
            .collect()
    };
    let first = run(1);
    assert_eq!(first, run(2));
    let mut epoch: Vec<_> = first[..45].to_vec();
    epoch.sort();
    epoch.dedup();
    assert_eq!(epoch.len(), 45);
}

#[test]
fn a_damaged_shard_is_reported_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let out = shards(dir.path(), 20);
    let victim = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "tfrec"))
        .unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[40] ^= 0x10; // inside record 0's payload
    std::fs::write(&victim, &bytes).unwrap();
    let output = Command::new(crate::common::shardfeed_bin())
        .arg("stream")
        .arg(&out)
        .args(["--batch", "4"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("shardfeed: error: corrupted record 0 at offset 0 in "),
        "{stderr}"
    );
    assert!(
        stderr.contains(&victim.file_name().unwrap().to_string_lossy().into_owned()),
        "{stderr}"
    );
}

#[test]
fn the_command_prints_each_epoch_and_each_stage() {
    let dir = tempfile::tempdir().unwrap();
    let out = shards(dir.path(), 40);
    let output = Command::new(crate::common::shardfeed_bin())
        .arg("stream")
        .arg(&out)
        .args(["--epochs", "2", "--batch", "8", "--jobs", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for needle in [
        "40 records in 5 files, batch 8",
        "epoch 1: 40 images",
        "epoch 2: 40 images",
        "  map ",
        "  cache: 40 hits",
        // --jobs caps the tuner: what it chose is printed.
        "  autotune: 1 of at most 1 map workers, prefetch ",
    ] {
        assert!(stdout.contains(needle), "{needle:?} in {stdout}");
    }
    let json = Command::new(crate::common::shardfeed_bin())
        .arg("stream")
        .arg(&out)
        .args(["--json", "--no-cache", "--batch", "8"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["records"], 40);
    assert_eq!(report["epochs"].as_array().unwrap().len(), 3);
    let autotune = &report["autotune"];
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(autotune["max_workers"], cores, "{autotune}");
    let workers = autotune["workers"].as_u64().unwrap();
    assert!((1..=cores).contains(&workers), "{autotune}");
    assert!(
        autotune["summary"]
            .as_str()
            .unwrap()
            .starts_with("autotune: ")
    );
    for change in autotune["changes"].as_array().unwrap() {
        assert!(
            change["why"].as_str().unwrap().contains("consumer waited"),
            "{change}"
        );
    }
}
