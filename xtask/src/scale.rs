//! `cargo xtask scale`: generate, shard and stream 10k, 50k and 250k small JPEGs through the
//! release `shardfeed` binary; wall time, images/s and peak RSS of each stage go into the
//! `scale` section of `docs/BENCHMARKS.md`. Peak RSS of `shard` and of `stream --no-cache`
//! must not grow with the number of images (beyond the file list): the command fails when the
//! largest run's peak exceeds the smallest's by more than the allowance below.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::report::{self, Measured, run_measured};
use crate::util::{self, root};

/// Flags of `cargo xtask scale`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Image counts to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,50000,250000")]
    images: Vec<usize>,
    /// Target size of the shards (the spec's default).
    #[arg(long, default_value_t = 160)]
    size: u32,
    /// Work folder (a subfolder per count; removed after each count unless --keep).
    #[arg(long, default_value = "target/scale")]
    dir: std::path::PathBuf,
    /// Keep the generated images and shards.
    #[arg(long)]
    keep: bool,
    /// Do not write docs/BENCHMARKS.md.
    #[arg(long)]
    no_write: bool,
}

/// Smallest and largest side of the generated sources: small JPEGs, cheap to make.
const SIDES: (u32, u32) = (64, 128);

/// Peak RSS may grow by this much per image between the smallest and largest run: the file
/// list (a path and a class, ~100 bytes) and the manifest's bookkeeping, not pixels or records.
const RSS_BYTES_PER_IMAGE: u64 = 400;

/// Plus this much slack for allocator and page-cache noise.
const RSS_SLACK_BYTES: u64 = 64 << 20;

struct Row {
    images: usize,
    source_mb: f64,
    shard_mb: f64,
    generate: Measured,
    shard: Measured,
    stream: Measured,
    streamed: u64,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    if args.images.is_empty() {
        bail!("--images lists no count");
    }
    let binary = crate::data::shardfeed_binary()?;
    let base = root().join(&args.dir);
    let mut rows = Vec::new();
    for &images in &args.images {
        let dir = base.join(images.to_string());
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        let row = one_count(&binary, &dir, images, args.size)?;
        print_row(&row);
        rows.push(row);
        if !args.keep {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot remove {}", dir.display()))?;
        }
    }
    let table = table(&rows, args);
    println!("\n{table}");
    if !args.no_write {
        let path = report::write_section("scale", &table)?;
        eprintln!("wrote the scale section of {}", path.display());
    }
    check_flat(&rows, "shard", |r| &r.shard)?;
    check_flat(&rows, "stream --no-cache", |r| &r.stream)?;
    Ok(())
}

