//! `shardfeed`: the command line of shardfeed.
//!
//! Subcommands live one per module (`inspect.rs`, `shard_cmd.rs`, …); each parses its flags
//! with clap and calls the library crates. Errors reach `main`, which prints one line
//! (`shardfeed: error: ...`) and exits 1; a usage error (a bad flag or value) prints one such
//! line and a hint and exits 2; a panic anywhere is caught and reported the same way, exit 1;
//! an interrupted run exits 130.

use crate::fmt::escaped;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Large tensors' memory is reused from step to step instead of page-faulted in again.
#[global_allocator]
static ALLOCATOR: shardfeed_model::BlockCache = shardfeed_model::BlockCache;

mod compression;
mod evaluate_cmd;
mod fmt;
mod gen_data_cmd;
mod inspect;
mod model_args;
mod paths;
mod plot_cmd;
mod predict_cmd;
mod ranges;
mod record_args;
mod shard_cmd;
mod stream_cmd;
mod stream_json;
mod train_cmd;

/// `--version`: the package version, and `(cuda)` in a build with `--device cuda`.
const VERSION: &str = if cfg!(feature = "cuda") {
    concat!(env!("CARGO_PKG_VERSION"), " (cuda)")
} else {
    env!("CARGO_PKG_VERSION")
};

/// Turn labelled JPEG folders into TFRecord shards, stream them fast, and train on them.
#[derive(Debug, Parser)]
#[command(name = "shardfeed", version = VERSION, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Turn DATA/train/*.jpg into TFRecord shards, .idx files and manifest.json.
    Shard(shard_cmd::Args),
    /// Check the parts of a shard run split over workers (--num-workers) and write manifest.json.
    ShardMerge(shard_cmd::MergeArgs),
    /// Stream shards through the full read pipeline (no model) and measure each stage.
    Stream(stream_cmd::Args),
    /// Train the seed CNN on shards: validation split by files, a line per epoch, the model saved.
    Train(train_cmd::Args),
    /// Accuracy of a trained run on its validation files, per class, and the confusion matrix.
    Evaluate(evaluate_cmd::Args),
    /// Classify JPEG files with a trained run (training's preprocessing): a CSV file,label,probability.
    Predict(predict_cmd::Args),
    /// Draw an 8×4 grid of validation (obs/est) or test (est) images, and the training curves.
    Plot(plot_cmd::Args),
    /// Check TFRecord files: record count, features, classes, CRCs; exit 1 if any is damaged.
    Inspect(inspect::Args),
    /// Generate a synthetic labelled JPEG folder (DIR/train, DIR/test) for trying things out.
    GenData(gen_data_cmd::Args),
}

fn main() -> ExitCode {
    // burn materialises a loaded optimizer state on its *default* device, which in a CUDA
    // build is the GPU: `train --resume` on the CPU would start cubecl's CUDA runtime and
    // panic without a driver. The state moves to each parameter's device at the next step, so
    // the CPU is the right default whatever `--device` says (a user's BURN_DEVICE is kept).
    if cfg!(feature = "cuda") && std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: the first statement of `main`, before any thread is started.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    // A panic (a bug) becomes one error line, not a backtrace dump: the hook stays silent
    // and the payload is reported below.
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cli)))
        .unwrap_or_else(|payload| {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown cause".to_owned());
            Err(anyhow::anyhow!(
                "internal error: {message} (please report it, with the command that caused it)"
            ))
        });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("shardfeed: error: {}", escaped(&one_line(&error)));
            ExitCode::FAILURE
        }
    }
}

/// `--help` and `--version` print and exit 0; anything else is a usage error: one
/// `shardfeed: error:` line, a hint, exit 2.
fn usage_error(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = error.print();
        return if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let text = error.render().to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ");
    let usage = text
        .lines()
        .find(|l| l.starts_with("Usage: "))
        .map(|l| format!("\n{l}"))
        .unwrap_or_default();
    eprintln!("shardfeed: error: {first}{usage}\nFor more information, try '--help'.");
    ExitCode::from(2)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Shard(args) => shard_cmd::run(&args),
        Command::ShardMerge(args) => shard_cmd::merge(&args),
        Command::Stream(args) => stream_cmd::run(&args),
        Command::Train(args) => train_cmd::run(&args),
        Command::Evaluate(args) => evaluate_cmd::run(&args),
        Command::Predict(args) => predict_cmd::run(&args),
        Command::Plot(args) => plot_cmd::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::GenData(args) => gen_data_cmd::run(&args),
    }
}

/// The error and its causes on one line, `outer: inner: …`, leaving out a cause whose text the
/// line already holds (library errors often include their source's message, `io::Error`'s
/// "No space left on device" for one, which anyhow's `{:#}` would print twice).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.is_empty() {
            line = text;
        } else if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_cause_already_in_the_message_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device");
        let error = anyhow::Error::new(io).context("i/o error in f: No space left on device");
        assert_eq!(one_line(&error), "i/o error in f: No space left on device");
        let error = anyhow::anyhow!("inner").context("outer");
        assert_eq!(one_line(&error), "outer: inner");
    }
}
