//! The access policy against realistic actors, facts and R4 Consent
//! resources (shaped like the HL7 R4 Consent examples: `patient-privacy`
//! scope, root provision with nested exceptions).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use caduceus_vault::policy::{
    Action, Actor, Basis, BreakGlassGrant, Decision, Facts, Interactions, Relationship, Scope, ScopeContext,
    ScopeError, Target, decide, role_scopes,
};
use serde_json::{Value, json};

/// 2024-06-01T12:00:00Z.
const NOW: i64 = 1_717_243_200_000;
const MINUTE: i64 = 60_000;
const PATIENT: &str = "p-7f3a";
const OTHER_PATIENT: &str = "p-91c2";

fn roles(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn actor<'a>(roles: &'a [String], practitioners: &'a [String]) -> Actor<'a> {
    Actor {
        user_id: "u-1",
        roles,
        scopes: None,
        patient_ref: None,
        practitioner_refs: practitioners,
        purpose_of_use: None,
    }
}

fn target(resource_type: &str) -> Target<'_> {
    Target { resource_type, patient: Some(PATIENT), category: None }
}

fn facts<'a>(relationships: &'a [Relationship], consents: &'a [Value]) -> Facts<'a> {
    Facts { now_ms: NOW, relationships, consents, break_glass: None }
}

fn encounter() -> Vec<Relationship> {
    vec![Relationship::Encounter { encounter_id: "enc-12".into() }]
}

/// Every decision explains itself.
fn check(decision: Decision) -> Decision {
    assert!(!decision.reasons.is_empty(), "a decision without reasons: {decision:?}");
    assert_eq!(decision.allowed, decision.basis.is_some(), "{decision:?}");
    decision
}

fn has_reason(decision: &Decision, needle: &str) -> bool {
    decision.reasons.iter().any(|r| r.contains(needle))
}

/// A privacy consent shaped like the R4 examples, with the given provision.
fn consent(id: &str, status: &str, provision: Value) -> Value {
    json!({
        "resourceType": "Consent",
        "id": id,
        "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{PATIENT}")},
        "dateTime": "2024-01-15",
        "performer": [{"reference": format!("Patient/{PATIENT}")}],
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": provision
    })
}

/// "Not them": deny one practitioner access to the whole record.
fn deny_practitioner(id: &str, practitioner: &str) -> Value {
    consent(
        id,
        "active",
        json!({
            "type": "deny",
            "period": {"start": "2024-01-15"},
            "actor": [{
                "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}]},
                "reference": {"reference": format!("Practitioner/{practitioner}")}
            }],
            "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}]
        }),
    )
}

/// Opt in, except psychiatric records are withheld from everyone.
fn withhold_category(id: &str, label: &str) -> Value {
    consent(
        id,
        "active",
        json!({
            "type": "permit",
            "provision": [{
                "type": "deny",
                "securityLabel": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": label}]
            }]
        }),
    )
}

/// Deny everyone, except one named practitioner.
fn only_practitioner(id: &str, practitioner: &str) -> Value {
    consent(
        id,
        "active",
        json!({
            "type": "deny",
            "provision": [{
                "type": "permit",
                "actor": [{
                    "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}]},
                    "reference": {"reference": format!("Practitioner/{practitioner}")}
                }],
                "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}]
            }]
        }),
    )
}

fn grant(patient: &str, expires_ms: i64) -> BreakGlassGrant {
    BreakGlassGrant {
        grant_id: "bg-1".into(),
        patient: patient.into(),
        expires_ms,
        reason: "unconscious in the emergency department".into(),
    }
}

#[test]
fn clinician_with_a_relationship_is_allowed() {
    let (r, pr) = (roles(&["clinician"]), roles(&["pr-1"]));
    let rel = encounter();
    for action in [Action::Read, Action::Search, Action::Create, Action::Update, Action::History] {
        let d = check(decide(&actor(&r, &pr), action, &target("Observation"), &facts(&rel, &[])));
        assert!(d.allowed, "{action}: {d:?}");
        assert_eq!(d.basis, Some(Basis::Relationship));
        assert!(has_reason(&d, "role clinician grants user/*.cruds"));
        assert!(has_reason(&d, "participant of Encounter/enc-12"));
    }
    let team = [Relationship::CareTeam { care_team_id: "ct-3".into() }];
    let d = check(decide(&actor(&r, &pr), Action::Read, &target("Condition"), &facts(&team, &[])));
    assert!(d.allowed && has_reason(&d, "member of CareTeam/ct-3"));
    let assigned = [Relationship::Assignment { detail: "ward 4 night roster".into() }];
    let d = check(decide(&actor(&r, &pr), Action::Read, &target("Condition"), &facts(&assigned, &[])));
    assert!(d.allowed && !has_reason(&d, "ward 4"), "assignment detail is free text, never echoed: {d:?}");
}

