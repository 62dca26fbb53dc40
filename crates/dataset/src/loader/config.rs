//! How a [`super::Loader`] loads: its settings, and the settings of one `DataLoader` worker
//! of a rank ([`LoaderConfig::in_worker`]).

use shardfeed_image_prep::output::Element;
use shardfeed_input_pipeline::Parallelism;
use shardfeed_record_format::Compression;

use crate::decode::RecordFormat;
use crate::transform::Transform;
use crate::{Error, Result};

/// Which side of the seeded split by files (as `shardfeed train` splits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitPart {
    /// The training files.
    Train,
    /// The validation files.
    Validation,
}

/// What a damaged record (bad CRC, not an `Example`, an undecodable image) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDamaged {
    /// Fail the batch with [`Error::DamagedRecord`].
    #[default]
    Raise,
    /// Leave it out of its batch (which is one shorter) and count it.
    Skip,
}

/// The pixels' type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dtype {
    /// `f32` values / 255 ([`shardfeed_image_prep::Preprocessing::extend_f32`]), in [0, 1].
    #[default]
    Float32,
    /// The decoded bytes.
    Uint8,
    /// IEEE half, as `f32` values rounded to nearest.
    Float16,
    /// bfloat16 (rounded to nearest even).
    Bfloat16,
}

impl Dtype {
    /// The element the copy out writes.
    pub fn element(self) -> Element {
        match self {
            Dtype::Float32 => Element::F32,
            Dtype::Uint8 => Element::U8,
            Dtype::Float16 => Element::F16,
            Dtype::Bfloat16 => Element::Bf16,
        }
    }
}

/// The order of a batch's axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// batch, height, width, channels (TensorFlow, JAX).
    #[default]
    Nhwc,
    /// batch, channels, height, width (PyTorch).
    Nchw,
}

/// How to load.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// Records per batch.
    pub batch_size: usize,
    /// Shuffle buffer (0 or 1: files and records in order).
    pub shuffle: usize,
    /// Seed of the split, the file order and the shuffle.
    pub seed: u64,
    /// Batches in a reproducible order (needed for [`Loader::share`] resume to be exact).
    pub deterministic: bool,
    /// Drop what does not fill a whole step (see the module docs), else pad it.
    pub drop_remainder: bool,
    /// Keep decoded images in memory after the first epoch.
    pub cache: bool,
    /// The most bytes of decoded pixels cached.
    pub cache_budget: u64,
    /// Decode threads.
    pub jobs: Parallelism,
    /// This process's rank, from 0.
    pub rank: usize,
    /// Ranks in all.
    pub world_size: usize,
    /// One side of the split by files, and the validation fraction.
    pub split: Option<(SplitPart, f64)>,
    /// What a damaged record does.
    pub on_damaged: OnDamaged,
    /// The shards' compression.
    pub compression: Compression,
    /// The pixels' type.
    pub dtype: Dtype,
    /// The axes' order.
    pub layout: Layout,
    /// The records' feature names and the square images are made into.
    pub format: RecordFormat,
    /// Crops, flips and normalisation as records are read (`None`: the seed's square as
    /// decoded, values / 255 or bytes).
    pub transform: Option<Transform>,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_size: 32,
            shuffle: 2048,
            seed: 42,
            deterministic: true,
            drop_remainder: true,
            cache: true,
            cache_budget: 4 << 30,
            jobs: Parallelism::Auto,
            rank: 0,
            world_size: 1,
            split: None,
            on_damaged: OnDamaged::Raise,
            compression: Compression::None,
            dtype: Dtype::Float32,
            layout: Layout::Nhwc,
            format: RecordFormat::default(),
            transform: None,
        }
    }
}

impl LoaderConfig {
    /// The settings of worker process `worker` of `workers` that one rank splits its share
    /// over (a PyTorch `DataLoader(num_workers=workers)`): rank `worker × world_size + rank`
    /// of `world_size × workers`. Each step of that many batches is `workers` of this rank's
    /// steps, worker `w` taking the `w`-th: the workers' batches taken in turn (as the
    /// `DataLoader` hands them out) are this rank's batches in their order, and after `n` of
    /// them all ranks together have consumed `n × world_size × batch_size` records of the
    /// epoch, as without workers. Only the tail that does not fill a step of the larger world
    /// is cut (dropped or evened) over more ranks. `Auto` decode threads are shared out
    /// between the workers (at least one each).
    pub fn in_worker(&self, worker: usize, workers: usize) -> Result<LoaderConfig> {
        if workers == 0 || worker >= workers {
            return Err(Error::Invalid(format!(
                "worker {worker} is not below the {workers} workers"
            )));
        }
        let world_size = self.world_size.checked_mul(workers).ok_or_else(|| {
            Error::Invalid(format!(
                "world_size {} × {workers} workers is too large",
                self.world_size
            ))
        })?;
        let jobs = match self.jobs {
            Parallelism::Auto => {
                Parallelism::AutoUpTo((Parallelism::Auto.threads() / workers).max(1))
            }
            jobs => jobs,
        };
        Ok(LoaderConfig {
            rank: worker * self.world_size + self.rank,
            world_size,
            jobs,
            ..self.clone()
        })
    }
}
