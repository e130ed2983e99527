//! A simulated hospital's EHR access log, with labelled snooping, for
//! evaluating the record-access analytics (`caduceus simulate ehr-access`).
//!
//! The hospital: wards with beds, an emergency department, intensive care,
//! radiology and laboratory, registration; staff on day, night and office
//! shifts who work some days and not others; families sharing surnames and
//! addresses, some of them staff; VIPs. Patients arrive through the
//! emergency department or electively, stay, move to intensive care and
//! back, and go home; outpatients come to clinics. Around them, the work a
//! real log shows: nurses charting on their shift, attending rounds and
//! orders, results processed by technicians, consults with an order
//! minutes later, night cover (usually rostered, not always), on-call
//! physicians, registrars searching by name then admitting, emergency
//! break-glass followed by registration, enquiries at the desk, follow-up
//! after discharge, and a small rate of accesses nothing in the directory
//! explains (documentation gaps). Snooping of each kind is then injected
//! at the given rate and labelled in `labels.ndjson` only.
//!
//! Honesty rules: access lines carry only what an EHR audit log has (time,
//! user, action, resource type, patients, purpose, break-glass grant, query
//! kind, workstation); the directory files only what a staff directory,
//! patient demographics and the care relationships have. The same seed
//! gives the same files, byte for byte.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use caduceus_core::Timestamp;
use caduceus_core::event::RecordAction;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::ehr::files::{LabelLine, PatientLine, RelationshipLine, StaffLine};
use crate::ehr::log::{AccessLine, QueryKind};
use crate::ehr::token::{TokenField, TokenKey};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// The snooping patterns the simulator injects, one kind per pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SnoopKind {
    /// A VIP's record, no relationship.
    Vip,
    /// A patient with the user's surname.
    Family,
    /// A patient at the user's address.
    Neighbour,
    /// A co-worker's patient record.
    Coworker,
    /// The user's own record.
    SelfAccess,
    /// An inpatient of another department, no relationship.
    DepartmentMismatch,
    /// A patient of the user's department, outside the user's shift.
    OffShift,
    /// A search by name, perhaps a look, and nothing else.
    SearchNoAction,
    /// Browsing many records in a short time.
    VolumeSpike,
    /// Break-glass on a patient with no relationship, sometimes repeatedly.
    BreakGlassAbuse,
}

impl SnoopKind {
    pub const ALL: [SnoopKind; 10] = [
        Self::Vip,
        Self::Family,
        Self::Neighbour,
        Self::Coworker,
        Self::SelfAccess,
        Self::DepartmentMismatch,
        Self::OffShift,
        Self::SearchNoAction,
        Self::VolumeSpike,
        Self::BreakGlassAbuse,
    ];

    /// The name used in labels and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vip => "vip",
            Self::Family => "family",
            Self::Neighbour => "neighbour",
            Self::Coworker => "coworker",
            Self::SelfAccess => "self",
            Self::DepartmentMismatch => "department_mismatch",
            Self::OffShift => "off_shift",
            Self::SearchNoAction => "search_no_action",
            Self::VolumeSpike => "volume_spike",
            Self::BreakGlassAbuse => "break_glass_abuse",
        }
    }

    pub fn parse(text: &str) -> Option<SnoopKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == text.trim())
    }
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    pub seed: u64,
    pub days: u32,
    /// Members of staff; the number of beds and the patient flow scale with it.
    pub staff: usize,
    /// Patients in the population (staff households included).
    pub patients: usize,
    /// Share of all accesses that are snooping (0.001 = 0.1 %).
    pub snoop_rate: f64,
    /// The kinds injected, in equal shares.
    pub kinds: Vec<SnoopKind>,
    /// Share of legitimate accesses that nothing in the directory explains
    /// (a look at a patient without any recorded relationship).
    pub gap_rate: f64,
    /// Write blind tokens instead of the (fictional) surnames and addresses.
    pub pre_hashed: bool,
    /// The first local midnight, as if it were UTC (ms).
    pub start_local_ms: i64,
    /// The hospital's local time minus UTC, in minutes.
    pub utc_offset_minutes: i32,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            days: 28,
            staff: 400,
            patients: 20_000,
            snoop_rate: 0.001,
            kinds: SnoopKind::ALL.to_vec(),
            gap_rate: 0.0005,
            pre_hashed: false,
            // Monday 3 March 2025.
            start_local_ms: 1_740_960_000_000,
            utc_offset_minutes: 60,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid simulation option: {0}")]
    Invalid(String),
    #[error("cannot write {file}: {source}")]
    Io { file: String, source: std::io::Error },
}

impl SimOptions {
    fn validate(&self) -> Result<(), SimError> {
        let bad = |m: &str| Err(SimError::Invalid(m.to_owned()));
        if !(1..=366).contains(&self.days) {
            return bad("days must be 1 to 366");
        }
        if !(60..=20_000).contains(&self.staff) {
            return bad("staff must be 60 to 20000");
        }
        if self.patients < self.staff * 3 || self.patients > 2_000_000 {
            return bad("patients must be at least three times the staff and at most 2000000");
        }
        if !(0.0..=0.1).contains(&self.snoop_rate) {
            return bad("snoop rate must be 0 to 0.1");
        }
        if !(0.0..=0.1).contains(&self.gap_rate) {
            return bad("gap rate must be 0 to 0.1");
        }
        if !(-14 * 60..=14 * 60).contains(&self.utc_offset_minutes) {
            return bad("utc offset must be within ±840 minutes");
        }
        Ok(())
    }
}

/// Counts of what was generated (no labels: the labels file has those).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimSummary {
    pub seed: u64,
    pub days: u32,
    pub staff: usize,
    pub patients: usize,
    pub relationships: usize,
    pub accesses: usize,
    pub snooping_accesses: usize,
    pub scenarios: usize,
    pub by_kind: BTreeMap<String, usize>,
}

/// A simulated data set.
#[derive(Debug, Clone)]
pub struct SimOutput {
    pub staff: Vec<StaffLine>,
    pub patients: Vec<PatientLine>,
    pub relationships: Vec<RelationshipLine>,
    pub accesses: Vec<AccessLine>,
    pub labels: Vec<LabelLine>,
    pub summary: SimSummary,
}

impl SimOutput {
    /// Write `staff.ndjson`, `patients.ndjson`, `relationships.ndjson`,
    /// `access.ndjson` and `labels.ndjson` into `dir` (created if missing).
    pub fn write(&self, dir: &Path) -> Result<(), SimError> {
        std::fs::create_dir_all(dir).map_err(|source| SimError::Io { file: dir.display().to_string(), source })?;
        write_ndjson(dir, "staff.ndjson", &self.staff)?;
        write_ndjson(dir, "patients.ndjson", &self.patients)?;
        write_ndjson(dir, "relationships.ndjson", &self.relationships)?;
        write_ndjson(dir, "access.ndjson", &self.accesses)?;
        write_ndjson(dir, "labels.ndjson", &self.labels)?;
        Ok(())
    }
}

fn write_ndjson<T: Serialize>(dir: &Path, name: &str, items: &[T]) -> Result<(), SimError> {
    let io = |source| SimError::Io { file: name.to_owned(), source };
    let file = File::create(dir.join(name)).map_err(io)?;
    let mut out = BufWriter::new(file);
    for item in items {
        serde_json::to_writer(&mut out, item).map_err(|e| io(e.into()))?;
        out.write_all(b"\n").map_err(io)?;
    }
    out.flush().map_err(io)
}

/// Simulate a hospital's access log.
pub fn simulate(options: &SimOptions) -> Result<SimOutput, SimError> {
    options.validate()?;
    let mut sim = Sim::new(options.clone());
    sim.people();
    sim.rosters();
    sim.flows();
    sim.gaps();
    sim.snoop();
    Ok(sim.finish())
}

// ---------------------------------------------------------------------------
// The hospital.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Physician,
    Nurse,
    Registrar,
    Technician,
}

