//! The security event: the one typed record of everything that happens in
//! Caduceus, shaped after OCSF (class, category, activity, type, time, actor,
//! target, severity, status) plus our own typed payload.
//!
//! An event never carries patient data: a patient appears only as an opaque
//! pseudonymous reference in a [`Target`]. The ledger seals the hash of an
//! event's canonical form (RFC 8785 JSON canonicalisation), so the same event
//! must always serialise to the same bytes; [`SecurityEvent::canonical_bytes`]
//! is the only serialisation that is hashed.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::clock::Timestamp;

/// Version of the stored/wire encoding of [`SecurityEvent`]; bumped when the
/// shape changes so old events stay readable.
pub const EVENT_SCHEMA_VERSION: u16 = 1;

/// Largest accepted encoded event. Anything from outside is checked against it
/// before parsing.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// Longest accepted free-text message, in characters. (The OpenAPI schema
/// repeats these two limits as literals; a test keeps them equal.)
pub const MAX_MESSAGE_CHARS: usize = 4 * 1024;

/// Longest accepted identifier or label inside an event, in characters.
pub const MAX_FIELD_CHARS: usize = 256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("event is {size} bytes, larger than the {max} byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("event is not valid json: {0}")]
    Malformed(String),
    #[error("unsupported event schema_version {0}")]
    UnsupportedSchema(u16),
    #[error("field `{field}` is inconsistent with the payload: expected {expected}, got {got}")]
    Inconsistent { field: &'static str, expected: u64, got: u64 },
    #[error("field `{field}` is {size} characters, longer than the {max} character limit")]
    FieldTooLong { field: &'static str, size: usize, max: usize },
    #[error("field `{field}` has {size} items, more than the {max} item limit")]
    TooManyItems { field: &'static str, size: usize, max: usize },
    #[error("could not canonicalise event: {0}")]
    Canonical(String),
}

/// Event identifier: a UUIDv7, so ids sort by creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct EventId(pub Uuid);

impl EventId {
    /// A new id whose time part is `at`.
    pub fn new(at: Timestamp) -> Self {
        let millis = at.as_millis().max(0);
        let secs = u64::try_from(millis / 1000).unwrap_or(0);
        let nanos = u32::try_from((millis % 1000) * 1_000_000).unwrap_or(0);
        Self(Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, secs, nanos)))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// OCSF event classes Caduceus emits. The numeric value is OCSF's `class_uid`;
/// `category_uid` is `class_uid / 1000`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventClass {
    /// OCSF 3001 Account Change.
    AccountChange,
    /// OCSF 3002 Authentication.
    Authentication,
    /// OCSF 3003 Authorize Session.
    AuthorizeSession,
    /// OCSF 6002 Application Lifecycle.
    ApplicationLifecycle,
    /// OCSF 6003 API Activity.
    ApiActivity,
    /// OCSF 2004 Detection Finding.
    DetectionFinding,
    /// OCSF 2002 Vulnerability Finding: a device or component affected by
    /// a published vulnerability, or its status changed (fixed, not affected).
    VulnerabilityFinding,
    /// OCSF 0 Base Event: a log record from a host, device or application,
    /// as it came (Windows event log, syslog, audit log), for detection.
    BaseEvent,
}

impl EventClass {
    pub fn uid(self) -> u32 {
        match self {
            Self::AccountChange => 3001,
            Self::Authentication => 3002,
            Self::AuthorizeSession => 3003,
            Self::ApplicationLifecycle => 6002,
            Self::ApiActivity => 6003,
            Self::DetectionFinding => 2004,
            Self::VulnerabilityFinding => 2002,
            Self::BaseEvent => 0,
        }
    }

    pub fn category_uid(self) -> u32 {
        self.uid() / 1000
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::AccountChange => "Account Change",
            Self::Authentication => "Authentication",
            Self::AuthorizeSession => "Authorize Session",
            Self::ApplicationLifecycle => "Application Lifecycle",
            Self::ApiActivity => "API Activity",
            Self::DetectionFinding => "Detection Finding",
            Self::VulnerabilityFinding => "Vulnerability Finding",
            Self::BaseEvent => "Base Event",
        }
    }
}

/// An enum serialised as the integer code OCSF assigns each value, with its
/// conversions and its OpenAPI schema (an integer enum), from one table.
macro_rules! ocsf_code_enum {
    ($(#[$meta:meta])* $name:ident, $attribute:literal, $description:literal, { $($variant:ident = $code:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(into = "u8", try_from = "u8")]
        pub enum $name {
            $($variant),+
        }

        impl From<$name> for u8 {
            fn from(value: $name) -> u8 {
                match value {
                    $($name::$variant => $code),+
                }
            }
        }

        impl TryFrom<u8> for $name {
            type Error = String;
            fn try_from(code: u8) -> Result<Self, String> {
                match code {
                    $($code => Ok(Self::$variant),)+
                    other => Err(format!(concat!("unknown ", $attribute, " {}"), other)),
                }
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::Integer)
                    .enum_values(Some([$($code),+]))
                    .description(Some($description))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

ocsf_code_enum!(
    /// OCSF `severity_id`.
    Severity,
    "severity_id",
    "OCSF severity_id: 0 unknown, 1 informational, 2 low, 3 medium, 4 high, 5 critical, 6 fatal, 99 other",
    { Unknown = 0, Informational = 1, Low = 2, Medium = 3, High = 4, Critical = 5, Fatal = 6, Other = 99 }
);

ocsf_code_enum!(
    /// OCSF `status_id`: did the activity succeed?
    Status,
    "status_id",
    "OCSF status_id: 0 unknown, 1 success, 2 failure, 99 other",
    { Unknown = 0, Success = 1, Failure = 2, Other = 99 }
);

/// Who did it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A member of staff or a patient with an account.
    User,
    /// A service account or API key.
    Service,
    /// A medical device or host.
    Device,
    /// Caduceus itself.
    System,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    pub kind: ActorKind,
    /// Stable identifier of the actor (account id, device id, `caduceus`).
    #[schema(max_length = 256)]
    pub uid: String,
}

impl Actor {
    pub fn system() -> Self {
        Self { kind: ActorKind::System, uid: "caduceus".into() }
    }
}

/// What it was done to. `uid` is an opaque identifier; for a patient record
/// it is a pseudonymous reference, never a name or medical record number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Kind of object, e.g. `config`, `api_token`, `device`, `patient_record`.
    #[schema(max_length = 256)]
    pub kind: String,
    #[schema(max_length = 256)]
    pub uid: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LifecyclePhase {
    Started,
    Stopping,
}

/// What a sign-in related event was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthActivity {
    /// A sign-in attempt (status says whether it succeeded).
    Logon,
    /// A sign-out: one session, or every session of the account.
    Logoff,
    /// A sign-in refused without checking credentials, because the account
    /// or the source is backing off after failures.
    Throttled,
    /// Re-authentication for privileged actions (an elevated session).
    StepUp,
}

/// What changed about an account; each maps to an OCSF Account Change activity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountChangeKind {
    Created,
    Enabled,
    PasswordChanged,
    Disabled,
    RolesChanged,
    MfaEnrolled,
    MfaRemoved,
    RecoveryCodesIssued,
    ApiKeyRevoked,
}

/// What was done to a patient record (see [`Payload::RecordAccess`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordAction {
    /// FHIR read of the current version.
    Read,
    /// FHIR vread of one version.
    Vread,
    /// FHIR search; the patients who appeared in the results are recorded.
    Search,
    /// FHIR history of a resource, a type or the system.
    History,
    Create,
    Update,
    Delete,
    /// Disclosure of records outside the vault (`$export`).
    Export,
    /// Erasure of a patient's records by destroying their data key (`$erase`).
    Erase,
    /// Reading a patient's accounting of disclosures (`$access-log`).
    AccessLog,
    /// An emergency access grant that overrides consent and care relationships.
    BreakGlass,
    /// A privacy officer's review of break-glass use.
    Review,
}

impl RecordAction {
    /// The snake_case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Vread => "vread",
            Self::Search => "search",
            Self::History => "history",
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Export => "export",
            Self::Erase => "erase",
            Self::AccessLog => "access_log",
            Self::BreakGlass => "break_glass",
            Self::Review => "review",
        }
    }
}

