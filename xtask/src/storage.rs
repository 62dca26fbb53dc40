//! Object storage for CI and benchmarks: a local S3 API server (`moto_server` from PyPI's
//! `moto[server]`, in `target/s3-venv`) on loopback, and `cargo xtask bench storage`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::util;

/// The moto release the tests and benchmarks run against.
pub const MOTO: &str = "moto[server]==5.1.14";

/// `target/s3-venv/bin/moto_server`, installed if it is not there.
pub fn moto_server() -> anyhow::Result<PathBuf> {
    let python = crate::python::tools_venv("s3-venv", &[MOTO])?;
    let server = python.with_file_name("moto_server");
    if !server.exists() {
        bail!("{} missing after installing {MOTO}", server.display());
    }
    Ok(server)
}

/// A running moto server on 127.0.0.1, stopped on drop.
pub struct S3Server {
    child: Child,
    port: u16,
}

impl S3Server {
    pub fn start() -> anyhow::Result<S3Server> {
        let server = moto_server()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", server.display()))?;
        let mut s3 = S3Server { child, port };
        let started = Instant::now();
        while s3.request("GET", "/", b"").is_err() {
            if let Some(status) = s3.child.try_wait()? {
                bail!("moto_server exited at start: {status}");
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("moto_server did not answer on port {port} within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(s3)
    }

    /// One HTTP/1.1 request to the server; its status code.
    fn request(&self, method: &str, path: &str, body: &[u8]) -> anyhow::Result<u16> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        )?;
        stream.write_all(body)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        String::from_utf8_lossy(&response)
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .context("no HTTP status")
    }

    pub fn bucket(&self, name: &str) -> anyhow::Result<()> {
        match self.request("PUT", &format!("/{name}"), b"")? {
            200 => Ok(()),
            status => bail!("creating bucket {name}: HTTP {status}"),
        }
    }

    /// The environment that points `object_store` at this server.
    pub fn env(&self, command: &mut Command) {
        command
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env(
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.port),
            )
            .env("AWS_ALLOW_HTTP", "true");
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `shardfeed stream DIR --no-cache --epochs 2 --json`: the second epoch's images/s.
pub fn stream_rate(binary: &Path, shards: &str, s3: &S3Server) -> anyhow::Result<f64> {
    let mut command = Command::new(binary);
    command
        .arg("stream")
        .arg(shards)
        .args(["--json", "--epochs", "2", "--no-cache"]);
    s3.env(&mut command);
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
    s3: &S3Server,
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
        s3.env(&mut command);
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
        s3.env(&mut merge);
        util::run(&mut merge)?;
    }
    Ok(started.elapsed().as_secs_f64())
}
