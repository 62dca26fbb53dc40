//! `shard --resize crop|fit|keep` on `fixtures/jpeg-kinds`: the default (`crop`) writes the
//! bytes shardfeed wrote before the modes existed; `keep` stores every source's bytes as they
//! are; `fit` keeps each aspect ratio under `--max-side`; both state each record's size and
//! the range in `manifest.json`; `--verify headers` lets a source damaged past its header
//! through where `decode` skips it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use shardfeed_image_prep::{Decoder, fitted_size};
use shardfeed_record_format::{ImageExample, ReaderOptions, RecordReader};

use crate::common::shardfeed_bin;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn shard(input: &Path, out: &Path, flags: &[&str]) -> serde_json::Value {
    let output = Command::new(shardfeed_bin())
        .arg("shard")
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(["--shards", "4", "--quiet"])
        .args(flags)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap()
}

/// Every record of the shards in `dir`.
fn records(dir: &Path) -> Vec<ImageExample> {
    shardfeed_dataset::find_shards(dir)
        .unwrap()
        .iter()
        .flat_map(|f| RecordReader::open(f, ReaderOptions::default()).unwrap())
        .map(|r| ImageExample::decode(&r.unwrap()).unwrap())
        .collect()
}

/// The fixtures' JPEGs: bytes and (width, height) from their headers.
fn sources() -> Vec<(Vec<u8>, (u32, u32))> {
    let mut decoder = Decoder::new().unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures().join("jpeg-kinds"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(f).unwrap();
            let info = decoder.probe(&bytes).unwrap();
            (bytes, (info.width, info.height))
        })
        .collect()
}

fn size_range(sizes: impl Iterator<Item = (u32, u32)> + Clone) -> serde_json::Value {
    let (w, h) = (sizes.clone().map(|s| s.0), sizes.clone().map(|s| s.1));
    serde_json::json!({
        "min_width": w.clone().min().unwrap(),
        "max_width": w.max().unwrap(),
        "min_height": h.clone().min().unwrap(),
        "max_height": h.max().unwrap(),
        "max_pixels": sizes.map(|(w, h)| u64::from(w) * u64::from(h)).max().unwrap(),
    })
}

#[test]
fn crop_writes_the_bytes_written_before_the_modes_existed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("crop");
    let manifest = shard(&fixtures().join("jpeg-kinds"), &out, &["--size", "64"]);
    assert_eq!(manifest["resize"], "crop");
    assert!(manifest.get("sizes").is_none() && manifest.get("max_side").is_none());
    let want: BTreeMap<String, String> =
        std::fs::read_to_string(fixtures().join("crop-digest/jpeg-kinds-64px-4-shards.sha256"))
            .unwrap()
            .lines()
            .map(|l| {
                let (digest, name) = l.split_once("  ").unwrap();
                (name.to_owned(), digest.to_owned())
            })
            .collect();
    assert_eq!(want.len(), 8);
    for (name, digest) in &want {
        let bytes = std::fs::read(out.join(name)).unwrap();
        assert_eq!(&hex::encode(Sha256::digest(&bytes)), digest, "{name}");
    }
    assert!(
        records(&out).iter().all(|r| r.size.is_none()),
        "crop adds no keys"
    );
}

#[test]
fn keep_stores_each_source_unchanged_with_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("keep");
    let manifest = shard(&fixtures().join("jpeg-kinds"), &out, &["--resize", "keep"]);
    let sources = sources();
    let mut records = records(&out);
    assert_eq!(records.len(), sources.len());
    records.sort_by(|a, b| a.image.cmp(&b.image));
    let mut want = sources.clone();
    want.sort();
    for (record, (bytes, size)) in records.iter().zip(&want) {
        assert!(record.image == *bytes, "a record's bytes are its source's");
        assert_eq!(record.size, Some(*size));
    }
    assert_eq!(manifest["resize"], "keep");
    assert_eq!(manifest["target_size"], 0);
    assert_eq!(manifest["sizes"], size_range(sources.iter().map(|s| s.1)));
}

