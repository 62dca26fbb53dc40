//! `cargo xtask fuzz`: the `fuzz/` targets (a `cargo fuzz` layout) built with libFuzzer's
//! coverage flags on stable Rust, so no nightly toolchain is needed. Not part of `ci`.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use crate::util::{self, root};

/// Every target in `fuzz/fuzz_targets`.
const TARGETS: [&str; 7] = [
    "record_reader",
    "example_decode",
    "index_parse",
    "jpeg_probe",
    "manifest_parse",
    "decode_resize",
    "other_formats",
];

/// Flags of `cargo xtask fuzz`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds to fuzz each target.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Fuzz only this target (default: all of them, one after the other).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    target: Option<String>,
    /// Fuzz every target (the default when no --target is given).
    #[arg(long, conflicts_with = "target")]
    all: bool,
}

/// The flags `cargo fuzz` passes for libFuzzer's coverage instrumentation, minus the
/// nightly-only sanitizer flag. Debug assertions and overflow checks stay on.
const RUSTFLAGS: &str = "-Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares \
    --cfg fuzzing -Cdebug-assertions -Coverflow-checks";

pub fn run(args: &Args) -> anyhow::Result<()> {
    let fuzz_dir = root().join("fuzz");
    let host = host_triple()?;
    // --target keeps RUSTFLAGS off build scripts, which must not be instrumented.
    util::run(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(&fuzz_dir)
            .args([
                "build",
                "--release",
                "--locked",
                "--bins",
                "--target",
                &host,
            ])
            .env("RUSTFLAGS", RUSTFLAGS),
    )?;
    let targets: Vec<&str> = match &args.target {
        Some(target) => vec![target.as_str()],
        None => TARGETS.to_vec(),
    };
    for target in targets {
        let corpus = fuzz_dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        seed_corpus(target, &corpus)?;
        let artifacts = fuzz_dir.join("artifacts").join(target);
        std::fs::create_dir_all(&artifacts)?;
        let binary = fuzz_dir
            .join("target")
            .join(&host)
            .join("release")
            .join(target);
        eprintln!("==> fuzzing {target} for {} s", args.seconds);
        util::run(
            Command::new(binary)
                .arg(&corpus)
                .arg(format!("-max_total_time={}", args.seconds))
                .arg(format!("-artifact_prefix={}/", artifacts.display()))
                .args(["-rss_limit_mb=2048", "-print_final_stats=1"]),
        )
        .with_context(|| {
            format!(
                "fuzz target {target} found a crash: see {}",
                artifacts.display()
            )
        })?;
    }
    Ok(())
}

/// Starts each corpus from real files: the TensorFlow-written fixtures.
fn seed_corpus(target: &str, corpus: &Path) -> anyhow::Result<()> {
    let fixtures = root().join("fixtures/tf-written");
    match target {
        "record_reader" => {
            for name in [
                "cat_dog00-8.tfrec",
                "truncated.tfrec",
                "trailing_partial_header.tfrec",
            ] {
                std::fs::copy(fixtures.join(name), corpus.join(name))?;
            }
        }
        "example_decode" => {
            let bytes = std::fs::read(fixtures.join("cat_dog00-8.tfrec"))?;
            let length = u64::from_le_bytes(bytes[..8].try_into()?) as usize;
            std::fs::write(corpus.join("record0.example"), &bytes[12..12 + length])?;
        }
        "index_parse" => {
            std::fs::write(corpus.join("three.idx"), "0 2727\n2727 3346\n6073 2207\n")?
        }
        "jpeg_probe" => {
            for entry in std::fs::read_dir(root().join("fixtures/jpeg-kinds"))? {
                let path = entry?.path();
                if let Some(name) = path.file_name() {
                    std::fs::copy(&path, corpus.join(name))?;
                }
            }
        }
        "decode_resize" => {
            // Each fixture with a target side and a pixel limit in front (the first two bytes).
            for (i, entry) in std::fs::read_dir(root().join("fixtures/jpeg-kinds"))?.enumerate() {
                let path = entry?.path();
                if let Some(name) = path.file_name() {
                    let mut bytes = vec![(i * 37 % 250) as u8, (i % 12) as u8];
                    bytes.extend(std::fs::read(&path)?);
                    std::fs::write(corpus.join(name), bytes)?;
                }
            }
        }
        "other_formats" => {
            // A one-pixel GIF (its bytes written out here), and each
            // fixture JPEG (the EXIF one gives the orientation parser a real segment), a
            // pixel limit in front.
            for (i, entry) in std::fs::read_dir(root().join("fixtures/jpeg-kinds"))?.enumerate() {
                let path = entry?.path();
                if let Some(name) = path.file_name() {
                    let mut bytes = vec![(i % 12) as u8];
                    bytes.extend(std::fs::read(&path)?);
                    std::fs::write(corpus.join(name), bytes)?;
                }
            }
            let gif: &[u8] = b"\x0bGIF89a\x01\x00\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
            std::fs::write(corpus.join("one.gif"), gif)?;
        }
        "manifest_parse" => std::fs::write(
            corpus.join("manifest.json"),
            r#"{"tool": "shardfeed 0.1.0", "classes": ["cat", "dog"], "shards": [{"file": "data00-2.tfrec", "records": 2, "per_class": [1, 1], "bytes": 9000}], "records": 2}"#,
        )?,
        other => bail!("no seed for fuzz target {other}"),
    }
    Ok(())
}

fn host_triple() -> anyhow::Result<String> {
    let output = Command::new("rustc")
        .arg("-vV")
        .output()
        .context("cannot run rustc -vV")?;
    String::from_utf8(output.stdout)?
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .context("no host line in rustc -vV")
}
