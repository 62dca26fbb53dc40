//! The `--features cuda` build and its check on a GPU machine.
//!
//! `cargo xtask cuda-setup` puts a static LLVM SDK from PyPI where tracel-llvm-bundler (the
//! build-dependency of burn-cuda's LLVM backend) looks before it downloads one: under
//! `$XDG_DATA_HOME/tracel/`, which `.cargo/config.toml` points at `target/cuda-setup/xdg-data`.
//! `cargo xtask cuda-build` links the release binary with it and keeps a copy at
//! `target/cuda/shardfeed` (a later CPU release build replaces `target/release/shardfeed`).
//! `cargo xtask gpu-check` packs what a GPU machine without network needs into
//! `target/gpu-check/` (the stripped binary, xz-compressed; libdevice from PyPI's
//! `nvidia-cuda-nvcc-cu12`; `run.sh`), for the `device` tool to carry and run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::util::{self, cargo};

/// PyPI's static LLVM SDK: the base package and the one that adds the NVPTX backend. Both
/// unpack into `mlc_llvm_static/static/`, a prefix with `bin/llvm-config` (a Python script).
const LLVM_SDK: [(&str, &str); 2] = [
    (
        "mlc-llvm-static==23.1.1.post0",
        "mlc_llvm_static-23.1.1.post0-",
    ),
    (
        "mlc-llvm-static-extra-targets==23.1.1.post0",
        "mlc_llvm_static_extra_targets-23.1.1.post0-",
    ),
];

/// The folder tracel-llvm-bundler 23.1.0-4 looks for under `$XDG_DATA_HOME/tracel/`, and the
/// marker that tells it the SDK is installed.
const BUNDLER_DIR: &str = "tracel-llvm-23.1.0-4";
const BUNDLER_MARKER: &str = ".tracel-llvm-installed";

/// libdevice.10.bc, the math library cubecl's NVPTX kernels link (exp, log, tanh), as NVIDIA
/// publishes it on PyPI.
const NVCC: (&str, &str) = (
    "nvidia-cuda-nvcc-cu12==12.8.93",
    "nvidia_cuda_nvcc_cu12-12.8.93-",
);
const LIBDEVICE_IN_WHEEL: &str = "nvidia/cuda_nvcc/nvvm/libdevice/libdevice.10.bc";

/// The script `gpu-check` packs (it runs on the GPU machine).
const RUN_SH: &str = include_str!("gpu_check.sh");

/// `target/cuda-setup`.
fn setup_dir() -> PathBuf {
    util::root().join("target/cuda-setup")
}

/// Where the bundler looks: must match `.cargo/config.toml`'s `XDG_DATA_HOME`.
fn bundler_prefix() -> PathBuf {
    setup_dir().join("xdg-data/tracel").join(BUNDLER_DIR)
}

/// A venv's Python for pip and unzipping (`target/pytools`, shared with the wheel build).
fn tools_python() -> anyhow::Result<PathBuf> {
    let dir = util::root().join("target/pytools");
    let python = dir.join("bin/python");
    if !python.exists() {
        util::run(Command::new("python3").args(["-m", "venv"]).arg(&dir))?;
    }
    Ok(python)
}

/// The wheel in `dir` whose file name starts with `prefix`, downloaded by pip if absent.
fn wheel(
    python: &Path,
    dir: &Path,
    (requirement, prefix): (&str, &str),
) -> anyhow::Result<PathBuf> {
    let find = || -> anyhow::Result<Option<PathBuf>> {
        if !dir.exists() {
            return Ok(None);
        }
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name.starts_with(prefix) && name.ends_with(".whl") {
                return Ok(Some(path));
            }
        }
        Ok(None)
    };
    if let Some(found) = find()? {
        return Ok(found);
    }
    util::run(
        Command::new(python)
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--no-deps", "--only-binary", ":all:", "--dest"])
            .arg(dir)
            .arg(requirement),
    )?;
    find()?.with_context(|| format!("pip downloaded no {prefix}*.whl into {}", dir.display()))
}

