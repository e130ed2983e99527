//! The directory the record-access analytics reads: staff (role,
//! department, shift, blind tokens of surname and address), patients
//! (blind tokens, VIP or flagged, employee), and the relationships that
//! explain an access — encounters, care-team membership, orders and
//! department assignments, each over time.
//!
//! The directory holds no plain surname or address: loaders hash them with
//! the directory's key the moment they are read ([`DirectoryBuilder`]). It
//! answers "what links this user to this patient at this time" with
//! relationships that had begun by a given time only, so that a replay
//! never explains an access with something a live system could not have
//! known yet.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use caduceus_core::Timestamp;

use super::files::{Limits, LoadError, NdjsonReader, PatientLine, RelationshipLine, StaffLine};
use super::token::{Token, TokenField, TokenKey};

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;
/// Longest id or department name accepted, as in events.
const MAX_ID_CHARS: usize = caduceus_core::event::MAX_FIELD_CHARS;
/// Most users one encounter names.
const MAX_ENCOUNTER_USERS: usize = 1000;
const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A working pattern: a daily window in local time on some days of the
/// week. A window that ends before it starts runs past midnight (a night
/// shift belongs to the day it starts on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shift {
    /// Minutes after local midnight.
    pub start_min: u16,
    pub end_min: u16,
    /// Bit 0 is Monday ... bit 6 Sunday.
    pub days: u8,
    /// Local time minus UTC, in minutes.
    pub utc_offset_min: i32,
}

impl Shift {
    /// Parse a shift name or window (see [`StaffLine::shift`]); `None` for
    /// `any`, a member of staff without fixed hours.
    pub fn parse(text: &str, utc_offset_min: i32) -> Result<Option<Shift>, String> {
        if !(-14 * 60..=14 * 60).contains(&utc_offset_min) {
            return Err("utc_offset_minutes must be within ±840".into());
        }
        let text = text.trim().to_ascii_lowercase();
        let (window, days) = match text.as_str() {
            "" | "any" | "on_call" | "none" => return Ok(None),
            "day" => ("07:00-19:00", "daily"),
            "night" => ("19:00-07:00", "daily"),
            "office" => ("08:00-17:00", "mon-fri"),
            other => other.split_once(' ').map_or((other, "daily"), |(w, d)| (w, d.trim())),
        };
        let (start, end) = window.split_once('-').ok_or("shift must be day, night, office, any or HH:MM-HH:MM")?;
        let start_min = parse_clock(start)?;
        let end_min = parse_clock(end)?;
        if start_min == end_min {
            return Err("shift starts and ends at the same time".into());
        }
        Ok(Some(Shift { start_min, end_min, days: parse_days(days)?, utc_offset_min }))
    }

    /// Whether `at` falls in a shift, widened by `before_ms` and `after_ms`
    /// (people come early and stay late).
    pub fn covers(&self, at: Timestamp, before_ms: i64, after_ms: i64) -> bool {
        let local = at.as_millis() + i64::from(self.utc_offset_min) * MINUTE_MS;
        let day = local.div_euclid(DAY_MS);
        // 1970-01-01 was a Thursday (index 3 from Monday).
        let weekday = |d: i64| (d + 3).rem_euclid(7);
        let length = if self.end_min > self.start_min {
            i64::from(self.end_min - self.start_min)
        } else {
            i64::from(self.end_min) + 24 * 60 - i64::from(self.start_min)
        } * MINUTE_MS;
        // A widened shift can reach into the next day or the one after;
        // look back two days.
        (day - 2..=day).any(|d| {
            let on = u32::try_from(weekday(d)).is_ok_and(|w| self.days & (1u8 << w) != 0);
            let start = d * DAY_MS + i64::from(self.start_min) * MINUTE_MS;
            on && local >= start - before_ms && local < start + length + after_ms
        })
    }

    /// For people: `07:00–19:00 mon-fri, UTC+01:00`.
    pub fn describe(&self) -> String {
        let days = match self.days {
            0x7f => "daily".to_owned(),
            0x1f => "mon-fri".to_owned(),
            mask => DAY_NAMES
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1u8 << i) != 0)
                .map(|(_, d)| *d)
                .collect::<Vec<_>>()
                .join(","),
        };
        let sign = if self.utc_offset_min < 0 { '-' } else { '+' };
        let offset = self.utc_offset_min.unsigned_abs();
        format!(
            "{:02}:{:02}–{:02}:{:02} {days}, UTC{sign}{:02}:{:02}",
            self.start_min / 60,
            self.start_min % 60,
            self.end_min / 60,
            self.end_min % 60,
            offset / 60,
            offset % 60
        )
    }
}

