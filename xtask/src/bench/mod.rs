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

mod augment;
mod pipeline;
mod python;
mod shard;
mod storage;
mod stream;
mod train;

use crate::util::{self, cargo};
use augment::augment;
use pipeline::{pipeline, record_format};
use python::python;
use shard::{shard, shard_once};
use storage::storage;
use stream::{stream, stream_once, tensorflow_raw_scan, tensorflow_read};
use train::train;

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
    /// `train`: alternating pairs of whole 2-epoch runs (validation included), `shardfeed
    /// train` against Keras's `train.py --mode run` on the same shards, in f32 and (where the
    /// CPU has AVX512-BF16) bf16 against `mixed_bfloat16`: about 8 minutes a pair.
    #[arg(long, default_value_t = 0)]
    wall_pairs: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Bench {
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
    /// Training-time augmentation (RandomResizedCrop + flip + normalize) by the Python
    /// `Loader` vs tf.data, DALI (CPU) and torchvision v2 on the same records; its own section.
    Augment,
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
    if what == [Bench::Augment] {
        let table = augment(args)?;
        println!("\n{table}");
        if !args.no_write {
            let path = report::write_section("augment", &table)?;
            eprintln!("wrote the augment section of {}", path.display());
        }
        return Ok(());
    }
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
            Bench::Augment => bail!("run `cargo xtask bench augment` on its own"),
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
pub(super) struct Figure {
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
pub(super) struct Row {
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

pub(super) fn table(rows: &[Row], what: &[Bench], args: &Args) -> String {
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
pub(super) fn tensorflow_version() -> anyhow::Result<String> {
    let python = util::tensorflow_python().map_err(anyhow::Error::msg)?;
    let output = Command::new(python)
        .args(["-c", "import tensorflow as tf; print(tf.__version__)"])
        .env("TF_CPP_MIN_LOG_LEVEL", "3")
        .output()?;
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// Runs one `harness = false` bench target; returns the JSON document it wrote.
pub(super) fn cargo_bench(
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

/// The first number under `key` anywhere in `value`.
pub(super) fn find_number(value: &Value, key: &str) -> Option<f64> {
    match value {
        Value::Object(map) => map
            .get(key)
            .and_then(Value::as_f64)
            .or_else(|| map.values().find_map(|v| find_number(v, key))),
        Value::Array(items) => items.iter().find_map(|v| find_number(v, key)),
        _ => None,
    }
}

pub(super) fn median(sorted: &[f64]) -> f64 {
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Median, min and max of a sample.
pub(super) fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (median(&values), values[0], values[values.len() - 1])
}

pub(super) fn print_figure(name: &str, values: Vec<f64>, unit: &str) -> Figure {
    let figure = Figure::of(values);
    println!(
        "{name:<44} {:>9.0} {unit} median (min {:.0}, max {:.0}, n={})",
        figure.median, figure.min, figure.max, figure.runs
    );
    figure
}

/// The generated source folder for the shard and stream benchmarks (made once per size).
pub(super) fn bench_sources(binary: &Path, images: usize) -> anyhow::Result<PathBuf> {
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

pub(super) fn baseline_script(name: &str) -> anyhow::Result<PathBuf> {
    util::shared_dir()
        .map(|s| s.join("baseline/tf").join(name))
        .filter(|s| s.exists())
        .with_context(|| format!("../shared/baseline/tf/{name} not found"))
}

/// Runs `../shared/baseline/tf/SCRIPT ARGS --json FILE` with the TensorFlow venv `runs`
/// times (each pays TensorFlow's start-up once); returns each run's JSON document.
pub(super) fn run_baseline(
    script: &str,
    args: &[&OsStr],
    runs: usize,
) -> anyhow::Result<Vec<Value>> {
    run_baseline_under(None, script, args, runs)
}

/// [`run_baseline`] under a Keras mixed-precision policy (`scripts/keras_policy.py`) when
/// `policy` is given.
pub(super) fn run_baseline_under(
    policy: Option<&str>,
    script: &str,
    args: &[&OsStr],
    runs: usize,
) -> anyhow::Result<Vec<Value>> {
    let python = util::tensorflow_python().map_err(anyhow::Error::msg)?;
    let path = baseline_script(script)?;
    let json = util::root()
        .join("target/bench-data")
        .join(format!("{script}.json"));
    (0..runs.max(1))
        .map(|_| {
            let output = keras_command(&python, policy)
                .arg(&path)
                .args(args)
                .arg("--json")
                .arg(&json)
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

/// `python` ready to run a baseline script (the caller adds it and its arguments), under a
/// Keras mixed-precision policy (`scripts/keras_policy.py`) when `policy` is given, with
/// TensorFlow's start-up chatter off.
pub(super) fn keras_command(python: &Path, policy: Option<&str>) -> Command {
    let mut command = Command::new(python);
    if let Some(policy) = policy {
        command
            .arg(util::root().join("scripts/keras_policy.py"))
            .arg(policy);
    }
    command.env("TF_CPP_MIN_LOG_LEVEL", "3");
    command
}

/// `key` from each run's document, sorted.
pub(super) fn numbers(results: &[Value], key: &str, script: &str) -> anyhow::Result<Vec<f64>> {
    let mut values = results
        .iter()
        .map(|r| find_number(r, key).with_context(|| format!("{key} in {script}'s output")))
        .collect::<anyhow::Result<Vec<f64>>>()?;
    values.sort_by(f64::total_cmp);
    Ok(values)
}