fn one_count(binary: &Path, dir: &Path, images: usize, size: u32) -> anyhow::Result<Row> {
    let data = dir.join("data");
    let shards = dir.join("shards");
    let generate = run_measured(
        Command::new(binary)
            .arg("gen-data")
            .arg("--out")
            .arg(&data)
            .args(["--n-test", "0", "--n-train", &images.to_string()])
            .args(["--min-side", &SIDES.0.to_string()])
            .args(["--max-side", &SIDES.1.to_string()]),
    )?;
    let shard = run_measured(
        Command::new(binary)
            .arg("shard")
            .arg(data.join("train"))
            .arg("--out")
            .arg(&shards)
            .args(["--size", &size.to_string(), "--quiet"]),
    )?;
    let manifest: Value = serde_json::from_slice(&std::fs::read(shards.join("manifest.json"))?)?;
    let records = manifest["records"]
        .as_u64()
        .context("records in manifest")?;
    if records != images as u64 {
        bail!("shard wrote {records} records of {images} images");
    }
    let stream = run_measured(Command::new(binary).arg("stream").arg(&shards).args([
        "--epochs",
        "1",
        "--no-cache",
        "--json",
    ]))?;
    let report: Value = serde_json::from_slice(&stream.stdout)?;
    let streamed = report["epochs"][0]["images"]
        .as_u64()
        .context("epochs[0].images in the stream report")?;
    Ok(Row {
        images,
        source_mb: util::folder_bytes(&data.join("train"))? as f64 / 1e6,
        shard_mb: manifest["bytes_out"].as_f64().unwrap_or(f64::NAN) / 1e6,
        generate,
        shard,
        stream,
        streamed,
    })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn print_row(row: &Row) {
    eprintln!(
        "{} images: generate {:.1} s, shard {:.1} s ({:.0} images/s, peak {:.0} MiB), stream {:.1} s ({:.0} images/s, peak {:.0} MiB)",
        row.images,
        row.generate.seconds,
        row.shard.seconds,
        row.images as f64 / row.shard.seconds,
        mib(row.shard.peak_rss_bytes),
        row.stream.seconds,
        row.streamed as f64 / row.stream.seconds,
        mib(row.stream.peak_rss_bytes),
    );
}

fn table(rows: &[Row], args: &Args) -> String {
    let counts: Vec<String> = args.images.iter().map(usize::to_string).collect();
    let (smallest, largest) = (
        args.images.iter().min().copied().unwrap_or(0),
        args.images.iter().max().copied().unwrap_or(0),
    );
    let mut out = format!(
        "## Scale: shard and stream from {} to {} images\n\n\
         `cargo xtask scale --images {}` on {}, {} (release build). Sources: generated JPEGs of \
         {}–{} px a side (quality 90, 4:2:0), sharded into 16 files at {} px (quality 95, 4:4:4) \
         with the defaults (one job per core), then one epoch of `shardfeed stream --no-cache` \
         (batch 32, shuffle 2048, decode on every core). Times are wall-clock of the whole \
         process, peak RSS is `wait4`'s `ru_maxrss`.\n\n\
         | images | sources | generate | shard | shard images/s | shard peak RSS | shards | stream 1 epoch | stream images/s | stream peak RSS |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        short_count(smallest),
        short_count(largest),
        counts.join(","),
        report::today(),
        report::machine(),
        SIDES.0,
        SIDES.1,
        args.size,
    );
    for row in rows {
        out.push_str(&format!(
            "| {} | {:.0} MB | {:.1} s | {:.1} s | {:.0} | {:.0} MiB | {:.0} MB | {:.1} s | {:.0} | {:.0} MiB |\n",
            row.images,
            row.source_mb,
            row.generate.seconds,
            row.shard.seconds,
            row.images as f64 / row.shard.seconds,
            mib(row.shard.peak_rss_bytes),
            row.shard_mb,
            row.stream.seconds,
            row.streamed as f64 / row.stream.seconds,
            mib(row.stream.peak_rss_bytes),
        ));
    }
    out
}

/// `10000` as `10k`, `1000000` as `1M`.
fn short_count(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// Fails when `stage`'s peak RSS grows from the smallest to the largest count by more than
/// the file list explains.
fn check_flat(rows: &[Row], stage: &str, of: impl Fn(&Row) -> &Measured) -> anyhow::Result<()> {
    let (Some(small), Some(large)) = (
        rows.iter().min_by_key(|r| r.images),
        rows.iter().max_by_key(|r| r.images),
    ) else {
        return Ok(());
    };
    let extra_images = (large.images - small.images) as u64;
    let allowed = of(small).peak_rss_bytes + extra_images * RSS_BYTES_PER_IMAGE + RSS_SLACK_BYTES;
    let peak = of(large).peak_rss_bytes;
    if peak > allowed {
        bail!(
            "{stage}: peak RSS {:.0} MiB at {} images vs {:.0} MiB at {}: grows with the number of images (allowed {:.0} MiB)",
            mib(peak),
            large.images,
            mib(of(small).peak_rss_bytes),
            small.images,
            mib(allowed)
        );
    }
    eprintln!(
        "{stage}: peak RSS {:.0} MiB at {} images, {:.0} MiB at {}: flat (allowed {:.0} MiB)",
        mib(peak),
        large.images,
        mib(of(small).peak_rss_bytes),
        small.images,
        mib(allowed)
    );
    Ok(())
}
