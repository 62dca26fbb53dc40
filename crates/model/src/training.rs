//! The training loop: Adam (Keras's epsilon 1e-7), binary cross-entropy on a sigmoid logit for
//! two classes, categorical cross-entropy on softmax logits for more, and accuracy. It trains
//! on batches from any iterator; this crate reads no files.

use burn::nn::loss::{BinaryCrossEntropyLossConfig, CrossEntropyLossConfig};
use burn::optim::GradientsParams;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{Cnn, outputs_for};

/// A batch as the input pipeline delivers it: `f32` pixels in [0, 1], HWC per image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageBatch {
    /// `len × side × side × 3` values.
    pub pixels: Vec<f32>,
    /// One class index per image.
    pub labels: Vec<i64>,
    /// The images' side in pixels.
    pub side: usize,
}

impl ImageBatch {
    /// The number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The images as an NCHW tensor and the labels.
    pub fn to_tensors(&self, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let n = self.len();
        let nhwc = Tensor::<4>::from_data(
            TensorData::new(self.pixels.clone(), [n, self.side, self.side, 3]),
            device,
        );
        let labels = Tensor::<1, Int>::from_data(TensorData::new(self.labels.clone(), [n]), device);
        (nhwc.permute([0, 3, 1, 2]), labels)
    }
}

/// Loss and accuracy over some images.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Metrics {
    /// Sum of per-image losses.
    pub loss_sum: f64,
    /// Correctly classified images.
    pub correct: u64,
    /// Images seen.
    pub images: u64,
}

impl Metrics {
    /// Mean loss per image.
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.images.max(1) as f64
    }

    /// Fraction classified correctly.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.images.max(1) as f64
    }

    /// Adds another batch's figures.
    pub fn add(&mut self, other: Metrics) {
        self.loss_sum += other.loss_sum;
        self.correct += other.correct;
        self.images += other.images;
    }
}

/// Training settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Number of classes (≥ 2).
    pub classes: usize,
    /// Adam's learning rate.
    pub learning_rate: f64,
    /// Seed of the weight initialisation.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            classes: 2,
            learning_rate: 1e-3,
            seed: 42,
        }
    }
}

/// A model being trained, with its optimizer.
pub struct Trainer {
    model: Option<Cnn>,
    optimizer: burn::optim::ModuleOptimizer,
    config: TrainConfig,
    device: Device,
    steps: u64,
}

impl Trainer {
    /// A new model on `device` (give an autodiff device, e.g. `Device::flex().autodiff()`).
    pub fn new(config: TrainConfig, device: Device) -> Self {
        let model = Cnn::seeded(config.classes, config.seed, &device);
        Trainer::from_parts(model, Trainer::adam(), config, device, 0)
    }

    pub(crate) fn from_parts(
        model: Cnn,
        optimizer: burn::optim::ModuleOptimizer,
        config: TrainConfig,
        device: Device,
        steps: u64,
    ) -> Self {
        Trainer {
            model: Some(model),
            optimizer,
            config,
            device,
            steps,
        }
    }

    /// The settings.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Optimisation steps taken since the model was created (across resumes).
    pub fn global_step(&self) -> u64 {
        self.steps
    }

    pub(crate) fn optimizer(&self) -> &burn::optim::ModuleOptimizer {
        &self.optimizer
    }

    /// The model.
    pub fn model(&self) -> &Cnn {
        self.model
            .as_ref()
            .expect("the model is only taken during a step")
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// One optimisation step on `batch`; returns the batch's metrics before the update.
    pub fn step(&mut self, batch: &ImageBatch) -> Metrics {
        let model = self
            .model
            .take()
            .expect("the model is only taken during a step");
        let (images, labels) = batch.to_tensors(&self.device);
        let logits = model.forward(images);
        let (loss, metrics) = loss_and_metrics(
            logits,
            labels,
            self.config.classes,
            batch.len(),
            &self.device,
        );
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        self.model = Some(self.optimizer.step(self.config.learning_rate, model, grads));
        self.steps += 1;
        metrics
    }

    /// Metrics of the current model on `batch`, without training.
    ///
    /// Runs on the device without autodiff: burn's autodiff keeps the graph of a forward pass
    /// until a backward pass consumes it, so a validation pass on the training device held
    /// every batch's activations (measured: 0.6 GB → 7.1 GB peak during one epoch's
    /// validation of 750 images).
    pub fn evaluate(&self, batch: &ImageBatch) -> Metrics {
        let device = self.device.clone().without_autodiff();
        let (images, labels) = batch.to_tensors(&device);
        let logits = self.model().valid().forward(images);
        loss_and_metrics(logits, labels, self.config.classes, batch.len(), &device).1
    }
}

/// The mean loss (for backward) and the batch's metrics.
fn loss_and_metrics(
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
    classes: usize,
    n: usize,
    device: &Device,
) -> (Tensor<1>, Metrics) {
    let (loss, predicted) = if outputs_for(classes) == 1 {
        let logits: Tensor<1> = logits.reshape([n]);
        let predicted = logits.clone().greater_elem(0.0).int();
        let loss = BinaryCrossEntropyLossConfig::new()
            .with_logits(true)
            .init(device)
            .forward(logits, labels.clone());
        (loss, predicted)
    } else {
        let predicted: Tensor<1, Int> = logits.clone().argmax(1).reshape([n]);
        let loss = CrossEntropyLossConfig::new()
            .init(device)
            .forward(logits, labels.clone());
        (loss, predicted)
    };
    let correct: i64 = predicted.equal(labels).int().sum().into_scalar();
    let mean_loss: f32 = loss.clone().into_scalar();
    let metrics = Metrics {
        loss_sum: f64::from(mean_loss) * n as f64,
        correct: correct as u64,
        images: n as u64,
    };
    (loss, metrics)
}
