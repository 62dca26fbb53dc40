//! The shard step: a folder of labelled JPEGs → TFRecord shards, a `.idx` per shard and
//! `manifest.json` (SPEC §2).
//!
//! The file list is read and shuffled with the seed, cut into `shards` runs of
//! `ceil(n / shards)` files, and streamed through the input pipeline's *ordered* parallel map
//! (read, decode, resize, crop, encode, serialise), so memory is bounded by the pipeline's
//! window whatever the number of images, and the output is byte-identical for any number of
//! jobs. A file that cannot be used is skipped, counted and listed with its reason (or, with
//! `strict`, ends the run with an error naming it). Each shard is written to a temporary
//! file and renamed once complete, under a name that carries its real record count.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use shardfeed_image_prep::DecodeOptions;
use shardfeed_input_pipeline::{Error as PipelineError, Parallelism, Rng};
use shardfeed_record_format::{Compression, FileWriter};

use crate::MANIFEST_FILE;
use crate::folder::{
    Location, Manifest, Resize, ShardInfo, SizeRange, Skipped, is_dataset_file,
    provisional_shard_name, shard_file_name,
};
use crate::label::Classes;
use crate::labels::Labels;
use crate::remote::Folder;
use crate::workers::{PartManifest, Workers};
use crate::{Error, Result};

mod output;
mod prepare;
mod sources;
mod writer;

use output::{Stage, prepare_worker_output, replaced_files};
pub use prepare::Verify;
use prepare::prepare_pipeline;
use writer::ShardWriter;

/// The random stream of the file-order shuffle.
const ORDER_STREAM: u64 = 7;

/// What to shard and how (SPEC §2 defaults).
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// The folder of `LABEL.ID.jpg` files (local, or in object storage).
    pub input: Location,
    /// The output folder (local, or in object storage).
    pub out: Location,
    /// Number of shards.
    pub shards: usize,
    /// Target square size (`Resize::Crop`).
    pub size: u32,
    /// How each record's image is sized: the seed's square crop, fitted under `max_side`,
    /// or the source kept as it is.
    pub resize: Resize,
    /// The longest side of a record (`Resize::Fit`).
    pub max_side: u32,
    /// How a source kept as it is is checked (`Resize::Keep`).
    pub verify: Verify,
    /// Where each source's label comes from (its name, its class folder, a CSV).
    pub labels: Labels,
    /// Store each source's path relative to `input` in its record (`name`, bytes).
    pub keep_names: bool,
    /// JPEG quality of the records.
    pub quality: u8,
    /// Shard file name prefix.
    pub prefix: String,
    /// An explicit class list, or `None` for the sorted labels found.
    pub classes: Option<Classes>,
    /// The seed of the file order.
    pub seed: u64,
    /// Whole-file compression of the shards.
    pub compression: Compression,
    /// Stop at the first unusable file instead of skipping it.
    pub strict: bool,
    /// Threads for decode/resize/encode.
    pub jobs: Parallelism,
    /// Replace the shards, indexes and manifest already in `out`.
    pub overwrite: bool,
    /// How to decode the sources.
    pub decode: DecodeOptions,
    /// This process's share of the run: [`Workers::ONE`], or worker `index` of `count`, which
    /// writes only its shards and a part manifest (see [`crate::workers`]).
    pub workers: Workers,
    /// Set (SIGINT, SIGTERM) to stop the run: what it wrote is removed and the run returns
    /// [`Error::Interrupted`].
    pub stop: Option<Arc<AtomicBool>>,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig {
            input: Location::local("data/train"),
            out: Location::local("shards"),
            shards: 16,
            size: 160,
            resize: Resize::Crop,
            max_side: 512,
            verify: Verify::Decode,
            labels: Labels::Name,
            keep_names: false,
            quality: 95,
            prefix: "data".to_owned(),
            classes: None,
            seed: 42,
            compression: Compression::None,
            strict: false,
            jobs: Parallelism::Auto,
            overwrite: false,
            decode: DecodeOptions::default(),
            workers: Workers::ONE,
            stop: None,
        }
    }
}

/// Progress of a run, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Files processed (written or skipped).
    pub done: u64,
    /// Files to process.
    pub total: u64,
}

/// A labelled input file.
#[derive(Debug, Clone)]
struct Input {
    path: PathBuf,
    class: i64,
}

