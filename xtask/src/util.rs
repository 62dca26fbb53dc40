//! Helpers shared by the commands: the workspace root, running commands, finding TensorFlow.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// The workspace root (the parent of `xtask/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent")
        .to_path_buf()
}

/// `cargo` as invoked by the user (respects `$CARGO`), run in the workspace root, without the
/// variables `cargo run` set for xtask itself (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, …): some
/// build scripts (ring's) track them, so a build from xtask would otherwise redo what the same
/// build from a shell had done, burn and all.
pub fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(root());
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&&*name)
        {
            command.env_remove(&*name);
        }
    }
    command
}

/// `$PATH` with `dir` in front.
pub fn path_with(dir: &Path) -> anyhow::Result<std::ffi::OsString> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    Ok(std::env::join_paths(
        std::iter::once(dir.to_path_buf()).chain(std::env::split_paths(&path)),
    )?)
}

/// Runs a command with inherited output; fails when it exits non-zero.
pub fn run(command: &mut Command) -> anyhow::Result<()> {
    eprintln!("$ {}", describe(command));
    let status = command
        .status()
        .with_context(|| format!("cannot start {}", describe(command)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(command));
    }
    Ok(())
}

fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The project's shared reference material (`../shared` beside the checkout), if present.
pub fn shared_dir() -> Option<PathBuf> {
    let shared = std::env::var_os("SHARDFEED_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared"));
    shared.is_dir().then_some(shared)
}

/// A Python that can `import tensorflow`: `$SHARDFEED_TF_PYTHON`, or `.venv/bin/python`
/// (which `.ci/run` creates). `Err` says what was tried.
pub fn tensorflow_python() -> Result<PathBuf, String> {
    let candidate = std::env::var_os("SHARDFEED_TF_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"));
    if !candidate.exists() {
        return Err(format!(
            "{} does not exist (create it with .ci/run, or set SHARDFEED_TF_PYTHON)",
            candidate.display()
        ));
    }
    let imports = Command::new(&candidate)
        .args(["-c", "import tensorflow"])
        .env("TF_CPP_MIN_LOG_LEVEL", "3")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match imports {
        Ok(status) if status.success() => Ok(candidate),
        _ => Err(format!("{} cannot import tensorflow", candidate.display())),
    }
}

/// Says loudly that a check did not run, and why; under CI that is a failure, not a skip.
pub fn skipped(what: &str, why: &str) -> anyhow::Result<()> {
    let banner = "#".repeat(78);
    eprintln!("{banner}\n# SKIPPED: {what}: {why}\n{banner}");
    if in_ci() {
        bail!("CI must run {what}: {why}");
    }
    Ok(())
}

/// Whether we run under CI (`CI` set to anything but `false` or empty).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The total size of the files directly in `dir` (not recursive).
pub fn folder_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        total += entry?.metadata()?.len();
    }
    Ok(total)
}

/// Free bytes on the file system that holds `path`, when the OS says.
pub fn free_disk(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `stats` is a valid, writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return None;
    }
    Some(stats.f_bavail * stats.f_frsize)
}
