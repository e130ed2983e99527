//! Audit of every patient-record access: the spine event that records it,
//! the IHE Basic Audit Log Patterns (BALP) AuditEvent rendered from that
//! event, and the row of a patient's accounting of disclosures
//! (`$access-log`).
//!
//! The spine event ([`Payload::RecordAccess`]) is the source of truth: it is
//! sealed in the ledger, and the FHIR AuditEvent is a pure function of it, so
//! `/fhir/AuditEvent/{id}` and `$access-log` are served from sealed events
//! and can never disagree with them. The cost is that an AuditEvent can only
//! say what the event holds (no user display names, no client application
//! identity beyond its address); the benefit is one record, one seal.
//!
//! What the audit never holds: names, identifiers, birth dates, addresses or
//! contact details. Patients appear as pseudonymous FHIR ids; the search
//! query is redacted ([`redact_params`], [`redact_query`]) before it reaches
//! the payload, and redacted again on the way in, in case a caller forgot.
//!
//! One event per access, not per patient: BALP's PatientQuery asks for one
//! AuditEvent per patient in a search result; here a search yields one event
//! listing every patient (up to [`MAX_RECORD_PATIENTS`]) as an entity, and
//! the rendered AuditEvent claims a BALP profile only when it conforms to
//! it (a successful access naming at most one patient). Failures and
//! denials follow the same patterns with outcome 4 (denied) or 8 (failed)
//! and the policy's reasons in `outcomeDesc`, but claim no profile, as BALP
//! fixes the outcome of its profiles to success.
//!
//! This module renders and redacts; it does not publish, store or decide.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use base64::Engine as _;
use caduceus_core::event::{
    AccessOutcome, EventError, MAX_FIELD_CHARS, MAX_MESSAGE_CHARS, MAX_RECORD_ACCESS_BYTES, MAX_RECORD_PATIENTS,
    MAX_RECORD_QUERY_CHARS, MAX_RECORD_REASONS, MAX_RECORD_ROLES, RecordAction,
};
use caduceus_core::{Actor, ActorKind, EventId, Payload, SecurityEvent, Severity, Status, Target, Timestamp};
use serde_json::{Map, Value, json};

/// What replaces an identifying value in a recorded query.
pub const REDACTED_VALUE: &str = "***";
/// Longest redacted query, in characters (the payload's limit).
pub const MAX_QUERY_CHARS: usize = MAX_RECORD_QUERY_CHARS;
/// Longest raw query read; anything after it is dropped and marked.
pub const MAX_QUERY_INPUT_BYTES: usize = 16 * 1024;
/// Appended to a redacted query that was cut short.
const TRUNCATED_MARK: &str = "&...";
/// Longest search parameter name accepted as a name.
const MAX_PARAM_NAME_CHARS: usize = 128;

/// Search parameters whose values identify a person, as the last part of a
/// (chained, modified) parameter name, compared in lower case. Free-text
/// parameters and modifiers are here too: their values can be anything.
const IDENTIFYING_PARAMS: &[&str] = &[
    "name",
    "family",
    "given",
    "phonetic",
    "identifier",
    "birthdate",
    "phone",
    "email",
    "telecom",
    "text",
    "_text",
    "_content",
    "_filter",
    "_query",
    "value-string",
];
/// Parameter name prefixes whose values identify a person (`address`,
/// `address-city`, `address-postalcode`, ...).
const IDENTIFYING_PREFIXES: &[&str] = &["address"];
/// Resource types that are people, with parameters identifying only there.
const PERSON_TYPES: &[&str] = &["Patient", "Person", "RelatedPerson", "Practitioner"];
const PERSON_IDENTIFYING_PARAMS: &[&str] = &["death-date"];

