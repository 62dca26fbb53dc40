//! What is in TFRecord files, and whether they are intact: `shardfeed inspect` and the Python
//! package's `inspect` print these reports.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use shardfeed_record_format::{
    Compression, Example, ExampleKeys, FileName, Index, IndexEntry, Location, ReaderOptions,
    RecordReader, Scanned,
};

use crate::Result;

/// The most distinct `class` values `inspect` counts in one file.
pub const MAX_CLASS_VALUES: usize = 1 << 16;

/// What `inspect` found in one file.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The file.
    pub path: PathBuf,
    /// Records read (up to the first problem).
    pub records: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// The compression it was read with.
    pub compression: String,
    /// Whether CRCs were checked.
    pub verified: bool,
    /// Name, list kind and length of each feature of the first record.
    pub features: Vec<FeatureSummary>,
    /// The feature counted as the class: `class`, or TensorFlow's `image/class/label` where
    /// the records have no `class` (`None`: neither).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_key: Option<String>,
    /// Records per value of the int64 class feature (`label_key`), when the records have one.
    pub class_counts: Option<BTreeMap<i64, u64>>,
    /// More distinct `class` values than [`MAX_CLASS_VALUES`]: the others were not counted.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub more_classes: bool,
    /// Whether the `.idx` beside it matches.
    pub index: IndexStatus,
    /// The first problem, or `None` for an intact file.
    pub error: Option<Problem>,
    /// A hint for the reader of a failure (the compression it looks like).
    #[serde(skip)]
    pub hint: Option<String>,
    /// Class names from the `manifest.json` beside the file, when there is one.
    #[serde(skip)]
    pub class_names: Option<Vec<String>>,
}

/// One feature of a file's first record.
#[derive(Debug, Serialize)]
pub struct FeatureSummary {
    /// The feature's name.
    pub name: String,
    /// Its list kind.
    pub kind: &'static str,
    /// Its length in the first record.
    pub len: usize,
}

/// Whether the `.idx` beside a file describes it.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum IndexStatus {
    /// No `.idx` file beside the record file.
    Missing,
    /// The `.idx` file describes exactly the records read.
    Matches,
    /// The `.idx` file disagrees with the records, or does not parse.
    Stale {
        /// Why.
        reason: String,
    },
    /// Not compared, because the file is damaged.
    Unchecked,
}

/// A file's first problem.
#[derive(Debug, Serialize)]
pub struct Problem {
    /// What is wrong.
    pub message: String,
    /// The record, from 0.
    pub record: Option<u64>,
    /// The byte offset of its frame.
    pub offset: Option<u64>,
}

/// Reads every record of `path`: counts, the first record's features, the `class` values, the
/// first problem with its record and offset, and whether the `.idx` beside it matches.
pub fn inspect_file(path: &Path, options: ReaderOptions) -> Result<Report> {
    inspect_file_with(path, options, None)
}

/// [`inspect_file`], counting the int64 feature `label_key` as the class (`None`: `class`,
/// else TensorFlow's `image/class/label`).
pub fn inspect_file_with(
    path: &Path,
    options: ReaderOptions,
    label_key: Option<&str>,
) -> Result<Report> {
    let bytes = crate::remote::file_size(path)?;
    let source = crate::remote::open_read(path)?;
    let mut reader = RecordReader::new(source, options).with_file_name(path);
    let mut report = Report {
        path: path.to_path_buf(),
        records: 0,
        bytes,
        compression: options.compression.to_string(),
        verified: options.verify,
        features: Vec::new(),
        label_key: None,
        class_counts: None,
        more_classes: false,
        index: IndexStatus::Unchecked,
        error: None,
        hint: None,
        class_names: None,
    };
    let mut entries = Vec::new();
    let mut payload = Vec::new();
    let mut scanned = Scanned::default();
    loop {
        let info = match reader.read_into(&mut payload) {
            Ok(Some(info)) => info,
            Ok(None) => break,
            Err(error) => {
                let at = error.location();
                let mut message = error.to_string();
                if report.records == 0 && options.compression == Compression::None {
                    report.hint = compression_hint(path).map(str::to_owned);
                    // The text itself is not printed: the file may be a link to anything.
                    if starts_with_text(path) {
                        message = "not a TFRecord file: it starts with text, not a record header"
                            .to_owned();
                    }
                }
                report.error = Some(Problem {
                    message,
                    record: at.map(|at| at.index),
                    offset: at.map(|at| at.offset),
                });
                break;
            }
        };
        if let Err(error) = scanned.add(info.framed_len(), path) {
            report.error = Some(Problem {
                message: error.to_string(),
                record: Some(info.index),
                offset: Some(info.offset),
            });
            break;
        }
        entries.push(IndexEntry {
            offset: info.offset,
            len: info.framed_len(),
        });
        report.records += 1;
        if let Err(error) = summarise_example(&payload, &mut report, label_key) {
            let at = Location {
                file: FileName::new(path),
                index: info.index,
                offset: info.offset,
                compression: options.compression,
            };
            report.error = Some(Problem {
                message: error.in_record(at).to_string(),
                record: Some(info.index),
                offset: Some(info.offset),
            });
            break;
        }
    }
    if report.error.is_none() {
        report.index = compare_index(path, &entries);
    }
    Ok(report)
}

