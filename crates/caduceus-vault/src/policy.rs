//! The access decision: may this user do this to this resource, and why.
//!
//! One pure function, [`decide`], owns every access rule of the vault. It
//! does no I/O and reads no clock: the service gathers the facts (the user's
//! care relationships with the patient, the patient's Consent resources, an
//! unexpired break-glass grant, the time) from the store and passes them in,
//! so every rule is tested with plain values and a decision can be replayed
//! from its audit record. `docs/design/access.md` explains the rules and why
//! they are what they are; this module must not fetch, store or log anything.
//!
//! A decision is made in layers, each of which can only take access away,
//! except where stated:
//!
//! 1. **Scopes.** The action's interaction (`c r u d s`) must be granted for
//!    the resource type by the scopes of one of the user's roles (SMART v2
//!    style, [`role_scopes`]); scopes carried by the user's token can only
//!    narrow them. AuditEvent is never writable.
//! 2. **Compartment.** Shared organisational data needs nothing more. A
//!    patient's compartment needs a basis: the user's own record (read-only),
//!    an oversight or front-desk role, a care relationship, a consent naming
//!    the user, or a break-glass grant for that patient.
//! 3. **Consent.** The patient's active privacy consents are evaluated; a
//!    matching deny wins over role and relationship. Only break-glass with
//!    an emergency purpose (`ETREAT`) overrides it, and that is audited and
//!    reviewed.
//!
//! Every decision carries the reasons that mattered, in plain English and
//! without patient data: resource ids (pseudonymous), role names, scopes and
//! purpose codes only. Category codes and the free-text break-glass reason
//! are never echoed, because "HIV" next to a patient id in an access log is
//! itself health information.
//!
//! Trade-off: consents are read as JSON rather than a typed model, and the
//! criteria the vault cannot evaluate from the facts it has (`dataPeriod`,
//! instance references in `data`, foreign action or purpose codes) are
//! resolved conservatively: they make a deny apply and a permit not apply.
//! A patient's restriction is never lost to the evaluator's ignorance; the
//! cost is occasional over-blocking, which break-glass covers in emergencies.

use serde::Serialize;
use serde_json::Value;
use std::fmt;
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime};

use crate::resource::{READ_ONLY_TYPES, patient_id_of, valid_id, valid_type};

/// Longest single scope accepted (`system/ExplanationOfBenefit.cruds` is 34).
pub const MAX_SCOPE_LEN: usize = 128;
/// Longest space-separated scope list accepted from a token.
pub const MAX_SCOPE_LIST_LEN: usize = 8 * 1024;
/// Most resource scopes accepted from one token.
pub const MAX_SCOPES: usize = 64;
/// Most Consent resources evaluated for one decision; more is refused.
pub const MAX_CONSENTS: usize = 256;
/// Deepest provision nesting evaluated; deeper consents deny.
pub const MAX_PROVISION_DEPTH: usize = 8;
/// Most provisions evaluated in one consent; more deny.
pub const MAX_PROVISIONS: usize = 256;
/// Longest purpose-of-use code accepted.
pub const MAX_PURPOSE_LEN: usize = 32;

/// Role names as the identity layer spells them.
pub const ROLE_ADMIN: &str = "admin";
pub const ROLE_SECURITY_ANALYST: &str = "security-analyst";
pub const ROLE_AUDITOR: &str = "auditor";
pub const ROLE_CLINICIAN: &str = "clinician";
pub const ROLE_NURSE: &str = "nurse";
pub const ROLE_REGISTRAR: &str = "registrar";
pub const ROLE_DEVICE_SERVICE: &str = "device-service";
pub const ROLE_PATIENT: &str = "patient";
/// Every role the policy knows; other role names grant nothing.
pub const ROLES: &[&str] = &[
    ROLE_ADMIN,
    ROLE_SECURITY_ANALYST,
    ROLE_AUDITOR,
    ROLE_CLINICIAN,
    ROLE_NURSE,
    ROLE_REGISTRAR,
    ROLE_DEVICE_SERVICE,
    ROLE_PATIENT,
];

/// Roles that treat patients: they reach a patient's compartment only through
/// a care relationship, a consent naming them, or break-glass.
const CARE_ROLES: &[&str] = &[ROLE_CLINICIAN, ROLE_NURSE, ROLE_DEVICE_SERVICE];
/// Roles that may declare and use break-glass (people, not services).
const BREAK_GLASS_ROLES: &[&str] = &[ROLE_CLINICIAN, ROLE_NURSE];
/// Roles that read audit records across patients.
const OVERSIGHT_ROLES: &[&str] = &[ROLE_AUDITOR, ROLE_SECURITY_ANALYST];
/// Roles that may erase a patient's record.
const ERASE_ROLES: &[&str] = &[ROLE_ADMIN, ROLE_AUDITOR];
/// Types the registrar works on at the front desk without a relationship.
const FRONT_DESK_TYPES: &[&str] = &["Patient", "Encounter", "Consent"];
/// Organisation data administered by admins (and read by security analysts).
const ORGANISATION_TYPES: &[&str] = &["Practitioner", "PractitionerRole", "Organization", "Location", "Device"];
/// What a break-glass grant allows: treating the patient now, nothing more.
const BREAK_GLASS_ACTIONS: &[Action] = &[Action::Read, Action::Search, Action::History, Action::Create, Action::Update];

/// Scope strings in tokens that are not resource scopes and are skipped.
const NON_RESOURCE_SCOPES: &[&str] = &["openid", "fhirUser", "profile", "offline_access", "online_access", "launch"];

const CONSENT_SCOPE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
const CONSENT_ACTION_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/consentaction";
const ACT_REASON_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
const ACT_CODE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const RESOURCE_TYPES_SYSTEM: &str = "http://hl7.org/fhir/resource-types";

/// Emergency treatment: the purpose under which break-glass overrides a
/// consent deny.
pub const PURPOSE_EMERGENCY: &str = "ETREAT";

/// The part of the HL7 v3 PurposeOfUse hierarchy the policy uses: (child,
/// parent). A consent about `TREAT` also covers `ETREAT`, and so on.
const PURPOSE_PARENTS: &[(&str, &str)] = &[
    ("ETREAT", "TREAT"),
    ("BTG", "ETREAT"),
    ("ERTREAT", "ETREAT"),
    ("PATADMIN", "HOPERAT"),
    ("RECORDMGT", "HOPERAT"),
    ("HSYSADMIN", "HOPERAT"),
    ("HQUALIMP", "HOPERAT"),
    ("PATSFTY", "HOPERAT"),
    ("HLEGAL", "HOPERAT"),
    ("CLMATTCH", "HPAYMT"),
    ("COVAUTH", "HPAYMT"),
    ("COVERAGE", "HPAYMT"),
    ("ELIGDTRM", "HPAYMT"),
    ("ELIGVER", "HPAYMT"),
    ("FAMRQT", "PATRQT"),
    ("PWATRNY", "PATRQT"),
    ("SUPNWK", "PATRQT"),
];

