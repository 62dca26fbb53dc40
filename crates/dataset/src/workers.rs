//! One shard run split across many machines: worker `I` of `W` lists the same inputs, applies
//! the same seeded order and writes only the shards whose number `s` has `s % W == I`, plus a
//! part manifest (`manifest.part-I-of-W.json`); [`merge`] then checks that every part is
//! present and consistent and writes `manifest.json`. The shards are byte-identical to a
//! one-machine run with the same settings (the order, the cut into shards and each record are
//! functions of the inputs and the seed alone), so any engine that can run `W` copies of one
//! command with an index (Kubernetes Indexed Jobs, Slurm job arrays, Spark, Ray) shards a
//! data set, and a failed index is rerun on its own.
//!
//! ```
//! use shardfeed_dataset::folder::Location;
//! use shardfeed_dataset::workers::{Workers, merge};
//! use shardfeed_dataset::{ShardConfig, shard, synthetic};
//!
//! let dir = tempfile::tempdir()?;
//! let data = synthetic::GenData { n_train: 12, n_test: 0, sides: (40, 60), ..Default::default() };
//! synthetic::generate(dir.path(), &data)?;
//! let out = Location::local(dir.path().join("shards"));
//! for index in [1, 0] {
//!     let config = ShardConfig {
//!         input: Location::local(dir.path().join("train")),
//!         out: out.clone(),
//!         shards: 4,
//!         size: 32,
//!         workers: Workers { count: 2, index },
//!         ..ShardConfig::default()
//!     };
//!     let part = shard(&config, |_progress| {})?;
//!     assert_eq!(part.shards.len(), 2, "worker {index} writes shards {index} and {}", index + 2);
//! }
//! let manifest = merge(&out)?;
//! assert_eq!((manifest.records, manifest.shards.len()), (12, 4));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::folder::{Location, MANIFEST_FILE, Manifest, is_shard_name};
pub use crate::folder::{Workers, is_part_file, part_file_name, shard_number_of};
use crate::remote::Folder;
use crate::{Error, Result};

/// The format name written into every part manifest.
pub const PART_FORMAT: &str = "shardfeed.part/1";

impl Workers {
    /// Checks the pair against the number of shards (every worker must own a shard).
    pub fn check(&self, shards: usize) -> Result<()> {
        if self.count == 0 || self.index >= self.count {
            return Err(Error::Invalid(format!(
                "worker index {} is not below the number of workers {}",
                self.index, self.count
            )));
        }
        if self.count > shards {
            return Err(Error::Invalid(format!(
                "{} workers for {shards} shards: each worker writes whole shards, so at most {shards} workers",
                self.count
            )));
        }
        Ok(())
    }

