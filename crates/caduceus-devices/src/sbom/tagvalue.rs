//! SPDX 2.x tag-value, read into the SPDX JSON shape so one reader does the rest.
//!
//! The format: `Tag: value` lines; a value may be `<text>...</text>` spanning lines; lines
//! starting with `#` and blank lines are comments. `PackageName:` opens a package,
//! `FileName:` a file, `SnippetSPDXID:` a snippet and `LicenseID:` an extracted licence;
//! the tags that follow belong to it (an `SPDXID:` before the first of them is the
//! document's). Only the tags the SBOM needs are kept; others are read and ignored.

use serde_json::{Map, Value, json};

use super::{MAX_COMPONENTS, MAX_RELATIONSHIPS, clip, perr};
use crate::Result;

const FORMAT: &str = "spdx tag-value";

/// True when the first line that is not blank or a comment is `SPDXVersion: ...`.
pub(crate) fn looks_like_tag_value(bytes: &[u8]) -> bool {
    let head = bytes.get(..bytes.len().min(64 * 1024)).unwrap_or(bytes);
    let head = String::from_utf8_lossy(head);
    head.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| l.starts_with("SPDXVersion:"))
}

#[derive(PartialEq)]
enum Section {
    Document,
    Package,
    Other,
}

/// Read a tag-value document into the JSON shape of SPDX 2.3.
pub(crate) fn to_json(bytes: &[u8]) -> Result<Value> {
    let text = std::str::from_utf8(super::strip_bom(bytes))
        .map_err(|e| perr(FORMAT, format!("not UTF-8 (byte {})", e.valid_up_to())))?;
    let mut doc = Map::new();
    let mut creators: Vec<Value> = Vec::new();
    let mut created: Option<String> = None;
    let mut packages: Vec<Map<String, Value>> = Vec::new();
    let mut files: Vec<Value> = Vec::new();
    let mut relationships: Vec<Value> = Vec::new();
    let mut section = Section::Document;

    let mut lines = text.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let number = index + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((tag, rest)) = trimmed.split_once(':') else {
            return Err(perr(FORMAT, format!("line {number}: expected `Tag: value`, got {:?}", clip(trimmed))));
        };
        let tag = tag.trim();
        let mut value = rest.trim().to_string();
        if let Some(after) = value.strip_prefix("<text>") {
            value = match after.split_once("</text>") {
                Some((inside, _)) => inside.to_string(),
                None => {
                    let mut buf = after.to_string();
                    loop {
                        let Some((_, next)) = lines.next() else {
                            return Err(perr(FORMAT, format!("line {number}: <text> never closed")));
                        };
                        buf.push('\n');
                        if let Some((inside, _)) = next.split_once("</text>") {
                            buf.push_str(inside);
                            break;
                        }
                        buf.push_str(next);
                    }
                    buf
                }
            };
        }
        let value = value.trim().to_string();
        match tag {
            "SPDXVersion" => {
                doc.insert("spdxVersion".into(), Value::String(value));
            }
            "DocumentName" => {
                doc.insert("name".into(), Value::String(value));
            }
            "DocumentNamespace" => {
                doc.insert("documentNamespace".into(), Value::String(value));
            }
            "Creator" => creators.push(Value::String(value)),
            "Created" => created = Some(value),
            "SPDXID" => match section {
                Section::Document => {
                    doc.insert("SPDXID".into(), Value::String(value));
                }
                Section::Package => {
                    if let Some(p) = packages.last_mut() {
                        p.insert("SPDXID".into(), Value::String(value));
                    }
                }
                Section::Other => {}
            },
            "PackageName" => {
                if packages.len() >= MAX_COMPONENTS {
                    return Err(perr(FORMAT, format!("more than {MAX_COMPONENTS} packages")));
                }
                let mut p = Map::new();
                p.insert("name".into(), Value::String(value));
                packages.push(p);
                section = Section::Package;
            }
            "FileName" => {
                files.push(json!({ "fileName": value }));
                section = Section::Other;
            }
            "SnippetSPDXID" | "LicenseID" => section = Section::Other,
            "Relationship" => {
                let parts: Vec<&str> = value.split_whitespace().collect();
                let [from, kind, to] = parts.as_slice() else {
                    return Err(perr(FORMAT, format!("line {number}: Relationship needs `A TYPE B`")));
                };
                if relationships.len() >= MAX_RELATIONSHIPS {
                    return Err(perr(FORMAT, format!("more than {MAX_RELATIONSHIPS} relationships")));
                }
                relationships
                    .push(json!({ "spdxElementId": from, "relationshipType": kind, "relatedSpdxElement": to }));
            }
            _ if section == Section::Package => {
                if let Some(p) = packages.last_mut() {
                    package_tag(p, tag, value);
                }
            }
            _ => {}
        }
    }
    let mut info = Map::new();
    info.insert("creators".into(), Value::Array(creators));
    if let Some(c) = created {
        info.insert("created".into(), Value::String(c));
    }
    doc.insert("creationInfo".into(), Value::Object(info));
    doc.insert("packages".into(), Value::Array(packages.into_iter().map(Value::Object).collect()));
    doc.insert("files".into(), Value::Array(files));
    doc.insert("relationships".into(), Value::Array(relationships));
    Ok(Value::Object(doc))
}

