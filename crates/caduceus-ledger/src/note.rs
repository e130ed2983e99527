//! C2SP signed notes (c2sp.org/signed-note) with Ed25519 signatures
//! (signature type 0x01), and verifier keys (`name+keyid+base64key`).
//!
//! Parsing is size-capped and strict: valid UTF-8, no control characters but
//! newline, a blank line before the signature lines, well-formed signature
//! lines. Verification follows the spec: signatures from unknown keys are
//! ignored, a known key's bad signature rejects the note, and at least one
//! known key must have signed.
//!
//! The key ID, signature-line and verifier-key helpers are shared with the
//! other signature types built on notes (`cosignature`: type 0x04).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

/// Largest note accepted, signatures included.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// Most signature lines accepted (the spec requires at least 16).
pub const MAX_SIGNATURES: usize = 64;

const ED25519: u8 = 0x01;
const SIGNATURE_PREFIX: &str = "\u{2014} ";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("note is larger than {MAX_NOTE_BYTES} bytes")]
    TooLarge,
    #[error("note is malformed: {0}")]
    Malformed(&'static str),
    #[error("verifier key is malformed: {0}")]
    BadKey(&'static str),
    #[error("signature by `{0}` does not verify")]
    BadSignature(String),
    #[error("no signature from a known key")]
    NoKnownSignature,
}

/// One signature line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: u32,
    /// The signature bytes after the key ID.
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The signature line, `— <name> base64(key ID || signature)`, ending
    /// in a newline.
    pub fn line(&self) -> String {
        let mut bytes = self.key_id.to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.signature);
        format!("{SIGNATURE_PREFIX}{} {}\n", self.name, B64.encode(bytes))
    }

    /// Parse one signature line, without its final newline.
    pub fn parse_line(line: &str) -> Result<Self, NoteError> {
        let rest = line.strip_prefix(SIGNATURE_PREFIX).ok_or(NoteError::Malformed("bad signature line"))?;
        let (name, encoded) = rest.split_once(' ').ok_or(NoteError::Malformed("bad signature line"))?;
        check_name(name).map_err(|_| NoteError::Malformed("bad key name"))?;
        let raw = B64.decode(encoded).map_err(|_| NoteError::Malformed("signature is not base64"))?;
        let (id, signature) = raw.split_first_chunk::<4>().ok_or(NoteError::Malformed("signature too short"))?;
        Ok(Self { name: name.to_owned(), key_id: u32::from_be_bytes(*id), signature: signature.to_vec() })
    }
}

/// A note: its text (ending in a newline) and its signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    pub text: String,
    pub signatures: Vec<NoteSignature>,
}

impl SignedNote {
    /// Parse a signed note without verifying it.
    pub fn parse(bytes: &[u8]) -> Result<Self, NoteError> {
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge);
        }
        let all = std::str::from_utf8(bytes).map_err(|_| NoteError::Malformed("not UTF-8"))?;
        if all.chars().any(|c| c < ' ' && c != '\n') {
            return Err(NoteError::Malformed("control character"));
        }
        // The text is separated from the signatures by the last blank line.
        let split = all.rfind("\n\n").ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let text = all.get(..=split).ok_or(NoteError::Malformed("no text"))?;
        let block = all.get(split + 2..).ok_or(NoteError::Malformed("no signatures"))?;
        if !block.ends_with('\n') {
            return Err(NoteError::Malformed("signature block does not end in a newline"));
        }
        let mut signatures = Vec::new();
        for line in block.lines() {
            if signatures.len() == MAX_SIGNATURES {
                return Err(NoteError::Malformed("too many signatures"));
            }
            signatures.push(NoteSignature::parse_line(line)?);
        }
        if signatures.is_empty() {
            return Err(NoteError::Malformed("no signatures"));
        }
        Ok(Self { text: text.to_owned(), signatures })
    }

    /// The note as text: its text, a blank line, its signature lines.
    pub fn encode(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for signature in &self.signatures {
            out.push_str(&signature.line());
        }
        out
    }

    /// Verify against a set of trusted keys (see the module documentation for
    /// the rules). Returns the names of the keys whose signatures verified.
    pub fn verify(&self, verifiers: &[NoteVerifier]) -> Result<Vec<String>, NoteError> {
        let mut verified = Vec::new();
        for signature in &self.signatures {
            let Some(verifier) = verifiers.iter().find(|v| v.name == signature.name && v.key_id == signature.key_id)
            else {
                continue;
            };
            let ok = Signature::from_slice(&signature.signature)
                .is_ok_and(|s| verifier.key.verify(self.text.as_bytes(), &s).is_ok());
            if !ok {
                return Err(NoteError::BadSignature(signature.name.clone()));
            }
            verified.push(signature.name.clone());
        }
        if verified.is_empty() {
            return Err(NoteError::NoKnownSignature);
        }
        Ok(verified)
    }
}

