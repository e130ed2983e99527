//! The CSAF 2.0 validator: the mandatory tests of section 6.1 and the schema essentials.
//!
//! It works on the JSON value rather than the typed document so that it can report on
//! documents the typed reader would refuse, and so every finding carries a JSON pointer.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;

use super::MAX_BRANCH_DEPTH;
use super::cvss_check::{MetricDef, Parsed, V2_METRICS, V3_METRICS, parse_vector, severity, v2_scores, v3_scores};

/// One failed test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The test number (`"6.1.1"`), `"schema"` for the JSON-schema essentials, or `"limits"`.
    pub test: &'static str,
    /// JSON pointer to the offending value.
    pub path: String,
    pub message: String,
}

/// The mandatory tests [`validate`] runs (6.1.1 to 6.1.33, all of them).
pub const IMPLEMENTED_TESTS: &[&str] = &[
    "6.1.1",
    "6.1.2",
    "6.1.3",
    "6.1.4",
    "6.1.5",
    "6.1.6",
    "6.1.7",
    "6.1.8",
    "6.1.9",
    "6.1.10",
    "6.1.11",
    "6.1.12",
    "6.1.13",
    "6.1.14",
    "6.1.15",
    "6.1.16",
    "6.1.17",
    "6.1.18",
    "6.1.19",
    "6.1.20",
    "6.1.21",
    "6.1.22",
    "6.1.23",
    "6.1.24",
    "6.1.25",
    "6.1.26",
    "6.1.27.1",
    "6.1.27.2",
    "6.1.27.3",
    "6.1.27.4",
    "6.1.27.5",
    "6.1.27.6",
    "6.1.27.7",
    "6.1.27.8",
    "6.1.27.9",
    "6.1.27.10",
    "6.1.27.11",
    "6.1.28",
    "6.1.29",
    "6.1.30",
    "6.1.31",
    "6.1.32",
    "6.1.33",
];

/// Run the schema essentials and every mandatory test; an empty result means valid.
pub fn validate(doc: &Value) -> Vec<Violation> {
    let mut v = Checker::default();
    schema(doc, &mut v);
    let tree = Tree::collect(doc, &mut v);
    product_ids(doc, &tree, &mut v);
    circular(doc, &mut v);
    groups(doc, &tree, &mut v);
    vulnerabilities(doc, &tree, &mut v);
    helpers(&tree, &mut v);
    language(doc, &mut v);
    revision_history(doc, &mut v);
    category(doc, &mut v);
    profiles(doc, &tree, &mut v);
    product_versions(&tree, &mut v);
    v.out
}

#[derive(Default)]
struct Checker {
    out: Vec<Violation>,
}

impl Checker {
    fn add(&mut self, test: &'static str, path: impl Into<String>, message: impl Into<String>) {
        // A hostile document could produce millions of findings; a few thousand say enough.
        if self.out.len() < 10_000 {
            self.out.push(Violation { test, path: path.into(), message: message.into() });
        }
    }
}

