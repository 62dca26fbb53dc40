//! The newcomer's mistakes of issue 16, each as it was reported, through the binary: every
//! one now ends with a clear message and the right exit code.

use std::path::Path;
use std::process::Command;

/// Runs `shardfeed` in `dir`; (exit code, stdout, stderr).
fn run(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(crate::common::shardfeed_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A small generated set, sharded at 16 px into 8 shards: (data folder, shard folder).
fn small_set(dir: &Path) {
    let (code, _, err) = run(
        dir,
        &[
            "gen-data",
            "--out",
            "d",
            "--n-train",
            "64",
            "--n-test",
            "3",
            "--min-side",
            "40",
            "--max-side",
            "60",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = run(
        dir,
        &[
            "shard", "d/train", "--out", "s", "--size", "16", "--shards", "8",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("sharded 64 images into 8 shards in s "),
        "results on stdout: {out}"
    );
}

#[test]
fn a_resumed_run_keeps_its_own_epochs_and_its_paths_work_from_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    small_set(root);
    let (code, out, err) = run(
        root,
        &[
            "train", "s", "--epochs", "1", "--out", "r", "--batch", "8", "-q",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Epoch 1/1"), "epoch lines on stdout: {out}");
    assert!(out.contains("saved the model (2 classes, 16 px)"), "{out}");
    // --resume without --epochs: the run's own 1, nothing more to train.
    let (code, out, err) = run(root, &["train", "s", "--out", "r", "--resume", "-q"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("resuming with the run's own settings (epochs 1)"),
        "{err}"
    );
    assert!(
        !out.contains("Epoch 2/"),
        "trained past the run's epochs: {out}"
    );
    // --epochs overrides, and says so.
    let (code, out, err) = run(
        root,
        &[
            "train", "s", "--out", "r", "--resume", "--epochs", "2", "-q",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("except --epochs 2 (the run's: 1)"), "{err}");
    assert!(out.contains("Epoch 2/2"), "{out}");
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("r/run.json")).unwrap()).unwrap();
    assert!(
        Path::new(info["shards"].as_str().unwrap()).is_absolute(),
        "{info}"
    );
    // From another folder, the run's own paths are found.
    let elsewhere = root.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let (code, out, err) = run(&elsewhere, &["evaluate", "--model", "../r"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("accuracy: "), "{out}");
    // Moved shards: the error says which flag points at them.
    std::fs::rename(root.join("s"), root.join("moved")).unwrap();
    let (code, _, err) = run(root, &["evaluate", "--model", "r"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("pass --shards DIR"), "{err}");
    let (code, _, err) = run(root, &["evaluate", "--model", "r", "--shards", "moved"]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn inspect_and_stream_say_what_the_user_needs_to_know() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    small_set(root);
    // Class names from the manifest beside the shard, not 0:/1:.
    let shard = std::fs::read_dir(root.join("s"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "tfrec"))
        .unwrap();
    let (code, out, _) = run(root, &["inspect", shard.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    let classes = out.lines().find(|l| l.contains("classes")).unwrap();
    assert!(
        classes.contains("cat: ") && classes.contains("dog: "),
        "{classes}"
    );
    // A text file named .tfrec.
    std::fs::write(
        root.join("notes.tfrec"),
        "these are my notes, not records\n",
    )
    .unwrap();
    let (code, out, _) = run(root, &["inspect", "notes.tfrec"]);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("not a TFRecord file: it starts with text"),
        "{out}"
    );
    // Its content is not printed (the file may be a link to anything).
    assert!(!out.contains("my notes"), "{out}");
    // A --compression the manifest contradicts.
    let (code, _, err) = run(
        root,
        &["stream", "s", "--compression", "gzip", "--epochs", "1"],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("says the shards are none, not gzip: drop the compression asked for"),
        "{err}"
    );
    // Batches that straddle epochs are explained (64 records, batch 24).
    let (code, out, err) = run(root, &["stream", "s", "--batch", "24", "--epochs", "2"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("run across epoch boundaries"), "{out}");
    assert!(out.starts_with("64 records in 8 files, batch 24"), "{out}");
    // Shards without a manifest, and a temporary file left behind: a warning.
    std::fs::remove_file(root.join("s/manifest.json")).unwrap();
    std::fs::write(root.join("s/.data03.tfrec.tmp"), b"").unwrap();
    let (code, _, err) = run(root, &["stream", "s", "--epochs", "1"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("temporary file"), "{err}");
    assert!(err.contains("has shards but no manifest.json"), "{err}");
}

#[test]
fn runs_that_make_nothing_fail_and_skips_are_summed_up_by_kind() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    small_set(root);
    // 32 unlabelled files among labelled ones: one short line per kind.
    let mixed = root.join("mixed");
    std::fs::create_dir(&mixed).unwrap();
    for entry in std::fs::read_dir(root.join("d/train")).unwrap().take(8) {
        let path = entry.unwrap().path();
        std::fs::copy(&path, mixed.join(path.file_name().unwrap())).unwrap();
    }
    let test_image = std::fs::read(root.join("d/test/0.jpg")).unwrap();
    for i in 0..32 {
        std::fs::write(mixed.join(format!("{i}.jpg")), &test_image).unwrap();
    }
    let (code, out, err) = run(
        root,
        &[
            "shard", "mixed", "--out", "m", "--size", "16", "--shards", "2",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let line = out.lines().find(|l| l.starts_with("skipped")).unwrap();
    assert!(
        line.contains("32 × no label in file name (e.g. mixed/0.jpg)"),
        "{line}"
    );
    assert!(line.len() < 200, "{line}");
    // Nothing to predict: an error, not "predicted 0 images".
    let broken = root.join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(broken.join("x.jpg"), "no").unwrap();
    let (code, _, err) = run(
        root,
        &[
            "train", "s", "--epochs", "1", "--out", "r", "--batch", "8", "-q",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = run(
        root,
        &["predict", "broken", "--model", "r", "--out", "p.csv"],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("no image could be classified: 1 skipped"),
        "{err}"
    );
    assert!(!root.join("p.csv").exists());
}

/// `shard DATA --out s3://bucket/x` used to exit 0 and write a local folder named `s3:`: a
/// path argument that cannot be in object storage, or a URL of a scheme it does not speak, is
/// refused at parse time (exit 2, one line), and `file://` works.
#[test]
fn urls_are_refused_everywhere_a_path_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    // Where object storage is not taken (run folders, predictions, plots, generated data), and
    // schemes object storage does not speak where it is.
    let cases: &[(&[&str], &str)] = &[
        (
            &["train", "shards", "--out", "s3://b/run"],
            "a local path is needed here",
        ),
        (
            &["evaluate", "--model", "s3://b/run"],
            "a local path is needed here",
        ),
        (
            &["predict", "d/test", "--model", "gs://b/run"],
            "a local path is needed here",
        ),
        (
            &["plot", "--model", "runs/x", "--out", "s3://b/grid.png"],
            "a local path is needed here",
        ),
        (
            &["gen-data", "--out", "s3://b/data"],
            "a local path is needed here",
        ),
        (
            &["shard", "d/train", "--out", "ftp://host/x"],
            "the scheme ftp:// is not supported",
        ),
        (
            &["stream", "hdfs://n/shards"],
            "the scheme hdfs:// is not supported",
        ),
        (
            &["inspect", "sftp://h/a.tfrec"],
            "the scheme sftp:// is not supported",
        ),
    ];
    for (args, says) in cases {
        let (code, out, err) = run(dir.path(), args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}");
        assert!(err.contains(says), "{args:?}: {err}");
        let errors = err
            .lines()
            .filter(|l| l.starts_with("shardfeed: error:"))
            .count();
        assert_eq!(errors, 1, "{args:?}: {err}");
    }
    for name in ["s3:", "gs:", "ftp:", "hdfs:", "sftp:"] {
        assert!(!dir.path().join(name).exists(), "{name} folder created");
    }
    small_set(dir.path());
    let url = format!("file://{}", dir.path().join("s").display());
    let (code, out, err) = run(dir.path(), &["inspect", &url]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("8 files: 8 intact"), "{out}");
}

/// A file named with terminal escapes (set the window title, ring the bell, return the
/// cursor) is printed with them escaped, in an error and in a skip line: the terminal shows
/// the name, it does not obey it.
#[test]
fn names_with_terminal_escapes_are_printed_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = "x\u{1b}]0;pwned\u{7}\r.jpg";
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in").join(hostile), b"not a jpeg").unwrap();
    let (code, out, err) = run(dir.path(), &["inspect", &format!("in/{hostile}")]);
    assert_ne!(code, Some(0));
    let (_, _, skip) = run(dir.path(), &["predict", "--model", "nowhere", "in"]);
    for text in [&out, &err, &skip] {
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}') && !text.contains('\r'),
            "{text:?}"
        );
    }
    assert!(out.contains(r"in/x\u{1b}]0;pwned\u{7}\u{d}.jpg"), "{out}");
}

/// `--prefix` is a plain file-name prefix: a path in it would write outside `--out` (exit 2,
/// nothing written).
#[test]
fn a_prefix_with_a_path_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    let (code, _, err) = run(
        dir.path(),
        &["shard", "in", "--out", "o", "--prefix", "../x"],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("path separator") && err.contains("plain file-name prefix"),
        "{err}"
    );
    assert!(!dir.path().join("o").exists());
}

/// A stray shard and a missing one, through every reader of the CLI: `stream` and `train`
/// refuse naming the file (exit 1), `inspect` reads the files as they are and warns, and
/// `--ignore-manifest` reads them as they are; `evaluate` refuses a validation file that is
/// gone, naming it.
#[test]
fn every_reader_checks_the_folder_against_its_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    small_set(root);
    let (code, _, err) = run(
        root,
        &[
            "train", "s", "--epochs", "1", "--batch", "8", "--out", "run",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let first = std::fs::read_dir(root.join("s"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tfrec"))
        .min()
        .unwrap();
    std::fs::copy(root.join("s").join(&first), root.join("s/stray00-8.tfrec")).unwrap();
    for args in [
        &["stream", "s", "--epochs", "1"][..],
        &["train", "s", "--epochs", "1", "--out", "run2"][..],
    ] {
        let (code, _, err) = run(root, args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(
            err.contains(
                "s does not match its manifest.json: stray00-8.tfrec is not listed in manifest.json"
            ),
            "{args:?}: {err}"
        );
    }
    let (code, out, err) = run(root, &["inspect", "s"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("warning: s does not match its manifest.json: stray00-8.tfrec"),
        "{err}"
    );
    assert!(out.contains("9 files: 9 intact, 0 damaged"), "{out}");
    let (code, _, err) = run(root, &["stream", "s", "--epochs", "1", "--ignore-manifest"]);
    assert_eq!(code, Some(0), "{err}");
    std::fs::remove_file(root.join("s/stray00-8.tfrec")).unwrap();
    // A validation file gone (the run's own record of its files names it).
    let run_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("run/run.json")).unwrap()).unwrap();
    let validation = run_json["validation_files"][0].as_str().unwrap().to_owned();
    std::fs::remove_file(&validation).unwrap();
    let (code, _, err) = run(root, &["stream", "s", "--epochs", "1"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("is listed in manifest.json but not in the folder"),
        "{err}"
    );
    let (code, _, err) = run(root, &["evaluate", "--model", "run"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("{validation} is not there")), "{err}");
}
