//! The loader's contract: one epoch split over ranks exactly, equal batch counts, exact
//! resume (also with another number of ranks), damaged records skipped or raised.

use shardfeed_dataset::folder::Location;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use shardfeed_dataset::loader::{Dtype, Layout, Loader, LoaderConfig, OnDamaged, Pixels, Position};
use shardfeed_dataset::{ShardConfig, find_shards, shard, synthetic};
use shardfeed_input_pipeline::{Address, Parallelism};

fn make_shards(dir: &Path, n: usize, shards: usize) -> Vec<PathBuf> {
    let config = synthetic::GenData {
        n_train: n,
        n_test: 0,
        sides: (24, 40),
        ..Default::default()
    };
    synthetic::generate(dir, &config).unwrap();
    let out = dir.join("shards");
    let settings = ShardConfig {
        input: Location::local(dir.join("train")),
        out: Location::local(out.clone()),
        shards,
        size: 16,
        ..ShardConfig::default()
    };
    shard(&settings, |_| {}).unwrap();
    find_shards(&out).unwrap()
}

fn config(batch: usize, rank: usize, world: usize, drop: bool) -> LoaderConfig {
    LoaderConfig {
        batch_size: batch,
        shuffle: 16,
        rank,
        world_size: world,
        drop_remainder: drop,
        jobs: Parallelism::Fixed(2),
        ..LoaderConfig::default()
    }
}

#[test]
fn ranks_split_each_epoch_exactly_with_equal_batch_counts() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_shards(dir.path(), 101, 5);
    for world in [1, 2, 3, 4] {
        for drop in [true, false] {
            for epoch in 0..2 {
                let mut seen: BTreeMap<Address, u32> = BTreeMap::new();
                let mut batches = Vec::new();
                let mut padded = 0;
                for rank in 0..world {
                    let loader = Loader::open(&files, config(8, rank, world, drop)).unwrap();
                    let share = loader.share(Position { epoch, offset: 0 });
                    assert_eq!(share.batches, loader.batches_per_epoch());
                    batches.push(share.batches);
                    padded += share.padded;
                    let mine = &share.addresses[..share.addresses.len() - share.padded as usize];
                    for &a in mine {
                        *seen.entry(a).or_default() += 1;
                    }
                    if drop {
                        assert_eq!(share.addresses.len() as u64, share.batches * 8);
                    }
                }
                assert!(batches.iter().all(|&b| b == batches[0]), "{batches:?}");
                assert!(seen.values().all(|&n| n == 1), "a record twice");
                let step = 8 * world as u64;
                if drop {
                    assert_eq!(seen.len() as u64, 101 / step * step);
                } else {
                    assert_eq!(seen.len(), 101, "world {world}: every record once");
                    let tail = 101 % step;
                    assert_eq!(padded, tail.div_ceil(world as u64) * world as u64 - tail);
                }
            }
        }
    }
}

#[test]
fn resuming_continues_the_epoch_exactly_even_with_other_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_shards(dir.path(), 90, 4);
    // Two ranks consume 2 batches each (offset 2 × 2 × 8 = 32), then three ranks continue.
    let two: Vec<Loader> = (0..2)
        .map(|r| Loader::open(&files, config(8, r, 2, false)).unwrap())
        .collect();
    let whole = two[0].epoch_order(1);
    let mut consumed: Vec<Address> = Vec::new();
    let mut position = Position::default();
    for loader in &two {
        let mut epoch = loader.epoch(Position {
            epoch: 1,
            offset: 0,
        });
        for _ in 0..2 {
            epoch.next_batch().unwrap().unwrap();
        }
        position = epoch.position();
        consumed.extend(
            &loader
                .share(Position {
                    epoch: 1,
                    offset: 0,
                })
                .addresses[..16],
        );
    }
    assert_eq!(
        position,
        Position {
            epoch: 1,
            offset: 32
        }
    );
    let state = two[0].state(position);
    let three: Vec<Loader> = (0..3)
        .map(|r| Loader::open(&files, config(8, r, 3, false)).unwrap())
        .collect();
    let resumed = three[0].position_of(&state).unwrap();
    let mut rest: Vec<Address> = Vec::new();
    let mut counts = Vec::new();
    for loader in &three {
        let share = loader.share(resumed);
        counts.push(share.batches);
        rest.extend(&share.addresses[..share.addresses.len() - share.padded as usize]);
    }
    assert!(counts.iter().all(|&c| c == counts[0]));
    let mut all: Vec<Address> = consumed.into_iter().chain(rest).collect();
    all.sort();
    let mut expected = whole.clone();
    expected.sort();
    assert_eq!(all, expected, "the epoch is covered exactly once");

    // The same ranks resume to exactly the batches the uninterrupted run yields.
    let one = Loader::open(&files, config(8, 0, 1, true)).unwrap();
    let uninterrupted: Vec<Vec<i64>> = {
        let mut e = one.epoch(Position {
            epoch: 0,
            offset: 0,
        });
        std::iter::from_fn(|| e.next_batch())
            .map(|b| b.unwrap().labels)
            .collect()
    };
    for k in [0, 1, 5, 10] {
        let resumed = one
            .position_of(&one.state(Position {
                epoch: 0,
                offset: k * 8,
            }))
            .unwrap();
        let mut e = one.epoch(resumed);
        let rest: Vec<Vec<i64>> = std::iter::from_fn(|| e.next_batch())
            .map(|b| b.unwrap().labels)
            .collect();
        assert_eq!(
            rest,
            uninterrupted[k as usize..],
            "resumed after {k} batches"
        );
    }
}

