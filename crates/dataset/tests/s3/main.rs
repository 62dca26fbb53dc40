//! Shard folders on a real S3 API server: `moto_server` (PyPI `moto[server]`) started on
//! 127.0.0.1 with a free port, behind a fault-injecting proxy on loopback that answers 503s
//! and cuts connections (both ways) at random points. Writing (multipart), reading (ranged,
//! read-ahead, retried from where a read broke), split runs and merge, failures.
//!
//! `SHARDFEED_MOTO_SERVER` names the `moto_server` executable (`cargo xtask ci` installs it
//! in `target/s3-venv`); without it the test says loudly that it was skipped, and fails
//! under CI (`CI` set) instead.

mod server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use sha2::{Digest, Sha256};
use shardfeed_dataset::folder::Location;
use shardfeed_dataset::folder::ShardFolder;
use shardfeed_dataset::inspect::{IndexStatus, inspect_file};
use shardfeed_dataset::remote::traffic;
use shardfeed_dataset::stream::{
    RecordRules, StreamConfig, decoded_pipeline, open_shards, stream_in, tutorial_plan,
};
use shardfeed_dataset::workers::{Workers, merge};
use shardfeed_dataset::{Error, Manifest, ShardConfig, shard, synthetic};
use shardfeed_input_pipeline::{Parallelism, Repeat};
use shardfeed_record_format::{Compression, ReaderOptions};

/// The traffic and chunk counters are the process's: the tests run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn source(dir: &Path, n: usize) -> PathBuf {
    let config = synthetic::GenData {
        n_train: n,
        n_test: 0,
        sides: (40, 90),
        ..Default::default()
    };
    synthetic::generate(dir, &config).unwrap();
    dir.join("train")
}

/// A test's path (a local folder, or an `s3://` URL) as the CLI would parse it.
fn at(path: &Path) -> Location {
    Location::parse(path.as_os_str()).unwrap()
}

/// The shard files of a folder (local or remote), by name.
fn shards_of(folder: &Path) -> Vec<PathBuf> {
    ShardFolder::open(&at(folder)).unwrap().shards()
}

fn config(input: &Path, out: &Path) -> ShardConfig {
    ShardConfig {
        input: at(input),
        out: at(out),
        shards: 5,
        size: 48,
        seed: 9,
        jobs: Parallelism::Fixed(2),
        ..ShardConfig::default()
    }
}

/// Every shard file and index of a folder (local or remote), by name.
fn contents(folder: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for shard in shards_of(folder) {
        let name = shard.file_name().unwrap().to_string_lossy().into_owned();
        let index = PathBuf::from(format!("{}.idx", shard.display()));
        files.insert(name.clone(), read(&shard));
        files.insert(format!("{name}.idx"), read(&index));
    }
    files
}

fn read(path: &Path) -> Vec<u8> {
    if at(path).is_remote() {
        shardfeed_dataset::remote::read_if_exists(path, u64::MAX)
            .unwrap()
            .expect("the object exists")
    } else {
        std::fs::read(path).unwrap()
    }
}

/// One deterministic epoch of the training order, decoded: (record count, SHA-256 of every
/// label and pixel in order).
fn epoch_digest(folder: &Path) -> (u64, String) {
    let source = open_shards(&at(folder), Compression::None, false).unwrap();
    let rules = RecordRules::of_source(&source).unwrap();
    let pipeline = decoded_pipeline(source, rules, |plan| {
        tutorial_plan(plan, 3, Repeat::Epochs(1)).shuffle(64)
    })
    .parallelism(Parallelism::Fixed(2))
    .deterministic(true);
    let mut hash = Sha256::new();
    let mut count = 0;
    for item in pipeline.iter().items() {
        let decoded = item.unwrap();
        hash.update(decoded.class.to_le_bytes());
        hash.update(&decoded.image.pixels);
        count += 1;
    }
    (count, hex::encode(hash.finalize()))
}

