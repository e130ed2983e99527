//! Demo data: a small, living hospital for a newcomer to look at. Each
//! capability adds its own realistic data here as it lands (staff, patients,
//! devices, events). Nothing here is real patient data.

use caduceus_core::{Actor, Payload, Redacted, Severity, Target};
use caduceus_identity::roles::Role;
use caduceus_identity::service::{IdentityError, IdentityService, NewUser};

use crate::platform::{Platform, ServerError};

/// The fictional site the demo runs.
pub const DEMO_SITE: &str = "St. Brigid's Community Hospital (demo)";

/// Seed the demo's starting state onto the spine.
pub async fn seed(platform: &Platform) -> Result<(), ServerError> {
    let config = &platform.config;
    let settings = [
        ("site.name", DEMO_SITE.to_owned()),
        ("storage.backend", platform.store.backend().as_str().to_owned()),
        ("spine.capacity", config.spine.capacity.to_string()),
        ("server.tls", if config.server.danger_plaintext_http { "plaintext (danger)" } else { "tls" }.to_owned()),
    ];
    for (key, detail) in settings {
        platform
            .record(
                Severity::Informational,
                Actor::system(),
                Some(Target { kind: "config".into(), uid: key.into() }),
                "demo configuration loaded",
                Payload::ConfigChange { key: key.into(), detail },
            )
            .await?;
    }
    Ok(())
}

/// The demo inventory: devices a mid-sized hospital has, named by their real
/// manufacturers and models so that importing CISA's medical advisories
/// (`caduceus advisories import`) and scanning shows real findings.
const DEMO_INVENTORY: &str = "\
id,manufacturer,model,version,location,ip,clinical_function,criticality,owner,end_of_support,segment
pump-icu-01,\"Becton, Dickinson and Company (BD)\",Alaris 8015 PC unit,9.33,ICU bed 4,10.20.1.11,infusion pump,life_sustaining,Biomedical engineering,2024-12-31,10.20.0.0/16
pump-icu-02,\"Becton, Dickinson and Company (BD)\",Alaris 8015 PC unit,12.1.2,ICU bed 5,10.20.1.12,infusion pump,life_sustaining,Biomedical engineering,,10.20.0.0/16
mon-icu-01,Philips,IntelliVue MX40,B.06.75,ICU bed 4,10.20.2.21,patient monitor,diagnostic,Biomedical engineering,,10.20.0.0/16
ct-rad-01,Siemens,SOMATOM go.Up,VA30A,Radiology CT 1,10.30.0.5,CT scanner,diagnostic,Radiology,,10.30.0.0/16
pacs-01,Example PACS Vendor,PACS Server,7.2,Data centre,10.30.0.2,image archive,diagnostic,IT,,10.30.0.0/16
printer-ward-3,HP,LaserJet M404,2.1,Ward 3,10.40.0.9,printer,non_clinical,IT,,10.40.0.0/16
";

/// Put the demo inventory in an empty store.
pub async fn seed_devices(platform: &Platform) -> Result<(), ServerError> {
    if platform.store.count_devices().await? > 0 {
        return Ok(());
    }
    let import = caduceus_devices::inventory::read_csv(DEMO_INVENTORY.as_bytes())
        .map_err(|e| ServerError::Io(format!("demo inventory: {e:?}")))?;
    let now = platform.clock.now();
    let mut rows = Vec::new();
    for device in import.devices {
        let stored = crate::devices::StoredDevice { device, exposed: false, risk: None };
        let body = serde_json::to_string(&stored).map_err(|e| ServerError::Io(format!("demo inventory: {e}")))?;
        rows.push(caduceus_store::devices::DeviceRow {
            id: stored.device.id.clone(),
            body,
            created: now,
            updated: now,
        });
    }
    platform.store.put_devices(&rows).await?;
    Ok(())
}

/// One demo account and the password generated for it at this start.
#[derive(Debug)]
pub struct DemoUser {
    pub role: Role,
    pub username: String,
    pub password: Redacted<String>,
}

