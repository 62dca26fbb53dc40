//! Training steps and one-image inference against Keras on the same shards.

use super::*;

pub(super) fn train(args: &Args, rows: &mut Vec<Row>) -> anyhow::Result<()> {
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
    pairs(args, &shards, ours["bf16"].is_object(), rows)?;
    if args.wall_pairs > 0 {
        wall_pairs(args, &binary, &shards, ours["bf16"].is_object(), rows)?;
    } else {
        eprintln!("2-epoch runs against Keras NOT MEASURED (pass --wall-pairs N)");
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
pub(super) fn keras_predict_latency() -> anyhow::Result<Value> {
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

/// Keras's training-step throughput on the same shards, images/s per run.
pub(super) fn keras_throughput(shards: &Path, runs: usize) -> anyhow::Result<Vec<f64>> {
    keras_throughput_under(None, shards, runs)
}

/// [`keras_throughput`] under a Keras mixed-precision policy when given.
fn keras_throughput_under(
    policy: Option<&str>,
    shards: &Path,
    runs: usize,
) -> anyhow::Result<Vec<f64>> {
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
        &run_baseline_under(policy, "train.py", &args, runs)?,
        "images_per_s",
        "train.py",
    )
}

/// Alternating pairs, `--runs` of them: our step (f32, and bf16 where the CPU has it), then
/// Keras float32, then Keras `mixed_bfloat16` (its one-line bf16), each pair back to back.
fn pairs(args: &Args, shards: &Path, bf16: bool, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let cpu = cpu_line();
    if !bf16 {
        eprintln!("bf16 pairs NOT MEASURED: this CPU lacks AVX512-BF16 ({cpu})");
    }
    let modes = if bf16 { "fast,bf16" } else { "fast" };
    let mut figures = Pairs::default();
    for pair in 1..=args.runs.max(1) {
        let step = cargo_bench(
            "shardfeed-model",
            "train_step",
            3,
            &[("SHARDFEED_BENCH_MODE", modes.to_owned())],
        )?;
        for (i, (mode, policy)) in ["fast", "bf16"]
            .into_iter()
            .zip(KERAS_POLICIES)
            .enumerate()
            .take(if bf16 { 2 } else { 1 })
        {
            let rate = step[mode]["images_per_s"]
                .as_f64()
                .with_context(|| format!("{mode} in the train bench output"))?;
            let keras = keras_throughput_under(policy, shards, 1)?[0];
            println!(
                "train pair {pair} ({cpu}): ours {mode} {rate:.1} vs keras {} {keras:.1} images/s: {:.2}x",
                policy.unwrap_or("float32"),
                rate / keras
            );
            figures.push(i, rate, keras, rate / keras);
        }
    }
    let names = [
        (
            "training step, batch 32 at 160 px: fast CPU path, f32, alternating pairs",
            "Keras `train.py --mode throughput`, float32, same shards, same pairs",
        ),
        (
            "training step, batch 32 at 160 px: fast CPU path, --precision bf16, alternating pairs",
            "Keras `train.py --mode throughput` under `mixed_bfloat16`, same shards, same pairs",
        ),
    ];
    figures.into_rows(rows, names, ("images/s", false));
    Ok(())
}

/// Keras's arithmetic against ours in f32 and in bf16: float32 (no policy), `mixed_bfloat16`.
const KERAS_POLICIES: [Option<&str>; 2] = [None, Some("mixed_bfloat16")];

/// The machine and its vector flags, for every pair's line.
fn cpu_line() -> String {
    format!(
        "{}; {}",
        crate::report::machine(),
        crate::report::simd_flags()
    )
}

/// The figures of alternating pairs, per precision (f32, bf16): ours, theirs, each pair's
/// ratio.
#[derive(Default)]
struct Pairs {
    ours: [Vec<f64>; 2],
    theirs: [Vec<f64>; 2],
    ratios: [Vec<f64>; 2],
}

impl Pairs {
    fn push(&mut self, precision: usize, ours: f64, theirs: f64, ratio: f64) {
        self.ours[precision].push(ours);
        self.theirs[precision].push(theirs);
        self.ratios[precision].push(ratio);
    }

    /// One report row per precision that was measured: `names` (ours, the baseline), the
    /// unit and whether lower is better.
    fn into_rows(
        self,
        rows: &mut Vec<Row>,
        names: [(&str, &'static str); 2],
        (unit, lower_is_better): (&'static str, bool),
    ) {
        let figures = self.ours.into_iter().zip(self.theirs).zip(self.ratios);
        for ((name, baseline), ((ours, theirs), ratios)) in names.into_iter().zip(figures) {
            if ours.is_empty() {
                continue;
            }
            rows.push(Row {
                stage: "train",
                name: name.to_owned(),
                unit,
                ours: Figure::of(ours),
                baseline,
                theirs: Some(Figure::of(theirs)),
                lower_is_better,
                pair_ratios: Some(Figure::of(ratios)),
            });
        }
    }
}

/// Alternating pairs of whole runs, `--wall-pairs` of them: `shardfeed train --epochs 2`
/// (f32, then bf16 where the CPU has it) and Keras's `train.py --mode run --epochs 2`
/// (float32, then `mixed_bfloat16`) on the same shards, wall time from start to exit:
/// start-up, input pipeline, both epochs and their validation.
fn wall_pairs(
    args: &Args,
    binary: &Path,
    shards: &Path,
    bf16: bool,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let cpu = cpu_line();
    let python = util::tensorflow_python().map_err(anyhow::Error::msg)?;
    let script = baseline_script("train.py")?;
    let out = util::root().join("target/bench-data/wall-run");
    let timed = |command: &mut Command| -> anyhow::Result<f64> {
        let start = std::time::Instant::now();
        let output = command.output()?;
        if !output.status.success() {
            bail!(
                "{command:?} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(start.elapsed().as_secs_f64())
    };
    let mut figures = Pairs::default();
    for pair in 1..=args.wall_pairs {
        let modes = ["f32", "bf16"].into_iter().zip(KERAS_POLICIES);
        for (i, (precision, policy)) in modes.enumerate().take(if bf16 { 2 } else { 1 }) {
            let our_s = timed(
                Command::new(binary)
                    .arg("train")
                    .arg(shards)
                    .args([
                        "--epochs",
                        "2",
                        "--precision",
                        precision,
                        "--quiet",
                        "--overwrite",
                    ])
                    .arg("--out")
                    .arg(&out),
            )?;
            let keras_s = timed(
                keras_command(&python, policy)
                    .arg(&script)
                    .arg("--shards")
                    .arg(shards)
                    .args(["--mode", "run", "--epochs", "2", "--verbose", "0"]),
            )?;
            println!(
                "2-epoch pair {pair} ({cpu}): ours {precision} {our_s:.1} s vs keras {} {keras_s:.1} s: {:.2}x",
                policy.unwrap_or("float32"),
                keras_s / our_s
            );
            figures.push(i, our_s, keras_s, keras_s / our_s);
        }
    }
    let names = [
        (
            "2 epochs with validation, wall: `shardfeed train`, f32, alternating pairs",
            "Keras `train.py --mode run --epochs 2`, float32, same shards, same pairs",
        ),
        (
            "2 epochs with validation, wall: `shardfeed train --precision bf16`, alternating pairs",
            "Keras `train.py --mode run --epochs 2` under `mixed_bfloat16`, same shards, same pairs",
        ),
    ];
    figures.into_rows(rows, names, ("s", true));
    Ok(())
}
