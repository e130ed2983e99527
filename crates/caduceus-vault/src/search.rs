//! FHIR search without plaintext: which index entries a resource gets, and
//! how the parameters of a search request become clauses over them. Pure
//! functions: this module neither stores nor queries anything.
//!
//! # The table
//!
//! [`TYPES`] lists, per resource type, every supported search parameter:
//! its name, its kind and the element paths it reads (the common R4 paths
//! of the `searchparameter-registry`, simplified). Both halves read the same
//! table, so a parameter is indexed exactly as it is searched. A path is
//! dot-separated element names, arrays flattened at every step; a name
//! ending in `[x]` is a choice element (`effective[x]` reads
//! `effectiveDateTime`, `effectivePeriod`, ...).
//!
//! # What is stored
//!
//! Every token, reference and string value becomes a blind term
//! ([`crate::blind`]): HMAC under the index key, tagged by what it indexes.
//! Names and addresses use the [`Field`] tags, identifiers
//! [`Field::Identifier`], birth dates [`Field::BirthDate`] (day, month and
//! year terms), everything else [`BlindIndexer::token`] tagged by the
//! parameter. Only clinical dates (`date` and its R4 aliases) are stored in
//! the clear, as inclusive ranges of milliseconds since the epoch (UTC),
//! because range comparison cannot work on blind terms; a birth date
//! identifies a person and is never stored in the clear.
//!
//! Token semantics (FHIR R4 search, "token"): a coding or identifier with a
//! system is indexed as `system|code`, `code` and `system|`; one without a
//! system as `code` and `|code`. So `code=X` finds X in any system,
//! `code=sys|X` X in that system, `code=|X` X with no system, `code=sys|` any
//! code of that system. (A code that itself contains `|` can collide with a
//! system and code pair; no real code system has such codes.)
//!
//! References are indexed in their normalised `Type/id` form, from relative
//! references or absolute URLs (`_history` dropped). `urn:uuid:`, contained
//! (`#x`) and conditional (`Type?query`) references are not indexed: a
//! bundle resolves them to `Type/id` before the resource is stored.
//!
//! # How the store matches
//!
//! A [`SearchRequest`] is an AND of [`Clause`]s, each an OR of [`Match`]es.
//! A `Match::Term` matches a resource with an entry of the same parameter and
//! term; a `Match::Date` matches a resource with a range entry of the same
//! parameter for which [`DateMatch::matches`] holds. A resource has at most
//! one date range per parameter (the first present of the listed paths).
//!
//! Trade-offs, stated plainly:
//! - string search is "starts with" on each name part, from three
//!   characters (shorter search values must equal a whole part);
//!   multi-word values match only a whole multi-word element (a `text`);
//!   addresses match a whole part (line, city, postal code, ...) only;
//! - `:exact` compares the whole element exactly (case and accents kept)
//!   against a separate whole-value term;
//! - a birth date compared with a prefix other than `eq` cannot be answered
//!   by terms alone: the request asks for the year terms that could match
//!   (at most [`MAX_BIRTH_YEARS`]) and carries a [`PostFilter`] that checks
//!   the exact date on the decrypted resource; `ne` is refused;
//! - search values with a time and no zone are read as UTC.

use serde_json::Value;
use time::{Date, Month};

use crate::blind::{BlindIndexer, Field};
use crate::resource::{valid_id, valid_type};

/// Most parameters in one search request.
pub const MAX_PARAMS: usize = 64;
/// Most comma-separated alternatives in one parameter value.
pub const MAX_ALTERNATIVES: usize = 100;
/// Longest single alternative, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024;
/// Longest whole parameter value (all its alternatives), in bytes.
pub const MAX_PARAM_VALUE_BYTES: usize = 16 * 1024;
/// Longest parameter name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Page size when `_count` is not given.
pub const DEFAULT_COUNT: u32 = 20;
/// Largest page; larger `_count` values are clamped to it.
pub const MAX_COUNT: u32 = 1000;
/// Largest `_offset` accepted (deeper pages cost the database a long scan).
pub const MAX_OFFSET: u64 = 1_000_000;
/// Most year terms a birth-date comparison expands into.
pub const MAX_BIRTH_YEARS: usize = 200;
/// Most elements one parameter reads from one resource; further ones are
/// not indexed (no real resource comes near).
pub const MAX_NODES_PER_PARAM: usize = 256;
/// Most terms one parameter takes from one resource (a hostile resource
/// with thousands of long names must not cost millions of HMACs).
pub const MAX_TERMS_PER_PARAM: usize = 1024;
/// Longest echo of a non-identifying value in an error message.
const MAX_ECHO_CHARS: usize = 64;

const MS_PER_DAY: i64 = 86_400_000;

// ---------------------------------------------------------------------------
// The table

/// What a search parameter indexes, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A `code`, Coding, CodeableConcept or Identifier, as tokens tagged by
    /// the parameter.
    Token,
    /// An Identifier, under [`Field::Identifier`].
    Identifier,
    /// A string, HumanName or Address, as prefix and whole-value terms.
    Text(Field),
    /// A birth date, as day, month and year terms.
    BirthDate,
    /// A clinical date or period, as a plaintext range (first path present).
    Date,
    /// A reference to one of these types (empty: any type).
    Reference(&'static [&'static str]),
}

/// One search parameter of one resource type.
#[derive(Debug, Clone, Copy)]
struct Param {
    name: &'static str,
    kind: Kind,
    paths: &'static [&'static str],
}

const fn param(name: &'static str, kind: Kind, paths: &'static [&'static str]) -> Param {
    Param { name, kind, paths }
}

impl Param {
    /// Whether a value of this parameter identifies a person, so that error
    /// messages must not repeat it.
    fn identifying(&self) -> bool {
        matches!(self.kind, Kind::Text(_) | Kind::Identifier | Kind::BirthDate)
    }
}

const PATIENT: &[&str] = &["Patient"];
const SUBJECT: &[&str] = &["Patient", "Group", "Device", "Location", "Practitioner"];
const ENCOUNTER: &[&str] = &["Encounter"];
const PRACTITIONER: &[&str] = &["Practitioner"];
const ORGANIZATION: &[&str] = &["Organization"];
const CARE_PROVIDER: &[&str] = &["Practitioner", "PractitionerRole", "Organization"];
const PARTICIPANT: &[&str] =
    &["Practitioner", "PractitionerRole", "RelatedPerson", "Patient", "Organization", "CareTeam", "Device", "Group"];

const IDENTIFIER: Param = param("identifier", Kind::Identifier, &["identifier"]);
const PATIENT_SUBJECT: Param = param("patient", Kind::Reference(PATIENT), &["subject"]);
const PATIENT_PATIENT: Param = param("patient", Kind::Reference(PATIENT), &["patient"]);
const SUBJECT_REF: Param = param("subject", Kind::Reference(SUBJECT), &["subject"]);
const ENCOUNTER_REF: Param = param("encounter", Kind::Reference(ENCOUNTER), &["encounter"]);
const CODE: Param = param("code", Kind::Token, &["code"]);
const STATUS: Param = param("status", Kind::Token, &["status"]);
const CATEGORY: Param = param("category", Kind::Token, &["category"]);
const PERSON_NAMES: [Param; 3] = [
    param("name", Kind::Text(Field::Name), &["name"]),
    param("family", Kind::Text(Field::Family), &["name.family"]),
    param("given", Kind::Text(Field::Given), &["name.given"]),
];
const ORG_NAME: Param = param("name", Kind::Text(Field::Name), &["name", "alias"]);

const fn date(paths: &'static [&'static str]) -> Param {
    param("date", Kind::Date, paths)
}

