//! Shard folders in object storage, behind the same calls as local ones. A folder is a
//! [`super::Location`] (parsed at the edge, holding its store); the files a listing of it
//! finds (`s3://bucket/shards/data00-250.tfrec`) are named by paths under the folder's, so
//! every report and error names them as the user wrote the folder; [`is_remote`] tells such
//! a path from a local one here, and nothing here touches the local file system with it.
//! Local paths never reach `shardfeed-storage` or its runtime.
//!
//! Reading a remote shard needs its `.idx` (counts, and where each record starts, so a
//! resumed epoch starts mid-object); the records are then read by `record-format`'s indexed
//! reader through [`shardfeed_storage::RangedReader`], both CRCs checked, and a damaged
//! object is reported with its URL and byte offset as a local file would be.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use shardfeed_input_pipeline::tfrecord::TfRecordSource;
use shardfeed_record_format::{Compression, Index, IndexedFile, RandomRead, ReaderOptions};
pub use shardfeed_storage::{Store, after_fork_in_child, held_chunk_bytes, is_remote_url, traffic};

use super::Location;
use crate::{Error, Result};

/// Whether `path` holds an object-storage URL rather than a local path.
pub fn is_remote(path: &Path) -> bool {
    path.to_str().is_some_and(is_remote_url)
}

/// The folder URL and the object name of a remote file path.
fn split(path: &Path) -> Result<(String, String)> {
    let text = path.to_str().unwrap_or_default().trim_end_matches('/');
    match text.rsplit_once('/') {
        Some((folder, name))
            if !name.is_empty()
                && folder.contains("://")
                && !folder.ends_with(':')
                && !folder.ends_with("//") =>
        {
            Ok((folder.to_owned(), name.to_owned()))
        }
        _ => Err(Error::Invalid(format!("{text}: not an object in a folder"))),
    }
}

/// The store of the folder at `url`, opened anew (a client of its own; callers that read
/// many objects keep one, or a [`Stores`]).
pub fn store(url: &str) -> Result<Store> {
    Ok(Store::open(url.trim_end_matches('/'))?)
}

/// The stores one command reads through, opened once per folder URL for as long as this
/// value (and its clones) lives: a run's source images, a call's shard files. Never
/// process-wide: a store's client belongs to the work that opened it.
#[derive(Debug, Clone, Default)]
pub struct Stores(std::sync::Arc<Mutex<HashMap<String, Store>>>);

impl Stores {
    /// Keeps `store` (already open) as its folder's.
    pub(crate) fn keep(&self, store: &Store) {
        let mut stores = self.0.lock().unwrap_or_else(|p| p.into_inner());
        stores
            .entry(store.url().trim_end_matches('/').to_owned())
            .or_insert_with(|| store.clone());
    }

    /// The store of the folder at `url`.
    pub fn of(&self, url: &str) -> Result<Store> {
        let url = url.trim_end_matches('/');
        let mut stores = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = stores.get(url) {
            return Ok(store.clone());
        }
        let store = Store::open(url)?;
        stores.insert(url.to_owned(), store.clone());
        Ok(store)
    }
}

fn folder_url(dir: &Path) -> String {
    dir.to_string_lossy().trim_end_matches('/').to_owned()
}

/// The names and sizes of the objects directly in the remote folder `dir`.
pub fn list(dir: &Path) -> Result<Vec<shardfeed_storage::Object>> {
    Ok(store(&folder_url(dir))?.list()?)
}

