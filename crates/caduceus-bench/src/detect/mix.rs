//! The event mix of the detect benchmark: what a hospital's Windows and
//! Linux fleet sends a detection engine in a working day, generated
//! deterministically from a seed, with the SigmaHQ regression events as the
//! malicious fraction.
//!
//! Shares of the benign events (per mille), chosen after the volumes a
//! Sysmon-instrumented Windows estate produces (network connections, image
//! loads and file writes dominate after process starts):
//!
//! | kind | ‰ | form |
//! | --- | --- | --- |
//! | Sysmon 1 process_creation | 280 | evtx-JSON, with Image, CommandLine, ParentImage, ParentCommandLine, User, Hashes, IntegrityLevel, PE metadata |
//! | Sysmon 3 network_connection | 150 | evtx-JSON: browser, Office, EHR client, Citrix, domain traffic |
//! | Sysmon 11 file_event | 120 | evtx-JSON: caches, temp files, documents, prefetch |
//! | Sysmon 7 image_load | 120 | evtx-JSON: system DLLs with signatures and hashes |
//! | Sysmon 13 registry_set | 80 | evtx-JSON: Explorer MRUs, BAM, Office settings |
//! | Sysmon 22 dns_query | 80 | evtx-JSON: internet and internal names |
//! | Security 4624 logon | 50 | evtx-JSON: interactive, network, unlock, service, RDP |
//! | Security 4625 failed logon | 10 | evtx-JSON: bad passwords |
//! | Security 4688 process_creation | 40 | evtx-JSON, the same programs as Sysmon 1 |
//! | Linux process_creation | 35 | flat (Sysmon for Linux field names) |
//! | Linux auditd | 35 | flat auditd records (SYSCALL, EXECVE, PATH, USER_AUTH) |
//!
//! The malicious fraction (`MALICIOUS_PER_MILLE`, 1.5%) is the SigmaHQ
//! `regression_data` events (evtx-JSON recorded from real attacks, each
//! of which a named rule must fire on), cycled to fill their share. Every
//! benign event is distinct (process ids, GUIDs, times, ports, document
//! names vary); benign events may still fire broad, low-level rules
//! (PowerShell with `-ExecutionPolicy Bypass` from a scheduled task, for
//! one), as real estates do.

use std::path::Path;

use anyhow::Context as _;
use caduceus_core::Timestamp;
use rand::seq::{IndexedRandom as _, SliceRandom as _};
use rand::{Rng, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

/// Share of the pool taken by the regression (malicious) events, per mille.
pub const MALICIOUS_PER_MILLE: usize = 15;

/// 2025-03-03T07:00:00Z, a Monday morning: the first event's time.
const BASE_MS: i64 = 1_740_985_200_000;
/// Mean gap between events, in milliseconds.
const GAP_MS: i64 = 40;
/// Largest regression data file read.
const MAX_REGRESSION_FILE: u64 = 4 * 1024 * 1024;

/// What an event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    SysmonProcess,
    SysmonNetwork,
    SysmonFile,
    SysmonImageLoad,
    SysmonRegistry,
    SysmonDns,
    Logon,
    FailedLogon,
    SecurityProcess,
    LinuxProcess,
    LinuxAuditd,
    /// A SigmaHQ regression event: an attack a named rule must catch.
    Regression,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Self::SysmonProcess => "sysmon_process_creation",
            Self::SysmonNetwork => "sysmon_network_connection",
            Self::SysmonFile => "sysmon_file_event",
            Self::SysmonImageLoad => "sysmon_image_load",
            Self::SysmonRegistry => "sysmon_registry_set",
            Self::SysmonDns => "sysmon_dns_query",
            Self::Logon => "security_4624",
            Self::FailedLogon => "security_4625",
            Self::SecurityProcess => "security_4688",
            Self::LinuxProcess => "linux_process_creation",
            Self::LinuxAuditd => "linux_auditd",
            Self::Regression => "regression_malicious",
        }
    }
}

/// Benign kinds and their shares per mille (the table above).
const BENIGN_SHARES: [(Kind, usize); 11] = [
    (Kind::SysmonProcess, 280),
    (Kind::SysmonNetwork, 150),
    (Kind::SysmonFile, 120),
    (Kind::SysmonImageLoad, 120),
    (Kind::SysmonRegistry, 80),
    (Kind::SysmonDns, 80),
    (Kind::Logon, 50),
    (Kind::FailedLogon, 10),
    (Kind::SecurityProcess, 40),
    (Kind::LinuxProcess, 35),
    (Kind::LinuxAuditd, 35),
];

/// The Sigma log source of an event: what a shipper would label it with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub product: &'static str,
    pub service: Option<&'static str>,
    /// Sigma categories the event belongs to (a Sysmon 13 is both
    /// `registry_set` and `registry_event`); the first is its own.
    pub categories: &'static [&'static str],
}

impl Source {
    /// Whether a rule with this log source applies (every field the rule
    /// names must agree), as a backend's log source condition would do.
    pub fn admits(&self, product: Option<&str>, service: Option<&str>, category: Option<&str>) -> bool {
        product.is_none_or(|p| p.eq_ignore_ascii_case(self.product))
            && service.is_none_or(|s| self.service.is_some_and(|own| own.eq_ignore_ascii_case(s)))
            && category.is_none_or(|c| self.categories.iter().any(|own| own.eq_ignore_ascii_case(c)))
    }
}

/// One event of the pool.
#[derive(Clone, Debug)]
pub struct MixEvent {
    pub kind: Kind,
    pub source: Source,
    /// evtx-JSON (`{"Event":{"System":..,"EventData":..}}`) for Windows,
    /// a flat object for Linux.
    pub body: Value,
    pub time: Timestamp,
}

impl MixEvent {
    pub fn is_evtx(&self) -> bool {
        self.body.get("Event").is_some()
    }

    pub fn malicious(&self) -> bool {
        self.kind == Kind::Regression
    }

    /// The event as one flat object, the way Sigma backends for evtx see
    /// it: every leaf under its own (last) key, `System.Provider`'s name as
    /// `Provider_Name`, `EventData`/`UserData` winning over `System`.
    pub fn flat_fields(&self) -> Map<String, Value> {
        let mut out = Map::new();
        match self.body.get("Event") {
            Some(event) => {
                if let Some(system) = event.get("System") {
                    leaves(system, None, &mut out);
                    if let Some(name) = system.pointer("/Provider/#attributes/Name") {
                        out.insert("Provider_Name".to_owned(), name.clone());
                    }
                }
                for part in ["EventData", "UserData"] {
                    if let Some(data) = event.get(part) {
                        leaves(data, None, &mut out);
                    }
                }
                if self.source.service == Some("security") && self.source.categories.contains(&"process_creation") {
                    // Sigma names of the Security log's process fields
                    // (pySigma's audit pipeline), as our engine adds them.
                    for (from, to) in [
                        ("NewProcessName", "Image"),
                        ("ParentProcessName", "ParentImage"),
                        ("SubjectLogonId", "LogonId"),
                    ] {
                        if let Some(value) = out.get(from).cloned() {
                            out.entry(to).or_insert(value);
                        }
                    }
                }
            }
            None => leaves(&self.body, None, &mut out),
        }
        out
    }
}

/// Every scalar under `value` by its last key (`#attributes` is not a key).
fn leaves(value: &Value, key: Option<&str>, out: &mut Map<String, Value>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                leaves(v, if k == "#attributes" { key } else { Some(k) }, out);
            }
        }
        other => {
            if let Some(k) = key {
                out.insert(k.to_owned(), other.clone());
            }
        }
    }
}

/// The log source of a Windows event from its channel and event id.
pub fn windows_source(channel: &str, event_id: u64) -> Source {
    let service = match channel {
        "Microsoft-Windows-Sysmon/Operational" => Some("sysmon"),
        "Security" => Some("security"),
        "System" => Some("system"),
        "Application" => Some("application"),
        "Microsoft-Windows-Windows Defender/Operational" => Some("windefend"),
        "Microsoft-Windows-WMI-Activity/Operational" => Some("wmi"),
        "Microsoft-Windows-PowerShell/Operational" => Some("powershell"),
        "Windows PowerShell" => Some("powershell-classic"),
        "Microsoft-Windows-TaskScheduler/Operational" => Some("taskscheduler"),
        _ => None,
    };
    let categories: &'static [&'static str] = match (service, event_id) {
        (Some("sysmon"), 1) | (Some("security"), 4688) => &["process_creation"],
        (Some("sysmon"), 2) => &["file_change"],
        (Some("sysmon"), 3) => &["network_connection"],
        (Some("sysmon"), 5) => &["process_termination"],
        (Some("sysmon"), 6) => &["driver_load"],
        (Some("sysmon"), 7) => &["image_load"],
        (Some("sysmon"), 8) => &["create_remote_thread"],
        (Some("sysmon"), 9) => &["raw_access_thread"],
        (Some("sysmon"), 10) => &["process_access"],
        (Some("sysmon"), 11) => &["file_event"],
        (Some("sysmon"), 12) => &["registry_add", "registry_delete", "registry_event"],
        (Some("sysmon"), 13) => &["registry_set", "registry_event"],
        (Some("sysmon"), 14) => &["registry_rename", "registry_event"],
        (Some("sysmon"), 15) => &["create_stream_hash"],
        (Some("sysmon"), 4 | 16) => &["sysmon_status"],
        (Some("sysmon"), 17 | 18) => &["pipe_created"],
        (Some("sysmon"), 19..=21) => &["wmi_event"],
        (Some("sysmon"), 22) => &["dns_query"],
        (Some("sysmon"), 23 | 26) => &["file_delete"],
        (Some("sysmon"), 24) => &["clipboard_capture"],
        (Some("sysmon"), 25) => &["process_tampering"],
        (Some("sysmon"), 29) => &["file_executable_detected"],
        _ => &[],
    };
    Source { product: "windows", service, categories }
}