/// Everything the vault knows about one access, to be recorded. Build with
/// [`AccessRecord::new`] and set the fields that apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRecord {
    /// When the access was decided.
    pub time: Timestamp,
    pub action: RecordAction,
    pub outcome: AccessOutcome,
    /// Whether the actor is a person or a service account.
    pub actor_kind: ActorKind,
    /// The account id that asked.
    pub actor: String,
    /// The actor's roles at the time.
    pub roles: Vec<String>,
    /// The client address (`ip` or `ip:port`).
    pub source: String,
    /// The declared purpose of use, a v3 ActReason code (`TREAT`, ...).
    pub purpose_of_use: Option<String>,
    /// The break-glass grant in force (or issued, for `BreakGlass`).
    pub break_glass: Option<String>,
    pub resource_type: Option<String>,
    /// The resource touched, `Type/id/_history/version`.
    pub resource: Option<String>,
    /// Pseudonymous ids of the patients whose data was touched or appeared
    /// in the results, in any order, repeats allowed.
    pub patients: Vec<String>,
    /// The search query, as [`redact_params`] or [`redact_query`] gave it.
    /// [`AccessRecord::to_payload`] redacts it again (redaction is
    /// idempotent), so a raw query handed in by mistake is still never
    /// recorded.
    pub query: Option<String>,
    /// The policy decision's reasons.
    pub reasons: Vec<String>,
    /// A short note without patient data (e.g. why it failed).
    pub detail: Option<String>,
    /// The request's `X-Request-Id`.
    pub request_id: Option<String>,
}

impl AccessRecord {
    /// A record of `action` by the user `actor` from `source`, with nothing
    /// else known yet.
    pub fn new(
        time: Timestamp,
        action: RecordAction,
        outcome: AccessOutcome,
        actor: impl Into<String>,
        source: impl Into<String>,
    ) -> Self {
        Self {
            time,
            action,
            outcome,
            actor_kind: ActorKind::User,
            actor: actor.into(),
            roles: Vec::new(),
            source: source.into(),
            purpose_of_use: None,
            break_glass: None,
            resource_type: None,
            resource: None,
            patients: Vec::new(),
            query: None,
            reasons: Vec::new(),
            detail: None,
            request_id: None,
        }
    }

    /// The spine payload: the query redacted, repeated patients dropped,
    /// every field cut to its limit, and the whole within
    /// [`MAX_RECORD_ACCESS_BYTES`] (patients beyond it are dropped and
    /// `patients_truncated` set), so it always passes the event's checks.
    pub fn to_payload(&self) -> Payload {
        let resource_type = self.resource_type.as_deref().unwrap_or_default();
        let (patients, patients_truncated) = distinct_capped(&self.patients, MAX_RECORD_PATIENTS);
        let mut payload = Payload::RecordAccess {
            action: self.action,
            outcome: self.outcome,
            actor: cut(&self.actor, MAX_FIELD_CHARS),
            roles: self.roles.iter().take(MAX_RECORD_ROLES).map(|r| cut(r, MAX_FIELD_CHARS)).collect(),
            source: cut(&self.source, MAX_FIELD_CHARS),
            purpose_of_use: cut_opt(self.purpose_of_use.as_deref(), MAX_FIELD_CHARS),
            break_glass: cut_opt(self.break_glass.as_deref(), MAX_FIELD_CHARS),
            resource_type: cut_opt(self.resource_type.as_deref(), MAX_FIELD_CHARS),
            resource: cut_opt(self.resource.as_deref(), MAX_FIELD_CHARS),
            patients: patients.into_iter().map(|p| cut(p, MAX_FIELD_CHARS)).collect(),
            patients_truncated,
            query: self.query.as_ref().map(|q| redact_query(resource_type, q)),
            reasons: self.reasons.iter().take(MAX_RECORD_REASONS).map(|r| cut(r, MAX_FIELD_CHARS)).collect(),
            detail: cut_opt(self.detail.as_deref(), MAX_MESSAGE_CHARS),
            request_id: cut_opt(self.request_id.as_deref(), MAX_FIELD_CHARS),
        };
        fit_in_budget(&mut payload);
        payload
    }

    /// The spine event for this access: a new time-ordered id, the actor,
    /// the patient as target when there is exactly one, a severity that
    /// brings denials and break-glass to attention, and [`Self::to_payload`].
    pub fn to_event(&self) -> Result<SecurityEvent, EventError> {
        let payload = self.to_payload();
        let target = match &payload {
            Payload::RecordAccess { patients, .. } => match patients.as_slice() {
                [patient] => Some(Target { kind: "patient_record".into(), uid: format!("Patient/{patient}") }),
                _ => None,
            },
            _ => None,
        };
        let status = match self.outcome {
            AccessOutcome::Allowed => Status::Success,
            AccessOutcome::Denied | AccessOutcome::Failed => Status::Failure,
        };
        let message = format!("record access: {} {}", self.action.as_str(), self.outcome.as_str());
        SecurityEvent::new(
            EventId::new(self.time),
            self.time,
            self.severity(),
            status,
            Actor { kind: self.actor_kind, uid: cut(&self.actor, MAX_FIELD_CHARS) },
            target,
            message,
            payload,
        )
    }

