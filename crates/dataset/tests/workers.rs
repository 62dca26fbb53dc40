//! A shard run split over W workers: the merged folder is the one-machine run's, byte for
//! byte; a failed worker is rerun alone; parts that do not make a whole are refused.

use shardfeed_dataset::folder::Location;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use shardfeed_dataset::workers::{Workers, merge};
use shardfeed_dataset::{Error, Manifest, ShardConfig, shard, synthetic};
use shardfeed_input_pipeline::Parallelism;

/// 37 labelled images, one without a label and one that is not a JPEG inside.
fn source(dir: &Path) -> PathBuf {
    let config = synthetic::GenData {
        n_train: 37,
        n_test: 0,
        sides: (24, 40),
        ..Default::default()
    };
    synthetic::generate(dir, &config).unwrap();
    let train = dir.join("train");
    std::fs::copy(train.join("cat.0.jpg"), train.join("nolabel.jpg")).unwrap();
    std::fs::write(train.join("dog.999.jpg"), b"not a jpeg").unwrap();
    train
}

fn config(input: &Path, out: &Path, workers: Workers) -> ShardConfig {
    ShardConfig {
        input: Location::local(input.to_owned()),
        out: Location::local(out.to_owned()),
        shards: 7,
        size: 16,
        seed: 5,
        jobs: Parallelism::Fixed(2),
        workers,
        ..ShardConfig::default()
    }
}

/// Every file of a folder (parts aside) and its bytes; the manifest without its wall time.
fn contents(dir: &Path) -> (BTreeMap<String, Vec<u8>>, Manifest) {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".tfrec") || name.ends_with(".idx") {
            files.insert(name, std::fs::read(&path).unwrap());
        }
    }
    let mut manifest = Manifest::read_folder(dir).unwrap().expect("a manifest");
    manifest.seconds = 0.0;
    (files, manifest)
}

#[test]
fn two_and_three_workers_write_the_one_machine_set_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let input = source(dir.path());
    let whole = dir.path().join("whole");
    shard(&config(&input, &whole, Workers::ONE), |_| {}).unwrap();
    let expected = contents(&whole);
    assert_eq!(expected.1.records, 37);
    assert_eq!(expected.1.skipped.len(), 2);
    assert_eq!(expected.0.len(), 14, "7 shards and their indexes");

    for count in [2, 3] {
        let out = dir.path().join(format!("w{count}"));
        // The workers run at once, in threads, into one folder (as pods would).
        std::thread::scope(|scope| {
            for index in (0..count).rev() {
                let config = config(&input, &out, Workers { count, index });
                scope.spawn(move || {
                    let part = shard(&config, |_| {}).unwrap();
                    let mine = (0..7).filter(|s| s % count == index).count();
                    assert_eq!(part.shards.len(), mine, "worker {index} of {count}");
                });
            }
        });
        assert!(
            Manifest::read_folder(&out).unwrap().is_none(),
            "no manifest.json before the merge"
        );
        let merged = merge(&Location::local(&out)).unwrap();
        assert_eq!(merged.records, 37);
        let got = contents(&out);
        assert_eq!(
            got.0.keys().collect::<Vec<_>>(),
            expected.0.keys().collect::<Vec<_>>()
        );
        assert!(got.0 == expected.0, "{count} workers: shard bytes differ");
        assert_eq!(got.1, expected.1, "{count} workers: manifest differs");
        // A merge can be repeated.
        merge(&Location::local(&out)).unwrap();
    }
}

