//! `cargo xtask bench`: benchmarks, each next to the TensorFlow figure it must beat,
//! measured in the same run when the TensorFlow reference is installed.

use std::ffi::OsStr;
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
    /// Images generated for the shard and stream benchmarks.
    #[arg(long, default_value_t = 4000)]
    images: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Bench {
    /// TFRecord scan and write throughput vs TensorFlow's in-graph TFRecord scan.
    RecordFormat,
    /// The input pipeline's scaling and per-item overhead vs the same work done sequentially.
    Pipeline,
    /// `shardfeed shard` on ~4,000 generated JPEGs vs TensorFlow's shard step on the same folder.
    Shard,
    /// `shardfeed stream` (first pass, cached passes, no cache) vs TensorFlow's read pipeline.
    Stream,
    /// One training step of the seed CNN (batch 32, 160 px) vs Keras's `train.py --mode throughput`.
    Train,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    for bench in &args.what {
        match bench {
            Bench::RecordFormat => record_format(args)?,
            Bench::Pipeline => pipeline(args)?,
            Bench::Shard => shard(args)?,
            Bench::Stream => stream(args)?,
            Bench::Train => train(args)?,
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

/// Median, min and max of a sample.
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (median(&values), values[0], values[values.len() - 1])
}

fn print_figure(name: &str, values: Vec<f64>, unit: &str) -> f64 {
    let n = values.len();
    let (median, min, max) = spread(values);
    println!("{name:<44} {median:>9.0} {unit} median (min {min:.0}, max {max:.0}, n={n})");
    median
}

/// The generated source folder for the shard and stream benchmarks (made once per size).
fn bench_sources(binary: &Path, images: usize) -> anyhow::Result<PathBuf> {
    let dir = util::root().join(format!("target/bench-data/jpegs-{images}"));
    if !dir.join("train").is_dir() {
        util::run(
            Command::new(binary)
                .arg("gen-data")
                .arg("--out")
                .arg(&dir)
                .args(["--n-test", "0", "--n-train"])
                .arg(images.to_string()),
        )?;
    }
    Ok(dir)
}

/// Runs `shardfeed shard` once; returns images/s from its manifest.
fn shard_once(
    binary: &Path,
    sources: &Path,
    out: &Path,
    jobs: usize,
    fast: bool,
) -> anyhow::Result<f64> {
    let mut command = Command::new(binary);
    command
        .arg("shard")
        .arg(sources.join("train"))
        .arg("--out")
        .arg(out);
    command.args(["--overwrite", "--quiet", "--jobs", &jobs.to_string()]);
    if fast {
        command.arg("--fast-decode");
    }
    let output = command.output()?;
    if !output.status.success() {
        bail!(
            "shardfeed shard failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let manifest: Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json"))?)?;
    let records = manifest["records"]
        .as_f64()
        .context("records in manifest.json")?;
    let seconds = manifest["seconds"]
        .as_f64()
        .context("seconds in manifest.json")?;
    Ok(records / seconds)
}

fn shard(args: &Args) -> anyhow::Result<()> {
    let binary = crate::data::shardfeed_binary()?;
    let sources = bench_sources(&binary, args.images)?;
    let out = util::root().join("target/bench-data/shards");
    let bytes: u64 = std::fs::read_dir(sources.join("train"))?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "shard: {} JPEGs, {:.1} MB, into 16 shards of 160 px",
        args.images,
        bytes as f64 / 1e6
    );
    let mut ours = Vec::new();
    for (jobs, fast) in [(1, false), (2, false), (1, true), (2, true)] {
        let rates = (0..args.runs)
            .map(|_| shard_once(&binary, &sources, &out, jobs, fast))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let name = format!(
            "shardfeed shard, {jobs} job(s){}",
            if fast { ", --fast-decode" } else { "" }
        );
        ours.push((name.clone(), print_figure(&name, rates, "images/s")));
    }
    let tensorflow = match tensorflow_shard(&sources, args.tf_runs) {
        Ok(rates) => print_figure("tensorflow shard.py (same folder)", rates, "images/s"),
        Err(why) => {
            eprintln!("TensorFlow baseline SKIPPED: {why:#} (the figure to beat: 1,453 images/s)");
            return Ok(());
        }
    };
    for (name, rate) in ours {
        println!(
            "ratio vs tensorflow: {name:<40} {:>5.2}x",
            rate / tensorflow
        );
    }
    Ok(())
}

fn baseline_script(name: &str) -> anyhow::Result<PathBuf> {
    util::shared_dir()
        .map(|s| s.join("baseline/tf").join(name))
        .filter(|s| s.exists())
        .with_context(|| format!("../shared/baseline/tf/{name} not found"))
}

