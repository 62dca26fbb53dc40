//! Labels from file names (`cat.123.jpg` → `cat`) and the class list: the source folder's
//! layout, which the shard step reads.

use std::collections::BTreeSet;
use std::path::Path;

use crate::{Error, Result};

/// Whether `path` names a JPEG by its extension (`.jpg` or `.jpeg`, any case).
pub fn is_jpeg_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
}

/// Whether `path` names an image source `shard` reads: a JPEG, or a PNG, WebP, BMP, GIF or
/// TIFF by its extension (any case).
pub fn is_image_name(path: &Path) -> bool {
    source_format(path).is_some()
}

/// The format a source is decoded as, by its extension (`None`: not an image source).
pub fn source_format(path: &Path) -> Option<shardfeed_image_prep::SourceFormat> {
    path.extension()
        .and_then(|e| e.to_str())
        .and_then(shardfeed_image_prep::SourceFormat::of_extension)
}

/// The label of a training file: the first `.`-separated token of its name, which must have
/// a `.` before the extension (`golden_retriever.7.jpg` → `golden_retriever`).
///
/// ```
/// use std::path::Path;
/// use shardfeed_dataset::label_of;
///
/// assert_eq!(label_of(Path::new("data/train/cat.123.jpg")).unwrap(), "cat");
/// assert!(label_of(Path::new("data/train/cat.jpg")).is_err());
/// ```
pub fn label_of(path: &Path) -> Result<String> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| Error::NoLabel(path.to_path_buf()))?;
    match stem.split_once('.') {
        Some((label, _)) if !label.is_empty() => Ok(label.to_owned()),
        _ => Err(Error::NoLabel(path.to_path_buf())),
    }
}

/// The classes of a dataset, in index order: the stored `class` is a position in this list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classes {
    names: Vec<String>,
}

impl Classes {
    /// The sorted set of `labels` (byte order), the default class list.
    pub fn discover<'a>(labels: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let names: BTreeSet<&str> = labels.into_iter().collect();
        Classes::explicit(names.into_iter().map(str::to_owned).collect())
    }

    /// An explicit list (`--classes cat,dog`), kept in the order given.
    pub fn explicit(names: Vec<String>) -> Result<Self> {
        if names.is_empty() {
            return Err(Error::InvalidClasses("no class".to_owned()));
        }
        let mut seen = BTreeSet::new();
        for name in &names {
            if name.is_empty() || name.contains(',') || name.contains('.') {
                return Err(Error::InvalidClasses(format!("{name:?} cannot be a label")));
            }
            if !seen.insert(name) {
                return Err(Error::InvalidClasses(format!("{name:?} is listed twice")));
            }
        }
        Ok(Classes { names })
    }

    /// Parses `cat,dog`.
    pub fn parse(list: &str) -> Result<Self> {
        Classes::explicit(list.split(',').map(|s| s.trim().to_owned()).collect())
    }

    /// The names, in index order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The number of classes.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there is no class (never, once constructed).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The index of `label`, or an error naming the file and the list.
    pub fn index_of(&self, label: &str, path: &Path) -> Result<i64> {
        self.names
            .iter()
            .position(|n| n == label)
            .map(|i| i as i64)
            .ok_or_else(|| Error::UnknownLabel {
                path: path.to_path_buf(),
                label: label.to_owned(),
                classes: self.names.join(","),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_the_first_token() {
        for (name, label) in [
            ("cat.1.jpg", "cat"),
            ("golden_retriever.7.JPEG", "golden_retriever"),
            ("a.b.c.jpg", "a"),
        ] {
            assert_eq!(label_of(Path::new(name)).unwrap(), label);
        }
        for name in ["cat.jpg", ".1.jpg", "noext"] {
            assert!(
                matches!(label_of(Path::new(name)), Err(Error::NoLabel(_))),
                "{name}"
            );
        }
        assert!(is_jpeg_name(Path::new("x.JpG")) && is_jpeg_name(Path::new("x.jpeg")));
        assert!(!is_jpeg_name(Path::new("x.png")));
    }

    #[test]
    fn classes_are_sorted_by_default_and_explicit_lists_keep_their_order() {
        let classes = Classes::discover(["dog", "cat", "dog", "bird"]).unwrap();
        assert_eq!(classes.names(), ["bird", "cat", "dog"]);
        let explicit = Classes::parse("dog,cat").unwrap();
        assert_eq!(explicit.index_of("cat", Path::new("cat.1.jpg")).unwrap(), 1);
        let error = explicit
            .index_of("bird", Path::new("bird.1.jpg"))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"label "bird" of bird.1.jpg is not one of the classes dog,cat"#
        );
        assert!(Classes::parse("cat,cat").is_err());
        assert!(Classes::parse("").is_err());
    }
}
