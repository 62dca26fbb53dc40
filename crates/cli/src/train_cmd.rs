//! `shardfeed train`: flags, a progress bar per epoch, a Keras-like line per epoch, and Ctrl-C
//! (first press: checkpoint after the current step and exit; second press: exit at once).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use shardfeed_dataset::folder::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressStyle};
use shardfeed::train::{TrainEvent, TrainSettings, train};

use crate::fmt::{count, escaped, thousands};
use shardfeed_dataset::classes::ClassSource;
use shardfeed_dataset::folder::ShardFolder;
use shardfeed_dataset::run::RunInfo;
use shardfeed_model::DeviceKind;
use shardfeed_model::fast::Precision;
use shardfeed_record_format::Compression;

/// Flags of `shardfeed train`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shard folder (local, or s3://, gs://, az://, http(s)://).
    #[arg(value_parser = crate::paths::location())]
    shards: Location,
    /// Epochs, 1–100000 (default 10; in all: a resumed run continues up to its own count
    /// unless this is given).
    #[arg(long, value_parser = crate::ranges::u64_in(1, 100_000))]
    epochs: Option<u64>,
    /// Batch size, 1–65536.
    #[arg(long, default_value_t = 32, value_parser = crate::ranges::usize_in(1, crate::ranges::MAX_BATCH))]
    batch: usize,
    /// Fraction of the shard files used for validation, in [0, 1).
    #[arg(long, default_value_t = 0.19, value_parser = crate::ranges::fraction())]
    val_split: f64,
    /// Seed of the split, the order and the weights.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Adam's learning rate, in (0, 10].
    #[arg(long, default_value_t = 1e-3, value_parser = crate::ranges::learning_rate())]
    lr: f64,
    /// The run folder: model.bpk, model.json, run.json, metrics.csv, curves.png, checkpoint/.
    #[arg(long, default_value = "runs/latest", value_parser = crate::paths::local())]
    out: PathBuf,
    /// Continue the run in --out from its checkpoint (with the run's own settings).
    #[arg(long)]
    resume: bool,
    /// Replace a run already in --out (its model, metrics.csv, run.json, curves.png and
    /// checkpoint); without it such a folder is refused.
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// Where the model runs: cpu, or cuda (needs a build with the `cuda` feature).
    #[arg(long, default_value = "cpu", value_name = "cpu|cuda")]
    device: DeviceKind,
    /// Most decode threads, 1–1024 (default: one per core); how many run is tuned while running.
    #[arg(long, value_parser = crate::ranges::usize_in(1, crate::ranges::MAX_JOBS))]
    jobs: Option<usize>,
    /// Class names, comma-separated, for shards without a manifest.json (default: the class
    /// indices found in the records).
    #[arg(long, value_delimiter = ',')]
    classes: Option<Vec<String>>,
    /// Compression of the shard files (default: what the folder's manifest.json records,
    /// else none).
    #[arg(long, value_name = "none|gzip|zlib")]
    compression: Option<Compression>,
    /// Read the shard files as they are, even where they disagree with manifest.json (a
    /// shard missing, unlisted or of another size is an error otherwise).
    #[arg(long)]
    ignore_manifest: bool,
    /// Augment the training batches: RandomResizedCrop (scale 0.08–1, ratio 3/4–4/3) to the
    /// model's side (--size, default 160) and a horizontal flip (p 0.5), drawn per record and
    /// epoch (the same for any --jobs and after --resume); best on `--resize keep|fit` shards.
    /// Validation reads the seed's centre square.
    #[arg(long)]
    augment: bool,
    /// The CPU kernels' arithmetic: f32, or bf16 (bfloat16 products, f32 sums, weights and
    /// Adam state; needs a CPU with AVX512-BF16, refused otherwise). A --resume keeps the
    /// run's.
    #[arg(long, default_value = "f32", value_name = "f32|bf16", value_parser = crate::ranges::precision)]
    precision: Precision,
    #[command(flatten)]
    record: crate::record_args::RecordArgs,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// The epochs to train to: `--epochs`, or for `--resume` without it the run's own count
