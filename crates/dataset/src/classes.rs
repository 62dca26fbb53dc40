//! Class names of a shard folder: `manifest.json`'s (written by [`crate::shard()`]), the ones
//! the caller gives, or — for shards another tool wrote — discovered by a scan of the records'
//! `class` values, named by their index (`0`, `1`, …).

use std::path::PathBuf;

use shardfeed_record_format::{Example, ExampleKeys, ImageExample, ReaderOptions, RecordReader};

use crate::folder::ShardFolder;
use crate::{Error, Result};

/// Where the class names came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassSource {
    /// `manifest.json`.
    Manifest,
    /// Given by the caller.
    Given,
    /// A scan of the records (names are the indices).
    Scan,
}

/// Class names of the shards in `folder`; `files` are its shard files (scanned when there is
/// no manifest and no names are given, the class under `keys`, else detected per record).
pub fn class_names(
    folder: &ShardFolder,
    files: &[PathBuf],
    given: Option<&[String]>,
    options: ReaderOptions,
    keys: Option<&ExampleKeys>,
) -> Result<(Vec<String>, ClassSource)> {
    if let Some(names) = given {
        if names.len() < 2 {
            return Err(Error::InvalidClasses(format!(
                "{} classes given: at least 2 are needed",
                names.len()
            )));
        }
        return Ok((names.to_vec(), ClassSource::Given));
    }
    if let Some(manifest) = folder.manifest() {
        return Ok((manifest.classes.clone(), ClassSource::Manifest));
    }
    let dir = folder.path();
    let count = scan_class_count(files, options, keys)?;
    if count < 2 {
        return Err(Error::InvalidClasses(format!(
            "the records in {} use {count} class value(s): at least 2 are needed",
            dir.display()
        )));
    }
    Ok((
        (0..count).map(|i| i.to_string()).collect(),
        ClassSource::Scan,
    ))
}

/// One more than the largest class value in `files` (every record is parsed, its class under
/// `keys`, else `class` or TensorFlow's `image/class/label`, whichever it has; a negative
/// class is an error naming the file and record).
pub fn scan_class_count(
    files: &[PathBuf],
    options: ReaderOptions,
    keys: Option<&ExampleKeys>,
) -> Result<usize> {
    let mut largest: i64 = -1;
    for path in files {
        let source = crate::remote::open_read(path)?;
        let mut reader = RecordReader::new(source, options).with_file_name(path);
        let mut index = 0u64;
        let mut record = Vec::new();
        while reader.read_into(&mut record)?.is_some() {
            let bad = |e: shardfeed_record_format::Error| Error::BadDescription {
                file: path.clone(),
                message: format!("record {index}: {e}"),
            };
            let parsed = Example::decode(&record).map_err(bad)?;
            let detected;
            let keys = match keys {
                Some(keys) => keys,
                None => {
                    detected = ExampleKeys::detect(&parsed).unwrap_or_default();
                    &detected
                }
            };
            let example = ImageExample::from_example_with(&parsed, keys).map_err(bad)?;
            if example.class < 0 {
                return Err(Error::NegativeClass {
                    file: path.clone(),
                    index,
                    class: example.class,
                });
            }
            largest = largest.max(example.class);
            index += 1;
        }
    }
    Ok(usize::try_from(largest + 1).unwrap_or(0))
}