/// The files (objects) directly in the folder at `location`, as paths naming them the way
/// the user named the folder: every local entry that is not a folder (a FIFO, a device, a
/// dangling link too: reading it says what is wrong with it), every object in storage.
pub(crate) fn files_in(location: &Location) -> Result<Vec<PathBuf>> {
    let Some(dir) = location.as_local() else {
        let folder = Folder::for_reading(location)?;
        return Ok(folder
            .list()?
            .into_iter()
            .map(|(name, _)| location.path().join(name))
            .collect());
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(Error::io("read the folder", dir))? {
        let path = entry.map_err(Error::io("list", dir))?.path();
        if !path.is_dir() {
            files.push(path);
        }
    }
    Ok(files)
}

/// Every file (object) under the folder at `location`, at any depth, as paths under the
/// folder's; hidden entries (`.name`) and their contents left out, links followed to files
/// (not to folders: no cycles).
pub(crate) fn files_under(location: &Location) -> Result<Vec<PathBuf>> {
    let Some(dir) = location.as_local() else {
        let store = location.store()?.expect("a remote location has a store");
        return Ok(store
            .list_all()?
            .into_iter()
            .filter(|o| !o.name.split('/').any(|part| part.starts_with('.')))
            .map(|o| location.path().join(o.name))
            .collect());
    };
    let mut files = Vec::new();
    let mut folders = vec![dir.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).map_err(Error::io("read the folder", &folder))? {
            let entry = entry.map_err(Error::io("list", &folder))?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let kind = entry.file_type().map_err(Error::io("list", entry.path()))?;
            if kind.is_dir() {
                folders.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    Ok(files)
}

/// Whether `path` is a local path that does not exist (an object URL is never checked here:
/// reading it says whether it is there).
pub fn is_absent_local(path: &Path) -> bool {
    !is_remote(path) && !path.exists()
}

/// The size of file or object `path`.
pub fn file_size(path: &Path) -> Result<u64> {
    if is_remote(path) {
        size(path)
    } else {
        Ok(std::fs::metadata(path)
            .map_err(Error::io("read", path))?
            .len())
    }
}

/// The `.idx` beside shard file or object `path`, or `None` where it has none.
pub fn index_beside(path: &Path) -> Result<Option<Index>> {
    if is_remote(path) {
        return index_if_exists(path);
    }
    let index_path = Index::path_for(path);
    if !index_path.exists() {
        return Ok(None);
    }
    Ok(Some(Index::read(&index_path)?))
}

/// File or object `path` whole, or `None` where it does not exist; refused unread above
/// `limit` bytes (and, local, when it is not a regular file:
/// [`shardfeed_record_format::bounded::read_bounded`]), the reason in place of the bytes.
pub fn read_bounded(path: &Path, limit: u64) -> std::result::Result<Option<Vec<u8>>, String> {
    read_bounded_with(&Stores::default(), path, limit)
}

/// [`read_bounded`] through `stores`.
pub fn read_bounded_with(
    stores: &Stores,
    path: &Path,
    limit: u64,
) -> std::result::Result<Option<Vec<u8>>, String> {
    if is_remote(path) {
        let (folder, name) = split(path).map_err(|e| e.to_string())?;
        let store = stores.of(&folder).map_err(|e| e.to_string())?;
        return match store.get(&name, limit) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(shardfeed_storage::Error::TooLarge { size, .. }) => {
                Err(format!("file of {size} bytes exceeds the limit of {limit}"))
            }
            Err(error) => Err(format!("cannot read: {error}")),
        };
    }
    match shardfeed_record_format::bounded::read_bounded(path, limit) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(e.to_string()),
        Err(e) => Err(format!("cannot read: {e}")),
    }
}

/// Object `path` whole (at most `limit` bytes), or `None` where it does not exist.
pub fn read_if_exists(path: &Path, limit: u64) -> Result<Option<Vec<u8>>> {
    let (folder, name) = split(path)?;
    match store(&folder)?.get(&name, limit) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// The size of object `path` (one request).
pub fn size(path: &Path) -> Result<u64> {
    let (folder, name) = split(path)?;
    Ok(store(&folder)?.size(&name)?)
}

/// Object `path` read front to back (range reads with read-ahead, retried where they break).
pub fn sequential(path: &Path) -> Result<impl Read + Send + use<>> {
    let (folder, name) = split(path)?;
    let store = store(&folder)?;
    let size = store.size(&name)?;
    Ok(Sequential {
        reader: store.reader(&name, size),
        offset: 0,
    })
}

/// A shard file (local or an object) read front to back, for a `RecordReader`
/// (`shardfeed_record_format::RecordReader`).
pub fn open_read(path: &Path) -> Result<Box<dyn Read + Send>> {
    if is_remote(path) {
        Ok(Box::new(sequential(path)?))
    } else {
        Ok(Box::new(
            std::fs::File::open(path).map_err(Error::io("read", path))?,
        ))
    }
}

/// A [`RandomRead`] read in order, as `std::io::Read`.
struct Sequential {
    reader: shardfeed_storage::RangedReader,
    offset: u64,
}

impl Read for Sequential {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min(1 << 20);
        let n = self.reader.read_at(&mut buf[..want], self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// The index of the remote shard `path` (its `.idx` object), or `None` where it has none.
pub fn index_if_exists(path: &Path) -> Result<Option<Index>> {
    let (folder, name) = split(path)?;
    let store = store(&folder)?;
    let size = store.size(&name)?;
    index_of_size(&store, path, &name, size)
}

/// The index of the remote shard `path` (object `name` of `store`, `size` bytes), or `None`
/// where it has none.
fn index_of_size(store: &Store, path: &Path, name: &str, size: u64) -> Result<Option<Index>> {
    let index_path = Index::path_for(path);
    let limit = crate::limits::index_bytes(size);
    let bytes = match store.get(&format!("{name}.idx"), limit) {
        Ok(bytes) => bytes,
        Err(error) if error.is_not_found() => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let text = String::from_utf8_lossy(&bytes);
    Ok(Some(Index::parse(
        &text,
        &shardfeed_record_format::FileName::new(&index_path),
    )?))
}

/// The index of the remote shard `path` (its `.idx` object, required).
fn read_index(store: &Store, path: &Path, name: &str, size: u64) -> Result<Index> {
    index_of_size(store, path, name, size)?.ok_or_else(|| {
        Error::Invalid(format!(
            "{} has no .idx beside it: shards in object storage are read by their index (write them with shardfeed shard, or upload the .idx files too)",
            path.display()
        ))
    })
}

/// Opens shard files for the pipeline: local files as [`TfRecordSource::open`] does, remote
/// ones through their `.idx` and a ranged reader (each object's size asked for; a
/// [`crate::folder::ShardFolder`] opens its own files with the sizes it listed).
pub fn open_source(files: &[PathBuf], options: ReaderOptions) -> Result<TfRecordSource> {
    open_source_sized(files, options, &Stores::default(), |_| None)
}

/// [`open_source`] through `stores`, with the sizes `size_of` knows (from a listing) not
/// asked for again.
pub(crate) fn open_source_sized(
    files: &[PathBuf],
    options: ReaderOptions,
    stores: &Stores,
    size_of: impl Fn(&Path) -> Option<u64>,
) -> Result<TfRecordSource> {
    if !files.iter().any(|f| is_remote(f)) {
        return Ok(TfRecordSource::open(files, options)?);
    }
    if options.compression != Compression::None {
        return Err(Error::Invalid(format!(
            "{}: compressed ({}) shards cannot be read by offset from object storage; write them uncompressed",
            files[0].display(),
            options.compression
        )));
    }
    let mut opened = Vec::with_capacity(files.len());
    for path in files {
        let file = if is_remote(path) {
            let (folder, name) = split(path)?;
            let store = stores.of(&folder)?;
            let size = match size_of(path) {
                Some(size) => size,
                None => store.size(&name)?,
            };
            let index = read_index(&store, path, &name, size)?;
            IndexedFile::from_reader(path, Box::new(store.reader(&name, size)), index, options)?
        } else {
            IndexedFile::open(path, options)?
        };
        opened.push((path.clone(), file));
    }
    Ok(TfRecordSource::from_indexed(opened)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_path_splits_into_folder_and_object() {
        let (folder, name) = split(Path::new("s3://b/x/data00-3.tfrec")).unwrap();
        assert_eq!(
            (folder.as_str(), name.as_str()),
            ("s3://b/x", "data00-3.tfrec")
        );
        assert!(split(Path::new("s3://b")).is_err());
        assert!(is_remote(Path::new("gs://b/x")) && !is_remote(Path::new("x/s3://b")));
    }
}

/// A folder the shard step writes and merges in: local, or in object storage.
#[derive(Debug, Clone)]
pub(crate) enum Folder {
    Local(PathBuf),
    Remote(Store),
}

impl Folder {
    /// The folder at `location`, to write in (an `http(s)://` URL is refused: read only).
    pub(crate) fn at(location: &Location) -> Result<Folder> {
        let folder = Folder::for_reading(location)?;
        if let Folder::Remote(store) = &folder
            && !store.is_writable()
        {
            return Err(Error::Invalid(format!(
                "{location}: http(s) URLs are read only; write to s3://, gs:// or az://"
            )));
        }
        Ok(folder)
    }

    /// The folder at `location`, to read (its store, for object storage, the location's own).
    pub(crate) fn for_reading(location: &Location) -> Result<Folder> {
        Ok(match location.store()? {
            Some(store) => Folder::Remote(store),
            None => Folder::Local(location.path().to_owned()),
        })
    }

    /// Creates it where that means something (a local folder).
    pub(crate) fn create(&self) -> Result<()> {
        match self {
            Folder::Local(dir) => std::fs::create_dir_all(dir).map_err(Error::io("create", dir)),
            Folder::Remote(_) => Ok(()),
        }
    }

    /// The files (objects) directly in it, with their sizes, by name; lock files
    /// ([`crate::lock`]) are not listed.
    pub(crate) fn list(&self) -> Result<Vec<(String, u64)>> {
        match self {
            Folder::Local(dir) => {
                let mut files = Vec::new();
                for entry in std::fs::read_dir(dir).map_err(Error::io("read the folder", dir))? {
                    let entry = entry.map_err(Error::io("list", dir))?;
                    let meta = match entry.metadata() {
                        Ok(meta) => meta,
                        // Renamed or removed since the listing (another worker's temporary
                        // file committed meanwhile): not in the folder any more.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(Error::io("list", dir)(e)),
                    };
                    let name = entry.file_name();
                    if meta.is_file() && !crate::folder::lock::is_lock_file(&name.to_string_lossy())
                    {
                        files.push((entry.file_name().to_string_lossy().into_owned(), meta.len()));
                    }
                }
                files.sort();
                Ok(files)
            }
            Folder::Remote(store) => Ok(store
                .list()?
                .into_iter()
                .filter(|o| !crate::folder::lock::is_lock_file(&o.name))
                .map(|o| (o.name, o.size))
                .collect()),
        }
    }

    /// File `name`, whole; one over `limit` bytes (or not a regular file) is refused.
    pub(crate) fn read(&self, name: &str, limit: u64) -> Result<Vec<u8>> {
        let path = self.name().join(name);
        let stores = Stores::default();
        if let Folder::Remote(store) = self {
            stores.keep(store);
        }
        match read_bounded_with(&stores, &path, limit) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(Error::io("read", &path)(
                std::io::ErrorKind::NotFound.into(),
            )),
            Err(reason) => Err(Error::Unusable { path, reason }),
        }
    }

    /// Writes file `name` whole (atomically: a reader sees all of it or none).
    pub(crate) fn write(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        match self {
            Folder::Local(dir) => {
                shardfeed_record_format::atomic::write_atomic(&dir.join(name), &bytes)?;
                Ok(())
            }
            Folder::Remote(store) => Ok(store.put(name, bytes)?),
        }
    }

    /// Removes file `name` (absent: fine).
    pub(crate) fn remove(&self, name: &str) -> Result<()> {
        match self {
            Folder::Local(dir) => {
                let path = dir.join(name);
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        Err(Error::io("remove", path)(e))
                    }
                    _ => Ok(()),
                }
            }
            Folder::Remote(store) => Ok(store.delete(name)?),
        }
    }

    /// The folder `name` inside it (a sub-prefix in object storage).
    pub(crate) fn child(&self, name: &str) -> Result<Folder> {
        Folder::at(&self.location().join(name))
    }

    /// Moves file `name` of `from` (a folder inside this one) here under the same name,
    /// replacing a file of that name: a rename locally, a server-side copy then a delete of
    /// the source in object storage.
    pub(crate) fn move_in(&self, from: &Folder, name: &str) -> Result<()> {
        match (self, from) {
            (Folder::Local(dir), Folder::Local(source)) => {
                std::fs::rename(source.join(name), dir.join(name))
                    .map_err(Error::io("move into place", dir.join(name)))
            }
            (Folder::Remote(store), Folder::Remote(source)) => {
                store.copy_from(source, name)?;
                Ok(source.delete(name)?)
            }
            _ => Err(Error::Invalid(format!(
                "cannot move {name} between {} and {}",
                from.name().display(),
                self.name().display()
            ))),
        }
    }

    /// Makes its renames durable (a local folder's entry table fsynced).
    pub(crate) fn sync(&self) -> Result<()> {
        match self {
            Folder::Local(dir) => {
                shardfeed_record_format::atomic::sync_dir(dir).map_err(Error::io("sync", dir))
            }
            Folder::Remote(_) => Ok(()),
        }
    }

    /// Removes it and every file in it (absent: fine).
    pub(crate) fn remove_all(&self) -> Result<()> {
        match self {
            Folder::Local(dir) => match std::fs::remove_dir_all(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(Error::io("remove", dir)(e))
                }
                _ => Ok(()),
            },
            Folder::Remote(store) => {
                for object in store.list()? {
                    store.delete(&object.name)?;
                }
                Ok(())
            }
        }
    }

    /// Where it is.
    pub(crate) fn location(&self) -> Location {
        match self {
            Folder::Local(dir) => Location::local(dir),
            Folder::Remote(store) => Location::of_path(Path::new(store.url())),
        }
    }

    /// How errors name it.
    pub(crate) fn name(&self) -> PathBuf {
        match self {
            Folder::Local(dir) => dir.clone(),
            Folder::Remote(store) => PathBuf::from(store.url()),
        }
    }
}