    /// The worker from explicit settings and, where they are absent, the scheduler's
    /// environment, read through `env`:
    ///
    /// - both given: they are used;
    /// - `count` alone: the index is `JOB_COMPLETION_INDEX` (Kubernetes Indexed Jobs) or
    ///   `SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN` (Slurm job arrays);
    /// - neither: a Slurm array (`SLURM_ARRAY_TASK_ID` and `SLURM_ARRAY_TASK_COUNT`) gives
    ///   both; `JOB_COMPLETION_INDEX` alone is an error (the count is not in a pod's
    ///   environment, and running the whole set on every pod would race);
    ///   otherwise [`Workers::ONE`].
    ///
    /// The answer says where it came from, for a log line.
    ///
    /// ```
    /// use shardfeed_dataset::workers::Workers;
    ///
    /// let env = |name: &str| (name == "JOB_COMPLETION_INDEX").then(|| "2".to_owned());
    /// let (workers, from) = Workers::resolve(Some(4), None, env)?;
    /// assert_eq!((workers, from.as_str()), (Workers { count: 4, index: 2 }, "JOB_COMPLETION_INDEX"));
    /// assert!(Workers::resolve(None, None, env).is_err());
    /// # Ok::<(), shardfeed_dataset::Error>(())
    /// ```
    pub fn resolve(
        count: Option<usize>,
        index: Option<usize>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(Workers, String)> {
        let number = |name: &str| -> Result<Option<usize>> {
            match env(name) {
                None => Ok(None),
                Some(text) if text.trim().is_empty() => Ok(None),
                Some(text) => text.trim().parse().map(Some).map_err(|_| {
                    Error::Invalid(format!("{name}={text:?} is not a non-negative integer"))
                }),
            }
        };
        let slurm_index = || -> Result<Option<usize>> {
            let Some(id) = number("SLURM_ARRAY_TASK_ID")? else {
                return Ok(None);
            };
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            id.checked_sub(min).map(Some).ok_or_else(|| {
                Error::Invalid(format!(
                    "SLURM_ARRAY_TASK_ID={id} is below SLURM_ARRAY_TASK_MIN={min}"
                ))
            })
        };
        let (workers, from) = match (count, index) {
            (Some(count), Some(index)) => (Workers { count, index }, "settings".to_owned()),
            (Some(count), None) => {
                if let Some(index) = number("JOB_COMPLETION_INDEX")? {
                    (Workers { count, index }, "JOB_COMPLETION_INDEX".to_owned())
                } else if let Some(index) = slurm_index()? {
                    (Workers { count, index }, "SLURM_ARRAY_TASK_ID".to_owned())
                } else {
                    return Err(Error::Invalid(format!(
                        "{count} workers but no worker index: give it, or run under a Kubernetes Indexed Job (JOB_COMPLETION_INDEX) or a Slurm job array (SLURM_ARRAY_TASK_ID)"
                    )));
                }
            }
            (None, Some(index)) => match number("SLURM_ARRAY_TASK_COUNT")? {
                Some(count) => (
                    Workers { count, index },
                    "SLURM_ARRAY_TASK_COUNT".to_owned(),
                ),
                None => {
                    return Err(Error::Invalid(format!(
                        "worker index {index} but no number of workers: give both"
                    )));
                }
            },
            (None, None) => match (slurm_index()?, number("SLURM_ARRAY_TASK_COUNT")?) {
                (Some(index), Some(count)) => (
                    Workers { count, index },
                    "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT".to_owned(),
                ),
                _ if number("JOB_COMPLETION_INDEX")?.is_some() => {
                    return Err(Error::Invalid(
                        "JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but not the number of workers: give it (the Job's completions)".to_owned(),
                    ));
                }
                _ => (Workers::ONE, "default".to_owned()),
            },
        };
        if workers.count == 0 || workers.index >= workers.count {
            return Err(Error::Invalid(format!(
                "worker index {} (from {from}) is not below the number of workers {}",
                workers.index, workers.count
            )));
        }
        Ok((workers, from))
    }
}

/// What one worker wrote: its shards (by number) and what a merge needs to check that all
/// parts come from the same run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartManifest {
    /// [`PART_FORMAT`].
    pub format: String,
    /// This worker.
    pub worker_index: usize,
    /// Workers in all.
    pub num_workers: usize,
    /// Shards of the whole run.
    pub shards_total: usize,
    /// The shard file name prefix.
    pub prefix: String,
    /// SHA-256 of the input listing (every `.jpg`/`.jpeg` name, in order): workers that saw
    /// different folders do not merge.
    pub inputs_digest: String,
    /// The number of each shard in `manifest.shards`, in the same order.
    pub shard_numbers: Vec<u64>,
    /// This worker's share of the final manifest: its shards, records, per-class counts,
    /// skipped files (worker 0 also lists files skipped for their names), bytes and seconds;
    /// the settings are the run's.
    pub manifest: Manifest,
}

impl PartManifest {
    /// The part manifest as written: pretty JSON and a newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut text = serde_json::to_string_pretty(self).expect("a part manifest serialises");
        text.push('\n');
        text.into_bytes()
    }

    /// Parses the part manifest `text`, read from `path` (named in errors; its file name must
    /// be the part's own).
    pub fn parse(text: &[u8], path: &Path) -> Result<Self> {
        let bad = |message: String| Error::BadDescription {
            file: path.to_owned(),
            message,
        };
        let part: PartManifest = serde_json::from_slice(text).map_err(|e| bad(e.to_string()))?;
        if part.format != PART_FORMAT {
            return Err(bad(format!(
                "format {:?}, expected {PART_FORMAT:?}",
                part.format
            )));
        }
        let workers = Workers {
            count: part.num_workers,
            index: part.worker_index,
        };
        // The rule the workers ran under (a count of 0 divided, a huge one was looped over).
        workers
            .check(part.shards_total)
            .map_err(|e| bad(e.to_string()))?;
        let named = part_file_name(workers);
        if path.file_name().is_some_and(|n| n != named.as_str()) {
            return Err(bad(format!(
                "it holds worker {} of {}'s part, whose file is {named}",
                part.worker_index, part.num_workers
            )));
        }
        let mut numbers = std::collections::BTreeSet::new();
        for &number in &part.shard_numbers {
            if number >= part.shards_total as u64 {
                return Err(bad(format!(
                    "shard number {number} of a run of {} shards",
                    part.shards_total
                )));
            }
            if !numbers.insert(number) {
                return Err(bad(format!("shard number {number} listed twice")));
            }
        }
        if part.shard_numbers.len() != part.manifest.shards.len() {
            return Err(bad(format!(
                "{} shard numbers for {} shards",
                part.shard_numbers.len(),
                part.manifest.shards.len()
            )));
        }
        Ok(part)
    }
}

