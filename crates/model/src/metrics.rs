//! `metrics.csv`: a run's row per epoch ([`EpochRow`]), written atomically and cut to the
//! checkpoint's epochs on resume, and read back ([`read_metrics`]).

use std::path::{Path, PathBuf};

use crate::error::FitError;
use crate::training::Metrics;

/// The metrics file of a run folder.
pub const METRICS_FILE: &str = "metrics.csv";
/// The columns of `metrics.csv`.
pub const METRICS_HEADER: [&str; 7] = [
    "epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "seconds",
    "images_per_second",
];

/// One epoch's figures: a row of `metrics.csv`.
#[derive(Debug, Clone, Copy)]
pub struct EpochRow {
    /// Epoch, from 1.
    pub epoch: u64,
    /// Training metrics (running over the epoch, as Keras prints them).
    pub train: Metrics,
    /// Validation metrics (`images == 0` when there is no validation data).
    pub validation: Metrics,
    /// Wall seconds (of this process, for an epoch resumed midway).
    pub seconds: f64,
    /// Training images per second.
    pub images_per_second: f64,
    /// Seconds the trainer waited for input.
    pub waited: f64,
    /// Seconds of the training steps (the epoch without validation), `waited` included.
    pub train_seconds: f64,
}

impl EpochRow {
    /// The fraction of the training steps' time spent waiting for input.
    pub fn wait_fraction(&self) -> f64 {
        self.waited / self.train_seconds.max(1e-9)
    }

    /// The row as `metrics.csv` holds it (six decimals; the validation columns empty, not a
    /// made-up 0, without validation data).
    pub fn csv_fields(&self) -> [String; 7] {
        let (val_loss, val_accuracy) = if self.validation.images == 0 {
            (String::new(), String::new())
        } else {
            (
                format!("{:.6}", self.validation.loss()),
                format!("{:.6}", self.validation.accuracy()),
            )
        };
        [
            self.epoch.to_string(),
            format!("{:.6}", self.train.loss()),
            format!("{:.6}", self.train.accuracy()),
            val_loss,
            val_accuracy,
            format!("{:.3}", self.seconds),
            format!("{:.1}", self.images_per_second),
        ]
    }
}

/// `metrics.csv`, rewritten whole and atomically after each epoch (a kill leaves the file
/// before or after the row, never half of it); a resumed run keeps only the rows of the
/// epochs its checkpoint holds, so an epoch redone after a kill between the row and the
/// checkpoint is not listed twice.
pub(crate) struct MetricsFile {
    path: PathBuf,
    text: Vec<u8>,
}

impl MetricsFile {
    /// Opens `path` for a run that has finished `epochs_done` epochs: a new run (0) starts
    /// with the header only; a resumed one keeps the header and rows up to `epochs_done`.
    pub(crate) fn open(path: &Path, epochs_done: u64) -> Result<Self, FitError> {
        let csv_error = |source| FitError::Metrics {
            path: path.to_owned(),
            source,
        };
        let mut writer = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        writer.write_record(METRICS_HEADER).map_err(csv_error)?;
        if epochs_done > 0 {
            match std::fs::read(path) {
                Ok(text) => {
                    let mut reader = csv::Reader::from_reader(text.as_slice());
                    for record in reader.records() {
                        let record = record.map_err(csv_error)?;
                        let epoch = record.get(0).and_then(|v| v.parse::<u64>().ok());
                        if epoch.is_some_and(|epoch| epoch <= epochs_done) {
                            writer.write_record(&record).map_err(csv_error)?;
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(csv_error(e.into())),
            }
        }
        let text = writer
            .into_inner()
            .map_err(|e| csv_error(std::io::Error::other(e.to_string()).into()))?;
        let mut file = MetricsFile {
            path: path.to_owned(),
            text,
        };
        file.save()?;
        Ok(file)
    }

    fn save(&mut self) -> Result<(), FitError> {
        shardfeed_record_format::atomic::write_atomic(&self.path, &self.text).map_err(|e| {
            FitError::Metrics {
                path: self.path.clone(),
                source: std::io::Error::from(e).into(),
            }
        })
    }

    pub(crate) fn write(&mut self, row: &EpochRow) -> Result<(), FitError> {
        let mut writer = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(std::mem::take(&mut self.text));
        let written = writer.write_record(row.csv_fields());
        self.text = writer.into_inner().unwrap_or_default();
        written.map_err(|source| FitError::Metrics {
            path: self.path.clone(),
            source,
        })?;
        self.save()
    }
}

/// One row of `metrics.csv` read back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricsRow {
    /// Epoch, from 1.
    pub epoch: u64,
    /// Training loss.
    pub loss: f64,
    /// Training accuracy.
    pub accuracy: f64,
    /// Validation loss, when the run had validation data.
    pub val_loss: Option<f64>,
    /// Validation accuracy, when the run had validation data.
    pub val_accuracy: Option<f64>,
}

/// Reads a run's `metrics.csv`.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsRow>, FitError> {
    let error = |source| FitError::Metrics {
        path: path.to_owned(),
        source,
    };
    let mut reader = csv::Reader::from_path(path).map_err(error)?;
    let mut rows = Vec::new();
    for (line, record) in reader.records().enumerate() {
        let record = record.map_err(error)?;
        let bad = |column: &str| {
            error(csv::Error::from(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("row {}: bad {column}", line + 1),
            )))
        };
        let number = |i: usize, column: &str| -> Result<f64, FitError> {
            record
                .get(i)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad(column))
        };
        let optional = |i: usize| record.get(i).and_then(|v| v.parse().ok());
        rows.push(MetricsRow {
            epoch: record
                .get(0)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad("epoch"))?,
            loss: number(1, "loss")?,
            accuracy: number(2, "accuracy")?,
            val_loss: optional(3),
            val_accuracy: optional(4),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: u64) -> EpochRow {
        EpochRow {
            epoch,
            train: Metrics::default(),
            validation: Metrics::default(),
            seconds: 1.0,
            images_per_second: 2.0,
            waited: 0.0,
            train_seconds: 1.0,
        }
    }

    /// A kill after epoch 3's row and before its checkpoint: the resumed run (checkpoint at
    /// 2) redoes epoch 3 and lists it once.
    #[test]
    fn a_resumed_run_keeps_the_rows_of_its_checkpoint_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS_FILE);
        let mut metrics = MetricsFile::open(&path, 0).unwrap();
        for epoch in 1..=3 {
            metrics.write(&row(epoch)).unwrap();
        }
        let epochs = |path: &Path| -> Vec<u64> {
            read_metrics(path)
                .unwrap()
                .iter()
                .map(|r| r.epoch)
                .collect()
        };
        assert_eq!(epochs(&path), [1, 2, 3]);
        let mut resumed = MetricsFile::open(&path, 2).unwrap();
        assert_eq!(epochs(&path), [1, 2]);
        resumed.write(&row(3)).unwrap();
        assert_eq!(epochs(&path), [1, 2, 3]);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    }
}
