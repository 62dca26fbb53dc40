//! Training-time transforms in the Loader: each record's crop and flip keyed by (seed, epoch,
//! record), so the pixels of every image are the same bits for any thread count, any number
//! of ranks, and after a resume (also onto another world size or output side); and the
//! pixels are the reference path's (whole decode, crop, resize, flip).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use shardfeed_dataset::folder::{Location, Resize};
use shardfeed_dataset::loader::{Dtype, Layout, Loader, LoaderConfig, Pixels, Position, Traced};
use shardfeed_dataset::transform::{Transform, draw_for};
use shardfeed_dataset::{ShardConfig, find_shards, shard, synthetic};
use shardfeed_image_prep::augment::{Augment, CropKind, RandomResizedCrop};
use shardfeed_image_prep::crop::{CropBox, CropResizer};
use shardfeed_image_prep::output::Normalize;
use shardfeed_image_prep::{DecodeOptions, Decoder};
use shardfeed_input_pipeline::{Address, Parallelism};
use shardfeed_record_format::{ImageExample, ReaderOptions, RecordReader};

fn shards(dir: &Path) -> Vec<PathBuf> {
    let config = synthetic::GenData {
        n_train: 45,
        n_test: 0,
        sides: (60, 140),
        ..Default::default()
    };
    synthetic::generate(dir, &config).unwrap();
    let out = dir.join("shards");
    shard(
        &ShardConfig {
            input: Location::local(dir.join("train")),
            out: Location::local(&out),
            shards: 3,
            resize: Resize::Keep,
            ..ShardConfig::default()
        },
        |_| {},
    )
    .unwrap();
    find_shards(&out).unwrap()
}

fn rrc(size: u32, dct_scaling: bool) -> Transform {
    Transform {
        augment: Augment {
            crop: CropKind::Random(RandomResizedCrop::default()),
            size,
            flip: 0.5,
            dct_scaling,
        },
        normalize: Some(Normalize::IMAGENET),
    }
}

fn config(transform: Transform, jobs: usize, rank: usize, world: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size: 4,
        drop_remainder: false,
        shuffle: 16,
        jobs: Parallelism::Fixed(jobs),
        rank,
        world_size: world,
        layout: Layout::Nchw,
        transform: Some(transform),
        ..LoaderConfig::default()
    }
}

/// One image: where it came from, its label, its pixels' bits.
type Image = (Traced, i64, Vec<u32>);

/// The images of the batches from `position` to the epoch's end (at most `batches`).
fn read(loader: &Loader, position: Position, size: Option<u32>, batches: usize) -> Vec<Image> {
    read_counting(loader, position, size, batches).0
}

/// [`read`], and the damaged records skipped.
fn read_counting(
    loader: &Loader,
    position: Position,
    size: Option<u32>,
    batches: usize,
) -> (Vec<Image>, usize) {
    let mut epoch = loader.epoch_at_size(position, size);
    let (mut out, mut skipped) = (Vec::new(), 0);
    for _ in 0..batches {
        let Some(batch) = epoch.next_batch() else {
            break;
        };
        let batch = batch.unwrap();
        skipped += batch.skipped.len();
        let Pixels::F32(pixels) = &batch.pixels else {
            panic!("float32 asked for")
        };
        let per = batch.side * batch.side * 3;
        assert_eq!(pixels.len(), per * batch.len());
        for (i, (traced, label)) in batch.traced.iter().zip(&batch.labels).enumerate() {
            let bits = pixels[i * per..(i + 1) * per]
                .iter()
                .map(|v| v.to_bits())
                .collect();
            out.push((*traced, *label, bits));
        }
    }
    (out, skipped)
}

fn by_record(images: Vec<Image>) -> BTreeMap<(u32, u64), (Traced, i64, Vec<u32>)> {
    images
        .into_iter()
        .map(|(t, l, p)| ((t.file, t.record), (t, l, p)))
        .collect()
}

