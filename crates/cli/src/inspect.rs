//! `shardfeed inspect`: what is in TFRecord files, and whether they are intact.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde::Serialize;
use shardfeed_record_format::{
    Compression, Example, FileName, Index, IndexEntry, Location, ReaderOptions, RecordReader,
};

/// Flags of `shardfeed inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// TFRecord files, or directories whose `*.tfrec` files are inspected.
    #[arg(required = true, value_name = "FILE")]
    paths: Vec<PathBuf>,
    /// How the files are compressed (never guessed from the name; default: what the
    /// `manifest.json` beside a file says, else none).
    #[arg(long, value_name = "none|gzip|zlib")]
    compression: Option<Compression>,
    /// Skip CRC checks (faster; damaged payloads then go unnoticed).
    #[arg(long)]
    no_verify: bool,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

/// What `inspect` found in one file.
#[derive(Debug, Serialize)]
struct Report {
    path: PathBuf,
    records: u64,
    bytes: u64,
    compression: String,
    verified: bool,
    /// Name, list kind and length of each feature of the first record.
    features: Vec<FeatureSummary>,
    /// Records per value of an int64 `class` feature, when the records have one.
    class_counts: Option<BTreeMap<i64, u64>>,
    index: IndexStatus,
    /// The first problem, or `None` for an intact file.
    error: Option<Problem>,
    #[serde(skip)]
    hint: Option<String>,
    /// Class names from the `manifest.json` beside the file, when there is one.
    #[serde(skip)]
    class_names: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
struct FeatureSummary {
    name: String,
    kind: &'static str,
    len: usize,
}

#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum IndexStatus {
    /// No `.idx` file beside the record file.
    Missing,
    /// The `.idx` file describes exactly the records read.
    Matches,
    /// The `.idx` file disagrees with the records, or does not parse.
    Stale { reason: String },
    /// Not compared, because the file is damaged.
    Unchecked,
}

#[derive(Debug, Serialize)]
struct Problem {
    message: String,
    record: Option<u64>,
    offset: Option<u64>,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let files = expand(&args.paths)?;
    // Each folder's manifest, read once however many of its files are inspected.
    let mut manifests: BTreeMap<PathBuf, Option<shardfeed_dataset::Manifest>> = BTreeMap::new();
    let reports: Vec<Report> = files
        .iter()
        .map(|file| {
            let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
            let manifest = manifests
                .entry(dir)
                .or_insert_with_key(|dir| {
                    shardfeed_dataset::Manifest::read_folder(dir).ok().flatten()
                })
                .clone();
            let recorded = manifest
                .as_ref()
                .and_then(|m| m.compression.parse::<Compression>().ok());
            let options = ReaderOptions {
                compression: args.compression.or(recorded).unwrap_or(Compression::None),
                verify: !args.no_verify,
                ..ReaderOptions::default()
            };
            let mut report = inspect_file(file, options)?;
            if let Some(recorded) = recorded
                && recorded != options.compression
                && report.error.is_some()
            {
                report.hint = Some(format!(
                    "the manifest.json beside it says the shards are {recorded}: drop --compression"
                ));
            }
            report.class_names = manifest.map(|m| m.classes);
            Ok(report)
        })
        .collect::<anyhow::Result<_>>()?;
    let damaged = reports.iter().filter(|r| r.error.is_some()).count();

    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &reports)?;
        writeln!(out)?;
    } else {
        for report in &reports {
            print_report(&mut out, report)?;
        }
        writeln!(
            out,
            "{}: {} intact, {} damaged",
            crate::fmt::count(reports.len() as u64, "file"),
            reports.len() - damaged,
            damaged
        )?;
    }
    Ok(if damaged == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The files named, with each directory replaced by its `*.tfrec` files in name order.
fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        let metadata =
            fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if !metadata.is_dir() {
            files.push(path.clone());
            continue;
        }
        let found = shardfeed_dataset::find_shards(path)?;
        if found.is_empty() {
            bail!("no .tfrec files in {}", path.display());
        }
        files.extend(found);
    }
    Ok(files)
}

fn inspect_file(path: &Path, options: ReaderOptions) -> anyhow::Result<Report> {
    let bytes = fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    let mut reader = RecordReader::open(path, options)?;
    let mut report = Report {
        path: path.to_path_buf(),
        records: 0,
        bytes,
        compression: options.compression.to_string(),
        verified: options.verify,
        features: Vec::new(),
        class_counts: None,
        index: IndexStatus::Unchecked,
        error: None,
        hint: None,
        class_names: None,
    };
    let mut entries = Vec::new();
    let mut payload = Vec::new();
    loop {
        let info = match reader.read_into(&mut payload) {
            Ok(Some(info)) => info,
            Ok(None) => break,
            Err(error) => {
                let at = error.location();
                let mut message = error.to_string();
                if report.records == 0 && options.compression == Compression::None {
                    report.hint = compression_hint(path).map(str::to_owned);
                    if let Some(text) = starts_with_text(path) {
                        message = format!(
                            "not a TFRecord file: it starts with text ({text:?}), not a record header"
                        );
                    }
                }
                report.error = Some(Problem {
                    message,
                    record: at.map(|at| at.index),
                    offset: at.map(|at| at.offset),
                });
                break;
            }
        };
        entries.push(IndexEntry {
            offset: info.offset,
            len: info.framed_len(),
        });
        report.records += 1;
        if let Err(error) = summarise_example(&payload, &mut report) {
            let at = Location {
                file: FileName::new(path),
                index: info.index,
                offset: info.offset,
                compression: options.compression,
            };
            report.error = Some(Problem {
                message: error.in_record(at).to_string(),
                record: Some(info.index),
                offset: Some(info.offset),
            });
            break;
        }
    }
    if report.error.is_none() {
        report.index = compare_index(path, &entries);
    }
    Ok(report)
}

