//! The `Loader.stats()` dict, made from the library's `ReadStats` under the names
//! `shardfeed stream --json` uses.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use shardfeed_dataset::stats::ReadStats;

/// `t` as the dict `Loader.stats()` returns.
pub(crate) fn stats_dict<'py>(py: Python<'py>, t: &ReadStats) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("images", t.images)?;
    out.set_item("batches", t.batches)?;
    out.set_item("seconds", t.elapsed.as_secs_f64())?;
    out.set_item("images_per_second", t.images_per_second())?;
    out.set_item("waited_seconds", t.waited.as_secs_f64())?;
    out.set_item("wait_fraction", t.wait_fraction())?;
    out.set_item("cache_hits", t.cache_hits)?;
    out.set_item("cache_overflow", t.cache_overflow)?;
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
        let changes = PyList::empty(py);
        for c in &tuning.changes {
            let change = PyDict::new(py);
            change.set_item("at_seconds", c.at.as_secs_f64())?;
            change.set_item("workers", c.workers)?;
            change.set_item("prefetch", c.prefetch)?;
            change.set_item("why", &c.why)?;
            changes.append(change)?;
        }
        item.set_item("changes", changes)?;
        item.set_item("summary", tuning.summary())?;
        out.set_item("autotune", item)?;
    }
    Ok(out)
}
