//! `shardfeed train`: the validation split by files, the read pipeline feeding the model crate's
//! trainer, a Keras-like line per epoch, `metrics.csv`, and the model saved after each epoch
//! with what `evaluate` and `predict` need (`run.json`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use shardfeed_input_pipeline::split::split_tfrecords;
use shardfeed_input_pipeline::tfrecord::TfRecordSource;
use shardfeed_input_pipeline::{Parallelism, Repeat};
use shardfeed_model::burn::module::Module;
use shardfeed_model::{ImageBatch, Metrics, TrainConfig, Trainer, cpu_device};
use shardfeed_record_format::ReaderOptions;

use crate::stream::{Decoded, batch_to_f32, decode_record, tutorial_plan};

/// What to train and how (SPEC §4 defaults).
#[derive(Debug, Clone)]
pub struct TrainSettings {
    /// The shard folder.
    pub shards: PathBuf,
    /// Epochs.
    pub epochs: u64,
    /// Batch size.
    pub batch: usize,
    /// Fraction of the shard files used for validation.
    pub validation_fraction: f64,
    /// Seed of the split, the order and the weights.
    pub seed: u64,
    /// Adam's learning rate.
    pub learning_rate: f64,
    /// The run folder (model, metrics).
    pub out: PathBuf,
    /// Decode threads.
    pub jobs: Parallelism,
    /// Class names, when the shards have no manifest.
    pub classes: Option<Vec<String>>,
}

/// The run's description, saved beside the model (`run.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    /// Class names in index order.
    pub classes: Vec<String>,
    /// Image side the model was trained on.
    pub image_size: usize,
    /// The validation shard files.
    pub validation_files: Vec<PathBuf>,
    /// The training shard files.
    pub train_files: Vec<PathBuf>,
    /// Epochs completed.
    pub epochs_done: u64,
    /// Seed.
    pub seed: u64,
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
    /// Wall seconds.
    pub seconds: f64,
    /// Training images per second.
    pub images_per_second: f64,
    /// Seconds the trainer waited for input.
    pub waited: f64,
}

/// Class names: `manifest.json`'s, or the given ones.
fn class_names(shards: &Path, given: Option<&Vec<String>>) -> anyhow::Result<Vec<String>> {
    if let Some(names) = given {
        return Ok(names.clone());
    }
    let manifest = shards.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).with_context(|| {
        format!(
            "cannot read {} (pass --classes for shards without a manifest)",
            manifest.display()
        )
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("invalid {}", manifest.display()))?;
    let names: Vec<String> = value["classes"]
        .as_array()
        .with_context(|| format!("no classes in {}", manifest.display()))?
        .iter()
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect();
    if names.len() < 2 {
        bail!(
            "{} lists {} classes: at least 2 are needed",
            manifest.display(),
            names.len()
        );
    }
    Ok(names)
}

/// Converts decoded records to a batch for the model (all images must share one size).
fn to_batch(items: &[Decoded]) -> anyhow::Result<ImageBatch> {
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

/// Trains; `report` is called after each epoch.
pub fn train(
    settings: &TrainSettings,
    mut report: impl FnMut(&EpochLine),
) -> anyhow::Result<RunInfo> {
    let classes = class_names(&settings.shards, settings.classes.as_ref())?;
    let files = TfRecordSource::find(&settings.shards)?;
    let split = split_tfrecords(
        &files,
        settings.validation_fraction,
        settings.seed,
        ReaderOptions::default(),
    )?;
    let steps = split.counts.steps_per_epoch(settings.batch);
    if steps == 0 {
        bail!(
            "{} training records: fewer than one batch of {}",
            split.counts.train_records,
            settings.batch
        );
    }
    let train_files: Vec<PathBuf> = split.train.files().iter().map(|f| f.path.clone()).collect();
    let validation_files: Vec<PathBuf> = split
        .validation
        .files()
        .iter()
        .map(|f| f.path.clone())
        .collect();
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

    std::fs::create_dir_all(&settings.out)
        .with_context(|| format!("cannot create {}", settings.out.display()))?;
    let metrics_path = settings.out.join("metrics.csv");
    let mut metrics_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)?;
    if metrics_file.metadata()?.len() == 0 {
        writeln!(
            metrics_file,
            "epoch,loss,accuracy,val_loss,val_accuracy,seconds,images_per_second"
        )?;
    }
    let mut trainer = Trainer::new(
        TrainConfig {
            classes: classes.len(),
            learning_rate: settings.learning_rate,
            seed,
        },
        cpu_device(),
    );
    let mut batches = train_pipeline.iter();
    let mut info = RunInfo {
        classes: classes.clone(),
        image_size: 0,
        validation_files,
        train_files,
        epochs_done: 0,
        seed,
    };
    for epoch in 1..=settings.epochs {
        let started = Instant::now();
        let mut train = Metrics::default();
        let mut waited = 0.0;
        for _ in 0..steps {
            let waiting = Instant::now();
            let batch = batches.next().context("the training stream ended")??;
            waited += waiting.elapsed().as_secs_f64();
            let batch = to_batch(&batch.items)?;
            info.image_size = batch.side;
            train.add(trainer.step(&batch));
        }
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
            images_per_second: train.images as f64 / train_seconds.max(1e-9),
            waited,
        };
        writeln!(
            metrics_file,
            "{},{:.6},{:.6},{:.6},{:.6},{:.3},{:.1}",
            epoch,
            train.loss(),
            train.accuracy(),
            validation.loss(),
            validation.accuracy(),
            line.seconds,
            line.images_per_second
        )?;
        trainer
            .model()
            .clone()
            .save_file(settings.out.join("model.bpk"))
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot save {}: {e:?}",
                    settings.out.join("model.bpk").display()
                )
            })?;
        info.epochs_done = epoch;
        std::fs::write(
            settings.out.join("run.json"),
            serde_json::to_vec_pretty(&info)?,
        )?;
        report(&line);
    }
    Ok(info)
}
