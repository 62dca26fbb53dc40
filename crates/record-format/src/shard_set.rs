//! A folder of shards as `shardfeed shard` (and the TensorFlow tutorial) lays it out: files
//! named `PREFIX{shard:02}-{count}.tfrec`, whose name states how many records they hold, and a
//! `manifest.json` listing the class names and the shards.
//!
//! ```
//! use std::path::Path;
//! use shardfeed_record_format::{FileName, ShardManifest, count_in_name};
//!
//! assert_eq!(count_in_name(Path::new("shards/data07-250.tfrec")), Some(250));
//! assert_eq!(count_in_name(Path::new("train-00001-of-00016.tfrec")), None);
//!
//! let text = br#"{"classes": ["cat", "dog"], "shards": [{"file": "data00-2.tfrec", "records": 2}]}"#;
//! let manifest = ShardManifest::parse(text, &FileName::new(Path::new("manifest.json")))?;
//! assert_eq!(manifest.classes, ["cat", "dog"]);
//! assert_eq!(manifest.records_of("data00-2.tfrec"), Some(2));
//! # Ok::<(), shardfeed_record_format::Error>(())
//! ```

use std::path::Path;

use serde::Deserialize;

use crate::{Error, FileName, Result};

/// The record count a shard's name states: `N` in `PREFIX{shard:02}-{N}.tfrec`, where the
/// part before the last `-` ends in at least two digits (the shard number). Names of other
/// schemes (`train-00001-of-00016.tfrec`) state none.
pub fn count_in_name(path: &Path) -> Option<u64> {
    let stem = path.file_name()?.to_str()?.strip_suffix(".tfrec")?;
    let (before, count) = stem.rsplit_once('-')?;
    let shard_digits = before.bytes().rev().take_while(u8::is_ascii_digit).count();
    if shard_digits < 2 || count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    count.parse().ok()
}

/// What a reader needs from `manifest.json` (other fields are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ShardManifest {
    /// Class names; a record's `class` indexes this list.
    pub classes: Vec<String>,
    /// The shards, in order.
    #[serde(default)]
    pub shards: Vec<ManifestShard>,
}

/// One shard listed in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ManifestShard {
    /// Its file name (no folder).
    pub file: String,
    /// Its records.
    pub records: u64,
}

impl ShardManifest {
    /// Parses a manifest; `file` names it in errors. At least two distinct, non-empty class
    /// names are required.
    pub fn parse(text: &[u8], file: &FileName) -> Result<Self> {
        let bad = |message: String| Error::BadManifest {
            file: file.clone(),
            message,
        };
        let manifest: ShardManifest =
            serde_json::from_slice(text).map_err(|e| bad(e.to_string()))?;
        if manifest.classes.len() < 2 {
            return Err(bad(format!(
                "{} classes listed: at least 2 are needed",
                manifest.classes.len()
            )));
        }
        for (i, name) in manifest.classes.iter().enumerate() {
            if name.is_empty() {
                return Err(bad(format!("class {i} has an empty name")));
            }
            if manifest.classes[..i].contains(name) {
                return Err(bad(format!("class {name:?} is listed twice")));
            }
        }
        Ok(manifest)
    }

    /// Reads and parses the manifest at `path`.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let file = FileName::new(path.as_ref());
        let text = std::fs::read(path.as_ref()).map_err(|e| Error::io(&file, 0, e))?;
        ShardManifest::parse(&text, &file)
    }

    /// The record count the manifest gives for shard file `name`.
    pub fn records_of(&self, name: &str) -> Option<u64> {
        self.shards
            .iter()
            .find(|s| s.file == name)
            .map(|s| s.records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_comes_only_from_the_tutorial_naming_scheme() {
        let count = |name: &str| count_in_name(Path::new(name));
        assert_eq!(count("data00-188.tfrec"), Some(188));
        assert_eq!(count("/a/b-c/cats_dogs15-0.tfrec"), Some(0));
        assert_eq!(count("123-45.tfrec"), Some(45));
        assert_eq!(
            count("data0-188.tfrec"),
            None,
            "one digit is not a shard number"
        );
        assert_eq!(count("data00-188.tfrecord"), None);
        assert_eq!(count("data00-.tfrec"), None);
        assert_eq!(count("data00-1x.tfrec"), None);
        assert_eq!(count("data00-+5.tfrec"), None);
        assert_eq!(count("train-00001-of-00016.tfrec"), None);
        assert_eq!(count("data00-99999999999999999999999.tfrec"), None);
    }

    #[test]
    fn a_manifest_is_checked_and_names_its_file() {
        let file = FileName::new(Path::new("dir/manifest.json"));
        let parse = |text: &str| ShardManifest::parse(text.as_bytes(), &file);
        let ok = parse(r#"{"tool": "x", "classes": ["a", "b"], "shards": [{"file": "d00-1.tfrec", "records": 1, "bytes": 9}]}"#).unwrap();
        assert_eq!(ok.records_of("d00-1.tfrec"), Some(1));
        assert_eq!(ok.records_of("d01-1.tfrec"), None);
        for (text, says) in [
            ("{", "EOF"),
            (r#"{"classes": ["a"]}"#, "1 classes listed"),
            (r#"{"classes": ["a", ""]}"#, "class 1 has an empty name"),
            (r#"{"classes": ["a", "a"]}"#, "listed twice"),
            (r#"{"classes": ["a", 3]}"#, "invalid type"),
            (
                r#"{"classes": ["a", "b"], "shards": [{"file": "x"}]}"#,
                "records",
            ),
        ] {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.contains("dir/manifest.json"), "{error}");
            assert!(error.contains(says), "{text}: {error}");
        }
    }
}
