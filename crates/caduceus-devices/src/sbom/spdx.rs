//! SPDX 2.2 and 2.3, JSON and tag-value (both become the same JSON shape and one reader).
//!
//! What is kept, and how:
//! - packages are components: `SPDXID`, `name`, `versionInfo`, `supplier` (else
//!   `originator`; the `Organization:`/`Person:`/`Tool:` prefix is dropped, `NOASSERTION`
//!   is none), `externalRefs` (`PACKAGE-MANAGER purl`, `SECURITY cpe23Type`, else
//!   `cpe22Type`), `checksums` (`sha256:<hex>`), `primaryPackagePurpose` lowercased as kind;
//! - files and snippets are not components: they are skipped and files counted
//!   ([`Parsed::skipped_files`]);
//! - relationships keep the SPDX type lowercased (`depends_on`, `contains`, `describes`,
//!   `static_link`...), except that `DEPENDENCY_OF`, `CONTAINED_BY` and `DESCRIBED_BY` are
//!   turned around into `depends_on`, `contains` and `describes`; relationships to `NONE` or
//!   `NOASSERTION` are dropped;
//! - `documentDescribes` (else the first `DESCRIBES` from the document) is the root;
//!   `creationInfo.creators` are the authors (verbatim, `Tool: ...` included),
//!   `creationInfo.created` the timestamp, `documentNamespace` the serial, `name` the name.
//!
//! SPDX 3.0 (JSON-LD, `@context`/`@graph`) is refused with a clear error: its element
//! model is different and not supported yet.

use serde_json::Value;

use super::build::Builder;
use super::{Parsed, clip, json_value, non_empty, normalize_hash, perr, tagvalue};
use crate::model::{Component, Sbom, SbomFormat};
use crate::{DevicesError, MAX_SBOM_BYTES, Result, check_size};

const FORMAT: &str = "spdx";

/// Parse an SPDX 2.x JSON document.
pub fn parse_json(bytes: &[u8]) -> Result<Sbom> {
    parse_json_detailed(bytes).map(|p| p.sbom)
}

/// [`parse_json`], keeping the count of skipped files.
pub fn parse_json_detailed(bytes: &[u8]) -> Result<Parsed> {
    check_size("SPDX document", bytes, MAX_SBOM_BYTES)?;
    from_json_value(&json_value(FORMAT, bytes)?)
}

/// Parse an SPDX 2.x tag-value document.
pub fn parse_tag_value(bytes: &[u8]) -> Result<Sbom> {
    parse_tag_value_detailed(bytes).map(|p| p.sbom)
}

/// [`parse_tag_value`], keeping the count of skipped files.
pub fn parse_tag_value_detailed(bytes: &[u8]) -> Result<Parsed> {
    check_size("SPDX document", bytes, MAX_SBOM_BYTES)?;
    from_json_value(&tagvalue::to_json(bytes)?)
}

/// True for an SPDX 3 JSON-LD document.
pub(crate) fn is_spdx3(doc: &Value) -> bool {
    let context_is_spdx = match doc.get("@context") {
        Some(Value::String(c)) => c.contains("spdx.org/rdf/3"),
        Some(Value::Array(cs)) => cs.iter().any(|c| c.as_str().is_some_and(|c| c.contains("spdx.org/rdf/3"))),
        _ => false,
    };
    context_is_spdx || (doc.get("@context").is_some() && doc.get("@graph").is_some())
}

pub(crate) fn spdx3_error() -> DevicesError {
    perr(FORMAT, "SPDX 3.0 (JSON-LD) is not supported yet; use SPDX 2.3 or CycloneDX".into())
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)?.as_str()
}

fn arr<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

/// `Organization: Acme (x@y)` → `Acme (x@y)`; `NOASSERTION` → none.
fn party(v: Option<&str>) -> Option<String> {
    let v = v?.trim();
    let v = ["Organization:", "Person:", "Tool:"].iter().find_map(|p| v.strip_prefix(p)).unwrap_or(v).trim();
    if v.is_empty() || v == "NOASSERTION" || v == "NONE" {
        return None;
    }
    Some(v.to_string())
}

pub(crate) fn from_json_value(doc: &Value) -> Result<Parsed> {
    if is_spdx3(doc) {
        return Err(spdx3_error());
    }
    if !doc.is_object() {
        return Err(perr(FORMAT, "document is not a JSON object".into()));
    }
    let spec = match s(doc, "spdxVersion").map(str::trim) {
        Some(v) if v.starts_with("SPDX-2.") => v.trim_start_matches("SPDX-").to_string(),
        Some(v) if v.starts_with("SPDX-3") => return Err(spdx3_error()),
        Some(v) => return Err(perr(FORMAT, format!("spdxVersion {:?} is not supported (SPDX-2.x only)", clip(v)))),
        None => return Err(perr(FORMAT, "spdxVersion missing".into())),
    };
    let mut b = Builder::new(FORMAT, SbomFormat::Spdx, spec);
    let doc_id = non_empty(s(doc, "SPDXID")).unwrap_or_else(|| "SPDXRef-DOCUMENT".to_string());
    b.sbom.serial = non_empty(s(doc, "documentNamespace"));
    b.sbom.name = non_empty(s(doc, "name"));
    if let Some(info) = doc.get("creationInfo") {
        b.sbom.timestamp = non_empty(s(info, "created"));
        b.sbom.authors = arr(info, "creators").filter_map(|c| non_empty(c.as_str())).collect();
    }
    for p in arr(doc, "packages").filter(|p| p.is_object()) {
        b.component(package(p))?;
    }
    b.skipped_files = arr(doc, "files").count();
    for d in arr(doc, "documentDescribes") {
        let Some(to) = non_empty(d.as_str()) else { continue };
        b.relationship(&doc_id, &to, "describes")?;
        if b.sbom.root.is_none() {
            b.sbom.root = Some(to);
        }
    }
    for r in arr(doc, "relationships") {
        let (Some(from), Some(to), Some(kind)) = (
            non_empty(s(r, "spdxElementId")),
            non_empty(s(r, "relatedSpdxElement")),
            non_empty(s(r, "relationshipType")),
        ) else {
            continue;
        };
        if to == "NONE" || to == "NOASSERTION" || from == "NONE" || from == "NOASSERTION" {
            continue;
        }
        let kind = kind.to_ascii_uppercase();
        let (from, to, kind) = match kind.as_str() {
            "DEPENDENCY_OF" => (to, from, "depends_on".to_string()),
            "CONTAINED_BY" => (to, from, "contains".to_string()),
            "DESCRIBED_BY" => (to, from, "describes".to_string()),
            _ => (from, to, kind.to_ascii_lowercase()),
        };
        if kind == "describes" && from == doc_id && b.sbom.root.is_none() {
            b.sbom.root = Some(to.clone());
        }
        b.relationship(&from, &to, &kind)?;
    }
    Ok(b.finish())
}

