//! C2SP tlog-cosignature (c2sp.org/tlog-cosignature), the Ed25519 type
//! (signature type 0x04): a cosigner's timestamped statement that a
//! checkpoint is the largest consistent tree head it has seen for its log.
//!
//! - "Format": the key ID, `SHA-256(name || "\n" || 0x04 || key)[:4]`, the
//!   vkey `name+keyid+base64(0x04 || key)`, and the signature line's bytes,
//!   `key ID || timestamp (u64, big-endian) || Ed25519 signature`;
//! - "Ed25519 signed message": `cosignature/v1\ntime <t>\n` followed by the
//!   whole checkpoint text ([`signed_message`]);
//! - checking cosignatures against a witness policy ([`verify_cosigned`]).
//!
//! Cosignatures are note signature lines ([`NoteSignature`]), so a cosigned
//! checkpoint is an ordinary [`SignedNote`]: the log's key verifies it through
//! [`SignedNote::verify`] (which ignores the cosignatures, whose key IDs are
//! of another type) and cosigner keys check the cosignatures here.
//!
//! This module only signs and checks; it decides nothing about consistency
//! (that is the witness's job, in `witness`). ML-DSA-44 cosignatures (type
//! 0x06) are not implemented.

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};

use crate::note::{
    NoteError, NoteSignature, NoteVerifier, SignedNote, check_name, compute_key_id, format_vkey, parse_vkey,
};

/// The signature type byte of Ed25519 cosignatures (signed-note, "Signature types").
pub const COSIGNATURE_V1: u8 = 0x04;
/// The largest timestamp a cosignature may carry: 2^63 - 1.
pub const MAX_TIMESTAMP: u64 = (1 << 63) - 1;
/// The bytes after the key ID: the `timestamped_signature` structure.
const TIMESTAMPED_SIGNATURE_LEN: usize = 8 + 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignatureError {
    #[error("cosigner key: {0}")]
    Key(NoteError),
    #[error("checkpoint text must end in a newline")]
    TextWithoutNewline,
    #[error("cosignature timestamp {0} is beyond 2^63 - 1")]
    TimestampOutOfRange(u64),
    #[error("cosignature by `{0}` is not a timestamped Ed25519 signature")]
    Malformed(String),
    #[error("cosignature by `{0}` does not verify")]
    BadSignature(String),
    #[error("no cosignature by `{0}`")]
    Missing(String),
    #[error("log signature: {0}")]
    LogSignature(NoteError),
    #[error("{verified} verified cosignatures, {required} required")]
    Quorum { verified: usize, required: usize },
}

/// The message an Ed25519 cosignature signs: `cosignature/v1`, `time <t>`,
/// then the checkpoint text (which ends in a newline).
pub fn signed_message(checkpoint_text: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{checkpoint_text}")
}

/// The timestamp of an Ed25519 cosignature, read without verifying it.
/// Refuses signatures of the wrong length (e.g. a log's type 0x01 signature)
/// and timestamps beyond 2^63 - 1.
pub fn timestamp(signature: &NoteSignature) -> Result<u64, CosignatureError> {
    split_timestamped(signature).map(|(timestamp, _)| timestamp)
}

fn split_timestamped(signature: &NoteSignature) -> Result<(u64, Signature), CosignatureError> {
    let malformed = || CosignatureError::Malformed(signature.name.clone());
    if signature.signature.len() != TIMESTAMPED_SIGNATURE_LEN {
        return Err(malformed());
    }
    let (timestamp, ed25519) = signature.signature.split_first_chunk::<8>().ok_or_else(malformed)?;
    let timestamp = u64::from_be_bytes(*timestamp);
    if timestamp > MAX_TIMESTAMP {
        return Err(CosignatureError::TimestampOutOfRange(timestamp));
    }
    let ed25519 = Signature::from_slice(ed25519).map_err(|_| malformed())?;
    Ok((timestamp, ed25519))
}

/// A cosigner's key: signs checkpoints with timestamped Ed25519 cosignatures.
pub struct CosignatureSigner {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for CosignatureSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CosignatureSigner").field("name", &self.name).finish_non_exhaustive()
    }
}

