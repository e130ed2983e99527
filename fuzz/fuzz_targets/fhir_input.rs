//! Outside input to the vault: a resource body, a batch or transaction
//! bundle, a search query string, NDJSON lines, and the stored consents the
//! policy reads. None may panic; what is accepted must satisfy the vault's
//! own bounds.
#![no_main]

use caduceus_vault::blind::BlindIndexer;
use caduceus_vault::{bundle, policy, resource, search, service};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let indexer = BlindIndexer::new([7; 32]);
    match selector % 5 {
        0 => {
            if let Ok(map) = resource::parse(rest) {
                let value = serde_json::Value::Object(map);
                assert!(resource::depth(&value) <= resource::MAX_DEPTH);
                let t = value.get("resourceType").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
                let _ = resource::compartment_of(&t, "x", &value);
                let _ = search::index_entries(&t, &value, &indexer);
            }
        }
        1 => {
            let Ok(value) = serde_json::from_slice::<serde_json::Value>(rest) else { return };
            if let Ok(mut parsed) = bundle::parse_bundle(value) {
                assert!(parsed.entries.len() <= bundle::MAX_ENTRIES);
                let _ = bundle::processing_order(&parsed);
                let mut n = 0u64;
                let _ = bundle::assign_ids(&mut parsed, &mut || {
                    n += 1;
                    format!("id{n}")
                });
                let _ = bundle::conditional_references(&parsed);
            }
        }
        2 => {
            let text = String::from_utf8_lossy(rest);
            let params = service::parse_query_string(&text);
            for t in ["Patient", "Observation", "Encounter", "Consent", "AuditEvent", "Basic"] {
                let _ = search::parse_search(t, &params, &indexer);
            }
            let _ = caduceus_vault::audit::redact_query("Patient", &text);
        }
        3 => {
            for entry in bundle::read_ndjson(rest, 4096).take(64) {
                let _ = entry;
            }
        }
        _ => {
            let Ok(consent) = serde_json::from_slice::<serde_json::Value>(rest) else { return };
            let roles = vec!["clinician".to_owned()];
            let practitioners = vec!["pr-1".to_owned()];
            let actor = policy::Actor {
                user_id: "u1",
                roles: &roles,
                scopes: None,
                patient_ref: None,
                practitioner_refs: &practitioners,
                purpose_of_use: None,
            };
            let target = policy::Target { resource_type: "Observation", patient: Some("p1"), category: None };
            let consents = [consent];
            let facts = policy::Facts { now_ms: 1_800_000_000_000, relationships: &[], consents: &consents, break_glass: None };
            let decision = policy::decide(&actor, policy::Action::Read, &target, &facts);
            assert!(!decision.reasons.is_empty());
        }
    }
});