#[test]
fn clinician_without_a_relationship_is_denied_and_may_break_glass() {
    let (r, pr) = (roles(&["clinician"]), roles(&["pr-1"]));
    let d = check(decide(&actor(&r, &pr), Action::Read, &target("Observation"), &facts(&[], &[])));
    assert!(!d.allowed);
    assert!(d.break_glass_possible);
    assert!(has_reason(&d, "no care relationship"));
    // Nurses may too; a device service may not.
    let nurse = roles(&["nurse"]);
    let d = check(decide(&actor(&nurse, &pr), Action::Read, &target("Observation"), &facts(&[], &[])));
    assert!(!d.allowed && d.break_glass_possible);
    let device = roles(&["device-service"]);
    let d = check(decide(&actor(&device, &[]), Action::Create, &target("Observation"), &facts(&[], &[])));
    assert!(!d.allowed && !d.break_glass_possible);
    // Break-glass never covers export or delete.
    let d = check(decide(&actor(&r, &pr), Action::Export, &target("Observation"), &facts(&[], &[])));
    assert!(!d.allowed && !d.break_glass_possible);
}

#[test]
fn consent_deny_overrides_role_and_relationship() {
    let (r, pr) = (roles(&["clinician"]), roles(&["pr-1"]));
    let rel = encounter();
    let consents = [deny_practitioner("c-notthem", "pr-1")];
    let d = check(decide(&actor(&r, &pr), Action::Read, &target("Observation"), &facts(&rel, &consents)));
    assert!(!d.allowed, "{d:?}");
    assert!(has_reason(&d, "Consent/c-notthem denies read of Observation (the user as Practitioner/pr-1)"), "{d:?}");
    assert!(d.break_glass_possible, "an emergency may override a consent deny: {d:?}");
    // The same consent does not touch another practitioner.
    let other = roles(&["pr-2"]);
    let d = check(decide(&actor(&r, &other), Action::Read, &target("Observation"), &facts(&rel, &consents)));
    assert!(d.allowed, "{d:?}");
    assert!(has_reason(&d, "no consent of the patient applies"));
}

#[test]
fn consent_withholding_a_category_denies_only_that_category_and_never_names_it() {
    let (r, pr) = (roles(&["clinician"]), roles(&["pr-1"]));
    let rel = encounter();
    let consents = [withhold_category("c-psy", "PSY")];
    let psy = Target { resource_type: "Condition", patient: Some(PATIENT), category: Some("PSY") };
    let d = check(decide(&actor(&r, &pr), Action::Read, &psy, &facts(&rel, &consents)));
    assert!(!d.allowed);
    assert!(has_reason(&d, "Consent/c-psy denies"));
    assert!(d.reasons.iter().all(|reason| !reason.contains("PSY")), "category values stay out of reasons: {d:?}");
    let plain = Target { category: Some("LAB"), ..psy };
    let d = check(decide(&actor(&r, &pr), Action::Read, &plain, &facts(&rel, &consents)));
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.basis, Some(Basis::Relationship), "a generic permit is not a relationship");
}