impl CosignatureSigner {
    /// A cosigner from a 32-byte Ed25519 seed. The spec forbids using one
    /// Ed25519 key for two cosigner names (the message does not commit to
    /// the name): give each cosigner its own seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, CosignatureError> {
        check_name(name).map_err(CosignatureError::Key)?;
        let key = SigningKey::from_bytes(seed);
        let key_id = compute_key_id(name, COSIGNATURE_V1, key.verifying_key().as_bytes());
        Ok(Self { name: name.to_owned(), key_id, key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key, `name+keyid+base64(0x04 || public key)`.
    pub fn verifier_key(&self) -> String {
        format_vkey(&self.name, self.key_id, COSIGNATURE_V1, &self.key.verifying_key())
    }

    pub fn verifier(&self) -> CosignatureVerifier {
        CosignatureVerifier { name: self.name.clone(), key_id: self.key_id, key: self.key.verifying_key() }
    }

    /// Cosign a checkpoint text (the note text, ending in a newline) at
    /// `timestamp` (POSIX seconds). The result is a note signature line to
    /// add to the checkpoint.
    pub fn cosign(&self, checkpoint_text: &str, timestamp: u64) -> Result<NoteSignature, CosignatureError> {
        if !checkpoint_text.ends_with('\n') {
            return Err(CosignatureError::TextWithoutNewline);
        }
        if timestamp > MAX_TIMESTAMP {
            return Err(CosignatureError::TimestampOutOfRange(timestamp));
        }
        let ed25519 = self.key.sign(signed_message(checkpoint_text, timestamp).as_bytes());
        let mut signature = timestamp.to_be_bytes().to_vec();
        signature.extend_from_slice(&ed25519.to_bytes());
        Ok(NoteSignature { name: self.name.clone(), key_id: self.key_id, signature })
    }
}

/// A trusted cosigner (a witness), from its vkey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignatureVerifier {
    pub name: String,
    pub key_id: u32,
    key: VerifyingKey,
}

impl CosignatureVerifier {
    /// Parse a cosigner vkey, `name+keyid+base64(0x04 || public key)`,
    /// checking that the key ID matches. Plain note keys (type 0x01) are
    /// refused: a cosigner is configured as one.
    pub fn parse(vkey: &str) -> Result<Self, CosignatureError> {
        let (name, key_id, key) = parse_vkey(vkey, COSIGNATURE_V1).map_err(CosignatureError::Key)?;
        Ok(Self { name, key_id, key })
    }

    /// Whether a signature line claims to be from this key (name and key
    /// ID both match); lines that don't are ignored, as the spec requires.
    pub fn is_signer_of(&self, signature: &NoteSignature) -> bool {
        signature.name == self.name && signature.key_id == self.key_id
    }

    /// Verify this cosigner's signature line on a checkpoint text and
    /// return its timestamp. The line must be this key's ([`Self::is_signer_of`]).
    pub fn verify_signature(&self, checkpoint_text: &str, signature: &NoteSignature) -> Result<u64, CosignatureError> {
        if !self.is_signer_of(signature) {
            return Err(CosignatureError::Missing(self.name.clone()));
        }
        let (timestamp, ed25519) = split_timestamped(signature)?;
        self.key
            .verify(signed_message(checkpoint_text, timestamp).as_bytes(), &ed25519)
            .map_err(|_| CosignatureError::BadSignature(self.name.clone()))?;
        Ok(timestamp)
    }

    /// Verify this cosigner's cosignature on a note and return its timestamp
    /// (the latest, should the note carry several). A line with this key's
    /// name and ID that fails to verify rejects the note.
    pub fn verify(&self, note: &SignedNote) -> Result<u64, CosignatureError> {
        verify_cosignatures(note, std::slice::from_ref(self))?
            .iter()
            .map(|c| c.timestamp)
            .max()
            .ok_or_else(|| CosignatureError::Missing(self.name.clone()))
    }
}

/// A cosignature that verified: the signature line and its timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCosignature {
    pub signature: NoteSignature,
    pub timestamp: u64,
}

/// The cosignatures on `note` from the trusted `cosigners`, one per cosigner
/// (the latest if a cosigner signed twice), in the order of `cosigners`.
/// Lines from other keys are ignored; a line whose name and key ID match a
/// trusted cosigner but which fails to verify rejects the note (signed-note:
/// "clients SHOULD reject the whole note"). No cosignature at all is not an
/// error here: a policy decides how many it needs ([`verify_cosigned`]).
pub fn verify_cosignatures(
    note: &SignedNote,
    cosigners: &[CosignatureVerifier],
) -> Result<Vec<VerifiedCosignature>, CosignatureError> {
    let mut verified = Vec::new();
    for cosigner in cosigners {
        let mut latest: Option<VerifiedCosignature> = None;
        for signature in note.signatures.iter().filter(|s| cosigner.is_signer_of(s)) {
            let timestamp = cosigner.verify_signature(&note.text, signature)?;
            if latest.as_ref().is_none_or(|l| timestamp > l.timestamp) {
                latest = Some(VerifiedCosignature { signature: signature.clone(), timestamp });
            }
        }
        verified.extend(latest);
    }
    Ok(verified)
}

