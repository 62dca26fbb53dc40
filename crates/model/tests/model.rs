//! The CNN's size, learning on a tiny set, and saving/loading.

use burn::module::Module;
use shardfeed_model::{Cnn, ImageBatch, Metrics, TrainConfig, Trainer, cpu_device};

#[test]
fn the_two_class_cnn_has_the_seed_models_parameter_count() {
    let device = cpu_device();
    assert_eq!(Cnn::new(2, &device).num_params(), 392_865);
    // k classes: the dense layer has k outputs instead of one.
    assert_eq!(
        Cnn::new(4, &device).num_params(),
        392_865 - 257 + 256 * 4 + 4
    );
}

/// `n` 16×16 images: class 0 horizontal stripes, class 1 vertical, random phase and colour.
fn stripes(n: usize) -> ImageBatch {
    let side = 16;
    let mut pixels = Vec::with_capacity(n * side * side * 3);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = i % 2;
        let phase = (i / 2) % 4;
        let tint = [(i * 37) % 100, (i * 53) % 100, (i * 71) % 100].map(|t| t as f32 / 400.0);
        for y in 0..side {
            for x in 0..side {
                let along = if class == 0 { y } else { x };
                let on = ((along + phase) / 2) % 2 == 0;
                for t in tint {
                    pixels.push(if on { 0.75 + t } else { 0.1 + t });
                }
            }
        }
        labels.push(class as i64);
    }
    ImageBatch {
        pixels,
        labels,
        side,
    }
}

#[test]
fn a_tiny_set_is_learned_and_the_loss_falls() {
    let batch = stripes(16);
    let mut trainer = Trainer::new(
        TrainConfig {
            learning_rate: 3e-3,
            ..TrainConfig::default()
        },
        cpu_device(),
    );
    let first: Metrics = trainer.step(&batch);
    for _ in 0..40 {
        let last = trainer.step(&batch);
        if last.accuracy() == 1.0 && last.loss() < first.loss() * 0.5 {
            break;
        }
    }
    let after = trainer.evaluate(&batch);
    println!(
        "loss {:.4} → {:.4}, accuracy {:.2}",
        first.loss(),
        after.loss(),
        after.accuracy()
    );
    assert!(
        after.loss() < first.loss(),
        "loss {} → {}",
        first.loss(),
        after.loss()
    );
    assert!(after.accuracy() >= 0.95, "accuracy {}", after.accuracy());
}

#[test]
fn a_saved_model_loads_back_with_identical_predictions() {
    let device = cpu_device();
    let batch = stripes(4);
    let mut trainer = Trainer::new(TrainConfig::default(), device.clone());
    trainer.step(&batch);
    let (images, _) = batch.to_tensors(&device);
    let before: Vec<f32> = trainer
        .model()
        .forward(images.clone())
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.bpk");
    trainer.model().clone().save_file(&path).unwrap();
    let loaded = Cnn::new(2, &device).load_file(&path);
    let after: Vec<f32> = loaded
        .forward(images)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(before, after);
}
