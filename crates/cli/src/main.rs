//! `shardfeed`: the command line of shardfeed.
//!
//! Subcommands live one per module; each parses its flags with clap and calls the library
//! crates. Errors reach `main`, which prints one line (`shardfeed: error: ...`) and exits 1.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod inspect;

/// Turn labelled JPEG folders into TFRecord shards, stream them fast, and train on them.
#[derive(Debug, Parser)]
#[command(name = "shardfeed", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check TFRecord files: record count, features, classes, CRCs; exit 1 if any is damaged.
    Inspect(inspect::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("shardfeed: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
