//! `cargo xtask bench`: benchmarks, each next to the TensorFlow figure it must beat,
//! measured in the same run when the TensorFlow reference is installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::util::{self, cargo};

/// Flags of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to measure.
    #[arg(value_enum, default_value = "record-format")]
    what: Vec<Bench>,
    /// Timed repetitions of each measurement (median and spread are reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Megabytes of record payload to generate.
    #[arg(long, default_value_t = 100)]
    mb: u64,
    /// Repetitions of the TensorFlow baseline (each pays TensorFlow's start-up once).
    #[arg(long, default_value_t = 3)]
    tf_runs: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Bench {
    /// TFRecord scan and write throughput vs TensorFlow's in-graph TFRecord scan.
    RecordFormat,
    /// The input pipeline's scaling and per-item overhead vs the same work done sequentially.
    Pipeline,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    for bench in &args.what {
        match bench {
            Bench::RecordFormat => record_format(args)?,
            Bench::Pipeline => pipeline(args)?,
        }
    }
    Ok(())
}

/// Runs one `harness = false` bench target; returns the JSON document it wrote.
fn cargo_bench(
    package: &str,
    bench: &str,
    runs: usize,
    env: &[(&str, String)],
) -> anyhow::Result<Value> {
    let out_dir = util::root().join("target/bench-data");
    std::fs::create_dir_all(&out_dir)?;
    let json_path = out_dir.join(format!("{bench}.json"));
    let mut command = cargo();
    command
        .args(["bench", "--locked", "-p", package, "--bench", bench])
        .env("SHARDFEED_BENCH_RUNS", runs.to_string())
        .env("SHARDFEED_BENCH_JSON", &json_path);
    for (key, value) in env {
        command.env(key, value);
    }
    util::run(&mut command)?;
    Ok(serde_json::from_slice(&std::fs::read(&json_path)?)?)
}

fn pipeline(args: &Args) -> anyhow::Result<()> {
    cargo_bench("shardfeed-input-pipeline", "pipeline", args.runs, &[])?;
    Ok(())
}

fn record_format(args: &Args) -> anyhow::Result<()> {
    let data_dir = util::root().join("target/bench-data/record-format");
    let ours = cargo_bench(
        "shardfeed-record-format",
        "record_format",
        args.runs,
        &[
            ("SHARDFEED_BENCH_MB", args.mb.to_string()),
            ("SHARDFEED_BENCH_DIR", data_dir.display().to_string()),
        ],
    )?;
    let plain_dir = PathBuf::from(
        ours["plain_dir"]
            .as_str()
            .context("plain_dir in the bench output")?,
    );

    let tensorflow = match tensorflow_raw_scan(&plain_dir, args.tf_runs) {
        Ok(rates) => rates,
        Err(why) => {
            eprintln!("TensorFlow baseline SKIPPED: {why:#}");
            eprintln!("(the figure to beat, from baseline/tf-figures.md: 2.1 GB/s in-graph scan)");
            return Ok(());
        }
    };
    let tf_median = median(&tensorflow);
    println!(
        "tensorflow raw_scan_graph (same files)  {:.2} GB/s median (min {:.2}, max {:.2}, n={})",
        tf_median,
        tensorflow.first().copied().unwrap_or(f64::NAN),
        tensorflow.last().copied().unwrap_or(f64::NAN),
        tensorflow.len()
    );
    for result in ours["results"].as_array().into_iter().flatten() {
        let name = result["name"].as_str().unwrap_or("?");
        if name.starts_with("scan") {
            let ratio = result["gb_per_s_median"].as_f64().unwrap_or(f64::NAN) / tf_median;
            println!("ratio vs tensorflow: {name:<34} {ratio:>5.2}x");
        }
    }
    Ok(())
}

/// TensorFlow's in-graph scan of the same files, GB/s of payload per run, sorted.
fn tensorflow_raw_scan(dir: &Path, runs: usize) -> anyhow::Result<Vec<f64>> {
    let python = util::tensorflow_python().map_err(anyhow::Error::msg)?;
    let script = util::shared_dir()
        .map(|s| s.join("baseline/tf/read_bench.py"))
        .filter(|s| s.exists())
        .context("../shared/baseline/tf/read_bench.py not found")?;
    let mut rates = Vec::new();
    for run in 0..runs.max(1) {
        let json = dir.with_file_name(format!("tensorflow-raw-scan-{run}.json"));
        let output = Command::new(&python)
            .arg(&script)
            .arg("--shards")
            .arg(dir)
            .args(["--only", "raw_scan_graph", "--json"])
            .arg(&json)
            .env("TF_CPP_MIN_LOG_LEVEL", "3")
            .output()?;
        if !output.status.success() {
            bail!(
                "read_bench.py failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let result: Value = serde_json::from_slice(&std::fs::read(&json)?)?;
        let mb_per_s =
            find_number(&result, "MB_per_s").context("MB_per_s in read_bench.py's output")?;
        rates.push(mb_per_s / 1000.0);
    }
    rates.sort_by(f64::total_cmp);
    Ok(rates)
}

/// The first number under `key` anywhere in `value`.
fn find_number(value: &Value, key: &str) -> Option<f64> {
    match value {
        Value::Object(map) => map
            .get(key)
            .and_then(Value::as_f64)
            .or_else(|| map.values().find_map(|v| find_number(v, key))),
        Value::Array(items) => items.iter().find_map(|v| find_number(v, key)),
        _ => None,
    }
}

fn median(sorted: &[f64]) -> f64 {
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}
