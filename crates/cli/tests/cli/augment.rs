//! Training-time crops from the command line: `stream --crop random|center --size N` reads
//! every record each epoch as a crop of that side; `train --augment` trains on
//! RandomResizedCrop + flip batches drawn per record and epoch, so an interrupted and resumed
//! augmented run ends with the uninterrupted run's model, and `run.json` says it augmented.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use shardfeed::train::{TrainEvent, TrainSettings, train};
use shardfeed_dataset::ShardConfig;
use shardfeed_dataset::folder::{Location, Resize};
use shardfeed_dataset::run::RunInfo;
use shardfeed_dataset::synthetic::GenData;
use shardfeed_input_pipeline::Parallelism;

use crate::common::probabilities;
use crate::generated::generated_shards;

/// `n` generated images of 40–90 px kept as they are (`--resize keep`) in 4 shards.
fn kept_shards(dir: &Path, n: usize) -> PathBuf {
    let data = GenData {
        n_train: n,
        n_test: 0,
        seed: 5,
        sides: (40, 90),
        ..GenData::default()
    };
    let config = ShardConfig {
        shards: 4,
        resize: Resize::Keep,
        ..ShardConfig::default()
    };
    generated_shards(dir, &data, config)
}

fn stream_json(shards: &Path, flags: &[&str]) -> serde_json::Value {
    let output = Command::new(crate::common::shardfeed_bin())
        .arg("stream")
        .arg(shards)
        .args(["--epochs", "2", "--batch", "4", "--jobs", "2", "--json"])
        .args(flags)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn stream_crops_every_record_each_epoch_without_a_cache() {
    let dir = tempfile::tempdir().unwrap();
    let shards = kept_shards(dir.path(), 40);
    for crop in ["random", "center"] {
        let doc = stream_json(&shards, &["--crop", crop, "--size", "24"]);
        assert_eq!(doc["records"], 40, "{doc}");
        // Two epochs of 10 batches of 4, every image decoded (no cache hit).
        assert_eq!(doc["images"], 80, "{crop}: {doc}");
        assert_eq!(doc["cache_hits"], 0, "{crop}: {doc}");
    }
    // The same run twice in deterministic mode: the same values delivered.
    let flags = ["--crop", "random", "--size", "24", "--deterministic"];
    let (a, b) = (stream_json(&shards, &flags), stream_json(&shards, &flags));
    assert_eq!(a["checksum"], b["checksum"]);
}

fn settings(shards: &Path, out: &Path) -> TrainSettings {
    TrainSettings {
        shards: Location::local(shards.to_owned()),
        epochs: 3,
        batch: 8,
        out: out.to_owned(),
        jobs: Parallelism::Fixed(2),
        augment: true,
        format: shardfeed_dataset::stream::RecordFormat {
            keys: None,
            size: Some(32),
        },
        ..TrainSettings::default()
    }
}

#[test]
fn an_augmented_run_resumes_to_the_uninterrupted_runs_model() {
    let dir = tempfile::tempdir().unwrap();
    let shards = kept_shards(dir.path(), 64);
    let straight = dir.path().join("straight");
    train(&settings(&shards, &straight), |_| {}).unwrap();
    assert!(RunInfo::load(&straight).unwrap().augment);

    let split = dir.path().join("split");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let interrupted = train(
        &TrainSettings {
            stop: Some(stop),
            ..settings(&shards, &split)
        },
        |event| {
            if let TrainEvent::Step {
                epoch: 2, step: 2, ..
            } = event
            {
                flag.store(true, Ordering::SeqCst);
            }
        },
    )
    .unwrap();
    assert_eq!(interrupted.interrupted, Some((2, 2)));
    // Resumed without --augment: the run's own setting (run.json) goes on.
    train(
        &TrainSettings {
            resume: true,
            augment: false,
            ..settings(&shards, &split)
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(
        probabilities(&straight),
        probabilities(&split),
        "the resumed augmented run's model differs from the uninterrupted run's"
    );
    // Without augmentation the same data gives another model.
    let plain = dir.path().join("plain");
    train(
        &TrainSettings {
            augment: false,
            ..settings(&shards, &plain)
        },
        |_| {},
    )
    .unwrap();
    assert_ne!(probabilities(&straight), probabilities(&plain));
}
