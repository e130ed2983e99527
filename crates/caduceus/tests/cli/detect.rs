//! Detection through the real binary: `caduceus detect test-rules` over
//! the SigmaHQ regression events (each fires its named rule), a malformed
//! rule reported with its file and line, and `caduceus simulate ehr-access`
//! followed by `caduceus detect evaluate --json`.
//!
//! The Sigma corpus is read from `../shared/data` (next to the repository);
//! when it is absent that test prints a loud SKIPPED line.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

fn run(args: &[&str]) -> Output {
    super::command().args(args).output().unwrap()
}

fn sigma_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/sigma/sigma-rules");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("\n*** SKIPPED: the SigmaHQ rules are not at {} ***\n", dir.display());
        None
    }
}

/// One regression case: the rule it names, how many of its events that
/// rule must match, and its events.
struct Case {
    rule: String,
    match_count: usize,
    events: Vec<Value>,
}

fn regression_cases(root: &Path) -> Vec<Case> {
    let mut out = Vec::new();
    let mut stack = vec![root.join("regression_data")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let info = std::fs::read_to_string(path.with_file_name("info.yml")).unwrap();
                // `rule_metadata: - id: <uuid>`: the first id after the key.
                let after = info.split("rule_metadata:").nth(1).unwrap();
                let rule = after.split("id:").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
                let match_count = info
                    .split("match_count:")
                    .nth(1)
                    .and_then(|m| m.split_whitespace().next())
                    .map_or(1, |m| m.parse().unwrap());
                // Some cases hold several events, one after the other.
                let text = std::fs::read_to_string(&path).unwrap();
                let events =
                    serde_json::Deserializer::from_str(&text).into_iter::<Value>().map(|e| e.unwrap()).collect();
                out.push(Case { rule, match_count, events });
            }
        }
    }
    out.sort_by(|a, b| a.rule.cmp(&b.rule));
    out
}

/// Regression cases whose event another case's rule also matches, because
/// the two rules overlap: (the rule that fires, the case's rule, why).
const OVERLAPS: &[(&str, &str, &str)] = &[
    (
        "25ffa65d-76d8-4da5-a832-3f2b0136e133",
        "c7da8edc-49ae-45a2-9e61-9fd860e4e73d",
        "any EulaAccepted key vs Sysinternals EulaAccepted keys",
    ),
    (
        "27ba3207-dd30-4812-abbf-5d20c57d474e",
        "88d6e60c-759d-4ac1-a447-c0f1466c2d21",
        "--load-extension from a script host vs from anywhere",
    ),
    (
        "2ddef153-167b-4e89-86b6-757a9e65dcac",
        "8518ed3d-f7c9-4601-a26c-f361a4256a0c",
        "bitsadmin to a suspicious folder; the case downloads into one",
    ),
    (
        "526be59f-a573-4eea-b5f7-f0973207634d",
        "3c89a1e8-0fba-449e-8f1b-8409d6267ec8",
        "wmic process call create, generic vs suspicious",
    ),
    (
        "526be59f-a573-4eea-b5f7-f0973207634d",
        "7773b877-5abb-4a3e-b9c9-fd0369b59b00",
        "wmic process call create, generic vs remote",
    ),
    (
        "76f55eaa-d27f-4213-9d45-7b0e4b60bbae",
        "68bcd73b-37ef-49cb-95fc-edc809730be6",
        "wmic service recon, generic vs unquoted-path search",
    ),
    (
        "8518ed3d-f7c9-4601-a26c-f361a4256a0c",
        "2ddef153-167b-4e89-86b6-757a9e65dcac",
        "bitsadmin from a file-sharing domain; the case uses one",
    ),
    (
        "88d6e60c-759d-4ac1-a447-c0f1466c2d21",
        "27ba3207-dd30-4812-abbf-5d20c57d474e",
        "--load-extension from anywhere vs from a script host",
    ),
    (
        "8fbf3271-1ef6-4e94-8210-03c2317947f6",
        "efc21479-9e83-41da-8cf1-122e06ba8db3",
        "credential-dump tool file names; NetExec drops one",
    ),
    (
        "c7da8edc-49ae-45a2-9e61-9fd860e4e73d",
        "25ffa65d-76d8-4da5-a832-3f2b0136e133",
        "Sysinternals EulaAccepted vs any EulaAccepted; the case is Sysinternals",
    ),
    (
        "d059842b-6b9d-4ed1-b5c3-5b89143c6ede",
        "2ddef153-167b-4e89-86b6-757a9e65dcac",
        "bitsadmin /transfer, generic vs suspicious folder",
    ),
    (
        "d059842b-6b9d-4ed1-b5c3-5b89143c6ede",
        "8518ed3d-f7c9-4601-a26c-f361a4256a0c",
        "bitsadmin /transfer, generic vs file-sharing domain",
    ),
    (
        "e62a9f0c-ca1e-46b2-85d5-a6da77f86d1a",
        "82a6714f-4899-4f16-9c1e-9a333544d4c3",
        "certutil -encode, generic vs suspicious location",
    ),
];

