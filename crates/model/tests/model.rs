//! The CNN's size, learning on a tiny set, and saving/loading.

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::Tensor;
use shardfeed_model::{
    CARD_FILE, Classifier, Cnn, DeviceKind, ImageBatch, MODEL_FILE, Metrics, ModelCard,
    Preprocessing, Progress, TrainConfig, Trainer, cpu_device, has_checkpoint, predicted,
    save_model,
};

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
    stripes_of_side(n, 16)
}

/// `n` `side`×`side` images, as [`stripes`].
fn stripes_of_side(n: usize, side: usize) -> ImageBatch {
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
    let first: Metrics = trainer.evaluate(&batch);
    for _ in 0..150 {
        trainer.step(&batch);
        let now = trainer.evaluate(&batch);
        if now.accuracy() == 1.0 && now.loss() < first.loss() * 0.5 {
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
fn evaluate_gives_the_training_forward_pass_figures() {
    let batch = stripes(8);
    let mut trainer = Trainer::new(TrainConfig::default(), cpu_device());
    for _ in 0..2 {
        let evaluated = trainer.evaluate(&batch);
        // `step` reports the batch's figures before its update, from the autodiff forward.
        let trained = trainer.step(&batch);
        assert_eq!(evaluated, trained);
    }
}

/// The resident set of this process, from `/proc/self/status`.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib << 10
}

#[test]
fn evaluating_many_batches_does_not_hold_their_activations() {
    // On the autodiff device every forward pass's graph (with its activations, ~30 MB for
    // this batch) is kept until a backward pass; validation never runs one, so an epoch's
    // validation used to grow by every batch (7.1 GB for 750 images at 160 px).
    let batch = stripes_of_side(16, 64);
    let trainer = Trainer::new(TrainConfig::default(), cpu_device());
    for _ in 0..3 {
        trainer.evaluate(&batch);
    }
    let before = resident_bytes();
    for _ in 0..30 {
        trainer.evaluate(&batch);
    }
    let grown = resident_bytes().saturating_sub(before);
    println!("resident set grew by {} MiB over 30 batches", grown >> 20);
    // Other tests of this binary run beside it, hence the margin.
    assert!(grown < 300 << 20, "grew by {} MiB", grown >> 20);
}

#[test]
fn a_saved_model_loads_back_as_a_classifier_with_identical_predictions() {
    let device = cpu_device();
    let batch = stripes(4);
    let mut trainer = Trainer::new(TrainConfig::default(), device.clone());
    trainer.step(&batch);
    let (images, _) = batch.to_tensors(&device);
    let logits: Vec<f32> = trainer
        .model()
        .forward(images)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let card = ModelCard {
        classes: vec!["cat".into(), "dog".into()],
        preprocessing: Preprocessing::for_size(16),
        precision: Default::default(),
    };
    save_model(trainer.model(), &card, dir.path()).unwrap();
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(CARD_FILE)).unwrap()).unwrap();
    assert_eq!(
        saved["preprocessing"],
        serde_json::json!({"size": 16, "crop": "shorter_side_then_centre", "divide_by": 255})
    );
    let classifier = Classifier::load(
        dir.path(),
        shardfeed_model::device(DeviceKind::Cpu, false).unwrap(),
    )
    .unwrap();
    assert_eq!(classifier.card(), &card);
    let probabilities = classifier.probabilities(&batch);
    assert_eq!(probabilities.len(), 4);
    let predictions = classifier.predict(&batch);
    for (prediction, row) in predictions.iter().zip(&probabilities) {
        assert_eq!(&prediction.probabilities, row);
        assert_eq!((prediction.class, prediction.probability), predicted(row));
    }
    for (row, logit) in probabilities.iter().zip(&logits) {
        // Sigmoid of the training model's logit, as [p(cat), p(dog)].
        let p = 1.0 / (1.0 + (-logit).exp());
        assert!((row[1] - p).abs() < 1e-6, "{row:?} vs {p}");
        assert!((row[0] + row[1] - 1.0).abs() < 1e-6);
        let (class, probability) = predicted(row);
        assert_eq!(class, usize::from(*logit > 0.0));
        assert!(probability >= 0.5);
    }
}