/// Per resource type, its search parameters. `_id` and `_lastUpdated` are
/// not here: the store keeps them as columns.
const TYPES: &[(&str, &[Param])] = &[
    (
        "Patient",
        &[
            IDENTIFIER,
            PERSON_NAMES[0],
            PERSON_NAMES[1],
            PERSON_NAMES[2],
            param("birthdate", Kind::BirthDate, &["birthDate"]),
            param("gender", Kind::Token, &["gender"]),
            param("address", Kind::Text(Field::Address), &["address"]),
            param("address-city", Kind::Text(Field::Address), &["address.city"]),
            param("address-postalcode", Kind::Text(Field::Address), &["address.postalCode"]),
            param("general-practitioner", Kind::Reference(CARE_PROVIDER), &["generalPractitioner"]),
            param("organization", Kind::Reference(ORGANIZATION), &["managingOrganization"]),
        ],
    ),
    ("Practitioner", &[IDENTIFIER, PERSON_NAMES[0], PERSON_NAMES[1], PERSON_NAMES[2]]),
    (
        "PractitionerRole",
        &[
            IDENTIFIER,
            param("practitioner", Kind::Reference(PRACTITIONER), &["practitioner"]),
            param("organization", Kind::Reference(ORGANIZATION), &["organization"]),
        ],
    ),
    ("Organization", &[IDENTIFIER, ORG_NAME]),
    ("Location", &[IDENTIFIER, ORG_NAME]),
    (
        "Encounter",
        &[
            IDENTIFIER,
            PATIENT_SUBJECT,
            SUBJECT_REF,
            date(&["period"]),
            STATUS,
            param("class", Kind::Token, &["class"]),
            param("type", Kind::Token, &["type"]),
            param("participant", Kind::Reference(PARTICIPANT), &["participant.individual"]),
            param("practitioner", Kind::Reference(PRACTITIONER), &["participant.individual"]),
        ],
    ),
    (
        "Observation",
        &[
            IDENTIFIER,
            PATIENT_SUBJECT,
            SUBJECT_REF,
            ENCOUNTER_REF,
            CODE,
            date(&["effective[x]", "issued"]),
            STATUS,
            CATEGORY,
        ],
    ),
    (
        "Condition",
        &[
            IDENTIFIER,
            PATIENT_SUBJECT,
            SUBJECT_REF,
            ENCOUNTER_REF,
            CODE,
            date(&["onset[x]", "recordedDate"]),
            param("status", Kind::Token, &["clinicalStatus"]),
            param("clinical-status", Kind::Token, &["clinicalStatus"]),
            CATEGORY,
        ],
    ),
    (
        "Procedure",
        &[IDENTIFIER, PATIENT_SUBJECT, SUBJECT_REF, ENCOUNTER_REF, CODE, date(&["performed[x]"]), STATUS, CATEGORY],
    ),
    (
        "MedicationRequest",
        &[
            IDENTIFIER,
            PATIENT_SUBJECT,
            SUBJECT_REF,
            ENCOUNTER_REF,
            param("code", Kind::Token, &["medicationCodeableConcept"]),
            date(&["authoredOn"]),
            param("authoredon", Kind::Date, &["authoredOn"]),
            STATUS,
            param("intent", Kind::Token, &["intent"]),
            CATEGORY,
        ],
    ),
    (
        "MedicationStatement",
        &[
            IDENTIFIER,
            PATIENT_SUBJECT,
            SUBJECT_REF,
            param("code", Kind::Token, &["medicationCodeableConcept"]),
            date(&["effective[x]"]),
            STATUS,
            CATEGORY,
        ],
    ),
    (
        "AllergyIntolerance",
        &[
            IDENTIFIER,
            PATIENT_PATIENT,
            CODE,
            date(&["recordedDate"]),
            param("clinical-status", Kind::Token, &["clinicalStatus"]),
            CATEGORY,
        ],
    ),
    (
        "Immunization",
        &[
            IDENTIFIER,
            PATIENT_PATIENT,
            date(&["occurrence[x]"]),
            STATUS,
            param("vaccine-code", Kind::Token, &["vaccineCode"]),
        ],
    ),
    (
        "DiagnosticReport",
        &[IDENTIFIER, PATIENT_SUBJECT, SUBJECT_REF, ENCOUNTER_REF, CODE, date(&["effective[x]"]), STATUS, CATEGORY],
    ),
    (
        "DocumentReference",
        &[
            IDENTIFIER,
            PATIENT_SUBJECT,
            SUBJECT_REF,
            param("encounter", Kind::Reference(ENCOUNTER), &["context.encounter"]),
            date(&["date"]),
            STATUS,
            CATEGORY,
            param("type", Kind::Token, &["type"]),
        ],
    ),
    ("CarePlan", &[IDENTIFIER, PATIENT_SUBJECT, SUBJECT_REF, ENCOUNTER_REF, date(&["period"]), STATUS, CATEGORY]),
    (
        "CareTeam",
        &[
            IDENTIFIER,
            PATIENT_SUBJECT,
            SUBJECT_REF,
            ENCOUNTER_REF,
            date(&["period"]),
            STATUS,
            CATEGORY,
            param("participant", Kind::Reference(PARTICIPANT), &["participant.member"]),
        ],
    ),
    (
        "Consent",
        &[
            IDENTIFIER,
            PATIENT_PATIENT,
            date(&["dateTime"]),
            STATUS,
            CATEGORY,
            param("actor", Kind::Reference(PARTICIPANT), &["provision.actor.reference"]),
        ],
    ),
    (
        "Provenance",
        &[
            param("patient", Kind::Reference(PATIENT), &["target"]),
            param("target", Kind::Reference(&[]), &["target"]),
            date(&["recorded"]),
            param("recorded", Kind::Date, &["recorded"]),
            param("agent", Kind::Reference(PARTICIPANT), &["agent.who"]),
        ],
    ),
    ("Claim", &[IDENTIFIER, PATIENT_PATIENT, date(&["created"]), param("created", Kind::Date, &["created"]), STATUS]),
    (
        "ExplanationOfBenefit",
        &[IDENTIFIER, PATIENT_PATIENT, date(&["created"]), param("created", Kind::Date, &["created"]), STATUS],
    ),
    ("Device", &[IDENTIFIER, PATIENT_PATIENT, STATUS, param("type", Kind::Token, &["type"])]),
    (
        "AuditEvent",
        &[
            param("patient", Kind::Reference(PATIENT), &["entity.what"]),
            param("entity", Kind::Reference(&[]), &["entity.what"]),
            param("agent", Kind::Reference(PARTICIPANT), &["agent.who"]),
            date(&["recorded"]),
            param("action", Kind::Token, &["action"]),
            param("type", Kind::Token, &["type"]),
            param("subtype", Kind::Token, &["subtype"]),
        ],
    ),
];

