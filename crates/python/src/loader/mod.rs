//! `Loader` and `LoaderIter`: batches for a training loop, with the GIL released while the
//! workers decode, and safe across `fork()` (a `DataLoader` worker, a child process).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use shardfeed_dataset::loader::{
    Dtype, Layout, LoaderConfig, LoaderState, MAX_EPOCH, OnDamaged, Position, SplitPart,
};
use shardfeed_dataset::stats::ReadStats;
use shardfeed_dataset::stream::RecordFormat;

use crate::transforms::parse_transform;
use shardfeed_record_format::ExampleKeys;

use crate::files::resolve;
use crate::{lock, parallelism, parse_compression, to_py};

mod iter;
pub(crate) use iter::LoaderIter;
use iter::dataloader_worker;

/// A loader opened anew: for this process, and this `DataLoader` worker split.
type Opened = (
    u32,
    Option<(usize, usize)>,
    Arc<shardfeed_dataset::loader::Loader>,
);

struct RunState {
    position: Position,
    /// Totals over the loader's epochs (what `stats()` shows).
    totals: ReadStats,
    /// Bumped by each `iter()`: an older iterator stops.
    generation: u64,
    /// The transform's output side from the next epoch on, where `set_size` changed it.
    size: Option<u32>,
}

/// Batches of shard records for a training loop.
///
/// `shards`: a folder (its `*.tfrec` files, checked against its `manifest.json`: a shard
/// missing, unlisted or of another size raises `ValueError` unless `ignore_manifest=True`;
/// compression from the manifest), a file, a glob, or a list of them. Iterating yields `(images, labels)` numpy arrays: `images` float32
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
///
/// In PyTorch `DataLoader(num_workers=N)` workers, worker `w` is rank `w × world_size + rank`
/// of `world_size × N` (`LoaderConfig::in_worker`): the batches handed out in turn are this
/// rank's, in their order. The workers iterate copies: `set_epoch` before each epoch, or
/// `persistent_workers=True`; `state_dict(batches=n, workers=N)` is the state after the `n`
/// batches the loop received. Pickled as its arguments and its state (`spawn` workers).
#[pyclass(module = "shardfeed._native", frozen)]
pub(crate) struct Loader {
    inner: Arc<shardfeed_dataset::loader::Loader>,
    /// What it was opened from, to open it again in a forked child.
    opened: (Vec<PathBuf>, LoaderConfig),
    /// The loader a forked child or a `DataLoader` worker iterates: opened anew there (the
    /// parent's pipeline and cache may have been locked by a thread that the child does not
    /// have), with the process and the worker split it was opened for.
    child: Mutex<Option<Opened>>,
    state: Mutex<RunState>,
    epochs: Option<u64>,
    /// Each batch also yields its images' record ids, crop boxes and flips.
    return_ids: bool,
    /// The process that opened it.
    pid: u32,
    /// The constructor's arguments, for pickling.
    given: Py<PyDict>,
}

impl Loader {
    /// The loader whose workers this process may start: its own; in a forked child, one
    /// opened anew from the same files and settings; in worker `w` of a `DataLoader`'s `n`,
    /// one opened anew with `LoaderConfig::in_worker(w, n)`.
    fn runnable(
        &self,
        py: Python<'_>,
        worker: Option<(usize, usize)>,
    ) -> PyResult<Arc<shardfeed_dataset::loader::Loader>> {
        let pid = std::process::id();
        if pid == self.pid && worker.is_none() {
            return Ok(self.inner.clone());
        }
        let mut child = lock(&self.child);
        if let Some((owner, opened_for, loader)) = child.as_ref()
            && (*owner, *opened_for) == (pid, worker)
        {
            return Ok(loader.clone());
        }
        let (files, config) = &self.opened;
        let config = match worker {
            Some((w, n)) => config.in_worker(w, n).map_err(|e| to_py(py, e))?,
            None => config.clone(),
        };
        let loader = py
            .detach(|| shardfeed_dataset::loader::Loader::open(files, config))
            .map_err(|e| to_py(py, e))?;
        let loader = Arc::new(loader);
        *child = Some((pid, worker, loader.clone()));
        Ok(loader)
    }
}