/// The decision on a record access and whether it was carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccessOutcome {
    /// The policy allowed it and it was done.
    Allowed,
    /// The policy refused it.
    Denied,
    /// The policy allowed it but it failed (not found, conflict, storage error).
    Failed,
}

impl AccessOutcome {
    /// The snake_case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
            Self::Failed => "failed",
        }
    }
}

/// Most patients one [`Payload::RecordAccess`] names; a larger search result
/// is recorded with `patients_truncated`.
pub const MAX_RECORD_PATIENTS: usize = 1000;
/// Most roles one [`Payload::RecordAccess`] names.
pub const MAX_RECORD_ROLES: usize = 32;
/// Most policy reasons one [`Payload::RecordAccess`] names.
pub const MAX_RECORD_REASONS: usize = 16;
/// Longest recorded (redacted) query string, in characters.
pub const MAX_RECORD_QUERY_CHARS: usize = 2048;
/// Largest serialised [`Payload::RecordAccess`], so that an event carrying it
/// with a short message stays under [`MAX_EVENT_BYTES`].
pub const MAX_RECORD_ACCESS_BYTES: usize = 48 * 1024;

/// Largest serialised field map of a [`Payload::LogRecord`].
pub const MAX_LOG_RECORD_BYTES: usize = 48 * 1024;
/// Most context lines or tags on a [`Payload::DetectionFinding`].
pub const MAX_FINDING_ITEMS: usize = 32;

