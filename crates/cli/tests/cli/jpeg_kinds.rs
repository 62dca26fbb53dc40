//! SPEC §6's matrix on `fixtures/jpeg-kinds` (one small JPEG per kind SPEC §2 accepts:
//! baseline 4:2:0 / 4:2:2 / 4:4:4, progressive, grayscale, Adobe CMYK, restart markers,
//! EXIF + ICC + XMP, smaller than the target, extreme aspect ratios): shard → inspect → stream
//! for each compression and for 1 and 2 jobs, and — where TensorFlow is installed — TensorFlow
//! reads every output.

use shardfeed_dataset::folder::Location;
use std::path::{Path, PathBuf};
use std::process::Command;

use shardfeed_dataset::stream::{StreamConfig, stream};
use shardfeed_dataset::{ShardConfig, shard};
use shardfeed_input_pipeline::Parallelism;
use shardfeed_record_format::Compression;

const SIZE: u32 = 64;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/jpeg-kinds")
}

/// Shards the fixtures with `compression` and `jobs`; every one of them must be accepted.
fn shard_kinds(out: &Path, compression: Compression, jobs: usize) {
    let config = ShardConfig {
        input: Location::local(fixtures()),
        out: Location::local(out.to_owned()),
        shards: 3,
        size: SIZE,
        compression,
        strict: true,
        jobs: Parallelism::Fixed(jobs),
        ..ShardConfig::default()
    };
    let manifest = shard(&config, |_| {}).unwrap();
    assert_eq!(manifest.records, 12, "every kind is accepted");
    assert!(manifest.skipped.is_empty(), "{:?}", manifest.skipped);
    assert_eq!(manifest.per_class, vec![6, 6]);
}

fn shard_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tfrec"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

const COMPRESSIONS: [Compression; 3] = [Compression::None, Compression::Gzip, Compression::Zlib];

#[test]
fn every_jpeg_kind_shards_inspects_and_streams_for_each_compression_and_job_count() {
    let dir = tempfile::tempdir().unwrap();
    for compression in COMPRESSIONS {
        let mut outputs = Vec::new();
        for jobs in [1, 2] {
            let out = dir.path().join(format!("{compression}-{jobs}"));
            shard_kinds(&out, compression, jobs);

            let output = Command::new(crate::common::shardfeed_bin())
                .args([
                    "inspect",
                    "--json",
                    "--compression",
                    &compression.to_string(),
                ])
                .arg(&out)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "{stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let files: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
            let records: u64 = files.iter().map(|f| f["records"].as_u64().unwrap()).sum();
            assert_eq!(records, 12, "{stdout}");
            for file in &files {
                assert_eq!(file["verified"], true, "{file}");
                assert!(file["error"].is_null(), "{file}");
            }

            let report = stream(&StreamConfig {
                shards: Location::local(out.clone()),
                epochs: 1,
                batch: 4,
                compression,
                deterministic: true,
                jobs: Parallelism::Fixed(jobs),
                ..StreamConfig::default()
            })
            .unwrap();
            assert_eq!(report.records, 12);
            assert_eq!(report.epochs[0].images, 12, "{compression} jobs {jobs}");
            outputs.push(shard_bytes(&out));
        }
        assert_eq!(outputs[0], outputs[1], "{compression}: jobs 1 and 2 differ");
        assert_eq!(outputs[0].len(), 3);
    }
}

#[test]
#[ignore = "needs TensorFlow: run by `cargo xtask ci`, which sets SHARDFEED_TF_PYTHON"]
fn tensorflow_reads_every_jpeg_kind_for_each_compression_and_job_count() {
    let python = crate::common::tensorflow_python();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let verify = root.join("../shared/baseline/tf/verify_shards.py");
    let reader = root.join("scripts/tf_read_shards.py");
    let dir = tempfile::tempdir().unwrap();
    for compression in COMPRESSIONS {
        for jobs in [1, 2] {
            let out = dir.path().join(format!("{compression}-{jobs}"));
            shard_kinds(&out, compression, jobs);
            let output = Command::new(&python)
                .arg(&reader)
                .arg(&out)
                .args(["--compression", &compression.to_string()])
                .args(["--target-size", &SIZE.to_string(), "--classes", "cat,dog"])
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "{compression} jobs {jobs}: {stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let summary: serde_json::Value =
                serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
            assert_eq!(summary["records"], 12, "{stdout}");
            assert_eq!(summary["per_class"]["cat"], 6, "{stdout}");
            println!("{compression} jobs {jobs}: TensorFlow read {stdout}");
            if compression == Compression::None && verify.exists() {
                // The shared checker's fuller checks (names vs counts, stray bytes, …).
                let output = Command::new(&python)
                    .arg(&verify)
                    .arg(&out)
                    .args(["--classes", "cat,dog", "--target-size", &SIZE.to_string()])
                    .env("TF_CPP_MIN_LOG_LEVEL", "3")
                    .output()
                    .unwrap();
                assert!(
                    output.status.success(),
                    "verify_shards.py: {}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
    }
}