/// Read every regression event (files may hold several concatenated JSON
/// objects) under `dir`, sorted by path so the pool is the same each run.
pub fn load_regression(dir: &Path) -> anyhow::Result<Vec<Value>> {
    let mut files = Vec::new();
    collect_json(dir, &mut files).with_context(|| format!("listing {}", dir.display()))?;
    files.sort();
    let mut events = Vec::new();
    for file in files {
        let size = std::fs::metadata(&file)?.len();
        anyhow::ensure!(size <= MAX_REGRESSION_FILE, "{} is larger than {MAX_REGRESSION_FILE} bytes", file.display());
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        for value in serde_json::Deserializer::from_str(&text).into_iter::<Value>() {
            let value = value.with_context(|| format!("parsing {}", file.display()))?;
            anyhow::ensure!(value.get("Event").is_some(), "{} holds a record that is not evtx-JSON", file.display());
            events.push(value);
        }
    }
    anyhow::ensure!(!events.is_empty(), "no regression events under {}", dir.display());
    Ok(events)
}

fn collect_json(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_json(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}

/// A regression event as a pool member.
fn regression_event(value: &Value, time: Timestamp) -> MixEvent {
    let system = value.pointer("/Event/System");
    let channel = system.and_then(|s| s.get("Channel")).and_then(Value::as_str).unwrap_or_default();
    let event_id = system.and_then(|s| s.get("EventID")).and_then(Value::as_u64).unwrap_or_default();
    MixEvent { kind: Kind::Regression, source: windows_source(channel, event_id), body: value.clone(), time }
}

/// A pool of `size` events: `MALICIOUS_PER_MILLE` regression events
/// (cycled), the rest benign in the shares above, shuffled, one every
/// `GAP_MS` on average. The same seed gives the same pool.
pub fn generate(size: usize, seed: u64, regression: &[Value]) -> anyhow::Result<Vec<MixEvent>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let fleet = Fleet::new(&mut rng);
    let malicious = if regression.is_empty() { 0 } else { (size * MALICIOUS_PER_MILLE).div_ceil(1000).min(size) };
    let benign = size - malicious;
    let mut kinds: Vec<Kind> = Vec::with_capacity(size);
    for (kind, share) in BENIGN_SHARES {
        kinds.extend(std::iter::repeat_n(kind, benign * share / 1000));
    }
    // Rounding leftovers go to the commonest kind.
    kinds.resize(benign, Kind::SysmonProcess);
    kinds.extend(std::iter::repeat_n(Kind::Regression, malicious));
    kinds.shuffle(&mut rng);

    let mut pool = Vec::with_capacity(size);
    let mut time = BASE_MS;
    let mut next_regression = regression.iter().cycle();
    for (record_id, kind) in (1_000_000u64..).zip(kinds) {
        time += rng.random_range(0..=2 * GAP_MS);
        let at = Timestamp(time);
        let event = match kind {
            Kind::Regression => {
                let value = next_regression.next().context("no regression events")?;
                regression_event(value, at)
            }
            _ => fleet.benign(&mut rng, kind, at, record_id).context("an event table is empty")?,
        };
        pool.push(event);
    }
    Ok(pool)
}

// ----- the fleet ------------------------------------------------------------

const DOMAIN: &str = "STMARYS";
const DEPARTMENTS: [&str; 10] = ["ED", "ICU", "RAD", "LAB", "PHARM", "ONC", "PEDS", "ADMIN", "BILL", "OR"];
const SERVERS: [&str; 6] = ["SRV-EHR-APP01", "SRV-EHR-APP02", "SRV-FILE01", "SRV-PACS01", "SRV-PRINT01", "SRV-SQL01"];
const SURNAMES: [&str; 24] = [
    "smith", "jones", "patel", "nguyen", "garcia", "brown", "wilson", "khan", "murphy", "rossi", "kowalski", "cohen",
    "okafor", "silva", "martin", "lee", "walker", "hughes", "schmidt", "dubois", "novak", "ahmed", "kim", "oconnor",
];
const LINUX_HOSTS: [&str; 5] = ["lab-lis01", "pacs-gw01", "hl7-engine01", "web-portal01", "backup01"];
const DOCS: [&str; 10] = [
    "Discharge summary",
    "Rota March",
    "Audit findings Q4",
    "Theatre list",
    "Referral letter",
    "Budget 2025",
    "Infection control policy",
    "Handover notes",
    "Minutes board meeting",
    "Formulary update",
];

struct Host {
    name: String,
    ip: String,
    server: bool,
}

struct User {
    name: String,
    sid: String,
    logon_id: String,
}

/// The estate the benign events come from: workstations per department,
/// a few servers, staff accounts with SIDs.
struct Fleet {
    hosts: Vec<Host>,
    users: Vec<User>,
}

impl Fleet {
    fn new(rng: &mut impl Rng) -> Self {
        let mut hosts = Vec::new();
        for (d, dept) in DEPARTMENTS.iter().enumerate() {
            for n in 0..6u32 {
                let number = rng.random_range(1..400u32);
                hosts.push(Host {
                    name: format!("WS-{dept}-{number:04}.stmarys.local"),
                    ip: format!("10.30.{}.{}", d + 1, 10 + n * 7 + rng.random_range(0..7u32)),
                    server: false,
                });
            }
        }
        for (n, name) in SERVERS.iter().enumerate() {
            hosts.push(Host { name: format!("{name}.stmarys.local"), ip: format!("10.20.1.{}", 10 + n), server: true });
        }
        let domain_sid = format!(
            "S-1-5-21-{}-{}-{}",
            rng.random_range(1_000_000_000..4_000_000_000u64),
            rng.random_range(1_000_000_000..4_000_000_000u64),
            rng.random_range(100_000_000..999_999_999u64)
        );
        let mut users = Vec::new();
        for (n, surname) in SURNAMES.iter().enumerate() {
            for initial in ["a", "j", "m"] {
                users.push(User {
                    name: format!("{initial}{surname}"),
                    sid: format!("{domain_sid}-{}", 1100 + n * 3 + users.len() % 3),
                    logon_id: format!("0x{:x}", rng.random_range(0x10_0000..0x80_0000u32)),
                });
            }
        }
        Self { hosts, users }
    }

    fn benign(&self, rng: &mut impl Rng, kind: Kind, at: Timestamp, record_id: u64) -> Option<MixEvent> {
        let host = self.hosts.choose(rng)?;
        let user = self.users.choose(rng)?;
        let ctx = Ctx { host, user, at, record_id };
        let (source, body) = match kind {
            Kind::SysmonProcess => (windows_source(SYSMON, 1), sysmon_process(rng, &ctx)?),
            Kind::SysmonNetwork => (windows_source(SYSMON, 3), sysmon_network(rng, &ctx)?),
            Kind::SysmonFile => (windows_source(SYSMON, 11), sysmon_file(rng, &ctx)?),
            Kind::SysmonImageLoad => (windows_source(SYSMON, 7), sysmon_image_load(rng, &ctx)?),
            Kind::SysmonRegistry => (windows_source(SYSMON, 13), sysmon_registry(rng, &ctx)?),
            Kind::SysmonDns => (windows_source(SYSMON, 22), sysmon_dns(rng, &ctx)?),
            Kind::Logon => (windows_source("Security", 4624), logon(rng, &ctx, self)?),
            Kind::FailedLogon => (windows_source("Security", 4625), failed_logon(rng, &ctx)?),
            Kind::SecurityProcess => (windows_source("Security", 4688), security_process(rng, &ctx)?),
            Kind::LinuxProcess => (
                Source { product: "linux", service: None, categories: &["process_creation"] },
                linux_process(rng, &ctx)?,
            ),
            Kind::LinuxAuditd => {
                (Source { product: "linux", service: Some("auditd"), categories: &[] }, linux_auditd(rng, &ctx)?)
            }
            Kind::Regression => return None,
        };
        Some(MixEvent { kind, source, body, time: at })
    }
}

