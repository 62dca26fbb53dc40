//! The flags every command that runs a saved model takes (`evaluate`, `predict`).

use shardfeed_input_pipeline::Parallelism;
use shardfeed_model::DeviceKind;
use shardfeed_model::fast::Precision;

/// How a saved model is run: batch size, decode threads and device.
#[derive(Debug, clap::Args)]
pub struct ModelRunArgs {
    /// Images per forward pass, 1–65536.
    #[arg(long, default_value_t = 32, value_parser = crate::ranges::usize_in(1, crate::ranges::MAX_BATCH))]
    pub batch: usize,
    /// Most decode threads, 1–1024 (default: one per core); how many run is tuned while running.
    #[arg(long, value_parser = crate::ranges::usize_in(1, crate::ranges::MAX_JOBS))]
    jobs: Option<usize>,
    /// Where the model runs: cpu, or cuda (needs a build with the `cuda` feature).
    #[arg(long, default_value = "cpu", value_name = "cpu|cuda")]
    pub device: DeviceKind,
    /// The CPU kernels' arithmetic: f32, or bf16 (needs AVX512-BF16), whatever the model was
    /// trained in.
    #[arg(long, default_value = "f32", value_name = "f32|bf16", value_parser = crate::ranges::precision)]
    pub precision: Precision,
}

impl ModelRunArgs {
    /// The decode threads as the pipeline takes them.
    pub fn jobs(&self) -> Parallelism {
        crate::ranges::tuned_jobs(self.jobs)
    }
}
