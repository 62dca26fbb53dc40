//! The real S3 API server for the tests (`shardfeed_s3_server::MotoServer`, the harness
//! `cargo xtask` uses too) behind a fault-injecting TCP proxy, and the environment that
//! points `object_store` at the proxy.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;

use shardfeed_s3_server::MotoServer;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Tests in this binary share the process environment (the endpoint): one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub struct S3 {
    server: MotoServer,
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

impl S3 {
    /// Starts moto and the proxy and points the AWS environment at the proxy; `None` (with a
    /// loud message) where moto is not installed outside CI.
    pub fn start() -> Option<S3> {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let Some(moto) = shardfeed_s3_server::installed(&workspace) else {
            assert!(
                !in_ci(),
                "moto_server is required under CI (SHARDFEED_MOTO_SERVER, or target/s3-venv from `cargo xtask s3-server`)"
            );
            eprintln!(
                "SKIPPED (not proven here): no moto_server (set SHARDFEED_MOTO_SERVER or run `cargo xtask s3-server`)"
            );
            return None;
        };
        let started = Instant::now();
        let server = MotoServer::start(&moto).unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "moto_server up on 127.0.0.1:{} in {:.1} s",
            server.port(),
            started.elapsed().as_secs_f64()
        );
        let proxy = Arc::new(Proxy {
            per_mille: AtomicU32::new(0),
            injected: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            counter: AtomicU64::new(0),
        });
        let proxy_port = start_proxy(proxy.clone(), server.port());
        // SAFETY: tests of this binary run one at a time (`ONE_AT_A_TIME`), and nothing
        // else in the process reads the environment while this runs.
        unsafe {
            for (name, value) in shardfeed_s3_server::env(proxy_port) {
                std::env::set_var(name, value);
            }
            std::env::set_var("SHARDFEED_READ_CHUNK_BYTES", "4096");
        }
        Some(S3 {
            server,
            proxy,
            _turn: turn,
        })
    }

    /// Creates a bucket (names must differ between tests: stores are cached by URL).
    pub fn bucket(&self, name: &str) {
        self.server.bucket(name).unwrap();
    }

    /// Writes an object directly (no faults).
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        self.server.put(bucket, key, bytes).unwrap();
    }

    /// The keys in a bucket.
    pub fn list(&self, bucket: &str) -> Vec<String> {
        self.server.list(bucket).unwrap()
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
    }
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
