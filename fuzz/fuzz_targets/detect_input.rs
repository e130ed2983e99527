//! Outside input to detection: a Sigma rule file (uploaded through the API
//! or found in a rules directory), an events file for `detect test-rules`
//! or the rule-test API (JSON, NDJSON, evtx JSON, anything), and a
//! record-access log line from another hospital's export. None may panic;
//! a rule that loads must run over events without panicking either.
#![no_main]

use std::io::Cursor;
use std::sync::Arc;

use caduceus_detect::ehr::files::NdjsonReader;
use caduceus_detect::ehr::log::{AccessLine, to_event};
use caduceus_detect::ehr::{Analytics, Directory, EhrSettings};
use caduceus_detect::offline;
use caduceus_detect::sigma::{FieldMap, RuleSet};
use libfuzzer_sys::fuzz_target;

/// Events every loaded rule is run over.
const EVENTS: &str = r#"[
{"logsource": {"product": "windows", "category": "process_creation"}, "Image": "C:\\Windows\\System32\\cmd.exe", "CommandLine": "cmd /c whoami", "ParentImage": "C:\\Windows\\explorer.exe", "EventID": 1, "User": "HOSP\\nurse"},
{"Event": {"System": {"EventID": 3, "Channel": "Microsoft-Windows-Sysmon/Operational", "Computer": "ward-pc"}, "EventData": {"DestinationIp": "10.1.2.3", "DestinationPort": 445}}},
{"logsource": {"product": "linux", "service": "auditd"}, "type": "EXECVE", "a0": "curl", "a1": "-s"}
]"#;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let map = FieldMap::default();
    match selector % 3 {
        0 => {
            let mut rules = RuleSet::new();
            if rules.add_yaml("fuzz.yml", &text).is_ok() {
                let events = offline::parse_events("events", EVENTS).expect("the fixed events parse");
                let _ = offline::test_rules(Arc::new(rules), &events, &map);
            }
        }
        1 => {
            if let Ok(events) = offline::parse_events("fuzz", &text) {
                let _ = offline::test_rules(Arc::new(caduceus_detect::builtin::rules()), &events, &map);
            }
        }
        _ => {
            let mut reader = NdjsonReader::new(Cursor::new(rest), "access.ndjson", 64 * 1024);
            let mut analytics = Analytics::new(Arc::new(Directory::empty()), EhrSettings::default());
            let mut seq = 0;
            while let Ok(Some((_, line))) = reader.next_record::<AccessLine>() {
                if let Ok(event) = to_event(&line) {
                    seq += 1;
                    let _ = analytics.observe(seq, &event);
                }
            }
            let _ = analytics.flush();
        }
    }
});
