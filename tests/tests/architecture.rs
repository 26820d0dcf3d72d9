//! The layering ARCHITECTURE.md describes, checked against the code: each
//! crate depends only on the crates below it, nothing below `kiln-host`
//! pulls in wasmtime, no library pulls in clap, and no library prints.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // This machine's platform only: offline, the other platforms'
    // dependencies (which a build never downloads) are not there to read.
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("-vV")
        .output()
        .expect("rustc -vV runs");
    let host = String::from_utf8_lossy(&version.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("rustc -vV names the host");
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(workspace())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Package name by package id, and each package's normal (not dev, not
/// build) dependencies by id.
fn graph(meta: &Value) -> (BTreeMap<String, String>, BTreeMap<String, Vec<String>>) {
    let names = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                p["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let deps = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let normal = n["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|k| k["kind"].is_null())
                })
                .map(|d| d["pkg"].as_str().unwrap().to_string())
                .collect();
            (n["id"].as_str().unwrap().to_string(), normal)
        })
        .collect();
    (names, deps)
}

fn id_of<'a>(names: &'a BTreeMap<String, String>, name: &str) -> &'a str {
    names
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(id, _)| id.as_str())
        .unwrap_or_else(|| panic!("no package {name}"))
}

/// Every package `name` depends on, directly or not, in normal builds.
fn closure(
    names: &BTreeMap<String, String>,
    deps: &BTreeMap<String, Vec<String>>,
    name: &str,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![id_of(names, name).to_string()];
    while let Some(id) = todo.pop() {
        for d in deps.get(&id).into_iter().flatten() {
            if seen.insert(names[d].clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

#[test]
fn each_crate_depends_only_on_the_crates_below_it() {
    let meta = metadata();
    let (names, deps) = graph(&meta);
    let allowed: &[(&str, &[&str])] = &[
        ("kiln-fs", &[]),
        ("kiln-stage", &[]),
        ("kiln-exec", &["kiln-fs", "kiln-confine"]),
        ("kiln-jobs", &["kiln-fs", "kiln-container"]),
        (
            "kiln-host",
            &[
                "kiln-fs",
                "kiln-exec",
                "kiln-jobs",
                "kiln-stage",
                "kiln-container",
                "kiln-confine",
            ],
        ),
        (
            "kiln-sqlite-store",
            &["kiln-fs", "kiln-jobs", "kiln-container"],
        ),
        (
            "kiln-serve",
            &[
                "kiln-host",
                "kiln-sqlite-store",
                "kiln-container",
                "kiln-fs",
                "kiln-exec",
                "kiln-jobs",
                "kiln-stage",
                "kiln-confine",
            ],
        ),
        (
            "kiln-cli",
            &[
                "kiln-serve",
                "kiln-sqlite-store",
                "kiln-host",
                "kiln-container",
                "kiln-ccp4-programs",
                "kiln-fs",
                "kiln-exec",
                "kiln-jobs",
                "kiln-stage",
                "kiln-confine",
            ],
        ),
    ];
    for (name, below) in allowed {
        let kiln: BTreeSet<String> = closure(&names, &deps, name)
            .into_iter()
            .filter(|d| d.starts_with("kiln-"))
            .collect();
        let extra: Vec<&String> = kiln
            .iter()
            .filter(|d| !below.contains(&d.as_str()))
            .collect();
        assert!(extra.is_empty(), "{name} depends on {extra:?}");
    }
    for name in [
        "kiln-fs",
        "kiln-stage",
        "kiln-exec",
        "kiln-jobs",
        "kiln-sqlite-store",
    ] {
        let all = closure(&names, &deps, name);
        assert!(
            !all.iter().any(|d| d.starts_with("wasmtime")),
            "{name} depends on wasmtime"
        );
    }
    for name in [
        "kiln-fs",
        "kiln-stage",
        "kiln-exec",
        "kiln-jobs",
        "kiln-host",
        "kiln-sqlite-store",
        "kiln-serve",
    ] {
        let all = closure(&names, &deps, name);
        assert!(!all.contains("clap"), "{name} depends on clap");
    }
}

#[test]
fn no_library_prints() {
    // Libraries return errors and emit events or tracing records; only
    // binaries (and tests) print.
    let libraries = [
        "fs/src",
        "exec/src",
        "jobs/src",
        "stage/src",
        "host/src",
        "sqlite-store/src",
        "serve/src",
        "ccp4/container/src",
        "confine/src",
    ];
    // The confinement helper's own binary.
    let binaries = [Path::new("confine/src/main.rs")];
    let mut found = Vec::new();
    for dir in libraries {
        let mut todo = vec![workspace().join(dir)];
        while let Some(d) = todo.pop() {
            for entry in std::fs::read_dir(&d).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    todo.push(path);
                    continue;
                }
                let rel = path.strip_prefix(workspace()).unwrap().to_path_buf();
                if path.extension().is_none_or(|e| e != "rs") || binaries.contains(&rel.as_path()) {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                // Test modules come last in each file.
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                for (n, line) in code.lines().enumerate() {
                    let line = line.trim_start();
                    if line.starts_with("//") {
                        continue;
                    }
                    if ["println!(", "eprintln!(", "print!(", "eprint!("]
                        .iter()
                        .any(|m| line.contains(m))
                    {
                        found.push(format!("{}:{}: {line}", rel.display(), n + 1));
                    }
                }
            }
        }
    }
    assert!(found.is_empty(), "libraries print:\n{}", found.join("\n"));
}
