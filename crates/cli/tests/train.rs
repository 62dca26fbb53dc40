//! `shardfeed train` on a tiny generated set: epochs run, metrics and the model are saved.

use std::process::Command;

use shardfeed::shard::{ShardConfig, shard};
use shardfeed::synthetic::{GenData, generate};

#[test]
fn training_writes_a_line_per_epoch_metrics_and_the_model() {
    let dir = tempfile::tempdir().unwrap();
    generate(
        dir.path(),
        &GenData {
            n_train: 64,
            n_test: 0,
            seed: 4,
            sides: (40, 60),
            ..GenData::default()
        },
    )
    .unwrap();
    let shards = dir.path().join("shards");
    let config = ShardConfig {
        input: dir.path().join("train"),
        out: shards.clone(),
        shards: 8,
        size: 32,
        ..ShardConfig::default()
    };
    shard(&config, |_| {}).unwrap();
    let out = dir.path().join("run");
    let output = Command::new(env!("CARGO_BIN_EXE_shardfeed"))
        .arg("train")
        .arg(&shards)
        .args(["--epochs", "2", "--batch", "8", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("Epoch 1/2 - ") && stdout.contains("Epoch 2/2 - "),
        "{stdout}"
    );
    assert!(stdout.contains(" - val_accuracy: "), "{stdout}");
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(out.join("model.bpk").exists());
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["classes"], serde_json::json!(["cat", "dog"]));
    assert_eq!(run["image_size"], 32);
    assert_eq!(run["epochs_done"], 2);
    assert_eq!(
        run["validation_files"].as_array().unwrap().len(),
        1,
        "floor(8 × 0.19) = 1 file"
    );
}
