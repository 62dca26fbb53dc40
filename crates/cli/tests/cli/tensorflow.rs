//! TensorFlow reads our shards: `../shared/baseline/tf/verify_shards.py` (the tutorial's
//! reader: CRCs, parse, decode, 160×160×3 shape, classes, names vs counts, stray bytes) on a
//! `shardfeed shard` output, for 1 and 2 jobs, and the class counts match our manifest.
//!
//! Needs `SHARDFEED_TF_PYTHON` (set by `cargo xtask ci`); ignored in a plain `cargo test`.

use shardfeed_dataset::folder::Location;
use std::path::PathBuf;
use std::process::Command;

use crate::generated::generated_shards;
use shardfeed_dataset::folder::Resize;
use shardfeed_dataset::synthetic::{GenData, generate};
use shardfeed_dataset::{ShardConfig, shard};
use shardfeed_input_pipeline::Parallelism;

#[test]
#[ignore = "needs TensorFlow: run by `cargo xtask ci`, which sets SHARDFEED_TF_PYTHON"]
fn tensorflow_reads_our_shards() {
    let python = crate::common::tensorflow_python();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/baseline/tf/verify_shards.py");
    assert!(
        script.exists(),
        "{} is needed for this check",
        script.display()
    );
    let dir = tempfile::tempdir().unwrap();
    generate(
        dir.path(),
        &GenData {
            n_train: 60,
            n_test: 0,
            ..GenData::default()
        },
    )
    .unwrap();
    for jobs in [1, 2] {
        let out = dir.path().join(format!("shards-{jobs}"));
        let config = ShardConfig {
            input: Location::local(dir.path().join("train")),
            out: Location::local(out.clone()),
            shards: 4,
            prefix: "cat_dog".into(),
            jobs: Parallelism::Fixed(jobs),
            ..ShardConfig::default()
        };
        let manifest = shard(&config, |_| {}).unwrap();
        let summary = dir.path().join(format!("summary-{jobs}.json"));
        let output = Command::new(&python)
            .arg(&script)
            .arg(&out)
            .args(["--classes", "cat,dog", "--target-size", "160", "--json"])
            .arg(&summary)
            .env("TF_CPP_MIN_LOG_LEVEL", "3")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "verify_shards.py failed:\n{stdout}\n{stderr}"
        );
        println!("jobs {jobs}: {}", stdout.lines().last().unwrap_or_default());
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
        assert_eq!(summary["records"], 60);
        assert_eq!(summary["errors"], 0);
        for (index, class) in manifest.classes.iter().enumerate() {
            assert_eq!(
                summary["per_class"][class].as_u64(),
                Some(manifest.per_class[index]),
                "{class}"
            );
        }
    }
}

/// README's Python example (`scripts/read_shards_example.py`, which `cargo xtask tidy` keeps
/// identical to the README block) reads a `shardfeed shard` folder.
#[test]
#[ignore = "needs TensorFlow: run by `cargo xtask ci`, which sets SHARDFEED_TF_PYTHON"]
fn tensorflow_runs_the_readme_python_example_on_our_shards() {
    let python = crate::common::tensorflow_python();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/read_shards_example.py");
    let dir = tempfile::tempdir().unwrap();
    let data = GenData {
        n_train: 40,
        n_test: 0,
        ..GenData::default()
    };
    let config = ShardConfig {
        shards: 4,
        ..ShardConfig::default()
    };
    generated_shards(dir.path(), &data, config);
    let stdout = tensorflow_stdout(
        Command::new(&python).arg(&script).current_dir(dir.path()),
        "the README example",
    );
    assert!(stdout.starts_with("(32, 160, 160, 3) ["), "{stdout}");
    assert_eq!(
        stdout.matches("'cat'").count() + stdout.matches("'dog'").count(),
        4,
        "{stdout}"
    );
}

/// TensorFlow parses `--resize fit` and `--resize keep` shards: every image decodes to the
/// `height` × `width` the record states, and the classes match our manifest.
#[test]
#[ignore = "needs TensorFlow: run by `cargo xtask ci`, which sets SHARDFEED_TF_PYTHON"]
fn tensorflow_reads_fit_and_keep_shards() {
    let python = crate::common::tensorflow_python();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    for (resize, max_side) in [(Resize::Keep, 512), (Resize::Fit, 40)] {
        let out = dir.path().join(resize.to_string());
        let config = ShardConfig {
            input: Location::local(root.join("fixtures/jpeg-kinds")),
            out: Location::local(out.clone()),
            shards: 3,
            resize,
            max_side,
            strict: true,
            ..ShardConfig::default()
        };
        let manifest = shard(&config, |_| {}).unwrap();
        let stdout = tensorflow_stdout(
            Command::new(&python)
                .arg(root.join("scripts/tf_read_sized_shards.py"))
                .arg(&out),
            &resize.to_string(),
        );
        let summary: serde_json::Value =
            serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        println!("{resize}: {summary}");
        assert_eq!(summary["records"], 12);
        assert_eq!(summary["per_class"], serde_json::json!({"0": 6, "1": 6}));
        let sizes = manifest.sizes.unwrap();
        let widest = summary["sizes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s[1].as_u64().unwrap())
            .max()
            .unwrap();
        assert_eq!(widest, u64::from(sizes.max_width));
    }
}

/// Runs a TensorFlow script (its logging quiet); its stdout, once it succeeded (else the
/// test fails naming `what`, with the script's stdout and stderr).
fn tensorflow_stdout(command: &mut Command, what: &str) -> String {
    let output = command.env("TF_CPP_MIN_LOG_LEVEL", "3").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
