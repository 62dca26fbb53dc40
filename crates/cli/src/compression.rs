//! The compression of a shard folder's files: `--compression`, else what the folder's
//! `manifest.json` recorded, else none ([`ShardFolder::compression`], the one rule); a flag
//! that contradicts the manifest is an error naming the flag.

use shardfeed_dataset::folder::{Resolved, ShardFolder};
use shardfeed_record_format::Compression;

/// The compression to read the shards of `folder` with.
pub fn of_folder(folder: &ShardFolder, given: Option<Compression>) -> anyhow::Result<Compression> {
    naming_the_flag(folder.compression(given), given)
}

/// The compression to read `file` with, by its folder's rule ([`Resolved::compression_of`]).
pub fn of_folder_of(
    resolved: &Resolved,
    file: &std::path::Path,
    given: Option<Compression>,
) -> anyhow::Result<Compression> {
    naming_the_flag(resolved.compression_of(file, given), given)
}

/// The rule's refusal of a contradicting `--compression`, naming the flag.
fn naming_the_flag(
    result: shardfeed_dataset::Result<Compression>,
    given: Option<Compression>,
) -> anyhow::Result<Compression> {
    result.map_err(|e| match given {
        Some(given) => anyhow::anyhow!("--compression {given}: {e}"),
        None => e.into(),
    })
}
