//! The `shardfeed` command line's wiring of the library crates, usable from tests: `train`
//! (`shardfeed-dataset`'s training data into `shardfeed-model`'s `Fit`), `evaluate` and
//! `predict` (dataset pipelines into the model's classifier), and `plot` (the grid and curve
//! pictures). Uses `anyhow`, like the binary; the workflows themselves live in the library
//! crates.

pub mod evaluate;
pub mod plot;
pub mod predict;
pub mod train;
