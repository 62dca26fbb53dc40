//! `shardfeed evaluate`'s wiring: a saved run's validation files (`run.json`), one pass
//! (no repeat, no dropped remainder) through `shardfeed-dataset`'s validation pipeline, scored
//! by `shardfeed-model`'s [`evaluate`](shardfeed_model::evaluate::evaluate).

use std::cell::RefCell;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Serialize;
use shardfeed_dataset::Decoded;
use shardfeed_dataset::folder::Location;
use shardfeed_dataset::run::{RunInfo, validation_pipeline};
use shardfeed_dataset::stream::RecordFormat;
use shardfeed_input_pipeline::Parallelism;
use shardfeed_model::evaluate::Evaluation as Figures;
use shardfeed_model::fast::Precision;
use shardfeed_model::{Classifier, DeviceKind, ImageBatch};
use shardfeed_record_format::ExampleKeys;

use crate::train::to_image_batch;

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvaluateSettings {
    /// The run folder (`model.bpk`, `model.json`, `run.json`).
    pub model: PathBuf,
    /// Read the run's validation files from this folder instead of where training found them.
    pub shards: Option<Location>,
    /// Where the image and class are in each record (`None`: detected).
    pub keys: Option<ExampleKeys>,
    /// Images per forward pass.
    pub batch: usize,
    /// Decode threads.
    pub jobs: Parallelism,
    /// Where the model runs.
    pub device: DeviceKind,
    /// The CPU kernels' arithmetic (whatever the model was trained in: weights are `f32`).
    pub precision: Precision,
}

/// What `evaluate` measured, and on which files (`--json` prints it: `files`, then the
/// model crate's figures).
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// The validation files read.
    pub files: Vec<PathBuf>,
    /// Accuracy, per class, the confusion matrix and the class names.
    #[serde(flatten)]
    pub figures: Figures,
}

/// Classifies the validation records of the run in `settings.model`, calling `each` with the
/// record and its class probabilities, in file order; `each` returns `false` to stop early.
pub fn classify_validation(
    settings: &EvaluateSettings,
    mut each: impl FnMut(&Decoded, &[f32]) -> bool,
) -> anyhow::Result<(Figures, Vec<PathBuf>)> {
    let info = RunInfo::load(&settings.model)?;
    let device = shardfeed_model::device(settings.device, false).map_err(anyhow::Error::msg)?;
    shardfeed_model::fast::set_precision(settings.precision).map_err(anyhow::Error::msg)?;
    let classifier = Classifier::load(&settings.model, device)?;
    let (files, source) = info
        .open_validation(settings.shards.as_ref())
        .with_context(|| {
            format!(
                "cannot open the validation files of {}",
                settings.model.display()
            )
        })?;
    let classes = Some(info.classes.len() as u64);
    let size = classifier.card().image_size();
    // Records of another size (varying-size shards) are made into the model's square.
    let format = RecordFormat {
        keys: settings.keys.clone().or_else(|| info.keys()),
        size: Some(size as u32),
    };
    let pipeline = validation_pipeline(source, &format, classes, settings.batch, settings.jobs)?;
    // The batch being scored, and the index of its first record: `evaluate` pulls a batch
    // only after it has reported every image of the one before, so `each` finds its record
    // here without the images of the whole pass being kept.
    let current: RefCell<(usize, Vec<Decoded>)> = RefCell::new((0, Vec::new()));
    let mut first = 0;
    let batches = pipeline.iter().map(|batch| -> anyhow::Result<ImageBatch> {
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
        let input = to_image_batch(&batch.items).map_err(anyhow::Error::from_boxed)?;
        let len = batch.items.len();
        *current.borrow_mut() = (first, batch.items);
        first += len;
        Ok(input)
    });
    let figures = shardfeed_model::evaluate::evaluate(&classifier, batches, |index, _, p| {
        let current = current.borrow();
        each(&current.1[index - current.0], p)
    })?;
    Ok((figures, files))
}

/// Evaluates the run in `settings.model` on its validation files.
pub fn evaluate(settings: &EvaluateSettings) -> anyhow::Result<Evaluation> {
    let (figures, files) = classify_validation(settings, |_, _| true)?;
    Ok(Evaluation { files, figures })
}