/// (saying so), or the default 10.
fn resolved_epochs(args: &Args) -> u64 {
    const DEFAULT: u64 = 10;
    if !args.resume {
        return args.epochs.unwrap_or(DEFAULT);
    }
    let own = RunInfo::load(&args.out).ok().and_then(|info| info.epochs);
    match (args.epochs, own) {
        (Some(given), Some(own)) if given != own => {
            eprintln!(
                "resuming with the run's own settings, except --epochs {given} (the run's: {own})"
            );
            given
        }
        (Some(given), _) => given,
        (None, Some(own)) => {
            eprintln!("resuming with the run's own settings (epochs {own})");
            own
        }
        (None, None) => DEFAULT,
    }
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("\nshardfeed: interrupted again: exiting without a checkpoint");
            std::process::exit(130);
        }
        eprintln!(
            "\nshardfeed: interrupted: saving a checkpoint after this step (Ctrl-C again to quit now)"
        );
    })?;
    // Stored absolute in run.json, so `evaluate --model RUN` works from any folder; listed
    // and its manifest read once for the whole command.
    let shards = args.shards.absolute();
    let folder = if args.resume {
        None
    } else {
        let folder = ShardFolder::open(&shards)?;
        for warning in folder.warnings() {
            eprintln!("shardfeed: warning: {}", escaped(&warning));
        }
        Some(folder)
    };
    let compression = match &folder {
        Some(folder) => crate::compression::of_folder(folder, args.compression)?,
        None => args.compression.unwrap_or_default(),
    };
    let epochs = resolved_epochs(args);
    let settings = TrainSettings {
        shards,
        folder,
        epochs,
        batch: args.batch,
        validation_fraction: args.val_split,
        seed: args.seed,
        learning_rate: args.lr,
        out: args.out.clone(),
        jobs: crate::ranges::tuned_jobs(args.jobs),
        classes: args.classes.clone(),
        compression,
        resume: args.resume,
        overwrite: args.overwrite,
        device: args.device,
        stop: Some(stop),
        ignore_manifest: args.ignore_manifest,
        format: args.record.format(),
        augment: args.augment,
        precision: args.precision,
    };
    let show_bar = !args.quiet && std::io::stderr().is_terminal();
    let mut bar = ProgressBar::hidden();
    let outcome = train(&settings, |event| match event {
        TrainEvent::Start {
            info,
            steps,
            epoch,
            step,
            class_source,
            note,
        } => {
            if let Some(note) = note {
                eprintln!("shardfeed: note: {}", escaped(note));
            }
            let names = match class_source {
                ClassSource::Scan => " (no manifest: named by index)",
                ClassSource::Given | ClassSource::Manifest => "",
            };
            println!(
                "training on {} ({}), validating on {} ({}); classes {}{names}; {} per epoch",
                count(info.train_records, "record"),
                count(info.train_files.len() as u64, "file"),
                thousands(info.validation_records),
                count(info.validation_files.len() as u64, "file"),
                info.classes.join(", "),
                count(steps, "step"),
            );
            if epoch > 1 || step > 0 {
                eprintln!("resuming at epoch {epoch}, step {step}");
            }
        }
        TrainEvent::Step {
            epoch,
            step,
            steps,
            metrics,
            images_per_second,
            waited,
        } => {
            if show_bar && bar.is_hidden() {
                bar = ProgressBar::new(steps);
                bar.set_style(
                    ProgressStyle::with_template(
                        "Epoch {prefix} {bar:30} {pos}/{len} {msg} ETA {eta}",
                    )
                    .expect("a valid template"),
                );
                bar.set_prefix(format!("{epoch}/{epochs}"));
            }
            bar.set_position(step);
            bar.set_message(format!(
                "loss {:.4} acc {:.4} {images_per_second:.1} img/s, input wait {waited:.1}s",
                metrics.loss(),
                metrics.accuracy()
            ));
        }
        TrainEvent::Epoch(line) => {
            bar.finish_and_clear();
            bar = ProgressBar::hidden();
            // As Keras: no validation figures when there is no validation data.
            let validation = if line.validation.images == 0 {
                String::new()
            } else {
                format!(
                    " - val_loss: {:.4} - val_accuracy: {:.4}",
                    line.validation.loss(),
                    line.validation.accuracy()
                )
            };
            println!(
                "Epoch {}/{epochs} - {:.1}s - loss: {:.4} - accuracy: {:.4}{validation} - {:.1} images/s (waited {:.1}s for input, {:.1}% of training time)",
                line.epoch,
                line.seconds,
                line.train.loss(),
                line.train.accuracy(),
                line.images_per_second,
                line.waited,
                100.0 * line.wait_fraction(),
            );
        }
        TrainEvent::Autotune(tuning) => println!("  input pipeline {}", tuning.summary()),
    })?;
    bar.finish_and_clear();
    if let Some((epoch, step)) = outcome.interrupted {
        eprintln!(
            "interrupted: checkpoint saved at epoch {epoch}, step {step} in {}; continue with `shardfeed train {} --out {} --resume`",
            args.out.join("checkpoint").display(),
            args.shards.display(),
            args.out.display()
        );
        return Ok(ExitCode::from(130));
    }
    println!(
        "saved the model ({}, {} px), metrics.csv and curves.png in {}",
        count(outcome.info.classes.len() as u64, "class"),
        outcome.info.image_size,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
