//! SBOMs: CycloneDX (JSON and XML) and SPDX 2.x (JSON and tag-value) into [`Sbom`].
//!
//! [`parse`] looks at the bytes and picks the reader:
//! - JSON with `"bomFormat": "CycloneDX"`: [`cyclonedx::parse_json`];
//! - JSON with `spdxVersion`: [`spdx::parse_json`] (SPDX 3.0 JSON-LD is detected and refused
//!   with a clear error: it is a different model, not supported yet);
//! - XML whose root is `<bom>` in a `http://cyclonedx.org/schema/bom/1.x` namespace:
//!   [`cyclonedx::parse_xml`];
//! - text starting with `SPDXVersion:` (after comments): [`spdx::parse_tag_value`].
//!
//! Every reader is size-capped ([`crate::MAX_SBOM_BYTES`]) and count-capped
//! ([`MAX_COMPONENTS`], [`MAX_RELATIONSHIPS`], [`MAX_VEX`], [`MAX_XML_NODES`]), never panics,
//! and keeps only what matching and the NTIA report need. [`graph`] walks the component
//! graph (who depends on what, how a component is reached from the root), [`ntia`] reports
//! NTIA minimum-element gaps.
//!
//! Readers return a [`Parsed`] through the `*_detailed` functions: the [`Sbom`] plus what
//! the model has no field for (the versions a CycloneDX VEX statement is scoped to, how many
//! SPDX files were skipped).

mod build;
pub mod cyclonedx;
pub mod graph;
pub mod ntia;
pub mod spdx;
mod tagvalue;

pub use graph::{Graph, dependents_of, path_from_root};
pub use ntia::{NtiaReport, ntia_gaps};

use crate::model::Sbom;
use crate::{DevicesError, MAX_SBOM_BYTES, Result, check_size};

/// Most components (CycloneDX components and services, SPDX packages) one SBOM may hold.
pub const MAX_COMPONENTS: usize = 1_000_000;
/// Most relationships one SBOM may hold.
pub const MAX_RELATIONSHIPS: usize = 4_000_000;
/// Most VEX statements one SBOM may produce.
pub const MAX_VEX: usize = 1_000_000;
/// Most XML nodes (elements, attributes' text, text runs) a CycloneDX XML document may have.
pub const MAX_XML_NODES: u32 = 8_000_000;

/// An SBOM with what [`Sbom`] has no field for.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub sbom: Sbom,
    /// Parallel to `sbom.vex`: the versions (exact versions or `vers:` ranges, as CycloneDX
    /// `affects[].versions[]` gives them) each statement is limited to. Empty: the statement
    /// is about the product as its ref names it (usually one version, or all of them).
    pub vex_versions: Vec<Vec<String>>,
    /// SPDX files seen and skipped (files are not components).
    pub skipped_files: usize,
}

/// Which reader [`parse`] chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SbomKind {
    CycloneDxJson,
    CycloneDxXml,
    SpdxJson,
    SpdxTagValue,
}

/// Parse any supported SBOM, detecting its format.
pub fn parse(bytes: &[u8]) -> Result<Sbom> {
    parse_detailed(bytes).map(|p| p.sbom)
}

/// [`parse`], keeping the VEX version scopes and skipped-file count.
pub fn parse_detailed(bytes: &[u8]) -> Result<Parsed> {
    check_size("SBOM", bytes, MAX_SBOM_BYTES)?;
    let text = strip_bom(bytes);
    match text.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {
            let value = json_value("sbom", text)?;
            match json_kind(&value)? {
                SbomKind::SpdxJson => spdx::from_json_value(&value),
                _ => cyclonedx::from_json_value(&value),
            }
        }
        Some(b'<') => cyclonedx::parse_xml_detailed(text),
        Some(_) if tagvalue::looks_like_tag_value(text) => spdx::parse_tag_value_detailed(text),
        Some(_) => Err(perr("sbom", "not a CycloneDX (JSON/XML) or SPDX (JSON/tag-value) document".into())),
        None => Err(perr("sbom", "empty document".into())),
    }
}

