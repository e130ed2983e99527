//! Envelope encryption for patient records: a key-encryption key (KEK) kept
//! in a private file outside the database, per-patient data keys (DEKs)
//! stored only in wrapped (encrypted) form, and the sealed format of the
//! resources themselves. Deleting a patient's wrapped DEK makes every record
//! sealed under it unreadable (crypto-shredding).
//!
//! This module owns key material and byte formats only: it does not store
//! anything but the KEK file, does not know about patients or FHIR, and
//! never logs. Key bytes are zeroized on drop and never appear in `Debug`.
//!
//! Cipher: AES-256-GCM (RustCrypto `aes-gcm` 0.11), chosen over
//! XChaCha20-Poly1305 because it is already in the workspace's dependency
//! graph (one audited AEAD rather than two) and runs on AES-NI on hospital
//! servers. Its 96-bit random nonce is safe up to about 2^32 messages per
//! key; here a key seals one patient's records (DEK) or wraps one DEK per
//! patient (KEK), both far below that bound.
//!
//! Encodings (all versioned with a leading byte so old data stays readable):
//! - KEK file: `caduceus vault kek v1\n<64 hex digits>\n`, mode 0600.
//! - Wrapped DEK: `0x01 | kek_id (8) | nonce (12) | ciphertext+tag (48)`,
//!   the AEAD's associated data binding the version and KEK id.
//! - Sealed resource: `0x01 | nonce (12) | ciphertext | tag (16)`, with the
//!   caller's associated data (see [`resource_aad`]).

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Length of a KEK or DEK in bytes.
pub const KEY_LEN: usize = 32;
/// Length of an AES-GCM nonce in bytes.
pub const NONCE_LEN: usize = 12;
/// Length of an AES-GCM tag in bytes.
pub const TAG_LEN: usize = 16;
/// Length of a KEK id in bytes.
pub const KEK_ID_LEN: usize = 8;
/// Current version byte of [`WrappedKey::to_bytes`].
pub const WRAPPED_KEY_V1: u8 = 1;
/// Current version byte of [`DataKey::seal`].
pub const SEALED_V1: u8 = 1;
/// Length of an encoded v1 wrapped key.
pub const WRAPPED_KEY_LEN: usize = 1 + KEK_ID_LEN + NONCE_LEN + WRAPPED_CT_LEN;
/// Smallest possible sealed resource (empty plaintext).
pub const SEALED_MIN_LEN: usize = 1 + NONCE_LEN + TAG_LEN;

const WRAPPED_CT_LEN: usize = KEY_LEN + TAG_LEN;
const KEK_FILE_HEADER: &str = "caduceus vault kek v1";
/// A well-formed KEK file is exactly this long; anything bigger is not read.
const KEK_FILE_LEN: usize = KEK_FILE_HEADER.len() + 1 + 2 * KEY_LEN + 1;
const WRAP_AAD_DOMAIN: &[u8] = b"caduceus vault dek wrap";
const RESOURCE_AAD_DOMAIN: &[u8] = b"caduceus vault resource";

/// Errors of key handling, wrapping and sealing.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("kek file {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("kek file {path} has mode {mode:o}, which lets others read it; run chmod 600")]
    KeyFilePermissions { path: PathBuf, mode: u32 },
    #[error("kek file {path} is malformed: {problem}")]
    KeyFileMalformed { path: PathBuf, problem: &'static str },
    #[error("the operating system random number generator failed: {0}")]
    Random(String),
    #[error("malformed {what}: {problem}")]
    Malformed { what: &'static str, problem: &'static str },
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion { what: &'static str, version: u8 },
    #[error("the data key was wrapped by kek {found}, not by this kek {expected}")]
    WrongKek { expected: KekId, found: KekId },
    #[error("decryption failed: wrong key, wrong associated data, or tampered bytes")]
    Decrypt,
    #[error("encryption failed: input too long")]
    Encrypt,
}

fn random<const N: usize>() -> Result<Zeroizing<[u8; N]>, KeyError> {
    let mut bytes = Zeroizing::new([0u8; N]);
    getrandom::fill(bytes.as_mut_slice()).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(bytes)
}

fn cipher(key: &[u8; KEY_LEN]) -> Aes256Gcm {
    Aes256Gcm::new(&(*key).into())
}

/// The id of a KEK: the first 8 bytes of SHA-256 of the key. Recorded in
/// every wrapped key so that, during a rotation, it is clear which KEK
/// unwraps it. Displays as 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KekId(pub [u8; KEK_ID_LEN]);

impl fmt::Display for KekId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KekId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KekId({self})")
    }
}