/// What the user wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Read,
    Search,
    Create,
    Update,
    Delete,
    /// Read a resource's earlier versions.
    History,
    /// Bulk export (`$export`, `$everything`).
    Export,
    /// Crypto-shred a patient's compartment (right to erasure).
    Erase,
    /// Read who accessed a patient's record.
    AccessLog,
    /// Declare an emergency to reach a patient without a relationship.
    BreakGlass,
    /// Review break-glass declarations after the fact.
    ReviewBreakGlass,
}

impl Action {
    /// The SMART interaction the action needs, or `None` for the actions
    /// gated by role rather than by scope.
    pub fn interaction(self) -> Option<Interactions> {
        match self {
            Self::Read | Self::History | Self::Export => Some(Interactions::READ),
            Self::Search => Some(Interactions::SEARCH),
            Self::Create => Some(Interactions::CREATE),
            Self::Update => Some(Interactions::UPDATE),
            Self::Delete => Some(Interactions::DELETE),
            Self::Erase | Self::AccessLog | Self::BreakGlass | Self::ReviewBreakGlass => None,
        }
    }

    /// Whether the action changes stored data.
    pub fn is_write(self) -> bool {
        matches!(self, Self::Create | Self::Update | Self::Delete | Self::Erase)
    }

    /// Whether the action only reads a patient's data.
    fn is_read_only(self) -> bool {
        matches!(self, Self::Read | Self::Search | Self::History | Self::Export)
    }

    /// The action's name in reasons and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Search => "search",
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::History => "history",
            Self::Export => "export",
            Self::Erase => "erase",
            Self::AccessLog => "access-log",
            Self::BreakGlass => "break-glass",
            Self::ReviewBreakGlass => "review-break-glass",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of SMART v2 interactions: create, read, update, delete, search.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Interactions(u8);

impl Interactions {
    pub const NONE: Self = Self(0);
    pub const CREATE: Self = Self(1);
    pub const READ: Self = Self(2);
    pub const UPDATE: Self = Self(4);
    pub const DELETE: Self = Self(8);
    pub const SEARCH: Self = Self(16);
    pub const ALL: Self = Self(31);
    /// The letters in the order SMART v2 requires.
    const LETTERS: [(char, Self); 5] =
        [('c', Self::CREATE), ('r', Self::READ), ('u', Self::UPDATE), ('d', Self::DELETE), ('s', Self::SEARCH)];

    /// Both sets together.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether every interaction of `other` is in this set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// SMART v2 letters: a non-empty subsequence of `cruds`, in that order.
    fn parse_v2(letters: &str) -> Option<Self> {
        let mut set = Self::NONE;
        let mut allowed = Self::LETTERS.iter();
        for c in letters.chars() {
            // Each letter must come after the previous one in `cruds`.
            let (_, bit) = allowed.by_ref().find(|(l, _)| *l == c)?;
            set = set.union(*bit);
        }
        (!set.is_empty()).then_some(set)
    }
}

impl fmt::Display for Interactions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (letter, bit) in Self::LETTERS {
            if self.contains(bit) {
                write!(f, "{letter}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Interactions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Interactions({self})")
    }
}

/// Whose data a scope reaches (the SMART scope prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeContext {
    /// `patient/`: the compartment of the patient in context only.
    Patient,
    /// `user/`: whatever the user may reach.
    User,
    /// `system/`: a backend service acting on its own.
    System,
}

impl ScopeContext {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Patient => "patient",
            Self::User => "user",
            Self::System => "system",
        }
    }
}

/// A SMART on FHIR scope such as `user/Observation.rs`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    context: ScopeContext,
    /// `None` is the wildcard `*`.
    resource_type: Option<String>,
    interactions: Interactions,
}

/// Why a scope string was refused. Messages never echo the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("the scope is longer than {0} bytes")]
    TooLong(usize),
    #[error("the scope list holds more than {0} resource scopes")]
    TooMany(usize),
    #[error("the scope has no context (expected patient/, user/ or system/)")]
    MissingContext,
    #[error("the scope context is not patient, user or system")]
    UnknownContext,
    #[error("the scope has no interactions after the resource type")]
    MissingInteractions,
    #[error("the scope names an invalid resource type")]
    InvalidResourceType,
    #[error("the scope interactions are not a subsequence of cruds, read, write or *")]
    InvalidInteractions,
    #[error("scopes with search-parameter constraints are not supported")]
    Constrained,
}

impl Scope {
    /// Parse one scope: SMART v2 (`user/Observation.rs`, `patient/*.r`) or
    /// the v1 forms `.read` (= `rs`), `.write` (= `cud`) and `.*` (= `cruds`).
    /// Constrained v2 scopes (`?category=...`) are refused: ignoring the
    /// constraint would widen them.
    pub fn parse(s: &str) -> Result<Scope, ScopeError> {
        if s.len() > MAX_SCOPE_LEN {
            return Err(ScopeError::TooLong(MAX_SCOPE_LEN));
        }
        if s.contains('?') {
            return Err(ScopeError::Constrained);
        }
        let (context, rest) = s.split_once('/').ok_or(ScopeError::MissingContext)?;
        let context = match context {
            "patient" => ScopeContext::Patient,
            "user" => ScopeContext::User,
            "system" => ScopeContext::System,
            _ => return Err(ScopeError::UnknownContext),
        };
        let (resource_type, letters) = rest.split_once('.').ok_or(ScopeError::MissingInteractions)?;
        let resource_type = match resource_type {
            "*" => None,
            t if valid_type(t) => Some(t.to_owned()),
            _ => return Err(ScopeError::InvalidResourceType),
        };
        let interactions = match letters {
            "" => return Err(ScopeError::MissingInteractions),
            "read" => Interactions::READ.union(Interactions::SEARCH),
            "write" => Interactions::CREATE.union(Interactions::UPDATE).union(Interactions::DELETE),
            "*" => Interactions::ALL,
            v2 => Interactions::parse_v2(v2).ok_or(ScopeError::InvalidInteractions)?,
        };
        Ok(Scope { context, resource_type, interactions })
    }

