//! The layers of `src/` (`docs/architecture.md`): every `crate::` path a module names must be
//! of its own layer or one below it. A module that imports from one above it fails this test,
//! naming the file, the line and the two layers.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layers, bottom first; modules on one line are side by side and may not import each
/// other. `error` is the crate's error (`crate::Error`), which wraps the errors of the layers
/// below it: log, domain, state, store, replay and verify each have an error of their own.
const LAYERS: &[&[&str]] = &[
    &["log"],
    &["domain"],
    &["state"],
    &["store"],
    &["replay"],
    &["verify"],
    &["error"],
    &["ledger"],
    &["export", "report"],
    &["outbox"],
    &["cli"],
];

fn rank_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The module each name that `lib.rs` re-exports at the crate root comes from
/// (`pub use ledger::{Ledger, ..}` maps `Ledger` to `ledger`).
fn root_exports(lib: &str) -> BTreeMap<String, String> {
    let mut exports = BTreeMap::new();
    for statement in lib.split(';') {
        let Some(path) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let module = path.split("::").next().unwrap().trim().to_string();
        let names = match (path.find('{'), path.rfind('}')) {
            (Some(open), Some(close)) => path[open + 1..close].to_string(),
            _ => path.rsplit("::").next().unwrap().to_string(),
        };
        for name in names.split(',') {
            let name = name.trim();
            if !name.is_empty() {
                exports.insert(name.to_string(), module.clone());
            }
        }
    }
    exports
}

/// The first segment of every `crate::` path on a line, braces of a `use crate::{..}` included.
fn crate_paths(line: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                if let Some(first) = item.trim().split("::").next().filter(|s| !s.is_empty()) {
                    names.push(first.to_string());
                }
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        names.push(name);
    }
    names
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

/// Every upward import in `src/`, as "file:line: module (layer) imports target (layer)".
fn upward_imports(src: &Path) -> Vec<String> {
    let exports = root_exports(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let relative = file.strip_prefix(src).unwrap();
        let top = relative.components().next().unwrap().as_os_str();
        let module = top.to_str().unwrap().trim_end_matches(".rs");
        if module == "lib" || module == "main" {
            continue;
        }
        let rank = rank_of(module)
            .unwrap_or_else(|| panic!("{module} (src/{top:?}) is in no layer: add it to LAYERS"));
        let text = std::fs::read_to_string(&file).unwrap();
        for (number, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for name in crate_paths(line) {
                let target = exports.get(&name).cloned().unwrap_or(name.clone());
                let target = if target == "Error" {
                    "error".to_string()
                } else {
                    target
                };
                let Some(target_rank) = rank_of(&target) else {
                    continue;
                };
                if target != module && target_rank >= rank {
                    found.push(format!(
                        "src/{}:{}: {module} (layer {rank}) imports {target} (layer {target_rank})",
                        relative.display(),
                        number + 1
                    ));
                }
            }
        }
    }
    found
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let upward = upward_imports(&src);
    assert!(upward.is_empty(), "upward imports:\n{}", upward.join("\n"));
}

#[test]
fn the_check_sees_an_upward_import_in_every_form_a_module_writes_one() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::write(
        src.join("lib.rs"),
        "pub use ledger::{Ledger, LedgerError};\n",
    )
    .unwrap();
    std::fs::create_dir(src.join("state")).unwrap();
    std::fs::write(
        src.join("state/apply.rs"),
        "use crate::ledger::entry::Body;\n\
         use crate::{log::Hash, replay::Replay};\n\
         fn f() -> crate::Ledger { todo!() }\n\
         // crate::cli in a comment is not an import\n\
         use crate::Error;\n",
    )
    .unwrap();
    std::fs::write(src.join("log.rs"), "use crate::log::format;\n").unwrap();
    let upward = upward_imports(src);
    let lines: Vec<&str> = upward.iter().map(|line| line.as_str()).collect();
    assert_eq!(
        lines,
        [
            "src/state/apply.rs:1: state (layer 2) imports ledger (layer 7)",
            "src/state/apply.rs:2: state (layer 2) imports replay (layer 4)",
            "src/state/apply.rs:3: state (layer 2) imports ledger (layer 7)",
            "src/state/apply.rs:5: state (layer 2) imports error (layer 6)",
        ]
    );
}
