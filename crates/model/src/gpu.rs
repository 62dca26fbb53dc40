//! Whether `--device cuda` can run on this machine, asked before burn-cuda is touched: burn
//! (through cubecl and cudarc) panics in a worker thread when the driver is missing, and fails
//! at the first `exp` or `log` kernel when libdevice is. [`check_cuda`] names which of the
//! three is missing (the driver's `libcuda.so.1`, a GPU, `libdevice.10.bc`) in one line.

use std::path::{Path, PathBuf};

/// Where cubecl's LLVM backend looks for a CUDA toolkit when `CUDA_PATH` is not set (the same
/// list, in the same order: see `cubecl-llvm`'s `nvptx/libdevice.rs`).
pub const CUDA_ROOTS: [&str; 4] = ["/usr/local/cuda", "/opt/cuda", "/usr/lib/cuda", "/usr"];

/// The driver API version this build's CUDA bindings were generated for (cudarc's
/// `CUDARC_CUDA_VERSION`, `12080` = 12.8), set in `.cargo/config.toml`.
pub const BUILT_FOR_CUDA: Option<&str> = option_env!("CUDARC_CUDA_VERSION");

/// Why CUDA cannot run here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CudaUnavailable {
    /// The driver library could not be loaded.
    #[error(
        "CUDA is unavailable: no NVIDIA driver ({library} could not be loaded: {reason}); \
         install the NVIDIA driver, or add the folder holding libcuda.so.1 to LD_LIBRARY_PATH"
    )]
    NoDriver {
        /// The library names tried.
        library: String,
        /// The loader's message for the last one.
        reason: String,
    },
    /// The driver is there and sees no GPU.
    #[error("CUDA is unavailable: the NVIDIA driver found no GPU ({detail})")]
    NoGpu {
        /// What the driver said.
        detail: String,
    },
    /// The driver is older than the CUDA version this binary was built for.
    #[error(
        "CUDA is unavailable: the NVIDIA driver supports CUDA {driver}, this shardfeed was \
         built for CUDA {built}: update the driver, or rebuild with CUDARC_CUDA_VERSION set to \
         the driver's version (see README, GPU)"
    )]
    DriverTooOld {
        /// The driver's CUDA version, `major.minor`.
        driver: String,
        /// The build's, `major.minor`.
        built: String,
    },
    /// A driver call failed.
    #[error("CUDA is unavailable: the NVIDIA driver's {call} failed with {code} ({name})")]
    Driver {
        /// The driver function.
        call: &'static str,
        /// Its `CUresult`.
        code: i32,
        /// The result's name, from `cuGetErrorName`.
        name: String,
    },
    /// `libdevice.10.bc`, the math library burn's GPU kernels link, is missing.
    #[error(
        "CUDA is unavailable: libdevice.10.bc (the GPU math library the kernels link) is not in \
         {searched}; set CUDA_PATH to a CUDA toolkit, or `pip install nvidia-cuda-nvcc-cu12` and \
         set CUDA_PATH to its site-packages/nvidia/cuda_nvcc folder"
    )]
    NoLibdevice {
        /// The places looked in.
        searched: String,
    },
}

/// The path of `libdevice.10.bc` as cubecl's LLVM backend finds it: under `$CUDA_PATH` when
/// that is set (and nowhere else), otherwise under the first of `roots` that has an
/// `nvvm/libdevice` folder.
pub fn libdevice(cuda_path: Option<&Path>, roots: &[&Path]) -> Result<PathBuf, CudaUnavailable> {
    let file = |root: &Path| root.join("nvvm").join("libdevice").join("libdevice.10.bc");
    let root = match cuda_path {
        Some(root) => Some(root.to_path_buf()),
        None => roots
            .iter()
            .find(|root| root.join("nvvm").join("libdevice").is_dir())
            .map(|root| root.to_path_buf()),
    };
    if let Some(path) = root.as_deref().map(file).filter(|path| path.is_file()) {
        return Ok(path);
    }
    let searched = match cuda_path {
        Some(root) => format!("{} (CUDA_PATH)", file(root).display()),
        None => roots
            .iter()
            .map(|root| file(root).display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    };
    Err(CudaUnavailable::NoLibdevice { searched })
}

/// `12080` → `12.8`.
#[cfg(any(feature = "cuda", test))]
fn version_text(version: i32) -> String {
    format!("{}.{}", version / 1000, (version % 1000) / 10)
}

/// What [`check_cuda`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CudaReady {
    /// GPUs the driver sees.
    pub devices: i32,
    /// The driver's CUDA version, `major.minor`.
    pub driver: String,
    /// The `libdevice.10.bc` the kernels will link.
    pub libdevice: PathBuf,
}

