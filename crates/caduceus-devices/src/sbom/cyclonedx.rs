//! CycloneDX 1.x (JSON and XML; 1.2 to 1.6, and the 1.0/1.1 XML that has no metadata).
//!
//! Written here rather than with the `cyclonedx-bom` crate, which does not read 1.6 (the
//! version CBOM and newer device SBOMs use). JSON is walked as a `serde_json::Value`, so
//! unknown fields and fields of an unexpected type are ignored rather than fatal; XML is
//! read with `roxmltree` with DTDs refused (so no entity can be declared, let alone an
//! external one fetched) and a node cap.
//!
//! What is kept, and how:
//! - `metadata.component` is the root: it is also the first component, and gets
//!   `metadata.supplier` / `manufacturer` / `manufacture` as its supplier when it names none;
//!   [`Sbom::name`](crate::model::Sbom) is its name.
//! - Components are flattened (nested `components` become `contains` relationships from
//!   the parent); services (`services[]`, nested too) are components of kind `service` with
//!   their provider as supplier. A component's `name` is kept as CycloneDX gives it and its
//!   `group` is dropped: matching works on purl (which carries the group) and on CPE vendor
//!   and product, and a name with a group prefix would no longer be the product name.
//! - Supplier: `supplier.name`, else `manufacturer.name` (1.6), `publisher`, the first of
//!   `authors[].name` (1.6), `author`.
//! - Authors of the data: `metadata.authors[]` (`name (email)`), then `metadata.tools` as
//!   `Tool: vendor name version` (the 1.2–1.4 array and the 1.5+ `{components, services}`
//!   object).
//! - `dependencies[]`: `ref` → each `dependsOn` as `depends_on`, each `provides` (1.6) as
//!   `provides`.
//! - `vulnerabilities[]` become VEX statements, see [`Builder::cyclonedx_vuln`]: status from
//!   `analysis.state` (`not_affected`/`false_positive` → not affected, `resolved`/
//!   `resolved_with_pedigree` → fixed, `exploitable` → affected, `in_triage` → under
//!   investigation), else from `affects[].versions[].status`; product is the `affects[].ref`
//!   exactly as given (a local bom-ref or a BOM-Link `urn:cdx:<serial>/<version>#<ref>`), or
//!   `*` when the vulnerability names no `affects` at all; aliases are
//!   `references[].id`; the detail joins `analysis.detail`, the responses and the versions.
//!   The source is the document's `serialNumber` (else the root's supplier, else its name).

use roxmltree::{Document, Node, ParsingOptions};
use serde_json::Value;

use super::build::{Builder, RawAffect, RawVuln};
use super::{MAX_XML_NODES, Parsed, clip, json_value, non_empty, normalize_hash, perr};
use crate::model::{Component, Sbom, SbomFormat};
use crate::{MAX_SBOM_BYTES, Result, check_size};

const FORMAT: &str = "cyclonedx";
const NS_PREFIX: &str = "http://cyclonedx.org/schema/bom/";

/// Parse a CycloneDX JSON document.
pub fn parse_json(bytes: &[u8]) -> Result<Sbom> {
    parse_json_detailed(bytes).map(|p| p.sbom)
}

/// [`parse_json`], keeping the VEX version scopes.
pub fn parse_json_detailed(bytes: &[u8]) -> Result<Parsed> {
    check_size("CycloneDX document", bytes, MAX_SBOM_BYTES)?;
    from_json_value(&json_value(FORMAT, bytes)?)
}

/// Parse a CycloneDX XML document.
pub fn parse_xml(bytes: &[u8]) -> Result<Sbom> {
    parse_xml_detailed(bytes).map(|p| p.sbom)
}

// ---------------------------------------------------------------- JSON

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)?.as_str()
}

fn arr<'a>(v: &'a Value, key: &str) -> impl DoubleEndedIterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

/// `v[key].name`, for organizational entities.
fn entity_name(v: &Value, key: &str) -> Option<String> {
    non_empty(v.get(key)?.get("name")?.as_str())
}

