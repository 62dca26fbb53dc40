//! The names of a shard folder's files, one owner: shards (`PREFIX{NN}-{COUNT}.tfrec`),
//! their indexes, `manifest.json`, part manifests, temporary files and lock files.

pub use shardfeed_record_format::atomic::target_of_temp;
pub use shardfeed_record_format::{Index, count_in_name, provisional_shard_name, shard_file_name};

/// Which share of a shard run this process does: worker `index` of `count` (`0 ≤ index <
/// count`). [`Workers::ONE`] is the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workers {
    /// Workers in all.
    pub count: usize,
    /// This worker, from 0.
    pub index: usize,
}

impl Default for Workers {
    fn default() -> Self {
        Workers::ONE
    }
}

impl Workers {
    /// One worker doing the whole run.
    pub const ONE: Workers = Workers { count: 1, index: 0 };

    /// Whether this is a share of a run rather than the whole.
    pub fn is_split(&self) -> bool {
        self.count > 1
    }

    /// Whether shard number `shard` is this worker's.
    pub fn owns(&self, shard: u64) -> bool {
        shard % self.count as u64 == self.index as u64
    }
}

/// Whether `name` is a shard file's, not a hidden temporary one: the one discovery rule of
/// every reader of a folder. shardfeed writes `*.tfrec`; other writers' folders hold
/// `*.tfrecord`, `*.tfrecords`, or TensorFlow's sharded names without an extension
/// (`train-00000-of-01024`, as the model garden's ImageNet converter and TFDS write them).
///
/// ```
/// use shardfeed_dataset::folder::is_shard_name;
///
/// assert!(is_shard_name("data00-250.tfrec") && is_shard_name("x.tfrecord"));
/// assert!(is_shard_name("train-00000-of-01024") && is_shard_name("imagenet2012-train.tfrecord-00007-of-01024"));
/// assert!(!is_shard_name("data00-250.tfrec.idx") && !is_shard_name(".data00-3.tfrec.9-1.tmp"));
/// assert!(!is_shard_name("notes-1-of-2") && !is_shard_name("manifest.json"));
/// ```
pub fn is_shard_name(name: &str) -> bool {
    if name.starts_with('.') {
        return false;
    }
    if name.ends_with(".tfrec") || name.ends_with(".tfrecord") || name.ends_with(".tfrecords") {
        return true;
    }
    // NAME-DDDDD-of-DDDDD (five digits or more each).
    let digits = |text: &str| text.len() >= 5 && text.bytes().all(|b| b.is_ascii_digit());
    let mut parts = name.rsplitn(4, '-');
    let (Some(total), Some(of), Some(index), Some(_)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    of == "of" && digits(total) && digits(index)
}

/// The manifest's file name in a shard folder.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Whether `name` is a file the shard step writes into a folder (shards, their indexes,
/// the manifest, and temporary files).
pub fn is_dataset_file(name: &str) -> bool {
    name.ends_with(".tfrec")
        || name.ends_with(".tfrec.idx")
        || name == MANIFEST_FILE
        || crate::folder::is_part_file(name)
        || name.ends_with(".tmp")
}

/// The part manifest's file name for a worker: `manifest.part-I-of-W.json`.
pub fn part_file_name(workers: Workers) -> String {
    format!("manifest.part-{}-of-{}.json", workers.index, workers.count)
}

/// Whether `name` is a part manifest's file name.
pub fn is_part_file(name: &str) -> bool {
    name.starts_with("manifest.part-") && name.ends_with(".json")
}

/// The number of the shard a file of the shard step belongs to, if `name` is one with
/// `prefix`: `PREFIX{NN}-{COUNT}.tfrec`, its `.idx`, and their temporary files
/// (`.PREFIX{NN}.tfrec.PID-N.tmp`, …: [`target_of_temp`]).
pub fn shard_number_of(name: &str, prefix: &str) -> Option<u64> {
    let name = target_of_temp(name).unwrap_or(name);
    let name = name.strip_suffix(".idx").unwrap_or(name);
    let stem = name.strip_suffix(".tfrec")?.strip_prefix(prefix)?;
    let digits = stem.split_once('-').map_or(stem, |(number, count)| {
        if count.bytes().all(|b| b.is_ascii_digit()) && !count.is_empty() {
            number
        } else {
            ""
        }
    });
    if digits.len() < 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The files of worker `workers` among a folder's `names` (its shards, their indexes and
/// temporary files, its part manifest), for a rerun to replace.
pub(crate) fn own_files(names: &[String], prefix: &str, workers: Workers) -> Vec<String> {
    let part = part_file_name(workers);
    names
        .iter()
        .filter(|name| {
            **name == part
                || target_of_temp(name) == Some(part.as_str())
                || shard_number_of(name, prefix).is_some_and(|n| workers.owns(n))
        })
        .cloned()
        .collect()
}
