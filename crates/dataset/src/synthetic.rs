//! Synthetic labelled JPEG folders (`shardfeed gen-data`, `cargo xtask gen-data`): for tests,
//! the demo and benchmarks, deterministic for a seed.
//!
//! Each class draws one kind of pattern with random colours, positions, scales and noise:
//! class 0 blobs, class 1 stripes, class 2 rings, class 3 checks, then again. Colours are
//! drawn from the same distribution for every class, so the mean colour does not tell the
//! classes apart; the shapes do, and the seed CNN learns them.

use std::path::Path;

use shardfeed_image_prep::{Encoder, RgbImage};
use shardfeed_input_pipeline::Rng;

use crate::{Error, Result};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenData {
    /// Training images per class is `n_train / classes`, round-robin over the classes.
    pub n_train: usize,
    /// Unlabelled test images.
    pub n_test: usize,
    /// The seed.
    pub seed: u64,
    /// Class names (labels).
    pub classes: Vec<String>,
    /// Smallest and largest side, in pixels.
    pub sides: (u32, u32),
}

impl Default for GenData {
    fn default() -> Self {
        GenData {
            n_train: 4000,
            n_test: 200,
            seed: 20240601,
            classes: vec!["cat".to_owned(), "dog".to_owned()],
            sides: (220, 500),
        }
    }
}

/// Writes `out/train/LABEL.I.jpg` and `out/test/I.jpg` (quality 90, 4:2:0), on every core:
/// each image depends only on its index and the seed, so the files do not depend on the thread
/// count.
pub fn generate(out: &Path, config: &GenData) -> Result<()> {
    generate_with_progress(out, config, |_| {})
}

/// [`generate`], calling `progress` with the number of images written so far (from any of
/// the worker threads, at most once per image).
pub fn generate_with_progress(
    out: &Path,
    config: &GenData,
    progress: impl Fn(u64) + Sync,
) -> Result<()> {
    let written = std::sync::atomic::AtomicU64::new(0);
    let progress = &progress;
    let written = &written;
    let tick = move || {
        let n = written.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        progress(n);
    };
    // Each name must be a label a file name can carry (not empty, no `.` or `,`).
    crate::label::Classes::explicit(config.classes.clone())?;
    let train = out.join("train");
    let test = out.join("test");
    for dir in [&train, &test] {
        std::fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
    }
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|worker| {
                let (train, test) = (&train, &test);
                scope.spawn(move || -> Result<()> {
                    let mut encoder = source_encoder()?;
                    for i in (worker..config.n_train).step_by(threads) {
                        let class = i % config.classes.len();
                        let image = draw(config, class, i as u64, 0);
                        let path = train.join(format!("{}.{i}.jpg", config.classes[class]));
                        write_jpeg(&mut encoder, &image, &path)?;
                        tick();
                    }
                    for i in (worker..config.n_test).step_by(threads) {
                        let class = (i * 7 + 3) % config.classes.len();
                        let image = draw(config, class, i as u64, 1);
                        write_jpeg(&mut encoder, &image, &test.join(format!("{i}.jpg")))?;
                        tick();
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|worker| worker.join().expect("a gen-data worker failed"))
    })
}

/// An encoder as a camera or a web site would produce the sources: quality 90, 4:2:0.
fn source_encoder() -> Result<Encoder> {
    Ok(Encoder::with_settings(90, true, false)?)
}

fn write_jpeg(encoder: &mut Encoder, image: &RgbImage, path: &Path) -> Result<()> {
    let jpeg = encoder.encode(image)?;
    // Generated sources, not outputs a reader relies on: a plain write (no fsync per file).
    std::fs::write(path, jpeg).map_err(Error::io("write", path))
}

/// One image of `class`, number `index` of split `split` (0 train, 1 test).
pub fn draw(config: &GenData, class: usize, index: u64, split: u64) -> RgbImage {
    let mut rng = Rng::for_epoch(config.seed, index, 100 + split);
    let (low, high) = config.sides;
    let span = u64::from(high - low + 1);
    let width = low + rng.below(span) as u32;
    let height = low + rng.below(span) as u32;
    let colour = |rng: &mut Rng| [0, 1, 2].map(|_| 40.0 + rng.below(176) as f32);
    let background = colour(&mut rng);
    let ink = colour(&mut rng);
    let scale = 12.0 + rng.below(20) as f32;
    let angle = rng.below(628) as f32 / 100.0;
    let (sin, cos) = angle.sin_cos();
    let centres: Vec<(f32, f32, f32)> = (0..4 + rng.below(5))
        .map(|_| {
            (
                rng.below(u64::from(width)) as f32,
                rng.below(u64::from(height)) as f32,
                scale * (1.0 + rng.below(100) as f32 / 60.0),
            )
        })
        .collect();
    let mut noise = Rng::for_epoch(config.seed ^ 0x5eed, index, 200 + split);
    let mut pixels = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        for x in 0..width {
            let (fx, fy) = (x as f32, y as f32);
            let weight = match class % 4 {
                0 => centres
                    .iter()
                    .map(|&(cx, cy, r)| {
                        (-((fx - cx).powi(2) + (fy - cy).powi(2)) / (2.0 * r * r)).exp()
                    })
                    .fold(0.0f32, f32::max),
                1 => 0.5 + 0.5 * ((fx * cos + fy * sin) / scale * std::f32::consts::PI).sin(),
                2 => {
                    let (cx, cy, _) = centres[0];
                    let d = ((fx - cx).powi(2) + (fy - cy).powi(2)).sqrt();
                    0.5 + 0.5 * (d / scale * std::f32::consts::PI).sin()
                }
                _ => {
                    let u = ((fx * cos + fy * sin) / scale).floor() as i64;
                    let v = ((fy * cos - fx * sin) / scale).floor() as i64;
                    ((u + v).rem_euclid(2)) as f32
                }
            };
            for channel in 0..3 {
                let value = background[channel] + (ink[channel] - background[channel]) * weight;
                let jitter = noise.below(13) as f32 - 6.0;
                pixels.push((value + jitter).clamp(0.0, 255.0) as u8);
            }
        }
    }
    RgbImage {
        width,
        height,
        pixels,
    }
}

/// Encodes `image` as the shard step's sources are: quality 90, 4:2:0 (for tests).
pub fn source_jpeg(image: &RgbImage) -> Result<Vec<u8>> {
    Ok(source_encoder()?.encode(image)?)
}
