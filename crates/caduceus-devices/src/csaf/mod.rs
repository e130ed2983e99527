//! CSAF 2.0 advisories: reading, validating (section 6.1 mandatory tests), flattening into
//! [`crate::model::Advisory`], checking `.sha512` / OpenPGP signatures and reading a
//! provider's ROLIE feed.
//!
//! The reader tolerates unknown fields (CSAF 2.1 and vendor extensions load); the validator
//! decides conformance. `product_version_range` free text is translated into `vers:` where
//! the wording is unambiguous and kept as unparsed otherwise, so a range nobody understood
//! can never match.

mod cvss_check;
mod flatten;
mod ranges;
mod rolie;
mod signature;
mod types;
mod validate;

pub use flatten::range_spec;
pub use ranges::translate_range;
pub use rolie::{FeedEntry, read_rolie_feed};
pub use signature::{SignatureInfo, signature_issuer, verify_openpgp, verify_sha256, verify_sha512};
pub use types::*;
pub use validate::{IMPLEMENTED_TESTS, Violation, count_by_test, validate};

use crate::{DevicesError, MAX_ADVISORY_BYTES, Result, check_size};

/// Deepest product-tree branch nesting accepted (real trees are 3 to 6 deep).
pub const MAX_BRANCH_DEPTH: usize = 30;

fn parse_err(reason: impl Into<String>) -> DevicesError {
    DevicesError::Parse { format: "csaf", reason: reason.into() }
}

fn branch_depth(branches: &[Branch], depth: usize) -> usize {
    if depth > MAX_BRANCH_DEPTH {
        return depth;
    }
    branches.iter().map(|b| branch_depth(&b.branches, depth + 1)).max().unwrap_or(depth)
}

fn from_value(value: serde_json::Value) -> Result<CsafDocument> {
    let doc: CsafDocument = serde_json::from_value(value).map_err(|e| parse_err(e.to_string()))?;
    if let Some(tree) = &doc.product_tree
        && branch_depth(&tree.branches, 0) > MAX_BRANCH_DEPTH
    {
        return Err(parse_err(format!("product tree branches nest deeper than {MAX_BRANCH_DEPTH}")));
    }
    Ok(doc)
}

fn to_value(bytes: &[u8]) -> Result<serde_json::Value> {
    check_size("CSAF document", bytes, MAX_ADVISORY_BYTES)?;
    // serde_json refuses nesting deeper than 128 levels, which bounds the recursion here.
    serde_json::from_slice(bytes).map_err(|e| parse_err(e.to_string()))
}

/// Read a CSAF document without validating it.
pub fn parse(bytes: &[u8]) -> Result<CsafDocument> {
    from_value(to_value(bytes)?)
}

/// Read a CSAF document and run the validator; the violations are returned, not raised.
pub fn parse_with_report(bytes: &[u8]) -> Result<(CsafDocument, Vec<Violation>)> {
    let value = to_value(bytes)?;
    let violations = validate(&value);
    Ok((from_value(value)?, violations))
}

/// Read a CSAF document and refuse it unless it passes every implemented test;
/// [`DevicesError::Invalid`] names the first failing test and where.
pub fn parse_validated(bytes: &[u8]) -> Result<CsafDocument> {
    let (doc, violations) = parse_with_report(bytes)?;
    if let Some(first) = violations.first() {
        return Err(DevicesError::Invalid(format!(
            "test {} fails at {:?}: {} ({} violation(s) in all)",
            first.test,
            first.path,
            first.message,
            violations.len()
        )));
    }
    Ok(doc)
}

/// Fuzz entry point: parse, validate and flatten, dropping the results.
pub fn fuzz_csaf(data: &[u8]) {
    if let Ok(value) = to_value(data) {
        let _ = validate(&value);
        if let Ok(doc) = from_value(value) {
            let _ = doc.to_advisory();
        }
    }
}