#[test]
fn consent_deny_by_resource_class_and_purpose() {
    let (r, pr) = (roles(&["clinician"]), roles(&["pr-1"]));
    let rel = encounter();
    let by_class = consent(
        "c-class",
        "active",
        json!({"type": "permit", "provision": [{
            "type": "deny",
            "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "DiagnosticReport"}]
        }]}),
    );
    let consents = [by_class];
    let d = check(decide(&actor(&r, &pr), Action::Read, &target("DiagnosticReport"), &facts(&rel, &consents)));
    assert!(!d.allowed && has_reason(&d, "class DiagnosticReport"), "{d:?}");
    let d = check(decide(&actor(&r, &pr), Action::Read, &target("Observation"), &facts(&rel, &consents)));
    assert!(d.allowed);

    let no_payers = consent(
        "c-payment",
        "active",
        json!({"type": "permit", "provision": [{
            "type": "deny",
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HPAYMT"}]
        }]}),
    );
    let consents = [no_payers];
    let mut billing = actor(&r, &pr);
    billing.purpose_of_use = Some("COVAUTH");
    let d = check(decide(&billing, Action::Read, &target("Observation"), &facts(&rel, &consents)));
    assert!(!d.allowed, "COVAUTH is a kind of HPAYMT: {d:?}");
    let d = check(decide(&actor(&r, &pr), Action::Read, &target("Observation"), &facts(&rel, &consents)));
    assert!(d.allowed && has_reason(&d, "taken as TREAT"), "{d:?}");
    billing.purpose_of_use = Some("HPAYMT; DROP");
    let d = check(decide(&billing, Action::Read, &target("Observation"), &facts(&rel, &consents)));
    assert!(!d.allowed && has_reason(&d, "purpose of use is not a valid code"));
}

#[test]
fn consent_permit_naming_the_user_stands_for_a_relationship() {
    let (r, pr) = (roles(&["clinician"]), roles(&["pr-5"]));
    let consents = [only_practitioner("c-only", "pr-5")];
    let d = check(decide(&actor(&r, &pr), Action::Read, &target("Observation"), &facts(&[], &consents)));
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.basis, Some(Basis::Consent));
    assert!(has_reason(&d, "Consent/c-only permits read of Observation (the user as Practitioner/pr-5)"));
    // Everyone else, even with a relationship, is denied by the root deny.
    let other = roles(&["pr-6"]);
    let rel = encounter();
    let d = check(decide(&actor(&r, &other), Action::Read, &target("Observation"), &facts(&rel, &consents)));
    assert!(!d.allowed, "{d:?}");
    // A permit never widens the scopes: a nurse named by consent still cannot delete.
    let nurse = roles(&["nurse"]);
    let d = check(decide(&actor(&nurse, &pr), Action::Delete, &target("Observation"), &facts(&[], &consents)));
    assert!(!d.allowed && has_reason(&d, "no role of the user grants delete"), "{d:?}");
}

#[test]
fn consent_outside_its_period_is_ignored() {
    let (r, pr) = (roles(&["clinician"]), roles(&["pr-1"]));
    let rel = encounter();
    let mut expired = deny_practitioner("c-old", "pr-1");
    expired["provision"]["period"] = json!({"start": "2022-01-01", "end": "2023-12-31"});
    let mut future = deny_practitioner("c-future", "pr-1");
    future["provision"]["period"] = json!({"start": "2024-06-01T13:00:00Z"});
    let consents = [expired, future];
    let d = check(decide(&actor(&r, &pr), Action::Read, &target("Observation"), &facts(&rel, &consents)));
    assert!(d.allowed, "{d:?}");
    assert!(has_reason(&d, "Consent/c-old is outside its period, ignored"));
    assert!(has_reason(&d, "Consent/c-future is outside its period, ignored"));
    // The last day of a period is within it.
    let mut today = deny_practitioner("c-today", "pr-1");
    today["provision"]["period"] = json!({"start": "2024-01-01", "end": "2024-06-01"});
    let consents = [today];
    let d = check(decide(&actor(&r, &pr), Action::Read, &target("Observation"), &facts(&rel, &consents)));
    assert!(!d.allowed, "{d:?}");
}

#[test]
fn inactive_and_foreign_consents_are_ignored() {
    let (r, pr) = (roles(&["clinician"]), roles(&["pr-1"]));
    let rel = encounter();
    let mut research = deny_practitioner("c-research", "pr-1");
    research["scope"] =
        json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}]});
    let mut other_patient = deny_practitioner("c-other", "pr-1");
    other_patient["patient"] = json!({"reference": format!("Patient/{OTHER_PATIENT}")});
    let consents = [
        deny_practitioner("c-inactive", "pr-1")
            .as_object()
            .map(|o| {
                let mut o = o.clone();
                o.insert("status".into(), json!("inactive"));
                Value::Object(o)
            })
            .unwrap(),
        consent("c-draft", "draft", json!({"type": "deny"})),
        research,
        other_patient,
    ];
    let d = check(decide(&actor(&r, &pr), Action::Read, &target("Observation"), &facts(&rel, &consents)));
    assert!(d.allowed, "{d:?}");
    assert!(has_reason(&d, "Consent/c-inactive is inactive, ignored"));
    assert!(has_reason(&d, "Consent/c-draft is draft, ignored"));
    assert!(has_reason(&d, "Consent/c-research is not a patient-privacy consent"));
    assert!(has_reason(&d, "Consent/c-other is about another patient"));
}

