//! Records written by TensorFlow's image tools (`fixtures/tf-image-keys`: `image/encoded`,
//! `image/class/label`, varying sizes, TensorFlow's sharded names, no manifest) are
//! streamed, trained on and evaluated without flags, made into the square asked for.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::shardfeed_bin;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tf-image-keys")
}

fn run(args: &[&str], extra: &[&Path]) -> Output {
    let output = Command::new(shardfeed_bin())
        .args(args)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "shardfeed {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn tensorflow_written_records_are_streamed_trained_on_and_evaluated() {
    let streamed = run(
        &[
            "stream", "--epochs", "1", "--batch", "4", "--size", "32", "--json",
        ],
        &[&fixture()],
    );
    let report: serde_json::Value = serde_json::from_slice(&streamed.stdout).unwrap();
    assert_eq!(
        (report["records"].as_u64(), report["files"].as_u64()),
        (Some(24), Some(2))
    );
    let said = String::from_utf8_lossy(&streamed.stderr);
    assert_eq!(
        said.matches("note: records of varying size").count(),
        1,
        "{said}"
    );
    assert!(said.contains("32 × 32"), "{said}");

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let trained = run(
        &[
            "train",
            "--epochs",
            "1",
            "--batch",
            "4",
            "--size",
            "32",
            "--val-split",
            "0.5",
        ],
        &[&fixture(), Path::new("--out"), &out],
    );
    let said = String::from_utf8_lossy(&trained.stdout);
    assert!(said.contains("training on 12 records"), "{said}");
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(info["classes"], serde_json::json!(["0", "1"]));
    assert_eq!(info["image_size"], 32);

    let evaluated = run(&["evaluate", "--json", "--model"], &[&out]);
    let evaluation: serde_json::Value = serde_json::from_slice(&evaluated.stdout).unwrap();
    let observed: u64 = evaluation["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap())
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(observed, 12, "every validation record scored: {evaluation}");
}

#[test]
fn inspect_counts_tensorflows_label_key() {
    let output = run(
        &["inspect", "--json"],
        &[&fixture().join("train-00000-of-00002")],
    );
    let reports: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(reports[0]["label_key"], "image/class/label");
    assert_eq!(
        reports[0]["class_counts"],
        serde_json::json!({"0": 6, "1": 6})
    );
}

#[test]
fn inspect_counts_the_label_key_asked_for() {
    let output = run(
        &["inspect", "--json", "--label-key", "image/height"],
        &[&fixture().join("train-00001-of-00002")],
    );
    let reports: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(reports[0]["label_key"], "image/height");
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture().join("expected.json")).unwrap()).unwrap();
    let heights = expected["files"]["train-00001-of-00002"]
        .as_array()
        .unwrap();
    let counted: u64 = reports[0]["class_counts"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(counted, heights.len() as u64);
    let first = heights[0]["height"].as_u64().unwrap().to_string();
    assert!(reports[0]["class_counts"][first.as_str()].as_u64().unwrap() >= 1);
}

/// Records under other names: trained on with `--image-key`/`--label-key`, which `run.json`
/// keeps, so `evaluate` and `--resume` need not name them again.
#[test]
fn named_keys_are_kept_by_the_run_for_evaluate_and_resume() {
    use shardfeed_record_format::{Compression, Example, Feature, FileWriter};
    let dir = tempfile::tempdir().unwrap();
    let shards = dir.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    let mut jpegs: Vec<PathBuf> = std::fs::read_dir(fixture().join("../jpeg-kinds"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    jpegs.sort();
    for (n, part) in jpegs.chunks(4).enumerate() {
        let mut writer =
            FileWriter::create(shards.join(format!("other-{n}.tfrec")), Compression::None).unwrap();
        for (i, path) in part.iter().enumerate() {
            let example = Example::new()
                .with("jpeg", Feature::bytes([std::fs::read(path).unwrap()]))
                .with("y", Feature::int64s([(i % 2) as i64]));
            writer.write_record(&example.to_bytes()).unwrap();
        }
        writer.commit().unwrap();
    }
    let out = dir.path().join("run");
    run(
        &[
            "train",
            "--epochs",
            "1",
            "--batch",
            "2",
            "--size",
            "24",
            "--val-split",
            "0.34",
        ],
        &[
            &shards,
            Path::new("--image-key"),
            Path::new("jpeg"),
            Path::new("--label-key"),
            Path::new("y"),
            Path::new("--out"),
            &out,
        ],
    );
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(
        (info["image_key"].as_str(), info["label_key"].as_str()),
        (Some("jpeg"), Some("y"))
    );
    let evaluated = run(&["evaluate", "--json", "--model"], &[&out]);
    let evaluation: serde_json::Value = serde_json::from_slice(&evaluated.stdout).unwrap();
    assert_eq!(evaluation["files"].as_array().unwrap().len(), 1);
    run(
        &["train", "--epochs", "2", "--resume"],
        &[&shards, Path::new("--out"), &out],
    );
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(info["epochs_done"], 2);
}
