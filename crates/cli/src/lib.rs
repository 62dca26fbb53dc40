//! The `shardfeed` command line's library: the wiring behind each subcommand, usable from
//! `xtask` and tests. Uses `anyhow`, like the binary; format, image and pipeline logic stays
//! in the library crates.

pub mod classes;
pub mod evaluate;
pub mod plot;
pub mod predict;
pub mod shard;
pub mod stream;
pub mod synthetic;
pub mod train;