struct Ctx<'a> {
    host: &'a Host,
    user: &'a User,
    at: Timestamp,
    record_id: u64,
}

impl Ctx<'_> {
    fn account(&self) -> String {
        format!("{DOMAIN}\\{}", self.user.name)
    }

    /// `2025-03-03 07:00:01.234`, as Sysmon writes UtcTime.
    fn utc_time(&self) -> String {
        let rfc = self.at.to_rfc3339();
        let seconds = rfc.get(..19).unwrap_or_default().replace('T', " ");
        format!("{seconds}.{:03}", self.at.as_millis().rem_euclid(1000))
    }
}

// ----- values ---------------------------------------------------------------

fn guid(rng: &mut impl Rng) -> String {
    format!(
        "{:08X}-{:04X}-{:04X}-{:04X}-{:012X}",
        rng.random::<u32>(),
        rng.random::<u16>(),
        rng.random::<u16>(),
        rng.random::<u16>(),
        rng.random::<u64>() & 0xFFFF_FFFF_FFFF
    )
}

fn pid(rng: &mut impl Rng) -> u32 {
    rng.random_range(400..40_000u32) & !3
}

/// A stable fake digest of `text`, `hex` digits long: the same binary has
/// the same hash on every host (splitmix64 over an FNV-1a seed).
fn digest(text: &str, salt: u64, hex: usize) -> String {
    let mut state =
        text.bytes().fold(0xcbf2_9ce4_8422_2325u64 ^ salt, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let mut out = String::with_capacity(hex + 16);
    while out.len() < hex {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.push_str(&format!("{:016X}", z ^ (z >> 31)));
    }
    out.truncate(hex);
    out
}

fn hashes(image: &str) -> String {
    format!(
        "SHA1={},MD5={},SHA256={},IMPHASH={}",
        digest(image, 1, 40),
        digest(image, 2, 32),
        digest(image, 3, 64),
        digest(image, 4, 32)
    )
}

/// Fill a template: `{user}` the account name, `{doc}` a document name,
/// `{n}` a number, `{hex}` eight hex digits, `{guid}` a GUID (each
/// occurrence drawn anew).
fn fill(template: &str, rng: &mut impl Rng, ctx: &Ctx<'_>) -> String {
    let mut out = template.replace("{user}", &ctx.user.name);
    while let Some(at) = out.find("{doc}") {
        let doc = format!("{} {}", DOCS.choose(rng).copied().unwrap_or("Notes"), rng.random_range(1..500u32));
        out.replace_range(at..at + 5, &doc);
    }
    while let Some(at) = out.find("{n}") {
        out.replace_range(at..at + 3, &rng.random_range(1..100_000u32).to_string());
    }
    while let Some(at) = out.find("{hex}") {
        out.replace_range(at..at + 5, &format!("{:08x}", rng.random::<u32>()));
    }
    while let Some(at) = out.find("{guid}") {
        out.replace_range(at..at + 6, &guid(rng));
    }
    out
}

// ----- Windows --------------------------------------------------------------

const SYSMON: &str = "Microsoft-Windows-Sysmon/Operational";

/// The evtx-JSON envelope, as `evtx_dump -o json` writes it.
#[allow(clippy::too_many_arguments)]
fn evtx(
    provider: &str,
    provider_guid: &str,
    event_id: u32,
    version: u32,
    task: u32,
    channel: &str,
    ctx: &Ctx<'_>,
    user_sid: Option<&str>,
    data: Value,
) -> Value {
    json!({
        "Event": {
            "#attributes": {"xmlns": "http://schemas.microsoft.com/win/2004/08/events/event"},
            "System": {
                "Provider": {"#attributes": {"Name": provider, "Guid": provider_guid}},
                "EventID": event_id,
                "Version": version,
                "Level": 4,
                "Task": task,
                "Opcode": 0,
                "Keywords": if channel == "Security" { "0x8020000000000000" } else { "0x8000000000000000" },
                "TimeCreated": {"#attributes": {"SystemTime": ctx.at.to_rfc3339()}},
                "EventRecordID": ctx.record_id,
                "Correlation": null,
                "Execution": {"#attributes": {"ProcessID": 3308, "ThreadID": 4008}},
                "Channel": channel,
                "Computer": ctx.host.name,
                "Security": match user_sid {
                    Some(sid) => json!({"#attributes": {"UserID": sid}}),
                    None => Value::Null,
                },
            },
            "EventData": data,
        }
    })
}

fn sysmon(event_id: u32, version: u32, ctx: &Ctx<'_>, data: Value) -> Value {
    evtx(
        "Microsoft-Windows-Sysmon",
        "5770385F-C22A-43E0-BF4C-06F5698FFBD9",
        event_id,
        version,
        event_id,
        SYSMON,
        ctx,
        Some("S-1-5-18"),
        data,
    )
}

/// A program as it is started on a hospital workstation or server.
struct Program {
    weight: u32,
    image: &'static str,
    command_line: &'static str,
    parent: &'static str,
    parent_command_line: &'static str,
    description: &'static str,
    product: &'static str,
    company: &'static str,
    original: &'static str,
    version: &'static str,
    /// Runs as SYSTEM rather than as the signed-in member of staff.
    system: bool,
}

const MS: &str = "Microsoft Corporation";
const WINDOWS: &str = "Microsoft® Windows® Operating System";
const WIN_VERSION: &str = "10.0.19041.4355 (WinBuild.160101.0800)";
const CHROME: &str = "C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe";
const EDGE: &str = "C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\msedge.exe";
const EXPLORER: &str = "C:\\Windows\\explorer.exe";
const SVCHOST: &str = "C:\\Windows\\System32\\svchost.exe";
const OUTLOOK: &str = "C:\\Program Files\\Microsoft Office\\root\\Office16\\OUTLOOK.EXE";
const WINWORD: &str = "C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE";
const EPIC: &str = "C:\\Program Files (x86)\\Epic\\v10.4\\Shared Files\\EpicD104.exe";
const WFICA: &str = "C:\\Program Files (x86)\\Citrix\\ICA Client\\wfica32.exe";
const TEAMS: &str = "C:\\Users\\{user}\\AppData\\Local\\Microsoft\\Teams\\current\\Teams.exe";

const PROGRAMS: [Program; 24] = [
    Program {
        weight: 14,
        image: CHROME,
        command_line: "\"C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe\" --type=renderer --lang=en-GB --renderer-client-id={n} --time-ticks-at-unix-epoch=-{n} --launch-time-ticks={n} --mojo-platform-channel-handle={n} --field-trial-handle={n},i,{n},{n},262144 /prefetch:1",
        parent: CHROME,
        parent_command_line: "\"C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe\" ",
        description: "Google Chrome",
        product: "Google Chrome",
        company: "Google LLC",
        original: "chrome.exe",
        version: "122.0.6261.95",
        system: false,
    },
    Program {
        weight: 3,
        image: CHROME,
        command_line: "\"C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe\" ",
        parent: EXPLORER,
        parent_command_line: "C:\\Windows\\Explorer.EXE",
        description: "Google Chrome",
        product: "Google Chrome",
        company: "Google LLC",
        original: "chrome.exe",
        version: "122.0.6261.95",
        system: false,
    },
    Program {
        weight: 10,
        image: EDGE,
        command_line: "\"C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\msedge.exe\" --type=renderer --instant-process --lang=en-GB --js-flags=--ms-user-locale= --device-scale-factor=1 --num-raster-threads=2 --renderer-client-id={n} --mojo-platform-channel-handle={n} --field-trial-handle={n},i,{n},{n},262144 /prefetch:1",
        parent: EDGE,
        parent_command_line: "\"C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\msedge.exe\" --no-startup-window",
        description: "Microsoft Edge",
        product: "Microsoft Edge",
        company: MS,
        original: "msedge.exe",
        version: "122.0.2365.66",
        system: false,
    },
    Program {
        weight: 6,
        image: SVCHOST,
        command_line: "C:\\Windows\\system32\\svchost.exe -k netsvcs -p -s Schedule",
        parent: "C:\\Windows\\System32\\services.exe",
        parent_command_line: "C:\\Windows\\system32\\services.exe",
        description: "Host Process for Windows Services",
        product: WINDOWS,
        company: MS,
        original: "svchost.exe",
        version: WIN_VERSION,
        system: true,
    },
    Program {
        weight: 3,
        image: SVCHOST,
        command_line: "C:\\Windows\\System32\\svchost.exe -k LocalServiceNetworkRestricted -p -s EventLog",
        parent: "C:\\Windows\\System32\\services.exe",
        parent_command_line: "C:\\Windows\\system32\\services.exe",
        description: "Host Process for Windows Services",
        product: WINDOWS,
        company: MS,
        original: "svchost.exe",
        version: WIN_VERSION,
        system: true,
    },
    Program {
        weight: 4,
        image: "C:\\Windows\\System32\\conhost.exe",
        command_line: "\\??\\C:\\Windows\\system32\\conhost.exe 0xffffffff -ForceV1",
        parent: "C:\\Program Files (x86)\\StMarys\\LabelPrint\\labelprint.exe",
        parent_command_line: "\"C:\\Program Files (x86)\\StMarys\\LabelPrint\\labelprint.exe\" /queue ward",
        description: "Console Window Host",
        product: WINDOWS,
        company: MS,
        original: "CONHOST.EXE",
        version: WIN_VERSION,
        system: false,
    },
    Program {
        weight: 4,
        image: "C:\\Windows\\System32\\RuntimeBroker.exe",
        command_line: "C:\\Windows\\System32\\RuntimeBroker.exe -Embedding",
        parent: SVCHOST,
        parent_command_line: "C:\\Windows\\system32\\svchost.exe -k DcomLaunch -p",
        description: "Runtime Broker",
        product: WINDOWS,
        company: MS,
        original: "RuntimeBroker.exe",
        version: WIN_VERSION,
        system: false,
    },
    Program {
        weight: 2,
        image: "C:\\Windows\\System32\\backgroundTaskHost.exe",
        command_line: "\"C:\\Windows\\system32\\backgroundTaskHost.exe\" -ServerName:BackgroundTaskHost.WebAccountBackgroundTask",
        parent: SVCHOST,
        parent_command_line: "C:\\Windows\\system32\\svchost.exe -k DcomLaunch -p",
        description: "Background Task Host",
        product: WINDOWS,
        company: MS,
        original: "backgroundTaskHost.exe",
        version: WIN_VERSION,
        system: false,
    },
    Program {
        weight: 2,
        image: OUTLOOK,
        command_line: "\"C:\\Program Files\\Microsoft Office\\root\\Office16\\OUTLOOK.EXE\" ",
        parent: EXPLORER,
        parent_command_line: "C:\\Windows\\Explorer.EXE",
        description: "Microsoft Outlook",
        product: "Microsoft Outlook",
        company: MS,
        original: "Outlook.exe",
        version: "16.0.17328.20162",
        system: false,
    },
    Program {
        weight: 3,
        image: WINWORD,
        command_line: "\"C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE\" /n \"C:\\Users\\{user}\\Documents\\{doc}.docx\" /o \"\"",
        parent: EXPLORER,
        parent_command_line: "C:\\Windows\\Explorer.EXE",
        description: "Microsoft Word",
        product: "Microsoft Office",
        company: MS,
        original: "WinWord.exe",
        version: "16.0.17328.20162",
        system: false,
    },
    Program {
        weight: 2,
        image: "C:\\Program Files\\Microsoft Office\\root\\Office16\\EXCEL.EXE",
        command_line: "\"C:\\Program Files\\Microsoft Office\\root\\Office16\\EXCEL.EXE\" \"\\\\SRV-FILE01\\Departments\\Finance\\{doc}.xlsx\"",
        parent: EXPLORER,
        parent_command_line: "C:\\Windows\\Explorer.EXE",
        description: "Microsoft Excel",
        product: "Microsoft Office",
        company: MS,
        original: "Excel.exe",
        version: "16.0.17328.20162",
        system: false,
    },
    Program {
        weight: 4,
        image: EPIC,
        command_line: "\"C:\\Program Files (x86)\\Epic\\v10.4\\Shared Files\\EpicD104.exe\" env=PRD",
        parent: EXPLORER,
        parent_command_line: "C:\\Windows\\Explorer.EXE",
        description: "Hyperspace",
        product: "Epic",
        company: "Epic Systems Corporation",
        original: "EpicD104.exe",
        version: "10.4.2.0",
        system: false,
    },
    Program {
        weight: 2,
        image: WFICA,
        command_line: "\"C:\\Program Files (x86)\\Citrix\\ICA Client\\wfica32.exe\" \"C:\\Users\\{user}\\AppData\\Local\\Temp\\{n}.ica\"",
        parent: "C:\\Program Files (x86)\\Citrix\\ICA Client\\SelfServicePlugin\\SelfService.exe",
        parent_command_line: "\"C:\\Program Files (x86)\\Citrix\\ICA Client\\SelfServicePlugin\\SelfService.exe\" -ipoll",
        description: "Citrix HDX Engine",
        product: "Citrix Workspace",
        company: "Citrix Systems, Inc.",
        original: "wfica32.exe",
        version: "23.11.0.132",
        system: false,
    },
    Program {
        weight: 2,
        image: "C:\\Windows\\System32\\taskhostw.exe",
        command_line: "taskhostw.exe {{guid}}",
        parent: SVCHOST,
        parent_command_line: "C:\\Windows\\system32\\svchost.exe -k netsvcs -p -s Schedule",
        description: "Host Process for Windows Tasks",
        product: WINDOWS,
        company: MS,
        original: "taskhostw.exe",
        version: WIN_VERSION,
        system: false,
    },
    Program {
        weight: 2,
        image: "C:\\Windows\\System32\\SearchProtocolHost.exe",
        command_line: "\"C:\\Windows\\system32\\SearchProtocolHost.exe\" Global\\UsGthrFltPipeMssGthrPipe{n}_ Global\\UsGthrCtrlFltPipeMssGthrPipe{n} 1 -2147483646 \"Software\\Microsoft\\Windows Search\" \"Mozilla/4.0 (compatible; MSIE 6.0; Windows NT; MS Search 4.0 Robot)\" \"C:\\ProgramData\\Microsoft\\Search\\Data\\Temp\\usgthrsvc\" \"DownLevelDaemon\" ",
        parent: "C:\\Windows\\System32\\SearchIndexer.exe",
        parent_command_line: "C:\\Windows\\system32\\SearchIndexer.exe /Embedding",
        description: "Microsoft Windows Search Protocol Host",
        product: WINDOWS,
        company: MS,
        original: "SearchProtocolHost.exe",
        version: WIN_VERSION,
        system: true,
    },
    Program {
        weight: 3,
        image: "C:\\Windows\\System32\\dllhost.exe",
        command_line: "C:\\Windows\\system32\\DllHost.exe /Processid:{{guid}}",
        parent: SVCHOST,
        parent_command_line: "C:\\Windows\\system32\\svchost.exe -k DcomLaunch -p",
        description: "COM Surrogate",
        product: WINDOWS,
        company: MS,
        original: "dllhost.exe",
        version: WIN_VERSION,
        system: false,
    },
    Program {
        weight: 1,
        image: "C:\\Users\\{user}\\AppData\\Local\\Microsoft\\OneDrive\\OneDrive.exe",
        command_line: "\"C:\\Users\\{user}\\AppData\\Local\\Microsoft\\OneDrive\\OneDrive.exe\" /background",
        parent: EXPLORER,
        parent_command_line: "C:\\Windows\\Explorer.EXE",
        description: "Microsoft OneDrive",
        product: "Microsoft OneDrive",
        company: MS,
        original: "OneDrive.exe",
        version: "24.035.0218.0003",
        system: false,
    },
    Program {
        weight: 3,
        image: TEAMS,
        command_line: "\"C:\\Users\\{user}\\AppData\\Local\\Microsoft\\Teams\\current\\Teams.exe\" --type=renderer --autoplay-policy=no-user-gesture-required --lang=en-GB --renderer-client-id={n} --mojo-platform-channel-handle={n} /prefetch:1",
        parent: TEAMS,
        parent_command_line: "\"C:\\Users\\{user}\\AppData\\Local\\Microsoft\\Teams\\current\\Teams.exe\" --system-initiated",
        description: "Microsoft Teams",
        product: "Microsoft Teams",
        company: MS,
        original: "Teams.exe",
        version: "1.7.00.6058",
        system: false,
    },
    Program {
        weight: 1,
        image: "C:\\Windows\\splwow64.exe",
        command_line: "C:\\Windows\\splwow64.exe 12288",
        parent: WINWORD,
        parent_command_line: "\"C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE\" /n \"C:\\Users\\{user}\\Documents\\{doc}.docx\" /o \"\"",
        description: "Print driver host for applications",
        product: WINDOWS,
        company: MS,
        original: "splwow64.exe",
        version: WIN_VERSION,
        system: false,
    },
    Program {
        weight: 1,
        image: "C:\\Windows\\System32\\notepad.exe",
        command_line: "\"C:\\Windows\\system32\\NOTEPAD.EXE\" C:\\Users\\{user}\\Desktop\\{doc}.txt",
        parent: EXPLORER,
        parent_command_line: "C:\\Windows\\Explorer.EXE",
        description: "Notepad",
        product: WINDOWS,
        company: MS,
        original: "NOTEPAD.EXE",
        version: WIN_VERSION,
        system: false,
    },
    Program {
        weight: 2,
        image: "C:\\Program Files\\Adobe\\Acrobat DC\\Acrobat\\Acrobat.exe",
        command_line: "\"C:\\Program Files\\Adobe\\Acrobat DC\\Acrobat\\Acrobat.exe\" \"C:\\Users\\{user}\\Downloads\\{doc}.pdf\"",
        parent: EXPLORER,
        parent_command_line: "C:\\Windows\\Explorer.EXE",
        description: "Adobe Acrobat",
        product: "Adobe Acrobat",
        company: "Adobe Systems Incorporated",
        original: "Acrobat.exe",
        version: "24.1.20643.0",
        system: false,
    },
    Program {
        weight: 1,
        image: "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
        command_line: "\"C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe\" -NoProfile -ExecutionPolicy Bypass -File \"C:\\ProgramData\\StMarys\\IT\\inventory.ps1\"",
        parent: SVCHOST,
        parent_command_line: "C:\\Windows\\system32\\svchost.exe -k netsvcs -p -s Schedule",
        description: "Windows PowerShell",
        product: WINDOWS,
        company: MS,
        original: "PowerShell.EXE",
        version: WIN_VERSION,
        system: true,
    },
    Program {
        weight: 1,
        image: "C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.24020.7-0\\MpCmdRun.exe",
        command_line: "\"C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.24020.7-0\\MpCmdRun.exe\" SignatureUpdate -ScheduleJob -RestrictPrivileges",
        parent: SVCHOST,
        parent_command_line: "C:\\Windows\\system32\\svchost.exe -k netsvcs -p -s Schedule",
        description: "Microsoft Malware Protection Command Line Utility",
        product: WINDOWS,
        company: MS,
        original: "MpCmdRun.exe",
        version: "4.18.24020.7",
        system: true,
    },
    Program {
        weight: 1,
        image: "C:\\Windows\\System32\\msiexec.exe",
        command_line: "C:\\Windows\\system32\\msiexec.exe /V",
        parent: "C:\\Windows\\System32\\services.exe",
        parent_command_line: "C:\\Windows\\system32\\services.exe",
        description: "Windows® installer",
        product: "Windows Installer - Unicode",
        company: MS,
        original: "msiexec.exe",
        version: "5.0.19041.3636 (WinBuild.160101.0800)",
        system: true,
    },
];

/// Pick one item by its weight.
fn weighted<'a, T>(rng: &mut impl Rng, items: &'a [T], weight: impl Fn(&T) -> u32) -> Option<&'a T> {
    let total: u32 = items.iter().map(&weight).sum();
    let mut draw = rng.random_range(0..total.max(1));
    for item in items {
        let w = weight(item);
        if draw < w {
            return Some(item);
        }
        draw -= w;
    }
    None
}

