//! `shardfeed train`: flags and a Keras-like line per epoch around [`shardfeed::train`].

use std::path::PathBuf;
use std::process::ExitCode;

use shardfeed::train::{TrainSettings, train};
use shardfeed_input_pipeline::Parallelism;

/// Flags of `shardfeed train`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shard folder.
    shards: PathBuf,
    /// Epochs.
    #[arg(long, default_value_t = 10)]
    epochs: u64,
    /// Batch size.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Fraction of the shard files used for validation.
    #[arg(long, default_value_t = 0.19)]
    val_split: f64,
    /// Seed of the split, the order and the weights.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// The run folder: model.bpk, run.json, metrics.csv.
    #[arg(long, default_value = "runs/latest")]
    out: PathBuf,
    /// Decode threads (default: one per core).
    #[arg(long)]
    jobs: Option<usize>,
    /// Class names, comma-separated, for shards without a manifest.json.
    #[arg(long, value_delimiter = ',')]
    classes: Option<Vec<String>>,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let settings = TrainSettings {
        shards: args.shards.clone(),
        epochs: args.epochs,
        batch: args.batch,
        validation_fraction: args.val_split,
        seed: args.seed,
        learning_rate: args.lr,
        out: args.out.clone(),
        jobs: args.jobs.map_or(Parallelism::Auto, Parallelism::Fixed),
        classes: args.classes.clone(),
    };
    let epochs = args.epochs;
    let info = train(&settings, |line| {
        println!(
            "Epoch {}/{epochs} - {:.1}s - loss: {:.4} - accuracy: {:.4} - val_loss: {:.4} - val_accuracy: {:.4} - {:.1} images/s (waited {:.1}s for input)",
            line.epoch,
            line.seconds,
            line.train.loss(),
            line.train.accuracy(),
            line.validation.loss(),
            line.validation.accuracy(),
            line.images_per_second,
            line.waited,
        );
    })?;
    eprintln!(
        "saved the model ({} classes, {} px) in {}",
        info.classes.len(),
        info.image_size,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
