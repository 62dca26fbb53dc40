//! Throughput of the TFRecord readers and writers: `cargo xtask bench record-format`.
//!
//! Writes ~100 MB of 10–20 kB incompressible records (like JPEG payloads) into 16 files,
//! then times, each `runs` times with the files in the page cache: writing (plain, GZIP),
//! scanning with CRC checks (streaming reader on one thread and on all cores, GZIP), and the
//! scan without CRC checks.
//!
//! Settings come from the environment (cargo passes its own flags to a bench binary):
//! `SHARDFEED_BENCH_MB` (default 100), `SHARDFEED_BENCH_RUNS` (7), `SHARDFEED_BENCH_DIR`
//! (where the files go; default `target/bench-data/record-format`), `SHARDFEED_BENCH_JSON`
//! (write the results there as JSON too).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use shardfeed_record_format::{Compression, FileWriter, ReaderOptions, RecordReader};

const FILES: usize = 16;

struct Settings {
    megabytes: u64,
    runs: usize,
    dir: PathBuf,
    json: Option<PathBuf>,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Payloads of 10–20 kB of pseudo-random (incompressible) bytes, `megabytes` in all.
fn payloads(megabytes: u64) -> Vec<Vec<u8>> {
    let mut state = 0x5eed_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut total = 0u64;
    let mut out = Vec::new();
    while total < megabytes * 1_000_000 {
        let len = 10_000 + (next() % 10_001) as usize;
        let mut payload = Vec::with_capacity(len + 8);
        while payload.len() < len {
            payload.extend_from_slice(&next().to_le_bytes());
        }
        payload.truncate(len);
        total += len as u64;
        out.push(payload);
    }
    out
}

/// Writes the payloads into `FILES` files named like shards (`bench{NN}-{count}.tfrec`).
fn write_files(dir: &Path, payloads: &[Vec<u8>], compression: Compression) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let per_file = payloads.len().div_ceil(FILES);
    payloads
        .chunks(per_file)
        .enumerate()
        .map(|(shard, chunk)| {
            let path = dir.join(format!("bench{shard:02}-{}.tfrec", chunk.len()));
            let mut writer = FileWriter::create(&path, compression).unwrap();
            for payload in chunk {
                writer.write_record(payload).unwrap();
            }
            writer.commit().unwrap();
            path
        })
        .collect()
}

fn scan_streaming(files: &[PathBuf], options: ReaderOptions) -> (u64, u64) {
    let mut records = 0;
    let mut bytes = 0;
    let mut buf = Vec::new();
    for file in files {
        let mut reader = RecordReader::open(file, options).unwrap();
        while let Some(info) = reader.read_into(&mut buf).unwrap() {
            records += 1;
            bytes += info.len;
            black_box(&buf);
        }
    }
    (records, bytes)
}

fn scan_parallel(files: &[PathBuf], options: ReaderOptions) -> (u64, u64) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = files.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| scope.spawn(move || scan_streaming(part, options)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |(r, b), (r2, b2)| (r + r2, b + b2))
    })
}

struct Measurement {
    name: &'static str,
    seconds: Vec<f64>,
    records: u64,
    payload_bytes: u64,
}

impl Measurement {
    fn gigabytes_per_second(&self) -> Vec<f64> {
        let mut rates: Vec<f64> = self
            .seconds
            .iter()
            .map(|s| self.payload_bytes as f64 / s / 1e9)
            .collect();
        rates.sort_by(f64::total_cmp);
        rates
    }

    fn report(&self) -> serde_json::Value {
        let rates = self.gigabytes_per_second();
        let median = rates[rates.len() / 2];
        let median_seconds = self.payload_bytes as f64 / median / 1e9;
        println!(
            "{:<34} {:>6.2} GB/s median (min {:.2}, max {:.2}, n={})  {:>9.0} records/s",
            self.name,
            median,
            rates[0],
            rates[rates.len() - 1],
            rates.len(),
            self.records as f64 / median_seconds,
        );
        serde_json::json!({
            "name": self.name,
            "gb_per_s_median": median,
            "gb_per_s_min": rates[0],
            "gb_per_s_max": rates[rates.len() - 1],
            "records_per_s_median": self.records as f64 / median_seconds,
            "records": self.records,
            "payload_bytes": self.payload_bytes,
            "runs": rates.len(),
        })
    }
}

fn measure(name: &'static str, runs: usize, mut work: impl FnMut() -> (u64, u64)) -> Measurement {
    let (records, payload_bytes) = work(); // warm-up: page cache, allocator
    let seconds = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let counted = work();
            let elapsed = start.elapsed().as_secs_f64();
            assert_eq!(counted, (records, payload_bytes));
            elapsed
        })
        .collect();
    Measurement {
        name,
        seconds,
        records,
        payload_bytes,
    }
}

fn main() {
    let settings = Settings {
        megabytes: env_or("SHARDFEED_BENCH_MB", 100),
        runs: env_or("SHARDFEED_BENCH_RUNS", 7).max(1),
        dir: std::env::var_os("SHARDFEED_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../../target/bench-data/record-format")
            }),
        json: std::env::var_os("SHARDFEED_BENCH_JSON").map(PathBuf::from),
    };
    let payloads = payloads(settings.megabytes);
    let total: u64 = payloads.iter().map(|p| p.len() as u64).sum();
    println!(
        "record-format: {} records, {:.1} MB of payload in {FILES} files, {} runs each, {} cores, files in {}",
        payloads.len(),
        total as f64 / 1e6,
        settings.runs,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        settings.dir.display()
    );
    let plain_dir = settings.dir.join("plain");
    let gzip_dir = settings.dir.join("gzip");
    for dir in [&plain_dir, &gzip_dir] {
        let _ = std::fs::remove_dir_all(dir);
    }
    let plain = write_files(&plain_dir, &payloads, Compression::None);
    let gzip = write_files(&gzip_dir, &payloads, Compression::Gzip);
    let count = (payloads.len() as u64, total);

    let verify = ReaderOptions::default();
    let no_verify = ReaderOptions {
        verify: false,
        ..verify
    };
    let gzip_options = ReaderOptions::compression(Compression::Gzip);
    let gzip_runs = settings.runs.min(3);
    let scratch = settings.dir.join("scratch");
    let results = [
        measure("write plain (FileWriter, fsync)", settings.runs, || {
            let _ = std::fs::remove_dir_all(&scratch);
            write_files(&scratch, &payloads, Compression::None);
            count
        }),
        measure("write gzip", gzip_runs, || {
            let _ = std::fs::remove_dir_all(&scratch);
            write_files(&scratch, &payloads, Compression::Gzip);
            count
        }),
        measure("scan streaming, crc, 1 thread", settings.runs, || {
            scan_streaming(&plain, verify)
        }),
        measure("scan streaming, crc, all cores", settings.runs, || {
            scan_parallel(&plain, verify)
        }),
        measure("scan streaming, no crc, 1 thread", settings.runs, || {
            scan_streaming(&plain, no_verify)
        }),
        measure("scan gzip streaming, crc, 1 thread", gzip_runs, || {
            scan_streaming(&gzip, gzip_options)
        }),
    ];
    let _ = std::fs::remove_dir_all(&scratch);
    let reports: Vec<serde_json::Value> = results.iter().map(Measurement::report).collect();
    if let Some(path) = settings.json {
        let document = serde_json::json!({
            "bench": "record-format",
            "plain_dir": plain_dir,
            "results": reports,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&document).unwrap()).unwrap();
    }
}