    /// Parse a token's space-separated `scope` claim, skipping the
    /// non-resource scopes (`openid`, `fhirUser`, `launch/...`, ...).
    pub fn parse_list(list: &str) -> Result<Vec<Scope>, ScopeError> {
        if list.len() > MAX_SCOPE_LIST_LEN {
            return Err(ScopeError::TooLong(MAX_SCOPE_LIST_LEN));
        }
        let scopes = list
            .split_ascii_whitespace()
            .filter(|s| !NON_RESOURCE_SCOPES.contains(s) && !s.starts_with("launch/"))
            .map(Scope::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if scopes.len() > MAX_SCOPES {
            return Err(ScopeError::TooMany(MAX_SCOPES));
        }
        Ok(scopes)
    }

    pub fn context(&self) -> ScopeContext {
        self.context
    }

    /// The resource type, `None` for `*`.
    pub fn resource_type(&self) -> Option<&str> {
        self.resource_type.as_deref()
    }

    pub fn interactions(&self) -> Interactions {
        self.interactions
    }

    /// Whether the scope names this resource type (or `*`).
    /// A wildcard never covers `AuditEvent`: who looked at records is for
    /// the roles that name it (auditor, security analyst), not for every
    /// clinician whose scope is `user/*`.
    pub fn covers(&self, resource_type: &str) -> bool {
        match self.resource_type.as_deref() {
            Some(t) => t == resource_type,
            None => resource_type != "AuditEvent",
        }
    }

    /// Whether the scope grants `wanted` on `resource_type` in the
    /// compartment `target_patient`, for a user whose own (or in-context)
    /// patient is `own_patient`: `patient/` scopes reach only that one.
    fn grants(
        &self,
        wanted: Interactions,
        resource_type: &str,
        target_patient: Option<&str>,
        own_patient: Option<&str>,
    ) -> bool {
        let in_context = match self.context {
            ScopeContext::Patient => target_patient.is_some() && target_patient == own_patient,
            ScopeContext::User | ScopeContext::System => true,
        };
        in_context && self.covers(resource_type) && self.interactions.contains(wanted)
    }

    fn new(context: ScopeContext, resource_type: Option<&str>, interactions: Interactions) -> Self {
        Scope { context, resource_type: resource_type.map(str::to_owned), interactions }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}.{}", self.context.as_str(), self.resource_type.as_deref().unwrap_or("*"), self.interactions)
    }
}

/// The scopes a role grants (SMART v2); unknown roles grant nothing.
pub fn role_scopes(role: &str) -> Vec<Scope> {
    use Interactions as I;
    use ScopeContext::{Patient, System, User};
    let rs = I::READ.union(I::SEARCH);
    let cu = I::CREATE.union(I::UPDATE);
    let crus = I::CREATE.union(I::READ).union(I::UPDATE).union(I::SEARCH);
    let user = |t: &str, i| Scope::new(User, Some(t), i);
    match role {
        ROLE_CLINICIAN => vec![Scope::new(User, None, I::ALL)],
        ROLE_NURSE => {
            let mut scopes = vec![Scope::new(User, None, rs)];
            scopes.extend(
                ["Observation", "MedicationStatement", "Immunization", "AllergyIntolerance"].map(|t| user(t, cu)),
            );
            scopes
        }
        ROLE_REGISTRAR => {
            let mut scopes: Vec<Scope> = FRONT_DESK_TYPES.iter().map(|t| user(t, crus)).collect();
            scopes.extend(["Organization", "Practitioner", "PractitionerRole", "Location"].map(|t| user(t, rs)));
            scopes
        }
        ROLE_AUDITOR => vec![user("AuditEvent", rs)],
        ROLE_ADMIN => ORGANISATION_TYPES.iter().map(|t| user(t, I::ALL)).collect(),
        ROLE_SECURITY_ANALYST => {
            let mut scopes: Vec<Scope> = ORGANISATION_TYPES.iter().map(|t| user(t, rs)).collect();
            scopes.push(user("AuditEvent", rs));
            scopes
        }
        ROLE_DEVICE_SERVICE => vec![
            Scope::new(System, Some("Observation"), I::CREATE),
            Scope::new(System, Some("Device"), I::CREATE.union(I::READ).union(I::UPDATE)),
        ],
        ROLE_PATIENT => vec![Scope::new(Patient, None, rs)],
        _ => Vec::new(),
    }
}

/// Who asks.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    /// The vault user (pseudonymous account id).
    pub user_id: &'a str,
    pub roles: &'a [String],
    /// Scopes of the user's token, which narrow the roles' scopes; `None`
    /// uses the role defaults.
    pub scopes: Option<&'a [Scope]>,
    /// The user's own patient record (with role `patient`), or the patient
    /// in launch context that `patient/` scopes reach (other roles: a launch
    /// context confers no ownership).
    pub patient_ref: Option<&'a str>,
    /// Practitioner ids linked to the user (`pr-1` or `Practitioner/pr-1`).
    pub practitioner_refs: &'a [String],
    /// HL7 v3 PurposeOfUse code (`TREAT`, `ETREAT`, `HPAYMT`, `HOPERAT`...);
    /// `None` takes the role's usual purpose.
    pub purpose_of_use: Option<&'a str>,
}

/// What is asked for.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub resource_type: &'a str,
    /// The compartment's patient id; `None` is shared organisational data.
    pub patient: Option<&'a str>,
    /// The resource's most restrictive security label or category code
    /// (`HIV`, `PSY`, a LOINC or SNOMED code), matched against consents.
    pub category: Option<&'a str>,
}

/// A care relationship between the user and the patient, found by the
/// service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relationship {
    /// The user is a participant of one of the patient's encounters.
    Encounter { encounter_id: String },
    /// The user is a member of one of the patient's care teams.
    CareTeam { care_team_id: String },
    /// An explicit assignment (ward roster, referral); `detail` is never
    /// echoed in reasons, as it may be free text.
    Assignment { detail: String },
}

impl Relationship {
    fn describe(&self) -> String {
        match self {
            Self::Encounter { encounter_id } => format!("participant of Encounter/{}", safe_id(encounter_id)),
            Self::CareTeam { care_team_id } => format!("member of CareTeam/{}", safe_id(care_team_id)),
            Self::Assignment { .. } => "explicitly assigned to the patient".to_owned(),
        }
    }
}

/// An emergency access declared by the user, stored by the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlassGrant {
    pub grant_id: String,
    /// The one patient the grant reaches.
    pub patient: String,
    /// Milliseconds since the Unix epoch; the grant is void from then on.
    pub expires_ms: i64,
    /// The user's stated reason; never echoed in decisions (free text).
    pub reason: String,
}

/// Everything the service knows that matters to the decision.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// Milliseconds since the Unix epoch.
    pub now_ms: i64,
    /// The user's care relationships with the target patient.
    pub relationships: &'a [Relationship],
    /// The patient's Consent resources (R4), active or not.
    pub consents: &'a [Value],
    /// The user's latest break-glass grant, if any.
    pub break_glass: Option<&'a BreakGlassGrant>,
}

/// On what ground access was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    /// The role alone (oversight, front desk, erasure, break-glass declaration).
    Role,
    /// A care relationship with the patient.
    Relationship,
    /// The user's own record.
    OwnRecord,
    /// A consent of the patient naming the user.
    Consent,
    /// A valid break-glass grant.
    BreakGlass,
    /// Shared organisational data: the scope check suffices.
    Shared,
}

/// The outcome, with its reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub allowed: bool,
    /// Set when allowed.
    pub basis: Option<Basis>,
    /// Each step that mattered, in plain English, without patient data.
    pub reasons: Vec<String>,
    /// Denied, and a break-glass grant for this patient would allow it.
    pub break_glass_possible: bool,
}

