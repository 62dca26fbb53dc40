//! `cargo xtask bench`: benchmarks, each next to the TensorFlow figure it must beat,
//! measured in the same run when the TensorFlow reference is installed. Every figure is a
//! median with its spread over `--runs` repetitions; the whole run's table goes into the
//! `bench` section of `docs/BENCHMARKS.md` (ours, TensorFlow, ratio).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

use clap::ValueEnum;

use crate::report;
use crate::util::{self, cargo};

/// Flags of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to measure (default: everything).
    #[arg(value_enum)]
    what: Vec<Bench>,
    /// Timed repetitions of each measurement (median and spread are reported).
    #[arg(long, default_value_t = 3)]
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
    /// Do not write docs/BENCHMARKS.md.
    #[arg(long)]
    no_write: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
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
    /// The Python `Loader` (first pass, cached, no cache) vs tf.data, WebDataset + Pillow,
    /// `shardfeed stream`, and the one-thread decode-only ceiling × cores.
    Python,
    /// `shardfeed stream` from a local S3 server (moto) vs the same shards on local disk, and
    /// `shard` as 2 worker processes vs one process.
    Storage,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let what = if args.what.is_empty() {
        vec![
            Bench::RecordFormat,
            Bench::Pipeline,
            Bench::Shard,
            Bench::Stream,
            Bench::Train,
            Bench::Python,
        ]
    } else {
        args.what.clone()
    };
    let mut rows = Vec::new();
    for bench in &what {
        match bench {
            Bench::RecordFormat => record_format(args, &mut rows)?,
            Bench::Pipeline => pipeline(args, &mut rows)?,
            Bench::Shard => shard(args, &mut rows)?,
            Bench::Stream => stream(args, &mut rows)?,
            Bench::Train => train(args, &mut rows)?,
            Bench::Python => python(args, &mut rows)?,
            Bench::Storage => storage(args, &mut rows)?,
        }
    }
    let table = table(&rows, &what, args);
    println!("\n{table}");
    if !args.no_write {
        // The Python and storage benchmarks alone keep their own sections (they need the
        // wheel's venv, a local S3 server).
        let section = if what == [Bench::Python] {
            "python"
        } else if what == [Bench::Storage] {
            "storage"
        } else {
            "bench"
        };
        let path = report::write_section(section, &table)?;
        eprintln!("wrote the bench section of {}", path.display());
    }
    Ok(())
}

/// A measured figure: median and spread of its runs.
#[derive(Debug, Clone, Copy)]
struct Figure {
    median: f64,
    min: f64,
    max: f64,
    runs: usize,
}

impl Figure {
    fn of(values: Vec<f64>) -> Figure {
        let runs = values.len();
        let (median, min, max) = spread(values);
        Figure {
            median,
            min,
            max,
            runs,
        }
    }

    /// From a bench document's `PREFIX_median`, `_min`, `_max`.
    fn from_json(value: &Value, prefix: &str, runs: usize) -> Figure {
        let get = |suffix: &str| {
            value[format!("{prefix}_{suffix}")]
                .as_f64()
                .unwrap_or(f64::NAN)
        };
        Figure {
            median: get("median"),
            min: get("min"),
            max: get("max"),
            runs,
        }
    }

    fn map(self, f: impl Fn(f64) -> f64) -> Figure {
        let (a, b) = (f(self.min), f(self.max));
        Figure {
            median: f(self.median),
            min: a.min(b),
            max: a.max(b),
            runs: self.runs,
        }
    }

    fn cell(&self) -> String {
        let digits = if self.median.abs() >= 100.0 {
            0
        } else if self.median.abs() >= 10.0 {
            1
        } else {
            2
        };
        format!(
            "{:.digits$} ({:.digits$}–{:.digits$}, n={})",
            self.median, self.min, self.max, self.runs
        )
    }
}

/// One line of the table.
struct Row {
    stage: &'static str,
    name: String,
    unit: &'static str,
    ours: Figure,
    /// What we are compared with, and its figure (`None`: not measured in this run).
    baseline: &'static str,
    theirs: Option<Figure>,
    /// Lower is better (latencies): the ratio is theirs / ours.
    lower_is_better: bool,
    /// Ratios of same-run alternating pairs (ours, then theirs, back to back), when measured
    /// that way: the conservative figure, since each pair shares the machine's state.
    pair_ratios: Option<Figure>,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        let theirs = self.theirs?.median;
        Some(if self.lower_is_better {
            theirs / self.ours.median
        } else {
            self.ours.median / theirs
        })
    }
}