/// Checks the parts in `dir` (all present, from one run, their shards there with the sizes
/// they state, no other shard and no temporary file) and writes `manifest.json`: the
/// manifest a one-machine run would have written (the same shards, counts and skipped files;
/// `seconds` is the slowest worker's). The parts stay, so a merge can be repeated.
pub fn merge(location: &Location) -> Result<Manifest> {
    let dir = location.path();
    let bad = |message: String| Error::Merge {
        folder: dir.to_owned(),
        message,
    };
    let folder = Folder::at(location)?;
    let listing: BTreeMap<String, u64> = folder.list()?.into_iter().collect();
    let names: Vec<String> = listing.keys().cloned().collect();
    let mut parts = Vec::new();
    for name in names.iter().filter(|n| is_part_file(n)) {
        parts.push(PartManifest::parse(
            &folder.read(name, crate::limits::MAX_DESCRIPTION_BYTES)?,
            &dir.join(name),
        )?);
    }
    let Some(first) = parts.first().cloned() else {
        return Err(bad(format!(
            "no part manifests (manifest.part-I-of-W.json): run the workers first{}",
            if names.iter().any(|n| n == MANIFEST_FILE) {
                " (the folder has a manifest.json: it may be a one-machine run)"
            } else {
                ""
            }
        )));
    };
    let count = first.num_workers;
    let counts: std::collections::BTreeSet<usize> = parts.iter().map(|p| p.num_workers).collect();
    if counts.len() > 1 {
        return Err(bad(format!(
            "parts of runs with different numbers of workers ({counts:?}): remove the stale ones"
        )));
    }
    let mut by_index: BTreeMap<usize, PartManifest> = BTreeMap::new();
    for part in parts {
        by_index.insert(part.worker_index, part);
    }
    // Every index is below `count` (parsed so), so this many are missing; the first few are
    // named (a part may claim any count: nothing here is sized by it).
    let missing = count - by_index.len();
    if missing > 0 {
        const NAMED: usize = 10;
        let first: Vec<String> = (0..count)
            .filter(|i| !by_index.contains_key(i))
            .take(NAMED)
            .map(|i| i.to_string())
            .collect();
        return Err(bad(format!(
            "{missing} of {count} parts missing: worker index {}{} has not finished (rerun it)",
            first.join(", "),
            if missing > NAMED { ", …" } else { "" }
        )));
    }
    if let Some(temporary) = names.iter().find(|n| n.ends_with(".tmp")) {
        return Err(bad(format!(
            "{temporary} is a temporary file: a worker is still running there, or was killed (rerun it)"
        )));
    }

    // Every part from the same run: the same settings and the same inputs.
    let settings = |part: &PartManifest| {
        let m = &part.manifest;
        (
            part.shards_total,
            part.prefix.clone(),
            part.inputs_digest.clone(),
            m.classes.clone(),
            (m.target_size, m.resize, m.max_side),
            m.quality,
            m.seed,
            m.compression,
            (m.fast_decode, m.exif_orientation),
            m.source_count,
            m.ignored_non_jpeg,
        )
    };
    let reference = settings(&first);
    for part in by_index.values() {
        if settings(part) != reference {
            return Err(bad(format!(
                "{} and {} come from different runs (settings, classes or input files differ)",
                part_file_name(Workers {
                    count,
                    index: first.worker_index
                }),
                part_file_name(Workers {
                    count,
                    index: part.worker_index
                }),
            )));
        }
    }

    let mut shards = Vec::new();
    let mut skipped = Vec::new();
    let (mut bytes_in, mut seconds) = (0, 0f64);
    let mut sizes = None;
    for part in by_index.values() {
        let owner = Workers {
            count,
            index: part.worker_index,
        };
        for (number, info) in part.shard_numbers.iter().zip(&part.manifest.shards) {
            if !owner.owns(*number) {
                return Err(bad(format!(
                    "{} lists {} (shard {number}), which is not worker {}'s",
                    part_file_name(owner),
                    info.file,
                    owner.index
                )));
            }
            let Some(&bytes) = listing.get(&info.file) else {
                return Err(bad(format!(
                    "{} listed by {} is not in the folder",
                    info.file,
                    part_file_name(owner)
                )));
            };
            if bytes != info.bytes {
                return Err(bad(format!(
                    "{} has {bytes} bytes, its part manifest says {}",
                    info.file, info.bytes
                )));
            }
            if !listing.contains_key(&format!("{}.idx", info.file)) {
                return Err(bad(format!("{} has no .idx", info.file)));
            }
            shards.push((*number, info.clone()));
        }
        skipped.extend(part.manifest.skipped.iter().cloned());
        bytes_in += part.manifest.bytes_in;
        seconds = seconds.max(part.manifest.seconds);
        sizes = crate::folder::SizeRange::merged(sizes, part.manifest.sizes);
    }
    shards.sort_by_key(|(number, _)| *number);
    let listed: std::collections::BTreeSet<&str> =
        shards.iter().map(|(_, s)| s.file.as_str()).collect();
    if let Some(stray) = names
        .iter()
        .filter(|n| is_shard_name(n))
        .find(|n| !listed.contains(n.as_str()))
    {
        return Err(bad(format!(
            "{stray} is in the folder but in no part manifest: left from another run (remove it)"
        )));
    }
    if shards.is_empty() {
        return Err(Error::NothingUsable {
            folder: dir.to_owned(),
            skipped: skipped.len(),
        });
    }
    let shards: Vec<_> = shards.into_iter().map(|(_, s)| s).collect();
    let classes = first.manifest.classes.len();
    let mut per_class = vec![0; classes];
    for shard in &shards {
        for (total, n) in per_class.iter_mut().zip(&shard.per_class) {
            *total += n;
        }
    }
    skipped.sort_by(|a, b| a.file.cmp(&b.file));
    let manifest = Manifest {
        tool: first.manifest.tool.clone(),
        classes: first.manifest.classes.clone(),
        records: shards.iter().map(|s| s.records).sum(),
        bytes_out: shards.iter().map(|s| s.bytes).sum(),
        shards,
        per_class,
        skipped,
        bytes_in,
        seconds,
        sizes,
        ..first.manifest
    };
    folder.write(MANIFEST_FILE, manifest.to_json())?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_numbers_come_from_every_file_the_shard_step_writes() {
        for (name, number) in [
            ("data03-250.tfrec", Some(3)),
            ("data03-250.tfrec.idx", Some(3)),
            (".data03.tfrec.tmp", Some(3)),
            (".data03.tfrec.4711-0.tmp", Some(3)),
            (".data03-250.tfrec.idx.tmp", Some(3)),
            ("data123-7.tfrec", Some(123)),
            ("data3-250.tfrec", None),
            ("other03-250.tfrec", None),
            ("data03-x.tfrec", None),
            ("manifest.json", None),
        ] {
            assert_eq!(shard_number_of(name, "data"), number, "{name}");
        }
    }

    #[test]
    fn the_environment_of_each_scheduler_gives_the_worker() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let w = |count, index| Workers { count, index };
        let ok = |count, index, vars| Workers::resolve(count, index, env(vars)).map(|r| r.0);
        assert_eq!(ok(None, None, &[]).unwrap(), Workers::ONE);
        assert_eq!(
            ok(Some(3), Some(1), &[("JOB_COMPLETION_INDEX", "2")]).unwrap(),
            w(3, 1)
        );
        assert_eq!(
            ok(Some(3), None, &[("JOB_COMPLETION_INDEX", "2")]).unwrap(),
            w(3, 2)
        );
        let slurm = &[
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_MIN", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ];
        assert_eq!(ok(None, None, slurm).unwrap(), w(3, 1));
        assert_eq!(ok(Some(3), None, slurm).unwrap(), w(3, 1));
        assert_eq!(ok(None, Some(2), slurm).unwrap(), w(3, 2));
        for (count, index, vars, says) in [
            (
                None,
                None,
                &[("JOB_COMPLETION_INDEX", "0")][..],
                "JOB_COMPLETION_INDEX is set",
            ),
            (Some(2), None, &[][..], "no worker index"),
            (None, Some(1), &[][..], "no number of workers"),
            (Some(2), Some(2), &[][..], "not below"),
            (
                Some(2),
                None,
                &[("JOB_COMPLETION_INDEX", "x")][..],
                "\"x\" is not",
            ),
            (
                None,
                None,
                &[
                    ("SLURM_ARRAY_TASK_ID", "9"),
                    ("SLURM_ARRAY_TASK_COUNT", "3"),
                ][..],
                "not below",
            ),
        ] {
            let error = Workers::resolve(count, index, env(vars))
                .unwrap_err()
                .to_string();
            assert!(error.contains(says), "{error}");
        }
    }

    #[test]
    fn more_workers_than_shards_is_refused() {
        assert!(Workers { count: 4, index: 0 }.check(4).is_ok());
        let error = Workers { count: 5, index: 0 }
            .check(4)
            .unwrap_err()
            .to_string();
        assert!(error.contains("at most 4 workers"), "{error}");
    }
}
