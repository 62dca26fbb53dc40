//! `shard --labels folder|csv:FILE` and `--keep-names`: a nested class-folder tree, a CSV
//! with every kind of bad row (each named by its line), names with several dots; the
//! manifest's class counts against the records' own and the tree's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use shardfeed_dataset::folder::Location;
use shardfeed_dataset::labels::Labels;
use shardfeed_dataset::{Classes, Error, Manifest, ShardConfig, find_shards, shard, synthetic};
use shardfeed_record_format::{Example, ImageExample, ReaderOptions, RecordReader};

/// `n` small JPEGs' bytes.
fn jpegs(dir: &Path, n: usize) -> Vec<Vec<u8>> {
    let config = synthetic::GenData {
        n_train: n,
        n_test: 0,
        sides: (24, 40),
        ..Default::default()
    };
    synthetic::generate(&dir.join("gen"), &config).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("gen/train"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

fn put(root: &Path, relative: &str, bytes: &[u8]) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn config(input: &Path, out: &Path, labels: Labels) -> ShardConfig {
    ShardConfig {
        input: Location::local(input),
        out: Location::local(out),
        shards: 2,
        size: 16,
        labels,
        ..ShardConfig::default()
    }
}

/// Every record of a shard folder: (class, `name` feature if any).
fn records(out: &Path) -> Vec<(i64, Option<String>)> {
    find_shards(out)
        .unwrap()
        .iter()
        .flat_map(|f| RecordReader::open(f, ReaderOptions::default()).unwrap())
        .map(|r| {
            let example = Example::decode(&r.unwrap()).unwrap();
            let name = example
                .single_bytes("name")
                .ok()
                .map(|b| String::from_utf8(b.to_vec()).unwrap());
            (ImageExample::from_example(&example).unwrap().class, name)
        })
        .collect()
}

fn skipped(manifest: &Manifest) -> Vec<(String, String)> {
    manifest
        .skipped
        .iter()
        .map(|s| {
            (
                s.file.file_name().unwrap().to_string_lossy().into_owned(),
                s.reason.clone(),
            )
        })
        .collect()
}

#[test]
fn class_folders_label_at_any_depth_and_names_trace_records_back() {
    let dir = tempfile::tempdir().unwrap();
    let images = jpegs(dir.path(), 8);
    let src = dir.path().join("src");
    let tree = [
        "cat/1.jpg",
        "cat/indoor/2.jpg",
        "cat/indoor/sofa/my.cat.photo.jpg",
        "dog/3.JPEG",
        "dog/park/4.jpg",
        "bird/5.jpg",
    ];
    for (relative, bytes) in tree.iter().zip(&images) {
        put(&src, relative, bytes);
    }
    put(&src, "loose.jpg", &images[6]);
    put(&src, ".thumbs/cat/6.jpg", &images[7]);
    put(&src, "dog/notes.txt", b"not an image");
    let out = dir.path().join("out");
    let manifest = shard(
        &ShardConfig {
            keep_names: true,
            ..config(&src, &out, Labels::Folder)
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(manifest.classes, ["bird", "cat", "dog"]);
    // Counted another way: the tree's top folders.
    let mut by_folder: BTreeMap<&str, u64> = BTreeMap::new();
    for relative in tree {
        *by_folder
            .entry(relative.split('/').next().unwrap())
            .or_default() += 1;
    }
    assert_eq!(
        manifest.per_class,
        by_folder.values().copied().collect::<Vec<_>>()
    );
    let records = records(&out);
    let mut from_records = vec![0u64; 3];
    for (class, _) in &records {
        from_records[*class as usize] += 1;
    }
    assert_eq!(manifest.per_class, from_records);
    let mut names: Vec<String> = records.into_iter().map(|(_, n)| n.unwrap()).collect();
    names.sort();
    let mut want: Vec<String> = tree.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(names, want, "each record names its source under the folder");
    assert_eq!(
        skipped(&manifest),
        [(
            "loose.jpg".to_owned(),
            format!("{}: not in a class folder (SOURCE/CLASS/…)", src.display())
        )]
    );
    assert_eq!(manifest.ignored_non_jpeg, 1, "notes.txt");
}

#[test]
fn every_bad_csv_row_is_listed_by_its_line_or_stops_a_strict_run() {
    let dir = tempfile::tempdir().unwrap();
    let images = jpegs(dir.path(), 6);
    let src = dir.path().join("src");
    for (i, name) in ["a.jpg", "b.jpg", "sub/c.jpg", "d.jpg", "e.jpg", "f.jpg"]
        .iter()
        .enumerate()
    {
        put(&src, name, &images[i]);
    }
    let csv = dir.path().join("labels.csv");
    std::fs::write(
        &csv,
        "file,label\n\
         a.jpg,cat\n\
         ./sub/c.jpg,\"dog\"\n\
         b.jpg,\n\
         gone.jpg,cat\n\
         d.jpg,dog\n\
         d.jpg,cat\n\
         e.jpg,dog\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let manifest = shard(&config(&src, &out, Labels::Csv(csv.clone())), |_| {}).unwrap();
    assert_eq!(manifest.classes, ["cat", "dog"]);
    assert_eq!(manifest.per_class, [1, 2], "a (cat); sub/c and e (dog)");
    let at = |line: u32| format!("{} line {line}", csv.display());
    let mut got = skipped(&manifest);
    got.sort();
    assert_eq!(
        got,
        [
            ("b.jpg".to_owned(), format!("{}: empty label", at(4))),
            (
                "d.jpg".to_owned(),
                format!("{}: labelled again (first on line 6): left out", at(7))
            ),
            (
                "f.jpg".to_owned(),
                format!("{}: no row (or only an unusable one)", csv.display())
            ),
            (
                "gone.jpg".to_owned(),
                format!("{}: not among the source images", at(5))
            ),
        ]
    );
    let strict = shard(
        &ShardConfig {
            strict: true,
            overwrite: true,
            ..config(&src, &out, Labels::Csv(csv.clone()))
        },
        |_| {},
    )
    .unwrap_err();
    assert!(matches!(strict, Error::Label { .. }), "{strict}");
    assert_eq!(strict.to_string(), format!("{}: b.jpg: empty label", at(4)));
}

#[test]
fn names_with_several_dots_take_their_first_token() {
    let dir = tempfile::tempdir().unwrap();
    let images = jpegs(dir.path(), 4);
    let src = dir.path().join("src");
    for (i, name) in [
        "my.cat.photo.jpg",
        "my.cat.2.jpg",
        "your.dog.x.y.jpg",
        "your.1.jpg",
    ]
    .iter()
    .enumerate()
    {
        put(&src, name, &images[i]);
    }
    let out = dir.path().join("out");
    let manifest = shard(&config(&src, &out, Labels::Name), |_| {}).unwrap();
    assert_eq!(manifest.classes, ["my", "your"]);
    assert_eq!(manifest.per_class, [2, 2]);
    assert!(
        Classes::explicit(vec!["my.cat".into()]).is_err(),
        "a label has no dot"
    );
}
