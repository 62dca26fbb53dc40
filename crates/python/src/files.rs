//! `shard`, `shard_merge`, `inspect`, `records` and `synthetic`: the calls on folders and files.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyFileNotFoundError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use shardfeed_dataset::folder::Resolved;
use shardfeed_dataset::loader::Damaged;
use shardfeed_dataset::workers::Workers;
use shardfeed_dataset::{Classes, Error, Manifest, ShardConfig};
use shardfeed_record_format::{
    Compression, Example, ExampleKeys, ImageExample, ReaderOptions, RecordReader,
};

use crate::{damaged_error, local, location, lock, parallelism, parse_compression, to_py};

/// What `shard()` wrote.
#[pyclass(module = "shardfeed._native", frozen, get_all)]
pub(crate) struct ShardReport {
    /// Records written.
    records: u64,
    /// The class names, in index order.
    classes: Vec<String>,
    /// Files left out, as `(path, reason)`.
    skipped: Vec<(String, String)>,
    /// The shard files written, in order.
    shards: Vec<String>,
    /// The `manifest.json` written.
    manifest: String,
}

#[pymethods]
impl ShardReport {
    fn __repr__(&self) -> String {
        format!(
            "ShardReport(records={}, classes={:?}, shards={}, skipped={})",
            self.records,
            self.classes,
            self.shards.len(),
            self.skipped.len()
        )
    }
}

/// Shards the labelled JPEGs of `src` (label = the file name's first `.`-separated token)
/// into `out`: the shorter side resized to `size`, centre-cropped, JPEG at `quality` 4:4:4, a
/// seeded shuffle, `shards` files with `.idx` files and a `manifest.json` — the same bytes as
/// `shardfeed shard`. `progress(done, total)` is called as files are prepared; an exception it
/// raises (or Ctrl-C) stops the run and removes what it wrote. Unusable files are skipped and
/// listed in the report's `skipped` (`strict=True`: the first is an error).
///
/// `num_workers=W, worker_index=I`: this call is worker I of a run split over W processes or
/// machines (Spark tasks, Ray tasks, pods): it writes only shards n with n % W == I and a part
/// manifest; `shard_merge(out)` then writes `manifest.json`. Without `worker_index` it comes
/// from `JOB_COMPLETION_INDEX` or `SLURM_ARRAY_TASK_ID`.
///
/// `resize="fit"` keeps each image's aspect ratio, its longer side at most `max_side`;
/// `"keep"` stores each source JPEG's bytes as they are (checked by a whole decode, or
/// `verify="headers"`); both add `height` and `width` to every record. `labels="folder"`
/// takes each image's class from its class folder (`src/cat/**/*.jpg`), `"csv:FILE"` from
/// `file,label` rows; `keep_names=True` stores each image's relative path as `name`.
/// `exif_orientation="apply"` turns each JPEG upright as its EXIF orientation says.
#[pyfunction]
#[pyo3(signature = (src, out, *, size=160, resize="crop", max_side=512, verify="decode", labels="name", keep_names=false, exif_orientation="ignore", shards=16, quality=95, classes=None, prefix="data".to_owned(), seed=42, jobs=None, compression=None, strict=false, overwrite=false, progress=None, num_workers=None, worker_index=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn shard(
    py: Python<'_>,
    src: PathBuf,
    out: PathBuf,
    size: u32,
    resize: &str,
    max_side: u32,
    verify: &str,
    labels: &str,
    keep_names: bool,
    exif_orientation: &str,
    shards: usize,
    quality: u8,
    classes: Option<Vec<String>>,
    prefix: String,
    seed: u64,
    jobs: Option<usize>,
    compression: Option<String>,
    strict: bool,
    overwrite: bool,
    progress: Option<Py<PyAny>>,
    num_workers: Option<usize>,
    worker_index: Option<usize>,
) -> PyResult<ShardReport> {
    // size and shards are checked where every front end's run starts (`shard`).
    if !(1..=100).contains(&quality) {
        return Err(PyValueError::new_err("quality must be in 1..=100"));
    }
    let (src, out) = (location(py, &src)?, location(py, &out)?);
    let (workers, _) = Workers::resolve(num_workers, worker_index, |name| std::env::var(name).ok())
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let classes = classes
        .map(|names| Classes::explicit(names).map_err(|e| to_py(py, e)))
        .transpose()?;
    let stop = Arc::new(AtomicBool::new(false));
    let config = ShardConfig {
        input: src,
        out: out.clone(),
        shards,
        size,
        resize: resize.parse().map_err(PyValueError::new_err)?,
        max_side,
        verify: verify.parse().map_err(PyValueError::new_err)?,
        labels: labels.parse().map_err(PyValueError::new_err)?,
        keep_names,
        decode: shardfeed_image_prep::DecodeOptions {
            exif_orientation: match exif_orientation {
                "apply" => true,
                "ignore" => false,
                other => {
                    return Err(PyValueError::new_err(format!(
                        "exif_orientation must be \"apply\" or \"ignore\", not {other:?}"
                    )));
                }
            },
            ..Default::default()
        },
        quality,
        prefix,
        classes,
        seed,
        compression: parse_compression(compression.as_deref())?.unwrap_or(Compression::None),
        strict,
        jobs: parallelism(jobs, false)?,
        overwrite,
        workers,
        stop: Some(stop.clone()),
    };
    let callback_error: Mutex<Option<PyErr>> = Mutex::new(None);
    let result = py.detach(|| {
        shardfeed_dataset::shard(&config, |p| {
            Python::attach(|py| {
                let outcome = py.check_signals().and_then(|()| match &progress {
                    Some(callback) => callback.call1(py, (p.done, p.total)).map(drop),
                    None => Ok(()),
                });
                if let Err(error) = outcome {
                    stop.store(true, Ordering::Relaxed);
                    lock(&callback_error).get_or_insert(error);
                }
            })
        })
    });
    if let Some(error) = lock(&callback_error).take() {
        return Err(error);
    }
    let manifest = result.map_err(|e| to_py(py, e))?;
    let described_in = if workers.is_split() {
        shardfeed_dataset::workers::part_file_name(workers)
    } else {
        shardfeed_dataset::MANIFEST_FILE.to_owned()
    };
    Ok(report(&manifest, out.path(), &described_in))
}

