//! A training run's data side: the shard folder split by files (seeded), the training stream
//! (tutorial order, repeated forever, deterministic) and the validation pass, and `run.json`,
//! the description of the data and settings a run trained with, which `evaluate` and
//! `--resume` read back.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shardfeed_input_pipeline::split::split_tfrecords_with;
use shardfeed_input_pipeline::tfrecord::TfRecordSource;
use shardfeed_input_pipeline::{Parallelism, Pipeline, Repeat};
use shardfeed_record_format::{Compression, ReaderOptions};

use crate::classes::{ClassSource, class_names};
use crate::decode::DEFAULT_SIDE;
use crate::folder::{Location, ShardFolder};
use crate::stream::{Decoded, RecordFormat, RecordRules, decoded_pipeline, tutorial_plan};
use crate::transform::{Transform, augmented_pipeline};
use crate::{Error, Result};

/// The run description's file name in a run folder.
pub const RUN_FILE: &str = "run.json";

/// The run's description, saved beside the model (`run.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Class names in index order.
    pub classes: Vec<String>,
    /// Image side the model was trained on.
    pub image_size: usize,
    /// The shard folder.
    pub shards: PathBuf,
    /// The shards' compression (`none`, `gzip`, `zlib`).
    pub compression: String,
    /// The validation shard files.
    pub validation_files: Vec<PathBuf>,
    /// The training shard files.
    pub train_files: Vec<PathBuf>,
    /// Training records per epoch (all of the training files).
    pub train_records: u64,
    /// Validation records.
    pub validation_records: u64,
    /// Epochs completed.
    pub epochs_done: u64,
    /// Seed.
    pub seed: u64,
    /// Batch size.
    pub batch: usize,
    /// Validation fraction.
    pub validation_fraction: f64,
    /// Learning rate.
    pub learning_rate: f64,
    /// The epochs the run was started for (in all), so a resume continues to the run's own
    /// count (absent in runs written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u64>,
    /// The feature holding each record's image, where the run named it (`--image-key`; absent:
    /// shardfeed's or TensorFlow's, detected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_key: Option<String>,
    /// The feature holding each record's class, where the run named it (`--label-key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_key: Option<String>,
    /// Whether training batches were augmented (`--augment`: RandomResizedCrop + flip), so a
    /// resume goes on with them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub augment: bool,
    /// The arithmetic of the CPU kernels (`--precision`): absent for `f32`, `"bf16"`, so a
    /// resume goes on in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
}

impl RunInfo {
    /// The keys the run named (`--image-key`/`--label-key`), for a resume or an evaluation
    /// that does not name them again; `None`: detected from the records.
    pub fn keys(&self) -> Option<shardfeed_record_format::ExampleKeys> {
        match (&self.image_key, &self.label_key) {
            (Some(image), Some(label)) => Some(shardfeed_record_format::ExampleKeys::named(
                image.clone(),
                label.clone(),
            )),
            _ => None,
        }
    }

    /// Reads `dir/run.json`.
    pub fn load(dir: &Path) -> Result<RunInfo> {
        let path = dir.join(RUN_FILE);
        let text = std::fs::read(&path).map_err(Error::io("read", &path))?;
        serde_json::from_slice(&text).map_err(|e| Error::BadDescription {
            file: path,
            message: e.to_string(),
        })
    }

