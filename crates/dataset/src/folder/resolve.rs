//! The one rule that turns what a user names (folders, shard files, object URLs, local
//! globs) into shard files, each with its folder's manifest and
//! compression. The CLI's `inspect` and the Python package's `Loader`, `inspect` and
//! `records` call it; `stream`, `train` and `evaluate` read one folder through
//! [`ShardFolder`] itself.

use std::path::{Path, PathBuf};

use shardfeed_record_format::Compression;

use super::{Location, Manifest, ShardFolder};
use crate::remote::Stores;
use crate::{Error, Result};

/// Shard files resolved from arguments, with the folders they are in (each listed once).
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The files, in the order named (a folder's in name order).
    pub files: Vec<PathBuf>,
    /// The folders named, or holding a file named.
    folders: Vec<ShardFolder>,
    /// The stores they were listed through (object storage), shared.
    stores: Stores,
}

impl Resolved {
    /// The folder `file` is in (where it was resolved from).
    pub fn folder_of(&self, file: &Path) -> Option<&ShardFolder> {
        let dir = parent(file);
        self.folders.iter().find(|f| f.path() == dir)
    }

    /// The manifest of `file`'s folder, where it has one.
    pub fn manifest_of(&self, file: &Path) -> Option<&Manifest> {
        self.folder_of(file)?.manifest()
    }

    /// The compression to read `file` with ([`ShardFolder::compression`]).
    pub fn compression_of(&self, file: &Path, given: Option<Compression>) -> Result<Compression> {
        match self.folder_of(file) {
            Some(folder) => folder.compression(given),
            None => Ok(given.unwrap_or_default()),
        }
    }

    /// The one compression of every file: each folder's rule, and one answer for all (files
    /// of folders written with different compressions are refused rather than read with the
    /// last one's).
    pub fn compression(&self, given: Option<Compression>) -> Result<Compression> {
        let mut found: Option<(Compression, &Path)> = None;
        for file in &self.files {
            let compression = self.compression_of(file, given)?;
            match found {
                Some((first, other)) if first != compression => {
                    return Err(Error::Invalid(format!(
                        "{} is {compression} but {} is {first}: read folders of one compression at a time",
                        file.display(),
                        other.display()
                    )));
                }
                None => found = Some((compression, file)),
                _ => {}
            }
        }
        Ok(found.map_or(given.unwrap_or_default(), |(c, _)| c))
    }

    /// The shard folders named or holding a named file.
    pub fn folders(&self) -> &[ShardFolder] {
        &self.folders
    }

    /// Opens `files` (some of [`Resolved::files`], or any) for the pipeline, each folder's
    /// objects through the store it was listed with and at the sizes it listed
    /// ([`ShardFolder::open_source`]).
    pub fn open_source(
        &self,
        files: &[PathBuf],
        options: shardfeed_record_format::ReaderOptions,
    ) -> Result<shardfeed_input_pipeline::tfrecord::TfRecordSource> {
        crate::remote::open_source_sized(files, options, &self.stores, |path| {
            self.folder_of(path)?.listed_size(path)
        })
    }
}

fn parent(file: &Path) -> &Path {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Whether `location` names a shard file (else a folder): an object URL with a shard's name,
/// or a local path that is not a folder. A local path that does not exist is an error
/// naming it.
fn is_file(location: &Location) -> Result<bool> {
    let Some(path) = location.as_local() else {
        return Ok(location
            .parent()
            .is_some_and(|(_, name)| super::is_shard_name(&name)));
    };
    let meta = std::fs::metadata(path).map_err(Error::io("read", path))?;
    Ok(!meta.is_dir())
}

/// A local glob pattern (`*`, `?`, `[…]`) expanded in name order; another location as it is.
/// A pattern matching nothing is an error naming it.
fn expand(location: &Location) -> Result<Vec<Location>> {
    let text = location.path().to_string_lossy();
    if location.is_remote() || !text.contains(['*', '?', '[']) {
        return Ok(vec![location.clone()]);
    }
    let bad = |reason: String| Error::Invalid(format!("{text}: {reason}"));
    let mut matched = glob::glob(&text)
        .map_err(|e| bad(e.to_string()))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if matched.is_empty() {
        return Err(Error::io("match", location.path())(
            std::io::ErrorKind::NotFound.into(),
        ));
    }
    matched.sort();
    Ok(matched.into_iter().map(Location::local).collect())
}

/// Resolves `locations` (parsed at the edge: [`Location::parse`]; local glob patterns are
/// expanded in name order): a folder gives its `.tfrec` files, checked against its manifest
/// unless `ignore_manifest` ([`ShardFolder::checked_shards`]; none is [`Error::NoShards`]); a
/// file is taken as named, and its folder listed once for its manifest.
pub fn resolve(locations: &[Location], ignore_manifest: bool) -> Result<Resolved> {
    let mut resolved = Resolved {
        files: Vec::new(),
        folders: Vec::new(),
        stores: Stores::default(),
    };
    let mut expanded = Vec::with_capacity(locations.len());
    for location in locations {
        expanded.extend(expand(location)?);
    }
    for location in &expanded {
        let (dir, file) = if is_file(location)? {
            let (dir, _) = location
                .parent()
                .ok_or_else(|| Error::Invalid(format!("{location}: not a file in a folder")))?;
            (dir, Some(location.path().to_owned()))
        } else {
            (location.clone(), None)
        };
        if !resolved.folders.iter().any(|f| f.path() == dir.path()) {
            resolved
                .folders
                .push(ShardFolder::open_with(&dir, &resolved.stores)?);
        }
        match file {
            Some(file) => resolved.files.push(file),
            None => {
                let folder = resolved.folders.iter().find(|f| f.path() == dir.path());
                let found = folder
                    .expect("just opened")
                    .checked_shards(ignore_manifest)?;
                if found.is_empty() {
                    return Err(Error::NoShards(dir.path().to_owned()));
                }
                resolved.files.extend(found);
            }
        }
    }
    Ok(resolved)
}
