//! Integrity of downloaded CSAF documents: the `.sha512` (and `.sha256`) hash files and
//! OpenPGP detached signatures (`.asc`) a CSAF provider publishes beside each document.

use std::io::Cursor;

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::types::KeyDetails;
use sha2::{Digest, Sha256, Sha512};

use crate::{DevicesError, Result, check_size};

/// Largest hash, signature or key file accepted.
const MAX_SIDE_FILE_BYTES: usize = 1024 * 1024;

/// Who signed a document, as the signature names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureInfo {
    /// Fingerprint (hex, uppercase) of the key that verified the signature.
    pub fingerprint: String,
    /// Issuer as the signature states it (`issuer_fingerprint` or key id), hex uppercase.
    pub issuer: String,
    /// Signature creation time, seconds since the epoch.
    pub created: Option<u32>,
}

fn sig_err(msg: impl Into<String>) -> DevicesError {
    DevicesError::Signature(msg.into())
}

/// The hex digest in a hash file: `<hex>  <filename>`, `<hex> *<filename>` or bare hex.
fn digest_from_file(file: &[u8], hex_len: usize) -> Result<Vec<u8>> {
    check_size("hash file", file, MAX_SIDE_FILE_BYTES)?;
    let text = std::str::from_utf8(file).map_err(|_| sig_err("hash file is not UTF-8"))?;
    let token = text.split_whitespace().next().ok_or_else(|| sig_err("hash file is empty"))?;
    if token.len() != hex_len {
        return Err(sig_err(format!("hash file holds {} hex digits, expected {hex_len}", token.len())));
    }
    hex::decode(token).map_err(|_| sig_err("hash file digest is not hex"))
}

/// Check a document against its `.sha512` file.
pub fn verify_sha512(document: &[u8], sha512_file: &[u8]) -> Result<()> {
    let want = digest_from_file(sha512_file, 128)?;
    let got = Sha512::digest(document);
    if got.iter().eq(want.iter()) { Ok(()) } else { Err(sig_err("SHA-512 digest does not match the document")) }
}

/// Check a document against its `.sha256` file.
pub fn verify_sha256(document: &[u8], sha256_file: &[u8]) -> Result<()> {
    let want = digest_from_file(sha256_file, 64)?;
    let got = Sha256::digest(document);
    if got.iter().eq(want.iter()) { Ok(()) } else { Err(sig_err("SHA-256 digest does not match the document")) }
}

fn read_signature(asc: &[u8]) -> Result<DetachedSignature> {
    check_size("signature", asc, MAX_SIDE_FILE_BYTES)?;
    let parsed = if asc.trim_ascii_start().starts_with(b"-----BEGIN") {
        DetachedSignature::from_armor_single(Cursor::new(asc)).map(|(s, _)| s)
    } else {
        DetachedSignature::from_bytes(Cursor::new(asc))
    };
    parsed.map_err(|e| sig_err(format!("unreadable OpenPGP signature: {}", short(&e.to_string()))))
}

fn short(s: &str) -> String {
    s.chars().take(120).collect()
}

fn issuer_of(sig: &DetachedSignature) -> Option<String> {
    let s = &sig.signature;
    if let Some(fp) = s.issuer_fingerprint().first() {
        return Some(format!("{fp:X}"));
    }
    s.issuer_key_id().first().map(|id| hex::encode_upper(id.as_ref()))
}

/// The issuer a detached signature names (fingerprint if given, else the key id), so a
/// caller without the public key can report "signed by <issuer>, no public key given".
pub fn signature_issuer(asc: &[u8]) -> Result<String> {
    let sig = read_signature(asc)?;
    issuer_of(&sig).ok_or_else(|| sig_err("signature names no issuer"))
}

/// Verify a detached OpenPGP signature over `document` with any key (primary or subkey) in
/// the armored `keyring`.
pub fn verify_openpgp(document: &[u8], asc: &[u8], keyring: &[u8]) -> Result<SignatureInfo> {
    check_size("keyring", keyring, 16 * MAX_SIDE_FILE_BYTES)?;
    let sig = read_signature(asc)?;
    let issuer = issuer_of(&sig).unwrap_or_default();
    let created = sig.signature.created().map(|t| t.as_secs());
    let (keys, _) = SignedPublicKey::from_armor_many(Cursor::new(keyring))
        .map_err(|e| sig_err(format!("unreadable keyring: {}", short(&e.to_string()))))?;
    let mut any_key = false;
    for key in keys.take(1000) {
        let Ok(key) = key else { continue };
        any_key = true;
        if sig.verify(&key, document).is_ok() {
            return Ok(SignatureInfo { fingerprint: format!("{:X}", key.fingerprint()), issuer, created });
        }
        for sub in &key.public_subkeys {
            if sig.verify(sub, document).is_ok() {
                return Ok(SignatureInfo { fingerprint: format!("{:X}", sub.fingerprint()), issuer, created });
            }
        }
    }
    if !any_key {
        return Err(sig_err("keyring holds no public key"));
    }
    Err(sig_err(format!("signature by {issuer} does not verify with the given keys")))
}
