//! `shardfeed train`: the validation split by files, the read pipeline feeding the model crate's
//! trainer, events for a progress bar and a Keras-like line per epoch, `metrics.csv`, the model
//! saved after each epoch with what `evaluate` and `predict` need (`model.json`, `run.json`),
//! a checkpoint after each epoch and on interruption, and `--resume`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use shardfeed_input_pipeline::split::split_tfrecords;
use shardfeed_input_pipeline::tfrecord::TfRecordSource;
use shardfeed_input_pipeline::{Parallelism, Repeat, ResumeState};
use shardfeed_model::{
    DeviceKind, ImageBatch, Metrics, ModelCard, PREPROCESSING, Progress, TrainConfig, Trainer,
    has_checkpoint, save_model,
};
use shardfeed_record_format::{Compression, ReaderOptions};

use crate::classes::{ClassSource, class_names};
use crate::plot::draw_curves;
use crate::stream::{Decoded, batch_to_f32, decode_record, tutorial_plan};

/// What to train and how (SPEC §4 defaults).
#[derive(Debug, Clone)]
pub struct TrainSettings {
    /// The shard folder.
    pub shards: PathBuf,
    /// Epochs (in all, counting those done before a resume).
    pub epochs: u64,
    /// Batch size.
    pub batch: usize,
    /// Fraction of the shard files used for validation.
    pub validation_fraction: f64,
    /// Seed of the split, the order and the weights.
    pub seed: u64,
    /// Adam's learning rate.
    pub learning_rate: f64,
    /// The run folder (model, metrics, checkpoint).
    pub out: PathBuf,
    /// Decode threads.
    pub jobs: Parallelism,
    /// Class names, when the shards have no manifest.
    pub classes: Option<Vec<String>>,
    /// The shards' compression.
    pub compression: Compression,
    /// Continue the run in `out` from its checkpoint (its settings win over these, except
    /// `epochs`).
    pub resume: bool,
    /// Where the model runs.
    pub device: DeviceKind,
    /// Set (e.g. by Ctrl-C) to stop after the current step with a checkpoint.
    pub stop: Option<Arc<AtomicBool>>,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            shards: PathBuf::from("shards"),
            epochs: 10,
            batch: 32,
            validation_fraction: 0.19,
            seed: 42,
            learning_rate: 1e-3,
            out: PathBuf::from("runs/latest"),
            jobs: Parallelism::Auto,
            classes: None,
            compression: Compression::None,
            resume: false,
            device: DeviceKind::Cpu,
            stop: None,
        }
    }
}

/// The run's description, saved beside the model (`run.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    /// Class names in index order.
    pub classes: Vec<String>,
    /// Image side the model was trained on.
    pub image_size: usize,
    /// The shard folder.
    pub shards: PathBuf,
    /// The shards' compression (`none`, `gzip`, `zlib`).
    pub compression: String,
    /// The validation shard files.
    pub validation_files: Vec<PathBuf>,
    /// The training shard files.
    pub train_files: Vec<PathBuf>,
    /// Training records per epoch (all of the training files).
    pub train_records: u64,
    /// Validation records.
    pub validation_records: u64,
    /// Epochs completed.
    pub epochs_done: u64,
    /// Seed.
    pub seed: u64,
    /// Batch size.
    pub batch: usize,
    /// Validation fraction.
    pub validation_fraction: f64,
    /// Learning rate.
    pub learning_rate: f64,
}

impl RunInfo {
    /// Reads `dir/run.json`.
    pub fn load(dir: &Path) -> anyhow::Result<RunInfo> {
        let path = dir.join("run.json");
        let text =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("invalid {}", path.display()))
    }

    /// The shards' compression.
    pub fn compression(&self) -> anyhow::Result<Compression> {
        Ok(self.compression.parse()?)
    }
}

/// One epoch's figures.
#[derive(Debug, Clone, Copy)]
pub struct EpochLine {
    /// Epoch, from 1.
    pub epoch: u64,
    /// Training metrics (running over the epoch, as Keras prints them).
    pub train: Metrics,
    /// Validation metrics.
    pub validation: Metrics,
    /// Wall seconds (of this process, for an epoch resumed midway).
    pub seconds: f64,
    /// Training images per second.
    pub images_per_second: f64,
    /// Seconds the trainer waited for input.
    pub waited: f64,
}

/// What training reports as it goes.
#[derive(Debug, Clone, Copy)]
pub enum TrainEvent<'a> {
    /// Before the first step.
    Start {
        /// The run's description.
        info: &'a RunInfo,
        /// Steps per epoch.
        steps: u64,
        /// The epoch training starts in (from 1).
        epoch: u64,
        /// Steps of that epoch already done (a resumed run).
        step: u64,
        /// Where the class names came from.
        class_source: ClassSource,
    },
    /// After each training step.
    Step {
        /// Epoch, from 1.
        epoch: u64,
        /// Steps done in this epoch.
        step: u64,
        /// Steps per epoch.
        steps: u64,
        /// The epoch's running metrics.
        metrics: &'a Metrics,
        /// Training images per second in this epoch so far.
        images_per_second: f64,
        /// Seconds waited for input in this epoch so far.
        waited: f64,
    },
    /// After each epoch's validation.
    Epoch(&'a EpochLine),
}

