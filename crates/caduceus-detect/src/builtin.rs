//! Rules that ship with Caduceus, for its own events: sign-in attacks on
//! Caduceus accounts, account takeover signs, denied and emergency record
//! access. They are Sigma like any other rule (in `rules/` beside this
//! crate), loaded before the configured directories, and can be disabled
//! through the API like any other.

use crate::RuleError;
use crate::sigma::RuleSet;

/// The built-in rule files: (name, text).
pub const FILES: [(&str, &str); 3] = [
    ("builtin:caduceus_identity_bruteforce.yml", include_str!("../rules/caduceus_identity_bruteforce.yml")),
    ("builtin:caduceus_identity_account.yml", include_str!("../rules/caduceus_identity_account.yml")),
    ("builtin:caduceus_vault_access.yml", include_str!("../rules/caduceus_vault_access.yml")),
];

/// Add the built-in rules to a rule set. A rule that does not load is a
/// bug in this crate (a test loads them all); it is reported, not fatal.
pub fn add_to(rules: &mut RuleSet) -> Vec<RuleError> {
    FILES.iter().filter_map(|(name, text)| rules.add_yaml(name, text).err()).collect()
}

/// A rule set of the built-in rules alone.
pub fn rules() -> RuleSet {
    let mut rules = RuleSet::new();
    for error in add_to(&mut rules) {
        tracing::error!(%error, "a built-in rule does not load");
    }
    rules
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

    use super::*;

    #[test]
    fn every_builtin_rule_loads() {
        let mut rules = RuleSet::new();
        let errors = add_to(&mut rules);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(rules.rules().count(), 6);
        assert_eq!(rules.correlations().len(), 4);
    }
}