fn table(rows: &[Row], what: &[Bench], args: &Args) -> String {
    let names: Vec<String> = what
        .iter()
        .filter_map(|b| b.to_possible_value().map(|v| v.get_name().to_owned()))
        .collect();
    let tensorflow = tensorflow_version().unwrap_or_else(|why| format!("not measured ({why})"));
    let heading = if what == [Bench::Python] {
        "The Python loader against tf.data, WebDataset and the decode-only ceiling"
    } else if what == [Bench::Storage] {
        "Object storage (a local S3 server) against local disk; sharding on 2 workers"
    } else {
        "Against TensorFlow, stage by stage"
    };
    let mut out = format!(
        "## {heading}\n\n\
         `cargo xtask bench {} --runs {} --tf-runs {}` on {}, {}; TensorFlow: {}. Each cell: \
         median (min–max, n runs). Ratio: ours ÷ theirs for rates, theirs ÷ ours for times \
         (above 1 means we are faster).\n\n\
         | stage | measurement | unit | shardfeed | baseline | baseline figure | ratio |\n\
         |---|---|---|---:|---|---:|---:|\n",
        names.join(" "),
        args.runs,
        args.tf_runs,
        report::today(),
        report::machine(),
        tensorflow,
    );
    for row in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            row.stage,
            row.name,
            row.unit,
            row.ours.cell(),
            row.baseline,
            row.theirs
                .map_or_else(|| "not measured".to_owned(), |f| f.cell()),
            match (row.pair_ratios, row.ratio()) {
                (Some(pairs), _) => format!(
                    "**{:.2}x** ({:.2}–{:.2}, {} pairs)",
                    pairs.median, pairs.min, pairs.max, pairs.runs
                ),
                (None, Some(r)) => format!("**{r:.2}x**"),
                (None, None) => "–".to_owned(),
            },
        ));
    }
    out
}

