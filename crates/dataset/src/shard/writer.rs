//! Shards written one after the other, each under its final name once complete, uploaded
//! from a private staging folder where the output is in object storage.

use super::*;

/// Writes shards one after the other, each under its final name once complete.
pub(super) struct ShardWriter {
    /// Where the shards go.
    pub(super) folder: Folder,
    /// Where they are written: the folder itself, or (object storage) a local staging folder
    /// each shard is uploaded from, then removed.
    out: PathBuf,
    /// That staging folder: private (`mkdtemp`, 0700, a name nobody could have made first),
    /// removed with what it holds when dropped.
    stage: Option<tempfile::TempDir>,
    prefix: String,
    compression: Compression,
    classes: usize,
    current: Option<(u64, FileWriter, Vec<u64>)>,
    written: Vec<(u64, ShardInfo)>,
}

impl ShardWriter {
    pub(super) fn new(config: &ShardConfig, folder: Folder, classes: usize) -> Result<Self> {
        let (out, stage) = match &folder {
            Folder::Local(dir) => (dir.clone(), None),
            Folder::Remote(_) => {
                let temp = std::env::temp_dir();
                let stage = tempfile::Builder::new()
                    .prefix("shardfeed-stage-")
                    .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
                    .tempdir_in(&temp)
                    .map_err(Error::io("create a staging folder in", &temp))?;
                (stage.path().to_owned(), Some(stage))
            }
        };
        Ok(ShardWriter {
            folder,
            out,
            stage,
            prefix: config.prefix.clone(),
            compression: config.compression,
            classes,
            current: None,
            written: Vec::new(),
        })
    }

    /// Removes the staging folder (object storage), once everything is uploaded.
    pub(super) fn remove_stage(&mut self) {
        self.stage = None;
    }

    /// Makes `shard` the shard being written, committing the previous one.
    pub(super) fn switch_to(&mut self, shard: u64) -> Result<()> {
        if self.current.as_ref().is_some_and(|(n, _, _)| *n == shard) {
            return Ok(());
        }
        self.commit_current()?;
        let provisional = self.out.join(provisional_shard_name(&self.prefix, shard));
        let writer = FileWriter::create(&provisional, self.compression)?;
        self.current = Some((shard, writer, vec![0; self.classes]));
        Ok(())
    }

    pub(super) fn write(&mut self, record: &[u8], class: usize) -> Result<()> {
        let (_, writer, per_class) = self.current.as_mut().expect("switch_to comes first");
        writer.write_record(record)?;
        per_class[class] += 1;
        Ok(())
    }

    pub(super) fn commit_current(&mut self) -> Result<()> {
        let Some((shard, writer, per_class)) = self.current.take() else {
            return Ok(());
        };
        let records = writer.records_written();
        if records == 0 {
            return Ok(()); // every file of this shard was skipped: no empty shard
        }
        let file = shard_file_name(&self.prefix, shard, records);
        let path = self.out.join(&file);
        writer.commit_as(&path)?;
        let bytes = std::fs::metadata(&path)
            .map_err(Error::io("read", &path))?
            .len();
        if let Folder::Remote(store) = &self.folder {
            // The shard first (multipart: it appears only once whole), then its index.
            let index = shardfeed_record_format::Index::path_for(&path);
            let index_name = format!("{file}.idx");
            let uploaded = store.upload(&file, &path).and_then(|()| {
                store.put(
                    &index_name,
                    std::fs::read(&index).map_err(|source| shardfeed_storage::Error::Local {
                        path: index.clone(),
                        source,
                    })?,
                )
            });
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(&index);
            if let Err(error) = uploaded {
                let _ = store.delete(&file);
                return Err(error.into());
            }
        }
        self.written.push((
            shard,
            ShardInfo {
                file,
                records,
                per_class,
                bytes,
            },
        ));
        Ok(())
    }

    /// Commits the last shard; the numbers and descriptions of the shards written.
    pub(super) fn finish(&mut self) -> Result<(Vec<u64>, Vec<ShardInfo>)> {
        self.commit_current()?;
        Ok(self.written.iter().cloned().unzip())
    }

    /// Runs one write step; when it fails (a full disk, any I/O error) removes everything this
    /// run wrote, so a failed run leaves no shard behind, whole or partial.
    pub(super) fn or_abandon<T>(&mut self, step: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let result = step(self);
        if result.is_err() {
            self.abandon();
        }
        result
    }

    /// Removes everything this run wrote (strict mode's first error, a failed write, an
    /// interruption); returns how many finished shards it removed.
    pub(super) fn abandon(&mut self) -> usize {
        self.current = None; // the writer removes its temporary file
        let removed = self.written.len();
        for (_, shard) in self.written.drain(..) {
            let _ = self.folder.remove(&format!("{}.idx", shard.file));
            let _ = self.folder.remove(&shard.file);
        }
        self.remove_stage();
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shards bound for object storage are staged in a private folder of a name nobody can
    /// make first, gone with the writer.
    #[test]
    fn a_remote_run_stages_in_a_private_new_folder() {
        use std::os::unix::fs::PermissionsExt;
        let store = crate::remote::Store::open("s3://bucket/shards").unwrap();
        let writer = ShardWriter::new(&ShardConfig::default(), Folder::Remote(store), 2).unwrap();
        let stage = writer.out.clone();
        let mode = std::fs::metadata(&stage).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{}", stage.display());
        assert!(
            stage
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("shardfeed-stage-")
        );
        drop(writer);
        assert!(!stage.exists());
    }
}