#[test]
fn a_card_written_before_the_typed_preprocessing_still_loads() {
    let card: ModelCard = serde_json::from_str(
        r#"{"classes":["a","b"],"image_size":96,"preprocessing":"decode RGB; resize the shorter side to image_size (bilinear, half-pixel); centre crop; /255"}"#,
    )
    .unwrap();
    assert_eq!(card.preprocessing, Preprocessing::for_size(96));
    assert_eq!(card.image_size(), 96);
    let no_size = serde_json::from_str::<ModelCard>(r#"{"classes":["a","b"],"preprocessing":"x"}"#);
    assert!(no_size.unwrap_err().to_string().contains("image_size"));
}

#[test]
fn a_missing_or_damaged_model_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let device = shardfeed_model::device(DeviceKind::Cpu, false).unwrap();
    let error = Classifier::load(dir.path(), device.clone()).err().unwrap();
    assert!(error.to_string().contains("model.json"), "{error}");
    std::fs::write(
        dir.path().join(CARD_FILE),
        r#"{"classes":["a","b"],"image_size":16,"preprocessing":"x"}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join(MODEL_FILE), b"not burnpack").unwrap();
    let error = Classifier::load(dir.path(), device).err().unwrap();
    assert!(error.to_string().contains("model.bpk"), "{error}");
}

/// Every parameter value, in the model's order.
fn weights(trainer: &Trainer) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0
                .extend(param.val().into_data().try_to_vec::<f32>().unwrap());
        }
    }
    let mut collect = Collect(Vec::new());
    trainer.model().visit(&mut collect);
    collect.0
}

#[test]
fn resuming_from_a_checkpoint_gives_the_uninterrupted_runs_weights() {
    let batches: Vec<ImageBatch> = (0..6).map(|i| stripes(4 + i % 3)).collect();
    let config = TrainConfig {
        learning_rate: 3e-3,
        ..TrainConfig::default()
    };
    let mut straight = Trainer::new(config, cpu_device());
    for batch in &batches {
        straight.step(batch);
    }

    let dir = tempfile::tempdir().unwrap();
    let mut first = Trainer::new(config, cpu_device());
    for batch in &batches[..3] {
        first.step(batch);
    }
    let progress = Progress {
        epochs_done: 1,
        steps_in_epoch: 0,
        epoch_metrics: Metrics::default(),
        data_state: vec![1, 2, 3],
    };
    first.save_checkpoint(dir.path(), &progress).unwrap();
    // A second save replaces the first's files.
    first.save_checkpoint(dir.path(), &progress).unwrap();
    drop(first);
    assert!(has_checkpoint(dir.path()));
    let files = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(files, 3, "state.json, one model file, one optimizer file");

    // The same seed gives the same weights, whatever else runs meanwhile.
    assert_eq!(
        weights(&Trainer::new(config, cpu_device())),
        weights(&Trainer::new(config, cpu_device()))
    );
    let (mut resumed, restored) = Trainer::resume(dir.path(), cpu_device()).unwrap();
    assert_eq!(restored, progress);
    assert_eq!(resumed.global_step(), 3);
    for batch in &batches[3..] {
        resumed.step(batch);
    }
    assert_eq!(resumed.global_step(), 6);
    let (a, b) = (weights(&straight), weights(&resumed));
    assert_eq!(a.len(), 392_865);
    let max = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert_eq!(max, 0.0, "largest weight difference {max}");
    // And the run moved: the weights are not those of step 3.
    let (at_three, _) = Trainer::resume(dir.path(), cpu_device()).unwrap();
    assert_ne!(weights(&at_three), a);
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
