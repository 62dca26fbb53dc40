//! The training run: epochs of steps over any source of batches, validation after each epoch,
//! a `metrics.csv` row per epoch, the model and its card saved after each epoch, a checkpoint
//! after each epoch and when asked to stop, and the checks that make `resume` safe. Reports
//! through a [`FitObserver`]; reads no image or record files (the caller's [`FitData`]
//! supplies batches and an opaque data position saved in each checkpoint).
//!
//! Training on a shard folder with `shardfeed-dataset`'s pipelines and an observer of one's
//! own:
//!
//! ```
//! use shardfeed_dataset::run::{DataSettings, TrainingData};
//! use shardfeed_dataset::{Decoded, to_float_batch};
//! use shardfeed_input_pipeline::{Pipeline, PipelineIter};
//! use shardfeed_model::fit::{BoxError, EpochRow, Fit, FitData, FitObserver};
//! use shardfeed_model::{ImageBatch, TrainConfig, cpu_device};
//! # use shardfeed_dataset::{ShardConfig, shard, synthetic};
//! # let dir = tempfile::tempdir()?;
//! # let data_config = synthetic::GenData { n_train: 48, n_test: 0, sides: (40, 60), ..Default::default() };
//! # synthetic::generate(dir.path(), &data_config)?;
//! # let config = ShardConfig { input: dir.path().join("train"), out: dir.path().join("shards"), shards: 4, size: 24, ..Default::default() };
//! # shard(&config, |_| {})?;
//! # let (shards, run) = (dir.path().join("shards"), dir.path().join("run"));
//!
//! /// The dataset's training stream and validation pass, as batches the model takes.
//! struct Shards { train: PipelineIter<Decoded>, validation: Pipeline<Decoded> }
//!
//! fn batch(items: &[Decoded]) -> Result<ImageBatch, BoxError> {
//!     let b = to_float_batch(items)?; // f32 HWC, /255: the model card's preprocessing
//!     Ok(ImageBatch { pixels: b.pixels, labels: b.labels, side: b.side })
//! }
//!
//! impl FitData for Shards {
//!     fn next_batch(&mut self) -> Option<Result<ImageBatch, BoxError>> {
//!         Some(self.train.next()?.map_err(BoxError::from).and_then(|b| batch(&b.items)))
//!     }
//!     fn position(&self) -> Vec<u8> {
//!         self.train.state().to_bytes().to_vec() // saved in each checkpoint
//!     }
//!     fn validation(&mut self) -> Box<dyn Iterator<Item = Result<ImageBatch, BoxError>> + '_> {
//!         Box::new(self.validation.iter().map(|b| b.map_err(BoxError::from).and_then(|b| batch(&b.items))))
//!     }
//! }
//!
//! /// Keeps each epoch's validation accuracy.
//! struct Accuracies(Vec<f64>);
//! impl FitObserver for Accuracies {
//!     fn epoch(&mut self, row: &EpochRow) {
//!         self.0.push(row.validation.accuracy());
//!     }
//! }
//!
//! let settings = DataSettings { shards, batch: 8, validation_fraction: 0.25, ..Default::default() };
//! let data = TrainingData::open(&settings)?; // split by files, counted from .idx
//! let fit = Fit::new(&run, data.info.classes.clone(), 2, data.steps_per_epoch);
//! let (trainer, progress) = fit.start(false, TrainConfig::default(), cpu_device())?;
//! let mut shards = Shards { train: data.train.iter(), validation: data.validation };
//! let mut accuracies = Accuracies(Vec::new());
//! let outcome = fit.run(trainer, progress, &mut shards, &mut accuracies)?;
//! assert_eq!((outcome.epochs_done, accuracies.0.len()), (2, 2));
//! assert!(run.join("metrics.csv").exists() && run.join("checkpoint/state.json").exists());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::prelude::Device;
use shardfeed_image_prep::Preprocessing;

use crate::checkpoint::{Progress, has_checkpoint};
use crate::error::ModelError;
use crate::inference::{ModelCard, save_model};
use crate::training::{ImageBatch, Metrics, TrainConfig, Trainer};

/// A boxed error from the caller's data or observer.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The metrics file of a run folder.
pub const METRICS_FILE: &str = "metrics.csv";
/// The checkpoint folder of a run folder.
pub const CHECKPOINT_DIR: &str = "checkpoint";
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

