//! A shard folder read once ([`ShardFolder`]): one listing (names and sizes), one read of
//! its `manifest.json`; from them its shard files, their check against the manifest, the
//! compression to read them with, and what a reader should be warned of.

use std::path::{Path, PathBuf};

use shardfeed_record_format::Compression;

use super::{Location, MANIFEST_FILE, Manifest, is_part_file, is_shard_name};
use crate::remote::{Folder, Stores};
use crate::{Error, Result};

/// A shard folder (local, or in object storage) as one listing and one manifest read found it.
#[derive(Debug, Clone)]
pub struct ShardFolder {
    location: Location,
    /// Its files, with their sizes, sorted by name (lock files left out).
    files: Vec<(String, u64)>,
    manifest: Option<Manifest>,
    /// The store it was listed through (object storage), kept to read its shards.
    stores: Stores,
}

impl ShardFolder {
    /// Lists the folder at `location` once (through its store, for object storage) and
    /// reads its `manifest.json` once (where it has one).
    pub fn open(location: &Location) -> Result<ShardFolder> {
        ShardFolder::open_with(location, &Stores::default())
    }

    /// [`ShardFolder::open`], its store (object storage) kept in `stores`.
    pub(crate) fn open_with(location: &Location, stores: &Stores) -> Result<ShardFolder> {
        let folder = Folder::for_reading(location)?;
        if let Folder::Remote(store) = &folder {
            stores.keep(store);
        }
        let files = folder.list()?;
        let manifest = if files.iter().any(|(name, _)| name == MANIFEST_FILE) {
            Some(Manifest::parse(
                &folder.read(MANIFEST_FILE, crate::limits::MAX_DESCRIPTION_BYTES)?,
                &location.path().join(MANIFEST_FILE),
            )?)
        } else {
            None
        };
        Ok(ShardFolder {
            location: location.clone(),
            files,
            manifest,
            stores: stores.clone(),
        })
    }

    /// The folder as the user named it.
    pub fn path(&self) -> &Path {
        self.location.path()
    }

    /// Where it is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Its `manifest.json`, where it has one.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// Its `.tfrec` files, sorted by name, as the user would name them.
    pub fn shards(&self) -> Vec<PathBuf> {
        self.files
            .iter()
            .filter(|(name, _)| is_shard_name(name))
            .map(|(name, _)| self.path().join(name))
            .collect()
    }

    /// The size the listing gave for `path`, where it is a file of this folder.
    pub(crate) fn listed_size(&self, path: &Path) -> Option<u64> {
        if path.parent()? != self.path() {
            return None;
        }
        let name = path.file_name()?.to_str()?;
        let at = self
            .files
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()?;
        Some(self.files[at].1)
    }

    /// Opens `files` (of this folder, or any other) for the pipeline
    /// ([`crate::remote::open_source`]), this folder's objects with the sizes it listed.
    pub fn open_source(
        &self,
        files: &[PathBuf],
        options: shardfeed_record_format::ReaderOptions,
    ) -> Result<shardfeed_input_pipeline::tfrecord::TfRecordSource> {
        crate::remote::open_source_sized(files, options, &self.stores, |path| {
            self.listed_size(path)
        })
    }

