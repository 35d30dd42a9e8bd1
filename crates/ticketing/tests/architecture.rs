//! The crate graph is the architecture (ARCHITECTURE.md, "Workspace layout"):
//! a service crate depends on `common` and on no other crate of the
//! workspace; `common` depends on none; only `ticketing` sees them all. Every
//! third-party dependency takes its version from the root manifest.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

struct Member {
    name: String,
    manifest: PathBuf,
    /// Names of the workspace crates it depends on (any kind of dependency).
    workspace_deps: BTreeSet<String>,
}

fn members() -> Vec<Member> {
    let metadata = metadata();
    let packages = metadata["packages"].as_array().expect("packages");
    let names: BTreeSet<String> =
        packages.iter().map(|p| p["name"].as_str().expect("name").to_owned()).collect();
    packages
        .iter()
        .map(|p| Member {
            name: p["name"].as_str().expect("name").to_owned(),
            manifest: PathBuf::from(p["manifest_path"].as_str().expect("manifest")),
            workspace_deps: p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .map(|d| d["name"].as_str().expect("name").to_owned())
                .filter(|d| names.contains(d))
                .collect(),
        })
        .collect()
}

#[test]
fn service_crates_depend_on_common_only() {
    let members = members();
    assert!(members.iter().any(|m| m.name == "auth"), "the auth service is a member");
    for member in &members {
        let expected: BTreeSet<String> = match member.name.as_str() {
            "ticketing" => continue,
            "common" => BTreeSet::new(),
            _ => BTreeSet::from(["common".to_owned()]),
        };
        assert_eq!(
            member.workspace_deps, expected,
            "{} may depend on {expected:?} of the workspace only",
            member.name
        );
    }
}

#[test]
fn the_binary_sees_every_service() {
    let members = members();
    let ticketing = members.iter().find(|m| m.name == "ticketing").expect("ticketing");
    for member in members.iter().filter(|m| m.name != "ticketing") {
        assert!(ticketing.workspace_deps.contains(&member.name), "ticketing lacks {}", member.name);
    }
}

#[test]
fn every_dependency_takes_its_version_from_the_workspace() {
    for member in members() {
        let manifest = std::fs::read_to_string(&member.manifest).expect("manifest");
        let mut in_dependencies = false;
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                in_dependencies = line.ends_with("dependencies]");
                continue;
            }
            if in_dependencies && !line.is_empty() && !line.starts_with('#') {
                assert!(
                    line.contains("workspace = true") || line.contains(".workspace = true"),
                    "{}: `{line}` must use `workspace = true`",
                    member.manifest.display()
                );
            }
        }
    }
}