/// What can stop a run.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    /// Saving or loading the model or a checkpoint.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The run folder already holds a run's files, and neither resuming nor replacing it
    /// was asked for.
    #[error("{folder} already holds a run ({found})")]
    AlreadyRun {
        /// The run folder.
        folder: PathBuf,
        /// The files of a run found there, comma-separated.
        found: String,
    },
    /// Resuming was asked for, but the folder has no checkpoint.
    #[error("no checkpoint in {0}")]
    NoCheckpoint(PathBuf),
    /// The caller's data failed (its error names the file and offset).
    #[error(transparent)]
    Data(BoxError),
    /// The training data ended before the epoch did.
    #[error("the training stream ended after {step} of {steps} steps of epoch {epoch}")]
    StreamEnded {
        /// The epoch (from 1).
        epoch: u64,
        /// Steps done in it.
        step: u64,
        /// Steps it should have had.
        steps: u64,
    },
    /// The observer failed to save its own files.
    #[error(transparent)]
    Observer(BoxError),
    /// `metrics.csv` could not be written.
    #[error("cannot write {path}: {source}")]
    Metrics {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: csv::Error,
    },
}

/// Where batches come from: an endless training stream with a position that can be saved,
/// and a validation pass.
pub trait FitData {
    /// The next training batch (`None` only if the stream ended, which is an error).
    fn next_batch(&mut self) -> Option<Result<ImageBatch, BoxError>>;
    /// The stream's position after the batches taken so far, saved in each checkpoint and
    /// handed back by [`Fit::start`] on resume (opaque to the model crate).
    fn position(&self) -> Vec<u8>;
    /// One pass over the validation batches (may be empty).
    fn validation(&mut self) -> Box<dyn Iterator<Item = Result<ImageBatch, BoxError>> + '_>;
}

/// Figures after each training step.
#[derive(Debug, Clone, Copy)]
pub struct StepReport<'a> {
    /// Epoch, from 1.
    pub epoch: u64,
    /// Steps done in this epoch.
    pub step: u64,
    /// Steps per epoch.
    pub steps: u64,
    /// The epoch's running metrics.
    pub metrics: &'a Metrics,
    /// Training images per second in this epoch so far.
    pub images_per_second: f64,
    /// Seconds waited for input in this epoch so far.
    pub waited: f64,
}

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

/// What a run has saved, handed to [`FitObserver::saved`] so the caller can save its own
/// description of the run beside the model.
#[derive(Debug, Clone, Copy)]
pub struct Saved {
    /// Epochs completed.
    pub epochs_done: u64,
    /// The image side seen in training (0 before the first step).
    pub image_size: usize,
}

/// What a run reports as it goes; every method has a default that does nothing.
pub trait FitObserver {
    /// Before the first step: the epoch (from 1) and step of that epoch training starts at.
    fn start(&mut self, _epoch: u64, _step: u64, _steps: u64) {}
    /// After each training step.
    fn step(&mut self, _report: &StepReport<'_>) {}
    /// After the model and card were saved (each epoch, and on a stop), before the
    /// checkpoint: the caller saves its own files here; an error ends the run.
    fn saved(&mut self, _saved: &Saved) -> Result<(), BoxError> {
        Ok(())
    }
    /// After each epoch's row was written and its checkpoint saved.
    fn epoch(&mut self, _row: &EpochRow) {}
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FitOutcome {
    /// Epochs completed.
    pub epochs_done: u64,
    /// The image side trained on.
    pub image_size: usize,
    /// Stopped by the stop flag, with a checkpoint at (epoch, step of that epoch).
    pub interrupted: Option<(u64, u64)>,
}

/// A training run in a folder: `model.bpk`, `model.json`, `metrics.csv`, `checkpoint/`.
#[derive(Debug, Clone)]
pub struct Fit {
    out: PathBuf,
    classes: Vec<String>,
    epochs: u64,
    steps_per_epoch: u64,
    stop: Option<Arc<AtomicBool>>,
    overwrite: bool,
}

impl Fit {
    /// A run in `out` of `epochs` epochs (in all, counting those before a resume) of
    /// `steps_per_epoch` steps, for `classes`.
    pub fn new(out: &Path, classes: Vec<String>, epochs: u64, steps_per_epoch: u64) -> Self {
        Fit {
            out: out.to_owned(),
            classes,
            epochs,
            steps_per_epoch,
            stop: None,
            overwrite: false,
        }
    }

    /// Replaces a run already in the folder (its checkpoint is removed first) rather than
    /// refusing to start.
    pub fn overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }

    /// A flag that, once set (Ctrl-C), stops the run after the current step with a
    /// checkpoint.
    pub fn stop_flag(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = Some(stop);
        self
    }

    /// The run's checkpoint folder.
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.out.join(CHECKPOINT_DIR)
    }

