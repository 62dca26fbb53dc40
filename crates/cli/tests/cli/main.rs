//! The `shardfeed` package's tests in one binary (one link instead of twelve, as ripgrep
//! lays its tests out): each module tests one command or property. `shard_memory.rs` stays
//! a binary of its own: it installs a counting global allocator, which would count every
//! other test running beside it.

mod common;
mod generated;

mod augment;
mod cli;
mod damage;
mod flags;
mod jpeg_kinds;
mod mistakes;
mod other_writers;
mod precision;
mod readme;
mod resize;
mod robustness;
mod shard;
mod stream;
mod synthetic;
mod tensorflow;
mod tf_records;
mod tf_resize;
mod train;