/// How training ended.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The run's description.
    pub info: RunInfo,
    /// Stopped by [`TrainSettings::stop`], with a checkpoint at (epoch, step of that epoch).
    pub interrupted: Option<(u64, u64)>,
}

/// Converts decoded records to a batch for the model (all images must share one size).
pub fn to_batch(items: &[Decoded]) -> anyhow::Result<ImageBatch> {
    let side = items.first().map_or(0, |d| d.image.width as usize);
    if let Some(odd) = items
        .iter()
        .find(|d| d.image.width as usize != side || d.image.height as usize != side)
    {
        bail!(
            "images of different sizes in one batch ({}×{} and {side}×{side})",
            odd.image.width,
            odd.image.height
        );
    }
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    batch_to_f32(items, &mut pixels, &mut labels);
    Ok(ImageBatch {
        pixels,
        labels,
        side,
    })
}

/// The checkpoint folder of a run.
pub fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

/// The settings a resumed run continues with: the saved run's, with `epochs` from `given`.
fn resumed_settings(given: &TrainSettings) -> anyhow::Result<(TrainSettings, RunInfo)> {
    let info = RunInfo::load(&given.out)
        .with_context(|| format!("--resume: {} holds no run to resume", given.out.display()))?;
    let settings = TrainSettings {
        shards: info.shards.clone(),
        batch: info.batch,
        validation_fraction: info.validation_fraction,
        seed: info.seed,
        learning_rate: info.learning_rate,
        classes: Some(info.classes.clone()),
        compression: info.compression()?,
        ..given.clone()
    };
    Ok((settings, info))
}

