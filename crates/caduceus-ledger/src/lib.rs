//! The tamper-evident ledger: an append-only Merkle log of security events,
//! as Certificate Transparency and Go's checksum database do it.
//!
//! This first part is the pure core: RFC 6962 / RFC 9162 §2 hashing, and the
//! generation and verification of inclusion and consistency proofs. It does
//! no I/O and knows nothing of events: a leaf is whatever bytes the caller
//! commits to (for Caduceus, an event's digest and salt, never patient data).

pub mod merkle;

pub use merkle::{Hash, ProofError};