#[test]
fn the_same_pixels_for_any_thread_count_and_any_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let files = shards(dir.path());
    let transform = rrc(32, true);
    let one = Loader::open(&files, config(transform, 1, 0, 1)).unwrap();
    let reference = read(&one, Position::default(), None, usize::MAX);
    assert_eq!(reference.len(), 45);
    assert!(reference.iter().all(|(t, ..)| t.applied.is_some()));
    let flips = reference
        .iter()
        .filter(|(t, ..)| t.applied.unwrap().flip)
        .count();
    assert!((8..=37).contains(&flips), "{flips} of 45 flipped");
    for jobs in [2, 4] {
        let loader = Loader::open(&files, config(transform, jobs, 0, 1)).unwrap();
        assert!(
            read(&loader, Position::default(), None, usize::MAX) == reference,
            "{jobs} threads gave other batches"
        );
    }
    // Three ranks joined: every record once, each with the same crop, flip and pixels.
    let mut joined = Vec::new();
    for rank in 0..3 {
        let loader = Loader::open(&files, config(transform, 2, rank, 3)).unwrap();
        joined.extend(read(&loader, Position::default(), None, usize::MAX));
    }
    let padded = joined.len() - 45;
    let joined = by_record(joined);
    assert_eq!(joined.len(), 45, "{padded} padded");
    assert!(
        joined == by_record(reference.clone()),
        "3 ranks joined differ"
    );
    // Another epoch draws other crops.
    let next = by_record(read(
        &one,
        Position {
            epoch: 1,
            offset: 0,
        },
        None,
        usize::MAX,
    ));
    let same = by_record(reference)
        .iter()
        .filter(|(k, v)| next[k].0.applied == v.0.applied)
        .count();
    assert!(
        same < 5,
        "{same} of 45 records drew the same crop in epoch 1"
    );
}

#[test]
fn a_resume_continues_with_the_same_pixels_also_on_other_ranks_and_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let files = shards(dir.path());
    let transform = rrc(32, true);
    let one = Loader::open(&files, config(transform, 2, 0, 1)).unwrap();
    let whole = by_record(read(&one, Position::default(), None, usize::MAX));
    for stop in [1, 3, 7] {
        let mut epoch = one.epoch(Position::default());
        for _ in 0..stop {
            epoch.next_batch().unwrap().unwrap();
        }
        let state = one.state(epoch.position());
        drop(epoch);
        // Continued by two ranks.
        let mut rest = Vec::new();
        for rank in 0..2 {
            let loader = Loader::open(&files, config(transform, 2, rank, 2)).unwrap();
            let position = loader.position_of(&state).unwrap();
            rest.extend(read(&loader, position, None, usize::MAX));
        }
        // The rest of the epoch (41, 33 or 17 records), and where its tail did not divide
        // over two ranks one record padded from the epoch's start.
        let rest = by_record(rest);
        let expected = 45 - stop * 4;
        assert!(
            rest.len() == expected || rest.len() == expected + 1,
            "{} records after stopping at batch {stop}",
            rest.len()
        );
        for (key, image) in &rest {
            assert!(
                &whole[key] == image,
                "record {key:?} differs after a resume"
            );
        }
        let consumed = by_record(read(&one, Position::default(), None, stop));
        for key in whole.keys().filter(|k| !consumed.contains_key(k)) {
            assert!(rest.contains_key(key), "record {key:?} lost by the resume");
        }
    }
    // The same epoch at another side: the same crops and flips, resized to 48.
    let larger = by_record(read(&one, Position::default(), Some(48), usize::MAX));
    for (key, (traced, label, pixels)) in &larger {
        assert_eq!(pixels.len(), 48 * 48 * 3);
        assert_eq!(traced.applied, whole[key].0.applied);
        assert_eq!(*label, whole[key].1);
    }
}