/// Checks, in this order, that the NVIDIA driver loads, that it sees a GPU and supports the
/// CUDA version this binary was built for, and that `libdevice.10.bc` is where burn will look.
#[cfg(feature = "cuda")]
pub fn check_cuda() -> Result<CudaReady, CudaUnavailable> {
    use std::ffi::{CStr, c_char};

    type CuInit = unsafe extern "C" fn(u32) -> i32;
    type CuCount = unsafe extern "C" fn(*mut i32) -> i32;
    type CuErrorName = unsafe extern "C" fn(i32, *mut *const c_char) -> i32;
    const NO_DEVICE: i32 = 100;

    let names = ["libcuda.so.1", "libcuda.so"];
    let mut reason = String::new();
    let mut library = None;
    for name in names {
        // SAFETY: loading the NVIDIA driver runs its initialisers, which is what cudarc
        // does too when burn first uses the device.
        match unsafe { libloading::Library::new(name) } {
            Ok(loaded) => {
                library = Some(loaded);
                break;
            }
            Err(error) => reason = error.to_string(),
        }
    }
    let Some(library) = library else {
        return Err(CudaUnavailable::NoDriver {
            library: names.join(" or "),
            reason,
        });
    };
    let symbol_error = |call: &'static str| CudaUnavailable::Driver {
        call,
        code: -1,
        name: "symbol missing from libcuda".to_owned(),
    };
    // SAFETY: the signatures are the driver API's (cuda.h); the pointers outlive the calls.
    unsafe {
        let init = library
            .get::<CuInit>(b"cuInit\0")
            .map_err(|_| symbol_error("cuInit"))?;
        let count = library
            .get::<CuCount>(b"cuDeviceGetCount\0")
            .map_err(|_| symbol_error("cuDeviceGetCount"))?;
        let version = library
            .get::<CuCount>(b"cuDriverGetVersion\0")
            .map_err(|_| symbol_error("cuDriverGetVersion"))?;
        let error_name = library.get::<CuErrorName>(b"cuGetErrorName\0").ok();
        let name = |code: i32| {
            let mut text: *const c_char = std::ptr::null();
            match &error_name {
                Some(f) if f(code, &mut text) == 0 && !text.is_null() => {
                    CStr::from_ptr(text).to_string_lossy().into_owned()
                }
                _ => "unknown".to_owned(),
            }
        };
        // A `CUresult` other than CUDA_SUCCESS as the error that names the call.
        let succeeded = |call: &'static str, code: i32| match code {
            0 => Ok(()),
            _ => Err(CudaUnavailable::Driver {
                call,
                code,
                name: name(code),
            }),
        };
        let code = init(0);
        if code == NO_DEVICE {
            return Err(CudaUnavailable::NoGpu {
                detail: format!("cuInit: {}", name(code)),
            });
        }
        succeeded("cuInit", code)?;
        let mut driver = 0;
        succeeded("cuDriverGetVersion", version(&mut driver))?;
        if let Some(built) = BUILT_FOR_CUDA.and_then(|v| v.parse::<i32>().ok())
            && driver < built
        {
            return Err(CudaUnavailable::DriverTooOld {
                driver: version_text(driver),
                built: version_text(built),
            });
        }
        let mut devices = 0;
        succeeded("cuDeviceGetCount", count(&mut devices))?;
        if devices == 0 {
            return Err(CudaUnavailable::NoGpu {
                detail: "cuDeviceGetCount: 0".to_owned(),
            });
        }
        let cuda_path = std::env::var_os("CUDA_PATH").map(PathBuf::from);
        let roots: Vec<&Path> = CUDA_ROOTS.iter().map(Path::new).collect();
        let libdevice = libdevice(cuda_path.as_deref(), &roots)?;
        Ok(CudaReady {
            devices,
            driver: version_text(driver),
            libdevice,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toolkit(dir: &Path) {
        std::fs::create_dir_all(dir.join("nvvm/libdevice")).unwrap();
        std::fs::write(dir.join("nvvm/libdevice/libdevice.10.bc"), b"BC").unwrap();
    }

    #[test]
    fn libdevice_is_found_under_cuda_path_only_when_it_is_set() {
        let dir = tempfile::tempdir().unwrap();
        let (set, root) = (dir.path().join("set"), dir.path().join("root"));
        toolkit(&root);
        std::fs::create_dir_all(&set).unwrap();
        // CUDA_PATH wins, even when a default root has the file (cubecl does the same).
        let error = libdevice(Some(&set), &[&root]).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("set/nvvm/libdevice/libdevice.10.bc (CUDA_PATH)"),
            "{text}"
        );
        assert!(text.contains("nvidia-cuda-nvcc-cu12"), "{text}");
        toolkit(&set);
        assert_eq!(
            libdevice(Some(&set), &[&root]).unwrap(),
            set.join("nvvm/libdevice/libdevice.10.bc")
        );
    }

    #[test]
    fn without_cuda_path_the_first_root_with_nvvm_libdevice_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let (empty, first, second) = (
            dir.path().join("empty"),
            dir.path().join("first"),
            dir.path().join("second"),
        );
        std::fs::create_dir_all(&empty).unwrap();
        toolkit(&first);
        toolkit(&second);
        let found = libdevice(None, &[&empty, &first, &second]).unwrap();
        assert_eq!(found, first.join("nvvm/libdevice/libdevice.10.bc"));
        let error = libdevice(None, &[&empty]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("empty/nvvm/libdevice/libdevice.10.bc"),
            "{error}"
        );
    }

    #[test]
    fn versions_read_as_major_dot_minor() {
        assert_eq!(version_text(12080), "12.8");
        assert_eq!(version_text(13000), "13.0");
        assert_eq!(version_text(12020), "12.2");
    }
}
