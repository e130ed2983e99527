//! Caduceus devices: the medical-device inventory and its vulnerabilities.
//!
//! The pieces, in the order data flows through them:
//! - advisories come in as CSAF 2.0 ([`csaf`], with its validator, signatures and ROLIE feeds)
//!   or OSV ([`osv`]), and SBOMs as CycloneDX or SPDX ([`sbom`]); all become the shapes in
//!   [`model`];
//! - versions are ordered by their ecosystem's rules ([`version`]), ranges are `vers:` URIs
//!   ([`vers`]), packages are purls ([`purl`]) and platforms CPEs ([`cpe`]);
//! - [`cvss`] parses and scores CVSS 2.0, 3.x and 4.0 vectors, [`enrich`] loads EPSS and KEV;
//! - [`inventory`] holds devices, [`matching`] finds which advisories apply to which devices
//!   and components with the rule that matched, [`risk`] scores a device and [`report`]
//!   prints findings as a table, JSON or SARIF.
//!
//! This crate does no network I/O and keeps no clock; it reads the bytes it is given.

pub mod cpe;
pub mod csaf;
pub mod cvss;
pub mod enrich;
pub mod inventory;
pub mod lockfile;
pub mod matching;
pub mod model;
pub mod osv;
pub mod purl;
pub mod report;
pub mod risk;
pub mod sbom;
pub mod scan;
pub mod vers;
pub mod version;

/// Everything that can go wrong in this crate. Messages name the document and the place in
/// it, never whole values from it.
#[derive(Debug, thiserror::Error)]
pub enum DevicesError {
    /// The input is larger than the cap for its kind.
    #[error("{what} is {size} bytes, over the limit of {limit}")]
    TooLarge { what: &'static str, size: usize, limit: usize },
    /// The input is not the format it claims to be, or breaks its schema.
    #[error("{format}: {reason}")]
    Parse { format: &'static str, reason: String },
    /// A CSAF document breaks a mandatory test of CSAF 2.0 section 6.1.
    #[error("csaf: {0}")]
    Invalid(String),
    /// A value (version, purl, CPE, vector, range) is malformed.
    #[error("{kind} {value:?}: {reason}")]
    Value { kind: &'static str, value: String, reason: String },
    /// A hash or signature does not verify.
    #[error("signature: {0}")]
    Signature(String),
}

/// The crate's result type.
pub type Result<T, E = DevicesError> = std::result::Result<T, E>;

/// Largest advisory document accepted (the biggest CISA CSAF file is about 1 MiB).
pub const MAX_ADVISORY_BYTES: usize = 16 * 1024 * 1024;
/// Largest SBOM accepted.
pub const MAX_SBOM_BYTES: usize = 64 * 1024 * 1024;

/// Refuse input over `limit` bytes before parsing it.
pub fn check_size(what: &'static str, bytes: &[u8], limit: usize) -> Result<()> {
    if bytes.len() > limit {
        return Err(DevicesError::TooLarge { what, size: bytes.len(), limit });
    }
    Ok(())
}