fn package(p: &Value) -> Component {
    let mut purl = None;
    let (mut cpe23, mut cpe22) = (None, None);
    for r in arr(p, "externalRefs") {
        let category = s(r, "referenceCategory").unwrap_or_default().replace('_', "-").to_ascii_uppercase();
        let kind = s(r, "referenceType").unwrap_or_default();
        let locator = non_empty(s(r, "referenceLocator"));
        match (category.as_str(), kind) {
            ("PACKAGE-MANAGER", "purl") if purl.is_none() => purl = locator,
            ("SECURITY", "cpe23Type") if cpe23.is_none() => cpe23 = locator,
            ("SECURITY", "cpe22Type") if cpe22.is_none() => cpe22 = locator,
            _ => {}
        }
    }
    let hashes =
        arr(p, "checksums").filter_map(|c| normalize_hash(s(c, "algorithm")?, s(c, "checksumValue")?)).collect();
    Component {
        id: non_empty(s(p, "SPDXID")).unwrap_or_default(),
        name: non_empty(s(p, "name")).unwrap_or_default(),
        version: non_empty(s(p, "versionInfo")).filter(|v| v != "NOASSERTION"),
        supplier: party(s(p, "supplier")).or_else(|| party(s(p, "originator"))),
        purl,
        cpe: cpe23.or(cpe22),
        hashes,
        kind: non_empty(s(p, "primaryPackagePurpose")).map(|k| k.to_ascii_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_package_and_relationships() -> Result<()> {
        let doc = br#"{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","name":"d",
          "documentNamespace":"https://x/1","creationInfo":{"created":"2024-01-01T00:00:00Z",
          "creators":["Tool: t","Organization: Acme"]},
          "packages":[{"SPDXID":"SPDXRef-a","name":"a","versionInfo":"1","supplier":"Organization: Acme",
             "externalRefs":[{"referenceCategory":"PACKAGE_MANAGER","referenceType":"purl","referenceLocator":"pkg:npm/a@1"},
                             {"referenceCategory":"SECURITY","referenceType":"cpe23Type","referenceLocator":"cpe:2.3:a:acme:a:1:*:*:*:*:*:*:*"}],
             "checksums":[{"algorithm":"SHA256","checksumValue":"AA"}],"primaryPackagePurpose":"FIRMWARE"},
             {"SPDXID":"SPDXRef-b","name":"b"}],
          "files":[{"SPDXID":"SPDXRef-f","fileName":"f"}],
          "relationships":[{"spdxElementId":"SPDXRef-DOCUMENT","relationshipType":"DESCRIBES","relatedSpdxElement":"SPDXRef-a"},
             {"spdxElementId":"SPDXRef-b","relationshipType":"DEPENDENCY_OF","relatedSpdxElement":"SPDXRef-a"},
             {"spdxElementId":"SPDXRef-b","relationshipType":"DEPENDS_ON","relatedSpdxElement":"NONE"}]}"#;
        let p = parse_json_detailed(doc)?;
        assert_eq!(p.skipped_files, 1);
        let sbom = p.sbom;
        assert_eq!(sbom.spec_version, "2.3");
        assert_eq!(sbom.root.as_deref(), Some("SPDXRef-a"));
        let a = sbom.components.first().cloned().unwrap_or_default();
        assert_eq!(a.supplier.as_deref(), Some("Acme"));
        assert_eq!(a.purl.as_deref(), Some("pkg:npm/a@1"));
        assert_eq!(a.hashes, vec!["sha256:aa".to_string()]);
        assert_eq!(a.kind.as_deref(), Some("firmware"));
        assert!(
            sbom.relationships.iter().any(|r| r.from == "SPDXRef-a" && r.to == "SPDXRef-b" && r.kind == "depends_on")
        );
        assert_eq!(sbom.relationships.len(), 2);
        Ok(())
    }

    #[test]
    fn spdx3_is_refused_clearly() {
        let doc = br#"{"@context":"https://spdx.org/rdf/3.0.1/spdx-context.jsonld","@graph":[]}"#;
        let err = parse_json(doc).map(|_| ()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("SPDX 3.0"), "{err}");
    }
}