/// A tag inside a package section.
fn package_tag(p: &mut Map<String, Value>, tag: &str, value: String) {
    let push = |p: &mut Map<String, Value>, key: &str, item: Value| {
        if let Value::Array(list) = p.entry(key).or_insert_with(|| Value::Array(Vec::new())) {
            list.push(item);
        }
    };
    match tag {
        "PackageVersion" => {
            p.insert("versionInfo".into(), Value::String(value));
        }
        "PackageSupplier" => {
            p.insert("supplier".into(), Value::String(value));
        }
        "PackageOriginator" => {
            p.insert("originator".into(), Value::String(value));
        }
        "PrimaryPackagePurpose" => {
            p.insert("primaryPackagePurpose".into(), Value::String(value));
        }
        "PackageChecksum" => {
            if let Some((alg, hex)) = value.split_once(':') {
                push(p, "checksums", json!({ "algorithm": alg.trim(), "checksumValue": hex.trim() }));
            }
        }
        "ExternalRef" => {
            let mut parts = value.split_whitespace();
            if let (Some(category), Some(kind), Some(locator)) = (parts.next(), parts.next(), parts.next()) {
                push(
                    p,
                    "externalRefs",
                    json!({ "referenceCategory": category, "referenceType": kind, "referenceLocator": locator }),
                );
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_blocks_comments_and_sections() -> Result<()> {
        let doc = "# comment\nSPDXVersion: SPDX-2.3\nSPDXID: SPDXRef-DOCUMENT\nDocumentComment: <text>one\ntwo: x\n</text>\n\
                   Creator: Tool: t\nCreated: 2024-01-01T00:00:00Z\n\nPackageName: p\nSPDXID: SPDXRef-p\nPackageVersion: 1.0\n\
                   PackageSupplier: Organization: Acme\nPackageChecksum: SHA256: ab\n\
                   ExternalRef: PACKAGE-MANAGER purl pkg:generic/p@1.0\nPackageComment: <text>x</text>\n\
                   FileName: ./a\nSPDXID: SPDXRef-a\nRelationship: SPDXRef-DOCUMENT DESCRIBES SPDXRef-p\n";
        assert!(looks_like_tag_value(doc.as_bytes()));
        let v = to_json(doc.as_bytes())?;
        let p = super::super::spdx::from_json_value(&v)?;
        assert_eq!(p.skipped_files, 1);
        assert_eq!(p.sbom.root.as_deref(), Some("SPDXRef-p"));
        let c = p.sbom.components.first().cloned().unwrap_or_default();
        assert_eq!((c.id.as_str(), c.version.as_deref()), ("SPDXRef-p", Some("1.0")));
        assert_eq!(c.purl.as_deref(), Some("pkg:generic/p@1.0"));
        assert_eq!(c.hashes, vec!["sha256:ab".to_string()]);
        Ok(())
    }

    #[test]
    fn unterminated_text_and_bad_lines_fail() {
        assert!(to_json(b"SPDXVersion: SPDX-2.3\nDocumentComment: <text>never\n").is_err());
        assert!(to_json(b"SPDXVersion: SPDX-2.3\nno colon here\n").is_err());
    }
}