    /// Its `.tfrec` files ([`ShardFolder::shards`]), checked against its `manifest.json` when
    /// it has one: a shard the manifest lists and the folder lacks (a half-finished copy), a
    /// shard the folder holds and the manifest does not list (a stray file, another run's),
    /// or a size that differs is an [`Error::FolderMismatch`] naming the file.
    /// `ignore_manifest` reads the files as they are; a folder without a manifest (written by
    /// TensorFlow, or a split run not merged yet) is read as it is.
    pub fn checked_shards(&self, ignore_manifest: bool) -> Result<Vec<PathBuf>> {
        let files = self.shards();
        let Some(manifest) = self.manifest.as_ref().filter(|_| !ignore_manifest) else {
            return Ok(files);
        };
        let mismatch = |message: String| Error::FolderMismatch {
            folder: self.path().to_owned(),
            message,
        };
        let sizes: std::collections::HashMap<&str, u64> = self
            .files
            .iter()
            .filter(|(name, _)| is_shard_name(name))
            .map(|(name, size)| (name.as_str(), *size))
            .collect();
        for shard in &manifest.shards {
            let Some(&size) = sizes.get(shard.file.as_str()) else {
                return Err(mismatch(format!(
                    "{} is listed in manifest.json but not in the folder",
                    shard.file
                )));
            };
            if shard.bytes != 0 && size != shard.bytes {
                return Err(mismatch(format!(
                    "{} has {size} bytes, manifest.json says {}",
                    shard.file, shard.bytes
                )));
            }
        }
        let listed: std::collections::HashSet<&str> =
            manifest.shards.iter().map(|s| s.file.as_str()).collect();
        let mut stray: Vec<&&str> = sizes.keys().filter(|n| !listed.contains(**n)).collect();
        stray.sort();
        if let Some(stray) = stray.first() {
            return Err(mismatch(format!("{stray} is not listed in manifest.json")));
        }
        Ok(files)
    }

    /// The compression to read its shards with: `given` (a flag, an argument), else what
    /// its `manifest.json` recorded, else none. A `given` that contradicts the manifest is an
    /// error saying what the manifest recorded (instead of a codec's "invalid gzip header").
    pub fn compression(&self, given: Option<Compression>) -> Result<Compression> {
        let recorded = self.manifest.as_ref().map(|m| m.compression);
        match (given, recorded) {
            (Some(given), Some(recorded)) if given != recorded => Err(Error::Invalid(format!(
                "{} says the shards are {recorded}, not {given}: drop the compression asked for (or ask for {recorded})",
                self.path().join(MANIFEST_FILE).display()
            ))),
            (Some(given), _) => Ok(given),
            (None, Some(recorded)) => Ok(recorded),
            (None, None) => Ok(Compression::None),
        }
    }

    /// What a reader should hear about the folder before reading it: temporary files a shard
    /// run left behind (it was killed), and shards without a `manifest.json` (a run that did
    /// not finish, or shards another tool wrote: class names then come from the records).
    pub fn warnings(&self) -> Vec<String> {
        let names: Vec<&str> = self.files.iter().map(|(name, _)| name.as_str()).collect();
        let dir = self.path().display();
        let mut warnings = Vec::new();
        let temporary: Vec<&&str> = names.iter().filter(|n| n.ends_with(".tmp")).collect();
        if let Some(first) = temporary.first() {
            warnings.push(format!(
                "{dir} holds {} temporary file(s) ({first}, …): a shard run there was killed before it finished; its shards may be incomplete",
                temporary.len()
            ));
        }
        let shards = names.iter().any(|n| is_shard_name(n));
        let parts = names.iter().any(|n| is_part_file(n));
        let manifest = names.contains(&MANIFEST_FILE);
        if shards && parts && !manifest {
            warnings.push(format!(
                "{dir} holds the parts of a distributed shard run but no {MANIFEST_FILE}: the parts are not merged yet, or a worker has not finished"
            ));
        } else if shards && !manifest {
            warnings.push(format!(
                "{dir} has shards but no {MANIFEST_FILE}: written by another tool, or by a shard run that did not finish"
            ));
        }
        warnings
    }
}

/// The `.tfrec` files of the local shard folder `dir`, sorted by name
/// ([`ShardFolder::shards`]).
pub fn find_shards(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(ShardFolder::open(&Location::local(dir))?.shards())
}

/// The `.tfrec` files of the local shard folder `dir`, checked against its manifest
/// ([`ShardFolder::checked_shards`]).
pub fn checked_shards(dir: &Path, ignore_manifest: bool) -> Result<Vec<PathBuf>> {
    ShardFolder::open(&Location::local(dir))?.checked_shards(ignore_manifest)
}

/// What a reader should hear about the local shard folder `dir` ([`ShardFolder::warnings`]);
/// nothing where it cannot be listed (reading it then says why).
pub fn folder_warnings(dir: &Path) -> Vec<String> {
    ShardFolder::open(&Location::local(dir)).map_or_else(|_| Vec::new(), |folder| folder.warnings())
}
