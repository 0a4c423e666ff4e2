//! The workspace's declared `rust-version` is true: every crate inherits it,
//! and it is not older than any resolved dependency's own `rust-version`.

use serde_json::Value;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn version(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

fn workspace_rust_version() -> String {
    let text = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let line = text.lines().find(|l| l.starts_with("rust-version")).expect("workspace declares rust-version");
    line.split('"').nth(1).unwrap().to_string()
}

#[test]
fn every_crate_inherits_the_workspace_rust_version() {
    let mut missing = Vec::new();
    for e in std::fs::read_dir(root().join("crates")).unwrap() {
        let manifest = e.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else { continue };
        if !text.lines().any(|l| l.trim() == "rust-version.workspace = true") {
            missing.push(manifest.display().to_string());
        }
    }
    assert!(missing.is_empty(), "add `rust-version.workspace = true` under [package] of: {missing:?}");
}

#[test]
fn rust_version_is_not_older_than_any_dependency_needs() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--locked"])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let resolved: std::collections::HashSet<&str> =
        meta["resolve"]["nodes"].as_array().unwrap().iter().filter_map(|n| n["id"].as_str()).collect();
    let declared = workspace_rust_version();
    let mut newer = Vec::new();
    for p in meta["packages"].as_array().unwrap() {
        let (Some(id), Some(rv)) = (p["id"].as_str(), p["rust_version"].as_str()) else { continue };
        if resolved.contains(id) && version(rv) > version(&declared) {
            newer.push(format!("{} {} needs {rv}", p["name"].as_str().unwrap_or("?"), p["version"]));
        }
    }
    assert!(newer.is_empty(), "workspace rust-version {declared} is older than: {newer:?}");
}