pub(crate) fn from_json_value(doc: &Value) -> Result<Parsed> {
    if !doc.is_object() {
        return Err(perr(FORMAT, "document is not a JSON object".into()));
    }
    match s(doc, "bomFormat") {
        Some("CycloneDX") => {}
        Some(other) => return Err(perr(FORMAT, format!("bomFormat is {:?}, not \"CycloneDX\"", clip(other)))),
        None => return Err(perr(FORMAT, "bomFormat missing".into())),
    }
    let spec = match s(doc, "specVersion") {
        Some(v) if v.starts_with("1.") => v.to_string(),
        Some(v) => return Err(perr(FORMAT, format!("specVersion {:?} is not supported (1.x only)", clip(v)))),
        None => return Err(perr(FORMAT, "specVersion missing".into())),
    };
    let mut b = Builder::new(FORMAT, SbomFormat::CycloneDx, spec);
    b.sbom.serial = non_empty(s(doc, "serialNumber"));
    let empty = Value::Null;
    let meta = doc.get("metadata").unwrap_or(&empty);
    b.sbom.timestamp = non_empty(s(meta, "timestamp"));
    for a in arr(meta, "authors") {
        if let Some(author) = contact(non_empty(s(a, "name")), non_empty(s(a, "email"))) {
            b.sbom.authors.push(author);
        }
    }
    match meta.get("tools") {
        Some(Value::Array(tools)) => {
            for t in tools {
                push_tool(&mut b.sbom.authors, s(t, "vendor"), s(t, "name"), s(t, "version"));
            }
        }
        Some(tools @ Value::Object(_)) => {
            for t in arr(tools, "components").chain(arr(tools, "services")) {
                let vendor = entity_name(t, "supplier").or_else(|| entity_name(t, "provider"));
                let vendor = vendor.or_else(|| non_empty(s(t, "group")));
                push_tool(&mut b.sbom.authors, vendor.as_deref(), s(t, "name"), s(t, "version"));
            }
        }
        _ => {}
    }
    let meta_supplier = entity_name(meta, "supplier")
        .or_else(|| entity_name(meta, "manufacturer"))
        .or_else(|| entity_name(meta, "manufacture"));
    if let Some(root) = meta.get("component").filter(|c| c.is_object()) {
        let mut c = json_component(root, None);
        if c.supplier.is_none() {
            c.supplier = meta_supplier.clone();
        }
        b.sbom.name = non_empty(Some(&c.name));
        let id = b.component(c)?;
        json_tree(&mut b, Some(&id), arr(root, "components"), "components", None)?;
        json_tree(&mut b, Some(&id), arr(root, "services"), "services", Some("service"))?;
        b.sbom.root = Some(id);
    }
    json_tree(&mut b, None, arr(doc, "components"), "components", None)?;
    json_tree(&mut b, None, arr(doc, "services"), "services", Some("service"))?;
    for d in arr(doc, "dependencies") {
        let Some(from) = non_empty(s(d, "ref")) else { continue };
        for to in arr(d, "dependsOn") {
            b.relationship(&from, to.as_str().unwrap_or_default(), "depends_on")?;
        }
        for to in arr(d, "provides") {
            b.relationship(&from, to.as_str().unwrap_or_default(), "provides")?;
        }
    }
    let source = vex_source(&b, meta_supplier);
    for v in arr(doc, "vulnerabilities") {
        b.cyclonedx_vuln(json_vuln(v), &source)?;
    }
    Ok(b.finish())
}

