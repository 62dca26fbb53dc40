//! `shardfeed evaluate`: accuracy on a run's validation files, per class, and the confusion
//! matrix; `--json` for scripts.

use std::path::PathBuf;
use std::process::ExitCode;

use shardfeed_dataset::folder::Location;

use shardfeed::evaluate::{EvaluateSettings, evaluate};

use crate::model_args::ModelRunArgs;

/// Flags of `shardfeed evaluate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run folder written by `shardfeed train`.
    #[arg(long, default_value = "runs/latest", value_parser = crate::paths::local())]
    model: PathBuf,
    /// Read the run's validation files from this folder (default: where training read them;
    /// local, or s3://, gs://, az://, http(s)://).
    #[arg(long, value_parser = crate::paths::location())]
    shards: Option<Location>,
    #[command(flatten)]
    run: ModelRunArgs,
    #[command(flatten)]
    keys: crate::record_args::KeyArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let evaluation = evaluate(&EvaluateSettings {
        model: args.model.clone(),
        shards: args.shards.clone(),
        keys: args.keys.keys(),
        batch: args.run.batch,
        jobs: args.run.jobs(),
        device: args.run.device,
        precision: args.run.precision,
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&evaluation)?);
        return Ok(ExitCode::SUCCESS);
    }
    let files = evaluation.files.len();
    let evaluation = &evaluation.figures;
    println!("{} validation images in {files} files", evaluation.images);
    println!("accuracy: {:.2}%", evaluation.accuracy * 100.0);
    let width = evaluation
        .classes
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .max(8);
    for class in &evaluation.per_class {
        println!(
            "  {:<width$}  {:>6.2}%  ({}/{})",
            class.class,
            class.accuracy * 100.0,
            class.correct,
            class.images
        );
    }
    println!("confusion matrix (rows: observed, columns: predicted):");
    print!("  {:<width$}", "");
    for name in &evaluation.classes {
        print!("  {name:>width$}");
    }
    println!();
    for (name, row) in evaluation.classes.iter().zip(&evaluation.confusion) {
        print!("  {name:<width$}");
        for count in row {
            print!("  {count:>width$}");
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}