/// The key-encryption key. Lives in a private file, never in the database.
pub struct Kek {
    key: Zeroizing<[u8; KEY_LEN]>,
    id: KekId,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek").field("id", &self.id).field("key", &"**REDACTED**").finish()
    }
}

impl Kek {
    fn from_key(key: Zeroizing<[u8; KEY_LEN]>) -> Self {
        let digest = Sha256::digest(key.as_slice());
        let mut id = [0u8; KEK_ID_LEN];
        for (dst, src) in id.iter_mut().zip(digest.iter()) {
            *dst = *src;
        }
        Self { key, id: KekId(id) }
    }

    /// Load the KEK at `path`, or create it (32 bytes from the OS random
    /// number generator, mode 0600) if the file does not exist. A file that
    /// the group or others can access, or that is not a well-formed KEK
    /// file, is refused.
    ///
    /// Creation is atomic and never overwrites: the key is written and
    /// synced to a temporary file in the same directory, then hard-linked
    /// into place, which fails if another process created the KEK first (a
    /// plain rename would silently replace a KEK that may already wrap data
    /// keys). In that case the other process's KEK is loaded.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        if let Some(kek) = Self::load_if_present(path)? {
            return Ok(kek);
        }
        let kek = Self::from_key(random::<KEY_LEN>()?);
        let io = |e: std::io::Error| KeyError::Io { path: path.to_owned(), message: e.to_string() };
        let suffix = hex::encode(*random::<8>()?);
        let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
        tmp_name.push(format!(".tmp-{suffix}"));
        let tmp = path.with_file_name(tmp_name);
        let text = Zeroizing::new(format!("{KEK_FILE_HEADER}\n{}\n", hex::encode(kek.key.as_slice())));
        let written = (|| {
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::hard_link(&tmp, path)
        })();
        // The temporary name is removed whatever happened; a failure to
        // remove it leaves a private file and is not worth failing for.
        let _ = std::fs::remove_file(&tmp);
        match written {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Self::load(path),

            Err(e) => return Err(io(e)),
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(kek)
    }

    /// Load an existing KEK file, refusing it if anyone but the owner can
    /// access it or it is malformed.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        Self::load_if_present(path)?
            .ok_or_else(|| KeyError::Io { path: path.to_owned(), message: "no such file".to_owned() })
    }

    /// [`Kek::load`], with `None` when the file does not exist.
    fn load_if_present(path: &Path) -> Result<Option<Self>, KeyError> {
        let io = |e: std::io::Error| KeyError::Io { path: path.to_owned(), message: e.to_string() };
        let bad = |problem| KeyError::KeyFileMalformed { path: path.to_owned(), problem };
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        if !meta.is_file() {
            return Err(bad("not a regular file"));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::KeyFilePermissions { path: path.to_owned(), mode });
        }
        if meta.len() > KEK_FILE_LEN as u64 {
            return Err(bad("too long"));
        }
        let bytes = Zeroizing::new(std::fs::read(path).map_err(io)?);
        let text = std::str::from_utf8(&bytes).map_err(|_| bad("not UTF-8"))?;
        let body = text.strip_suffix('\n').ok_or_else(|| bad("truncated"))?;
        let (header, key_hex) = body.split_once('\n').ok_or_else(|| bad("no key line"))?;
        if header != KEK_FILE_HEADER {
            return Err(bad("not a caduceus vault kek v1 file"));
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        hex::decode_to_slice(key_hex, key.as_mut_slice()).map_err(|_| bad("the key is not 64 hex digits"))?;
        Ok(Some(Self::from_key(key)))
    }

    /// This KEK's id.
    pub fn id(&self) -> KekId {
        self.id
    }

    fn wrap_aad(id: KekId) -> Vec<u8> {
        let mut aad = Vec::with_capacity(WRAP_AAD_DOMAIN.len() + 1 + KEK_ID_LEN);
        aad.extend_from_slice(WRAP_AAD_DOMAIN);
        aad.push(WRAPPED_KEY_V1);
        aad.extend_from_slice(&id.0);
        aad
    }

    /// Encrypt a data key under this KEK with a fresh random nonce.
    pub fn wrap(&self, dek: &DataKey) -> Result<WrappedKey, KeyError> {
        let nonce = random::<NONCE_LEN>()?;
        let aad = Self::wrap_aad(self.id);
        let ct = cipher(&self.key)
            .encrypt(&Nonce::from(*nonce), Payload { msg: dek.key.as_slice(), aad: &aad })
            .map_err(|_| KeyError::Encrypt)?;
        let ciphertext = <[u8; WRAPPED_CT_LEN]>::try_from(ct.as_slice()).map_err(|_| KeyError::Encrypt)?;
        Ok(WrappedKey { kek_id: self.id, nonce: *nonce, ciphertext })
    }

    /// Decrypt a data key wrapped by this KEK.
    pub fn unwrap(&self, wrapped: &WrappedKey) -> Result<DataKey, KeyError> {
        if wrapped.kek_id != self.id {
            return Err(KeyError::WrongKek { expected: self.id, found: wrapped.kek_id });
        }
        let aad = Self::wrap_aad(self.id);
        let plain = Zeroizing::new(
            cipher(&self.key)
                .decrypt(&Nonce::from(wrapped.nonce), Payload { msg: &wrapped.ciphertext, aad: &aad })
                .map_err(|_| KeyError::Decrypt)?,
        );
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if plain.len() != KEY_LEN {
            return Err(KeyError::Decrypt);
        }
        key.copy_from_slice(&plain);
        Ok(DataKey { key })
    }

    /// KEK rotation: unwrap with this (old) KEK and wrap again under `new`.
    /// The data sealed under the DEK is untouched.
    pub fn rewrap(&self, new: &Kek, wrapped: &WrappedKey) -> Result<WrappedKey, KeyError> {
        new.wrap(&self.unwrap(wrapped)?)
    }
}

