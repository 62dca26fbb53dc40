//! A real S3 API server for the tests (`moto_server` on 127.0.0.1, a free port, stopped when
//! the test ends) behind a fault-injecting TCP proxy, and the environment that points
//! `object_store` at the proxy.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Tests in this binary share the process environment (the endpoint): one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub struct S3 {
    server: Child,
    server_port: u16,
    proxy: Arc<Proxy>,
    _turn: MutexGuard<'static, ()>,
}

struct Proxy {
    /// Faults per thousand forwarded chunks (and, ×25 up to 300, 503s per thousand new connections).
    per_mille: AtomicU32,
    injected: AtomicU64,
    stop: AtomicBool,
    counter: AtomicU64,
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
        || std::env::var_os("SHARDFEED_REQUIRE_ALL").is_some_and(|v| v == "1")
}

fn moto_server() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SHARDFEED_MOTO_SERVER") {
        return Some(PathBuf::from(path));
    }
    let venv =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/s3-venv/bin/moto_server");
    venv.exists().then_some(venv)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A raw HTTP/1.1 request to the server itself (bucket creation and test fixtures, which
/// `object_store` does not do); returns the status code.
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

impl S3 {
    /// Starts moto and the proxy and points the AWS environment at the proxy; `None` (with a
    /// loud message) where moto is not installed outside CI.
    pub fn start() -> Option<S3> {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let Some(moto) = moto_server() else {
            assert!(
                !in_ci(),
                "moto_server is required under CI (SHARDFEED_MOTO_SERVER, or target/s3-venv from `cargo xtask s3-server`)"
            );
            eprintln!(
                "SKIPPED (not proven here): no moto_server (set SHARDFEED_MOTO_SERVER or run `cargo xtask s3-server`)"
            );
            return None;
        };
        let server_port = free_port();
        let server = Command::new(&moto)
            .args(["-H", "127.0.0.1", "-p", &server_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", moto.display()));
        let mut s3 = S3 {
            server,
            server_port,
            proxy: Arc::new(Proxy {
                per_mille: AtomicU32::new(0),
                injected: AtomicU64::new(0),
                stop: AtomicBool::new(false),
                counter: AtomicU64::new(0),
            }),
            _turn: turn,
        };
        let started = Instant::now();
        while http_ready(server_port).is_none() {
            if let Ok(Some(status)) = s3.server.try_wait() {
                panic!("moto_server exited at start: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto_server did not answer on port {server_port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "moto_server up on 127.0.0.1:{server_port} in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let proxy_port = start_proxy(s3.proxy.clone(), server_port);
        // SAFETY: tests of this binary run one at a time (`ONE_AT_A_TIME`), and nothing
        // else in the process reads the environment while this runs.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
            std::env::set_var("AWS_REGION", "us-east-1");
            std::env::set_var("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{proxy_port}"));
            std::env::set_var("AWS_ALLOW_HTTP", "true");
            std::env::set_var("SHARDFEED_READ_CHUNK_BYTES", "4096");
        }
        Some(s3)
    }

    /// Creates a bucket (names must differ between tests: stores are cached by URL).
    pub fn bucket(&self, name: &str) {
        let status = http(self.server_port, "PUT", &format!("/{name}"), b"");
        assert_eq!(status, 200, "creating bucket {name}");
    }

    /// Writes an object directly (no faults).
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let status = http(self.server_port, "PUT", &format!("/{bucket}/{key}"), bytes);
        assert_eq!(status, 200, "writing {bucket}/{key}");
    }

    /// The keys in a bucket.
    pub fn list(&self, bucket: &str) -> Vec<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.server_port)).unwrap();
        write!(
            stream,
            "GET /{bucket}?list-type=2 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split("</Key>").next().map(str::to_owned))
            .collect()
    }

    /// Faults per thousand forwarded chunks from now on (0: none).
    pub fn faults(&self, per_mille: u32) {
        self.proxy.per_mille.store(per_mille, Ordering::SeqCst);
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u64 {
        self.proxy.injected.load(Ordering::SeqCst)
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.proxy.stop.store(true, Ordering::SeqCst);
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn http_ready(port: u16) -> Option<()> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    head.starts_with(b"HTTP/1.").then_some(())
}

/// A small deterministic generator (xorshift) per connection.
struct Dice(u64);

impl Dice {
    fn roll(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % 1000) as u32
    }
}

/// Listens on a free loopback port and forwards each connection to `upstream`, injecting
/// faults as `proxy.per_mille` says: a 503 instead of the response (per thousand
/// connections: a quarter of the rate), a connection cut after part of a forwarded chunk
/// (either direction: mid-response, mid-upload).
fn start_proxy(proxy: Arc<Proxy>, upstream: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !proxy.stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((client, _)) => {
                    client.set_nonblocking(false).unwrap();
                    let proxy = proxy.clone();
                    std::thread::spawn(move || serve(proxy, client, upstream));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    port
}

fn serve(proxy: Arc<Proxy>, mut client: TcpStream, upstream: u16) {
    let n = proxy.counter.fetch_add(1, Ordering::SeqCst);
    let mut dice = Dice(0x9E37_79B9_7F4A_7C15 ^ (n + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let rate = proxy.per_mille.load(Ordering::SeqCst);
    if rate > 0 && dice.roll() < (rate * 25).min(300) {
        // Read the request's first bytes, then refuse it as an overloaded server does.
        let mut head = [0u8; 1024];
        let _ = client.read(&mut head);
        let _ = client.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        proxy.injected.fetch_add(1, Ordering::SeqCst);
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let (client2, server2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let up = {
        let proxy = proxy.clone();
        let seed = dice.0 ^ 0xABCD;
        std::thread::spawn(move || pump(&proxy, client2, server2, Dice(seed)))
    };
    pump(&proxy, server, client, dice);
    let _ = up.join();
}

/// Copies `from` to `to` until either closes; with the proxy's rate, cuts both after a
/// random part of a chunk.
fn pump(proxy: &Proxy, mut from: TcpStream, mut to: TcpStream, mut dice: Dice) {
    let mut buffer = vec![0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let rate = proxy.per_mille.load(Ordering::SeqCst);
        if rate > 0 && dice.roll() < rate {
            let cut = (dice.roll() as usize * n) / 1000;
            let _ = to.write_all(&buffer[..cut]);
            proxy.injected.fetch_add(1, Ordering::SeqCst);
            break;
        }
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