/// Decide whether `actor` may perform `action` on `target`, given `facts`.
pub fn decide(actor: &Actor, action: Action, target: &Target, facts: &Facts) -> Decision {
    let mut decision = evaluate(actor, action, target, facts);
    if !decision.allowed && break_glass_would_allow(actor, action, target, facts) {
        decision.break_glass_possible = true;
        decision
            .reasons
            .push("a break-glass declaration (emergency, audited and reviewed) would allow this".to_owned());
    }
    decision
}

/// Whether declaring an emergency would turn this denial into an allow: the
/// decision is re-run with a hypothetical grant for the target patient.
fn break_glass_would_allow(actor: &Actor, action: Action, target: &Target, facts: &Facts) -> bool {
    let Some(patient) = target.patient else { return false };
    if active_grant(facts, patient).is_some() || !evaluate(actor, Action::BreakGlass, target, facts).allowed {
        return false;
    }
    let hypothetical = BreakGlassGrant {
        grant_id: "hypothetical".to_owned(),
        patient: patient.to_owned(),
        expires_ms: facts.now_ms.saturating_add(1),
        reason: String::new(),
    };
    evaluate(actor, action, target, &Facts { break_glass: Some(&hypothetical), ..*facts }).allowed
}

/// The reasons gathered so far, and how to conclude.
#[derive(Default)]
struct Trail(Vec<String>);

impl Trail {
    fn note(&mut self, reason: impl Into<String>) {
        self.0.push(reason.into());
    }

    fn allow(mut self, basis: Basis, reason: impl Into<String>) -> Decision {
        self.note(reason);
        Decision { allowed: true, basis: Some(basis), reasons: self.0, break_glass_possible: false }
    }

    fn deny(mut self, reason: impl Into<String>) -> Decision {
        self.note(reason);
        Decision { allowed: false, basis: None, reasons: self.0, break_glass_possible: false }
    }
}

fn evaluate(actor: &Actor, action: Action, target: &Target, facts: &Facts) -> Decision {
    let mut trail = Trail::default();
    if !valid_type(target.resource_type) {
        return trail.deny("the target resource type is not a valid FHIR resource type");
    }
    if target.patient.is_some_and(|p| !valid_id(p)) {
        return trail.deny("the target compartment is not a valid patient id");
    }
    let roles = known_roles(actor, &mut trail);
    if roles.is_empty() {
        return trail.deny("the user holds no role the vault recognises");
    }
    if READ_ONLY_TYPES.contains(&target.resource_type) && action.is_write() {
        return trail.deny(format!(
            "{} resources are written only by the vault itself and never changed or deleted",
            target.resource_type
        ));
    }
    match action {
        Action::Erase => erase(actor, &roles, target, trail),
        Action::AccessLog => access_log(actor, &roles, target, trail),
        Action::BreakGlass => declare_break_glass(actor, &roles, target, facts, trail),
        Action::ReviewBreakGlass => review_break_glass(actor, &roles, target, trail),
        Action::Read
        | Action::Search
        | Action::Create
        | Action::Update
        | Action::Delete
        | Action::History
        | Action::Export => resource_access(actor, &roles, action, target, facts, trail),
    }
}

/// The actor's roles the policy knows, as static names.
fn known_roles(actor: &Actor, trail: &mut Trail) -> Vec<&'static str> {
    let known: Vec<&'static str> = ROLES.iter().copied().filter(|r| actor.roles.iter().any(|held| held == r)).collect();
    let unknown = actor.roles.len().saturating_sub(known.len());
    if unknown > 0 {
        trail.note(format!("{unknown} unrecognised role(s) ignored"));
    }
    known
}

fn has_any(roles: &[&str], wanted: &[&str]) -> bool {
    roles.iter().any(|r| wanted.contains(r))
}

/// Token scopes narrow: if the token carries scopes, one must grant too.
fn token_allows(
    actor: &Actor,
    wanted: Interactions,
    resource_type: &str,
    patient: Option<&str>,
    trail: &mut Trail,
) -> bool {
    let Some(token) = actor.scopes else { return true };
    let allowed = token.iter().any(|s| s.grants(wanted, resource_type, patient, actor.patient_ref));
    if !allowed {
        trail.note(format!("the token's scopes do not grant {wanted} on {resource_type}"));
    }
    allowed
}

/// The roles whose scopes grant `wanted` on the target, noting the scope
/// used for each.
fn granting_roles(
    actor: &Actor,
    roles: &[&'static str],
    wanted: Interactions,
    target: &Target,
    trail: &mut Trail,
) -> Vec<&'static str> {
    roles
        .iter()
        .copied()
        .filter(|role| {
            let scope = role_scopes(role)
                .into_iter()
                .find(|s| s.grants(wanted, target.resource_type, target.patient, actor.patient_ref));
            if let Some(scope) = &scope {
                trail.note(format!("role {role} grants {scope}"));
            }
            scope.is_some()
        })
        .collect()
}