/// Notes the first record's features and counts the `class` feature of every record.
fn summarise_example(payload: &[u8], report: &mut Report) -> shardfeed_record_format::Result<()> {
    let example = Example::decode(payload)?;
    if report.records == 1 {
        report.features = example
            .feature_map()
            .map(|(name, feature)| FeatureSummary {
                name: name.to_owned(),
                kind: feature.kind_name(),
                len: feature.kind.as_ref().map_or(0, |k| k.len()),
            })
            .collect();
        if example.int64_list("class").is_ok() {
            report.class_counts = Some(BTreeMap::new());
        }
    }
    if let Some(counts) = &mut report.class_counts {
        *counts.entry(example.single_int64("class")?).or_default() += 1;
    }
    Ok(())
}

fn compare_index(path: &Path, entries: &[IndexEntry]) -> IndexStatus {
    let index_path = Index::path_for(path);
    if !index_path.exists() {
        return IndexStatus::Missing;
    }
    match Index::read(&index_path) {
        Err(error) => IndexStatus::Stale {
            reason: error.to_string(),
        },
        Ok(index) if index.entries() == entries => IndexStatus::Matches,
        Ok(index) => IndexStatus::Stale {
            reason: format!(
                "{} lists {} records, the file has {}",
                index_path.display(),
                index.len(),
                entries.len()
            ),
        },
    }
}

/// The first characters of a file that begins with 12 bytes of printable text (no TFRecord
/// does: its first 8 bytes are a little-endian length, its next 4 a CRC).
fn starts_with_text(path: &Path) -> Option<String> {
    let mut head = [0u8; 24];
    let mut file = fs::File::open(path).ok()?;
    let n = std::io::Read::read(&mut file, &mut head).ok()?;
    let text = &head[..n];
    let printable = |b: &u8| b.is_ascii_graphic() || b.is_ascii_whitespace();
    (n >= 12 && text[..12].iter().all(printable))
        .then(|| String::from_utf8_lossy(text).into_owned())
}

/// A hint for a plain read that failed at once on what looks like compressed data.
fn compression_hint(path: &Path) -> Option<&'static str> {
    let mut magic = [0u8; 2];
    let mut file = fs::File::open(path).ok()?;
    std::io::Read::read_exact(&mut file, &mut magic).ok()?;
    match magic {
        [0x1f, 0x8b] => Some("the file starts like gzip data: try --compression gzip"),
        [0x78, second] if (u16::from(0x78u8) << 8 | u16::from(second)) % 31 == 0 => {
            Some("the file starts like zlib data: try --compression zlib")
        }
        _ => None,
    }
}

fn print_report(out: &mut impl Write, report: &Report) -> std::io::Result<()> {
    writeln!(out, "{}", report.path.display())?;
    let intact = if report.error.is_some() {
        " intact before the damage"
    } else {
        ""
    };
    writeln!(out, "  records      {}{intact}", report.records)?;
    writeln!(out, "  bytes        {}", report.bytes)?;
    writeln!(out, "  compression  {}", report.compression)?;
    let features: Vec<String> = report
        .features
        .iter()
        .map(|f| format!("{}: {}[{}]", f.name, f.kind, f.len))
        .collect();
    writeln!(
        out,
        "  features     {}",
        if features.is_empty() {
            "-".to_owned()
        } else {
            features.join(", ")
        }
    )?;
    if let Some(counts) = &report.class_counts {
        let name = |class: i64| {
            usize::try_from(class)
                .ok()
                .and_then(|i| report.class_names.as_ref()?.get(i).cloned())
                .unwrap_or_else(|| class.to_string())
        };
        let counts: Vec<String> = counts
            .iter()
            .map(|(class, n)| format!("{}: {n}", name(*class)))
            .collect();
        writeln!(out, "  classes      {}", counts.join(", "))?;
    }
    let index = match &report.index {
        IndexStatus::Missing => "none".to_owned(),
        IndexStatus::Matches => "matches".to_owned(),
        IndexStatus::Stale { reason } => format!("STALE: {reason}"),
        IndexStatus::Unchecked => "not checked (file damaged)".to_owned(),
    };
    writeln!(out, "  index        {index}")?;
    match &report.error {
        None if report.verified => writeln!(out, "  status       OK")?,
        None => writeln!(out, "  status       OK (CRCs not verified)")?,
        Some(problem) => {
            writeln!(out, "  status       DAMAGED: {}", problem.message)?;
            if let Some(hint) = &report.hint {
                writeln!(out, "  hint         {hint}")?;
            }
        }
    }
    Ok(())
}
