//! The writer's lock of a shard folder: one shard run at a time writes a folder, and one
//! process at a time writes a worker's share of it.
//!
//! Locally a one-machine run holds `.shardfeed.lock` exclusively (`flock`); each worker of a
//! split run holds it shared (workers write beside each other) and its own
//! `.shardfeed-worker-III-of-NNN.lock` exclusively. The kernel releases a lock when its
//! holder dies, so a killed run never blocks the next one. A lock file is removed by its
//! last holder (a worker only where it can take it exclusively); a run that locked a file
//! removed meanwhile sees that it is no longer the file at that name and takes the new one. In object storage the lock is an
//! object written with a conditional put (`If-None-Match: *`) and deleted when the run ends;
//! a run killed without warning leaves it, and the error names it and its holder.
//! A holder writes who it is (process, host, start time) into the file, and a refused run
//! says so.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};

use crate::folder::Workers;
use crate::remote::{Folder, Store};
use crate::{Error, Result};

/// The folder's lock file.
pub(crate) const LOCK_FILE: &str = ".shardfeed.lock";

/// Whether `name` is a lock file of the shard step (never a dataset's content).
pub(crate) fn is_lock_file(name: &str) -> bool {
    name.starts_with(".shardfeed") && name.ends_with(".lock")
}

/// The lock file of worker `workers` of a split run.
fn worker_lock_file(workers: Workers) -> String {
    format!(
        ".shardfeed-worker-{:03}-of-{:03}.lock",
        workers.index, workers.count
    )
}

/// A held lock; released when dropped.
pub(crate) struct WriterLock {
    held: Vec<Held>,
}

enum Held {
    Local {
        file: File,
        path: std::path::PathBuf,
    },
    Remote {
        store: Store,
        name: String,
    },
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        for held in self.held.drain(..).rev() {
            match held {
                // Removed while held exclusively (a shared holder first tries to take it so:
                // it fails while other workers hold it), then released by the close.
                Held::Local { file, path } => {
                    if file.try_lock().is_ok() {
                        let _ = std::fs::remove_file(&path);
                    }
                }
                Held::Remote { store, name } => {
                    let _ = store.delete(&name);
                }
            }
        }
    }
}

/// Who holds a lock: this process, its host, when it started.
fn holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "an unknown host".to_owned());
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "held by process {} on {host} since Unix time {since}",
        std::process::id()
    )
}

/// Takes the writer's lock of `out` for a run of `workers` (one machine, or one worker of a
/// split run); another run holding it is [`Error::Locked`], at once.
pub(crate) fn lock(out: &Folder, workers: Workers) -> Result<WriterLock> {
    let mut held = Vec::new();
    match out {
        Folder::Local(dir) => {
            let split = workers.is_split();
            held.push(lock_local(dir, LOCK_FILE, !split)?);
            if split {
                held.push(lock_local(dir, &worker_lock_file(workers), true)?);
            }
        }
        Folder::Remote(store) => {
            let name = if workers.is_split() {
                worker_lock_file(workers)
            } else {
                LOCK_FILE.to_owned()
            };
            let me = holder();
            // Not made by this put: another run holds it, unless a retried put found the
            // object its own first try made (the same holder text).
            if !store.put_new(&name, me.clone().into_bytes())? {
                let text = store.get(&name, 4096).unwrap_or_default();
                if text != me.as_bytes() {
                    return Err(Error::Locked {
                        lock: std::path::PathBuf::from(store.url_of(&name)),
                        holder: String::from_utf8_lossy(&text).trim().to_owned(),
                        hint: format!(
                            ", or delete {} if that run is gone (a lock in object storage outlives a run killed without warning)",
                            store.url_of(&name)
                        ),
                    });
                }
            }
            held.push(Held::Remote {
                store: store.clone(),
                name,
            });
        }
    }
    Ok(WriterLock { held })
}

/// Locks `dir/name` (exclusively, or shared), writing the holder into it where exclusive
/// and emptying it where shared (a refused exclusive run then knows split workers hold it).
fn lock_local(dir: &std::path::Path, name: &str, exclusive: bool) -> Result<Held> {
    use std::os::unix::fs::MetadataExt;
    let path = dir.join(name);
    let mut file = loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(Error::io("create", &path))?;
        let taken = if exclusive {
            file.try_lock()
        } else {
            file.try_lock_shared()
        };
        match taken {
            // Still the file at that name (its last holder did not remove it meanwhile)?
            Ok(()) => match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(held), Ok(named)) if (held.dev(), held.ino()) == (named.dev(), named.ino()) => {
                    break file;
                }
                _ => continue,
            },
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = (&file).take(4096).read_to_string(&mut text);
                let holder = match text.trim() {
                    "" => "held by the workers of a split run".to_owned(),
                    text => text.to_owned(),
                };
                return Err(Error::Locked {
                    lock: path,
                    holder,
                    hint: String::new(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("lock", &path)(e)),
        }
    };
    let written = file.set_len(0).and_then(|()| {
        if exclusive {
            file.rewind()?;
            file.write_all(holder().as_bytes())?;
        }
        Ok(())
    });
    written.map_err(Error::io("write", &path))?;
    Ok(Held::Local { file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(index: usize) -> Workers {
        Workers { index, count: 2 }
    }

    #[test]
    fn one_writer_at_a_time_and_workers_beside_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let out = Folder::Local(dir.path().to_owned());
        let one = Workers::default();
        let held = lock(&out, one).unwrap();
        let error = lock(&out, one).err().unwrap().to_string();
        assert!(
            error.contains(".shardfeed.lock: another shard run is writing there (held by process"),
            "{error}"
        );
        assert!(error.contains(&std::process::id().to_string()), "{error}");
        assert!(
            lock(&out, split(0)).is_err(),
            "a worker waits for a one-machine run"
        );
        drop(held);
        let first = lock(&out, split(0)).unwrap();
        let _second = lock(&out, split(1)).unwrap();
        let error = lock(&out, split(0)).err().unwrap().to_string();
        assert!(
            error.contains(".shardfeed-worker-000-of-002.lock"),
            "{error}"
        );
        let error = lock(&out, one).err().unwrap().to_string();
        assert!(
            error.contains("held by the workers of a split run"),
            "{error}"
        );
        drop((first, _second));
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(
            left.is_empty(),
            "the last holder removes the lock files: {left:?}"
        );
        assert!(is_lock_file(LOCK_FILE) && is_lock_file(&worker_lock_file(split(1))));
    }
}