fn resource_access(
    actor: &Actor,
    roles: &[&'static str],
    action: Action,
    target: &Target,
    facts: &Facts,
    mut trail: Trail,
) -> Decision {
    let Some(wanted) = action.interaction() else {
        return trail.deny(format!("{action} is not a resource interaction"));
    };
    let granting = granting_roles(actor, roles, wanted, target, &mut trail);
    if granting.is_empty() {
        if roles.contains(&ROLE_PATIENT) && target.patient != actor.patient_ref {
            trail.note("the patient role reaches only the user's own record");
        }
        return trail.deny(format!("no role of the user grants {action} ({wanted}) on {}", target.resource_type));
    }
    if !token_allows(actor, wanted, target.resource_type, target.patient, &mut trail) {
        return trail.deny("token scopes can only narrow the roles' scopes");
    }
    match target.patient {
        None => trail.allow(Basis::Shared, "shared organisational data: the scope check suffices"),
        Some(patient) => {
            let own = roles.contains(&ROLE_PATIENT) && actor.patient_ref == Some(patient);
            patient_compartment(actor, &granting, own, action, (target, patient), facts, trail)
        }
    }
}

fn patient_compartment(
    actor: &Actor,
    granting: &[&'static str],
    own_record: bool,
    action: Action,
    (target, patient): (&Target, &str),
    facts: &Facts,
    mut trail: Trail,
) -> Decision {
    if own_record {
        return if action.is_read_only() {
            trail.allow(Basis::OwnRecord, "the user's own record, which they may read")
        } else {
            trail.deny("a patient's own record is read-only to them: corrections go through the care team")
        };
    }
    if target.resource_type == "AuditEvent" && has_any(granting, OVERSIGHT_ROLES) {
        return trail.allow(
            Basis::Role,
            "oversight roles read audit records across patients; consents do not restrict oversight",
        );
    }
    let front_desk = granting.contains(&ROLE_REGISTRAR) && FRONT_DESK_TYPES.contains(&target.resource_type);
    let care = has_any(granting, CARE_ROLES);
    if !front_desk && !care {
        return trail.deny("the granting role(s) do not reach patient records");
    }

    let grant = active_grant(facts, patient).filter(|_| care && has_any(granting, BREAK_GLASS_ROLES));
    let grant = grant.filter(|g| {
        let usable = BREAK_GLASS_ACTIONS.contains(&action);
        if !usable {
            trail.note(format!("break-glass grant {} does not cover {action}", safe_id(&g.grant_id)));
        }
        usable
    });
    note_grants(facts, patient, grant, &mut trail);
    let Some(purpose) = effective_purpose(actor, granting, grant.is_some(), &mut trail) else {
        return trail.deny("the declared purpose of use is not a valid code");
    };
    let consent = evaluate_consents(actor, action, target, patient, facts, purpose, &mut trail);

    if consent.denied {
        return match grant {
            Some(g) if purpose_within(purpose, PURPOSE_EMERGENCY) => trail.allow(
                Basis::BreakGlass,
                format!(
                    "break-glass grant {} with purpose {purpose} overrides the consent deny; this access is audited and reviewed",
                    safe_id(&g.grant_id)
                ),
            ),
            Some(_) => trail.deny("the patient's consent denies this access; break-glass overrides it only for emergency treatment (ETREAT)"),
            None => trail.deny("the patient's consent denies this access, whatever the role or relationship"),
        };
    }
    if front_desk {
        return trail.allow(
            Basis::Role,
            "role registrar handles registration data (Patient, Encounter, Consent) without a care relationship",
        );
    }
    if !facts.relationships.is_empty() {
        for relationship in facts.relationships.iter().take(3) {
            trail.note(format!("care relationship: {}", relationship.describe()));
        }
        return trail.allow(Basis::Relationship, "a care relationship with the patient");
    }
    if consent.names_actor {
        return trail.allow(
            Basis::Consent,
            "a consent of the patient permits the user by name, which stands for a care relationship",
        );
    }
    if let Some(g) = grant {
        return trail.allow(
            Basis::BreakGlass,
            format!(
                "break-glass grant {} valid until {}; this access is audited and reviewed",
                safe_id(&g.grant_id),
                format_ms(g.expires_ms)
            ),
        );
    }
    trail.deny("no care relationship with the patient: clinical access is denied by default")
}

/// The actor's grant if it is for this patient and unexpired.
fn active_grant<'a>(facts: &Facts<'a>, patient: &str) -> Option<&'a BreakGlassGrant> {
    facts.break_glass.filter(|g| g.patient == patient && facts.now_ms < g.expires_ms)
}

/// Explain a grant that was passed in but does not apply.
fn note_grants(facts: &Facts, patient: &str, used: Option<&BreakGlassGrant>, trail: &mut Trail) {
    let Some(g) = facts.break_glass else { return };
    let id = safe_id(&g.grant_id);
    if g.patient != patient {
        trail.note(format!("break-glass grant {id} is for another patient"));
    } else if facts.now_ms >= g.expires_ms {
        trail.note(format!("break-glass grant {id} expired at {}", format_ms(g.expires_ms)));
    } else if used.is_some() {
        trail.note(format!("break-glass grant {id} valid until {}", format_ms(g.expires_ms)));
    }
}

/// The purpose the actor acts for: declared, else `ETREAT` under
/// break-glass, else the usual purpose of the role. `None` if the declared
/// code is malformed.
fn effective_purpose<'a>(
    actor: &Actor<'a>,
    granting: &[&str],
    break_glass: bool,
    trail: &mut Trail,
) -> Option<&'a str> {
    if let Some(declared) = actor.purpose_of_use {
        let valid =
            (1..=MAX_PURPOSE_LEN).contains(&declared.len()) && declared.bytes().all(|b| b.is_ascii_alphanumeric());
        return valid.then_some(declared);
    }
    let purpose = if break_glass {
        PURPOSE_EMERGENCY
    } else if has_any(granting, CARE_ROLES) {
        "TREAT"
    } else {
        "HOPERAT"
    };
    trail.note(format!("no purpose of use declared; taken as {purpose}"));
    Some(purpose)
}

/// Whether `purpose` is `ancestor` or below it in the PurposeOfUse hierarchy.
fn purpose_within(purpose: &str, ancestor: &str) -> bool {
    let mut current = purpose;
    for _ in 0..=PURPOSE_PARENTS.len() {
        if current == ancestor {
            return true;
        }
        match PURPOSE_PARENTS.iter().find(|(child, _)| *child == current) {
            Some((_, parent)) => current = parent,
            None => return false,
        }
    }
    false
}

fn erase(actor: &Actor, roles: &[&str], target: &Target, mut trail: Trail) -> Decision {
    if !has_any(roles, ERASE_ROLES) {
        return trail.deny("erasure is reserved to roles admin and auditor (privacy officer)");
    }
    if target.patient.is_none() {
        return trail.deny("erasure applies to a patient's compartment only");
    }
    if !token_allows(actor, Interactions::DELETE, target.resource_type, target.patient, &mut trail) {
        return trail.deny("token scopes can only narrow the roles' scopes");
    }
    trail.note("erasure destroys the patient's data key (crypto-shredding) and cannot be undone");
    trail.allow(Basis::Role, "the role may erase a patient's record; the service must require step-up authentication")
}

fn access_log(actor: &Actor, roles: &[&str], target: &Target, mut trail: Trail) -> Decision {
    let Some(patient) = target.patient else {
        return trail.deny("an access log is kept per patient: name the patient");
    };
    if !token_allows(actor, Interactions::READ, "AuditEvent", target.patient, &mut trail) {
        return trail.deny("token scopes can only narrow the roles' scopes");
    }
    if roles.contains(&ROLE_AUDITOR) {
        return trail.allow(Basis::Role, "role auditor reviews access logs across patients");
    }
    if roles.contains(&ROLE_PATIENT) && actor.patient_ref == Some(patient) {
        return trail.allow(Basis::OwnRecord, "patients see who accessed their own record");
    }
    trail.deny("access logs are for the auditor and for the patient whose record it is")
}

fn declare_break_glass(actor: &Actor, roles: &[&str], target: &Target, facts: &Facts, mut trail: Trail) -> Decision {
    let Some(patient) = target.patient else {
        return trail.deny("break-glass reaches one patient: name the patient");
    };
    if !has_any(roles, BREAK_GLASS_ROLES) {
        return trail.deny("only clinicians and nurses may declare an emergency");
    }
    if roles.contains(&ROLE_PATIENT) && actor.patient_ref == Some(patient) {
        return trail.deny("nobody breaks glass into their own record");
    }
    if !token_allows(actor, Interactions::READ, target.resource_type, target.patient, &mut trail) {
        return trail.deny("token scopes can only narrow the roles' scopes");
    }
    if !facts.relationships.is_empty() {
        trail.note("a care relationship already exists");
    }
    trail.allow(
        Basis::Role,
        "the role may declare an emergency; the grant is short, for this patient only, audited and reviewed",
    )
}

