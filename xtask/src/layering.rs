//! Checks of the code's shape, part of `cargo xtask tidy`: no import circle between the
//! modules of a crate, object-storage dispatch (`is_remote`) only inside `dataset::folder`,
//! no process-global cache of stores or sizes, and no source file over 600 lines outside its
//! tests.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Lines a source file may have before its `#[cfg(test)]` part.
pub const MAX_LINES: usize = 600;

/// Every problem of this kind in the workspace at `root`.
pub fn check(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut problems = on_the_map(root)?;
    let mut src_dirs: Vec<_> = fs::read_dir(root.join("crates"))?
        .filter_map(|e| e.ok().map(|e| e.path().join("src")))
        .filter(|p| p.is_dir())
        .collect();
    src_dirs.push(root.join("xtask/src"));
    src_dirs.sort();
    for src in &src_dirs {
        let files = rust_files(src)?;
        let mut sources = BTreeMap::new();
        for file in &files {
            let text = fs::read_to_string(file)?;
            let code = code_part(&text);
            let shown = file
                .strip_prefix(root)
                .unwrap_or(file)
                .display()
                .to_string();
            let lines = code.lines().count();
            if lines > MAX_LINES {
                problems.push(format!(
                    "{shown}: {lines} lines before its tests (more than {MAX_LINES}): split it by concern"
                ));
            }
            let in_folder =
                shown.starts_with("crates/dataset/src/folder/") || shown.starts_with("xtask/");
            if !in_folder
                && code
                    .lines()
                    .any(|l| !is_comment(l) && l.contains("is_remote("))
            {
                problems.push(format!(
                    "{shown}: calls is_remote; whether a path is local or in object storage is dataset::folder's to say"
                ));
            }
            for line in code
                .lines()
                .filter(|l| l.trim_start().starts_with("static "))
            {
                if ["HashMap", "BTreeMap", "Store"]
                    .iter()
                    .any(|t| line.contains(t))
                {
                    problems.push(format!(
                        "{shown}: a process-global cache ({}); keep it in the value that uses it",
                        line.trim()
                    ));
                }
            }
            sources.insert(module_of(src, file), code.to_owned());
        }
        let aliases = root_exports(sources.get("").map_or("", String::as_str));
        let graph = imports(&sources, &aliases);
        if let Some(circle) = find_circle(&graph) {
            problems.push(format!(
                "{}: the modules import each other in a circle: {}",
                src.strip_prefix(root).unwrap_or(src).display(),
                circle.join(" → ")
            ));
        }
    }
    Ok(problems)
}

/// Every Rust file of the crates and xtask (sources, tests, benches) on the code map of
/// `docs/ARCHITECTURE.md`: named there, or its folder (`tests/cli/`) is.
fn on_the_map(root: &Path) -> anyhow::Result<Vec<String>> {
    let map = fs::read_to_string(root.join("docs/ARCHITECTURE.md"))?;
    let mut problems = Vec::new();
    let mut dirs: Vec<_> = fs::read_dir(root.join("crates"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.push(root.join("xtask"));
    dirs.sort();
    for dir in dirs {
        for sub in ["src", "tests", "benches"] {
            let sub = dir.join(sub);
            if !sub.is_dir() {
                continue;
            }
            for file in rust_files(&sub)? {
                let name = file.file_name().unwrap_or_default().to_string_lossy();
                let folder = file
                    .parent()
                    .and_then(|p| p.file_name())
                    .map(|n| format!("{}/", n.to_string_lossy()))
                    .unwrap_or_default();
                let named = map.contains(name.as_ref())
                    || (!["src/", "tests/", "benches/"].contains(&folder.as_str())
                        && map.contains(&folder));
                if !named && name != "lib.rs" && name != "main.rs" && name != "mod.rs" {
                    problems.push(format!(
                        "{} is not on the code map in docs/ARCHITECTURE.md",
                        file.strip_prefix(root).unwrap_or(&file).display()
                    ));
                }
            }
        }
    }
    Ok(problems)
}

/// A file's text before its `#[cfg(test)]` module.
fn code_part(text: &str) -> &str {
    match text.find("\n#[cfg(test)]") {
        Some(end) => &text[..end],
        None => text,
    }
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with("//")
}

/// The top-level module a file belongs to (`""` for the crate root).
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap_or(file);
    let first = relative
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => String::new(),
        Some(name) => name.to_owned(),
        None => first,
    }
}

/// What the crate root re-exports, by name: `pub use module::{A, b}` → `A` and `b` are
/// `module`'s.
fn root_exports(root: &str) -> BTreeMap<String, String> {
    let mut exports = BTreeMap::new();
    let text: String = root
        .lines()
        .filter(|l| !is_comment(l))
        .collect::<Vec<_>>()
        .join(" ");
    for statement in text.split(';') {
        let Some(rest) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, items)) = rest.split_once("::") else {
            continue;
        };
        let items = items.trim().trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',') {
            let name = item.trim().rsplit("::").next().unwrap_or_default().trim();
            if !name.is_empty() {
                exports.insert(name.to_owned(), module.trim().to_owned());
            }
        }
    }
    exports
}

/// Module → the modules its code names through `crate::`.
fn imports(
    sources: &BTreeMap<String, String>,
    exports: &BTreeMap<String, String>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, code) in sources.iter().filter(|(m, _)| !m.is_empty()) {
        let targets = graph.entry(module.clone()).or_default();
        for line in code.lines().filter(|l| !is_comment(l)) {
            for (at, _) in line.match_indices("crate::") {
                let rest = &line[at + "crate::".len()..];
                let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                    group
                        .split('}')
                        .next()
                        .unwrap_or_default()
                        .split(',')
                        .map(str::trim)
                        .collect()
                } else {
                    vec![rest]
                };
                for name in names {
                    let ident: String = name
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    let target = exports.get(&ident).cloned().unwrap_or(ident);
                    if sources.contains_key(&target) && target != *module && !target.is_empty() {
                        targets.insert(target);
                    }
                }
            }
        }
    }
    graph
}

/// A circle in `graph`, as the modules along it (the first repeated at the end).
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut circle = path[start..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

fn rust_files(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(rust_files(&path)?);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_circle_through_a_root_export_is_found_and_a_line_is_not() {
        let sources: BTreeMap<String, String> = [
            (
                "",
                "pub use error::{Error, Result};\npub use folder::remote;\n",
            ),
            ("error", "pub enum Error { A(crate::loader::Damaged) }\n"),
            ("loader", "use crate::{Error, Result};\n// crate::workers\n"),
            ("workers", "use crate::remote::Store;\n"),
            ("folder", "fn f() {}\n"),
        ]
        .into_iter()
        .map(|(m, c)| (m.to_owned(), c.to_owned()))
        .collect();
        let exports = root_exports(&sources[""]);
        let graph = imports(&sources, &exports);
        assert_eq!(graph["workers"], BTreeSet::from(["folder".to_owned()]));
        assert_eq!(
            find_circle(&graph),
            Some(vec!["error".into(), "loader".into(), "error".into()])
        );
        let mut acyclic = sources.clone();
        acyclic.insert("error".into(), "pub enum Error {}\n".into());
        assert_eq!(find_circle(&imports(&acyclic, &exports)), None);
    }
}
