//! `LoaderIter`: one pass of a [`Loader`], its batches made numpy arrays, one thread at a
//! time; and where a torch `DataLoader` worker is.

use std::sync::{Condvar, Mutex};

use std::sync::Arc;

use numpy::ndarray::ArrayView;
use numpy::{IntoPyArray, PyArray};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use shardfeed_dataset::loader::{BufferPool, EpochBatches, Layout, Pixels, Position};

use super::Loader;
use crate::transforms::traced_ids;
use crate::{lock, to_py};

/// One pass of a [`Loader`]: the rest of its current run of epochs. Dropping it (or
/// breaking out of the loop) stops and joins the worker threads.
#[pyclass(module = "shardfeed._native", frozen)]
pub(crate) struct LoaderIter {
    loader: Py<Loader>,
    current: Mutex<Option<EpochBatches>>,
    /// The epoch this pass stops before (`None`: without end).
    run_end: Option<u64>,
    generation: u64,
    /// The process whose threads serve it.
    pid: u32,
    /// In a torch `DataLoader` worker: (its index, the workers).
    worker: Option<(usize, usize)>,
    /// A thread is in `__next__`: another waits (with the GIL released) for its turn.
    busy: Mutex<bool>,
    free: Condvar,
}

/// A thread's turn in [`LoaderIter::__next__`]; the next waiting thread goes on when it drops.
struct Turn<'a>(&'a LoaderIter);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *lock(&self.0.busy) = false;
        self.0.free.notify_one();
    }
}

/// A batch's pixels as the base of its numpy array: when numpy lets go of them (the array and
/// every view of it dropped), the buffer goes back to the loader's pool to be written again.
#[pyclass(module = "shardfeed._native", frozen)]
struct BatchBuffer {
    pixels: Pixels,
    pool: Option<Arc<BufferPool>>,
}

impl Drop for BatchBuffer {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.give(std::mem::replace(&mut self.pixels, Pixels::U8(Vec::new())));
        }
    }
}

/// A numpy array over `buffer`'s elements (`T` the buffer's element type), `buffer` its base.
fn over<'py, T: numpy::Element>(
    buffer: &Bound<'py, BatchBuffer>,
    values: &[T],
    shape: (usize, usize, usize, usize),
) -> PyResult<Bound<'py, PyAny>> {
    let view = ArrayView::from_shape(shape, values)
        .map_err(|e| PyRuntimeError::new_err(format!("batch shape: {e}")))?;
    // SAFETY: `values` is `buffer`'s own, which the array keeps alive as its base and which
    // nothing else writes while the array lives (the pool takes it back only when dropped).
    Ok(unsafe { PyArray::borrow_from_array(&view, buffer.clone().into_any()) }.into_any())
}

/// A batch's pixels as a numpy array of `shape`: float32, uint8, float16, or bfloat16
/// (`ml_dtypes`' where importable, else the raw bits as uint16, documented), over the buffer
/// itself, which goes back to `pool` when numpy is done with it.
fn batch_array<'py>(
    py: Python<'py>,
    pixels: Pixels,
    shape: (usize, usize, usize, usize),
    pool: Option<Arc<BufferPool>>,
) -> PyResult<Bound<'py, PyAny>> {
    let buffer = Bound::new(py, BatchBuffer { pixels, pool })?;
    Ok(match &buffer.get().pixels {
        Pixels::F32(v) => over(&buffer, v, shape)?,
        Pixels::U8(v) => over(&buffer, v, shape)?,
        Pixels::F16(v) => over(&buffer, v, shape)?
            .call_method1("view", (py.import("numpy")?.getattr("float16")?,))?,
        Pixels::Bf16(v) => {
            let bits = over(&buffer, v, shape)?;
            match py.import("ml_dtypes") {
                Ok(ml) => bits.call_method1("view", (ml.getattr("bfloat16")?,))?,
                Err(_) => bits,
            }
        }
    })
}

/// Inside a PyTorch `DataLoader` worker, `torch.utils.data.get_worker_info()`'s (index,
/// workers); `None` elsewhere. torch is looked up, never imported.
pub(super) fn dataloader_worker(py: Python<'_>) -> PyResult<Option<(usize, usize)>> {
    let modules = py.import("sys")?.getattr("modules")?;
    let data = modules.call_method1("get", ("torch.utils.data",))?;
    if data.is_none() {
        return Ok(None);
    }
    let info = data.call_method0("get_worker_info")?;
    if info.is_none() {
        return Ok(None);
    }
    Ok(Some((
        info.getattr("id")?.extract()?,
        info.getattr("num_workers")?.extract()?,
    )))
}

impl LoaderIter {
    pub(super) fn new(
        loader: Py<Loader>,
        run_end: Option<u64>,
        generation: u64,
        worker: Option<(usize, usize)>,
    ) -> LoaderIter {
        LoaderIter {
            loader,
            current: Mutex::new(None),
            run_end,
            generation,
            pid: std::process::id(),
            worker,
            busy: Mutex::new(false),
            free: Condvar::new(),
        }
    }

    /// Waits (GIL released) until no other thread is in `__next__`.
    fn turn(&self, py: Python<'_>) -> Turn<'_> {
        py.detach(|| {
            let mut busy = lock(&self.busy);
            while *busy {
                busy = self.free.wait(busy).unwrap_or_else(|p| p.into_inner());
            }
            *busy = true;
        });
        Turn(self)
    }

    fn finish_epoch(&self, epoch: EpochBatches) {
        let loader = self.loader.get();
        let mut run = lock(&loader.state);
        epoch.add_to(&mut run.totals);
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
        let Some(epoch) = lock(&self.current).take() else {
            return;
        };
        if std::process::id() != self.pid {
            // A forked child: the workers are the parent's threads, which the child does not
            // have; joining them would wait for ever. Their memory is the child's to leave.
            std::mem::forget(epoch);
            return;
        }
        // The epoch's figures so far go into the loader's totals; then the workers are
        // joined with the GIL released (a worker stalled on a remote read must not freeze
        // every Python thread).
        let loader = self.loader.get();
        epoch.add_to(&mut lock(&loader.state).totals);
        Python::attach(|py| py.detach(move || drop(epoch)));
    }
}

#[pymethods]
impl LoaderIter {
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        if std::process::id() != self.pid {
            return Err(PyRuntimeError::new_err(format!(
                "this iterator was started in process {} and this is process {}: a forked \
                 child does not have its worker threads. Iterate the Loader anew in this \
                 process (iter(loader))",
                self.pid,
                std::process::id()
            )));
        }
        let _turn = self.turn(py);
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
                let runnable = loader.runnable(py, self.worker)?;
                let size = lock(&loader.state).size;
                let epoch = py.detach(|| runnable.epoch_at_size(position, size));
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
                    epoch.add_to(&mut lock(&loader.state).totals);
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
                    let pool = epoch.buffers().cloned();
                    *lock(&self.current) = Some(epoch);
                    let (n, side) = (batch.len(), batch.side);
                    let shape = match loader.inner.config().layout {
                        Layout::Nhwc => (n, side, side, 3),
                        Layout::Nchw => (n, 3, side, side),
                    };
                    let images = batch_array(py, batch.pixels, shape, pool)?;
                    let ids = if loader.return_ids {
                        Some(traced_ids(py, &batch.traced)?)
                    } else {
                        None
                    };
                    let labels = batch.labels.into_pyarray(py).into_any();
                    let mut items = vec![images, labels];
                    items.extend(ids);
                    return Ok(Some(PyTuple::new(py, items)?));
                }
            }
        }
    }
}