/// Add a list of components (or services) and everything nested in them, depth first in
/// document order, with `contains` from each parent.
fn json_tree<'a>(
    b: &mut Builder,
    parent: Option<&str>,
    items: impl DoubleEndedIterator<Item = &'a Value>,
    nested_key: &str,
    kind: Option<&str>,
) -> Result<()> {
    let mut stack: Vec<(Option<String>, &Value)> =
        items.rev().filter(|c| c.is_object()).map(|c| (parent.map(str::to_string), c)).collect();
    while let Some((parent, c)) = stack.pop() {
        let id = b.component(json_component(c, kind))?;
        if let Some(p) = parent {
            b.relationship(&p, &id, "contains")?;
        }
        for child in arr(c, nested_key).rev().filter(|c| c.is_object()) {
            stack.push((Some(id.clone()), child));
        }
    }
    Ok(())
}

fn json_component(c: &Value, kind: Option<&str>) -> Component {
    let supplier = entity_name(c, "supplier")
        .or_else(|| entity_name(c, "manufacturer"))
        .or_else(|| entity_name(c, "provider"))
        .or_else(|| non_empty(s(c, "publisher")))
        .or_else(|| arr(c, "authors").find_map(|a| non_empty(s(a, "name"))))
        .or_else(|| non_empty(s(c, "author")));
    let hashes = arr(c, "hashes").filter_map(|h| normalize_hash(s(h, "alg")?, s(h, "content")?)).collect();
    Component {
        id: non_empty(s(c, "bom-ref")).unwrap_or_default(),
        name: non_empty(s(c, "name")).unwrap_or_default(),
        version: non_empty(s(c, "version")),
        supplier,
        purl: non_empty(s(c, "purl")),
        cpe: non_empty(s(c, "cpe")),
        hashes,
        kind: kind.map(str::to_string).or_else(|| non_empty(s(c, "type"))),
    }
}

fn json_vuln(v: &Value) -> RawVuln {
    let empty = Value::Null;
    let analysis = v.get("analysis").unwrap_or(&empty);
    RawVuln {
        id: non_empty(s(v, "id")),
        aliases: arr(v, "references").filter_map(|r| non_empty(s(r, "id"))).collect(),
        state: non_empty(s(analysis, "state")),
        justification: non_empty(s(analysis, "justification")),
        responses: arr(analysis, "response").filter_map(|r| non_empty(r.as_str())).collect(),
        detail: non_empty(s(analysis, "detail")),
        affects: arr(v, "affects")
            .filter_map(|a| {
                Some(RawAffect {
                    reference: non_empty(s(a, "ref"))?,
                    versions: arr(a, "versions")
                        .filter_map(|ver| {
                            let which = non_empty(s(ver, "version")).or_else(|| non_empty(s(ver, "range")))?;
                            Some((which, non_empty(s(ver, "status"))))
                        })
                        .collect(),
                })
            })
            .collect(),
    }
}

// ---------------------------------------------------------------- shared

fn contact(name: Option<String>, email: Option<String>) -> Option<String> {
    match (name, email) {
        (Some(n), Some(e)) => Some(format!("{n} ({e})")),
        (Some(n), None) => Some(n),
        (None, Some(e)) => Some(e),
        (None, None) => None,
    }
}

fn push_tool(authors: &mut Vec<String>, vendor: Option<&str>, name: Option<&str>, version: Option<&str>) {
    let (vendor, name) = (non_empty(vendor), non_empty(name));
    // "CycloneDX" + "CycloneDX Maven plugin": the vendor once.
    let vendor = vendor.filter(|v| !name.as_deref().is_some_and(|n| n.to_lowercase().contains(&v.to_lowercase())));
    let parts: Vec<String> = [vendor, name, non_empty(version)].into_iter().flatten().collect();
    if parts.is_empty() {
        return;
    }
    let tool = format!("Tool: {}", parts.join(" "));
    if !authors.contains(&tool) {
        authors.push(tool);
    }
}

/// Who a document's VEX statements come from: its serial, else the root's supplier, else
/// the root's name.
fn vex_source(b: &Builder, meta_supplier: Option<String>) -> String {
    if let Some(serial) = &b.sbom.serial {
        return serial.clone();
    }
    let root = b.sbom.root.as_ref().and_then(|r| b.sbom.components.iter().find(|c| &c.id == r));
    meta_supplier
        .or_else(|| root.and_then(|c| c.supplier.clone()))
        .or_else(|| root.map(|c| c.name.clone()).filter(|n| !n.is_empty()))
        .unwrap_or_else(|| "cyclonedx (no serialNumber)".to_string())
}

