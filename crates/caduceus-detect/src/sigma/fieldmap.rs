//! Field mapping from our event fields to Sigma taxonomy names. A mapping
//! adds the Sigma name as a second name of the value, so rules written
//! against either name match; it never hides our own name.

use std::collections::BTreeMap;

/// Our field → Sigma field. The defaults are deliberately few: the names
/// generic Sigma rules use for who did it and from where.
///
/// | ours      | Sigma     |
/// |-----------|-----------|
/// | `actor`   | `User`    |
/// | `account` | `User`    |
/// | `source`  | `src_ip`  |
///
/// Configuration (`[detect] field_map`) adds entries or replaces these; an
/// entry mapped to the empty string removes a default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldMap {
    map: BTreeMap<String, String>,
}

impl Default for FieldMap {
    fn default() -> Self {
        let map = [("actor", "User"), ("account", "User"), ("source", "src_ip")]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect();
        Self { map }
    }
}

impl FieldMap {
    /// No mapping at all.
    pub fn empty() -> Self {
        Self { map: BTreeMap::new() }
    }

    /// The defaults with `overrides` (ours → Sigma) applied on top.
    pub fn with_overrides(overrides: &BTreeMap<String, String>) -> Self {
        let mut map = Self::default().map;
        for (ours, theirs) in overrides {
            if theirs.is_empty() {
                map.remove(ours);
            } else {
                map.insert(ours.clone(), theirs.clone());
            }
        }
        Self { map }
    }

    /// The Sigma name of one of our fields.
    pub fn get(&self, ours: &str) -> Option<&str> {
        self.map.get(ours).map(String::as_str)
    }

    /// Every (ours, Sigma) pair.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(a, b)| (a.as_str(), b.as_str()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    #[test]
    fn overrides_add_replace_and_remove() {
        let overrides: BTreeMap<String, String> =
            [("actor", "SubjectUserName"), ("source", ""), ("purpose_of_use", "Purpose")]
                .into_iter()
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .collect();
        let map = FieldMap::with_overrides(&overrides);
        assert_eq!(map.get("actor"), Some("SubjectUserName"));
        assert_eq!(map.get("source"), None);
        assert_eq!(map.get("purpose_of_use"), Some("Purpose"));
        assert_eq!(map.get("account"), Some("User"));
    }
}