/// Runs the shard step; `progress` is called after each file. Returns the manifest it wrote:
/// the record and class counts, the shards, and every file skipped with its reason. A worker
/// of a split run ([`ShardConfig::workers`]) returns its share (its part manifest's).
pub fn shard(config: &ShardConfig, mut progress: impl FnMut(Progress)) -> Result<Manifest> {
    let started = Instant::now();
    if config.shards == 0 {
        return Err(Error::Invalid(
            "the number of shards must be at least 1".into(),
        ));
    }
    crate::limits::check_size(config.size)?;
    if config.resize == Resize::Fit {
        crate::limits::check_size(config.max_side)?;
    }
    crate::limits::check_prefix(&config.prefix)?;
    crate::limits::check_jobs(config.jobs)?;
    let workers = config.workers;
    workers.check(config.shards)?;
    // The file list is the only per-image memory of a run: one path and class per image,
    // held once (moved, never cloned: `cargo xtask scale` measures it).
    let (sources, ignored) = sources::list(config)?;
    let source_count = sources.len() as u64;
    let inputs_digest = workers
        .is_split()
        .then(|| sources::listing_digest(&config.input, &sources));
    let mut skipped = Vec::new();
    let (mut inputs, classes) = sources::label_inputs(sources, config, &mut skipped)?;
    Rng::for_epoch(config.seed, 0, ORDER_STREAM).shuffle(&mut inputs);
    let per_shard = inputs.len().div_ceil(config.shards).max(1) as u64;
    // Shard `s` holds positions [s·per_shard, (s+1)·per_shard) of the shuffled list. A
    // worker keeps the positions of its own shards, in order; every one of them but the last
    // is full, so the p-th kept file is in shard index + count·⌊p / per_shard⌋. The files
    // skipped for their names are worker 0's to list.
    if workers.is_split() {
        let mut position = 0;
        inputs.retain(|_| {
            let keep = workers.owns(position / per_shard);
            position += 1;
            keep
        });
        if workers.index != 0 {
            skipped.clear();
        }
    }
    let shard_of =
        |position: u64| workers.index as u64 + workers.count as u64 * (position / per_shard);
    let inputs: Arc<[Input]> = inputs.into();
    let folder = Folder::at(&config.out)?;
    folder.create()?;
    // One run at a time writes the folder (or this worker's share of it): a second is
    // refused at once, naming the holder; released when this returns.
    let _lock = crate::folder::lock::lock(&folder, workers)?;
    // With a dataset to replace, the new one is written into a staging folder inside `out`
    // and replaces the old one only once complete (`promote`); until then, and whenever the
    // run fails or is interrupted, the old one stays as it was.
    let mut replacing = None;
    let target = if workers.is_split() {
        prepare_worker_output(&folder, config)?;
        folder.clone()
    } else {
        let old = replaced_files(&folder, config)?;
        if old.is_empty() {
            folder.clone()
        } else {
            let stage = Stage::new(&folder)?;
            let target = stage.folder.clone();
            replacing = Some((stage, old));
            target
        }
    };

    let total = inputs.len() as u64;
    let mut writer = ShardWriter::new(config, target, classes.len())?;
    let pipeline = prepare_pipeline(config, Arc::clone(&inputs));
    let mut bytes_in = 0u64;
    let mut sizes: Option<SizeRange> = None;
    let stopped = || {
        config
            .stop
            .as_ref()
            .is_some_and(|stop| stop.load(Ordering::SeqCst))
    };
    for (position, item) in pipeline.iter().items().enumerate() {
        if stopped() {
            let removed = writer.abandon();
            return Err(Error::Interrupted {
                folder: config.out.path().to_owned(),
                removed,
            });
        }
        let input = &inputs[position];
        writer.or_abandon(|w| w.switch_to(shard_of(position as u64)))?;
        match item {
            Ok(prepared) => {
                bytes_in += prepared.source_bytes;
                if let Some((width, height)) = prepared.size {
                    sizes = SizeRange::merged(sizes, Some(SizeRange::of(width, height)));
                }
                writer.or_abandon(|w| w.write(&prepared.record, input.class as usize))?;
            }
            Err(error) => {
                let reason = skip_reason(error);
                if config.strict {
                    writer.abandon();
                    return Err(Error::Unusable {
                        path: input.path.clone(),
                        reason,
                    });
                }
                let skip = Skipped {
                    file: input.path.clone(),
                    reason,
                };
                skipped.push(skip);
            }
        }
        progress(Progress {
            done: position as u64 + 1,
            total,
        });
    }
    let (shard_numbers, shards) = writer.or_abandon(ShardWriter::finish)?;
    if shards.is_empty() && !workers.is_split() {
        // Every file was unusable: no shard, no manifest; a run that made nothing fails.
        writer.abandon();
        return Err(Error::NothingUsable {
            folder: config.input.path().to_owned(),
            skipped: skipped.len(),
        });
    }

    let mut per_class = vec![0; classes.len()];
    for shard in &shards {
        for (total, n) in per_class.iter_mut().zip(&shard.per_class) {
            *total += n;
        }
    }
    skipped.sort_by(|a, b| a.file.cmp(&b.file));
    let manifest = Manifest {
        tool: format!("shardfeed {}", env!("CARGO_PKG_VERSION")),
        classes: classes.names().to_vec(),
        records: shards.iter().map(|s| s.records).sum(),
        bytes_out: shards.iter().map(|s| s.bytes).sum(),
        shards,
        per_class,
        target_size: if config.resize == Resize::Crop {
            config.size
        } else {
            0
        },
        resize: config.resize,
        max_side: if config.resize == Resize::Fit {
            config.max_side
        } else {
            0
        },
        sizes,
        quality: config.quality,
        seed: config.seed,
        compression: config.compression,
        fast_decode: config.decode.dct_scaling,
        exif_orientation: config.decode.exif_orientation,
        source_count,
        ignored_non_jpeg: ignored,
        skipped,
        bytes_in,
        seconds: started.elapsed().as_secs_f64(),
    };
    match inputs_digest {
        Some(inputs_digest) => {
            let part = PartManifest {
                format: crate::workers::PART_FORMAT.to_owned(),
                worker_index: workers.index,
                num_workers: workers.count,
                shards_total: config.shards,
                prefix: config.prefix.clone(),
                inputs_digest,
                shard_numbers,
                manifest: manifest.clone(),
            };
            let name = crate::folder::part_file_name(workers);
            writer.or_abandon(|w| w.folder.write(&name, part.to_json()))?;
        }
        None => writer.or_abandon(|w| w.folder.write(MANIFEST_FILE, manifest.to_json()))?,
    }
    writer.remove_stage();
    if let Some((stage, old)) = replacing {
        stage.promote(&folder, &old)?;
    }
    Ok(manifest)
}

