//! The seed CNN of shardfeed in burn, its training run ([`fit`]: epochs, validation,
//! `metrics.csv`, checkpoints, resume), evaluation ([`evaluate`]) and inference
//! ([`Classifier`]). The only crate that depends on burn; it reads no image or record files:
//! batches come from any source (`shardfeed-dataset`'s pipelines, in the CLI).
//!
//! The backend is burn-flex (pure Rust, threads and SIMD through burn's default features),
//! chosen in one place, [`device`], through burn's `Device`, so a faster CPU path or CUDA can
//! replace it without touching the model code.
//!
//! ```
//! use shardfeed_model::{ImageBatch, TrainConfig, Trainer, cpu_device};
//!
//! let mut trainer = Trainer::new(TrainConfig::default(), cpu_device());
//! let batch = ImageBatch { pixels: vec![0.5; 2 * 8 * 8 * 3], labels: vec![0, 1], side: 8 };
//! let metrics = trainer.step(&batch);
//! assert_eq!(metrics.images, 2);
//! assert_eq!(trainer.global_step(), 1);
//! ```

#![deny(missing_docs)]

mod checkpoint;
mod error;
pub mod evaluate;
pub mod fast;
pub mod fit;
pub mod gpu;
mod inference;
mod metrics;
mod model;
mod training;

pub use burn;
pub use checkpoint::{Progress, has_checkpoint, state_path};
pub use error::ModelError;
pub use inference::{
    CARD_FILE, Classifier, MODEL_FILE, ModelCard, Prediction, predicted, save_model,
};
pub use model::{Cnn, outputs_for};
/// The global allocator that training binaries should declare (see its documentation).
pub use shardfeed_cpu_kernels::BlockCache;
pub use shardfeed_image_prep::Preprocessing;
pub use training::{ImageBatch, Metrics, TrainConfig, Trainer};

use burn::prelude::Device;

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceKind {
    /// burn-flex on the CPU.
    #[default]
    Cpu,
    /// burn-cuda on the first GPU (needs the `cuda` cargo feature).
    Cuda,
}

impl std::str::FromStr for DeviceKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceKind::Cpu),
            "cuda" => Ok(DeviceKind::Cuda),
            other => Err(format!("unknown device {other:?} (cpu or cuda)")),
        }
    }
}

/// The device of `kind`, with autodiff for training when `training`.
///
/// Fails with one line naming the `cuda` feature when CUDA is asked of a build without it,
/// and with one line naming what is missing (driver, GPU, libdevice: [`gpu::check_cuda`])
/// when this machine cannot run it.
pub fn device(kind: DeviceKind, training: bool) -> Result<Device, String> {
    let device = match kind {
        DeviceKind::Cpu => Device::flex(),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => {
            gpu::check_cuda().map_err(|e| e.to_string())?;
            Device::cuda(0)
        }
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => {
            return Err("this shardfeed was built without CUDA: rebuild with \
                        `cargo build --release -p shardfeed --features cuda` (see the README's GPU section)"
                .to_owned());
        }
    };
    Ok(if training { device.autodiff() } else { device })
}

/// The default training device: burn-flex on the CPU, with autodiff.
pub fn cpu_device() -> Device {
    Device::flex().autodiff()
}