/// Trains; `report` hears every step and epoch.
pub fn train(
    given: &TrainSettings,
    mut report: impl FnMut(TrainEvent<'_>),
) -> anyhow::Result<TrainOutcome> {
    let checkpoint = checkpoint_dir(&given.out);
    let (settings, previous) = if given.resume {
        if !has_checkpoint(&checkpoint) {
            bail!(
                "--resume: no checkpoint in {} (start the run without --resume)",
                checkpoint.display()
            );
        }
        let (settings, info) = resumed_settings(given)?;
        (settings, Some(info))
    } else {
        if given.out.join("run.json").exists() || has_checkpoint(&checkpoint) {
            bail!(
                "{} already holds a run: pass --resume to continue it, or choose another --out",
                given.out.display()
            );
        }
        (given.clone(), None)
    };
    let options = ReaderOptions::compression(settings.compression);
    let files = TfRecordSource::find(&settings.shards)
        .with_context(|| format!("cannot read {}", settings.shards.display()))?;
    if files.is_empty() {
        bail!("no .tfrec files in {}", settings.shards.display());
    }
    let (classes, class_source) = class_names(
        &settings.shards,
        &files,
        settings.classes.as_deref(),
        options,
    )?;
    let split = split_tfrecords(&files, settings.validation_fraction, settings.seed, options)?;
    let steps = split.counts.steps_per_epoch(settings.batch);
    if steps == 0 {
        bail!(
            "{} training records: fewer than one batch of {}",
            split.counts.train_records,
            settings.batch
        );
    }
    let paths = |source: &TfRecordSource| -> Vec<PathBuf> {
        source.files().iter().map(|f| f.path.clone()).collect()
    };
    let mut info = RunInfo {
        classes: classes.clone(),
        image_size: previous.as_ref().map_or(0, |p| p.image_size),
        shards: settings.shards.clone(),
        compression: settings.compression.to_string(),
        validation_files: paths(&split.validation),
        train_files: paths(&split.train),
        train_records: split.counts.train_records,
        validation_records: split.counts.validation_records,
        epochs_done: 0,
        seed: settings.seed,
        batch: settings.batch,
        validation_fraction: settings.validation_fraction,
        learning_rate: settings.learning_rate,
    };
    if let Some(previous) = &previous
        && (previous.train_files != info.train_files
            || previous.validation_files != info.validation_files
            || previous.train_records != info.train_records)
    {
        bail!(
            "--resume: the shards in {} changed since the run started (files or record counts)",
            settings.shards.display()
        );
    }

    let seed = settings.seed;
    let train_pipeline = split
        .train
        .parsed_pipeline(
            |plan| tutorial_plan(plan, seed, Repeat::Forever),
            decode_record,
        )
        .parallelism(settings.jobs)
        .deterministic(true)
        .batch(settings.batch, true);
    let validation_pipeline = split
        .validation
        .parsed_pipeline(|plan| plan.interleave(16, 1), decode_record)
        .parallelism(settings.jobs)
        .deterministic(true)
        .batch(settings.batch, false);

    let device = shardfeed_model::device(settings.device, true).map_err(anyhow::Error::msg)?;
    let (mut trainer, progress, mut batches) = if given.resume {
        let (trainer, progress) = Trainer::resume(&checkpoint, device)?;
        let state = ResumeState::from_bytes(&progress.data_state)
            .with_context(|| format!("{}: data position", checkpoint.display()))?;
        let batches = train_pipeline.iter_from(&state)?;
        (trainer, progress, batches)
    } else {
        std::fs::create_dir_all(&settings.out)
            .with_context(|| format!("cannot create {}", settings.out.display()))?;
        let trainer = Trainer::new(
            TrainConfig {
                classes: classes.len(),
                learning_rate: settings.learning_rate,
                seed,
            },
            device,
        );
        (trainer, Progress::default(), train_pipeline.iter())
    };
    info.epochs_done = progress.epochs_done;

    let metrics_path = settings.out.join("metrics.csv");
    let mut metrics_file = std::fs::OpenOptions::new()
        .create(true)
        .append(given.resume)
        .write(true)
        .truncate(!given.resume)
        .open(&metrics_path)
        .with_context(|| format!("cannot open {}", metrics_path.display()))?;
    if metrics_file.metadata()?.len() == 0 {
        writeln!(
            metrics_file,
            "epoch,loss,accuracy,val_loss,val_accuracy,seconds,images_per_second"
        )?;
    }

    report(TrainEvent::Start {
        info: &info,
        steps,
        epoch: progress.epochs_done + 1,
        step: progress.steps_in_epoch,
        class_source,
    });
    let stop_requested = || {
        settings
            .stop
            .as_ref()
            .is_some_and(|stop| stop.load(Ordering::SeqCst))
    };
    let mut first_step = progress.steps_in_epoch;
    let mut train = progress.epoch_metrics;
    for epoch in progress.epochs_done + 1..=settings.epochs {
        let started = Instant::now();
        let mut waited = 0.0;
        let mut images = 0u64;
        for step in first_step..steps {
            let waiting = Instant::now();
            let batch = batches.next().context("the training stream ended")??;
            waited += waiting.elapsed().as_secs_f64();
            let batch = to_batch(&batch.items)?;
            info.image_size = batch.side;
            train.add(trainer.step(&batch));
            images += batch.len() as u64;
            report(TrainEvent::Step {
                epoch,
                step: step + 1,
                steps,
                metrics: &train,
                images_per_second: images as f64 / started.elapsed().as_secs_f64().max(1e-9),
                waited,
            });
            if stop_requested() && step + 1 < steps {
                let progress = Progress {
                    epochs_done: epoch - 1,
                    steps_in_epoch: step + 1,
                    epoch_metrics: train,
                    data_state: batches.state().to_bytes().to_vec(),
                };
                save_run(&trainer, &info, &settings.out)?;
                trainer.save_checkpoint(&checkpoint, &progress)?;
                return Ok(TrainOutcome {
                    info,
                    interrupted: Some((epoch, step + 1)),
                });
            }
        }
        first_step = 0;
        let train_seconds = started.elapsed().as_secs_f64();
        let mut validation = Metrics::default();
        for batch in validation_pipeline.iter() {
            validation.add(trainer.evaluate(&to_batch(&batch?.items)?));
        }
        let line = EpochLine {
            epoch,
            train,
            validation,
            seconds: started.elapsed().as_secs_f64(),
            images_per_second: images as f64 / train_seconds.max(1e-9),
            waited,
        };
        // Without validation files the validation columns stay empty (not a made-up 0).
        let validation_columns = if validation.images == 0 {
            ",".to_string()
        } else {
            format!("{:.6},{:.6}", validation.loss(), validation.accuracy())
        };
        writeln!(
            metrics_file,
            "{},{:.6},{:.6},{validation_columns},{:.3},{:.1}",
            epoch,
            train.loss(),
            train.accuracy(),
            line.seconds,
            line.images_per_second
        )?;
        metrics_file.flush()?;
        info.epochs_done = epoch;
        save_run(&trainer, &info, &settings.out)?;
        let progress = Progress {
            epochs_done: epoch,
            steps_in_epoch: 0,
            epoch_metrics: Metrics::default(),
            data_state: batches.state().to_bytes().to_vec(),
        };
        trainer.save_checkpoint(&checkpoint, &progress)?;
        draw_curves(&metrics_path, &settings.out.join("curves.png"))?;
        report(TrainEvent::Epoch(&line));
        train = Metrics::default();
        if stop_requested() && epoch < settings.epochs {
            return Ok(TrainOutcome {
                info,
                interrupted: Some((epoch + 1, 0)),
            });
        }
    }
    Ok(TrainOutcome {
        info,
        interrupted: None,
    })
}

/// The model with its card (`model.bpk`, `model.json`) and `run.json`.
fn save_run(trainer: &Trainer, info: &RunInfo, out: &Path) -> anyhow::Result<()> {
    let card = ModelCard {
        classes: info.classes.clone(),
        image_size: info.image_size,
        preprocessing: PREPROCESSING.to_owned(),
    };
    save_model(trainer.model(), &card, out)?;
    let path = out.join("run.json");
    std::fs::write(&path, serde_json::to_vec_pretty(info)?)
        .with_context(|| format!("cannot write {}", path.display()))
}
