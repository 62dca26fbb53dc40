//! The Python package: `cargo xtask wheel` builds it with maturin (from PyPI, in a tools venv
//! under `target/`); the `python` CI step installs it in a fresh venv and runs its pytest suite.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::util::{self, cargo};

/// The maturin that builds the wheel (pinned: its command line is what we rely on).
const MATURIN: &str = "maturin==1.16.0";
/// Reports the wheel's platform tag and the libraries it links.
const AUDITWHEEL: &str = "auditwheel==6.5.0";

/// Flags of `cargo xtask wheel`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also print what `auditwheel show` says of the wheel.
    #[arg(long)]
    audit: bool,
}

pub fn wheel_cmd(args: &Args) -> anyhow::Result<()> {
    let wheel = build_wheel()?;
    println!("{}", wheel.display());
    if args.audit {
        audit(&wheel)?;
    }
    Ok(())
}

/// `PYTHON -m pip install --quiet` (add the packages).
fn pip(python: &Path) -> Command {
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
    let python = tools_venv("pytools", &[MATURIN])?;
    let out = util::root().join("target/wheels");
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("cannot clear {}", out.display()))?;
    }
    let maturin = python.with_file_name("maturin");
    util::run(
        Command::new(&maturin)
            .current_dir(util::root())
            .args(["build", "--release", "--strip", "--locked", "-m"])
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

fn audit(wheel: &Path) -> anyhow::Result<()> {
    let python = tools_venv("pytools", &[MATURIN, AUDITWHEEL])?;
    util::run(
        Command::new(python.with_file_name("auditwheel"))
            .arg("show")
            .arg(wheel),
    )
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
