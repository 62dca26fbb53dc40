//! The `shardfeed` Python package's native module (`shardfeed._native`): thin bindings over
//! `shardfeed-dataset`. Every call that reads, decodes or writes releases the GIL.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use numpy::IntoPyArray;
use numpy::ndarray::Array;
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use shardfeed_dataset::loader::{
    Damaged, Dtype, EpochBatches, Layout, LoaderConfig, LoaderState, OnDamaged, Pixels, Position,
    SplitPart,
};
use shardfeed_dataset::workers::Workers;
use shardfeed_dataset::{Classes, Error, Manifest, ShardConfig, find_shards};
use shardfeed_input_pipeline::{Parallelism, StageStats};
use shardfeed_record_format::{Compression, ImageExample, ReaderOptions, RecordReader};

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

/// What `shard()` wrote.
#[pyclass(module = "shardfeed._native", frozen, get_all)]
struct ShardReport {
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
#[pyfunction]
#[pyo3(signature = (src, out, *, size=160, shards=16, quality=95, classes=None, prefix="data".to_owned(), seed=42, jobs=None, compression=None, strict=false, overwrite=false, progress=None, num_workers=None, worker_index=None))]
#[allow(clippy::too_many_arguments)]
fn shard(
    py: Python<'_>,
    src: PathBuf,
    out: PathBuf,
    size: u32,
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
    // size and shards are checked where every front end's run starts (`shard_observed`).
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
        ..ShardConfig::default()
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
    Ok(report(&manifest, &out, &described_in))
}

/// Checks the parts that `shard(..., num_workers=W, worker_index=I)` wrote into `out` (every
/// worker finished, all from one run, their shards whole) and writes `manifest.json`: the
/// folder is then the one a single `shard()` call writes, shard for shard, byte for byte.
#[pyfunction]
fn shard_merge(py: Python<'_>, out: PathBuf) -> PyResult<ShardReport> {
    let out = location(py, &out)?;
    let manifest = py
        .detach(|| shardfeed_dataset::workers::merge(&out))
        .map_err(|e| to_py(py, e))?;
    Ok(report(&manifest, &out, shardfeed_dataset::MANIFEST_FILE))
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

/// A path argument as a local path: `file:///PATH` is `PATH`, any other URL a `ValueError`.
fn local(py: Python<'_>, path: &Path) -> PyResult<PathBuf> {
    shardfeed_dataset::layout::local_path(path.as_os_str()).map_err(|e| to_py(py, e))
}

/// A path argument where object storage is supported: a local path, `file:///PATH`, or an
/// `s3://`, `gs://`, `az://`, `http(s)://` URL; another scheme a `ValueError`.
fn location(py: Python<'_>, path: &Path) -> PyResult<PathBuf> {
    shardfeed_dataset::layout::location(path.as_os_str()).map_err(|e| to_py(py, e))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Shard files from a folder, a file, a glob, or a list of them; and the compression a
/// folder's `manifest.json` states.
fn resolve(
    py: Python<'_>,
    shards: &Bound<'_, PyAny>,
) -> PyResult<(Vec<PathBuf>, Option<Compression>)> {
    let items: Vec<Bound<'_, PyAny>> =
        if shards.is_instance_of::<PyList>() || shards.is_instance_of::<pyo3::types::PyTuple>() {
            shards.try_iter()?.collect::<PyResult<_>>()?
        } else {
            vec![shards.clone()]
        };
    let mut files = Vec::new();
    let mut recorded = None;
    for item in items {
        let path: PathBuf = item.extract()?;
        let path = location(py, &path)?;
        let text = path.to_string_lossy();
        let remote = shardfeed_dataset::remote::is_remote(&path);
        if remote && text.ends_with(".tfrec") {
            files.push(path.clone());
        } else if remote {
            let found = py.detach(|| find_shards(&path)).map_err(|e| to_py(py, e))?;
            if found.is_empty() {
                return Err(PyFileNotFoundError::new_err(format!(
                    "no .tfrec files in {}",
                    path.display()
                )));
            }
            if let Ok(Some(manifest)) = py.detach(|| Manifest::read_folder(&path)) {
                recorded = manifest.compression.parse::<Compression>().ok();
            }
            files.extend(found);
        } else if text.contains(['*', '?', '[']) {
            let matched: Vec<PathBuf> = py
                .import("glob")?
                .call_method1("glob", (text.as_ref(),))?
                .extract()?;
            if matched.is_empty() {
                return Err(PyFileNotFoundError::new_err(format!(
                    "no file matches {text}"
                )));
            }
            files.extend(matched);
        } else if path.is_dir() {
            let found = find_shards(&path).map_err(|e| to_py(py, e))?;
            if found.is_empty() {
                return Err(PyFileNotFoundError::new_err(format!(
                    "no .tfrec files in {}",
                    path.display()
                )));
            }
            if let Ok(Some(manifest)) = Manifest::read_folder(&path) {
                recorded = manifest.compression.parse::<Compression>().ok();
            }
            files.extend(found);
        } else if path.is_file() {
            files.push(path);
        } else {
            return Err(PyFileNotFoundError::new_err(format!(
                "no such file or folder: {}",
                path.display()
            )));
        }
    }
    Ok((files, recorded))
}

/// Totals over a loader's epochs.
#[derive(Default)]
struct Totals {
    images: u64,
    batches: u64,
    seconds: f64,
    waited: f64,
    stages: Vec<StageStats>,
    skipped: Vec<Damaged>,
    padded: u64,
    dropped: u64,
    cache_hits: u64,
    /// The last epoch's tuner state.
    tuning: Option<shardfeed_input_pipeline::Tuning>,
}

impl Totals {
    /// Adds an epoch's figures (when it ends or is dropped).
    fn add_epoch(&mut self, epoch: &EpochBatches) {
        let (waited, elapsed) = epoch.consumer();
        self.seconds += elapsed.as_secs_f64();
        self.waited += waited.as_secs_f64();
        let stats = epoch.stats();
        self.cache_hits = stats.cache_hits;
        self.tuning = stats.tuning.clone();
        for stage in stats.stages {
            match self.stages.iter_mut().find(|s| s.name == stage.name) {
                Some(total) => {
                    total.items += stage.items;
                    total.busy += stage.busy;
                    total.waiting_input += stage.waiting_input;
                    total.waiting_output += stage.waiting_output;
                }
                None => self.stages.push(stage),
            }
        }
    }
}

struct RunState {
    position: Position,
    totals: Totals,
    /// Bumped by each `iter()`: an older iterator stops.
    generation: u64,
}

/// Batches of shard records for a training loop.
///
/// `shards`: a folder (its `*.tfrec` files; compression from its `manifest.json`), a file, a
/// glob, or a list of them. Iterating yields `(images, labels)` numpy arrays: `images` float32
/// in [0, 1] (or uint8), `(n, H, W, 3)` for `layout="NHWC"` or `(n, 3, H, W)` for `"NCHW"`;
/// `labels` int64 `(n,)`. One `iter()` yields the rest of a run of `epochs` epochs (runs are
/// aligned: epochs 0..E, E..2E, …; `None`: without end), so after `load_state_dict` it ends
/// where the uninterrupted run would have; the next `iter()` starts the next run. `len(loader)`: this
/// rank's batches per epoch.
///
/// Distributed: each epoch's order (the one `shardfeed train` uses, from `seed`) is cut into
/// steps of `world_size * batch_size` records, rank `r` taking the `r`-th batch of each step:
/// disjoint records, the same number of batches on every rank. What does not fill a step is
/// dropped (`drop_remainder=True`; `stats()["dropped"]`) or split into equal last batches,
/// completed where needed with records from the epoch's start (`stats()["padded"]`).
///
/// Resume: `state_dict()` (the same on every rank after the same number of batches) and
/// `load_state_dict(state)` continue with exactly the batches the uninterrupted run would have
/// produced; a state saved with another `world_size` continues the rest of the epoch split
/// over the new ranks, each remaining record once. Needs `deterministic=True`.
///
/// `on_damaged="raise"` raises `DamagedRecordError`; `"skip"` leaves the record out of its
/// batch (one shorter) and lists it in `stats()["skipped"]` with its file and offset.
#[pyclass(module = "shardfeed._native", frozen)]
struct Loader {
    inner: shardfeed_dataset::loader::Loader,
    state: Mutex<RunState>,
    epochs: Option<u64>,
}

#[pymethods]
impl Loader {
    #[new]
    #[pyo3(signature = (shards, *, batch_size=32, shuffle=2048, seed=42, deterministic=true, epochs=Some(1), drop_remainder=true, cache=true, jobs=None, rank=0, world_size=1, split=None, dtype="float32", layout="NHWC", on_damaged="raise", compression=None, cache_bytes=4u64<<30))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        shards: &Bound<'_, PyAny>,
        batch_size: usize,
        shuffle: usize,
        seed: u64,
        deterministic: bool,
        epochs: Option<u64>,
        drop_remainder: bool,
        cache: bool,
        jobs: Option<usize>,
        rank: usize,
        world_size: usize,
        split: Option<(String, f64)>,
        dtype: &str,
        layout: &str,
        on_damaged: &str,
        compression: Option<String>,
        cache_bytes: u64,
    ) -> PyResult<Self> {
        let (files, recorded) = resolve(py, shards)?;
        let given = parse_compression(compression.as_deref())?;
        let split = match split {
            None => None,
            Some((part, fraction)) => Some((
                match part.as_str() {
                    "train" => SplitPart::Train,
                    "validation" => SplitPart::Validation,
                    other => {
                        return Err(PyValueError::new_err(format!(
                            "split must be (\"train\" or \"validation\", fraction), not {other:?}"
                        )));
                    }
                },
                fraction,
            )),
        };
        let config = LoaderConfig {
            batch_size,
            shuffle,
            seed,
            deterministic,
            drop_remainder,
            cache,
            cache_budget: cache_bytes,
            jobs: parallelism(jobs, true)?,
            rank,
            world_size,
            split,
            on_damaged: match on_damaged {
                "raise" => OnDamaged::Raise,
                "skip" => OnDamaged::Skip,
                other => {
                    return Err(PyValueError::new_err(format!(
                        "on_damaged must be \"raise\" or \"skip\", not {other:?}"
                    )));
                }
            },
            compression: given.or(recorded).unwrap_or(Compression::None),
            dtype: match dtype {
                "float32" => Dtype::Float32,
                "uint8" => Dtype::Uint8,
                other => {
                    return Err(PyValueError::new_err(format!(
                        "dtype must be \"float32\" or \"uint8\", not {other:?}"
                    )));
                }
            },
            layout: match layout {
                "NHWC" | "nhwc" => Layout::Nhwc,
                "NCHW" | "nchw" => Layout::Nchw,
                other => {
                    return Err(PyValueError::new_err(format!(
                        "layout must be \"NHWC\" or \"NCHW\", not {other:?}"
                    )));
                }
            },
        };
        if epochs == Some(0) {
            return Err(PyValueError::new_err("epochs must be at least 1 (or None)"));
        }
        let inner = py
            .detach(|| shardfeed_dataset::loader::Loader::open(&files, config))
            .map_err(|e| to_py(py, e))?;
        Ok(Loader {
            inner,
            state: Mutex::new(RunState {
                position: Position::default(),
                totals: Totals::default(),
                generation: 0,
            }),
            epochs,
        })
    }

    /// Batches per epoch for this rank.
    fn __len__(&self) -> usize {
        self.inner.batches_per_epoch() as usize
    }

    fn __iter__(slf: Bound<'_, Self>) -> LoaderIter {
        let loader = slf.get();
        let (generation, epoch) = {
            let mut state = lock(&loader.state);
            state.generation += 1;
            (state.generation, state.position.epoch)
        };
        LoaderIter {
            // Runs of `epochs` epochs are aligned (0..E, E..2E, …): an iterator started
            // mid-run (after a resume) ends where the uninterrupted run would have.
            run_end: loader.epochs.map(|n| (epoch / n + 1) * n),
            loader: slf.unbind(),
            current: Mutex::new(None),
            generation,
        }
    }

    /// The epoch the next batch belongs to (from 0).
    #[getter]
    fn epoch(&self) -> u64 {
        lock(&self.state).position.epoch
    }

    /// Records per epoch, all ranks together.
    #[getter]
    fn records(&self) -> u64 {
        self.inner.records()
    }

    /// The shard files read (after the split), sorted.
    #[getter]
    fn files(&self) -> Vec<String> {
        self.inner
            .files()
            .iter()
            .map(|f| f.display().to_string())
            .collect()
    }

    /// Where the loader stands, as a small JSON-serialisable dict; the same on every rank
    /// after the same number of batches.
    fn state_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let position = lock(&self.state).position;
        let text = serde_json::to_string(&self.inner.state(position))
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        py.import("json")?.call_method1("loads", (text,))
    }

    /// Continues from a `state_dict()` (also one saved with another `world_size`).
    fn load_state_dict(&self, py: Python<'_>, state: &Bound<'_, PyAny>) -> PyResult<()> {
        let text: String = py
            .import("json")?
            .call_method1("dumps", (state,))?
            .extract()?;
        let state: LoaderState = serde_json::from_str(&text)
            .map_err(|e| PyValueError::new_err(format!("not a loader state: {e}")))?;
        let position = self.inner.position_of(&state).map_err(|e| to_py(py, e))?;
        let mut run = lock(&self.state);
        run.position = position;
        run.generation += 1;
        Ok(())
    }

    /// Per-stage busy/wait times, images/s, skipped records (file, offset), padded and
    /// dropped counts.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let run = lock(&self.state);
        let t = &run.totals;
        let out = PyDict::new(py);
        out.set_item("images", t.images)?;
        out.set_item("batches", t.batches)?;
        out.set_item("seconds", t.seconds)?;
        out.set_item("images_per_second", t.images as f64 / t.seconds.max(1e-9))?;
        out.set_item("waited_seconds", t.waited)?;
        out.set_item("wait_fraction", t.waited / t.seconds.max(1e-9))?;
        out.set_item("cache_hits", t.cache_hits)?;
        out.set_item("padded", t.padded)?;
        out.set_item("dropped", t.dropped)?;
        let skipped = PyList::empty(py);
        for d in &t.skipped {
            let item = PyDict::new(py);
            item.set_item("path", d.path.display().to_string())?;
            item.set_item("offset", d.offset)?;
            item.set_item("record", d.record)?;
            item.set_item("reason", &d.reason)?;
            skipped.append(item)?;
        }
        out.set_item("skipped_count", t.skipped.len())?;
        out.set_item("skipped", skipped)?;
        let stages = PyList::empty(py);
        for s in &t.stages {
            let item = PyDict::new(py);
            item.set_item("name", s.name)?;
            item.set_item("threads", s.threads)?;
            item.set_item("items", s.items)?;
            item.set_item("busy_seconds", s.busy.as_secs_f64())?;
            item.set_item("waiting_input_seconds", s.waiting_input.as_secs_f64())?;
            item.set_item("waiting_output_seconds", s.waiting_output.as_secs_f64())?;
            stages.append(item)?;
        }
        out.set_item("stages", stages)?;
        if let Some(tuning) = &t.tuning {
            let item = PyDict::new(py);
            item.set_item("workers", tuning.workers)?;
            item.set_item("max_workers", tuning.max_workers)?;
            item.set_item("prefetch", tuning.prefetch)?;
            item.set_item("max_prefetch", tuning.max_prefetch)?;
            item.set_item("changes", tuning.changes.len())?;
            item.set_item("summary", tuning.summary())?;
            out.set_item("autotune", item)?;
        }
        Ok(out)
    }

