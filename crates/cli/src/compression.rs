//! The compression of a shard folder's files: what `--compression` says, else what the
//! folder's `manifest.json` recorded, else none; a flag that contradicts the manifest is an
//! error that says what the manifest recorded (instead of a codec's "invalid gzip header").

use std::path::Path;

use anyhow::bail;
use shardfeed_record_format::Compression;

/// The compression to read the shards in `dir` with.
pub fn of_folder(dir: &Path, given: Option<Compression>) -> anyhow::Result<Compression> {
    let recorded = shardfeed_dataset::Manifest::read_folder(dir)
        .ok()
        .flatten()
        .and_then(|m| m.compression.parse::<Compression>().ok());
    match (given, recorded) {
        (Some(given), Some(recorded)) if given != recorded => bail!(
            "--compression {given}, but {} says the shards are {recorded}: drop --compression (or pass --compression {recorded})",
            dir.join(shardfeed_dataset::MANIFEST_FILE).display()
        ),
        (Some(given), _) => Ok(given),
        (None, Some(recorded)) => Ok(recorded),
        (None, None) => Ok(Compression::None),
    }
}
