//! The Python package: `cargo xtask wheel` builds it with maturin and zig (from PyPI, in a tools
//! venv under `target/`) for `manylinux_2_28`; the `python` CI step checks the tag with
//! auditwheel, installs it in a fresh venv, runs its pytest suite, and runs it on Debian 11
//! (`old_linux`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::util::{self, cargo};

/// The maturin that builds the wheel (pinned: its command line is what we rely on).
const MATURIN: &str = "maturin==1.16.0";
/// Reports the wheel's platform tag and the libraries it links.
const AUDITWHEEL: &str = "auditwheel==6.5.0";
/// Zig as the C compiler and linker, from PyPI: it links against an older glibc than the
/// build machine's, so the wheel installs on glibc 2.28 (Debian 10, Ubuntu 18.10, RHEL 8) and
/// later, whatever Linux builds it.
const ZIGLANG: &str = "ziglang==0.15.2";
/// What `target/pytools` holds for the wheel: one list, so each use verifies the same venv.
const WHEEL_TOOLS: [&str; 3] = [MATURIN, ZIGLANG, AUDITWHEEL];
/// The oldest glibc the wheel runs on: its platform tag.
pub const MANYLINUX: &str = "manylinux_2_28";

/// Flags of `cargo xtask wheel`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also print what `auditwheel show` says of the wheel (and check its tag).
    #[arg(long)]
    audit: bool,
    /// Also install and run it on Debian 11 (glibc 2.31, Python 3.9) in a chroot (root).
    #[arg(long)]
    old_linux: bool,
}

pub fn wheel_cmd(args: &Args) -> anyhow::Result<()> {
    let wheel = build_wheel()?;
    println!("{}", wheel.display());
    if args.audit {
        audit(&wheel)?;
    }
    if args.old_linux {
        crate::old_linux::check(&wheel)?;
    }
    Ok(())
}

/// `PYTHON -m pip install --quiet` (add the packages).
pub fn pip(python: &Path) -> Command {
    let mut command = Command::new(python);
    command.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]);
    command
}

/// A venv under `target/` holding `packages` (made once; pip skips what is there).
pub fn tools_venv(name: &str, packages: &[&str]) -> anyhow::Result<PathBuf> {
    let dir = util::root().join("target").join(name);
    let python = dir.join("bin/python");
    if !python.exists() {
        util::run(Command::new("python3").args(["-m", "venv"]).arg(&dir))?;
    }
    util::run(pip(&python).args(packages))?;
    Ok(python)
}

/// Builds the release wheel into `target/wheels/` and returns its path.
pub fn build_wheel() -> anyhow::Result<PathBuf> {
    let python = tools_venv("pytools", &WHEEL_TOOLS)?;
    let out = util::root().join("target/wheels");
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("cannot clear {}", out.display()))?;
    }
    let maturin = python.with_file_name("maturin");
    util::run(
        Command::new(&maturin)
            .current_dir(util::root())
            // maturin runs zig as `python3 -m ziglang`: the venv's python3 first.
            .env(
                "PATH",
                util::path_with(python.parent().expect("a venv's bin/"))?,
            )
            .args(["build", "--release", "--strip", "--locked", "--zig"])
            .args(["--compatibility", MANYLINUX, "-m"])
            .arg("crates/python/Cargo.toml")
            .arg("--out")
            .arg(&out)
            .arg("--interpreter")
            .arg(&python),
    )?;
    let wheels: Vec<PathBuf> = std::fs::read_dir(&out)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    match wheels.as_slice() {
        [one] => {
            let size = std::fs::metadata(one)?.len();
            eprintln!(
                "xtask wheel: {} ({:.1} MB)",
                one.display(),
                size as f64 / 1e6
            );
            Ok(one.clone())
        }
        other => bail!(
            "expected one wheel in {}, found {}",
            out.display(),
            other.len()
        ),
    }
}

