//! Helpers shared by the tests: the binary under test, the TensorFlow interop's Python.

use std::path::PathBuf;

/// The `shardfeed` binary the tests run: this package's, or `$SHARDFEED_BIN` (`cargo xtask
/// ci` runs the whole suite again against the linked `--features cuda` release binary).
pub fn shardfeed_bin() -> PathBuf {
    std::env::var_os("SHARDFEED_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_shardfeed")))
}

/// Runs the binary under test with `args`, waiting for it.
pub fn shardfeed(args: &[&str]) -> std::process::Output {
    std::process::Command::new(shardfeed_bin())
        .args(args)
        .output()
        .expect("the binary under test runs")
}

/// A run's stdout and stderr together, for assertion messages.
pub fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Whether the binary under test was built with `--features cuda` (its `--version` says).
pub fn is_cuda_build() -> bool {
    let output = std::process::Command::new(shardfeed_bin())
        .arg("--version")
        .output()
        .expect("the binary under test runs");
    String::from_utf8_lossy(&output.stdout).contains("(cuda)")
}

/// The Python with TensorFlow that `cargo xtask ci` names in `SHARDFEED_TF_PYTHON`.
pub fn tensorflow_python() -> PathBuf {
    std::env::var_os("SHARDFEED_TF_PYTHON").map(PathBuf::from).expect(
        "SHARDFEED_TF_PYTHON must name a Python with tensorflow installed (cargo xtask ci sets it)",
    )
}

/// Probabilities of the saved model in `run` for a fixed batch of four 32 px images: two runs
/// with equal weights give equal figures.
pub fn probabilities(run: &std::path::Path) -> Vec<Vec<f32>> {
    use shardfeed_model::{Classifier, DeviceKind, ImageBatch, device};
    let classifier = Classifier::load(run, device(DeviceKind::Cpu, false).unwrap()).unwrap();
    let pixels = (0..4 * 32 * 32 * 3)
        .map(|i| ((i * 7919) % 256) as f32 / 255.0)
        .collect();
    classifier.probabilities(&ImageBatch {
        pixels,
        labels: vec![0; 4],
        side: 32,
    })
}