/// `llvm-config --version` of the installed SDK, if it runs.
fn llvm_version(prefix: &Path) -> Option<String> {
    let output = Command::new(prefix.join("bin/llvm-config"))
        .arg("--version")
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// `cargo xtask cuda-setup`: idempotent; offline once the wheels are in
/// `target/cuda-setup/wheels`.
pub fn cuda_setup() -> anyhow::Result<()> {
    let prefix = bundler_prefix();
    // llvm-config is a Python ≥ 3.10 script run as `python3`.
    let python_ok = Command::new("python3")
        .args(["-c", "import sys; sys.exit(sys.version_info < (3, 10))"])
        .status()
        .is_ok_and(|s| s.success());
    if !python_ok {
        bail!("the LLVM SDK's llvm-config needs python3 ≥ 3.10 on PATH");
    }
    if prefix.join(BUNDLER_MARKER).exists()
        && let Some(version) = llvm_version(&prefix)
    {
        eprintln!(
            "xtask cuda-setup: LLVM {version} already at {}",
            prefix.display()
        );
        return Ok(());
    }
    let started = Instant::now();
    let dir = setup_dir();
    let python = tools_python()?;
    let wheels: Vec<PathBuf> = LLVM_SDK
        .into_iter()
        .map(|w| wheel(&python, &dir.join("wheels"), w))
        .collect::<anyhow::Result<_>>()?;
    let partial = dir.join("llvm.partial");
    let llvm = dir.join("llvm");
    for old in [&partial, &llvm] {
        if old.exists() {
            std::fs::remove_dir_all(old)
                .with_context(|| format!("cannot clear {}", old.display()))?;
        }
    }
    for wheel in &wheels {
        util::run(
            Command::new(&python)
                .args(["-m", "zipfile", "-e"])
                .arg(wheel)
                .arg(&partial),
        )?;
    }
    // Zip archives keep no permission bits: the tools must be executable.
    let bin = partial.join("mlc_llvm_static/static/bin");
    for entry in std::fs::read_dir(&bin).with_context(|| format!("{} missing", bin.display()))? {
        let path = entry?.path();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::rename(&partial, &llvm)?;
    let parent = prefix.parent().expect("has a parent");
    std::fs::create_dir_all(parent)?;
    if prefix.symlink_metadata().is_ok() {
        std::fs::remove_file(&prefix)?;
    }
    std::os::unix::fs::symlink("../../llvm/mlc_llvm_static/static", &prefix)?;
    let version = llvm_version(&prefix)
        .with_context(|| format!("{}/bin/llvm-config does not run", prefix.display()))?;
    if !version.starts_with("23.") {
        bail!("llvm-config says LLVM {version}; the bundler needs LLVM 23");
    }
    std::fs::write(prefix.join(BUNDLER_MARKER), b"")?;
    eprintln!(
        "xtask cuda-setup: LLVM {version} from PyPI at {} ({:.0} MB of libraries, {:.0} s)",
        prefix.display(),
        util::folder_bytes(&llvm.join("mlc_llvm_static/static/lib"))? as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `cargo xtask cuda-build [--profile P]`: cuda-setup, then the linked binary in `profile`
/// (`release` by default; CI's `cuda-ci`, see `Cargo.toml`); returns the copy at
/// `target/cuda/shardfeed` (`target/cuda/<profile>/shardfeed` for another profile).
pub fn cuda_build(profile: &str) -> anyhow::Result<PathBuf> {
    cuda_setup()?;
    let started = Instant::now();
    util::run(cargo().args([
        "build",
        "--profile",
        profile,
        "--locked",
        "-p",
        "shardfeed",
        "--features",
        "cuda",
    ]))?;
    let built = util::root().join("target").join(profile).join("shardfeed");
    let copy = match profile {
        "release" => util::root().join("target/cuda/shardfeed"),
        other => util::root().join(format!("target/cuda/{other}/shardfeed")),
    };
    std::fs::create_dir_all(copy.parent().expect("has a parent"))?;
    // Copied beside it and renamed: the old copy may be running (a test, a check).
    let partial = copy.with_extension("partial");
    std::fs::copy(&built, &partial)
        .with_context(|| format!("cannot copy {} to {}", built.display(), partial.display()))?;
    std::fs::rename(&partial, &copy)?;
    let version = Command::new(&copy).arg("--version").output()?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    if !version.ends_with("(cuda)") {
        bail!("{} says {version:?}, not a cuda build", copy.display());
    }
    eprintln!(
        "xtask cuda-build: linked {version} ({profile} profile) at {} ({:.0} MB) in {:.1} min",
        copy.display(),
        std::fs::metadata(&copy)?.len() as f64 / 1e6,
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(copy)
}

/// `cargo xtask gpu-check`: builds, then packs `target/gpu-check/`.
pub fn gpu_check() -> anyhow::Result<()> {
    let binary = cuda_build("release")?;
    let out = util::root().join("target/gpu-check");
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    std::fs::create_dir_all(&out)?;
    let stripped = out.join("shardfeed");
    util::run(Command::new("strip").arg("-o").arg(&stripped).arg(&binary))?;
    util::run(Command::new("xz").args(["-6", "-T0", "-f"]).arg(&stripped))?;

    let python = tools_python()?;
    let nvcc = wheel(&python, &setup_dir().join("wheels"), NVCC)?;
    let extract = format!(
        "import sys, zipfile; open(sys.argv[2], 'wb').write(zipfile.ZipFile(sys.argv[1]).read({LIBDEVICE_IN_WHEEL:?}))"
    );
    util::run(
        Command::new(&python)
            .args(["-c", &extract])
            .arg(&nvcc)
            .arg(out.join("libdevice.10.bc")),
    )?;
    let script = out.join("run.sh");
    std::fs::write(&script, RUN_SH)?;
    let bytes = util::folder_bytes(&out)?;
    eprintln!(
        "xtask gpu-check: packed {} ({:.1} MiB; the device tool carries 64 MiB)\n\
         run it on the GPU machine: bash target/gpu-check/run.sh (figures land in $OUT or \
         target/gpu-check/out); GPU_CHECK_DEVICE=cpu runs the same steps on the CPU here",
        out.display(),
        bytes as f64 / (1 << 20) as f64
    );
    if bytes > 64 << 20 {
        bail!(
            "{} is over the 64 MiB the device tool carries",
            out.display()
        );
    }
    Ok(())
}