/// Key names must be non-empty, without Unicode spaces or `+`.
pub(crate) fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(NoteError::BadKey("key name must be non-empty, without spaces or '+'"));
    }
    Ok(())
}

/// The key ID the spec recommends: `SHA-256(name || 0x0A || type || key)[:4]`,
/// for any signature type byte (0x01 here, 0x04 for cosignatures).
pub fn compute_key_id(name: &str, signature_type: u8, public_key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', signature_type]);
    h.update(public_key);
    let digest: [u8; 32] = h.finalize().into();
    let [a, b, c, d, ..] = digest;
    u32::from_be_bytes([a, b, c, d])
}

/// A verifier key, `name+hex(key ID)+base64(type || Ed25519 public key)`.
pub(crate) fn format_vkey(name: &str, key_id: u32, signature_type: u8, key: &VerifyingKey) -> String {
    let mut material = vec![signature_type];
    material.extend_from_slice(key.as_bytes());
    format!("{name}+{key_id:08x}+{}", B64.encode(material))
}

/// Parse an Ed25519 verifier key of the given signature type, checking that
/// the key ID matches the name, type and key. Returns (name, key ID, key).
pub(crate) fn parse_vkey(vkey: &str, signature_type: u8) -> Result<(String, u32, VerifyingKey), NoteError> {
    let mut parts = vkey.trim().splitn(3, '+');
    let (Some(name), Some(id), Some(material)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::BadKey("expected name+keyid+key"));
    };
    check_name(name)?;
    if id.len() != 8 {
        return Err(NoteError::BadKey("key ID must be 8 hex digits"));
    }
    let key_id = u32::from_str_radix(id, 16).map_err(|_| NoteError::BadKey("key ID is not hex"))?;
    let material = B64.decode(material).map_err(|_| NoteError::BadKey("key is not base64"))?;
    let Some((&found, public)) = material.split_first() else {
        return Err(NoteError::BadKey("empty key"));
    };
    if found != signature_type {
        return Err(NoteError::BadKey("wrong signature type for this kind of key"));
    }
    let public: &[u8; 32] = public.try_into().map_err(|_| NoteError::BadKey("Ed25519 key is not 32 bytes"))?;
    if compute_key_id(name, signature_type, public) != key_id {
        return Err(NoteError::BadKey("key ID does not match the key"));
    }
    let key = VerifyingKey::from_bytes(public).map_err(|_| NoteError::BadKey("not a valid Ed25519 key"))?;
    Ok((name.to_owned(), key_id, key))
}

