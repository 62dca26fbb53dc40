//! `shardfeed shard` end to end: naming, counts, manifest, determinism over jobs, every kind
//! of bad input, strict mode, overwrite protection.

use shardfeed_dataset::folder::Location;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use shardfeed_dataset::Classes;
use shardfeed_dataset::synthetic::{GenData, draw, generate, source_jpeg};
use shardfeed_dataset::{ShardConfig, shard};
use shardfeed_image_prep::{ColorModel, DecodeOptions, Decoder};
use shardfeed_input_pipeline::Parallelism;
use shardfeed_record_format::{Compression, ImageExample, Index, ReaderOptions, RecordReader};
use turbojpeg::{Compressor, Image, PixelFormat, Subsamp};

fn small_data(dir: &Path, n: usize) -> PathBuf {
    let config = GenData {
        n_train: n,
        n_test: 0,
        seed: 5,
        sides: (40, 90),
        ..GenData::default()
    };
    generate(dir, &config).unwrap();
    dir.join("train")
}

fn config(input: &Path, out: &Path) -> ShardConfig {
    ShardConfig {
        input: Location::local(input),
        out: Location::local(out),
        shards: 4,
        size: 32,
        ..ShardConfig::default()
    }
}

fn shard_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tfrec"))
        .collect();
    names.sort();
    names
}

fn records(path: &Path, compression: Compression) -> Vec<ImageExample> {
    RecordReader::open(path, ReaderOptions::compression(compression))
        .unwrap()
        .map(|r| ImageExample::decode(&r.unwrap()).unwrap())
        .collect()
}

fn shardfeed(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(crate::common::shardfeed_bin())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn shards_are_named_counted_indexed_and_described() {
    let dir = tempfile::tempdir().unwrap();
    let input = small_data(dir.path(), 30);
    let out = dir.path().join("shards");
    let manifest = shard(
        &ShardConfig {
            prefix: "cat_dog".into(),
            ..config(&input, &out)
        },
        |_| {},
    )
    .unwrap();
    // ceil(30 / 4) = 8 per shard, the last holds the rest.
    assert_eq!(
        shard_files(&out),
        [
            "cat_dog00-8.tfrec",
            "cat_dog01-8.tfrec",
            "cat_dog02-8.tfrec",
            "cat_dog03-6.tfrec"
        ]
    );
    assert_eq!(manifest.records, 30);
    assert_eq!(manifest.classes, ["cat", "dog"]);
    assert_eq!(manifest.per_class, [15, 15]);
    let mut decoder = Decoder::new().unwrap();
    let mut per_class = [0u64; 2];
    for shard in &manifest.shards {
        let path = out.join(&shard.file);
        let index = Index::read(Index::path_for(&path)).unwrap();
        assert_eq!(index, Index::scan(&path, ReaderOptions::default()).unwrap());
        let records = records(&path, Compression::None);
        assert_eq!(records.len() as u64, shard.records);
        for record in records {
            let info = decoder.probe(&record.image).unwrap();
            assert_eq!(
                (info.width, info.height, info.color),
                (32, 32, ColorModel::Color)
            );
            per_class[record.class as usize] += 1;
        }
    }
    assert_eq!(per_class, [15, 15]);
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(written["records"], 30);
    assert_eq!(written["shards"][3]["file"], "cat_dog03-6.tfrec");
    assert_eq!(written["target_size"], 32);
    assert_eq!(written["seed"], 42);
    assert!(written["tool"].as_str().unwrap().starts_with("shardfeed "));
}

#[test]
fn every_record_carries_the_label_of_its_own_source_file() {
    // Each source is a flat colour of its own (red = 8·i + 4), so a record's pixels tell which
    // file it came from; labels follow no pattern a count could hide (cat, dog, dog, cat, …).
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("train");
    std::fs::create_dir_all(&input).unwrap();
    let labels: Vec<&str> = (0..29)
        .map(|i| {
            if (i * 7 + i / 3) % 3 == 0 {
                "dog"
            } else {
                "cat"
            }
        })
        .collect();
    for (i, label) in labels.iter().enumerate() {
        let (w, h) = (40 + (i as u32 % 5) * 6, 36 + (i as u32 % 3) * 10);
        let red = 8 * i as u8 + 4;
        let pixels = (0..w * h).flat_map(|_| [red, 128, 60]).collect();
        let image = shardfeed_image_prep::RgbImage::new(w, h, pixels).unwrap();
        let jpeg = source_jpeg(&image).unwrap();
        std::fs::write(input.join(format!("{label}.{i}.jpg")), jpeg).unwrap();
    }
    let out = dir.path().join("shards");
    let manifest = shard(
        &ShardConfig {
            input: Location::local(input),
            out: Location::local(out.clone()),
            shards: 4,
            size: 24,
            jobs: Parallelism::Fixed(2),
            ..ShardConfig::default()
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(manifest.classes, ["cat", "dog"]);
    let mut decoder = Decoder::new().unwrap();
    let mut seen = vec![0; labels.len()];
    for info in &manifest.shards {
        for record in records(&out.join(&info.file), Compression::None) {
            let image = decoder
                .decode(&record.image, &DecodeOptions::default(), None)
                .unwrap();
            let centre = (12 * 24 + 12) * 3;
            let file = ((f64::from(image.pixels[centre]) - 4.0) / 8.0).round() as usize;
            assert!(file < labels.len(), "red {}", image.pixels[centre]);
            let expected = manifest
                .classes
                .iter()
                .position(|c| c == labels[file])
                .unwrap();
            assert_eq!(
                record.class, expected as i64,
                "record from {}.{file}.jpg",
                labels[file]
            );
            seen[file] += 1;
        }
    }
    assert_eq!(seen, vec![1; labels.len()], "every file once");
}

#[test]
fn output_is_byte_identical_for_any_number_of_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let input = small_data(dir.path(), 25);
    let mut outputs = Vec::new();
    for jobs in [1, 2, 3] {
        let out = dir.path().join(format!("jobs{jobs}"));
        shard(
            &ShardConfig {
                jobs: Parallelism::Fixed(jobs),
                ..config(&input, &out)
            },
            |_| {},
        )
        .unwrap();
        let bytes: Vec<Vec<u8>> = shard_files(&out)
            .iter()
            .map(|f| std::fs::read(out.join(f)).unwrap())
            .collect();
        outputs.push((shard_files(&out), bytes));
    }
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0], outputs[2]);
    let other_seed = dir.path().join("seed7");
    shard(
        &ShardConfig {
            seed: 7,
            ..config(&input, &other_seed)
        },
        |_| {},
    )
    .unwrap();
    let first = std::fs::read(other_seed.join(&shard_files(&other_seed)[0])).unwrap();
    assert_ne!(first, outputs[0].1[0], "the seed decides the order");
}

