//! The patient-record vault (issue 5), started: the protection underneath
//! the records, pure and tested, not yet wired into storage or the API.
//!
//! - `blind`: keyed blind indexes, so identifiers, names, birth dates and
//!   addresses can be searched without being stored;
//! - `keys`: envelope encryption: a key-encryption key kept outside the
//!   database wraps one data key per patient, which seals that patient's
//!   resources with their type, id and version as associated data;
//!   destroying the data key is crypto-shredding.
//!
//! Still to come: the FHIR API and store, access policy, consent and
//! break-glass, audit, the patient-verifiable access log, GDPR export and
//! erasure, and import.

pub mod blind;
pub mod keys;
