//! From a parsed CSAF document to the normalised [`Advisory`].

use std::collections::{BTreeSet, HashMap};

use super::MAX_BRANCH_DEPTH;
use super::ranges::translate_range;
use super::types::{Branch, CsafDocument, FullProductName, IdentificationHelper, ProductTree, ScoreSet};
use crate::model::{
    Advisory, AdvisorySource, Justification, Product, ProductStatus, Remediation, Score, StatusEntry, VersionSpec,
    Vulnerability,
};

/// What the branches above a leaf say about its product.
#[derive(Debug, Clone, Default)]
struct Context {
    vendor: Option<String>,
    family: Option<String>,
    product: Option<String>,
    version: VersionSpec,
}

impl CsafDocument {
    /// The normalised advisory: products flattened from the product tree, product groups
    /// expanded, vulnerabilities with their scores, statuses, remediations and justifications.
    pub fn to_advisory(&self) -> Advisory {
        let doc = &self.document;
        let tree = self.product_tree.clone().unwrap_or_default();
        let products = flatten_products(&tree);
        let groups = group_map(&tree);
        let vulnerabilities = self
            .vulnerabilities
            .iter()
            .enumerate()
            .map(|(index, v)| map_vulnerability(&doc.tracking.id, index, v, &groups))
            .collect();
        Advisory {
            id: doc.tracking.id.clone(),
            source: AdvisorySource::Csaf,
            revision: doc.tracking.version.clone(),
            published: Some(doc.tracking.initial_release_date.clone()),
            modified: Some(doc.tracking.current_release_date.clone()),
            title: doc.title.clone(),
            publisher: Some(doc.publisher.name.clone()),
            aliases: doc.tracking.aliases.clone(),
            products,
            vulnerabilities,
            references: doc.references.iter().map(|r| r.url.clone()).collect(),
            is_vex: doc.category == "csaf_vex",
        }
    }
}

/// Every full product name in the tree, first definition of an id wins.
fn flatten_products(tree: &ProductTree) -> Vec<Product> {
    let mut out: Vec<Product> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for branch in &tree.branches {
        walk(branch, &Context::default(), 0, &mut out, &mut seen);
    }
    for fpn in &tree.full_product_names {
        push(&mut out, &mut seen, product_from(fpn, &Context::default()));
    }
    // Relationships may build on products other relationships define: resolve in passes.
    let mut pending: Vec<usize> = (0..tree.relationships.len()).collect();
    for _ in 0..=tree.relationships.len().min(MAX_BRANCH_DEPTH) {
        let before = pending.len();
        pending.retain(|&i| {
            let Some(rel) = tree.relationships.get(i) else { return false };
            let Some(&base_at) = seen.get(&rel.product_reference) else { return true };
            let Some(base) = out.get(base_at).cloned() else { return true };
            let mut product = product_from(&rel.full_product_name, &Context::default());
            product.vendor = base.vendor;
            product.family = base.family;
            product.product = base.product;
            product.version = base.version;
            // The component's own identifiers identify it wherever it is installed.
            extend_unique(&mut product.purls, base.purls);
            extend_unique(&mut product.cpes, base.cpes);
            extend_unique(&mut product.model_numbers, base.model_numbers);
            extend_unique(&mut product.skus, base.skus);
            extend_unique(&mut product.serial_numbers, base.serial_numbers);
            extend_unique(&mut product.hashes, base.hashes);
            push(&mut out, &mut seen, product);
            false
        });
        if pending.is_empty() || pending.len() == before {
            break;
        }
    }
    // References that never resolve (invalid documents) still name a product.
    for i in pending {
        if let Some(rel) = tree.relationships.get(i) {
            push(&mut out, &mut seen, product_from(&rel.full_product_name, &Context::default()));
        }
    }
    out
}

fn extend_unique(into: &mut Vec<String>, from: Vec<String>) {
    for item in from {
        if !into.contains(&item) {
            into.push(item);
        }
    }
}

fn push(out: &mut Vec<Product>, seen: &mut HashMap<String, usize>, product: Product) {
    if !seen.contains_key(&product.id) {
        seen.insert(product.id.clone(), out.len());
        out.push(product);
    }
}

fn walk(branch: &Branch, parent: &Context, depth: usize, out: &mut Vec<Product>, seen: &mut HashMap<String, usize>) {
    if depth >= MAX_BRANCH_DEPTH {
        return;
    }
    let mut ctx = parent.clone();
    let name = branch.name.clone();
    match branch.category.as_str() {
        "vendor" => ctx.vendor = Some(name),
        "product_family" => ctx.family = Some(name),
        "product_name" => ctx.product = Some(name),
        "product_version" => ctx.version = VersionSpec::Exact { version: name },
        "product_version_range" => ctx.version = range_spec(&name),
        _ => {}
    }
    if let Some(fpn) = &branch.product {
        push(out, seen, product_from(fpn, &ctx));
    }
    for child in &branch.branches {
        walk(child, &ctx, depth + 1, out, seen);
    }
}

/// `product_version_range` text to a [`VersionSpec`].
pub fn range_spec(text: &str) -> VersionSpec {
    match translate_range(text) {
        Some(vers) => VersionSpec::Vers { vers, text: text.to_owned() },
        None => VersionSpec::Unparsed { text: text.to_owned() },
    }
}