    /// Break-glass is high (it is reviewed); accesses under a grant, denials,
    /// exports and erasures are medium; failures low; the rest informational.
    fn severity(&self) -> Severity {
        match (self.action, self.outcome) {
            (RecordAction::BreakGlass, _) => Severity::High,
            (_, AccessOutcome::Denied) | (RecordAction::Export | RecordAction::Erase, _) => Severity::Medium,
            _ if self.break_glass.is_some() => Severity::Medium,
            (_, AccessOutcome::Failed) => Severity::Low,
            _ => Severity::Informational,
        }
    }
}

/// The first `cap` distinct values in order of appearance, and whether more
/// distinct values were left out.
fn distinct_capped(values: &[String], cap: usize) -> (Vec<&str>, bool) {
    let mut seen = HashSet::new();
    let mut kept = Vec::new();
    for value in values {
        if seen.insert(value.as_str()) {
            if kept.len() == cap {
                return (kept, true);
            }
            kept.push(value.as_str());
        }
    }
    (kept, false)
}

/// At most `max` characters of `value`.
fn cut(value: &str, max: usize) -> String {
    value.chars().take(max).collect()
}

fn cut_opt(value: Option<&str>, max: usize) -> Option<String> {
    value.map(|v| cut(v, max))
}

/// Shrink a payload until it serialises within [`MAX_RECORD_ACCESS_BYTES`]:
/// patients first (marked truncated), then detail, query, reasons and
/// roles. Only hostile or broken input (kilobytes of escaped characters)
/// goes past the patients.
fn fit_in_budget(payload: &mut Payload) {
    loop {
        let size = serde_json::to_vec(&*payload).map_or(usize::MAX, |bytes| bytes.len());
        let Payload::RecordAccess { patients, patients_truncated, detail, query, reasons, roles, .. } = payload else {
            return;
        };
        if size <= MAX_RECORD_ACCESS_BYTES {
            return;
        }
        if !patients.is_empty() {
            // Each listed patient costs at least its length, quotes and comma.
            let excess = size - MAX_RECORD_ACCESS_BYTES;
            let mut freed = 0;
            while freed < excess {
                match patients.pop() {
                    Some(patient) => freed += patient.len() + 3,
                    None => break,
                }
            }
            *patients_truncated = true;
            continue;
        }
        let shrunk =
            detail.take().is_some() || query.take().is_some() || reasons.pop().is_some() || roles.pop().is_some();
        if !shrunk {
            return;
        }
    }
}

/// The search query string with every identifying value replaced by
/// `***`: parameter names and other values are kept as received. A value is
/// identifying when any part of its parameter's name (split at `.` and `:`,
/// so chains like `subject:Patient.name` and modifiers like `:identifier` or
/// `:text` count) is a name, family, given, identifier, birthdate, address*,
/// phone, email, telecom or free-text parameter (and `death-date` on person
/// types). A segment without `=` or whose name is not a plausible parameter
/// name is replaced whole. The input is read up to
/// [`MAX_QUERY_INPUT_BYTES`] and the output cut, at a parameter boundary, to
/// [`MAX_QUERY_CHARS`], ending in `&...` when anything was left out.
/// Redacting a redacted query changes nothing.
pub fn redact_query(resource_type: &str, query: &str) -> String {
    let query = query.strip_prefix('?').unwrap_or(query);
    let input = prefix_within(query, MAX_QUERY_INPUT_BYTES);
    let segments = input.split('&').filter(|s| !s.is_empty()).map(|segment| redact_segment(resource_type, segment));
    assemble(segments, input.len() < query.len())
}

/// [`redact_query`] for parameters already split and percent-decoded (as a
/// search parser holds them): identifying values become `***`, kept values
/// are percent-encoded again so that a decoded `&` or `=` inside a value
/// cannot make part of it look like another parameter.
pub fn redact_params(resource_type: &str, params: &[(String, String)]) -> String {
    let mut read = 0;
    let mut truncated = false;
    let segments = params.iter().map_while(|(name, value)| {
        read += name.len() + value.len() + 2;
        truncated = read > MAX_QUERY_INPUT_BYTES;
        (!truncated).then(|| redact_pair(resource_type, name, value))
    });
    let rendered: Vec<String> = segments.collect();
    assemble(rendered.into_iter(), truncated)
}