    /// Writes `dir/run.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("a run description serialises");
        shardfeed_record_format::atomic::write_atomic(&dir.join(RUN_FILE), &json)?;
        Ok(())
    }

    /// The shards' compression.
    pub fn compression(&self) -> Result<Compression> {
        self.compression.parse().map_err(|e| Error::BadDescription {
            file: PathBuf::from(RUN_FILE),
            message: format!("{e}"),
        })
    }

    /// The shard folder the run was trained on, as recorded (an absolute path or a URL).
    pub fn shards_location(&self) -> Result<Location> {
        Location::parse(self.shards.as_os_str()).map_err(|e| Error::BadDescription {
            file: PathBuf::from(RUN_FILE),
            message: format!("shards: {e}"),
        })
    }

    /// The run's validation files, moved to the folder `shards` when given.
    pub fn validation_files_in(&self, shards: Option<&Location>) -> Vec<PathBuf> {
        match shards {
            None => self.validation_files.clone(),
            Some(dir) => self
                .validation_files
                .iter()
                .map(|f| {
                    dir.join(f.file_name().unwrap_or_default().to_string_lossy())
                        .path()
                        .to_owned()
                })
                .collect(),
        }
    }

    /// The run's validation files ([`RunInfo::validation_files_in`]) opened for one pass, at
    /// the compression the run recorded. A local file that is not there any more is an
    /// error naming it and the remedy.
    pub fn open_validation(
        &self,
        shards: Option<&Location>,
    ) -> Result<(Vec<PathBuf>, TfRecordSource)> {
        let files = self.validation_files_in(shards);
        if files.is_empty() {
            return Err(Error::Invalid(
                "the run has no validation files (it was trained with --val-split 0?)".to_owned(),
            ));
        }
        if let Some(missing) = files.iter().find(|f| crate::remote::is_absent_local(f)) {
            return Err(Error::Invalid(format!(
                "{} is not there (the run's validation files were moved?): pass --shards DIR with the folder that holds them now",
                missing.display()
            )));
        }
        let source =
            crate::remote::open_source(&files, ReaderOptions::compression(self.compression()?))?;
        Ok((files, source))
    }

    /// Checks that `now` (the same folder split again) has the files and counts this run
    /// started with.
    pub fn check_same_data(&self, now: &RunInfo) -> Result<()> {
        // Runs written before paths were stored absolute hold them as given: compare the
        // files themselves.
        let same = |a: &[PathBuf], b: &[PathBuf]| {
            let real = |p: &PathBuf| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| real(x) == real(y))
        };
        if !same(&self.train_files, &now.train_files)
            || !same(&self.validation_files, &now.validation_files)
            || self.train_records != now.train_records
        {
            return Err(Error::ShardsChanged(now.shards.clone()));
        }
        Ok(())
    }
}

/// What data to train on and how it is cut.
#[derive(Debug, Clone)]
pub struct DataSettings {
    /// The shard folder (local, or in object storage).
    pub shards: Location,
    /// Batch size.
    pub batch: usize,
    /// Fraction of the shard files used for validation.
    pub validation_fraction: f64,
    /// Seed of the split and the order.
    pub seed: u64,
    /// Decode threads.
    pub jobs: Parallelism,
    /// Class names, when the shards have no manifest.
    pub classes: Option<Vec<String>>,
    /// The shards' compression.
    pub compression: Compression,
    /// The learning rate, recorded in `run.json`.
    pub learning_rate: f64,
    /// Read the shard files as they are, even where they disagree with `manifest.json`.
    pub ignore_manifest: bool,
    /// The records' feature names and the square images are made into.
    pub format: RecordFormat,
    /// Training batches made by RandomResizedCrop + flip to the model's side (`format.size`,
    /// else 160), drawn per record and epoch; validation reads the seed's square at that side.
    pub augment: bool,
}

impl Default for DataSettings {
    /// SPEC §4's: `shards/`, batch 32, 19 % of the files for validation, seed 42.
    fn default() -> Self {
        DataSettings {
            shards: Location::local("shards"),
            batch: 32,
            validation_fraction: 0.19,
            seed: 42,
            jobs: Parallelism::Auto,
            classes: None,
            compression: Compression::None,
            learning_rate: 1e-3,
            ignore_manifest: false,
            format: RecordFormat::default(),
            augment: false,
        }
    }
}

/// A shard folder opened for training: the split, both pipelines and the run's description
/// (with `image_size` 0 and `epochs_done` 0 until training fills them in).
pub struct TrainingData {
    /// The run's description.
    pub info: RunInfo,
    /// Where the class names came from.
    pub class_source: ClassSource,
    /// Full training batches per epoch.
    pub steps_per_epoch: u64,
    /// The training stream: tutorial order, repeated forever, deterministic, full batches.
    pub train: Pipeline<Decoded>,
    /// The validation pass: interleaved, one pass, the last batch kept.
    pub validation: Pipeline<Decoded>,
    /// Why images are resized as they are read ([`RecordRules::note`]), to say once.
    pub note: Option<String>,
}

impl TrainingData {
    /// Splits and opens the shard folder.
    pub fn open(settings: &DataSettings) -> Result<Self> {
        TrainingData::open_in(&ShardFolder::open(&settings.shards)?, settings)
    }

