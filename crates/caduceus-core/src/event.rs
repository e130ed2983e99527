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
}

impl EventClass {
    pub fn uid(self) -> u32 {
        match self {
            Self::AccountChange => 3001,
            Self::Authentication => 3002,
            Self::AuthorizeSession => 3003,
            Self::ApplicationLifecycle => 6002,
            Self::ApiActivity => 6003,
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
}

impl Payload {
    pub fn class(&self) -> EventClass {
        match self {
            Self::ServiceLifecycle { .. } => EventClass::ApplicationLifecycle,
            Self::ConfigChange { .. } => EventClass::ApiActivity,
            Self::ApiTokenIssued { .. } | Self::AccountChange { .. } => EventClass::AccountChange,
            Self::Authentication { activity: AuthActivity::StepUp, .. } => EventClass::AuthorizeSession,
            Self::Authentication { .. } => EventClass::Authentication,
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
        }
    }
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
        Ok(EventDigest(Sha256::digest(&bytes).into()))
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

    #[test]
    fn event_ids_sort_by_time() {
        let a = EventId::new(Timestamp(1_000));
        let b = EventId::new(Timestamp(2_000));
        assert!(a < b);
    }
}