/// An account for every role, each with a password generated at this start
/// (earlier demo passwords stop working, as the admin token does).
/// Privileged roles must enrol a second factor at their first sign-in.
pub async fn seed_users(identity: &IdentityService) -> Result<Vec<DemoUser>, IdentityError> {
    let mut users = Vec::new();
    for role in Role::ALL {
        let username = format!("demo.{}", role.name());
        let password = match identity.store().user_by_username(&username).await? {
            Some(existing) => identity.set_password(Actor::system(), &existing.user_id, None).await?,
            None => {
                let new = NewUser {
                    username: username.clone(),
                    display_name: format!("Demo {}", role.name()),
                    roles: vec![role],
                    password: None,
                    // The demo patient's own record, by pseudonymous reference.
                    patient_ref: (role == Role::Patient).then(|| "demo-patient-0001".to_owned()),
                };
                let (_, generated) = identity.create_user(Actor::system(), new).await?;
                generated.ok_or_else(|| IdentityError::Internal("no password was generated".into()))?
            }
        };
        users.push(DemoUser { role, username, password });
    }
    Ok(users)
}

/// Fictional names for the demo's patients (none is a real person).
const DEMO_FAMILIES: &[&str] = &[
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Haddad",
    "Kowalski",
    "Nakamura",
    "Brennan",
    "Castillo",
    "Osei",
    "Varga",
    "Fitzgerald",
    "Tanaka",
    "Mbeki",
    "Sorensen",
    "Quintero",
    "Albrecht",
    "Dubois",
    "Iqbal",
    "Petrov",
    "Whitfield",
];
const DEMO_GIVENS: &[&str] = &[
    "Amara", "Elin", "Lucien", "Samir", "Zofia", "Hiro", "Aoife", "Mateo", "Kwame", "Réka", "Declan", "Yuki", "Thandi",
    "Nils", "Camila", "Greta", "Élodie", "Bilal", "Irina", "Harriet",
];

