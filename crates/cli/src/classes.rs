//! Class names of a shard folder: `manifest.json`'s (written by `shardfeed shard`), the ones the
//! user gives (`--classes a,b`), or — for shards another tool wrote — discovered by a scan of
//! the records' `class` values, named by their index (`0`, `1`, …).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use shardfeed_record_format::{ImageExample, ReaderOptions, RecordReader, ShardManifest};

/// Where the class names came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassSource {
    /// `manifest.json`.
    Manifest,
    /// `--classes`.
    Given,
    /// A scan of the records (names are the indices).
    Scan,
}

/// Class names of the shards in `dir`; `files` are its shard files (scanned when there is no
/// manifest and no names are given).
pub fn class_names(
    dir: &Path,
    files: &[PathBuf],
    given: Option<&[String]>,
    options: ReaderOptions,
) -> anyhow::Result<(Vec<String>, ClassSource)> {
    if let Some(names) = given {
        if names.len() < 2 {
            bail!(
                "--classes lists {} classes: at least 2 are needed",
                names.len()
            );
        }
        return Ok((names.to_vec(), ClassSource::Given));
    }
    let manifest = dir.join("manifest.json");
    if manifest.exists() {
        let names = ShardManifest::read(&manifest)?.classes;
        return Ok((names, ClassSource::Manifest));
    }
    let count = scan_class_count(files, options)?;
    if count < 2 {
        bail!(
            "the records in {} use {count} class value(s): at least 2 are needed",
            dir.display()
        );
    }
    Ok((
        (0..count).map(|i| i.to_string()).collect(),
        ClassSource::Scan,
    ))
}

/// One more than the largest `class` value in `files` (every record is parsed; a negative class
/// is an error naming the file and record).
pub fn scan_class_count(files: &[PathBuf], options: ReaderOptions) -> anyhow::Result<usize> {
    let mut largest: i64 = -1;
    for path in files {
        let mut reader = RecordReader::open(path, options)?;
        let mut index = 0u64;
        let mut record = Vec::new();
        while reader.read_into(&mut record)?.is_some() {
            let example = ImageExample::decode(&record)
                .with_context(|| format!("{}: record {index}", path.display()))?;
            if example.class < 0 {
                bail!(
                    "{}: record {index} has class {} (must be ≥ 0)",
                    path.display(),
                    example.class
                );
            }
            largest = largest.max(example.class);
            index += 1;
        }
    }
    Ok(usize::try_from(largest + 1).unwrap_or(0))
}
