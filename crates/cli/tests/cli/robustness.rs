//! `shard` killed with SIGKILL at moments spread over its run never leaves a `.tfrec` that
//! `shardfeed inspect` finds damaged or whose record count differs from its name; a rerun
//! with `--overwrite` completes. `shard` onto a full disk (a small tmpfs, mounted when the
//! test runs as root; otherwise the test says loudly that it skipped) fails with a clear error
//! naming the path and leaves no shard behind. A FIFO and a symlink to `/dev/zero` among the
//! sources are skipped and named, and the run ends.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shardfeed_dataset::synthetic::{GenData, generate};

/// A generated labelled folder of `n` images (sides in `sides`), for `seed`: its `train/`.
fn sources(dir: &Path, n: usize, seed: u64, sides: (u32, u32)) -> std::path::PathBuf {
    let config = GenData {
        n_train: n,
        n_test: 0,
        seed,
        sides,
        ..GenData::default()
    };
    generate(dir, &config).unwrap();
    dir.join("train")
}

/// `shardfeed shard INPUT --out OUT` at one job and 160 px into 8 shards (a run long enough
/// for a signal or a second writer to land mid-run) with `extra` flags; stderr piped.
fn slow_shard(input: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut command = shardfeed();
    command
        .arg("shard")
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(["--shards", "8", "--jobs", "1"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

fn shardfeed() -> Command {
    Command::new(crate::common::shardfeed_bin())
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
    let input = sources(dir.path(), 240, 11, (120, 260));

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

#[test]
fn shard_interrupted_by_sigint_or_sigterm_says_so_and_removes_what_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let input = sources(dir.path(), 400, 12, (200, 320));
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let out = dir.path().join(format!("shards-{signal}"));
        let child = slow_shard(&input, &out, &[]).spawn().unwrap();
        // Wait until the first shard is finished, so the run has something to remove.
        let started = Instant::now();
        while intact_names(&out).is_empty() && started.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(20));
        }
        unsafe { libc::kill(child.id() as i32, signal) };
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(130), "signal {signal}: {stderr}");
        assert!(
            stderr.contains("shardfeed: interrupted: removed what this run wrote"),
            "signal {signal}: {stderr}"
        );
        let left: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "signal {signal} left {left:?}");
    }
}