// ---------------------------------------------------------------- XML

/// [`parse_xml`], keeping the VEX version scopes.
pub fn parse_xml_detailed(bytes: &[u8]) -> Result<Parsed> {
    check_size("CycloneDX document", bytes, MAX_SBOM_BYTES)?;
    let text = std::str::from_utf8(super::strip_bom(bytes))
        .map_err(|e| perr(FORMAT, format!("XML is not UTF-8 (byte {})", e.valid_up_to())))?;
    let options = ParsingOptions { allow_dtd: false, nodes_limit: MAX_XML_NODES, ..ParsingOptions::default() };
    let doc = Document::parse_with_options(text, options).map_err(|e| perr(FORMAT, clip(&format!("XML: {e}"))))?;
    let bom = doc.root_element();
    let ns = bom.tag_name().namespace().unwrap_or_default();
    let Some(spec) = ns.strip_prefix(NS_PREFIX).filter(|v| v.starts_with("1.")) else {
        return Err(perr(
            FORMAT,
            format!(
                "root element <{}> in namespace {:?} is not a CycloneDX 1.x <bom>",
                clip(bom.tag_name().name()),
                clip(ns)
            ),
        ));
    };
    if bom.tag_name().name() != "bom" {
        return Err(perr(FORMAT, format!("root element is <{}>, not <bom>", clip(bom.tag_name().name()))));
    }
    let x = Xml { ns };
    let mut b = Builder::new(FORMAT, SbomFormat::CycloneDx, spec.to_string());
    b.sbom.serial = non_empty(bom.attribute("serialNumber"));
    let mut meta_supplier = None;
    if let Some(meta) = x.child(bom, "metadata") {
        b.sbom.timestamp = x.text(meta, "timestamp");
        if let Some(authors) = x.child(meta, "authors") {
            for a in x.children(authors, "author") {
                if let Some(author) = contact(x.text(a, "name"), x.text(a, "email")) {
                    b.sbom.authors.push(author);
                }
            }
        }
        if let Some(tools) = x.child(meta, "tools") {
            for t in x.children(tools, "tool") {
                let (vendor, name, version) = (x.text(t, "vendor"), x.text(t, "name"), x.text(t, "version"));
                push_tool(&mut b.sbom.authors, vendor.as_deref(), name.as_deref(), version.as_deref());
            }
            let comps = x.child(tools, "components").into_iter().flat_map(|c| x.children(c, "component"));
            let servs = x.child(tools, "services").into_iter().flat_map(|c| x.children(c, "service"));
            for t in comps.chain(servs) {
                let vendor = x.entity(t, "supplier").or_else(|| x.entity(t, "provider")).or_else(|| x.text(t, "group"));
                let (name, version) = (x.text(t, "name"), x.text(t, "version"));
                push_tool(&mut b.sbom.authors, vendor.as_deref(), name.as_deref(), version.as_deref());
            }
        }
        meta_supplier = x
            .entity(meta, "supplier")
            .or_else(|| x.entity(meta, "manufacturer"))
            .or_else(|| x.entity(meta, "manufacture"));
        if let Some(root) = x.child(meta, "component") {
            let mut c = x.component(root, None);
            if c.supplier.is_none() {
                c.supplier = meta_supplier.clone();
            }
            b.sbom.name = non_empty(Some(&c.name));
            let id = b.component(c)?;
            x.tree(&mut b, Some(&id), root, "components", "component", None)?;
            x.tree(&mut b, Some(&id), root, "services", "service", Some("service"))?;
            b.sbom.root = Some(id);
        }
    }
    x.tree(&mut b, None, bom, "components", "component", None)?;
    x.tree(&mut b, None, bom, "services", "service", Some("service"))?;
    if let Some(deps) = x.child(bom, "dependencies") {
        for d in x.children(deps, "dependency") {
            let Some(from) = non_empty(d.attribute("ref")) else { continue };
            for to in x.children(d, "dependency") {
                b.relationship(&from, to.attribute("ref").unwrap_or_default(), "depends_on")?;
            }
            for to in x.children(d, "provides") {
                b.relationship(&from, to.attribute("ref").unwrap_or_default(), "provides")?;
            }
        }
    }
    let source = vex_source(&b, meta_supplier);
    if let Some(vulns) = x.child(bom, "vulnerabilities") {
        for v in x.children(vulns, "vulnerability") {
            b.cyclonedx_vuln(x.vuln(v), &source)?;
        }
    }
    Ok(b.finish())
}