/// The search parameters of a type (none for an unknown type).
fn params_of(resource_type: &str) -> &'static [Param] {
    TYPES.iter().find(|(name, _)| *name == resource_type).map_or(&[], |(_, params)| *params)
}

fn find_param(params: &'static [Param], name: &str) -> Option<&'static Param> {
    params.iter().find(|p| p.name == name)
}

/// The names of the search parameters a type supports (for a
/// CapabilityStatement), in table order.
pub fn supported_params(resource_type: &str) -> Vec<&'static str> {
    params_of(resource_type).iter().map(|p| p.name).collect()
}

// ---------------------------------------------------------------------------
// Index extraction

/// What one index entry holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IndexValue {
    /// A blind term (lower-case hex), never the value.
    Term(String),
    /// A date or period, inclusive, in milliseconds since the epoch (UTC);
    /// an open period end is `i64::MIN` or `i64::MAX`.
    Range { lo: i64, hi: i64 },
}

/// One index entry of a resource: the parameter it serves and its value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IndexEntry {
    pub param: &'static str,
    pub value: IndexValue,
}

/// Every index entry of a resource, sorted and without duplicates. An
/// unknown type, and elements that are absent or malformed, give none.
pub fn index_entries(resource_type: &str, resource: &Value, indexer: &BlindIndexer) -> Vec<IndexEntry> {
    let mut entries: Vec<IndexEntry> = params_of(resource_type)
        .iter()
        .flat_map(|p| param_values(p, resource, indexer).into_iter().map(|value| IndexEntry { param: p.name, value }))
        .collect();
    entries.sort();
    entries.dedup();
    entries
}

/// The index values one parameter takes from a resource.
fn param_values(p: &Param, resource: &Value, indexer: &BlindIndexer) -> Vec<IndexValue> {
    if p.kind == Kind::Date {
        return p
            .paths
            .iter()
            .find_map(|path| nodes(resource, path).into_iter().find_map(node_range))
            .map(|(lo, hi)| vec![IndexValue::Range { lo, hi }])
            .unwrap_or_default();
    }
    let nodes = p.paths.iter().flat_map(|path| nodes(resource, path)).take(MAX_NODES_PER_PARAM);
    let terms: Vec<String> = match p.kind {
        Kind::Token => nodes
            .flat_map(codes_of)
            .flat_map(|(system, code)| token_forms(system, code))
            .take(MAX_TERMS_PER_PARAM)
            .map(|form| indexer.token(p.name, &form).0)
            .collect(),
        Kind::Identifier => nodes
            .flat_map(codes_of)
            .flat_map(|(system, code)| token_forms(system, code))
            .take(MAX_TERMS_PER_PARAM)
            .filter_map(|form| indexer.exact(Field::Identifier, &form))
            .map(|t| t.0)
            .collect(),
        Kind::Text(field) => nodes
            .flat_map(strings_of)
            .flat_map(|s| {
                let mut terms = indexer.terms(field, s);
                terms.extend(indexer.whole(field, s));
                terms
            })
            .take(MAX_TERMS_PER_PARAM)
            .map(|t| t.0)
            .collect(),
        Kind::BirthDate => {
            nodes.filter_map(Value::as_str).flat_map(|s| indexer.terms(Field::BirthDate, s)).map(|t| t.0).collect()
        }
        Kind::Reference(targets) => nodes
            .filter_map(|node| node.get("reference").and_then(Value::as_str))
            .filter_map(normalise_reference)
            .filter(|(ty, _)| targets.is_empty() || targets.contains(&ty.as_str()))
            .take(MAX_TERMS_PER_PARAM)
            .map(|(ty, id)| indexer.token(p.name, &format!("{ty}/{id}")).0)
            .collect(),
        Kind::Date => Vec::new(),
    };
    terms.into_iter().map(IndexValue::Term).collect()
}

/// The elements at a path, arrays flattened at every step, at most
/// [`MAX_NODES_PER_PARAM`].
fn nodes<'a>(resource: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![resource];
    for segment in path.split('.') {
        let mut next = Vec::new();
        for node in current {
            for child in children(node, segment) {
                match child {
                    Value::Array(items) => {
                        next.extend(items.iter().take(MAX_NODES_PER_PARAM.saturating_sub(next.len())));
                    }
                    other => next.push(other),
                }
            }
            next.truncate(MAX_NODES_PER_PARAM);
        }
        current = next;
    }
    current
}

/// The children of one element by name; `name[x]` is a choice element,
/// read from every `nameSomeType` key.
fn children<'a>(node: &'a Value, segment: &str) -> Vec<&'a Value> {
    let Some(object) = node.as_object() else { return Vec::new() };
    match segment.strip_suffix("[x]") {
        Some(base) => object
            .iter()
            .filter(|(key, _)| {
                key.strip_prefix(base).and_then(|rest| rest.chars().next()).is_some_and(|c| c.is_ascii_uppercase())
            })
            .map(|(_, value)| value)
            .collect(),
        None => object.get(segment).into_iter().collect(),
    }
}

