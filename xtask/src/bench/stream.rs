//! `shardfeed stream` (first pass and cached) against TensorFlow's read pipeline over the same shards.

use super::*;

/// Runs `shardfeed stream --json`; returns (first pass, later passes) images/s.
pub(super) fn stream_once(binary: &Path, shards: &Path, cache: bool) -> anyhow::Result<(f64, f64)> {
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

pub(super) fn stream(args: &Args, rows: &mut Vec<Row>) -> anyhow::Result<()> {
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

/// TensorFlow's in-graph scan of the same files, GB/s of payload per run, sorted.
pub(super) fn tensorflow_raw_scan(dir: &Path, runs: usize) -> anyhow::Result<Vec<f64>> {
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

/// TensorFlow's read pipeline over the same shards, cached and not.
pub(super) fn tensorflow_read(shards: &Path, runs: usize) -> anyhow::Result<Vec<Value>> {
    let args = [
        "--shards".as_ref(),
        shards.as_os_str(),
        "--only".as_ref(),
        "pipeline_cache,pipeline_nocache".as_ref(),
    ];
    run_baseline("read_bench.py", &args, runs)
}
