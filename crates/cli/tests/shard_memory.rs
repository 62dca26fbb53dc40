//! `shardfeed shard` streams: its peak heap does not grow with the number of images beyond
//! the file list. Measured with a counting global allocator (this test binary's own), on
//! 60 and 360 images of the same kind: the difference must stay under what the longer file
//! list and manifest explain, far below 300 more decoded images. (libjpeg-turbo's own working
//! memory comes from C `malloc` and is not counted here; it is per decoder, not per image.)

use shardfeed_dataset::folder::Location;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use shardfeed_dataset::synthetic::{GenData, generate};
use shardfeed_dataset::{ShardConfig, shard};
use shardfeed_input_pipeline::Parallelism;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One measurement at a time: the counters are global to this test binary.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A shard run, and the peak of live heap bytes above what was live when it started (hold
/// [`SERIAL`] from before the data is made).
fn shard_measured(config: &ShardConfig) -> (shardfeed_dataset::Manifest, usize) {
    PEAK.store(LIVE.load(Ordering::SeqCst), Ordering::SeqCst);
    let before = LIVE.load(Ordering::SeqCst);
    let manifest = shard(config, |_| {}).unwrap();
    (manifest, PEAK.load(Ordering::SeqCst) - before)
}

/// Peak live heap bytes during one shard run over `n` images.
fn peak_for(n: usize) -> usize {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    generate(
        dir.path(),
        &GenData {
            n_train: n,
            n_test: 0,
            seed: 3,
            sides: (300, 340),
            ..GenData::default()
        },
    )
    .unwrap();
    let config = ShardConfig {
        input: Location::local(dir.path().join("train")),
        out: Location::local(dir.path().join("shards")),
        shards: 4,
        jobs: Parallelism::Fixed(2),
        ..ShardConfig::default()
    };
    shard_measured(&config).1
}

#[test]
fn peak_memory_does_not_grow_with_the_number_of_images() {
    let small = peak_for(60);
    let large = peak_for(360);
    // One decoded 340×340 source is ~350 kB: 300 more images held at once would be ~100 MB.
    println!("peak heap: {small} bytes for 60 images, {large} bytes for 360");
    assert!(
        large < small + 512 * 1024,
        "peak heap grew from {small} to {large} bytes"
    );
}

/// A 6 KB JPEG of 65,500 × 1 pixels would resize (shorter side → 160) to 10,480,000 ×
/// 160 pixels, 5 GB, before the centre crop: it is skipped and named instead, and the run
/// stays small.
#[test]
fn an_extreme_aspect_ratio_is_skipped_and_named_without_a_large_buffer() {
    use shardfeed_image_prep::{Encoder, RgbImage};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    generate(
        dir.path(),
        &GenData {
            n_train: 8,
            n_test: 0,
            ..GenData::default()
        },
    )
    .unwrap();
    let thin = Encoder::new(90)
        .unwrap()
        .encode(&RgbImage::new(65_500, 1, vec![90; 65_500 * 3]).unwrap())
        .unwrap();
    println!("65,500 × 1 JPEG: {} bytes", thin.len());
    std::fs::write(dir.path().join("train/cat.thin.jpg"), &thin).unwrap();
    let config = ShardConfig {
        input: Location::local(dir.path().join("train")),
        out: Location::local(dir.path().join("shards")),
        shards: 2,
        jobs: Parallelism::Fixed(2),
        ..ShardConfig::default()
    };
    let (manifest, peak) = shard_measured(&config);
    println!("peak heap: {peak} bytes");
    assert_eq!(manifest.records, 8);
    assert_eq!(manifest.skipped.len(), 1, "{:?}", manifest.skipped);
    let skipped = &manifest.skipped[0];
    assert!(skipped.file.ends_with("cat.thin.jpg"), "{skipped:?}");
    assert!(
        skipped.reason.contains("10480000×160") && skipped.reason.contains("aspect ratio"),
        "{}",
        skipped.reason
    );
    assert!(peak < 1 << 30, "peak heap {peak} bytes");
}

/// A shard of 64 records of 10,000 × 10,000 JPEGs (each 300 MB decoded): `stream` and the
/// `Loader` refuse the first record they reach, by its header, naming it; the peak heap stays
/// small. Without a manifest the limit is the first record's size, capped at the largest side
/// a run may use (4096): a folder whose first record is 160 × 160 refuses a 10,000 × 10,000
/// one later on.
#[test]
fn huge_records_are_refused_by_their_header_on_the_read_path() {
    use shardfeed_dataset::loader::{Loader, LoaderConfig};
    use shardfeed_dataset::stream::{StreamConfig, stream};
    use shardfeed_image_prep::{Encoder, RgbImage};
    use shardfeed_record_format::{Compression, FileWriter, ImageExample};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let side = 10_000u32;
    let big = {
        let pixels: Vec<u8> = (0..side as usize * side as usize * 3)
            .map(|i| (i % 251) as u8)
            .collect();
        Encoder::new(50)
            .unwrap()
            .encode(&RgbImage::new(side, side, pixels).unwrap())
            .unwrap()
    };
    let small = Encoder::new(90)
        .unwrap()
        .encode(&RgbImage::new(160, 160, vec![128; 160 * 160 * 3]).unwrap())
        .unwrap();
    println!("10,000 × 10,000 JPEG: {} bytes", big.len());
    let dir = tempfile::tempdir().unwrap();
    let write = |folder: &str, first: &[u8]| -> std::path::PathBuf {
        let folder = dir.path().join(folder);
        std::fs::create_dir(&folder).unwrap();
        let mut writer =
            FileWriter::create(folder.join("data00-64.tfrec"), Compression::None).unwrap();
        for i in 0..64 {
            let image = if i == 0 { first.to_vec() } else { big.clone() };
            writer
                .write_record(
                    &ImageExample {
                        image,
                        class: i % 2,
                        size: None,
                    }
                    .to_bytes(),
                )
                .unwrap();
        }
        writer.commit().unwrap();
        folder
    };
    let all_big = write("all-big", &big);
    let small_first = write("small-first", &small);
    for (folder, limit) in [
        (
            &all_big,
            "over the limit of 16777216 pixels (the largest side allowed, 4096)",
        ),
        (
            &small_first,
            "over the limit of 25600 pixels (the first record's 160 × 160)",
        ),
    ] {
        PEAK.store(LIVE.load(Ordering::SeqCst), Ordering::SeqCst);
        let before = LIVE.load(Ordering::SeqCst);
        let error = stream(&StreamConfig {
            shards: Location::local(folder.clone()),
            epochs: 1,
            batch: 8,
            jobs: Parallelism::Fixed(2),
            ..StreamConfig::default()
        })
        .unwrap_err()
        .to_string();
        println!(
            "stream: {error}; peak heap {} bytes",
            PEAK.load(Ordering::SeqCst) - before
        );
        assert!(
            error.contains("image of 10000×10000 pixels") && error.contains(limit),
            "{error}"
        );
        assert!(
            error.contains("data00-64.tfrec") && error.contains(" at offset "),
            "{error}"
        );
        let files = vec![folder.join("data00-64.tfrec")];
        let loader = Loader::open(
            &files,
            LoaderConfig {
                batch_size: 8,
                jobs: Parallelism::Fixed(2),
                ..LoaderConfig::default()
            },
        )
        .unwrap();
        let mut batches = loader.epoch(Default::default());
        let first = std::iter::from_fn(|| batches.next_batch())
            .find_map(|batch| batch.err())
            .expect("the Loader refuses the epoch")
            .to_string();
        drop(batches);
        let peak = PEAK.load(Ordering::SeqCst) - before;
        println!("Loader: {first}; peak heap {peak} bytes");
        assert!(
            first.contains("image of 10000×10000 pixels") && first.contains(limit),
            "{first}"
        );
        assert!(first.contains("data00-64.tfrec"), "{first}");
        assert!(peak < 256 << 20, "peak heap {peak} bytes");
    }
}

/// `predict` (and `plot --test`) prepare their files through `images::prepared_images`: the
/// 65,500 × 1 JPEG is an `Err` naming the aspect ratio in its place, the other file is
/// prepared, and the peak heap stays small.
#[test]
fn predict_skips_an_extreme_aspect_ratio_without_a_large_buffer() {
    use shardfeed_dataset::images::prepared_images;
    use shardfeed_image_prep::{Encoder, Preprocessing, RgbImage};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let encode = |w: u32, h: u32| {
        Encoder::new(90)
            .unwrap()
            .encode(&RgbImage::new(w, h, vec![90; (w * h * 3) as usize]).unwrap())
            .unwrap()
    };
    let thin = dir.path().join("thin.jpg");
    let fine = dir.path().join("fine.jpg");
    std::fs::write(&thin, encode(65_500, 1)).unwrap();
    std::fs::write(&fine, encode(300, 200)).unwrap();
    PEAK.store(LIVE.load(Ordering::SeqCst), Ordering::SeqCst);
    let before = LIVE.load(Ordering::SeqCst);
    let prepared: Vec<_> = prepared_images(
        vec![thin.clone(), fine.clone()],
        Preprocessing::default(),
        8,
        Parallelism::Fixed(2),
    )
    .iter()
    .flat_map(|batch| batch.unwrap().items)
    .collect();
    let peak = PEAK.load(Ordering::SeqCst) - before;
    println!("predict's preparation: peak heap {peak} bytes");
    assert_eq!(prepared.len(), 2);
    let reason = prepared[0].1.as_ref().unwrap_err();
    assert!(
        reason.contains("10480000×160") && reason.contains("aspect ratio"),
        "{reason}"
    );
    let image = prepared[1].1.as_ref().unwrap();
    assert_eq!((image.width, image.height), (160, 160));
    assert!(peak < 64 << 20, "peak heap {peak} bytes");
}
