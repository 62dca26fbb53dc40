//! `shardfeed inspect`: what is in TFRecord files, and whether they are intact.

use crate::fmt::escaped;
use std::io::Write;

use std::process::ExitCode;

use shardfeed_dataset::folder::Location;

use shardfeed_dataset::inspect::{IndexStatus, Report, inspect_file_with};
use shardfeed_record_format::{Compression, ReaderOptions};

/// Flags of `shardfeed inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// TFRecord files, or directories whose `*.tfrec` files are inspected.
    #[arg(required = true, value_name = "FILE", value_parser = crate::paths::location())]
    paths: Vec<Location>,
    /// How the files are compressed (never guessed from the name; default: what the
    /// `manifest.json` beside a file says, else none).
    #[arg(long, value_name = "none|gzip|zlib")]
    compression: Option<Compression>,
    /// Skip CRC checks (faster; damaged payloads then go unnoticed).
    #[arg(long)]
    no_verify: bool,
    /// The int64 feature counted as the class (default: `class`, else TensorFlow's
    /// `image/class/label`).
    #[arg(long, value_name = "NAME")]
    label_key: Option<String>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    // inspect looks at the files as they are (it is how a folder that disagrees with its
    // manifest is diagnosed): the folder's warnings, and the mismatch, as a warning.
    let resolved = shardfeed_dataset::folder::resolve(&args.paths, true)?;
    for folder in resolved.folders() {
        let mut warnings = folder.warnings();
        if let Err(mismatch) = folder.checked_shards(false) {
            warnings.push(mismatch.to_string());
        }
        for warning in warnings {
            eprintln!("shardfeed: warning: {}", escaped(&warning));
        }
    }
    let reports: Vec<Report> = resolved
        .files
        .iter()
        .map(|file| {
            let options = ReaderOptions {
                compression: crate::compression::of_folder_of(&resolved, file, args.compression)?,
                verify: !args.no_verify,
                ..ReaderOptions::default()
            };
            let mut report = inspect_file_with(file, options, args.label_key.as_deref())?;
            report.class_names = resolved.manifest_of(file).map(|m| m.classes.clone());
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

fn print_report(out: &mut impl Write, report: &Report) -> std::io::Result<()> {
    writeln!(out, "{}", escaped(&report.path.display().to_string()))?;
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
        const SHOWN: usize = 32;
        let mut shown: Vec<String> = counts
            .iter()
            .take(SHOWN)
            .map(|(class, n)| format!("{}: {n}", name(*class)))
            .collect();
        if counts.len() > SHOWN || report.more_classes {
            shown.push(format!(
                "… {}{} more class values",
                counts.len().saturating_sub(SHOWN),
                if report.more_classes { "+" } else { "" }
            ));
        }
        writeln!(out, "  classes      {}", shown.join(", "))?;
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
            writeln!(out, "  status       DAMAGED: {}", escaped(&problem.message))?;
            if let Some(hint) = &report.hint {
                writeln!(out, "  hint         {hint}")?;
            }
        }
    }
    Ok(())
}
