//! `shardfeed shard`: flags, progress bar and summary around [`shardfeed::shard`].

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use shardfeed_dataset::Classes;
use shardfeed_dataset::{ShardConfig, shard, skip_summary};
use shardfeed_image_prep::DecodeOptions;
use shardfeed_input_pipeline::Parallelism;
use shardfeed_record_format::Compression;

/// Flags of `shardfeed shard`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The folder of LABEL.ID.jpg files.
    input: PathBuf,
    /// The output folder.
    #[arg(long, default_value = "shards")]
    out: PathBuf,
    /// Number of shards.
    #[arg(long, default_value_t = 16)]
    shards: usize,
    /// Target square size in pixels.
    #[arg(long, default_value_t = 160)]
    size: u32,
    /// JPEG quality of the records.
    #[arg(long, default_value_t = 95, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
    /// Shard file name prefix: PREFIX00-250.tfrec.
    #[arg(long, default_value = "data")]
    prefix: String,
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
    /// Decode/resize/encode threads (default: one per core).
    #[arg(long)]
    jobs: Option<usize>,
    /// Replace the shards, indexes and manifest already in the output folder.
    #[arg(long)]
    overwrite: bool,
    /// Decode large images at 1/2, 1/4 or 1/8 size in the DCT domain: much faster, but the
    /// pixels differ from TensorFlow's (see README).
    #[arg(long)]
    fast_decode: bool,
    /// Largest image accepted, in pixels (width × height).
    #[arg(long, default_value_t = 100_000_000)]
    max_pixels: u64,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = ShardConfig {
        input: args.input.clone(),
        out: args.out.clone(),
        shards: args.shards,
        size: args.size,
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
            ..DecodeOptions::default()
        },
    };
    let bar = if args.quiet || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} images  {per_sec}  ETA {eta}")
                .expect("a valid template"),
        );
        bar
    };
    let manifest = shard(&config, |progress| {
        bar.set_length(progress.total);
        bar.set_position(progress.done);
    })
    .map_err(|error| match error {
        shardfeed_dataset::Error::OutputNotEmpty(dir) => anyhow::anyhow!(
            "{} is not empty: pass --overwrite to replace the shards in it",
            dir.display()
        ),
        shardfeed_dataset::Error::Invalid(message) if config.shards == 0 => {
            anyhow::anyhow!("--shards must be at least 1 ({message})")
        }
        other => other.into(),
    })?;
    bar.finish_and_clear();
    eprintln!(
        "sharded {} images into {} shards in {} ({:.1} MB → {:.1} MB) in {:.1} s, {:.0} images/s",
        manifest.records,
        manifest.shards.len(),
        args.out.display(),
        manifest.bytes_in as f64 / 1e6,
        manifest.bytes_out as f64 / 1e6,
        manifest.seconds,
        manifest.records as f64 / manifest.seconds.max(1e-9),
    );
    if !manifest.skipped.is_empty() {
        let kinds: Vec<String> = skip_summary(&manifest.skipped)
            .into_iter()
            .map(|(kind, n)| format!("{n} × {kind}"))
            .collect();
        eprintln!(
            "skipped {} files ({}); each is listed with its reason in {}",
            manifest.skipped.len(),
            kinds.join(", "),
            args.out.join("manifest.json").display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
