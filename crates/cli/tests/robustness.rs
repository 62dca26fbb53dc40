//! `shard` killed with SIGKILL at moments spread over its run never leaves a `.tfrec` that
//! `shardfeed inspect` finds damaged or whose record count differs from its name; a rerun
//! with `--overwrite` completes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shardfeed::synthetic::{GenData, generate};

fn shardfeed() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shardfeed"))
}

fn shard_command(input: &Path, out: &Path, overwrite: bool) -> Command {
    let mut command = shardfeed();
    command
        .arg("shard")
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(["--shards", "8", "--size", "64", "--jobs", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if overwrite {
        command.arg("--overwrite");
    }
    command
}

/// The `.tfrec` files in `dir` and their record counts by `inspect --json`; checks each is
/// intact and holds the count its name announces.
fn intact_shards(dir: &Path) -> u64 {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "tfrec"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut total = 0;
    for file in files {
        let output = shardfeed()
            .arg("inspect")
            .arg("--json")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{} is damaged: {}",
            file.display(),
            String::from_utf8_lossy(&output.stdout)
        );
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let records = report[0]["records"].as_u64().unwrap();
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let announced: u64 = name.rsplit('-').next().unwrap().parse().unwrap();
        assert_eq!(records, announced, "{}: count in the name", file.display());
        total += records;
    }
    total
}

#[test]
fn shard_killed_at_any_moment_leaves_no_damaged_shard_and_reruns() {
    let dir = tempfile::tempdir().unwrap();
    let config = GenData {
        n_train: 240,
        n_test: 0,
        seed: 11,
        sides: (120, 260),
        ..GenData::default()
    };
    generate(dir.path(), &config).unwrap();
    let input = dir.path().join("train");

    // One complete run gives the time scale to spread the kills over.
    let reference = dir.path().join("reference");
    let started = Instant::now();
    assert!(
        shard_command(&input, &reference, false)
            .status()
            .unwrap()
            .success()
    );
    let full = started.elapsed();
    assert_eq!(intact_shards(&reference), 240);

    let out = dir.path().join("shards");
    for (run, fraction) in [0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95]
        .into_iter()
        .enumerate()
    {
        let mut child = shard_command(&input, &out, run > 0).spawn().unwrap();
        std::thread::sleep(full.mul_f64(fraction));
        let _ = child.kill(); // SIGKILL; the run may already have finished
        child.wait().unwrap();
        let records = intact_shards(&out);
        eprintln!("kill at {fraction} of {full:?}: {records} records in intact shards");
        assert!(records <= 240, "kill at {fraction}: {records} records");
    }
    assert!(
        shard_command(&input, &out, true)
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(
        intact_shards(&out),
        240,
        "the rerun with --overwrite completes"
    );
    // Each kill is prompt: the whole test stays well within CI's time.
    assert!(
        full < Duration::from_secs(60),
        "a 240-image shard run took {full:?}"
    );
}