fn encode(
    pixels: &[u8],
    width: usize,
    height: usize,
    format: PixelFormat,
    subsamp: Subsamp,
) -> Vec<u8> {
    let mut compressor = Compressor::new().unwrap();
    compressor.set_subsamp(subsamp).unwrap();
    let image = Image {
        pixels,
        width,
        pitch: width * format.size(),
        height,
        format,
    };
    compressor.compress_to_vec(image).unwrap()
}

/// A folder with one good image and every kind of bad or unusual file.
fn awkward_folder(dir: &Path) -> PathBuf {
    let input = dir.join("train");
    std::fs::create_dir_all(&input).unwrap();
    let config = GenData::default();
    let good = source_jpeg(&draw(&config, 0, 1, 0)).unwrap();
    let write = |name: &str, bytes: &[u8]| std::fs::write(input.join(name), bytes).unwrap();
    write("cat.good.jpg", &good);
    write("cat.zero.jpg", b"");
    write("cat.truncated.jpg", &good[..good.len() / 2]);
    write("cat.png.jpg", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x10");
    write(
        "dog.random.jpg",
        &(0..3000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect::<Vec<_>>(),
    );
    let cmyk: Vec<u8> = (0..50 * 40)
        .flat_map(|i| [255, (i % 256) as u8, 100, 255])
        .collect();
    write(
        "dog.cmyk.jpg",
        &encode(&cmyk, 50, 40, PixelFormat::CMYK, Subsamp::None),
    );
    let gray: Vec<u8> = (0..50 * 40).map(|i| (i % 256) as u8).collect();
    write(
        "dog.gray.JPEG",
        &encode(&gray, 50, 40, PixelFormat::GRAY, Subsamp::Gray),
    );
    write(
        "cat.tiny.jpg",
        &encode(&[200, 10, 10], 1, 1, PixelFormat::RGB, Subsamp::None),
    );
    let mut huge = encode(&[0; 16 * 16 * 3], 16, 16, PixelFormat::RGB, Subsamp::Sub2x2);
    let sof = huge.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
    huge[sof + 5..sof + 9].copy_from_slice(&[0x4e, 0x20, 0x4e, 0x20]); // 20000 × 20000
    write("dog.huge.jpg", &huge);
    std::os::unix::fs::symlink(dir.join("nowhere.jpg"), input.join("cat.unreadable.jpg")).unwrap();
    write("nolabel.jpg", &good);
    write("bird.1.jpg", &good);
    write("notes.txt", b"not an image");
    input
}

#[test]
fn every_bad_input_is_skipped_with_its_reason_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let input = awkward_folder(dir.path());
    let out = dir.path().join("shards");
    let classes = Some(Classes::parse("cat,dog").unwrap());
    let manifest = shard(
        &ShardConfig {
            classes,
            shards: 2,
            ..config(&input, &out)
        },
        |_| {},
    )
    .unwrap();
    let reasons: Vec<(String, String)> = manifest
        .skipped
        .iter()
        .map(|s| {
            (
                s.file.file_name().unwrap().to_string_lossy().into_owned(),
                s.reason.clone(),
            )
        })
        .collect();
    let expect = [
        (
            "bird.1.jpg",
            r#"label not in the class list: "bird" is not one of "#,
        ),
        ("cat.png.jpg", "not a JPEG file (a PNG image)"),
        ("cat.truncated.jpg", "invalid JPEG: "),
        ("cat.unreadable.jpg", "cannot read: "),
        ("cat.zero.jpg", "not a JPEG file (empty file)"),
        (
            "dog.huge.jpg",
            "image of 20000×20000 pixels exceeds the limit of 100000000 pixels",
        ),
        (
            "dog.random.jpg",
            "not a JPEG file (no JPEG start-of-image marker)",
        ),
        (
            "nolabel.jpg",
            "no label in file name: expected LABEL.ID.jpg",
        ),
    ];
    assert_eq!(reasons.len(), expect.len(), "{reasons:#?}");
    for ((file, reason), (want_file, want_reason)) in reasons.iter().zip(expect) {
        assert_eq!(file, want_file);
        assert!(reason.starts_with(want_reason), "{file}: {reason}");
        assert!(
            !reason.contains(want_file),
            "the reason repeats the name: {reason}"
        );
    }
    // Accepted: the good one, CMYK, grayscale (.JPEG) and 1×1 (upscaled).
    assert_eq!(manifest.records, 4);
    assert_eq!(manifest.per_class, [2, 2]);
    assert_eq!(manifest.ignored_non_jpeg, 1);
    assert_eq!(manifest.source_count, 12);
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(written["skipped"].as_array().unwrap().len(), 8);
}

#[test]
fn strict_mode_stops_at_the_first_bad_file_and_leaves_no_shard() {
    let dir = tempfile::tempdir().unwrap();
    let input = awkward_folder(dir.path());
    std::fs::remove_file(input.join("nolabel.jpg")).unwrap();
    std::fs::remove_file(input.join("bird.1.jpg")).unwrap();
    let out = dir.path().join("shards");
    let error = shard(
        &ShardConfig {
            strict: true,
            shards: 1,
            ..config(&input, &out)
        },
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains(".jpg: "), "{error}");
    let left: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");

    let output = shardfeed(&[
        "shard".as_ref(),
        "--strict".as_ref(),
        input.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("shardfeed: error: ") && stderr.contains("/train/"),
        "{stderr}"
    );
}

#[test]
fn missing_or_empty_folders_and_a_second_run_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("shards");
    let missing = dir.path().join("missing");
    let error = shard(&config(&missing, &out), |_| {}).unwrap_err();
    assert!(
        format!("{error:#}").starts_with(&format!("cannot read the folder {}", missing.display())),
        "{error:#}"
    );
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let error = shard(&config(&empty, &out), |_| {})
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        format!(
            "no .jpg or .jpeg files (nor .png, .webp, .bmp, .gif, .tif) in {}",
            empty.display()
        )
    );

    let input = small_data(dir.path(), 6);
    shard(&config(&input, &out), |_| {}).unwrap();
    let error = shard(&config(&input, &out), |_| {}).unwrap_err();
    assert!(
        matches!(&error, shardfeed_dataset::Error::OutputNotEmpty(dir) if dir == &out),
        "{error}"
    );
    // The library names the folder, never a flag; the command adds the flag that fixes it.
    assert!(!error.to_string().contains("--"), "{error}");
    let output = Command::new(crate::common::shardfeed_bin())
        .arg("shard")
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is not empty: pass --overwrite"),
        "{stderr}"
    );
    shard(
        &ShardConfig {
            overwrite: true,
            shards: 2,
            ..config(&input, &out)
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(
        shard_files(&out),
        ["data00-3.tfrec", "data01-3.tfrec"],
        "old shards replaced"
    );
}

#[test]
fn compressed_shards_read_back_and_inspect_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let input = small_data(dir.path(), 10);
    for compression in [Compression::Gzip, Compression::Zlib] {
        let out = dir.path().join(compression.to_string());
        shard(
            &ShardConfig {
                compression,
                shards: 2,
                ..config(&input, &out)
            },
            |_| {},
        )
        .unwrap();
        let total: usize = shard_files(&out)
            .iter()
            .map(|f| records(&out.join(f), compression).len())
            .sum();
        assert_eq!(total, 10);
        let output = shardfeed(&[
            "inspect".as_ref(),
            "--compression".as_ref(),
            compression.to_string().as_ref(),
            out.as_os_str(),
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
}

#[test]
fn fast_decode_is_recorded_in_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let input = small_data(dir.path(), 4);
    let out = dir.path().join("shards");
    let decode = DecodeOptions {
        dct_scaling: true,
        ..DecodeOptions::default()
    };
    let manifest = shard(
        &ShardConfig {
            decode,
            ..config(&input, &out)
        },
        |_| {},
    )
    .unwrap();
    assert!(manifest.fast_decode);
    assert_eq!(manifest.records, 4);
}

/// `shard --num-workers` as Kubernetes and Slurm run it (the index from their environment),
/// then `shard-merge`: the one-machine run's bytes, and a folder `inspect` calls whole.
#[test]
fn workers_from_the_scheduler_environment_merge_into_the_one_machine_set() {
    let dir = tempfile::tempdir().unwrap();
    let input = small_data(dir.path(), 20);
    let run = |out: &Path, extra: &[&str], env: &[(&str, String)]| {
        let mut command = Command::new(crate::common::shardfeed_bin());
        command
            .arg("shard")
            .arg(&input)
            .arg("--out")
            .arg(out)
            .args(["--shards", "5", "--size", "32", "--quiet"])
            .args(extra)
            .env_remove("JOB_COMPLETION_INDEX")
            .env_remove("SLURM_ARRAY_TASK_ID")
            .env_remove("SLURM_ARRAY_TASK_MIN")
            .env_remove("SLURM_ARRAY_TASK_COUNT");
        for (name, value) in env {
            command.env(name, value);
        }
        command.output().unwrap()
    };
    let whole = dir.path().join("whole");
    assert!(run(&whole, &[], &[]).status.success());
    let bytes = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".tfrec"))
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    };

    let k8s = dir.path().join("k8s");
    for index in 0..2 {
        let output = run(
            &k8s,
            &["--num-workers", "2"],
            &[("JOB_COMPLETION_INDEX", index.to_string())],
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!("worker {index} of 2 (from JOB_COMPLETION_INDEX)")),
            "{stderr}"
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("run: shardfeed shard-merge"), "{stdout}");
    }
    let slurm = dir.path().join("slurm");
    for id in 1..=3 {
        let env = [
            ("SLURM_ARRAY_TASK_ID", id.to_string()),
            ("SLURM_ARRAY_TASK_MIN", "1".to_owned()),
            ("SLURM_ARRAY_TASK_COUNT", "3".to_owned()),
        ];
        let output = run(&slurm, &[], &env);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Before the merge a reader hears that the set is not whole.
    let inspect = shardfeed(&["inspect".as_ref(), slurm.as_os_str()]);
    let stderr = String::from_utf8_lossy(&inspect.stderr);
    assert!(stderr.contains("not merged yet"), "{stderr}");
    for out in [&k8s, &slurm] {
        let output = shardfeed(&["shard-merge".as_ref(), out.as_os_str()]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains("merged 5 shards") && stdout.contains("20 images"),
            "{stdout}"
        );
        assert!(
            bytes(out) == bytes(&whole),
            "{}: shards differ from the one-machine run",
            out.display()
        );
        let inspect = shardfeed(&["inspect".as_ref(), out.as_os_str()]);
        assert!(inspect.status.success());
        assert!(!String::from_utf8_lossy(&inspect.stderr).contains("warning"));
    }

    // Mistakes: an Indexed Job without the count, an index out of range, nothing to merge.
    let output = run(
        &dir.path().join("x"),
        &[],
        &[("JOB_COMPLETION_INDEX", "0".to_owned())],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("JOB_COMPLETION_INDEX is set"), "{stderr}");
    let output = run(
        &dir.path().join("x"),
        &["--num-workers", "2", "--worker-index", "2"],
        &[],
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("not below the number of workers 2"));
    let output = shardfeed(&["shard-merge".as_ref(), whole.as_os_str()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("no part manifests"), "{stderr}");
}
