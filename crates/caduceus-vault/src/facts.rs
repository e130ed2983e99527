//! What the detection engine may know about patients and staff: keyed
//! hashes of surnames and addresses (so "same surname as the user" can be
//! checked without either name leaving the vault), flags (VIP, employee),
//! and the user ↔ practitioner ↔ patient links. Computed inside the vault,
//! from the decrypted records, and handed out without any plaintext.

use caduceus_core::event::{AccessOutcome, ActorKind, RecordAction};
use caduceus_store::vault::RecordQuery;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::audit::AccessRecord;
use crate::blind::Field;
use crate::service::{Result, USER_SYSTEM, Vault, VaultError};

/// Most patients or practitioners read in one refresh.
pub const MAX_FACT_RECORDS: usize = 2_000_000;
/// Records read per page.
const PAGE: u32 = 1000;

/// A patient, as detection sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientFacts {
    /// The pseudonymous id (FHIR `Patient.id`).
    pub id: String,
    /// Keyed hash of the family name (first official name).
    pub surname: Option<String>,
    /// Keyed hash of the home address (lines, postal code, city).
    pub address: Option<String>,
    /// Marked in `meta.security` as restricted, a celebrity (`CEL`), VIP or
    /// an employee (`EMP`): accesses deserve a second look.
    pub flagged: bool,
    /// The member of staff whose own record this is
    /// (`identifier` `urn:caduceus:user|<user id>`).
    pub employee_user: Option<String>,
}

/// A member of staff linked to a Practitioner record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffFacts {
    pub user_id: String,
    pub practitioner_id: String,
    pub surname: Option<String>,
    pub address: Option<String>,
    /// From a PractitionerRole of the practitioner: its organization's
    /// display name, else its first specialty's text or code.
    pub department: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DetectionFacts {
    pub patients: Vec<PatientFacts>,
    pub staff: Vec<StaffFacts>,
}

/// One-way token derived from a blind-index term: comparable between
/// patients and staff, useless for querying the vault's own index.
fn token(term: Option<crate::blind::Term>) -> Option<String> {
    let term = term?;
    let mut hash = Sha256::new();
    hash.update(b"caduceus-detect-token-v1\0");
    hash.update(term.0.as_bytes());
    Some(hex::encode(hash.finalize()))
}

fn first_official_name(resource: &Value) -> Option<&Value> {
    let names = resource.get("name")?.as_array()?;
    names.iter().find(|n| n.get("use").and_then(Value::as_str) == Some("official")).or_else(|| names.first())
}

fn family(resource: &Value) -> Option<&str> {
    first_official_name(resource)?.get("family")?.as_str()
}

/// The home (else first) address as one normalisable string.
fn address(resource: &Value) -> Option<String> {
    let addresses = resource.get("address")?.as_array()?;
    let chosen = addresses
        .iter()
        .find(|a| a.get("use").and_then(Value::as_str) == Some("home"))
        .or_else(|| addresses.first())?;
    let mut parts: Vec<&str> =
        chosen.get("line").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    for key in ["postalCode", "city"] {
        if let Some(v) = chosen.get(key).and_then(Value::as_str) {
            parts.push(v);
        }
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

fn user_link(resource: &Value) -> Option<String> {
    resource.get("identifier")?.as_array()?.iter().find_map(|i| {
        (i.get("system").and_then(Value::as_str) == Some(USER_SYSTEM))
            .then(|| i.get("value").and_then(Value::as_str).map(str::to_owned))
            .flatten()
    })
}

fn flagged(resource: &Value) -> bool {
    let Some(labels) = resource.pointer("/meta/security").and_then(Value::as_array) else { return false };
    labels
        .iter()
        .filter_map(|l| l.get("code").and_then(Value::as_str))
        .any(|code| matches!(code.to_ascii_uppercase().as_str(), "R" | "V" | "CEL" | "VIP" | "EMP" | "TABOO"))
}

fn reference_id<'a>(reference: &'a Value, resource_type: &str) -> Option<&'a str> {
    reference.get("reference")?.as_str()?.strip_prefix(resource_type)?.strip_prefix('/')
}