fn redact_pair(resource_type: &str, name: &str, value: &str) -> String {
    if !plausible_name(name) {
        return format!("{REDACTED_VALUE}={REDACTED_VALUE}");
    }
    if identifying(resource_type, name) {
        format!("{name}={REDACTED_VALUE}")
    } else {
        format!("{name}={}", query_escape(value))
    }
}

/// Join redacted segments with `&`, stopping (and marking it) before the
/// result would pass [`MAX_QUERY_CHARS`].
fn assemble(segments: impl Iterator<Item = String>, mut truncated: bool) -> String {
    let mut out = String::new();
    let mut out_chars = 0;
    for rendered in segments {
        let separator = usize::from(!out.is_empty());
        let chars = rendered.chars().count();
        if out_chars + separator + chars + TRUNCATED_MARK.len() > MAX_QUERY_CHARS {
            truncated = true;
            break;
        }
        if separator == 1 {
            out.push('&');
        }
        out.push_str(&rendered);
        out_chars += separator + chars;
    }
    if truncated {
        out.push_str(TRUNCATED_MARK);
    }
    out
}

/// The longest prefix of `text` within `max` bytes, on a character boundary.
fn prefix_within(text: &str, max: usize) -> &str {
    let end = (0..=max.min(text.len())).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    text.get(..end).unwrap_or_default()
}

fn redact_segment(resource_type: &str, segment: &str) -> String {
    // The mark of an earlier cut, so that redaction is idempotent.
    if segment == TRUNCATED_MARK.trim_start_matches('&') {
        return segment.to_owned();
    }
    let Some((raw_name, value)) = segment.split_once('=') else {
        return REDACTED_VALUE.to_owned();
    };
    let Some(name) = parameter_name(raw_name) else {
        return format!("{REDACTED_VALUE}={REDACTED_VALUE}");
    };
    if identifying(resource_type, &name) { format!("{name}={REDACTED_VALUE}") } else { format!("{name}={value}") }
}

/// The percent-decoded parameter name, if it looks like one
/// (`[A-Za-z0-9_.:-]`, at most 128 characters).
fn parameter_name(raw: &str) -> Option<String> {
    let name = String::from_utf8(percent_decode(raw.as_bytes())).ok()?;
    plausible_name(&name).then_some(name)
}

fn plausible_name(name: &str) -> bool {
    (1..=MAX_PARAM_NAME_CHARS).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// Percent-encode what would change a query string's structure or is not
/// printable ASCII; FHIR's own `|`, `,`, `:`, `$` and `/` stay readable.
fn query_escape(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'&' | b'=' | b'%' | b'+' | b'#' => format!("%{b:02X}"),
            0x21..=0x7e => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Form decoding: `+` is a space, `%XX` a byte; a stray `%` stays as is.
fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = (b == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (escaped, b) {
            (Some(decoded), _) => {
                out.push(decoded);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, other) => {
                out.push(other);
                i += 1;
            }
        }
    }
    out
}

fn identifying(resource_type: &str, name: &str) -> bool {
    let person = PERSON_TYPES.contains(&resource_type);
    name.to_ascii_lowercase().split(['.', ':']).any(|part| {
        IDENTIFYING_PARAMS.contains(&part)
            || IDENTIFYING_PREFIXES.iter().any(|prefix| part.starts_with(prefix))
            || (person && PERSON_IDENTIFYING_PARAMS.contains(&part))
    })
}

/// A borrowed view of a [`Payload::RecordAccess`].
struct Access<'a> {
    action: RecordAction,
    outcome: AccessOutcome,
    actor: &'a str,
    roles: &'a [String],
    source: &'a str,
    purpose_of_use: Option<&'a str>,
    break_glass: Option<&'a str>,
    resource_type: Option<&'a str>,
    resource: Option<&'a str>,
    patients: &'a [String],
    patients_truncated: bool,
    query: Option<&'a str>,
    reasons: &'a [String],
    detail: Option<&'a str>,
    request_id: Option<&'a str>,
}

