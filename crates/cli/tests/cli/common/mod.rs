//! Helpers shared by the TensorFlow interop tests.

use std::path::PathBuf;

/// The Python with TensorFlow that `cargo xtask ci` names in `SHARDFEED_TF_PYTHON`.
pub fn tensorflow_python() -> PathBuf {
    std::env::var_os("SHARDFEED_TF_PYTHON").map(PathBuf::from).expect(
        "SHARDFEED_TF_PYTHON must name a Python with tensorflow installed (cargo xtask ci sets it)",
    )
}