/// The names of the finished shards in `dir` (none while it does not exist).
fn intact_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".tfrec") && !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// A tmpfs mounted for the test, unmounted on drop (even when the test fails).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `"768k"`) at `at`; `Err` says why not.
    fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not running as root".to_owned());
        }
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn shard_onto_a_full_disk_fails_naming_the_path_and_leaves_no_shard() {
    let dir = tempfile::tempdir().unwrap();
    let config = GenData {
        n_train: 160,
        n_test: 0,
        seed: 12,
        sides: (120, 200),
        ..GenData::default()
    };
    generate(dir.path(), &config).unwrap();
    let disk = dir.path().join("disk");
    // 160 records of 64 px at quality 95 take ~500 KB: the run fills 256 KiB part way.
    let mounted = match Tmpfs::mount(&disk, "256k") {
        Ok(mounted) => mounted,
        Err(why) => {
            eprintln!(
                "\n*** SKIPPED shard_onto_a_full_disk_fails_naming_the_path_and_leaves_no_shard: \
                 {why}; it needs root to mount a small tmpfs (CI runs it as root) ***\n"
            );
            return;
        }
    };
    let out = disk.join("shards");
    let output = shardfeed()
        .arg("shard")
        .arg(dir.path().join("train"))
        .arg("--out")
        .arg(&out)
        .args(["--shards", "4", "--size", "64", "--quiet"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.matches("No space left on device").count(),
        1,
        "said once: {stderr}"
    );
    assert!(
        stderr.contains(out.to_str().unwrap()),
        "the error names the path: {stderr}"
    );
    let left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.is_empty(), "a failed run leaves nothing: {left:?}");
    // With room, the same command completes.
    drop(mounted);
    assert!(
        shard_command(&dir.path().join("train"), &out, true)
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(intact_shards(&out), 160);
}

/// Special files among the sources: a symlink to `/dev/zero` (size 0, endless) and a FIFO
/// (opening it would wait for a writer) are skipped and named by kind, and the run ends.
#[test]
fn shard_skips_and_names_a_dev_zero_symlink_and_a_fifo_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    generate(
        dir.path(),
        &GenData {
            n_train: 6,
            n_test: 0,
            ..GenData::default()
        },
    )
    .unwrap();
    let train = dir.path().join("train");
    std::os::unix::fs::symlink("/dev/zero", train.join("cat.zero.jpg")).unwrap();
    let fifo = std::ffi::CString::new(
        train
            .join("dog.fifo.jpg")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let out = dir.path().join("shards");
    let mut child = shard_command(&train, &out, false).spawn().unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("shard still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["records"], 6);
    let skipped: Vec<(String, String)> = manifest["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let file = s["file"].as_str().unwrap();
            let name = Path::new(file)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, s["reason"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(
        skipped,
        [
            (
                "cat.zero.jpg".to_owned(),
                "not a regular file (a character device)".to_owned()
            ),
            (
                "dog.fifo.jpg".to_owned(),
                "not a regular file (a FIFO)".to_owned()
            ),
        ]
    );
}

/// The files directly in `dir`, with their bytes, by name (folders listed by name only).
fn snapshot(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            let bytes = if e.file_type().unwrap().is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                b"<folder>".to_vec()
            };
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect()
}

/// Waits until `ready` holds (30 s at most).
fn wait_for(mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Two writers of one folder: the second `shard` (even with `--overwrite`) is refused at
/// once naming the first's process, and the first's SIGINT mid-overwrite leaves the old set
/// byte for byte; a worker index run twice at once is refused the same way while the other
/// worker runs beside it.
#[test]
fn a_second_writer_is_refused_and_an_interrupted_overwrite_keeps_the_old_set() {
    let dir = tempfile::tempdir().unwrap();
    let input = sources(dir.path(), 400, 13, (200, 320));
    let out = dir.path().join("out");
    let status = shard_command(&input, &out, false).status().unwrap();
    assert!(status.success());
    std::fs::write(out.join("notes.txt"), b"mine").unwrap();
    let before = snapshot(&out);

    let overwrite = || slow_shard(&input, &out, &["--overwrite", "-q"]);
    let first = overwrite().spawn().unwrap();
    // Once the new set's first shard is staged, the first run is well under way.
    let staged = || {
        std::fs::read_dir(&out).unwrap().any(|e| {
            let e = e.unwrap();
            e.file_name()
                .to_string_lossy()
                .starts_with(".shardfeed-new-")
                && std::fs::read_dir(e.path()).is_ok_and(|mut d| {
                    d.any(|f| f.unwrap().file_name().to_string_lossy().ends_with(".tfrec"))
                })
        })
    };
    wait_for(staged);
    assert!(staged(), "the first run staged nothing in 30 s");
    let second = overwrite().output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(".shardfeed.lock: another shard run is writing there (held by process")
            && stderr.contains(&first.id().to_string()),
        "{stderr}"
    );
    unsafe { libc::kill(first.id() as i32, libc::SIGINT) };
    let output = first.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130));
    assert_eq!(
        snapshot(&out),
        before,
        "the old set, byte for byte, and nothing else"
    );
    let inspect = shardfeed().arg("inspect").arg(&out).output().unwrap();
    assert!(inspect.status.success(), "{inspect:?}");

    // Split runs: worker 0 twice at once, worker 1 beside them.
    let split = dir.path().join("split");
    let worker = |index: &str| {
        slow_shard(
            &input,
            &split,
            &["-q", "--num-workers", "2", "--worker-index", index],
        )
    };
    let first = worker("0").spawn().unwrap();
    let lock = split.join(".shardfeed-worker-000-of-002.lock");
    wait_for(|| std::fs::read_to_string(&lock).is_ok_and(|t| !t.is_empty()));
    let twice = worker("0").output().unwrap();
    let stderr = String::from_utf8_lossy(&twice.stderr);
    assert_eq!(twice.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(".shardfeed-worker-000-of-002.lock: another shard run is writing there"),
        "{stderr}"
    );
    let beside = worker("1").output().unwrap();
    assert!(beside.status.success(), "{beside:?}");
    assert!(first.wait_with_output().unwrap().status.success());
    let merge = shardfeed().arg("shard-merge").arg(&split).output().unwrap();
    assert!(merge.status.success(), "{merge:?}");
    let inspect = shardfeed().arg("inspect").arg(&split).output().unwrap();
    assert!(inspect.status.success(), "{inspect:?}");
}