#[test]
fn criteria_the_vault_cannot_check_make_a_deny_apply_and_a_permit_not() {
    let (r, pr) = (roles(&["clinician"]), roles(&["pr-1"]));
    let rel = encounter();
    // Withholding particular documents: the policy sees types, not instances.
    let withheld = consent(
        "c-docs",
        "active",
        json!({"type": "permit", "provision": [{
            "type": "deny",
            "data": [{"meaning": "instance", "reference": {"reference": "DocumentReference/doc-9"}}]
        }]}),
    );
    let consents = [withheld];
    let d = check(decide(&actor(&r, &pr), Action::Read, &target("DocumentReference"), &facts(&rel, &consents)));
    assert!(!d.allowed);
    let d = check(decide(&actor(&r, &pr), Action::Read, &target("Observation"), &facts(&rel, &consents)));
    assert!(d.allowed);
    // A permit limited to a data period cannot be confirmed, so names nobody.
    let permit = consent(
        "c-dp",
        "active",
        json!({"type": "deny", "provision": [{
            "type": "permit",
            "actor": [{"role": {"text": "primary care"}, "reference": {"reference": "Practitioner/pr-1"}}],
            "dataPeriod": {"start": "2020-01-01", "end": "2021-01-01"}
        }]}),
    );
    let consents = [permit];
    let d = check(decide(&actor(&r, &pr), Action::Read, &target("Observation"), &facts(&[], &consents)));
    assert!(!d.allowed, "{d:?}");
    // Nesting deeper than the bound is refused as a deny.
    let mut deep = json!({"type": "deny"});
    for _ in 0..20 {
        deep = json!({"type": "permit", "provision": [deep]});
    }
    let consents = [consent("c-deep", "active", deep)];
    let d = check(decide(&actor(&r, &pr), Action::Read, &target("Observation"), &facts(&rel, &consents)));
    assert!(!d.allowed && has_reason(&d, "too complex"), "{d:?}");
}

#[test]
fn break_glass_grant_allows_within_its_window_only() {
    let (r, pr) = (roles(&["clinician"]), roles(&["pr-1"]));
    let g = grant(PATIENT, NOW + 30 * MINUTE);
    let f = Facts { break_glass: Some(&g), ..facts(&[], &[]) };
    let d = check(decide(&actor(&r, &pr), Action::Read, &target("Observation"), &f));
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.basis, Some(Basis::BreakGlass));
    assert!(has_reason(&d, "break-glass grant bg-1 valid until 2024-06-01T12:30:00Z"), "{d:?}");
    assert!(d.reasons.iter().all(|reason| !reason.contains("unconscious")), "the free-text reason stays out");
    // Not for export or delete.
    let d = check(decide(&actor(&r, &pr), Action::Delete, &target("Observation"), &f));
    assert!(!d.allowed && has_reason(&d, "does not cover delete"));

    let late = Facts { now_ms: NOW + 30 * MINUTE, ..f };
    let d = check(decide(&actor(&r, &pr), Action::Read, &target("Observation"), &late));
    assert!(!d.allowed);
    assert!(has_reason(&d, "break-glass grant bg-1 expired at 2024-06-01T12:30:00Z"));
    assert!(d.break_glass_possible, "a fresh declaration would help");
}

#[test]
fn break_glass_for_another_patient_does_not_help() {
    let (r, pr) = (roles(&["clinician"]), roles(&["pr-1"]));
    let g = grant(OTHER_PATIENT, NOW + 30 * MINUTE);
    let f = Facts { break_glass: Some(&g), ..facts(&[], &[]) };
    let d = check(decide(&actor(&r, &pr), Action::Read, &target("Observation"), &f));
    assert!(!d.allowed);
    assert!(has_reason(&d, "bg-1 is for another patient"));
}

