//! `shardfeed predict`: a CSV `file,label,probability` (and one column per class with
//! `--all-probs`) for every image, with the training preprocessing.

use crate::fmt::escaped;
use std::path::PathBuf;
use std::process::ExitCode;

use shardfeed_dataset::folder::Location;

use shardfeed::predict::{PredictSettings, predict};

use crate::model_args::ModelRunArgs;

/// Flags of `shardfeed predict`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folders (their *.jpg, *.jpeg, *.png, *.webp, *.bmp, *.gif, *.tif) and image files to
    /// classify (local, or in s3://, gs://, az://, http(s)://).
    #[arg(required = true, value_parser = crate::paths::location())]
    inputs: Vec<Location>,
    /// The run folder written by `shardfeed train`.
    #[arg(long, default_value = "runs/latest", value_parser = crate::paths::local())]
    model: PathBuf,
    /// The CSV file to write.
    #[arg(long, default_value = "predictions.csv", value_parser = crate::paths::local())]
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
    let mut csv = csv::Writer::from_writer(Vec::new());
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
            precision: args.run.precision,
            strict: args.strict,
        },
        |p| {
            *counts.entry(p.label.clone()).or_default() += 1;
            if !header_written {
                header_written = true;
                csv.write_record(header(all_probs.then_some(p.probabilities.len())))?;
            }
            let mut row = vec![
                p.file.to_string_lossy().into_owned(),
                p.label.clone(),
                format!("{:.6}", p.probability),
            ];
            if all_probs {
                row.extend(p.probabilities.iter().map(|v| format!("{v:.6}")));
            }
            csv.write_record(row)?;
            Ok(())
        },
    )?;
    if summary.predicted == 0 {
        for (file, reason) in &summary.skipped {
            eprintln!(
                "skipped {}",
                escaped(&format!("{}: {reason}", file.display()))
            );
        }
        anyhow::bail!(
            "no image could be classified: {} skipped (nothing written to {})",
            summary.skipped.len(),
            args.out.display()
        );
    }
    let bytes = csv.into_inner().map_err(|e| e.into_error())?;
    shardfeed_record_format::atomic::write_atomic(&args.out, &bytes)?;
    for (file, reason) in &summary.skipped {
        eprintln!(
            "skipped {}",
            escaped(&format!("{}: {reason}", file.display()))
        );
    }
    let per_class: Vec<String> = summary
        .classes
        .iter()
        .map(|c| format!("{c} {}", counts.get(c).copied().unwrap_or(0)))
        .collect();
    println!(
        "predicted {} ({}), skipped {}; wrote {}",
        crate::fmt::count(summary.predicted, "image"),
        per_class.join(", "),
        summary.skipped.len(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `file,label,probability`, then `p0,p1,…` for `classes` classes.
fn header(classes: Option<usize>) -> Vec<String> {
    let mut columns = vec![
        "file".to_owned(),
        "label".to_owned(),
        "probability".to_owned(),
    ];
    columns.extend((0..classes.unwrap_or(0)).map(|class| format!("p{class}")));
    columns
}
