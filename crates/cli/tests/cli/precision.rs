//! `--precision bf16`: where the CPU has AVX512-BF16 a run trains in it, records it in
//! `run.json` and `model.json`, keeps it on `--resume` and is evaluated in either precision;
//! elsewhere the flag is a usage error (exit 2) naming the CPU flag it needs.

use std::path::Path;

use crate::common::{shardfeed, text};
use crate::generated::tiny_shards;

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn has_bf16() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| info.contains(" avx512_bf16"))
}

#[test]
fn bf16_trains_records_resumes_and_evaluates_or_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let shards = tiny_shards(dir.path(), 64);
    let out = dir.path().join("run");
    let (shards, out_s) = (shards.to_str().unwrap(), out.to_str().unwrap());
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train", shards, "--batch", "8", "--jobs", "2", "--out", out_s,
        ];
        args.extend_from_slice(extra);
        shardfeed(&args)
    };
    if !has_bf16() {
        eprintln!("NOT TESTED: bf16 training (this CPU lacks avx512_bf16); checking the refusal");
        let refused = train(&["--epochs", "1", "--precision", "bf16"]);
        assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
        assert!(text(&refused).contains("avx512_bf16"), "{}", text(&refused));
        return;
    }
    let first = train(&["--epochs", "1", "--precision", "bf16"]);
    assert!(first.status.success(), "{}", text(&first));
    assert_eq!(json(&out.join("run.json"))["precision"], "bf16");
    assert_eq!(json(&out.join("model.json"))["precision"], "bf16");
    // Resumed without the flag: the run's own precision goes on.
    let resumed = train(&["--epochs", "2", "--resume"]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert_eq!(json(&out.join("model.json"))["precision"], "bf16");
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 3, "{metrics}");
    for precision in ["bf16", "f32"] {
        let evaluated = shardfeed(&["evaluate", "--model", out_s, "--precision", precision]);
        assert!(
            evaluated.status.success(),
            "{precision}: {}",
            text(&evaluated)
        );
        assert!(
            text(&evaluated).contains("accuracy"),
            "{}",
            text(&evaluated)
        );
    }
    // An f32 run records f32 in its card and nothing in run.json.
    let plain = dir.path().join("plain");
    let f32_run = shardfeed(&[
        "train",
        shards,
        "--batch",
        "8",
        "--epochs",
        "1",
        "--out",
        plain.to_str().unwrap(),
    ]);
    assert!(f32_run.status.success(), "{}", text(&f32_run));
    assert_eq!(json(&plain.join("model.json"))["precision"], "f32");
    assert!(json(&plain.join("run.json")).get("precision").is_none());
    // Not a precision at all: a usage error.
    let wrong = train(&["--precision", "fp8"]);
    assert_eq!(wrong.status.code(), Some(2), "{}", text(&wrong));
}