#[test]
fn a_state_from_other_data_or_settings_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_shards(dir.path(), 40, 4);
    let loader = Loader::open(&files, config(8, 0, 1, true)).unwrap();
    let state = loader.state(Position {
        epoch: 0,
        offset: 8,
    });
    let other_seed = Loader::open(
        &files,
        LoaderConfig {
            seed: 7,
            ..config(8, 0, 1, true)
        },
    )
    .unwrap();
    assert!(
        other_seed
            .position_of(&state)
            .unwrap_err()
            .to_string()
            .contains("other files or another order")
    );
    let other_batch = Loader::open(&files, config(4, 0, 1, true)).unwrap();
    assert!(
        other_batch
            .position_of(&state)
            .unwrap_err()
            .to_string()
            .contains("batch_size 8")
    );
    let fewer = Loader::open(&files[1..], config(8, 0, 1, true)).unwrap();
    assert!(fewer.position_of(&state).is_err());
}

#[test]
fn layouts_and_types_hold_the_same_values_whatever_the_threads() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_shards(dir.path(), 48, 3);
    let batch = |dtype, layout, jobs| {
        let cfg = LoaderConfig {
            dtype,
            layout,
            jobs: Parallelism::Fixed(jobs),
            ..config(16, 0, 1, true)
        };
        let loader = Loader::open(&files, cfg).unwrap();
        let mut e = loader.epoch(Position::default());
        e.next_batch().unwrap().unwrap()
    };
    let nhwc_u8 = batch(Dtype::Uint8, Layout::Nhwc, 1);
    let nhwc_f32 = batch(Dtype::Float32, Layout::Nhwc, 2);
    let nchw_u8 = batch(Dtype::Uint8, Layout::Nchw, 3);
    let nchw_f32 = batch(Dtype::Float32, Layout::Nchw, 2);
    assert_eq!(nhwc_u8.labels, nchw_f32.labels);
    let (Pixels::U8(a), Pixels::F32(b), Pixels::U8(c), Pixels::F32(d)) = (
        &nhwc_u8.pixels,
        &nhwc_f32.pixels,
        &nchw_u8.pixels,
        &nchw_f32.pixels,
    ) else {
        panic!("types")
    };
    let side = nhwc_u8.side;
    assert_eq!(side, 16);
    assert_eq!(a.len(), 16 * side * side * 3);
    for n in 0..16 {
        for y in 0..side {
            for x in 0..side {
                for ch in 0..3 {
                    let hwc = ((n * side + y) * side + x) * 3 + ch;
                    let chw = ((n * 3 + ch) * side + y) * side + x;
                    assert_eq!(a[hwc], c[chw]);
                    assert_eq!(b[hwc], f32::from(a[hwc]) * (1.0 / 255.0));
                    assert_eq!(d[chw], b[hwc]);
                }
            }
        }
    }
}

