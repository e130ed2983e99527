//! C2SP tlog-checkpoint note texts: origin, tree size, root hash, and
//! optional extension lines. Signing and verifying is the note's job.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::merkle::Hash;

/// A decimal without sign or leading zeros that fits a u64, as every C2SP
/// text format writes sizes and indexes; anything else is refused, so each
/// number has one spelling.
pub(crate) fn parse_canonical_decimal(digits: &str) -> Option<u64> {
    let canonical = digits == "0" || !digits.starts_with('0');
    if !canonical || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("checkpoint is malformed: {0}")]
pub struct CheckpointError(&'static str);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity, e.g. `hospital.example/caduceus`.
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Opaque, non-empty extension lines (discouraged by the spec).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text: one line each, every line ending in a newline.
    pub fn to_text(&self) -> String {
        let mut out = format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root));
        for line in &self.extensions {
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    /// Parse a note text (as it is signed, ending in a newline).
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let body = text.strip_suffix('\n').ok_or(CheckpointError("does not end in a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().filter(|l| !l.is_empty()).ok_or(CheckpointError("empty origin"))?;
        let size_line = lines.next().ok_or(CheckpointError("no tree size"))?;
        let size = parse_canonical_decimal(size_line)
            .ok_or(CheckpointError("tree size is not a canonical decimal (or out of range)"))?;
        let root_line = lines.next().ok_or(CheckpointError("no root hash"))?;
        let root = B64.decode(root_line).map_err(|_| CheckpointError("root hash is not base64"))?;
        let root: Hash = root.try_into().map_err(|_| CheckpointError("root hash is not 32 bytes"))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(CheckpointError("empty extension line"));
        }
        Ok(Self { origin: origin.to_owned(), size, root, extensions })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle;
    use crate::note::{NoteSigner, SignedNote};

    #[test]
    fn round_trip_and_sign() {
        let leaves: Vec<Hash> = (0u8..5).map(|i| merkle::leaf_hash(&[i])).collect();
        let checkpoint = Checkpoint {
            origin: "hospital.example/caduceus".into(),
            size: 5,
            root: merkle::root(&leaves),
            extensions: vec![],
        };
        let text = checkpoint.to_text();
        assert_eq!(text.lines().count(), 3);
        assert_eq!(Checkpoint::parse(&text).unwrap(), checkpoint);
        let signer = NoteSigner::from_seed("hospital.example/caduceus", &[3; 32]).unwrap();
        let note = SignedNote::parse(signer.sign(&text).unwrap().encode().as_bytes()).unwrap();
        note.verify(&[signer.verifier()]).unwrap();
        assert_eq!(Checkpoint::parse(&note.text).unwrap(), checkpoint);
    }

    #[test]
    fn malformed_checkpoints_are_refused() {
        let root = B64.encode([0u8; 32]);
        for bad in [
            format!("origin\n5\n{root}"),
            format!("\n5\n{root}\n"),
            format!("origin\n05\n{root}\n"),
            format!("origin\n+5\n{root}\n"),
            format!("origin\n\n{root}\n"),
            "origin\n5\nAAAA\n".to_owned(),
            format!("origin\n5\n{root}\n\n"),
            "origin\n5\n".to_owned(),
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(Checkpoint::parse(&format!("o\n0\n{root}\next\n")).unwrap().extensions, vec!["ext".to_owned()]);
    }
}