fn parse_clock(text: &str) -> Result<u16, String> {
    let bad = || "shift times must be HH:MM".to_owned();
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if h > 24 || m > 59 || (h == 24 && m > 0) {
        return Err(bad());
    }
    Ok((h * 60 + m) % (24 * 60))
}

fn parse_days(text: &str) -> Result<u8, String> {
    let index = |d: &str| {
        DAY_NAMES
            .iter()
            .position(|n| *n == d.trim())
            .ok_or_else(|| format!("unknown day in shift (use {})", DAY_NAMES.join(",")))
    };
    if text == "daily" {
        return Ok(0x7f);
    }
    let mut mask = 0u8;
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (index(a)?, index(b)?);
                let mut d = a;
                loop {
                    mask |= 1 << d;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => mask |= 1 << index(part)?,
        }
    }
    Ok(mask)
}

/// A member of staff.
#[derive(Clone, PartialEq)]
pub struct Staff {
    pub user: String,
    pub role: String,
    pub department: String,
    /// `None`: no fixed hours (on call, rotating, unknown).
    pub shift: Option<Shift>,
    pub surname: Option<Token>,
    pub address: Option<Token>,
    /// Their own patient id, if they are also a patient.
    pub patient_id: Option<String>,
}

impl fmt::Debug for Staff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Staff").field("user", &self.user).field("role", &self.role).finish_non_exhaustive()
    }
}

/// A patient.
#[derive(Clone, PartialEq)]
pub struct Patient {
    pub id: String,
    pub surname: Option<Token>,
    pub address: Option<Token>,
    pub vip: bool,
    pub flagged: bool,
    /// The user id, when the patient is a member of staff.
    pub employee: Option<String>,
    /// Departments as of the snapshot, used when no encounter is known.
    pub departments: Vec<String>,
}

impl fmt::Debug for Patient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Patient").field("id", &self.id).finish_non_exhaustive()
    }
}

/// A visit or stay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encounter {
    pub department: String,
    pub start: Timestamp,
    pub end: Option<Timestamp>,
    pub users: Vec<String>,
}

/// A time range; open when `to` is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub from: Timestamp,
    pub to: Option<Timestamp>,
}

/// A user working in another department for a while.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub department: String,
    pub from: Timestamp,
    pub to: Timestamp,
}

/// How long each kind of relationship explains an access around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// A relationship beginning up to this long after an access explains it
    /// (a consultant reads the chart, then orders; an emergency record is
    /// opened minutes before the encounter is registered). The analytics
    /// waits this long before scoring an unexplained access.
    pub lead_ms: i64,
    /// An encounter or care-team membership still explains, strongly, this
    /// long after it ended (discharge paperwork, handover).
    pub after_end_ms: i64,
    /// ... and weakly up to this long after it ended (results that come in
    /// after discharge, follow-up).
    pub recent_ms: i64,
    /// An order explains its orderer's accesses for this long.
    pub order_ms: i64,
    /// An order to a department explains that department's accesses for
    /// this long.
    pub department_order_ms: i64,
    /// Minutes before a shift and after it that still count as on shift.
    pub shift_before_ms: i64,
    pub shift_after_ms: i64,
}

impl Default for Windows {
    fn default() -> Self {
        Self {
            lead_ms: 30 * MINUTE_MS,
            after_end_ms: 2 * 60 * MINUTE_MS,
            recent_ms: 3 * DAY_MS,
            order_ms: 7 * DAY_MS,
            department_order_ms: 3 * DAY_MS,
            shift_before_ms: 60 * MINUTE_MS,
            shift_after_ms: 2 * 60 * MINUTE_MS,
        }
    }
}

/// How strongly a relationship explains an access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Strength {
    /// The user's own working relationship with the patient (encounter,
    /// care team, an order the user placed, care the user documented).
    Strong,
    /// A link through the user's department (the patient is on their ward,
    /// an order was sent to their department) or a relationship that ended
    /// recently.
    Medium,
}

/// One reason an access is normal, in plain words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub strength: Strength,
    pub text: String,
}