/// The reason of a failed item: the preparer's own message.
fn skip_reason(error: PipelineError) -> String {
    match error {
        PipelineError::Item { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

/// One kind of reason files were skipped for, for the end-of-run summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipKind {
    /// The reason up to its first `:` (`invalid JPEG`, `no label in file name`, …); reasons
    /// never contain the file's name, which is [`Skipped::file`].
    pub kind: String,
    /// Files skipped for it.
    pub count: usize,
    /// The first of them, by name.
    pub example: PathBuf,
}

/// Groups skip reasons by kind, most frequent first (then by kind), with a count and an
/// example file each: `32 × no label in file name (e.g. mix2/0.jpg)`.
pub fn skip_summary(skipped: &[Skipped]) -> Vec<SkipKind> {
    let mut kinds: BTreeMap<String, SkipKind> = BTreeMap::new();
    for skip in skipped {
        let kind = skip
            .reason
            .split(':')
            .next()
            .unwrap_or(&skip.reason)
            .trim()
            .to_owned();
        let entry = kinds.entry(kind.clone()).or_insert_with(|| SkipKind {
            kind,
            count: 0,
            example: skip.file.clone(),
        });
        entry.count += 1;
        if skip.file < entry.example {
            entry.example = skip.file.clone();
        }
    }
    let mut kinds: Vec<SkipKind> = kinds.into_values().collect();
    kinds.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.kind.cmp(&b.kind)));
    kinds
}

impl std::fmt::Display for SkipKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} × {} (e.g. {})",
            self.count,
            self.kind,
            self.example.display()
        )
    }
}

/// A skip reason that does not repeat the file's name (the manifest lists it beside).
fn reason_without_path(error: &Error) -> String {
    match error {
        Error::Label { place, message, .. } => format!("{place}: {message}"),
        Error::NoLabel(_) => "no label in file name: expected LABEL.ID.jpg".to_owned(),
        Error::UnknownLabel { label, classes, .. } => {
            format!("label not in the class list: {label:?} is not one of {classes}")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_are_grouped_by_kind_with_a_count_and_an_example() {
        let skip = |file: &str, reason: &str| Skipped {
            file: file.into(),
            reason: reason.into(),
        };
        let mut skipped: Vec<Skipped> = (0..32)
            .map(|i| {
                skip(
                    &format!("mix2/{i:02}.jpg"),
                    "no label in file name: expected LABEL.ID.jpg",
                )
            })
            .collect();
        skipped.push(skip("b.jpg", "invalid JPEG: bogus marker"));
        skipped.push(skip("a.jpg", "invalid JPEG: premature end"));
        let kinds = skip_summary(&skipped);
        let lines: Vec<String> = kinds.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "32 × no label in file name (e.g. mix2/00.jpg)",
                "2 × invalid JPEG (e.g. a.jpg)"
            ]
        );
        let reason = reason_without_path(&Error::NoLabel("x/y/0.jpg".into()));
        assert!(!reason.contains("0.jpg"), "{reason}");
    }
}