/// Element lookups in the document's CycloneDX namespace (elements of other namespaces,
/// i.e. extensions, are ignored).
struct Xml<'n> {
    ns: &'n str,
}

impl<'n> Xml<'n> {
    fn children<'a, 'i>(
        &self,
        n: Node<'a, 'i>,
        name: &'static str,
    ) -> impl Iterator<Item = Node<'a, 'i>> + use<'a, 'i, 'n> {
        let ns = self.ns;
        n.children()
            .filter(move |c| c.is_element() && c.tag_name().name() == name && c.tag_name().namespace() == Some(ns))
    }

    fn child<'a, 'i>(&self, n: Node<'a, 'i>, name: &'static str) -> Option<Node<'a, 'i>> {
        self.children(n, name).next()
    }

    /// Trimmed text of the child element `name` (text and CDATA runs joined).
    fn text(&self, n: Node<'_, '_>, name: &'static str) -> Option<String> {
        self.child(n, name).and_then(own_text)
    }

    /// `<name><name>...</name></name>` of an organizational entity.
    fn entity(&self, n: Node<'_, '_>, name: &'static str) -> Option<String> {
        self.child(n, name).and_then(|e| self.text(e, "name"))
    }

    fn component(&self, c: Node<'_, '_>, kind: Option<&str>) -> Component {
        let supplier = self
            .entity(c, "supplier")
            .or_else(|| self.entity(c, "manufacturer"))
            .or_else(|| self.entity(c, "provider"))
            .or_else(|| self.text(c, "publisher"))
            .or_else(|| {
                let authors = self.child(c, "authors")?;
                self.children(authors, "author").find_map(|a| self.text(a, "name"))
            })
            .or_else(|| self.text(c, "author"));
        let hashes = self
            .child(c, "hashes")
            .into_iter()
            .flat_map(|h| self.children(h, "hash"))
            .filter_map(|h| normalize_hash(h.attribute("alg")?, &own_text(h)?))
            .collect();
        Component {
            id: non_empty(c.attribute("bom-ref")).unwrap_or_default(),
            name: self.text(c, "name").unwrap_or_default(),
            version: self.text(c, "version"),
            supplier,
            purl: self.text(c, "purl"),
            cpe: self.text(c, "cpe"),
            hashes,
            kind: kind.map(str::to_string).or_else(|| non_empty(c.attribute("type"))),
        }
    }

    /// The `<list><item>` children of `n` and everything nested in them, as in [`json_tree`].
    fn tree(
        &self,
        b: &mut Builder,
        parent: Option<&str>,
        n: Node<'_, '_>,
        list: &'static str,
        item: &'static str,
        kind: Option<&str>,
    ) -> Result<()> {
        let Some(l) = self.child(n, list) else { return Ok(()) };
        let mut stack: Vec<(Option<String>, Node<'_, '_>)> =
            self.children(l, item).map(|c| (parent.map(str::to_string), c)).collect();
        stack.reverse();
        while let Some((parent, c)) = stack.pop() {
            let id = b.component(self.component(c, kind))?;
            if let Some(p) = parent {
                b.relationship(&p, &id, "contains")?;
            }
            if let Some(kids) = self.child(c, list) {
                let mut kids: Vec<_> = self.children(kids, item).map(|k| (Some(id.clone()), k)).collect();
                kids.reverse();
                stack.extend(kids);
            }
        }
        Ok(())
    }

    fn vuln(&self, v: Node<'_, '_>) -> RawVuln {
        let analysis = self.child(v, "analysis");
        let aliases = self
            .child(v, "references")
            .into_iter()
            .flat_map(|r| self.children(r, "reference"))
            .filter_map(|r| self.text(r, "id"))
            .collect();
        let responses = analysis
            .and_then(|a| self.child(a, "responses"))
            .into_iter()
            .flat_map(|r| self.children(r, "response"))
            .filter_map(own_text)
            .collect();
        let affects = self
            .child(v, "affects")
            .into_iter()
            .flat_map(|a| self.children(a, "target"))
            .filter_map(|t| {
                let versions = self
                    .child(t, "versions")
                    .into_iter()
                    .flat_map(|vs| self.children(vs, "version"))
                    .filter_map(|ver| {
                        let which = self.text(ver, "version").or_else(|| self.text(ver, "range"))?;
                        Some((which, self.text(ver, "status")))
                    })
                    .collect();
                Some(RawAffect { reference: self.text(t, "ref")?, versions })
            })
            .collect();
        RawVuln {
            id: self.text(v, "id"),
            aliases,
            state: analysis.and_then(|a| self.text(a, "state")),
            justification: analysis.and_then(|a| self.text(a, "justification")),
            responses,
            detail: analysis.and_then(|a| self.text(a, "detail")),
            affects,
        }
    }
}

