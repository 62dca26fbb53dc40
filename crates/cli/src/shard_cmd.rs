//! `shardfeed shard`: flags, progress bar, Ctrl-C and summary around
//! [`shardfeed_dataset::shard`].

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

use crate::fmt::{count, thousands};
use shardfeed_dataset::Classes;
use shardfeed_dataset::{ShardConfig, shard, skip_summary};
use shardfeed_image_prep::DecodeOptions;
use shardfeed_input_pipeline::Parallelism;
use shardfeed_record_format::Compression;

/// Flags of `shardfeed shard`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The folder of LABEL.ID.jpg files.
    #[arg(value_parser = crate::paths::local())]
    input: PathBuf,
    /// The output folder.
    #[arg(long, default_value = "shards", value_parser = crate::paths::local())]
    out: PathBuf,
    /// Number of shards, 1–10000.
    #[arg(long, default_value_t = 16, value_parser = crate::ranges::usize_in(1, 10_000))]
    shards: usize,
    /// Target square size in pixels, 8–4096.
    #[arg(long, default_value_t = 160, value_parser = crate::ranges::u32_in(8, crate::ranges::MAX_SIZE))]
    size: u32,
    /// JPEG quality of the records, 1–100.
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
    /// Largest image accepted, in pixels (width × height), 1–1000000000.
    #[arg(long, default_value_t = 100_000_000, value_parser = crate::ranges::u64_in(1, 1_000_000_000))]
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
    if !manifest.skipped.is_empty() {
        let kinds: Vec<String> = skip_summary(&manifest.skipped)
            .iter()
            .map(ToString::to_string)
            .collect();
        println!(
            "skipped {}: {}; each is listed with its reason in {}",
            count(manifest.skipped.len() as u64, "file"),
            kinds.join(", "),
            args.out.join("manifest.json").display()
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
