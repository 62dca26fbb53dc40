//! `cargo xtask gen-data`, `shard` and `train`: the release `shardfeed` binary with the
//! project's defaults (`data/` → `shards/` → `runs/latest`), so they run the same code as the CLI.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use crate::util::{self, cargo, root};

/// Builds the release `shardfeed` binary and returns its path.
pub fn shardfeed_binary() -> anyhow::Result<PathBuf> {
    util::run(cargo().args(["build", "--release", "--locked", "-p", "shardfeed"]))?;
    Ok(root().join("target/release/shardfeed"))
}

/// `shardfeed gen-data ARGS` (default `--out data`).
pub fn gen_data(args: &[OsString]) -> anyhow::Result<()> {
    let binary = shardfeed_binary()?;
    let mut command = Command::new(binary);
    command.current_dir(root()).arg("gen-data").args(args);
    util::run(&mut command)
}

/// `shardfeed shard data/train --out shards ARGS`.
pub fn shard(args: &[OsString]) -> anyhow::Result<()> {
    let binary = shardfeed_binary()?;
    let mut command = Command::new(binary);
    command
        .current_dir(root())
        .args(["shard", "data/train", "--out", "shards"])
        .args(args);
    util::run(&mut command)
}

/// `shardfeed train shards --out runs/latest ARGS` (a later `--out` wins).
pub fn train(args: &[OsString]) -> anyhow::Result<()> {
    let binary = shardfeed_binary()?;
    let mut command = Command::new(binary);
    command
        .current_dir(root())
        .args(["train", "shards", "--out", "runs/latest"])
        .args(args);
    util::run(&mut command)
}
