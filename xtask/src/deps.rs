//! The architecture's dependency rules, checked from `cargo metadata` (part of `cargo xtask
//! tidy`): burn only below `shardfeed-model` (and in what links it), argument parsing and
//! `anyhow`/`indicatif` only in the binary and xtask, and `shardfeed-dataset` free of all of
//! them. A rule broken by a new dependency, direct or transitive, fails CI. What counts is
//! what a program links: normal dependencies, not dev or build ones, and not what a proc
//! macro uses inside the compiler.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use anyhow::Context;
use serde_json::Value;

/// (a package that must stay out of the normal dependency tree, the workspace packages that
/// may have it there, the packages that must only not depend on it *directly*: burn's own
/// tree has anyhow in it, which `shardfeed-model` cannot help but link).
const RULES: &[(&str, &[&str], &[&str])] = &[
    ("burn", &["shardfeed-model", "shardfeed"], &[]),
    ("clap", &["shardfeed", "xtask"], &["shardfeed-model"]),
    ("anyhow", &["shardfeed", "xtask"], &["shardfeed-model"]),
    ("indicatif", &["shardfeed", "xtask"], &["shardfeed-model"]),
];

/// The rule violations of the workspace at `root`.
pub fn check(root: &Path) -> anyhow::Result<Vec<String>> {
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(root)
        .output()
        .context("cannot run cargo metadata")?;
    if !output.status.success() {
        anyhow::bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: Value =
        serde_json::from_slice(&output.stdout).context("cargo metadata's JSON")?;
    // `cargo metadata` resolves one set of features for the whole graph (an optional
    // dependency one package enables shows up under every package using the same crate:
    // `image` with burn-vision's formats under `shardfeed-image-prep`); `cargo tree` resolves
    // each package as it is built. A problem stands when `cargo tree` confirms it.
    let mut confirmed = Vec::new();
    for problem in problems(&metadata) {
        let (member, forbidden) = problem_parts(&problem);
        if links(root, member, forbidden)? {
            confirmed.push(problem);
        }
    }
    Ok(confirmed)
}

/// The member and the forbidden package a problem line names.
fn problem_parts(problem: &str) -> (&str, &str) {
    let mut words = problem.split_whitespace();
    let member = words.next().unwrap_or_default();
    let forbidden = words.nth(2).unwrap_or_default();
    (member, forbidden)
}

/// Whether `member`, built with its default features for this machine, links `package`:
/// in `cargo tree -p MEMBER -e normal,no-proc-macro` (what a proc macro uses runs in the
/// compiler and is not linked).
fn links(root: &Path, member: &str, package: &str) -> anyhow::Result<bool> {
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["tree", "--locked", "--quiet", "--prefix", "none"])
        .args(["-e", "normal,no-proc-macro", "-p"])
        .arg(member)
        .current_dir(root)
        .output()
        .context("cannot run cargo tree")?;
    if !output.status.success() {
        anyhow::bail!(
            "cargo tree -p {member} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .any(|line| line.split_whitespace().next() == Some(package)))
}

/// The rule violations in `cargo metadata` output: for each workspace package, the names in
/// its normal (not dev, not build) dependency closure.
pub fn problems(metadata: &Value) -> Vec<String> {
    let names: BTreeMap<&str, &str> = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["id"].as_str()?, p["name"].as_str()?)))
        .collect();
    // Proc macros run in the compiler: what they depend on is never linked into a program
    // (prost-derive uses anyhow), so the walk does not enter them.
    let proc_macros: BTreeSet<&str> = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            p["targets"].as_array().into_iter().flatten().any(|t| {
                t["kind"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|k| k == "proc-macro")
            })
        })
        .filter_map(|p| p["id"].as_str())
        .collect();
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for node in metadata["resolve"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(id) = node["id"].as_str() else {
            continue;
        };
        let normal = node["deps"].as_array().into_iter().flatten().filter(|dep| {
            dep["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|kind| kind["kind"].is_null())
        });
        edges.insert(id, normal.filter_map(|dep| dep["pkg"].as_str()).collect());
    }
    let mut problems = Vec::new();
    for member in metadata["workspace_members"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(member) = member.as_str() else {
            continue;
        };
        let member_name = names.get(member).copied().unwrap_or(member);
        // Which package pulled each dependency in, for the message.
        let mut via: BTreeMap<&str, &str> = BTreeMap::new();
        let mut seen = BTreeSet::from([member]);
        let mut stack = vec![member];
        while let Some(id) = stack.pop() {
            for &dep in edges.get(id).into_iter().flatten() {
                if !proc_macros.contains(dep) && seen.insert(dep) {
                    via.insert(dep, id);
                    stack.push(dep);
                }
            }
        }
        for &(forbidden, allowed, direct_only) in RULES {
            if allowed.contains(&member_name) {
                continue;
            }
            let direct = direct_only.contains(&member_name);
            if let Some((&dep, _)) = via.iter().find(|(id, parent)| {
                names.get(*id) == Some(&forbidden) && (!direct || **parent == member)
            }) {
                let mut chain = vec![forbidden];
                let mut at = dep;
                while let Some(&parent) = via.get(at) {
                    chain.push(names.get(parent).copied().unwrap_or(parent));
                    at = parent;
                }
                chain.reverse();
                problems.push(format!(
                    "{member_name} depends on {forbidden} ({}), which only {} may",
                    chain.join(" → "),
                    allowed.join(" and ")
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {

    #[test]
    fn cargo_tree_confirms_what_a_package_links_as_it_is_built() {
        let root = crate::util::root();
        assert!(links(&root, "shardfeed", "clap").unwrap());
        assert!(!links(&root, "shardfeed-dataset", "burn").unwrap());
        // image's optional AVIF encoder (anyhow inside) is not built for image-prep.
        assert!(!links(&root, "shardfeed-image-prep", "anyhow").unwrap());
        assert_eq!(
            problem_parts("shardfeed-dataset depends on burn (a → b), which only x may"),
            ("shardfeed-dataset", "burn")
        );
    }
    use super::*;

    /// A `cargo metadata` document: packages by name, normal edges, and dev edges.
    fn metadata(members: &[&str], normal: &[(&str, &str)], dev: &[(&str, &str)]) -> Value {
        let mut packages = BTreeSet::new();
        for (a, b) in normal.iter().chain(dev) {
            packages.insert(*a);
            packages.insert(*b);
        }
        packages.extend(members);
        let node = |p: &str| {
            let deps: Vec<Value> = normal
                .iter()
                .map(|e| (e, Value::Null))
                .chain(dev.iter().map(|e| (e, Value::from("dev"))))
                .filter(|((a, _), _)| *a == p)
                .map(|((_, b), kind)| serde_json::json!({"pkg": b, "dep_kinds": [{"kind": kind}]}))
                .collect();
            serde_json::json!({"id": p, "deps": deps})
        };
        serde_json::json!({
            "packages": packages.iter().map(|p| serde_json::json!({"id": p, "name": p})).collect::<Vec<_>>(),
            "resolve": {"nodes": packages.iter().map(|p| node(p)).collect::<Vec<_>>()},
            "workspace_members": members,
        })
    }

    #[test]
    fn a_forbidden_dependency_is_found_however_deep_and_dev_ones_are_not() {
        let members = ["shardfeed-dataset", "shardfeed-model", "shardfeed"];
        let clean = metadata(
            &members,
            &[
                ("shardfeed", "shardfeed-model"),
                ("shardfeed", "anyhow"),
                ("shardfeed-model", "burn"),
                ("shardfeed", "shardfeed-dataset"),
            ],
            &[("shardfeed-dataset", "anyhow")],
        );
        assert_eq!(problems(&clean), Vec::<String>::new());
        let dirty = metadata(
            &members,
            &[
                ("shardfeed-dataset", "helper"),
                ("helper", "burn"),
                ("shardfeed-model", "clap"),
            ],
            &[],
        );
        assert_eq!(
            problems(&dirty),
            [
                "shardfeed-dataset depends on burn (shardfeed-dataset → helper → burn), which only shardfeed-model and shardfeed may",
                "shardfeed-model depends on clap (shardfeed-model → clap), which only shardfeed and xtask may",
            ]
        );
    }

    #[test]
    fn the_workspace_keeps_its_dependency_rules() {
        let problems = check(&crate::util::root()).unwrap();
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}
