//! `shardfeed shard`: flags, progress bar, Ctrl-C and summary around
//! [`shardfeed_dataset::shard`].

use std::io::IsTerminal;

use std::process::ExitCode;

use shardfeed_dataset::folder::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

use crate::fmt::{count, thousands};
use shardfeed_dataset::Classes;
use shardfeed_dataset::labels::Labels;
use shardfeed_dataset::workers::Workers;
use shardfeed_dataset::{Resize, ShardConfig, Verify, shard, skip_summary};
use shardfeed_image_prep::DecodeOptions;
use shardfeed_input_pipeline::Parallelism;
use shardfeed_record_format::Compression;

/// Flags of `shardfeed shard`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The folder of LABEL.ID.jpg files (local, or s3://, gs://, az://, http(s)://).
    #[arg(value_parser = crate::paths::location())]
    input: Location,
    /// The output folder (local, or s3://, gs://, az://).
    #[arg(long, default_value = "shards", value_parser = crate::paths::location())]
    out: Location,
    /// Number of shards, 1–10000.
    #[arg(long, default_value_t = 16, value_parser = crate::ranges::usize_in(1, 10_000))]
    shards: usize,
    /// Target square size in pixels, 8–4096 (--resize crop).
    #[arg(long, default_value_t = 160, value_parser = crate::ranges::u32_in(crate::ranges::MIN_SIZE, crate::ranges::MAX_SIZE))]
    size: u32,
    /// How each record's image is sized: crop (shorter side → --size, centre square: the
    /// seed's), fit (aspect kept, longer side at most --max-side, never upscaled,
    /// re-encoded), keep (each source JPEG's bytes unchanged, checked). fit and keep add
    /// `height` and `width` to each record and the size range to manifest.json.
    #[arg(long, default_value = "crop", value_name = "crop|fit|keep")]
    resize: Resize,
    /// The longest side of a record with --resize fit, 8–4096.
    #[arg(long, default_value_t = 512, value_parser = crate::ranges::u32_in(crate::ranges::MIN_SIZE, crate::ranges::MAX_SIZE))]
    max_side: u32,
    /// How --resize keep checks each source: decode (whole, as a reader will) or headers
    /// (faster; damage past the header is found by the readers).
    #[arg(long, default_value = "decode", value_name = "decode|headers")]
    verify: Verify,
    /// JPEG quality of the records, 1–100.
    #[arg(long, default_value_t = 95, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
    /// Shard file name prefix: PREFIX00-250.tfrec (a plain file-name prefix).
    #[arg(long, default_value = "data", value_parser = crate::ranges::prefix())]
    prefix: String,
    /// Where each image's label comes from: name (the file name's first `.`-token:
    /// cat.123.jpg → cat), folder (its class folder: INPUT/cat/**/*.jpg → cat, any depth), or
    /// csv:FILE (`file,label` rows, a header naming both, paths relative to INPUT; a bad row
    /// is skipped and listed by its line, or with --strict stops the run).
    #[arg(long, default_value = "name", value_name = "name|folder|csv:FILE")]
    labels: Labels,
    /// Store each image's path under INPUT in its record (`name`, bytes), to trace a record
    /// back to its file.
    #[arg(long)]
    keep_names: bool,
    /// Class list, comma-separated (default: the sorted labels found).
    #[arg(long)]
    classes: Option<String>,
    /// Seed of the file order.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Compression of the shard files.
    #[arg(long, default_value = "none", value_name = "none|gzip|zlib")]
    compression: Compression,
    /// Stop at the first unusable file instead of skipping it.
    #[arg(long)]
    strict: bool,
    /// Decode/resize/encode threads, 1–1024 (default: one per core).
    #[arg(long, value_parser = crate::ranges::usize_in(1, crate::ranges::MAX_JOBS))]
    jobs: Option<usize>,
    /// Replace the shards, indexes and manifest already in the output folder.
    #[arg(long)]
    overwrite: bool,
    /// Decode large images at 1/2, 1/4 or 1/8 size in the DCT domain: much faster, but the
    /// pixels differ from TensorFlow's (see README).
    #[arg(long)]
    fast_decode: bool,
    /// Turn each JPEG upright as its EXIF orientation says (apply), or keep its stored
    /// pixels as TensorFlow's decode_jpeg does (ignore, the default).
    #[arg(long, default_value = "ignore", value_name = "apply|ignore", value_parser = ["apply", "ignore"])]
    exif_orientation: String,
    /// Largest image accepted, in pixels (width × height), 1–1000000000.
    #[arg(long, default_value_t = 100_000_000, value_parser = crate::ranges::u64_in(1, 1_000_000_000))]
    max_pixels: u64,
    /// Split the run over this many workers (machines, pods, array tasks), 1–10000: this one
    /// writes only its own shards (number % W == index) and a part manifest; `shardfeed
    /// shard-merge OUT` then writes manifest.json. The shards are the same bytes as one run's.
    #[arg(long, value_parser = crate::ranges::usize_in(1, 10_000))]
    num_workers: Option<usize>,
    /// This worker's index, 0 to W−1 (default: JOB_COMPLETION_INDEX of a Kubernetes Indexed
    /// Job, or SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN of a Slurm job array).
    #[arg(long, value_parser = crate::ranges::usize_in(0, 9_999))]
    worker_index: Option<usize>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// Flags of `shardfeed shard-merge`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The output folder the workers wrote into (local, or s3://, gs://, az://).
    #[arg(value_parser = crate::paths::location())]
    out: Location,
}