/// Runs `shardfeed stream --json`; returns (first pass, later passes) images/s.
fn stream_once(binary: &Path, shards: &Path, cache: bool) -> anyhow::Result<(f64, f64)> {
    let mut command = Command::new(binary);
    command
        .arg("stream")
        .arg(shards)
        .args(["--json", "--epochs", "4"]);
    if !cache {
        command.arg("--no-cache");
    }
    let output = command.output()?;
    if !output.status.success() {
        bail!(
            "shardfeed stream failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let report: Value = serde_json::from_slice(&output.stdout)?;
    let epochs = report["epochs"]
        .as_array()
        .context("epochs in the stream report")?;
    let rate = |e: &Value| e["images_per_second"].as_f64().unwrap_or(f64::NAN);
    let first = epochs.first().map_or(f64::NAN, rate);
    let later: Vec<f64> = epochs.iter().skip(1).map(rate).collect();
    Ok((first, spread(later).0))
}

fn stream(args: &Args) -> anyhow::Result<()> {
    let binary = crate::data::shardfeed_binary()?;
    let sources = bench_sources(&binary, args.images)?;
    let shards = util::root().join("target/bench-data/stream-shards");
    shard_once(&binary, &sources, &shards, 2, false)?;
    println!(
        "stream: {} records in 16 shards of 160 px, batch 32, 4 epochs per run",
        args.images
    );
    let mut first = Vec::new();
    let mut cached = Vec::new();
    let mut uncached = Vec::new();
    for _ in 0..args.runs {
        let (pass1, later) = stream_once(&binary, &shards, true)?;
        first.push(pass1);
        cached.push(later);
        uncached.push(stream_once(&binary, &shards, false)?.1);
    }
    let ours = [
        (
            "first pass (decode + fill cache)",
            print_figure("shardfeed stream, first pass", first, "images/s"),
            "pass1_images_per_s",
            "pipeline_cache",
        ),
        (
            "cached passes",
            print_figure("shardfeed stream, cached passes", cached, "images/s"),
            "pass2_images_per_s",
            "pipeline_cache",
        ),
        (
            "no cache, steady state",
            print_figure(
                "shardfeed stream, no cache, later passes",
                uncached,
                "images/s",
            ),
            "pass2_images_per_s",
            "pipeline_nocache",
        ),
    ];
    let tensorflow = match tensorflow_read(&shards, args.tf_runs) {
        Ok(results) => results,
        Err(why) => {
            eprintln!(
                "TensorFlow baseline SKIPPED: {why:#} (figures to beat: 4,435 / 92,276 / 7,982 images/s)"
            );
            return Ok(());
        }
    };
    for (name, rate, key, section) in ours {
        let theirs: Vec<f64> = tensorflow
            .iter()
            .filter_map(|r| r[section][key].as_f64())
            .collect();
        let tf = print_figure(
            &format!("tensorflow read_bench, {name}"),
            theirs,
            "images/s",
        );
        println!("ratio vs tensorflow: {name:<40} {:>5.2}x", rate / tf);
    }
    Ok(())
}

fn train(args: &Args) -> anyhow::Result<()> {
    let ours = cargo_bench("shardfeed-model", "train_step", args.runs, &[])?;
    let rate = |mode: &str| {
        ours[mode]["images_per_s"]
            .as_f64()
            .with_context(|| format!("{mode}.images_per_s in the train bench output"))
    };
    let (fast, stock) = (rate("fast")?, rate("stock")?);
    let binary = crate::data::shardfeed_binary()?;
    let sources = bench_sources(&binary, args.images)?;
    let shards = util::root().join("target/bench-data/stream-shards");
    if !shards.join("manifest.json").exists() {
        shard_once(&binary, &sources, &shards, 2, false)?;
    }
    let keras = match keras_throughput(&shards, args.tf_runs) {
        Ok(rates) => print_figure("keras train.py --mode throughput", rates, "images/s"),
        Err(why) => {
            eprintln!("Keras baseline SKIPPED: {why:#} (the figure to beat: 110 images/s)");
            return Ok(());
        }
    };
    println!(
        "ratio vs keras: train step, fast CPU path (default)  {:>5.2}x",
        fast / keras
    );
    println!(
        "ratio vs keras: train step, burn-flex stock kernels  {:>5.2}x",
        stock / keras
    );
    let latency = keras_predict_latency()?;
    let ms = |document: &Value, key: &str| document[key].as_f64().unwrap_or(f64::NAN);
    for (name, key) in [
        ("model.predict(x)", "predict_ms"),
        ("model(x, training=False)", "call_ms"),
    ] {
        println!(
            "keras one-image {name:<26} {:>7.1} ms median (min {:.1}, max {:.1})",
            ms(&latency[key], "median"),
            ms(&latency[key], "min"),
            ms(&latency[key], "max"),
        );
    }
    let our_ms = ours["fast"]["predict_ms_median"]
        .as_f64()
        .unwrap_or(f64::NAN);
    println!(
        "latency vs keras: one image, ours {our_ms:.1} ms: {:.2}x faster than model.predict, {:.2}x than model(x)",
        ms(&latency["predict_ms"], "median") / our_ms,
        ms(&latency["call_ms"], "median") / our_ms,
    );
    Ok(())
}

/// Keras's one-image inference latency (`scripts/keras_predict_latency.py`).
fn keras_predict_latency() -> anyhow::Result<Value> {
    let python = util::tensorflow_python().map_err(anyhow::Error::msg)?;
    let baseline = baseline_script("tutorial_pipeline.py")?;
    let json = util::root().join("target/bench-data/keras_predict_latency.json");
    util::run(
        Command::new(python)
            .arg(util::root().join("scripts/keras_predict_latency.py"))
            .arg("--baseline")
            .arg(baseline.parent().context("baseline folder")?)
            .args(["--runs", "30", "--json"])
            .arg(&json)
            .env("TF_CPP_MIN_LOG_LEVEL", "3"),
    )?;
    Ok(serde_json::from_slice(&std::fs::read(&json)?)?)
}

/// Runs `../shared/baseline/tf/SCRIPT ARGS --json FILE` with the TensorFlow venv `runs`
/// times (each pays TensorFlow's start-up once); returns each run's JSON document.
fn run_baseline(script: &str, args: &[&OsStr], runs: usize) -> anyhow::Result<Vec<Value>> {
    let python = util::tensorflow_python().map_err(anyhow::Error::msg)?;
    let path = baseline_script(script)?;
    let json = util::root()
        .join("target/bench-data")
        .join(format!("{script}.json"));
    (0..runs.max(1))
        .map(|_| {
            let output = Command::new(&python)
                .arg(&path)
                .args(args)
                .arg("--json")
                .arg(&json)
                .env("TF_CPP_MIN_LOG_LEVEL", "3")
                .output()?;
            if !output.status.success() {
                bail!(
                    "{script} failed ({}): {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            Ok(serde_json::from_slice(&std::fs::read(&json)?)?)
        })
        .collect()
}

/// `key` from each run's document, sorted.
fn numbers(results: &[Value], key: &str, script: &str) -> anyhow::Result<Vec<f64>> {
    let mut values = results
        .iter()
        .map(|r| find_number(r, key).with_context(|| format!("{key} in {script}'s output")))
        .collect::<anyhow::Result<Vec<f64>>>()?;
    values.sort_by(f64::total_cmp);
    Ok(values)
}

/// TensorFlow's in-graph scan of the same files, GB/s of payload per run, sorted.
fn tensorflow_raw_scan(dir: &Path, runs: usize) -> anyhow::Result<Vec<f64>> {
    let args = [
        "--shards".as_ref(),
        dir.as_os_str(),
        "--only".as_ref(),
        "raw_scan_graph".as_ref(),
    ];
    let mb_per_s = numbers(
        &run_baseline("read_bench.py", &args, runs)?,
        "MB_per_s",
        "read_bench.py",
    )?;
    Ok(mb_per_s.into_iter().map(|v| v / 1000.0).collect())
}

/// TensorFlow's shard step on the same folder, images/s per run.
fn tensorflow_shard(sources: &Path, runs: usize) -> anyhow::Result<Vec<f64>> {
    let out = util::root().join("target/bench-data/tf-shards");
    let args = [
        "--data".as_ref(),
        sources.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ];
    numbers(
        &run_baseline("shard.py", &args, runs)?,
        "images_per_s",
        "shard.py",
    )
}

/// TensorFlow's read pipeline over the same shards, cached and not.
fn tensorflow_read(shards: &Path, runs: usize) -> anyhow::Result<Vec<Value>> {
    let args = [
        "--shards".as_ref(),
        shards.as_os_str(),
        "--only".as_ref(),
        "pipeline_cache,pipeline_nocache".as_ref(),
    ];
    run_baseline("read_bench.py", &args, runs)
}

/// Keras's training-step throughput on the same shards, images/s per run.
fn keras_throughput(shards: &Path, runs: usize) -> anyhow::Result<Vec<f64>> {
    let mut args: Vec<&OsStr> = vec!["--shards".as_ref(), shards.as_os_str()];
    args.extend(
        [
            "--mode",
            "throughput",
            "--warmup",
            "3",
            "--measure",
            "8",
            "--verbose",
            "0",
        ]
        .map(OsStr::new),
    );
    numbers(
        &run_baseline("train.py", &args, runs)?,
        "images_per_s",
        "train.py",
    )
}