/// The `(system, code)` pairs of a code, Coding, CodeableConcept or
/// Identifier.
fn codes_of(node: &Value) -> Vec<(Option<&str>, &str)> {
    fn system(v: &Value) -> Option<&str> {
        v.get("system").and_then(Value::as_str)
    }
    match node {
        Value::String(code) => vec![(None, code.as_str())],
        Value::Object(object) => {
            if let Some(codings) = object.get("coding").and_then(Value::as_array) {
                codings
                    .iter()
                    .take(MAX_NODES_PER_PARAM)
                    .filter_map(|c| Some((system(c), c.get("code")?.as_str()?)))
                    .collect()
            } else if let Some(code) = object.get("code").and_then(Value::as_str) {
                vec![(system(node), code)]
            } else if let Some(value) = object.get("value").and_then(Value::as_str) {
                vec![(system(node), value)]
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    }
}

/// The token forms a `(system, code)` is indexed under (see the module
/// documentation).
fn token_forms(system: Option<&str>, code: &str) -> Vec<String> {
    let code = code.trim();
    if code.is_empty() {
        return Vec::new();
    }
    match system.map(str::trim).filter(|s| !s.is_empty()) {
        Some(system) => vec![format!("{system}|{code}"), code.to_owned(), format!("{system}|")],
        None => vec![code.to_owned(), format!("|{code}")],
    }
}

/// The parts of a HumanName or Address that string search reads, in order.
const TEXT_PARTS: &[&str] =
    &["family", "given", "prefix", "suffix", "text", "line", "city", "district", "state", "postalCode", "country"];

/// The strings of a string, HumanName or Address element.
fn strings_of(node: &Value) -> Vec<&str> {
    match node {
        Value::String(s) => vec![s.as_str()],
        Value::Object(object) => TEXT_PARTS
            .iter()
            .filter_map(|part| object.get(*part))
            .flat_map(|v| match v {
                Value::String(s) => vec![s.as_str()],
                Value::Array(items) => items.iter().take(MAX_NODES_PER_PARAM).filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The range of a date, dateTime, instant or Period element.
fn node_range(node: &Value) -> Option<(i64, i64)> {
    match node {
        Value::String(s) => parse_date_range(s),
        Value::Object(period) => {
            let bound = |key: &str| period.get(key).and_then(Value::as_str).and_then(parse_date_range);
            match (bound("start"), bound("end")) {
                (None, None) => None,
                (start, end) => Some((start.map_or(i64::MIN, |s| s.0), end.map_or(i64::MAX, |e| e.1))),
            }
        }
        _ => None,
    }
}

/// `(Type, id)` of a reference: relative (`Patient/1`), versioned
/// (`Patient/1/_history/2`) or absolute (`https://host/fhir/Patient/1`).
/// Contained, conditional and `urn:` references have none.
pub fn normalise_reference(reference: &str) -> Option<(String, String)> {
    if reference.len() > MAX_VALUE_BYTES || reference.contains(['?', '#']) || reference.starts_with("urn:") {
        return None;
    }
    let mut segments: Vec<&str> = reference.trim().trim_end_matches('/').split('/').collect();
    if segments.len() >= 4 && segments.get(segments.len() - 2) == Some(&"_history") {
        segments.truncate(segments.len() - 2);
    }
    let id = segments.pop()?;
    let ty = segments.pop()?;
    (valid_type(ty) && valid_id(id)).then(|| (ty.to_owned(), id.to_owned()))
}

// ---------------------------------------------------------------------------
// Dates

/// Parses a FHIR date, dateTime or instant into the inclusive range of
/// milliseconds (UTC) its precision covers: `2020` the year, `2020-03` the
/// month, `2020-03-04` the UTC day, `2020-03-04T10:30+01:00` the minute,
/// with seconds the second, with a fraction the millisecond (digits past
/// the third are dropped). A time without a zone is read as UTC.
pub fn parse_date_range(value: &str) -> Option<(i64, i64)> {
    let s = value.trim();
    if s.len() > 40 || !s.is_ascii() {
        return None;
    }
    let year = digits(s, 0, 4)? as i32;
    if s.len() == 4 {
        let start = day_start(year, Month::January, 1)?;
        return Some((start, day_start(year, Month::December, 31)? + MS_PER_DAY - 1));
    }
    (s.get(4..5)? == "-").then_some(())?;
    let month = Month::try_from(u8::try_from(digits(s, 5, 2)?).ok()?).ok()?;
    if s.len() == 7 {
        let start = day_start(year, month, 1)?;
        return Some((start, day_start(year, month, month.length(year))? + MS_PER_DAY - 1));
    }
    (s.get(7..8)? == "-").then_some(())?;
    let day = u8::try_from(digits(s, 8, 2)?).ok()?;
    let start = day_start(year, month, day)?;
    if s.len() == 10 {
        return Some((start, start + MS_PER_DAY - 1));
    }
    (s.get(10..11)? == "T").then_some(())?;
    let (offset_ms, clock) = split_zone(s.get(11..)?)?;
    let (since_midnight, width) = parse_clock(clock)?;
    let lo = start + since_midnight - offset_ms;
    Some((lo, lo + width - 1))
}

/// Milliseconds since the epoch at the start of a UTC day.
fn day_start(year: i32, month: Month, day: u8) -> Option<i64> {
    let date = Date::from_calendar_date(year, month, day).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp() * 1000)
}

/// The number written by `len` ASCII digits at `at`.
fn digits(s: &str, at: usize, len: usize) -> Option<u32> {
    let part = s.get(at..at + len)?;
    part.bytes().all(|b| b.is_ascii_digit()).then(|| part.parse().ok())?
}

/// Splits `hh:mm[:ss[.fff]]` from its zone (`Z`, `+hh:mm`, `-hh:mm` or
/// none), giving the zone's offset in milliseconds.
fn split_zone(time: &str) -> Option<(i64, &str)> {
    if let Some(clock) = time.strip_suffix('Z') {
        return Some((0, clock));
    }
    let Some(sign_at) = time.len().checked_sub(6) else { return Some((0, time)) };
    match time.get(sign_at..sign_at + 1) {
        Some(sign @ ("+" | "-")) => {
            let zone = time.get(sign_at..)?;
            let (hours, minutes) = (digits(zone, 1, 2)?, digits(zone, 4, 2)?);
            if zone.get(3..4)? != ":" || hours > 14 || minutes > 59 {
                return None;
            }
            let ms = i64::from(hours * 60 + minutes) * 60_000;
            Some((if sign == "-" { -ms } else { ms }, time.get(..sign_at)?))
        }
        _ => Some((0, time)),
    }
}

/// `hh:mm[:ss[.f+]]` as milliseconds since midnight and the width of its
/// precision in milliseconds.
fn parse_clock(clock: &str) -> Option<(i64, i64)> {
    let (hours, minutes) = (digits(clock, 0, 2)?, digits(clock, 3, 2)?);
    if clock.get(2..3)? != ":" || hours > 23 || minutes > 59 {
        return None;
    }
    let base = i64::from(hours * 3600 + minutes * 60) * 1000;
    if clock.len() == 5 {
        return Some((base, 60_000));
    }
    let seconds = digits(clock, 6, 2)?;
    if clock.get(5..6)? != ":" || seconds > 59 {
        return None;
    }
    let base = base + i64::from(seconds) * 1000;
    if clock.len() == 8 {
        return Some((base, 1000));
    }
    let fraction = clock.get(8..)?.strip_prefix('.')?;
    if fraction.is_empty() || fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let kept = fraction.get(..fraction.len().min(3))?;
    let scale = 10_i64.pow(3 - kept.len() as u32);
    Some((base + kept.parse::<i64>().ok()? * scale, scale))
}

/// A FHIR search prefix. For `ap` (approximately), [`DateMatch::parse`]
/// widens the range on each side by a tenth of its width, at least one day,
/// so `lo`/`hi` of an `ap` match are the widened ones and a store matches by
/// overlap. (The spec suggests a tenth of the gap to now; that would make a
/// search depend on the clock.) One type with the store's, which applies it.
pub use caduceus_store::vault::RangePrefix as Prefix;

/// A date search value: its prefix and the inclusive range (ms, UTC) its
/// precision covers (for `ap`, already widened: see [`Prefix::Ap`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateMatch {
    pub prefix: Prefix,
    pub lo: i64,
    pub hi: i64,
}

impl DateMatch {
    /// Parses `[prefix]date`, e.g. `ge2020-03`, `2020-03-04T10:00:00Z`.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let (prefix, date) = Prefix::ALL
            .iter()
            .find_map(|p| value.strip_prefix(p.as_str()).map(|rest| (*p, rest)))
            .unwrap_or((Prefix::Eq, value));
        let (lo, hi) = parse_date_range(date)?;
        let (lo, hi) = if prefix == Prefix::Ap { widen(lo, hi) } else { (lo, hi) };
        Some(Self { prefix, lo, hi })
    }

    /// Whether a target range `[lo, hi]` (a resource's date) matches, with
    /// the R4 semantics: `eq` the search range contains the target; `ne`
    /// not that; `gt`/`lt` the range above/below the search value overlaps
    /// the target; `ge`/`le` that or `eq`; `sa`/`eb` the target lies wholly
    /// after/before the search range; `ap` the target overlaps the (widened)
    /// range.
    pub fn matches(&self, lo: i64, hi: i64) -> bool {
        let contains = self.lo <= lo && hi <= self.hi;
        match self.prefix {
            Prefix::Eq => contains,
            Prefix::Ne => !contains,
            Prefix::Gt => hi > self.hi,
            Prefix::Lt => lo < self.lo,
            Prefix::Ge => hi > self.hi || contains,
            Prefix::Le => lo < self.lo || contains,
            Prefix::Sa => lo > self.hi,
            Prefix::Eb => hi < self.lo,
            Prefix::Ap => lo <= self.hi && hi >= self.lo,
        }
    }

    /// Whether some date of day, month or year precision within `[lo, hi]`
    /// could match (used to choose the birth-year terms to ask for).
    fn could_match_within(&self, lo: i64, hi: i64) -> bool {
        let overlaps = lo <= self.hi && hi >= self.lo;
        match self.prefix {
            Prefix::Eq | Prefix::Ap => overlaps,
            Prefix::Ne => true,
            Prefix::Gt | Prefix::Sa => hi > self.hi,
            Prefix::Lt | Prefix::Eb => lo < self.lo,
            Prefix::Ge => hi > self.hi || overlaps,
            Prefix::Le => lo < self.lo || overlaps,
        }
    }
}

/// The range an `ap` search overlaps: `[lo, hi]` widened on each side by a
/// tenth of its width, at least one day.
fn widen(lo: i64, hi: i64) -> (i64, i64) {
    let margin = (hi.saturating_sub(lo) / 10).max(MS_PER_DAY);
    (lo.saturating_sub(margin), hi.saturating_add(margin))
}

// ---------------------------------------------------------------------------
// Query parsing

/// A parsed search: what the store must match, page and order.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    /// All must hold.
    pub clauses: Vec<Clause>,
    /// From `_id` (comma: any of them; repeated `_id`: the intersection).
    pub ids: Option<Vec<String>>,
    /// From `_lastUpdated`, all must hold (one value per parameter).
    pub last_updated: Vec<DateMatch>,
    /// Page size: `_count`, default [`DEFAULT_COUNT`], clamped to
    /// [`MAX_COUNT`]; 0 asks for the total only.
    pub count: u32,
    /// From the vault's own paging parameter `_offset`.
    pub offset: u64,
    /// From `_sort`, most significant first.
    pub sort: Vec<SortKey>,
    /// `_include=Type:patient` (or `:subject`): add the Patient referred to.
    pub include_patient: bool,
    /// `_total=accurate` or `estimate`: true; `none` or absent: false. The
    /// store may give an accurate total either way.
    pub total: bool,
    /// Checks on the decrypted resource that terms cannot make (birth date
    /// comparisons); a resource is in the result only if all hold.
    pub post_filters: Vec<PostFilter>,
    /// Parameters ignored because the type does not support them (FHIR's
    /// lenient handling), for a warning in the response.
    pub unknown: Vec<String>,
}

impl SearchRequest {
    fn new() -> Self {
        Self {
            clauses: Vec::new(),
            ids: None,
            last_updated: Vec::new(),
            count: DEFAULT_COUNT,
            offset: 0,
            sort: Vec::new(),
            include_patient: false,
            total: false,
            post_filters: Vec::new(),
            unknown: Vec::new(),
        }
    }
}

/// One parameter of a search: any of its matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    pub param: &'static str,
    pub any_of: Vec<Match>,
}

/// One alternative of a clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// An index entry with this blind term.
    Term(String),
    /// An index range for which [`DateMatch::matches`] holds.
    Date(DateMatch),
}

