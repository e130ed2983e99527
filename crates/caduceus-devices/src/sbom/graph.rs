//! The component graph of an [`Sbom`]: who includes a component, and the chain by which the
//! root (the device's product) reaches it, so a finding can say "zlib 1.2.11, in libpng,
//! in the firmware image of the pump".
//!
//! Edges that mean "the first includes or needs the second": `depends_on`, `contains`,
//! `describes`, `static_link`, `dynamic_link`, and SPDX `RUNTIME_`/`OPTIONAL_`/
//! `PROVIDED_DEPENDENCY_OF` and `OPTIONAL_COMPONENT_OF` (turned around). Build, dev and test
//! dependencies, `generated_from`, `provides` (CBOM) and the like do not put a component
//! into the shipped product and are not followed.
//!
//! [`Graph`] indexes the relationships once for many queries; [`path_from_root`] and
//! [`dependents_of`] (also as methods on [`Sbom`]) build it for one.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::model::{Relationship, Sbom};

/// Most nodes one breadth-first search visits.
const MAX_VISITS: usize = 4_000_000;

/// `(includer, included)` for a relationship that puts one component into another.
fn edge(r: &Relationship) -> Option<(&str, &str)> {
    match r.kind.as_str() {
        "depends_on" | "contains" | "describes" | "static_link" | "dynamic_link" => Some((&r.from, &r.to)),
        "dependency_of"
        | "runtime_dependency_of"
        | "optional_dependency_of"
        | "provided_dependency_of"
        | "optional_component_of"
        | "contained_by" => Some((&r.to, &r.from)),
        _ => None,
    }
}

/// Adjacency lists of an SBOM's inclusion edges, in document order.
#[derive(Debug, Clone)]
pub struct Graph<'a> {
    root: Option<&'a str>,
    down: HashMap<&'a str, Vec<&'a str>>,
    up: HashMap<&'a str, Vec<&'a str>>,
}

impl<'a> Graph<'a> {
    pub fn new(sbom: &'a Sbom) -> Self {
        let mut down: HashMap<&str, Vec<&str>> = HashMap::new();
        let mut up: HashMap<&str, Vec<&str>> = HashMap::new();
        for (from, to) in sbom.relationships.iter().filter_map(edge) {
            if from == to {
                continue;
            }
            down.entry(from).or_default().push(to);
            up.entry(to).or_default().push(from);
        }
        Self { root: sbom.root.as_deref(), down, up }
    }

    /// Components that directly include or depend on `id` (not the SBOM document itself).
    pub fn dependents_of(&self, id: &str) -> Vec<&'a str> {
        let mut out: Vec<&'a str> = Vec::new();
        for &from in self.up.get(id).into_iter().flatten() {
            if !out.contains(&from) && !from.ends_with("SPDXRef-DOCUMENT") {
                out.push(from);
            }
        }
        out
    }

    /// Components `id` directly includes or depends on.
    pub fn dependencies_of(&self, id: &str) -> Vec<&'a str> {
        let mut out: Vec<&'a str> = Vec::new();
        for &to in self.down.get(id).into_iter().flatten() {
            if !out.contains(&to) {
                out.push(to);
            }
        }
        out
    }

    /// The shortest chain of ids from the root to `id`, both included; `None` when the SBOM
    /// has no root or `id` cannot be reached from it.
    pub fn path_from_root(&self, id: &str) -> Option<Vec<String>> {
        let root = self.root?;
        if root == id {
            return Some(vec![root.to_string()]);
        }
        let mut parent: HashMap<&str, &str> = HashMap::new();
        let mut seen: HashSet<&str> = HashSet::from([root]);
        let mut queue: VecDeque<&str> = VecDeque::from([root]);
        let mut visits = 0usize;
        while let Some(node) = queue.pop_front() {
            visits += 1;
            if visits > MAX_VISITS {
                return None;
            }
            for &next in self.down.get(node).into_iter().flatten() {
                if !seen.insert(next) {
                    continue;
                }
                parent.insert(next, node);
                if next == id {
                    let mut path = vec![next.to_string()];
                    let mut at = next;
                    while let Some(&p) = parent.get(at) {
                        path.push(p.to_string());
                        at = p;
                    }
                    path.reverse();
                    return Some(path);
                }
                queue.push_back(next);
            }
        }
        None
    }
}

/// Components that directly include or depend on `id`.
pub fn dependents_of<'a>(sbom: &'a Sbom, id: &str) -> Vec<&'a str> {
    Graph::new(sbom).dependents_of(id)
}

/// The shortest chain of ids from the SBOM's root to `id` (see [`Graph::path_from_root`]).
pub fn path_from_root(sbom: &Sbom, id: &str) -> Option<Vec<String>> {
    Graph::new(sbom).path_from_root(id)
}

impl Sbom {
    /// Components that directly include or depend on `id`.
    pub fn dependents_of(&self, id: &str) -> Vec<&str> {
        dependents_of(self, id)
    }

    /// The shortest chain of ids from the root to `id`, both included.
    pub fn path_from_root(&self, id: &str) -> Option<Vec<String>> {
        path_from_root(self, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SbomFormat;

    fn rel(from: &str, to: &str, kind: &str) -> Relationship {
        Relationship { from: from.into(), to: to.into(), kind: kind.into() }
    }

    #[test]
    fn shortest_path_and_dependents() {
        let sbom = Sbom {
            format: SbomFormat::CycloneDx,
            spec_version: "1.6".into(),
            serial: None,
            root: Some("dev".into()),
            name: None,
            authors: vec![],
            timestamp: None,
            components: vec![],
            relationships: vec![
                rel("dev", "fw", "contains"),
                rel("fw", "libpng", "depends_on"),
                rel("libpng", "zlib", "depends_on"),
                rel("fw", "zlib", "depends_on"),
                rel("zlib", "dev", "depends_on"),
                rel("test", "zlib", "test_dependency_of"),
            ],
            vex: vec![],
        };
        assert_eq!(sbom.path_from_root("zlib"), Some(vec!["dev".into(), "fw".into(), "zlib".into()]));
        assert_eq!(sbom.path_from_root("dev"), Some(vec!["dev".into()]));
        assert_eq!(sbom.path_from_root("test"), None);
        assert_eq!(sbom.dependents_of("zlib"), vec!["libpng", "fw"]);
    }
}