/// Notes the first record's features and counts the class feature of every record (`class`,
/// else `image/class/label`).
fn summarise_example(
    payload: &[u8],
    report: &mut Report,
    label_key: Option<&str>,
) -> shardfeed_record_format::Result<()> {
    let example = Example::decode(payload)?;
    if report.records == 1 {
        report.features = example
            .feature_map()
            .map(|(name, feature)| FeatureSummary {
                name: name.to_owned(),
                kind: feature.kind_name(),
                len: feature.kind.as_ref().map_or(0, |k| k.len()),
            })
            .collect();
        report.label_key = match label_key {
            Some(key) => Some(key.to_owned()),
            None => ExampleKeys::detect(&example).map(|keys| keys.label.into_owned()),
        }
        .filter(|key| example.int64_list(key).is_ok());
        if report.label_key.is_some() {
            report.class_counts = Some(BTreeMap::new());
        }
    }
    if let (Some(counts), Some(key)) = (&mut report.class_counts, &report.label_key) {
        let class = example.single_int64(key)?;
        if let Some(count) = counts.get_mut(&class) {
            *count += 1;
        } else if counts.len() >= MAX_CLASS_VALUES {
            // A file of a million distinct `class` values is not a class count: the first
            // MAX_CLASS_VALUES are counted, and the report says so.
            report.more_classes = true;
        } else {
            counts.insert(class, 1);
        }
    }
    Ok(())
}

fn compare_index(path: &Path, entries: &[IndexEntry]) -> IndexStatus {
    let index_path = Index::path_for(path);
    let read = match crate::remote::index_beside(path) {
        Ok(None) => return IndexStatus::Missing,
        Ok(Some(index)) => Ok(index),
        Err(error) => Err(error),
    };
    match read {
        Err(error) => IndexStatus::Stale {
            reason: error.to_string(),
        },
        Ok(index) if index.entries() == entries => IndexStatus::Matches,
        Ok(index) => IndexStatus::Stale {
            reason: format!(
                "{} lists {} records, the file has {}",
                index_path.display(),
                index.len(),
                entries.len()
            ),
        },
    }
}

/// Whether a file begins with 12 bytes of printable text (no TFRecord does: its first 8 bytes
/// are a little-endian length, its next 4 a CRC).
fn starts_with_text(path: &Path) -> bool {
    let mut head = [0u8; 12];
    let Ok(mut file) = fs::File::open(path) else {
        return false;
    };
    let printable = |b: &u8| b.is_ascii_graphic() || b.is_ascii_whitespace();
    std::io::Read::read_exact(&mut file, &mut head).is_ok() && head.iter().all(printable)
}

/// A hint for a plain read that failed at once on what looks like compressed data.
fn compression_hint(path: &Path) -> Option<&'static str> {
    let mut magic = [0u8; 2];
    let mut file = fs::File::open(path).ok()?;
    std::io::Read::read_exact(&mut file, &mut magic).ok()?;
    match magic {
        [0x1f, 0x8b] => Some("the file starts like gzip data: try --compression gzip"),
        [0x78, second] if (u16::from(0x78u8) << 8 | u16::from(second)) % 31 == 0 => {
            Some("the file starts like zlib data: try --compression zlib")
        }
        _ => None,
    }
}
