//! Evaluation of a classifier on labelled batches: accuracy, per class, and the confusion
//! matrix, as a typed result.
//!
//! ```
//! use shardfeed_model::evaluate::Confusion;
//!
//! let mut confusion = Confusion::new(vec!["cat".into(), "dog".into()]);
//! confusion.add(0, &[0.9, 0.1])?;
//! confusion.add(1, &[0.8, 0.2])?;
//! confusion.add(1, &[0.3, 0.7])?;
//! let evaluation = confusion.finish();
//! assert_eq!((evaluation.images, evaluation.correct), (3, 2));
//! assert_eq!(evaluation.confusion, [[1, 0], [1, 1]]);
//! assert_eq!(evaluation.per_class[1].accuracy, 0.5);
//! # Ok::<(), shardfeed_model::evaluate::EvaluateError>(())
//! ```

use serde::Serialize;

use crate::inference::{Classifier, predicted};
use crate::training::ImageBatch;

/// What can go wrong evaluating.
#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    /// A record's class is outside the model's classes.
    #[error("a record has class {class}, but the model knows {classes} classes")]
    ClassOutOfRange {
        /// The record's class.
        class: i64,
        /// The model's class count.
        classes: usize,
    },
    /// An image of another size than the model takes.
    #[error("a {side}×{side} image: the model takes {size}×{size}")]
    WrongSize {
        /// The batch's side.
        side: usize,
        /// The model's.
        size: usize,
    },
    /// The batches' source failed (its error names the file and offset).
    #[error(transparent)]
    Data(Box<dyn std::error::Error + Send + Sync>),
}

/// One class's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassAccuracy {
    /// The class name.
    pub class: String,
    /// Images of this class.
    pub images: u64,
    /// Of those, classified correctly.
    pub correct: u64,
    /// `correct / images` (0 when there are none).
    pub accuracy: f64,
}

/// What an evaluation measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
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

/// A confusion matrix being filled.
#[derive(Debug, Clone)]
pub struct Confusion {
    classes: Vec<String>,
    counts: Vec<Vec<u64>>,
}

impl Confusion {
    /// An empty matrix over `classes`.
    pub fn new(classes: Vec<String>) -> Self {
        let k = classes.len();
        Confusion {
            classes,
            counts: vec![vec![0; k]; k],
        }
    }

    /// Counts one image of class `observed` with these class probabilities.
    pub fn add(&mut self, observed: i64, probabilities: &[f32]) -> Result<(), EvaluateError> {
        let k = self.classes.len();
        let row = usize::try_from(observed).ok().filter(|&i| i < k).ok_or(
            EvaluateError::ClassOutOfRange {
                class: observed,
                classes: k,
            },
        )?;
        self.counts[row][predicted(probabilities).0] += 1;
        Ok(())
    }

    /// The figures.
    pub fn finish(self) -> Evaluation {
        let confusion = self.counts;
        let images: u64 = confusion.iter().flatten().sum();
        let correct: u64 = (0..confusion.len()).map(|i| confusion[i][i]).sum();
        let per_class = self
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
        Evaluation {
            images,
            correct,
            accuracy: correct as f64 / images.max(1) as f64,
            per_class,
            confusion,
            classes: self.classes,
        }
    }
}

/// Classifies every batch with `classifier`, calling `each(label, probabilities)` per image in
/// order (for a grid of examples); `each` returns `false` to stop early. Returns the figures
/// of the images seen.
pub fn evaluate<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
    classifier: &Classifier,
    batches: impl IntoIterator<Item = Result<ImageBatch, E>>,
    mut each: impl FnMut(usize, i64, &[f32]) -> bool,
) -> Result<Evaluation, EvaluateError> {
    let size = classifier.card().image_size();
    let mut confusion = Confusion::new(classifier.card().classes.clone());
    let mut index = 0usize;
    for batch in batches {
        let batch = batch.map_err(|e| EvaluateError::Data(e.into()))?;
        if batch.side != size {
            return Err(EvaluateError::WrongSize {
                side: batch.side,
                size,
            });
        }
        for (label, probabilities) in batch.labels.iter().zip(classifier.probabilities(&batch)) {
            confusion.add(*label, &probabilities)?;
            let go_on = each(index, *label, &probabilities);
            index += 1;
            if !go_on {
                return Ok(confusion.finish());
            }
        }
    }
    Ok(confusion.finish())
}
