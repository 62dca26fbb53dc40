//! Damaged shards on the read path: every single-bit flip and every truncation point of a
//! small shard is detected by the reader `stream`, `train` and `evaluate` share
//! (`TfRecordSource`), and the error names the file and the byte offset. Checked over all
//! positions of a two-record file, with its `.idx` beside it (as `shard` writes it) and without
//! one (as other tools write shards), in-process through `stream()`; then once each through the
//! `stream` and `train` commands.

use shardfeed_dataset::folder::Location;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::generated::generated_shards;
use shardfeed_dataset::ShardConfig;
use shardfeed_dataset::stream::{StreamConfig, stream};
use shardfeed_dataset::synthetic::GenData;
use shardfeed_input_pipeline::Parallelism;
use shardfeed_record_format::Index;

/// `n` generated images sharded at `size` px into `shards` files; the shard folder.
fn shards(dir: &Path, n: usize, shards: usize, size: u32) -> PathBuf {
    let data = GenData {
        n_train: n,
        n_test: 0,
        seed: 11,
        sides: (size, size + 8),
        ..GenData::default()
    };
    let config = ShardConfig {
        shards,
        size,
        ..ShardConfig::default()
    };
    generated_shards(dir, &data, config)
}

/// The `.tfrec` files of a folder, in name order.
fn tfrecs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tfrec"))
        .collect();
    files.sort();
    files
}

/// Byte offsets where the file's records start, from its index.
fn record_starts(file: &Path) -> Vec<u64> {
    Index::read(Index::path_for(file))
        .unwrap()
        .entries()
        .iter()
        .map(|e| e.offset)
        .collect()
}

/// Streams the folder once (batch 1, no cache, one thread); the error, fully described.
fn stream_error(shards: &Path) -> String {
    // The record layer's own report of each cut and flip: the manifest's size check (which
    // catches a cut before any record is read) is set aside; it is tested on its own
    // (`dataset/tests/manifest_check.rs`).
    let config = StreamConfig {
        shards: Location::local(shards.to_path_buf()),
        epochs: 1,
        batch: 1,
        cache: false,
        jobs: Parallelism::Fixed(1),
        ignore_manifest: true,
        ..StreamConfig::default()
    };
    match stream(&config) {
        Ok(report) => format!("no error: {} records streamed", report.records),
        Err(error) => format!("{error:#}"),
    }
}

/// Runs `check` on the original bytes' damaged copies, with the `.idx` file and without.
fn for_both_layouts(dir: &Path, mut check: impl FnMut(&Path, &Path, &[u8], &[u64], bool)) {
    let folder = shards(dir, 2, 1, 8);
    let file = tfrecs(&folder).remove(0);
    let starts = record_starts(&file);
    assert_eq!(starts.len(), 2);
    let original = std::fs::read(&file).unwrap();
    check(&folder, &file, &original, &starts, true);
    std::fs::remove_file(Index::path_for(&file)).unwrap();
    check(&folder, &file, &original, &starts, false);
}

/// The record a byte offset falls in.
fn record_of(starts: &[u64], offset: u64) -> usize {
    starts.iter().rposition(|&s| s <= offset).unwrap()
}

#[test]
fn every_single_bit_flip_is_reported_with_the_file_and_the_records_offset() {
    let dir = tempfile::tempdir().unwrap();
    for_both_layouts(dir.path(), |folder, file, original, starts, indexed| {
        let name = file.file_name().unwrap().to_str().unwrap();
        for bit in 0..original.len() * 8 {
            let mut damaged = original.to_vec();
            damaged[bit / 8] ^= 1 << (bit % 8);
            std::fs::write(file, &damaged).unwrap();
            let error = stream_error(folder);
            let record = record_of(starts, (bit / 8) as u64);
            let at = format!("record {record} at offset {} in ", starts[record]);
            assert!(
                error.contains(&at) && error.contains(name),
                "indexed {indexed}, bit {bit}: want {at:?} and {name}, got {error}"
            );
            assert!(error.contains("crc mismatch"), "bit {bit}: {error}");
        }
    });
}

#[test]
fn every_truncation_point_is_reported_with_the_file_and_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    for_both_layouts(dir.path(), |folder, file, original, starts, indexed| {
        let name = file.file_name().unwrap().to_str().unwrap();
        for cut in 0..original.len() {
            std::fs::write(file, &original[..cut]).unwrap();
            let error = stream_error(folder);
            let want = if indexed {
                // The index no longer covers the file: detected before any record is read.
                format!("the file has {cut} bytes")
            } else if starts.contains(&(cut as u64)) {
                // Cut at a record boundary: the frames parse; the count in the name tells.
                let whole = starts.iter().filter(|&&s| s < cut as u64).count();
                format!("holds {whole} records but its name says 2")
            } else {
                let record = record_of(starts, cut as u64);
                format!("record {record} at offset {} in ", starts[record])
            };
            assert!(
                error.contains(&want) && error.contains(name),
                "indexed {indexed}, cut {cut}: want {want:?} and {name}, got {error}"
            );
        }
    });
}

/// Flips one bit inside record 1's payload of every shard; each file's name and record 1's
/// offset.
fn damage_record_one(folder: &Path) -> Vec<(String, u64)> {
    tfrecs(folder)
        .iter()
        .map(|file| {
            let starts = record_starts(file);
            let mut bytes = std::fs::read(file).unwrap();
            bytes[starts[1] as usize + 20] ^= 0x04;
            std::fs::write(file, bytes).unwrap();
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            (name, starts[1])
        })
        .collect()
}

#[test]
fn the_stream_and_train_commands_stop_with_the_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let folder = shards(dir.path(), 12, 4, 16);
    let damaged = damage_record_one(&folder);
    let run = |args: &[&str]| {
        let output = Command::new(crate::common::shardfeed_bin())
            .args(args)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let folder_arg = folder.to_str().unwrap();
    let out = dir.path().join("run");
    for (command, (code, stderr)) in [
        ("stream", run(&["stream", folder_arg, "--batch", "2"])),
        (
            "train",
            run(&[
                "train",
                folder_arg,
                "--out",
                out.to_str().unwrap(),
                "--epochs",
                "1",
                "--batch",
                "2",
                "--val-split",
                "0.5",
                "--quiet",
            ]),
        ),
    ] {
        assert_eq!(code, Some(1), "{command}: {stderr}");
        assert!(
            damaged.iter().any(|(name, offset)| {
                let at = format!("corrupted record 1 at offset {offset} in ");
                stderr.contains(&at) && stderr.contains(name.as_str())
            }),
            "{command}: want record 1 of one of {damaged:?}, got {stderr}"
        );
    }
}
