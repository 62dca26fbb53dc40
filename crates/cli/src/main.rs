//! `shardfeed`: the command line of shardfeed.
//!
//! Subcommands live one per module (`inspect.rs`, `shard_cmd.rs`, …); each parses its flags
//! with clap and calls the library crates. Errors reach `main`, which prints one line
//! (`shardfeed: error: ...`) and exits 1.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Large tensors' memory is reused from step to step instead of page-faulted in again.
#[global_allocator]
static ALLOCATOR: shardfeed_model::BlockCache = shardfeed_model::BlockCache;

mod evaluate_cmd;
mod gen_data_cmd;
mod inspect;
mod model_args;
mod plot_cmd;
mod predict_cmd;
mod shard_cmd;
mod stream_cmd;
mod train_cmd;

/// Turn labelled JPEG folders into TFRecord shards, stream them fast, and train on them.
#[derive(Debug, Parser)]
#[command(name = "shardfeed", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Turn DATA/train/*.jpg into TFRecord shards, .idx files and manifest.json.
    Shard(shard_cmd::Args),
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
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Shard(args) => shard_cmd::run(&args),
        Command::Stream(args) => stream_cmd::run(&args),
        Command::Train(args) => train_cmd::run(&args),
        Command::Evaluate(args) => evaluate_cmd::run(&args),
        Command::Predict(args) => predict_cmd::run(&args),
        Command::Plot(args) => plot_cmd::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::GenData(args) => gen_data_cmd::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("shardfeed: error: {}", one_line(&error));
            ExitCode::FAILURE
        }
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
