//! The seed CNN of shardfeed in burn, and its training loop. The only crate that depends on
//! burn; it reads no files: batches come from any iterator (the input pipeline's, in the CLI).
//!
//! The backend is burn-flex (pure Rust, threads and SIMD through burn's default features),
//! chosen at run time through burn's `Device` (`Device::flex().autodiff()`), so a faster CPU
//! path or CUDA can replace it without touching the model code.

#![deny(missing_docs)]

mod model;
mod training;

pub use burn;
pub use model::{Cnn, outputs_for};
pub use training::{ImageBatch, Metrics, TrainConfig, Trainer};

/// The default training device: burn-flex on the CPU, with autodiff.
pub fn cpu_device() -> burn::prelude::Device {
    burn::prelude::Device::flex().autodiff()
}