impl Role {
    /// The role name in the directory and on access lines (the vault's).
    fn name(self) -> &'static str {
        match self {
            Self::Physician => "clinician",
            Self::Nurse => "nurse",
            Self::Registrar => "registrar",
            Self::Technician => "technician",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShiftKind {
    Day,
    Night,
    /// 08:00–18:00 Monday to Friday.
    Office,
}

impl ShiftKind {
    fn name(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Night => "night",
            Self::Office => "08:00-18:00 mon-fri",
        }
    }

    /// The shift of local day `day`, as local ms.
    fn window(self, day: i64) -> (i64, i64) {
        let base = day * DAY;
        match self {
            Self::Day => (base + 7 * HOUR, base + 19 * HOUR),
            Self::Night => (base + 19 * HOUR, base + DAY + 7 * HOUR),
            Self::Office => (base + 8 * HOUR, base + 18 * HOUR),
        }
    }
}

/// Wards: name, bed weight (0 for the emergency department), whether
/// physicians work day/night shifts (else office hours with on call).
const WARDS: [(&str, f64, bool); 10] = [
    ("Emergency", 0.0, true),
    ("Intensive Care", 1.0, true),
    ("Cardiology", 2.0, false),
    ("Oncology", 1.5, false),
    ("Orthopaedics", 1.5, false),
    ("General Medicine", 3.0, false),
    ("Surgery", 2.0, false),
    ("Paediatrics", 1.0, false),
    ("Maternity", 1.0, false),
    ("Neurology", 1.0, false),
];
const ED: usize = 0;
const ICU: usize = 1;
const RADIOLOGY: usize = 10;
const LABORATORY: usize = 11;
const REGISTRATION: usize = 12;
const SERVICES: [&str; 3] = ["Radiology", "Laboratory", "Registration"];
/// Staff share of each ward (the emergency department and intensive care
/// are staffed beyond their beds).
const WARD_STAFF_WEIGHT: [f64; 10] = [1.6, 1.4, 2.0, 1.5, 1.5, 3.0, 2.0, 1.0, 1.0, 1.0];
/// Wards that take elective admissions.
const ELECTIVE: [usize; 5] = [2, 3, 4, 6, 8];

fn department_name(index: usize) -> &'static str {
    match index.checked_sub(WARDS.len()) {
        None => WARDS.get(index).map_or("Unknown", |w| w.0),
        Some(i) => SERVICES.get(i).copied().unwrap_or("Unknown"),
    }
}

/// Resource types opened when reading a chart, with weights.
const READ_TYPES: [(&str, f64); 7] = [
    ("Observation", 0.35),
    ("MedicationRequest", 0.15),
    ("DiagnosticReport", 0.12),
    ("Condition", 0.1),
    ("Encounter", 0.08),
    ("Patient", 0.1),
    ("DocumentReference", 0.1),
];

const SYLLABLES_A: [&str; 24] = [
    "Al", "Bran", "Cor", "Dal", "Ev", "Fen", "Gar", "Hol", "Ing", "Jor", "Kel", "Lind", "Mar", "Nor", "Oak", "Pen",
    "Quin", "Ros", "Sal", "Thorn", "Ul", "Vel", "Wen", "Yar",
];
const SYLLABLES_B: [&str; 25] = [
    "by", "dale", "ford", "ham", "ley", "ton", "wick", "worth", "son", "er", "ing", "mont", "stead", "well", "wood",
    "brook", "field", "gate", "hurst", "more", "ridge", "shaw", "combe", "den", "low",
];
const STREETS: [&str; 20] = [
    "Mill", "Church", "Station", "Park", "High", "Victoria", "Green", "Manor", "Kings", "Queens", "Orchard", "Bridge",
    "School", "Chapel", "Meadow", "Castle", "Elm", "Willow", "Ash", "Cedar",
];
const STREET_KINDS: [&str; 5] = ["Road", "Street", "Lane", "Close", "Avenue"];
const TOWNS: [&str; 8] = ["Northam", "Easton", "Westbury", "Southwick", "Middleton", "Kingsford", "Ashby", "Fairholme"];

#[derive(Debug, Clone)]
struct SimStaff {
    role: Role,
    dept: usize,
    shift: ShiftKind,
    /// Works on local day i.
    works: Vec<bool>,
    patient: Option<usize>,
    surname: usize,
    household: usize,
}

#[derive(Debug, Clone)]
struct SimPatient {
    surname: usize,
    household: usize,
    vip: bool,
    flagged: bool,
    employee: Option<usize>,
    busy_until: i64,
}

#[derive(Debug, Clone)]
struct Enc {
    patient: usize,
    dept: usize,
    start: i64,
    end: i64,
    inpatient: bool,
}

#[derive(Debug, Clone)]
struct Acc {
    time: i64,
    user: usize,
    action: RecordAction,
    resource_type: &'static str,
    patients: Vec<usize>,
    grant: Option<u32>,
    query: Option<QueryKind>,
    purpose: &'static str,
    label: Option<(SnoopKind, u32)>,
}

/// The random stream and the helpers the simulation draws with.
struct Draw(ChaCha8Rng);

impl Draw {
    fn unit(&mut self) -> f64 {
        self.0.random::<f64>()
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo { lo } else { self.0.random_range(lo..hi) }
    }
    fn count(&mut self, lo: usize, hi_inclusive: usize) -> usize {
        if hi_inclusive <= lo { lo } else { self.0.random_range(lo..=hi_inclusive) }
    }
    fn index(&mut self, len: usize) -> Option<usize> {
        (len > 0).then(|| self.0.random_range(0..len))
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        self.index(items.len()).and_then(|i| items.get(i).copied())
    }
    fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(1e-12);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    fn poisson(&mut self, lambda: f64) -> usize {
        if lambda <= 0.0 {
            return 0;
        }
        if lambda > 30.0 {
            return (lambda + lambda.sqrt() * self.normal()).round().max(0.0) as usize;
        }
        let limit = (-lambda).exp();
        let mut k = 0usize;
        let mut p = self.unit();
        while p > limit {
            k += 1;
            p *= self.unit();
        }
        k
    }
    fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.unit() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len().saturating_sub(1)
    }
    fn read_type(&mut self) -> &'static str {
        let weights: Vec<f64> = READ_TYPES.iter().map(|(_, w)| *w).collect();
        READ_TYPES.get(self.weighted(&weights)).map_or("Observation", |(t, _)| t)
    }
}

struct Sim {
    opts: SimOptions,
    draw: Draw,
    end: i64,
    beds: Vec<usize>,
    surnames: Vec<String>,
    surname_weights: Vec<f64>,
    addresses: Vec<String>,
    /// Each household's main surname (a household is one address).
    households: Vec<usize>,
    patients: Vec<SimPatient>,
    staff: Vec<SimStaff>,
    /// Staff indices by department.
    by_dept: Vec<Vec<usize>>,
    /// Patients by surname.
    by_surname: Vec<Vec<usize>>,
    encounters: Vec<Enc>,
    relationships: Vec<RelationshipLine>,
    related: HashSet<(usize, usize)>,
    /// On-call physician of an office ward: (dept, from, to, user).
    on_call: Vec<(usize, i64, i64, usize)>,
    accesses: Vec<Acc>,
    grants: u32,
    scenarios: u32,
}

impl Sim {
    fn new(opts: SimOptions) -> Self {
        let draw = Draw(ChaCha8Rng::seed_from_u64(opts.seed));
        let end = i64::from(opts.days) * DAY;
        Self {
            opts,
            draw,
            end,
            beds: Vec::new(),
            surnames: Vec::new(),
            surname_weights: Vec::new(),
            addresses: Vec::new(),
            households: Vec::new(),
            patients: Vec::new(),
            staff: Vec::new(),
            by_dept: vec![Vec::new(); WARDS.len() + SERVICES.len()],
            by_surname: Vec::new(),
            encounters: Vec::new(),
            relationships: Vec::new(),
            related: HashSet::new(),
            on_call: Vec::new(),
            accesses: Vec::new(),
            grants: 0,
            scenarios: 0,
        }
    }

    fn utc(&self, local: i64) -> Timestamp {
        Timestamp(self.opts.start_local_ms + local - i64::from(self.opts.utc_offset_minutes) * MINUTE)
    }

    // -- people --------------------------------------------------------------

