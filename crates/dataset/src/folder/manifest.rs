//! `manifest.json`: what a shard run wrote and how ([`Manifest`]), read back by every
//! reader of the folder.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shardfeed_record_format::Compression;

use super::MANIFEST_FILE;
use crate::{Error, Result};

/// A file left out of the shards, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Skipped {
    /// The file.
    pub file: PathBuf,
    /// Why.
    pub reason: String,
}

/// How `shard` sized each record's image (`manifest.json`'s `resize`; absent: `crop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// Shorter side → `target_size`, then the centre square (SPEC §2, the seed's): every
    /// record is `target_size` × `target_size`, re-encoded.
    #[default]
    Crop,
    /// The aspect ratio kept, downscaled so the longer side is at most `max_side` (never
    /// upscaled), re-encoded.
    Fit,
    /// Each source JPEG's bytes, unchanged (checked, never re-encoded).
    Keep,
}

impl std::fmt::Display for Resize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Resize::Crop => "crop",
            Resize::Fit => "fit",
            Resize::Keep => "keep",
        })
    }
}

impl std::str::FromStr for Resize {
    type Err = String;
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "crop" => Ok(Resize::Crop),
            "fit" => Ok(Resize::Fit),
            "keep" => Ok(Resize::Keep),
            other => Err(format!(
                "{other:?} is not a resize mode (crop, fit or keep)"
            )),
        }
    }
}

/// The smallest and largest images a run wrote, when they vary (`fit`, `keep`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeRange {
    /// The narrowest width.
    pub min_width: u32,
    /// The widest width.
    pub max_width: u32,
    /// The lowest height.
    pub min_height: u32,
    /// The highest height.
    pub max_height: u32,
    /// The most pixels (width × height) of one image: the readers' limit.
    pub max_pixels: u64,
}

impl SizeRange {
    /// The range of one image.
    pub fn of(width: u32, height: u32) -> Self {
        SizeRange {
            min_width: width,
            max_width: width,
            min_height: height,
            max_height: height,
            max_pixels: u64::from(width) * u64::from(height),
        }
    }

    /// The range covering both.
    pub fn merge(self, other: SizeRange) -> Self {
        SizeRange {
            min_width: self.min_width.min(other.min_width),
            max_width: self.max_width.max(other.max_width),
            min_height: self.min_height.min(other.min_height),
            max_height: self.max_height.max(other.max_height),
            max_pixels: self.max_pixels.max(other.max_pixels),
        }
    }

    /// `a` and `b` merged, either possibly absent.
    pub fn merged(a: Option<SizeRange>, b: Option<SizeRange>) -> Option<SizeRange> {
        match (a, b) {
            (Some(a), Some(b)) => Some(a.merge(b)),
            (a, b) => a.or(b),
        }
    }
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// One shard listed in a manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShardInfo {
    /// Its file name (no folder).
    pub file: String,
    /// Its records.
    pub records: u64,
    /// Records per class, in class order.
    #[serde(default)]
    pub per_class: Vec<u64>,
    /// Its size in bytes.
    #[serde(default)]
    pub bytes: u64,
}