/// `shardfeed shard-merge OUT`.
pub fn merge(args: &MergeArgs) -> anyhow::Result<ExitCode> {
    let manifest = shardfeed_dataset::workers::merge(&args.out)?;
    println!(
        "merged {} into {}: {} in {}",
        count(manifest.shards.len() as u64, "shard"),
        args.out.join(shardfeed_dataset::MANIFEST_FILE).display(),
        count(manifest.records, "image"),
        count(manifest.classes.len() as u64, "class"),
    );
    if !manifest.skipped.is_empty() {
        println!(
            "skipped {} (listed with reasons in the manifest)",
            count(manifest.skipped.len() as u64, "file")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let (workers, from) = Workers::resolve(args.num_workers, args.worker_index, |name| {
        std::env::var(name).ok()
    })?;
    if workers.is_split() {
        eprintln!(
            "shardfeed: worker {} of {} (from {}): writing shards n with n % {} == {}",
            workers.index,
            workers.count,
            if from == "settings" {
                "--worker-index"
            } else {
                &from
            },
            workers.count,
            workers.index
        );
    }
    let config = ShardConfig {
        workers,
        input: args.input.clone(),
        out: args.out.clone(),
        shards: args.shards,
        size: args.size,
        resize: args.resize,
        max_side: args.max_side,
        verify: args.verify,
        labels: args.labels.clone(),
        keep_names: args.keep_names,
        quality: args.quality,
        prefix: args.prefix.clone(),
        classes: args.classes.as_deref().map(Classes::parse).transpose()?,
        seed: args.seed,
        compression: args.compression,
        strict: args.strict,
        jobs: args.jobs.map_or(Parallelism::Auto, Parallelism::Fixed),
        overwrite: args.overwrite,
        decode: DecodeOptions {
            dct_scaling: args.fast_decode,
            max_pixels: args.max_pixels,
            exif_orientation: args.exif_orientation == "apply",
            ..DecodeOptions::default()
        },
        stop: Some(stop_on_signal()?),
    };
    let bar = if args.quiet || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40} {human_pos}/{human_len} images  {msg}  ETA {eta}",
            )
            .expect("a valid template"),
        );
        bar
    };
    let started = std::time::Instant::now();
    let manifest = shard(&config, |progress| {
        bar.set_length(progress.total);
        bar.set_position(progress.done);
        let rate = progress.done as f64 / started.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!("{} images/s", thousands(rate as u64)));
    })
    .map_err(|error| match error {
        shardfeed_dataset::Error::OutputNotEmpty(dir) => anyhow::anyhow!(
            "{} is not empty: pass --overwrite to replace the shards in it",
            dir.display()
        ),
        shardfeed_dataset::Error::Interrupted { folder, removed } => {
            eprintln!(
                "shardfeed: interrupted: removed what this run wrote in {} ({removed} finished shard{})",
                folder.display(),
                if removed == 1 { "" } else { "s" }
            );
            std::process::exit(130);
        }
        other => other.into(),
    })?;
    bar.finish_and_clear();
    println!(
        "sharded {} into {} in {} ({:.1} MB → {:.1} MB) in {:.1} s, {} images/s",
        count(manifest.records, "image"),
        count(manifest.shards.len() as u64, "shard"),
        args.out.display(),
        manifest.bytes_in as f64 / 1e6,
        manifest.bytes_out as f64 / 1e6,
        manifest.seconds,
        thousands((manifest.records as f64 / manifest.seconds.max(1e-9)) as u64),
    );
    let described_in = if workers.is_split() {
        args.out
            .join(shardfeed_dataset::workers::part_file_name(workers))
    } else {
        args.out.join(shardfeed_dataset::MANIFEST_FILE)
    };
    if !manifest.skipped.is_empty() {
        let kinds: Vec<String> = skip_summary(&manifest.skipped)
            .iter()
            .map(ToString::to_string)
            .collect();
        println!(
            "skipped {}: {}; each is listed with its reason in {}",
            count(manifest.skipped.len() as u64, "file"),
            kinds.join(", "),
            described_in.display()
        );
    }
    if workers.is_split() {
        println!(
            "wrote {}; when all {} workers have finished, run: shardfeed shard-merge {}",
            described_in.display(),
            workers.count,
            args.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A flag set by the first SIGINT or SIGTERM (the run then removes what it wrote and exits
/// 130); a second one exits at once.
fn stop_on_signal() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    })?;
    Ok(stop)
}
