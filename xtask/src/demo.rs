//! `cargo xtask demo`: the whole workflow on a fresh clone, through the release `shardfeed`
//! binary: generate (or take) a labelled JPEG folder, shard it, stream it, train the seed CNN
//! for a short real run, evaluate, predict the test folder, draw the plots, and print where
//! every output is with the accuracy and each stage's images/s.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::util::{self, root};

/// Marks a folder as the demo's own, so a later demo may replace it.
const MARKER: &str = ".shardfeed-demo";

/// Options of `cargo xtask demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Your own folder with `train/LABEL.*.jpg` (and optionally `test/*.jpg`); default: a
    /// generated cat/dog set.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where everything goes (replaced if an earlier demo made it).
    #[arg(long, default_value = "runs/demo")]
    out: PathBuf,
    /// Training images to generate when no `--data` is given.
    #[arg(long, default_value_t = 3000)]
    images: usize,
    /// Training epochs.
    #[arg(long, default_value_t = 6)]
    epochs: usize,
}

/// One timed stage for the summary.
struct Stage {
    name: &'static str,
    seconds: f64,
    images: Option<u64>,
}

fn timed(command: &mut Command) -> anyhow::Result<f64> {
    let start = Instant::now();
    util::run(command)?;
    Ok(start.elapsed().as_secs_f64())
}

/// Runs `command` and parses its standard output as JSON.
fn json_of(command: &mut Command) -> anyhow::Result<(Value, f64)> {
    let start = Instant::now();
    let output = command.output().context("cannot start shardfeed")?;
    let seconds = start.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!("{}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok((serde_json::from_slice(&output.stdout)?, seconds))
}

fn jpegs_in(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| {
                    e.path()
                        .extension()
                        .and_then(OsStr::to_str)
                        .is_some_and(|x| {
                            x.eq_ignore_ascii_case("jpg") || x.eq_ignore_ascii_case("jpeg")
                        })
                })
                .count() as u64
        })
        .unwrap_or(0)
}

/// Empties `out` if it is an earlier demo's; refuses a folder with anything else in it.
fn prepare(out: &Path) -> anyhow::Result<()> {
    if out.exists() {
        let empty = std::fs::read_dir(out)?.next().is_none();
        if !empty && !out.join(MARKER).exists() {
            bail!(
                "{} exists and was not made by `cargo xtask demo`: choose another --out",
                out.display()
            );
        }
        std::fs::remove_dir_all(out).with_context(|| format!("cannot remove {}", out.display()))?;
    }
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join(MARKER),
        "made by cargo xtask demo; replaced by the next one\n",
    )?;
    Ok(())
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let binary = crate::data::shardfeed_binary()?;
    let out = root().join(&args.out);
    prepare(&out)?;
    let shardfeed = || {
        let mut command = Command::new(&binary);
        command.current_dir(root());
        command
    };
    let mut stages = Vec::new();

    let data = match &args.data {
        Some(dir) => dir.clone(),
        None => {
            let dir = out.join("data");
            let seconds = timed(
                shardfeed()
                    .args(["gen-data", "--n-test", "64", "--n-train"])
                    .arg(args.images.to_string())
                    .arg("--out")
                    .arg(&dir),
            )?;
            stages.push(Stage {
                name: "generate JPEGs",
                seconds,
                images: Some(args.images as u64 + 64),
            });
            dir
        }
    };
    let train_dir = data.join("train");
    if !train_dir.is_dir() {
        bail!(
            "{} has no train/ folder of LABEL.*.jpg files",
            data.display()
        );
    }

    let shards = out.join("shards");
    let seconds = timed(
        shardfeed()
            .arg("shard")
            .arg(&train_dir)
            .arg("--out")
            .arg(&shards),
    )?;
    let manifest: Value = serde_json::from_slice(&std::fs::read(shards.join("manifest.json"))?)?;
    let records: u64 = manifest["shards"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["records"].as_u64()).sum())
        .unwrap_or(0);
    stages.push(Stage {
        name: "shard (decode, resize, encode, write)",
        seconds,
        images: Some(records),
    });

    // `--json` keeps the per-stage report off the terminal; the wall time is what we show.
    let (_report, seconds) = json_of(
        shardfeed()
            .arg("stream")
            .arg(&shards)
            .args(["--epochs", "2", "--json"]),
    )?;
    stages.push(Stage {
        name: "stream 2 epochs (read, decode, cache)",
        seconds,
        images: Some(2 * records),
    });

    let run = out.join("model");
    let seconds = timed(
        shardfeed()
            .arg("train")
            .arg(&shards)
            .arg("--out")
            .arg(&run)
            .arg("--epochs")
            .arg(args.epochs.to_string()),
    )?;
    let train_run: Value = serde_json::from_slice(&std::fs::read(run.join("run.json"))?)?;
    let trained = train_run["train_records"].as_u64();
    stages.push(Stage {
        name: "train (wall time, validation included)",
        seconds,
        images: trained.map(|n| n * args.epochs as u64),
    });

    let (evaluation, seconds) = json_of(
        shardfeed()
            .args(["evaluate", "--json", "--model"])
            .arg(&run),
    )?;
    stages.push(Stage {
        name: "evaluate",
        seconds,
        images: evaluation["images"].as_u64(),
    });

    let test_dir = data.join("test");
    let predictions = out.join("predictions.csv");
    let test_images = jpegs_in(&test_dir);
    if test_images > 0 {
        let seconds = timed(
            shardfeed()
                .args(["predict", "--model"])
                .arg(&run)
                .arg(&test_dir)
                .arg("--out")
                .arg(&predictions),
        )?;
        stages.push(Stage {
            name: "predict test/",
            seconds,
            images: Some(test_images),
        });
    }
    let val_grid = out.join("validation-grid.png");
    let seconds = timed(
        shardfeed()
            .args(["plot", "--model"])
            .arg(&run)
            .arg("--out")
            .arg(&val_grid),
    )?;
    stages.push(Stage {
        name: "plot validation grid",
        seconds,
        images: None,
    });
    let test_grid = out.join("test-grid.png");
    if test_images > 0 {
        let seconds = timed(
            shardfeed()
                .args(["plot", "--model"])
                .arg(&run)
                .arg("--test")
                .arg(&test_dir)
                .arg("--out")
                .arg(&test_grid),
        )?;
        stages.push(Stage {
            name: "plot test grid",
            seconds,
            images: None,
        });
    }

    let shown = |p: &Path| p.strip_prefix(root()).unwrap_or(p).display().to_string();
    println!(
        "\nshardfeed demo: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    println!("  data              {}", shown(&data));
    println!("  shards            {} ({records} records)", shown(&shards));
    println!(
        "  model             {} (model.bpk, model.json, metrics.csv, curves.png)",
        shown(&run)
    );
    if test_images > 0 {
        println!("  predictions       {}", shown(&predictions));
        println!("  test grid         {}", shown(&test_grid));
    }
    println!("  validation grid   {}", shown(&val_grid));
    println!(
        "  accuracy          {:.2}% on {} validation images after {} epochs",
        evaluation["accuracy"].as_f64().unwrap_or(f64::NAN) * 100.0,
        evaluation["images"],
        args.epochs
    );
    println!("  {:<40} {:>8} {:>12}", "stage", "seconds", "images/s");
    for stage in &stages {
        let rate = stage
            .images
            .filter(|_| stage.seconds > 0.0)
            .map(|n| format!("{:.0}", n as f64 / stage.seconds))
            .unwrap_or_else(|| "–".into());
        println!("  {:<40} {:>8.1} {:>12}", stage.name, stage.seconds, rate);
    }
    Ok(())
}