    /// [`TrainingData::open`] on the folder `settings.shards`, already listed (`folder`).
    pub fn open_in(folder: &ShardFolder, settings: &DataSettings) -> Result<Self> {
        let options = ReaderOptions::compression(settings.compression);
        let files = folder.checked_shards(settings.ignore_manifest)?;
        if files.is_empty() {
            return Err(Error::NoShards(folder.path().to_owned()));
        }
        let (classes, class_source) = class_names(
            folder,
            &files,
            settings.classes.as_deref(),
            options,
            settings.format.keys.as_ref(),
        )?;
        let split = split_tfrecords_with(
            &files,
            settings.validation_fraction,
            settings.seed,
            |side| folder.open_source(side, options),
        )?;
        let steps_per_epoch = split.counts.steps_per_epoch(settings.batch);
        if steps_per_epoch == 0 {
            return Err(Error::TooFewRecords {
                records: split.counts.train_records,
                folder: folder.path().to_owned(),
                batch: settings.batch,
            });
        }
        let paths = |source: &TfRecordSource| -> Vec<PathBuf> {
            source.files().iter().map(|f| f.path.clone()).collect()
        };
        let info = RunInfo {
            classes,
            image_size: 0,
            shards: folder.path().to_owned(),
            compression: settings.compression.to_string(),
            validation_files: paths(&split.validation),
            train_files: paths(&split.train),
            train_records: split.counts.train_records,
            validation_records: split.counts.validation_records,
            epochs_done: 0,
            seed: settings.seed,
            batch: settings.batch,
            validation_fraction: settings.validation_fraction,
            learning_rate: settings.learning_rate,
            epochs: None,
            image_key: settings.format.keys.as_ref().map(|k| k.image.to_string()),
            label_key: settings.format.keys.as_ref().map(|k| k.label.to_string()),
            augment: settings.augment,
            precision: None,
        };
        let seed = settings.seed;
        let classes = Some(info.classes.len() as u64);
        // With --augment, both sides are read at the model's side (crops for training, the
        // seed's square for validation).
        let format = match settings.augment {
            true => RecordFormat {
                size: Some(settings.format.size.unwrap_or(DEFAULT_SIDE)),
                ..settings.format.clone()
            },
            false => settings.format.clone(),
        };
        let mut rules = RecordRules::of_source_in(&split.train, Some(folder), &format)?
            .with_classes(info.classes.len() as u64);
        let train = if let (true, Some(side)) = (settings.augment, format.size) {
            (rules.side, rules.note) = (None, None);
            augmented_pipeline(
                split.train,
                rules.clone(),
                Transform::random(side),
                seed,
                |plan| tutorial_plan(plan, seed, Repeat::Forever),
            )
        } else {
            decoded_pipeline(split.train, rules.clone(), |plan| {
                tutorial_plan(plan, seed, Repeat::Forever)
            })
        };
        let note = rules.note.clone();
        let train = train
            .parallelism(settings.jobs)
            .deterministic(true)
            .batch(settings.batch, true);
        let validation = validation_pipeline_in(
            split.validation,
            Some(folder),
            &format,
            classes,
            settings.batch,
            settings.jobs,
        )?;
        Ok(TrainingData {
            info,
            class_source,
            steps_per_epoch,
            train,
            validation,
            note,
        })
    }
}

/// The validation pass over `source`: interleave 16, one pass in order, batches of `batch`
/// with the last one kept; records checked against `source`'s rules and, given, `classes`,
/// read as `format` says (an evaluation asks for the model's side).
pub fn validation_pipeline(
    source: TfRecordSource,
    format: &RecordFormat,
    classes: Option<u64>,
    batch: usize,
    jobs: Parallelism,
) -> Result<Pipeline<Decoded>> {
    validation_pipeline_in(source, None, format, classes, batch, jobs)
}

/// [`validation_pipeline`], with the manifest of `folder` where `source`'s files are in it.
fn validation_pipeline_in(
    source: TfRecordSource,
    folder: Option<&ShardFolder>,
    format: &RecordFormat,
    classes: Option<u64>,
    batch: usize,
    jobs: Parallelism,
) -> Result<Pipeline<Decoded>> {
    let mut rules = RecordRules::of_source_in(&source, folder, format)?;
    if let Some(classes) = classes {
        rules = rules.with_classes(classes);
    }
    Ok(
        decoded_pipeline(source, rules, crate::order::validation_order)
            .parallelism(jobs)
            .deterministic(true)
            .batch(batch.max(1), false),
    )
}
