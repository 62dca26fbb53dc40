//! The input pipeline's and the record layer's own benches (`cargo bench` targets), against TensorFlow's in-graph scan.

use super::*;

pub(super) fn pipeline(args: &Args, rows: &mut Vec<Row>) -> anyhow::Result<()> {
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

pub(super) fn record_format(args: &Args, rows: &mut Vec<Row>) -> anyhow::Result<()> {
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
