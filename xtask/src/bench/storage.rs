//! Object storage (moto on loopback) against local disk, and a split shard run against one process.

use super::*;

/// `stream` from S3 (moto on loopback) against local disk, the same shards, in alternating
/// pairs; `shard` as 2 worker processes (+ merge) against one process, in pairs.
pub(super) fn storage(args: &Args, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    use crate::storage::{shard_wall, start_server, stream_rate};
    let binary = crate::data::shardfeed_binary()?;
    let sources = bench_sources(&binary, args.images)?;
    let local = util::root().join("target/bench-data/stream-shards");
    shard_once(&binary, &sources, &local, 2, false)?;
    let s3 = start_server()?;
    s3.bucket("bench")?;
    let mut upload = Command::new(&binary);
    upload
        .arg("shard")
        .arg(sources.join("train"))
        .args(["--out", "s3://bench/shards", "--quiet"]);
    s3.env_on(&mut upload);
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
