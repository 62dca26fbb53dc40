//! `cargo xtask ci`: everything CI runs, cheapest first, stopping at the first failure:
//! fmt, tidy, clippy, the local S3 server (moto), tests, the `cuda` feature's type-check, the
//! Python package (wheel, fresh venv, pytest), TensorFlow interop.

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
    step("cuda type-check", || {
        // burn-cuda's build script downloads LLVM, which CI cannot: DOCS_RS=1 skips that
        // download and still type-checks our CUDA code paths (`--device cuda`).
        util::run(
            cargo()
                .args([
                    "check",
                    "-p",
                    "shardfeed-model",
                    "--features",
                    "cuda",
                    "--locked",
                ])
                .env("DOCS_RS", "1"),
        )
    })?;
    step("python package", || crate::python::test(&tensorflow))?;
    step("tensorflow interop", || match &tensorflow {
        // Every `#[ignore]`d test whose name says tensorflow: TF reads our record files
        // (record-format) and our shards (shardfeed).
        Ok(python) => util::run(
            cargo()
                .args([
                    "test",
                    "--workspace",
                    "--locked",
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