impl<'a> Access<'a> {
    fn of(payload: &'a Payload) -> Option<Self> {
        let Payload::RecordAccess {
            action,
            outcome,
            actor,
            roles,
            source,
            purpose_of_use,
            break_glass,
            resource_type,
            resource,
            patients,
            patients_truncated,
            query,
            reasons,
            detail,
            request_id,
        } = payload
        else {
            return None;
        };
        Some(Self {
            action: *action,
            outcome: *outcome,
            actor,
            roles,
            source,
            purpose_of_use: purpose_of_use.as_deref(),
            break_glass: break_glass.as_deref(),
            resource_type: resource_type.as_deref(),
            resource: resource.as_deref(),
            patients,
            patients_truncated: *patients_truncated,
            query: query.as_deref(),
            reasons,
            detail: detail.as_deref(),
            request_id: request_id.as_deref(),
        })
    }

    /// The purposes of use, with `ETREAT` added under break-glass.
    fn purposes(&self) -> Vec<&'a str> {
        let mut purposes: Vec<&str> = self.purpose_of_use.into_iter().collect();
        let emergency = self.break_glass.is_some() || self.action == RecordAction::BreakGlass;
        if emergency && !purposes.contains(&ETREAT) {
            purposes.push(ETREAT);
        }
        purposes
    }
}

/// A FHIR Coding as constants.
#[derive(Clone, Copy)]
struct Code {
    system: &'static str,
    code: &'static str,
    display: &'static str,
}

impl Code {
    const fn new(system: &'static str, code: &'static str, display: &'static str) -> Self {
        Self { system, code, display }
    }

    fn coding(self) -> Value {
        let mut coding = json!({"system": self.system, "code": self.code});
        if !self.display.is_empty()
            && let Some(map) = coding.as_object_mut()
        {
            map.insert("display".into(), self.display.into());
        }
        coding
    }

    fn concept(self) -> Value {
        json!({"coding": [self.coding()]})
    }
}

const AUDIT_EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const RESTFUL: &str = "http://hl7.org/fhir/restful-interaction";
const LIFECYCLE: &str = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
const BALP: &str = "https://profiles.ihe.net/ITI/BALP";
/// Caduceus's own subtypes, for operations FHIR and BALP do not name.
pub const CADUCEUS_SUBTYPE_SYSTEM: &str = "urn:caduceus:audit-subtype";
/// How a break-glass grant is named in `agent.policy`: this prefix and the
/// grant id.
pub const BREAK_GLASS_POLICY_PREFIX: &str = "urn:caduceus:break-glass:";
const ETREAT: &str = "ETREAT";