#[test]
fn fit_keeps_each_aspect_ratio_under_the_longest_side() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fit");
    let manifest = shard(
        &fixtures().join("jpeg-kinds"),
        &out,
        &["--resize", "fit", "--max-side", "40"],
    );
    let mut decoder = Decoder::new().unwrap();
    let mut want: Vec<(u32, u32)> = sources()
        .iter()
        .map(|(_, (w, h))| fitted_size(*w, *h, 40))
        .collect();
    let mut got: Vec<(u32, u32)> = records(&out)
        .iter()
        .map(|r| {
            let info = decoder.probe(&r.image).unwrap();
            assert_eq!(
                r.size,
                Some((info.width, info.height)),
                "the stated size is the image's"
            );
            (info.width, info.height)
        })
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    assert!(got.iter().all(|&(w, h)| w.max(h) <= 40));
    assert!(got.contains(&(40, 1)), "2000×50 → 40×1");
    assert!(got.contains(&(40, 30)), "48×36 → 40×30");
    assert_eq!(manifest["resize"], "fit");
    assert_eq!(manifest["max_side"], 40);
    assert_eq!(manifest["sizes"], size_range(want.iter().copied()));
}

#[test]
fn keep_checks_sources_whole_unless_asked_for_headers_only() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let good = std::fs::read(fixtures().join("jpeg-kinds/cat.baseline-420.jpg")).unwrap();
    std::fs::write(input.join("cat.good.jpg"), &good).unwrap();
    std::fs::write(input.join("dog.good.jpg"), &good).unwrap();
    // The header and half of the scan: the header parses, a decode fails.
    std::fs::write(input.join("dog.cut.jpg"), &good[..good.len() / 2]).unwrap();
    let decoded = shard(&input, &dir.path().join("decode"), &["--resize", "keep"]);
    assert_eq!(decoded["records"], 2);
    let skipped = decoded["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1);
    assert!(
        skipped[0]["file"]
            .as_str()
            .unwrap()
            .ends_with("dog.cut.jpg")
    );
    let headers = shard(
        &input,
        &dir.path().join("headers"),
        &["--resize", "keep", "--verify", "headers"],
    );
    assert_eq!(headers["records"], 3, "{headers}");
    assert!(headers["skipped"].as_array().unwrap().is_empty());
}

#[test]
fn exif_orientation_apply_turns_the_rotated_source_upright() {
    let dir = tempfile::tempdir().unwrap();
    let (ignored, applied) = (dir.path().join("ignored"), dir.path().join("applied"));
    let input = fixtures().join("jpeg-kinds");
    shard(&input, &ignored, &["--resize", "keep"]);
    let manifest = shard(
        &input,
        &applied,
        &["--resize", "keep", "--exif-orientation", "apply"],
    );
    assert_eq!(manifest["exif_orientation"], true);
    let source = std::fs::read(input.join("cat.exif-icc-xmp.jpg")).unwrap();
    assert_eq!(shardfeed_image_prep::jpeg_orientation(&source), Some(6));
    let (w, h) = {
        let info = Decoder::new().unwrap().probe(&source).unwrap();
        (info.width, info.height)
    };
    let sizes = |dir: &Path| -> Vec<(u32, u32)> {
        let mut sizes: Vec<_> = records(dir).iter().map(|r| r.size.unwrap()).collect();
        sizes.sort();
        sizes
    };
    let (before, after) = (sizes(&ignored), sizes(&applied));
    // Only the EXIF-rotated source changes: its width and height swap.
    let mut want = before.clone();
    let at = want.iter().position(|s| *s == (w, h)).unwrap();
    want[at] = (h, w);
    want.sort();
    assert_eq!(after, want);
    // The other eleven records are the sources' own bytes, as without the flag.
    let kept = |dir: &Path| {
        records(dir)
            .into_iter()
            .filter(|r| r.image != source)
            .count()
    };
    assert_eq!(
        kept(&applied),
        12,
        "the rotated one was re-encoded, not stored"
    );
    assert_eq!(kept(&ignored), 11);
}
