//! `shardfeed train`, `evaluate`, `predict` and `plot` on tiny generated sets: epochs run,
//! metrics and the model are saved, an interrupted run resumes to the uninterrupted run's
//! model, and the saved run is evaluated, applied and drawn.

use shardfeed_dataset::folder::Location;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::common::{probabilities, shardfeed, text};
use crate::generated::tiny_shards;
use shardfeed::train::{TrainEvent, TrainSettings, train};
use shardfeed_input_pipeline::Parallelism;

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `shardfeed train` for 2 epochs of batches of 8 with `extra` flags; asserts it succeeded.
fn train_two_epochs(shards: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train", path(shards), "--epochs", "2", "--batch", "8"];
    args.extend_from_slice(extra);
    args.extend(["--out", path(out)]);
    let output = shardfeed(&args);
    assert!(output.status.success(), "{}", text(&output));
    output
}

#[test]
fn training_writes_a_line_per_epoch_metrics_the_model_and_curves() {
    let dir = tempfile::tempdir().unwrap();
    let shards = tiny_shards(dir.path(), 64);
    let out = dir.path().join("run");
    let output = train_two_epochs(&shards, &out, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("Epoch 1/2 - ") && stdout.contains("Epoch 2/2 - "),
        "{stdout}"
    );
    assert!(stdout.contains(" - val_accuracy: "), "{stdout}");
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    for file in ["model.bpk", "model.json", "checkpoint/state.json"] {
        assert!(out.join(file).exists(), "{file}");
    }
    let curves = png_size(&out.join("curves.png"));
    assert!(curves.0 > 400 && curves.1 > 200, "{curves:?}");
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["classes"], serde_json::json!(["cat", "dog"]));
    assert_eq!(run["image_size"], 32);
    assert_eq!(run["epochs_done"], 2);
    assert_eq!(
        run["validation_files"].as_array().unwrap().len(),
        1,
        "floor(8 × 0.19) = 1 file"
    );

    // The run folder is not overwritten by accident: a folder holding any file a run writes
    // is refused, naming them, and left as it was; --overwrite replaces the run.
    let again = shardfeed(&["train", path(&shards), "--out", path(&out)]);
    assert!(!again.status.success());
    assert!(text(&again).contains("--resume"), "{}", text(&again));
    let partial = dir.path().join("partial");
    std::fs::create_dir(&partial).unwrap();
    std::fs::write(partial.join("metrics.csv"), "mine").unwrap();
    let refused = shardfeed(&["train", path(&shards), "--out", path(&partial)]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("already holds a run (metrics.csv): pass --resume to continue it, --overwrite to replace it"),
        "{}",
        text(&refused)
    );
    assert_eq!(
        std::fs::read_to_string(partial.join("metrics.csv")).unwrap(),
        "mine"
    );
    let replaced = shardfeed(&[
        "train",
        path(&shards),
        "--epochs",
        "1",
        "--batch",
        "8",
        "--overwrite",
        "--out",
        path(&out),
    ]);
    assert!(replaced.status.success(), "{}", text(&replaced));
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "one epoch's row: {csv}");
}

#[test]
fn a_run_without_validation_files_prints_and_records_no_validation_figures() {
    let dir = tempfile::tempdir().unwrap();
    let shards = tiny_shards(dir.path(), 32);
    let out = dir.path().join("run");
    let output = train_two_epochs(&shards, &out, &["--val-split", "0"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        text(&output).contains("validating on 0"),
        "{}",
        text(&output)
    );
    assert!(stdout.contains("Epoch 2/2 - "), "{stdout}");
    assert!(!stdout.contains("val_"), "{stdout}");
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    for line in csv.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 7, "{line}");
        assert_eq!((fields[3], fields[4]), ("", ""), "{line}");
        assert!(fields[1].parse::<f64>().unwrap() > 0.0, "{line}");
    }
    // The curves are drawn (training only), and `plot --curves` reads the file back.
    let curves = png_size(&out.join("curves.png"));
    assert!(curves.0 > 400 && curves.1 > 200, "{curves:?}");
    let evaluate = shardfeed(&["evaluate", "--model", path(&out)]);
    assert!(!evaluate.status.success());
    assert!(
        text(&evaluate).contains("no validation files"),
        "{}",
        text(&evaluate)
    );
}

/// A PNG's RGB bytes.
fn png_rgb(path: &Path) -> Vec<u8> {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buffer).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buffer.truncate(info.buffer_size());
    buffer
}

fn png_size(path: &Path) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let reader = decoder.read_info().unwrap();
    (reader.info().width, reader.info().height)
}

fn settings(shards: &Path, out: &Path, epochs: u64) -> TrainSettings {
    TrainSettings {
        shards: Location::local(shards.to_owned()),
        epochs,
        batch: 8,
        out: out.to_owned(),
        jobs: Parallelism::Fixed(2),
        ..TrainSettings::default()
    }
}

