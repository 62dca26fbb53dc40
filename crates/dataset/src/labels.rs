//! Where a source image's label comes from (`shard --labels`): its file name's first
//! `.`-token (the seed's rule, [`crate::label_of`]), the class folder it is in
//! (`train/<class>/**/*.jpg`, as torchvision's `ImageFolder` and Keras's
//! `image_dataset_from_directory` lay data out), or a CSV of `file,label` rows (DALI's
//! `file_list`, Hugging Face's `metadata.csv`). Every problem is reported with the file and,
//! for a CSV, the line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// How `shard` labels its sources.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Labels {
    /// The first `.`-separated token of the file name (`cat.123.jpg` → `cat`).
    #[default]
    Name,
    /// The first folder under the source (`train/cat/a/1.jpg` → `cat`); any depth below it.
    Folder,
    /// `file,label` rows of a CSV file (header required; paths relative to the source).
    Csv(PathBuf),
}

impl Labels {
    /// Whether the sources are listed at any depth (class folders, CSV paths), not only those
    /// directly in the source folder.
    pub fn is_recursive(&self) -> bool {
        !matches!(self, Labels::Name)
    }
}

impl std::str::FromStr for Labels {
    type Err = String;
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "name" => Ok(Labels::Name),
            "folder" => Ok(Labels::Folder),
            _ => match text.strip_prefix("csv:") {
                Some(file) if !file.is_empty() => Ok(Labels::Csv(PathBuf::from(file))),
                _ => Err(format!(
                    "{text:?} is not a label source (name, folder or csv:FILE)"
                )),
            },
        }
    }
}

impl std::fmt::Display for Labels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Labels::Name => f.write_str("name"),
            Labels::Folder => f.write_str("folder"),
            Labels::Csv(file) => write!(f, "csv:{}", file.display()),
        }
    }
}

/// The label of `relative` (a source's path under the source folder, `/`-separated) by its
/// class folder: the first component, where the file is below one.
pub fn folder_label(relative: &str) -> Option<&str> {
    match relative.split_once('/') {
        Some((class, rest)) if !class.is_empty() && !rest.is_empty() => Some(class),
        _ => None,
    }
}

/// A labels CSV read and checked: each source path (relative, `/`-separated) with its label
/// and line, and the problems of the other rows, each by line.
#[derive(Debug, Default)]
pub struct CsvLabels {
    /// Path → (label, line).
    rows: BTreeMap<String, (String, u64)>,
    /// Rows that label nothing: (path as written, problem), in line order.
    pub problems: Vec<(String, Error)>,
    /// The CSV file, for messages.
    file: PathBuf,
}

impl CsvLabels {
    /// Parses `text` (the CSV `file` holds): a header with `file` and `label` columns (any
    /// order, other columns ignored), quoted fields allowed. An empty label or a path named
    /// twice is a problem of its row (the second row of a pair: the file's label is then
    /// ambiguous, and it is left out).
    pub fn parse(text: &[u8], file: &Path) -> Result<CsvLabels> {
        let name = file.display().to_string();
        let place = |line: u64| format!("{name} line {line}");
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(text);
        let headers = reader.headers().map_err(|e| Error::Label {
            place: place(1),
            file: None,
            message: format!("not a CSV header: {e}"),
        })?;
        let column = |wanted: &str| headers.iter().position(|h| h.trim() == wanted);
        let (Some(path_at), Some(label_at)) = (column("file"), column("label")) else {
            return Err(Error::Label {
                place: place(1),
                file: None,
                message: format!(
                    "the header must name a `file` and a `label` column, not {:?}",
                    headers.iter().collect::<Vec<_>>()
                ),
            });
        };
        let mut labels = CsvLabels {
            file: file.to_owned(),
            ..CsvLabels::default()
        };
        let mut ambiguous: BTreeMap<String, u64> = BTreeMap::new();
        for row in reader.records() {
            let row = row.map_err(|e| Error::Label {
                place: place(e.position().map_or(0, |p| p.line())),
                file: None,
                message: e.to_string(),
            })?;
            let line = row.position().map_or(0, |p| p.line());
            let path = normalise(row.get(path_at).unwrap_or_default());
            let label = row.get(label_at).unwrap_or_default().trim().to_owned();
            let problem = |message: String| {
                (
                    path.clone(),
                    Error::Label {
                        place: place(line),
                        file: (!path.is_empty()).then(|| path.clone()),
                        message,
                    },
                )
            };
            if path.is_empty() {
                labels.problems.push(problem("no file named".to_owned()));
            } else if label.is_empty() {
                labels.problems.push(problem("empty label".to_owned()));
            } else if let Some((_, first)) = labels.rows.get(&path) {
                labels.problems.push(problem(format!(
                    "labelled again (first on line {first}): left out"
                )));
                ambiguous.insert(path.clone(), *first);
            } else {
                labels.rows.insert(path, (label, line));
            }
        }
        for path in ambiguous.keys() {
            labels.rows.remove(path);
        }
        Ok(labels)
    }

