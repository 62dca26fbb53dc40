//! Throughput and overhead of the worker graph: `cargo xtask bench pipeline`.
//!
//! 1. A CPU-bound map (a fixed number of hashing rounds per item) through the tutorial's
//!    graph (16 sources, interleave 16, shuffle 2048, batch 32, prefetch 2) at parallelism
//!    1 and 2, against the same work done in a plain loop.
//! 2. The graph's own overhead per item: the same graph with a map that does nothing.
//! 3. TFRecord parsing of synthetic shards (mmap, both CRCs, `tf.train.Example` decode),
//!    sequential vs the graph at parallelism 1 and 2.
//!
//! Settings from the environment: `SHARDFEED_BENCH_RUNS` (default 5),
//! `SHARDFEED_BENCH_JSON` (write the results there too).

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use shardfeed_input_pipeline::tfrecord::TfRecordSource;
use shardfeed_input_pipeline::{Address, BoxError, Parallelism, Pipeline, Plan};
use shardfeed_record_format::{Compression, FileWriter, ImageExample, ReaderOptions};

const SOURCES: u64 = 16;
const BATCH: usize = 32;

/// `rounds` of integer hashing: 6,000 rounds ≈ 12 µs, 50,000 ≈ 100 µs on this machine.
fn cpu_work(seed: u64, rounds: u32) -> u64 {
    let mut x = seed;
    for _ in 0..rounds {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 27;
    }
    x
}

fn tutorial_plan(counts: Vec<u64>) -> Plan {
    Plan::new(counts)
        .seed(42)
        .shuffle_sources(true)
        .interleave(16, 1)
        .shuffle(2048)
}

struct Figure {
    name: String,
    items: u64,
    seconds: Vec<f64>,
}

impl Figure {
    fn rates(&self) -> Vec<f64> {
        let mut rates: Vec<f64> = self.seconds.iter().map(|s| self.items as f64 / s).collect();
        rates.sort_by(f64::total_cmp);
        rates
    }

    fn median(&self) -> f64 {
        let rates = self.rates();
        rates[rates.len() / 2]
    }

    fn print(&self, baseline: Option<f64>) -> serde_json::Value {
        let rates = self.rates();
        let median = self.median();
        let ratio = baseline
            .map(|b| format!("  {:.2}x sequential", median / b))
            .unwrap_or_default();
        println!(
            "{:<46} {:>10.0} items/s median (min {:.0}, max {:.0}, n={})  {:>7.3} µs/item{ratio}",
            self.name,
            median,
            rates[0],
            rates[rates.len() - 1],
            rates.len(),
            1e6 / median,
        );
        serde_json::json!({
            "name": self.name, "items_per_s_median": median, "items_per_s_min": rates[0],
            "items_per_s_max": rates[rates.len() - 1], "us_per_item": 1e6 / median,
            "vs_sequential": baseline.map(|b| median / b),
        })
    }
}

fn measure(name: impl Into<String>, runs: usize, mut work: impl FnMut() -> u64) -> Figure {
    let items = work();
    let seconds = (0..runs)
        .map(|_| {
            let start = Instant::now();
            assert_eq!(work(), items);
            start.elapsed().as_secs_f64()
        })
        .collect();
    Figure {
        name: name.into(),
        items,
        seconds,
    }
}

fn count_items<T: Send + 'static>(pipeline: &Pipeline<T>) -> u64 {
    let mut n = 0;
    for batch in pipeline.iter() {
        n += black_box(batch.expect("no errors in the benchmark")).len() as u64;
    }
    n
}

fn write_shards(dir: &Path, records: u64) -> Vec<std::path::PathBuf> {
    let per_file = records.div_ceil(SOURCES);
    (0..SOURCES)
        .map(|shard| {
            let path = dir.join(format!("bench{shard:02}-{per_file}.tfrec"));
            let mut writer = FileWriter::create(&path, Compression::None).unwrap();
            for i in 0..per_file {
                let image: Vec<u8> = (0..15_000u64)
                    .map(|b| (b * 31 + i * 7 + shard) as u8)
                    .collect();
                writer
                    .write_record(
                        &ImageExample {
                            image,
                            class: (i % 2) as i64,
                            size: None,
                        }
                        .to_bytes(),
                    )
                    .unwrap();
            }
            writer.commit().unwrap();
            path
        })
        .collect()
}

