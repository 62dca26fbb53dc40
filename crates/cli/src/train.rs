//! `shardfeed train`'s wiring: the shard folder opened for training by `shardfeed-dataset`
//! ([`TrainingData`]: split, pipelines, `run.json`), trained by `shardfeed-model`'s [`Fit`]
//! (epochs, validation, `metrics.csv`, model, checkpoints), `curves.png` after each epoch,
//! and the resume rules (a resumed run keeps its own settings).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use shardfeed_dataset::classes::ClassSource;
use shardfeed_dataset::folder::{Location, ShardFolder};
use shardfeed_dataset::run::{DataSettings, RUN_FILE, RunInfo, TrainingData};
use shardfeed_dataset::stream::RecordFormat;
use shardfeed_dataset::{Decoded, to_float_batch};
use shardfeed_input_pipeline::{Parallelism, PipelineIter, ResumeState, TuningHandle};
use shardfeed_model::fast::Precision;
use shardfeed_model::fit::{
    BoxError, EpochRow, Fit, FitData, FitError, FitObserver, Saved, StepReport, check_run_folder,
};
use shardfeed_model::{DeviceKind, ImageBatch, TrainConfig};
use shardfeed_record_format::Compression;

use crate::plot::draw_curves;

/// The training curves a run draws after each epoch.
pub const CURVES_FILE: &str = "curves.png";

/// What to train and how (SPEC §4 defaults).
#[derive(Debug, Clone)]
pub struct TrainSettings {
    /// The shard folder (local, or in object storage).
    pub shards: Location,
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
    /// Replace a run already in `out`.
    pub overwrite: bool,
    /// `shards` already listed (used where it is that folder and the run is not resumed).
    pub folder: Option<ShardFolder>,
    /// Where the model runs.
    pub device: DeviceKind,
    /// Set (e.g. by Ctrl-C) to stop after the current step with a checkpoint.
    pub stop: Option<Arc<AtomicBool>>,
    /// Read the shard files as they are, even where they disagree with `manifest.json`.
    pub ignore_manifest: bool,
    /// The records' feature names and the square side images are made into.
    pub format: RecordFormat,
    /// RandomResizedCrop + flip on the training batches (`--augment`).
    pub augment: bool,
    /// The CPU kernels' arithmetic (`--precision`).
    pub precision: Precision,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            shards: Location::local("shards"),
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
            overwrite: false,
            folder: None,
            device: DeviceKind::Cpu,
            stop: None,
            ignore_manifest: false,
            format: RecordFormat::default(),
            augment: false,
            precision: Precision::F32,
        }
    }
}

/// One epoch's figures.
pub type EpochLine = EpochRow;

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
        /// Why images are resized as they are read, to say once.
        note: Option<&'a str>,
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
        metrics: &'a shardfeed_model::Metrics,
        /// Training images per second in this epoch so far.
        images_per_second: f64,
        /// Seconds waited for input in this epoch so far.
        waited: f64,
    },
    /// After each epoch's validation.
    Epoch(&'a EpochLine),
    /// After each epoch: what the training pipeline's tuner chose so far, and why.
    Autotune(&'a shardfeed_input_pipeline::Tuning),
}

/// How training ended.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The run's description.
    pub info: RunInfo,
    /// Stopped by [`TrainSettings::stop`], with a checkpoint at (epoch, step of that epoch).
    pub interrupted: Option<(u64, u64)>,
}

/// The checkpoint folder of a run.
pub fn checkpoint_dir(out: &std::path::Path) -> PathBuf {
    out.join(shardfeed_model::fit::CHECKPOINT_DIR)
}