/// Where a user works at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duty<'a> {
    /// `Some(false)`: outside the shift pattern (and no assignment);
    /// `None`: the user has no fixed hours or is unknown.
    pub on_shift: Option<bool>,
    /// Departments the user works in at the time: their own (when on shift
    /// or without fixed hours) and any assignment in force.
    pub departments: Vec<&'a str>,
    /// Departments the user is assigned to at the time (besides their own).
    pub assigned: Vec<&'a str>,
}

/// Staff, patients and relationships, indexed for the analytics.
#[derive(Default)]
pub struct Directory {
    staff: HashMap<String, Staff>,
    patients: HashMap<String, Patient>,
    /// Patient id → user id, for patients who are staff.
    employees: HashMap<String, String>,
    /// Patient → encounters, by start.
    encounters: HashMap<String, Vec<Encounter>>,
    /// User → patient → care-team spans.
    care_teams: HashMap<String, HashMap<String, Vec<Span>>>,
    /// User → patient → times of the orders they placed.
    orders_by_user: HashMap<String, HashMap<String, Vec<Timestamp>>>,
    /// Patient → (performing department, time) of orders to a department.
    orders_to_department: HashMap<String, Vec<(String, Timestamp)>>,
    /// User → assignments, by start.
    assignments: HashMap<String, Vec<Assignment>>,
    /// (role, department) → number of staff.
    peers: HashMap<(String, String), usize>,
    relationships: usize,
}

impl fmt::Debug for Directory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Directory")
            .field("staff", &self.staff.len())
            .field("patients", &self.patients.len())
            .field("relationships", &self.relationships)
            .finish()
    }
}

/// Sizes of a directory, for logs and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DirectoryCounts {
    pub staff: usize,
    pub patients: usize,
    pub relationships: usize,
}

impl Directory {
    /// An empty directory: every access is unexplained, no demographics.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Load `staff.ndjson`, `patients.ndjson` and (if present)
    /// `relationships.ndjson` from `dir`. Plain surnames and addresses are
    /// hashed under `key` (a fresh random key when `None`) as they are read.
    /// `labels.ndjson` is never opened.
    pub fn load_dir(dir: &Path, limits: &Limits, key: Option<TokenKey>) -> Result<Directory, LoadError> {
        let mut builder = DirectoryBuilder::new(key.unwrap_or_else(TokenKey::random));
        let staff = open(dir, "staff.ndjson", limits, true)?;
        if let Some(mut reader) = staff {
            let mut count = 0usize;
            while let Some((_, line)) = reader.next_record::<StaffLine>()? {
                count += 1;
                if count > limits.max_staff {
                    return Err(reader.error(format!("more than {} staff", limits.max_staff)));
                }
                builder.add_staff(line).map_err(|m| reader.error(m))?;
            }
        }
        if let Some(mut reader) = open(dir, "patients.ndjson", limits, true)? {
            let mut count = 0usize;
            while let Some((_, line)) = reader.next_record::<PatientLine>()? {
                count += 1;
                if count > limits.max_patients {
                    return Err(reader.error(format!("more than {} patients", limits.max_patients)));
                }
                builder.add_patient(line).map_err(|m| reader.error(m))?;
            }
        }
        if let Some(mut reader) = open(dir, "relationships.ndjson", limits, false)? {
            let mut count = 0usize;
            while let Some((_, line)) = reader.next_record::<RelationshipLine>()? {
                count += 1;
                if count > limits.max_relationships {
                    return Err(reader.error(format!("more than {} relationships", limits.max_relationships)));
                }
                builder.add_relationship(line).map_err(|m| reader.error(m))?;
            }
        }
        Ok(builder.build())
    }

    pub fn counts(&self) -> DirectoryCounts {
        DirectoryCounts { staff: self.staff.len(), patients: self.patients.len(), relationships: self.relationships }
    }

    pub fn staff(&self, user: &str) -> Option<&Staff> {
        self.staff.get(user)
    }

    pub fn patient(&self, patient: &str) -> Option<&Patient> {
        self.patients.get(patient)
    }

    /// The user id of a patient who is also staff.
    pub fn employee_of(&self, patient: &str) -> Option<&str> {
        self.employees.get(patient).map(String::as_str)
    }

    /// How many staff share a role and department (the peer group).
    pub fn peer_size(&self, role: &str, department: &str) -> usize {
        self.peers.get(&(role.to_owned(), department.to_owned())).copied().unwrap_or(0)
    }