/// A data key encrypted under a KEK: what the database stores per patient.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    kek_id: KekId,
    nonce: [u8; NONCE_LEN],
    ciphertext: [u8; WRAPPED_CT_LEN],
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedKey").field("kek_id", &self.kek_id).finish_non_exhaustive()
    }
}

impl WrappedKey {
    /// The id of the KEK that wrapped this key.
    pub fn kek_id(&self) -> KekId {
        self.kek_id
    }

    /// The v1 encoding: `0x01 | kek_id | nonce | ciphertext+tag`, 69 bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(WRAPPED_KEY_LEN);
        out.push(WRAPPED_KEY_V1);
        out.extend_from_slice(&self.kek_id.0);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Decode [`WrappedKey::to_bytes`]; any other input is an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        const WHAT: &str = "wrapped key";
        let (&version, rest) = bytes.split_first().ok_or(KeyError::Malformed { what: WHAT, problem: "empty" })?;
        if version != WRAPPED_KEY_V1 {
            return Err(KeyError::UnsupportedVersion { what: WHAT, version });
        }
        let wrong = || KeyError::Malformed { what: WHAT, problem: "wrong length" };
        if bytes.len() != WRAPPED_KEY_LEN {
            return Err(wrong());
        }
        let (kek_id, rest) = rest.split_at_checked(KEK_ID_LEN).ok_or_else(wrong)?;
        let (nonce, ciphertext) = rest.split_at_checked(NONCE_LEN).ok_or_else(wrong)?;
        Ok(Self {
            kek_id: KekId(kek_id.try_into().map_err(|_| wrong())?),
            nonce: nonce.try_into().map_err(|_| wrong())?,
            ciphertext: ciphertext.try_into().map_err(|_| wrong())?,
        })
    }
}