fn review_break_glass(actor: &Actor, roles: &[&str], target: &Target, mut trail: Trail) -> Decision {
    if !roles.contains(&ROLE_AUDITOR) {
        return trail.deny("break-glass declarations are reviewed by the auditor");
    }
    if !token_allows(actor, Interactions::READ, "AuditEvent", target.patient, &mut trail) {
        return trail.deny("token scopes can only narrow the roles' scopes");
    }
    trail.allow(Basis::Role, "role auditor reviews break-glass declarations")
}

// ---------------------------------------------------------------- consents

/// What the patient's consents say about this access.
#[derive(Default)]
struct ConsentVerdict {
    /// A matching provision denies (or a consent could not be evaluated).
    denied: bool,
    /// A matching permit names the user (Practitioner or CareTeam).
    names_actor: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Effect {
    Permit,
    Deny,
}

/// The effect of a matching provision, and the actor reference on its path
/// that named the user, if any.
#[derive(Clone)]
struct Outcome {
    effect: Effect,
    named: Option<String>,
    /// The criteria present on the path to the deciding provision.
    criteria: Vec<&'static str>,
}

/// The provision criteria reasons mention (by kind, never by value).
const CRITERIA: &[&str] = &["class", "securityLabel", "code", "purpose", "data", "dataPeriod"];

/// Whether a criterion holds: `Unknown` when the vault lacks the facts,
/// which makes a deny apply and a permit not apply.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tri {
    Yes,
    No,
    Unknown,
}

impl Tri {
    fn and(self, other: Tri) -> Tri {
        match (self, other) {
            (Tri::No, _) | (_, Tri::No) => Tri::No,
            (Tri::Unknown, _) | (_, Tri::Unknown) => Tri::Unknown,
            (Tri::Yes, Tri::Yes) => Tri::Yes,
        }
    }
}

/// The consent could not be evaluated within its bounds.
struct TooComplex;

/// What a provision is matched against.
struct Request<'a> {
    actor: &'a Actor<'a>,
    action: Action,
    target: &'a Target<'a>,
    purpose: &'a str,
    facts: &'a Facts<'a>,
}

fn evaluate_consents(
    actor: &Actor,
    action: Action,
    target: &Target,
    patient: &str,
    facts: &Facts,
    purpose: &str,
    trail: &mut Trail,
) -> ConsentVerdict {
    let mut verdict = ConsentVerdict::default();
    if facts.consents.len() > MAX_CONSENTS {
        trail.note(format!("more than {MAX_CONSENTS} consents: too many to evaluate, treated as a deny"));
        verdict.denied = true;
        return verdict;
    }
    let request = Request { actor, action, target, purpose, facts };
    let mut applied = 0usize;
    for consent in facts.consents {
        let label = consent_label(consent);
        if !consent_counts(consent, patient, facts.now_ms, &label, trail) {
            continue;
        }
        let mut budget = MAX_PROVISIONS;
        let root = consent.get("provision").unwrap_or(&Value::Null);
        let base = root_effect(consent, root);
        match evaluate_provision(root, base, None, &[], 0, &request, &mut budget) {
            Err(TooComplex) => {
                trail.note(format!("{label} is too complex to evaluate and is treated as a deny"));
                verdict.denied = true;
                applied += 1;
            }
            Ok(None) => {}
            Ok(Some(outcome)) => {
                applied += 1;
                note_outcome(&label, &outcome, &request, trail);
                match outcome.effect {
                    Effect::Deny => verdict.denied = true,
                    Effect::Permit => verdict.names_actor |= outcome.named.is_some(),
                }
            }
        }
    }
    if applied == 0 {
        trail.note("no consent of the patient applies to this access");
    }
    verdict
}

/// `Consent/{id}` for reasons.
fn consent_label(consent: &Value) -> String {
    let id = consent.get("id").and_then(Value::as_str).filter(|id| valid_id(id)).unwrap_or("(no id)");
    format!("Consent/{id}")
}

/// Whether a consent is one the policy honours now: a Consent, active, a
/// privacy consent, about this patient, within its period.
fn consent_counts(consent: &Value, patient: &str, now_ms: i64, label: &str, trail: &mut Trail) -> bool {
    if consent.get("resourceType").and_then(Value::as_str) != Some("Consent") {
        trail.note("a resource passed as a consent is not a Consent, ignored");
        return false;
    }
    let status = consent.get("status").and_then(Value::as_str).unwrap_or("");
    if status != "active" {
        let shown =
            ["draft", "proposed", "rejected", "inactive", "entered-in-error"].into_iter().find(|s| *s == status);
        trail.note(format!("{label} is {}, ignored", shown.unwrap_or("not active")));
        return false;
    }
    if !codings(consent.get("scope"))
        .any(|(system, code)| code == "patient-privacy" && system.is_none_or(|s| s == CONSENT_SCOPE_SYSTEM))
    {
        trail.note(format!("{label} is not a patient-privacy consent, ignored"));
        return false;
    }
    let about = consent.get("patient").and_then(|p| p.get("reference")).and_then(Value::as_str);
    if about.is_some_and(|r| patient_id_of(r) != Some(patient)) {
        trail.note(format!("{label} is about another patient, ignored"));
        return false;
    }
    let period = consent.get("provision").and_then(|p| p.get("period"));
    if period_state(period, now_ms) == Tri::No {
        trail.note(format!("{label} is outside its period, ignored"));
        return false;
    }
    true
}

/// The root effect: the root provision's `type`, else the `policyRule`
/// (`OPTIN` permits, `OPTOUT` denies), else none.
fn root_effect(consent: &Value, root: &Value) -> Option<Effect> {
    provision_type(root).or_else(|| {
        codings(consent.get("policyRule")).find_map(|(system, code)| {
            if system.is_some_and(|s| s != ACT_CODE_SYSTEM) {
                return None;
            }
            match code {
                "OPTIN" => Some(Effect::Permit),
                "OPTOUT" => Some(Effect::Deny),
                _ => None,
            }
        })
    })
}

fn provision_type(provision: &Value) -> Option<Effect> {
    match provision.get("type").and_then(Value::as_str) {
        Some("permit") => Some(Effect::Permit),
        Some("deny") => Some(Effect::Deny),
        _ => None,
    }
}

