//! The validation split by files (SPEC §3): shuffle the file list with a seed and send the
//! first `floor(n × fraction)` files to validation, as the tutorial does with
//! `int(len(filenames) * VALIDATION_SPLIT)`, and count the records of each side for
//! `steps_per_epoch` and `validation_steps`.

use std::path::{Path, PathBuf};

use shardfeed_record_format::ReaderOptions;

use crate::Result;
use crate::rng::Rng;
use crate::tfrecord::TfRecordSource;

/// The tutorial's validation fraction.
pub const DEFAULT_VALIDATION_FRACTION: f64 = 0.19;

/// The random stream of the split (distinct from the plan's streams).
const SPLIT_STREAM: u64 = 3;

/// Files split into training and validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split<T> {
    /// Training files.
    pub train: Vec<T>,
    /// Validation files.
    pub validation: Vec<T>,
}

/// Shuffles `files` with `seed` and sends the first `floor(len × validation_fraction)` to
/// validation. The result depends on the order given: sort the list first for a split that
/// does not depend on directory listing order ([`split_tfrecords`] does).
pub fn split_files<T: Clone>(files: &[T], validation_fraction: f64, seed: u64) -> Split<T> {
    let mut shuffled = files.to_vec();
    Rng::for_epoch(seed, 0, SPLIT_STREAM).shuffle(&mut shuffled);
    let fraction = validation_fraction.clamp(0.0, 1.0);
    let validation_len = ((files.len() as f64 * fraction) as usize).min(files.len());
    let train = shuffled.split_off(validation_len);
    Split {
        train,
        validation: shuffled,
    }
}

/// The record counts of a split, and the steps they give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitCounts {
    /// Records in the training files.
    pub train_records: u64,
    /// Records in the validation files.
    pub validation_records: u64,
}

impl SplitCounts {
    /// Full training batches per epoch: `train_records / batch`.
    pub fn steps_per_epoch(&self, batch: usize) -> u64 {
        self.train_records / batch.max(1) as u64
    }

    /// Full validation batches: `validation_records / batch`.
    pub fn validation_steps(&self, batch: usize) -> u64 {
        self.validation_records / batch.max(1) as u64
    }
}

/// TFRecord files split for training, opened and counted.
pub struct TfRecordSplit {
    /// The training files.
    pub train: TfRecordSource,
    /// The validation files.
    pub validation: TfRecordSource,
    /// Their record counts.
    pub counts: SplitCounts,
}

/// Splits TFRecord files (sorted first) and opens both sides, counting their records from
/// the `.idx` files or by a scan.
pub fn split_tfrecords(
    files: &[impl AsRef<Path>],
    validation_fraction: f64,
    seed: u64,
    options: ReaderOptions,
) -> Result<TfRecordSplit> {
    split_tfrecords_with(files, validation_fraction, seed, |side| {
        TfRecordSource::open(side, options)
    })
}

/// [`split_tfrecords`], each side opened by `open` (files in object storage, say).
pub fn split_tfrecords_with<E>(
    files: &[impl AsRef<Path>],
    validation_fraction: f64,
    seed: u64,
    open: impl Fn(&[PathBuf]) -> std::result::Result<TfRecordSource, E>,
) -> std::result::Result<TfRecordSplit, E> {
    let mut sorted: Vec<PathBuf> = files.iter().map(|f| f.as_ref().to_path_buf()).collect();
    sorted.sort();
    let split = split_files(&sorted, validation_fraction, seed);
    let train = open(&split.train)?;
    let validation = open(&split.validation)?;
    let counts = SplitCounts {
        train_records: train.total_records(),
        validation_records: validation.total_records(),
    };
    Ok(TfRecordSplit {
        train,
        validation,
        counts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_takes_floor_of_the_fraction_and_loses_no_file() {
        let files: Vec<u32> = (0..16).collect();
        let split = split_files(&files, DEFAULT_VALIDATION_FRACTION, 42);
        assert_eq!(split.validation.len(), 3); // floor(16 × 0.19) = floor(3.04)
        let mut all: Vec<u32> = split
            .train
            .iter()
            .chain(&split.validation)
            .copied()
            .collect();
        all.sort();
        assert_eq!(all, files);
        assert_eq!(
            split,
            split_files(&files, DEFAULT_VALIDATION_FRACTION, 42),
            "seeded"
        );
        assert_ne!(split, split_files(&files, DEFAULT_VALIDATION_FRACTION, 43));
        assert_eq!(split_files(&files, 0.0, 1).validation.len(), 0);
        assert_eq!(split_files(&[1u8, 2, 3, 4, 5], 0.19, 1).validation.len(), 0);
    }

    #[test]
    fn steps_come_from_real_counts() {
        let counts = SplitCounts {
            train_records: 3240,
            validation_records: 760,
        };
        assert_eq!(counts.steps_per_epoch(32), 101);
        assert_eq!(counts.validation_steps(32), 23);
    }
}