#[test]
fn break_glass_overrides_a_consent_deny_only_for_emergency_treatment() {
    let (r, pr) = (roles(&["clinician"]), roles(&["pr-1"]));
    let consents = [deny_practitioner("c-notthem", "pr-1")];
    let g = grant(PATIENT, NOW + 30 * MINUTE);
    let f = Facts { break_glass: Some(&g), ..facts(&[], &consents) };
    let d = check(decide(&actor(&r, &pr), Action::Read, &target("Observation"), &f));
    assert!(d.allowed && d.basis == Some(Basis::BreakGlass), "{d:?}");
    assert!(has_reason(&d, "overrides the consent deny"));
    assert!(has_reason(&d, "taken as ETREAT"));
    let mut routine = actor(&r, &pr);
    routine.purpose_of_use = Some("TREAT");
    let d = check(decide(&routine, Action::Read, &target("Observation"), &f));
    assert!(!d.allowed && has_reason(&d, "only for emergency treatment"), "{d:?}");
}

#[test]
fn declaring_and_reviewing_break_glass() {
    let (clin, pr) = (roles(&["clinician"]), roles(&["pr-1"]));
    let d = check(decide(&actor(&clin, &pr), Action::BreakGlass, &target("Patient"), &facts(&[], &[])));
    assert!(d.allowed && d.basis == Some(Basis::Role));
    for role in ["registrar", "device-service", "auditor", "admin", "patient"] {
        let r = roles(&[role]);
        let d = check(decide(&actor(&r, &[]), Action::BreakGlass, &target("Patient"), &facts(&[], &[])));
        assert!(!d.allowed, "{role}");
    }
    let shared = Target { resource_type: "Patient", patient: None, category: None };
    assert!(!check(decide(&actor(&clin, &pr), Action::BreakGlass, &shared, &facts(&[], &[]))).allowed);
    let auditor = roles(&["auditor"]);
    assert!(check(decide(&actor(&auditor, &[]), Action::ReviewBreakGlass, &shared, &facts(&[], &[]))).allowed);
    assert!(!check(decide(&actor(&clin, &pr), Action::ReviewBreakGlass, &shared, &facts(&[], &[]))).allowed);
}

#[test]
fn patients_see_only_their_own_record_and_cannot_write() {
    let r = roles(&["patient"]);
    let mut me = actor(&r, &[]);
    me.patient_ref = Some(PATIENT);
    for action in [Action::Read, Action::Search, Action::History, Action::Export] {
        let d = check(decide(&me, action, &target("Observation"), &facts(&[], &[])));
        assert!(d.allowed && d.basis == Some(Basis::OwnRecord), "{action}: {d:?}");
    }
    for action in [Action::Create, Action::Update, Action::Delete, Action::Erase] {
        let d = check(decide(&me, action, &target("Observation"), &facts(&[], &[])));
        assert!(!d.allowed, "{action}: {d:?}");
    }
    let log = check(decide(&me, Action::AccessLog, &target("AuditEvent"), &facts(&[], &[])));
    assert!(log.allowed && log.basis == Some(Basis::OwnRecord));

    let someone_else = Target { resource_type: "Observation", patient: Some(OTHER_PATIENT), category: None };
    let d = check(decide(&me, Action::Read, &someone_else, &facts(&encounter(), &[])));
    assert!(!d.allowed && has_reason(&d, "only the user's own record"), "{d:?}");
    assert!(!d.break_glass_possible);
    assert!(!check(decide(&me, Action::AccessLog, &someone_else, &facts(&[], &[]))).allowed);
    let shared = Target { resource_type: "Practitioner", patient: None, category: None };
    assert!(!check(decide(&me, Action::Read, &shared, &facts(&[], &[]))).allowed);
    // A consent cannot lock a patient out of their own record.
    let consents = [consent("c-all", "active", json!({"type": "deny"}))];
    assert!(check(decide(&me, Action::Read, &target("Observation"), &facts(&[], &consents))).allowed);
}

#[test]
fn staff_never_edit_their_own_record() {
    let (r, pr) = (roles(&["clinician", "patient"]), roles(&["pr-1"]));
    let mut me = actor(&r, &pr);
    me.patient_ref = Some(PATIENT);
    let d = check(decide(&me, Action::Update, &target("Condition"), &facts(&encounter(), &[])));
    assert!(!d.allowed, "{d:?}");
    assert!(!check(decide(&me, Action::BreakGlass, &target("Patient"), &facts(&[], &[]))).allowed);
}