/// A key that can sign notes.
pub struct NoteSigner {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner").field("name", &self.name).finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A signer from a 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        check_name(name)?;
        let key = SigningKey::from_bytes(seed);
        let key_id = compute_key_id(name, ED25519, key.verifying_key().as_bytes());
        Ok(Self { name: name.to_owned(), key_id, key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key, `name+keyid+base64(0x01 || public key)`.
    pub fn verifier_key(&self) -> String {
        format_vkey(&self.name, self.key_id, ED25519, &self.key.verifying_key())
    }

    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier { name: self.name.clone(), key_id: self.key_id, key: self.key.verifying_key() }
    }

    /// Sign a note text (which must end in a newline).
    pub fn sign(&self, text: &str) -> Result<SignedNote, NoteError> {
        if !text.ends_with('\n') {
            return Err(NoteError::Malformed("note text must end in a newline"));
        }
        let signature = self.key.sign(text.as_bytes());
        Ok(SignedNote {
            text: text.to_owned(),
            signatures: vec![NoteSignature {
                name: self.name.clone(),
                key_id: self.key_id,
                signature: signature.to_bytes().to_vec(),
            }],
        })
    }
}

/// A trusted Ed25519 note key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    pub name: String,
    pub key_id: u32,
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Parse a verifier key, `name+keyid+base64(0x01 || public key)`,
    /// checking that the key ID matches the name and key.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let (name, key_id, key) = parse_vkey(vkey, ED25519)?;
        Ok(Self { name, key_id, key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of c2sp.org/signed-note.
    const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    const SPEC_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

    #[test]
    fn the_spec_example_verifies() {
        let verifier = NoteVerifier::parse(SPEC_VKEY).unwrap();
        assert_eq!(verifier.key_id, 0x530d903a);
        let note = SignedNote::parse(SPEC_NOTE.as_bytes()).unwrap();
        assert_eq!(note.text, "This is an example message.\n");
        assert_eq!(note.verify(&[verifier]).unwrap(), vec!["example.com/foo".to_owned()]);
        assert_eq!(note.encode(), SPEC_NOTE);
    }

    #[test]
    fn a_changed_byte_is_caught() {
        let verifier = NoteVerifier::parse(SPEC_VKEY).unwrap();
        let tampered = SPEC_NOTE.replace("example message", "exemplary message");
        let note = SignedNote::parse(tampered.as_bytes()).unwrap();
        assert_eq!(note.verify(&[verifier]), Err(NoteError::BadSignature("example.com/foo".into())));
    }

    #[test]
    fn sign_and_verify_round_trip_and_unknown_keys_are_ignored() {
        let ours = NoteSigner::from_seed("caduceus.example/ledger", &[7; 32]).unwrap();
        let theirs = NoteSigner::from_seed("partner.example/witness", &[9; 32]).unwrap();
        let mut note = ours.sign("caduceus.example/ledger\n3\nAAAA\n").unwrap();
        note.signatures.extend(theirs.sign(&note.text).unwrap().signatures);
        let parsed = SignedNote::parse(note.encode().as_bytes()).unwrap();
        assert_eq!(parsed, note);
        // Only our key is trusted: the partner's signature is ignored.
        let verifier = NoteVerifier::parse(&ours.verifier_key()).unwrap();
        assert_eq!(parsed.verify(&[verifier]).unwrap(), vec!["caduceus.example/ledger".to_owned()]);
        // Trusting only an unrelated key: no known signature.
        let stranger = NoteSigner::from_seed("someone.example", &[1; 32]).unwrap();
        assert_eq!(parsed.verify(&[stranger.verifier()]), Err(NoteError::NoKnownSignature));
    }

    #[test]
    fn malformed_notes_and_keys_are_refused() {
        for bad in [
            "no blank line\n\u{2014} a AAAA\n",
            "text\n\n",
            "text\n\nnot a signature line\n",
            "text\n\n\u{2014} a !!!\n",
            "text\n\n\u{2014} a AAA=\n",
            "te\u{7}xt\n\n\u{2014} a AAAAAA==\n",
            "text\n\n\u{2014} a AAAAAA==",
        ] {
            assert!(SignedNote::parse(bad.as_bytes()).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(SignedNote::parse(&vec![b'a'; MAX_NOTE_BYTES + 1]), Err(NoteError::TooLarge));
        for bad in [
            "example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
            "example.com/foo+530d903a",
            "example.com/foo+530d903a+AgkyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
            "exa mple+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        ] {
            assert!(NoteVerifier::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
