//! Seals: what the ledger stores per entry.
//!
//! A leaf commits to one security event by `SHA-256(domain || salt || digest)`
//! where `digest` is the SHA-256 of the event's canonical form and `salt` is
//! 16 random bytes kept only beside the leaf, never published. The public
//! log (tiles, proofs) therefore holds no event data and cannot be used to
//! confirm a guess of an event's content; erasing a patient's events later
//! (and their salts) leaves every leaf, and so the log, intact.
//!
//! On disk a seal is a fixed 64-byte record, so entry `i` is at `64·i`:
//!
//! | bytes  | field                                   |
//! |--------|-----------------------------------------|
//! | 0..32  | commitment (the leaf's entry data)      |
//! | 32..40 | event sequence number, little-endian    |
//! | 40..56 | salt                                    |
//! | 56..60 | flags, little-endian (reserved, zero)   |
//! | 60..64 | CRC-32 of bytes 0..60, little-endian    |
//!
//! The CRC catches torn writes and any changed byte, including in the salt
//! and sequence number, which the Merkle tree does not cover.

use sha2::{Digest, Sha256};

use crate::merkle::Hash;

pub const RECORD_BYTES: usize = 64;
pub const SALT_BYTES: usize = 16;
// Seven bytes, so that domain, salt and digest fit one SHA-256 block.
const COMMITMENT_DOMAIN: &[u8] = b"seal-v1";

/// What a caller asks to seal: an event's position on the spine and its digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seal {
    pub event_seq: u64,
    pub event_digest: [u8; 32],
}

/// A stored seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealRecord {
    pub commitment: Hash,
    pub event_seq: u64,
    pub salt: [u8; SALT_BYTES],
    pub flags: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("checksum mismatch")]
    Checksum,
    #[error("unknown flags {0:#x}")]
    Flags(u32),
}

/// The leaf's entry data for an event digest and salt.
pub fn commitment(salt: &[u8; SALT_BYTES], event_digest: &[u8; 32]) -> Hash {
    let mut h = Sha256::new();
    h.update(COMMITMENT_DOMAIN);
    h.update(salt);
    h.update(event_digest);
    h.finalize().into()
}

impl SealRecord {
    pub fn new(seal: &Seal, salt: [u8; SALT_BYTES]) -> Self {
        Self { commitment: commitment(&salt, &seal.event_digest), event_seq: seal.event_seq, salt, flags: 0 }
    }

    /// Whether this record seals an event with this digest.
    pub fn seals(&self, event_digest: &[u8; 32]) -> bool {
        commitment(&self.salt, event_digest) == self.commitment
    }

    pub fn encode(&self) -> [u8; RECORD_BYTES] {
        let mut out = [0u8; RECORD_BYTES];
        let (body, crc) = out.split_at_mut(RECORD_BYTES - 4);
        let (commitment, rest) = body.split_at_mut(32);
        let (seq, rest) = rest.split_at_mut(8);
        let (salt, flags) = rest.split_at_mut(SALT_BYTES);
        commitment.copy_from_slice(&self.commitment);
        seq.copy_from_slice(&self.event_seq.to_le_bytes());
        salt.copy_from_slice(&self.salt);
        flags.copy_from_slice(&self.flags.to_le_bytes());
        crc.copy_from_slice(&crc32fast::hash(body).to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8; RECORD_BYTES]) -> Result<Self, RecordError> {
        let (body, crc) = bytes.split_at(RECORD_BYTES - 4);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err(RecordError::Checksum);
        }
        let (commitment, rest) = body.split_at(32);
        let (seq, rest) = rest.split_at(8);
        let (salt, flags) = rest.split_at(SALT_BYTES);
        let flags = u32::from_le_bytes(flags.try_into().map_err(|_| RecordError::Checksum)?);
        if flags != 0 {
            return Err(RecordError::Flags(flags));
        }
        Ok(Self {
            commitment: commitment.try_into().map_err(|_| RecordError::Checksum)?,
            event_seq: u64::from_le_bytes(seq.try_into().map_err(|_| RecordError::Checksum)?),
            salt: salt.try_into().map_err(|_| RecordError::Checksum)?,
            flags,
        })
    }
}

/// Whether a record slot was never written.
pub fn is_blank(bytes: &[u8; RECORD_BYTES]) -> bool {
    bytes.iter().all(|b| *b == 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_every_flipped_byte_is_caught() {
        let record = SealRecord::new(&Seal { event_seq: 42, event_digest: [7; 32] }, [9; SALT_BYTES]);
        let bytes = record.encode();
        assert_eq!(SealRecord::decode(&bytes), Ok(record));
        assert!(record.seals(&[7; 32]));
        assert!(!record.seals(&[8; 32]));
        for i in 0..RECORD_BYTES {
            for bit in 0..8 {
                let mut tampered = bytes;
                tampered[i] ^= 1 << bit;
                assert!(SealRecord::decode(&tampered).is_err(), "flip of byte {i} bit {bit} went unnoticed");
            }
        }
        assert!(SealRecord::decode(&[0; RECORD_BYTES]).is_err());
        assert!(is_blank(&[0; RECORD_BYTES]));
    }

    #[test]
    fn the_salt_hides_the_digest() {
        let seal = Seal { event_seq: 1, event_digest: [1; 32] };
        assert_ne!(
            SealRecord::new(&seal, [1; SALT_BYTES]).commitment,
            SealRecord::new(&seal, [2; SALT_BYTES]).commitment
        );
    }
}