#[test]
fn the_pixels_are_the_reference_paths_and_the_draws_replay() {
    let dir = tempfile::tempdir().unwrap();
    let files = shards(dir.path());
    // Full-size decodes: the fused crop equals the reference within ±2 levels.
    let transform = Transform {
        normalize: None,
        ..rrc(40, false)
    };
    let loader = Loader::open(
        &files,
        LoaderConfig {
            dtype: Dtype::Uint8,
            layout: Layout::Nhwc,
            ..config(transform, 2, 0, 1)
        },
    )
    .unwrap();
    let mut epoch = loader.epoch(Position::default());
    let mut checked = 0;
    while let Some(batch) = epoch.next_batch() {
        let batch = batch.unwrap();
        let Pixels::U8(pixels) = &batch.pixels else {
            panic!("uint8 asked for")
        };
        for (i, traced) in batch.traced.iter().enumerate() {
            let jpeg = record(&loader.files()[traced.file as usize], traced.record);
            let whole = Decoder::new()
                .unwrap()
                .decode(&jpeg, &DecodeOptions::default(), None)
                .unwrap();
            let applied = traced.applied.unwrap();
            let address = Address {
                source: traced.file,
                index: traced.record,
            };
            assert_eq!(
                draw_for(
                    &transform.augment,
                    42,
                    0,
                    address,
                    (whole.width, whole.height)
                ),
                applied,
                "the draws replay from the record's key"
            );
            let expected = reference(&whole, applied.crop, 40, applied.flip);
            let got = &pixels[i * 40 * 40 * 3..(i + 1) * 40 * 40 * 3];
            let diff = got
                .iter()
                .zip(&expected)
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap();
            assert!(diff <= 2, "{traced:?}: {diff} levels off the reference");
            checked += 1;
        }
    }
    assert_eq!(checked, 45);
}

fn record(file: &Path, index: u64) -> Vec<u8> {
    let mut reader =
        RecordReader::new(std::fs::File::open(file).unwrap(), ReaderOptions::default());
    let payload = reader.nth(index as usize).unwrap().unwrap();
    ImageExample::decode(&payload).unwrap().image
}

/// The whole image's integer box cut out, resized, mirrored when `flip`: HWC bytes.
fn reference(
    whole: &shardfeed_image_prep::RgbImage,
    crop: CropBox,
    out: u32,
    flip: bool,
) -> Vec<u8> {
    let (w, h) = (crop.width as u32, crop.height as u32);
    let cut = whole.cut(crop.left as u32, crop.top as u32, w, h);
    let resized = CropResizer::new()
        .resize(&cut, CropBox::whole(w, h), (out, out))
        .unwrap();
    let mut pixels = Vec::with_capacity(resized.pixels.len());
    for row in resized.pixels.chunks_exact(out as usize * 3) {
        let mut px: Vec<&[u8]> = row.chunks_exact(3).collect();
        if flip {
            px.reverse();
        }
        for p in px {
            pixels.extend_from_slice(p);
        }
    }
    pixels
}

/// A damaged record, skipped, leaves a gap the batch closes: every other record's pixels are
/// the undamaged run's, in deterministic mode (each worker writes its batch's buffer) and not
/// (the consumer fills it), and the record is counted.
#[test]
fn a_skipped_record_leaves_the_other_images_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let files = shards(dir.path());
    let transform = rrc(32, true);
    let config = |deterministic| LoaderConfig {
        on_damaged: shardfeed_dataset::loader::OnDamaged::Skip,
        deterministic,
        ..config(transform, 2, 0, 1)
    };
    let whole = by_record(read(
        &Loader::open(&files, config(true)).unwrap(),
        Position::default(),
        None,
        usize::MAX,
    ));
    // Flip a byte inside the second record of the first file (its CRC no longer matches).
    let index = std::fs::read_to_string(format!("{}.idx", files[0].display())).unwrap();
    let offset: usize = index
        .lines()
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut bytes = std::fs::read(&files[0]).unwrap();
    bytes[offset + 40] ^= 0x5a;
    std::fs::write(&files[0], bytes).unwrap();
    for deterministic in [true, false] {
        let loader = Loader::open(&files, config(deterministic)).unwrap();
        let (images, skipped) = read_counting(&loader, Position::default(), None, usize::MAX);
        assert_eq!(skipped, 1);
        let images = by_record(images);
        assert_eq!(images.len(), 44);
        assert!(!images.contains_key(&(0, 1)));
        for (key, image) in &images {
            assert!(
                &whole[key] == image,
                "{key:?} differs (deterministic {deterministic})"
            );
        }
    }
}
