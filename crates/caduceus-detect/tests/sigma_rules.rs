//! Sigma semantics, one rule at a time: every value modifier, wildcards and
//! escapes, null, keywords, `1 of`/`all of`, precedence, log sources, our
//! own events, and errors that name the file and line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::BTreeMap;

use caduceus_core::event::{AccessOutcome, RecordAction};
use caduceus_core::{Actor, ActorKind, EventId, Payload, SecurityEvent, Severity, Status, Timestamp};
use caduceus_detect::FieldLookup;
use caduceus_detect::sigma::{Event, FieldMap, LogSource, RuleSet};
use serde_json::{Value, json};

fn test_source() -> LogSource {
    LogSource { product: Some("test".into()), service: None, category: None }
}

/// A rule set with one rule of product `test` and the given detection.
fn rule_with(detection: &str) -> RuleSet {
    rule_with_placeholders(detection, BTreeMap::new())
}

fn rule_with_placeholders(detection: &str, placeholders: BTreeMap<String, Vec<String>>) -> RuleSet {
    let text = format!("title: t\nid: r1\nlogsource:\n    product: test\ndetection:\n{detection}\n");
    let mut set = RuleSet::new();
    set.set_placeholders(placeholders);
    set.add_yaml("t.yml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    set
}

/// Whether the rule fires on the event, checking the index agrees with the
/// plain evaluation.
fn fires(set: &RuleSet, fields: Value) -> bool {
    let event = Event::from_json(test_source(), &fields);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    set.matches(&event, &mut a);
    set.matches_unindexed(&event, &mut b);
    assert_eq!(a, b, "index and plain evaluation differ on {fields}");
    !a.is_empty()
}

#[test]
fn default_matching_is_whole_value_case_insensitive() {
    let set = rule_with("    sel:\n        Image: 'C:\\Windows\\System32\\cmd.exe'\n    condition: sel");
    assert!(fires(&set, json!({"Image": "c:\\windows\\system32\\CMD.EXE"})));
    assert!(!fires(&set, json!({"Image": "c:\\windows\\system32\\cmd.exe2"})));
    assert!(!fires(&set, json!({"image2": "c:\\windows\\system32\\cmd.exe"})));
    // Field names match regardless of case.
    assert!(fires(&set, json!({"IMAGE": "C:\\Windows\\System32\\cmd.exe"})));
}

#[test]
fn contains_startswith_endswith() {
    let set = rule_with("    sel:\n        CommandLine|contains: 'EnCoded'\n    condition: sel");
    assert!(fires(&set, json!({"CommandLine": "powershell -encodedcommand AAA"})));
    assert!(!fires(&set, json!({"CommandLine": "powershell -enc AAA"})));
    let set = rule_with("    sel:\n        Image|startswith: 'C:\\Users\\'\n    condition: sel");
    assert!(fires(&set, json!({"Image": "c:\\users\\bob\\x.exe"})));
    assert!(!fires(&set, json!({"Image": "d:\\c:\\users\\x.exe"})));
    let set = rule_with(
        "    sel:\n        Image|endswith:\n            - '\\rundll32.exe'\n            - '\\regsvr32.exe'\n    condition: sel",
    );
    assert!(fires(&set, json!({"Image": "C:\\Windows\\System32\\REGSVR32.exe"})));
    assert!(!fires(&set, json!({"Image": "C:\\Windows\\System32\\regsvr32.exe.bak"})));
}

#[test]
fn all_joins_values_with_and() {
    let set = rule_with(
        "    sel:\n        CommandLine|contains|all:\n            - ' -w hidden'\n            - ' -nop'\n    condition: sel",
    );
    assert!(fires(&set, json!({"CommandLine": "powershell -nop -w hidden -c x"})));
    assert!(!fires(&set, json!({"CommandLine": "powershell -nop -c x"})));
    // Without `all`, either value suffices.
    let set = rule_with(
        "    sel:\n        CommandLine|contains:\n            - ' -w hidden'\n            - ' -nop'\n    condition: sel",
    );
    assert!(fires(&set, json!({"CommandLine": "powershell -nop -c x"})));
}

#[test]
fn wildcards_and_escapes() {
    let set = rule_with("    sel:\n        Image: '*\\prog?.exe'\n    condition: sel");
    assert!(fires(&set, json!({"Image": "C:\\x\\progA.exe"})));
    assert!(!fires(&set, json!({"Image": "C:\\x\\prog.exe"})));
    assert!(!fires(&set, json!({"Image": "C:\\x\\progAB.exe"})));
    let set = rule_with("    sel:\n        Cmd: 'a*b*c'\n    condition: sel");
    assert!(fires(&set, json!({"Cmd": "aXXbYYc"})));
    assert!(!fires(&set, json!({"Cmd": "aXXbYYcd"})));
    // An escaped star is a plain star.
    let set = rule_with("    sel:\n        Cmd: 'a\\*b'\n    condition: sel");
    assert!(fires(&set, json!({"Cmd": "a*b"})));
    assert!(!fires(&set, json!({"Cmd": "aXb"})));
    // An escaped backslash before a star: a backslash, then a wildcard.
    let set = rule_with("    sel:\n        Cmd: 'dir\\\\*'\n    condition: sel");
    assert!(fires(&set, json!({"Cmd": "dir\\anything"})));
    assert!(!fires(&set, json!({"Cmd": "dirX"})));
    // Escaped question mark.
    let set = rule_with("    sel:\n        Cmd|endswith: 'what\\?'\n    condition: sel");
    assert!(fires(&set, json!({"Cmd": "so what?"})));
    assert!(!fires(&set, json!({"Cmd": "so whatX"})));
}

#[test]
fn numbers_booleans_and_empty_values() {
    let set = rule_with("    sel:\n        EventID: 4688\n        Flag: true\n    condition: sel");
    assert!(fires(&set, json!({"EventID": 4688, "Flag": true})));
    assert!(fires(&set, json!({"EventID": "4688", "Flag": "True"})));
    assert!(!fires(&set, json!({"EventID": 46880, "Flag": true})));
    let set = rule_with("    sel:\n        Cmd: ''\n    condition: sel");
    assert!(fires(&set, json!({"Cmd": ""})));
    assert!(!fires(&set, json!({"Other": ""})));
}

#[test]
fn null_means_absent_or_null() {
    let set = rule_with(
        "    sel:\n        EventID: 4738\n    filter:\n        PasswordLastSet: null\n    condition: sel and not filter",
    );
    assert!(fires(&set, json!({"EventID": 4738, "PasswordLastSet": "2026-01-01"})));
    assert!(!fires(&set, json!({"EventID": 4738})));
    assert!(!fires(&set, json!({"EventID": 4738, "PasswordLastSet": null})));
}

#[test]
fn exists() {
    let set = rule_with("    sel:\n        EventID: 1\n        Pass|exists: true\n    condition: sel");
    assert!(fires(&set, json!({"EventID": 1, "Pass": ""})));
    assert!(fires(&set, json!({"EventID": 1, "Pass": null})));
    assert!(!fires(&set, json!({"EventID": 1})));
    let set = rule_with("    sel:\n        EventID: 1\n        Pass|exists: false\n    condition: sel");
    assert!(fires(&set, json!({"EventID": 1})));
    assert!(!fires(&set, json!({"EventID": 1, "Pass": "x"})));
}

#[test]
fn keywords_search_every_value() {
    let set = rule_with("    keywords:\n        - 'event::clear'\n        - 'sekurlsa'\n    condition: keywords");
    assert!(fires(&set, json!({"msg": "mimikatz # EVENT::Clear now"})));
    assert!(fires(&set, json!({"a": {"b": "x sekurlsa::logonpasswords"}})));
    assert!(!fires(&set, json!({"msg": "event clear"})));
    let set = rule_with(
        "    keywords:\n        '|all':\n            - 'OabVirtualDirectory'\n            - ' -ExternalUrl '\n    condition: keywords",
    );
    assert!(fires(&set, json!({"a": "Set-OabVirtualDirectory", "b": "x -ExternalUrl y"})));
    assert!(!fires(&set, json!({"a": "Set-OabVirtualDirectory"})));
}

#[test]
fn lists_of_maps_are_or() {
    let set = rule_with(
        "    sel:\n        - Image|endswith: '\\example.exe'\n        - Description|contains: 'Test executable'\n    condition: sel",
    );
    assert!(fires(&set, json!({"Image": "c:\\example.exe"})));
    assert!(fires(&set, json!({"Description": "a test executable"})));
    assert!(!fires(&set, json!({"Image": "c:\\other.exe", "Description": "x"})));
}

#[test]
fn one_of_and_all_of_patterns() {
    let det = "    selection_a:\n        A: x\n    selection_b:\n        B: y\n    filter_c:\n        C: z\n    _helper:\n        D: w\n";
    let set = rule_with(&format!("{det}    condition: 1 of selection_* and not 1 of filter_*"));
    assert!(fires(&set, json!({"B": "y"})));
    assert!(!fires(&set, json!({"B": "y", "C": "z"})));
    let set = rule_with(&format!("{det}    condition: all of selection_*"));
    assert!(fires(&set, json!({"A": "x", "B": "y"})));
    assert!(!fires(&set, json!({"A": "x"})));
    // `them` leaves out identifiers starting with an underscore.
    let set = rule_with(&format!("{det}    condition: all of them"));
    assert!(fires(&set, json!({"A": "x", "B": "y", "C": "z"})));
    let set = rule_with(&format!("{det}    condition: 1 of them"));
    assert!(!fires(&set, json!({"D": "w"})));
    assert!(fires(&set, json!({"C": "z"})));
    // A list of conditions is their OR.
    let set = rule_with(&format!("{det}    condition:\n        - selection_a and filter_c\n        - _helper"));
    assert!(fires(&set, json!({"D": "w"})));
    assert!(fires(&set, json!({"A": "x", "C": "z"})));
    assert!(!fires(&set, json!({"A": "x"})));
}

#[test]
fn condition_precedence() {
    let det = "    a:\n        A: 1\n    b:\n        B: 1\n    c:\n        C: 1\n";
    // not a and b or c  ==  ((not a) and b) or c
    let set = rule_with(&format!("{det}    condition: not a and b or c"));
    assert!(fires(&set, json!({"B": 1})));
    assert!(!fires(&set, json!({"A": 1, "B": 1})));
    assert!(fires(&set, json!({"A": 1, "C": 1})));
    assert!(!fires(&set, json!({})));
    let set = rule_with(&format!("{det}    condition: not (a and b or c)"));
    assert!(fires(&set, json!({"A": 1})));
    assert!(!fires(&set, json!({"C": 1})));
    let set = rule_with(&format!("{det}    condition: a and (b or c)"));
    assert!(fires(&set, json!({"A": 1, "C": 1})));
    assert!(!fires(&set, json!({"C": 1})));
}

#[test]
fn regular_expressions_and_their_flags() {
    let set = rule_with("    sel:\n        Cmd|re: '^abc[0-9]+$'\n    condition: sel");
    assert!(fires(&set, json!({"Cmd": "abc123"})));
    assert!(!fires(&set, json!({"Cmd": "ABC123"})), "re is case-sensitive by default");
    let set = rule_with("    sel:\n        Cmd|re|i: '^abc[0-9]+$'\n    condition: sel");
    assert!(fires(&set, json!({"Cmd": "ABC123"})));
    let set = rule_with("    sel:\n        Cmd|re|m: '^second$'\n    condition: sel");
    assert!(fires(&set, json!({"Cmd": "first\nsecond\nthird"})));
    let set = rule_with("    sel:\n        Cmd|re: '^second$'\n    condition: sel");
    assert!(!fires(&set, json!({"Cmd": "first\nsecond\nthird"})));
    let set = rule_with("    sel:\n        Cmd|re|s: 'a.b'\n    condition: sel");
    assert!(fires(&set, json!({"Cmd": "a\nb"})));
    let set = rule_with("    sel:\n        Cmd|re: 'a.b'\n    condition: sel");
    assert!(!fires(&set, json!({"Cmd": "a\nb"})));
    // \w is ASCII, as in PCRE.
    let set = rule_with("    sel:\n        Cmd|re: '^-k\\s\\w{1,64}$'\n    condition: sel");
    assert!(fires(&set, json!({"Cmd": "-k netsvcs"})));
    assert!(!fires(&set, json!({"Cmd": "-k né"})));
}

#[test]
fn cidr() {
    let set = rule_with(
        "    sel:\n        DestinationIp|cidr:\n            - '10.0.0.0/8'\n            - '192.168.1.0/24'\n            - 'fe80::/10'\n    condition: sel",
    );
    assert!(fires(&set, json!({"DestinationIp": "10.200.3.4"})));
    assert!(fires(&set, json!({"DestinationIp": "192.168.1.77"})));
    assert!(fires(&set, json!({"DestinationIp": "fe80::1c2:3"})));
    assert!(!fires(&set, json!({"DestinationIp": "192.168.2.1"})));
    assert!(!fires(&set, json!({"DestinationIp": "8.8.8.8"})));
    assert!(!fires(&set, json!({"DestinationIp": "not-an-ip"})));
}

#[test]
fn base64_and_base64offset() {
    // "cmd" → Y21k
    let set = rule_with("    sel:\n        Data|base64|contains: 'cmd'\n    condition: sel");
    assert!(fires(&set, json!({"Data": "xxY21kxx"})));
    // base64offset finds the text at any offset within a base64 stream.
    let set = rule_with("    sel:\n        Cmd|base64offset|contains: 'Invoke-Mimikatz'\n    condition: sel");
    for prefix in ["", "a", "ab", "abc"] {
        let encoded = b64(format!("{prefix}Invoke-Mimikatz -DumpCreds").as_bytes());
        assert!(fires(&set, json!({"Cmd": format!("powershell -enc {encoded}")})), "offset {}", prefix.len());
    }
    assert!(!fires(&set, json!({"Cmd": b64(b"Invoke-Something")})));
}

#[test]
fn utf16_encodings() {
    // wide|base64offset: PowerShell -EncodedCommand is base64 of UTF-16LE.
    let set = rule_with("    sel:\n        Cmd|wide|base64offset|contains: 'IEX'\n    condition: sel");
    for prefix in ["", "a", "ab"] {
        let text = format!("{prefix}IEX (New-Object Net.WebClient)");
        let utf16: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert!(fires(&set, json!({"Cmd": format!("powershell -e {}", b64(&utf16))})), "offset {}", prefix.len());
    }
    let set = rule_with("    sel:\n        Cmd|utf16le|base64: 'ab'\n    condition: sel");
    assert!(fires(&set, json!({"Cmd": b64(&[b'a', 0, b'b', 0])})));
    let set = rule_with("    sel:\n        Cmd|utf16be|base64: 'ab'\n    condition: sel");
    assert!(fires(&set, json!({"Cmd": b64(&[0, b'a', 0, b'b'])})));
    let set = rule_with("    sel:\n        Cmd|utf16|base64: 'ab'\n    condition: sel");
    assert!(fires(&set, json!({"Cmd": b64(&[0xFF, 0xFE, b'a', 0, b'b', 0])})));
}

#[test]
fn windash() {
    let set = rule_with("    sel:\n        CommandLine|contains|windash: ' -enc '\n    condition: sel");
    for dash in ["-", "/", "\u{2013}", "\u{2014}", "\u{2015}"] {
        assert!(fires(&set, json!({"CommandLine": format!("powershell {dash}enc AAA")})), "{dash}");
    }
    assert!(!fires(&set, json!({"CommandLine": "powershell +enc AAA"})));
}

#[test]
fn expand_placeholders() {
    let mut ph = BTreeMap::new();
    ph.insert("DomainControllers".to_owned(), vec!["dc01*".to_owned(), "dc02.hospital.local".to_owned()]);
    let set =
        rule_with_placeholders("    sel:\n        Computer|expand: '%DomainControllers%'\n    condition: sel", ph);
    assert!(fires(&set, json!({"Computer": "DC01.hospital.local"})));
    assert!(fires(&set, json!({"Computer": "dc02.hospital.local"})));
    assert!(!fires(&set, json!({"Computer": "ws17.hospital.local"})));
    // Unconfigured: the rule loads and that value never matches.
    let set = rule_with("    sel:\n        Computer|expand: '%DomainControllers%'\n    condition: sel");
    assert!(!fires(&set, json!({"Computer": "%DomainControllers%"})));
    let set = rule_with(
        "    sel:\n        EventID: 1\n    filter:\n        Computer|expand: '%Servers%'\n    condition: sel and not filter",
    );
    assert!(fires(&set, json!({"EventID": 1, "Computer": "srv1"})));
    // Without `expand`, percent signs are plain text.
    let set = rule_with("    sel:\n        Path|contains: '%temp%'\n    condition: sel");
    assert!(fires(&set, json!({"Path": "copy x %TEMP%\\y"})));
}

#[test]
fn fieldref() {
    let set = rule_with("    sel:\n        ParentUser|fieldref: User\n    condition: sel");
    assert!(fires(&set, json!({"User": "HOSPITAL\\alice", "ParentUser": "hospital\\ALICE"})));
    assert!(!fires(&set, json!({"User": "HOSPITAL\\alice", "ParentUser": "HOSPITAL\\bob"})));
    assert!(!fires(&set, json!({"ParentUser": "HOSPITAL\\bob"})));
    let set = rule_with("    sel:\n        ParentUser|fieldref|neq: User\n    condition: sel");
    assert!(fires(&set, json!({"User": "HOSPITAL\\alice", "ParentUser": "HOSPITAL\\bob"})));
    assert!(!fires(&set, json!({"User": "HOSPITAL\\alice", "ParentUser": "HOSPITAL\\alice"})));
    let set = rule_with("    sel:\n        TargetFilename|fieldref|startswith: CurrentDirectory\n    condition: sel");
    assert!(fires(&set, json!({"CurrentDirectory": "C:\\Temp\\", "TargetFilename": "c:\\temp\\x.exe"})));
}

#[test]
fn numeric_comparisons() {
    let set = rule_with("    sel:\n        Count|gt: 10\n        Count|lte: 20\n    condition: sel");
    assert!(fires(&set, json!({"Count": 11})));
    assert!(fires(&set, json!({"Count": "20"})));
    assert!(!fires(&set, json!({"Count": 10})));
    assert!(!fires(&set, json!({"Count": 21})));
    assert!(!fires(&set, json!({"Count": "many"})));
    let set =
        rule_with("    sel:\n        Size|lt: 1.5\n    other:\n        Size|gte: 100\n    condition: sel or other");
    assert!(fires(&set, json!({"Size": 1})));
    assert!(fires(&set, json!({"Size": 100})));
    assert!(!fires(&set, json!({"Size": 50})));
}

#[test]
fn time_modifiers() {
    let set = rule_with(
        "    sel:\n        UtcTime|hour|gte: 22\n    night:\n        UtcTime|hour|lt: 6\n    condition: sel or night",
    );
    assert!(fires(&set, json!({"UtcTime": "2026-04-17 23:10:00.000"})));
    assert!(fires(&set, json!({"UtcTime": "2026-04-17T03:10:00Z"})));
    assert!(!fires(&set, json!({"UtcTime": "2026-04-17 12:00:00.000"})));
    let set = rule_with("    sel:\n        When|month: 12\n        When|day: 25\n    condition: sel");
    assert!(fires(&set, json!({"When": "2025-12-25T08:00:00Z"})));
    assert!(!fires(&set, json!({"When": "2025-12-24T08:00:00Z"})));
    let set = rule_with(
        "    sel:\n        When|year: 2026\n        When|week: 1\n        When|minute: 30\n    condition: sel",
    );
    assert!(fires(&set, json!({"When": "2026-01-02 10:30:00"})));
}

#[test]
fn cased() {
    let set = rule_with("    sel:\n        Cmd|cased: 'EVIL'\n    condition: sel");
    assert!(fires(&set, json!({"Cmd": "EVIL"})));
    assert!(!fires(&set, json!({"Cmd": "evil"})));
    let set = rule_with("    sel:\n        Cmd|contains|cased: 'Mimi'\n    condition: sel");
    assert!(fires(&set, json!({"Cmd": "x Mimikatz"})));
    assert!(!fires(&set, json!({"Cmd": "x mimikatz"})));
}

#[test]
fn neq() {
    let set = rule_with(
        "    sel:\n        EventID: 1\n        Status|neq:\n            - 'ok'\n            - 'fine'\n    condition: sel",
    );
    assert!(fires(&set, json!({"EventID": 1, "Status": "failed"})));
    assert!(!fires(&set, json!({"EventID": 1, "Status": "OK"})));
    assert!(!fires(&set, json!({"EventID": 1, "Status": "fine"})));
    assert!(!fires(&set, json!({"EventID": 1})), "neq needs the field");
    let set = rule_with("    sel:\n        EventID|neq: 4624\n    condition: sel");
    assert!(fires(&set, json!({"EventID": 4625})));
    assert!(!fires(&set, json!({"EventID": 4624})));
}

fn b64(bytes: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            out.push(if i <= c.len() { T[((n >> shift) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

fn evtx(channel: &str, id: u32, data: Value) -> Event {
    Event::from_evtx_json(&json!({"Event": {"System": {"EventID": id, "Channel": channel}, "EventData": data}}))
        .unwrap()
}

#[test]
fn windows_log_sources() {
    let mut set = RuleSet::new();
    let rule = |id: &str, ls: &str| {
        format!(
            "title: {id}\nid: {id}\nlogsource:\n{ls}\ndetection:\n    sel:\n        Image|endswith: '\\whoami.exe'\n    condition: sel\n"
        )
    };
    set.add_yaml("a.yml", &rule("generic", "    product: windows\n    category: process_creation")).unwrap();
    set.add_yaml("b.yml", &rule("sysmon", "    product: windows\n    service: sysmon")).unwrap();
    set.add_yaml("c.yml", &rule("security", "    product: windows\n    service: security")).unwrap();
    set.add_yaml("d.yml", &rule("linux", "    product: linux\n    category: process_creation")).unwrap();
    set.add_yaml("e.yml", &rule("file", "    product: windows\n    category: file_event")).unwrap();
    let fired = |event: &Event| -> Vec<String> {
        let mut out = Vec::new();
        set.matches(event, &mut out);
        out.iter().map(|&i| set.rule_at(i).unwrap().id.clone()).collect()
    };
    let data = json!({"Image": "C:\\Windows\\System32\\whoami.exe"});
    assert_eq!(fired(&evtx("Microsoft-Windows-Sysmon/Operational", 1, data.clone())), ["generic", "sysmon"]);
    assert_eq!(
        fired(&evtx("Security", 4688, json!({"NewProcessName": "C:\\Windows\\System32\\whoami.exe"}))),
        ["generic", "security"]
    );
    assert_eq!(fired(&evtx("Microsoft-Windows-Sysmon/Operational", 11, data.clone())), ["sysmon", "file"]);
    assert!(fired(&evtx("Application", 1, data)).is_empty());
}

fn security_event(payload: Payload) -> SecurityEvent {
    SecurityEvent::new(
        EventId::new(Timestamp(1_700_000_000_000)),
        Timestamp(1_700_000_000_000),
        Severity::Informational,
        Status::Success,
        Actor { kind: ActorKind::User, uid: "u-alice".into() },
        None,
        "test",
        payload,
    )
    .unwrap()
}

#[test]
fn our_events_and_the_field_map() {
    let access = security_event(Payload::RecordAccess {
        action: RecordAction::Read,
        outcome: AccessOutcome::Allowed,
        actor: "u-alice".into(),
        roles: vec!["nurse".into(), "ward3".into()],
        source: "10.1.2.3".into(),
        purpose_of_use: Some("TREAT".into()),
        break_glass: None,
        resource_type: Some("Patient".into()),
        resource: Some("Patient/p1".into()),
        patients: vec!["p1".into()],
        patients_truncated: false,
        query: None,
        reasons: vec!["care_team".into()],
        detail: None,
        request_id: None,
    });
    let event = Event::from_security_event(&access, &FieldMap::default());
    assert_eq!(
        event.logsource(),
        LogSource {
            product: Some("caduceus".into()),
            service: Some("vault".into()),
            category: Some("record_access".into())
        }
    );
    assert_eq!(event.field("actor").as_deref(), Some("u-alice"));
    assert_eq!(event.field("User").as_deref(), Some("u-alice"), "default map: actor → User");
    assert_eq!(event.field("src_ip").as_deref(), Some("10.1.2.3"));
    assert_eq!(event.field("break_glass"), None);
    assert_eq!(event.field("patients"), None, "patients are not matched on");

    let mut set = RuleSet::new();
    set.add_yaml(
        "api:r",
        "title: nurse reads patient\nid: nr\nlogsource:\n    product: caduceus\n    service: vault\ndetection:\n    sel:\n        roles: nurse\n        action: read\n        src_ip|cidr: 10.0.0.0/8\n    filter:\n        break_glass: null\n    condition: sel and filter\n",
    )
    .unwrap();
    let mut out = Vec::new();
    set.matches(&event, &mut out);
    assert_eq!(out, [0]);
    assert!(set.set_enabled("nr", false));
    set.matches(&event, &mut out);
    assert!(out.is_empty());
    assert!(!set.set_enabled("missing", false));

    // Overrides rename.
    let overrides: BTreeMap<String, String> =
        [("actor".to_owned(), "SubjectUserName".to_owned())].into_iter().collect();
    let event = Event::from_security_event(&access, &FieldMap::with_overrides(&overrides));
    assert_eq!(event.field("SubjectUserName").as_deref(), Some("u-alice"));

    let login = security_event(Payload::Authentication {
        activity: caduceus_core::AuthActivity::Logon,
        account: "u-bob".into(),
        methods: "password".into(),
        source: "10.9.9.9".into(),
        session_id: None,
        failure: Some("bad_credentials".into()),
    });
    let event = Event::from_security_event(&login, &FieldMap::default());
    assert_eq!(event.logsource().service.as_deref(), Some("identity"));
    assert_eq!(event.logsource().category.as_deref(), Some("authentication"));
    assert_eq!(event.field("failure").as_deref(), Some("bad_credentials"));
    assert_eq!(event.field("activity").as_deref(), Some("logon"));

    let record = security_event(Payload::LogRecord {
        product: Some("linux".into()),
        service: Some("auditd".into()),
        category: None,
        fields: json!({"type": "EXECVE", "a0": "nc", "proc": {"exe": "/usr/bin/nc"}}).as_object().unwrap().clone(),
    });
    let event = Event::from_security_event(&record, &FieldMap::default());
    assert_eq!(event.logsource().product.as_deref(), Some("linux"));
    assert_eq!(event.field("exe").as_deref(), Some("/usr/bin/nc"));
    assert_eq!(event.field("proc.exe").as_deref(), Some("/usr/bin/nc"));
}

fn error_of(text: &str) -> caduceus_detect::RuleError {
    RuleSet::new().add_yaml("rules/bad.yml", text).unwrap_err()
}

const GOOD_HEAD: &str = "title: t\nid: x\nlogsource:\n    product: windows\ndetection:\n";

#[test]
fn malformed_rules_name_file_and_line() {
    // YAML syntax error on line 7.
    let e = error_of(&format!("{GOOD_HEAD}    sel:\n        Image: a: b\n    condition: sel\n"));
    assert_eq!(e.file, "rules/bad.yml");
    assert!(e.message.contains("YAML"), "{e}");
    assert_eq!(e.line, Some(7), "{e}");
    // Unknown modifier on line 7.
    let e = error_of(&format!(
        "{GOOD_HEAD}    sel:\n        Image|endswith: x\n        Image|sounds_like: y\n    condition: sel\n"
    ));
    assert_eq!(e.line, Some(8), "{e}");
    assert!(e.message.contains("sounds_like"), "{e}");
    assert_eq!(e.to_string(), format!("rules/bad.yml:8: {}", e.message));
    // Condition naming a missing selection: the line of `condition`.
    let e = error_of(&format!("{GOOD_HEAD}    sel:\n        Image: x\n    condition: sel and filter\n"));
    assert_eq!(e.line, Some(8), "{e}");
    assert!(e.message.contains("filter"), "{e}");
    // The same key in an earlier selection does not mislead the line.
    let e = error_of(&format!(
        "{GOOD_HEAD}    a:\n        Image: x\n    b:\n        Image|re: '(?<=x)y'\n    condition: a or b\n"
    ));
    assert_eq!(e.line, Some(9), "{e}");
    assert!(e.message.contains("regular expression"), "{e}");
    // Missing parts.
    assert!(error_of("title: t\nlogsource:\n    product: x\n").message.contains("detection"));
    assert!(error_of("id: x\n").message.contains("title"));
    assert!(error_of(&format!("{GOOD_HEAD}    sel:\n        Image: x\n")).message.contains("condition"));
    // Lines count from the file, not the document.
    let e = error_of(&format!(
        "{GOOD_HEAD}    sel:\n        Image: x\n    condition: sel\n---\n{GOOD_HEAD}    sel:\n        Image|nope: x\n    condition: sel\n"
    ));
    assert_eq!(e.line, Some(16), "{e}");
    // Oversized files are refused before parsing.
    let big = format!("{GOOD_HEAD}#{}\n", "x".repeat(caduceus_detect::sigma::MAX_RULE_FILE_BYTES));
    assert!(error_of(&big).message.contains("larger"));
}

#[test]
fn files_are_all_or_nothing_and_ids_unique() {
    let mut set = RuleSet::new();
    let one = format!("{GOOD_HEAD}    sel:\n        Image: x\n    condition: sel\n");
    let second = "title: t2\nid: y\nlogsource:\n    product: windows\ndetection:\n    sel:\n        Image|nope: x\n    condition: sel\n";
    let bad = format!("{one}---\n{second}");
    assert!(set.add_yaml("a.yml", &bad).is_err());
    assert!(set.is_empty());
    assert_eq!(set.add_yaml("a.yml", &one).unwrap(), ["x"]);
    let e = set.add_yaml("b.yml", &one).unwrap_err();
    assert!(e.message.contains("already loaded from a.yml:1"), "{e}");
    assert_eq!(set.len(), 1);
}

#[test]
fn multi_document_files_hand_correlations_over() {
    let text = "title: failed logon\nid: base-1\nname: failed_logon\nlogsource:\n    product: windows\n    service: security\ndetection:\n    sel:\n        EventID: 4625\n    condition: sel\n---\ntitle: many failed logons\nid: corr-1\ncorrelation:\n    type: event_count\n    rules:\n        - failed_logon\n    group-by:\n        - TargetUserName\n    timespan: 5m\n    condition:\n        gte: 10\nlevel: high\n";
    let mut set = RuleSet::new();
    let ids = set.add_yaml("c.yml", text).unwrap();
    assert_eq!(ids, ["base-1", "corr-1"]);
    assert_eq!(set.correlations().len(), 1);
    assert_eq!(set.correlations()[0].id, "corr-1");
    assert_eq!(set.rule("base-1").unwrap().name.as_deref(), Some("failed_logon"));
}
