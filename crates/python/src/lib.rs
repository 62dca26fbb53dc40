//! The `shardfeed` Python package's native module (`shardfeed._native`): thin bindings over
//! `shardfeed-dataset`. Every call that reads, decodes or writes releases the GIL.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyValueError};
use pyo3::prelude::*;
use shardfeed_dataset::Error;
use shardfeed_dataset::folder::Location;
use shardfeed_dataset::loader::Damaged;
use shardfeed_input_pipeline::Parallelism;
use shardfeed_record_format::Compression;

mod files;
mod loader;
mod stats;
mod transforms;

use files::{RecordIter, ShardReport, inspect, records, shard, shard_merge, synthetic};
use loader::{Loader, LoaderIter};

pyo3::create_exception!(
    shardfeed,
    ShardfeedError,
    pyo3::exceptions::PyRuntimeError,
    "A shardfeed operation failed (the message names the file and, for records, the offset)."
);
pyo3::create_exception!(
    shardfeed,
    DamagedRecordError,
    ShardfeedError,
    "A damaged record (bad CRC, not a tf.train.Example, an undecodable image); `.path`, \
     `.offset` (byte offset of its frame, or None) and `.record` (its index in the file) say \
     where."
);

fn damaged_error(py: Python<'_>, damaged: &Damaged) -> PyErr {
    let error = DamagedRecordError::new_err(damaged.to_string());
    let value = error.value(py);
    let set = |name: &str, v: Bound<'_, PyAny>| value.setattr(name, v);
    let result = (|| {
        set(
            "path",
            damaged
                .path
                .display()
                .to_string()
                .into_pyobject(py)?
                .into_any(),
        )?;
        set("offset", damaged.offset.into_pyobject(py)?.into_any())?;
        set("record", damaged.record.into_pyobject(py)?.into_any())?;
        set(
            "reason",
            damaged.reason.as_str().into_pyobject(py)?.into_any(),
        )
    })();
    match result {
        Ok(()) => error,
        Err(e) => e,
    }
}

fn to_py(py: Python<'_>, error: Error) -> PyErr {
    match error {
        Error::DamagedRecord(damaged) => damaged_error(py, &damaged),
        Error::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(error.to_string())
        }
        Error::Io { .. } => PyOSError::new_err(error.to_string()),
        Error::Invalid(_)
        | Error::BadLoaderState(_)
        | Error::InvalidClasses(_)
        | Error::TooFewRecords { .. }
        | Error::FolderMismatch { .. }
        | Error::UnsupportedUrl { .. } => PyValueError::new_err(error.to_string()),
        other => ShardfeedError::new_err(other.to_string()),
    }
}

fn parse_compression(name: Option<&str>) -> PyResult<Option<Compression>> {
    name.map(|n| {
        n.parse::<Compression>()
            .map_err(|e| PyValueError::new_err(e.to_string()))
    })
    .transpose()
}

/// `jobs`: exactly this many threads (`shard`), or at most this many with the count tuned
/// while running (`Loader`, as the CLI's `stream` and `train`).
fn parallelism(jobs: Option<usize>, tuned: bool) -> PyResult<Parallelism> {
    match jobs {
        None => Ok(Parallelism::Auto),
        Some(0) => Err(PyValueError::new_err("jobs must be at least 1 (or None)")),
        Some(n) if tuned => Ok(Parallelism::AutoUpTo(n)),
        Some(n) => Ok(Parallelism::Fixed(n)),
    }
}

/// A path argument as a local path: `file:///PATH` is `PATH`, any other URL a `ValueError`.
fn local(py: Python<'_>, path: &Path) -> PyResult<PathBuf> {
    shardfeed_dataset::folder::local_path(path.as_os_str()).map_err(|e| to_py(py, e))
}

/// A path argument where object storage is supported: a local path, `file:///PATH`, or an
/// `s3://`, `gs://`, `az://`, `http(s)://` URL; another scheme a `ValueError`.
fn location(py: Python<'_>, path: &Path) -> PyResult<Location> {
    Location::parse(path.as_os_str()).map_err(|e| to_py(py, e))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Called in a child process right after `fork()` (registered by the package with
/// `os.register_at_fork`): the object-storage runtime is made anew there.
#[pyfunction]
fn _after_fork_in_child() {
    shardfeed_dataset::remote::after_fork_in_child();
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(shard, m)?)?;
    m.add_function(wrap_pyfunction!(shard_merge, m)?)?;
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    m.add_function(wrap_pyfunction!(records, m)?)?;
    m.add_function(wrap_pyfunction!(synthetic, m)?)?;
    m.add_function(wrap_pyfunction!(_after_fork_in_child, m)?)?;
    m.add_function(wrap_pyfunction!(transforms::_sample_crops, m)?)?;
    m.add_class::<Loader>()?;
    m.add_class::<LoaderIter>()?;
    m.add_class::<RecordIter>()?;
    m.add_class::<ShardReport>()?;
    m.add("ShardfeedError", m.py().get_type::<ShardfeedError>())?;
    m.add(
        "DamagedRecordError",
        m.py().get_type::<DamagedRecordError>(),
    )?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