/// The settings a resumed run continues with: the saved run's, with `epochs` from `given`.
fn resumed_settings(given: &TrainSettings) -> anyhow::Result<(TrainSettings, RunInfo)> {
    let info = RunInfo::load(&given.out)
        .with_context(|| format!("--resume: {} holds no run to resume", given.out.display()))?;
    let settings = TrainSettings {
        shards: info.shards_location()?,
        batch: info.batch,
        validation_fraction: info.validation_fraction,
        seed: info.seed,
        learning_rate: info.learning_rate,
        classes: Some(info.classes.clone()),
        compression: info.compression()?,
        // The side the model was built for (records of varying size are made into it).
        format: RecordFormat {
            keys: given.format.keys.clone().or_else(|| info.keys()),
            size: (info.image_size > 0).then_some(info.image_size as u32),
        },
        augment: info.augment,
        precision: match info.precision.as_deref() {
            None => Precision::F32,
            Some(name) => name
                .parse()
                .map_err(|e: String| anyhow::anyhow!("--resume: run.json: {e}"))?,
        },
        ..given.clone()
    };
    Ok((settings, info))
}

/// The dataset's pipelines as the model's [`FitData`].
struct ShardData {
    train: PipelineIter<Decoded>,
    validation: shardfeed_input_pipeline::Pipeline<Decoded>,
}

/// Decoded records as the model's batch (`f32` through the dataset's one `/255`).
pub(crate) fn to_image_batch(items: &[Decoded]) -> Result<ImageBatch, BoxError> {
    let batch = to_float_batch(items)?;
    Ok(ImageBatch {
        pixels: batch.pixels,
        labels: batch.labels,
        side: batch.side,
    })
}

impl FitData for ShardData {
    fn next_batch(&mut self) -> Option<Result<ImageBatch, BoxError>> {
        let batch = self.train.next()?;
        Some(
            batch
                .map_err(BoxError::from)
                .and_then(|b| to_image_batch(&b.items)),
        )
    }

    fn position(&self) -> Vec<u8> {
        self.train.state().to_bytes().to_vec()
    }

    fn validation(&mut self) -> Box<dyn Iterator<Item = Result<ImageBatch, BoxError>> + '_> {
        Box::new(self.validation.iter().map(|batch| {
            batch
                .map_err(BoxError::from)
                .and_then(|b| to_image_batch(&b.items))
        }))
    }
}

/// Passes the model's reports on as [`TrainEvent`]s and saves `run.json` and `curves.png`.
struct Reporter<'a, F> {
    info: &'a mut RunInfo,
    out: PathBuf,
    report: F,
    tuning: TuningHandle,
}