    /// A new trainer (the folder must not hold a model or checkpoint) or, with `resume`, the
    /// checkpoint's trainer and progress (whose `data_state` is the position to restart the
    /// data at).
    pub fn start(
        &self,
        resume: bool,
        config: TrainConfig,
        device: Device,
    ) -> Result<(Trainer, Progress), FitError> {
        check_run_folder(&self.out, resume, self.overwrite, &[])?;
        if resume {
            return Ok(Trainer::resume(&self.checkpoint_dir(), device)?);
        }
        std::fs::create_dir_all(&self.out).map_err(|source| ModelError::Io {
            path: self.out.clone(),
            source,
        })?;
        Ok((Trainer::new(config, device), Progress::default()))
    }

    fn stop_requested(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|stop| stop.load(Ordering::SeqCst))
    }

    fn save(
        &self,
        trainer: &Trainer,
        saved: Saved,
        observer: &mut impl FitObserver,
    ) -> Result<(), FitError> {
        let card = ModelCard {
            classes: self.classes.clone(),
            preprocessing: Preprocessing::for_size(saved.image_size as u32),
        };
        save_model(trainer.model(), &card, &self.out)?;
        observer.saved(&saved).map_err(FitError::Observer)
    }

    /// Trains from `progress` up to the run's epoch count.
    pub fn run(
        &self,
        mut trainer: Trainer,
        progress: Progress,
        data: &mut impl FitData,
        observer: &mut impl FitObserver,
    ) -> Result<FitOutcome, FitError> {
        let steps = self.steps_per_epoch;
        let checkpoint = self.checkpoint_dir();
        let metrics_path = self.out.join(METRICS_FILE);
        let mut metrics = MetricsFile::open(&metrics_path, progress.epochs_done)?;
        let mut image_size = 0usize;
        observer.start(progress.epochs_done + 1, progress.steps_in_epoch, steps);
        let mut first_step = progress.steps_in_epoch;
        let mut train = progress.epoch_metrics;
        let mut epochs_done = progress.epochs_done;
        for epoch in progress.epochs_done + 1..=self.epochs {
            let started = Instant::now();
            let mut waited = 0.0;
            let mut images = 0u64;
            for step in first_step..steps {
                let waiting = Instant::now();
                let batch = data
                    .next_batch()
                    .ok_or(FitError::StreamEnded { epoch, step, steps })?
                    .map_err(FitError::Data)?;
                waited += waiting.elapsed().as_secs_f64();
                image_size = batch.side;
                train.add(trainer.step(&batch));
                images += batch.len() as u64;
                observer.step(&StepReport {
                    epoch,
                    step: step + 1,
                    steps,
                    metrics: &train,
                    images_per_second: images as f64 / started.elapsed().as_secs_f64().max(1e-9),
                    waited,
                });
                if self.stop_requested() && step + 1 < steps {
                    let saved = Saved {
                        epochs_done,
                        image_size,
                    };
                    self.save(&trainer, saved, observer)?;
                    let progress = Progress {
                        epochs_done: epoch - 1,
                        steps_in_epoch: step + 1,
                        epoch_metrics: train,
                        data_state: data.position(),
                    };
                    trainer.save_checkpoint(&checkpoint, &progress)?;
                    return Ok(FitOutcome {
                        epochs_done,
                        image_size,
                        interrupted: Some((epoch, step + 1)),
                    });
                }
            }
            first_step = 0;
            let train_seconds = started.elapsed().as_secs_f64();
            let mut validation = Metrics::default();
            for batch in data.validation() {
                validation.add(trainer.evaluate(&batch.map_err(FitError::Data)?));
            }
            let row = EpochRow {
                epoch,
                train,
                validation,
                seconds: started.elapsed().as_secs_f64(),
                images_per_second: images as f64 / train_seconds.max(1e-9),
                waited,
                train_seconds,
            };
            metrics.write(&row)?;
            epochs_done = epoch;
            let saved = Saved {
                epochs_done,
                image_size,
            };
            self.save(&trainer, saved, observer)?;
            let progress = Progress {
                epochs_done: epoch,
                steps_in_epoch: 0,
                epoch_metrics: Metrics::default(),
                data_state: data.position(),
            };
            trainer.save_checkpoint(&checkpoint, &progress)?;
            observer.epoch(&row);
            train = Metrics::default();
            if self.stop_requested() && epoch < self.epochs {
                return Ok(FitOutcome {
                    epochs_done,
                    image_size,
                    interrupted: Some((epoch + 1, 0)),
                });
            }
        }
        Ok(FitOutcome {
            epochs_done,
            image_size,
            interrupted: None,
        })
    }
}