/// Checks the parts that `shard(..., num_workers=W, worker_index=I)` wrote into `out` (every
/// worker finished, all from one run, their shards whole) and writes `manifest.json`: the
/// folder is then the one a single `shard()` call writes, shard for shard, byte for byte.
#[pyfunction]
pub(crate) fn shard_merge(py: Python<'_>, out: PathBuf) -> PyResult<ShardReport> {
    let out = location(py, &out)?;
    let manifest = py
        .detach(|| shardfeed_dataset::workers::merge(&out))
        .map_err(|e| to_py(py, e))?;
    Ok(report(
        &manifest,
        out.path(),
        shardfeed_dataset::MANIFEST_FILE,
    ))
}

fn report(manifest: &Manifest, out: &Path, described_in: &str) -> ShardReport {
    ShardReport {
        records: manifest.records,
        classes: manifest.classes.clone(),
        skipped: manifest
            .skipped
            .iter()
            .map(|s| (s.file.display().to_string(), s.reason.clone()))
            .collect(),
        shards: manifest
            .shards
            .iter()
            .map(|s| out.join(&s.file).display().to_string())
            .collect(),
        manifest: out.join(described_in).display().to_string(),
    }
}

/// What `inspect` finds in each file: records, bytes, features, class counts, the `.idx`
/// status and the first problem (record and offset).
#[pyfunction]
#[pyo3(signature = (paths, *, compression=None, verify=true, label_key=None))]
pub(crate) fn inspect<'py>(
    py: Python<'py>,
    paths: &Bound<'py, PyAny>,
    compression: Option<String>,
    verify: bool,
    label_key: Option<String>,
) -> PyResult<Bound<'py, PyAny>> {
    // inspect looks at the files as they are: it is how a mismatch is diagnosed.
    let resolved = resolve(py, paths, true)?;
    let given = parse_compression(compression.as_deref())?;
    let reports = py.detach(|| {
        resolved
            .files
            .iter()
            .map(|file| {
                let options = ReaderOptions {
                    compression: resolved.compression_of(file, given)?,
                    verify,
                    ..ReaderOptions::default()
                };
                let mut report = shardfeed_dataset::inspect::inspect_file_with(
                    file,
                    options,
                    label_key.as_deref(),
                )?;
                report.class_names = resolved.manifest_of(file).map(|m| m.classes.clone());
                let mut value = serde_json::to_value(&report).expect("a report serialises");
                value["class_names"] =
                    serde_json::to_value(&report.class_names).expect("names serialise");
                Ok(value)
            })
            .collect::<Result<Vec<_>, Error>>()
    });
    let reports = reports.map_err(|e| to_py(py, e))?;
    let text = serde_json::to_string(&reports).expect("values serialise");
    py.import("json")?.call_method1("loads", (text,))
}

/// The records of one TFRecord file as `(jpeg_bytes, class)`, both CRCs checked.
#[pyclass(module = "shardfeed._native", frozen)]
pub(crate) struct RecordIter {
    reader: Mutex<RecordReader<Box<dyn std::io::Read + Send>>>,
    path: PathBuf,
}