#[test]
fn a_failed_worker_is_rerun_alone_and_completes_the_set() {
    let dir = tempfile::tempdir().unwrap();
    let input = source(dir.path());
    let whole = dir.path().join("whole");
    shard(&config(&input, &whole, Workers::ONE), |_| {}).unwrap();
    let expected = contents(&whole);

    let out = dir.path().join("split");
    let worker = |index| config(&input, &out, Workers { count: 3, index });
    shard(&worker(0), |_| {}).unwrap();
    shard(&worker(2), |_| {}).unwrap();
    // Worker 1 is stopped half way: it removes what it wrote.
    let stop = Arc::new(AtomicBool::new(false));
    let interrupted = ShardConfig {
        stop: Some(stop.clone()),
        ..worker(1)
    };
    let error = shard(&interrupted, |p| {
        if p.done * 2 >= p.total {
            stop.store(true, Ordering::SeqCst);
        }
    })
    .unwrap_err();
    assert!(matches!(error, Error::Interrupted { .. }), "{error}");
    let error = merge(&Location::local(&out)).unwrap_err().to_string();
    assert!(error.contains("worker index 1 has not finished"), "{error}");

    // A worker killed outright leaves a temporary file and a stale shard of its own.
    let stale = out.join("data04-1.tfrec");
    std::fs::write(&stale, b"stale").unwrap();
    std::fs::write(out.join(".data01.tfrec.tmp"), b"partial").unwrap();
    let before: BTreeMap<_, _> = contents_raw(&out);
    shard(&worker(1), |_| {}).unwrap();
    assert!(!stale.exists(), "the rerun replaced its own stale shard");
    let after = contents_raw(&out);
    for (name, bytes) in &before {
        let number: u64 = name[4..6].parse().unwrap();
        if number % 3 != 1 {
            assert_eq!(
                after.get(name),
                Some(bytes),
                "{name}: other workers' files untouched"
            );
        }
    }
    merge(&Location::local(&out)).unwrap();
    let got = contents(&out);
    assert!(got.0 == expected.0, "shard bytes differ after the rerun");
    assert_eq!(got.1, expected.1);

    // A rerun after the merge removes manifest.json until the next merge.
    shard(&worker(1), |_| {}).unwrap();
    assert!(Manifest::read_folder(&out).unwrap().is_none());
    merge(&Location::local(&out)).unwrap();
    assert!(contents(&out).0 == expected.0);
}

