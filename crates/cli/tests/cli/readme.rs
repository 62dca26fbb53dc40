//! README.md's commands run as shown. Every `$ shardfeed …` line of its ```` ```text ```` blocks
//! runs, in document order, in one sandbox folder (with the repository's `fixtures/` linked in),
//! unless the line before the block is `<!-- not run: REASON -->`. A command whose shown output
//! has a line starting `shardfeed: error:`, or whose line ends in a comment saying
//! `# exits 1…`, must fail; any other must succeed. Every shown
//! output line without digits (counts and timings vary) must appear in the real output, so
//! the README cannot drift from what the program prints. Run against a `--features cuda`
//! binary (`SHARDFEED_BIN`), a `--device cuda` example must fail naming what is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One `$ shardfeed …` line and the output the README shows under it.
#[derive(Debug)]
struct Example {
    line: usize,
    args: Vec<String>,
    shown: Vec<String>,
    /// The line says it fails (`# exits 1…`).
    fails: bool,
}

fn readme() -> (PathBuf, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("README.md")).unwrap();
    (root, text)
}

/// The runnable examples of `text`, in order.
fn examples(text: &str) -> Vec<Example> {
    let mut examples: Vec<Example> = Vec::new();
    let mut in_block = false;
    let mut run_block = false;
    let mut skip_next_block = false;
    for (number, line) in text.lines().enumerate() {
        if !in_block {
            if line.starts_with("<!-- not run:") {
                skip_next_block = true;
            } else if line.starts_with("```") {
                in_block = true;
                run_block = line == "```text" && !skip_next_block;
                skip_next_block = false;
            } else if !line.trim().is_empty() {
                skip_next_block = false;
            }
            continue;
        }
        if line.starts_with("```") {
            in_block = false;
            continue;
        }
        if !run_block {
            continue;
        }
        if let Some(command) = line.strip_prefix("$ ") {
            let (command, comment) = command.split_once(" # ").unwrap_or((command, ""));
            assert!(
                !command.contains(['"', '\'', '|', '>', '<', '*', '$']),
                "README line {}: keep runnable commands free of shell syntax: {command}",
                number + 1
            );
            let args: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
            assert_eq!(
                args[0],
                "shardfeed",
                "README line {}: a runnable block runs only shardfeed",
                number + 1
            );
            examples.push(Example {
                line: number + 1,
                args: args[1..].to_vec(),
                shown: Vec::new(),
                fails: comment.starts_with("exits 1"),
            });
        } else if let Some(example) = examples.last_mut() {
            example.shown.push(line.to_owned());
        }
    }
    examples
}

/// Whether a shown line must appear verbatim: no digits, not an ellipsis.
fn checkable(line: &str) -> bool {
    let line = line.trim();
    !line.is_empty()
        && !line.contains(['…'])
        && !line.contains("...")
        && !line.bytes().any(|b| b.is_ascii_digit())
}

#[test]
fn every_readme_command_runs_and_prints_what_the_readme_shows() {
    let (root, text) = readme();
    let examples = examples(&text);
    let subcommands: Vec<&str> = examples.iter().map(|e| e.args[0].as_str()).collect();
    for needed in [
        "gen-data", "shard", "inspect", "stream", "train", "evaluate", "predict", "plot",
    ] {
        assert!(
            subcommands.contains(&needed),
            "the README shows no runnable `shardfeed {needed}`"
        );
    }
    let cuda_build = crate::common::is_cuda_build();
    let sandbox = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(root.join("fixtures"), sandbox.path().join("fixtures")).unwrap();
    for example in &examples {
        let output = Command::new(crate::common::shardfeed_bin())
            .args(&example.args)
            .current_dir(sandbox.path())
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let must_fail = example.fails
            || example
                .shown
                .iter()
                .any(|l| l.starts_with("shardfeed: error:"));
        assert_eq!(
            !output.status.success(),
            must_fail,
            "README line {}: `shardfeed {}` exited with {} (the README shows {}):\n{printed}",
            example.line,
            example.args.join(" "),
            output.status,
            if must_fail { "an error" } else { "success" },
        );
        // The README shows `--device cuda` as the default (CPU) build answers it; the
        // `--features cuda` binary on this GPU-less machine names the missing driver instead.
        if cuda_build && example.args.iter().any(|a| a == "cuda") {
            assert!(
                printed.contains("shardfeed: error: CUDA is unavailable"),
                "README line {}: {printed}",
                example.line
            );
            continue;
        }
        for shown in example.shown.iter().filter(|l| checkable(l)) {
            assert!(
                printed.contains(shown.trim()),
                "README line {}: `shardfeed {}` did not print {shown:?}; it printed:\n{printed}",
                example.line,
                example.args.join(" "),
            );
        }
    }
}

#[test]
fn the_parser_finds_commands_outputs_and_skips() {
    let text = "\
intro
```text
$ shardfeed shard DATA/train --out shards
sharded 4 images
no digits here
```
<!-- not run: a long run -->
```text
$ shardfeed train shards --epochs 10
```
```sh
cargo xtask demo
```
```text
$ shardfeed evaluate --model runs/x
shardfeed: error: no run
$ shardfeed inspect a b # exits 1: b is damaged
```
";
    let found = examples(text);
    assert_eq!(found.len(), 3);
    assert_eq!(found[2].args, ["inspect", "a", "b"]);
    assert!(found[2].fails && !found[1].fails);
    assert_eq!(found[0].args, ["shard", "DATA/train", "--out", "shards"]);
    assert_eq!(found[0].shown, ["sharded 4 images", "no digits here"]);
    assert_eq!(found[0].line, 3);
    assert_eq!(found[1].args[0], "evaluate");
    assert!(!checkable("sharded 4 images") && checkable("no digits here"));
    assert!(!checkable("  ...") && !checkable("…"));
}
