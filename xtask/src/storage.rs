//! Object storage for CI and benchmarks: the local S3 API server
//! ([`shardfeed_s3_server::MotoServer`], the tests' harness too), installed here into
//! `target/s3-venv`, and `cargo xtask bench storage`'s runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
pub use shardfeed_s3_server::MOTO;
use shardfeed_s3_server::MotoServer;

use crate::util;

/// `target/s3-venv/bin/moto_server`, installed if it is not there.
pub fn moto_server() -> anyhow::Result<PathBuf> {
    let python = crate::python::tools_venv("s3-venv", &[MOTO])?;
    let server = python.with_file_name("moto_server");
    if !server.exists() {
        bail!("{} missing after installing {MOTO}", server.display());
    }
    Ok(server)
}

/// A running moto server on 127.0.0.1 (installed first where needed), stopped on drop.
pub fn start_server() -> anyhow::Result<MotoServer> {
    let binary = moto_server()?;
    MotoServer::start(&binary).with_context(|| format!("starting {}", binary.display()))
}

/// `shardfeed stream DIR --no-cache --epochs 2 --json`: the second epoch's images/s.
pub fn stream_rate(binary: &Path, shards: &str, s3: &MotoServer) -> anyhow::Result<f64> {
    let mut command = Command::new(binary);
    command
        .arg("stream")
        .arg(shards)
        .args(["--json", "--epochs", "2", "--no-cache"]);
    s3.env_on(&mut command);
    let output = command.output()?;
    if !output.status.success() {
        bail!(
            "shardfeed stream {shards} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    report["epochs"]
        .as_array()
        .and_then(|epochs| epochs.last())
        .and_then(|epoch| epoch["images_per_second"].as_f64())
        .context("images_per_second in the stream report")
}

/// Wall seconds of `shardfeed shard SOURCES OUT` as one process, or as `workers` processes
/// at once (`--num-workers`) followed by `shard-merge`.
pub fn shard_wall(
    binary: &Path,
    sources: &Path,
    out: &str,
    workers: usize,
    s3: &MotoServer,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let command = |index: Option<usize>| {
        let mut command = Command::new(binary);
        command
            .arg("shard")
            .arg(sources)
            .arg("--out")
            .arg(out)
            .arg("--quiet");
        if let Some(index) = index {
            command.args([
                "--num-workers",
                &workers.to_string(),
                "--worker-index",
                &index.to_string(),
            ]);
        }
        s3.env_on(&mut command);
        command.stdout(Stdio::null());
        command
    };
    if workers == 1 {
        util::run(&mut command(None))?;
    } else {
        let mut children = Vec::new();
        for index in 0..workers {
            children.push(command(Some(index)).spawn()?);
        }
        for mut child in children {
            let status = child.wait()?;
            if !status.success() {
                bail!("a shard worker failed: {status}");
            }
        }
        let mut merge = Command::new(binary);
        merge.arg("shard-merge").arg(out).stdout(Stdio::null());
        s3.env_on(&mut merge);
        util::run(&mut merge)?;
    }
    Ok(started.elapsed().as_secs_f64())
}
