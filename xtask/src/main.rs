//! `cargo xtask`: the project's automation, an ordinary Rust program (no shell scripts).
//!
//! One module per command: `ci` runs everything CI runs, cheapest first; `tidy` checks the
//! repository itself; `bench` measures against the TensorFlow baseline and `scale` runs 10k–250k images, both
//! writing `docs/BENCHMARKS.md` (through `report`); `fuzz` runs the
//! `cargo fuzz` targets on stable Rust; `data` runs `gen-data`, `shard` and `train` through the
//! release `shardfeed` binary; `demo` runs the whole workflow through it; `gpu` sets up, links
//! and packs the `--features cuda` build; `python` builds and tests the wheel (`old_linux`: on
//! Debian 11 in a chroot). Shared helpers live in `util`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod ci;
mod data;
mod demo;
mod deps;
mod fuzz;
mod gpu;
mod layering;
mod old_linux;
mod python;
mod report;
mod scale;
mod storage;
mod tidy;
mod util;

/// shardfeed's project automation.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Everything CI runs, cheapest first: fmt, tidy, clippy, tests, Python, linked cuda build, TensorFlow interop.
    Ci(ci::Args),
    /// Check the repository itself: crate docs, README lines, no todo!/dbg!, small fixtures.
    Tidy,
    /// The whole workflow on generated data (or `--data DIR`): shard, stream, train, evaluate, predict, plot.
    Demo(demo::Args),
    /// Benchmarks, with the TensorFlow baseline in the same run where it is installed.
    Bench(bench::Args),
    /// Generate, shard and stream 10k/50k/250k images: wall time, images/s, peak RSS → docs/BENCHMARKS.md.
    Scale(scale::Args),
    /// Run the fuzz targets (needs no nightly; builds with coverage flags on stable).
    Fuzz(fuzz::Args),
    /// Builds the Python wheel (maturin + zig, from PyPI; manylinux_2_28) into target/wheels/.
    Wheel(python::Args),
    /// Installs the local S3 API server the tests use (moto, from PyPI) into target/s3-venv.
    S3Server,
    /// Puts PyPI's static LLVM SDK where burn-cuda's build looks (target/cuda-setup): run before `--features cuda`.
    CudaSetup,
    /// cuda-setup, then links the `--features cuda` binary (copied to target/cuda/shardfeed).
    CudaBuild {
        /// The cargo profile: `release`, or CI's `cuda-ci` (GPU-only crates unoptimised).
        #[arg(long, default_value = "release")]
        profile: String,
    },
    /// Packs target/gpu-check/ (stripped cuda binary, libdevice, run.sh) for a GPU machine without network.
    GpuCheck,
    /// Generate a synthetic dataset: `shardfeed gen-data` (default `--out data`).
    GenData {
        /// Flags for `shardfeed gen-data` (`--n-train`, `--n-test`, `--seed`, `--classes`, `--out`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Shard `data/train` into `shards/`: `shardfeed shard` with the defaults.
    Shard {
        /// More flags for `shardfeed shard` (`--overwrite`, `--jobs`, …).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Train on `shards/` into `runs/latest`: `shardfeed train` with the defaults.
    Train {
        /// More flags for `shardfeed train` (`--epochs`, `--resume`, `--out`, …).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Ci(args) => ci::run(&args),
        Task::Tidy => tidy::run(),
        Task::Demo(args) => demo::run(&args),
        Task::Bench(args) => bench::run(&args),
        Task::Fuzz(args) => fuzz::run(&args),
        Task::Wheel(args) => python::wheel_cmd(&args),
        Task::S3Server => storage::moto_server().map(|path| println!("{}", path.display())),
        Task::CudaSetup => gpu::cuda_setup(),
        Task::CudaBuild { profile } => {
            gpu::cuda_build(&profile).map(|path| println!("{}", path.display()))
        }
        Task::GpuCheck => gpu::gpu_check(),
        Task::Scale(args) => scale::run(&args),
        Task::GenData { args } => data::gen_data(&args),
        Task::Shard { args } => data::shard(&args),
        Task::Train { args } => data::train(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
