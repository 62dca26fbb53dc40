//! `shardfeed shard` against TensorFlow's `shard.py` on the same folder, in alternating pairs.

use super::*;

/// Runs `shardfeed shard` once; returns images/s from its manifest.
pub(super) fn shard_once(
    binary: &Path,
    sources: &Path,
    out: &Path,
    jobs: usize,
    fast: bool,
) -> anyhow::Result<f64> {
    shard_mode_once(binary, sources, out, jobs, fast, &[])
}

/// [`shard_once`] with `mode`'s flags (`--resize keep`, …).
fn shard_mode_once(
    binary: &Path,
    sources: &Path,
    out: &Path,
    jobs: usize,
    fast: bool,
    mode: &[&str],
) -> anyhow::Result<f64> {
    let mut command = Command::new(binary);
    command
        .arg("shard")
        .arg(sources.join("train"))
        .arg("--out")
        .arg(out)
        .args(mode);
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

pub(super) fn shard(args: &Args, rows: &mut Vec<Row>) -> anyhow::Result<()> {
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
        // The resize modes, each alternating with TensorFlow's shard step (the seed's recipe:
        // decode, resize, crop, encode — the work `crop` does; `fit` decodes, downscales and
        // encodes at up to 512 px; `keep` decodes to check and stores the source's bytes).
        for (label, mode) in [
            ("--resize keep", &["--resize", "keep"][..]),
            (
                "--resize keep --verify headers",
                &["--resize", "keep", "--verify", "headers"][..],
            ),
            (
                "--resize fit --max-side 512",
                &["--resize", "fit", "--max-side", "512"][..],
            ),
            ("--resize crop (the seed's, TensorFlow's work)", &[][..]),
        ] {
            rows.push(mode_pairs(args, &binary, &sources, &out, label, mode)?);
        }
    }
    Ok(())
}

/// `shardfeed shard MODE` (2 jobs) and TensorFlow's `shard.py` alternately, `max(tf_runs, 3)`
/// pairs; the median of each pair's ratio.
fn mode_pairs(
    args: &Args,
    binary: &Path,
    sources: &Path,
    out: &Path,
    label: &str,
    mode: &[&str],
) -> anyhow::Result<Row> {
    let (ours, theirs, ratio) = alternate(
        binary,
        sources,
        out,
        mode,
        args.tf_runs.max(3),
        &format!("shard {label}"),
    )?;
    Ok(Row {
        stage: "shard",
        name: format!(
            "{} JPEGs, {label}, 2 jobs, alternating with TensorFlow",
            args.images
        ),
        unit: "images/s",
        ours,
        baseline: "TensorFlow `shard.py` (160 px crop), same folder, same pairs",
        theirs: Some(theirs),
        lower_is_better: false,
        pair_ratios: Some(ratio),
    })
}

/// The conservative shard figure: `shardfeed shard` (2 jobs) and TensorFlow's `shard.py`
/// alternately on the same folder, `max(tf_runs, 5)` pairs, each pair's ratio; the median
/// ratio and its spread (TensorFlow's own spread from run to run is wide on this machine).
pub(super) fn shard_pairs(
    args: &Args,
    binary: &Path,
    sources: &Path,
    out: &Path,
) -> anyhow::Result<Row> {
    let (ours, theirs, ratio) = alternate(binary, sources, out, &[], args.tf_runs.max(5), "shard")?;
    Ok(Row {
        stage: "shard",
        name: format!(
            "{} JPEGs → 16 shards at 160 px, 2 jobs, alternating with TensorFlow",
            args.images
        ),
        unit: "images/s",
        ours,
        baseline: "TensorFlow `shard.py`, same folder, same pairs",
        theirs: Some(theirs),
        lower_is_better: false,
        pair_ratios: Some(ratio),
    })
}

/// `shardfeed shard MODE` (2 jobs) and TensorFlow's `shard.py` alternately, `pairs` times,
/// each pair printed under `what`: our rates, theirs, and the pairs' ratios.
fn alternate(
    binary: &Path,
    sources: &Path,
    out: &Path,
    mode: &[&str],
    pairs: usize,
    what: &str,
) -> anyhow::Result<(Figure, Figure, Figure)> {
    let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for pair in 0..pairs {
        let our_rate = shard_mode_once(binary, sources, out, 2, false, mode)?;
        let their_rate = tensorflow_shard(sources, 1)?[0];
        println!(
            "{what} pair {}: shardfeed {our_rate:.0} vs tensorflow {their_rate:.0} images/s: {:.2}x",
            pair + 1,
            our_rate / their_rate
        );
        ours.push(our_rate);
        theirs.push(their_rate);
        ratios.push(our_rate / their_rate);
    }
    let ratio = Figure::of(ratios);
    println!(
        "{what}, same-run pairs: median ratio {:.2}x ({:.2}–{:.2}, {pairs} pairs)",
        ratio.median, ratio.min, ratio.max
    );
    Ok((Figure::of(ours), Figure::of(theirs), ratio))
}

/// TensorFlow's shard step on the same folder, images/s per run.
pub(super) fn tensorflow_shard(sources: &Path, runs: usize) -> anyhow::Result<Vec<f64>> {
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
