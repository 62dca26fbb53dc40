//! `shardfeed predict`: a CSV `file,label,probability` (and one column per class with
//! `--all-probs`) for every image, with the training preprocessing.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use shardfeed::predict::{PredictSettings, csv_field, predict};

use crate::model_args::ModelRunArgs;

/// Flags of `shardfeed predict`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folders (their *.jpg / *.jpeg) and JPEG files to classify.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// The run folder written by `shardfeed train`.
    #[arg(long, default_value = "runs/latest")]
    model: PathBuf,
    /// The CSV file to write.
    #[arg(long, default_value = "predictions.csv")]
    out: PathBuf,
    /// Also write every class's probability (a column per class).
    #[arg(long)]
    all_probs: bool,
    /// Stop at the first unusable image instead of skipping it.
    #[arg(long)]
    strict: bool,
    #[command(flatten)]
    run: ModelRunArgs,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let temp = args.out.with_extension("csv.tmp");
    let file = std::fs::File::create(&temp)
        .with_context(|| format!("cannot create {}", temp.display()))?;
    let mut csv = std::io::BufWriter::new(file);
    let mut header_written = false;
    let all_probs = args.all_probs;
    let mut counts = std::collections::HashMap::<String, u64>::new();
    let summary = predict(
        &PredictSettings {
            model: args.model.clone(),
            inputs: args.inputs.clone(),
            batch: args.run.batch,
            jobs: args.run.jobs(),
            device: args.run.device,
            strict: args.strict,
        },
        |p| {
            *counts.entry(p.label.clone()).or_default() += 1;
            if !header_written {
                header_written = true;
                write!(csv, "file,label,probability")?;
                if all_probs {
                    for class in 0..p.probabilities.len() {
                        write!(csv, ",p{class}")?;
                    }
                }
                writeln!(csv)?;
            }
            write!(
                csv,
                "{},{},{:.6}",
                csv_field(&p.file.to_string_lossy()),
                csv_field(&p.label),
                p.probability
            )?;
            if all_probs {
                for value in &p.probabilities {
                    write!(csv, ",{value:.6}")?;
                }
            }
            writeln!(csv)?;
            Ok(())
        },
    )?;
    if !header_written {
        writeln!(csv, "file,label,probability")?;
    }
    csv.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot write {}", temp.display()))?;
    std::fs::rename(&temp, &args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    for (file, reason) in &summary.skipped {
        eprintln!("skipped {}: {reason}", file.display());
    }
    let per_class: Vec<String> = summary
        .classes
        .iter()
        .map(|c| format!("{c} {}", counts.get(c).copied().unwrap_or(0)))
        .collect();
    eprintln!(
        "predicted {} images ({}), skipped {}; wrote {}",
        summary.predicted,
        per_class.join(", "),
        summary.skipped.len(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