    fn people(&mut self) {
        // Surnames: Zipf-like, so common names are shared by unrelated families.
        for a in SYLLABLES_A {
            for b in SYLLABLES_B {
                self.surnames.push(format!("{a}{b}"));
            }
        }
        let n = self.surnames.len();
        // Shuffle the order deterministically so frequency is not alphabetical.
        for i in (1..n).rev() {
            let j = self.draw.count(0, i);
            self.surnames.swap(i, j);
        }
        self.surname_weights = (1..=n).map(|r| 1.0 / (r as f64).powf(0.9)).collect();
        self.by_surname = vec![Vec::new(); n];

        // Staff first: each lives in a household of the population.
        let staff_total = self.opts.staff;
        let registrars = (staff_total * 4 / 100).max(4);
        let technicians = (staff_total * 8 / 100).max(4);
        let clinical = staff_total.saturating_sub(registrars + technicians);
        let weight_sum: f64 = WARD_STAFF_WEIGHT.iter().sum();
        let mut plan: Vec<(Role, usize)> = Vec::new();
        for (ward, weight) in WARD_STAFF_WEIGHT.iter().enumerate() {
            let size = ((clinical as f64) * weight / weight_sum).round().max(6.0) as usize;
            let physicians = (size / 4).max(2);
            plan.extend(std::iter::repeat_n((Role::Physician, ward), physicians));
            plan.extend(std::iter::repeat_n((Role::Nurse, ward), size - physicians));
        }
        plan.extend(std::iter::repeat_n((Role::Technician, RADIOLOGY), technicians / 2));
        plan.extend(std::iter::repeat_n((Role::Technician, LABORATORY), technicians - technicians / 2));
        plan.extend(std::iter::repeat_n((Role::Registrar, REGISTRATION), registrars));
        for (role, dept) in plan {
            let shift = match role {
                Role::Physician if WARDS.get(dept).is_some_and(|w| !w.2) => ShiftKind::Office,
                Role::Registrar | Role::Technician if self.draw.chance(0.65) => ShiftKind::Day,
                Role::Registrar | Role::Technician => ShiftKind::Night,
                _ if self.draw.chance(0.55) => ShiftKind::Day,
                _ => ShiftKind::Night,
            };
            let household = self.new_household(None);
            let surname = match self.draw.chance(0.85) {
                true => self.household_surname(household),
                false => self.random_surname(),
            };
            let index = self.staff.len();
            let patient = self.draw.chance(0.45).then(|| {
                let p = self.add_patient(household, surname);
                if let Some(record) = self.patients.get_mut(p) {
                    record.employee = Some(index);
                }
                p
            });
            // Family at home who are patients too.
            let family = self.draw.count(0, 3);
            for _ in 0..family {
                let s = if self.draw.chance(0.75) { surname } else { self.random_surname() };
                self.add_patient(household, s);
            }
            if let Some(list) = self.by_dept.get_mut(dept) {
                list.push(index);
            }
            self.staff.push(SimStaff { role, dept, shift, works: Vec::new(), patient, surname, household });
        }

        // The rest of the population.
        while self.patients.len() < self.opts.patients {
            // Relatives living apart share the surname of an earlier household.
            let reuse = (self.draw.chance(0.3)).then(|| self.household_surname_of_random()).flatten();
            let household = self.new_household(reuse);
            let size =
                [1usize, 2, 3, 4, 5].get(self.draw.weighted(&[0.3, 0.3, 0.18, 0.15, 0.07])).copied().unwrap_or(1);
            let main = self.household_surname(household);
            for _ in 0..size {
                if self.patients.len() >= self.opts.patients {
                    break;
                }
                let s = if self.draw.chance(0.75) { main } else { self.random_surname() };
                self.add_patient(household, s);
            }
        }
        let vips = (self.patients.len() / 500).max(3);
        for _ in 0..vips {
            if let Some(p) = self.draw.index(self.patients.len())
                && let Some(patient) = self.patients.get_mut(p)
            {
                patient.vip = true;
            }
        }
        for _ in 0..(self.patients.len() / 1000).max(2) {
            if let Some(p) = self.draw.index(self.patients.len())
                && let Some(patient) = self.patients.get_mut(p)
            {
                patient.flagged = true;
            }
        }
        // Beds scale with staff.
        let beds_total = (self.opts.staff as f64 * 0.6).round();
        let bed_weights: f64 = WARDS.iter().map(|w| w.1).sum();
        self.beds = WARDS.iter().map(|w| (beds_total * w.1 / bed_weights).round() as usize).collect();
    }

    /// A household at a new address; its surname is drawn or given.
    fn new_household(&mut self, surname: Option<usize>) -> usize {
        let index = self.households.len();
        let street = STREETS.get(self.draw.index(STREETS.len()).unwrap_or(0)).copied().unwrap_or("High");
        let kind = STREET_KINDS.get(self.draw.index(STREET_KINDS.len()).unwrap_or(0)).copied().unwrap_or("Road");
        let town = TOWNS.get(self.draw.index(TOWNS.len()).unwrap_or(0)).copied().unwrap_or("Northam");
        // The number is unique per household, so an address is one household.
        self.addresses.push(format!("{} {street} {kind}, {town}", index + 1));
        let surname = surname.unwrap_or_else(|| self.random_surname());
        self.households.push(surname);
        index
    }

    fn household_surname(&self, household: usize) -> usize {
        self.households.get(household).copied().unwrap_or(0)
    }

    fn household_surname_of_random(&mut self) -> Option<usize> {
        let h = self.draw.index(self.households.len())?;
        Some(self.household_surname(h))
    }

    fn random_surname(&mut self) -> usize {
        let weights = std::mem::take(&mut self.surname_weights);
        let s = self.draw.weighted(&weights);
        self.surname_weights = weights;
        s
    }

    fn add_patient(&mut self, household: usize, surname: usize) -> usize {
        let index = self.patients.len();
        self.patients.push(SimPatient {
            surname,
            household,
            vip: false,
            flagged: false,
            employee: None,
            busy_until: i64::MIN,
        });
        if let Some(list) = self.by_surname.get_mut(surname) {
            list.push(index);
        }
        index
    }

    // -- rosters -------------------------------------------------------------

    fn rosters(&mut self) {
        let days = self.opts.days as usize + 2;
        for i in 0..self.staff.len() {
            let shift = self.staff.get(i).map_or(ShiftKind::Day, |s| s.shift);
            let works: Vec<bool> = (0..days)
                .map(|d| match shift {
                    ShiftKind::Office => d % 7 < 5 && self.draw.chance(0.92),
                    _ => self.draw.chance(0.55),
                })
                .collect();
            if let Some(s) = self.staff.get_mut(i) {
                s.works = works;
            }
        }
        // On call for office wards: nights, and whole weekend days.
        for dept in 0..WARDS.len() {
            if WARDS.get(dept).is_none_or(|w| w.2) {
                continue;
            }
            let physicians: Vec<usize> = self.members(dept, Role::Physician);
            for day in -1..i64::from(self.opts.days) {
                let weekend = day.rem_euclid(7) >= 5;
                let (from, to) = if weekend {
                    (day * DAY + 8 * HOUR, (day + 1) * DAY + 8 * HOUR)
                } else {
                    (day * DAY + 18 * HOUR, (day + 1) * DAY + 8 * HOUR)
                };
                let Some(user) = self.draw.pick(&physicians) else { continue };
                self.on_call.push((dept, from, to, user));
                self.relationships.push(RelationshipLine::Assignment {
                    user: user_id(user),
                    department: department_name(dept).to_owned(),
                    from: self.utc(from),
                    to: self.utc(to),
                });
            }
        }
    }

    fn members(&self, dept: usize, role: Role) -> Vec<usize> {
        self.by_dept
            .get(dept)
            .map(|list| list.iter().copied().filter(|i| self.staff.get(*i).is_some_and(|s| s.role == role)).collect())
            .unwrap_or_default()
    }

    fn works(&self, user: usize, day: i64) -> bool {
        usize::try_from(day)
            .ok()
            .and_then(|d| self.staff.get(user).and_then(|s| s.works.get(d)))
            .copied()
            .unwrap_or(false)
    }

    /// The shift window `user` works that contains `t`, if any.
    fn duty_window(&self, user: usize, t: i64) -> Option<(i64, i64)> {
        let shift = self.staff.get(user)?.shift;
        let day = t.div_euclid(DAY);
        (day - 1..=day).find_map(|d| {
            let (a, b) = shift.window(d);
            (self.works(user, d) && a <= t && t < b).then_some((a, b))
        })
    }