/// The demo's patient records, in the vault: twenty patients with
/// encounters, vital signs and conditions; the demo clinician cares for the
/// first ten (an Encounter names them), the demo nurse is on the care team
/// of the first five; one patient refuses the clinician by Consent. The
/// demo patient account's own record is the first. Seeded once per data
/// directory (the records persist across starts).
/// Returns whether the records were seeded now (false: they were there).
pub async fn seed_records(
    platform: &std::sync::Arc<Platform>,
    identity: &IdentityService,
) -> Result<bool, ServerError> {
    use caduceus_vault::service::{Requester, VaultError, WriteOp};
    use serde_json::{Value, json};

    let vault = crate::vault::open(platform).await?;
    let who = Requester::system("demo");
    let failed = |e: VaultError| ServerError::Vault(format!("demo records: {e}"));
    if vault.read(&who, "Patient", "demo-patient-0001").await.is_ok() {
        return Ok(false);
    }
    let user_id = |name: &str| {
        let name = name.to_owned();
        async move { identity.store().user_by_username(&name).await.ok().flatten().map(|u| u.user_id) }
    };
    let clinician = user_id("demo.clinician").await.unwrap_or_default();
    let nurse = user_id("demo.nurse").await.unwrap_or_default();
    let object = |v: Value| match v {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    let put = |resource_type: &str, id: &str, body: Value| WriteOp::Put {
        resource_type: resource_type.to_owned(),
        id: id.to_owned(),
        body: object(body),
        if_match: None,
        create_only: false,
    };
    let mut ops = vec![
        put(
            "Organization",
            "demo-org",
            json!({"resourceType": "Organization", "id": "demo-org", "name": DEMO_SITE, "active": true}),
        ),
        put(
            "Practitioner",
            "demo-dr",
            json!({"resourceType": "Practitioner", "id": "demo-dr", "active": true,
                   "identifier": [{"system": caduceus_vault::service::USER_SYSTEM, "value": clinician}],
                   "name": [{"family": "Ward", "given": ["Imogen"], "prefix": ["Dr"]}],
                   "address": [{"use": "home", "line": ["4 Quay Lane"], "city": "Kilbride", "postalCode": "KB07 1QL"}]}),
        ),
        put(
            "PractitionerRole",
            "demo-dr-role",
            json!({"resourceType": "PractitionerRole", "id": "demo-dr-role", "active": true,
                   "practitioner": {"reference": "Practitioner/demo-dr"},
                   "organization": {"reference": "Organization/demo-org", "display": "Cardiology"}}),
        ),
        put(
            "PractitionerRole",
            "demo-rn-role",
            json!({"resourceType": "PractitionerRole", "id": "demo-rn-role", "active": true,
                   "practitioner": {"reference": "Practitioner/demo-rn"},
                   "organization": {"reference": "Organization/demo-org", "display": "Emergency"}}),
        ),
        // Three records that make snooping stand out: a local celebrity
        // (marked CEL), a relative of Dr Ward (same surname and address) and
        // the demo nurse's own record (an employee as a patient).
        put(
            "Patient",
            "demo-patient-0021",
            json!({"resourceType": "Patient", "id": "demo-patient-0021", "active": true,
                   "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "CEL", "display": "celebrity"}]},
                   "name": [{"use": "official", "family": "Delaney", "given": ["Saoirse"]}],
                   "gender": "female", "birthDate": "1979-04-12",
                   "address": [{"line": ["1 Cliff Walk"], "city": "Kilbride", "postalCode": "KB01 9CW"}]}),
        ),
        put(
            "Patient",
            "demo-patient-0022",
            json!({"resourceType": "Patient", "id": "demo-patient-0022", "active": true,
                   "name": [{"use": "official", "family": "Ward", "given": ["Conor"]}],
                   "gender": "male", "birthDate": "1951-09-30",
                   "address": [{"use": "home", "line": ["4 Quay Lane"], "city": "Kilbride", "postalCode": "KB07 1QL"}]}),
        ),
        put(
            "Patient",
            "demo-patient-0023",
            json!({"resourceType": "Patient", "id": "demo-patient-0023", "active": true,
                   "identifier": [{"system": caduceus_vault::service::USER_SYSTEM, "value": nurse}],
                   "name": [{"use": "official", "family": "Abbot", "given": ["Tomas"]}],
                   "gender": "male", "birthDate": "1988-02-17"}),
        ),
        put(
            "Practitioner",
            "demo-rn",
            json!({"resourceType": "Practitioner", "id": "demo-rn", "active": true,
                   "identifier": [{"system": caduceus_vault::service::USER_SYSTEM, "value": nurse}],
                   "name": [{"family": "Abbot", "given": ["Tomas"]}]}),
        ),
    ];
    for (i, (family, given)) in DEMO_FAMILIES.iter().zip(DEMO_GIVENS).enumerate() {
        let n = i + 1;
        let pid = format!("demo-patient-{n:04}");
        let year = 1940 + (n * 3) % 70;
        ops.push(put(
            "Patient",
            &pid,
            json!({"resourceType": "Patient", "id": pid, "active": true,
                   "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": format!("SB-{:06}", 104_729 * n % 1_000_000)}],
                   "name": [{"use": "official", "family": family, "given": [given]}],
                   "gender": if n % 2 == 0 { "female" } else { "male" },
                   "birthDate": format!("{year}-{:02}-{:02}", 1 + n % 12, 1 + n % 28),
                   "address": [{"line": [format!("{} Harbour Road", 10 + n)], "city": "Kilbride", "postalCode": format!("KB{n:02} 3XY"), "country": "IE"}],
                   "managingOrganization": {"reference": "Organization/demo-org"}}),
        ));
        let enc = format!("demo-enc-{n:04}");
        let participant =
            if n <= 10 { json!([{"individual": {"reference": "Practitioner/demo-dr"}}]) } else { json!([]) };
        ops.push(put(
            "Encounter",
            &enc,
            json!({"resourceType": "Encounter", "id": enc, "status": "finished",
                   "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                   "subject": {"reference": format!("Patient/{pid}")},
                   "participant": participant,
                   "period": {"start": format!("2026-11-{:02}T09:00:00Z", 1 + n % 27), "end": format!("2026-11-{:02}T09:40:00Z", 1 + n % 27)},
                   "serviceProvider": {"reference": "Organization/demo-org"}}),
        ));
        for (k, (code, display, unit, value)) in
            [("8867-4", "Heart rate", "/min", 60 + (n * 7) % 40), ("8310-5", "Body temperature", "Cel", 36)]
                .into_iter()
                .enumerate()
        {
            let oid = format!("demo-obs-{n:04}-{k}");
            ops.push(put(
                "Observation",
                &oid,
                json!({"resourceType": "Observation", "id": oid, "status": "final",
                       "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
                       "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
                       "subject": {"reference": format!("Patient/{pid}")},
                       "encounter": {"reference": format!("Encounter/{enc}")},
                       "effectiveDateTime": format!("2026-11-{:02}T09:15:00Z", 1 + n % 27),
                       "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}),
            ));
        }
        if n % 4 == 0 {
            let cid = format!("demo-cond-{n:04}");
            ops.push(put(
                "Condition",
                &cid,
                json!({"resourceType": "Condition", "id": cid,
                       "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                       "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertensive disorder"}]},
                       "subject": {"reference": format!("Patient/{pid}")},
                       "recordedDate": "2026-10-02"}),
            ));
        }
        if n <= 5 {
            let tid = format!("demo-careteam-{n:04}");
            ops.push(put(
                "CareTeam",
                &tid,
                json!({"resourceType": "CareTeam", "id": tid, "status": "active",
                       "subject": {"reference": format!("Patient/{pid}")},
                       "participant": [{"member": {"reference": "Practitioner/demo-rn"}}]}),
            ));
        }
    }
    // Patient 7 refuses the demo clinician: the consent overrides the encounter.
    ops.push(put(
        "Consent",
        "demo-consent-0007",
        json!({"resourceType": "Consent", "id": "demo-consent-0007", "status": "active",
               "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
               "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
               "patient": {"reference": "Patient/demo-patient-0007"},
               "dateTime": "2026-11-01T10:00:00Z",
               "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
               "provision": {"type": "permit",
                             "provision": [{"type": "deny", "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}]},
                                                                       "reference": {"reference": "Practitioner/demo-dr"}}]}]}}),
    ));
    vault.write(&who, ops).await.map_err(failed)?;
    Ok(true)
}

