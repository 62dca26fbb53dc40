//! `shardfeed stream`: flags and the per-epoch report around [`shardfeed::stream`].

use std::process::ExitCode;

use shardfeed_dataset::folder::Location;

use shardfeed_dataset::folder::ShardFolder;
use shardfeed_dataset::stream::{StreamConfig, stream_in};
use shardfeed_dataset::transform::Transform;
use shardfeed_image_prep::augment::Augment;

use crate::fmt::{count, escaped, thousands};
use shardfeed_record_format::Compression;

/// The crop `--crop` asks for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CropArg {
    /// RandomResizedCrop and a flip.
    Random,
    /// Resize + centre crop.
    Center,
}

/// The side `--crop` makes without `--size` (torchvision's reference 224).
const DEFAULT_CROP: u32 = 224;

/// Flags of `shardfeed stream`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shard folder (local, or s3://, gs://, az://, http(s)://).
    #[arg(value_parser = crate::paths::location())]
    shards: Location,
    /// Passes over the data, 1–1000000.
    #[arg(long, default_value_t = 3, value_parser = crate::ranges::u64_in(1, 1_000_000))]
    epochs: u64,
    /// Batch size, 1–65536.
    #[arg(long, default_value_t = 32, value_parser = crate::ranges::usize_in(1, crate::ranges::MAX_BATCH))]
    batch: usize,
    /// Decode every image on every pass (no cache).
    #[arg(long)]
    no_cache: bool,
    /// Cache budget for decoded pixels, in MiB, 0–16777216; images past it are decoded again
    /// each epoch.
    #[arg(long, default_value_t = 4096, value_parser = crate::ranges::u64_in(0, 1 << 24))]
    cache_budget_mib: u64,
    /// A reproducible order (slower when images vary in cost).
    #[arg(long)]
    deterministic: bool,
    /// Seed of the file and shuffle order.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Most decode threads, 1–1024 (default: one per core); how many run is tuned while running.
    #[arg(long, value_parser = crate::ranges::usize_in(1, crate::ranges::MAX_JOBS))]
    jobs: Option<usize>,
    /// Compression of the shard files (default: what the folder's manifest.json records,
    /// else none).
    #[arg(long, value_name = "none|gzip|zlib")]
    compression: Option<Compression>,
    /// Read the shard files as they are, even where they disagree with manifest.json (a
    /// shard missing, unlisted or of another size is an error otherwise).
    #[arg(long)]
    ignore_manifest: bool,
    /// A training-time crop as records are read, to --size (default 224): random
    /// (RandomResizedCrop: scale 0.08–1, ratio 3/4–4/3, with a flip) or center (the shorter
    /// side to --size / 0.875, the centre square); decoded from the crop's region only, anew
    /// each epoch (no cache).
    #[arg(long, value_enum)]
    crop: Option<CropArg>,
    /// The horizontal flip's probability with --crop, 0–1 (default 0.5 with random, 0 with
    /// center).
    #[arg(long, requires = "crop", value_parser = crate::ranges::probability())]
    flip: Option<f64>,
    #[command(flatten)]
    record: crate::record_args::RecordArgs,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    // One listing and one manifest read for the whole command.
    let folder = ShardFolder::open(&args.shards)?;
    for warning in folder.warnings() {
        eprintln!("shardfeed: warning: {}", escaped(&warning));
    }
    let config = StreamConfig {
        shards: args.shards.clone(),
        epochs: args.epochs,
        batch: args.batch,
        cache: !args.no_cache,
        cache_budget: args.cache_budget_mib << 20,
        deterministic: args.deterministic,
        seed: args.seed,
        jobs: crate::ranges::tuned_jobs(args.jobs),
        compression: crate::compression::of_folder(&folder, args.compression)?,
        ignore_manifest: args.ignore_manifest,
        format: args.record.format(),
        transform: args.crop.map(|crop| {
            let size = args.record.size.unwrap_or(DEFAULT_CROP);
            let transform = match crop {
                CropArg::Random => Transform::random(size),
                CropArg::Center => Transform::centre(size),
            };
            match args.flip {
                Some(p) => Transform {
                    augment: Augment {
                        flip: p,
                        ..transform.augment
                    },
                    ..transform
                },
                None => transform,
            }
        }),
    };
    let report = stream_in(&folder, &config)?;
    if let Some(note) = &report.note {
        eprintln!("shardfeed: note: {}", escaped(note));
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&crate::stream_json::StreamJson::from(&report))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} in {}, batch {}",
        count(report.records, "record"),
        count(report.files as u64, "file"),
        args.batch
    );
    for epoch in &report.epochs {
        println!(
            "epoch {}: {} in {:.2} s, {} images/s, waited for input {:.2} s",
            epoch.epoch,
            count(epoch.images, "image"),
            epoch.elapsed.as_secs_f64(),
            thousands(epoch.images_per_second() as u64),
            epoch.waited.as_secs_f64()
        );
    }
    let batch = args.batch as u64;
    if !report.records.is_multiple_of(batch) {
        let delivered: u64 = report.epochs.iter().map(|e| e.images).sum();
        println!(
            "  (as tf.data's repeat → batch: batches of {batch} run across epoch boundaries, so an epoch's count is the batches that ended in it; {} in all, {} of the last pass dropped as a partial batch)",
            count(delivered, "image"),
            count(report.records * args.epochs - delivered, "image")
        );
    }
    let stats = &report.stats;
    for stage in &stats.stages {
        println!(
            "  {:<9} x{:<2} {:>8} items  busy {:>7.2} s  waiting for input {:>7.2} s  blocked on output {:>7.2} s",
            stage.name,
            stage.threads,
            stage.items,
            stage.busy.as_secs_f64(),
            stage.waiting_input.as_secs_f64(),
            stage.waiting_output.as_secs_f64()
        );
    }
    if !args.no_cache {
        println!(
            "  cache: {} hits, {} decoded again (over the budget)",
            stats.cache_hits, stats.cache_overflow
        );
    }
    if let Some(tuning) = &stats.tuning {
        println!("  {}", tuning.summary());
        for change in &tuning.changes {
            println!("    {:>6.2} s: {}", change.at.as_secs_f64(), change.why);
        }
    }
    Ok(ExitCode::SUCCESS)
}