#[test]
fn damaged_records_are_skipped_and_counted_or_raised() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_shards(dir.path(), 32, 2);
    // Flip a byte inside the payload of file 0's record 1.
    let index =
        shardfeed_record_format::Index::read(shardfeed_record_format::Index::path_for(&files[0]))
            .unwrap();
    let entry = index.entries()[1];
    let mut bytes = std::fs::read(&files[0]).unwrap();
    bytes[(entry.offset + 40) as usize] ^= 0x55;
    std::fs::write(&files[0], bytes).unwrap();

    let skip = Loader::open(
        &files,
        LoaderConfig {
            on_damaged: OnDamaged::Skip,
            shuffle: 0,
            ..config(8, 0, 1, true)
        },
    )
    .unwrap();
    let mut e = skip.epoch(Position::default());
    let mut skipped = Vec::new();
    let mut images = 0;
    while let Some(batch) = e.next_batch() {
        let batch = batch.unwrap();
        images += batch.len();
        skipped.extend(batch.skipped);
    }
    assert_eq!(images, 31);
    assert_eq!(skipped.len(), 1);
    assert_eq!(
        (
            skipped[0].path.clone(),
            skipped[0].offset,
            skipped[0].record
        ),
        (files[0].clone(), Some(entry.offset), 1)
    );
    assert!(
        skipped[0].reason.contains("crc mismatch"),
        "{}",
        skipped[0].reason
    );

    let raise = Loader::open(
        &files,
        LoaderConfig {
            shuffle: 0,
            ..config(8, 0, 1, true)
        },
    )
    .unwrap();
    let mut e = raise.epoch(Position::default());
    let error = std::iter::from_fn(|| e.next_batch())
        .find_map(Result::err)
        .unwrap();
    let message = error.to_string();
    assert!(
        message.contains(&format!("record 1 at offset {}", entry.offset)),
        "{message}"
    );
    assert!(
        message.contains(&files[0].display().to_string()),
        "{message}"
    );
}

/// Rewrites `file` with `change` applied to each record (the `.idx` rewritten too).
fn rewrite(file: &Path, change: impl Fn(u64, &mut shardfeed_record_format::ImageExample)) {
    use shardfeed_record_format::{Compression, FileWriter, ImageExample, RecordReader};
    let mut reader = RecordReader::new(std::fs::File::open(file).unwrap(), Default::default());
    let mut records = Vec::new();
    let mut record = Vec::new();
    while reader.read_into(&mut record).unwrap().is_some() {
        records.push(ImageExample::decode(&record).unwrap());
    }
    let mut writer = FileWriter::create(file, Compression::None).unwrap();
    for (i, mut example) in records.into_iter().enumerate() {
        change(i as u64, &mut example);
        writer.write_record(&example.to_bytes()).unwrap();
    }
    writer.commit().unwrap();
}

/// Records whose class is not one of the manifest's are damaged (named, skipped and counted, or
/// raised), never trained on; and an epoch whose first batch is all such records goes on with
/// the next batches (the image side is the first image's, not the first batch's).
#[test]
fn classes_out_of_range_are_damage_and_an_all_damaged_first_batch_is_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_shards(dir.path(), 16, 1);
    rewrite(&files[0], |i, example| {
        if i < 8 {
            example.class = 5;
        }
    });
    let open = |on_damaged| {
        Loader::open(
            &files,
            LoaderConfig {
                on_damaged,
                shuffle: 0,
                ..config(8, 0, 1, true)
            },
        )
        .unwrap()
    };
    let loader = open(OnDamaged::Skip);
    let mut epoch = loader.epoch(Position::default());
    let first = epoch.next_batch().unwrap().unwrap();
    assert_eq!((first.len(), first.skipped.len()), (0, 8));
    assert!(
        first.skipped[0]
            .reason
            .contains("class 5 is not below the 2 classes"),
        "{}",
        first.skipped[0].reason
    );
    let second = epoch.next_batch().unwrap().unwrap();
    assert_eq!((second.len(), second.side), (8, 16));
    assert!(epoch.next_batch().is_none());

    let loader = open(OnDamaged::Raise);
    let mut epoch = loader.epoch(Position::default());
    let error = epoch.next_batch().unwrap().unwrap_err().to_string();
    assert!(
        error.contains("record 0 at offset 0") && error.contains("data00-16.tfrec"),
        "{error}"
    );
}