#[test]
fn shards_written_to_and_read_from_s3_survive_faults_byte_for_byte() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(s3) = server::S3::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let input = source(dir.path(), 80);
    let local = dir.path().join("local");
    let manifest = shard(&config(&input, &local), |_| {}).unwrap();
    let expected = contents(&local);
    let clean_epoch = epoch_digest(&local);
    assert_eq!(clean_epoch.0, 80);

    // Written to S3 (multipart, then the .idx, then manifest.json): the same bytes.
    s3.bucket("clean");
    let remote = PathBuf::from("s3://clean/shards");
    let written = shard(&config(&input, &remote), |_| {}).unwrap();
    assert_eq!(written.records, manifest.records);
    assert!(
        contents(&remote) == expected,
        "S3 shards differ from the local run's"
    );
    let back = Manifest::read_folder(&remote)
        .unwrap()
        .expect("manifest.json on S3");
    assert_eq!(back.shards, manifest.shards);
    assert!(traffic().uploads.load(Ordering::Relaxed) >= 5);

    // One listing and one manifest GET per command (and a GET of each shard's .idx; no
    // HEAD: the sizes come from the listing): `stream` as the CLI runs it (warnings,
    // compression, the stream), and training's data side.
    let requests = || {
        let t = traffic();
        [&t.listings, &t.gets, &t.heads].map(|c| c.load(Ordering::Relaxed))
    };
    let before = requests();
    let folder = ShardFolder::open(&at(&remote)).unwrap();
    assert!(folder.warnings().is_empty());
    let compression = folder.compression(None).unwrap();
    let streamed = stream_in(
        &folder,
        &StreamConfig {
            shards: at(&remote),
            epochs: 1,
            batch: 8,
            compression,
            jobs: Parallelism::Fixed(2),
            ..StreamConfig::default()
        },
    )
    .unwrap();
    assert_eq!(streamed.records, 80);
    let after = requests();
    let delta = |a: [u64; 3], b: [u64; 3]| [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
    assert_eq!(
        delta(before, after),
        [1, 1 + 5, 0],
        "stream: listings, GETs, HEADs"
    );
    let before = requests();
    shardfeed_dataset::run::TrainingData::open(&shardfeed_dataset::run::DataSettings {
        shards: at(&remote),
        batch: 8,
        validation_fraction: 0.4,
        jobs: Parallelism::Fixed(2),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        delta(before, requests()),
        [1, 1 + 5, 0],
        "train: listings, GETs, HEADs"
    );
    let before = requests();
    let resolved = shardfeed_dataset::folder::resolve(&[at(&remote)], false).unwrap();
    shardfeed_dataset::loader::Loader::open_resolved(
        &resolved,
        shardfeed_dataset::loader::LoaderConfig {
            batch_size: 8,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        delta(before, requests()),
        [1, 1 + 5, 0],
        "Loader: listings, GETs, HEADs"
    );

    // Read back: inspect (sequential), and an epoch of the training order (ranged reads of
    // 4 KiB chunks with read-ahead: SHARDFEED_READ_CHUNK_BYTES) with the same records.
    for shard in shards_of(&remote) {
        let report = inspect_file(&shard, ReaderOptions::default()).unwrap();
        assert!(
            report.error.is_none(),
            "{}: {:?}",
            shard.display(),
            report.error
        );
        assert!(
            matches!(report.index, IndexStatus::Matches),
            "{}: {:?}",
            shard.display(),
            report.index
        );
    }
    assert_eq!(epoch_digest(&remote), clean_epoch);

    // Faults on: 503s and connections cut mid-response and mid-upload, at random points.
    s3.faults(8);
    let retries = traffic().retries.load(Ordering::Relaxed);
    s3.bucket("faulty");
    let faulty = PathBuf::from("s3://faulty/shards");
    shard(&config(&input, &faulty), |_| {}).unwrap();
    for _ in 0..2 {
        assert_eq!(
            epoch_digest(&faulty),
            clean_epoch,
            "an epoch under faults differs"
        );
    }
    s3.faults(0);
    assert!(
        contents(&faulty) == expected,
        "shards uploaded under faults differ"
    );
    let injected = s3.injected();
    eprintln!("faults injected, object_store retrying: {injected}");
    assert!(injected >= 10, "only {injected} faults were injected");

    // The same with object_store's own retries off: every fault reaches our layer (uploads
    // aborted and redone, reads continued from the byte where they broke).
    // SAFETY: one test at a time (the server's lock); read when the next store opens.
    unsafe { std::env::set_var("SHARDFEED_STORAGE_RETRIES", "0") };
    s3.bucket("faulty-ours");
    let ours = PathBuf::from("s3://faulty-ours/shards");
    s3.faults(8);
    shard(&config(&input, &ours), |_| {}).unwrap();
    assert_eq!(
        epoch_digest(&ours),
        clean_epoch,
        "an epoch under faults differs (our retries)"
    );
    s3.faults(0);
    unsafe { std::env::remove_var("SHARDFEED_STORAGE_RETRIES") };
    assert!(
        contents(&ours) == expected,
        "shards uploaded under faults differ (our retries)"
    );
    let retried = traffic().retries.load(Ordering::Relaxed) - retries;
    eprintln!(
        "faults injected, ours retrying: {}; our retries: {retried}",
        s3.injected() - injected
    );
    assert!(retried > 0, "no fault reached our retries");

    // Training's data side on S3: the same split by files (2 of 5 for validation) and the
    // same validation records.
    let open = |shards: &Path| {
        shardfeed_dataset::run::TrainingData::open(&shardfeed_dataset::run::DataSettings {
            shards: at(shards),
            batch: 8,
            validation_fraction: 0.4,
            jobs: Parallelism::Fixed(2),
            ..Default::default()
        })
        .unwrap()
    };
    let (on_s3, on_disk) = (open(&remote), open(&local));
    let names = |files: &[PathBuf]| -> Vec<String> {
        files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(
        names(&on_s3.info.validation_files),
        names(&on_disk.info.validation_files)
    );
    assert_eq!(on_s3.info.train_records, on_disk.info.train_records);
    assert!(on_s3.info.validation_files[0].starts_with("s3://clean/shards"));
    let labels = |data: shardfeed_dataset::run::TrainingData| -> Vec<i64> {
        data.validation
            .iter()
            .items()
            .map(|d| d.unwrap().class)
            .collect()
    };
    assert_eq!(labels(on_s3), labels(on_disk));

    // A damaged object is reported with its URL and offset, as a local file.
    let victim = shards_of(&remote)[1].clone();
    let mut bytes = read(&victim);
    let offset = 300;
    bytes[offset] ^= 0x40;
    s3.put(
        "clean",
        &format!("shards/{}", victim.file_name().unwrap().to_string_lossy()),
        &bytes,
    );
    let report = inspect_file(&victim, ReaderOptions::default()).unwrap();
    let problem = report.error.expect("the flipped byte is found");
    assert!(
        problem.message.contains("s3://clean/shards/data01"),
        "{}",
        problem.message
    );
    assert!(problem.offset.is_some(), "{problem:?}");
}

#[test]
fn a_failed_or_split_run_on_s3() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(s3) = server::S3::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let input = source(dir.path(), 40);
    let local = dir.path().join("local");
    shard(&config(&input, &local), |_| {}).unwrap();
    let expected = contents(&local);

    // 2 and 3 workers into one S3 folder, then the merge: the one-machine bytes.
    for count in [2, 3] {
        let bucket = format!("split{count}");
        s3.bucket(&bucket);
        let out = PathBuf::from(format!("s3://{bucket}/shards"));
        for index in (0..count).rev() {
            let config = ShardConfig {
                workers: Workers { count, index },
                ..config(&input, &out)
            };
            shard(&config, |_| {}).unwrap();
        }
        assert!(Manifest::read_folder(&out).unwrap().is_none());
        merge(&at(&out)).unwrap();
        assert!(contents(&out) == expected, "{count} workers on S3 differ");
        assert_eq!(Manifest::read_folder(&out).unwrap().unwrap().records, 40);
    }

    // A worker killed on S3: its shard objects gone, its part never written; the rerun of
    // that index alone completes the set.
    let out = PathBuf::from("s3://split3/shards");
    for key in s3.list("split3") {
        let name = key.rsplit('/').next().unwrap();
        let owned =
            shardfeed_dataset::workers::shard_number_of(name, "data").is_some_and(|n| n % 3 == 1);
        if owned || name == "manifest.part-1-of-3.json" || name == "manifest.json" {
            let folder = shardfeed_dataset::remote::store("s3://split3/shards").unwrap();
            folder.delete(name).unwrap();
        }
    }
    assert!(
        merge(&at(&out))
            .unwrap_err()
            .to_string()
            .contains("worker index 1 has not finished")
    );
    let rerun = ShardConfig {
        workers: Workers { count: 3, index: 1 },
        ..config(&input, &out)
    };
    shard(&rerun, |_| {}).unwrap();
    merge(&at(&out)).unwrap();
    assert!(
        contents(&out) == expected,
        "the rerun on S3 did not complete the set"
    );

    // Sources in S3: the same shards as from the local folder; images listed and prepared
    // (predict's input) from there too.
    s3.bucket("sources");
    for entry in std::fs::read_dir(&input).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        s3.put(
            "sources",
            &format!("train/{name}"),
            &std::fs::read(&path).unwrap(),
        );
    }
    s3.bucket("fromsources");
    let from_s3 = ShardConfig {
        input: at(Path::new("s3://sources/train")),
        ..config(&input, Path::new("s3://fromsources/shards"))
    };
    let written = shard(&from_s3, |_| {}).unwrap();
    assert_eq!(written.source_count, 40);
    assert!(
        contents(Path::new("s3://fromsources/shards")) == expected,
        "shards from S3 sources differ"
    );
    let listed =
        shardfeed_dataset::images::list_images(&[at(Path::new("s3://sources/train"))]).unwrap();
    assert_eq!(listed.len(), 40);
    assert!(
        listed[0]
            .to_string_lossy()
            .starts_with("s3://sources/train/cat.0")
    );

    // A run that fails part way (strict, a bad file) removes every object it wrote.
    std::fs::write(input.join("cat.zzz.jpg"), b"not a jpeg").unwrap();
    s3.bucket("failed");
    let out = PathBuf::from("s3://failed/shards");
    let strict = ShardConfig {
        strict: true,
        ..config(&input, &out)
    };
    let error = shard(&strict, |_| {}).unwrap_err();
    assert!(matches!(error, Error::Unusable { .. }), "{error}");
    assert_eq!(
        s3.list("failed"),
        Vec::<String>::new(),
        "objects left by a failed run"
    );

    // A folder that is not empty is refused, as a local one.
    s3.put("failed", "shards/notes.txt", b"x");
    let error = shard(&config(&input, &out), |_| {}).unwrap_err();
    assert!(matches!(error, Error::OutputNotEmpty(_)), "{error}");
    assert!(error.to_string().contains("s3://failed/shards"), "{error}");
}

/// TensorFlow's reader (the tutorial's, `verify_shards.py`) on shards written to S3, then
/// downloaded.
#[test]
#[ignore = "needs TensorFlow: run by `cargo xtask ci`, which sets SHARDFEED_TF_PYTHON"]
fn tensorflow_reads_shards_written_to_s3() {
    let python = std::env::var_os("SHARDFEED_TF_PYTHON")
        .map(PathBuf::from)
        .expect("SHARDFEED_TF_PYTHON names a Python with TensorFlow");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(s3) = server::S3::start() else {
        return;
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/baseline/tf/verify_shards.py");
    assert!(script.exists(), "{} is needed", script.display());
    let dir = tempfile::tempdir().unwrap();
    let input = source(dir.path(), 40);
    s3.bucket("tensorflow");
    let out = PathBuf::from("s3://tensorflow/shards");
    let settings = ShardConfig {
        size: 160,
        prefix: "cat_dog".into(),
        ..config(&input, &out)
    };
    shard(&settings, |_| {}).unwrap();
    let downloaded = dir.path().join("downloaded");
    std::fs::create_dir_all(&downloaded).unwrap();
    for (name, bytes) in contents(&out) {
        std::fs::write(downloaded.join(name), bytes).unwrap();
    }
    std::fs::write(
        downloaded.join("manifest.json"),
        read(&out.join("manifest.json")),
    )
    .unwrap();
    let output = std::process::Command::new(&python)
        .arg(&script)
        .arg(&downloaded)
        .args(["--classes", "cat,dog", "--target-size", "160"])
        .env("TF_CPP_MIN_LOG_LEVEL", "3")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "verify_shards.py failed on the shards from S3:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&output.stdout));
}

/// An epoch over 64 shards on S3 (4 KiB range reads, read-ahead on): a chunk is dropped once
/// every byte of it was read, a shard's chunks once its end was, so nothing is held after the
/// epoch and read-ahead is never shut off by finished shards; the most held at once stays a
/// few chunks per open file.
#[test]
fn an_epoch_over_64_remote_shards_holds_no_chunk_after_it() {
    use shardfeed_dataset::loader::{Loader, LoaderConfig, Position};
    use shardfeed_dataset::remote::held_chunk_bytes;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(s3) = server::S3::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let input = source(dir.path(), 128);
    s3.bucket("flat");
    let remote = PathBuf::from("s3://flat/shards");
    let settings = ShardConfig {
        shards: 64,
        ..config(&input, &remote)
    };
    shard(&settings, |_| {}).unwrap();
    let files = shards_of(&remote);
    assert_eq!(files.len(), 64);
    // A whole-object read is capped: refused from the response's size, before its body.
    let manifest = remote.join("manifest.json");
    let capped = shardfeed_dataset::remote::read_if_exists(&manifest, 64).unwrap_err();
    assert!(
        capped.to_string().contains("over the limit of 64"),
        "{capped}"
    );
    let loader = Loader::open(
        &files,
        LoaderConfig {
            batch_size: 4,
            cache: false,
            jobs: Parallelism::Fixed(2),
            ..LoaderConfig::default()
        },
    )
    .unwrap();
    let (mut images, mut peak) = (0, 0);
    let mut epoch = loader.epoch(Position::default());
    while let Some(batch) = epoch.next_batch() {
        images += batch.unwrap().len();
        peak = peak.max(held_chunk_bytes().0);
    }
    drop(epoch);
    assert_eq!(images, 128);
    println!(
        "chunks held: at most {peak} bytes during the epoch, {:?} after",
        held_chunk_bytes()
    );
    assert_eq!(
        held_chunk_bytes(),
        (0, 0),
        "(held, prefetched) after the epoch"
    );
    // Interleave 16: at most 16 files open, each with the chunk read, the one before and
    // 2 ahead.
    assert!(peak <= 16 * 4 * 4096, "{peak} bytes held at once");

    // Another writer's lock object (a conditional put made it): refused, naming it and its
    // holder, nothing touched; once it is gone the run goes on.
    let store = shardfeed_dataset::remote::store("s3://flat/shards").unwrap();
    assert!(
        store
            .put_new(
                ".shardfeed.lock",
                b"held by process 7 on elsewhere".to_vec()
            )
            .unwrap()
    );
    assert!(
        !store
            .put_new(".shardfeed.lock", b"a second".to_vec())
            .unwrap()
    );
    let before = contents(&remote);
    let refused = shard(
        &ShardConfig {
            overwrite: true,
            ..config(&input, &remote)
        },
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains("s3://flat/shards/.shardfeed.lock: another shard run is writing there (held by process 7 on elsewhere)"),
        "{refused}"
    );
    assert_eq!(contents(&remote), before);
    store.delete(".shardfeed.lock").unwrap();

    // Overwritten with 3 shards: staged under a sub-prefix, copied into place once whole;
    // then only the new set is listed, and the staging objects are gone.
    let again = shard(
        &ShardConfig {
            shards: 3,
            overwrite: true,
            ..config(&input, &remote)
        },
        |_| {},
    )
    .unwrap();
    let mut names: Vec<String> = shardfeed_dataset::remote::list(&remote)
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    names.sort();
    let mut expected: Vec<String> = again
        .shards
        .iter()
        .flat_map(|s| [s.file.clone(), format!("{}.idx", s.file)])
        .chain(["manifest.json".to_owned()])
        .collect();
    expected.sort();
    assert_eq!(names, expected);
    assert_eq!(epoch_digest(&remote).0, 128);
}