#[test]
fn test_rules_fires_each_regression_case_rule_over_the_corpus() {
    let Some(root) = sigma_dir() else { return };
    let cases = regression_cases(&root);
    assert!(cases.len() >= 100, "{} cases", cases.len());
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.ndjson");
    let text: Vec<String> = cases.iter().flat_map(|c| c.events.iter().map(Value::to_string)).collect();
    std::fs::write(&events, text.join("\n")).unwrap();
    let mut args = vec!["detect".to_owned(), "test-rules".to_owned(), "--json".to_owned()];
    for sub in ["rules", "rules-emerging-threats", "rules-threat-hunting", "rules-placeholder", "rules-compliance"] {
        args.extend(["--rules".to_owned(), root.join(sub).display().to_string()]);
    }
    args.extend(["--events".to_owned(), events.display().to_string()]);
    let output = super::command().args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("rules loaded"), "{stderr}");
    let results: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(results.len(), text.len());
    let fired = |i: usize| -> Vec<String> {
        results[i]["rules"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect()
    };
    let named: std::collections::BTreeSet<&str> = cases.iter().map(|c| c.rule.as_str()).collect();
    let mut next = 0;
    let mut crossed = Vec::new();
    for case in &cases {
        let range = next..next + case.events.len();
        next = range.end;
        let hits = range.clone().filter(|&i| fired(i).contains(&case.rule)).count();
        // `match_count` counts matches in the original .evtx; a JSON rendering
        // may hold several copies of the matching record, so at least that many.
        assert!(hits >= case.match_count.min(1), "rule {} fired on none of its case's events", case.rule);
        // No rule named by another case fires on this case's events, except
        // where the two rules overlap by design (checked by reading them).
        for i in range {
            for rule in fired(i) {
                if rule != case.rule && named.contains(rule.as_str()) {
                    crossed.push(format!("{rule} on {}", case.rule));
                }
            }
        }
    }
    crossed.sort();
    crossed.dedup();
    let overlaps: Vec<String> = OVERLAPS.iter().map(|(a, b, _)| format!("{a} on {b}")).collect();
    assert_eq!(crossed, overlaps, "rules firing on other cases' events");
}

#[test]
fn a_malformed_rule_is_named_with_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let rule = dir.path().join("broken.yml");
    std::fs::write(
        &rule,
        "title: Broken\nid: 0b7c1f3e-4d4a-4d0e-9f59-3c2d8a1e0001\nlogsource:\n    product: windows\ndetection:\n    selection:\n        Image|endswith|nosuchmodifier: x\n    condition: selection\n",
    )
    .unwrap();
    let events = dir.path().join("events.json");
    std::fs::write(&events, r#"[{"Image": "C:\\x"}]"#).unwrap();
    let output =
        run(&["detect", "test-rules", "--rules", rule.to_str().unwrap(), "--events", events.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "nothing loaded is an error");
    assert!(stderr.contains(&format!("{}:7", rule.display())), "file and line 7 named: {stderr}");
    assert!(stderr.contains("nosuchmodifier"), "{stderr}");
}

#[test]
fn simulate_then_evaluate_prints_the_metrics_per_kind() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("log");
    let output = run(&[
        "simulate",
        "ehr-access",
        "--seed",
        "7",
        "--out",
        out.to_str().unwrap(),
        "--days",
        "10",
        "--staff",
        "150",
        "--patients",
        "5000",
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(summary["accesses"].as_u64().unwrap() > 5000, "{summary}");
    for file in ["access.ndjson", "staff.ndjson", "patients.ndjson", "relationships.ndjson", "labels.ndjson"] {
        assert!(out.join(file).is_file(), "{file}");
    }
    // The same seed gives the same log.
    let again = dir.path().join("again");
    run(&[
        "simulate",
        "ehr-access",
        "--seed",
        "7",
        "--out",
        again.to_str().unwrap(),
        "--days",
        "10",
        "--staff",
        "150",
        "--patients",
        "5000",
    ]);
    assert_eq!(std::fs::read(out.join("access.ndjson")).unwrap(), std::fs::read(again.join("access.ndjson")).unwrap());

    let output = run(&["detect", "evaluate", "--input", out.to_str().unwrap(), "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    for part in std::iter::once(&report["overall"]).chain(report["by_kind"].as_object().unwrap().values()) {
        for key in ["precision", "recall", "false_alerts_per_1000", "roc_auc"] {
            assert!(part.get(key).is_some(), "{key} missing in {part}");
        }
    }
    assert!(report["by_kind"].as_object().unwrap().len() >= 8, "{report}");
    let overall = &report["overall"];
    assert!(overall["recall"].as_f64().unwrap() >= 0.8, "{overall}");
    assert!(overall["roc_auc"].as_f64().unwrap() >= 0.95, "{overall}");
    assert!(overall["false_alerts_per_1000"].as_f64().unwrap() <= 3.0, "{overall}");
    // Without labels the detector still runs; the evaluation says what is missing.
    std::fs::remove_file(out.join("labels.ndjson")).unwrap();
    let output = run(&["detect", "evaluate", "--input", out.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("labels.ndjson"));
}
