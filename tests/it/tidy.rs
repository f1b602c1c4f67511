//! Tidy checks, as ordinary tests: the layering the code map promises, a header on every source
//! file, and a repository that stands on its own (no pointer to a document it does not contain).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    if dir.is_file() {
        out.push(dir.to_path_buf());
        return;
    }
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn sources(under: &str) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    files(&root().join(under), &mut out);
    out.into_iter().filter(|p| p.extension().is_some_and(|e| e == "rs")).map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap())).collect()
}

/// `(layer, paths it must never use)`: core → nothing; protocol → core; service and tools →
/// protocol and core, never each other; the configuration (which service and tools both read)
/// uses neither.
const ARROWS: &[(&str, &[&str])] = &[
    ("src/core", &["crate::service", "crate::tools", "crate::protocol", "crate::config", "crate::cli"]),
    ("src/protocol", &["crate::service", "crate::tools", "crate::config", "crate::cli"]),
    ("src/service", &["crate::tools", "crate::cli"]),
    ("src/tools", &["crate::service"]),
    ("src/config.rs", &["crate::service", "crate::tools", "crate::cli"]),
];

#[test]
fn layers_only_use_the_layers_below_them() {
    let mut problems = Vec::new();
    for (layer, forbidden) in ARROWS {
        for (path, text) in sources(layer) {
            for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for target in *forbidden {
                    if line.contains(target) {
                        problems.push(format!("{}: {}", path.strip_prefix(root()).unwrap().display(), line.trim()));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "imports against the arrows of ARCHITECTURE.md:\n{}", problems.join("\n"));
}

#[test]
fn every_source_file_says_what_it_owns() {
    let missing: Vec<String> =
        sources("src").into_iter().filter(|(_, text)| !text.starts_with("//!")).map(|(p, _)| p.strip_prefix(root()).unwrap().display().to_string()).collect();
    assert!(missing.is_empty(), "files without a `//!` header: {missing:?}");
}

#[test]
fn the_repository_points_at_no_document_it_lacks() {
    let mut checked = Vec::new();
    for dir in ["src", "config", "packaging", "systemd", "docs", "benches", "tests"] {
        files(&root().join(dir), &mut checked);
    }
    checked.extend(["README.md", "ARCHITECTURE.md", "Cargo.toml"].map(|f| root().join(f)));
    let mut problems = Vec::new();
    for path in checked {
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        for (n, line) in text.lines().enumerate() {
            // Spelt in pieces, so that this file does not find itself.
            if [concat!("../", "shared"), concat!("DESIGN", ".md"), concat!("DESIGN", " §")].iter().any(|outside| line.contains(outside)) {
                problems.push(format!("{}:{}: {}", path.strip_prefix(root()).unwrap().display(), n + 1, line.trim()));
            }
        }
    }
    assert!(problems.is_empty(), "references to documents outside the repository:\n{}", problems.join("\n"));
}
