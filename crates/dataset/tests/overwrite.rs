//! `shard --overwrite` loses nothing: the new set is written beside the old one and replaces
//! it only once complete. A run that fails or is interrupted leaves the previous dataset
//! byte for byte; a run that completes leaves the new set and every unrelated file.

use shardfeed_dataset::folder::Location;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use shardfeed_dataset::{Error, ShardConfig, find_shards, shard, synthetic};
use shardfeed_input_pipeline::Parallelism;

/// Every file directly in `dir` (and whether anything else is there), by name.
fn files(dir: &Path) -> (BTreeMap<String, Vec<u8>>, Vec<String>) {
    let mut files = BTreeMap::new();
    let mut others = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_file() {
            files.insert(name, std::fs::read(entry.path()).unwrap());
        } else {
            others.push(name);
        }
    }
    (files, others)
}

fn config(dir: &Path, shards: usize) -> ShardConfig {
    ShardConfig {
        input: Location::local(dir.join("train")),
        out: Location::local(dir.join("out")),
        shards,
        size: 24,
        jobs: Parallelism::Fixed(2),
        ..ShardConfig::default()
    }
}

#[test]
fn a_failed_or_interrupted_overwrite_leaves_the_old_dataset_and_a_finished_one_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic::GenData {
        n_train: 60,
        n_test: 0,
        sides: (30, 50),
        ..Default::default()
    };
    synthetic::generate(dir.path(), &data).unwrap();
    let out = dir.path().join("out");
    shard(&config(dir.path(), 6), |_| {}).unwrap();
    std::fs::write(out.join("notes.txt"), b"mine").unwrap();
    std::fs::write(out.join("other00-1.tfrec"), b"another prefix's").unwrap();
    let before = files(&out);
    assert_eq!(find_shards(&out).unwrap().len(), 7);

    // Without --overwrite: refused, nothing touched.
    let refused = shard(&config(dir.path(), 3), |_| {}).unwrap_err();
    assert!(matches!(refused, Error::OutputNotEmpty(_)), "{refused}");
    assert_eq!(files(&out), before);

    // An overwrite that fails late (strict, a broken file sorted last).
    std::fs::write(dir.path().join("train/zzz.99.jpg"), b"not a jpeg").unwrap();
    let failed = shard(
        &ShardConfig {
            overwrite: true,
            strict: true,
            ..config(dir.path(), 3)
        },
        |_| {},
    )
    .unwrap_err();
    assert!(failed.to_string().contains("zzz.99.jpg"), "{failed}");
    assert_eq!(
        files(&out),
        before,
        "a failed overwrite changed the old dataset"
    );
    std::fs::remove_file(dir.path().join("train/zzz.99.jpg")).unwrap();

    // An overwrite interrupted halfway.
    let stop = Arc::new(AtomicBool::new(false));
    let interrupted = shard(
        &ShardConfig {
            overwrite: true,
            stop: Some(stop.clone()),
            ..config(dir.path(), 3)
        },
        |progress: shardfeed_dataset::Progress| {
            if progress.done == 30 {
                stop.store(true, Ordering::SeqCst);
            }
        },
    )
    .unwrap_err();
    assert!(
        matches!(interrupted, Error::Interrupted { .. }),
        "{interrupted}"
    );
    assert_eq!(
        files(&out),
        before,
        "an interrupted overwrite changed the old dataset"
    );

    // A finished overwrite: the new set, and the unrelated files as they were.
    let manifest = shard(
        &ShardConfig {
            overwrite: true,
            ..config(dir.path(), 3)
        },
        |_| {},
    )
    .unwrap();
    let (after, others) = files(&out);
    assert!(others.is_empty(), "a staging folder was left: {others:?}");
    assert_eq!(after["notes.txt"], b"mine");
    assert_eq!(after["other00-1.tfrec"], b"another prefix's");
    let ours: Vec<&String> = after
        .keys()
        .filter(|n| n.starts_with("data") || *n == "manifest.json")
        .collect();
    assert_eq!(ours.len(), 3 * 2 + 1, "{ours:?}");
    assert_eq!(manifest.shards.len(), 3);
    for shard in &manifest.shards {
        assert_eq!(after[&shard.file].len() as u64, shard.bytes);
    }
}

#[test]
fn a_prefix_is_a_plain_file_name_prefix() {
    let dir = tempfile::tempdir().unwrap();
    for prefix in ["../escape", "a/b", ".hidden"] {
        let error = shard(
            &ShardConfig {
                prefix: prefix.to_owned(),
                ..config(dir.path(), 2)
            },
            |_| {},
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("plain file-name prefix"),
            "{error}"
        );
    }
    assert!(!dir.path().join("escape00-1.tfrec").exists());
}
