//! The Python `Loader` against the peer loaders (Grain, DALI, SPDL, PyTorch's DataLoader, tf.data) on the same cores.

use super::*;

/// `python crates/python/bench/SCRIPT ARGS` in the bench venv, `runs` times; each run's JSON.
pub(super) fn python_script(
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

pub(super) fn python(args: &Args, rows: &mut Vec<Row>) -> anyhow::Result<()> {
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