const TYPE_REST: Code = Code::new(AUDIT_EVENT_TYPE, "rest", "Restful Operation");
const TYPE_EXPORT: Code = Code::new(DCM, "110106", "Export");
const TYPE_AUDIT_LOG_USED: Code = Code::new(DCM, "110101", "Audit Log Used");
const TYPE_SECURITY_ALERT: Code = Code::new(DCM, "110113", "Security Alert");
const SOURCE_ROLE: Code = Code::new(DCM, "110153", "Source Role ID");
const DESTINATION_ROLE: Code = Code::new(DCM, "110152", "Destination Role ID");
const APPLICATION: Code = Code::new(DCM, "110150", "Application");
const CUSTODIAN: Code =
    Code::new("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "custodian", "Custodian");
const AUTH_SERVER: Code =
    Code::new("http://terminology.hl7.org/CodeSystem/extra-security-role-type", "authserver", "authorization server");
const RECIPIENT: Code = Code::new(PARTICIPATION, "IRCP", "information recipient");
const AUTHOR: Code = Code::new(PARTICIPATION, "AUT", "author (originator)");
const PERSON: Code = Code::new(ENTITY_TYPE, "1", "Person");
const SYSTEM_OBJECT: Code = Code::new(ENTITY_TYPE, "2", "System Object");
const ROLE_PATIENT: Code = Code::new(OBJECT_ROLE, "1", "Patient");
const ROLE_DOMAIN_RESOURCE: Code = Code::new(OBJECT_ROLE, "4", "Domain Resource");
const ROLE_JOB: Code = Code::new(OBJECT_ROLE, "20", "Job");
const ROLE_QUERY: Code = Code::new(OBJECT_ROLE, "24", "Query");
const REQUEST_ID: Code =
    Code::new("https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType", "XrequestId", "");
const AUTHZ_CONSENT: Code = Code::new("https://profiles.ihe.net/ITI/BALP/CodeSystem/AuthZsubType", "AuthZ-Consent", "");
const APPLICATION_SERVER: Code =
    Code::new("http://terminology.hl7.org/CodeSystem/security-source-type", "4", "Application Server");

/// How BALP shapes one kind of access: the event type, the action code, who
/// the client, server and user are, and the profiles it conforms to.
struct Pattern {
    event_type: Code,
    action: &'static str,
    client: Code,
    server: Code,
    user: Code,
    /// The BALP profile for a success naming no patient, and for one patient.
    profiles: (Option<&'static str>, Option<&'static str>),
}

impl Pattern {
    fn of(action: RecordAction) -> Self {
        // Reads: data flows server to client (BALP Read); queries and writes:
        // the request flows client to server (BALP Query, Create, Update);
        // deletes: an application and the custodian (BALP Delete).
        let read = |event_type, action, profiles| Self {
            event_type,
            action,
            client: DESTINATION_ROLE,
            server: SOURCE_ROLE,
            user: RECIPIENT,
            profiles,
        };
        let write = |action, user, profiles| Self {
            event_type: TYPE_REST,
            action,
            client: SOURCE_ROLE,
            server: DESTINATION_ROLE,
            user,
            profiles,
        };
        let delete = |profiles| Self {
            event_type: TYPE_REST,
            action: "D",
            client: APPLICATION,
            server: CUSTODIAN,
            user: AUTHOR,
            profiles,
        };
        let both = |base, patient| (Some(base), Some(patient));
        match action {
            RecordAction::Read | RecordAction::Vread => {
                read(TYPE_REST, "R", both("IHE.BasicAudit.Read", "IHE.BasicAudit.PatientRead"))
            }
            RecordAction::History => read(TYPE_REST, "R", (None, None)),
            RecordAction::AccessLog => read(TYPE_AUDIT_LOG_USED, "R", (None, None)),
            RecordAction::Review => read(TYPE_AUDIT_LOG_USED, "E", (None, None)),
            // BALP PrivacyDisclosure.Source: the server releases to the client.
            RecordAction::Export => read(TYPE_EXPORT, "R", (None, Some("IHE.BasicAudit.PrivacyDisclosure.Source"))),
            RecordAction::Search => write("E", RECIPIENT, both("IHE.BasicAudit.Query", "IHE.BasicAudit.PatientQuery")),
            RecordAction::Create => write("C", AUTHOR, both("IHE.BasicAudit.Create", "IHE.BasicAudit.PatientCreate")),
            RecordAction::Update => write("U", AUTHOR, both("IHE.BasicAudit.Update", "IHE.BasicAudit.PatientUpdate")),
            RecordAction::Delete => delete(both("IHE.BasicAudit.Delete", "IHE.BasicAudit.PatientDelete")),
            RecordAction::Erase => delete((None, None)),
            // BALP AuthZ: an authorization decision by this server.
            RecordAction::BreakGlass => Self {
                event_type: TYPE_SECURITY_ALERT,
                action: "E",
                client: APPLICATION,
                server: AUTH_SERVER,
                user: RECIPIENT,
                profiles: (None, None),
            },
        }
    }

    /// The profile this AuditEvent conforms to, if any.
    fn profile(&self, access: &Access) -> Option<String> {
        if access.outcome != AccessOutcome::Allowed {
            return None;
        }
        let profile = match access.patients {
            [] => self.profiles.0,
            [_] => self.profiles.1,
            _ => None,
        }?;
        Some(format!("{BALP}/StructureDefinition/{profile}"))
    }
}

/// The subtypes: the RESTful interaction, and for operations the ISO 21089
/// lifecycle event and Caduceus's operation code.
fn subtypes(access: &Access) -> Vec<Value> {
    let rest = |code| Code::new(RESTFUL, code, "").coding();
    let own = |code| Code::new(CADUCEUS_SUBTYPE_SYSTEM, code, "").coding();
    match access.action {
        RecordAction::Read => vec![rest("read")],
        RecordAction::Vread => vec![rest("vread")],
        RecordAction::History => vec![rest(match (access.resource, access.resource_type) {
            (Some(_), _) => "history-instance",
            (None, Some(_)) => "history-type",
            (None, None) => "history-system",
        })],
        RecordAction::Search => {
            vec![rest(if access.resource_type.is_some() { "search-type" } else { "search-system" })]
        }
        RecordAction::Create => vec![rest("create")],
        RecordAction::Update => vec![rest("update")],
        RecordAction::Delete => vec![rest("delete")],
        RecordAction::Export => vec![
            Code::new(LIFECYCLE, "disclose", "Disclose Record Lifecycle Event").coding(),
            rest("operation"),
            own("$export"),
        ],
        RecordAction::Erase => vec![rest("operation"), own("$erase"), Code::new(LIFECYCLE, "destroy", "").coding()],
        RecordAction::AccessLog => vec![rest("operation"), own("$access-log")],
        RecordAction::BreakGlass => vec![AUTHZ_CONSENT.coding(), own("break-glass")],
        RecordAction::Review => vec![own("review")],
    }
}

/// R4 `audit-event-outcome`: 0 success, 4 minor failure (refused), 8
/// serious failure (allowed but failed).
fn outcome_code(outcome: AccessOutcome) -> &'static str {
    match outcome {
        AccessOutcome::Allowed => "0",
        AccessOutcome::Denied => "4",
        AccessOutcome::Failed => "8",
    }
}

