//! Files we write, read back by TensorFlow itself (`tf.data.TFRecordDataset` +
//! `tf.io.parse_single_example`), every value compared.
//!
//! Needs a Python with `tensorflow` in `SHARDFEED_TF_PYTHON`; `cargo xtask ci` finds or
//! reports it (`.ci/run` installs it into `.venv`). Ignored in a plain `cargo test`.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};
use shardfeed_record_format::{Compression, Example, FileWriter, ImageExample, Kind};

use crate::support::{SplitMix, varied_example};

fn feature_json(kind: Option<&Kind>) -> Value {
    match kind {
        Some(Kind::BytesList(list)) => {
            json!({"kind": "bytes", "hex": list.value.iter().map(hex::encode).collect::<Vec<_>>()})
        }
        Some(Kind::FloatList(list)) => {
            json!({"kind": "float", "bits": list.value.iter().map(|f| f.to_bits()).collect::<Vec<_>>()})
        }
        Some(Kind::Int64List(list)) => json!({"kind": "int64", "values": list.value}),
        None => json!({"kind": "none"}),
    }
}

#[test]
#[ignore = "needs TensorFlow: run by `cargo xtask ci`, which sets SHARDFEED_TF_PYTHON"]
fn tensorflow_reads_every_value_we_write() {
    let python = std::env::var_os("SHARDFEED_TF_PYTHON").map(PathBuf::from).expect(
        "SHARDFEED_TF_PYTHON must name a Python with tensorflow installed (cargo xtask ci sets it)",
    );
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut rng = SplitMix(2024);
    for compression in Compression::ALL {
        // A general file with every feature kind, and a file of the tutorial's records.
        let general: Vec<Example> = (0..40).map(|i| varied_example(&mut rng, i)).collect();
        let images: Vec<Example> = (0..25)
            .map(|i| {
                ImageExample {
                    image: rng.bytes(100 + i * 13),
                    class: (i % 2) as i64,
                    size: None,
                }
                .to_example()
            })
            .collect();
        for (kind, examples) in [("general", general), ("image", images)] {
            let path = dir
                .path()
                .join(format!("{kind}_{compression}00-{}.tfrec", examples.len()));
            let mut writer = FileWriter::create(&path, compression).unwrap();
            for example in &examples {
                writer.write_record(&example.to_bytes()).unwrap();
            }
            writer.commit().unwrap();
            let records: Vec<Value> = examples
                .iter()
                .map(|e| {
                    e.feature_map()
                        .map(|(name, f)| (name.to_owned(), feature_json(f.kind.as_ref())))
                        .collect()
                })
                .collect();
            files.push(json!({
                "path": path,
                "compression": compression.tensorflow_name(),
                "tutorial_spec": kind == "image",
                "records": records,
            }));
        }
    }
    let expected = dir.path().join("expected.json");
    std::fs::write(
        &expected,
        serde_json::to_vec(&json!({ "files": files })).unwrap(),
    )
    .unwrap();

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/tf_read_check.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(&expected)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "TensorFlow disagreed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("tensorflow read 6 files"), "{stdout}");
}
