//! `shardfeed predict`'s wiring: JPEG files prepared by `shardfeed-dataset` exactly as the
//! model's card says ([`images::prepared_images`]: decode, shorter side → the model's size,
//! centre crop, /255 — not the tutorial's squash and double /255), classified by
//! `shardfeed-model`'s [`Classifier::predict`]. Unusable images are counted and reported, or
//! fatal with `strict`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use shardfeed_dataset::images;
use shardfeed_image_prep::RgbImage;
use shardfeed_input_pipeline::Parallelism;
use shardfeed_model::fast::Precision;
use shardfeed_model::{Classifier, DeviceKind, ImageBatch};

use shardfeed_dataset::folder::Location;
pub use shardfeed_dataset::images::list_images;

/// What to classify and how.
#[derive(Debug, Clone)]
pub struct PredictSettings {
    /// The run folder (`model.bpk`, `model.json`).
    pub model: PathBuf,
    /// Folders (their `*.jpg`/`*.jpeg`, sorted) and files, local or in object storage.
    pub inputs: Vec<Location>,
    /// Images per forward pass.
    pub batch: usize,
    /// Decode threads.
    pub jobs: Parallelism,
    /// Where the model runs.
    pub device: DeviceKind,
    /// The CPU kernels' arithmetic (whatever the model was trained in: weights are `f32`).
    pub precision: Precision,
    /// Stop at the first unusable image instead of skipping it.
    pub strict: bool,
}

/// One image's prediction.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// The file.
    pub file: PathBuf,
    /// The predicted class index.
    pub class: usize,
    /// Its name.
    pub label: String,
    /// Its probability.
    pub probability: f32,
    /// Every class's probability.
    pub probabilities: Vec<f32>,
    /// The preprocessed image the model saw.
    pub image: Arc<RgbImage>,
}

/// What `predict` did.
#[derive(Debug, Clone, Default)]
pub struct PredictSummary {
    /// Images classified.
    pub predicted: u64,
    /// Images skipped, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// Class names.
    pub classes: Vec<String>,
}

/// Classifies every image, calling `each` in file order.
pub fn predict(
    settings: &PredictSettings,
    mut each: impl FnMut(&Prediction) -> anyhow::Result<()>,
) -> anyhow::Result<PredictSummary> {
    let device = shardfeed_model::device(settings.device, false).map_err(anyhow::Error::msg)?;
    shardfeed_model::fast::set_precision(settings.precision).map_err(anyhow::Error::msg)?;
    let classifier = Classifier::load(&settings.model, device)?;
    let preprocessing = classifier.card().preprocessing;
    let classes = classifier.card().classes.clone();
    let files = list_images(&settings.inputs)?;
    let pipeline = images::prepared_images(files, preprocessing, settings.batch, settings.jobs);
    let mut summary = PredictSummary {
        classes: classes.clone(),
        ..PredictSummary::default()
    };
    for batch in pipeline.iter() {
        let batch = batch?;
        let mut good = Vec::with_capacity(batch.items.len());
        for (path, image) in batch.items {
            match image {
                Ok(image) => good.push((path, Arc::new(image))),
                Err(reason) if settings.strict => bail!("{}: {reason}", path.display()),
                Err(reason) => summary.skipped.push((path, reason)),
            }
        }
        if good.is_empty() {
            continue;
        }
        let side = preprocessing.size as usize;
        let mut pixels = Vec::with_capacity(good.len() * side * side * 3);
        for (_, image) in &good {
            preprocessing.extend_f32(&image.pixels, &mut pixels);
        }
        let input = ImageBatch {
            pixels,
            labels: vec![0; good.len()],
            side,
        };
        for ((file, image), p) in good.into_iter().zip(classifier.predict(&input)) {
            each(&Prediction {
                file,
                class: p.class,
                label: classes[p.class].clone(),
                probability: p.probability,
                probabilities: p.probabilities,
                image,
            })?;
            summary.predicted += 1;
        }
    }
    Ok(summary)
}
