//! The S3 API server the tests and the benchmarks run against: PyPI's `moto_server`
//! ([`MOTO`], installed by `cargo xtask s3-server` into `target/s3-venv`), started on a free
//! loopback port and stopped on drop, with the raw HTTP calls `object_store` does not make
//! (creating a bucket, writing or listing objects behind the code under test's back) and the
//! environment that points `object_store` at it. One harness: `xtask` (CI, `bench storage`)
//! and `shardfeed-dataset`'s S3 tests both start it here.
//!
//! Only `std`: no HTTP client, so that a test of the storage code does not test itself.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The moto release the tests and benchmarks run against.
pub const MOTO: &str = "moto[server]==5.1.14";

/// Where `moto_server` is: `SHARDFEED_MOTO_SERVER`, else `WORKSPACE/target/s3-venv/bin/
/// moto_server` where it exists, else `None`.
pub fn installed(workspace: &Path) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SHARDFEED_MOTO_SERVER") {
        return Some(PathBuf::from(path));
    }
    let venv = workspace.join("target/s3-venv/bin/moto_server");
    venv.exists().then_some(venv)
}

/// A free TCP port on 127.0.0.1 (free when asked).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The environment that points `object_store`'s S3 client at `127.0.0.1:port` (the server,
/// or a proxy in front of it), with moto's test credentials.
pub fn env(port: u16) -> [(&'static str, String); 5] {
    [
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
    ]
}

/// A running `moto_server` on 127.0.0.1, stopped on drop.
pub struct MotoServer {
    child: Child,
    port: u16,
}

impl MotoServer {
    /// Starts `binary` on a free port and waits (up to 60 s) until it answers HTTP.
    pub fn start(binary: &Path) -> io::Result<MotoServer> {
        let port = free_port()?;
        let child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                io::Error::new(e.kind(), format!("cannot start {}: {e}", binary.display()))
            })?;
        let mut server = MotoServer { child, port };
        let started = Instant::now();
        while !server.answers() {
            if let Some(status) = server.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "{} exited at start: {status}",
                    binary.display()
                )));
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} did not answer on port {port} within 60 s",
                        binary.display()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The environment pointing `object_store` at it ([`env`]).
    pub fn env(&self) -> [(&'static str, String); 5] {
        env(self.port)
    }

    /// Sets [`MotoServer::env`] on `command`.
    pub fn env_on(&self, command: &mut Command) {
        for (name, value) in self.env() {
            command.env(name, value);
        }
    }

    fn answers(&self) -> bool {
        matches!(self.request("GET", "/", b""), Ok((status, _)) if status > 0)
    }

    /// One HTTP/1.1 request straight to the server: its status code and body.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> io::Result<(u16, Vec<u8>)> {
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
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(response.len(), |at| at + 4);
        let status = String::from_utf8_lossy(&response[..split])
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| io::Error::other(format!("{method} {path}: no HTTP status")))?;
        Ok((status, response[split..].to_vec()))
    }

    /// `request`, where anything but 200 is an error naming the call.
    fn expect_ok(&self, method: &str, path: &str, body: &[u8]) -> io::Result<Vec<u8>> {
        match self.request(method, path, body)? {
            (200, body) => Ok(body),
            (status, _) => Err(io::Error::other(format!("{method} {path}: HTTP {status}"))),
        }
    }

    /// Creates bucket `name`.
    pub fn bucket(&self, name: &str) -> io::Result<()> {
        self.expect_ok("PUT", &format!("/{name}"), b"").map(drop)
    }

    /// Writes object `bucket/key` directly.
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) -> io::Result<()> {
        self.expect_ok("PUT", &format!("/{bucket}/{key}"), bytes)
            .map(drop)
    }

    /// The keys in `bucket` (the first 1,000).
    pub fn list(&self, bucket: &str) -> io::Result<Vec<String>> {
        let body = self.expect_ok("GET", &format!("/{bucket}?list-type=2"), b"")?;
        Ok(String::from_utf8_lossy(&body)
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split("</Key>").next().map(str::to_owned))
            .collect())
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
