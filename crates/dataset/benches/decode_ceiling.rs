//! The physical limit of the read side: every record's JPEG of a shard folder held in memory,
//! decoded by libjpeg-turbo on one thread, nothing else (no framing, no CRC, no batching).
//! `cargo xtask bench python` runs it on the same shards as the loader and compares.
//!
//! `SHARDFEED_BENCH_SHARDS` (the folder), `SHARDFEED_BENCH_RUNS`, `SHARDFEED_BENCH_JSON`;
//! `SHARDFEED_BENCH_CROP=N` also decodes, on one thread, only the crops the Loader's
//! `RandomResizedCrop(N)` draws in epoch 0 (seed 42): the region at its DCT scale, no resize
//! and no copy out (`cargo xtask bench augment`'s limit).

use std::time::Instant;

use shardfeed_dataset::find_shards;
use shardfeed_dataset::transform::{Transform, draw_for};
use shardfeed_image_prep::{DecodeOptions, Decoder};
use shardfeed_input_pipeline::Address;
use shardfeed_record_format::{ImageExample, ReaderOptions, RecordReader};

fn main() {
    let Some(dir) = std::env::var_os("SHARDFEED_BENCH_SHARDS") else {
        eprintln!("decode_ceiling: set SHARDFEED_BENCH_SHARDS to a shard folder; nothing to do");
        return;
    };
    let runs: usize = std::env::var("SHARDFEED_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut jpegs = Vec::new();
    let mut addresses = Vec::new();
    for (source, file) in find_shards(dir.as_ref())
        .expect("a shard folder")
        .iter()
        .enumerate()
    {
        let mut reader = RecordReader::open(file, ReaderOptions::default()).expect("readable");
        let mut payload = Vec::new();
        let mut index = 0;
        while reader.read_into(&mut payload).expect("intact").is_some() {
            jpegs.push(ImageExample::decode(&payload).expect("an Example").image);
            addresses.push(Address {
                source: source as u32,
                index,
            });
            index += 1;
        }
    }
    let mut decoder = Decoder::new().expect("a decoder");
    let options = DecodeOptions::default();
    let mut rates = Vec::new();
    let mut checksum = 0u64;
    for _ in 0..runs {
        let started = Instant::now();
        for jpeg in &jpegs {
            let image = decoder.decode(jpeg, &options, None).expect("decodable");
            checksum += u64::from(image.pixels[image.pixels.len() / 2]);
        }
        let rate = jpegs.len() as f64 / started.elapsed().as_secs_f64();
        println!(
            "decode only, 1 thread: {rate:.0} images/s ({} images)",
            jpegs.len()
        );
        rates.push(rate);
    }
    // The same loop on every core at once, each thread its share of the records: what the
    // machine's cores really give together (shared caches, memory bandwidth, SMT, frequency).
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut parallel_rates = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let sums: Vec<u64> = std::thread::scope(|scope| {
            let handles: Vec<_> = jpegs
                .chunks(jpegs.len().div_ceil(threads))
                .map(|share| {
                    scope.spawn(move || {
                        let mut decoder = Decoder::new().expect("a decoder");
                        share
                            .iter()
                            .map(|jpeg| {
                                let image = decoder.decode(jpeg, &DecodeOptions::default(), None);
                                let image = image.expect("decodable");
                                u64::from(image.pixels[image.pixels.len() / 2])
                            })
                            .sum()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a decode thread"))
                .collect()
        });
        checksum += sums.iter().sum::<u64>();
        let rate = jpegs.len() as f64 / started.elapsed().as_secs_f64();
        println!("decode only, {threads} threads: {rate:.0} images/s");
        parallel_rates.push(rate);
    }
    let crop: Option<u32> = std::env::var("SHARDFEED_BENCH_CROP")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut crop_rates = Vec::new();
    if let Some(size) = crop {
        let augment = Transform::random(size).augment;
        let options = DecodeOptions {
            dct_scaling: true,
            ..DecodeOptions::default()
        };
        // The boxes are drawn before the clock starts: only the decodes are timed.
        let boxes: Vec<_> = jpegs
            .iter()
            .zip(&addresses)
            .map(|(jpeg, &address)| {
                let info = decoder.probe(jpeg).expect("a JPEG header");
                draw_for(&augment, 42, 0, address, (info.width, info.height)).crop
            })
            .collect();
        for _ in 0..runs {
            let started = Instant::now();
            for (jpeg, crop) in jpegs.iter().zip(&boxes) {
                let region = decoder
                    .decode_crop(jpeg, &options, *crop, (size, size))
                    .expect("decodable");
                checksum += u64::from(region.image.pixels[region.image.pixels.len() / 2]);
            }
            let rate = jpegs.len() as f64 / started.elapsed().as_secs_f64();
            println!("the Loader's crops ({size} px) decoded only, 1 thread: {rate:.0} images/s");
            crop_rates.push(rate);
        }
    }
    if let Some(path) = std::env::var_os("SHARDFEED_BENCH_JSON") {
        let doc = serde_json::json!({
            "crop_images_per_s": crop_rates,
            "images": jpegs.len(),
            "images_per_s": rates,
            "threads": threads,
            "all_threads_images_per_s": parallel_rates,
            "checksum": checksum,
        });
        std::fs::write(path, doc.to_string()).expect("the JSON file is writable");
    }
}
