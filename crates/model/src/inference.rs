//! A saved model and what it needs to be used: `model.bpk` (weights) beside `model.json` (class
//! names and the typed [`Preprocessing`] its input is made with), and a [`Classifier`] that
//! loads both and turns images into class probabilities.

use std::fs;
use std::path::Path;

use burn::module::Module;
use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::tensor::activation::{sigmoid, softmax};
use serde::{Deserialize, Serialize};
use shardfeed_image_prep::Preprocessing;

use crate::checkpoint::{read_json, write_atomic};
use crate::error::ModelError;
use crate::fast::Precision;
use crate::{Cnn, ImageBatch, outputs_for};

/// The weights file of a saved model.
pub const MODEL_FILE: &str = "model.bpk";
/// The description file of a saved model.
pub const CARD_FILE: &str = "model.json";

/// What a saved model needs beside its weights (`model.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CardFile")]
pub struct ModelCard {
    /// Class names, in index order.
    pub classes: Vec<String>,
    /// How the model's input is made: the training batches and `predict` both follow it.
    pub preprocessing: Preprocessing,
    /// The arithmetic it was trained in (`f32` for cards written before it was recorded).
    pub precision: Precision,
}

impl ModelCard {
    /// The side of the square images the model takes.
    pub fn image_size(&self) -> usize {
        self.preprocessing.size as usize
    }
}

/// `model.json` as found on disk: today's typed preprocessing, or (files written before it
/// existed) an `image_size` and the preprocessing in words, which was always the seed's.
#[derive(Deserialize)]
struct CardFile {
    classes: Vec<String>,
    #[serde(default)]
    image_size: Option<usize>,
    preprocessing: PreprocessingField,
    #[serde(default)]
    precision: Precision,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PreprocessingField {
    Typed(Preprocessing),
    Words(#[allow(dead_code)] String),
}

impl TryFrom<CardFile> for ModelCard {
    type Error = String;

    fn try_from(file: CardFile) -> Result<Self, String> {
        let preprocessing = match file.preprocessing {
            PreprocessingField::Typed(p) => p,
            PreprocessingField::Words(_) => {
                let size = file
                    .image_size
                    .ok_or("a card with the preprocessing in words needs image_size")?;
                Preprocessing::for_size(u32::try_from(size).map_err(|e| e.to_string())?)
            }
        };
        Ok(ModelCard {
            classes: file.classes,
            preprocessing,
            precision: file.precision,
        })
    }
}

/// Saves `model`'s weights and `card` into `dir` (each file atomically).
pub fn save_model(model: &Cnn, card: &ModelCard, dir: &Path) -> Result<(), ModelError> {
    fs::create_dir_all(dir).map_err(|source| ModelError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let weights = dir.join(MODEL_FILE);
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| ModelError::record(weights.clone(), e))?;
    write_atomic(&weights, &bytes)?;
    let json = serde_json::to_vec_pretty(card).expect("the card serialises");
    write_atomic(&dir.join(CARD_FILE), &json)
}

/// A saved model, loaded for inference.
///
/// ```
/// use shardfeed_model::{Classifier, DeviceKind, ImageBatch, device, predicted};
/// # use shardfeed_model::{ModelCard, TrainConfig, Trainer, cpu_device, save_model};
/// # use shardfeed_image_prep::Preprocessing;
/// # let dir = tempfile::tempdir()?;
/// # let trainer = Trainer::new(TrainConfig::default(), cpu_device());
/// # let card = ModelCard { classes: vec!["cat".into(), "dog".into()], preprocessing: Preprocessing::for_size(8), precision: Default::default() };
/// # save_model(trainer.model(), &card, dir.path())?;
/// # let run = dir.path();
/// # let (n, pixels) = (2, vec![0.5; 2 * 8 * 8 * 3]);
///
/// // `run`: a folder `shardfeed train` wrote; `pixels`: n images, f32 HWC in [0, 1],
/// // preprocessed as in training (shorter side → image_size, centre crop, / 255).
/// let classifier = Classifier::load(run, device(DeviceKind::Cpu, false)?)?;
/// let side = classifier.card().image_size();
/// let batch = ImageBatch { pixels, labels: vec![0; n], side };
/// for probabilities in classifier.probabilities(&batch) {
///     let (class, p) = predicted(&probabilities);
///     println!("{} {p:.3}", classifier.card().classes[class]);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Classifier {
    model: Cnn,
    card: ModelCard,
    device: Device,
}

impl Classifier {
    /// Loads `dir/model.json` and `dir/model.bpk` onto `device`.
    pub fn load(dir: &Path, device: Device) -> Result<Self, ModelError> {
        let card_path = dir.join(CARD_FILE);
        let card: ModelCard = read_json(&card_path)?;
        if card.classes.len() < 2 || card.image_size() == 0 {
            return Err(ModelError::Invalid {
                path: card_path,
                message: format!(
                    "{} classes and image size {}: need at least 2 classes and a size",
                    card.classes.len(),
                    card.image_size()
                ),
            });
        }
        let weights = dir.join(MODEL_FILE);
        let record =
            ModuleRecord::load(&weights).map_err(|e| ModelError::record(weights.clone(), e))?;
        let model = Cnn::new(card.classes.len(), &device)
            .try_load_record(record)
            .map_err(|e| ModelError::record(weights.clone(), e))?;
        Ok(Classifier {
            model,
            card,
            device,
        })
    }

    /// The model's description.
    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// Class probabilities for each image of `batch` (its labels are ignored): one row of
    /// `classes` values summing to 1 per image.
    pub fn probabilities(&self, batch: &ImageBatch) -> Vec<Vec<f32>> {
        let n = batch.len();
        if n == 0 {
            return Vec::new();
        }
        let (images, _) = batch.to_tensors(&self.device);
        let logits = self.model.forward(images);
        let classes = self.card.classes.len();
        let values: Vec<f32> = if outputs_for(classes) == 1 {
            let p: Vec<f32> = sigmoid(logits)
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32 logits");
            return p.into_iter().map(|p| vec![1.0 - p, p]).collect();
        } else {
            softmax(logits, 1)
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32 logits")
        };
        values.chunks(classes).map(<[f32]>::to_vec).collect()
    }
}

/// One image's prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// The most probable class's index.
    pub class: usize,
    /// Its probability.
    pub probability: f32,
    /// Every class's probability, in class order.
    pub probabilities: Vec<f32>,
}

impl Classifier {
    /// The prediction for each image of `batch`.
    pub fn predict(&self, batch: &ImageBatch) -> Vec<Prediction> {
        self.probabilities(batch)
            .into_iter()
            .map(|probabilities| {
                let (class, probability) = predicted(&probabilities);
                Prediction {
                    class,
                    probability,
                    probabilities,
                }
            })
            .collect()
    }
}

/// The most probable class of one image's probabilities, and its probability (the first on
/// ties).
pub fn predicted(probabilities: &[f32]) -> (usize, f32) {
    probabilities
        .iter()
        .copied()
        .enumerate()
        .fold(
            (0, f32::MIN),
            |best, (i, p)| if p > best.1 { (i, p) } else { best },
        )
}