fn main() {
    let runs: usize = std::env::var("SHARDFEED_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut report = Vec::new();
    println!(
        "input-pipeline: {runs} runs each, {cores} cores; batch {BATCH}, prefetch 2, shuffle 2048, interleave 16"
    );

    // 1. CPU-bound maps: a light one (≈ 12 µs/item) and one nearer a JPEG decode (≈ 100 µs).
    for (label, rounds, per_source) in [
        ("cpu map 12us", 6_000u32, 1_250u64),
        ("cpu map 100us", 50_000, 250),
    ] {
        let plan = tutorial_plan(vec![per_source; SOURCES as usize]);
        let sequential = measure(format!("{label}: sequential loop"), runs, || {
            plan.iter().fold(0, |n, p| {
                black_box(cpu_work(p.address.index, rounds));
                n + 1
            })
        });
        report.push(sequential.print(None));
        let baseline = sequential.median();
        for threads in [1, 2] {
            for deterministic in [false, true] {
                let pipeline = Pipeline::new(plan.clone(), move |a: Address| {
                    Ok::<_, BoxError>(cpu_work(a.index, rounds))
                })
                .parallelism(Parallelism::Fixed(threads))
                .deterministic(deterministic)
                .batch(BATCH, true);
                let name = format!(
                    "{label}: graph, {threads} thread(s){}",
                    if deterministic { ", ordered" } else { "" }
                );
                report.push(measure(name, runs, || count_items(&pipeline)).print(Some(baseline)));
            }
        }
    }

    // 1b. A skewed map: every 64th item costs 40× more (a huge image among small ones). The
    //     ordered graph waits for it; the default, unordered one does not.
    let plan = tutorial_plan(vec![250; SOURCES as usize]);
    let skewed = |a: Address| {
        cpu_work(
            a.index,
            if a.index.is_multiple_of(64) {
                400_000
            } else {
                10_000
            },
        )
    };
    let sequential = measure("skewed map: sequential loop", runs, || {
        plan.iter().fold(0, |n, p| {
            black_box(skewed(p.address));
            n + 1
        })
    });
    report.push(sequential.print(None));
    for deterministic in [false, true] {
        let pipeline = Pipeline::new(plan.clone(), move |a: Address| Ok::<_, BoxError>(skewed(a)))
            .parallelism(Parallelism::Fixed(2))
            .deterministic(deterministic)
            .chunk(4)
            .batch(BATCH, true);
        let name = format!(
            "skewed map: graph, 2 threads, chunk 4{}",
            if deterministic { ", ordered" } else { "" }
        );
        report
            .push(measure(name, runs, || count_items(&pipeline)).print(Some(sequential.median())));
    }

    // 2. Overhead of the graph itself.
    let plan = tutorial_plan(vec![25_000; SOURCES as usize]); // 400,000 items
    let planning = measure("no-op map: plan iteration alone", runs, || {
        plan.iter().count() as u64
    });
    report.push(planning.print(None));
    for threads in [1, 2] {
        for deterministic in [false, true] {
            let pipeline = Pipeline::new(plan.clone(), |a: Address| Ok::<_, BoxError>(a))
                .parallelism(Parallelism::Fixed(threads))
                .deterministic(deterministic)
                .batch(BATCH, true);
            let name = format!(
                "no-op map: graph, {threads} thread(s){}",
                if deterministic { ", ordered" } else { "" }
            );
            report.push(measure(name, runs, || count_items(&pipeline)).print(None));
        }
    }

    // 3. TFRecord parsing of synthetic shards (15 kB images).
    let dir = tempfile::tempdir().unwrap();
    let files = write_shards(dir.path(), 16_000);
    let source =
        std::sync::Arc::new(TfRecordSource::open(&files, ReaderOptions::default()).unwrap());
    let plan = tutorial_plan(source.counts());
    let parse_sequential = measure("tfrecord parse: sequential loop", runs, || {
        plan.iter().fold(0, |n, p| {
            black_box(
                source
                    .fetch_with(p.address, ImageExample::decode)
                    .unwrap()
                    .unwrap(),
            );
            n + 1
        })
    });
    report.push(parse_sequential.print(None));
    for threads in [1, 2] {
        let source = source.clone();
        let pipeline = Pipeline::new(
            plan.clone(),
            move |a: Address| -> Result<ImageExample, BoxError> {
                Ok(source.fetch_with(a, ImageExample::decode)??)
            },
        )
        .parallelism(Parallelism::Fixed(threads))
        .batch(BATCH, true);
        let name = format!("tfrecord parse: graph, {threads} thread(s)");
        report.push(
            measure(name, runs, || count_items(&pipeline)).print(Some(parse_sequential.median())),
        );
    }

    if let Some(path) = std::env::var_os("SHARDFEED_BENCH_JSON") {
        let document =
            serde_json::json!({ "bench": "pipeline", "cores": cores, "results": report });
        std::fs::write(path, serde_json::to_vec_pretty(&document).unwrap()).unwrap();
    }
}
