//! Every numeric and enum flag of every subcommand against its stated range, and every
//! subcommand against bad inputs: a value out of range is a usage error (exit 2) and a value
//! at either bound is accepted; a bad input is an error (exit 1); either way the output has
//! exactly one `shardfeed: error:` line and never a panic's text.

use std::path::Path;
use std::process::Command;

/// Runs `shardfeed` in `dir`; (exit code, stdout + stderr).
fn run(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(crate::common::shardfeed_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

/// One error line, no panic.
fn check_one_error_line(what: &str, text: &str) {
    let errors = text
        .lines()
        .filter(|l| l.starts_with("shardfeed: error:"))
        .count();
    assert_eq!(errors, 1, "{what}: {text}");
    assert!(!text.contains("panicked"), "{what}: {text}");
}

/// (subcommand and the arguments before the flag, flag, values out of range, values at the
/// bounds).
type Case = (
    &'static [&'static str],
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);

/// Inputs do not exist, so an accepted value fails later, with exit 1.
const TABLE: &[Case] = &[
    (
        &["shard", "nope", "--out", "o"],
        "--shards",
        &["0", "10001", "-1", "x"],
        &["1", "10000"],
    ),
    (
        &["shard", "nope", "--out", "o"],
        "--size",
        &["0", "7", "4097", "100000"],
        &["8", "4096"],
    ),
    (
        &["shard", "nope", "--out", "o"],
        "--quality",
        &["0", "101"],
        &["1", "100"],
    ),
    (
        &["shard", "nope", "--out", "o"],
        "--jobs",
        &["0", "1025"],
        &["1", "1024"],
    ),
    (
        &["shard", "nope", "--out", "o"],
        "--max-pixels",
        &["0", "1000000001"],
        &["1", "1000000000"],
    ),
    (
        &["shard", "nope", "--out", "o"],
        "--compression",
        &["zip", "GZIP2"],
        &["none", "gzip", "zlib"],
    ),
    (
        &["stream", "nope"],
        "--epochs",
        &["0", "1000001"],
        &["1", "1000000"],
    ),
    (
        &["stream", "nope"],
        "--batch",
        &["0", "65537"],
        &["1", "65536"],
    ),
    (
        &["stream", "nope"],
        "--cache-budget-mib",
        &["-1", "16777217"],
        &["0", "16777216"],
    ),
    (
        &["stream", "nope"],
        "--jobs",
        &["0", "1025"],
        &["1", "1024"],
    ),
    (
        &["stream", "nope"],
        "--crop",
        &["square", "Random2"],
        &["random", "center"],
    ),
    (
        &["stream", "nope", "--crop", "random"],
        "--flip",
        &["-0.1", "1.5", "nan", "x"],
        &["0", "1"],
    ),
    (
        &["train", "nope", "--out", "r"],
        "--epochs",
        &["0", "100001"],
        &["1", "100000"],
    ),
    (
        &["train", "nope", "--out", "r"],
        "--batch",
        &["0", "65537"],
        &["1", "65536"],
    ),
    (
        &["train", "nope", "--out", "r"],
        "--val-split",
        &["-0.5", "1", "1.5", "nan", "inf", "x"],
        &["0", "0.99"],
    ),
    (
        &["train", "nope", "--out", "r"],
        "--lr",
        &["0", "-1", "10.5", "inf", "nan"],
        &["1e-9", "10"],
    ),
    (
        &["train", "nope", "--out", "r"],
        "--jobs",
        &["0", "1025"],
        &["1", "1024"],
    ),
    (
        &["train", "nope", "--out", "r"],
        "--device",
        &["tpu"],
        &["cpu"],
    ),
    (
        &["evaluate", "--model", "nope"],
        "--batch",
        &["0", "65537"],
        &["1", "65536"],
    ),
    (
        &["evaluate", "--model", "nope"],
        "--jobs",
        &["0", "1025"],
        &["1", "1024"],
    ),
    (
        &["predict", "nope", "--model", "nope"],
        "--batch",
        &["0", "65537"],
        &["1", "65536"],
    ),
    (
        &["predict", "nope", "--model", "nope"],
        "--jobs",
        &["0"],
        &["1"],
    ),
    (
        &[
            "gen-data",
            "--out",
            "g",
            "--n-test",
            "0",
            "--min-side",
            "8",
            "--max-side",
            "8",
        ],
        "--n-train",
        &["0", "10000001"],
        &["1"],
    ),
    (
        &["gen-data", "--out", "g", "--n-train", "1"],
        "--n-test",
        &["-1", "10000001"],
        &["0"],
    ),
    (
        &[
            "gen-data",
            "--out",
            "g",
            "--n-train",
            "1",
            "--n-test",
            "0",
            "--max-side",
            "9",
        ],
        "--min-side",
        &["0", "4097"],
        &["1", "9"],
    ),
    (
        &["gen-data", "--out", "g", "--n-train", "1", "--n-test", "0"],
        "--max-side",
        &["0", "4097"],
        &["4096"],
    ),
    (
        &["inspect", "nope.tfrec"],
        "--compression",
        &["bz2"],
        &["gzip"],
    ),
];

#[test]
fn every_flag_is_checked_against_its_stated_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases = 0;
    for (command, flag, bad, good) in TABLE {
        let help = run(dir.path(), &[command[0], "--help"]).1;
        assert!(help.contains(flag), "{} --help lacks {flag}", command[0]);
        for value in *bad {
            let mut args = command.to_vec();
            args.extend([*flag, *value]);
            let (code, text) = run(dir.path(), &args);
            assert_eq!(code, Some(2), "{args:?}: {text}");
            check_one_error_line(&format!("{args:?}"), &text);
            cases += 1;
        }
        for value in *good {
            let mut args = command.to_vec();
            args.extend([*flag, *value]);
            let (code, text) = run(dir.path(), &args);
            assert_ne!(code, Some(2), "{args:?} was refused: {text}");
            assert!(!text.contains("panicked"), "{args:?}: {text}");
            cases += 1;
        }
    }
    eprintln!("{cases} flag cases");
    assert!(cases > 100, "{cases}");
}