/// The typed body of an event. Each variant fixes the OCSF class and activity.
/// Later capabilities add variants (record access, logins, findings, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Payload {
    /// Caduceus started or is shutting down.
    ServiceLifecycle {
        phase: LifecyclePhase,
        #[schema(max_length = 256)]
        version: String,
    },
    /// A configuration setting was changed or loaded. `key` names the setting;
    /// `detail` never carries a secret value.
    ConfigChange {
        #[schema(max_length = 256)]
        key: String,
        #[schema(max_length = 4096)]
        detail: String,
    },
    /// An API token was issued. Only the token's public id is recorded.
    ApiTokenIssued {
        #[schema(max_length = 256)]
        token_id: String,
        #[schema(max_length = 256)]
        label: String,
    },
    /// A sign-in, sign-out, throttled attempt or step-up. `account` is the
    /// user id, or for a username that matches no account a keyed hash of it
    /// (`unknown:` and 16 hex digits), so that credential stuffing shows
    /// without names being stored. Never carries a secret.
    Authentication {
        activity: AuthActivity,
        #[schema(max_length = 256)]
        account: String,
        /// How the user proved who they are, e.g. `password+totp`, `passkey`, `oidc`.
        #[schema(max_length = 256)]
        methods: String,
        /// The client address.
        #[schema(max_length = 256)]
        source: String,
        #[schema(max_length = 256)]
        session_id: Option<String>,
        /// Why it failed, in a fixed vocabulary (`bad_credentials`, `bad_code`, ...).
        #[schema(max_length = 256)]
        failure: Option<String>,
    },
    /// An account, its factors or its keys changed. `detail` never carries a secret.
    AccountChange {
        change: AccountChangeKind,
        #[schema(max_length = 256)]
        account: String,
        #[schema(max_length = 4096)]
        detail: String,
    },
    /// An access to patient records: read, search, write, export, erasure,
    /// break-glass, review, allowed or not. The source of the IHE BALP
    /// AuditEvent and of the patient's accounting of disclosures. Patients
    /// appear only as pseudonymous FHIR ids; `query` is already redacted (no
    /// names, identifiers, birth dates, addresses or contact details).
    RecordAccess {
        action: RecordAction,
        outcome: AccessOutcome,
        /// The account that asked (user or service id).
        #[schema(max_length = 256)]
        actor: String,
        /// The actor's roles at the time of the access.
        #[schema(max_items = 32)]
        roles: Vec<String>,
        /// The client address.
        #[schema(max_length = 256)]
        source: String,
        /// The declared purpose of use, a v3 ActReason code (`TREAT`, `ETREAT`, ...).
        #[schema(max_length = 256)]
        purpose_of_use: Option<String>,
        /// The break-glass grant the access was made under (or issued, for
        /// `break_glass`).
        #[schema(max_length = 256)]
        break_glass: Option<String>,
        #[schema(max_length = 256)]
        resource_type: Option<String>,
        /// The resource touched, `Type/id/_history/version`.
        #[schema(max_length = 256)]
        resource: Option<String>,
        /// Pseudonymous ids of the patients whose data was touched or
        /// appeared in search results.
        #[schema(max_items = 1000)]
        patients: Vec<String>,
        /// More patients were touched than `patients` lists.
        patients_truncated: bool,
        /// The search parameters, identifying values replaced by `***`.
        #[schema(max_length = 2048)]
        query: Option<String>,
        /// Why the policy decided as it did, in its fixed vocabulary.
        #[schema(max_items = 16)]
        reasons: Vec<String>,
        #[schema(max_length = 4096)]
        detail: Option<String>,
        /// The request's `X-Request-Id`.
        #[schema(max_length = 256)]
        request_id: Option<String>,
    },
    /// A log record from a host, device or application, kept as it came so
    /// that Sigma rules can read its fields. `product`, `service` and
    /// `category` are the Sigma log source (`windows`/`sysmon`/`process_creation`).
    LogRecord {
        #[schema(max_length = 256)]
        product: Option<String>,
        #[schema(max_length = 256)]
        service: Option<String>,
        #[schema(max_length = 256)]
        category: Option<String>,
        /// The record's fields, nested as they came.
        #[schema(value_type = Object)]
        fields: serde_json::Map<String, serde_json::Value>,
    },
    /// The detection engine found something: a Sigma rule or correlation
    /// fired, or the record-access analytics scored an access as suspicious.
    /// Patients appear only as pseudonymous ids; `explanation` is plain words
    /// without names.
    DetectionFinding {
        /// `sigma`, `correlation` or `ehr`.
        #[schema(max_length = 256)]
        kind: String,
        #[schema(max_length = 256)]
        rule_id: String,
        #[schema(max_length = 256)]
        rule_title: String,
        /// Who or what the finding is about (a user id, a host), for grouping.
        #[schema(max_length = 256)]
        entity: Option<String>,
        /// Pseudonymous ids of the patients concerned.
        #[schema(max_items = 1000)]
        patients: Vec<String>,
        /// Anomaly score in thousandths (0..=1000), where the analytics score.
        score_milli: Option<u32>,
        /// Why it fired, in plain words.
        #[schema(max_length = 4096)]
        explanation: String,
        /// What explains the access, or what was looked for and not found.
        #[schema(max_items = 32)]
        context: Vec<String>,
        /// Rule tags, e.g. MITRE ATT&CK `attack.t1059.001`.
        #[schema(max_items = 32)]
        tags: Vec<String>,
        /// Spine sequence numbers of the events that made it fire.
        #[schema(max_items = 1000)]
        events: Vec<u64>,
    },
    /// A device scan found a device (or a component of its software) affected
    /// by a published vulnerability, or a finding's status changed. Names
    /// devices by inventory id only; never carries patient data.
    VulnerabilityFinding {
        /// `created` (new finding), `updated` (status changed) or `closed` (no longer produced).
        activity: FindingActivity,
        /// Inventory id of the device.
        #[schema(max_length = 256)]
        device: String,
        /// The SBOM component (purl or name), when the match was on one.
        #[schema(max_length = 512)]
        component: Option<String>,
        #[schema(max_length = 256)]
        advisory: String,
        #[schema(max_length = 256)]
        vulnerability: String,
        #[schema(max_items = 32)]
        cves: Vec<String>,
        /// `affected`, `under_investigation`, `fixed` or `not_affected`.
        #[schema(max_length = 256)]
        status: String,
        /// CVSS base score in tenths (0..=100).
        #[schema(maximum = 100)]
        cvss_tenths: Option<u32>,
        /// In CISA's Known Exploited Vulnerabilities catalogue.
        kev: bool,
        /// The device's risk score (0..=100) after this scan.
        #[schema(maximum = 100)]
        risk: u32,
        /// Which rule matched which field, in words.
        #[schema(max_length = 4096)]
        explanation: String,
    },
}

