//! The tamper-evident ledger: an append-only Merkle log of security events,
//! as Certificate Transparency and Go's checksum database do it.
//!
//! Built so far, all pure (no I/O, nothing about events: a leaf is whatever
//! bytes the caller commits to — for Caduceus an event's digest and salt,
//! never patient data):
//! - `merkle`: RFC 6962 / RFC 9162 §2 hashing, and the generation and
//!   verification of inclusion and consistency proofs;
//! - `note`: C2SP signed notes with Ed25519 keys and verifier keys;
//! - `checkpoint`: C2SP tlog-checkpoint note texts;
//! - `proof`: C2SP tlog-proof offline proof bundles;
//! - `cosignature`: C2SP tlog-cosignature Ed25519 cosignatures (type 0x04)
//!   and witness policies (a quorum of cosigners);
//! - `witness`: C2SP tlog-witness `add-checkpoint`: the request format, the
//!   witness (whose one I/O is its state file) and the log's reading of the
//!   witness's answers.

pub mod checkpoint;
pub mod checkpoints;
pub mod cosignature;
pub mod keys;
pub mod log;
pub mod merkle;
pub mod note;
pub mod proof;
pub mod reader;
pub mod seal;
pub mod tiles;
pub mod tree;
pub mod verify;
pub mod witness;

pub use log::{Ledger, LedgerError, Progress};
pub use merkle::{Hash, ProofError};
pub use seal::{Seal, SealRecord};