/// Activity for the detection engine to find at the demo's first start:
/// a password-spraying run against Caduceus accounts from one address
/// (recorded as the sign-in service would record it), the demo nurse
/// opening records of patients she does not care for (refused by the
/// vault, one after another), and the demo clinician breaking the glass to
/// read a relative's record (same surname and address). The first two
/// raise alerts at once; the third once its 30-minute settle window has
/// passed without anything explaining it.
pub async fn seed_activity(platform: &std::sync::Arc<Platform>, identity: &IdentityService) -> Result<(), ServerError> {
    use caduceus_core::event::AuthActivity;
    use caduceus_vault::service::Requester;

    for n in 0..12 {
        let payload = Payload::Authentication {
            activity: AuthActivity::Logon,
            account: format!("unknown:{:016x}", 0x5eed_0000_u64 + n),
            methods: "password".into(),
            source: "203.0.113.77".into(),
            session_id: None,
            failure: Some("bad_credentials".into()),
        };
        let now = platform.clock.now();
        let event = caduceus_core::SecurityEvent::new(
            caduceus_core::event::EventId::new(now),
            now,
            Severity::Low,
            caduceus_core::Status::Failure,
            Actor::system(),
            None,
            "sign-in failed",
            payload,
        )?;
        platform.publish(event).await?;
    }
    let vault = crate::vault::open(platform).await?;
    let user = |name: &str| {
        let name = name.to_owned();
        async move { identity.store().user_by_username(&name).await.ok().flatten().map(|u| u.user_id) }
    };
    let requester = |user_id: String, role: &str| Requester {
        user_id,
        roles: vec![role.to_owned()],
        scopes: None,
        patient_ref: None,
        source: "10.20.0.31".to_owned(),
        purpose_of_use: Some("TREAT".to_owned()),
        elevated: false,
    };
    if let Some(nurse) = user("demo.nurse").await {
        let who = requester(nurse, "nurse");
        for n in 11..=16 {
            // Refused: the nurse has no care relationship with these patients.
            let _ = vault.read(&who, "Patient", &format!("demo-patient-{n:04}")).await;
        }
    }
    if let Some(clinician) = user("demo.clinician").await {
        let who = requester(clinician, "clinician");
        if vault
            .break_glass(&who, "demo-patient-0022", "patient collapsed in the car park, no notes to hand")
            .await
            .is_ok()
        {
            let _ = vault.read(&who, "Patient", "demo-patient-0022").await;
        }
    }
    Ok(())
}
