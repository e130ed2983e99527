//! The SigmaHQ corpus: every valid rule loads, the regression cases fire
//! their rule and only theirs, and the index never loses a match.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use caduceus_detect::sigma::{Event, LoadReport, LogSource, RuleSet};
use serde_json::{Value, json};

const SIGMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/sigma/sigma-rules");
const DIRS: [&str; 5] =
    ["rules", "rules-emerging-threats", "rules-threat-hunting", "rules-placeholder", "rules-compliance"];

fn corpus() -> &'static (RuleSet, LoadReport) {
    static CORPUS: OnceLock<(RuleSet, LoadReport)> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let dirs: Vec<PathBuf> = DIRS.iter().map(|d| Path::new(SIGMA).join(d)).collect();
        let (rules, report) = RuleSet::load_dirs(&dirs);
        rules.prepare();
        (rules, report)
    })
}

/// Every JSON value in a file (some hold several events back to back).
fn json_values(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::Deserializer::from_str(&text).into_iter::<Value>().map(Result::unwrap).collect()
}

struct Case {
    dir: PathBuf,
    rule_id: String,
    events: Vec<Event>,
}

fn cases() -> &'static Vec<Case> {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    CASES.get_or_init(|| {
        let mut infos = Vec::new();
        walk(&Path::new(SIGMA).join("regression_data"), &mut infos);
        infos.sort();
        infos
            .into_iter()
            .map(|info| {
                let yaml: serde_norway::Value =
                    serde_norway::from_str(&std::fs::read_to_string(&info).unwrap()).unwrap();
                let rule_id = yaml["rule_metadata"][0]["id"].as_str().unwrap().to_owned();
                let dir = info.parent().unwrap().to_owned();
                let mut events = Vec::new();
                for entry in std::fs::read_dir(&dir).unwrap() {
                    let path = entry.unwrap().path();
                    if path.extension().is_some_and(|e| e == "json") {
                        for value in json_values(&path) {
                            events.push(Event::from_evtx_json(&value).expect("evtx event"));
                        }
                    }
                }
                Case { dir, rule_id, events }
            })
            .collect()
    })
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.file_name().is_some_and(|n| n == "info.yml") {
            out.push(path);
        }
    }
}

#[test]
fn corpus_loads() {
    let (rules, report) = corpus();
    for error in &report.errors {
        eprintln!("not loaded: {error}");
    }
    eprintln!("loaded {} rules, {} errors, index {:?}", report.loaded, report.errors.len(), rules.prepare());
    let mut files = Vec::new();
    for dir in DIRS {
        collect_yml(&Path::new(SIGMA).join(dir), &mut files);
    }
    // Every rule of the corpus is valid Sigma and loads (one file, one rule).
    assert!(report.errors.is_empty(), "{} rules did not load", report.errors.len());
    assert_eq!(report.loaded, files.len());
    assert_eq!(rules.len(), files.len());
}