#[test]
fn token_scopes_narrow_but_never_widen() {
    let (r, pr) = (roles(&["clinician"]), roles(&["pr-1"]));
    let rel = encounter();
    let narrow = Scope::parse_list("openid fhirUser launch/patient user/Observation.rs").unwrap();
    let mut a = actor(&r, &pr);
    a.scopes = Some(&narrow);
    assert!(check(decide(&a, Action::Read, &target("Observation"), &facts(&rel, &[]))).allowed);
    let d = check(decide(&a, Action::Update, &target("Observation"), &facts(&rel, &[])));
    assert!(!d.allowed && has_reason(&d, "token's scopes do not grant u on Observation"), "{d:?}");
    assert!(!check(decide(&a, Action::Read, &target("Condition"), &facts(&rel, &[]))).allowed);

    let r = roles(&["nurse"]);
    let wide = [Scope::parse("user/*.cruds").unwrap()];
    let mut a = actor(&r, &pr);
    a.scopes = Some(&wide);
    let d = check(decide(&a, Action::Delete, &target("Observation"), &facts(&rel, &[])));
    assert!(!d.allowed, "a wide token does not widen the nurse's role: {d:?}");
    assert!(check(decide(&a, Action::Update, &target("Observation"), &facts(&rel, &[]))).allowed);
    assert!(!check(decide(&a, Action::Update, &target("Condition"), &facts(&rel, &[]))).allowed);
}

#[test]
fn audit_events_are_never_writable() {
    for role in ["admin", "auditor", "security-analyst", "clinician", "device-service"] {
        let r = roles(&[role]);
        for action in [Action::Create, Action::Update, Action::Delete] {
            for patient in [None, Some(PATIENT)] {
                let t = Target { resource_type: "AuditEvent", patient, category: None };
                let d = check(decide(&actor(&r, &[]), action, &t, &facts(&encounter(), &[])));
                assert!(!d.allowed, "{role} {action}: {d:?}");
                assert!(has_reason(&d, "written only by the vault"));
            }
        }
    }
}

#[test]
fn scopes_parse_v2_and_v1_aliases_and_reject_junk() {
    let s = Scope::parse("user/Observation.rs").unwrap();
    assert_eq!(s.context(), ScopeContext::User);
    assert_eq!(s.resource_type(), Some("Observation"));
    assert_eq!(s.interactions(), Interactions::READ.union(Interactions::SEARCH));
    assert_eq!(s.to_string(), "user/Observation.rs");
    let s = Scope::parse("patient/*.r").unwrap();
    assert_eq!((s.context(), s.resource_type()), (ScopeContext::Patient, None));
    assert_eq!(Scope::parse("system/Device.cru").unwrap().to_string(), "system/Device.cru");
    // v1 aliases.
    assert_eq!(Scope::parse("user/*.read").unwrap().to_string(), "user/*.rs");
    assert_eq!(Scope::parse("user/*.write").unwrap().to_string(), "user/*.cud");
    assert_eq!(Scope::parse("user/*.*").unwrap().to_string(), "user/*.cruds");
    assert_eq!(Scope::parse("patient/Observation.*").unwrap().to_string(), "patient/Observation.cruds");
    // Junk.
    let cases = [
        ("*.*", ScopeError::MissingContext),
        ("Observation.rs", ScopeError::MissingContext),
        ("admin/*.rs", ScopeError::UnknownContext),
        ("user/Observation", ScopeError::MissingInteractions),
        ("user/Observation.", ScopeError::MissingInteractions),
        ("user/observation.rs", ScopeError::InvalidResourceType),
        ("user/../Patient.rs", ScopeError::InvalidResourceType),
        ("user/Observation.sr", ScopeError::InvalidInteractions),
        ("user/Observation.rrs", ScopeError::InvalidInteractions),
        ("user/Observation.x", ScopeError::InvalidInteractions),
        ("user/Observation.rs?category=laboratory", ScopeError::Constrained),
    ];
    for (input, error) in cases {
        assert_eq!(Scope::parse(input), Err(error), "{input}");
    }
    let long = format!("user/{}.rs", "A".repeat(200));
    assert_eq!(Scope::parse(&long), Err(ScopeError::TooLong(128)));
    assert!(Scope::parse_list(&"user/*.rs ".repeat(65)).is_err());
    assert!(Scope::parse_list(&"x".repeat(9000)).is_err());
    assert!(Scope::parse_list("openid user/*.rs junk").is_err());
}