    fn __repr__(&self) -> String {
        let c = self.inner.config();
        format!(
            "Loader(files={}, records={}, batch_size={}, rank={}, world_size={}, batches_per_epoch={})",
            self.inner.files().len(),
            self.inner.records(),
            c.batch_size,
            c.rank,
            c.world_size,
            self.inner.batches_per_epoch()
        )
    }
}

/// One pass of a [`Loader`]: the rest of its current run of epochs. Dropping it (or
/// breaking out of the loop) stops and joins the worker threads.
#[pyclass(module = "shardfeed._native", frozen)]
struct LoaderIter {
    loader: Py<Loader>,
    current: Mutex<Option<EpochBatches>>,
    /// The epoch this pass stops before (`None`: without end).
    run_end: Option<u64>,
    generation: u64,
}

impl LoaderIter {
    fn finish_epoch(&self, epoch: EpochBatches) {
        let loader = self.loader.get();
        let mut run = lock(&loader.state);
        run.totals.add_epoch(&epoch);
        if run.generation == self.generation {
            run.position = Position {
                epoch: epoch.share().epoch + 1,
                offset: 0,
            };
        }
    }
}

impl Drop for LoaderIter {
    fn drop(&mut self) {
        // Joins the workers; the epoch's figures so far go into the loader's totals.
        if let Some(epoch) = lock(&self.current).take() {
            let loader = self.loader.get();
            lock(&loader.state).totals.add_epoch(&epoch);
        }
    }
}