/// `manifest.json`: what a shard run wrote and how. Written by [`crate::shard()`]; read
/// back by every reader of the folder (only `classes` is required of manifests other tools
/// wrote; the rest defaults).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Manifest {
    /// The tool that wrote it.
    #[serde(default)]
    pub tool: String,
    /// Class names; a record's `class` is an index into this list.
    pub classes: Vec<String>,
    /// The shards, in order.
    #[serde(default)]
    pub shards: Vec<ShardInfo>,
    /// Records in all shards.
    #[serde(default)]
    pub records: u64,
    /// Records per class, in class order.
    #[serde(default)]
    pub per_class: Vec<u64>,
    /// Target square size (`crop`; 0 for the other modes).
    #[serde(default)]
    pub target_size: u32,
    /// How each record's image was sized.
    #[serde(default)]
    pub resize: Resize,
    /// The longest side allowed (`fit`; absent otherwise).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_side: u32,
    /// The records' sizes (`fit`, `keep`; absent for `crop`, whose records are all
    /// `target_size` square).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sizes: Option<SizeRange>,
    /// JPEG quality of the records.
    #[serde(default)]
    pub quality: u8,
    /// The seed of the file order.
    #[serde(default)]
    pub seed: u64,
    /// `none`, `gzip` or `zlib` (another value is refused, naming the manifest: shards read
    /// with the wrong codec fail on every record).
    #[serde(default, with = "compression_name")]
    pub compression: Compression,
    /// Whether DCT-domain scaling was used (pixels then differ from TensorFlow's).
    #[serde(default)]
    pub fast_decode: bool,
    /// Whether JPEGs were turned upright by their EXIF orientation (absent: ignored, as
    /// TensorFlow does).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exif_orientation: bool,
    /// `.jpg`/`.jpeg` files found.
    #[serde(default)]
    pub source_count: u64,
    /// Other files in the folder, not read.
    #[serde(default)]
    pub ignored_non_jpeg: u64,
    /// Files left out, with reasons.
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    /// Bytes of the sources read.
    #[serde(default)]
    pub bytes_in: u64,
    /// Bytes of the shards written.
    #[serde(default)]
    pub bytes_out: u64,
    /// Wall time of the run.
    #[serde(default)]
    pub seconds: f64,
}

/// A [`Compression`] as its name in JSON (`"none"`, `"gzip"`, `"zlib"`).
mod compression_name {
    use serde::{Deserialize, Deserializer, Serializer};
    use shardfeed_record_format::Compression;

    pub fn serialize<S: Serializer>(value: &Compression, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Compression, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse()
            .map_err(|e| serde::de::Error::custom(format!("compression {name:?}: {e}")))
    }
}

impl Manifest {
    /// Parses a manifest; `file` names it in errors. At least two distinct, non-empty class
    /// names are required.
    pub fn parse(text: &[u8], file: &Path) -> Result<Self> {
        let bad = |message: String| Error::BadDescription {
            file: file.to_owned(),
            message,
        };
        let manifest: Manifest = serde_json::from_slice(text).map_err(|e| bad(e.to_string()))?;
        if manifest.classes.len() < 2 {
            return Err(bad(format!(
                "{} classes listed: at least 2 are needed",
                manifest.classes.len()
            )));
        }
        let mut seen = std::collections::HashSet::with_capacity(manifest.classes.len());
        for (i, name) in manifest.classes.iter().enumerate() {
            if name.is_empty() {
                return Err(bad(format!("class {i} has an empty name")));
            }
            if !seen.insert(name.as_str()) {
                return Err(bad(format!("class {name:?} is listed twice")));
            }
        }
        Ok(manifest)
    }

    /// Reads and parses the manifest at `path` (at most
    /// [`MAX_DESCRIPTION_BYTES`](crate::limits::MAX_DESCRIPTION_BYTES)).
    pub fn read(path: &Path) -> Result<Self> {
        match Manifest::read_if_exists(path)? {
            Some(manifest) => Ok(manifest),
            None => Err(Error::io("read", path)(std::io::ErrorKind::NotFound.into())),
        }
    }

    fn read_if_exists(path: &Path) -> Result<Option<Self>> {
        let limit = crate::limits::MAX_DESCRIPTION_BYTES;
        match crate::remote::read_bounded(path, limit) {
            Ok(Some(text)) => Manifest::parse(&text, path).map(Some),
            Ok(None) => Ok(None),
            Err(message) => Err(Error::BadDescription {
                file: path.to_owned(),
                message,
            }),
        }
    }

    /// The manifest of the shard folder `dir`, if it has one.
    pub fn read_folder(dir: &Path) -> Result<Option<Self>> {
        Manifest::read_if_exists(&dir.join(MANIFEST_FILE))
    }