/// Whether a run can start in the folder `out`: resuming needs its checkpoint; a new run
/// needs a folder without a run's files (the model, its card, `metrics.csv`, `checkpoint/`,
/// and the caller's own files `also`), unless `overwrite`, which removes the old checkpoint
/// (the new run writes the rest anew). [`Fit::start`] checks this first; callers that read or
/// write their own files in the folder before can check it earlier.
pub fn check_run_folder(
    out: &Path,
    resume: bool,
    overwrite: bool,
    also: &[&str],
) -> Result<(), FitError> {
    let checkpoint = out.join(CHECKPOINT_DIR);
    if resume {
        if !has_checkpoint(&checkpoint) {
            return Err(FitError::NoCheckpoint(checkpoint));
        }
        return Ok(());
    }
    let found: Vec<&str> = [
        crate::MODEL_FILE,
        crate::CARD_FILE,
        METRICS_FILE,
        CHECKPOINT_DIR,
    ]
    .into_iter()
    .chain(also.iter().copied())
    .filter(|name| std::fs::symlink_metadata(out.join(name)).is_ok())
    .collect();
    if found.is_empty() {
        return Ok(());
    }
    if !overwrite {
        return Err(FitError::AlreadyRun {
            folder: out.to_owned(),
            found: found.join(", "),
        });
    }
    match std::fs::remove_dir_all(&checkpoint) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ModelError::Io {
            path: checkpoint,
            source: e,
        }
        .into()),
        _ => Ok(()),
    }
}

/// `metrics.csv`, rewritten whole and atomically after each epoch (a kill leaves the file
/// before or after the row, never half of it); a resumed run keeps only the rows of the
/// epochs its checkpoint holds, so an epoch redone after a kill between the row and the
/// checkpoint is not listed twice.
struct MetricsFile {
    path: PathBuf,
    text: Vec<u8>,
}

impl MetricsFile {
    /// Opens `path` for a run that has finished `epochs_done` epochs: a new run (0) starts
    /// with the header only; a resumed one keeps the header and rows up to `epochs_done`.
    fn open(path: &Path, epochs_done: u64) -> Result<Self, FitError> {
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

    fn write(&mut self, row: &EpochRow) -> Result<(), FitError> {
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

    #[test]
    fn a_folder_holding_a_run_is_refused_unless_resumed_or_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        check_run_folder(out, false, false, &["run.json"]).unwrap();
        std::fs::write(out.join(METRICS_FILE), "epoch\n").unwrap();
        std::fs::write(out.join("run.json"), "{}").unwrap();
        let error = check_run_folder(out, false, false, &["run.json"])
            .unwrap_err()
            .to_string();
        assert!(
            error.ends_with("already holds a run (metrics.csv, run.json)"),
            "{error}"
        );
        assert!(matches!(
            check_run_folder(out, true, false, &[]),
            Err(FitError::NoCheckpoint(_))
        ));
        std::fs::create_dir(out.join(CHECKPOINT_DIR)).unwrap();
        check_run_folder(out, false, true, &[]).unwrap();
        assert!(
            !out.join(CHECKPOINT_DIR).exists(),
            "the old checkpoint goes"
        );
    }
}