/// What happened to a vulnerability finding (OCSF Vulnerability Finding activity).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FindingActivity {
    Created,
    Updated,
    Closed,
}

impl Payload {
    pub fn class(&self) -> EventClass {
        match self {
            Self::ServiceLifecycle { .. } => EventClass::ApplicationLifecycle,
            Self::ConfigChange { .. } => EventClass::ApiActivity,
            Self::ApiTokenIssued { .. } | Self::AccountChange { .. } => EventClass::AccountChange,
            Self::Authentication { activity: AuthActivity::StepUp, .. } => EventClass::AuthorizeSession,
            Self::Authentication { .. } => EventClass::Authentication,
            // Break-glass assigns emergency privileges; every other record
            // access is an API call on the vault.
            Self::RecordAccess { action: RecordAction::BreakGlass, .. } => EventClass::AuthorizeSession,
            Self::RecordAccess { .. } => EventClass::ApiActivity,
            Self::LogRecord { .. } => EventClass::BaseEvent,
            Self::DetectionFinding { .. } => EventClass::DetectionFinding,
            Self::VulnerabilityFinding { .. } => EventClass::VulnerabilityFinding,
        }
    }

    /// OCSF `activity_id` within the payload's class.
    pub fn activity_id(&self) -> u32 {
        match self {
            // Application Lifecycle: 3 Start, 4 Stop.
            Self::ServiceLifecycle { phase: LifecyclePhase::Started, .. } => 3,
            Self::ServiceLifecycle { phase: LifecyclePhase::Stopping, .. } => 4,
            // API Activity: 3 Update.
            Self::ConfigChange { .. } => 3,
            // Account Change: 1 Create.
            Self::ApiTokenIssued { .. } => 1,
            // Authentication: 1 Logon, 2 Logoff, 99 Other (refused unchecked).
            Self::Authentication { activity: AuthActivity::Logon, .. } => 1,
            Self::Authentication { activity: AuthActivity::Logoff, .. } => 2,
            Self::Authentication { activity: AuthActivity::Throttled, .. } => 99,
            // Authorize Session: 1 Assign Privileges.
            Self::Authentication { activity: AuthActivity::StepUp, .. } => 1,
            // Account Change: 1 Create, 2 Enable, 3 Password Change, 5 Disable,
            // 6 Delete, 7 Attach Policy, 10 MFA Factor Enable, 11 MFA Factor Disable.
            Self::AccountChange { change, .. } => match change {
                AccountChangeKind::Created => 1,
                AccountChangeKind::Enabled => 2,
                AccountChangeKind::PasswordChanged => 3,
                AccountChangeKind::Disabled => 5,
                AccountChangeKind::ApiKeyRevoked => 6,
                AccountChangeKind::RolesChanged => 7,
                AccountChangeKind::MfaEnrolled | AccountChangeKind::RecoveryCodesIssued => 10,
                AccountChangeKind::MfaRemoved => 11,
            },
            // Authorize Session: 1 Assign Privileges. API Activity: 1 Create,
            // 2 Read, 3 Update, 4 Delete, 99 Other.
            Self::RecordAccess { action, .. } => match action {
                RecordAction::BreakGlass | RecordAction::Create => 1,
                RecordAction::Read
                | RecordAction::Vread
                | RecordAction::Search
                | RecordAction::History
                | RecordAction::Export
                | RecordAction::AccessLog => 2,
                RecordAction::Update => 3,
                RecordAction::Delete | RecordAction::Erase => 4,
                RecordAction::Review => 99,
            },
            // Base Event: 0 Unknown (the record's own kind is in its fields).
            Self::LogRecord { .. } => 0,
            // Detection Finding: 1 Create.
            Self::DetectionFinding { .. } => 1,
            // Vulnerability Finding: 1 Create, 2 Update, 3 Close.
            Self::VulnerabilityFinding { activity, .. } => match activity {
                FindingActivity::Created => 1,
                FindingActivity::Updated => 2,
                FindingActivity::Closed => 3,
            },
        }
    }