/// Which reader [`parse`] would use, without converting (JSON is parsed to tell
/// CycloneDX from SPDX).
pub fn detect(bytes: &[u8]) -> Result<SbomKind> {
    check_size("SBOM", bytes, MAX_SBOM_BYTES)?;
    let text = strip_bom(bytes);
    match text.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => json_kind(&json_value("sbom", text)?),
        Some(b'<') => Ok(SbomKind::CycloneDxXml),
        Some(_) if tagvalue::looks_like_tag_value(text) => Ok(SbomKind::SpdxTagValue),
        _ => Err(perr("sbom", "not a recognised SBOM format".into())),
    }
}

fn json_kind(value: &serde_json::Value) -> Result<SbomKind> {
    if value.get("bomFormat").is_some() {
        return Ok(SbomKind::CycloneDxJson);
    }
    if value.get("spdxVersion").is_some() {
        return Ok(SbomKind::SpdxJson);
    }
    if spdx::is_spdx3(value) {
        return Err(spdx::spdx3_error());
    }
    Err(perr("sbom", "JSON has neither `bomFormat` (CycloneDX) nor `spdxVersion` (SPDX)".into()))
}

/// Fuzz entry point: the CycloneDX readers (JSON and XML) on arbitrary bytes.
pub fn fuzz_cyclonedx(data: &[u8]) {
    let _ = cyclonedx::parse_json(data);
    let _ = cyclonedx::parse_xml(data);
    if let Ok(sbom) = parse(data) {
        let _ = ntia_gaps(&sbom);
        let graph = Graph::new(&sbom);
        for c in sbom.components.iter().take(16) {
            let _ = graph.path_from_root(&c.id);
        }
    }
}

/// Fuzz entry point: the SPDX readers (JSON and tag-value) on arbitrary bytes.
pub fn fuzz_spdx(data: &[u8]) {
    let _ = spdx::parse_json(data);
    let _ = spdx::parse_tag_value(data);
}

/// Drop a leading UTF-8 byte-order mark.
pub(crate) fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(bytes)
}

pub(crate) fn json_value(format: &'static str, bytes: &[u8]) -> Result<serde_json::Value> {
    serde_json::from_slice(strip_bom(bytes))
        .map_err(|e| perr(format, format!("invalid JSON at line {} column {}", e.line(), e.column())))
}

pub(crate) fn perr(format: &'static str, reason: String) -> DevicesError {
    DevicesError::Parse { format, reason }
}

/// At most 64 characters of an input value, for error messages.
pub(crate) fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if s.chars().nth(64).is_some() {
        out.push('…');
    }
    out
}

/// Trimmed, and `None` when empty.
pub(crate) fn non_empty(s: Option<&str>) -> Option<String> {
    let t = s?.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// `"<algorithm>:<lowercase hex>"` from a CycloneDX `alg` (`SHA-256`) or SPDX `algorithm`
/// (`SHA256`): lowercase, `sha-N` becomes `shaN` (`sha3-256`, `blake2b-256` keep theirs).
/// `None` when the value is not hex.
pub(crate) fn normalize_hash(alg: &str, value: &str) -> Option<String> {
    let alg = alg.trim().to_ascii_lowercase();
    let alg = match alg.strip_prefix("sha-") {
        Some(bits) => format!("sha{bits}"),
        None => alg,
    };
    let value = value.trim();
    if alg.is_empty() || value.is_empty() || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(format!("{alg}:{}", value.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_normalise() {
        assert_eq!(normalize_hash("SHA-256", "AB12"), Some("sha256:ab12".into()));
        assert_eq!(normalize_hash("SHA256", "ab12"), Some("sha256:ab12".into()));
        assert_eq!(normalize_hash("SHA3-512", "00"), Some("sha3-512:00".into()));
        assert_eq!(normalize_hash("MD5", "xyz"), None);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(parse(b"").is_err());
        assert!(parse(b"hello").is_err());
        assert!(parse(b"{\"a\":1}").is_err());
        assert!(parse(b"<html/>").is_err());
        assert!(parse(b"\xEF\xBB\xBF  ").is_err());
    }
}
