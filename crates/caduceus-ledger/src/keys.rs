//! Signing keys kept in the ledger directory: the log's checkpoint key and
//! the witness's cosigning key. Generated at first start, written once with
//! mode 0600, and refused if anyone but the owner can read them.
//!
//! The file holds `caduceus <kind> key v1`, the key's name, and the base64
//! Ed25519 seed, one per line. The name is part of the key (it is signed
//! into every note), so a configured name that differs from the stored one
//! is an error: a new name means a new log, not a rename.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;

use crate::log::LedgerError;

/// A key's name and Ed25519 seed.
pub struct KeyMaterial {
    pub name: String,
    pub seed: [u8; 32],
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMaterial").field("name", &self.name).finish_non_exhaustive()
    }
}

fn bad(path: &Path, problem: &str) -> LedgerError {
    LedgerError::Corrupt(format!("key file {}: {problem}", path.display()))
}

/// Load the key at `path`, or create it with `name` (or `default_name()`
/// when no name is configured).
pub fn load_or_create(
    path: &Path,
    kind: &str,
    name: Option<&str>,
    default_name: impl FnOnce() -> String,
) -> Result<KeyMaterial, LedgerError> {
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(bad(path, &format!("mode {mode:o} lets others read it; run chmod 600")));
            }
            let key = read(path, kind)?;
            if let Some(name) = name
                && name != key.name
            {
                return Err(LedgerError::Invalid(format!(
                    "the {kind} key in {} is named `{}` but the configuration says `{name}`; \
                     a new name needs a new key (and is a new log)",
                    path.display(),
                    key.name
                )));
            }
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            rand::rng().fill_bytes(&mut seed);
            let key = KeyMaterial { name: name.map_or_else(default_name, str::to_owned), seed };
            let text = format!("caduceus {kind} key v1\n{}\n{}\n", key.name, B64.encode(key.seed));
            let io = |e: std::io::Error| LedgerError::Io { path: path.display().to_string(), message: e.to_string() };
            let mut file =
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
            file.write_all(text.as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
            }
            Ok(key)
        }
        Err(e) => Err(LedgerError::Io { path: path.display().to_string(), message: e.to_string() }),
    }
}

/// Read an existing key file.
pub fn read(path: &Path, kind: &str) -> Result<KeyMaterial, LedgerError> {
    let bytes = std::fs::read(path)
        .map_err(|e| LedgerError::Io { path: path.display().to_string(), message: e.to_string() })?;
    if bytes.len() > 1024 {
        return Err(bad(path, "too large"));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| bad(path, "not UTF-8"))?;
    let mut lines = text.strip_suffix('\n').ok_or_else(|| bad(path, "truncated"))?.split('\n');
    if lines.next() != Some(&format!("caduceus {kind} key v1")) {
        return Err(bad(path, &format!("not a {kind} key")));
    }
    let name = lines.next().filter(|n| !n.is_empty()).ok_or_else(|| bad(path, "no name"))?.to_owned();
    let seed = lines
        .next()
        .and_then(|s| B64.decode(s).ok())
        .and_then(|s| <[u8; 32]>::try_from(s).ok())
        .ok_or_else(|| bad(path, "the seed is not 32 base64 bytes"))?;
    if lines.next().is_some() {
        return Err(bad(path, "trailing data"));
    }
    Ok(KeyMaterial { name, seed })
}

/// A short random suffix for default names.
pub fn random_suffix() -> String {
    let mut bytes = [0u8; 4];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.key");
        let created = load_or_create(&path, "log", None, || "caduceus.invalid/ledger-x".into()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let again = load_or_create(&path, "log", Some("caduceus.invalid/ledger-x"), || unreachable!()).unwrap();
        assert_eq!((again.name, again.seed), (created.name, created.seed));
        assert!(matches!(load_or_create(&path, "log", Some("other"), String::new), Err(LedgerError::Invalid(_))));
        assert!(read(&path, "witness").is_err(), "kinds are not interchangeable");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_or_create(&path, "log", None, String::new).is_err(), "a readable key is refused");
    }
}
