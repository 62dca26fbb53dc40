//! The output folder of a shard run: what a run replaces, the staging folder a replacing
//! run writes into and promotes once complete, and a split run's worker output.

use super::*;

/// The files of `out` a one-machine run replaces: none when it is empty. Otherwise (with
/// `overwrite`; without, [`Error::OutputNotEmpty`]) the previous dataset's: `manifest.json` and
/// the files it lists with their indexes, part manifests, and the files named as this prefix's
/// shards (with their indexes and temporary files). Any other file stays.
pub(super) fn replaced_files(out: &Folder, config: &ShardConfig) -> Result<Vec<String>> {
    let names: Vec<String> = out.list()?.into_iter().map(|(name, _)| name).collect();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    if !config.overwrite {
        return Err(Error::OutputNotEmpty(out.name()));
    }
    let listed: Vec<String> = match Manifest::read_folder(&out.name()) {
        Ok(Some(manifest)) => manifest
            .shards
            .iter()
            .flat_map(|s| [s.file.clone(), format!("{}.idx", s.file)])
            .collect(),
        _ => Vec::new(),
    };
    Ok(names
        .into_iter()
        .filter(|name| {
            name == MANIFEST_FILE
                || crate::folder::is_part_file(name)
                || listed.contains(name)
                || crate::folder::shard_number_of(name, &config.prefix).is_some()
        })
        .collect())
}

/// A staging folder inside the output folder for a run that replaces a dataset: removed with
/// what it holds if the run ends any other way than [`Stage::promote`].
pub(super) struct Stage {
    pub(super) folder: Folder,
    promoted: bool,
}

/// The name of a staging folder: `.shardfeed-new-PID-NANOS`.
const STAGE_PREFIX: &str = ".shardfeed-new-";

impl Stage {
    pub(super) fn new(out: &Folder) -> Result<Self> {
        Stage::remove_stale(out);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("{STAGE_PREFIX}{}-{nanos}", std::process::id());
        let folder = out.child(&name)?;
        folder.create()?;
        Ok(Stage {
            folder,
            promoted: false,
        })
    }

    /// Removes the staging folders of runs killed before they could (local folders: a
    /// folder whose process is gone).
    fn remove_stale(out: &Folder) {
        let Folder::Local(dir) = out else { return };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix(STAGE_PREFIX)
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok());
            if let Some(pid) = pid
                && pid != std::process::id()
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// Replaces the old dataset's files `old` in `out` with the staged set: the old
    /// `manifest.json` goes first (it never describes new shards), then each new shard and
    /// its index moves in (replacing a file of the same name), the old files not replaced go,
    /// and the new `manifest.json` comes last.
    pub(super) fn promote(mut self, out: &Folder, old: &[String]) -> Result<()> {
        let mut new: Vec<String> = self
            .folder
            .list()?
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| name != MANIFEST_FILE)
            .collect();
        // A shard before its index, as the shard step writes them.
        new.sort_by_key(|name| {
            (
                name.trim_end_matches(".idx").to_owned(),
                name.ends_with(".idx"),
            )
        });
        out.remove(MANIFEST_FILE)?;
        for name in &new {
            out.move_in(&self.folder, name)?;
        }
        for name in old {
            if name != MANIFEST_FILE && !new.contains(name) {
                out.remove(name)?;
            }
        }
        out.move_in(&self.folder, MANIFEST_FILE)?;
        out.sync()?;
        self.promoted = true;
        self.folder.remove_all()
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if !self.promoted {
            let _ = self.folder.remove_all();
        }
    }
}

/// Makes `out` ready for one worker of a split run: other workers' files stay (they may be
/// writing beside it), this worker's own files from an earlier try are removed (a rerun
/// replaces them), and so is `manifest.json` (the set is not whole until merged again).
/// Anything else in the folder, or a one-machine run's shards, needs `overwrite`.
pub(super) fn prepare_worker_output(out: &Folder, config: &ShardConfig) -> Result<()> {
    let names: Vec<String> = out.list()?.into_iter().map(|(name, _)| name).collect();
    let manifest = names.iter().any(|n| n == MANIFEST_FILE);
    let parts = names.iter().any(|n| crate::folder::is_part_file(n));
    let others = names.iter().filter(|n| !is_dataset_file(n)).count();
    if !config.overwrite && (others > 0 || (manifest && !parts)) {
        return Err(Error::OutputNotEmpty(out.name()));
    }
    let mut remove = crate::folder::own_files(&names, &config.prefix, config.workers);
    if manifest {
        remove.push(MANIFEST_FILE.to_owned());
    }
    for name in remove {
        out.remove(&name)?;
    }
    Ok(())
}