#[pymethods]
impl RecordIter {
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<(Bound<'py, PyBytes>, i64)>> {
        let result = py.detach(|| {
            let mut reader = lock(&self.reader);
            let mut payload = Vec::new();
            let info = match reader.read_into(&mut payload) {
                Ok(Some(info)) => info,
                Ok(None) => return Ok(None),
                Err(error) => {
                    return Err(Damaged::from_record_error(&self.path, &error).ok_or(error));
                }
            };
            // shardfeed's keys, else TensorFlow's image tools' (`image/encoded`, …).
            Example::decode(&payload)
                .and_then(|example| {
                    let keys = ExampleKeys::detect(&example).unwrap_or_default();
                    ImageExample::from_example_with(&example, &keys)
                })
                .map(|example| Some((example.image, example.class)))
                .map_err(|error| {
                    Ok(Damaged {
                        path: self.path.clone(),
                        offset: Some(info.offset),
                        record: info.index,
                        reason: error.to_string(),
                    })
                })
        });
        match result {
            Ok(Some((image, class))) => Ok(Some((PyBytes::new(py, &image), class))),
            Ok(None) => Ok(None),
            Err(Ok(damaged)) => Err(damaged_error(py, &damaged)),
            // Not damage (an I/O error): an error as such.
            Err(Err(error)) => Err(to_py(py, error.into())),
        }
    }
}

/// Opens one shard file's records.
#[pyfunction]
#[pyo3(signature = (path, *, compression=None))]
pub(crate) fn records(
    py: Python<'_>,
    path: PathBuf,
    compression: Option<String>,
) -> PyResult<RecordIter> {
    let location = location(py, &path)?;
    let given = parse_compression(compression.as_deref())?;
    let resolved = py
        .detach(|| shardfeed_dataset::folder::resolve(std::slice::from_ref(&location), true))
        .map_err(|e| to_py(py, e))?;
    let path = location.path().to_owned();
    let compression = resolved
        .compression_of(&path, given)
        .map_err(|e| to_py(py, e))?;
    let source = shardfeed_dataset::remote::open_read(&path).map_err(|e| to_py(py, e))?;
    let reader =
        RecordReader::new(source, ReaderOptions::compression(compression)).with_file_name(&path);
    Ok(RecordIter {
        reader: Mutex::new(reader),
        path,
    })
}

/// Writes a synthetic labelled folder, for trying things out: `out/train/LABEL.I.jpg` and
/// `out/test/I.jpg`, each image a pure function of its index and the seed.
#[pyfunction]
#[pyo3(signature = (out, *, train=1000, test=0, classes=None, min_side=120, max_side=400, seed=7))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn synthetic(
    py: Python<'_>,
    out: PathBuf,
    train: usize,
    test: usize,
    classes: Option<Vec<String>>,
    min_side: u32,
    max_side: u32,
    seed: u64,
) -> PyResult<()> {
    let defaults = shardfeed_dataset::synthetic::GenData::default();
    let config = shardfeed_dataset::synthetic::GenData {
        n_train: train,
        n_test: test,
        seed,
        classes: classes.unwrap_or(defaults.classes),
        sides: (min_side.min(max_side), max_side.max(min_side)),
    };
    let out = local(py, &out)?;
    py.detach(|| shardfeed_dataset::synthetic::generate(&out, &config))
        .map_err(|e| to_py(py, e))
}

/// Shard files from a folder (checked against its `manifest.json` unless `ignore_manifest`),
/// a file, a glob, or a list of them, by the one rule the CLI uses too
/// ([`shardfeed_dataset::folder::resolve`]).
pub(crate) fn resolve(
    py: Python<'_>,
    shards: &Bound<'_, PyAny>,
    ignore_manifest: bool,
) -> PyResult<Resolved> {
    let items: Vec<Bound<'_, PyAny>> =
        if shards.is_instance_of::<PyList>() || shards.is_instance_of::<pyo3::types::PyTuple>() {
            shards.try_iter()?.collect::<PyResult<_>>()?
        } else {
            vec![shards.clone()]
        };
    let mut paths = Vec::new();
    for item in items {
        let path: PathBuf = item.extract()?;
        paths.push(location(py, &path)?);
    }
    py.detach(|| shardfeed_dataset::folder::resolve(&paths, ignore_manifest))
        .map_err(|e| match e {
            Error::NoShards(dir) => {
                PyFileNotFoundError::new_err(format!("no .tfrec files in {}", dir.display()))
            }
            Error::Io {
                ref source,
                ref path,
                ..
            } if source.kind() == std::io::ErrorKind::NotFound => {
                PyFileNotFoundError::new_err(format!("no such file or folder: {}", path.display()))
            }
            other => to_py(py, other),
        })
}