    fn check_lengths(&self) -> Result<(), EventError> {
        match self {
            Self::ServiceLifecycle { version, .. } => check_len("payload.version", version, MAX_FIELD_CHARS),
            Self::ConfigChange { key, detail } => {
                check_len("payload.key", key, MAX_FIELD_CHARS)?;
                check_len("payload.detail", detail, MAX_MESSAGE_CHARS)
            }
            Self::ApiTokenIssued { token_id, label } => {
                check_len("payload.token_id", token_id, MAX_FIELD_CHARS)?;
                check_len("payload.label", label, MAX_FIELD_CHARS)
            }
            Self::Authentication { account, methods, source, session_id, failure, .. } => {
                check_len("payload.account", account, MAX_FIELD_CHARS)?;
                check_len("payload.methods", methods, MAX_FIELD_CHARS)?;
                check_len("payload.source", source, MAX_FIELD_CHARS)?;
                check_len("payload.session_id", session_id.as_deref().unwrap_or_default(), MAX_FIELD_CHARS)?;
                check_len("payload.failure", failure.as_deref().unwrap_or_default(), MAX_FIELD_CHARS)
            }
            Self::AccountChange { account, detail, .. } => {
                check_len("payload.account", account, MAX_FIELD_CHARS)?;
                check_len("payload.detail", detail, MAX_MESSAGE_CHARS)
            }
            Self::RecordAccess {
                actor,
                roles,
                source,
                purpose_of_use,
                break_glass,
                resource_type,
                resource,
                patients,
                query,
                reasons,
                detail,
                request_id,
                ..
            } => {
                check_count("payload.roles", roles.len(), MAX_RECORD_ROLES)?;
                check_count("payload.patients", patients.len(), MAX_RECORD_PATIENTS)?;
                check_count("payload.reasons", reasons.len(), MAX_RECORD_REASONS)?;
                let fields = [("payload.actor", actor), ("payload.source", source)]
                    .into_iter()
                    .chain(roles.iter().map(|r| ("payload.roles", r)))
                    .chain(patients.iter().map(|p| ("payload.patients", p)))
                    .chain(reasons.iter().map(|r| ("payload.reasons", r)));
                let optional = [
                    ("payload.purpose_of_use", purpose_of_use),
                    ("payload.break_glass", break_glass),
                    ("payload.resource_type", resource_type),
                    ("payload.resource", resource),
                    ("payload.request_id", request_id),
                ]
                .into_iter()
                .filter_map(|(field, value)| value.as_ref().map(|v| (field, v)));
                for (field, value) in fields.chain(optional) {
                    check_len(field, value, MAX_FIELD_CHARS)?;
                }
                check_len("payload.query", query.as_deref().unwrap_or_default(), MAX_RECORD_QUERY_CHARS)?;
                check_len("payload.detail", detail.as_deref().unwrap_or_default(), MAX_MESSAGE_CHARS)?;
                // Each part is bounded; the whole must be too, so that the
                // event still parses under MAX_EVENT_BYTES.
                let size = serde_json::to_vec(self).map_err(|e| EventError::Canonical(e.to_string()))?.len();
                if size > MAX_RECORD_ACCESS_BYTES {
                    return Err(EventError::TooLarge { size, max: MAX_RECORD_ACCESS_BYTES });
                }
                Ok(())
            }
            Self::LogRecord { product, service, category, fields } => {
                for (field, value) in
                    [("payload.product", product), ("payload.service", service), ("payload.category", category)]
                {
                    check_len(field, value.as_deref().unwrap_or_default(), MAX_FIELD_CHARS)?;
                }
                let size = serde_json::to_vec(fields).map_err(|e| EventError::Canonical(e.to_string()))?.len();
                if size > MAX_LOG_RECORD_BYTES {
                    return Err(EventError::TooLarge { size, max: MAX_LOG_RECORD_BYTES });
                }
                Ok(())
            }
            Self::DetectionFinding {
                kind,
                rule_id,
                rule_title,
                entity,
                patients,
                explanation,
                context,
                tags,
                events,
                ..
            } => {
                check_count("payload.patients", patients.len(), MAX_RECORD_PATIENTS)?;
                check_count("payload.context", context.len(), MAX_FINDING_ITEMS)?;
                check_count("payload.tags", tags.len(), MAX_FINDING_ITEMS)?;
                check_count("payload.events", events.len(), MAX_RECORD_PATIENTS)?;
                let fields = [("payload.kind", kind), ("payload.rule_id", rule_id), ("payload.rule_title", rule_title)]
                    .into_iter()
                    .chain(entity.iter().map(|e| ("payload.entity", e)))
                    .chain(patients.iter().map(|p| ("payload.patients", p)))
                    .chain(tags.iter().map(|t| ("payload.tags", t)));
                for (field, value) in fields {
                    check_len(field, value, MAX_FIELD_CHARS)?;
                }
                check_len("payload.explanation", explanation, MAX_MESSAGE_CHARS)?;
                for line in context {
                    check_len("payload.context", line, MAX_FIELD_CHARS * 2)?;
                }
                Ok(())
            }
            Self::VulnerabilityFinding {
                device,
                component,
                advisory,
                vulnerability,
                cves,
                status,
                explanation,
                cvss_tenths,
                risk,
                ..
            } => {
                check_count("payload.cves", cves.len(), MAX_FINDING_ITEMS)?;
                let fields = [
                    ("payload.device", device),
                    ("payload.advisory", advisory),
                    ("payload.vulnerability", vulnerability),
                    ("payload.status", status),
                ]
                .into_iter()
                .chain(cves.iter().map(|c| ("payload.cves", c)));
                for (field, value) in fields {
                    check_len(field, value, MAX_FIELD_CHARS)?;
                }
                check_len("payload.component", component.as_deref().unwrap_or_default(), MAX_FIELD_CHARS * 2)?;
                check_len("payload.explanation", explanation, MAX_MESSAGE_CHARS)?;
                if cvss_tenths.is_some_and(|c| c > 100) || *risk > 100 {
                    return Err(EventError::Malformed("payload: cvss_tenths and risk are at most 100".into()));
                }
                Ok(())
            }
        }
    }
}