/// The trimmed text directly inside an element.
fn own_text(n: Node<'_, '_>) -> Option<String> {
    let mut out = String::new();
    for t in n.children().filter(Node::is_text) {
        out.push_str(t.text().unwrap_or_default());
    }
    non_empty(Some(&out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FindingStatus;

    #[test]
    fn json_nested_and_vex() -> Result<()> {
        let doc = br#"{"bomFormat":"CycloneDX","specVersion":"1.6","serialNumber":"urn:uuid:1",
          "metadata":{"timestamp":"2024-01-01T00:00:00Z","tools":{"components":[{"name":"t","version":"1"}]},
            "component":{"bom-ref":"dev","name":"Pump","type":"device"},"supplier":{"name":"Acme"}},
          "components":[{"bom-ref":"fw","type":"firmware","name":"fw","version":"2",
             "hashes":[{"alg":"SHA-256","content":"AB"}],
             "components":[{"name":"zlib","version":"1.2.11","purl":"pkg:generic/zlib@1.2.11"}]}],
          "dependencies":[{"ref":"dev","dependsOn":["fw"]}],
          "vulnerabilities":[{"id":"CVE-1","affects":[{"ref":"fw","versions":[
             {"version":"2","status":"affected"},{"range":"vers:generic/>=3","status":"unaffected"}]}]}],
          "unknownField":{"x":[1,2]}}"#;
        let p = parse_json_detailed(doc)?;
        let sbom = &p.sbom;
        assert_eq!(sbom.root.as_deref(), Some("dev"));
        assert_eq!(sbom.authors, vec!["Tool: t 1".to_string()]);
        assert_eq!(sbom.components.len(), 3);
        assert_eq!(sbom.components.first().and_then(|c| c.supplier.as_deref()), Some("Acme"));
        assert_eq!(sbom.components.get(1).map(|c| c.hashes.clone()), Some(vec!["sha256:ab".to_string()]));
        assert_eq!(sbom.components.get(2).map(|c| c.id.as_str()), Some("component-3"));
        assert!(sbom.relationships.iter().any(|r| r.from == "fw" && r.to == "component-3" && r.kind == "contains"));
        assert_eq!(sbom.vex.len(), 2);
        assert_eq!(sbom.vex.first().map(|v| v.status), Some(FindingStatus::Affected));
        assert_eq!(sbom.vex.get(1).map(|v| v.status), Some(FindingStatus::NotAffected));
        assert_eq!(p.vex_versions.get(1), Some(&vec!["vers:generic/>=3".to_string()]));
        Ok(())
    }

    #[test]
    fn xml_nested_tools_and_vex() -> Result<()> {
        let doc = br#"<?xml version="1.0"?>
<bom xmlns="http://cyclonedx.org/schema/bom/1.6" serialNumber="urn:uuid:2" version="1">
  <metadata><timestamp>2024-01-01T00:00:00Z</timestamp>
    <tools><components><component type="application"><group>acme</group><name>gen</name><version>3</version></component></components></tools>
    <authors><author><name>Ann</name><email>a@x</email></author></authors>
    <component type="device" bom-ref="dev"><name>Pump</name><manufacturer><name>Acme</name></manufacturer></component>
  </metadata>
  <components>
    <component type="firmware" bom-ref="fw"><name>fw</name><version>2</version>
      <hashes><hash alg="SHA-256">AB</hash></hashes>
      <components><component type="library" bom-ref="z"><name><![CDATA[zlib]]></name><version>1.2.11</version></component></components>
    </component>
  </components>
  <dependencies><dependency ref="dev"><dependency ref="fw"/></dependency></dependencies>
  <vulnerabilities><vulnerability bom-ref="v1"><id>CVE-1</id>
    <references><reference><id>GHSA-x</id><source><name>GitHub</name></source></reference></references>
    <analysis><state>not_affected</state><justification>code_not_reachable</justification>
      <responses><response>will_not_fix</response></responses><detail>no</detail></analysis>
    <affects><target><ref>z</ref><versions><version><version>1.2.11</version></version></versions></target></affects>
  </vulnerability></vulnerabilities>
</bom>"#;
        let p = parse_xml_detailed(doc)?;
        let s = &p.sbom;
        assert_eq!(s.spec_version, "1.6");
        assert_eq!(s.authors, vec!["Ann (a@x)".to_string(), "Tool: acme gen 3".to_string()]);
        assert_eq!(s.components.first().and_then(|c| c.supplier.as_deref()), Some("Acme"));
        assert_eq!(s.components.get(2).map(|c| c.name.as_str()), Some("zlib"));
        assert!(s.relationships.iter().any(|r| r.from == "fw" && r.to == "z" && r.kind == "contains"));
        assert!(s.relationships.iter().any(|r| r.from == "dev" && r.to == "fw" && r.kind == "depends_on"));
        let v = s.vex.first().cloned();
        assert_eq!(v.as_ref().map(|v| v.status), Some(FindingStatus::NotAffected));
        assert_eq!(v.as_ref().map(|v| v.aliases.clone()), Some(vec!["GHSA-x".to_string()]));
        assert_eq!(
            v.as_ref().and_then(|v| v.detail.clone()).as_deref(),
            Some("no\nresponse: will_not_fix\nversions: 1.2.11")
        );
        assert_eq!(v.map(|v| v.source), Some("urn:uuid:2".to_string()));
        Ok(())
    }

    #[test]
    fn xml_refuses_dtd_and_other_roots() {
        let dtd = br#"<?xml version="1.0"?><!DOCTYPE bom [<!ENTITY x SYSTEM "file:///etc/passwd">]>
            <bom xmlns="http://cyclonedx.org/schema/bom/1.4"><components/></bom>"#;
        assert!(parse_xml(dtd).is_err());
        assert!(parse_xml(br#"<bom xmlns="urn:other"/>"#).is_err());
        assert!(parse_xml(br#"<sbom xmlns="http://cyclonedx.org/schema/bom/1.4"/>"#).is_err());
        assert!(parse_xml(br#"<bom xmlns="http://cyclonedx.org/schema/bom/1.5"/>"#).is_ok());
    }
}
