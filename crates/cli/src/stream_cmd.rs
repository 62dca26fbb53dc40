//! `shardfeed stream`: flags and the per-epoch report around [`shardfeed::stream`].

use std::path::PathBuf;
use std::process::ExitCode;

use shardfeed_dataset::stream::{StreamConfig, stream};
use shardfeed_input_pipeline::Parallelism;
use shardfeed_record_format::Compression;

/// Flags of `shardfeed stream`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shard folder.
    shards: PathBuf,
    /// Passes over the data.
    #[arg(long, default_value_t = 3)]
    epochs: u64,
    /// Batch size.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Decode every image on every pass (no cache).
    #[arg(long)]
    no_cache: bool,
    /// Cache budget for decoded pixels, in MiB; images past it are decoded again each epoch.
    #[arg(long, default_value_t = 4096)]
    cache_budget_mib: u64,
    /// A reproducible order (slower when images vary in cost).
    #[arg(long)]
    deterministic: bool,
    /// Seed of the file and shuffle order.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Decode threads (default: one per core).
    #[arg(long)]
    jobs: Option<usize>,
    /// The shards' compression.
    #[arg(long, default_value = "none", value_name = "none|gzip|zlib")]
    compression: Compression,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = StreamConfig {
        shards: args.shards.clone(),
        epochs: args.epochs,
        batch: args.batch,
        cache: !args.no_cache,
        cache_budget: args.cache_budget_mib << 20,
        deterministic: args.deterministic,
        seed: args.seed,
        jobs: args.jobs.map_or(Parallelism::Auto, Parallelism::Fixed),
        compression: args.compression,
    };
    let report = stream(&config)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} records in {} files, batch {}",
        report.records, report.files, args.batch
    );
    for epoch in &report.epochs {
        println!(
            "epoch {}: {} images in {:.2} s, {:.0} images/s, waited for input {:.2} s",
            epoch.epoch, epoch.images, epoch.seconds, epoch.images_per_second, epoch.waited_seconds
        );
    }
    for stage in &report.stages {
        println!(
            "  {:<9} x{:<2} {:>8} items  busy {:>7.2} s  waiting for input {:>7.2} s  blocked on output {:>7.2} s",
            stage.name,
            stage.threads,
            stage.items,
            stage.busy_seconds,
            stage.waiting_input_seconds,
            stage.waiting_output_seconds
        );
    }
    if !args.no_cache {
        println!(
            "  cache: {} hits, {} decoded again (over the budget)",
            report.cache_hits, report.cache_overflow
        );
    }
    Ok(ExitCode::SUCCESS)
}