impl Vault {
    /// Read every current Patient, Practitioner and PractitionerRole and
    /// return only what detection may know. The read itself is audited once
    /// (not per patient) as a search by the detection service.
    pub async fn detection_facts(&self) -> Result<DetectionFacts> {
        let indexer = self.keyring().indexer();
        let hashed = |field: Field, value: Option<&str>| token(value.and_then(|v| indexer.exact(field, v)));
        let mut facts = DetectionFacts::default();
        for resource in self.all_current("Patient").await? {
            let Some(id) = resource.get("id").and_then(Value::as_str) else { continue };
            facts.patients.push(PatientFacts {
                id: id.to_owned(),
                surname: hashed(Field::Family, family(&resource)),
                address: hashed(Field::Address, address(&resource).as_deref()),
                flagged: flagged(&resource),
                employee_user: user_link(&resource),
            });
        }
        let mut departments = std::collections::HashMap::new();
        for role in self.all_current("PractitionerRole").await? {
            let Some(practitioner) = role.get("practitioner").and_then(|p| reference_id(p, "Practitioner")) else {
                continue;
            };
            let department = role
                .pointer("/organization/display")
                .and_then(Value::as_str)
                .or_else(|| role.pointer("/specialty/0/text").and_then(Value::as_str))
                .or_else(|| role.pointer("/specialty/0/coding/0/code").and_then(Value::as_str));
            if let Some(department) = department {
                departments.entry(practitioner.to_owned()).or_insert_with(|| department.to_owned());
            }
        }
        for resource in self.all_current("Practitioner").await? {
            let (Some(id), Some(user_id)) = (resource.get("id").and_then(Value::as_str), user_link(&resource)) else {
                continue;
            };
            facts.staff.push(StaffFacts {
                user_id,
                practitioner_id: id.to_owned(),
                surname: hashed(Field::Family, family(&resource)),
                address: hashed(Field::Address, address(&resource).as_deref()),
                department: departments.get(id).cloned(),
            });
        }
        // Nothing read, nothing to account for (a new installation).
        if !facts.patients.is_empty() || !facts.staff.is_empty() {
            self.audit_facts_read(&facts).await?;
        }
        Ok(facts)
    }

    async fn all_current(&self, resource_type: &str) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut offset = 0u64;
        loop {
            let query = RecordQuery {
                resource_type: Some(resource_type.to_owned()),
                ids: None,
                compartments: None,
                clauses: Vec::new(),
                updated: Vec::new(),
                sort: Vec::new(),
                limit: PAGE,
                offset,
                with_total: false,
            };
            let (rows, _) = self.store().search_records(&query).await?;
            let got = rows.len();
            for row in rows.iter().filter(|r| !r.deleted) {
                if let Some(resource) = self.open_row_for_facts(row).await?.resource {
                    out.push(resource);
                }
            }
            if got < PAGE as usize || out.len() >= MAX_FACT_RECORDS {
                break;
            }
            offset += u64::from(PAGE);
        }
        Ok(out)
    }

    async fn audit_facts_read(&self, facts: &DetectionFacts) -> Result<()> {
        let record = AccessRecord {
            time: self.now_for_facts(),
            action: RecordAction::Search,
            outcome: AccessOutcome::Allowed,
            actor_kind: ActorKind::Service,
            actor: "caduceus-detect".to_owned(),
            roles: vec!["system".to_owned()],
            source: "internal".to_owned(),
            purpose_of_use: Some("HOPERAT".to_owned()),
            break_glass: None,
            resource_type: Some("Patient".to_owned()),
            resource: None,
            patients: Vec::new(),
            query: None,
            reasons: vec!["detection facts: keyed hashes of surnames and addresses, flags and staff links".to_owned()],
            detail: Some(format!(
                "{} patients and {} staff read for snooping detection; no plaintext left the vault",
                facts.patients.len(),
                facts.staff.len()
            )),
            request_id: None,
        };
        let event = record.to_event().map_err(|e| VaultError::AuditFailed(e.to_string()))?;
        self.sink_for_facts().record(event).await.map_err(VaultError::AuditFailed)?;
        Ok(())
    }
}