    fn on_duty(&self, dept: usize, role: Role, t: i64) -> Vec<usize> {
        self.by_dept
            .get(dept)
            .map(|list| {
                list.iter()
                    .copied()
                    .filter(|i| self.staff.get(*i).is_some_and(|s| s.role == role) && self.duty_window(*i, t).is_some())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn on_call_at(&self, dept: usize, t: i64) -> Option<usize> {
        self.on_call.iter().find(|(d, a, b, _)| *d == dept && *a <= t && t < *b).map(|x| x.3)
    }

    // -- access helpers -------------------------------------------------------

    fn access(
        &mut self,
        time: i64,
        user: usize,
        action: RecordAction,
        resource_type: &'static str,
        patients: Vec<usize>,
    ) {
        if time < 0 || time >= self.end || self.own_record(user, &patients) {
            return;
        }
        let purpose = match self.staff.get(user).map(|s| s.role) {
            Some(Role::Registrar) => "HOPERAT",
            _ => "TREAT",
        };
        self.accesses.push(Acc {
            time,
            user,
            action,
            resource_type,
            patients,
            grant: None,
            query: None,
            purpose,
            label: None,
        });
    }

    fn read(&mut self, time: i64, user: usize, patient: usize) {
        let kind = self.draw.read_type();
        self.access(time, user, RecordAction::Read, kind, vec![patient]);
    }

    /// `n` reads spread over [from, to).
    fn reads(&mut self, user: usize, patient: usize, n: usize, from: i64, to: i64) {
        for _ in 0..n {
            let t = self.draw.range(from, to);
            self.read(t, user, patient);
        }
    }

    /// A search by name: the patient and a few others with the same surname.
    fn name_search(&mut self, time: i64, user: usize, patient: usize) -> Vec<usize> {
        let surname = self.patients.get(patient).map_or(0, |p| p.surname);
        let mut listed = vec![patient];
        let namesakes = self.by_surname.get(surname).cloned().unwrap_or_default();
        for _ in 0..self.draw.count(0, 3) {
            if let Some(other) = self.draw.pick(&namesakes)
                && !listed.contains(&other)
            {
                listed.push(other);
            }
        }
        if time >= 0 && time < self.end {
            let purpose =
                if self.staff.get(user).is_some_and(|s| s.role == Role::Registrar) { "HOPERAT" } else { "TREAT" };
            self.accesses.push(Acc {
                time,
                user,
                action: RecordAction::Search,
                resource_type: "Patient",
                patients: listed.clone(),
                grant: None,
                query: Some(QueryKind::Name),
                purpose,
                label: None,
            });
        }
        listed
    }

    /// Staff do not care for themselves: the work goes to a colleague (or,
    /// here, is left out).
    fn own_record(&self, user: usize, patients: &[usize]) -> bool {
        self.staff.get(user).and_then(|s| s.patient).is_some_and(|p| patients.contains(&p))
    }

    fn relate(&mut self, user: usize, patient: usize) {
        self.related.insert((user, patient));
    }

    fn care_team(&mut self, user: usize, patient: usize, from: i64, to: i64) {
        if self.own_record(user, &[patient]) {
            return;
        }
        self.relate(user, patient);
        self.relationships.push(RelationshipLine::CareTeam {
            user: user_id(user),
            patient: patient_id(patient),
            from: self.utc(from),
            to: Some(self.utc(to)),
        });
    }

    /// An order: the relationship, the write that placed it, and the work
    /// of the department that carries it out.
    fn order(&mut self, user: usize, patient: usize, time: i64, dept: Option<usize>) {
        if time >= self.end {
            return;
        }
        self.relate(user, patient);
        self.relationships.push(RelationshipLine::Order {
            user: Some(user_id(user)),
            patient: patient_id(patient),
            time: self.utc(time),
            department: dept.map(|d| department_name(d).to_owned()),
        });
        let kind = if dept.is_none() { "MedicationRequest" } else { "ServiceRequest" };
        self.access(time, user, RecordAction::Create, kind, vec![patient]);
        if let Some(dept) = dept {
            let done = time + self.draw.range(30 * MINUTE, 5 * HOUR);
            if let Some(tech) = self.draw.pick(&self.on_duty(dept, Role::Technician, done)) {
                self.access(done, tech, RecordAction::Read, "ServiceRequest", vec![patient]);
                let result = if dept == RADIOLOGY { "DiagnosticReport" } else { "Observation" };
                let at = done + self.draw.range(5 * MINUTE, 30 * MINUTE);
                self.access(at, tech, RecordAction::Create, result, vec![patient]);
            }
        }
    }

    fn encounter(&mut self, patient: usize, dept: usize, start: i64, end: i64, users: &[usize], inpatient: bool) {
        let users: Vec<usize> = users.iter().copied().filter(|u| !self.own_record(*u, &[patient])).collect();
        for user in &users {
            self.relate(*user, patient);
        }
        self.relationships.push(RelationshipLine::Encounter {
            id: Some(format!("e-{:07}", self.encounters.len() + 1)),
            patient: patient_id(patient),
            department: department_name(dept).to_owned(),
            start: self.utc(start),
            end: Some(self.utc(end)),
            users: users.iter().map(|u| user_id(*u)).collect(),
        });
        self.encounters.push(Enc { patient, dept, start, end, inpatient });
        if let Some(p) = self.patients.get_mut(patient) {
            p.busy_until = p.busy_until.max(end);
        }
    }

    /// A patient not in hospital at `t` (the population is large: a few
    /// tries are enough).
    fn free_patient(&mut self, t: i64) -> Option<usize> {
        for _ in 0..50 {
            let p = self.draw.index(self.patients.len())?;
            if self.patients.get(p).is_some_and(|x| x.busy_until < t) {
                return Some(p);
            }
        }
        None
    }

    fn registrar_at(&mut self, t: i64) -> Option<usize> {
        let on = self.on_duty(REGISTRATION, Role::Registrar, t);
        self.draw.pick(&on)
    }

    fn length_of_stay(&mut self) -> i64 {
        let days = (3.5f64.ln() + 0.7 * self.draw.normal()).exp().clamp(1.0, 30.0);
        (days * DAY as f64) as i64
    }

    // -- patient flow --------------------------------------------------------

    fn flows(&mut self) {
        // The census at the start: patients already admitted.
        for ward in 1..WARDS.len() {
            let beds = self.beds.get(ward).copied().unwrap_or(0);
            for _ in 0..(beds * 85 / 100) {
                let los = self.length_of_stay();
                let elapsed = self.draw.range(0, los);
                let start = -elapsed;
                let end = (start + los).max(4 * HOUR);
                if let Some(p) = self.free_patient(start) {
                    self.stay(p, ward, start, end);
                }
            }
        }
        let census = self.beds.iter().sum::<usize>() as f64;
        for day in 0..i64::from(self.opts.days) {
            let weekday = day.rem_euclid(7) < 5;
            // Emergency arrivals, more by day.
            let arrivals = self.draw.poisson(census * 0.45);
            for _ in 0..arrivals {
                let hour = self.draw.weighted(&HOURLY_ARRIVALS) as i64;
                let t = day * DAY + hour * HOUR + self.draw.range(0, HOUR);
                self.emergency(t);
            }
            if weekday {
                for _ in 0..self.draw.poisson(census * 0.07) {
                    let t = day * DAY + 8 * HOUR + self.draw.range(0, 4 * HOUR);
                    let Some(ward) = self.draw.pick(&ELECTIVE) else { continue };
                    let Some(p) = self.free_patient(t) else { continue };
                    if let Some(registrar) = self.registrar_at(t) {
                        if self.draw.chance(0.6) {
                            let at = t - self.draw.range(MINUTE, 6 * MINUTE);
                            self.name_search(at, registrar, p);
                        }
                        self.access(t, registrar, RecordAction::Create, "Encounter", vec![p]);
                    }
                    let los = self.length_of_stay();
                    self.stay(p, ward, t, t + los);
                }
                for _ in 0..self.draw.poisson(census * 0.6) {
                    let t = day * DAY + 8 * HOUR + 30 * MINUTE + self.draw.range(0, 8 * HOUR);
                    self.outpatient(t);
                }
            }
            self.night_cover(day);
            for _ in 0..self.draw.poisson(census * 0.02) {
                let t = day * DAY + 9 * HOUR + self.draw.range(0, 11 * HOUR);
                self.enquiry(t);
            }
        }
    }

    fn emergency(&mut self, arrival: i64) {
        let Some(p) = self.free_patient(arrival) else { return };
        let length = self.draw.range(2 * HOUR, 6 * HOUR);
        let end = arrival + length;
        let physician = self.draw.pick(&self.on_duty(ED, Role::Physician, arrival));
        let nurse = self.draw.pick(&self.on_duty(ED, Role::Nurse, arrival));
        // Emergency access before the patient is registered.
        if let Some(doc) = physician
            && self.draw.chance(0.06)
        {
            let t = arrival + self.draw.range(0, 2 * MINUTE);
            let reads = self.draw.count(1, 3);
            self.break_glass(doc, p, t, reads, None);
        }
        let start = match self.registrar_at(arrival) {
            Some(registrar) => {
                let search = arrival + self.draw.range(MINUTE, 4 * MINUTE);
                self.name_search(search, registrar, p);
                let created = search + self.draw.range(MINUTE, 5 * MINUTE);
                self.access(created, registrar, RecordAction::Create, "Encounter", vec![p]);
                created
            }
            None => arrival + 5 * MINUTE,
        };
        let users: Vec<usize> = physician.into_iter().collect();
        self.encounter(p, ED, start, end, &users, false);
        if let Some(doc) = physician {
            let n = self.draw.count(3, 8);
            self.reads(doc, p, n, start, end);
            for _ in 0..self.draw.count(1, 2) {
                let t = self.draw.range(start, end);
                let dept = if self.draw.chance(0.7) { LABORATORY } else { RADIOLOGY };
                self.order(doc, p, t, Some(dept));
            }
        }
        if let Some(nurse) = nurse {
            self.care_team(nurse, p, start, end);
            let n = self.draw.count(3, 6);
            self.reads(nurse, p, n, start, end);
            for _ in 0..self.draw.count(2, 4) {
                let t = self.draw.range(start, end);
                self.access(t, nurse, RecordAction::Create, "Observation", vec![p]);
            }
        }
        if self.draw.chance(0.25) {
            let ward = if self.draw.chance(0.06) {
                ICU
            } else {
                let weights: Vec<f64> =
                    WARDS.iter().enumerate().map(|(i, w)| if i == ICU { 0.0 } else { w.1 }).collect();
                self.draw.weighted(&weights)
            };
            if let Some(registrar) = self.registrar_at(end) {
                self.access(end, registrar, RecordAction::Create, "Encounter", vec![p]);
            }
            let los = self.length_of_stay();
            self.stay(p, ward, end, end + los);
        }
    }

    /// A break-glass grant and the reads made under it; `label` marks a
    /// snooping scenario.
    fn break_glass(&mut self, user: usize, patient: usize, t: i64, reads: usize, label: Option<(SnoopKind, u32)>) {
        if t < 0 || t >= self.end || (label.is_none() && self.own_record(user, &[patient])) {
            return;
        }
        self.grants += 1;
        let grant = self.grants;
        self.accesses.push(Acc {
            time: t,
            user,
            action: RecordAction::BreakGlass,
            resource_type: "Patient",
            patients: vec![patient],
            grant: Some(grant),
            query: None,
            purpose: "ETREAT",
            label,
        });
        for _ in 0..reads {
            let at = t + self.draw.range(MINUTE, 12 * MINUTE);
            if at >= self.end {
                continue;
            }
            let kind = self.draw.read_type();
            self.accesses.push(Acc {
                time: at,
                user,
                action: RecordAction::Read,
                resource_type: kind,
                patients: vec![patient],
                grant: Some(grant),
                query: None,
                purpose: "ETREAT",
                label,
            });
        }
    }

    /// An inpatient stay in `ward`, with everything that happens around it.
    fn stay(&mut self, p: usize, ward: usize, start: i64, end: i64) {
        // Sometimes the first days are in intensive care.
        if ward != ICU && self.draw.chance(0.05) && end - start > 2 * DAY {
            let icu_end = start + self.draw.range(DAY, 3 * DAY).min(end - start - DAY);
            self.ward_stay(p, ICU, start, icu_end);
            self.ward_stay(p, ward, icu_end, end);
        } else {
            self.ward_stay(p, ward, start, end);
        }
        // Discharge: the registrar closes the encounter.
        if let Some(registrar) = self.registrar_at(end) {
            let before = end - self.draw.range(MINUTE, 5 * MINUTE);
            self.access(before, registrar, RecordAction::Read, "Patient", vec![p]);
            self.access(end, registrar, RecordAction::Update, "Encounter", vec![p]);
        }
    }

    fn ward_stay(&mut self, p: usize, ward: usize, start: i64, end: i64) {
        let shift_physicians = WARDS.get(ward).is_some_and(|w| w.2);
        let attending = if shift_physicians { None } else { self.draw.pick(&self.members(ward, Role::Physician)) };
        let mut users: Vec<usize> = attending.into_iter().collect();
        if let Some(doc) = attending {
            self.care_team(doc, p, start, end);
        }
        let mut nurse_of = [None::<usize>, None::<usize>];
        // Shift blocks: 07:00–19:00 and 19:00–07:00.
        let first = (start - 7 * HOUR).div_euclid(12 * HOUR);
        let last = (end - 7 * HOUR).div_euclid(12 * HOUR);
        for block in first..=last {
            let bs = block * 12 * HOUR + 7 * HOUR;
            let be = bs + 12 * HOUR;
            let (from, to) = (bs.max(start), be.min(end));
            if to <= from || to < 0 || from >= self.end {
                continue;
            }
            let day_block = block.rem_euclid(2) == 0;
            let kind = if day_block { ShiftKind::Day } else { ShiftKind::Night };
            let day = bs.div_euclid(DAY);
            let fraction = (to - from) as f64 / (12 * HOUR) as f64;
            let slot = usize::from(!day_block);
            // The patient's nurse this shift: the same as last time if working.
            let on = self.on_duty_kind(ward, Role::Nurse, kind, day);
            let nurse = match nurse_of.get(slot).copied().flatten() {
                Some(n) if on.contains(&n) => Some(n),
                _ => self.draw.pick(&on),
            };
            if let Some(slot_ref) = nurse_of.get_mut(slot) {
                *slot_ref = nurse;
            }
            if let Some(nurse) = nurse {
                self.care_team(nurse, p, from, to);
                let n = self.draw.poisson(5.0 * fraction);
                self.reads(nurse, p, n, from, to);
                for _ in 0..self.draw.poisson(2.0 * fraction) {
                    let t = self.draw.range(from, to);
                    self.access(t, nurse, RecordAction::Create, "Observation", vec![p]);
                }
            }
            // Another nurse of the ward covers a break.
            if self.draw.chance(0.2 * fraction) {
                let others: Vec<usize> = on.iter().copied().filter(|n| Some(*n) != nurse).collect();
                if let Some(other) = self.draw.pick(&others) {
                    let n = self.draw.count(1, 2);
                    self.reads(other, p, n, from, to);
                }
            }
            if shift_physicians {
                // Intensive care: the physician on shift is part of the encounter.
                let docs = self.on_duty_kind(ward, Role::Physician, kind, day);
                if let Some(doc) = self.draw.pick(&docs) {
                    if !users.contains(&doc) {
                        users.push(doc);
                    }
                    self.relate(doc, p);
                    let n = self.draw.count(2, 4);
                    self.reads(doc, p, n, from, to);
                    if self.draw.chance(0.4) {
                        let t = self.draw.range(from, to);
                        let dept = if self.draw.chance(0.7) { Some(LABORATORY) } else { None };
                        self.order(doc, p, t, dept);
                    }
                }
            } else if day_block {
                let round_from = from.max(day * DAY + 8 * HOUR + 30 * MINUTE);
                let round_to = to.min(day * DAY + 12 * HOUR);
                match attending {
                    Some(doc) if self.works(doc, day) && day.rem_euclid(7) < 5 && round_to > round_from => {
                        if self.draw.chance(0.05) {
                            self.name_search(round_from, doc, p);
                        }
                        let n = self.draw.count(2, 5);
                        self.reads(doc, p, n, round_from, round_to);
                        if self.draw.chance(0.5) {
                            let t = self.draw.range(round_from, round_to + 2 * HOUR);
                            let dept = match self.draw.weighted(&[0.6, 0.25, 0.15]) {
                                0 => Some(LABORATORY),
                                1 => Some(RADIOLOGY),
                                _ => None,
                            };
                            self.order(doc, p, t, dept);
                        }
                    }
                    _ => {
                        if let Some(doc) = self.on_call_at(ward, from.max(round_from))
                            && self.draw.chance(0.4)
                        {
                            let n = self.draw.count(1, 3);
                            self.reads(doc, p, n, from, to);
                        }
                    }
                }
                // A consult from another department, with an order.
                if day.rem_euclid(7) < 5 && self.draw.chance(0.04 * fraction) {
                    self.consult(p, ward, day, from, to);
                }
            } else if let Some(doc) = self.on_call_at(ward, from)
                && self.draw.chance(0.1)
            {
                let n = self.draw.count(1, 2);
                self.reads(doc, p, n, from, to);
            }
        }
        self.encounter(p, ward, start, end, &users, true);
        // Follow-up after discharge: results that came in late.
        if let Some(doc) = attending
            && self.draw.chance(0.25)
        {
            for d in 1..=3 {
                let day = end.div_euclid(DAY) + d;
                if self.works(doc, day) && day.rem_euclid(7) < 5 {
                    let t = day * DAY + 9 * HOUR + self.draw.range(0, 8 * HOUR);
                    if t > end && t < end + 3 * DAY {
                        self.read(t, doc, p);
                    }
                    break;
                }
            }
        }
    }

    fn on_duty_kind(&self, dept: usize, role: Role, kind: ShiftKind, day: i64) -> Vec<usize> {
        self.by_dept
            .get(dept)
            .map(|list| {
                list.iter()
                    .copied()
                    .filter(|i| {
                        self.staff.get(*i).is_some_and(|s| s.role == role && s.shift == kind) && self.works(*i, day)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn consult(&mut self, p: usize, ward: usize, day: i64, from: i64, to: i64) {
        let t = (day * DAY + 9 * HOUR + self.draw.range(0, 7 * HOUR)).clamp(from, to);
        let candidates: Vec<usize> = (2..WARDS.len())
            .filter(|d| *d != ward)
            .flat_map(|d| self.members(d, Role::Physician))
            .filter(|doc| self.duty_window(*doc, t).is_some())
            .collect();
        let Some(doc) = self.draw.pick(&candidates) else { return };
        for _ in 0..self.draw.count(2, 4) {
            let at = t + self.draw.range(0, 10 * MINUTE);
            self.read(at, doc, p);
        }
        // Now and then the consult leaves no order behind.
        if self.draw.chance(0.97) {
            let at = t + self.draw.range(3 * MINUTE, 25 * MINUTE);
            let dept = if self.draw.chance(0.5) { Some(LABORATORY) } else { None };
            self.order(doc, p, at, dept);
        }
    }

    fn outpatient(&mut self, t: i64) {
        let clinics: Vec<usize> = (2..WARDS.len()).collect();
        let Some(dept) = self.draw.pick(&clinics) else { return };
        let docs: Vec<usize> =
            self.members(dept, Role::Physician).into_iter().filter(|d| self.duty_window(*d, t).is_some()).collect();
        let Some(doc) = self.draw.pick(&docs) else { return };
        let Some(p) = self.free_patient(t) else { return };
        if let Some(registrar) = self.registrar_at(t)
            && self.draw.chance(0.5)
        {
            let at = t - self.draw.range(2 * MINUTE, 10 * MINUTE);
            self.name_search(at, registrar, p);
            self.access(t - MINUTE, registrar, RecordAction::Update, "Encounter", vec![p]);
        }
        let end = t + self.draw.range(20 * MINUTE, 40 * MINUTE);
        self.encounter(p, dept, t, end, &[doc], false);
        if let Some(patient) = self.patients.get_mut(p) {
            // Outpatients go home: they are free again at once.
            patient.busy_until = end;
        }
        let n = self.draw.count(2, 5);
        self.reads(doc, p, n, t, end);
        let at = self.draw.range(t, end);
        self.access(at, doc, RecordAction::Create, "Observation", vec![p]);
    }

    fn inpatients_at(&self, t: i64) -> Vec<(usize, usize)> {
        self.encounters
            .iter()
            .filter(|e| e.inpatient && e.start <= t && t < e.end)
            .map(|e| (e.patient, e.dept))
            .collect()
    }

    /// Night cover: a nurse from another ward works this ward tonight.
    /// Usually rostered as an assignment; sometimes not.
    fn night_cover(&mut self, day: i64) {
        for ward in 2..WARDS.len() {
            if !self.draw.chance(0.15) {
                continue;
            }
            let from = day * DAY + 19 * HOUR;
            let to = from + 12 * HOUR;
            let others: Vec<usize> = (2..WARDS.len())
                .filter(|d| *d != ward)
                .flat_map(|d| self.on_duty_kind(d, Role::Nurse, ShiftKind::Night, day))
                .collect();
            let Some(nurse) = self.draw.pick(&others) else { continue };
            if self.draw.chance(0.9) {
                self.relationships.push(RelationshipLine::Assignment {
                    user: user_id(nurse),
                    department: department_name(ward).to_owned(),
                    from: self.utc(from),
                    to: self.utc(to),
                });
            }
            let patients: Vec<usize> =
                self.inpatients_at(from + HOUR).into_iter().filter(|(_, d)| *d == ward).map(|(p, _)| p).collect();
            for _ in 0..self.draw.count(3, 6) {
                let Some(p) = self.draw.pick(&patients) else { break };
                let t = from + self.draw.range(30 * MINUTE, 11 * HOUR);
                self.read(t, nurse, p);
                if self.draw.chance(0.8) {
                    let at = t + self.draw.range(2 * MINUTE, 15 * MINUTE);
                    self.access(at, nurse, RecordAction::Create, "Observation", vec![p]);
                }
            }
        }
    }

    /// Someone at the desk asks after an inpatient.
    fn enquiry(&mut self, t: i64) {
        let Some(registrar) = self.registrar_at(t) else { return };
        let Some((p, _)) = self.draw.pick(&self.inpatients_at(t)) else { return };
        self.name_search(t, registrar, p);
        let at = t + self.draw.range(MINUTE, 3 * MINUTE);
        self.access(at, registrar, RecordAction::Read, "Encounter", vec![p]);
    }

    /// Accesses nothing in the directory explains, by people at work.
    fn gaps(&mut self) {
        let legit = self.accesses.len() as f64;
        let count = (legit * self.opts.gap_rate).round() as usize;
        let clinicians: Vec<usize> = (0..self.staff.len())
            .filter(|i| self.staff.get(*i).is_some_and(|s| matches!(s.role, Role::Physician | Role::Nurse)))
            .collect();
        let mut made = 0;
        let mut tries = 0;
        while made < count && tries < count * 20 {
            tries += 1;
            let Some(user) = self.draw.pick(&clinicians) else { break };
            let Some(t) = self.work_time(user) else { continue };
            let Some((p, _)) = self.draw.pick(&self.inpatients_at(t)) else { continue };
            self.read(t, user, p);
            made += 1;
        }
    }

    /// A random time at work for `user` (inside one of their shifts).
    fn work_time(&mut self, user: usize) -> Option<i64> {
        let shift = self.staff.get(user)?.shift;
        for _ in 0..30 {
            let day = self.draw.range(0, i64::from(self.opts.days));
            if self.works(user, day) {
                let (a, b) = shift.window(day);
                let t = self.draw.range(a + 30 * MINUTE, b - 30 * MINUTE);
                if t < self.end {
                    return Some(t);
                }
            }
        }
        None
    }

    // -- snooping --------------------------------------------------------------

    fn snoop(&mut self) {
        let kinds = self.opts.kinds.clone();
        if kinds.is_empty() || self.opts.snoop_rate <= 0.0 {
            return;
        }
        let legit = self.accesses.len() as f64;
        let total = (self.opts.snoop_rate * legit / (1.0 - self.opts.snoop_rate)).round() as usize;
        let per_kind = total / kinds.len();
        let mut extra = total % kinds.len();
        for kind in kinds {
            let quota = per_kind + usize::from(extra > 0);
            extra = extra.saturating_sub(1);
            let mut made = 0usize;
            let mut tries = 0usize;
            while made < quota && tries < quota * 50 + 50 {
                tries += 1;
                made += self.scenario(kind, quota - made);
            }
        }
    }

    /// Staff who could snoop (everyone), chosen uniformly.
    fn snooper(&mut self) -> Option<usize> {
        self.draw.index(self.staff.len())
    }

    fn unrelated(&self, user: usize, patient: usize) -> bool {
        !self.related.contains(&(user, patient)) && self.staff.get(user).and_then(|s| s.patient) != Some(patient)
    }

    /// Reads labelled as one scenario.
    fn snoop_reads(&mut self, user: usize, patient: usize, t: i64, n: usize, label: (SnoopKind, u32)) -> usize {
        let mut made = 0;
        for i in 0..n {
            let at = t + (i as i64) * self.draw.range(MINUTE, 6 * MINUTE);
            if at < 0 || at >= self.end {
                continue;
            }
            let kind = self.draw.read_type();
            let purpose =
                if self.staff.get(user).is_some_and(|s| s.role == Role::Registrar) { "HOPERAT" } else { "TREAT" };
            self.accesses.push(Acc {
                time: at,
                user,
                action: RecordAction::Read,
                resource_type: kind,
                patients: vec![patient],
                grant: None,
                query: None,
                purpose,
                label: Some(label),
            });
            made += 1;
        }
        made
    }

    /// One scenario of `kind`; returns the labelled accesses it made (0 if
    /// no fitting snooper or target was found this time).
    fn scenario(&mut self, kind: SnoopKind, room: usize) -> usize {
        let Some(user) = self.snooper() else { return 0 };
        let Some(staff) = self.staff.get(user).cloned() else { return 0 };
        let Some(t) = self.work_time(user) else { return 0 };
        self.scenarios += 1;
        let label = (kind, self.scenarios);
        let reads = self.draw.count(1, 3).min(room.max(1));
        let target = match kind {
            SnoopKind::Vip => {
                let vips: Vec<usize> =
                    (0..self.patients.len()).filter(|p| self.patients.get(*p).is_some_and(|x| x.vip)).collect();
                self.draw.pick(&vips)
            }
            SnoopKind::Family => {
                let namesakes = self.by_surname.get(staff.surname).cloned().unwrap_or_default();
                let others: Vec<usize> = namesakes.into_iter().filter(|p| Some(*p) != staff.patient).collect();
                self.draw.pick(&others)
            }
            SnoopKind::Neighbour => {
                let home: Vec<usize> = (0..self.patients.len())
                    .filter(|p| {
                        self.patients.get(*p).is_some_and(|x| x.household == staff.household)
                            && Some(*p) != staff.patient
                    })
                    .collect();
                self.draw.pick(&home)
            }
            SnoopKind::Coworker => {
                let employees: Vec<usize> = (0..self.patients.len())
                    .filter(|p| self.patients.get(*p).is_some_and(|x| x.employee.is_some_and(|e| e != user)))
                    .collect();
                self.draw.pick(&employees)
            }
            SnoopKind::SelfAccess => staff.patient,
            SnoopKind::DepartmentMismatch => {
                let elsewhere: Vec<usize> =
                    self.inpatients_at(t).into_iter().filter(|(_, d)| *d != staff.dept).map(|(p, _)| p).collect();
                self.draw.pick(&elsewhere)
            }
            SnoopKind::OffShift => return self.off_shift(user, &staff, label, reads),
            SnoopKind::SearchNoAction => {
                if self.draw.chance(0.5) {
                    self.draw.pick(&self.inpatients_at(t)).map(|(p, _)| p)
                } else {
                    self.draw.index(self.patients.len())
                }
            }
            SnoopKind::VolumeSpike => return self.volume_spike(user, t, label, room),
            SnoopKind::BreakGlassAbuse => {
                let p = self.draw.index(self.patients.len());
                match p {
                    Some(p) if self.unrelated(user, p) => {
                        let mut made = 0;
                        // Some abusers come back again and again.
                        let times = if self.draw.chance(0.3) { 3 } else { 1 };
                        for i in 0..times {
                            let target = if i == 0 { Some(p) } else { self.draw.index(self.patients.len()) };
                            let Some(target) = target.filter(|q| self.unrelated(user, *q)) else { continue };
                            let at = if i == 0 { Some(t) } else { self.work_time(user) };
                            let Some(at) = at else { continue };
                            let before = self.accesses.len();
                            self.break_glass(user, target, at, reads, Some(label));
                            made += self.accesses.len() - before;
                        }
                        return made;
                    }
                    _ => None,
                }
            }
        };
        let Some(target) = target else { return 0 };
        if kind != SnoopKind::SelfAccess && !self.unrelated(user, target) {
            return 0;
        }
        if kind == SnoopKind::SearchNoAction {
            if t >= self.end {
                return 0;
            }
            let listed = self.name_search(t, user, target);
            let mut made = 0;
            if let Some(search) = self.accesses.last_mut()
                && search.time == t
                && search.patients == listed
            {
                search.label = Some(label);
                made += 1;
            }
            let looks = self.draw.count(0, 2);
            let at = t + self.draw.range(MINUTE, 8 * MINUTE);
            made += self.snoop_reads(user, target, at, looks, label);
            return made;
        }
        self.snoop_reads(user, target, t, reads, label)
    }

    fn off_shift(&mut self, user: usize, staff: &SimStaff, label: (SnoopKind, u32), reads: usize) -> usize {
        // At least three hours away from any of the user's shift windows
        // (the analytics allows an hour before and two after).
        let mut t = None;
        for _ in 0..50 {
            let candidate = self.draw.range(0, self.end);
            let day = candidate.div_euclid(DAY);
            let near = (day - 1..=day + 1).any(|d| {
                let (a, b) = staff.shift.window(d);
                let active = match staff.shift {
                    ShiftKind::Office => d.rem_euclid(7) < 5,
                    _ => true,
                };
                active && candidate > a - 3 * HOUR && candidate < b + 3 * HOUR
            });
            // On call is working time too.
            let on_call = self
                .on_call
                .iter()
                .any(|(_, a, b, u)| *u == user && candidate > a - 3 * HOUR && candidate < b + 3 * HOUR);
            if !near && !on_call {
                t = Some(candidate);
                break;
            }
        }
        let Some(t) = t else { return 0 };
        let inpatients = self.inpatients_at(t);
        let own: Vec<usize> = inpatients.iter().filter(|(_, d)| *d == staff.dept).map(|(p, _)| *p).collect();
        let pool: Vec<usize> = if own.is_empty() { inpatients.iter().map(|(p, _)| *p).collect() } else { own };
        let Some(target) = self.draw.pick(&pool) else { return 0 };
        if !self.unrelated(user, target) {
            return 0;
        }
        self.snoop_reads(user, target, t, reads, label)
    }

    fn volume_spike(&mut self, user: usize, t: i64, label: (SnoopKind, u32), room: usize) -> usize {
        let n = self.draw.count(15, 35).min(room.max(8));
        let inpatients = self.inpatients_at(t);
        let mut made = 0;
        let mut at = t;
        for _ in 0..n {
            let target = if self.draw.chance(0.6) {
                self.draw.pick(&inpatients).map(|(p, _)| p)
            } else {
                self.draw.index(self.patients.len())
            };
            let Some(target) = target.filter(|p| self.unrelated(user, *p)) else { continue };
            made += self.snoop_reads(user, target, at, 1, label);
            at += self.draw.range(MINUTE, 4 * MINUTE);
        }
        made
    }

    // -- output -----------------------------------------------------------------

    fn finish(mut self) -> SimOutput {
        let key = TokenKey::new(derive_key(self.opts.seed));
        let pre_hashed = self.opts.pre_hashed;
        let hashed = |field, value: &str| key.token(field, value).map(|t| t.as_str().to_owned());
        let mut staff_lines = Vec::with_capacity(self.staff.len());
        for (i, s) in self.staff.iter().enumerate() {
            let surname = self.surnames.get(s.surname).cloned().unwrap_or_default();
            let address = self.addresses.get(s.household).cloned().unwrap_or_default();
            let mut line = StaffLine {
                user: user_id(i),
                role: s.role.name().to_owned(),
                department: department_name(s.dept).to_owned(),
                shift: Some(s.shift.name().to_owned()),
                utc_offset_minutes: Some(self.opts.utc_offset_minutes),
                patient_id: s.patient.map(patient_id),
                ..StaffLine::default()
            };
            if pre_hashed {
                line.surname_token = hashed(TokenField::Surname, &surname);
                line.address_token = hashed(TokenField::Address, &address);
            } else {
                line.surname = Some(surname);
                line.address = Some(address);
            }
            staff_lines.push(line);
        }
        let mut patient_lines = Vec::with_capacity(self.patients.len());
        for (i, p) in self.patients.iter().enumerate() {
            let surname = self.surnames.get(p.surname).cloned().unwrap_or_default();
            let address = self.addresses.get(p.household).cloned().unwrap_or_default();
            let mut line = PatientLine {
                patient: patient_id(i),
                vip: p.vip,
                flagged: p.flagged,
                employee: p.employee.map(user_id),
                ..PatientLine::default()
            };
            if pre_hashed {
                line.surname_token = hashed(TokenField::Surname, &surname);
                line.address_token = hashed(TokenField::Address, &address);
            } else {
                line.surname = Some(surname);
                line.address = Some(address);
            }
            patient_lines.push(line);
        }
        // Time order; the generation order breaks ties, so it is stable.
        let mut accesses = std::mem::take(&mut self.accesses);
        accesses.sort_by_key(|a| a.time);
        let mut lines = Vec::with_capacity(accesses.len());
        let mut labels = Vec::new();
        let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
        let mut scenarios: HashSet<u32> = HashSet::new();
        for (i, a) in accesses.iter().enumerate() {
            let id = format!("a-{:07}", i + 1);
            if let Some((kind, scenario)) = a.label {
                labels.push(LabelLine {
                    id: id.clone(),
                    kind: kind.as_str().to_owned(),
                    scenario: Some(format!("s-{scenario:05}")),
                });
                *by_kind.entry(kind.as_str().to_owned()).or_default() += 1;
                scenarios.insert(scenario);
            }
            let dept = self.staff.get(a.user).map_or(0, |s| s.dept);
            let role = self.staff.get(a.user).map_or("nurse", |s| s.role.name());
            lines.push(AccessLine {
                id: Some(id),
                time: self.utc(a.time),
                user: user_id(a.user),
                action: a.action,
                outcome: caduceus_core::event::AccessOutcome::Allowed,
                resource_type: Some(a.resource_type.to_owned()),
                resource: None,
                patients: a.patients.iter().map(|p| patient_id(*p)).collect(),
                purpose_of_use: Some(a.purpose.to_owned()),
                break_glass: a.grant.map(|g| format!("bg-{g:06}")),
                query_kind: a.query,
                query: None,
                source: Some(format!("10.{}.{}.{}", dept + 1, a.user / 250, a.user % 250 + 1)),
                roles: vec![role.to_owned()],
            });
        }
        let summary = SimSummary {
            seed: self.opts.seed,
            days: self.opts.days,
            staff: staff_lines.len(),
            patients: patient_lines.len(),
            relationships: self.relationships.len(),
            accesses: lines.len(),
            snooping_accesses: labels.len(),
            scenarios: scenarios.len(),
            by_kind,
        };
        SimOutput {
            staff: staff_lines,
            patients: patient_lines,
            relationships: self.relationships,
            accesses: lines,
            labels,
            summary,
        }
    }
}

/// Emergency arrivals by hour of day (weights).
const HOURLY_ARRIVALS: [f64; 24] = [
    0.5, 0.4, 0.3, 0.3, 0.3, 0.4, 0.6, 0.9, 1.2, 1.4, 1.5, 1.5, 1.4, 1.4, 1.4, 1.4, 1.4, 1.4, 1.3, 1.2, 1.1, 0.9, 0.8,
    0.6,
];

fn user_id(index: usize) -> String {
    format!("u-{:05}", index + 1)
}

fn patient_id(index: usize) -> String {
    format!("p-{:07}", index + 1)
}

/// The key pre-hashed files are written under: fixed per seed, so the files
/// are reproducible; tokens compare with each other whatever the key.
fn derive_key(seed: u64) -> [u8; 32] {
    let mut key = [0u8; 32];
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_0fb1_1d7e_5700);
    rng.fill(&mut key);
    key
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    fn small(seed: u64) -> SimOptions {
        SimOptions { seed, days: 3, staff: 120, patients: 2_000, snoop_rate: 0.01, ..SimOptions::default() }
    }

    fn ndjson<T: Serialize>(items: &[T]) -> String {
        items.iter().map(|i| serde_json::to_string(i).unwrap() + "\n").collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_hospital() {
        let a = simulate(&small(5)).unwrap();
        let b = simulate(&small(5)).unwrap();
        assert_eq!(ndjson(&a.accesses), ndjson(&b.accesses));
        assert_eq!(ndjson(&a.staff), ndjson(&b.staff));
        assert_eq!(ndjson(&a.patients), ndjson(&b.patients));
        assert_eq!(ndjson(&a.relationships), ndjson(&b.relationships));
        assert_eq!(ndjson(&a.labels), ndjson(&b.labels));
        let c = simulate(&small(6)).unwrap();
        assert_ne!(ndjson(&a.accesses), ndjson(&c.accesses));
    }

    #[test]
    fn every_kind_is_injected_and_labelled_outside_the_log() {
        let out = simulate(&small(5)).unwrap();
        let ids: HashSet<&str> = out.accesses.iter().filter_map(|a| a.id.as_deref()).collect();
        assert_eq!(ids.len(), out.accesses.len(), "ids are unique");
        assert!(out.labels.iter().all(|l| ids.contains(l.id.as_str())));
        for kind in SnoopKind::ALL {
            assert!(out.summary.by_kind.get(kind.as_str()).copied().unwrap_or(0) > 0, "{kind:?} missing");
        }
        let rate = out.labels.len() as f64 / out.accesses.len() as f64;
        assert!((0.005..0.02).contains(&rate), "{rate}");
        // Access lines hold only what an EHR audit log has.
        let allowed = [
            "id",
            "time",
            "user",
            "action",
            "outcome",
            "resource_type",
            "patients",
            "purpose_of_use",
            "break_glass",
            "query_kind",
            "source",
            "roles",
        ];
        for line in &out.accesses {
            let value = serde_json::to_value(line).unwrap();
            for key in value.as_object().unwrap().keys() {
                assert!(allowed.contains(&key.as_str()), "unexpected field {key}");
            }
        }
        // Time order.
        assert!(out.accesses.windows(2).all(|w| w[0].time <= w[1].time));
        // Staff who are patients, VIPs, night cover assignments and break-glass all occur.
        assert!(out.staff.iter().any(|s| s.patient_id.is_some()));
        assert!(out.patients.iter().any(|p| p.vip));
        assert!(out.relationships.iter().any(|r| matches!(r, RelationshipLine::Assignment { .. })));
        assert!(out.accesses.iter().any(|a| a.action == RecordAction::BreakGlass));
        assert!(out.accesses.iter().any(|a| a.query_kind == Some(QueryKind::Name)));
    }

    #[test]
    fn pre_hashed_files_hold_tokens_only() {
        let plain = simulate(&small(5)).unwrap();
        let hashed = simulate(&SimOptions { pre_hashed: true, ..small(5) }).unwrap();
        assert_eq!(ndjson(&plain.accesses), ndjson(&hashed.accesses), "only the directory's form changes");
        assert!(hashed.staff.iter().all(|s| s.surname.is_none() && s.address.is_none() && s.surname_token.is_some()));
        assert!(hashed.patients.iter().all(|p| p.surname.is_none() && p.address_token.is_some()));
        assert!(plain.staff.iter().all(|s| s.surname.is_some() && s.surname_token.is_none()));
    }

    #[test]
    fn options_are_checked() {
        assert!(simulate(&SimOptions { days: 0, ..small(1) }).is_err());
        assert!(simulate(&SimOptions { staff: 10, ..small(1) }).is_err());
        assert!(simulate(&SimOptions { patients: 100, ..small(1) }).is_err());
        assert!(simulate(&SimOptions { snoop_rate: 0.5, ..small(1) }).is_err());
        assert_eq!(SnoopKind::parse("self"), Some(SnoopKind::SelfAccess));
        assert_eq!(SnoopKind::parse("nope"), None);
        let none = simulate(&SimOptions { snoop_rate: 0.0, ..small(1) }).unwrap();
        assert!(none.labels.is_empty());
    }
}