/// A sort key of `_sort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    LastUpdated { descending: bool },
    Id { descending: bool },
    Date { descending: bool },
}

/// A check on a decrypted resource: its date element matches one of the
/// date values (a birth date compared with `gt`, `le`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostFilter {
    param: &'static str,
    element: &'static str,
    any_of: Vec<DateMatch>,
}

impl PostFilter {
    /// The search parameter this filter comes from.
    pub fn param(&self) -> &'static str {
        self.param
    }

    /// Whether the resource's date matches one of the values; a resource
    /// without the date, or with a malformed one, does not.
    pub fn matches(&self, resource: &Value) -> bool {
        resource
            .get(self.element)
            .and_then(Value::as_str)
            .and_then(parse_date_range)
            .is_some_and(|(lo, hi)| self.any_of.iter().any(|m| m.matches(lo, hi)))
    }
}

/// Why a search was refused. Messages never contain the value of a
/// parameter that identifies a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    /// A value that cannot be read, or input over a cap.
    #[error("invalid search parameter `{param}`: {reason}")]
    Invalid { param: String, reason: String },
    /// A valid FHIR search this server does not do (a modifier, chaining).
    #[error("unsupported search: {0}")]
    Unsupported(String),
}

fn invalid(param: &str, reason: impl Into<String>) -> SearchError {
    SearchError::Invalid { param: clip(param), reason: reason.into() }
}