#[test]
fn regression_cases_fire_their_rule_and_only_theirs() {
    let (rules, _) = corpus();
    let cases = cases();
    assert_eq!(cases.len(), 102);
    let mut out = Vec::new();
    let mut fired: Vec<BTreeSet<String>> = Vec::new();
    let mut missing = Vec::new();
    let mut without_events = Vec::new();
    for case in cases {
        let mut ids = BTreeSet::new();
        for event in &case.events {
            rules.matches(event, &mut out);
            ids.extend(out.iter().map(|&i| rules.rule_at(i).unwrap().id.clone()));
        }
        if case.events.is_empty() {
            without_events.push(case.dir.display().to_string());
        } else if rules.rule(&case.rule_id).is_none() || !ids.contains(&case.rule_id) {
            missing.push(format!("{} (rule {})", case.dir.display(), case.rule_id));
        }
        fired.push(ids);
    }
    assert!(missing.is_empty(), "named rule did not fire: {missing:#?}");
    // One case ships no event: its info.yml comments its test out (a raw
    // Cisco CLI log, not evtx).
    assert_eq!(without_events.len(), 1, "{without_events:?}");
    assert!(without_events[0].contains("cisco_cli_dot1x_disabled"));

    // No case fires another case's rule, except where SigmaHQ itself has a
    // generic and a specific rule for the same behaviour and the case's
    // event satisfies both (each checked by hand against both rules).
    let overlaps: BTreeSet<(&str, &str)> = [
        // The NetExec drop includes `\procdump.exe`: also a dropped dumping tool.
        ("file_event_win_hktl_netexec_file_indicators", "8fbf3271-1ef6-4e94-8210-03c2317947f6"),
        // `bitsadmin /transfer` from github.com to C:\Users\Public\: the
        // file-sharing, suspicious-folder and generic download rules all hold.
        ("proc_creation_win_bitsadmin_download_file_sharing_domains", "2ddef153-167b-4e89-86b6-757a9e65dcac"),
        ("proc_creation_win_bitsadmin_download_file_sharing_domains", "d059842b-6b9d-4ed1-b5c3-5b89143c6ede"),
        ("proc_creation_win_bitsadmin_download_susp_targetfolder", "8518ed3d-f7c9-4601-a26c-f361a4256a0c"),
        ("proc_creation_win_bitsadmin_download_susp_targetfolder", "d059842b-6b9d-4ed1-b5c3-5b89143c6ede"),
        // Chrome `--load-extension=` under cmd.exe: the generic and the
        // suspicious-parent rules.
        ("proc_creation_win_browsers_chromium_load_extension", "27ba3207-dd30-4812-abbf-5d20c57d474e"),
        ("proc_creation_win_browsers_chromium_susp_load_extension", "88d6e60c-759d-4ac1-a447-c0f1466c2d21"),
        // `certutil -encode` of a file in AppData: also plain `-encode`.
        ("proc_creation_win_certutil_encode_susp_location", "e62a9f0c-ca1e-46b2-85d5-a6da77f86d1a"),
        // `wmic service get ...pathname`: also generic service recon.
        ("proc_creation_win_wmic_recon_unquoted_service_search", "76f55eaa-d27f-4213-9d45-7b0e4b60bbae"),
        // `wmic /node:.. process call create`: also generic process creation.
        ("proc_creation_win_wmic_remote_execution", "526be59f-a573-4eea-b5f7-f0973207634d"),
        ("proc_creation_win_wmic_susp_process_creation", "526be59f-a573-4eea-b5f7-f0973207634d"),
        // A Sysinternals `EulaAccepted` value: the generic and the
        // suspicious-tool rules.
        ("registry_set_pua_sysinternals_execution_via_eula", "c7da8edc-49ae-45a2-9e61-9fd860e4e73d"),
        ("registry_set_pua_sysinternals_susp_execution_via_eula", "25ffa65d-76d8-4da5-a832-3f2b0136e133"),
    ]
    .into_iter()
    .collect();
    let named: BTreeSet<&str> = cases.iter().map(|c| c.rule_id.as_str()).collect();
    let mut cross = BTreeSet::new();
    for (case, ids) in cases.iter().zip(&fired) {
        let case_name = case.dir.file_name().unwrap().to_str().unwrap();
        for id in ids.iter().filter(|id| named.contains(id.as_str()) && **id != case.rule_id) {
            cross.insert((case_name, id.as_str()));
        }
    }
    let unexpected: Vec<_> = cross.difference(&overlaps).collect();
    assert!(unexpected.is_empty(), "a case fired another case's rule: {unexpected:#?}");
    let gone: Vec<_> = overlaps.difference(&cross).collect();
    assert!(gone.is_empty(), "an expected overlap no longer fires: {gone:#?}");
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// What the corpus asks of events, read straight from the YAML (not from
/// the engine): per log source, the fields rules name and fragments of
/// the values they look for.
type SourceKey = (Option<String>, Option<String>, Option<String>);

fn corpus_vocabulary() -> BTreeMap<SourceKey, BTreeMap<String, Vec<String>>> {
    let mut files = Vec::new();
    for dir in DIRS {
        collect_yml(&Path::new(SIGMA).join(dir), &mut files);
    }
    let mut vocab: BTreeMap<_, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for file in files {
        let yaml: serde_norway::Value = serde_norway::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let ls = &yaml["logsource"];
        let part = |k: &str| ls[k].as_str().map(str::to_owned);
        let key = (part("product"), part("service"), part("category"));
        let fields = vocab.entry(key).or_default();
        let Some(det) = yaml["detection"].as_mapping() else { continue };
        for (_, sel) in det {
            let maps: Vec<&serde_norway::Mapping> = match sel {
                serde_norway::Value::Mapping(m) => vec![m],
                serde_norway::Value::Sequence(items) => items.iter().filter_map(|i| i.as_mapping()).collect(),
                _ => Vec::new(),
            };
            for map in maps {
                for (k, v) in map {
                    let Some(k) = k.as_str() else { continue };
                    let field = k.split('|').next().unwrap().to_owned();
                    if field.is_empty() {
                        continue;
                    }
                    let values: Vec<&serde_norway::Value> = match v {
                        serde_norway::Value::Sequence(items) => items.iter().collect(),
                        other => vec![other],
                    };
                    let pool = fields.entry(field).or_default();
                    for value in values {
                        match value {
                            serde_norway::Value::String(s) if !k.contains("|re") => {
                                pool.push(s.replace(['*', '?'], "").replace("\\\\", "\\"))
                            }
                            serde_norway::Value::Number(n) => pool.push(n.to_string()),
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    vocab
}

fn collect_yml(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_yml(&path, out);
        } else if path.extension().is_some_and(|e| e == "yml") {
            out.push(path);
        }
    }
}

/// Events built from the corpus's own fragments, so that many rules are
/// candidates and a good share fire.
fn synthetic_events(count: usize, seed: u64) -> Vec<Event> {
    let vocab = corpus_vocabulary();
    let sources: Vec<_> = vocab.iter().filter(|(_, f)| !f.is_empty()).collect();
    let noise = ["C:\\Windows\\System32\\", " -", "/c ", "x", "\\AppData\\", ".exe", " ", "http://"];
    let mut rng = Rng(seed);
    let mut events = Vec::with_capacity(count);
    for _ in 0..count {
        let ((product, service, category), fields) = *rng.pick(&sources);
        let mut obj = serde_json::Map::new();
        for (field, pool) in fields.iter() {
            if rng.below(10) < 3 || pool.is_empty() {
                continue;
            }
            let mut value = String::new();
            for _ in 0..1 + rng.below(3) {
                if rng.below(3) == 0 {
                    let n: &&str = rng.pick(&noise[..]);
                    value.push_str(n);
                }
                let fragment: &String = rng.pick(&pool[..]);
                value.push_str(fragment);
            }
            if rng.below(4) == 0 {
                value = value.to_uppercase();
            }
            obj.insert(field.clone(), json!(value));
        }
        let logsource = LogSource { product: product.clone(), service: service.clone(), category: category.clone() };
        events.push(Event::from_json(logsource, &Value::Object(obj)));
    }
    events
}

#[test]
fn index_loses_no_match() {
    let (rules, _) = corpus();
    let mut events: Vec<&Event> = cases().iter().flat_map(|c| c.events.iter()).collect();
    let synthetic = synthetic_events(4000, 0x5eed_cafe_f00d_1234);
    events.extend(synthetic.iter());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut fired = 0usize;
    let mut events_firing = 0usize;
    for (i, event) in events.iter().enumerate() {
        rules.matches(event, &mut a);
        rules.matches_unindexed(event, &mut b);
        assert_eq!(a, b, "event {i} ({:?}): indexed and unindexed differ", event.logsource());
        fired += a.len();
        events_firing += usize::from(!a.is_empty());
    }
    eprintln!("{} events, {events_firing} fired at least one rule, {fired} matches", events.len());
    // The check means something only if many events fire rules.
    assert!(events_firing > events.len() / 5, "only {events_firing} events fired");
}

/// Ordinary Windows activity (Sysmon process, network, file, registry and
/// image-load events) that should fire few or no rules.
fn benign_events(count: usize, seed: u64) -> Vec<Value> {
    let images = [
        "C:\\Windows\\System32\\svchost.exe",
        "C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe",
        "C:\\Windows\\explorer.exe",
        "C:\\Windows\\System32\\conhost.exe",
        "C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE",
        "C:\\Windows\\System32\\RuntimeBroker.exe",
        "C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\msedge.exe",
        "C:\\Windows\\System32\\SearchIndexer.exe",
        "C:\\Users\\alice\\AppData\\Local\\Microsoft\\Teams\\current\\Teams.exe",
        "C:\\Program Files\\Epic\\Hyperspace\\Hyperspace.exe",
    ];
    let args = [
        " -k netsvcs -p -s Schedule",
        " --type=renderer --field-trial-handle=1820,i,1234 --lang=en-US --mojo-platform-channel-handle=3032 /prefetch:1",
        "",
        " 0xffffffff -ForceV1",
        " /n \"C:\\Users\\alice\\Documents\\Discharge summary template.docx\" /o \"\"",
        " -Embedding",
        " --single-argument https://intranet.hospital.local/portal",
        " /Embedding",
        " --process-start-time=13340000000 --autostart",
        " -env PRD -user alice",
    ];
    let users = ["HOSPITAL\\alice", "HOSPITAL\\bob", "NT AUTHORITY\\SYSTEM", "HOSPITAL\\svc_backup"];
    let files = [
        "C:\\Users\\alice\\AppData\\Local\\Google\\Chrome\\User Data\\Default\\Cache\\Cache_Data\\f_00a1b2",
        "C:\\Users\\bob\\Documents\\rota-2026-03.xlsx",
        "C:\\Windows\\Prefetch\\CHROME.EXE-5FE9C8E7.pf",
        "C:\\ProgramData\\Microsoft\\Windows Defender\\Scans\\History\\Service\\DetectionHistory\\01",
        "C:\\Users\\alice\\AppData\\Local\\Temp\\~DF3A1C.tmp",
    ];
    let keys = [
        "HKU\\S-1-5-21-1-2-3-1001\\Software\\Microsoft\\Office\\16.0\\Word\\Options\\AutoRecover",
        "HKLM\\System\\CurrentControlSet\\Services\\bam\\State\\UserSettings\\S-1-5-21-1-2-3-1001\\Device",
        "HKU\\S-1-5-21-1-2-3-1001\\Software\\Google\\Chrome\\PreferenceMACs\\Default\\homepage",
    ];
    let dlls = [
        "C:\\Windows\\System32\\kernel32.dll",
        "C:\\Windows\\System32\\ntdll.dll",
        "C:\\Windows\\System32\\combase.dll",
    ];
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(count);
    for n in 0..count {
        let i = rng.below(images.len());
        let image = images[i];
        let name = image.rsplit('\\').next().unwrap();
        let user = *rng.pick(&users[..]);
        let system = |id: u32| {
            json!({
                "Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon", "Guid": "5770385F-C22A-43E0-BF4C-06F5698FFBD9"}},
                "EventID": id, "Version": 5, "Level": 4, "Task": id, "Opcode": 0, "Keywords": "0x8000000000000000",
                "TimeCreated": {"#attributes": {"SystemTime": "2026-03-01T10:00:00.000000Z"}},
                "EventRecordID": n, "Execution": {"#attributes": {"ProcessID": 3208, "ThreadID": 1724}},
                "Channel": "Microsoft-Windows-Sysmon/Operational", "Computer": "ward3-pc17.hospital.local",
                "Security": {"#attributes": {"UserID": "S-1-5-18"}}
            })
        };
        let event = match rng.below(10) {
            0..=4 => json!({"Event": {"System": system(1), "EventData": {
                "RuleName": "-", "UtcTime": "2026-03-01 10:00:00.000", "ProcessGuid": "{0197231E-C424-69E1-C922-000000000800}",
                "ProcessId": 4000 + n % 1000, "Image": image, "FileVersion": "10.0.22621.1 (WinBuild.160101.0800)",
                "Description": name, "Product": "Microsoft® Windows® Operating System", "Company": "Microsoft Corporation",
                "OriginalFileName": name, "CommandLine": format!("\"{image}\"{}", args[i]),
                "CurrentDirectory": "C:\\Windows\\system32\\", "User": user, "LogonGuid": "{0197231E-AB9F-67AA-FB17-030000000000}",
                "LogonId": "0x317fb", "TerminalSessionId": 1, "IntegrityLevel": "Medium",
                "Hashes": "SHA1=2E0F6A2E34A4A0E5C1A7F0B3C7D9E1F2A3B4C5D6,MD5=4FCFE1D61E6D962F06CE2B61FC11BC0F,SHA256=6FEB16602A2FD1158C6F7E56E3B05A5E9AC01E88089535978C890EC6954A5AFA,IMPHASH=44794EEDDEB70144ABA2F1483E762F30",
                "ParentProcessGuid": "{0197231E-0000-0000-0000-000000000800}", "ParentProcessId": 1200,
                "ParentImage": "C:\\Windows\\System32\\services.exe", "ParentCommandLine": "C:\\Windows\\system32\\services.exe",
                "ParentUser": "NT AUTHORITY\\SYSTEM"}}}),
            5 | 6 => json!({"Event": {"System": system(3), "EventData": {
                "RuleName": "-", "UtcTime": "2026-03-01 10:00:00.000", "ProcessGuid": "{0197231E-C424-69E1-C922-000000000800}",
                "ProcessId": 4000, "Image": image, "User": user, "Protocol": "tcp", "Initiated": "true",
                "SourceIsIpv6": "false", "SourceIp": "10.20.3.17", "SourceHostname": "ward3-pc17.hospital.local",
                "SourcePort": 50000 + n % 10000, "SourcePortName": "-", "DestinationIsIpv6": "false",
                "DestinationIp": format!("10.20.{}.{}", n % 200, n % 250), "DestinationHostname": "ehr.hospital.local",
                "DestinationPort": 443, "DestinationPortName": "https"}}}),
            7 => json!({"Event": {"System": system(11), "EventData": {
                "RuleName": "-", "UtcTime": "2026-03-01 10:00:00.000", "ProcessGuid": "{0197231E-C424-69E1-C922-000000000800}",
                "ProcessId": 4000, "Image": image, "TargetFilename": *rng.pick(&files[..]),
                "CreationUtcTime": "2026-03-01 10:00:00.000", "User": user}}}),
            8 => json!({"Event": {"System": system(13), "EventData": {
                "RuleName": "-", "EventType": "SetValue", "UtcTime": "2026-03-01 10:00:00.000",
                "ProcessGuid": "{0197231E-C424-69E1-C922-000000000800}", "ProcessId": 4000, "Image": image,
                "TargetObject": *rng.pick(&keys[..]), "Details": "DWORD (0x00000001)", "User": user}}}),
            _ => json!({"Event": {"System": system(7), "EventData": {
                "RuleName": "-", "UtcTime": "2026-03-01 10:00:00.000", "ProcessGuid": "{0197231E-C424-69E1-C922-000000000800}",
                "ProcessId": 4000, "Image": image, "ImageLoaded": *rng.pick(&dlls[..]),
                "FileVersion": "10.0.22621.1", "Description": "Windows NT BASE API Client DLL",
                "Product": "Microsoft® Windows® Operating System", "Company": "Microsoft Corporation",
                "OriginalFileName": "kernel32", "Hashes": "SHA256=6FEB16602A2FD1158C6F7E56E3B05A5E9AC01E88089535978C890EC6954A5AFA",
                "Signed": "true", "Signature": "Microsoft Windows", "SignatureStatus": "Valid", "User": user}}}),
        };
        out.push(event);
    }
    out
}

/// Nanoseconds this thread has run on a CPU (Linux), so that other work on
/// a busy machine does not count; wall time where it is unavailable.
fn cpu_now() -> (Option<u64>, Instant) {
    let ns = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok());
    (ns, Instant::now())
}

/// Microseconds per item since `start`.
fn us_per(start: (Option<u64>, Instant), items: usize) -> f64 {
    let elapsed = match (start.0, cpu_now().0) {
        (Some(a), Some(b)) => (b - a) as f64 / 1e3,
        _ => start.1.elapsed().as_secs_f64() * 1e6,
    };
    elapsed / items as f64
}

/// Throughput on one core, printed (a measurement, not a check): run with
/// `cargo test --release -p caduceus-detect --test sigma_corpus -- --ignored --nocapture throughput`.
/// The mix is 90% ordinary Sysmon activity and 10% the regression cases'
/// attacks, shuffled.
#[test]
#[ignore = "a measurement, not a check: run in release mode"]
fn throughput() {
    let (rules, _) = corpus();
    let mut values = benign_events(9_000, 42);
    let mut attacks = Vec::new();
    let mut infos = Vec::new();
    walk(&Path::new(SIGMA).join("regression_data"), &mut infos);
    for info in infos {
        for entry in std::fs::read_dir(info.parent().unwrap()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                attacks.extend(json_values(&path));
            }
        }
    }
    let mut i = 0;
    while values.len() < 10_000 {
        values.push(attacks[i % attacks.len()].clone());
        i += 1;
    }
    let mut rng = Rng(7);
    for k in (1..values.len()).rev() {
        values.swap(k, rng.below(k + 1));
    }
    let rate = |us: f64| 1e6 / us;
    let report = |what: &str, us: f64| eprintln!("{what:<52} {:>9.0} events/s  {us:>6.2} us/event", rate(us));

    let start = cpu_now();
    let events: Vec<Event> = values.iter().map(|v| Event::from_evtx_json(v).unwrap()).collect();
    let normalise = us_per(start, events.len());
    report("normalise evtx JSON (Event::from_evtx_json)", normalise);

    // The same record four times in a row: its JSON in cache, as it is
    // right after parsing.
    let start = cpu_now();
    let mut held = 0usize;
    for value in &values {
        for _ in 0..4 {
            held += Event::from_evtx_json(value).unwrap().len();
        }
    }
    let normalise_warm = us_per(start, values.len() * 4);
    report("normalise evtx JSON, record in cache", normalise_warm);
    std::hint::black_box(held);

    let mut out = Vec::new();
    let mut candidates = 0usize;
    let mut fired = 0usize;
    for event in &events {
        rules.candidates(event, &mut out);
        candidates += out.len();
        rules.matches(event, &mut out);
        fired += out.len();
    }

    let rounds = 20;
    let start = cpu_now();
    for _ in 0..rounds {
        for event in &events {
            rules.matches(event, &mut out);
        }
    }
    let cold = us_per(start, events.len() * rounds);
    report("match, events not in cache", cold);

    // Each event matched four times in a row: the cost with the event in
    // cache, as it is in the pipeline right after normalisation.
    let start = cpu_now();
    for event in &events {
        for _ in 0..4 {
            rules.matches(event, &mut out);
        }
    }
    let warm = us_per(start, events.len() * 4);
    report("match, event in cache", warm);
    report("normalise + match, both in cache (sum)", normalise_warm + warm);

    let start = cpu_now();
    for value in &values {
        let event = Event::from_evtx_json(value).unwrap();
        rules.matches(&event, &mut out);
    }
    report("normalise + match", us_per(start, values.len()));

    let sample = &events[..1000];
    let start = cpu_now();
    for event in sample {
        rules.matches_unindexed(event, &mut out);
    }
    let naive = us_per(start, sample.len());
    report("every rule on every event (matches_unindexed)", naive);
    eprintln!(
        "{} rules; {:.2} candidate rules and {:.3} matches per event; indexed/unindexed: {:.0}x",
        rules.len(),
        candidates as f64 / events.len() as f64,
        fired as f64 / events.len() as f64,
        naive / cold
    );
}