    /// The label of source `relative`, or the error a source without a row is.
    pub fn label_of(&self, relative: &str) -> Result<&str> {
        match self.rows.get(relative) {
            Some((label, _)) => Ok(label),
            None => Err(Error::Label {
                place: self.file.display().to_string(),
                file: Some(relative.to_owned()),
                message: "no row (or only an unusable one)".to_owned(),
            }),
        }
    }

    /// The rows that name a file not among `sources` (relative paths), as problems by line.
    pub fn missing(&self, sources: &std::collections::BTreeSet<String>) -> Vec<(String, Error)> {
        self.rows
            .iter()
            .filter(|(path, _)| !sources.contains(*path))
            .map(|(path, (_, line))| {
                (
                    path.clone(),
                    Error::Label {
                        place: format!("{} line {line}", self.file.display()),
                        file: Some(path.clone()),
                        message: "not among the source images".to_owned(),
                    },
                )
            })
            .collect()
    }
}

/// A CSV path as the listing names files: `/`-separated, no leading `./`.
fn normalise(path: &str) -> String {
    let path = path.trim().replace('\\', "/");
    let mut rest = path.as_str();
    while let Some(stripped) = rest.strip_prefix("./") {
        rest = stripped;
    }
    rest.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print_back() {
        for text in ["name", "folder", "csv:labels.csv"] {
            assert_eq!(text.parse::<Labels>().unwrap().to_string(), text);
        }
        assert!("csv:".parse::<Labels>().is_err() && "dirs".parse::<Labels>().is_err());
        assert_eq!(folder_label("cat/a/b/1.jpg"), Some("cat"));
        assert_eq!(folder_label("1.jpg"), None);
    }

    #[test]
    fn every_bad_row_is_named_by_its_line() {
        let text = "label,file,note\n\
                    cat,a.jpg,x\n\
                    dog,\"b, with comma.jpg\",\n\
                    ,c.jpg,\n\
                    dog,./a.jpg,\n\
                    cat,gone.jpg,\n";
        let labels = CsvLabels::parse(text.as_bytes(), Path::new("l.csv")).unwrap();
        assert_eq!(labels.label_of("b, with comma.jpg").unwrap(), "dog");
        let problems: Vec<String> = labels.problems.iter().map(|(_, e)| e.to_string()).collect();
        assert_eq!(
            problems,
            [
                "l.csv line 4: c.jpg: empty label",
                "l.csv line 5: a.jpg: labelled again (first on line 2): left out"
            ]
        );
        assert!(
            labels.label_of("a.jpg").is_err(),
            "an ambiguous file is left out"
        );
        let listed = ["b, with comma.jpg", "c.jpg", "z.jpg"]
            .map(str::to_owned)
            .into();
        let missing: Vec<String> = labels
            .missing(&listed)
            .iter()
            .map(|(_, e)| e.to_string())
            .collect();
        assert_eq!(
            missing,
            ["l.csv line 6: gone.jpg: not among the source images"]
        );
        assert_eq!(
            labels.label_of("z.jpg").unwrap_err().to_string(),
            "l.csv: z.jpg: no row (or only an unusable one)"
        );
        let no_header = CsvLabels::parse(b"a.jpg,cat\n", Path::new("l.csv")).unwrap_err();
        assert!(
            no_header
                .to_string()
                .starts_with("l.csv line 1: the header must name")
        );
    }
}
