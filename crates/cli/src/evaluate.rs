//! `shardfeed evaluate`'s wiring: a saved run's validation files (`run.json`), one pass
//! (no repeat, no dropped remainder) through `shardfeed-dataset`'s validation pipeline, scored
//! by `shardfeed-model`'s [`Classifier`] into its [`Confusion`] matrix.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Serialize;
use shardfeed_dataset::run::{RunInfo, validation_pipeline};
use shardfeed_dataset::{Decoded, to_float_batch};
use shardfeed_input_pipeline::Parallelism;
use shardfeed_input_pipeline::tfrecord::TfRecordSource;
use shardfeed_model::evaluate::{ClassAccuracy, Confusion, Evaluation as Figures};
use shardfeed_model::{Classifier, DeviceKind, ImageBatch};
use shardfeed_record_format::ReaderOptions;

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvaluateSettings {
    /// The run folder (`model.bpk`, `model.json`, `run.json`).
    pub model: PathBuf,
    /// Read the run's validation files from this folder instead of where training found them.
    pub shards: Option<PathBuf>,
    /// Images per forward pass.
    pub batch: usize,
    /// Decode threads.
    pub jobs: Parallelism,
    /// Where the model runs.
    pub device: DeviceKind,
}

/// What `evaluate` measured, and on which files.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// The validation files read.
    pub files: Vec<PathBuf>,
    /// Images classified.
    pub images: u64,
    /// Classified correctly.
    pub correct: u64,
    /// `correct / images`.
    pub accuracy: f64,
    /// Per class, in index order.
    pub per_class: Vec<ClassAccuracy>,
    /// `confusion[observed][predicted]` image counts.
    pub confusion: Vec<Vec<u64>>,
    /// Class names, in index order.
    pub classes: Vec<String>,
}

/// Classifies the validation records of the run in `settings.model`, calling `each` with the
/// record and its class probabilities, in file order; `each` returns `false` to stop early.
pub fn classify_validation(
    settings: &EvaluateSettings,
    mut each: impl FnMut(&Decoded, &[f32]) -> bool,
) -> anyhow::Result<(Figures, Vec<PathBuf>)> {
    let info = RunInfo::load(&settings.model)?;
    let device = shardfeed_model::device(settings.device, false).map_err(anyhow::Error::msg)?;
    let classifier = Classifier::load(&settings.model, device)?;
    let files = info.validation_files_in(settings.shards.as_deref());
    if files.is_empty() {
        bail!("the run has no validation files (it was trained with --val-split 0?)");
    }
    if let Some(missing) = files.iter().find(|f| !f.exists()) {
        bail!(
            "{} is not there (the run's validation files were moved?): pass --shards DIR with the folder that holds them now",
            missing.display()
        );
    }
    let source = TfRecordSource::open(&files, ReaderOptions::compression(info.compression()?))
        .with_context(|| {
            format!(
                "cannot open the validation files of {}",
                settings.model.display()
            )
        })?;
    let pipeline = validation_pipeline(source, settings.batch, settings.jobs);
    let size = classifier.card().image_size();
    let mut confusion = Confusion::new(info.classes.clone());
    for batch in pipeline.iter() {
        let batch = batch?;
        if let Some(odd) = batch
            .items
            .iter()
            .find(|d| d.image.width as usize != size || d.image.height as usize != size)
        {
            bail!(
                "a {}×{} image in the validation files: the model takes {size}×{size}",
                odd.image.width,
                odd.image.height
            );
        }
        let floats = to_float_batch(&batch.items)?;
        let input = ImageBatch {
            pixels: floats.pixels,
            labels: floats.labels,
            side: floats.side,
        };
        for (item, p) in batch.items.iter().zip(classifier.probabilities(&input)) {
            confusion.add(item.class, &p)?;
            if !each(item, &p) {
                return Ok((confusion.finish(), files));
            }
        }
    }
    Ok((confusion.finish(), files))
}

/// Evaluates the run in `settings.model` on its validation files.
pub fn evaluate(settings: &EvaluateSettings) -> anyhow::Result<Evaluation> {
    let (figures, files) = classify_validation(settings, |_, _| true)?;
    Ok(Evaluation {
        files,
        images: figures.images,
        correct: figures.correct,
        accuracy: figures.accuracy,
        per_class: figures.per_class,
        confusion: figures.confusion,
        classes: figures.classes,
    })
}
