//! `shardfeed evaluate`: a saved run's validation files, one pass (no repeat, no dropped
//! remainder), through the saved model: accuracy, per-class accuracy and the confusion matrix.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;
use shardfeed_input_pipeline::Parallelism;
use shardfeed_input_pipeline::tfrecord::TfRecordSource;
use shardfeed_model::{Classifier, DeviceKind, predicted};
use shardfeed_record_format::ReaderOptions;

use crate::stream::{Decoded, decode_record};
use crate::train::{RunInfo, to_batch};

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

/// One class's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ClassAccuracy {
    /// The class name.
    pub class: String,
    /// Validation images of this class.
    pub images: u64,
    /// Of those, classified correctly.
    pub correct: u64,
    /// `correct / images` (0 when there are none).
    pub accuracy: f64,
}

/// What `evaluate` measured.
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

/// The run's validation files, moved to `shards` when given.
pub fn validation_files(info: &RunInfo, shards: Option<&Path>) -> anyhow::Result<Vec<PathBuf>> {
    let files: Vec<PathBuf> = match shards {
        None => info.validation_files.clone(),
        Some(dir) => info
            .validation_files
            .iter()
            .map(|f| dir.join(f.file_name().unwrap_or_default()))
            .collect(),
    };
    if files.is_empty() {
        bail!("the run has no validation files (it was trained with --val-split 0?)");
    }
    Ok(files)
}

/// Classifies every validation record of the run in `settings.model`, calling `each` with the
/// record and its class probabilities, in file order; `each` returns `false` to stop early.
pub fn classify_validation(
    settings: &EvaluateSettings,
    mut each: impl FnMut(&Decoded, &[f32]) -> bool,
) -> anyhow::Result<(RunInfo, Vec<PathBuf>)> {
    let info = RunInfo::load(&settings.model)?;
    let device = shardfeed_model::device(settings.device, false).map_err(anyhow::Error::msg)?;
    let classifier = Classifier::load(&settings.model, device)?;
    let files = validation_files(&info, settings.shards.as_deref())?;
    let source = TfRecordSource::open(&files, ReaderOptions::compression(info.compression()?))
        .with_context(|| {
            format!(
                "cannot open the validation files of {}",
                settings.model.display()
            )
        })?;
    let size = classifier.card().image_size;
    let pipeline = source
        .parsed_pipeline(|plan| plan.interleave(16, 1), decode_record)
        .parallelism(settings.jobs)
        .deterministic(true)
        .batch(settings.batch.max(1), false);
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
        let probabilities = classifier.probabilities(&to_batch(&batch.items)?);
        for (item, p) in batch.items.iter().zip(&probabilities) {
            if !each(item, p) {
                return Ok((info, files));
            }
        }
    }
    Ok((info, files))
}

/// Evaluates the run in `settings.model` on its validation files.
pub fn evaluate(settings: &EvaluateSettings) -> anyhow::Result<Evaluation> {
    let mut confusion: Vec<Vec<u64>> = Vec::new();
    let mut out_of_range = None;
    let (info, files) = classify_validation(settings, |item, p| {
        let k = p.len();
        if confusion.is_empty() {
            confusion = vec![vec![0; k]; k];
        }
        let observed = item.class;
        if observed < 0 || observed as usize >= k {
            out_of_range = Some(observed);
            return false;
        }
        confusion[observed as usize][predicted(p).0] += 1;
        true
    })?;
    if let Some(class) = out_of_range {
        bail!(
            "a validation record has class {class}, but the model knows {} classes",
            info.classes.len()
        );
    }
    if confusion.is_empty() {
        confusion = vec![vec![0; info.classes.len()]; info.classes.len()];
    }
    let images: u64 = confusion.iter().flatten().sum();
    let correct: u64 = (0..confusion.len()).map(|i| confusion[i][i]).sum();
    let per_class = info
        .classes
        .iter()
        .enumerate()
        .map(|(i, class)| {
            let images: u64 = confusion[i].iter().sum();
            ClassAccuracy {
                class: class.clone(),
                images,
                correct: confusion[i][i],
                accuracy: confusion[i][i] as f64 / images.max(1) as f64,
            }
        })
        .collect();
    Ok(Evaluation {
        files,
        images,
        correct,
        accuracy: correct as f64 / images.max(1) as f64,
        per_class,
        confusion,
        classes: info.classes,
    })
}
