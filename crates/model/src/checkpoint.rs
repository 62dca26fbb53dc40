//! Checkpoints: the weights, Adam's state (moments and step count), how far training got and
//! an opaque data-position blob from the caller (the input pipeline's resume state), so a run
//! resumed from a checkpoint continues exactly as the uninterrupted run would have.
//!
//! Layout of a checkpoint folder: `model-NNNNNNNN.bpk` and `optimizer-NNNNNNNN.bpk` (burnpack,
//! `N` = global step) and `state.json` naming them. Every file is written under a temporary
//! name, synced and renamed, `state.json` last, so a crash at any moment leaves either the
//! previous checkpoint or the new one — never a mix. Older weight files are removed after.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::AdamConfig;
use burn::prelude::Device;
use burn::store::ModuleRecord;
use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::{Cnn, Metrics, TrainConfig, Trainer};

/// The file naming the current checkpoint.
const STATE_FILE: &str = "state.json";
/// Version of `state.json`'s layout.
const FORMAT: u32 = 1;

/// How far a run got, saved with the weights.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Epochs completed.
    pub epochs_done: u64,
    /// Steps done in the current (unfinished) epoch; 0 at an epoch boundary.
    pub steps_in_epoch: u64,
    /// Training metrics of the current epoch so far.
    pub epoch_metrics: Metrics,
    /// The caller's data position (e.g. the input pipeline's resume state), opaque here.
    pub data_state: Vec<u8>,
}

/// `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    format: u32,
    config: TrainConfig,
    global_step: u64,
    model_file: String,
    optimizer_file: String,
    progress: Progress,
}

/// Writes `bytes` to `path` atomically (the workspace's one helper: temporary file, fsync,
/// rename), errors naming the file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    shardfeed_record_format::atomic::write_atomic(path, bytes).map_err(|e| ModelError::Io {
        path: e.path,
        source: e.source,
    })
}

/// Reads and parses a JSON file, errors naming it.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let text = fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|source| ModelError::Json {
        path: path.to_owned(),
        source,
    })
}

/// Whether `dir` holds a checkpoint.
pub fn has_checkpoint(dir: &Path) -> bool {
    dir.join(STATE_FILE).is_file()
}

impl Trainer {
    /// Saves the weights, the optimizer's state and `progress` into `dir` (created if needed).
    pub fn save_checkpoint(&self, dir: &Path, progress: &Progress) -> Result<(), ModelError> {
        fs::create_dir_all(dir).map_err(|source| ModelError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let step = self.global_step();
        let model_file = format!("model-{step:08}.bpk");
        let optimizer_file = format!("optimizer-{step:08}.bpk");
        let model_bytes = self
            .model()
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| ModelError::record(dir.join(&model_file), e))?;
        write_atomic(&dir.join(&model_file), &model_bytes)?;
        let optimizer_bytes = self
            .optimizer()
            .into_bytes()
            .map_err(|e| ModelError::record(dir.join(&optimizer_file), e))?;
        write_atomic(&dir.join(&optimizer_file), &optimizer_bytes)?;
        let state = State {
            format: FORMAT,
            config: *self.config(),
            global_step: step,
            model_file: model_file.clone(),
            optimizer_file: optimizer_file.clone(),
            progress: progress.clone(),
        };
        let json = serde_json::to_vec_pretty(&state).expect("the state serialises");
        write_atomic(&dir.join(STATE_FILE), &json)?;
        // Only now that state.json names the new files are the old ones unreferenced.
        if let Ok(entries) = fs::read_dir(dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let ours = name.ends_with(".bpk")
                    && (name.starts_with("model-") || name.starts_with("optimizer-"));
                if ours && name != model_file && name != optimizer_file {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }

    /// Restores the trainer saved in `dir` on `device`, and how far it got.
    pub fn resume(dir: &Path, device: Device) -> Result<(Trainer, Progress), ModelError> {
        let state_path = dir.join(STATE_FILE);
        let state: State = read_json(&state_path)?;
        if state.format != FORMAT {
            return Err(ModelError::Invalid {
                path: state_path,
                message: format!(
                    "checkpoint format {} (this build reads {FORMAT})",
                    state.format
                ),
            });
        }
        let model_path = dir.join(&state.model_file);
        let record = ModuleRecord::load(&model_path)
            .map_err(|e| ModelError::record(model_path.clone(), e))?;
        let model = Cnn::new(state.config.classes, &device)
            .try_load_record(record)
            .map_err(|e| ModelError::record(model_path.clone(), e))?;
        let optimizer_path = dir.join(&state.optimizer_file);
        let optimizer = Trainer::adam()
            .load(&optimizer_path)
            .map_err(|e| ModelError::record(optimizer_path.clone(), e))?;
        let trainer =
            Trainer::from_parts(model, optimizer, state.config, device, state.global_step);
        Ok((trainer, state.progress))
    }
}

impl Trainer {
    /// Keras's Adam: beta 0.9 / 0.999, epsilon 1e-7 (burn's default is 1e-5).
    pub(crate) fn adam() -> burn::optim::ModuleOptimizer {
        AdamConfig::new().with_epsilon(1e-7).init()
    }
}

/// The path of a checkpoint folder's state file (for messages).
pub fn state_path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}