fn product_from(fpn: &FullProductName, ctx: &Context) -> Product {
    let mut product = Product {
        id: fpn.product_id.clone(),
        name: fpn.name.clone(),
        vendor: ctx.vendor.clone(),
        family: ctx.family.clone(),
        product: ctx.product.clone(),
        version: ctx.version.clone(),
        ..Product::default()
    };
    if let Some(helper) = &fpn.product_identification_helper {
        apply_helper(&mut product, helper);
    }
    product
}

fn apply_helper(product: &mut Product, helper: &IdentificationHelper) {
    product.purls.extend(helper.purl.iter().cloned());
    extend_unique(&mut product.purls, helper.purls.clone());
    product.cpes.extend(helper.cpe.iter().cloned());
    product.model_numbers.extend(helper.model_numbers.iter().cloned());
    product.skus.extend(helper.skus.iter().cloned());
    product.serial_numbers.extend(helper.serial_numbers.iter().cloned());
    for set in &helper.hashes {
        for h in &set.file_hashes {
            let hash = format!("{}:{}", h.algorithm.to_ascii_lowercase(), h.value.to_ascii_lowercase());
            if !product.hashes.contains(&hash) {
                product.hashes.push(hash);
            }
        }
    }
}

/// group id -> product ids.
fn group_map(tree: &ProductTree) -> HashMap<String, Vec<String>> {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for g in &tree.product_groups {
        map.entry(g.group_id.clone()).or_default().extend(g.product_ids.iter().cloned());
    }
    map
}

/// Product ids plus the members of the groups, each once, in first-seen order.
fn expand(product_ids: &[String], group_ids: &[String], groups: &HashMap<String, Vec<String>>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let members = group_ids.iter().filter_map(|g| groups.get(g)).flatten();
    product_ids.iter().chain(members).filter(|id| seen.insert(id.as_str())).cloned().collect()
}

fn map_vulnerability(
    tracking_id: &str,
    index: usize,
    v: &super::types::Vulnerability,
    groups: &HashMap<String, Vec<String>>,
) -> Vulnerability {
    let first_id = v.ids.first().map(|i| i.text.clone());
    let id = v.cve.clone().or(first_id).unwrap_or_else(|| format!("{tracking_id}#{index}"));
    let aliases = v.ids.iter().map(|i| i.text.clone()).filter(|t| *t != id).collect();
    let summary = ["summary", "description", "details"]
        .iter()
        .find_map(|cat| v.notes.iter().find(|n| n.category == *cat).map(|n| n.text.clone()));
    let mut cwes: Vec<String> = v.cwe.iter().map(|c| c.id.clone()).collect();
    extend_unique(&mut cwes, v.cwes.iter().map(|c| c.id.clone()).collect());

    let mut scores = Vec::new();
    for set in &v.scores {
        push_scores(&mut scores, set, &set.products);
    }
    for metric in &v.metrics {
        push_scores(&mut scores, &metric.content, &metric.products);
    }

    let mut product_status = Vec::new();
    let mut not_affected = BTreeSet::new();
    if let Some(ps) = &v.product_status {
        let lists = [
            (&ps.first_affected, ProductStatus::FirstAffected),
            (&ps.known_affected, ProductStatus::KnownAffected),
            (&ps.last_affected, ProductStatus::LastAffected),
            (&ps.first_fixed, ProductStatus::FirstFixed),
            (&ps.fixed, ProductStatus::Fixed),
            (&ps.known_not_affected, ProductStatus::KnownNotAffected),
            (&ps.recommended, ProductStatus::Recommended),
            (&ps.under_investigation, ProductStatus::UnderInvestigation),
        ];
        for (ids, status) in lists {
            for id in ids {
                product_status.push(StatusEntry { product_id: id.clone(), status });
            }
        }
        not_affected.extend(ps.known_not_affected.iter().cloned());
    }

    let remediations = v
        .remediations
        .iter()
        .map(|r| Remediation {
            category: r.category.clone(),
            details: r.details.clone(),
            url: r.url.clone(),
            products: expand(&r.product_ids, &r.group_ids, groups),
            fixed_versions: Vec::new(),
        })
        .collect();

    let mut justifications: Vec<Justification> = v
        .flags
        .iter()
        .map(|f| Justification {
            label: f.label.clone(),
            details: None,
            products: expand(&f.product_ids, &f.group_ids, groups),
        })
        .collect();
    for t in v.threats.iter().filter(|t| t.category == "impact") {
        let products: Vec<String> =
            expand(&t.product_ids, &t.group_ids, groups).into_iter().filter(|p| not_affected.contains(p)).collect();
        if !products.is_empty() {
            justifications.push(Justification {
                label: "impact".to_owned(),
                details: Some(t.details.clone()),
                products,
            });
        }
    }

    Vulnerability {
        id,
        cve: v.cve.clone(),
        aliases,
        title: v.title.clone(),
        summary,
        cwes,
        scores,
        product_status,
        remediations,
        justifications,
        references: v.references.iter().map(|r| r.url.clone()).collect(),
    }
}

fn push_scores(out: &mut Vec<Score>, set: &ScoreSet, products: &[String]) {
    let objects = [(&set.cvss_v2, "2.0"), (&set.cvss_v3, "3.1"), (&set.cvss_v4, "4.0")];
    for (cvss, default_version) in objects {
        let Some(c) = cvss else { continue };
        let version = c.version.clone().unwrap_or_else(|| {
            if c.vector_string.starts_with("CVSS:3.0/") { "3.0".to_owned() } else { default_version.to_owned() }
        });
        out.push(Score {
            version,
            vector: c.vector_string.clone(),
            base_score: c.base_score,
            products: products.to_vec(),
        });
    }
}
