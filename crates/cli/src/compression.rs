//! The compression of a shard folder's files: `--compression`, else what the folder's
//! `manifest.json` recorded, else none ([`ShardFolder::compression`], the one rule); a flag
//! that contradicts the manifest is an error naming the flag.

use shardfeed_dataset::folder::ShardFolder;
use shardfeed_record_format::Compression;

/// The compression to read the shards of `folder` with.
pub fn of_folder(folder: &ShardFolder, given: Option<Compression>) -> anyhow::Result<Compression> {
    folder.compression(given).map_err(|e| match given {
        Some(given) => anyhow::anyhow!("--compression {given}: {e}"),
        None => e.into(),
    })
}

/// The compression to read `file` with, by its folder's rule ([`of_folder`]).
pub fn of_folder_of(
    resolved: &shardfeed_dataset::folder::Resolved,
    file: &std::path::Path,
    given: Option<Compression>,
) -> anyhow::Result<Compression> {
    match resolved.folder_of(file) {
        Some(folder) => of_folder(folder, given),
        None => Ok(given.unwrap_or_default()),
    }
}