    /// Writes `dir/manifest.json` atomically (pretty JSON and a newline).
    pub fn write(&self, dir: &Path) -> Result<()> {
        shardfeed_record_format::atomic::write_atomic(&dir.join(MANIFEST_FILE), &self.to_json())?;
        Ok(())
    }

    /// The manifest as written: pretty JSON and a newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut text = serde_json::to_string_pretty(self).expect("a manifest serialises");
        text.push('\n');
        text.into_bytes()
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
    use crate::folder::shard_file_name;

    #[test]
    fn a_written_manifest_reads_back_equal() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = Manifest {
            tool: "shardfeed 0.1.0".into(),
            classes: vec!["cat".into(), "dog".into(), "bird".into()],
            shards: vec![
                ShardInfo {
                    file: shard_file_name("x", 0, 3),
                    records: 3,
                    per_class: vec![1, 1, 1],
                    bytes: 900,
                },
                ShardInfo {
                    file: shard_file_name("x", 1, 1),
                    records: 1,
                    per_class: vec![0, 1, 0],
                    bytes: 300,
                },
            ],
            records: 4,
            per_class: vec![1, 2, 1],
            target_size: 0,
            resize: Resize::Fit,
            max_side: 64,
            sizes: Some(SizeRange::of(64, 30).merge(SizeRange::of(20, 64))),
            quality: 90,
            seed: 7,
            compression: Compression::Gzip,
            fast_decode: true,
            exif_orientation: true,
            source_count: 6,
            ignored_non_jpeg: 2,
            skipped: vec![Skipped {
                file: "a/b.jpg".into(),
                reason: "no label".into(),
            }],
            bytes_in: 5000,
            bytes_out: 1200,
            seconds: 1.25,
        };
        manifest.write(dir.path()).unwrap();
        let back = Manifest::read_folder(dir.path()).unwrap().unwrap();
        assert_eq!(back, manifest);
        assert_eq!(back.records_of("x01-1.tfrec"), Some(1));
        assert_eq!(back.records_of("x02-1.tfrec"), None);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["manifest.json"]);
    }

    /// The duplicate check is one pass with a set: a million names (quadratic, half a
    /// trillion comparisons) parse at once, and a duplicate at the end is found.
    #[test]
    fn a_million_class_names_are_checked_in_one_pass() {
        let mut names: Vec<String> = (0..1_000_000).map(|i| format!("c{i}")).collect();
        let text = |names: &[String]| {
            serde_json::to_vec(&serde_json::json!({ "classes": names })).unwrap()
        };
        let file = Path::new("manifest.json");
        assert_eq!(
            Manifest::parse(&text(&names), file).unwrap().classes.len(),
            1_000_000
        );
        names.push("c999999".into());
        let error = Manifest::parse(&text(&names), file)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(r#"class "c999999" is listed twice"#),
            "{error}"
        );
    }

    #[test]
    fn a_manifest_is_checked_and_names_its_file() {
        let file = Path::new("dir/manifest.json");
        let parse = |text: &str| Manifest::parse(text.as_bytes(), file);
        let ok = parse(r#"{"tool": "x", "classes": ["a", "b"], "shards": [{"file": "d00-1.tfrec", "records": 1, "bytes": 9}]}"#).unwrap();
        assert_eq!(ok.records_of("d00-1.tfrec"), Some(1));
        assert_eq!(ok.compression, Compression::None);
        for (text, says) in [
            ("{", "EOF"),
            (r#"{"classes": ["a"]}"#, "1 classes listed"),
            (r#"{"classes": ["a", ""]}"#, "class 1 has an empty name"),
            (r#"{"classes": ["a", "a"]}"#, "listed twice"),
            (r#"{"classes": ["a", 3]}"#, "invalid type"),
            (
                r#"{"classes": ["a", "b"], "compression": "zstd"}"#,
                "compression \"zstd\"",
            ),
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
