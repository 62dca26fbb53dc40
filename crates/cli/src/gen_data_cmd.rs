//! `shardfeed gen-data`: a synthetic labelled JPEG folder.

use std::path::PathBuf;
use std::process::ExitCode;

use shardfeed::synthetic::{GenData, generate};

/// Flags of `shardfeed gen-data`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The folder to create (`DIR/train/LABEL.I.jpg`, `DIR/test/I.jpg`).
    #[arg(long, default_value = "data")]
    out: PathBuf,
    /// Labelled training images.
    #[arg(long, default_value_t = 4000)]
    n_train: usize,
    /// Unlabelled test images.
    #[arg(long, default_value_t = 200)]
    n_test: usize,
    /// The seed: the same seed gives the same files.
    #[arg(long, default_value_t = 20240601)]
    seed: u64,
    /// Class names, comma-separated.
    #[arg(long, default_value = "cat,dog", value_delimiter = ',')]
    classes: Vec<String>,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = GenData {
        n_train: args.n_train,
        n_test: args.n_test,
        seed: args.seed,
        classes: args.classes.clone(),
        ..GenData::default()
    };
    generate(&args.out, &config)?;
    eprintln!(
        "wrote {} training and {} test images to {}",
        args.n_train,
        args.n_test,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