#[test]
fn every_subcommand_fails_cleanly_on_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let empty = root.join("empty");
    std::fs::create_dir(&empty).unwrap();
    // Files that are not what their names say.
    let junk = root.join("junk");
    std::fs::create_dir(&junk).unwrap();
    for name in ["cat.1.jpg", "dog.2.jpg"] {
        std::fs::write(junk.join(name), "not a picture\n").unwrap();
    }
    let fake_shards = root.join("fake-shards");
    std::fs::create_dir(&fake_shards).unwrap();
    std::fs::write(fake_shards.join("data00-1.tfrec"), "hello, this is text\n").unwrap();
    let cases: &[&[&str]] = &[
        &["shard", "missing", "--out", "o1"],
        &["shard", "empty", "--out", "o2"],
        &["shard", "junk", "--out", "o3"],
        &["stream", "missing"],
        &["stream", "empty"],
        &["stream", "fake-shards"],
        &["train", "empty", "--out", "r1"],
        &["train", "fake-shards", "--out", "r2"],
        &["evaluate", "--model", "empty"],
        &["predict", "junk", "--model", "empty"],
        &["plot", "--model", "empty"],
        &["inspect", "missing.tfrec"],
        &["gen-data", "--out", "g", "--classes", ""],
        &["gen-data", "--out", "g", "--classes", "a.b"],
        &[
            "gen-data",
            "--out",
            "g",
            "--min-side",
            "300",
            "--max-side",
            "200",
        ],
    ];
    for args in cases {
        let (code, text) = run(root, args);
        assert_eq!(code, Some(1), "{args:?}: {text}");
        check_one_error_line(&format!("{args:?}"), &text);
    }
    // `shard` of a folder where every file is unusable wrote nothing.
    assert!(!root.join("o3/manifest.json").exists());
    assert!(
        std::fs::read_dir(root.join("o3"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
    );
    // `gen-data --classes ""` wrote no hidden files.
    assert!(!root.join("g/train/.0.jpg").exists());
}