fn check_count(field: &'static str, size: usize, max: usize) -> Result<(), EventError> {
    if size > max {
        return Err(EventError::TooManyItems { field, size, max });
    }
    Ok(())
}

fn check_len(field: &'static str, value: &str, max: usize) -> Result<(), EventError> {
    // Bytes bound characters from above: only count when it could matter.
    if value.len() > max {
        let size = value.chars().count();
        if size > max {
            return Err(EventError::FieldTooLong { field, size, max });
        }
    }
    Ok(())
}

/// One security event. Construct with [`SecurityEvent::new`]; the OCSF
/// numbering (`class_uid`, `category_uid`, `activity_id`, `type_uid`) is
/// derived from the payload and checked again whenever an event is parsed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "UncheckedEvent")]
pub struct SecurityEvent {
    schema_version: u16,
    uid: EventId,
    time: Timestamp,
    class_uid: u32,
    category_uid: u32,
    activity_id: u32,
    type_uid: u64,
    severity_id: Severity,
    status_id: Status,
    actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<Target>,
    #[schema(max_length = 4096)]
    message: String,
    payload: Payload,
}

/// What arrives on the wire before it is checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UncheckedEvent {
    schema_version: u16,
    uid: EventId,
    time: Timestamp,
    class_uid: u32,
    category_uid: u32,
    activity_id: u32,
    type_uid: u64,
    severity_id: Severity,
    status_id: Status,
    actor: Actor,
    #[serde(default)]
    target: Option<Target>,
    message: String,
    payload: Payload,
}

impl TryFrom<UncheckedEvent> for SecurityEvent {
    type Error = EventError;

    fn try_from(raw: UncheckedEvent) -> Result<Self, EventError> {
        if raw.schema_version != EVENT_SCHEMA_VERSION {
            return Err(EventError::UnsupportedSchema(raw.schema_version));
        }
        let mut event = SecurityEvent::new(
            raw.uid,
            raw.time,
            raw.severity_id,
            raw.status_id,
            raw.actor,
            raw.target,
            raw.message,
            raw.payload,
        )?;
        for (field, expected, got) in [
            ("class_uid", u64::from(event.class_uid), u64::from(raw.class_uid)),
            ("category_uid", u64::from(event.category_uid), u64::from(raw.category_uid)),
            ("activity_id", u64::from(event.activity_id), u64::from(raw.activity_id)),
            ("type_uid", event.type_uid, raw.type_uid),
        ] {
            if expected != got {
                return Err(EventError::Inconsistent { field, expected, got });
            }
        }
        event.schema_version = raw.schema_version;
        Ok(event)
    }
}

impl SecurityEvent {
    /// A checked event. Fails only if a field is over its length limit.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        uid: EventId,
        time: Timestamp,
        severity: Severity,
        status: Status,
        actor: Actor,
        target: Option<Target>,
        message: impl Into<String>,
        payload: Payload,
    ) -> Result<Self, EventError> {
        let message = message.into();
        check_len("message", &message, MAX_MESSAGE_CHARS)?;
        check_len("actor.uid", &actor.uid, MAX_FIELD_CHARS)?;
        if let Some(target) = &target {
            check_len("target.kind", &target.kind, MAX_FIELD_CHARS)?;
            check_len("target.uid", &target.uid, MAX_FIELD_CHARS)?;
        }
        payload.check_lengths()?;
        let class = payload.class();
        let activity_id = payload.activity_id();
        Ok(Self {
            schema_version: EVENT_SCHEMA_VERSION,
            uid,
            time,
            class_uid: class.uid(),
            category_uid: class.category_uid(),
            activity_id,
            type_uid: u64::from(class.uid()) * 100 + u64::from(activity_id),
            severity_id: severity,
            status_id: status,
            actor,
            target,
            message,
            payload,
        })
    }

    /// Parse an event received from outside, size-capped before parsing.
    pub fn from_json_slice(bytes: &[u8]) -> Result<Self, EventError> {
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(EventError::TooLarge { size: bytes.len(), max: MAX_EVENT_BYTES });
        }
        serde_json::from_slice(bytes).map_err(|e| EventError::Malformed(e.to_string()))
    }

    /// The RFC 8785 canonical JSON form: the bytes that are hashed and sealed.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, EventError> {
        serde_json_canonicalizer::to_vec(self).map_err(|e| EventError::Canonical(e.to_string()))
    }

    /// SHA-256 of the canonical form.
    pub fn digest(&self) -> Result<EventDigest, EventError> {
        let bytes = self.canonical_bytes()?;
        Ok(EventDigest::of_canonical(&bytes))
    }

    pub fn uid(&self) -> EventId {
        self.uid
    }
    pub fn time(&self) -> Timestamp {
        self.time
    }
    pub fn class_uid(&self) -> u32 {
        self.class_uid
    }
    pub fn activity_id(&self) -> u32 {
        self.activity_id
    }
    pub fn type_uid(&self) -> u64 {
        self.type_uid
    }
    pub fn severity(&self) -> Severity {
        self.severity_id
    }
    pub fn status(&self) -> Status {
        self.status_id
    }
    pub fn actor(&self) -> &Actor {
        &self.actor
    }
    pub fn target(&self) -> Option<&Target> {
        self.target.as_ref()
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    pub fn payload(&self) -> &Payload {
        &self.payload
    }
}

