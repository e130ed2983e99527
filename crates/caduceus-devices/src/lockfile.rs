//! Lock files as component lists, so that `devices scan` can check a build's dependencies the
//! way `cargo audit` does: `Cargo.lock` (every `[[package]]` from a registry becomes a
//! `pkg:cargo/<name>@<version>` component; path and git dependencies are kept without a purl,
//! as they are not published crates).

use serde::Deserialize;

use crate::model::{Component, Relationship, Sbom, SbomFormat};
use crate::{DevicesError, Result, check_size};

/// Largest lock file accepted.
pub const MAX_LOCKFILE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Deserialize)]
struct CargoLock {
    #[serde(default)]
    version: Option<u32>,
    #[serde(default)]
    package: Vec<Package>,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    version: String,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    checksum: Option<String>,
    #[serde(default)]
    dependencies: Vec<String>,
}

/// Does this look like a Cargo.lock (TOML with `[[package]]` tables)?
pub fn is_cargo_lock(bytes: &[u8]) -> bool {
    let head = bytes.get(..bytes.len().min(4096)).unwrap_or_default();
    let text = String::from_utf8_lossy(head);
    text.contains("[[package]]") && !text.trim_start().starts_with('{')
}

/// Read a Cargo.lock into an [`Sbom`] of kind CycloneDX-equivalent components.
pub fn parse_cargo_lock(bytes: &[u8]) -> Result<Sbom> {
    check_size("Cargo.lock", bytes, MAX_LOCKFILE_BYTES)?;
    let text = std::str::from_utf8(bytes)
        .map_err(|_| DevicesError::Parse { format: "Cargo.lock", reason: "not UTF-8".into() })?;
    let lock: CargoLock = toml::from_str(text)
        .map_err(|e| DevicesError::Parse { format: "Cargo.lock", reason: e.message().chars().take(200).collect() })?;
    let mut components = Vec::with_capacity(lock.package.len());
    let mut relationships = Vec::new();
    let id = |name: &str, version: &str| format!("{name}@{version}");
    // A dependency is written `name` when only one version is locked, else `name version`.
    let mut versions: std::collections::HashMap<&str, Vec<&str>> = std::collections::HashMap::new();
    for p in &lock.package {
        versions.entry(p.name.as_str()).or_default().push(p.version.as_str());
    }
    for p in &lock.package {
        let registry = p.source.as_deref().is_some_and(|s| s.starts_with("registry+") || s.starts_with("sparse+"));
        components.push(Component {
            id: id(&p.name, &p.version),
            name: p.name.clone(),
            version: Some(p.version.clone()),
            supplier: None,
            purl: registry.then(|| format!("pkg:cargo/{}@{}", p.name, p.version)),
            cpe: None,
            hashes: p.checksum.iter().map(|c| format!("sha256:{}", c.to_ascii_lowercase())).collect(),
            kind: Some("library".into()),
        });
        for dependency in &p.dependencies {
            let mut parts = dependency.split_whitespace();
            let Some(name) = parts.next() else { continue };
            let version = match parts.next() {
                Some(v) => v,
                None => match versions.get(name).map(Vec::as_slice) {
                    Some([only]) => only,
                    _ => continue,
                },
            };
            relationships.push(Relationship {
                from: id(&p.name, &p.version),
                to: id(name, version),
                kind: "depends_on".into(),
            });
        }
    }
    Ok(Sbom {
        format: SbomFormat::CycloneDx,
        spec_version: format!("cargo-lock-v{}", lock.version.unwrap_or(1)),
        serial: None,
        root: None,
        name: Some("Cargo.lock".into()),
        authors: Vec::new(),
        timestamp: None,
        components,
        relationships,
        vex: Vec::new(),
    })
}

/// Fuzz entry point: read a Cargo.lock; the result is dropped.
pub fn fuzz_lockfile(data: &[u8]) {
    let _ = parse_cargo_lock(data);
}
