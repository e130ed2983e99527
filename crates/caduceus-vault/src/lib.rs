//! The patient-record vault (issue 5): FHIR R4 resources kept encrypted per
//! patient, searched through keyed blind indexes, each access decided by one
//! policy (role scopes, care relationship, the patient's consent,
//! break-glass) and audited.
//!
//! - `resource`: what a resource is to the vault: type, id, compartment
//!   (which patient's key seals it), bounded parsing;
//! - `blind`: keyed blind indexes, so identifiers, names, birth dates and
//!   addresses can be searched without being stored;
//! - `keys`: envelope encryption: a key-encryption key kept outside the
//!   database wraps one data key per patient, which seals that patient's
//!   resources with their type, id and version as associated data;
//!   destroying the data key is crypto-shredding;
//! - `search`: the index entries of a resource and the parsing of FHIR
//!   search parameters into store queries;
//! - `policy`: the access decision, with its reasons;
//! - `audit`: IHE BALP AuditEvents and the spine events behind them;
//! - `bundle`: batch and transaction bundles, NDJSON, reference resolution.

pub mod audit;
pub mod blind;
pub mod bundle;
pub mod facts;
pub mod keyring;
pub mod keys;
pub mod policy;
pub mod resource;
pub mod search;
pub mod service;
