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
//! # use shardfeed_dataset::folder::Location;
//! # let shards = Location::local(dir.path().join("shards"));
//! # let config = ShardConfig { input: Location::local(dir.path().join("train")), out: shards.clone(), shards: 4, size: 24, ..Default::default() };
//! # shard(&config, |_| {})?;
//! # let run = dir.path().join("run");
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
pub use crate::error::{BoxError, FitError};
use crate::inference::{ModelCard, save_model};
use crate::metrics::MetricsFile;
pub use crate::metrics::{EpochRow, METRICS_FILE, METRICS_HEADER, MetricsRow, read_metrics};
use crate::training::{ImageBatch, Metrics, TrainConfig, Trainer};

/// The checkpoint folder of a run folder.
pub const CHECKPOINT_DIR: &str = "checkpoint";

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
            precision: crate::fast::precision_on(trainer.device()),
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

#[cfg(test)]
mod tests {
    use super::*;

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