#[test]
fn an_interrupted_run_resumes_to_the_uninterrupted_runs_model() {
    let dir = tempfile::tempdir().unwrap();
    let shards = tiny_shards(dir.path(), 64);
    let straight = dir.path().join("straight");
    train(&settings(&shards, &straight, 3), |_| {}).unwrap();

    // Stop in the middle of epoch 2 (as Ctrl-C does), then resume to the end.
    let split = dir.path().join("split");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let interrupted = train(
        &TrainSettings {
            stop: Some(stop),
            ..settings(&shards, &split, 3)
        },
        |event| {
            if let TrainEvent::Step {
                epoch: 2, step: 3, ..
            } = event
            {
                flag.store(true, Ordering::SeqCst);
            }
        },
    )
    .unwrap();
    assert_eq!(interrupted.interrupted, Some((2, 3)));
    let mut resumed_at = None;
    let resumed = train(
        &TrainSettings {
            resume: true,
            ..settings(&shards, &split, 3)
        },
        |event| {
            if let TrainEvent::Start { epoch, step, .. } = event {
                resumed_at = Some((epoch, step));
            }
        },
    )
    .unwrap();
    assert_eq!(resumed_at, Some((2, 3)));
    assert_eq!(resumed.interrupted, None);
    assert_eq!(resumed.info.epochs_done, 3);

    let (a, b) = (probabilities(&straight), probabilities(&split));
    assert_eq!(
        a, b,
        "the resumed run's model differs from the uninterrupted run's"
    );
    let csv = |run: &Path| {
        std::fs::read_to_string(run.join("metrics.csv"))
            .unwrap()
            .lines()
            .map(|l| l.split(',').take(5).collect::<Vec<_>>().join(","))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        csv(&straight),
        csv(&split),
        "metrics.csv: losses and accuracies"
    );
}