#[pymethods]
impl LoaderIter {
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
        let loader = self.loader.get();
        loop {
            let (position, generation) = {
                let run = lock(&loader.state);
                (run.position, run.generation)
            };
            if generation != self.generation {
                return Err(PyRuntimeError::new_err(
                    "this iterator was superseded: the loader was iterated again or its state \
                     loaded; iterate the loader anew",
                ));
            }
            let mut current = lock(&self.current).take();
            if current.is_none() {
                if self.run_end.is_some_and(|end| position.epoch >= end) {
                    return Ok(None);
                }
                let epoch = py.detach(|| loader.inner.epoch(position));
                let mut run = lock(&loader.state);
                run.totals.padded += epoch.share().padded;
                run.totals.dropped += epoch.share().dropped;
                drop(run);
                current = Some(epoch);
            }
            let mut epoch = current.expect("set above");
            let (next, epoch) = py.detach(move || (epoch.next_batch(), epoch));
            match next {
                None => {
                    self.finish_epoch(epoch);
                    continue;
                }
                Some(Err(error)) => {
                    lock(&loader.state).totals.add_epoch(&epoch);
                    return Err(to_py(py, error));
                }
                Some(Ok(batch)) => {
                    {
                        let mut run = lock(&loader.state);
                        run.position = epoch.position();
                        run.totals.images += batch.len() as u64;
                        run.totals.batches += 1;
                        run.totals.skipped.extend(batch.skipped.iter().cloned());
                    }
                    *lock(&self.current) = Some(epoch);
                    let (n, side) = (batch.len(), batch.side);
                    let shape = match loader.inner.config().layout {
                        Layout::Nhwc => (n, side, side, 3),
                        Layout::Nchw => (n, 3, side, side),
                    };
                    let shape_error = |e: numpy::ndarray::ShapeError| {
                        PyRuntimeError::new_err(format!("batch shape: {e}"))
                    };
                    let images = match batch.pixels {
                        Pixels::F32(v) => Array::from_shape_vec(shape, v)
                            .map_err(shape_error)?
                            .into_pyarray(py)
                            .into_any(),
                        Pixels::U8(v) => Array::from_shape_vec(shape, v)
                            .map_err(shape_error)?
                            .into_pyarray(py)
                            .into_any(),
                    };
                    let labels = batch.labels.into_pyarray(py).into_any();
                    return Ok(Some((images, labels)));
                }
            }
        }
    }
}

