//! The shard step's sources: the images of the source folder, listed once (directly in it,
//! or at any depth for class folders and CSV labels), each labelled by the run's
//! [`Labels`] source; files that cannot be labelled are skipped with the reason (or, strict,
//! stop the run), and so is every labels row that labels nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{Input, ShardConfig, reason_without_path};
use crate::folder::{Location, Skipped};
use crate::label::{Classes, is_image_name, label_of};
use crate::labels::{CsvLabels, Labels, folder_label};
use crate::{Error, Result};

/// The source images (JPEG, PNG, WebP, BMP, GIF, TIFF), in path order, and how many other
/// files the listing held.
pub(super) fn list(config: &ShardConfig) -> Result<(Vec<PathBuf>, u64)> {
    let dir = &config.input;
    let files = if config.labels.is_recursive() {
        crate::folder::files_under(dir)?
    } else {
        crate::folder::files_in(dir)?
    };
    let (mut jpegs, others): (Vec<PathBuf>, Vec<PathBuf>) =
        files.into_iter().partition(|path| is_image_name(path));
    if jpegs.is_empty() {
        return Err(Error::NoJpegs(dir.path().to_owned()));
    }
    jpegs.sort();
    Ok((jpegs, others.len() as u64))
}

/// `path` relative to the source folder, `/`-separated (what class folders, CSV rows and
/// `--keep-names` name).
pub(super) fn relative(root: &Location, path: &Path) -> String {
    let relative = path.strip_prefix(root.path()).unwrap_or(path);
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// SHA-256 of the listing (paths relative to the source, in order), hex: what workers compare.
pub(super) fn listing_digest(root: &Location, sources: &[PathBuf]) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    for path in sources {
        hash.update(relative(root, path).as_bytes());
        hash.update([0]);
    }
    hex::encode(hash.finalize())
}

/// Labels every file; files without a usable label are skipped (or, strict, an error), and
/// so are labels rows that label nothing (a CSV's rows for files that are not there).
pub(super) fn label_inputs(
    sources: Vec<PathBuf>,
    config: &ShardConfig,
    skipped: &mut Vec<Skipped>,
) -> Result<(Vec<Input>, Classes)> {
    let mut csv = match &config.labels {
        Labels::Csv(file) => Some(read_csv(file)?),
        _ => None,
    };
    let mut skip = |file: PathBuf, error: Error| -> Result<()> {
        if config.strict {
            return Err(error);
        }
        skipped.push(Skipped {
            reason: reason_without_path(&error),
            file,
        });
        Ok(())
    };
    // Sources whose only rows were bad: listed once, by the row's line.
    let mut reported = BTreeSet::new();
    if let Some(csv) = &mut csv {
        for (path, error) in std::mem::take(&mut csv.problems) {
            skip(config.input.path().join(&path), error)?;
            reported.insert(path);
        }
        let listed: BTreeSet<String> = sources.iter().map(|p| relative(&config.input, p)).collect();
        for (path, error) in csv.missing(&listed) {
            skip(config.input.path().join(path), error)?;
        }
    }
    let mut labelled = Vec::new();
    for path in sources {
        let label = match &config.labels {
            Labels::Name => label_of(&path),
            Labels::Folder => {
                let relative = relative(&config.input, &path);
                folder_label(&relative)
                    .map(str::to_owned)
                    .ok_or_else(|| Error::Label {
                        place: config.input.to_string(),
                        file: Some(relative.clone()),
                        message: "not in a class folder (SOURCE/CLASS/…)".to_owned(),
                    })
            }
            Labels::Csv(_) => {
                let relative = relative(&config.input, &path);
                match csv.as_ref().expect("read above").label_of(&relative) {
                    Err(_) if reported.contains(&relative) => continue,
                    label => label.map(str::to_owned),
                }
            }
        };
        match label {
            Ok(label) => labelled.push((path, label)),
            Err(error) => skip(path, error)?,
        }
    }
    let classes = match &config.classes {
        Some(classes) => classes.clone(),
        None => Classes::discover(labelled.iter().map(|(_, label)| label.as_str())).map_err(
            |error| match config.labels {
                Labels::Name => Error::NoLabelledFiles(config.input.path().to_owned()),
                _ => error,
            },
        )?,
    };
    let mut inputs = Vec::with_capacity(labelled.len());
    for (path, label) in labelled {
        match classes.index_of(&label, &path) {
            Ok(class) => inputs.push(Input { path, class }),
            Err(error) => skip(path, error)?,
        }
    }
    if inputs.is_empty() {
        return Err(Error::NothingUsable {
            folder: config.input.path().to_owned(),
            skipped: skipped.len(),
        });
    }
    Ok((inputs, classes))
}

/// The labels CSV, read whole (bounded) and parsed.
fn read_csv(file: &Path) -> Result<CsvLabels> {
    let bytes = shardfeed_record_format::bounded::read_bounded(file, crate::MAX_FILE_BYTES)
        .map_err(|reason| Error::Unusable {
            path: file.to_owned(),
            reason: reason.to_string(),
        })?;
    CsvLabels::parse(&bytes, file)
}