/// `--device cuda` where it cannot run: a build without CUDA names the cargo feature; the
/// `--features cuda` build (`cargo xtask ci` runs this suite against it with `SHARDFEED_BIN`
/// and `SHARDFEED_EXPECT_CUDA=1`) on a machine without a GPU names what is missing. Either
/// way: one line, exit 1, no panic, and nothing written.
#[test]
fn device_cuda_fails_in_one_line_where_it_cannot_run() {
    let cuda_build = crate::common::is_cuda_build();
    if std::env::var_os("SHARDFEED_EXPECT_CUDA").is_some() {
        assert!(
            cuda_build,
            "SHARDFEED_EXPECT_CUDA is set but the binary under test is not a --features cuda build"
        );
    }
    if cuda_build && Path::new("/dev/nvidiactl").exists() {
        eprintln!(
            "SKIPPED: this machine has an NVIDIA GPU; `cargo xtask gpu-check` runs --device cuda there"
        );
        assert!(
            std::env::var_os("CI").is_none(),
            "CI machines have no GPU: the check must run"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shards = tiny_shards(dir.path(), 32);
    let run = dir.path().join("run");
    train(&settings(&shards, &run, 1), |_| {}).unwrap();
    let test = dir.path().join("test");
    let (out, csv) = (dir.path().join("cuda"), dir.path().join("p.csv"));
    let commands: [Vec<&str>; 3] = [
        vec![
            "train",
            path(&shards),
            "--batch",
            "8",
            "--device",
            "cuda",
            "--out",
            path(&out),
        ],
        vec!["evaluate", "--model", path(&run), "--device", "cuda"],
        vec![
            "predict",
            path(&test),
            "--model",
            path(&run),
            "--device",
            "cuda",
            "--out",
            path(&csv),
        ],
    ];
    for args in commands {
        let output = shardfeed(&args);
        let message = text(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {message}");
        assert_eq!(message.trim().lines().count(), 1, "{args:?}: {message}");
        assert!(message.starts_with("shardfeed: error: "), "{message}");
        assert!(!message.contains("panic"), "{message}");
        if cuda_build {
            // This machine has no NVIDIA driver: that is what the line must name.
            assert!(
                message.contains("CUDA is unavailable: no NVIDIA driver (libcuda.so.1"),
                "{message}"
            );
        } else {
            assert!(message.contains("--features cuda"), "{message}");
        }
        eprintln!("{}: {}", args[0], message.trim());
    }
    assert!(!out.exists(), "a failed cuda run leaves no run folder");
    assert!(!csv.exists(), "a failed cuda prediction leaves no CSV");
}

#[test]
fn evaluate_predict_and_plot_use_the_saved_run() {
    let dir = tempfile::tempdir().unwrap();
    let shards = tiny_shards(dir.path(), 64);
    let run = dir.path().join("run");
    train(&settings(&shards, &run, 1), |_| {}).unwrap();

    let output = shardfeed(&["evaluate", "--model", path(&run), "--json"]);
    assert!(output.status.success(), "{}", text(&output));
    let evaluation: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let confusion: Vec<Vec<u64>> = serde_json::from_value(evaluation["confusion"].clone()).unwrap();
    let images: u64 = confusion.iter().flatten().sum();
    // One validation file, every record (no dropped remainder).
    let run_info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(images, run_info["validation_records"].as_u64().unwrap());
    assert_eq!(evaluation["images"].as_u64().unwrap(), images);
    let correct = confusion[0][0] + confusion[1][1];
    let accuracy = evaluation["accuracy"].as_f64().unwrap();
    assert!((accuracy - correct as f64 / images as f64).abs() < 1e-12);
    let text_output = shardfeed(&["evaluate", "--model", path(&run)]);
    let printed = text(&text_output);
    assert!(
        printed.contains(&format!("accuracy: {:.2}%", accuracy * 100.0)),
        "{printed}"
    );
    assert!(printed.contains("confusion matrix"), "{printed}");

    // predict: every test image, plus a broken one that is skipped and reported.
    let test = dir.path().join("test");
    std::fs::write(test.join("broken.jpg"), b"not a jpeg").unwrap();
    let csv = dir.path().join("p.csv");
    let output = shardfeed(&[
        "predict",
        path(&test),
        "--model",
        path(&run),
        "--out",
        path(&csv),
        "--all-probs",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("skipped"), "{}", text(&output));
    let rows = std::fs::read_to_string(&csv).unwrap();
    let mut lines = rows.lines();
    assert_eq!(lines.next(), Some("file,label,probability,p0,p1"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 16, "the 16 good test images");
    for row in &rows {
        let fields: Vec<&str> = row.split(',').collect();
        let (p, p0, p1): (f64, f64, f64) = (
            fields[2].parse().unwrap(),
            fields[3].parse().unwrap(),
            fields[4].parse().unwrap(),
        );
        assert!((p0 + p1 - 1.0).abs() < 1e-5 && p >= 0.5, "{row}");
        assert_eq!(fields[1], if p1 > p0 { "dog" } else { "cat" }, "{row}");
    }
    let strict = shardfeed(&[
        "predict",
        path(&test),
        "--model",
        path(&run),
        "--out",
        path(&csv),
        "--strict",
    ]);
    assert!(!strict.status.success());
    assert!(text(&strict).contains("broken.jpg"), "{}", text(&strict));

    // plot: the validation grid (8 rows × 4 columns) and a test grid.
    let grid = dir.path().join("grid.png");
    let output = shardfeed(&["plot", "--model", path(&run), "--out", path(&grid)]);
    assert!(output.status.success(), "{}", text(&output));
    let (width, height) = png_size(&grid);
    assert!(height > width, "8 rows × 4 columns: {width}×{height}");
    // "N validation images, W misclassified (in red)": red title pixels exactly when W > 0.
    let said = text(&output);
    let wrong: usize = said
        .split(" misclassified")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no misclassified count in {said}"));
    let red = png_rgb(&grid)
        .chunks_exact(3)
        .filter(|p| *p == shardfeed::plot::RED)
        .count();
    assert_eq!(
        red > 0,
        wrong > 0,
        "{wrong} misclassified, {red} red pixels"
    );
    let test_grid = dir.path().join("test.png");
    let output = shardfeed(&[
        "plot",
        "--model",
        path(&run),
        "--test",
        path(&test),
        "--out",
        path(&test_grid),
    ]);
    assert!(output.status.success(), "{}", text(&output));
}

#[test]
fn shards_without_manifest_or_indexes_train_with_classes_named_by_index() {
    let dir = tempfile::tempdir().unwrap();
    let shards = tiny_shards(dir.path(), 64);
    for entry in std::fs::read_dir(&shards).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "idx" || e == "json") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let run = dir.path().join("run");
    let mut classes = None;
    train(&settings(&shards, &run, 1), |event| {
        if let TrainEvent::Start { info, .. } = event {
            classes = Some(info.classes.clone());
        }
    })
    .unwrap();
    assert_eq!(classes, Some(vec!["0".to_owned(), "1".to_owned()]));
    let named = dir.path().join("named");
    train(
        &TrainSettings {
            classes: Some(vec!["cat".into(), "dog".into()]),
            ..settings(&shards, &named, 1)
        },
        |_| {},
    )
    .unwrap();
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(named.join("model.json")).unwrap()).unwrap();
    assert_eq!(card["classes"], serde_json::json!(["cat", "dog"]));
}

#[cfg(unix)]
#[test]
fn ctrl_c_saves_a_checkpoint_and_resume_finishes_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let shards = tiny_shards(dir.path(), 64);
    let run = dir.path().join("run");
    let child = Command::new(crate::common::shardfeed_bin())
        .args(["train", path(&shards), "--batch", "8", "--epochs", "200"])
        .args(["--out", path(&run)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first epoch, then interrupt.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !run.join("checkpoint/state.json").exists() {
        assert!(std::time::Instant::now() < deadline, "no epoch in 120 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("checkpoint saved at epoch"), "{stderr}");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("checkpoint/state.json")).unwrap()).unwrap();
    let done = state["progress"]["epochs_done"].as_u64().unwrap();
    assert!(done < 200);
    let finish = (done + 1).to_string();
    let output = shardfeed(&[
        "train",
        path(&shards),
        "--out",
        path(&run),
        "--resume",
        "--epochs",
        &finish,
    ]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("resuming at epoch"),
        "{}",
        text(&output)
    );
    let run_info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(run_info["epochs_done"].as_u64(), Some(done + 1));
}
