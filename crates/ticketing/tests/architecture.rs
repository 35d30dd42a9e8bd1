//! The crate graph is the architecture (ARCHITECTURE.md, "Workspace layout"):
//! the foundation crates are layered (`common` → `messaging` → `platform`),
//! a service crate depends on the foundation crates only and never on another
//! service, `testkit` is only ever a dev-dependency, only `ticketing` sees
//! them all; the tooling (`tools`: bench, check) sits beside the product,
//! may use the foundation and a service's own code, and nothing depends on
//! it. Every third-party dependency takes its version from the root
//! manifest.

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
    /// Workspace crates it depends on for building (normal and build
    /// dependencies).
    deps: BTreeSet<String>,
    /// Workspace crates it depends on for its tests only.
    dev_deps: BTreeSet<String>,
}

fn members() -> Vec<Member> {
    let metadata = metadata();
    let packages = metadata["packages"].as_array().expect("packages");
    let names: BTreeSet<String> =
        packages.iter().map(|p| p["name"].as_str().expect("name").to_owned()).collect();
    let workspace_deps = |package: &Value, dev: bool| -> BTreeSet<String> {
        package["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .filter(|d| (d["kind"].as_str() == Some("dev")) == dev)
            .map(|d| d["name"].as_str().expect("name").to_owned())
            .filter(|d| names.contains(d))
            .collect()
    };
    packages
        .iter()
        .map(|p| Member {
            name: p["name"].as_str().expect("name").to_owned(),
            manifest: PathBuf::from(p["manifest_path"].as_str().expect("manifest")),
            deps: workspace_deps(p, false),
            dev_deps: workspace_deps(p, true),
        })
        .collect()
}

const FOUNDATION: [&str; 3] = ["common", "messaging", "platform"];
const SERVICES: [&str; 6] =
    ["auth", "tickets", "orders", "payments", "expiration", "notifications"];

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// The workspace crates each crate may depend on (outside its tests).
fn allowed(name: &str) -> Option<BTreeSet<String>> {
    Some(match name {
        "common" => set(&[]),
        "messaging" => set(&["common"]),
        "platform" => set(&["common", "messaging"]),
        "testkit" => set(&FOUNDATION),
        "web" => set(&["common"]),
        "ticketing" => return None,
        "tools" => FOUNDATION.iter().chain(&SERVICES).map(|n| (*n).to_owned()).collect(),
        service if SERVICES.contains(&service) => set(&FOUNDATION),
        other => panic!("{other} is a new crate: give it a place in the layers"),
    })
}

#[test]
fn each_crate_depends_only_on_the_layers_below_it() {
    let members = members();
    assert!(members.iter().any(|m| m.name == "auth"), "the auth service is a member");
    for member in &members {
        let Some(allowed) = allowed(&member.name) else { continue };
        let outside: Vec<&String> = member.deps.difference(&allowed).collect();
        assert!(outside.is_empty(), "{} may not depend on {outside:?}", member.name);
    }
}

#[test]
fn services_never_depend_on_each_other_even_in_tests() {
    for member in members().iter().filter(|m| SERVICES.contains(&m.name.as_str())) {
        let all: BTreeSet<&String> = member.deps.union(&member.dev_deps).collect();
        for other in SERVICES.iter().filter(|s| **s != member.name) {
            assert!(!all.contains(&(*other).to_owned()), "{} depends on {other}", member.name);
        }
        assert!(!all.contains(&"ticketing".to_owned()), "{} depends on the binary", member.name);
    }
}

#[test]
fn nothing_depends_on_the_tooling() {
    let members = members();
    assert!(members.iter().any(|m| m.name == "tools"), "the tooling is a member");
    for member in members {
        let all: BTreeSet<&String> = member.deps.union(&member.dev_deps).collect();
        assert!(!all.contains(&"tools".to_owned()), "{} depends on the tooling", member.name);
    }
}

#[test]
fn test_support_is_only_a_dev_dependency() {
    for member in members() {
        assert!(
            !member.deps.contains("testkit"),
            "{} depends on testkit outside its tests",
            member.name
        );
    }
}

#[test]
fn the_binary_sees_every_service() {
    let members = members();
    let ticketing = members.iter().find(|m| m.name == "ticketing").expect("ticketing");
    for service in SERVICES.iter().chain(&["web"]) {
        assert!(ticketing.deps.contains(*service), "ticketing lacks {service}");
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