    /// Where `staff` works at `at`.
    pub fn duty<'a>(&'a self, staff: &'a Staff, at: Timestamp, windows: &Windows) -> Duty<'a> {
        let assigned: Vec<&str> = self
            .assignments
            .get(&staff.user)
            .map(|list| {
                list.iter()
                    .filter(|a| a.from.as_millis() - windows.shift_before_ms <= at.as_millis() && at < a.to)
                    .map(|a| a.department.as_str())
                    .collect()
            })
            .unwrap_or_default();
        let on_shift =
            staff.shift.map(|s| !assigned.is_empty() || s.covers(at, windows.shift_before_ms, windows.shift_after_ms));
        let mut departments = assigned.clone();
        if on_shift != Some(false) {
            departments.push(staff.department.as_str());
        }
        Duty { on_shift, departments, assigned }
    }

    /// The departments the patient is under at `at`, from encounters begun
    /// by `known_by` (or the snapshot's departments when the patient has no
    /// encounters at all).
    pub fn patient_departments(
        &self,
        patient: &str,
        at: Timestamp,
        known_by: Timestamp,
        windows: &Windows,
    ) -> Vec<&str> {
        match self.encounters.get(patient) {
            Some(list) => {
                let mut out: Vec<&str> = list
                    .iter()
                    .take_while(|e| e.start <= known_by)
                    .filter(|e| {
                        e.start.as_millis() - windows.lead_ms <= at.as_millis()
                            && e.end.is_none_or(|end| at.as_millis() <= end.as_millis() + windows.after_end_ms)
                    })
                    .map(|e| e.department.as_str())
                    .collect();
                out.sort_unstable();
                out.dedup();
                out
            }
            None => self
                .patients
                .get(patient)
                .map(|p| p.departments.iter().map(String::as_str).collect())
                .unwrap_or_default(),
        }
    }

    /// What links `user` to `patient` at `at`, using relationships begun by
    /// `known_by`; strong explanations first. `duty` is [`Self::duty`]'s
    /// answer for the user at `at` (a department explains only while the
    /// user works there).
    pub fn explain(
        &self,
        user: &str,
        patient: &str,
        at: Timestamp,
        known_by: Timestamp,
        duty: &Duty<'_>,
        windows: &Windows,
    ) -> Vec<Explanation> {
        let mut out = Vec::new();
        let t = at.as_millis();
        let within = |start: Timestamp, end: Option<Timestamp>, after: i64| {
            start <= known_by
                && start.as_millis() - windows.lead_ms <= t
                && end.is_none_or(|end| t <= end.as_millis() + after)
        };
        if let Some(list) = self.encounters.get(patient) {
            for e in list.iter().take_while(|e| e.start <= known_by).filter(|e| e.users.iter().any(|u| u == user)) {
                if within(e.start, e.end, windows.after_end_ms) {
                    let text = match e.end {
                        Some(end) if end < at => format!(
                            "an encounter in {} that the user was part of, ended {} earlier",
                            e.department,
                            ago(t - end.as_millis())
                        ),
                        _ => format!("an open encounter in {} that the user is part of", e.department),
                    };
                    push(&mut out, Strength::Strong, text);
                } else if within(e.start, e.end, windows.recent_ms) {
                    let end = e.end.map_or(t, Timestamp::as_millis);
                    let text = format!(
                        "the user was part of the patient's encounter in {} until {} earlier",
                        e.department,
                        ago(t - end)
                    );
                    push(&mut out, Strength::Medium, text);
                }
            }
        }
        if let Some(spans) = self.care_teams.get(user).and_then(|m| m.get(patient)) {
            for span in spans {
                if within(span.from, span.to, windows.after_end_ms) {
                    push(&mut out, Strength::Strong, "the user is on the patient's care team".to_owned());
                } else if within(span.from, span.to, windows.recent_ms) {
                    let end = span.to.map_or(t, Timestamp::as_millis);
                    push(
                        &mut out,
                        Strength::Medium,
                        format!("the user was on the patient's care team until {} earlier", ago(t - end)),
                    );
                }
            }
        }
        if let Some(times) = self.orders_by_user.get(user).and_then(|m| m.get(patient))
            && let Some(o) = times.iter().find(|o| within(**o, Some(**o), windows.order_ms))
        {
            let text = if o.as_millis() > t {
                format!("the user placed an order for this patient {} later", ago(o.as_millis() - t))
            } else {
                format!("the user placed an order for this patient {} earlier", ago(t - o.as_millis()))
            };
            push(&mut out, Strength::Strong, text);
        }
        if let Some(orders) = self.orders_to_department.get(patient) {
            for (department, o) in orders {
                if duty.departments.contains(&department.as_str()) && within(*o, Some(*o), windows.department_order_ms)
                {
                    // The department's link, not the user's own: medium.
                    push(
                        &mut out,
                        Strength::Medium,
                        format!("an order for this patient to {department}, the user's department"),
                    );
                }
            }
        }
        let departments = self.patient_departments(patient, at, known_by, windows);
        for department in departments.iter().filter(|d| duty.departments.contains(d)) {
            let text = if duty.assigned.contains(department) {
                format!("the patient is in {department}, where the user is assigned at the time")
            } else if duty.on_shift.is_some() {
                format!("the patient is in {department}, the user's department, during the user's shift")
            } else {
                format!("the patient is in {department}, the user's department")
            };
            push(&mut out, Strength::Medium, text);
        }
        out.sort_by_key(|e| e.strength);
        out
    }
}