/// Evaluate a provision and its nested exceptions: if it matches, the
/// matching nested provisions decide (a deny among them wins), else its own
/// type does.
fn evaluate_provision(
    provision: &Value,
    effect: Option<Effect>,
    parent_named: Option<&String>,
    parent_criteria: &[&'static str],
    depth: usize,
    request: &Request,
    budget: &mut usize,
) -> Result<Option<Outcome>, TooComplex> {
    if depth >= MAX_PROVISION_DEPTH || *budget == 0 {
        return Err(TooComplex);
    }
    *budget -= 1;
    let (matched, named) = provision_matches(provision, request);
    let applies = match matched {
        Tri::Yes => true,
        Tri::No => false,
        Tri::Unknown => effect == Some(Effect::Deny),
    };
    if !applies {
        return Ok(None);
    }
    let named = named.or_else(|| parent_named.cloned());
    let mut criteria = parent_criteria.to_vec();
    criteria.extend(CRITERIA.iter().copied().filter(|c| provision.get(*c).is_some() && !parent_criteria.contains(c)));
    let mut nested: Option<Outcome> = None;
    for child in provision.get("provision").and_then(Value::as_array).into_iter().flatten() {
        let child_effect = provision_type(child).or(effect);
        if let Some(outcome) =
            evaluate_provision(child, child_effect, named.as_ref(), &criteria, depth + 1, request, budget)?
        {
            nested = Some(match nested {
                Some(previous) if previous.effect == Effect::Deny => previous,
                _ => outcome,
            });
        }
    }
    Ok(nested.or_else(|| effect.map(|effect| Outcome { effect, named, criteria })))
}

/// Whether every criterion of a provision holds, and the actor reference
/// naming the user, if any.
fn provision_matches(provision: &Value, request: &Request) -> (Tri, Option<String>) {
    let (actor, named) = actor_matches(provision, request);
    let matched = actor
        .and(action_matches(provision, request.action))
        .and(purpose_matches(provision, request.purpose))
        .and(class_matches(provision, request.target))
        .and(labels_match(provision, request.target))
        .and(data_matches(provision, request.target))
        .and(period_state(provision.get("period"), request.facts.now_ms))
        .and(if provision.get("dataPeriod").is_some() { Tri::Unknown } else { Tri::Yes });
    (matched, named)
}

/// `actor`: a Practitioner linked to the user, or a CareTeam the user is in.
/// Other actor kinds (Organization, RelatedPerson...) never match a user.
fn actor_matches(provision: &Value, request: &Request) -> (Tri, Option<String>) {
    let Some(actors) = provision.get("actor").and_then(Value::as_array).filter(|a| !a.is_empty()) else {
        return (Tri::Yes, None);
    };
    let found = actors
        .iter()
        .filter_map(|a| a.get("reference").and_then(|r| r.get("reference")).and_then(Value::as_str))
        .find_map(|reference| user_named_by(reference, request));
    match found {
        Some(named) => (Tri::Yes, Some(named)),
        None => (Tri::No, None),
    }
}

/// `Practitioner/{id}` or `CareTeam/{id}` if the reference names the user.
fn user_named_by(reference: &str, request: &Request) -> Option<String> {
    if let Some(id) = referenced_id(reference, "Practitioner") {
        let linked = request.actor.practitioner_refs.iter().any(|r| r.strip_prefix("Practitioner/").unwrap_or(r) == id);
        return linked.then(|| format!("Practitioner/{id}"));
    }
    if let Some(id) = referenced_id(reference, "CareTeam") {
        let member = request
            .facts
            .relationships
            .iter()
            .any(|r| matches!(r, Relationship::CareTeam { care_team_id } if care_team_id == id));
        return member.then(|| format!("CareTeam/{id}"));
    }
    None
}

/// The id in a `{Type}/{id}` reference, relative or absolute.
fn referenced_id<'r>(reference: &'r str, resource_type: &str) -> Option<&'r str> {
    let mut parts = reference.rsplit('/');
    let mut id = parts.next()?;
    let mut kind = parts.next()?;
    if kind == "_history" {
        // Type/id/_history/version
        id = parts.next()?;
        kind = parts.next()?;
    }
    (kind == resource_type && valid_id(id)).then_some(id)
}

/// `action`: the consentaction codes the vault action falls under.
fn action_matches(provision: &Value, action: Action) -> Tri {
    let Some(actions) = provision.get("action").and_then(Value::as_array).filter(|a| !a.is_empty()) else {
        return Tri::Yes;
    };
    let mut result = Tri::No;
    for concept in actions {
        for (system, code) in codings(Some(concept)) {
            if system.is_some_and(|s| s != CONSENT_ACTION_SYSTEM) {
                result = Tri::Unknown;
                continue;
            }
            let covered = match code {
                "access" => true,
                "use" => matches!(action, Action::Read | Action::Search | Action::History),
                "disclose" => action == Action::Export,
                "collect" => action == Action::Create,
                "correct" => matches!(action, Action::Create | Action::Update | Action::Delete),
                _ => {
                    result = Tri::Unknown;
                    false
                }
            };
            if covered {
                return Tri::Yes;
            }
        }
    }
    result
}

/// `purpose`: v3 PurposeOfUse codings, a parent covering its children.
fn purpose_matches(provision: &Value, purpose: &str) -> Tri {
    let Some(purposes) = provision.get("purpose").and_then(Value::as_array).filter(|a| !a.is_empty()) else {
        return Tri::Yes;
    };
    let mut result = Tri::No;
    for coding in purposes {
        let system = coding.get("system").and_then(Value::as_str);
        let code = coding.get("code").and_then(Value::as_str).unwrap_or("");
        if system.is_some_and(|s| s != ACT_REASON_SYSTEM) {
            result = Tri::Unknown;
        } else if purpose_within(purpose, code) {
            return Tri::Yes;
        }
    }
    result
}

/// `class`: resource types (`http://hl7.org/fhir/resource-types`) or a
/// code equal to the target's category.
fn class_matches(provision: &Value, target: &Target) -> Tri {
    let Some(classes) = provision.get("class").and_then(Value::as_array).filter(|a| !a.is_empty()) else {
        return Tri::Yes;
    };
    let hit = classes.iter().any(|coding| {
        let system = coding.get("system").and_then(Value::as_str);
        let code = coding.get("code").and_then(Value::as_str);
        let is_type = system.is_none_or(|s| s == RESOURCE_TYPES_SYSTEM) && code == Some(target.resource_type);
        is_type || (code.is_some() && code == target.category)
    });
    if hit { Tri::Yes } else { Tri::No }
}

/// `securityLabel` and `code`: compared with the target's category.
fn labels_match(provision: &Value, target: &Target) -> Tri {
    let labels = provision.get("securityLabel").and_then(Value::as_array).filter(|a| !a.is_empty());
    let label_hit = labels.map(|labels| {
        labels.iter().any(|c| c.get("code").and_then(Value::as_str).is_some_and(|code| Some(code) == target.category))
    });
    let codes = provision.get("code").and_then(Value::as_array).filter(|a| !a.is_empty());
    let code_hit = codes
        .map(|codes| codes.iter().any(|concept| codings(Some(concept)).any(|(_, code)| Some(code) == target.category)));
    let tri = |hit: Option<bool>| match hit {
        None | Some(true) => Tri::Yes,
        Some(false) => Tri::No,
    };
    tri(label_hit).and(tri(code_hit))
}