/// The TensorFlow version of the reference venv.
fn tensorflow_version() -> anyhow::Result<String> {
    let python = util::tensorflow_python().map_err(anyhow::Error::msg)?;
    let output = Command::new(python)
        .args(["-c", "import tensorflow as tf; print(tf.__version__)"])
        .env("TF_CPP_MIN_LOG_LEVEL", "3")
        .output()?;
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
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

fn pipeline(args: &Args, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let ours = cargo_bench("shardfeed-input-pipeline", "pipeline", args.runs, &[])?;
    let results = ours["results"].as_array().cloned().unwrap_or_default();
    let figure = |r: &Value| Figure::from_json(r, "items_per_s", args.runs);
    for result in &results {
        let name = result["name"].as_str().unwrap_or("?");
        let Some((work, how)) = name.split_once(": ") else {
            continue;
        };
        if !how.contains("2 thread") || result["vs_sequential"].is_null() {
            continue;
        }
        let sequential = results
            .iter()
            .find(|r| r["name"].as_str() == Some(&format!("{work}: sequential loop")));
        rows.push(Row {
            stage: "pipeline",
            name: name.to_owned(),
            unit: "items/s",
            ours: figure(result),
            baseline: "the same work in a sequential loop",
            theirs: sequential.map(figure),
            lower_is_better: false,
            pair_ratios: None,
        });
    }
    Ok(())
}

fn record_format(args: &Args, rows: &mut Vec<Row>) -> anyhow::Result<()> {
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
        Ok(rates) => Some(Figure::of(rates)),
        Err(why) => {
            eprintln!("TensorFlow baseline SKIPPED: {why:#}");
            eprintln!("(the figure to beat, from baseline/tf-figures.md: 2.1 GB/s in-graph scan)");
            None
        }
    };
    for result in ours["results"].as_array().into_iter().flatten() {
        let name = result["name"].as_str().unwrap_or("?");
        if name.starts_with("scan") {
            rows.push(Row {
                stage: "record-format",
                name: name.to_owned(),
                unit: "GB/s",
                ours: Figure::from_json(result, "gb_per_s", args.runs),
                baseline: "TensorFlow in-graph TFRecordDataset scan, same files",
                theirs: tensorflow,
                lower_is_better: false,
                pair_ratios: None,
            });
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

fn print_figure(name: &str, values: Vec<f64>, unit: &str) -> Figure {
    let figure = Figure::of(values);
    println!(
        "{name:<44} {:>9.0} {unit} median (min {:.0}, max {:.0}, n={})",
        figure.median, figure.min, figure.max, figure.runs
    );
    figure
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

fn shard(args: &Args, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let binary = crate::data::shardfeed_binary()?;
    let sources = bench_sources(&binary, args.images)?;
    let out = util::root().join("target/bench-data/shards");
    let bytes = util::folder_bytes(&sources.join("train"))?;
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
            "{} JPEGs → 16 shards at 160 px, {jobs} job(s){}",
            args.images,
            if fast { ", --fast-decode" } else { "" }
        );
        ours.push((name.clone(), print_figure(&name, rates, "images/s")));
    }
    let tensorflow = match tensorflow_shard(&sources, args.tf_runs) {
        Ok(rates) => Some(print_figure(
            "tensorflow shard.py (same folder)",
            rates,
            "images/s",
        )),
        Err(why) => {
            eprintln!("TensorFlow baseline SKIPPED: {why:#} (the figure to beat: 1,453 images/s)");
            None
        }
    };
    for (name, rate) in ours {
        if let Some(tf) = tensorflow {
            println!(
                "ratio vs tensorflow: {name:<40} {:>5.2}x",
                rate.median / tf.median
            );
        }
        rows.push(Row {
            stage: "shard",
            name,
            unit: "images/s",
            ours: rate,
            baseline: "TensorFlow `shard.py`, same folder",
            theirs: tensorflow,
            lower_is_better: false,
            pair_ratios: None,
        });
    }
    if tensorflow.is_some() {
        rows.insert(0, shard_pairs(args, &binary, &sources, &out)?);
    }
    Ok(())
}

/// The conservative shard figure: `shardfeed shard` (2 jobs) and TensorFlow's `shard.py`
/// alternately on the same folder, `max(tf_runs, 5)` pairs, each pair's ratio; the median
/// ratio and its spread (TensorFlow's own spread from run to run is wide on this machine).
fn shard_pairs(args: &Args, binary: &Path, sources: &Path, out: &Path) -> anyhow::Result<Row> {
    let pairs = args.tf_runs.max(5);
    let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for pair in 0..pairs {
        let our_rate = shard_once(binary, sources, out, 2, false)?;
        let their_rate = tensorflow_shard(sources, 1)?[0];
        println!(
            "shard pair {}: shardfeed {our_rate:.0} vs tensorflow {their_rate:.0} images/s: {:.2}x",
            pair + 1,
            our_rate / their_rate
        );
        ours.push(our_rate);
        theirs.push(their_rate);
        ratios.push(our_rate / their_rate);
    }
    let ratio = Figure::of(ratios);
    println!(
        "shard, same-run pairs: median ratio {:.2}x ({:.2}–{:.2}, {pairs} pairs)",
        ratio.median, ratio.min, ratio.max
    );
    Ok(Row {
        stage: "shard",
        name: format!(
            "{} JPEGs → 16 shards at 160 px, 2 jobs, alternating with TensorFlow",
            args.images
        ),
        unit: "images/s",
        ours: Figure::of(ours),
        baseline: "TensorFlow `shard.py`, same folder, same pairs",
        theirs: Some(Figure::of(theirs)),
        lower_is_better: false,
        pair_ratios: Some(ratio),
    })
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

fn stream(args: &Args, rows: &mut Vec<Row>) -> anyhow::Result<()> {
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
        Ok(results) => Some(results),
        Err(why) => {
            eprintln!(
                "TensorFlow baseline SKIPPED: {why:#} (figures to beat: 4,435 / 92,276 / 7,982 images/s)"
            );
            None
        }
    };
    for (name, rate, key, section) in ours {
        let theirs = tensorflow.as_ref().map(|results| {
            let values: Vec<f64> = results
                .iter()
                .filter_map(|r| r[section][key].as_f64())
                .collect();
            print_figure(
                &format!("tensorflow read_bench, {name}"),
                values,
                "images/s",
            )
        });
        if let Some(tf) = theirs {
            println!(
                "ratio vs tensorflow: {name:<40} {:>5.2}x",
                rate.median / tf.median
            );
        }
        rows.push(Row {
            stage: "stream",
            name: format!("{} records, batch 32: {name}", args.images),
            unit: "images/s",
            ours: rate,
            baseline: "TensorFlow `read_bench.py` (tutorial pipeline), same shards",
            theirs,
            lower_is_better: false,
            pair_ratios: None,
        });
    }
    Ok(())
}

fn train(args: &Args, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let ours = cargo_bench("shardfeed-model", "train_step", args.runs, &[])?;
    let batch = ours["batch"]
        .as_f64()
        .context("batch in the train bench output")?;
    let step = |mode: &str| Figure::from_json(&ours[mode], "step_s", args.runs);
    let (fast, stock) = (
        step("fast").map(|s| batch / s),
        step("stock").map(|s| batch / s),
    );
    let binary = crate::data::shardfeed_binary()?;
    let sources = bench_sources(&binary, args.images)?;
    let shards = util::root().join("target/bench-data/stream-shards");
    if !shards.join("manifest.json").exists() {
        shard_once(&binary, &sources, &shards, 2, false)?;
    }
    let keras = match keras_throughput(&shards, args.tf_runs) {
        Ok(rates) => Some(print_figure(
            "keras train.py --mode throughput",
            rates,
            "images/s",
        )),
        Err(why) => {
            eprintln!("Keras baseline SKIPPED: {why:#} (the figure to beat: 110 images/s)");
            None
        }
    };
    for (name, figure) in [
        (
            "training step, batch 32 at 160 px: fast CPU path (default)",
            fast,
        ),
        (
            "training step, batch 32 at 160 px: burn-flex stock kernels",
            stock,
        ),
    ] {
        if let Some(keras) = keras {
            println!(
                "ratio vs keras: {name}  {:>5.2}x",
                figure.median / keras.median
            );
        }
        rows.push(Row {
            stage: "train",
            name: name.to_owned(),
            unit: "images/s",
            ours: figure,
            baseline: "Keras `train.py --mode throughput`, same shards",
            theirs: keras,
            lower_is_better: false,
            pair_ratios: None,
        });
    }
    let our_latency = Figure::from_json(&ours["fast"], "predict_ms", args.runs);
    let latency = match keras_predict_latency() {
        Ok(latency) => Some(latency),
        Err(why) => {
            eprintln!("Keras latency SKIPPED: {why:#}");
            None
        }
    };
    for (name, key) in [
        ("model.predict(x)", "predict_ms"),
        ("model(x, training=False)", "call_ms"),
    ] {
        let theirs = latency.as_ref().map(|l| {
            let get = |k: &str| l[key][k].as_f64().unwrap_or(f64::NAN);
            Figure {
                median: get("median"),
                min: get("min"),
                max: get("max"),
                runs: l[key]["n"].as_u64().unwrap_or(0) as usize,
            }
        });
        if let Some(theirs) = theirs {
            println!(
                "latency vs keras {name}: ours {:.1} ms, theirs {:.1} ms: {:.2}x faster",
                our_latency.median,
                theirs.median,
                theirs.median / our_latency.median
            );
        }
        rows.push(Row {
            stage: "predict",
            name: "one image at 160 px, forward only".to_owned(),
            unit: "ms",
            ours: our_latency,
            baseline: if key == "predict_ms" {
                "Keras `model.predict(x)`"
            } else {
                "Keras `model(x, training=False)`"
            },
            theirs,
            lower_is_better: true,
            pair_ratios: None,
        });
    }
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

/// `python crates/python/bench/SCRIPT ARGS` in the bench venv, `runs` times; each run's JSON.
fn python_script(
    python: &Path,
    script: &str,
    args: &[&OsStr],
    runs: usize,
) -> anyhow::Result<Vec<Value>> {
    let path = util::root().join("crates/python/bench").join(script);
    (0..runs.max(1))
        .map(|_| {
            let output = Command::new(python).arg(&path).args(args).output()?;
            if !output.status.success() {
                bail!(
                    "{script} failed ({}): {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            Ok(serde_json::from_slice(&output.stdout)?)
        })
        .collect()
}

fn python(args: &Args, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let binary = crate::data::shardfeed_binary()?;
    let sources = bench_sources(&binary, args.images)?;
    let shards = util::root().join("target/bench-data/stream-shards");
    shard_once(&binary, &sources, &shards, 2, false)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let wheel = crate::python::build_wheel()?;
    let python = crate::python::bench_venv(&wheel)?;
    println!(
        "python: {} records in 16 shards of 160 px, float32 NHWC batches of 32, {cores} cores",
        args.images
    );

    let ceiling_doc = cargo_bench(
        "shardfeed-dataset",
        "decode_ceiling",
        args.runs,
        &[("SHARDFEED_BENCH_SHARDS", shards.display().to_string())],
    )?;
    let list = |key: &str| -> anyhow::Result<Vec<f64>> {
        Ok(ceiling_doc[key]
            .as_array()
            .with_context(|| format!("{key} in decode_ceiling's output"))?
            .iter()
            .filter_map(Value::as_f64)
            .collect())
    };
    let ceiling = print_figure(
        "decode only (libjpeg-turbo), 1 thread",
        list("images_per_s")?,
        "images/s",
    );
    let limit = ceiling.map(|v| v * cores as f64);
    let together = print_figure(
        &format!("decode only (libjpeg-turbo), {cores} threads at once"),
        list("all_threads_images_per_s")?,
        "images/s",
    );

    // Ours and `shardfeed stream`, alternating run by run.
    let (mut first, mut cached, mut uncached, mut stream) = (vec![], vec![], vec![], vec![]);
    for _ in 0..args.runs {
        let doc = &python_script(
            &python,
            "loader_bench.py",
            &["--shards".as_ref(), shards.as_os_str()],
            1,
        )?[0];
        first.push(
            doc["cache"]["pass1_images_per_s"]
                .as_f64()
                .unwrap_or(f64::NAN),
        );
        cached.push(
            doc["cache"]["pass2_images_per_s"]
                .as_f64()
                .unwrap_or(f64::NAN),
        );
        uncached.push(
            doc["nocache"]["pass2_images_per_s"]
                .as_f64()
                .unwrap_or(f64::NAN),
        );
        stream.push(stream_once(&binary, &shards, false)?.1);
    }
    let first = print_figure("Loader, first pass (decode + cache)", first, "images/s");
    let cached = print_figure("Loader, cached passes", cached, "images/s");
    let uncached = print_figure("Loader, no cache, later passes", uncached, "images/s");
    let stream = print_figure(
        "shardfeed stream --no-cache, later passes",
        stream,
        "images/s",
    );

    let tensorflow = match tensorflow_read(&shards, args.tf_runs) {
        Ok(results) => Some(results),
        Err(why) => {
            eprintln!("TensorFlow baseline SKIPPED: {why:#}");
            None
        }
    };
    let tf_figure = |section: &str, key: &str, name: &str| {
        tensorflow.as_ref().map(|results| {
            print_figure(
                name,
                results
                    .iter()
                    .filter_map(|r| r[section][key].as_f64())
                    .collect(),
                "images/s",
            )
        })
    };
    let tf_first = tf_figure(
        "pipeline_cache",
        "pass1_images_per_s",
        "tf.data tutorial, first pass",
    );
    let tf_cached = tf_figure(
        "pipeline_cache",
        "pass2_images_per_s",
        "tf.data tutorial, cached",
    );
    let tf_uncached = tf_figure(
        "pipeline_nocache",
        "pass2_images_per_s",
        "tf.data tutorial, no cache",
    );

    let tars = util::root().join("target/bench-data/wds-tars");
    let wds = python_script(
        &python,
        "webdataset_bench.py",
        &[
            "--shards".as_ref(),
            shards.as_os_str(),
            "--tars".as_ref(),
            tars.as_os_str(),
        ],
        args.runs,
    )?;
    let wds = print_figure(
        "WebDataset 1.0.2 + Pillow (one process), later pass",
        wds.iter()
            .filter_map(|r| r["pass2_images_per_s"].as_f64())
            .collect(),
        "images/s",
    );
    let torch = Command::new(&python)
        .args(["-c", "import torch"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !torch {
        eprintln!(
            "PyTorch DataLoader baseline not measured: torch is not in {} (PyPI's torch brings ~3 GB of CUDA wheels)",
            python.display()
        );
    }

    let n = args.images;
    let mut row = |name: String, ours: Figure, baseline: &'static str, theirs: Option<Figure>| {
        if let Some(t) = theirs {
            println!("ratio: {name:<60} {:>5.2}x", ours.median / t.median);
        }
        rows.push(Row {
            stage: "python",
            name,
            unit: "images/s",
            ours,
            baseline,
            theirs,
            lower_is_better: false,
            pair_ratios: None,
        });
    };
    row(
        format!("{n} records: Loader, first pass"),
        first,
        "tf.data tutorial pipeline (`read_bench.py`), first pass",
        tf_first,
    );
    row(
        format!("{n} records: Loader, cached passes"),
        cached,
        "tf.data tutorial pipeline, cached passes",
        tf_cached,
    );
    row(
        format!("{n} records: Loader, no cache"),
        uncached,
        "tf.data tutorial pipeline, no cache",
        tf_uncached,
    );
    row(
        format!("{n} records: Loader, no cache"),
        uncached,
        "WebDataset 1.0.2 + Pillow, same JPEGs as tar shards, one process",
        Some(wds),
    );
    row(
        format!("{n} records: Loader, no cache (Python boundary)"),
        uncached,
        "`shardfeed stream --no-cache`, same shards",
        Some(stream),
    );
    row(
        format!("{n} records: Loader, no cache"),
        uncached,
        "decode-only ceiling: 1-thread libjpeg-turbo × cores",
        Some(limit),
    );
    row(
        format!("{n} records: Loader, no cache"),
        uncached,
        "decode only, every core at once (measured)",
        Some(together),
    );
    row(
        format!("{n} records: `shardfeed stream --no-cache`"),
        stream,
        "decode-only ceiling: 1-thread libjpeg-turbo × cores",
        Some(limit),
    );
    Ok(())
}

/// `stream` from S3 (moto on loopback) against local disk, the same shards, in alternating
/// pairs; `shard` as 2 worker processes (+ merge) against one process, in pairs.
fn storage(args: &Args, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    use crate::storage::{S3Server, shard_wall, stream_rate};
    let binary = crate::data::shardfeed_binary()?;
    let sources = bench_sources(&binary, args.images)?;
    let local = util::root().join("target/bench-data/stream-shards");
    shard_once(&binary, &sources, &local, 2, false)?;
    let s3 = S3Server::start()?;
    s3.bucket("bench")?;
    let mut upload = Command::new(&binary);
    upload
        .arg("shard")
        .arg(sources.join("train"))
        .args(["--out", "s3://bench/shards", "--quiet"]);
    s3.env(&mut upload);
    util::run(&mut upload)?;
    println!(
        "storage: {} records in 16 shards of 160 px, no cache, batch 32; {} on 127.0.0.1",
        args.images,
        crate::storage::MOTO
    );
    let local_text = local.to_string_lossy().into_owned();
    let (mut ours, mut disk, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.runs.max(3) {
        let from_disk = stream_rate(&binary, &local_text, &s3)?;
        let from_s3 = stream_rate(&binary, "s3://bench/shards", &s3)?;
        println!(
            "  pair: disk {from_disk:.0}, S3 {from_s3:.0} images/s: {:.2}x",
            from_s3 / from_disk
        );
        disk.push(from_disk);
        ours.push(from_s3);
        ratios.push(from_s3 / from_disk);
    }
    rows.push(Row {
        stage: "storage",
        name: format!(
            "stream, no cache, {} records from s3:// (moto, loopback)",
            args.images
        ),
        unit: "images/s",
        ours: print_figure("stream from S3", ours, "images/s"),
        baseline: "the same shards on local disk, same run",
        theirs: Some(print_figure("stream from local disk", disk, "images/s")),
        lower_is_better: false,
        pair_ratios: Some(Figure::of(ratios)),
    });

    let work = util::root().join("target/bench-data/storage-shard");
    let (mut two, mut one, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..args.runs.max(3) {
        if work.exists() {
            std::fs::remove_dir_all(&work)?;
        }
        let out = |name: &str| {
            work.join(format!("{name}-{run}"))
                .to_string_lossy()
                .into_owned()
        };
        let single = shard_wall(&binary, &sources.join("train"), &out("one"), 1, &s3)?;
        let split = shard_wall(&binary, &sources.join("train"), &out("two"), 2, &s3)?;
        println!(
            "  pair: one process {single:.2} s, 2 workers {split:.2} s: {:.2}x",
            single / split
        );
        one.push(single);
        two.push(split);
        ratios.push(single / split);
    }
    rows.push(Row {
        stage: "storage",
        name: format!(
            "shard {} images: 2 worker processes + shard-merge",
            args.images
        ),
        unit: "s",
        ours: print_figure("shard, 2 workers", two, "s"),
        baseline: "one `shardfeed shard` process, same run",
        theirs: Some(print_figure("shard, one process", one, "s")),
        lower_is_better: true,
        pair_ratios: Some(Figure::of(ratios)),
    });
    Ok(())
}