/// Add an explanation unless the same words are there already.
fn push(out: &mut Vec<Explanation>, strength: Strength, text: String) {
    if !out.iter().any(|e| e.text == text) {
        out.push(Explanation { strength, text });
    }
}

/// A duration in words: `12 min`, `5 h`, `3 days`.
pub fn ago(ms: i64) -> String {
    let minutes = ms.max(0) / MINUTE_MS;
    if minutes < 120 {
        format!("{minutes} min")
    } else if minutes < 48 * 60 {
        format!("{} h", minutes / 60)
    } else {
        format!("{} days", minutes / (24 * 60))
    }
}

fn open(
    dir: &Path,
    name: &str,
    limits: &Limits,
    required: bool,
) -> Result<Option<NdjsonReader<BufReader<File>>>, LoadError> {
    match File::open(dir.join(name)) {
        Ok(file) => Ok(Some(NdjsonReader::new(BufReader::new(file), name, limits.max_line_bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(None),
        Err(e) => Err(LoadError::new(name, None, format!("cannot open: {e}"))),
    }
}

/// Builds a [`Directory`] from records, hashing plain text as it comes.
/// The server fills one from the vault and identity stores; the loaders
/// from files.
#[derive(Debug)]
pub struct DirectoryBuilder {
    key: TokenKey,
    dir: Directory,
}

fn check_id(what: &str, id: &str) -> Result<(), String> {
    if id.trim().is_empty() {
        return Err(format!("{what} is empty"));
    }
    if id.chars().count() > MAX_ID_CHARS {
        return Err(format!("{what} is longer than {MAX_ID_CHARS} characters"));
    }
    Ok(())
}

impl DirectoryBuilder {
    pub fn new(key: TokenKey) -> Self {
        Self { key, dir: Directory::default() }
    }

    /// The token of a value from plain text or a given token; both is an
    /// error (which one is right?).
    fn token(
        &self,
        field: TokenField,
        what: &str,
        plain: Option<String>,
        token: Option<String>,
    ) -> Result<Option<Token>, String> {
        match (plain, token) {
            (Some(_), Some(_)) => Err(format!("give {what} or {what}_token, not both")),
            (Some(plain), None) => Ok(self.key.token(field, &plain)),
            (None, Some(token)) => {
                Token::from_external(&token).map(Some).ok_or_else(|| format!("{what}_token is empty or invalid"))
            }
            (None, None) => Ok(None),
        }
    }

    pub fn add_staff(&mut self, line: StaffLine) -> Result<(), String> {
        check_id("user", &line.user)?;
        check_id("role", &line.role)?;
        check_id("department", &line.department)?;
        if self.dir.staff.contains_key(&line.user) {
            return Err("duplicate user".into());
        }
        let shift = Shift::parse(line.shift.as_deref().unwrap_or("any"), line.utc_offset_minutes.unwrap_or(0))?;
        if let Some(patient) = &line.patient_id {
            check_id("patient_id", patient)?;
        }
        let surname = self.token(TokenField::Surname, "surname", line.surname, line.surname_token)?;
        let address = self.token(TokenField::Address, "address", line.address, line.address_token)?;
        let staff = Staff {
            user: line.user,
            role: line.role,
            department: line.department,
            shift,
            surname,
            address,
            patient_id: line.patient_id,
        };
        self.dir.staff.insert(staff.user.clone(), staff);
        Ok(())
    }

    pub fn add_patient(&mut self, line: PatientLine) -> Result<(), String> {
        check_id("patient", &line.patient)?;
        if self.dir.patients.contains_key(&line.patient) {
            return Err("duplicate patient".into());
        }
        if let Some(user) = &line.employee {
            check_id("employee", user)?;
        }
        if line.departments.len() > 64 {
            return Err("more than 64 departments".into());
        }
        for department in &line.departments {
            check_id("department", department)?;
        }
        let surname = self.token(TokenField::Surname, "surname", line.surname, line.surname_token)?;
        let address = self.token(TokenField::Address, "address", line.address, line.address_token)?;
        let patient = Patient {
            id: line.patient,
            surname,
            address,
            vip: line.vip,
            flagged: line.flagged,
            employee: line.employee,
            departments: line.departments,
        };
        self.dir.patients.insert(patient.id.clone(), patient);
        Ok(())
    }

    pub fn add_relationship(&mut self, line: RelationshipLine) -> Result<(), String> {
        let ordered = |from: Timestamp, to: Option<Timestamp>| {
            if to.is_some_and(|to| to < from) { Err("ends before it starts".to_owned()) } else { Ok(()) }
        };
        match line {
            RelationshipLine::Encounter { patient, department, start, end, users, .. } => {
                check_id("patient", &patient)?;
                check_id("department", &department)?;
                ordered(start, end)?;
                if users.len() > MAX_ENCOUNTER_USERS {
                    return Err(format!("more than {MAX_ENCOUNTER_USERS} users"));
                }
                for user in &users {
                    check_id("user", user)?;
                }
                self.dir.encounters.entry(patient).or_default().push(Encounter { department, start, end, users });
            }
            RelationshipLine::CareTeam { user, patient, from, to } => {
                check_id("user", &user)?;
                check_id("patient", &patient)?;
                ordered(from, to)?;
                self.dir.care_teams.entry(user).or_default().entry(patient).or_default().push(Span { from, to });
            }
            RelationshipLine::Order { user, patient, time, department } => {
                check_id("patient", &patient)?;
                if user.is_none() && department.is_none() {
                    return Err("an order needs a user or a department".into());
                }
                if let Some(user) = user {
                    check_id("user", &user)?;
                    self.dir.orders_by_user.entry(user).or_default().entry(patient.clone()).or_default().push(time);
                }
                if let Some(department) = department {
                    check_id("department", &department)?;
                    self.dir.orders_to_department.entry(patient).or_default().push((department, time));
                }
            }
            RelationshipLine::Assignment { user, department, from, to } => {
                check_id("user", &user)?;
                check_id("department", &department)?;
                ordered(from, Some(to))?;
                self.dir.assignments.entry(user).or_default().push(Assignment { department, from, to });
            }
        }
        self.dir.relationships += 1;
        Ok(())
    }

    /// Index and finish. Encounters and assignments are sorted by start so
    /// that lookups stop at the first one not yet known.
    pub fn build(mut self) -> Directory {
        for list in self.dir.encounters.values_mut() {
            list.sort_by_key(|e| e.start);
        }
        for list in self.dir.assignments.values_mut() {
            list.sort_by_key(|a| a.from);
        }
        for times in self.dir.orders_by_user.values_mut().flat_map(|m| m.values_mut()) {
            times.sort_unstable();
        }
        for list in self.dir.orders_to_department.values_mut() {
            list.sort_by_key(|(_, t)| *t);
        }
        let mut employees = HashMap::new();
        for patient in self.dir.patients.values() {
            if let Some(user) = &patient.employee {
                employees.insert(patient.id.clone(), user.clone());
            }
        }
        let mut peers: HashMap<(String, String), usize> = HashMap::new();
        for staff in self.dir.staff.values() {
            if let Some(patient) = &staff.patient_id {
                employees.insert(patient.clone(), staff.user.clone());
            }
            *peers.entry((staff.role.clone(), staff.department.clone())).or_default() += 1;
        }
        self.dir.employees = employees;
        self.dir.peers = peers;
        self.dir
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// Monday 2025-03-03 00:00 UTC.
    const MONDAY: i64 = 1_740_960_000_000;
    const HOUR: i64 = 60 * MINUTE_MS;

    fn at(hours: i64) -> Timestamp {
        Timestamp(MONDAY + hours * HOUR)
    }

    #[test]
    fn shifts_cover_their_hours_with_grace_and_offsets() {
        let day = Shift::parse("day", 0).unwrap().unwrap();
        assert!(day.covers(at(8), 0, 0));
        assert!(!day.covers(at(20), 0, 0));
        assert!(day.covers(at(20), 0, 2 * HOUR));
        let night = Shift::parse("night", 0).unwrap().unwrap();
        assert!(night.covers(at(2), 0, 0), "a night shift runs past midnight");
        assert!(night.covers(at(23), 0, 0));
        assert!(!night.covers(at(12), 0, 0));
        let office = Shift::parse("office", 60).unwrap().unwrap();
        // 08:30 UTC is 09:30 at UTC+01:00, Monday.
        assert!(office.covers(Timestamp(MONDAY + 8 * HOUR + 30 * MINUTE_MS), 0, 0));
        assert!(!office.covers(at(5 * 24 + 9), 0, 0), "Saturday morning");
        let custom = Shift::parse("22:00-06:00 sat,sun", 0).unwrap().unwrap();
        assert!(custom.covers(at(5 * 24 + 23), 0, 0), "Saturday night");
        assert!(custom.covers(at(7 * 24 + 3), 0, 0), "Sunday's shift runs into Monday");
        assert!(custom.covers(at(3), 0, 0), "the shift of Sunday 2 March ends on Monday");
        assert!(!custom.covers(at(27), 0, 0), "nothing starts on Monday");
        assert_eq!(custom.describe(), "22:00–06:00 sat,sun, UTC+00:00");
        assert_eq!(office.describe(), "08:00–17:00 mon-fri, UTC+01:00");
        assert_eq!(Shift::parse("any", 0).unwrap(), None);
        assert!(Shift::parse("25:00-03:00", 0).is_err());
        assert!(Shift::parse("07:00-19:00 funday", 0).is_err());
        assert!(Shift::parse("day", 2000).is_err());
    }

    fn staff(user: &str, department: &str) -> StaffLine {
        StaffLine {
            user: user.into(),
            role: "nurse".into(),
            department: department.into(),
            shift: Some("day".into()),
            utc_offset_minutes: Some(0),
            surname: Some("Smith".into()),
            ..StaffLine::default()
        }
    }

    fn directory() -> Directory {
        let mut b = DirectoryBuilder::new(TokenKey::new([1; 32]));
        b.add_staff(staff("u1", "Cardiology")).unwrap();
        b.add_staff(staff("u2", "Oncology")).unwrap();
        b.add_patient(PatientLine { patient: "p1".into(), surname: Some("SMITH".into()), ..PatientLine::default() })
            .unwrap();
        b.add_relationship(RelationshipLine::Encounter {
            id: None,
            patient: "p1".into(),
            department: "Cardiology".into(),
            start: at(8),
            end: Some(at(30)),
            users: vec!["u9".into()],
        })
        .unwrap();
        b.add_relationship(RelationshipLine::CareTeam {
            user: "u2".into(),
            patient: "p1".into(),
            from: at(9),
            to: Some(at(11)),
        })
        .unwrap();
        b.add_relationship(RelationshipLine::Order {
            user: Some("u9".into()),
            patient: "p1".into(),
            time: at(10),
            department: Some("Radiology".into()),
        })
        .unwrap();
        b.build()
    }

    #[test]
    fn explanations_use_only_what_was_known() {
        let d = directory();
        let w = Windows::default();
        let u2 = d.staff("u2").unwrap();
        let duty = d.duty(u2, at(10), &w);
        let found = d.explain("u2", "p1", at(10), at(10), &duty, &w);
        assert_eq!(found[0].strength, Strength::Strong);
        assert_eq!(found[0].text, "the user is on the patient's care team");
        // At 08:45 the care-team membership (from 09:00) is not known yet.
        let duty = d.duty(u2, at(8), &w);
        assert!(d.explain("u2", "p1", Timestamp(MONDAY + 8 * HOUR + 45 * MINUTE_MS), at(8), &duty, &w).is_empty());
        // ... but it is by 09:15, and it began within the lead window.
        let early = Timestamp(MONDAY + 8 * HOUR + 45 * MINUTE_MS);
        let found = d.explain("u2", "p1", early, Timestamp(MONDAY + 9 * HOUR + 15 * MINUTE_MS), &duty, &w);
        assert_eq!(found.len(), 1);
        // After the membership ended: strong for two hours, then weak for three days.
        let duty = d.duty(u2, at(14), &w);
        assert_eq!(d.explain("u2", "p1", at(12), at(12), &duty, &w)[0].strength, Strength::Strong);
        let later = d.explain("u2", "p1", at(14), at(14), &duty, &w);
        assert_eq!(later[0].strength, Strength::Medium);
        assert!(later[0].text.contains("until 3 h earlier"), "{}", later[0].text);
        // Same department during the shift: weak; off shift: nothing.
        let u1 = d.staff("u1").unwrap();
        let duty = d.duty(u1, at(10), &w);
        let found = d.explain("u1", "p1", at(10), at(10), &duty, &w);
        assert_eq!(found[0].strength, Strength::Medium);
        assert!(found[0].text.contains("Cardiology, the user's department"));
        let night = d.duty(u1, at(26), &w);
        assert_eq!(night.on_shift, Some(false));
        assert!(d.explain("u1", "p1", at(26), at(26), &night, &w).is_empty());
        assert_eq!(d.patient_departments("p1", at(26), at(26), &w), vec!["Cardiology"]);
        assert!(d.patient_departments("p1", at(40), at(40), &w).is_empty());
    }

    #[test]
    fn orders_and_assignments_explain() {
        let mut b = DirectoryBuilder::new(TokenKey::new([1; 32]));
        let mut tech = staff("t1", "Radiology");
        tech.shift = None;
        b.add_staff(tech).unwrap();
        b.add_staff(staff("n1", "Oncology")).unwrap();
        b.add_relationship(RelationshipLine::Order {
            user: Some("u9".into()),
            patient: "p1".into(),
            time: at(10),
            department: Some("Radiology".into()),
        })
        .unwrap();
        b.add_relationship(RelationshipLine::Encounter {
            id: None,
            patient: "p1".into(),
            department: "Cardiology".into(),
            start: at(0),
            end: None,
            users: vec![],
        })
        .unwrap();
        b.add_relationship(RelationshipLine::Assignment {
            user: "n1".into(),
            department: "Cardiology".into(),
            from: at(19),
            to: at(31),
        })
        .unwrap();
        let d = b.build();
        let w = Windows::default();
        let t1 = d.staff("t1").unwrap();
        let duty = d.duty(t1, at(12), &w);
        assert_eq!(duty.on_shift, None);
        let found = d.explain("t1", "p1", at(12), at(12), &duty, &w);
        assert_eq!(found[0].text, "an order for this patient to Radiology, the user's department");
        let u9 =
            d.explain("u9", "p1", at(9), at(10), &Duty { on_shift: None, departments: vec![], assigned: vec![] }, &w);
        assert!(u9.is_empty(), "an order an hour later is outside the lead window");
        let n1 = d.staff("n1").unwrap();
        let duty = d.duty(n1, at(23), &w);
        assert_eq!(duty.on_shift, Some(true), "an assignment is working time");
        let found = d.explain("n1", "p1", at(23), at(23), &duty, &w);
        assert_eq!(found[0].text, "the patient is in Cardiology, where the user is assigned at the time");
    }

    #[test]
    fn builder_refuses_bad_records() {
        let mut b = DirectoryBuilder::new(TokenKey::new([1; 32]));
        b.add_staff(staff("u1", "A")).unwrap();
        assert_eq!(b.add_staff(staff("u1", "A")).unwrap_err(), "duplicate user");
        let mut both = staff("u2", "A");
        both.surname_token = Some("abc".into());
        assert!(b.add_staff(both).unwrap_err().contains("not both"));
        let mut bad_shift = staff("u3", "A");
        bad_shift.shift = Some("sometimes".into());
        assert!(b.add_staff(bad_shift).is_err());
        assert!(b.add_staff(staff("", "A")).is_err());
        assert!(
            b.add_relationship(RelationshipLine::CareTeam {
                user: "u1".into(),
                patient: "p".into(),
                from: at(2),
                to: Some(at(1))
            })
            .unwrap_err()
            .contains("ends before")
        );
        assert!(
            b.add_relationship(RelationshipLine::Order {
                user: None,
                patient: "p".into(),
                time: at(1),
                department: None
            })
            .is_err()
        );
    }

    #[test]
    fn plain_text_is_hashed_and_comparable() {
        let d = directory();
        let u1 = d.staff("u1").unwrap();
        let p1 = d.patient("p1").unwrap();
        assert!(u1.surname.is_some());
        assert_eq!(u1.surname, p1.surname, "Smith and SMITH normalise alike");
        assert!(!format!("{u1:?}{p1:?}").to_lowercase().contains("smith"));
        assert_eq!(d.peer_size("nurse", "Cardiology"), 1);
    }
}