/// `data`: references to particular resources. The policy sees the type,
/// not the instance, so a reference of the target's type is `Unknown`.
fn data_matches(provision: &Value, target: &Target) -> Tri {
    let Some(data) = provision.get("data").and_then(Value::as_array).filter(|a| !a.is_empty()) else {
        return Tri::Yes;
    };
    let same_type = data.iter().any(|d| {
        let meaning = d.get("meaning").and_then(Value::as_str);
        let reference = d.get("reference").and_then(|r| r.get("reference")).and_then(Value::as_str);
        meaning != Some("instance") || reference.and_then(|r| referenced_id(r, target.resource_type)).is_some()
    });
    if same_type { Tri::Unknown } else { Tri::No }
}

/// Explain a consent that applied, naming the kinds of criteria on the
/// deciding path but never category values.
fn note_outcome(label: &str, outcome: &Outcome, request: &Request, trail: &mut Trail) {
    let verb = match outcome.effect {
        Effect::Deny => "denies",
        Effect::Permit => "permits",
    };
    let mut on = Vec::new();
    if let Some(named) = &outcome.named {
        on.push(format!("the user as {named}"));
    }
    for criterion in &outcome.criteria {
        on.push(match *criterion {
            "class" => format!("class {}", request.target.resource_type),
            "purpose" => format!("purpose {}", request.purpose),
            "securityLabel" | "code" => "a restricted category".to_owned(),
            "data" => "particular records (matched by type)".to_owned(),
            _ => "a data period (not checkable, applied as a deny)".to_owned(),
        });
    }
    on.dedup();
    let scope = if on.is_empty() { String::new() } else { format!(" ({})", on.join(", ")) };
    trail.note(format!("{label} {verb} {} of {}{scope}", request.action, request.target.resource_type));
}

/// The `(system, code)` pairs of a CodeableConcept (or a bare Coding).
fn codings(concept: Option<&Value>) -> impl Iterator<Item = (Option<&str>, &str)> {
    let concept = concept.unwrap_or(&Value::Null);
    let list = concept.get("coding").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let bare = concept.get("code").is_some().then_some(concept);
    list.iter().chain(bare).filter_map(|c| {
        let code = c.get("code").and_then(Value::as_str)?;
        Some((c.get("system").and_then(Value::as_str), code))
    })
}

/// Whether `now_ms` is within a FHIR Period: `No` outside, `Unknown` if a
/// bound cannot be read, `Yes` within or without a period.
fn period_state(period: Option<&Value>, now_ms: i64) -> Tri {
    let Some(period) = period else { return Tri::Yes };
    let bound = |key: &str| period.get(key).map(|v| v.as_str().and_then(fhir_time_bounds));
    let mut state = Tri::Yes;
    match bound("start") {
        Some(None) => state = Tri::Unknown,
        Some(Some((start, _))) if now_ms < start => return Tri::No,
        _ => {}
    }
    match bound("end") {
        Some(None) => state = Tri::Unknown,
        Some(Some((_, end))) if now_ms >= end => return Tri::No,
        _ => {}
    }
    state
}

/// The instants (ms, end exclusive) a FHIR date or dateTime covers: `2024`
/// is the whole year, `2024-03-01` the whole day (taken as UTC), a full
/// dateTime one millisecond.
fn fhir_time_bounds(value: &str) -> Option<(i64, i64)> {
    if value.len() > 40 {
        return None;
    }
    if value.contains('T') {
        let instant = OffsetDateTime::parse(value, &Rfc3339).ok()?;
        let ms = i64::try_from(instant.unix_timestamp_nanos() / 1_000_000).ok()?;
        return Some((ms, ms.saturating_add(1)));
    }
    let number = |s: &str, len: usize| {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<i32>().ok()).flatten()
    };
    let parts: Vec<&str> = value.split('-').collect();
    let (start, end) = match parts.as_slice() {
        [y] => {
            let year = number(y, 4)?;
            (
                Date::from_calendar_date(year, Month::January, 1).ok()?,
                Date::from_calendar_date(year + 1, Month::January, 1).ok()?,
            )
        }
        [y, m] => {
            let year = number(y, 4)?;
            let month = Month::try_from(u8::try_from(number(m, 2)?).ok()?).ok()?;
            let next_year = if month == Month::December { year + 1 } else { year };
            (Date::from_calendar_date(year, month, 1).ok()?, Date::from_calendar_date(next_year, month.next(), 1).ok()?)
        }
        [y, m, d] => {
            let month = Month::try_from(u8::try_from(number(m, 2)?).ok()?).ok()?;
            let day = Date::from_calendar_date(number(y, 4)?, month, u8::try_from(number(d, 2)?).ok()?).ok()?;
            (day, day.next_day()?)
        }
        _ => return None,
    };
    let ms = |d: Date| d.midnight().assume_utc().unix_timestamp().saturating_mul(1000);
    Some((ms(start), ms(end)))
}

/// An id fit for a reason: a FHIR id, else a placeholder.
fn safe_id(id: &str) -> &str {
    if valid_id(id) { id } else { "(invalid id)" }
}

/// Milliseconds since the epoch as RFC 3339, for reasons.
fn format_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{ms} ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fhir_dates_cover_their_precision() {
        let day = 86_400_000;
        let (start, end) = fhir_time_bounds("2024-03-01").unwrap();
        assert_eq!(end - start, day);
        let (start, end) = fhir_time_bounds("2024").unwrap();
        assert_eq!(end - start, 366 * day);
        let (start, end) = fhir_time_bounds("2023-12").unwrap();
        assert_eq!(end - start, 31 * day);
        let (start, end) = fhir_time_bounds("2024-03-01T10:00:00+01:00").unwrap();
        assert_eq!((start, end - start), (1_709_283_600_000, 1));
        for bad in ["24", "2024-13", "2024-02-30", "2024-1-01", "2024-03-01T10:00", "", "x"] {
            assert_eq!(fhir_time_bounds(bad), None, "{bad}");
        }
    }

    #[test]
    fn purposes_follow_the_v3_hierarchy() {
        assert!(purpose_within("BTG", "TREAT"));
        assert!(purpose_within("ETREAT", "ETREAT"));
        assert!(!purpose_within("TREAT", "ETREAT"));
        assert!(!purpose_within("HPAYMT", "TREAT"));
    }

    #[test]
    fn references_resolve_by_type() {
        assert_eq!(referenced_id("Practitioner/pr-1", "Practitioner"), Some("pr-1"));
        assert_eq!(referenced_id("https://h.example/fhir/Practitioner/pr-1/_history/2", "Practitioner"), Some("pr-1"));
        assert_eq!(referenced_id("Organization/pr-1", "Practitioner"), None);
        assert_eq!(referenced_id("pr-1", "Practitioner"), None);
    }

    #[test]
    fn interaction_letters_keep_smart_order() {
        assert_eq!(Interactions::parse_v2("cruds"), Some(Interactions::ALL));
        assert_eq!(Interactions::parse_v2("rs").map(|i| i.to_string()).as_deref(), Some("rs"));
        assert_eq!(Interactions::parse_v2("sr"), None);
        assert_eq!(Interactions::parse_v2("rr"), None);
        assert_eq!(Interactions::parse_v2("x"), None);
    }
}
