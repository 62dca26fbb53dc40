//! The shard naming convention of the TensorFlow tutorial, `PREFIX{shard:02}-{count}.tfrec`,
//! whose name states how many records a file holds: written by [`shard_file_name`], read by
//! [`count_in_name`] (the reader's check that a file holds what its name says). The rest of a
//! shard folder (`manifest.json`, the split) belongs to `shardfeed-dataset`.
//!
//! ```
//! use std::path::Path;
//! use shardfeed_record_format::{count_in_name, shard_file_name};
//!
//! assert_eq!(shard_file_name("data", 7, 250), "data07-250.tfrec");
//! assert_eq!(count_in_name(Path::new("shards/data07-250.tfrec")), Some(250));
//! assert_eq!(count_in_name(Path::new("train-00001-of-00016.tfrec")), None);
//! ```

use std::path::Path;

/// The name of shard number `shard` holding `count` records: `PREFIX{shard:02}-{count}.tfrec`.
pub fn shard_file_name(prefix: &str, shard: u64, count: u64) -> String {
    format!("{prefix}{shard:02}-{count}.tfrec")
}

/// The provisional name of a shard being written, before its count is known:
/// `PREFIX{shard:02}.tfrec` (only ever seen as a temporary file).
pub fn provisional_shard_name(prefix: &str, shard: u64) -> String {
    format!("{prefix}{shard:02}.tfrec")
}

/// The record count a shard's name states: `N` in `PREFIX{shard:02}-{N}.tfrec`, where the
/// part before the last `-` ends in at least two digits (the shard number). Names of other
/// schemes (`train-00001-of-00016.tfrec`) state none.
pub fn count_in_name(path: &Path) -> Option<u64> {
    let stem = path.file_name()?.to_str()?.strip_suffix(".tfrec")?;
    let (before, count) = stem.rsplit_once('-')?;
    let shard_digits = before.bytes().rev().take_while(u8::is_ascii_digit).count();
    if shard_digits < 2 || count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    count.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_name_states_its_count() {
        for (prefix, shard, count) in [("data", 0, 0), ("x", 15, 188), ("a-b", 123, 7)] {
            let name = shard_file_name(prefix, shard, count);
            assert_eq!(count_in_name(Path::new(&name)), Some(count), "{name}");
        }
        assert_eq!(provisional_shard_name("data", 3), "data03.tfrec");
        assert_eq!(count_in_name(Path::new("data03.tfrec")), None);
    }

    #[test]
    fn the_count_comes_only_from_the_tutorial_naming_scheme() {
        let count = |name: &str| count_in_name(Path::new(name));
        assert_eq!(count("data00-188.tfrec"), Some(188));
        assert_eq!(count("/a/b-c/cats_dogs15-0.tfrec"), Some(0));
        assert_eq!(count("123-45.tfrec"), Some(45));
        assert_eq!(
            count("data0-188.tfrec"),
            None,
            "one digit is not a shard number"
        );
        assert_eq!(count("data00-188.tfrecord"), None);
        assert_eq!(count("data00-.tfrec"), None);
        assert_eq!(count("data00-1x.tfrec"), None);
        assert_eq!(count("data00-+5.tfrec"), None);
        assert_eq!(count("train-00001-of-00016.tfrec"), None);
        assert_eq!(count("data00-99999999999999999999999.tfrec"), None);
    }
}
