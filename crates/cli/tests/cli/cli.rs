//! The `shardfeed` binary, run as a user runs it.

use std::path::PathBuf;
use std::process::{Command, Output};

use shardfeed_record_format::{Compression, FileWriter, ImageExample};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/tf-written")
        .join(name)
}

fn shardfeed(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(crate::common::shardfeed_bin())
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn inspect_reports_an_intact_tensorflow_file() {
    let output = shardfeed(&["inspect".as_ref(), fixture("cat_dog00-8.tfrec").as_os_str()]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(stdout.contains("  records      8\n"), "{stdout}");
    assert!(stdout.contains("  bytes        22553\n"), "{stdout}");
    assert!(
        stdout.contains("  features     class: int64_list[1], image: bytes_list[1]\n"),
        "{stdout}"
    );
    assert!(stdout.contains("  classes      0: 4, 1: 4\n"), "{stdout}");
    assert!(stdout.contains("  status       OK\n"), "{stdout}");
    assert!(
        stdout.ends_with("1 file: 1 intact, 0 damaged\n"),
        "{stdout}"
    );
}

#[test]
fn inspect_exits_1_and_names_the_offset_of_each_damage() {
    let output = shardfeed(&[
        "inspect".as_ref(),
        fixture("corrupt_payload.tfrec").as_os_str(),
        fixture("truncated.tfrec").as_os_str(),
        fixture("trailing_partial_header.tfrec").as_os_str(),
    ]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    for needle in [
        "corrupted record 3 at offset 8280 in ",
        "data crc mismatch in the payload at offset 8292",
        "corrupted record 5 at offset 13760 in ",
        "7 stray bytes after the last record",
        "3 files: 0 intact, 3 damaged",
    ] {
        assert!(stdout.contains(needle), "{needle:?} in {stdout}");
    }
}

#[test]
fn inspect_json_is_machine_readable() {
    let output = shardfeed(&[
        "inspect".as_ref(),
        "--json".as_ref(),
        fixture("truncated.tfrec").as_os_str(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let reports: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let report = &reports[0];
    assert_eq!(report["records"], 5);
    assert_eq!(report["error"]["record"], 5);
    assert_eq!(report["error"]["offset"], 13760);
    assert_eq!(report["class_counts"]["0"], 3);
    assert_eq!(report["features"][1]["name"], "image");
}

#[test]
fn inspect_reads_compressed_files_and_checks_their_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data00-3.tfrec");
    let mut writer = FileWriter::create(&path, Compression::Zlib).unwrap();
    for class in [0, 1, 1] {
        writer
            .write_record(
                &ImageExample {
                    image: vec![1, 2, 3],
                    class,
                    size: None,
                }
                .to_bytes(),
            )
            .unwrap();
    }
    writer.commit().unwrap();

    let output = shardfeed(&[
        "inspect".as_ref(),
        "--compression".as_ref(),
        "zlib".as_ref(),
        dir.path().as_os_str(),
    ]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("  classes      0: 1, 1: 2\n")
            && stdout.contains("  index        matches\n"),
        "{stdout}"
    );

    let output = shardfeed(&["inspect".as_ref(), path.as_os_str()]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("hint         the file starts like zlib data: try --compression zlib"),
        "{stdout}"
    );

    std::fs::write(dir.path().join("data00-3.tfrec.idx"), "0 20\n").unwrap();
    let output = shardfeed(&[
        "inspect".as_ref(),
        "--compression=zlib".as_ref(),
        path.as_os_str(),
    ]);
    assert!(
        text(&output.stdout).contains("index        STALE: "),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn a_missing_path_is_one_clear_line() {
    let output = shardfeed(&["inspect".as_ref(), "no/such/file.tfrec".as_ref()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("shardfeed: error: cannot read no/such/file.tfrec: "),
        "{stderr}"
    );

    let empty = tempfile::tempdir().unwrap();
    let output = shardfeed(&["inspect".as_ref(), empty.path().as_os_str()]);
    assert_eq!(
        text(&output.stderr).trim(),
        format!(
            "shardfeed: error: no .tfrec files in {}",
            empty.path().display()
        )
    );
}
