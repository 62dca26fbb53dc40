//! `shardfeed shard` streams: its peak heap does not grow with the number of images beyond
//! the file list. Measured with a counting global allocator (this test binary's own), on
//! 60 and 360 images of the same kind: the difference must stay under what the longer file
//! list and manifest explain, far below 300 more decoded images. (libjpeg-turbo's own working
//! memory comes from C `malloc` and is not counted here; it is per decoder, not per image.)

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
        input: dir.path().join("train"),
        out: dir.path().join("shards"),
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
        input: dir.path().join("train"),
        out: dir.path().join("shards"),
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