/// At most [`MAX_ECHO_CHARS`] characters of outside input, control
/// characters replaced, fit for an error message.
fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(MAX_ECHO_CHARS).map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect();
    if s.chars().nth(MAX_ECHO_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// Parameters that change only the presentation of results.
const IGNORED: &[&str] = &["_format", "_pretty", "_summary", "_elements"];
/// Valid FHIR searches this server refuses rather than ignores: ignoring
/// them would return other results than the client asked for.
const REFUSED: &[&str] = &["_has", "_revinclude", "_contained", "_containedType"];

/// Parses the query parameters of a search on `resource_type` (names and
/// values already percent-decoded).
pub fn parse_search(
    resource_type: &str,
    params: &[(String, String)],
    indexer: &BlindIndexer,
) -> Result<SearchRequest, SearchError> {
    if params.len() > MAX_PARAMS {
        return Err(invalid("*", format!("more than {MAX_PARAMS} parameters")));
    }
    let table = params_of(resource_type);
    let mut request = SearchRequest::new();
    for (name, value) in params {
        if name.len() > MAX_NAME_BYTES {
            return Err(invalid(name, format!("parameter name longer than {MAX_NAME_BYTES} bytes")));
        }
        let alternatives = split_alternatives(name, value)?;
        let (base, modifier) = match name.split_once(':') {
            Some((base, modifier)) => (base, Some(modifier)),
            None => (name.as_str(), None),
        };
        if IGNORED.contains(&base) {
            continue;
        }
        if REFUSED.contains(&base) {
            return Err(SearchError::Unsupported(format!("`{base}` is not supported")));
        }
        if base.starts_with('_') {
            if let Some(modifier) = modifier {
                return Err(SearchError::Unsupported(format!("`{base}` with modifier `{}`", clip(modifier))));
            }
            if !parse_control(base, value, &alternatives, resource_type, table, &mut request)? {
                request.unknown.push(clip(name));
            }
            continue;
        }
        if let Some((chained, _)) = base.split_once('.')
            && find_param(table, chained).is_some()
        {
            return Err(SearchError::Unsupported(format!("chained search on `{}`", clip(chained))));
        }
        let Some(p) = find_param(table, base) else {
            request.unknown.push(clip(name));
            continue;
        };
        if alternatives.is_empty() {
            continue; // FHIR: a parameter without a value is ignored
        }
        parse_param(p, modifier, &alternatives, indexer, &mut request)?;
    }
    Ok(request)
}

/// The raw comma-separated alternatives of a value (escapes kept, empty
/// ones dropped), within the caps.
fn split_alternatives(name: &str, value: &str) -> Result<Vec<String>, SearchError> {
    if value.len() > MAX_PARAM_VALUE_BYTES {
        return Err(invalid(name, format!("value longer than {MAX_PARAM_VALUE_BYTES} bytes")));
    }
    let pieces = split_unescaped(value, ',');
    if pieces.len() > MAX_ALTERNATIVES {
        return Err(invalid(name, format!("more than {MAX_ALTERNATIVES} comma-separated values")));
    }
    if pieces.iter().any(|p| p.len() > MAX_VALUE_BYTES) {
        return Err(invalid(name, format!("a value longer than {MAX_VALUE_BYTES} bytes")));
    }
    Ok(pieces.into_iter().filter(|p| !p.trim().is_empty()).map(str::to_owned).collect())
}

/// Splits at each `separator` not escaped by `\`; escapes are kept.
fn split_unescaped(value: &str, separator: char) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == separator {
            pieces.extend(value.get(start..i));
            start = i + c.len_utf8();
        }
    }
    pieces.extend(value.get(start..));
    pieces
}