/// A per-patient data key. Only ever stored wrapped by a KEK.
pub struct DataKey {
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(**REDACTED**)")
    }
}

impl DataKey {
    /// A fresh key from the OS random number generator (fallible because
    /// that generator can fail, and this crate does not panic).
    pub fn generate() -> Result<Self, KeyError> {
        Ok(Self { key: random::<KEY_LEN>()? })
    }

    /// Encrypt `plaintext` bound to `aad` (use [`resource_aad`] for
    /// resources): `0x01 | nonce | ciphertext | tag`. Fallible only if the
    /// random number generator fails or the input exceeds AES-GCM's limit.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        let nonce = random::<NONCE_LEN>()?;
        let ct = cipher(&self.key)
            .encrypt(&Nonce::from(*nonce), Payload { msg: plaintext, aad })
            .map_err(|_| KeyError::Encrypt)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(SEALED_V1);
        out.extend_from_slice(nonce.as_slice());
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Use this key as the vault's blind-index key: the vault keeps one
    /// random data key, wrapped by the KEK like the others, for its search
    /// terms (random rather than derived from the KEK, so rotating the KEK
    /// re-wraps it and no term has to be recomputed).
    pub fn blind_indexer(&self) -> crate::blind::BlindIndexer {
        crate::blind::BlindIndexer::new(*self.key)
    }

    /// Decrypt the output of [`DataKey::seal`] with the same `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        const WHAT: &str = "sealed data";
        let (&version, rest) = sealed.split_first().ok_or(KeyError::Malformed { what: WHAT, problem: "empty" })?;
        if version != SEALED_V1 {
            return Err(KeyError::UnsupportedVersion { what: WHAT, version });
        }
        let short = || KeyError::Malformed { what: WHAT, problem: "too short" };
        if sealed.len() < SEALED_MIN_LEN {
            return Err(short());
        }
        let (nonce, ct) = rest.split_at_checked(NONCE_LEN).ok_or_else(short)?;
        let nonce = <[u8; NONCE_LEN]>::try_from(nonce).map_err(|_| short())?;
        cipher(&self.key).decrypt(&Nonce::from(nonce), Payload { msg: ct, aad }).map_err(|_| KeyError::Decrypt)
    }
}

/// The associated data binding a sealed resource to its type, id and
/// version, so that a ciphertext cannot be replayed as another resource or
/// another version of the same one. Each string is prefixed by its length
/// as a big-endian u64, so no two triples encode alike.
pub fn resource_aad(resource_type: &str, id: &str, version: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(RESOURCE_AAD_DOMAIN.len() + 1 + 8 + resource_type.len() + 8 + id.len() + 8);
    aad.extend_from_slice(RESOURCE_AAD_DOMAIN);
    aad.push(1);
    for part in [resource_type, id] {
        aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn resource_aad_is_unambiguous() {
        assert_ne!(resource_aad("ab", "c", 1), resource_aad("a", "bc", 1));
        assert_ne!(resource_aad("Patient", "1", 1), resource_aad("Patient", "1", 2));
    }

    #[test]
    fn debug_never_prints_key_bytes() {
        let dek = DataKey::generate().unwrap();
        let shown = format!("{dek:?}");
        assert!(!shown.contains(&hex::encode(dek.key.as_slice())));
        assert!(shown.contains("REDACTED"));
        let kek = Kek::from_key(random::<KEY_LEN>().unwrap());
        let shown = format!("{kek:?}");
        assert!(!shown.contains(&hex::encode(kek.key.as_slice())));
        assert!(!shown.contains(&format!("{:?}", kek.key.as_slice())));
    }

    #[test]
    fn encodings_have_the_documented_sizes() {
        let kek = Kek::from_key(random::<KEY_LEN>().unwrap());
        let dek = DataKey::generate().unwrap();
        assert_eq!(kek.wrap(&dek).unwrap().to_bytes().len(), 69);
        assert_eq!(dek.seal(b"", b"").unwrap().len(), SEALED_MIN_LEN);
    }
}
