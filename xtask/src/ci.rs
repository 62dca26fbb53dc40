//! `cargo xtask ci`: everything CI runs, cheapest first, stopping at the first failure:
//! fmt, tidy, clippy, the local S3 server (moto), tests, the Python package (wheel, fresh
//! venv, pytest), the linked `--features cuda` build (profile `cuda-ci`) and the CLI suite run
//! against it (no GPU here: every CPU path, and `--device cuda`'s one-line error), TensorFlow
//! interop.

use std::time::Instant;

use crate::util::{self, cargo};

/// Flags of `cargo xtask ci`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also run slow and `#[ignore]`d tests.
    #[arg(long)]
    full: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let tensorflow = util::tensorflow_python();

    step("fmt", || {
        util::run(cargo().args(["fmt", "--all", "--check"]))
    })?;
    step("tidy", crate::tidy::run)?;
    step("clippy", || {
        util::run(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    // The S3 API server the object-storage tests start (they fail under CI without it).
    let mut moto = None;
    step("s3 server (moto, PyPI)", || {
        moto = Some(crate::storage::moto_server()?);
        Ok(())
    })?;
    let moto = moto.expect("set by the step");
    step("test", || {
        let mut test = cargo();
        test.args(["test", "--workspace", "--locked"])
            .env("SHARDFEED_MOTO_SERVER", &moto);
        if args.full {
            test.args(["--", "--include-ignored"]);
            match &tensorflow {
                Ok(python) => {
                    test.env("SHARDFEED_TF_PYTHON", python);
                }
                // Reported by the interop step below.
                Err(_) => {
                    test.args(["--skip", "tensorflow"]);
                }
            }
        }
        util::run(&mut test)
    })?;
    step("python package", || crate::python::test(&tensorflow))?;
    // Links LLVM from PyPI (`cargo xtask cuda-setup`): no download at build time. The
    // `cuda-ci` profile (Cargo.toml) is the release build at the test build's optimisation.
    let mut cuda = None;
    step("cuda build (linked)", || {
        cuda = Some(crate::gpu::cuda_build("cuda-ci")?);
        Ok(())
    })?;
    let cuda = cuda.expect("set by the step");
    step("cuda binary without a GPU", || {
        // The CLI suite again, against the cuda binary: the CPU paths unchanged, and
        // `--device cuda` failing in one line that names the missing driver. The test binary
        // is the one the test step built (`cargo test --test cli` alone would resolve other
        // features and rebuild burn).
        let suite = cli_test_binary()?;
        let run = |args: &[&str]| {
            util::run(
                std::process::Command::new(&suite)
                    .args(args)
                    .current_dir(util::root().join("crates/cli"))
                    .env("SHARDFEED_BIN", &cuda)
                    .env("SHARDFEED_EXPECT_CUDA", "1")
                    .env("SHARDFEED_MOTO_SERVER", &moto),
            )
        };
        run(&[])?;
        // Again, showing the lines `--device cuda` printed.
        run(&[
            "train::device_cuda_fails_in_one_line_where_it_cannot_run",
            "--exact",
            "--nocapture",
        ])
    })?;
    step("tensorflow interop", || match &tensorflow {
        // Every `#[ignore]`d test whose name says tensorflow: TF reads our record files
        // (record-format) and our shards (shardfeed).
        Ok(python) => util::run(
            cargo()
                // `--tests`: the doctests ran in the test step (they are rebuilt every run).
                .args([
                    "test",
                    "--workspace",
                    "--locked",
                    "--tests",
                    "--",
                    "--ignored",
                    "tensorflow",
                ])
                .args(["--nocapture", "--test-threads", "1"])
                .env("SHARDFEED_TF_PYTHON", python)
                .env("SHARDFEED_MOTO_SERVER", &moto),
        ),
        Err(why) => util::skipped("the TensorFlow interop check", why),
    })?;
    eprintln!(
        "xtask ci: all steps passed in {:.0} s{}",
        started.elapsed().as_secs_f64(),
        if tensorflow.is_err() {
            " (TensorFlow interop SKIPPED)"
        } else {
            ""
        }
    );
    Ok(())
}

/// The `cli` test binary of `cargo test --workspace` (built, not run, with the test step's
/// features).
fn cli_test_binary() -> anyhow::Result<std::path::PathBuf> {
    let output = cargo()
        .args([
            "test",
            "--workspace",
            "--locked",
            "--no-run",
            "--message-format=json",
        ])
        .stderr(std::process::Stdio::inherit())
        .output()?;
    anyhow::ensure!(output.status.success(), "cargo test --no-run failed");
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let target = &message["target"];
        if target["name"] == "cli"
            && target["kind"][0] == "test"
            && let Some(path) = message["executable"].as_str()
        {
            return Ok(path.into());
        }
    }
    anyhow::bail!("cargo test --no-run named no `cli` test binary")
}

fn step(name: &str, body: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    eprintln!("==> {name}");
    let started = Instant::now();
    let result = body();
    // Free disk after each step: a CI machine once ran out of it while linking tests.
    let free = util::free_disk(&util::root())
        .map(|bytes| format!(", {:.1} GB free", bytes as f64 / 1e9))
        .unwrap_or_default();
    eprintln!(
        "==> {name}: {} in {:.1} s{free}",
        if result.is_ok() { "ok" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    result
}

/// `.ci/run`'s staging, on a scratch repository: what a later run keeps (the build folder, the
/// times of unchanged files, so cargo rebuilds only what changed) and what it does not
/// (untracked files, a changed file's old time, anything of a fresh run).
#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) {
        let status = Command::new("git")
            .current_dir(dir)
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    }

    /// Runs the scratch repository's `.ci/run` up to its build; returns what it printed.
    fn stage(src: &Path, cache: &Path, fresh: bool) -> String {
        let mut command = Command::new("bash");
        command
            .arg(src.join(".ci/run"))
            .env("SHARDFEED_CI_CACHE", cache)
            .env("SHARDFEED_CI_STAGE_ONLY", "1")
            .env("TMPDIR", cache.parent().unwrap())
            .env_remove("SHARDFEED_CI_STAGED")
            .env_remove("SHARDFEED_CI_FRESH");
        if fresh {
            command.env("SHARDFEED_CI_FRESH", "1");
        }
        let output = command.output().unwrap();
        let printed = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{printed}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        printed
    }

    fn mtime(path: &Path) -> i64 {
        std::fs::metadata(path).unwrap().mtime()
    }

    #[test]
    fn a_cached_run_keeps_the_build_and_the_times_of_unchanged_files() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("clone");
        std::fs::create_dir_all(src.join(".ci")).unwrap();
        std::fs::copy(crate::util::root().join(".ci/run"), src.join(".ci/run")).unwrap();
        std::fs::write(src.join(".gitignore"), "/target\n/.venv\n").unwrap();
        std::fs::write(src.join("same.rs"), "// unchanged\n").unwrap();
        std::fs::write(src.join("changed.rs"), "// one\n").unwrap();
        std::fs::create_dir(dir.path().join("shared")).unwrap();
        git(&src, &["init", "-q"]);
        git(&src, &["add", "-A"]);
        git(&src, &["commit", "-qm", "one"]);
        let cache = dir.path().join("cache");
        let checkout = cache.join("ci/checkout");

        stage(&src, &cache, false);
        assert_eq!(
            std::fs::read_to_string(checkout.join("changed.rs")).unwrap(),
            "// one\n"
        );
        // ../shared beside the checkout is the clone's.
        assert_eq!(
            std::fs::read_link(cache.join("ci/shared")).unwrap(),
            dir.path().join("shared").canonicalize().unwrap()
        );
        // A clone made elsewhere finds ../shared beside the repository it was cloned from.
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        git(&elsewhere, &["clone", "-q", src.to_str().unwrap(), "clone"]);
        std::fs::remove_file(cache.join("ci/shared")).unwrap();
        stage(&elsewhere.join("clone"), &cache, false);
        assert_eq!(
            std::fs::read_link(cache.join("ci/shared")).unwrap(),
            dir.path().join("shared").canonicalize().unwrap()
        );
        // A build, a stray file, and the checkout's files as old as an earlier build's.
        std::fs::create_dir_all(checkout.join("target/debug")).unwrap();
        std::fs::write(checkout.join("target/debug/built"), "").unwrap();
        std::fs::write(checkout.join("stray.rs"), "").unwrap();
        let old = "@1000000000";
        for file in ["same.rs", "changed.rs"] {
            let touched = Command::new("touch")
                .args(["-m", "-d", old])
                .arg(checkout.join(file))
                .status()
                .unwrap();
            assert!(touched.success());
        }

        std::fs::write(src.join("changed.rs"), "// two\n").unwrap();
        git(&src, &["commit", "-qam", "two"]);
        let printed = stage(&src, &cache, false);
        assert!(!printed.contains("WARNING"), "{printed}");
        assert_eq!(mtime(&checkout.join("same.rs")), 1_000_000_000);
        assert!(mtime(&checkout.join("changed.rs")) > 1_000_000_000);
        assert_eq!(
            std::fs::read_to_string(checkout.join("changed.rs")).unwrap(),
            "// two\n"
        );
        assert!(checkout.join("target/debug/built").exists());
        assert!(!checkout.join("stray.rs").exists());

        // Uncommitted changes are not what CI tests, and it says so.
        std::fs::write(src.join("changed.rs"), "// three\n").unwrap();
        let printed = stage(&src, &cache, false);
        assert!(
            printed.contains("WARNING: uncommitted changes"),
            "{printed}"
        );
        assert_eq!(
            std::fs::read_to_string(checkout.join("changed.rs")).unwrap(),
            "// two\n"
        );

        // A fresh run builds in a temporary checkout, removed afterwards; the cache is untouched.
        let printed = stage(&src, &cache, true);
        let fresh = printed
            .lines()
            .find_map(|l| l.strip_prefix("==> fresh build in "))
            .and_then(|l| l.split(' ').next())
            .unwrap_or_else(|| panic!("{printed}"));
        assert!(fresh.starts_with(dir.path().to_str().unwrap()), "{fresh}");
        assert!(!Path::new(fresh).exists(), "{fresh} was left behind");
        assert!(checkout.join("target/debug/built").exists());

        // A clone that belongs to another user (git calls it dubious) is still fetched.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            git(&src, &["commit", "-qam", "three"]);
            let owned = Command::new("chown")
                .args(["-R", "nobody"])
                .arg(&src)
                .status()
                .unwrap();
            assert!(owned.success());
            stage(&src, &cache, false);
            assert_eq!(
                std::fs::read_to_string(checkout.join("changed.rs")).unwrap(),
                "// three\n"
            );
        } else {
            eprintln!("(not root: the clone of another user is not tried)");
        }
    }
}
