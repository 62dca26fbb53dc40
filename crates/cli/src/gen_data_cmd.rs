//! `shardfeed gen-data`: a synthetic labelled JPEG folder.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use shardfeed_dataset::synthetic::{GenData, generate_with_progress};

/// Flags of `shardfeed gen-data`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The folder to create (`DIR/train/LABEL.I.jpg`, `DIR/test/I.jpg`).
    #[arg(long, default_value = "data", value_parser = crate::paths::local())]
    out: PathBuf,
    /// Labelled training images, 1–10000000.
    #[arg(long, default_value_t = 4000, value_parser = crate::ranges::usize_in(1, 10_000_000))]
    n_train: usize,
    /// Unlabelled test images, 0–10000000.
    #[arg(long, default_value_t = 200, value_parser = crate::ranges::usize_in(0, 10_000_000))]
    n_test: usize,
    /// The seed: the same seed gives the same files.
    #[arg(long, default_value_t = 20240601)]
    seed: u64,
    /// Class names, comma-separated.
    #[arg(long, default_value = "cat,dog", value_delimiter = ',')]
    classes: Vec<String>,
    /// Smallest side of a generated image, in pixels, 1–4096.
    #[arg(long, default_value_t = 220, value_parser = crate::ranges::u32_in(1, crate::ranges::MAX_SIZE))]
    min_side: u32,
    /// Largest side of a generated image, in pixels, 1–4096.
    #[arg(long, default_value_t = 500, value_parser = crate::ranges::u32_in(1, crate::ranges::MAX_SIZE))]
    max_side: u32,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    // Each side is at least 1 already (its range is checked when the flags are parsed).
    if args.min_side > args.max_side {
        anyhow::bail!(
            "--min-side {} and --max-side {}: need 1 <= min-side <= max-side",
            args.min_side,
            args.max_side
        );
    }
    let config = GenData {
        n_train: args.n_train,
        n_test: args.n_test,
        seed: args.seed,
        classes: args.classes.clone(),
        sides: (args.min_side, args.max_side),
    };
    let total = (args.n_train + args.n_test) as u64;
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {human_pos}/{human_len} images  ETA {eta}",
            )
            .expect("a valid template"),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    generate_with_progress(&args.out, &config, |n| bar.set_position(n))?;
    bar.finish_and_clear();
    println!(
        "wrote {} training and {} test {} to {}",
        crate::fmt::thousands(args.n_train as u64),
        crate::fmt::thousands(args.n_test as u64),
        if args.n_test == 1 { "image" } else { "images" },
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