/// Removes FHIR search escapes (`\,` `\|` `\$` `\\`).
fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some(next @ (',' | '|' | '$' | '\\'))) => {
                out.push(*next);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// A control parameter (`_count`, `_sort`, ...). Returns false if `base` is
/// not one.
fn parse_control(
    base: &str,
    value: &str,
    alternatives: &[String],
    resource_type: &str,
    table: &'static [Param],
    request: &mut SearchRequest,
) -> Result<bool, SearchError> {
    match base {
        "_count" => {
            let count = parse_number(base, value)?;
            request.count = u32::try_from(count.min(u64::from(MAX_COUNT))).unwrap_or(MAX_COUNT);
        }
        "_offset" => {
            let offset = parse_number(base, value)?;
            if offset > MAX_OFFSET {
                return Err(invalid(base, format!("offset beyond {MAX_OFFSET}")));
            }
            request.offset = offset;
        }
        "_total" => {
            request.total = match value.trim() {
                "accurate" | "estimate" => true,
                "none" | "" => false,
                other => return Err(invalid(base, format!("`{}` is not none, estimate or accurate", clip(other)))),
            }
        }
        "_sort" => {
            for key in alternatives {
                request.sort.push(parse_sort_key(key.trim(), table)?);
            }
        }
        "_include" => {
            for include in alternatives {
                check_include(include.trim(), resource_type, table)?;
                request.include_patient = true;
            }
        }
        "_id" => {
            let ids = alternatives
                .iter()
                .map(|id| {
                    let id = unescape(id.trim());
                    if valid_id(&id) {
                        Ok(id)
                    } else {
                        Err(invalid(base, format!("`{}` is not a valid id", clip(&id))))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            request.ids = Some(match request.ids.take() {
                Some(previous) => previous.into_iter().filter(|id| ids.contains(id)).collect(),
                None => ids,
            });
        }
        "_lastUpdated" => {
            if alternatives.len() > 1 {
                return Err(SearchError::Unsupported("`_lastUpdated` with comma-separated values".to_owned()));
            }
            for alternative in alternatives {
                let date = DateMatch::parse(&unescape(alternative))
                    .ok_or_else(|| invalid(base, format!("`{}` is not a FHIR date", clip(alternative))))?;
                request.last_updated.push(date);
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// A decimal count: digits only, values beyond `u64` read as `u64::MAX`.
fn parse_number(param: &str, value: &str) -> Result<u64, SearchError> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(param, format!("`{}` is not a whole number", clip(value))));
    }
    Ok(value.parse().unwrap_or(u64::MAX))
}

fn parse_sort_key(key: &str, table: &[Param]) -> Result<SortKey, SearchError> {
    let (descending, name) = match key.strip_prefix('-') {
        Some(name) => (true, name),
        None => (false, key),
    };
    match name {
        "_lastUpdated" => Ok(SortKey::LastUpdated { descending }),
        "_id" => Ok(SortKey::Id { descending }),
        "date" if table.iter().any(|p| p.name == "date") => Ok(SortKey::Date { descending }),
        other => Err(SearchError::Unsupported(format!("sorting by `{}`", clip(other)))),
    }
}

/// `_include=Type:patient` or `Type:subject` (optionally `:Patient`), where
/// the parameter reads a Patient reference of the searched type.
fn check_include(include: &str, resource_type: &str, table: &[Param]) -> Result<(), SearchError> {
    let mut parts = include.split(':');
    let (ty, param, target) = (parts.next(), parts.next(), parts.next());
    let ok = ty == Some(resource_type)
        && matches!(param, Some("patient" | "subject"))
        && matches!(target, None | Some("Patient"))
        && parts.next().is_none()
        && table
            .iter()
            .any(|p| Some(p.name) == param && matches!(p.kind, Kind::Reference(t) if t.contains(&"Patient")));
    if ok { Ok(()) } else { Err(SearchError::Unsupported(format!("`_include={}`", clip(include)))) }
}

/// Adds the clause (and any post filter) of one supported parameter.
fn parse_param(
    p: &'static Param,
    modifier: Option<&str>,
    alternatives: &[String],
    indexer: &BlindIndexer,
    request: &mut SearchRequest,
) -> Result<(), SearchError> {
    let unsupported = |m: &str| SearchError::Unsupported(format!("modifier `:{}` on `{}`", clip(m), p.name));
    let any_of = match (p.kind, modifier) {
        (Kind::Text(field), None) => text_terms(p, alternatives, |v| indexer.exact(field, v))?,
        (Kind::Text(field), Some("exact")) => text_terms(p, alternatives, |v| indexer.whole(field, v))?,
        (Kind::Token, None) => token_terms(p, alternatives, |form| Some(indexer.token(p.name, form)))?,
        (Kind::Identifier, None) => token_terms(p, alternatives, |form| indexer.exact(Field::Identifier, form))?,
        (Kind::Reference(targets), modifier) => {
            let chosen: Vec<&str> = match modifier {
                None => targets.to_vec(),
                Some(ty) if valid_type(ty) && (targets.is_empty() || targets.contains(&ty)) => vec![ty],
                Some(m) => return Err(unsupported(m)),
            };
            reference_terms(p, alternatives, &chosen, indexer)?
        }
        (Kind::Date, None) => {
            alternatives.iter().map(|a| parse_date_value(p, a).map(Match::Date)).collect::<Result<Vec<_>, _>>()?
        }
        (Kind::BirthDate, None) => {
            let dates = alternatives.iter().map(|a| parse_date_value(p, a)).collect::<Result<Vec<_>, _>>()?;
            let (any_of, needs_filter) = birth_date_terms(p, &dates, indexer)?;
            if needs_filter {
                let element = p.paths.first().copied().unwrap_or("birthDate");
                request.post_filters.push(PostFilter { param: p.name, element, any_of: dates });
            }
            any_of
        }
        (_, Some(m)) => return Err(unsupported(m)),
    };
    request.clauses.push(Clause { param: p.name, any_of });
    Ok(())
}

/// The error for a malformed value: the value is repeated (clipped) only
/// if it does not identify a person.
fn malformed(p: &Param, value: &str, what: &str) -> SearchError {
    if p.identifying() { invalid(p.name, what) } else { invalid(p.name, format!("{what}: `{}`", clip(value))) }
}

/// String search: one term per alternative (`term` is the prefix or the
/// whole-value term of [`BlindIndexer`]).
fn text_terms(
    p: &Param,
    alternatives: &[String],
    term: impl Fn(&str) -> Option<crate::blind::Term>,
) -> Result<Vec<Match>, SearchError> {
    alternatives
        .iter()
        .map(|a| {
            term(&unescape(a))
                .map(|t| Match::Term(t.0))
                .ok_or_else(|| malformed(p, a, "no letters or digits to search"))
        })
        .collect()
}

/// Token search: `code`, `system|code`, `|code` or `system|`, each hashed
/// as the index hashes the same form.
fn token_terms(
    p: &Param,
    alternatives: &[String],
    term: impl Fn(&str) -> Option<crate::blind::Term>,
) -> Result<Vec<Match>, SearchError> {
    alternatives
        .iter()
        .map(|a| {
            let form = match split_unescaped(a.trim(), '|').as_slice() {
                [code] => unescape(code).trim().to_owned(),
                [system, code] => format!("{}|{}", unescape(system).trim(), unescape(code).trim()),
                _ => return Err(malformed(p, a, "a token is `code`, `system|code`, `|code` or `system|`")),
            };
            if form == "|" {
                return Err(malformed(p, a, "a token needs a system or a code"));
            }
            term(&form).map(|t| Match::Term(t.0)).ok_or_else(|| malformed(p, a, "empty token"))
        })
        .collect()
}

/// Reference search: `Type/id`, an absolute URL ending so, or a bare id
/// meaning any of the parameter's target types (`patient=123` is
/// `Patient/123`).
fn reference_terms(
    p: &Param,
    alternatives: &[String],
    targets: &[&str],
    indexer: &BlindIndexer,
) -> Result<Vec<Match>, SearchError> {
    let mut out = Vec::new();
    for alternative in alternatives {
        let value = unescape(alternative.trim());
        let references: Vec<String> = if value.contains('/') {
            let (ty, id) =
                normalise_reference(&value).ok_or_else(|| malformed(p, &value, "not a `Type/id` reference"))?;
            if !targets.is_empty() && !targets.contains(&ty.as_str()) {
                return Err(malformed(p, &value, "the reference's type is not one this parameter refers to"));
            }
            vec![format!("{ty}/{id}")]
        } else if valid_id(&value) && !targets.is_empty() {
            targets.iter().map(|ty| format!("{ty}/{value}")).collect()
        } else if valid_id(&value) {
            return Err(malformed(p, &value, "a bare id needs a type here (`Type/id` or `:Type`)"));
        } else {
            return Err(malformed(p, &value, "not a valid id"));
        };
        out.extend(references.iter().map(|r| Match::Term(indexer.token(p.name, r).0)));
    }
    Ok(out)
}

fn parse_date_value(p: &Param, value: &str) -> Result<DateMatch, SearchError> {
    DateMatch::parse(&unescape(value))
        .ok_or_else(|| malformed(p, value, "not a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD or a dateTime)"))
}

/// The terms of a birth-date search, and whether a [`PostFilter`] must
/// check the dates exactly. `eq` is the term at the value's precision;
/// other prefixes ask for every year that could match (at most
/// [`MAX_BIRTH_YEARS`], nearest the value first), checked afterwards on the
/// decrypted resource; `ne` cannot be bounded and is refused.
fn birth_date_terms(p: &Param, dates: &[DateMatch], indexer: &BlindIndexer) -> Result<(Vec<Match>, bool), SearchError> {
    let mut terms = Vec::new();
    let mut needs_filter = false;
    for date in dates {
        match date.prefix {
            Prefix::Eq => {
                let value = date_string(date.lo, date.hi).ok_or_else(|| malformed(p, "", "a birth date is a date"))?;
                terms.extend(indexer.exact(Field::BirthDate, &value));
            }
            Prefix::Ne => {
                return Err(SearchError::Unsupported(format!("`ne` on `{}`", p.name)));
            }
            _ => {
                needs_filter = true;
                terms.extend(
                    candidate_years(date).filter_map(|year| indexer.exact(Field::BirthDate, &format!("{year:04}"))),
                );
            }
        }
    }
    terms.sort();
    terms.dedup();
    Ok((terms.into_iter().map(|t| Match::Term(t.0)).collect(), needs_filter))
}

/// The years (ascending or descending from the value) in which a birth
/// date could match a comparison, at most [`MAX_BIRTH_YEARS`].
fn candidate_years(date: &DateMatch) -> impl Iterator<Item = i32> + '_ {
    let first = year_of(date.lo).unwrap_or(0);
    let last = year_of(date.hi).unwrap_or(9999);
    let years: Box<dyn Iterator<Item = i32>> = match date.prefix {
        Prefix::Lt | Prefix::Le | Prefix::Eb => Box::new((0..=last).rev()),
        Prefix::Ap => Box::new(first..=last),
        _ => Box::new(first..=9999),
    };
    years
        .filter(move |year| year_bounds(*year).is_some_and(|(lo, hi)| date.could_match_within(lo, hi)))
        .take(MAX_BIRTH_YEARS)
}

/// The inclusive range of a calendar year.
fn year_bounds(year: i32) -> Option<(i64, i64)> {
    parse_date_range(&format!("{year:04}"))
}

/// The calendar year (UTC) of an instant, within 0..=9999.
fn year_of(ms: i64) -> Option<i32> {
    let date = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).ok()?.date();
    (0..=9999).contains(&date.year()).then_some(date.year())
}

/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD` for a range that is exactly a UTC
/// year, month or day.
fn date_string(lo: i64, hi: i64) -> Option<String> {
    let date = time::OffsetDateTime::from_unix_timestamp(lo.div_euclid(1000)).ok()?.date();
    let (year, month, day) = (date.year(), u8::from(date.month()), date.day());
    [format!("{year:04}"), format!("{year:04}-{month:02}"), format!("{year:04}-{month:02}-{day:02}")]
        .into_iter()
        .find(|s| parse_date_range(s) == Some((lo, hi)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn dates_cover_their_precision() {
        let day = parse_date_range("2020-03-04").unwrap();
        assert_eq!(day, (1_583_280_000_000, 1_583_280_000_000 + MS_PER_DAY - 1));
        let year = parse_date_range("2020").unwrap();
        assert_eq!(year.0, 1_577_836_800_000);
        assert_eq!(year.1, parse_date_range("2020-12-31").unwrap().1);
        assert_eq!(parse_date_range("2020-02").unwrap().1, parse_date_range("2020-02-29").unwrap().1, "leap year");
        let zoned = parse_date_range("2020-03-04T01:30:00+02:00").unwrap();
        assert_eq!(zoned, parse_date_range("2020-03-03T23:30:00Z").unwrap(), "converted to UTC");
        assert_eq!(zoned.1 - zoned.0, 999, "a second");
        let minute = parse_date_range("2020-03-04T10:00Z").unwrap();
        assert_eq!(minute.1 - minute.0, 59_999);
        assert_eq!(parse_date_range("2020-03-04T10:00"), Some(minute), "no zone: UTC");
        assert_eq!(parse_date_range("2020-03-04T10:00:00").unwrap().0, minute.0);
        let instant = parse_date_range("2016-09-13T06:53:25.410+00:00").unwrap();
        assert_eq!(instant.0, instant.1, "milliseconds are exact");
        assert_eq!(parse_date_range("2016-09-13T06:53:25.4123456Z").unwrap().0, instant.0 + 2);
        assert_eq!(parse_date_range("1969-12-31T23:59:59.999Z").unwrap(), (-1, -1), "before the epoch");
        for bad in [
            "",
            "20",
            "2020-13",
            "2020-02-30",
            "2020-03-04T25:00Z",
            "2020-03-04T10:00+15:00",
            "2020/03/04",
            "2020-03-04T10:00:00.Z",
            "２０２０",
            "2020-03-04T10:00:60Z",
            "2020-03-04 10:00Z",
        ] {
            assert_eq!(parse_date_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn references_normalise_to_type_and_id() {
        let expect = Some(("Patient".to_owned(), "123".to_owned()));
        assert_eq!(normalise_reference("Patient/123"), expect);
        assert_eq!(normalise_reference("https://ehr.example/fhir/Patient/123"), expect);
        assert_eq!(normalise_reference("Patient/123/_history/4"), expect);
        for none in ["urn:uuid:123", "#contained", "Patient?identifier=x|1", "123", "patient/123", "Patient/", "/"] {
            assert_eq!(normalise_reference(none), None, "{none}");
        }
    }

    #[test]
    fn escapes_split_and_unescape() {
        assert_eq!(split_unescaped(r"a\\,b,c", ','), vec![r"a\\", "b", "c"], "an escaped backslash escapes nothing");
        assert_eq!(split_unescaped(r"a\,b,c", ','), vec![r"a\,b", "c"]);
        assert_eq!(unescape(r"x\|y\,z\\\q"), r"x|y,z\\q");
    }

    #[test]
    fn every_type_in_the_table_is_supported_and_unique() {
        for (ty, params) in TYPES {
            assert!(crate::resource::is_supported(ty), "{ty}");
            for (i, p) in params.iter().enumerate() {
                assert!(params[i + 1..].iter().all(|q| q.name != p.name), "{ty}.{} twice", p.name);
                assert!(!p.paths.is_empty());
            }
        }
    }

    #[test]
    fn candidate_years_are_bounded_and_directed() {
        let ge = DateMatch::parse("ge1970-06-15").unwrap();
        let years: Vec<i32> = candidate_years(&ge).collect();
        assert_eq!(years.first(), Some(&1970));
        assert_eq!(years.len(), MAX_BIRTH_YEARS);
        let lt = DateMatch::parse("lt1970-01-01").unwrap();
        assert_eq!(candidate_years(&lt).next(), Some(1969), "no date in 1970 is before its first day");
        let sa = DateMatch::parse("sa1970").unwrap();
        assert_eq!(candidate_years(&sa).next(), Some(1971));
        let ap = DateMatch::parse("ap1970").unwrap();
        assert_eq!(candidate_years(&ap).collect::<Vec<_>>(), vec![1969, 1970, 1971]);
    }
}
