//! `shardfeed predict`: classifies JPEG files with a saved model, with exactly the training
//! preprocessing (SPEC §5: decode, shorter side → the model's size, centre crop, /255 — not
//! the tutorial's squash and double /255). Unusable images are counted and reported, or fatal
//! with `strict`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use shardfeed_image_prep::{DecodeOptions, Layout, Preparer, RgbImage, is_jpeg_name, to_tensor};
use shardfeed_input_pipeline::{BoxError, Parallelism, Pipeline};
use shardfeed_model::{Classifier, DeviceKind, ImageBatch, predicted};

/// What to classify and how.
#[derive(Debug, Clone)]
pub struct PredictSettings {
    /// The run folder (`model.bpk`, `model.json`).
    pub model: PathBuf,
    /// Folders (their `*.jpg`/`*.jpeg`, sorted) and files.
    pub inputs: Vec<PathBuf>,
    /// Images per forward pass.
    pub batch: usize,
    /// Decode threads.
    pub jobs: Parallelism,
    /// Where the model runs.
    pub device: DeviceKind,
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

/// The JPEG files of `inputs`: folders' `*.jpg`/`*.jpeg` (sorted by name), files as given.
pub fn list_images(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .with_context(|| format!("cannot read {}", input.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_jpeg_name(p))
                .collect();
            found.sort();
            files.extend(found);
        } else if input.exists() {
            files.push(input.clone());
        } else {
            bail!("{}: no such file or folder", input.display());
        }
    }
    if files.is_empty() {
        bail!("no .jpg or .jpeg files in {:?}", inputs);
    }
    Ok(files)
}

thread_local! {
    static PREPARER: std::cell::RefCell<Option<(u32, Preparer)>> =
        const { std::cell::RefCell::new(None) };
}

/// Reads and preprocesses one file as training did (`Err`: why it is unusable).
pub fn preprocess(path: &Path, size: u32) -> Result<RgbImage, String> {
    let jpeg = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    PREPARER.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().is_none_or(|(s, _)| *s != size) {
            let preparer =
                Preparer::new(size, 95, DecodeOptions::default()).map_err(|e| e.to_string())?;
            *cell = Some((size, preparer));
        }
        let (_, preparer) = cell.as_mut().expect("set just above");
        preparer.resize_and_crop(&jpeg).map_err(|e| e.to_string())
    })
}

/// Classifies every image, calling `each` in file order.
pub fn predict(
    settings: &PredictSettings,
    mut each: impl FnMut(&Prediction) -> anyhow::Result<()>,
) -> anyhow::Result<PredictSummary> {
    let device = shardfeed_model::device(settings.device, false).map_err(anyhow::Error::msg)?;
    let classifier = Classifier::load(&settings.model, device)?;
    let classes = classifier.card().classes.clone();
    let size = u32::try_from(classifier.card().image_size).context("image size")?;
    let files = list_images(&settings.inputs)?;
    let pipeline = Pipeline::from_items(files)
        .map(move |path: PathBuf| {
            let image = preprocess(&path, size);
            Ok::<_, BoxError>((path, image))
        })
        .parallelism(settings.jobs)
        .deterministic(true)
        .batch(settings.batch.max(1), false);
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
        let side = size as usize;
        let mut pixels = Vec::with_capacity(good.len() * side * side * 3);
        for (_, image) in &good {
            pixels.extend(to_tensor(image, Layout::Hwc));
        }
        let input = ImageBatch {
            pixels,
            labels: vec![0; good.len()],
            side,
        };
        for ((file, image), probabilities) in good.into_iter().zip(classifier.probabilities(&input))
        {
            let (class, probability) = predicted(&probabilities);
            each(&Prediction {
                file,
                class,
                label: classes[class].clone(),
                probability,
                probabilities,
                image,
            })?;
            summary.predicted += 1;
        }
    }
    Ok(summary)
}

/// Quotes a CSV field when it needs it (RFC 4180).
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}