#[test]
fn role_defaults_follow_the_table() {
    let show = |role: &str| role_scopes(role).iter().map(ToString::to_string).collect::<Vec<_>>();
    assert_eq!(show("clinician"), ["user/*.cruds"]);
    assert_eq!(show("patient"), ["patient/*.rs"]);
    assert_eq!(show("auditor"), ["user/AuditEvent.rs"]);
    assert_eq!(show("device-service"), ["system/Observation.c", "system/Device.cru"]);
    assert!(show("registrar").contains(&"user/Consent.crus".to_owned()));
    assert!(show("nurse").contains(&"user/Observation.cu".to_owned()));
    assert!(show("security-analyst").iter().all(|s| s.ends_with(".rs")));
    assert!(role_scopes("superuser").is_empty());
}

#[test]
fn registrar_works_on_registration_data_without_a_relationship() {
    let r = roles(&["registrar"]);
    let pr = roles(&["pr-desk"]);
    for (resource_type, action) in [
        ("Patient", Action::Create),
        ("Patient", Action::Update),
        ("Encounter", Action::Create),
        ("Consent", Action::Create),
    ] {
        let d = check(decide(&actor(&r, &pr), action, &target(resource_type), &facts(&[], &[])));
        assert!(d.allowed && d.basis == Some(Basis::Role), "{resource_type} {action}: {d:?}");
    }
    for (resource_type, action) in
        [("Observation", Action::Read), ("Patient", Action::Delete), ("Condition", Action::Search)]
    {
        let d = check(decide(&actor(&r, &pr), action, &target(resource_type), &facts(&encounter(), &[])));
        assert!(!d.allowed && !d.break_glass_possible, "{resource_type} {action}: {d:?}");
    }
    // The patient's consent binds the registrar too.
    let consents = [deny_practitioner("c-desk", "pr-desk")];
    assert!(!check(decide(&actor(&r, &pr), Action::Read, &target("Patient"), &facts(&[], &consents))).allowed);
    let org = Target { resource_type: "Organization", patient: None, category: None };
    let d = check(decide(&actor(&r, &pr), Action::Read, &org, &facts(&[], &[])));
    assert!(d.allowed && d.basis == Some(Basis::Shared));
    assert!(!check(decide(&actor(&r, &pr), Action::Update, &org, &facts(&[], &[]))).allowed);
}

#[test]
fn auditor_oversees_without_clinical_access() {
    let r = roles(&["auditor"]);
    let a = actor(&r, &[]);
    let consents = [consent("c-all", "active", json!({"type": "deny"}))];
    let d = check(decide(&a, Action::AccessLog, &target("AuditEvent"), &facts(&[], &consents)));
    assert!(d.allowed && d.basis == Some(Basis::Role));
    let d = check(decide(&a, Action::Read, &target("AuditEvent"), &facts(&[], &consents)));
    assert!(d.allowed && has_reason(&d, "oversight"), "{d:?}");
    for resource_type in ["Observation", "Patient", "Condition"] {
        let d = check(decide(&a, Action::Read, &target(resource_type), &facts(&encounter(), &[])));
        assert!(!d.allowed && !d.break_glass_possible, "{resource_type}");
    }
    let d = check(decide(&a, Action::Erase, &target("Patient"), &facts(&[], &[])));
    assert!(d.allowed && has_reason(&d, "step-up"), "{d:?}");
    let clinician = roles(&["clinician"]);
    assert!(
        !check(decide(&actor(&clinician, &[]), Action::AccessLog, &target("AuditEvent"), &facts(&encounter(), &[])))
            .allowed
    );
}