/// The decision and its reasons, the failure detail, and a note when the
/// patient list was cut.
fn outcome_description(access: &Access) -> String {
    let mut text = access.outcome.as_str().to_owned();
    if !access.reasons.is_empty() {
        text.push_str(": ");
        text.push_str(&access.reasons.join(", "));
    }
    if let Some(detail) = access.detail {
        text.push_str("; ");
        text.push_str(detail);
    }
    if access.patients_truncated {
        text.push_str(&format!("; more than {} patients, list truncated", access.patients.len()));
    }
    text
}

fn purpose_concept(purpose: &str) -> Value {
    let is_code = (1..=64).contains(&purpose.len())
        && purpose.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if is_code { json!({"coding": [{"system": ACT_REASON, "code": purpose}]}) } else { json!({"text": purpose}) }
}

/// A network address and its R4 `network-type`: 1 machine name, 2 IP
/// address, 5 URI. The port of `ip:port` is dropped.
fn network(address: &str) -> Option<Value> {
    if address.is_empty() {
        return None;
    }
    let ip = address.parse::<SocketAddr>().map(|s| s.ip()).or_else(|_| address.parse::<IpAddr>());
    Some(match ip {
        Ok(ip) => json!({"address": ip.to_string(), "type": "2"}),
        Err(_) if address.contains("://") => json!({"address": address, "type": "5"}),
        Err(_) => json!({"address": address, "type": "1"}),
    })
}

fn observer(server_name: &str) -> Value {
    json!({"display": server_name})
}

fn agents(access: &Access, pattern: &Pattern, server_name: &str) -> Vec<Value> {
    let purposes: Vec<Value> = access.purposes().into_iter().map(purpose_concept).collect();
    let mut user = json!({
        "type": pattern.user.concept(),
        "who": {"identifier": {"value": access.actor}},
        "requestor": true,
    });
    if let Some(map) = user.as_object_mut() {
        if !access.roles.is_empty() {
            let roles: Vec<Value> = access.roles.iter().map(|r| json!({"text": r})).collect();
            map.insert("role".into(), roles.into());
        }
        if !purposes.is_empty() {
            map.insert("purposeOfUse".into(), purposes.into());
        }
        if let Some(grant) = access.break_glass {
            map.insert("policy".into(), json!([format!("{BREAK_GLASS_POLICY_PREFIX}{}", uri_escape(grant))]));
        }
    }
    let client_name = if access.source.is_empty() { "unknown" } else { access.source };
    let mut client = json!({"type": pattern.client.concept(), "who": {"display": client_name}, "requestor": false});
    let mut server = json!({"type": pattern.server.concept(), "who": observer(server_name), "requestor": false});
    for (agent, address) in [(&mut client, access.source), (&mut server, server_name)] {
        if let (Some(map), Some(network)) = (agent.as_object_mut(), network(address)) {
            map.insert("network".into(), network);
        }
    }
    vec![user, client, server]
}