/// Check a cosigned checkpoint against a witness policy: it must verify
/// against the log's keys (`SignedNote::verify`), and at least `quorum` of
/// the trusted `witnesses` must have cosigned it. Returns the verified
/// cosignatures.
pub fn verify_cosigned(
    note: &SignedNote,
    log_keys: &[NoteVerifier],
    witnesses: &[CosignatureVerifier],
    quorum: usize,
) -> Result<Vec<VerifiedCosignature>, CosignatureError> {
    note.verify(log_keys).map_err(CosignatureError::LogSignature)?;
    let verified = verify_cosignatures(note, witnesses)?;
    if verified.len() < quorum {
        return Err(CosignatureError::Quorum { verified: verified.len(), required: quorum });
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;
    use crate::note::NoteSigner;

    const CHECKPOINT: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    fn witness(name: &str, seed: u8) -> CosignatureSigner {
        CosignatureSigner::from_seed(name, &[seed; 32]).unwrap()
    }

    fn cosigned(text: &str, signers: &[(&CosignatureSigner, u64)]) -> SignedNote {
        let log = NoteSigner::from_seed("example.com/behind-the-sofa", &[1; 32]).unwrap();
        let mut note = log.sign(text).unwrap();
        for (signer, time) in signers {
            note.signatures.push(signer.cosign(text, *time).unwrap());
        }
        // Through text and back, as a client would see it.
        SignedNote::parse(note.encode().as_bytes()).unwrap()
    }

    /// The cosigned checkpoint of tlog-cosignature's introduction and its
    /// "Ed25519 signed message" example: the cosignature's timestamp is the
    /// example's `time` line. (The spec does not publish the witness key, so
    /// the signature itself can't be checked.)
    #[test]
    fn the_spec_example_line_and_message() {
        let note = SignedNote::parse(
            format!(
                "{CHECKPOINT}\n\
                 \u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\
                 \u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let cosignature = &note.signatures[1];
        assert_eq!(cosignature.key_id, 0x8d66_cf3f);
        assert_eq!(timestamp(cosignature), Ok(1_679_315_147));
        assert_eq!(
            signed_message(&note.text, 1_679_315_147),
            "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n\
             CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        );
        // The log's own signature (type 0x01, 64 bytes) is no cosignature.
        assert!(matches!(timestamp(&note.signatures[0]), Err(CosignatureError::Malformed(_))));
    }

    /// Vectors from transparency-dev/formats `note/note_cosigv1_test.go`
    /// (Apache-2.0): a cosignature vkey of type 0x04 whose key ID we must
    /// compute alike, and a signature's timestamp.
    #[test]
    fn transparency_dev_vectors() {
        let verifier =
            CosignatureVerifier::parse("remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2").unwrap();
        assert_eq!((verifier.name.as_str(), verifier.key_id), ("remora.n621.de", 0xda77_ade7));
        let line = |b64: &str| NoteSignature::parse_line(&format!("\u{2014} w {b64}")).unwrap();
        let works = line(
            "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA==",
        );
        assert_eq!(timestamp(&works), Ok(1_727_964_367));
        let wrong_type =
            line("eQjRQm6eSKzFoiYalgwCPXu2y3ijtg68is9M46JKxuZB+dRfTmeQeDBoXnvxZx2ugnkyV+MUMLXpWs1hPb/W/4xkNQY=");
        assert!(timestamp(&wrong_type).is_err());
        // A plain Ed25519 note key (type 0x01) is not a cosigner key.
        assert!(matches!(
            CosignatureVerifier::parse("TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"),
            Err(CosignatureError::Key(_))
        ));
    }

    #[test]
    fn round_trip() {
        let w1 = witness("witness.example/w1", 2);
        let verifier = CosignatureVerifier::parse(&w1.verifier_key()).unwrap();
        assert_eq!(verifier, w1.verifier());
        let vkey = w1.verifier_key();
        let material = vkey.rsplit('+').next().unwrap();
        let material = base64::engine::general_purpose::STANDARD.decode(material).unwrap();
        assert_eq!((material.len(), material[0]), (33, COSIGNATURE_V1));
        let note = cosigned(CHECKPOINT, &[(&w1, 1_700_000_000)]);
        assert_eq!(verifier.verify(&note), Ok(1_700_000_000));
        let line = &note.signatures[1];
        assert_eq!(line.signature.len(), 72);
        assert_eq!(timestamp(line), Ok(1_700_000_000));
        // The log's key still verifies the note, ignoring the cosignature.
        let log = NoteSigner::from_seed("example.com/behind-the-sofa", &[1; 32]).unwrap();
        assert_eq!(note.verify(&[log.verifier()]).unwrap(), vec!["example.com/behind-the-sofa".to_owned()]);
    }

    #[test]
    fn tampered_text_or_timestamp_fails() {
        let w1 = witness("witness.example/w1", 2);
        let note = cosigned(CHECKPOINT, &[(&w1, 1_700_000_000)]);
        let mut text_changed = note.clone();
        text_changed.text = text_changed.text.replace("20852163", "20852164");
        assert_eq!(
            w1.verifier().verify(&text_changed),
            Err(CosignatureError::BadSignature("witness.example/w1".into()))
        );
        let mut time_changed = note.clone();
        time_changed.signatures[1].signature[7] ^= 1;
        assert_eq!(
            w1.verifier().verify(&time_changed),
            Err(CosignatureError::BadSignature("witness.example/w1".into()))
        );
        // Extension lines are signed too.
        let extended = format!("{CHECKPOINT}ext\n");
        let mut note = cosigned(&extended, &[(&w1, 5)]);
        note.text = note.text.replace("ext", "exu");
        assert!(w1.verifier().verify(&note).is_err());
    }

    #[test]
    fn other_keys_are_ignored() {
        let w1 = witness("witness.example/w1", 2);
        // Same name, another key: another key ID, so ignored, not failed.
        let impostor = witness("witness.example/w1", 3);
        let note = cosigned(CHECKPOINT, &[(&impostor, 7)]);
        assert_eq!(w1.verifier().verify(&note), Err(CosignatureError::Missing("witness.example/w1".into())));
        // A note key with the same seed and name has a different key ID.
        let log_style = NoteSigner::from_seed("witness.example/w1", &[2; 32]).unwrap();
        let mut note = note;
        note.signatures.extend(log_style.sign(CHECKPOINT).unwrap().signatures);
        assert_eq!(verify_cosignatures(&note, &[w1.verifier()]), Ok(vec![]));
    }

    #[test]
    fn refuses_what_the_spec_forbids() {
        let w1 = witness("witness.example/w1", 2);
        assert_eq!(w1.cosign("no newline", 1), Err(CosignatureError::TextWithoutNewline));
        assert_eq!(w1.cosign(CHECKPOINT, MAX_TIMESTAMP + 1), Err(CosignatureError::TimestampOutOfRange(1 << 63)));
        assert_eq!(timestamp(&w1.cosign(CHECKPOINT, MAX_TIMESTAMP).unwrap()), Ok(MAX_TIMESTAMP));
        let mut line = w1.cosign(CHECKPOINT, 1).unwrap();
        line.signature[0] = 0x80;
        assert!(matches!(timestamp(&line), Err(CosignatureError::TimestampOutOfRange(_))));
        assert!(CosignatureSigner::from_seed("bad name", &[2; 32]).is_err());
    }

    #[test]
    fn a_witness_policy() {
        let (w1, w2, w3) = (witness("w1.example", 2), witness("w2.example", 3), witness("w3.example", 4));
        let log = NoteSigner::from_seed("example.com/behind-the-sofa", &[1; 32]).unwrap().verifier();
        let trusted = [w1.verifier(), w2.verifier(), w3.verifier()];
        // w1 twice (counted once, the latest kept), w2 once, w3 not at all.
        let note = cosigned(CHECKPOINT, &[(&w1, 10), (&w2, 11), (&w1, 12)]);
        let verified = verify_cosigned(&note, std::slice::from_ref(&log), &trusted, 2).unwrap();
        let names: Vec<_> = verified.iter().map(|c| (c.signature.name.as_str(), c.timestamp)).collect();
        assert_eq!(names, [("w1.example", 12), ("w2.example", 11)]);
        assert_eq!(
            verify_cosigned(&note, std::slice::from_ref(&log), &trusted, 3),
            Err(CosignatureError::Quorum { verified: 2, required: 3 })
        );
        // Cosignatures without the log's signature prove nothing.
        let mut unsigned_by_log = note.clone();
        unsigned_by_log.signatures.remove(0);
        assert!(matches!(
            verify_cosigned(&unsigned_by_log, &[log], &trusted, 0),
            Err(CosignatureError::LogSignature(NoteError::NoKnownSignature))
        ));
    }
}