fn cap(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

fn arr(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn strings<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = (usize, &'a str)> {
    arr(v.get(key)).iter().enumerate().filter_map(|(i, x)| x.as_str().map(|s| (i, s)))
}

// ---------------------------------------------------------------------------------------
// Schema essentials.

const NOTE_CATEGORIES: &[&str] = &["description", "details", "faq", "general", "legal_disclaimer", "other", "summary"];
const BRANCH_CATEGORIES: &[&str] = &[
    "architecture",
    "host_name",
    "language",
    "legacy",
    "patch_level",
    "product_family",
    "product_name",
    "product_version",
    "product_version_range",
    "service_pack",
    "specification",
    "vendor",
];
const RELATIONSHIP_CATEGORIES: &[&str] =
    &["default_component_of", "external_component_of", "installed_on", "installed_with", "optional_component_of"];
const REMEDIATION_CATEGORIES: &[&str] = &["mitigation", "no_fix_planned", "none_available", "vendor_fix", "workaround"];
const FLAG_LABELS: &[&str] = &[
    "component_not_present",
    "inline_mitigations_already_exist",
    "vulnerable_code_cannot_be_controlled_by_adversary",
    "vulnerable_code_not_in_execute_path",
    "vulnerable_code_not_present",
];
const THREAT_CATEGORIES: &[&str] = &["exploit_status", "impact", "target_set"];
const PUBLISHER_CATEGORIES: &[&str] = &["coordinator", "discoverer", "other", "translator", "user", "vendor"];
const STATUSES: &[&str] = &["draft", "final", "interim"];
const TLP_LABELS: &[&str] = &["AMBER", "GREEN", "RED", "WHITE"];
const PARTIES: &[&str] = &["coordinator", "discoverer", "other", "user", "vendor"];
const INVOLVEMENT_STATUSES: &[&str] =
    &["completed", "contact_attempted", "disputed", "in_progress", "not_contacted", "open"];
const REFERENCE_CATEGORIES: &[&str] = &["external", "self"];
const STATUS_LISTS: &[&str] = &[
    "first_affected",
    "first_fixed",
    "fixed",
    "known_affected",
    "known_not_affected",
    "last_affected",
    "recommended",
    "under_investigation",
];

fn require(v: &mut Checker, obj: Option<&Value>, path: &str, keys: &[&str]) {
    let Some(obj) = obj else { return };
    if !obj.is_object() {
        v.add("schema", path, "must be an object");
        return;
    }
    for key in keys {
        match obj.get(*key) {
            None => v.add("schema", format!("{path}/{key}"), format!("required property {key} is missing")),
            Some(Value::String(s)) if s.is_empty() => {
                v.add("schema", format!("{path}/{key}"), format!("{key} must not be empty"))
            }
            Some(_) => {}
        }
    }
}

fn one_of(v: &mut Checker, obj: &Value, path: &str, key: &str, allowed: &[&str]) {
    match obj.get(key) {
        None => {}
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => {}
        Some(other) => v.add(
            "schema",
            format!("{path}/{key}"),
            format!("{key} {:?} is not one of the allowed values", cap(&other.to_string())),
        ),
    }
}

fn schema(doc: &Value, v: &mut Checker) {
    if !doc.is_object() {
        v.add("schema", "", "a CSAF document is a JSON object");
        return;
    }
    require(v, Some(doc), "", &["document"]);
    let d = doc.get("document");
    require(v, d, "/document", &["category", "csaf_version", "publisher", "title", "tracking"]);
    let Some(d) = d else { return };
    if let Some(version) = d.get("csaf_version")
        && version != "2.0"
    {
        v.add("schema", "/document/csaf_version", "csaf_version must be \"2.0\"");
    }
    if let Some(cat) = text(d, "category") {
        let bad_edge = |c: Option<char>| c.is_some_and(|c| c.is_whitespace() || matches!(c, '-' | '_' | '.'));
        if bad_edge(cat.chars().next()) || bad_edge(cat.chars().last()) {
            v.add("schema", "/document/category", "category must not start or end with white space, -, _ or .");
        }
    }
    let publisher = d.get("publisher");
    require(v, publisher, "/document/publisher", &["category", "name", "namespace"]);
    if let Some(p) = publisher {
        one_of(v, p, "/document/publisher", "category", PUBLISHER_CATEGORIES);
    }
    let tracking = d.get("tracking");
    require(
        v,
        tracking,
        "/document/tracking",
        &["current_release_date", "id", "initial_release_date", "revision_history", "status", "version"],
    );
    if let Some(t) = tracking {
        one_of(v, t, "/document/tracking", "status", STATUSES);
        if t.get("revision_history").is_some_and(|r| arr(Some(r)).is_empty()) {
            v.add("schema", "/document/tracking/revision_history", "revision_history needs at least one item");
        }
        for (i, item) in arr(t.get("revision_history")).iter().enumerate() {
            require(v, Some(item), &format!("/document/tracking/revision_history/{i}"), &["date", "number", "summary"]);
        }
    }
    if let Some(tlp) = d.pointer("/distribution/tlp") {
        require(v, Some(tlp), "/document/distribution/tlp", &["label"]);
        one_of(v, tlp, "/document/distribution/tlp", "label", TLP_LABELS);
    }
    notes_schema(v, d.get("notes"), "/document/notes");
    references_schema(v, d.get("references"), "/document/references");

    if let Some(tree) = doc.get("product_tree") {
        for (i, g) in arr(tree.get("product_groups")).iter().enumerate() {
            let path = format!("/product_tree/product_groups/{i}");
            require(v, Some(g), &path, &["group_id", "product_ids"]);
            if arr(g.get("product_ids")).len() < 2 {
                v.add("schema", format!("{path}/product_ids"), "a product group needs at least two products");
            }
        }
        for (i, r) in arr(tree.get("relationships")).iter().enumerate() {
            let path = format!("/product_tree/relationships/{i}");
            require(
                v,
                Some(r),
                &path,
                &["category", "full_product_name", "product_reference", "relates_to_product_reference"],
            );
            one_of(v, r, &path, "category", RELATIONSHIP_CATEGORIES);
        }
    }
    for (i, vul) in arr(doc.get("vulnerabilities")).iter().enumerate() {
        let path = format!("/vulnerabilities/{i}");
        notes_schema(v, vul.get("notes"), &format!("{path}/notes"));
        references_schema(v, vul.get("references"), &format!("{path}/references"));
        if let Some(cwe) = vul.get("cwe") {
            require(v, Some(cwe), &format!("{path}/cwe"), &["id", "name"]);
        }
        if let Some(obj) = vul.get("product_status").and_then(Value::as_object) {
            if !STATUS_LISTS.iter().any(|l| obj.contains_key(*l)) {
                v.add("schema", format!("{path}/product_status"), "product_status needs at least one list");
            }
            for (list, ids) in obj {
                if arr(Some(ids)).is_empty() && STATUS_LISTS.contains(&list.as_str()) {
                    v.add("schema", format!("{path}/product_status/{list}"), "status lists must not be empty");
                }
            }
        }
        for (j, r) in arr(vul.get("remediations")).iter().enumerate() {
            let p = format!("{path}/remediations/{j}");
            require(v, Some(r), &p, &["category", "details"]);
            one_of(v, r, &p, "category", REMEDIATION_CATEGORIES);
        }
        for (j, f) in arr(vul.get("flags")).iter().enumerate() {
            let p = format!("{path}/flags/{j}");
            require(v, Some(f), &p, &["label"]);
            one_of(v, f, &p, "label", FLAG_LABELS);
        }
        for (j, t) in arr(vul.get("threats")).iter().enumerate() {
            let p = format!("{path}/threats/{j}");
            require(v, Some(t), &p, &["category", "details"]);
            one_of(v, t, &p, "category", THREAT_CATEGORIES);
        }
        for (j, inv) in arr(vul.get("involvements")).iter().enumerate() {
            let p = format!("{path}/involvements/{j}");
            require(v, Some(inv), &p, &["party", "status"]);
            one_of(v, inv, &p, "party", PARTIES);
            one_of(v, inv, &p, "status", INVOLVEMENT_STATUSES);
        }
        for (j, s) in arr(vul.get("scores")).iter().enumerate() {
            let p = format!("{path}/scores/{j}");
            require(v, Some(s), &p, &["products"]);
            if !["cvss_v2", "cvss_v3"].iter().any(|k| s.get(*k).is_some()) {
                v.add("schema", p, "a score needs cvss_v2 or cvss_v3");
            }
        }
    }
}

fn notes_schema(v: &mut Checker, notes: Option<&Value>, path: &str) {
    for (i, n) in arr(notes).iter().enumerate() {
        let p = format!("{path}/{i}");
        require(v, Some(n), &p, &["category", "text"]);
        one_of(v, n, &p, "category", NOTE_CATEGORIES);
    }
}

fn references_schema(v: &mut Checker, refs: Option<&Value>, path: &str) {
    for (i, r) in arr(refs).iter().enumerate() {
        let p = format!("{path}/{i}");
        require(v, Some(r), &p, &["summary", "url"]);
        one_of(v, r, &p, "category", REFERENCE_CATEGORIES);
    }
}

// ---------------------------------------------------------------------------------------
// The product tree.

/// Everything the tests need from `/product_tree`.
#[derive(Default)]
struct Tree<'a> {
    /// Defined product ids with their paths, in document order.
    products: Vec<(&'a str, String)>,
    /// Product group ids with path and members.
    groups: Vec<(&'a str, String, Vec<&'a str>)>,
    /// `product_identification_helper` objects with their paths.
    helpers: Vec<(&'a Value, String)>,
    /// Names of `product_version` branches with their paths.
    versions: Vec<(&'a str, String)>,
}

impl<'a> Tree<'a> {
    fn collect(doc: &'a Value, v: &mut Checker) -> Self {
        let mut t = Tree::default();
        let Some(tree) = doc.get("product_tree") else { return t };
        for (i, b) in arr(tree.get("branches")).iter().enumerate() {
            t.branch(b, format!("/product_tree/branches/{i}"), 1, v);
        }
        for (i, f) in arr(tree.get("full_product_names")).iter().enumerate() {
            t.full_product_name(f, format!("/product_tree/full_product_names/{i}"), v);
        }
        for (i, r) in arr(tree.get("relationships")).iter().enumerate() {
            if let Some(f) = r.get("full_product_name") {
                t.full_product_name(f, format!("/product_tree/relationships/{i}/full_product_name"), v);
            }
        }
        for (i, g) in arr(tree.get("product_groups")).iter().enumerate() {
            if let Some(id) = text(g, "group_id") {
                let members = strings(g, "product_ids").map(|(_, s)| s).collect();
                t.groups.push((id, format!("/product_tree/product_groups/{i}/group_id"), members));
            }
        }
        t
    }

    fn branch(&mut self, b: &'a Value, path: String, depth: usize, v: &mut Checker) {
        if depth > MAX_BRANCH_DEPTH {
            v.add("limits", path, format!("branches nested deeper than {MAX_BRANCH_DEPTH}"));
            return;
        }
        require(v, Some(b), &path, &["category", "name"]);
        one_of(v, b, &path, "category", BRANCH_CATEGORIES);
        if text(b, "category") == Some("product_version")
            && let Some(name) = text(b, "name")
        {
            self.versions.push((name, format!("{path}/name")));
        }
        let has_children = b.get("branches").is_some();
        let has_product = b.get("product").is_some();
        if has_children == has_product {
            v.add("schema", path.clone(), "a branch has either branches or a product");
        }
        if let Some(p) = b.get("product") {
            self.full_product_name(p, format!("{path}/product"), v);
        }
        for (i, child) in arr(b.get("branches")).iter().enumerate() {
            self.branch(child, format!("{path}/branches/{i}"), depth + 1, v);
        }
    }

    fn full_product_name(&mut self, f: &'a Value, path: String, v: &mut Checker) {
        require(v, Some(f), &path, &["name", "product_id"]);
        if let Some(id) = text(f, "product_id") {
            self.products.push((id, format!("{path}/product_id")));
        }
        if let Some(h) = f.get("product_identification_helper") {
            self.helpers.push((h, format!("{path}/product_identification_helper")));
        }
    }

    fn defined(&self) -> HashSet<&'a str> {
        self.products.iter().map(|(id, _)| *id).collect()
    }

    fn group_members(&self) -> HashMap<&'a str, Vec<&'a str>> {
        let mut map: HashMap<&str, Vec<&str>> = HashMap::new();
        for (id, _, members) in &self.groups {
            map.entry(id).or_default().extend(members.iter().copied());
        }
        map
    }
}

/// Every product id reference in the document with its path.
fn product_refs(doc: &Value) -> Vec<(&str, String)> {
    let mut out = Vec::new();
    if let Some(tree) = doc.get("product_tree") {
        for (i, g) in arr(tree.get("product_groups")).iter().enumerate() {
            for (j, id) in strings(g, "product_ids") {
                out.push((id, format!("/product_tree/product_groups/{i}/product_ids/{j}")));
            }
        }
        for (i, r) in arr(tree.get("relationships")).iter().enumerate() {
            for key in ["product_reference", "relates_to_product_reference"] {
                if let Some(id) = text(r, key) {
                    out.push((id, format!("/product_tree/relationships/{i}/{key}")));
                }
            }
        }
    }
    for (i, vul) in arr(doc.get("vulnerabilities")).iter().enumerate() {
        if let Some(ps) = vul.get("product_status") {
            for list in STATUS_LISTS {
                for (j, id) in strings(ps, list) {
                    out.push((id, format!("/vulnerabilities/{i}/product_status/{list}/{j}")));
                }
            }
        }
        for (key, field) in [
            ("remediations", "product_ids"),
            ("scores", "products"),
            ("threats", "product_ids"),
            ("flags", "product_ids"),
        ] {
            for (j, item) in arr(vul.get(key)).iter().enumerate() {
                for (k, id) in strings(item, field) {
                    out.push((id, format!("/vulnerabilities/{i}/{key}/{j}/{field}/{k}")));
                }
            }
        }
    }
    out
}

/// 6.1.1 and 6.1.2.
fn product_ids(doc: &Value, tree: &Tree<'_>, v: &mut Checker) {
    let defined = tree.defined();
    for (id, path) in product_refs(doc) {
        if !defined.contains(id) {
            v.add("6.1.1", path, format!("product id {:?} is not defined in the product tree", cap(id)));
        }
    }
    let mut seen = HashSet::new();
    for (id, path) in &tree.products {
        if !seen.insert(*id) {
            v.add("6.1.2", path.clone(), format!("product id {:?} is defined more than once", cap(id)));
        }
    }
}

/// 6.1.3: a relationship must not define a product in terms of itself, directly or through
/// other relationships.
fn circular(doc: &Value, v: &mut Checker) {
    let rels = arr(doc.pointer("/product_tree/relationships"));
    let mut edges: HashMap<&str, Vec<&str>> = HashMap::new();
    for r in rels {
        if let Some(id) = r.pointer("/full_product_name/product_id").and_then(Value::as_str) {
            let e = edges.entry(id).or_default();
            e.extend(text(r, "product_reference"));
            e.extend(text(r, "relates_to_product_reference"));
        }
    }
    for (i, r) in rels.iter().enumerate() {
        let Some(start) = r.pointer("/full_product_name/product_id").and_then(Value::as_str) else { continue };
        let mut stack: Vec<&str> = edges.get(start).cloned().unwrap_or_default();
        let mut visited = HashSet::new();
        while let Some(node) = stack.pop() {
            if node == start {
                v.add(
                    "6.1.3",
                    format!("/product_tree/relationships/{i}/full_product_name/product_id"),
                    format!("product id {:?} is defined in terms of itself", cap(start)),
                );
                break;
            }
            if visited.insert(node) {
                stack.extend(edges.get(node).into_iter().flatten().copied());
            }
        }
    }
}

/// 6.1.4 and 6.1.5.
fn groups(doc: &Value, tree: &Tree<'_>, v: &mut Checker) {
    let defined: HashSet<&str> = tree.groups.iter().map(|(id, _, _)| *id).collect();
    for (i, vul) in arr(doc.get("vulnerabilities")).iter().enumerate() {
        for key in ["remediations", "threats", "flags"] {
            for (j, item) in arr(vul.get(key)).iter().enumerate() {
                for (k, id) in strings(item, "group_ids") {
                    if !defined.contains(id) {
                        v.add(
                            "6.1.4",
                            format!("/vulnerabilities/{i}/{key}/{j}/group_ids/{k}"),
                            format!("product group {:?} is not defined", cap(id)),
                        );
                    }
                }
            }
        }
    }
    let mut seen = HashSet::new();
    for (id, path, _) in &tree.groups {
        if !seen.insert(*id) {
            v.add("6.1.5", path.clone(), format!("product group {:?} is defined more than once", cap(id)));
        }
    }
}

/// Product ids of an item: its `product_ids` plus the members of its `group_ids`.
fn item_products<'a>(item: &'a Value, groups: &HashMap<&'a str, Vec<&'a str>>) -> HashSet<&'a str> {
    let mut out: HashSet<&str> = strings(item, "product_ids").map(|(_, s)| s).collect();
    for (_, g) in strings(item, "group_ids") {
        out.extend(groups.get(g).into_iter().flatten().copied());
    }
    out
}

// ---------------------------------------------------------------------------------------
// Vulnerabilities.

fn vulnerabilities(doc: &Value, tree: &Tree<'_>, v: &mut Checker) {
    let groups = tree.group_members();
    let mut cves: HashMap<&str, usize> = HashMap::new();
    for (i, vul) in arr(doc.get("vulnerabilities")).iter().enumerate() {
        let path = format!("/vulnerabilities/{i}");
        // 6.1.6 contradicting product status.
        if let Some(ps) = vul.get("product_status") {
            let mut class: HashMap<&str, &str> = HashMap::new();
            for list in STATUS_LISTS {
                let group = match *list {
                    "first_affected" | "known_affected" | "last_affected" => "affected",
                    "known_not_affected" => "not affected",
                    "first_fixed" | "fixed" => "fixed",
                    "under_investigation" => "under investigation",
                    _ => continue,
                };
                for (j, id) in strings(ps, list) {
                    match class.get(id) {
                        Some(prev) if *prev != group => v.add(
                            "6.1.6",
                            format!("{path}/product_status/{list}/{j}"),
                            format!("product {:?} is both {prev} and {group}", cap(id)),
                        ),
                        _ => {
                            class.insert(id, group);
                        }
                    }
                }
            }
        }
        // 6.1.7 to 6.1.10: scores.
        let mut score_seen: HashSet<(&str, String)> = HashSet::new();
        for (j, s) in arr(vul.get("scores")).iter().enumerate() {
            let spath = format!("{path}/scores/{j}");
            let mut versions = Vec::new();
            if let Some(c) = s.get("cvss_v3") {
                versions.push(text(c, "version").unwrap_or("3").to_owned());
                check_cvss(c, &format!("{spath}/cvss_v3"), true, v);
            }
            if let Some(c) = s.get("cvss_v2") {
                versions.push(text(c, "version").unwrap_or("2").to_owned());
                check_cvss(c, &format!("{spath}/cvss_v2"), false, v);
            }
            for (k, product) in strings(s, "products") {
                for version in &versions {
                    if !score_seen.insert((product, version.clone())) {
                        v.add(
                            "6.1.7",
                            format!("{spath}/products/{k}"),
                            format!("product {:?} has more than one CVSS {version} score", cap(product)),
                        );
                    }
                }
            }
        }
        // 6.1.11 CWE.
        if let Some(cwe) = vul.get("cwe") {
            check_cwe(cwe, &format!("{path}/cwe"), v);
        }
        // 6.1.23 multiple use of same CVE.
        if let Some(cve) = text(vul, "cve") {
            if let Some(first) = cves.get(cve) {
                v.add(
                    "6.1.23",
                    format!("{path}/cve"),
                    format!("{:?} is already used by vulnerability {first}", cap(cve)),
                );
            } else {
                cves.insert(cve, i);
            }
        }
        // 6.1.24 multiple definition in involvements.
        let mut inv_seen = HashSet::new();
        for (j, inv) in arr(vul.get("involvements")).iter().enumerate() {
            let key = (text(inv, "party"), text(inv, "date"));
            if !inv_seen.insert(key) {
                v.add("6.1.24", format!("{path}/involvements/{j}"), "same party and date as an earlier involvement");
            }
        }
        // 6.1.29 remediation, 6.1.32 flag without product reference.
        for (key, test) in [("remediations", "6.1.29"), ("flags", "6.1.32")] {
            for (j, item) in arr(vul.get(key)).iter().enumerate() {
                if arr(item.get("product_ids")).is_empty() && arr(item.get("group_ids")).is_empty() {
                    v.add(test, format!("{path}/{key}/{j}"), "neither product_ids nor group_ids");
                }
            }
        }
        // 6.1.33 at most one VEX justification flag per product.
        let mut flagged: HashSet<&str> = HashSet::new();
        for (j, f) in arr(vul.get("flags")).iter().enumerate() {
            let mut ids: Vec<&str> = item_products(f, &groups).into_iter().collect();
            ids.sort_unstable();
            for id in ids {
                if !flagged.insert(id) {
                    v.add(
                        "6.1.33",
                        format!("{path}/flags/{j}"),
                        format!("product {:?} has more than one flag", cap(id)),
                    );
                }
            }
        }
    }
}

fn check_cvss(c: &Value, path: &str, v3: bool, v: &mut Checker) {
    let required: &[&str] = if v3 {
        &["version", "vectorString", "baseScore", "baseSeverity"]
    } else {
        &["version", "vectorString", "baseScore"]
    };
    for key in required {
        if c.get(*key).is_none() {
            v.add("6.1.8", format!("{path}/{key}"), format!("required CVSS property {key} is missing"));
        }
    }
    let version = text(c, "version").unwrap_or(if v3 { "" } else { "2.0" });
    let minor = match (v3, version) {
        (true, "3.0") => 0,
        (true, "3.1") => 1,
        (false, "2.0") => 0,
        _ => {
            v.add("6.1.8", format!("{path}/version"), format!("CVSS version {:?} is not allowed here", cap(version)));
            return;
        }
    };
    let Some(vector) = text(c, "vectorString") else { return };
    let (table, mandatory): (&[MetricDef], usize) = if v3 { (V3_METRICS, 8) } else { (V2_METRICS, 6) };
    let body = if v3 {
        let prefix = format!("CVSS:{version}/");
        match vector.strip_prefix(prefix.as_str()) {
            Some(b) => b,
            None => {
                v.add("6.1.8", format!("{path}/vectorString"), format!("vector does not start with {prefix}"));
                return;
            }
        }
    } else {
        vector
    };
    let parsed = match parse_vector(body, table, mandatory) {
        Ok(p) => p,
        Err(e) => {
            v.add("6.1.8", format!("{path}/vectorString"), format!("invalid vector: {e}"));
            return;
        }
    };
    let score_keys: &[&str] = &["baseScore", "temporalScore", "environmentalScore"];
    for key in score_keys {
        if let Some(s) = c.get(*key)
            && !s.as_f64().is_some_and(|x| (0.0..=10.0).contains(&x))
        {
            v.add("6.1.8", format!("{path}/{key}"), format!("{key} must be a number from 0 to 10"));
        }
    }
    if v3 {
        for key in ["baseSeverity", "temporalSeverity", "environmentalSeverity"] {
            one_of_test(v, "6.1.8", c, path, key, &["NONE", "LOW", "MEDIUM", "HIGH", "CRITICAL"]);
        }
    }
    // 6.1.8 property values and 6.1.10 their consistency with the vector.
    for (abbr, prop, values) in table {
        let Some(given) = c.get(*prop) else { continue };
        let Some(given) = given.as_str().filter(|g| values.iter().any(|(_, j)| j == g)) else {
            v.add("6.1.8", format!("{path}/{prop}"), format!("{prop} has a value CVSS does not define"));
            continue;
        };
        // A metric the vector leaves out is not contradicted by any value (6.2.19 covers that).
        let Some(in_vector) = parsed.iter().find(|(a, _)| a == abbr).map(|(_, val)| val.as_str()) else {
            continue;
        };
        let expected = values.iter().find(|(a, _)| *a == in_vector).map(|(_, j)| *j);
        if expected != Some(given) {
            v.add(
                "6.1.10",
                format!("{path}/{prop}"),
                format!("{prop} is {given} but the vector says {abbr}:{in_vector}"),
            );
        }
    }
    // 6.1.9 computed scores.
    check_computation(c, path, &parsed, v3, minor, v);
}

fn one_of_test(v: &mut Checker, test: &'static str, obj: &Value, path: &str, key: &str, allowed: &[&str]) {
    if let Some(val) = obj.get(key)
        && !val.as_str().is_some_and(|s| allowed.contains(&s))
    {
        v.add(test, format!("{path}/{key}"), format!("{key} is not one of the allowed values"));
    }
}

fn check_computation(c: &Value, path: &str, parsed: &Parsed, v3: bool, minor: u8, v: &mut Checker) {
    let scores = if v3 { v3_scores(parsed, minor) } else { v2_scores(parsed) };
    for (key, computed, sev_key) in [
        ("baseScore", scores.base, "baseSeverity"),
        ("temporalScore", scores.temporal, "temporalSeverity"),
        ("environmentalScore", scores.environmental, "environmentalSeverity"),
    ] {
        if let Some(given) = c.get(key).and_then(Value::as_f64)
            && (given - computed).abs() > 0.001
        {
            v.add(
                "6.1.9",
                format!("{path}/{key}"),
                format!("{key} is {given} but the vector computes to {computed:.1}"),
            );
        }
        if v3
            && let Some(given) = text(c, sev_key)
            && given != severity(computed)
        {
            v.add(
                "6.1.9",
                format!("{path}/{sev_key}"),
                format!("{sev_key} is {given} but a score of {computed:.1} is {}", severity(computed)),
            );
        }
    }
}

/// CWE names this validator knows, to catch an id paired with another weakness's name
/// (without the full CWE catalogue a name can only be refuted, never confirmed).
const KNOWN_CWES: &[(&str, &str)] = &[
    ("CWE-20", "Improper Input Validation"),
    ("CWE-22", "Improper Limitation of a Pathname to a Restricted Directory ('Path Traversal')"),
    ("CWE-78", "Improper Neutralization of Special Elements used in an OS Command ('OS Command Injection')"),
    ("CWE-79", "Improper Neutralization of Input During Web Page Generation ('Cross-site Scripting')"),
    ("CWE-89", "Improper Neutralization of Special Elements used in an SQL Command ('SQL Injection')"),
    ("CWE-125", "Out-of-bounds Read"),
    ("CWE-287", "Improper Authentication"),
    ("CWE-306", "Missing Authentication for Critical Function"),
    ("CWE-352", "Cross-Site Request Forgery (CSRF)"),
    ("CWE-416", "Use After Free"),
    ("CWE-434", "Unrestricted Upload of File with Dangerous Type"),
    ("CWE-476", "NULL Pointer Dereference"),
    ("CWE-502", "Deserialization of Untrusted Data"),
    ("CWE-787", "Out-of-bounds Write"),
    ("CWE-798", "Use of Hard-coded Credentials"),
];

fn check_cwe(cwe: &Value, path: &str, v: &mut Checker) {
    let Some(id) = text(cwe, "id") else { return };
    let digits = id.strip_prefix("CWE-").unwrap_or_default();
    let well_formed = !digits.is_empty()
        && digits.len() <= 6
        && !digits.starts_with('0')
        && digits.chars().all(|c| c.is_ascii_digit());
    if !well_formed {
        v.add("6.1.11", format!("{path}/id"), format!("{:?} is not a CWE id", cap(id)));
        return;
    }
    let Some(name) = text(cwe, "name") else { return };
    let own = KNOWN_CWES.iter().find(|(i, _)| *i == id).map(|(_, n)| *n);
    let other = KNOWN_CWES.iter().find(|(i, n)| *n == name && *i != id).map(|(i, _)| *i);
    if let (Some(own), Some(other)) = (own, other)
        && own != name
    {
        v.add("6.1.11", format!("{path}/name"), format!("{:?} is the name of {other}, not of {id}", cap(name)));
    }
}

// ---------------------------------------------------------------------------------------
// Product identification helpers: 6.1.13 purl, 6.1.25 hash algorithms.

fn helpers(tree: &Tree<'_>, v: &mut Checker) {
    for (h, path) in &tree.helpers {
        if let Some(purl) = text(h, "purl")
            && let Err(e) = check_purl(purl)
        {
            v.add("6.1.13", format!("{path}/purl"), format!("invalid purl: {e}"));
        }
        for (i, p) in strings(h, "purls") {
            if let Err(e) = check_purl(p) {
                v.add("6.1.13", format!("{path}/purls/{i}"), format!("invalid purl: {e}"));
            }
        }
        for (i, set) in arr(h.get("hashes")).iter().enumerate() {
            let mut seen = HashSet::new();
            for (j, fh) in arr(set.get("file_hashes")).iter().enumerate() {
                if let Some(alg) = text(fh, "algorithm")
                    && !seen.insert(alg.to_ascii_lowercase())
                {
                    v.add(
                        "6.1.25",
                        format!("{path}/hashes/{i}/file_hashes/{j}/algorithm"),
                        format!("hash algorithm {:?} used more than once for the same file", cap(alg)),
                    );
                }
            }
        }
    }
}

/// The purl syntax: `pkg:type/[namespace/]name[@version][?qualifiers][#subpath]`.
fn check_purl(purl: &str) -> Result<(), &'static str> {
    let rest = purl.strip_prefix("pkg:").ok_or("scheme is not pkg:")?;
    let rest = rest.trim_start_matches('/');
    let rest = rest.split('#').next().unwrap_or_default();
    let rest = rest.split('?').next().unwrap_or_default();
    let (path, version) = match rest.rsplit_once('@') {
        Some((p, ver)) => (p, Some(ver)),
        None => (rest, None),
    };
    if version.is_some_and(str::is_empty) {
        return Err("empty version");
    }
    let (ptype, name_part) = path.split_once('/').ok_or("no type/name")?;
    if ptype.is_empty()
        || !ptype.starts_with(|c: char| c.is_ascii_alphabetic())
        || !ptype.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-'))
    {
        return Err("invalid type");
    }
    let name = name_part.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
    if name.is_empty() {
        return Err("empty name");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 6.1.12 language, 6.1.15 translator, 6.1.28 translation.

/// ISO 639-1 two-letter language codes (the primary subtags a two-letter BCP 47 tag may use).
const ISO_639_1: &str = "aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy \
da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii ik \
in io is it iu iw ja ji jv jw ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn \
mo mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl \
sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu";

/// A BCP 47 language tag: well-formed, with a known primary language when it has two letters.
fn valid_language(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let Some(primary) = parts.next() else { return false };
    let lower = primary.to_ascii_lowercase();
    if lower == "x" || lower == "i" {
        return parts.next().is_some();
    }
    let primary_ok = match lower.len() {
        2 => ISO_639_1.split(' ').any(|c| c == lower),
        3 => lower.chars().all(|c| c.is_ascii_alphabetic()),
        5..=8 => lower.chars().all(|c| c.is_ascii_alphabetic()),
        _ => false,
    };
    primary_ok && parts.all(|p| !p.is_empty() && p.len() <= 8 && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

fn language(doc: &Value, v: &mut Checker) {
    let Some(d) = doc.get("document") else { return };
    for key in ["lang", "source_lang"] {
        if let Some(tag) = text(d, key)
            && !valid_language(tag)
        {
            v.add("6.1.12", format!("/document/{key}"), format!("{:?} is not a valid language tag", cap(tag)));
        }
    }
    if d.pointer("/publisher/category").and_then(Value::as_str) == Some("translator") && d.get("source_lang").is_none()
    {
        v.add("6.1.15", "/document/source_lang", "a translator's document must give source_lang");
    }
    if let (Some(lang), Some(source)) = (text(d, "lang"), text(d, "source_lang"))
        && lang.eq_ignore_ascii_case(source)
    {
        v.add("6.1.28", "/document/lang", "lang and source_lang are the same: a translation changes the language");
    }
}

// ---------------------------------------------------------------------------------------
// Versions and the revision history: 6.1.14, 6.1.16 to 6.1.22, 6.1.30.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ver {
    Int(u64),
    Sem { major: u64, minor: u64, patch: u64, pre: Option<String>, build: Option<String> },
}

fn numeric_id(s: &str) -> Option<u64> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_ver(s: &str) -> Option<Ver> {
    if let Some(n) = numeric_id(s) {
        return Some(Ver::Int(n));
    }
    let (rest, build) = match s.split_once('+') {
        Some((r, b)) => (r, Some(b.to_owned())),
        None => (s, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p.to_owned())),
        None => (rest, None),
    };
    let ident_ok =
        |x: &str| x.split('.').all(|i| !i.is_empty() && i.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if pre.as_deref().is_some_and(|p| !ident_ok(p)) || build.as_deref().is_some_and(|b| !ident_ok(b)) {
        return None;
    }
    let mut nums = core.split('.');
    let major = numeric_id(nums.next()?)?;
    let minor = numeric_id(nums.next()?)?;
    let patch = numeric_id(nums.next()?)?;
    if nums.next().is_some() {
        return None;
    }
    Some(Ver::Sem { major, minor, patch, pre, build })
}

impl Ver {
    fn major(&self) -> u64 {
        match self {
            Ver::Int(n) => *n,
            Ver::Sem { major, .. } => *major,
        }
    }
    fn pre(&self) -> Option<&str> {
        match self {
            Ver::Sem { pre, .. } => pre.as_deref(),
            Ver::Int(_) => None,
        }
    }
    fn without(&self, drop_pre: bool) -> Ver {
        match self {
            Ver::Int(n) => Ver::Int(*n),
            Ver::Sem { major, minor, patch, pre, .. } => Ver::Sem {
                major: *major,
                minor: *minor,
                patch: *patch,
                pre: if drop_pre { None } else { pre.clone() },
                build: None,
            },
        }
    }
}

fn compare_pre(a: &str, b: &str) -> Ordering {
    let mut ai = a.split('.');
    let mut bi = b.split('.');
    loop {
        match (ai.next(), bi.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let ord = match (numeric_id(x), numeric_id(y)) {
                    (Some(p), Some(q)) => p.cmp(&q),
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (None, None) => x.cmp(y),
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

/// Precedence of two versions of the same kind; `None` for integer against semantic.
fn compare_ver(a: &Ver, b: &Ver) -> Option<Ordering> {
    match (a, b) {
        (Ver::Int(x), Ver::Int(y)) => Some(x.cmp(y)),
        (
            Ver::Sem { major: a1, minor: a2, patch: a3, pre: ap, .. },
            Ver::Sem { major: b1, minor: b2, patch: b3, pre: bp, .. },
        ) => {
            let core = (a1, a2, a3).cmp(&(b1, b2, b3));
            if core != Ordering::Equal {
                return Some(core);
            }
            Some(match (ap, bp) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(x), Some(y)) => compare_pre(x, y),
            })
        }
        _ => None,
    }
}

/// A date-time as comparable UTC nanoseconds, or the raw text when it does not parse.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum When {
    At(i128),
    Text(String),
}

fn when(s: &str) -> When {
    match time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        Ok(t) => When::At(t.unix_timestamp_nanos()),
        Err(_) => When::Text(s.to_owned()),
    }
}

struct RevItem {
    index: usize,
    when: When,
    number: Option<Ver>,
    raw: String,
}

fn revision_history(doc: &Value, v: &mut Checker) {
    let Some(tracking) = doc.pointer("/document/tracking") else { return };
    let status = text(tracking, "status").unwrap_or_default();
    let released = status == "final" || status == "interim";
    let version_raw = text(tracking, "version").unwrap_or_default();
    let version = parse_ver(version_raw);
    let mut items: Vec<RevItem> = arr(tracking.get("revision_history"))
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let raw = text(item, "number").unwrap_or_default().to_owned();
            RevItem { index, when: when(text(item, "date").unwrap_or_default()), number: parse_ver(&raw), raw }
        })
        .collect();
    let rpath = "/document/tracking/revision_history";

    // 6.1.30 mixed integer and semantic versioning.
    let kinds: HashSet<bool> = version
        .iter()
        .chain(items.iter().filter_map(|i| i.number.as_ref()))
        .map(|x| matches!(x, Ver::Int(_)))
        .collect();
    let mixed = kinds.len() > 1;
    if mixed {
        v.add("6.1.30", "/document/tracking/version", "integer and semantic versioning are mixed");
    }
    // 6.1.17 document status draft.
    if let Some(ver) = &version
        && (ver.major() == 0 || ver.pre().is_some())
        && status != "draft"
    {
        v.add("6.1.17", "/document/tracking/status", format!("version {} requires status draft", cap(version_raw)));
    }
    // 6.1.20 non-draft document version.
    if released && version.as_ref().is_some_and(|x| x.pre().is_some()) {
        v.add("6.1.20", "/document/tracking/version", "a final or interim document has a pre-release version");
    }
    let mut numbers_seen: HashMap<&str, usize> = HashMap::new();
    for item in &items {
        let path = format!("{rpath}/{}/number", item.index);
        if let Some(n) = &item.number {
            // 6.1.18 released revision history.
            if released && n.major() == 0 {
                v.add("6.1.18", path.clone(), "a final or interim document lists a version 0 revision");
            }
            // 6.1.19 pre-release versions in the history.
            if n.pre().is_some() {
                v.add("6.1.19", path.clone(), "revision history entry with a pre-release version");
            }
        }
        // 6.1.22 multiple definition in revision history.
        if let Some(first) = numbers_seen.get(item.raw.as_str()) {
            v.add("6.1.22", path, format!("number {} already used by item {first}", cap(&item.raw)));
        } else {
            numbers_seen.insert(item.raw.as_str(), item.index);
        }
    }
    if mixed || items.is_empty() {
        return;
    }
    // Sorted by date, then number (items of the same date may be listed in any order).
    items.sort_by(|a, b| {
        a.when.cmp(&b.when).then_with(|| match (&a.number, &b.number) {
            (Some(x), Some(y)) => compare_ver(x, y).unwrap_or(Ordering::Equal),
            _ => Ordering::Equal,
        })
    });
    // 6.1.14 sorted revision history: sorted by date, the numbers ascend.
    for pair in items.windows(2) {
        let [a, b] = pair else { continue };
        if let (Some(x), Some(y)) = (&a.number, &b.number)
            && compare_ver(x, y) == Some(Ordering::Greater)
        {
            v.add(
                "6.1.14",
                format!("{rpath}/{}/number", b.index),
                format!("revision {} is dated after revision {}", cap(&b.raw), cap(&a.raw)),
            );
        }
    }
    // 6.1.16 latest document version.
    if let (Some(last), Some(ver)) = (items.last().and_then(|i| i.number.as_ref()), &version) {
        let draft = status == "draft";
        if last.without(draft) != ver.without(draft) {
            v.add(
                "6.1.16",
                "/document/tracking/version",
                format!(
                    "version {} differs from the latest revision {}",
                    cap(version_raw),
                    cap(&items.last().map(|i| i.raw.clone()).unwrap_or_default())
                ),
            );
        }
    }
    // 6.1.21 missing item in revision history.
    let majors: Vec<(usize, u64)> =
        items.iter().filter_map(|i| i.number.as_ref().map(|n| (i.index, n.major()))).collect();
    if let Some((index, first)) = majors.first()
        && *first > 1
    {
        v.add("6.1.21", format!("{rpath}/{index}/number"), "the first revision must be version 0 or 1");
    }
    for pair in majors.windows(2) {
        let [(_, a), (index, b)] = pair else { continue };
        if *b > a.saturating_add(1) {
            v.add("6.1.21", format!("{rpath}/{index}/number"), format!("versions between {a} and {b} are missing"));
        }
    }
}

// ---------------------------------------------------------------------------------------
// 6.1.26 prohibited document category name.

const PROFILES: &[&str] = &[
    "csaf_base",
    "csaf_security_incident_response",
    "csaf_informational_advisory",
    "csaf_security_advisory",
    "csaf_vex",
];

fn category(doc: &Value, v: &mut Checker) {
    let Some(cat) = doc.pointer("/document/category").and_then(Value::as_str) else { return };
    if PROFILES.contains(&cat) {
        return;
    }
    let norm: String =
        cat.chars().filter(|c| !(c.is_whitespace() || matches!(c, '-' | '_'))).collect::<String>().to_lowercase();
    let names = ["securityincidentresponse", "informationaladvisory", "securityadvisory", "vex"];
    let stripped = norm.strip_prefix("csaf").unwrap_or(&norm);
    if cat.to_lowercase().starts_with("csaf_") || names.contains(&norm.as_str()) || names.contains(&stripped) {
        v.add("6.1.26", "/document/category", format!("category {:?} imitates a CSAF profile", cap(cat)));
    }
}

// ---------------------------------------------------------------------------------------
// 6.1.27 profile tests.

fn profiles(doc: &Value, tree: &Tree<'_>, v: &mut Checker) {
    let Some(cat) = doc.pointer("/document/category").and_then(Value::as_str) else { return };
    let vulns = arr(doc.get("vulnerabilities"));
    match cat {
        "csaf_informational_advisory" | "csaf_security_incident_response" => {
            let notes = arr(doc.pointer("/document/notes"));
            let ok = notes
                .iter()
                .any(|n| matches!(text(n, "category"), Some("description" | "details" | "general" | "summary")));
            if !ok {
                v.add(
                    "6.1.27.1",
                    "/document/notes",
                    "needs a note of category description, details, general or summary",
                );
            }
            let refs = arr(doc.pointer("/document/references"));
            if !refs.iter().any(|r| text(r, "category") == Some("external")) {
                v.add("6.1.27.2", "/document/references", "needs a reference of category external");
            }
            if cat == "csaf_informational_advisory" && doc.get("vulnerabilities").is_some() {
                v.add("6.1.27.3", "/vulnerabilities", "an informational advisory has no vulnerabilities");
            }
        }
        "csaf_security_advisory" | "csaf_vex" => {
            if doc.get("product_tree").is_none() {
                v.add("6.1.27.4", "/product_tree", "the profile requires a product tree");
            }
            if vulns.is_empty() {
                v.add("6.1.27.11", "/vulnerabilities", "the profile requires vulnerabilities");
            }
            let groups = tree.group_members();
            for (i, vul) in vulns.iter().enumerate() {
                let path = format!("/vulnerabilities/{i}");
                if vul.get("notes").is_none() {
                    v.add("6.1.27.5", format!("{path}/notes"), "the profile requires vulnerability notes");
                }
                if cat == "csaf_security_advisory" {
                    if vul.get("product_status").is_none() {
                        v.add("6.1.27.6", format!("{path}/product_status"), "the profile requires product_status");
                    }
                    continue;
                }
                vex_checks(vul, &path, &groups, v);
            }
        }
        _ => {}
    }
}

fn vex_checks(vul: &Value, path: &str, groups: &HashMap<&str, Vec<&str>>, v: &mut Checker) {
    let ps = vul.get("product_status");
    let has_vex_list = ["fixed", "known_affected", "known_not_affected", "under_investigation"]
        .iter()
        .any(|l| ps.is_some_and(|p| p.get(*l).is_some()));
    if !has_vex_list {
        v.add(
            "6.1.27.7",
            format!("{path}/product_status"),
            "needs fixed, known_affected, known_not_affected or under_investigation",
        );
    }
    if vul.get("cve").is_none() && vul.get("ids").is_none() {
        v.add("6.1.27.8", path.to_owned(), "a VEX vulnerability needs cve or ids");
    }
    let Some(ps) = ps else { return };
    let mut justified: HashSet<&str> = HashSet::new();
    for f in arr(vul.get("flags")) {
        justified.extend(item_products(f, groups));
    }
    for t in arr(vul.get("threats")).iter().filter(|t| text(t, "category") == Some("impact")) {
        justified.extend(item_products(t, groups));
    }
    for (j, id) in strings(ps, "known_not_affected") {
        if !justified.contains(id) {
            v.add(
                "6.1.27.9",
                format!("{path}/product_status/known_not_affected/{j}"),
                format!("product {:?} is not affected but has no impact statement", cap(id)),
            );
        }
    }
    let mut acted: HashSet<&str> = HashSet::new();
    for r in arr(vul.get("remediations")) {
        acted.extend(item_products(r, groups));
    }
    for (j, id) in strings(ps, "known_affected") {
        if !acted.contains(id) {
            v.add(
                "6.1.27.10",
                format!("{path}/product_status/known_affected/{j}"),
                format!("product {:?} is affected but has no action statement", cap(id)),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// 6.1.31 version range in product version.

fn product_versions(tree: &Tree<'_>, v: &mut Checker) {
    const WORDS: &[&str] = &["after", "all", "before", "earlier", "later", "prior", "versions"];
    for (name, path) in &tree.versions {
        let has_word = name.split_whitespace().any(|w| WORDS.iter().any(|x| w.eq_ignore_ascii_case(x)));
        if name.contains(['<', '>']) || has_word {
            v.add("6.1.31", path.clone(), format!("product_version {:?} looks like a range", cap(name)));
        }
    }
}

/// Group violations by test, for reports.
pub fn count_by_test(violations: &[Violation]) -> BTreeMap<&'static str, usize> {
    let mut map = BTreeMap::new();
    for v in violations {
        *map.entry(v.test).or_insert(0) += 1;
    }
    map
}