/// Percent-encode everything but RFC 3986 unreserved characters.
fn uri_escape(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn entities(access: &Access) -> Vec<Value> {
    let entity = |what: Option<Value>, entity_type: Code, role: Code| {
        let mut entity = json!({"type": entity_type.coding(), "role": role.coding()});
        if let (Some(map), Some(what)) = (entity.as_object_mut(), what) {
            map.insert("what".into(), what);
        }
        entity
    };
    let named = |mut entity: Value, name: &str| {
        if let Some(map) = entity.as_object_mut() {
            map.insert("name".into(), name.into());
        }
        entity
    };
    let mut entities: Vec<Value> = access
        .patients
        .iter()
        .map(|p| entity(Some(json!({"reference": format!("Patient/{p}")})), PERSON, ROLE_PATIENT))
        .collect();
    let data = match (access.resource, access.resource_type, access.action) {
        (Some(resource), _, _) => {
            Some(entity(Some(json!({"reference": resource})), SYSTEM_OBJECT, ROLE_DOMAIN_RESOURCE))
        }
        (None, _, RecordAction::Export) => Some(named(entity(None, SYSTEM_OBJECT, ROLE_JOB), "$export")),
        (None, _, RecordAction::Erase) => Some(named(entity(None, SYSTEM_OBJECT, ROLE_JOB), "$erase")),
        (None, _, RecordAction::Search) | (None, None, _) => None,
        (None, Some(resource_type), _) => Some(named(entity(None, SYSTEM_OBJECT, ROLE_DOMAIN_RESOURCE), resource_type)),
    };
    entities.extend(data);
    if access.query.is_some() || access.action == RecordAction::Search {
        let text = format!("{}?{}", access.resource_type.unwrap_or_default(), access.query.unwrap_or_default());
        let mut query = entity(None, SYSTEM_OBJECT, ROLE_QUERY);
        if let Some(map) = query.as_object_mut() {
            map.insert("query".into(), base64::engine::general_purpose::STANDARD.encode(&text).into());
            map.insert("description".into(), text.into());
        }
        entities.push(query);
    }
    if let Some(request_id) = access.request_id {
        entities.push(json!({"type": REQUEST_ID.coding(), "what": {"identifier": {"value": request_id}}}));
    }
    entities
}

/// The FHIR R4 AuditEvent of a record-access event, following the IHE BALP
/// pattern of its action; `id` is the event's uid. `server_name` names this
/// Caduceus server (host name or base URL) as observer and server agent.
/// `None` for any other payload.
pub fn audit_event(event: &SecurityEvent, server_name: &str) -> Option<Value> {
    let access = Access::of(event.payload())?;
    let pattern = Pattern::of(access.action);
    let mut audit = Map::new();
    audit.insert("resourceType".into(), "AuditEvent".into());
    audit.insert("id".into(), event.uid().to_string().into());
    if let Some(profile) = pattern.profile(&access) {
        audit.insert("meta".into(), json!({"profile": [profile]}));
    }
    audit.insert("type".into(), pattern.event_type.coding());
    audit.insert("subtype".into(), subtypes(&access).into());
    audit.insert("action".into(), pattern.action.into());
    audit.insert("recorded".into(), event.time().to_rfc3339().into());
    audit.insert("outcome".into(), outcome_code(access.outcome).into());
    audit.insert("outcomeDesc".into(), outcome_description(&access).into());
    let purposes: Vec<Value> = access.purposes().into_iter().map(purpose_concept).collect();
    if !purposes.is_empty() {
        audit.insert("purposeOfEvent".into(), purposes.into());
    }
    audit.insert("agent".into(), agents(&access, &pattern, server_name).into());
    audit.insert(
        "source".into(),
        json!({"site": server_name, "observer": observer(server_name), "type": [APPLICATION_SERVER.coding()]}),
    );
    audit.insert("entity".into(), entities(&access).into());
    Some(Value::Object(audit))
}

/// One row of a patient's accounting of disclosures (`$access-log`): when,
/// who (and their roles and address), what was done to which resource, why
/// (purpose of use, break-glass grant) and the decision with its reasons,
/// with the event uid that leads to the sealed record and its AuditEvent.
/// `None` for any other payload.
pub fn access_log_entry(event: &SecurityEvent) -> Option<Value> {
    let access = Access::of(event.payload())?;
    Some(json!({
        "event": event.uid().to_string(),
        "when": event.time().to_rfc3339(),
        "who": access.actor,
        "roles": access.roles,
        "source": access.source,
        "action": access.action.as_str(),
        "resource_type": access.resource_type,
        "resource": access.resource,
        "purpose": access.purpose_of_use,
        "break_glass": access.break_glass,
        "decision": access.outcome.as_str(),
        "reasons": access.reasons,
    }))
}

/// Whether a record-access event touched `patient_id`'s data (the filter of
/// `$access-log`).
pub fn involves_patient(event: &SecurityEvent, patient_id: &str) -> bool {
    Access::of(event.payload()).is_some_and(|access| access.patients.iter().any(|p| p == patient_id))
}