/// `shardfeed train` and the `Loader` read one epoch in the same order: the same split, the
/// same file shuffle, interleave and shuffle buffer (`shardfeed_dataset::order`). Two epochs
/// of the training stream, record by record, equal the Loader's epochs 0 and 1.
#[test]
fn the_loader_reads_each_epoch_in_trains_order() {
    use shardfeed_dataset::loader::SplitPart;
    use shardfeed_dataset::run::{DataSettings, TrainingData};
    let dir = tempfile::tempdir().unwrap();
    make_shards(dir.path(), 150, 12);
    let shards = dir.path().join("shards");
    let (seed, fraction) = (5, 0.19);
    let data = TrainingData::open(&DataSettings {
        shards: Location::local(shards.clone()),
        batch: 10,
        validation_fraction: fraction,
        seed,
        jobs: Parallelism::Fixed(2),
        ..DataSettings::default()
    })
    .unwrap();
    let records = data.info.train_records as usize;
    assert!(records > 100 && !data.info.validation_files.is_empty());
    let trained: Vec<(i64, Vec<u8>)> = data
        .train
        .iter()
        .items()
        .take(2 * records)
        .map(|d| {
            let d = d.unwrap();
            (d.class, d.image.pixels.clone())
        })
        .collect();
    let loader = Loader::open(
        &find_shards(&shards).unwrap(),
        LoaderConfig {
            batch_size: 1,
            split: Some((SplitPart::Train, fraction)),
            seed,
            dtype: Dtype::Uint8,
            layout: Layout::Nhwc,
            drop_remainder: false,
            jobs: Parallelism::Fixed(2),
            ..LoaderConfig::default()
        },
    )
    .unwrap();
    assert_eq!(loader.files(), data.info.train_files.as_slice());
    let mut loaded = Vec::new();
    for epoch in 0..2 {
        let mut batches = loader.epoch(Position { epoch, offset: 0 });
        while let Some(batch) = batches.next_batch() {
            let batch = batch.unwrap();
            let Pixels::U8(pixels) = batch.pixels else {
                panic!("uint8 asked for")
            };
            loaded.push((batch.labels[0], pixels));
        }
    }
    assert_eq!(loaded.len(), trained.len());
    let first_difference = loaded.iter().zip(&trained).position(|(a, b)| a != b);
    assert_eq!(first_difference, None, "of {} records", trained.len());
}

#[test]
fn a_ranks_workers_taken_in_turn_are_that_ranks_batches() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_shards(dir.path(), 101, 5);
    let batch = 4;
    for world in [1, 2] {
        for workers in [2, 3] {
            for rank in 0..world {
                let plain = Loader::open(&files, config(batch, rank, world, true)).unwrap();
                let position = Position {
                    epoch: 1,
                    offset: 8,
                };
                let whole = plain.share(position).addresses;
                let shares: Vec<Vec<Address>> = (0..workers)
                    .map(|w| {
                        let c = config(batch, rank, world, true)
                            .in_worker(w, workers)
                            .unwrap();
                        assert_eq!(c.world_size, world * workers);
                        Loader::open(&files, c).unwrap().share(position).addresses
                    })
                    .collect();
                // Taken in turn, a batch from each worker, as a DataLoader hands them out.
                let mut turns = Vec::new();
                for b in 0.. {
                    let Some(share) = shares.get(b % workers) else {
                        break;
                    };
                    let Some(run) = share.get(b / workers * batch..(b / workers + 1) * batch)
                    else {
                        break;
                    };
                    turns.extend_from_slice(run);
                }
                let step = batch * world * workers;
                let full = (101 - 8) / step * step / world;
                assert_eq!(turns.len(), full, "world {world} workers {workers}");
                assert_eq!(
                    turns,
                    whole[..full],
                    "world {world} workers {workers} rank {rank}"
                );
            }
        }
    }
    let c = config(batch, 0, 1, true);
    assert!(c.in_worker(2, 2).is_err());
    assert!(c.in_worker(0, 0).is_err());
    assert_eq!(c.in_worker(0, 2).unwrap().jobs, Parallelism::Fixed(2));
}

#[test]
fn a_batch_count_is_the_position_the_batches_reached() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_shards(dir.path(), 101, 5);
    for (world, drop) in [(1, true), (2, true), (1, false), (2, false)] {
        let loader = Loader::open(&files, config(4, 0, world, drop)).unwrap();
        let start = Position {
            epoch: 2,
            offset: 8,
        };
        // Iterated here: the position after n batches is the epoch's own.
        let mut epoch = loader.epoch(start);
        let mut n = 0;
        loop {
            let here = epoch.position();
            assert_eq!(
                loader.position_after(start, n, 0).unwrap(),
                here,
                "{world} {drop} {n}"
            );
            if epoch.next_batch().is_none() {
                break;
            }
            n += 1;
        }
        assert_eq!(
            loader.position_after(start, n, 0).unwrap(),
            Position {
                epoch: 3,
                offset: 0
            }
        );
        // Two workers: steps of world × 2 × 4 records, then the epoch's end.
        let whole = (101 - 8) / (world as u64 * 8) * 2;
        assert_eq!(
            loader.position_after(start, 6, 2).unwrap().offset,
            8 + 6 * world as u64 * 4
        );
        assert!(loader.position_after(start, 5, 2).is_err(), "inside a step");
        let all = whole + u64::from(!drop && (101 - 8) % (world as u64 * 8) > 0) * 2;
        assert_eq!(loader.position_after(start, all, 2).unwrap().epoch, 3);
        assert!(loader.position_after(start, all + 1, 2).is_err());
        if all > whole {
            assert!(loader.position_after(start, whole + 1, 2).is_err());
        }
    }
}
