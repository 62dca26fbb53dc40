//! The ranges of the numbers a caller chooses — decode threads, batch size, image side — in
//! one place: the CLI's flag parsers state them (`--help`, exit 2), and the library checks
//! them where a run starts, so the Python API refuses what the CLI refuses (a `ValueError`,
//! never a panic or an abort).

use shardfeed_input_pipeline::Parallelism;

use crate::{Error, Result};

/// Most decode threads (`--jobs`, `jobs=`).
pub const MAX_JOBS: usize = 1024;
/// Largest batch (`--batch`, `batch_size=`).
pub const MAX_BATCH: usize = 65_536;
/// Smallest square side a shard run writes (`--size`, `size=`).
pub const MIN_SIZE: u32 = 8;
/// Largest square side (`--size`, `size=`): a 4096 × 4096 RGB image is 48 MiB.
pub const MAX_SIZE: u32 = 4096;

/// Most bytes of a description read whole: `manifest.json`, a part manifest, `run.json`.
pub const MAX_DESCRIPTION_BYTES: u64 = 256 << 20;

/// Most bytes of the `.idx` of a shard of `data_bytes` (one line per frame of at least 16
/// bytes).
pub fn index_bytes(data_bytes: u64) -> u64 {
    shardfeed_record_format::Index::max_bytes_for(data_bytes)
}

/// `jobs` threads are at least 1 and at most [`MAX_JOBS`].
pub fn check_jobs(jobs: Parallelism) -> Result<()> {
    match jobs {
        Parallelism::Auto => Ok(()),
        Parallelism::AutoUpTo(n) | Parallelism::Fixed(n) if (1..=MAX_JOBS).contains(&n) => Ok(()),
        Parallelism::AutoUpTo(n) | Parallelism::Fixed(n) => {
            Err(Error::Invalid(format!("jobs {n} is not in 1..={MAX_JOBS}")))
        }
    }
}

/// A batch of 1 to [`MAX_BATCH`] records, and (with `world_size` ranks) a step of
/// `batch × world_size` records that fits a `usize`.
pub fn check_batch(batch: usize, world_size: usize) -> Result<()> {
    if !(1..=MAX_BATCH).contains(&batch) {
        return Err(Error::Invalid(format!(
            "batch_size {batch} is not in 1..={MAX_BATCH}"
        )));
    }
    if batch.checked_mul(world_size).is_none() {
        return Err(Error::Invalid(format!(
            "batch_size {batch} × world_size {world_size} is too large"
        )));
    }
    Ok(())
}

/// Most characters of a shard name prefix.
pub const MAX_PREFIX: usize = 100;

/// A shard name prefix is a plain file-name prefix: at most [`MAX_PREFIX`] characters, no
/// path separator (`../x` would write outside the output folder), no leading `.` (hidden and
/// temporary names are the shard step's own), no control character.
pub fn check_prefix(prefix: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::Invalid(format!(
            "prefix {:?} {why}: it must be a plain file-name prefix such as \"data\"",
            prefix.escape_default().to_string()
        )))
    };
    if prefix.chars().count() > MAX_PREFIX {
        bad(&format!("is longer than {MAX_PREFIX} characters"))
    } else if prefix.contains(['/', '\\']) {
        bad("holds a path separator")
    } else if prefix.starts_with('.') {
        bad("starts with a dot")
    } else if prefix.chars().any(char::is_control) {
        bad("holds a control character")
    } else {
        Ok(())
    }
}

/// A square side of [`MIN_SIZE`] to [`MAX_SIZE`] pixels.
pub fn check_size(size: u32) -> Result<()> {
    if (MIN_SIZE..=MAX_SIZE).contains(&size) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "size {size} is not in {MIN_SIZE}..={MAX_SIZE}"
        )))
    }
}

/// Source files larger than this are skipped unread (a JPEG source is KBs to a few MBs).
pub const MAX_FILE_BYTES: u64 = 256 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ranges_refuse_what_the_cli_refuses() {
        assert!(check_jobs(Parallelism::Auto).is_ok());
        assert!(check_jobs(Parallelism::Fixed(MAX_JOBS)).is_ok());
        let error = check_jobs(Parallelism::AutoUpTo(100_000)).unwrap_err();
        assert_eq!(error.to_string(), "jobs 100000 is not in 1..=1024");
        assert!(check_jobs(Parallelism::Fixed(0)).is_err());
        assert!(check_batch(32, 8).is_ok());
        assert!(check_batch(0, 1).is_err());
        assert!(check_batch(MAX_BATCH + 1, 1).is_err());
        assert!(
            check_batch(4, usize::MAX / 2)
                .unwrap_err()
                .to_string()
                .contains("too large")
        );
        assert!(check_prefix("data").is_ok() && check_prefix("").is_ok());
        for (prefix, says) in [
            ("../x", "path separator"),
            ("a/b", "path separator"),
            (".hidden", "starts with a dot"),
            ("a\u{1b}b", "control character"),
        ] {
            let error = check_prefix(prefix).unwrap_err().to_string();
            assert!(error.contains(says), "{error}");
        }
        assert!(check_prefix(&"x".repeat(MAX_PREFIX + 1)).is_err());
        assert!(check_size(160).is_ok());
        assert!(check_size(7).is_err() && check_size(MAX_SIZE + 1).is_err());
    }
}