impl Loader {
    fn check_size(&self, py: Python<'_>, size: u32) -> PyResult<()> {
        if self.inner.config().transform.is_none() {
            return Err(PyValueError::new_err(
                "set_size needs a transform (Loader(..., transform=...)); without one, records are read at size=",
            ));
        }
        shardfeed_dataset::limits::check_size(size).map_err(|e| to_py(py, e))
    }
}

#[pymethods]
impl Loader {
    #[new]
    #[pyo3(signature = (shards, *, batch_size=32, shuffle=2048, seed=42, deterministic=true, epochs=Some(1), drop_remainder=true, cache=true, jobs=None, rank=0, world_size=1, split=None, dtype="float32", layout="NHWC", on_damaged="raise", compression=None, cache_bytes=4u64<<30, ignore_manifest=false, size=None, image_key=None, label_key=None, transform=None, return_ids=false))]
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
        ignore_manifest: bool,
        size: Option<u32>,
        image_key: Option<String>,
        label_key: Option<String>,
        transform: Option<&Bound<'_, PyAny>>,
        return_ids: bool,
    ) -> PyResult<Self> {
        // The arguments as given, for pickling (a `spawn` or `forkserver` DataLoader worker).
        let arguments = PyDict::new(py);
        arguments.set_item("shards", shards)?;
        arguments.set_item("batch_size", batch_size)?;
        arguments.set_item("shuffle", shuffle)?;
        arguments.set_item("seed", seed)?;
        arguments.set_item("deterministic", deterministic)?;
        arguments.set_item("epochs", epochs)?;
        arguments.set_item("drop_remainder", drop_remainder)?;
        arguments.set_item("cache", cache)?;
        arguments.set_item("jobs", jobs)?;
        arguments.set_item("rank", rank)?;
        arguments.set_item("world_size", world_size)?;
        arguments.set_item("split", split.clone())?;
        arguments.set_item("dtype", dtype)?;
        arguments.set_item("layout", layout)?;
        arguments.set_item("on_damaged", on_damaged)?;
        arguments.set_item("compression", compression.clone())?;
        arguments.set_item("cache_bytes", cache_bytes)?;
        arguments.set_item("ignore_manifest", ignore_manifest)?;
        arguments.set_item("size", size)?;
        arguments.set_item("image_key", image_key.clone())?;
        arguments.set_item("label_key", label_key.clone())?;
        arguments.set_item("transform", transform)?;
        arguments.set_item("return_ids", return_ids)?;
        let transform = transform.map(parse_transform).transpose()?;
        if let Some(size) = size {
            shardfeed_dataset::limits::check_size(size).map_err(|e| to_py(py, e))?;
        }
        let keys = ExampleKeys::named_or_detected(image_key.as_deref(), label_key.as_deref());
        let resolved = resolve(py, shards, ignore_manifest)?;
        let given = parse_compression(compression.as_deref())?;
        let compression = resolved.compression(given).map_err(|e| to_py(py, e))?;
        let files = resolved.files.clone();
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
            compression,
            dtype: match dtype {
                "float32" => Dtype::Float32,
                "uint8" => Dtype::Uint8,
                "float16" => Dtype::Float16,
                "bfloat16" => Dtype::Bfloat16,
                other => {
                    return Err(PyValueError::new_err(format!(
                        "dtype must be \"float32\", \"float16\", \"bfloat16\" or \"uint8\", not {other:?}"
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
            format: RecordFormat { keys, size },
            transform,
        };
        if epochs == Some(0) {
            return Err(PyValueError::new_err("epochs must be at least 1 (or None)"));
        }
        let inner = py
            .detach(|| shardfeed_dataset::loader::Loader::open_resolved(&resolved, config.clone()))
            .map_err(|e| to_py(py, e))?;
        if let Some(note) = inner.note() {
            // Said once, where the loader is made (Python's warnings filter repeats).
            PyErr::warn(
                py,
                &py.get_type::<pyo3::exceptions::PyUserWarning>(),
                &std::ffi::CString::new(note).unwrap_or_default(),
                1,
            )?;
        }
        Ok(Loader {
            inner: Arc::new(inner),
            opened: (files, config),
            child: Mutex::new(None),
            pid: std::process::id(),
            state: Mutex::new(RunState {
                position: Position::default(),
                totals: ReadStats::default(),
                generation: 0,
                size: None,
            }),
            epochs,
            return_ids,
            given: arguments.unbind(),
        })
    }

    /// Why images are resized as they are read (records of varying size made into the
    /// square served), or `None`.
    #[getter]
    fn note(&self) -> Option<String> {
        self.inner.note().map(str::to_owned)
    }

    /// Batches per epoch for this rank.
    fn __len__(&self) -> usize {
        self.inner.batches_per_epoch() as usize
    }

    fn __iter__(slf: Bound<'_, Self>) -> PyResult<LoaderIter> {
        let worker = dataloader_worker(slf.py())?;
        let loader = slf.get();
        let (generation, epoch) = {
            let mut state = lock(&loader.state);
            state.generation += 1;
            (state.generation, state.position.epoch)
        };
        let epoch = epoch.min(MAX_EPOCH);
        // Runs of `epochs` epochs are aligned (0..E, E..2E, …): an iterator started mid-run
        // (after a resume) ends where the uninterrupted run would have.
        let run_end = loader.epochs.map(|n| (epoch / n + 1) * n);
        Ok(LoaderIter::new(slf.unbind(), run_end, generation, worker))
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
    /// after the same number of batches. `batches=n`: where it stands after `n` more of this
    /// rank's batches, handed out by `workers` `DataLoader` workers (0: iterated here) — for
    /// a training process whose workers iterate copies of the loader.
    #[pyo3(signature = (batches=None, workers=0))]
    fn state_dict<'py>(
        &self,
        py: Python<'py>,
        batches: Option<u64>,
        workers: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (position, size) = {
            let run = lock(&self.state);
            (run.position, run.size)
        };
        let position = match batches {
            Some(n) => self
                .inner
                .position_after(position, n, workers)
                .map_err(|e| to_py(py, e))?,
            None => position,
        };
        let mut state = self.inner.state(position);
        state.size = size;
        let text =
            serde_json::to_string(&state).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
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
        if let Some(size) = state.size {
            self.check_size(py, size)?;
        }
        let mut run = lock(&self.state);
        run.position = position;
        run.size = state.size;
        run.generation += 1;
        Ok(())
    }

    /// Pickled as its arguments and its `state_dict()`: a `DataLoader` worker started with
    /// `spawn` or `forkserver` opens it anew where this one stands.
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let again = py.import("shardfeed")?.getattr("_loader_from")?;
        let args = (self.given.bind(py).copy()?, self.state_dict(py, None, 0)?);
        PyTuple::new(py, [again, args.into_pyobject(py)?.into_any()])
    }

    /// Starts the next `iter()` at the beginning of epoch `epoch` (keeping `set_size`). Where
    /// the loader is iterated in `DataLoader` worker processes, which iterate copies of it,
    /// call it before each epoch (as `DistributedSampler.set_epoch`): the loader here does not
    /// see their batches, so without it every epoch would read epoch 0's order again
    /// (`persistent_workers=True` keeps the copies, which then go on by themselves).
    fn set_epoch(&self, epoch: u64) -> PyResult<()> {
        if epoch > MAX_EPOCH {
            return Err(PyValueError::new_err(format!(
                "epoch {epoch} is past the largest, {MAX_EPOCH}"
            )));
        }
        let mut run = lock(&self.state);
        run.position = Position { epoch, offset: 0 };
        run.generation += 1;
        Ok(())
    }

    /// The transform's output side from the next epoch on (progressive resizing): the crops
    /// and flips stay those of each record's key, resized to `size`. Kept in `state_dict()`.
    fn set_size(&self, py: Python<'_>, size: u32) -> PyResult<()> {
        self.check_size(py, size)?;
        lock(&self.state).size = Some(size);
        Ok(())
    }

    /// The transform's output side the next epoch is made at (`None` without a transform).
    #[getter]
    fn size(&self) -> Option<u32> {
        let configured = self.inner.config().transform.map(|t| t.augment.size);
        lock(&self.state).size.or(configured)
    }

    /// Per-stage busy/wait times, images/s, skipped records (file, offset), padded and
    /// dropped counts: the totals `shardfeed stream --json` prints for its run, under the
    /// same names (both made from one `ReadStats`).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        crate::stats::stats_dict(py, &lock(&self.state).totals)
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
