//! The ranges of the numeric flags (the library's [`limits`] where it has one), checked when
//! the flags are parsed (so a bad value is a usage error, exit 2, before any work starts) and
//! stated in each flag's `--help`; and what `--jobs` means to the input pipeline.

use clap::builder::{RangedU64ValueParser, TypedValueParser};
use shardfeed_dataset::limits;
use shardfeed_input_pipeline::Parallelism;

/// Most decode threads (`--jobs`).
pub const MAX_JOBS: u64 = limits::MAX_JOBS as u64;

/// `--jobs` of the commands that read shards (stream, train, evaluate, predict): at most this
/// many decode threads, how many run tuned while running (default: up to one per core).
pub fn tuned_jobs(jobs: Option<usize>) -> Parallelism {
    jobs.map_or(Parallelism::Auto, Parallelism::AutoUpTo)
}
/// Largest batch (`--batch`).
pub const MAX_BATCH: u64 = limits::MAX_BATCH as u64;
/// Smallest square side of `shard --size`.
pub const MIN_SIZE: u64 = limits::MIN_SIZE as u64;
/// Largest square side (`--size`): a 4096 × 4096 RGB image is 48 MiB per image.
pub const MAX_SIZE: u64 = limits::MAX_SIZE as u64;

/// A `usize` in `min..=max`.
pub fn usize_in(min: u64, max: u64) -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::<usize>::new().range(min..=max)
}

/// A `u32` in `min..=max`.
pub fn u32_in(min: u64, max: u64) -> RangedU64ValueParser<u32> {
    RangedU64ValueParser::<u32>::new().range(min..=max)
}

/// A `u64` in `min..=max`.
pub fn u64_in(min: u64, max: u64) -> RangedU64ValueParser<u64> {
    RangedU64ValueParser::<u64>::new().range(min..=max)
}

/// A fraction in `[0, 1)`: the validation split (1 would leave nothing to train on).
pub fn fraction() -> impl TypedValueParser<Value = f64> {
    clap::builder::StringValueParser::new().try_map(|text: String| {
        let value: f64 = text
            .parse()
            .map_err(|_| format!("{text:?} is not a number"))?;
        if value.is_finite() && (0.0..1.0).contains(&value) {
            Ok(value)
        } else {
            Err(format!("{text} is not in [0, 1)"))
        }
    })
}

/// A probability in `[0, 1]`.
pub fn probability() -> impl TypedValueParser<Value = f64> {
    clap::builder::StringValueParser::new().try_map(|text: String| {
        let value: f64 = text
            .parse()
            .map_err(|_| format!("{text:?} is not a number"))?;
        if (0.0..=1.0).contains(&value) {
            Ok(value)
        } else {
            Err(format!("{text} is not in [0, 1]"))
        }
    })
}

/// `f32` or `bf16`, the latter only on a CPU that runs it (a usage error otherwise: exit 2).
pub fn precision(text: &str) -> Result<shardfeed_model::fast::Precision, String> {
    let precision: shardfeed_model::fast::Precision = text.parse()?;
    precision.check()?;
    Ok(precision)
}

/// A learning rate in `(0, 10]`.
pub fn learning_rate() -> impl TypedValueParser<Value = f64> {
    clap::builder::StringValueParser::new().try_map(|text: String| {
        let value: f64 = text
            .parse()
            .map_err(|_| format!("{text:?} is not a number"))?;
        if value.is_finite() && value > 0.0 && value <= 10.0 {
            Ok(value)
        } else {
            Err(format!("{text} is not in (0, 10]"))
        }
    })
}

/// A shard name prefix, as [`shardfeed_dataset::limits::check_prefix`] allows (exit 2
/// otherwise).
pub fn prefix() -> impl TypedValueParser<Value = String> {
    clap::builder::StringValueParser::new().try_map(|text: String| {
        shardfeed_dataset::limits::check_prefix(&text)
            .map(|()| text)
            .map_err(|error| error.to_string())
    })
}
