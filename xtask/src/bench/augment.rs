//! `cargo xtask bench augment`: training-time augmentation (RandomResizedCrop 224 + flip +
//! ImageNet normalisation → float32 NCHW, batches of 32, 2 threads) by the Python `Loader`
//! against tf.data, DALI's CPU pipeline and a torchvision v2 `DataLoader`, on the same
//! records (`--resize keep` and `--resize fit --max-side 512` shards of the bench's photo-sized
//! JPEGs), contenders alternating run by run; also evaluation's resize + centre crop and uint8
//! output. A peer that cannot be imported gets a loud "not measured" line.

use super::*;

/// The peers' venv (PyPI's torch brings its CUDA wheels, ~3 GB: a benchmark's, not CI's).
const PEERS: [&str; 6] = [
    "numpy==2.3.5",
    "pillow==12.0.0",
    "ml_dtypes==0.7.0",
    "nvidia-dali-cuda120==2.4.0",
    "torch==2.15.0",
    "torchvision==0.29.2",
];

const CONTENDERS: [&str; 4] = ["shardfeed", "tfdata", "dali", "torchvision"];

struct Measured {
    rate: Vec<f64>,
    cpu: Vec<f64>,
    missing: Option<String>,
}

pub(super) fn augment(args: &Args) -> anyhow::Result<String> {
    let binary = crate::data::shardfeed_binary()?;
    let sources = bench_sources(&binary, args.images)?;
    let data = util::root().join("target/bench-data");
    let mut folders = Vec::new();
    for (name, flags) in [
        ("keep", &["--resize", "keep"][..]),
        ("fit", &["--resize", "fit", "--max-side", "512"][..]),
    ] {
        let out = data.join(format!("augment-{name}-{}", args.images));
        if !out.join("manifest.json").exists() {
            util::run(
                Command::new(&binary)
                    .arg("shard")
                    .arg(sources.join("train"))
                    .arg("--out")
                    .arg(&out)
                    .args(flags),
            )?;
        }
        folders.push((name, out));
    }
    let wheel = crate::python::build_wheel()?;
    let python = crate::python::tools_venv("augment-venv", &PEERS)?;
    util::run(
        crate::python::pip(&python)
            .args(["--force-reinstall", "--no-deps"])
            .arg(&wheel),
    )?;
    let tf_python = util::tensorflow_python();
    let script = util::root().join("crates/python/bench/augment_bench.py");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut table = format!(
        "## Training-time augmentation: the Loader against tf.data, DALI and torchvision\n\n\
         `cargo xtask bench augment --runs {}` on {}, {}. {} photo-sized JPEGs (`gen-data`), \
         sharded with `--resize keep` and `--resize fit --max-side 512`; each contender reads \
         one epoch of the same records: RandomResizedCrop 224 (scale 0.08–1, ratio 3/4–4/3) + \
         horizontal flip + ImageNet mean/std → float32 NCHW (\"train\"), resize 256 + centre \
         crop 224 (\"eval\"), or crop + flip → uint8 (\"uint8\"); batches of 32, shuffled, 2 \
         threads/workers, contenders alternating run by run. Each cell: median (min–max, n \
         runs). CPU: user + system seconds of the process and its children per 1,000 images. \
         Ratio: the Loader's images/s ÷ the contender's.\n\n\
         | shards | work | contender | images/s | CPU s / 1,000 images | Loader ÷ it |\n\
         |---|---|---|---:|---:|---:|\n",
        args.runs,
        report::today(),
        report::machine(),
        args.images,
    );
    println!("augment: {cores} cores; {}", report::machine());
    // The limit: the same crops (epoch 0's draws) decoded only, one thread, times the cores.
    let keep = &folders[0].1;
    let ceiling = cargo_bench(
        "shardfeed-dataset",
        "decode_ceiling",
        args.runs,
        &[
            ("SHARDFEED_BENCH_SHARDS", keep.display().to_string()),
            ("SHARDFEED_BENCH_CROP", "224".to_owned()),
        ],
    )?;
    let crop_rates: Vec<f64> = ceiling["crop_images_per_s"]
        .as_array()
        .context("crop_images_per_s in decode_ceiling's output")?
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    let (crop_rate, crop_lo, crop_hi) = spread(crop_rates);
    let limit = crop_rate * cores as f64;
    let mut keep_train = None;
    let cases = [
        ("keep", "train"),
        ("fit", "train"),
        ("keep", "eval"),
        ("keep", "uint8"),
    ];
    for (kind, mode) in cases {
        let folder = &folders
            .iter()
            .find(|(k, _)| *k == kind)
            .expect("made above")
            .1;
        let contenders: &[&str] = match mode {
            "uint8" => &["shardfeed", "dali"],
            _ => &CONTENDERS,
        };
        let mut measured: Vec<Measured> = contenders
            .iter()
            .map(|_| Measured {
                rate: vec![],
                cpu: vec![],
                missing: None,
            })
            .collect();
        for _ in 0..args.runs.max(1) {
            for (contender, m) in contenders.iter().zip(measured.iter_mut()) {
                if m.missing.is_some() {
                    continue;
                }
                let interpreter = if *contender == "tfdata" {
                    match &tf_python {
                        Ok(p) => p.clone(),
                        Err(why) => {
                            m.missing = Some(why.clone());
                            continue;
                        }
                    }
                } else {
                    python.clone()
                };
                let output = Command::new(&interpreter)
                    .arg(&script)
                    .arg(contender)
                    .arg("--shards")
                    .arg(folder)
                    .args(["--mode", mode, "--threads", "2"])
                    .env("TF_CPP_MIN_LOG_LEVEL", "3")
                    .output()?;
                if !output.status.success() {
                    m.missing = Some(
                        String::from_utf8_lossy(&output.stderr)
                            .lines()
                            .last()
                            .unwrap_or("failed")
                            .to_owned(),
                    );
                    continue;
                }
                let doc: Value = serde_json::from_slice(&output.stdout)
                    .with_context(|| format!("{contender}'s output"))?;
                m.rate
                    .push(doc["images_per_second"].as_f64().unwrap_or(f64::NAN));
                m.cpu
                    .push(doc["cpu_seconds_per_1000"].as_f64().unwrap_or(f64::NAN));
            }
        }
        let ours = measured[0].rate.clone();
        let ours_median = spread(ours).0;
        if (kind, mode) == ("keep", "train") {
            keep_train = Some(ours_median);
        }
        for (contender, m) in contenders.iter().zip(measured) {
            if let Some(why) = &m.missing {
                eprintln!(
                    "{}\n# NOT MEASURED: {contender} ({kind}, {mode}): {why}\n{}",
                    "#".repeat(78),
                    "#".repeat(78)
                );
                table.push_str(&format!(
                    "| {kind} | {mode} | {contender} | not measured ({}) | – | – |\n",
                    why.replace('|', "/")
                ));
                continue;
            }
            let runs = m.rate.len();
            let (med, lo, hi) = spread(m.rate);
            let (cmed, clo, chi) = spread(m.cpu);
            println!(
                "{kind:>4} {mode:>5} {contender:>12}: {med:>7.0} images/s ({lo:.0}–{hi:.0}), {cmed:.2} CPU s/1000"
            );
            table.push_str(&format!(
                "| {kind} | {mode} | {contender} | {med:.0} ({lo:.0}–{hi:.0}, {runs}) | {cmed:.2} ({clo:.2}–{chi:.2}) | {} |\n",
                if *contender == "shardfeed" {
                    "–".to_owned()
                } else {
                    format!("**{:.2}x**", ours_median / med)
                }
            ));
        }
    }
    table.push_str(&format!(
        "\nThe limit: the Loader's own crops of epoch 0 (keep shards) decoded only — the region \
         at its DCT scale, no resize, no copy out — on one thread: {crop_rate:.0} images/s \
         ({crop_lo:.0}–{crop_hi:.0}); × {cores} cores = {limit:.0} images/s. The Loader's \
         train figure on keep shards is **{:.0} %** of it (the rest: the antialiased resize to \
         224, the float32 CHW copy out with the normalisation, the batch's copy, the \
         pipeline).\n",
        keep_train.map_or(f64::NAN, |r| r / limit * 100.0)
    ));
    Ok(table)
}