/// What `inspect` finds in each file: records, bytes, features, class counts, the `.idx`
/// status and the first problem (record and offset).
#[pyfunction]
#[pyo3(signature = (paths, *, compression=None, verify=true))]
fn inspect<'py>(
    py: Python<'py>,
    paths: &Bound<'py, PyAny>,
    compression: Option<String>,
    verify: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let (files, recorded) = resolve(py, paths)?;
    let given = parse_compression(compression.as_deref())?;
    let reports = py.detach(|| {
        // Each folder's manifest read once, however many of its files are inspected.
        let mut manifests: std::collections::BTreeMap<PathBuf, Option<Manifest>> =
            std::collections::BTreeMap::new();
        files
            .iter()
            .map(|file| {
                let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
                let manifest = manifests
                    .entry(dir)
                    .or_insert_with_key(|dir| Manifest::read_folder(dir).ok().flatten());
                let options = ReaderOptions {
                    compression: given.or(recorded).unwrap_or(Compression::None),
                    verify,
                    ..ReaderOptions::default()
                };
                let mut report = shardfeed_dataset::inspect::inspect_file(file, options)?;
                report.class_names = manifest.as_ref().map(|m| m.classes.clone());
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
struct RecordIter {
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
            ImageExample::decode(&payload)
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
fn records(py: Python<'_>, path: PathBuf, compression: Option<String>) -> PyResult<RecordIter> {
    let path = location(py, &path)?;
    let recorded = path
        .parent()
        .and_then(|dir| Manifest::read_folder(dir).ok().flatten())
        .and_then(|m| m.compression.parse::<Compression>().ok());
    let compression = parse_compression(compression.as_deref())?
        .or(recorded)
        .unwrap_or(Compression::None);
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
fn synthetic(
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

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(shard, m)?)?;
    m.add_function(wrap_pyfunction!(shard_merge, m)?)?;
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    m.add_function(wrap_pyfunction!(records, m)?)?;
    m.add_function(wrap_pyfunction!(synthetic, m)?)?;
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