fn contents_raw(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tfrec"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

#[test]
fn parts_that_do_not_make_a_whole_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let input = source(dir.path());
    let out = dir.path().join("split");
    let worker = |index| config(&input, &out, Workers { count: 2, index });
    shard(&worker(0), |_| {}).unwrap();

    // Another seed for worker 1: a different run.
    let other_seed = ShardConfig {
        seed: 6,
        ..worker(1)
    };
    shard(&other_seed, |_| {}).unwrap();
    let error = merge(&Location::local(&out)).unwrap_err().to_string();
    assert!(error.contains("come from different runs"), "{error}");
    assert!(error.contains("manifest.part-1-of-2.json"), "{error}");

    // The right worker 1, and a stale part of a 3-worker run.
    shard(&worker(1), |_| {}).unwrap();
    merge(&Location::local(&out)).unwrap();
    let stale = out.join("manifest.part-2-of-3.json");
    std::fs::copy(out.join("manifest.part-1-of-2.json"), &stale).unwrap();
    let error = merge(&Location::local(&out)).unwrap_err().to_string();
    assert!(
        error.contains("manifest.part-2-of-3.json: it holds worker 1 of 2's part"),
        "{error}"
    );
    let mut part: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&stale).unwrap()).unwrap();
    part["worker_index"] = 2.into();
    part["num_workers"] = 3.into();
    std::fs::write(&stale, serde_json::to_vec(&part).unwrap()).unwrap();
    let error = merge(&Location::local(&out)).unwrap_err().to_string();
    assert!(error.contains("different numbers of workers"), "{error}");
    std::fs::remove_file(&stale).unwrap();

    // Parts whose counts are impossible, or huge: refused by name, nothing sized by them.
    let genuine = std::fs::read(out.join("manifest.part-1-of-2.json")).unwrap();
    for (workers, index, numbers, file, needle) in [
        (
            0u64,
            0u64,
            None,
            "manifest.part-0-of-0.json",
            "is not below the number of workers 0",
        ),
        (
            2,
            1,
            Some(vec![1, 1]),
            "manifest.part-1-of-2.json",
            "shard number 1 listed twice",
        ),
        (
            2,
            1,
            Some(vec![1, 99]),
            "manifest.part-1-of-2.json",
            "shard number 99 of a run of 7 shards",
        ),
        (
            1 << 40,
            1,
            None,
            "manifest.part-1-of-1099511627776.json",
            "1099511627776 workers for 7 shards",
        ),
    ] {
        let mut part: serde_json::Value = serde_json::from_slice(&genuine).unwrap();
        part["num_workers"] = workers.into();
        part["worker_index"] = index.into();
        if let Some(numbers) = numbers {
            part["shard_numbers"] = numbers.into();
        }
        let path = out.join(file);
        std::fs::write(&path, serde_json::to_vec(&part).unwrap()).unwrap();
        let error = merge(&Location::local(&out)).unwrap_err().to_string();
        assert!(error.contains(file) && error.contains(needle), "{error}");
        std::fs::write(out.join("manifest.part-1-of-2.json"), &genuine).unwrap();
        if file != "manifest.part-1-of-2.json" {
            std::fs::remove_file(&path).unwrap();
        }
    }
    // A run of many workers with two parts present: the missing ones counted, a few named.
    for index in [0, 1] {
        let name = format!("manifest.part-{index}-of-2.json");
        let mut part: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(&name)).unwrap()).unwrap();
        part["num_workers"] = 6.into();
        std::fs::write(
            out.join(format!("manifest.part-{index}-of-6.json")),
            serde_json::to_vec(&part).unwrap(),
        )
        .unwrap();
    }
    let saved: Vec<(String, Vec<u8>)> = ["manifest.part-0-of-2.json", "manifest.part-1-of-2.json"]
        .iter()
        .map(|n| (n.to_string(), std::fs::read(out.join(n)).unwrap()))
        .collect();
    for (name, _) in &saved {
        std::fs::remove_file(out.join(name)).unwrap();
    }
    let error = merge(&Location::local(&out)).unwrap_err().to_string();
    assert!(
        error.contains("4 of 6 parts missing: worker index 2, 3, 4, 5 has not finished"),
        "{error}"
    );
    for index in [0, 1] {
        std::fs::remove_file(out.join(format!("manifest.part-{index}-of-6.json"))).unwrap();
    }
    for (name, bytes) in &saved {
        std::fs::write(out.join(name), bytes).unwrap();
    }
    merge(&Location::local(&out)).unwrap();

    // A shard no part lists.
    std::fs::write(out.join("data99-3.tfrec"), b"x").unwrap();
    let error = merge(&Location::local(&out)).unwrap_err().to_string();
    assert!(
        error.contains("data99-3.tfrec is in the folder but in no part"),
        "{error}"
    );
    std::fs::remove_file(out.join("data99-3.tfrec")).unwrap();

    // A shard cut short after its worker finished.
    let first = out.join("data00-6.tfrec");
    let bytes = std::fs::read(&first).unwrap();
    std::fs::write(&first, &bytes[..bytes.len() - 1]).unwrap();
    let error = merge(&Location::local(&out)).unwrap_err().to_string();
    assert!(error.contains("data00-6.tfrec has"), "{error}");

    // Settings out of range, and a one-machine set in the way.
    let error = shard(
        &config(&input, &out, Workers { count: 8, index: 0 }),
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("at most 7 workers"), "{error}");
    let whole = dir.path().join("whole");
    shard(&config(&input, &whole, Workers::ONE), |_| {}).unwrap();
    let error = shard(
        &config(&input, &whole, Workers { count: 2, index: 0 }),
        |_| {},
    )
    .unwrap_err();
    assert!(matches!(error, Error::OutputNotEmpty(_)), "{error}");
    let error = merge(&Location::local(&whole)).unwrap_err().to_string();
    assert!(error.contains("no part manifests"), "{error}");
}

#[test]
fn a_worker_whose_shards_are_all_empty_still_writes_its_part() {
    let dir = tempfile::tempdir().unwrap();
    let config_data = synthetic::GenData {
        n_train: 3,
        n_test: 0,
        sides: (24, 40),
        ..Default::default()
    };
    synthetic::generate(dir.path(), &config_data).unwrap();
    let input = dir.path().join("train");
    let out = dir.path().join("split");
    for index in 0..4 {
        let config = ShardConfig {
            shards: 4,
            ..config(&input, &out, Workers { count: 4, index })
        };
        let part = shard(&config, |_| {}).unwrap();
        assert_eq!(part.records, u64::from(index < 3), "worker {index}");
    }
    assert_eq!(merge(&Location::local(&out)).unwrap().records, 3);
}