/// `auditwheel show WHEEL`, printed; fails unless it finds the wheel consistent with
/// [`MANYLINUX`] or an older glibc.
fn audit(wheel: &Path) -> anyhow::Result<()> {
    let python = tools_venv("pytools", &WHEEL_TOOLS)?;
    let output = Command::new(python.with_file_name("auditwheel"))
        .arg("show")
        .arg(wheel)
        .output()
        .context("cannot start auditwheel")?;
    let report = String::from_utf8_lossy(&output.stdout);
    eprint!("$ auditwheel show {}\n{report}", wheel.display());
    if !output.status.success() {
        bail!(
            "auditwheel show failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let wanted = glibc_of(MANYLINUX).expect("MANYLINUX is a manylinux tag");
    match consistent_glibc(&report) {
        Some(glibc) if glibc <= wanted => {
            eprintln!(
                "xtask wheel: auditwheel: consistent with manylinux_{0}_{1}, needs glibc {0}.{1} or later",
                glibc.0, glibc.1
            );
            Ok(())
        }
        Some(glibc) => bail!(
            "auditwheel: the wheel needs manylinux_{}_{} (glibc {}.{}); it must run on {MANYLINUX}",
            glibc.0,
            glibc.1,
            glibc.0,
            glibc.1
        ),
        None => bail!("auditwheel named no manylinux platform tag the wheel is consistent with"),
    }
}

/// The glibc version of a `manylinux_X_Y[_arch]` tag.
fn glibc_of(tag: &str) -> Option<(u32, u32)> {
    let mut parts = tag.strip_prefix("manylinux_")?.split('_');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The glibc of the tag `auditwheel show` says the wheel "is consistent with" (its report
/// wraps lines anywhere).
fn consistent_glibc(report: &str) -> Option<(u32, u32)> {
    let flat = report.split_whitespace().collect::<Vec<_>>().join(" ");
    let after = flat
        .split("consistent with the following platform tag:")
        .nth(1)?;
    glibc_of(after.trim_start().strip_prefix('"')?.split('"').next()?)
}

/// The CI step: the wheel in a fresh venv (only numpy comes with it), the pytest suite there
/// (with JAX), the Keras tests in the TensorFlow venv.
pub fn test(tensorflow: &Result<PathBuf, String>) -> anyhow::Result<()> {
    // The CLI the suite compares `shard()`'s bytes with: the one the test step just built.
    // (`cargo build -p shardfeed` alone would resolve other features and rebuild burn.)
    let binary = util::root().join("target/debug/shardfeed");
    if !binary.exists() {
        util::run(cargo().args(["test", "--workspace", "--locked", "--no-run"]))?;
    }
    let wheel = build_wheel()?;
    // The platform tag is a promise to users on older Linux: checked, not assumed.
    audit(&wheel)?;
    let venv = util::root().join("target/wheel-venv");
    if venv.exists() {
        std::fs::remove_dir_all(&venv)?;
    }
    util::run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    let python = venv.join("bin/python");
    util::run(pip(&python).arg(&wheel))?;
    let listed = Command::new(&python)
        .args([
            "-m",
            "pip",
            "list",
            "--format=freeze",
            "--disable-pip-version-check",
        ])
        .output()?;
    let installed: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter_map(|l| l.split("==").next().map(str::to_lowercase))
        .filter(|name| !matches!(name.as_str(), "pip" | "setuptools" | "wheel"))
        .collect();
    eprintln!("wheel venv holds: {}", installed.join(", "));
    if installed != ["numpy", "shardfeed"] {
        bail!("the wheel must bring numpy and nothing else; the fresh venv holds {installed:?}");
    }
    util::run(
        pip(&python)
            .arg("-r")
            .arg(util::root().join("crates/python/requirements-test.txt")),
    )?;
    let suite = util::root().join("crates/python/tests");
    let pytest = |python: &Path, marker: &str| {
        let mut command = Command::new(python);
        command
            .current_dir(&suite)
            .args(["-m", "pytest", "-q", "-rs", "-m", marker])
            .env("SHARDFEED_BIN", &binary)
            .env("SHARDFEED_README", util::root().join("README.md"))
            .env("TF_CPP_MIN_LOG_LEVEL", "3");
        if util::in_ci() {
            command.env("SHARDFEED_REQUIRE_ALL", "1");
        }
        command
    };
    util::run(&mut pytest(&python, "not keras"))?;
    // The tag's promise kept: installed and run where glibc and Python are older than here.
    crate::old_linux::check(&wheel)?;
    match tensorflow {
        Ok(tf_python) => {
            util::run(
                pip(tf_python)
                    .arg("--no-deps")
                    .arg("--force-reinstall")
                    .arg(&wheel),
            )?;
            util::run(pip(tf_python).arg("pytest==8.4.2"))?;
            util::run(&mut pytest(tf_python, "keras"))
        }
        Err(why) => util::skipped("the Keras loop fed by Loader", why),
    }
}

/// `target/bench-venv`: the wheel (reinstalled) and the benchmark's peers (WebDataset, Pillow).
pub fn bench_venv(wheel: &Path) -> anyhow::Result<PathBuf> {
    let python = tools_venv("bench-venv", &["webdataset==1.0.2", "pillow==12.0.0"])?;
    util::run(
        pip(&python)
            .args(["--force-reinstall", "--no-deps"])
            .arg(wheel),
    )?;
    Ok(python)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_consistent_tag_of_a_wrapped_auditwheel_report() {
        let report = "shardfeed-0.1.0-cp39-abi3-manylinux_2_28_x86_64.whl is consistent with\n\
                      the following platform tag: \"manylinux_2_28_x86_64\".\n\n\
                      This constrains the platform tag to \"manylinux_2_17_x86_64\".";
        assert_eq!(consistent_glibc(report), Some((2, 28)));
        let newer =
            "x.whl is consistent with the following\nplatform tag: \"manylinux_2_34_x86_64\".";
        assert_eq!(consistent_glibc(newer), Some((2, 34)));
        assert_eq!(
            consistent_glibc(
                "x.whl is consistent with the following platform tag: \"linux_x86_64\"."
            ),
            None
        );
        assert_eq!(consistent_glibc("no tag here"), None);
        assert!(glibc_of(MANYLINUX).unwrap() < (2, 34));
    }
}