#[test]
fn admin_and_security_analyst_stay_on_shared_data() {
    let admin = roles(&["admin"]);
    let shared = |t| Target { resource_type: t, patient: None, category: None };
    for t in ["Practitioner", "PractitionerRole", "Organization", "Location", "Device"] {
        let d = check(decide(&actor(&admin, &[]), Action::Update, &shared(t), &facts(&[], &[])));
        assert!(d.allowed && d.basis == Some(Basis::Shared), "{t}");
    }
    let d = check(decide(&actor(&admin, &[]), Action::Read, &target("Observation"), &facts(&encounter(), &[])));
    assert!(!d.allowed);
    let patient_device = target("Device");
    assert!(!check(decide(&actor(&admin, &[]), Action::Read, &patient_device, &facts(&encounter(), &[]))).allowed);
    assert!(!check(decide(&actor(&admin, &[]), Action::Read, &shared("AuditEvent"), &facts(&[], &[]))).allowed);
    let d = check(decide(&actor(&admin, &[]), Action::Erase, &target("Patient"), &facts(&[], &[])));
    assert!(d.allowed);
    let mut narrowed = actor(&admin, &[]);
    let token = [Scope::parse("user/Location.rs").unwrap()];
    narrowed.scopes = Some(&token);
    assert!(!check(decide(&narrowed, Action::Erase, &target("Patient"), &facts(&[], &[]))).allowed);

    let analyst = roles(&["security-analyst"]);
    assert!(check(decide(&actor(&analyst, &[]), Action::Read, &shared("AuditEvent"), &facts(&[], &[]))).allowed);
    assert!(check(decide(&actor(&analyst, &[]), Action::Search, &shared("Device"), &facts(&[], &[]))).allowed);
    assert!(!check(decide(&actor(&analyst, &[]), Action::Update, &shared("Device"), &facts(&[], &[]))).allowed);
    assert!(!check(decide(&actor(&analyst, &[]), Action::Read, &target("Observation"), &facts(&[], &[]))).allowed);
    assert!(!check(decide(&actor(&analyst, &[]), Action::Erase, &target("Patient"), &facts(&[], &[]))).allowed);
    assert!(!check(decide(&actor(&analyst, &[]), Action::AccessLog, &target("AuditEvent"), &facts(&[], &[]))).allowed);
}

#[test]
fn device_service_writes_observations_for_assigned_patients() {
    let r = roles(&["device-service"]);
    let assigned = [Relationship::Assignment { detail: "bedside monitor bed 12".into() }];
    let d = check(decide(&actor(&r, &[]), Action::Create, &target("Observation"), &facts(&assigned, &[])));
    assert!(d.allowed && d.basis == Some(Basis::Relationship));
    assert!(!check(decide(&actor(&r, &[]), Action::Read, &target("Observation"), &facts(&assigned, &[]))).allowed);
    let device = Target { resource_type: "Device", patient: None, category: None };
    assert!(check(decide(&actor(&r, &[]), Action::Update, &device, &facts(&[], &[]))).allowed);
    assert!(!check(decide(&actor(&r, &[]), Action::Delete, &device, &facts(&[], &[]))).allowed);
}

#[test]
fn unknown_roles_and_invalid_targets_are_denied() {
    let r = roles(&["superuser"]);
    let d = check(decide(&actor(&r, &[]), Action::Read, &target("Observation"), &facts(&encounter(), &[])));
    assert!(!d.allowed && has_reason(&d, "no role the vault recognises"));
    let clin = roles(&["clinician"]);
    let bad = Target { resource_type: "../etc", patient: Some(PATIENT), category: None };
    assert!(!check(decide(&actor(&clin, &[]), Action::Read, &bad, &facts(&encounter(), &[]))).allowed);
    let bad = Target { resource_type: "Observation", patient: Some("a/b"), category: None };
    assert!(!check(decide(&actor(&clin, &[]), Action::Read, &bad, &facts(&encounter(), &[]))).allowed);
}

#[test]
fn launch_context_is_not_an_own_record() {
    // A clinician launched in a patient's context reaches that patient only
    // through the usual relationship and consent rules.
    let (r, pr) = (roles(&["clinician"]), roles(&["pr-1"]));
    let mut launched = actor(&r, &pr);
    launched.patient_ref = Some(PATIENT);
    let d = check(decide(&launched, Action::Read, &target("Observation"), &facts(&[], &[])));
    assert!(!d.allowed && d.break_glass_possible, "{d:?}");
    let d = check(decide(&launched, Action::Update, &target("Observation"), &facts(&encounter(), &[])));
    assert!(d.allowed && d.basis == Some(Basis::Relationship), "{d:?}");
}
