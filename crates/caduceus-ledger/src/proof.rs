//! Offline proof bundles in the C2SP tlog-proof format: a signed checkpoint,
//! an entry index and its inclusion proof, in one text file anyone can check
//! without reaching the log (c2sp.org/tlog-proof@v1).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::checkpoint::{Checkpoint, parse_canonical_decimal};
use crate::merkle::{self, Hash};
use crate::note::{MAX_NOTE_BYTES, NoteVerifier, SignedNote};

const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// Largest bundle accepted: a note plus 64 proof hashes and some extra data.
pub const MAX_PROOF_BYTES: usize = MAX_NOTE_BYTES + 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlogProofError {
    #[error("proof bundle is larger than {MAX_PROOF_BYTES} bytes")]
    TooLarge,
    #[error("proof bundle is malformed: {0}")]
    Malformed(&'static str),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("checkpoint is from `{found}`, not the expected log `{expected}`")]
    WrongOrigin { expected: String, found: String },
    #[error("checkpoint signature: {0}")]
    Signature(String),
    #[error("inclusion proof: {0}")]
    Inclusion(#[from] merkle::ProofError),
}

/// The tail shared by tlog-proof bundles and tlog-witness requests: one
/// base64 hash per line, a blank line, then the signed note.
pub(crate) fn push_hashes_and_note(out: &mut String, hashes: &[Hash], note: &SignedNote) {
    for hash in hashes {
        out.push_str(&B64.encode(hash));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&note.encode());
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// Opaque, unauthenticated application data.
    pub extra: Option<Vec<u8>>,
    pub index: u64,
    pub proof: Vec<Hash>,
    pub checkpoint: SignedNote,
}

impl TlogProof {
    pub fn encode(&self) -> String {
        let mut out = format!("{HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", B64.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        push_hashes_and_note(&mut out, &self.proof, &self.checkpoint);
        out
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, TlogProofError> {
        if bytes.len() > MAX_PROOF_BYTES {
            return Err(TlogProofError::TooLarge);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| TlogProofError::Malformed("not UTF-8"))?;
        let (head, note) = text.split_once("\n\n").ok_or(TlogProofError::Malformed("no checkpoint"))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(TlogProofError::Malformed("missing c2sp.org/tlog-proof@v1 header"));
        }
        let mut line = lines.next().ok_or(TlogProofError::Malformed("no index line"))?;
        let mut extra = None;
        if let Some(encoded) = line.strip_prefix("extra ") {
            extra = Some(B64.decode(encoded).map_err(|_| TlogProofError::Malformed("extra is not base64"))?);
            line = lines.next().ok_or(TlogProofError::Malformed("no index line"))?;
        }
        let digits = line.strip_prefix("index ").ok_or(TlogProofError::Malformed("no index line"))?;
        let index = parse_canonical_decimal(digits)
            .ok_or(TlogProofError::Malformed("index is not a canonical decimal (or out of range)"))?;
        let proof = lines
            .map(|l| {
                let bytes = B64.decode(l).map_err(|_| TlogProofError::Malformed("proof hash is not base64"))?;
                Hash::try_from(bytes).map_err(|_| TlogProofError::Malformed("proof hash is not 32 bytes"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if proof.len() > 64 {
            return Err(TlogProofError::Malformed("proof is longer than any tree allows"));
        }
        let checkpoint = SignedNote::parse(note.as_bytes()).map_err(|e| TlogProofError::Checkpoint(e.to_string()))?;
        Ok(Self { extra, index, proof, checkpoint })
    }

    /// Check the bundle fully offline: the checkpoint is signed by `log` for
    /// `origin`, and `leaf` is at `index` in the checkpointed tree. Returns
    /// the checkpoint.
    pub fn verify(&self, leaf: &Hash, origin: &str, log: &NoteVerifier) -> Result<Checkpoint, TlogProofError> {
        let checkpoint =
            Checkpoint::parse(&self.checkpoint.text).map_err(|e| TlogProofError::Checkpoint(e.to_string()))?;
        if checkpoint.origin != origin {
            return Err(TlogProofError::WrongOrigin { expected: origin.to_owned(), found: checkpoint.origin });
        }
        self.checkpoint.verify(std::slice::from_ref(log)).map_err(|e| TlogProofError::Signature(e.to_string()))?;
        merkle::verify_inclusion(self.index, checkpoint.size, leaf, &self.proof, &checkpoint.root)?;
        Ok(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::NoteSigner;

    const ORIGIN: &str = "hospital.example/caduceus";

    fn bundle(index: u64) -> (TlogProof, Hash, NoteSigner) {
        let leaves: Vec<Hash> = (0u32..11).map(|i| merkle::leaf_hash(&i.to_be_bytes())).collect();
        let signer = NoteSigner::from_seed(ORIGIN, &[5; 32]).unwrap();
        let checkpoint =
            Checkpoint { origin: ORIGIN.into(), size: 11, root: merkle::root(&leaves), extensions: vec![] };
        let note = signer.sign(&checkpoint.to_text()).unwrap();
        let proof = merkle::inclusion_proof(&leaves, index).unwrap();
        let leaf = leaves[usize::try_from(index).unwrap()];
        (TlogProof { extra: Some(b"event 42".to_vec()), index, proof, checkpoint: note }, leaf, signer)
    }

    #[test]
    fn round_trips_and_verifies_offline() {
        let (bundle, leaf, signer) = bundle(7);
        let text = bundle.encode();
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra ZXZlbnQgNDI=\nindex 7\n"), "{text}");
        let parsed = TlogProof::parse(text.as_bytes()).unwrap();
        assert_eq!(parsed, bundle);
        let checkpoint = parsed.verify(&leaf, ORIGIN, &signer.verifier()).unwrap();
        assert_eq!(checkpoint.size, 11);
    }

    #[test]
    fn anything_wrong_is_refused() {
        let (bundle, leaf, signer) = bundle(3);
        let verifier = signer.verifier();
        let other_leaf = merkle::leaf_hash(b"something else");
        assert!(matches!(bundle.verify(&other_leaf, ORIGIN, &verifier), Err(TlogProofError::Inclusion(_))));
        assert!(matches!(
            bundle.verify(&leaf, "other.example/log", &verifier),
            Err(TlogProofError::WrongOrigin { .. })
        ));
        let stranger = NoteSigner::from_seed(ORIGIN, &[6; 32]).unwrap();
        assert!(matches!(bundle.verify(&leaf, ORIGIN, &stranger.verifier()), Err(TlogProofError::Signature(_))));
        let mut moved = bundle.clone();
        moved.index = 4;
        assert!(moved.verify(&leaf, ORIGIN, &verifier).is_err());
        // A tampered checkpoint size breaks the signature.
        let text = bundle.encode().replace("\n11\n", "\n12\n");
        let tampered = TlogProof::parse(text.as_bytes()).unwrap();
        assert!(matches!(tampered.verify(&leaf, ORIGIN, &verifier), Err(TlogProofError::Signature(_))));
    }

    #[test]
    fn malformed_bundles_are_refused() {
        let good = bundle(0).0.encode();
        for bad in [
            good.replace("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2"),
            good.replace("index 0", "index 00"),
            good.replace("index 0", "index -1"),
            good.replace("index 0", "idx 0"),
            good.replace("extra ZXZlbnQgNDI=", "extra !!"),
            good.replacen("\n\n", "\n", 1),
            good.replace("c2sp.org/tlog-proof@v1\n", "c2sp.org/tlog-proof@v1\nAAAA\n"),
        ] {
            assert!(TlogProof::parse(bad.as_bytes()).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(TlogProof::parse(&vec![b'a'; MAX_PROOF_BYTES + 1]), Err(TlogProofError::TooLarge));
    }
}
