//! Rules that ship with Caduceus, for its own events: sign-in attacks on
//! Caduceus accounts, account takeover signs, denied and emergency record
//! access, ransomware reported by the file sensor, devices affected by known
//! exploited or critical vulnerabilities. They are Sigma like any other rule (in `rules/` beside this
//! crate), loaded before the configured directories, and can be disabled
//! through the API like any other.

use crate::RuleError;
use crate::sigma::RuleSet;

/// The built-in rule files: (name, text).
pub const FILES: [(&str, &str); 5] = [
    ("builtin:caduceus_identity_bruteforce.yml", include_str!("../rules/caduceus_identity_bruteforce.yml")),
    ("builtin:caduceus_identity_account.yml", include_str!("../rules/caduceus_identity_account.yml")),
    ("builtin:caduceus_vault_access.yml", include_str!("../rules/caduceus_vault_access.yml")),
    ("builtin:caduceus_file_sensor.yml", include_str!("../rules/caduceus_file_sensor.yml")),
    ("builtin:caduceus_devices.yml", include_str!("../rules/caduceus_devices.yml")),
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
        assert_eq!(rules.rules().count(), 11);
        assert_eq!(rules.correlations().len(), 4);
    }

    #[test]
    fn file_sensor_reports_fire_the_ransomware_rules() {
        use crate::sigma::{Event, LogSource};
        let rules = rules();
        let source = || LogSource {
            product: Some("caduceus".into()),
            service: Some("file-sensor".into()),
            category: Some("file_event".into()),
        };
        let titles = |value: serde_json::Value| {
            let mut out = Vec::new();
            rules.matches(&Event::from_json(source(), &value), &mut out);
            let all: Vec<_> = rules.rules().collect();
            let mut titles: Vec<String> = out.iter().map(|&i| all[i].title.clone()).collect();
            titles.sort();
            titles
        };
        assert_eq!(
            titles(serde_json::json!({"verdict": "ransomware", "canary_touched": true, "score": 0.97})),
            ["Ransomware behaviour on a file share", "Ransomware canary file touched"]
        );
        assert_eq!(
            titles(serde_json::json!({"verdict": "suspicious", "canary_touched": false})),
            ["Suspicious file activity on a share"]
        );
        assert!(titles(serde_json::json!({"verdict": "heartbeat", "canary_touched": false})).is_empty());
    }

    #[test]
    fn vulnerability_findings_fire_the_device_rules() {
        use crate::sigma::{Event, LogSource};
        let rules = rules();
        let source = || LogSource {
            product: Some("caduceus".into()),
            service: Some("devices".into()),
            category: Some("vulnerability_finding".into()),
        };
        let titles = |value: serde_json::Value| {
            let mut out = Vec::new();
            rules.matches(&Event::from_json(source(), &value), &mut out);
            let all: Vec<_> = rules.rules().collect();
            let mut titles: Vec<String> = out.iter().map(|&i| all[i].title.clone()).collect();
            titles.sort();
            titles
        };
        assert_eq!(
            titles(serde_json::json!({"activity": "created", "status": "affected", "kev": "true", "cvss": "9.8"})),
            ["Device affected by a critical vulnerability", "Device affected by a known exploited vulnerability"]
        );
        assert_eq!(
            titles(serde_json::json!({"activity": "created", "status": "affected", "kev": "false", "cvss": "7.5"})),
            Vec::<String>::new()
        );
        assert!(
            titles(serde_json::json!({"activity": "closed", "status": "affected", "kev": "true", "cvss": "9.8"}))
                .is_empty()
        );
        assert!(
            titles(serde_json::json!({"activity": "updated", "status": "fixed", "kev": "true", "cvss": "9.8"}))
                .is_empty()
        );
    }
}