impl<F: FnMut(TrainEvent<'_>)> FitObserver for Reporter<'_, F> {
    fn step(&mut self, r: &StepReport<'_>) {
        (self.report)(TrainEvent::Step {
            epoch: r.epoch,
            step: r.step,
            steps: r.steps,
            metrics: r.metrics,
            images_per_second: r.images_per_second,
            waited: r.waited,
        });
    }

    fn saved(&mut self, saved: &Saved) -> Result<(), BoxError> {
        self.info.epochs_done = saved.epochs_done;
        self.info.image_size = saved.image_size;
        self.info.save(&self.out)?;
        Ok(())
    }

    fn epoch(&mut self, row: &EpochRow) {
        let metrics = self.out.join(shardfeed_model::fit::METRICS_FILE);
        if let Err(error) = draw_curves(&metrics, &self.out.join(CURVES_FILE)) {
            eprintln!("shardfeed: warning: curves.png not drawn: {error:#}");
        }
        (self.report)(TrainEvent::Epoch(row));
        if let Some(tuning) = self.tuning.get() {
            (self.report)(TrainEvent::Autotune(&tuning));
        }
    }
}

/// Trains; `report` hears every step and epoch.
pub fn train(
    given: &TrainSettings,
    mut report: impl FnMut(TrainEvent<'_>),
) -> anyhow::Result<TrainOutcome> {
    let checkpoint = checkpoint_dir(&given.out);
    // Before `run.json` is read for the resumed settings.
    check_run_folder(
        &given.out,
        given.resume,
        given.overwrite,
        &[RUN_FILE, CURVES_FILE],
    )
    .map_err(fit_error)?;
    let (settings, previous) = if given.resume {
        let (settings, info) = resumed_settings(given)?;
        (settings, Some(info))
    } else {
        (given.clone(), None)
    };
    // Stored absolute in run.json, so `evaluate --model RUN` works from any folder.
    let shards = settings.shards.absolute();
    let folder = match &given.folder {
        Some(folder) if !given.resume && folder.location() == &shards => folder.clone(),
        _ => ShardFolder::open(&shards)?,
    };
    let data = TrainingData::open_in(
        &folder,
        &DataSettings {
            shards,
            batch: settings.batch,
            validation_fraction: settings.validation_fraction,
            seed: settings.seed,
            jobs: settings.jobs,
            classes: settings.classes.clone(),
            compression: settings.compression,
            learning_rate: settings.learning_rate,
            ignore_manifest: settings.ignore_manifest,
            format: settings.format.clone(),
            augment: settings.augment,
        },
    )?;
    let mut info = data.info.clone();
    info.epochs = Some(settings.epochs);
    if settings.precision != Precision::F32 {
        if settings.device != DeviceKind::Cpu {
            anyhow::bail!(
                "--precision {} is for the CPU kernels; with --device cuda the model trains in f32",
                settings.precision.name(),
            );
        }
        info.precision = Some(settings.precision.name().to_owned());
    }
    shardfeed_model::fast::set_precision(settings.precision).map_err(anyhow::Error::msg)?;
    if let Some(previous) = &previous {
        info.image_size = previous.image_size;
        previous
            .check_same_data(&info)
            .map_err(|e| anyhow::anyhow!("--resume: {e}"))?;
    }
    let device = shardfeed_model::device(settings.device, true).map_err(anyhow::Error::msg)?;
    let fit = Fit::new(
        &settings.out,
        info.classes.clone(),
        settings.epochs,
        data.steps_per_epoch,
    )
    .overwrite(settings.overwrite);
    let fit = match &settings.stop {
        Some(stop) => fit.stop_flag(stop.clone()),
        None => fit,
    };
    let config = TrainConfig {
        classes: info.classes.len(),
        learning_rate: settings.learning_rate,
        seed: settings.seed,
    };
    let (trainer, progress) = fit.start(given.resume, config, device).map_err(fit_error)?;
    let train = if given.resume {
        let state = ResumeState::from_bytes(&progress.data_state)
            .with_context(|| format!("{}: data position", checkpoint.display()))?;
        data.train.iter_from(&state)?
    } else {
        data.train.iter()
    };
    let tuning = train.tuning_handle();
    let mut source = ShardData {
        train,
        validation: data.validation,
    };
    info.epochs_done = progress.epochs_done;
    report(TrainEvent::Start {
        info: &info,
        steps: data.steps_per_epoch,
        epoch: progress.epochs_done + 1,
        step: progress.steps_in_epoch,
        class_source: data.class_source,
        note: data.note.as_deref(),
    });
    let mut reporter = Reporter {
        info: &mut info,
        out: settings.out.clone(),
        report,
        tuning,
    };
    let outcome = fit
        .run(trainer, progress, &mut source, &mut reporter)
        .map_err(fit_error)?;
    info.epochs_done = outcome.epochs_done;
    if outcome.image_size != 0 {
        info.image_size = outcome.image_size;
    }
    Ok(TrainOutcome {
        info,
        interrupted: outcome.interrupted,
    })
}

/// A fit error, with the flag that fixes it where there is one.
fn fit_error(error: FitError) -> anyhow::Error {
    match error {
        FitError::AlreadyRun { folder, found } => anyhow::anyhow!(
            "{} already holds a run ({found}): pass --resume to continue it, --overwrite to replace it, or choose another --out",
            folder.display()
        ),
        FitError::NoCheckpoint(dir) => anyhow::anyhow!(
            "--resume: no checkpoint in {} (start the run without --resume)",
            dir.display()
        ),
        other => other.into(),
    }
}