/// SHA-256 of an event's canonical form.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventDigest(pub [u8; 32]);

impl EventDigest {
    /// The digest of an event's canonical bytes (as [`SecurityEvent::canonical_bytes`]
    /// returns them, or as stored): computing it from stored bytes checks
    /// them without serialising the event again.
    pub fn of_canonical(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for EventDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventDigest({})", self.to_hex())
    }
}

impl fmt::Display for EventDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SecurityEvent {
        SecurityEvent::new(
            EventId(Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001)),
            Timestamp(1_764_428_400_000),
            Severity::Informational,
            Status::Success,
            Actor::system(),
            Some(Target { kind: "config".into(), uid: "server.listen".into() }),
            "configuration loaded",
            Payload::ConfigChange { key: "server.listen".into(), detail: "127.0.0.1:8443".into() },
        )
        .unwrap()
    }

    #[test]
    fn ocsf_numbering_is_derived_from_the_payload() {
        let event = sample();
        assert_eq!(event.class_uid(), 6003);
        assert_eq!(event.activity_id(), 3);
        assert_eq!(event.type_uid(), 600303);
        let json: serde_json::Value = serde_json::to_value(&event).unwrap();
        assert_eq!(json["category_uid"], 6);
        assert_eq!(json["severity_id"], 1);
        assert_eq!(json["status_id"], 1);
        assert_eq!(json["payload"]["type"], "config_change");
    }

    #[test]
    fn canonical_form_is_sorted_compact_and_stable() {
        let event = sample();
        let bytes = event.canonical_bytes().unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("{\"activity_id\":3,\"actor\":{\"kind\":\"system\",\"uid\":\"caduceus\"}"), "{text}");
        assert!(!text.contains(' ') || text.contains("configuration loaded"));
        // Parsing the canonical form back and canonicalising again is the identity.
        let back = SecurityEvent::from_json_slice(&bytes).unwrap();
        assert_eq!(back, event);
        assert_eq!(back.canonical_bytes().unwrap(), bytes);
        assert_eq!(back.digest().unwrap(), event.digest().unwrap());
    }

    #[test]
    fn digest_does_not_depend_on_input_key_order() {
        let event = sample();
        let mut value = serde_json::to_value(&event).unwrap();
        // Re-serialise with a different member order: the digest must not change.
        let obj = value.as_object_mut().unwrap();
        let message = obj.remove("message").unwrap();
        obj.insert("message".into(), message);
        let reordered = serde_json::to_vec(&value).unwrap();
        let parsed = SecurityEvent::from_json_slice(&reordered).unwrap();
        assert_eq!(parsed.digest().unwrap(), event.digest().unwrap());
    }

    #[test]
    fn rfc8785_number_and_string_rules() {
        // Vectors from RFC 8785 section 3.2.2 / appendix B, via the same
        // canonicaliser the events use.
        let input: serde_json::Value =
            serde_json::from_str(r#"{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],"string":"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/","literals":[null,true,false]}"#).unwrap();
        let out = serde_json_canonicalizer::to_string(&input).unwrap();
        assert_eq!(
            out,
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    #[test]
    fn inconsistent_numbering_is_rejected() {
        let mut value = serde_json::to_value(sample()).unwrap();
        value["class_uid"] = serde_json::json!(2004);
        let err = SecurityEvent::from_json_slice(&serde_json::to_vec(&value).unwrap()).unwrap_err();
        assert!(matches!(err, EventError::Malformed(ref m) if m.contains("class_uid")), "{err}");
    }

    #[test]
    fn unknown_fields_and_versions_are_rejected() {
        let mut value = serde_json::to_value(sample()).unwrap();
        value["surprise"] = serde_json::json!(1);
        assert!(SecurityEvent::from_json_slice(&serde_json::to_vec(&value).unwrap()).is_err());
        let mut value = serde_json::to_value(sample()).unwrap();
        value["schema_version"] = serde_json::json!(9);
        let err = SecurityEvent::from_json_slice(&serde_json::to_vec(&value).unwrap()).unwrap_err();
        assert!(err.to_string().contains("schema_version 9"), "{err}");
    }

    #[test]
    fn oversize_input_is_refused_before_parsing() {
        let big = vec![b' '; MAX_EVENT_BYTES + 1];
        assert_eq!(
            SecurityEvent::from_json_slice(&big),
            Err(EventError::TooLarge { size: MAX_EVENT_BYTES + 1, max: MAX_EVENT_BYTES })
        );
        let with_message = |message: String| {
            SecurityEvent::new(
                EventId::new(Timestamp(0)),
                Timestamp(0),
                Severity::Low,
                Status::Success,
                Actor::system(),
                None,
                message,
                Payload::ServiceLifecycle { phase: LifecyclePhase::Started, version: "1".into() },
            )
        };
        // Multi-byte characters count once each.
        assert!(with_message("é".repeat(MAX_MESSAGE_CHARS)).is_ok());
        let err = with_message("x".repeat(MAX_MESSAGE_CHARS + 1)).unwrap_err();
        assert!(matches!(err, EventError::FieldTooLong { field: "message", .. }));
    }

    #[test]
    fn openapi_schema_repeats_the_length_limits() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(SecurityEvent::schema()).unwrap();
        assert_eq!(schema["properties"]["message"]["maxLength"], MAX_MESSAGE_CHARS);
        let actor = serde_json::to_value(Actor::schema()).unwrap();
        assert_eq!(actor["properties"]["uid"]["maxLength"], MAX_FIELD_CHARS);
        let payload = serde_json::to_value(Payload::schema()).unwrap();
        assert_eq!(payload["oneOf"][1]["properties"]["detail"]["maxLength"], MAX_MESSAGE_CHARS);
        assert_eq!(payload["oneOf"][1]["properties"]["key"]["maxLength"], MAX_FIELD_CHARS);
    }

    fn record_access(action: RecordAction, patients: Vec<String>) -> Payload {
        Payload::RecordAccess {
            action,
            outcome: AccessOutcome::Denied,
            actor: "u-42".into(),
            roles: vec!["clinician".into(), "nurse".into()],
            source: "10.0.0.7".into(),
            purpose_of_use: Some("TREAT".into()),
            break_glass: None,
            resource_type: Some("Observation".into()),
            resource: None,
            patients,
            patients_truncated: false,
            query: Some("code=1234-5&subject:Patient.name=***".into()),
            reasons: vec!["no_care_relationship".into()],
            detail: None,
            request_id: Some("r-1".into()),
        }
    }

    fn event_with(payload: Payload) -> Result<SecurityEvent, EventError> {
        SecurityEvent::new(
            EventId(Uuid::from_u128(7)),
            Timestamp(1_764_428_400_000),
            Severity::Low,
            Status::Failure,
            Actor { kind: ActorKind::User, uid: "u-42".into() },
            None,
            "record access",
            payload,
        )
    }

    #[test]
    fn record_access_round_trips_through_the_canonical_form() {
        let event = event_with(record_access(RecordAction::Search, vec!["p1".into(), "p2".into()])).unwrap();
        assert_eq!((event.class_uid(), event.activity_id()), (6003, 2));
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["payload"]["type"], "record_access");
        assert_eq!(json["payload"]["action"], "search");
        assert_eq!(json["payload"]["outcome"], "denied");
        assert_eq!(json["payload"]["patients"], serde_json::json!(["p1", "p2"]));
        let bytes = event.canonical_bytes().unwrap();
        let back = SecurityEvent::from_json_slice(&bytes).unwrap();
        assert_eq!(back, event);
        assert_eq!(back.canonical_bytes().unwrap(), bytes);
    }

    #[test]
    fn record_access_classes() {
        let class = |action| {
            let event = event_with(record_access(action, vec![])).unwrap();
            (event.class_uid(), event.activity_id())
        };
        assert_eq!(class(RecordAction::BreakGlass), (3003, 1));
        assert_eq!(class(RecordAction::Create), (6003, 1));
        assert_eq!(class(RecordAction::Export), (6003, 2));
        assert_eq!(class(RecordAction::Update), (6003, 3));
        assert_eq!(class(RecordAction::Erase), (6003, 4));
        assert_eq!(class(RecordAction::Review), (6003, 99));
        assert_eq!(RecordAction::AccessLog.as_str(), "access_log");
        let json = serde_json::to_value(RecordAction::AccessLog).unwrap();
        assert_eq!(json, RecordAction::AccessLog.as_str());
    }

    #[test]
    fn record_access_is_bounded() {
        let many = (0..=MAX_RECORD_PATIENTS).map(|n| format!("p{n}")).collect();
        let err = event_with(record_access(RecordAction::Search, many)).unwrap_err();
        assert!(matches!(err, EventError::TooManyItems { field: "payload.patients", .. }), "{err}");
        let at_cap = (0..MAX_RECORD_PATIENTS).map(|n| format!("{n:036}")).collect();
        let event = event_with(record_access(RecordAction::Search, at_cap)).unwrap();
        assert!(event.canonical_bytes().unwrap().len() < MAX_EVENT_BYTES);
        let long_ids = (0..MAX_RECORD_PATIENTS).map(|n| format!("{n:064}")).collect();
        let err = event_with(record_access(RecordAction::Search, long_ids)).unwrap_err();
        assert!(matches!(err, EventError::TooLarge { max: MAX_RECORD_ACCESS_BYTES, .. }), "{err}");
        let mut payload = record_access(RecordAction::Read, vec![]);
        if let Payload::RecordAccess { query, .. } = &mut payload {
            *query = Some("x".repeat(MAX_RECORD_QUERY_CHARS + 1));
        }
        let err = event_with(payload).unwrap_err();
        assert!(matches!(err, EventError::FieldTooLong { field: "payload.query", .. }), "{err}");
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(Payload::schema()).unwrap();
        let record = &schema["oneOf"][5]["properties"];
        assert_eq!(record["query"]["maxLength"], MAX_RECORD_QUERY_CHARS);
        assert_eq!(record["patients"]["maxItems"], MAX_RECORD_PATIENTS);
        assert_eq!(record["roles"]["maxItems"], MAX_RECORD_ROLES);
        assert_eq!(record["reasons"]["maxItems"], MAX_RECORD_REASONS);
    }

    #[test]
    fn event_ids_sort_by_time() {
        let a = EventId::new(Timestamp(1_000));
        let b = EventId::new(Timestamp(2_000));
        assert!(a < b);
    }
}
