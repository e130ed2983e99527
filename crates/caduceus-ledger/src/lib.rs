//! The tamper-evident ledger: an append-only Merkle log of security events,
//! as Certificate Transparency and Go's checksum database do it. It never
//! sees an event: a caller seals an event's sequence number and digest, and
//! the log commits to them with a salt kept beside the leaf.
//!
//! - `log`: the durable log (`Ledger`): group-committed appends, crash
//!   recovery, reads for proofs and tiles; `reader`: a read-only snapshot;
//!   `verify`: offline verification of a ledger directory;
//! - `tree`: the stored tree (post-order complete subtrees) and proofs over
//!   it; `merkle`: RFC 6962 / RFC 9162 §2 hashing and proofs over slices;
//! - `seal`: what a leaf commits to, and the on-disk record;
//! - `checkpoints`, `keys`: signing and keeping checkpoints, the key files;
//! - C2SP formats: `note` (signed-note), `checkpoint` (tlog-checkpoint),
//!   `cosignature` (tlog-cosignature), `proof` (tlog-proof), `tiles`
//!   (tlog-tiles paths), `witness` (tlog-witness, both sides).

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