/// A started process: the program and its filled-in details.
struct Started<'p> {
    program: &'p Program,
    image: String,
    command_line: String,
    parent_command_line: String,
    user: String,
    integrity: &'static str,
    logon_id: String,
}

fn start(rng: &mut impl Rng, ctx: &Ctx<'_>) -> Option<Started<'static>> {
    let program = weighted(rng, &PROGRAMS, |p| p.weight)?;
    let (user, integrity, logon_id) = if program.system || ctx.host.server {
        ("NT AUTHORITY\\SYSTEM".to_owned(), "System", "0x3e7".to_owned())
    } else {
        (ctx.account(), "Medium", ctx.user.logon_id.clone())
    };
    Some(Started {
        program,
        image: fill(program.image, rng, ctx),
        command_line: fill(program.command_line, rng, ctx),
        parent_command_line: fill(program.parent_command_line, rng, ctx),
        user,
        integrity,
        logon_id,
    })
}

fn sysmon_process(rng: &mut impl Rng, ctx: &Ctx<'_>) -> Option<Value> {
    let p = start(rng, ctx)?;
    let parent = fill(p.program.parent, rng, ctx);
    let current_directory =
        if p.program.system { "C:\\Windows\\system32\\".to_owned() } else { format!("C:\\Users\\{}\\", ctx.user.name) };
    let data = json!({
        "RuleName": "-",
        "UtcTime": ctx.utc_time(),
        "ProcessGuid": guid(rng),
        "ProcessId": pid(rng),
        "Image": p.image,
        "FileVersion": p.program.version,
        "Description": p.program.description,
        "Product": p.program.product,
        "Company": p.program.company,
        "OriginalFileName": p.program.original,
        "CommandLine": p.command_line,
        "CurrentDirectory": current_directory,
        "User": p.user,
        "LogonGuid": guid(rng),
        "LogonId": p.logon_id,
        "TerminalSessionId": if p.program.system { 0 } else { 1 },
        "IntegrityLevel": p.integrity,
        "Hashes": hashes(p.program.image),
        "ParentProcessGuid": guid(rng),
        "ParentProcessId": pid(rng),
        "ParentImage": parent,
        "ParentCommandLine": p.parent_command_line,
        "ParentUser": p.user,
    });
    Some(sysmon(1, 5, ctx, data))
}

fn security_process(rng: &mut impl Rng, ctx: &Ctx<'_>) -> Option<Value> {
    let p = start(rng, ctx)?;
    let (subject_sid, subject_name, subject_domain) = if p.program.system || ctx.host.server {
        ("S-1-5-18".to_owned(), ctx.host.name.split('.').next().unwrap_or_default().to_owned() + "$", DOMAIN)
    } else {
        (ctx.user.sid.clone(), ctx.user.name.clone(), DOMAIN)
    };
    let data = json!({
        "SubjectUserSid": subject_sid,
        "SubjectUserName": subject_name,
        "SubjectDomainName": subject_domain,
        "SubjectLogonId": p.logon_id,
        "NewProcessId": format!("0x{:x}", pid(rng)),
        "NewProcessName": p.image,
        "TokenElevationType": "%%1938",
        "ProcessId": format!("0x{:x}", pid(rng)),
        "CommandLine": p.command_line,
        "TargetUserSid": "S-1-0-0",
        "TargetUserName": "-",
        "TargetDomainName": "-",
        "TargetLogonId": "0x0",
        "ParentProcessName": fill(p.program.parent, rng, ctx),
        "MandatoryLabel": if p.program.system { "S-1-16-16384" } else { "S-1-16-8192" },
    });
    Some(security(4688, 2, 13312, ctx, data))
}

fn security(event_id: u32, version: u32, task: u32, ctx: &Ctx<'_>, data: Value) -> Value {
    evtx(
        "Microsoft-Windows-Security-Auditing",
        "{54849625-5478-4994-A5BA-3E3B0328C30D}",
        event_id,
        version,
        task,
        "Security",
        ctx,
        None,
        data,
    )
}

/// Destinations: image, host name, address, port, port name.
const DESTINATIONS: [(&str, &str, &str, u16, &str); 14] = [
    (CHROME, "www.google.com", "142.250.187.228", 443, "https"),
    (CHROME, "www.uptodate.com", "104.18.22.164", 443, "https"),
    (CHROME, "pubmed.ncbi.nlm.nih.gov", "130.14.29.110", 443, "https"),
    (EDGE, "www.bing.com", "13.107.21.200", 443, "https"),
    (EDGE, "login.microsoftonline.com", "20.190.160.20", 443, "https"),
    (OUTLOOK, "outlook.office365.com", "52.97.183.130", 443, "https"),
    (TEAMS, "teams.microsoft.com", "52.113.194.132", 443, "https"),
    (EPIC, "epic-prd.stmarys.local", "10.20.1.10", 443, "https"),
    (EPIC, "epic-prd.stmarys.local", "10.20.1.11", 443, "https"),
    (WFICA, "citrix-sf.stmarys.local", "10.20.2.5", 2598, "-"),
    (SVCHOST, "DC01.stmarys.local", "10.20.0.10", 389, "ldap"),
    ("C:\\Windows\\System32\\lsass.exe", "DC01.stmarys.local", "10.20.0.10", 88, "kerberos"),
    ("System", "SRV-FILE01.stmarys.local", "10.20.1.12", 445, "microsoft-ds"),
    (SVCHOST, "SRV-PRINT01.stmarys.local", "10.20.1.14", 135, "epmap"),
];

fn sysmon_network(rng: &mut impl Rng, ctx: &Ctx<'_>) -> Option<Value> {
    let (image, host, ip, port, port_name) = *DESTINATIONS.choose(rng)?;
    let system = image == SVCHOST || image == "System" || image.ends_with("lsass.exe");
    let data = json!({
        "RuleName": "-",
        "UtcTime": ctx.utc_time(),
        "ProcessGuid": guid(rng),
        "ProcessId": if image == "System" { 4 } else { pid(rng) },
        "Image": fill(image, rng, ctx),
        "User": if system { "NT AUTHORITY\\SYSTEM".to_owned() } else { ctx.account() },
        "Protocol": "tcp",
        "Initiated": true,
        "SourceIsIpv6": false,
        "SourceIp": ctx.host.ip,
        "SourceHostname": ctx.host.name,
        "SourcePort": rng.random_range(49_152..65_535u16),
        "SourcePortName": "-",
        "DestinationIsIpv6": false,
        "DestinationIp": ip,
        "DestinationHostname": host,
        "DestinationPort": port,
        "DestinationPortName": port_name,
    });
    Some(sysmon(3, 5, ctx, data))
}

/// File writes: image, target template.
const FILE_WRITES: [(&str, &str); 12] = [
    (CHROME, "C:\\Users\\{user}\\AppData\\Local\\Google\\Chrome\\User Data\\Default\\Cache\\Cache_Data\\f_{hex}"),
    (CHROME, "C:\\Users\\{user}\\AppData\\Local\\Google\\Chrome\\User Data\\Default\\Code Cache\\js\\{hex}_0"),
    (EDGE, "C:\\Users\\{user}\\AppData\\Local\\Microsoft\\Edge\\User Data\\Default\\Cache\\Cache_Data\\f_{hex}"),
    (WINWORD, "C:\\Users\\{user}\\AppData\\Local\\Microsoft\\Windows\\INetCache\\Content.Word\\~WRS{{guid}}.tmp"),
    (WINWORD, "C:\\Users\\{user}\\Documents\\{doc}.docx"),
    (OUTLOOK, "C:\\Users\\{user}\\AppData\\Local\\Microsoft\\Outlook\\{user}@stmarys.org.ost.tmp"),
    (SVCHOST, "C:\\Windows\\Prefetch\\CHROME.EXE-{hex}.pf"),
    (SVCHOST, "C:\\Windows\\Prefetch\\EPICD104.EXE-{hex}.pf"),
    (EPIC, "C:\\Users\\{user}\\AppData\\Local\\Temp\\Epic\\{n}.tmp"),
    (EPIC, "C:\\Users\\{user}\\AppData\\Roaming\\Epic\\Hyperspace\\Logs\\hs_{n}.log"),
    (
        TEAMS,
        "C:\\Users\\{user}\\AppData\\Roaming\\Microsoft\\Teams\\IndexedDB\\https_teams.microsoft.com_0.indexeddb.leveldb\\{n}.log",
    ),
    (EXPLORER, "C:\\Users\\{user}\\AppData\\Roaming\\Microsoft\\Windows\\Recent\\{doc}.lnk"),
];

fn sysmon_file(rng: &mut impl Rng, ctx: &Ctx<'_>) -> Option<Value> {
    let (image, target) = *FILE_WRITES.choose(rng)?;
    let data = json!({
        "RuleName": "-",
        "UtcTime": ctx.utc_time(),
        "ProcessGuid": guid(rng),
        "ProcessId": pid(rng),
        "Image": fill(image, rng, ctx),
        "TargetFilename": fill(target, rng, ctx),
        "CreationUtcTime": ctx.utc_time(),
        "User": if image == SVCHOST { "NT AUTHORITY\\SYSTEM".to_owned() } else { ctx.account() },
    });
    Some(sysmon(11, 2, ctx, data))
}

/// DLLs every process loads: file name, description.
const DLLS: [(&str, &str); 16] = [
    ("ntdll.dll", "NT Layer DLL"),
    ("kernel32.dll", "Windows NT BASE API Client DLL"),
    ("KernelBase.dll", "Windows NT BASE API Client DLL"),
    ("user32.dll", "Multi-User Windows USER API Client DLL"),
    ("combase.dll", "Microsoft COM for Windows"),
    ("ole32.dll", "Microsoft OLE for Windows"),
    ("advapi32.dll", "Advanced Windows 32 Base API"),
    ("ws2_32.dll", "Windows Socket 2.0 32-Bit DLL"),
    ("crypt32.dll", "Crypto API32"),
    ("winhttp.dll", "Windows HTTP Services"),
    ("mswsock.dll", "Microsoft Windows Sockets 2.0 Service Provider"),
    ("bcrypt.dll", "Windows Cryptographic Primitives Library"),
    ("rpcrt4.dll", "Remote Procedure Call Runtime"),
    ("sechost.dll", "Host for SCM/SDDL/LSA Lookup APIs"),
    ("uxtheme.dll", "Microsoft UxTheme Library"),
    ("dwmapi.dll", "Microsoft Desktop Window Manager API"),
];

fn sysmon_image_load(rng: &mut impl Rng, ctx: &Ctx<'_>) -> Option<Value> {
    let p = start(rng, ctx)?;
    let (dll, description) = *DLLS.choose(rng)?;
    let loaded = format!("C:\\Windows\\System32\\{dll}");
    let data = json!({
        "RuleName": "-",
        "UtcTime": ctx.utc_time(),
        "ProcessGuid": guid(rng),
        "ProcessId": pid(rng),
        "Image": p.image,
        "ImageLoaded": loaded,
        "FileVersion": WIN_VERSION,
        "Description": description,
        "Product": WINDOWS,
        "Company": MS,
        "OriginalFileName": dll,
        "Hashes": hashes(&loaded),
        "Signed": "true",
        "Signature": "Microsoft Windows",
        "SignatureStatus": "Valid",
        "User": p.user,
    });
    Some(sysmon(7, 3, ctx, data))
}

/// Registry writes: image, key template under the user's hive or HKLM,
/// details.
const REGISTRY_WRITES: [(&str, &str, &str); 8] = [
    (
        EXPLORER,
        "HKU\\{sid}\\Software\\Microsoft\\Windows\\CurrentVersion\\Explorer\\RecentDocs\\.docx\\{n}",
        "Binary Data",
    ),
    (
        EXPLORER,
        "HKU\\{sid}\\Software\\Microsoft\\Windows\\CurrentVersion\\Explorer\\UserAssist\\{CEBFF5CD-ACE2-4F4F-9178-9926F41749EA}\\Count\\{Q65231O0-O2S1-4857-N4PR-N8R7P6RN7Q27}\\RcvpQ104.rkr",
        "Binary Data",
    ),
    (
        SVCHOST,
        "HKLM\\System\\CurrentControlSet\\Services\\bam\\State\\UserSettings\\{sid}\\\\Device\\HarddiskVolume3\\Program Files (x86)\\Epic\\v10.4\\Shared Files\\EpicD104.exe",
        "Binary Data",
    ),
    (
        OUTLOOK,
        "HKU\\{sid}\\Software\\Microsoft\\Office\\16.0\\Outlook\\Profiles\\Outlook\\{hex}{hex}\\{hex}",
        "Binary Data",
    ),
    (WINWORD, "HKU\\{sid}\\Software\\Microsoft\\Office\\16.0\\Word\\Reading Locations\\Document {n}\\Position", "15 0"),
    (
        WINWORD,
        "HKU\\{sid}\\Software\\Microsoft\\Office\\16.0\\Common\\Roaming\\Identities\\{hex}_ADAL\\LastSwitchedTime",
        "QWORD (0x01da6d4b-0x{hex})",
    ),
    (CHROME, "HKU\\{sid}\\Software\\Google\\Chrome\\BLBeacon\\state", "DWORD (0x00000001)"),
    (EPIC, "HKU\\{sid}\\Software\\Epic Systems Corporation\\Hyperspace\\LastLogin", "DWORD (0x00000001)"),
];

fn sysmon_registry(rng: &mut impl Rng, ctx: &Ctx<'_>) -> Option<Value> {
    let (image, key, details) = *REGISTRY_WRITES.choose(rng)?;
    let key = key.replace("{sid}", &ctx.user.sid);
    let data = json!({
        "RuleName": "-",
        "EventType": "SetValue",
        "UtcTime": ctx.utc_time(),
        "ProcessGuid": guid(rng),
        "ProcessId": pid(rng),
        "Image": image,
        "TargetObject": fill(&key, rng, ctx),
        "Details": fill(details, rng, ctx),
        "User": if image == SVCHOST { "NT AUTHORITY\\SYSTEM".to_owned() } else { ctx.account() },
    });
    Some(sysmon(13, 2, ctx, data))
}

/// DNS queries: image, name, answer.
const QUERIES: [(&str, &str, &str); 12] = [
    (CHROME, "www.google.com", "::ffff:142.250.187.228;"),
    (CHROME, "clients2.google.com", "type:  5 clients.l.google.com;::ffff:142.250.180.14;"),
    (CHROME, "www.uptodate.com", "::ffff:104.18.22.164;"),
    (EDGE, "www.bing.com", "type:  5 www-bing-com.dual-a-0001.a-msedge.net;::ffff:13.107.21.200;"),
    (EDGE, "login.microsoftonline.com", "type:  5 login.mso.msidentity.com;::ffff:20.190.160.20;"),
    (OUTLOOK, "outlook.office365.com", "type:  5 outlook.ms-acdc.office.com;::ffff:52.97.183.130;"),
    (TEAMS, "teams.microsoft.com", "type:  5 teams-office-com.s-0005.s-msedge.net;::ffff:52.113.194.132;"),
    (EPIC, "epic-prd.stmarys.local", "::ffff:10.20.1.10;"),
    (WFICA, "citrix-sf.stmarys.local", "::ffff:10.20.2.5;"),
    (
        SVCHOST,
        "settings-win.data.microsoft.com",
        "type:  5 atm-settingsfe-prod-geo.trafficmanager.net;::ffff:51.104.15.252;",
    ),
    (SVCHOST, "ctldl.windowsupdate.com", "type:  5 wu-bg-shim.trafficmanager.net;::ffff:93.184.221.240;"),
    (SVCHOST, "DC01.stmarys.local", "::ffff:10.20.0.10;"),
];

fn sysmon_dns(rng: &mut impl Rng, ctx: &Ctx<'_>) -> Option<Value> {
    let (image, name, answer) = *QUERIES.choose(rng)?;
    let data = json!({
        "RuleName": "-",
        "UtcTime": ctx.utc_time(),
        "ProcessGuid": guid(rng),
        "ProcessId": pid(rng),
        "QueryName": name,
        "QueryStatus": "0",
        "QueryResults": answer,
        "Image": fill(image, rng, ctx),
        "User": if image == SVCHOST { "NT AUTHORITY\\NETWORK SERVICE".to_owned() } else { ctx.account() },
    });
    Some(sysmon(22, 5, ctx, data))
}

/// Logon kinds: type, process, package, weight.
const LOGONS: [(u32, &str, &str, u32); 5] = [
    (3, "Kerberos", "Kerberos", 55),
    (2, "User32 ", "Negotiate", 15),
    (7, "User32 ", "Negotiate", 15),
    (5, "Advapi  ", "Negotiate", 12),
    (10, "User32 ", "Negotiate", 3),
];

fn logon(rng: &mut impl Rng, ctx: &Ctx<'_>, fleet: &Fleet) -> Option<Value> {
    let (logon_type, process, package, _) = *weighted(rng, &LOGONS, |l| l.3)?;
    let service = logon_type == 5;
    let (target_sid, target_user, target_domain) = if service {
        ("S-1-5-18".to_owned(), "SYSTEM".to_owned(), "NT AUTHORITY")
    } else {
        (ctx.user.sid.clone(), ctx.user.name.clone(), DOMAIN)
    };
    let from = fleet.hosts.choose(rng)?;
    let (ip, port, workstation) = match logon_type {
        3 | 10 => (
            from.ip.clone(),
            rng.random_range(49_152..65_535u16).to_string(),
            from.name.split('.').next().unwrap_or("-").to_owned(),
        ),
        2 | 7 => ("127.0.0.1".to_owned(), "0".to_owned(), ctx.host.name.split('.').next().unwrap_or("-").to_owned()),
        _ => ("-".to_owned(), "-".to_owned(), "-".to_owned()),
    };
    let data = json!({
        "SubjectUserSid": if logon_type == 3 { "S-1-0-0" } else { "S-1-5-18" },
        "SubjectUserName": if logon_type == 3 { "-".to_owned() } else { ctx.host.name.split('.').next().unwrap_or_default().to_owned() + "$" },
        "SubjectDomainName": if logon_type == 3 { "-" } else { DOMAIN },
        "SubjectLogonId": if logon_type == 3 { "0x0" } else { "0x3e7" },
        "TargetUserSid": target_sid,
        "TargetUserName": target_user,
        "TargetDomainName": target_domain,
        "TargetLogonId": format!("0x{:x}", rng.random_range(0x10_0000..0x8000_0000u32)),
        "LogonType": logon_type,
        "LogonProcessName": process,
        "AuthenticationPackageName": package,
        "WorkstationName": workstation,
        "LogonGuid": format!("{{{}}}", guid(rng)),
        "TransmittedServices": "-",
        "LmPackageName": "-",
        "KeyLength": 0,
        "ProcessId": if logon_type == 3 { "0x0".to_owned() } else { format!("0x{:x}", pid(rng)) },
        "ProcessName": match logon_type {
            3 => "-",
            5 => "C:\\Windows\\System32\\services.exe",
            _ => "C:\\Windows\\System32\\svchost.exe",
        },
        "IpAddress": ip,
        "IpPort": port,
        "ImpersonationLevel": "%%1833",
        "RestrictedAdminMode": "-",
        "TargetOutboundUserName": "-",
        "TargetOutboundDomainName": "-",
        "VirtualAccount": "%%1843",
        "TargetLinkedLogonId": "0x0",
        "ElevatedToken": if service { "%%1842" } else { "%%1843" },
    });
    Some(security(4624, 2, 12544, ctx, data))
}

fn failed_logon(rng: &mut impl Rng, ctx: &Ctx<'_>) -> Option<Value> {
    let interactive = rng.random_bool(0.6);
    let data = json!({
        "SubjectUserSid": if interactive { "S-1-5-18" } else { "S-1-0-0" },
        "SubjectUserName": if interactive { ctx.host.name.split('.').next().unwrap_or_default().to_owned() + "$" } else { "-".to_owned() },
        "SubjectDomainName": if interactive { DOMAIN } else { "-" },
        "SubjectLogonId": if interactive { "0x3e7" } else { "0x0" },
        "TargetUserSid": "S-1-0-0",
        "TargetUserName": ctx.user.name,
        "TargetDomainName": DOMAIN,
        "Status": "0xc000006d",
        "FailureReason": "%%2313",
        "SubStatus": "0xc000006a",
        "LogonType": if interactive { 2 } else { 3 },
        "LogonProcessName": if interactive { "User32 " } else { "NtLmSsp " },
        "AuthenticationPackageName": if interactive { "Negotiate" } else { "NTLM" },
        "WorkstationName": ctx.host.name.split('.').next().unwrap_or("-"),
        "TransmittedServices": "-",
        "LmPackageName": "-",
        "KeyLength": 0,
        "ProcessId": if interactive { format!("0x{:x}", pid(rng)) } else { "0x0".to_owned() },
        "ProcessName": if interactive { "C:\\Windows\\System32\\svchost.exe" } else { "-" },
        "IpAddress": if interactive { "127.0.0.1" } else { ctx.host.ip.as_str() },
        "IpPort": if interactive { "0".to_owned() } else { rng.random_range(49_152..65_535u16).to_string() },
    });
    Some(security(4625, 0, 12544, ctx, data))
}

// ----- Linux ----------------------------------------------------------------

/// Linux processes: image, command line, parent image, parent command
/// line, user, working directory.
const LINUX_PROGRAMS: [(&str, &str, &str, &str, &str, &str); 12] = [
    (
        "/usr/bin/python3",
        "/usr/bin/python3 /opt/hl7/engine.py --channel adt-{n}",
        "/usr/lib/systemd/systemd",
        "/sbin/init",
        "hl7",
        "/opt/hl7",
    ),
    (
        "/usr/bin/bash",
        "/bin/bash /opt/lis/bin/export_results.sh",
        "/usr/sbin/cron",
        "/usr/sbin/cron -f -P",
        "lis",
        "/opt/lis",
    ),
    (
        "/usr/bin/gzip",
        "gzip -9 /var/log/lis/results-{n}.log",
        "/usr/bin/bash",
        "/bin/bash /opt/lis/bin/export_results.sh",
        "lis",
        "/var/log/lis",
    ),
    (
        "/usr/sbin/sshd",
        "sshd: {user} [priv]",
        "/usr/sbin/sshd",
        "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups",
        "root",
        "/",
    ),
    ("/usr/bin/systemctl", "systemctl status nginx.service", "/usr/bin/bash", "-bash", "{user}", "/home/{user}"),
    ("/usr/bin/ls", "ls -la /var/log/nginx", "/usr/bin/bash", "-bash", "{user}", "/home/{user}"),
    ("/usr/bin/grep", "grep -c ERROR /var/log/nginx/error.log", "/usr/bin/bash", "-bash", "{user}", "/home/{user}"),
    ("/usr/bin/tail", "tail -n 200 /var/log/hl7/engine.log", "/usr/bin/bash", "-bash", "{user}", "/home/{user}"),
    (
        "/usr/sbin/logrotate",
        "/usr/sbin/logrotate /etc/logrotate.conf",
        "/usr/lib/systemd/systemd",
        "/sbin/init",
        "root",
        "/",
    ),
    (
        "/usr/bin/rsync",
        "rsync -a --delete /srv/pacs/outgoing/ backup01:/srv/pacs/{n}/",
        "/usr/sbin/cron",
        "/usr/sbin/cron -f -P",
        "pacs",
        "/srv/pacs",
    ),
    (
        "/usr/lib/postgresql/15/bin/postgres",
        "postgres: 15/main: portal portal 127.0.0.1(4{n}) idle",
        "/usr/lib/postgresql/15/bin/postgres",
        "/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main",
        "postgres",
        "/var/lib/postgresql/15/main",
    ),
    (
        "/usr/sbin/nginx",
        "nginx: worker process",
        "/usr/sbin/nginx",
        "nginx: master process /usr/sbin/nginx -g daemon on; master_process on;",
        "www-data",
        "/",
    ),
];

fn linux_process(rng: &mut impl Rng, ctx: &Ctx<'_>) -> Option<Value> {
    let (image, command_line, parent, parent_command_line, user, cwd) = *LINUX_PROGRAMS.choose(rng)?;
    let host = LINUX_HOSTS.choose(rng)?;
    Some(json!({
        "UtcTime": ctx.utc_time(),
        "Computer": host,
        "ProcessGuid": guid(rng),
        "ProcessId": pid(rng),
        "Image": image,
        "FileVersion": "-",
        "Description": "-",
        "Product": "-",
        "Company": "-",
        "OriginalFileName": "-",
        "CommandLine": fill(command_line, rng, ctx),
        "CurrentDirectory": fill(cwd, rng, ctx),
        "User": fill(user, rng, ctx),
        "LogonGuid": guid(rng),
        "LogonId": rng.random_range(0..2000u32),
        "TerminalSessionId": rng.random_range(0..500u32),
        "IntegrityLevel": "no level",
        "Hashes": "-",
        "ParentProcessGuid": guid(rng),
        "ParentProcessId": pid(rng),
        "ParentImage": parent,
        "ParentCommandLine": parent_command_line,
        "ParentUser": fill(user, rng, ctx),
    }))
}

fn linux_auditd(rng: &mut impl Rng, ctx: &Ctx<'_>) -> Option<Value> {
    let host = LINUX_HOSTS.choose(rng)?;
    let serial = ctx.record_id;
    let msg = format!("audit({}.{:03}:{serial})", ctx.at.as_millis() / 1000, ctx.at.as_millis().rem_euclid(1000));
    let uid = 1000 + rng.random_range(0..40u32);
    let record = match rng.random_range(0..4u32) {
        0 => {
            let (exe, comm) = *[
                ("/usr/bin/ls", "ls"),
                ("/usr/bin/gzip", "gzip"),
                ("/usr/bin/python3.11", "python3"),
                ("/usr/bin/rsync", "rsync"),
            ]
            .choose(rng)?;
            json!({
                "type": "SYSCALL", "msg": msg, "arch": "c000003e", "syscall": "59", "success": "yes", "exit": "0",
                "a0": format!("{:x}", rng.random::<u32>()), "a1": format!("{:x}", rng.random::<u32>()), "a2": format!("{:x}", rng.random::<u32>()), "a3": "0",
                "items": "2", "ppid": pid(rng).to_string(), "pid": pid(rng).to_string(), "auid": uid.to_string(), "uid": uid.to_string(),
                "gid": uid.to_string(), "euid": uid.to_string(), "suid": uid.to_string(), "fsuid": uid.to_string(), "egid": uid.to_string(),
                "sgid": uid.to_string(), "fsgid": uid.to_string(), "tty": "(none)", "ses": rng.random_range(1..900u32).to_string(),
                "comm": comm, "exe": exe, "key": "exec", "host": host,
            })
        }
        1 => {
            let args: &[&str] = [
                &["gzip", "-9", "/var/log/lis/results.log"][..],
                &["ls", "-la", "/srv/pacs/outgoing"][..],
                &["python3", "/opt/hl7/engine.py"][..],
            ]
            .choose(rng)
            .copied()?;
            let mut record = json!({"type": "EXECVE", "msg": msg, "argc": args.len().to_string(), "host": host});
            if let Some(map) = record.as_object_mut() {
                for (i, arg) in args.iter().enumerate() {
                    map.insert(format!("a{i}"), Value::String((*arg).to_owned()));
                }
            }
            record
        }
        2 => json!({
            "type": "PATH", "msg": msg, "item": "0", "name": fill("/var/log/lis/results-{n}.log", rng, ctx),
            "inode": rng.random_range(100_000..9_000_000u32).to_string(), "dev": "fd:01", "mode": "0100640", "ouid": uid.to_string(), "ogid": uid.to_string(),
            "rdev": "00:00", "nametype": "NORMAL", "cap_fp": "0", "cap_fi": "0", "cap_fe": "0", "cap_fver": "0", "host": host,
        }),
        _ => json!({
            "type": "USER_AUTH", "msg": msg, "pid": pid(rng).to_string(), "uid": "0", "auid": "4294967295", "ses": "4294967295",
            "subj": "unconfined",
            "op": "PAM:authentication", "grantors": "pam_unix", "acct": ctx.user.name, "exe": "/usr/sbin/sshd",
            "hostname": ctx.host.ip, "addr": ctx.host.ip, "terminal": "ssh", "res": "success", "host": host,
        }),
    };
    Some(record)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

    use super::*;

    fn regression() -> Vec<Value> {
        load_regression(Path::new(crate::detect::REGRESSION_DIR)).unwrap()
    }

    #[test]
    fn the_pool_is_deterministic_and_has_the_mix() {
        let regression = regression();
        assert!(regression.len() >= 101, "{} regression events", regression.len());
        let a = generate(4000, 7, &regression).unwrap();
        let b = generate(4000, 7, &regression).unwrap();
        assert_eq!(a.len(), 4000);
        assert!(a.iter().zip(&b).all(|(x, y)| x.body == y.body && x.time == y.time));
        let c = generate(4000, 8, &regression).unwrap();
        assert!(a.iter().zip(&c).any(|(x, y)| x.body != y.body), "another seed, another pool");

        let malicious = a.iter().filter(|e| e.malicious()).count();
        assert_eq!(malicious, 60, "1.5% of 4000");
        let process = a.iter().filter(|e| e.kind == Kind::SysmonProcess).count();
        assert!((1090..=1120).contains(&process), "{process} Sysmon process creations");
        for kind in BENIGN_SHARES.map(|(k, _)| k) {
            assert!(a.iter().any(|e| e.kind == kind), "{kind:?} missing");
        }
        let distinct: std::collections::HashSet<String> =
            a.iter().filter(|e| !e.malicious()).map(|e| e.body.to_string()).collect();
        assert_eq!(distinct.len(), 4000 - malicious, "benign events are distinct");
        assert!(a.windows(2).all(|w| w[0].time <= w[1].time));
    }

    #[test]
    fn events_flatten_the_way_sigma_backends_see_them() {
        let pool = generate(2000, 1, &regression()).unwrap();
        let process = pool.iter().find(|e| e.kind == Kind::SysmonProcess).unwrap();
        let flat = process.flat_fields();
        assert_eq!(flat["EventID"], 1);
        assert_eq!(flat["Channel"], SYSMON);
        assert_eq!(flat["Provider_Name"], "Microsoft-Windows-Sysmon");
        assert!(flat["Image"].as_str().unwrap().ends_with(".exe"), "{flat:?}");
        assert!(flat["Hashes"].as_str().unwrap().starts_with("SHA1="));
        assert!(flat["ParentImage"].is_string() && flat["CommandLine"].is_string() && flat["User"].is_string());
        assert_eq!(process.source.categories, ["process_creation"]);
        assert!(process.source.admits(Some("windows"), None, Some("process_creation")));
        assert!(!process.source.admits(Some("windows"), Some("security"), None));
        assert!(!process.source.admits(Some("linux"), None, Some("process_creation")));

        let registry = pool.iter().find(|e| e.kind == Kind::SysmonRegistry).unwrap();
        assert!(registry.source.admits(None, None, Some("registry_event")));
        let auditd = pool.iter().find(|e| e.kind == Kind::LinuxAuditd).unwrap();
        assert!(auditd.source.admits(Some("linux"), Some("auditd"), None) && !auditd.is_evtx());
        assert!(auditd.flat_fields().contains_key("type"));
        let utc = process.flat_fields()["UtcTime"].as_str().unwrap().to_owned();
        assert_eq!(utc.len(), 23, "{utc}");
    }
}
