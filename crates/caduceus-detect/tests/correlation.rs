//! Sigma correlation rules: parsing (the specification's own examples and
//! malformed rules) and evaluation (each type, window edges, group-by,
//! aliases, chaining, out-of-order events, closing windows, memory caps).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use caduceus_detect::RuleError;
use caduceus_detect::correlation::{
    CompareOp, CorrelationHit, CorrelationKind, CorrelationRule, Correlator, CorrelatorOptions, check_references,
    parse, parse_timespan, parse_with_text,
};
use serde::Deserialize;
use serde_json::{Map, Value as Json};
use serde_norway::Value;

const SPEC_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/sigma/sigma-specification");

const S: i64 = 1_000;
const M: i64 = 60 * S;

fn rule(yaml: &str) -> CorrelationRule {
    let doc: Value = serde_norway::from_str(yaml).unwrap();
    parse_with_text(&doc, "test.yml", Some(1), yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn parse_error(yaml: &str) -> RuleError {
    let doc: Value = serde_norway::from_str(yaml).unwrap();
    match parse_with_text(&doc, "test.yml", Some(1), yaml) {
        Ok(rule) => panic!("parsed but should not have: {rule:?}"),
        Err(e) => e,
    }
}

fn fields(pairs: &[(&str, &str)]) -> Map<String, Json> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), Json::String((*v).to_owned()))).collect()
}

fn options(lateness_ms: i64) -> CorrelatorOptions {
    CorrelatorOptions { lateness_ms, ..CorrelatorOptions::default() }
}

/// One base-rule match.
#[derive(Clone)]
struct Ev {
    rule: String,
    time: i64,
    seq: u64,
    fields: Map<String, Json>,
}

fn ev(rule: &str, time: i64, seq: u64, pairs: &[(&str, &str)]) -> Ev {
    Ev { rule: rule.to_owned(), time, seq, fields: fields(pairs) }
}

/// Feed events (rules referenced by id) then flush; every hit, in order.
fn run(correlator: &mut Correlator, events: &[Ev]) -> Vec<CorrelationHit> {
    let mut hits = Vec::new();
    for e in events {
        hits.extend(correlator.observe(&e.rule, None, e.time, e.seq, &e.fields));
    }
    hits.extend(correlator.flush());
    hits
}

fn group_of(hit: &CorrelationHit) -> Vec<(&str, &str)> {
    hit.group.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

#[test]
fn schema_test_examples_all_parse() {
    let dir = format!("{SPEC_DIR}/tests/schema/correlation");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: Value = serde_norway::from_str(&text).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let rule = parse_with_text(&doc, &file, Some(1), &text).unwrap_or_else(|e| panic!("{e}"));
        names.push((file, rule));
    }
    names.sort_by(|a, b| a.0.cmp(&b.0));
    let kinds: Vec<(&str, &str)> = names.iter().map(|(f, r)| (f.as_str(), r.kind.name())).collect();
    assert_eq!(
        kinds,
        [
            ("event_count.yml", "event_count"),
            ("event_count_ecs.yml", "event_count"),
            ("temporal.yml", "temporal"),
            ("temporal_ordered.yml", "temporal_ordered"),
            ("value_avg.yml", "value_avg"),
            ("value_count.yml", "value_count"),
            ("value_percentile.yml", "value_percentile"),
            ("value_sum.yml", "value_sum"),
        ]
    );
    let event_count = &names[0].1;
    assert_eq!(event_count.id, "0e95725d-7320-415d-80f7-004da920fc11");
    assert_eq!(event_count.group_by, ["ComputerName"]);
    assert_eq!(event_count.timespan_ms, 3_600_000);
    assert_eq!(event_count.condition.bounds, [(CompareOp::Gte, 100.0)]);
    assert!(!event_count.generate);
    assert_eq!(names[1].1.taxonomy.as_deref(), Some("ecs"));
    // Temporal types default to "all the rules".
    assert_eq!(names[2].1.condition.bounds, [(CompareOp::Gte, 3.0)]);
    assert_eq!(names[5].1.kind, CorrelationKind::ValueCount { field: "User".into() });
    assert_eq!(names[5].1.timespan_ms, 86_400_000);
    assert_eq!(names[6].1.kind, CorrelationKind::ValuePercentile { field: "Image".into(), percentile: 50 });
    // No id: the rule is known by where it came from.
    assert_eq!(names[2].1.id, "temporal.yml:1");
}

/// Every YAML block of the specification that holds a correlation: the
/// complete ones parse, the fragments fail on what they leave out.
#[test]
fn specification_examples_parse() {
    let text =
        std::fs::read_to_string(format!("{SPEC_DIR}/specification/sigma-correlation-rules-specification.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim()) {
            (None, "```yaml" | "```yml") => current = Some(String::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    let (mut parsed, mut fragments) = (Vec::new(), 0);
    for block in &blocks {
        for document in serde_norway::Deserializer::from_str(block) {
            let mut doc = Value::deserialize(document).unwrap();
            let Some(map) = doc.as_mapping_mut() else { continue };
            let Some(correlation) = map.get("correlation") else { continue };
            let complete = correlation.get("type").is_some();
            // The type sections show only the correlation part.
            if !map.contains_key("title") {
                map.insert("title".into(), "specification example".into());
            }
            match parse(&doc, "spec.md", None) {
                Ok(rule) => {
                    assert!(complete);
                    parsed.push(rule);
                }
                Err(e) => {
                    assert!(!complete, "{e}");
                    assert!(e.message.contains("missing correlation type"), "{e}");
                    fragments += 1;
                }
            }
        }
    }
    let kinds: Vec<&str> = parsed.iter().map(|r| r.kind.name()).collect();
    assert_eq!(
        kinds,
        [
            "event_count",
            "value_count",
            "temporal",
            "temporal_ordered",
            "value_sum",
            "value_avg",
            "value_percentile",
            "temporal",
            "temporal_ordered",
            "event_count"
        ]
    );
    assert_eq!(fragments, 1);
    let aliased = &parsed[7];
    assert_eq!(aliased.aliases["internal_ip"]["internal_error"], "destination.ip");
    assert_eq!(aliased.aliases["remote_ip"]["new_network_connection"], "destination.ip");
    assert_eq!(aliased.timespan_ms, 10 * S);
    let outer = &parsed[8];
    assert_eq!(outer.level.as_deref(), Some("high"));
    assert_eq!(outer.status.as_deref(), Some("experimental"));
    assert_eq!(outer.falsepositives, ["Unlikely"]);
    assert_eq!(parsed[9].name.as_deref(), Some("multiple_failed_login"));
}

#[test]
fn timespans() {
    assert_eq!(parse_timespan("30s"), Ok(30 * S));
    assert_eq!(parse_timespan("5m"), Ok(5 * M));
    assert_eq!(parse_timespan("90m"), Ok(90 * M));
    assert_eq!(parse_timespan("1h"), Ok(60 * M));
    assert_eq!(parse_timespan("2d"), Ok(2 * 24 * 60 * M));
    for bad in ["", "m", "5", "5x", "5M", "1.5h", "-5m", "0s", "400d", "99999999999999999999d"] {
        assert!(parse_timespan(bad).is_err(), "{bad}");
    }
}

const GOOD: &str = "\
title: Brute force
id: 11111111-2222-3333-4444-555555555555
level: high
tags:
    - attack.credential-access
    - attack.t1110
correlation:
    type: event_count
    rules:
        - failed_login
    group-by:
        - User
    timespan: 5m
    condition:
        gte: 3
";

#[test]
fn parses_fields() {
    let r = rule(GOOD);
    assert_eq!(r.id, "11111111-2222-3333-4444-555555555555");
    assert_eq!(r.title, "Brute force");
    assert_eq!(r.level.as_deref(), Some("high"));
    assert_eq!(r.tags, ["attack.credential-access", "attack.t1110"]);
    assert_eq!(r.kind, CorrelationKind::EventCount);
    assert_eq!(r.rules, ["failed_login"]);
    assert_eq!(r.group_by, ["User"]);
    assert_eq!(r.timespan_ms, 5 * M);
    assert_eq!(r.file, "test.yml");
    assert_eq!(r.line, Some(1));

    // A range, a single rule as text, generate in either place.
    let r = rule(
        "title: r\nname: ranged\ngenerate: true\ncorrelation:\n  type: event_count\n  rules: a\n  group-by: Host\n  \
         timespan: 1h\n  condition:\n    gt: 100\n    lte: 200\n",
    );
    assert_eq!(r.id, "ranged");
    assert_eq!(r.rules, ["a"]);
    assert_eq!(r.group_by, ["Host"]);
    assert!(r.generate);
    assert!(r.condition.holds(101.0) && r.condition.holds(200.0));
    assert!(!r.condition.holds(100.0) && !r.condition.holds(201.0));
    assert!(r.condition.needs_closed_window());
    assert_eq!(r.condition.to_string(), "> 100 and <= 200");
    let r = rule(
        "title: r\ncorrelation:\n  type: temporal\n  generate: true\n  rules: [a, b]\n  timespan: 1m\n  condition:\n    \
         gte: 1\n",
    );
    assert!(r.generate);
    assert!(r.group_by.is_empty());
}

/// (yaml, expected line, words the message must contain)
const MALFORMED: &[(&str, usize, &str)] = &[
    (
        "title: t\ncorrelation:\n  type: event_cnt\n  rules: [a]\n  timespan: 5m\n  condition: {gte: 1}\n",
        3,
        "unknown correlation type \"event_cnt\"",
    ),
    ("title: t\ncorrelation:\n  type: event_count\n  timespan: 5m\n  condition: {gte: 1}\n", 2, "missing rules"),
    (
        "title: t\ncorrelation:\n  type: event_count\n  rules: []\n  timespan: 5m\n  condition: {gte: 1}\n",
        4,
        "rules is empty",
    ),
    ("title: t\ncorrelation:\n  type: event_count\n  rules: [a]\n  condition: {gte: 1}\n", 2, "missing timespan"),
    (
        "title: t\ncorrelation:\n  type: event_count\n  rules: [a]\n  timespan: 5x\n  condition: {gte: 1}\n",
        5,
        "unknown unit",
    ),
    (
        "title: t\ncorrelation:\n  type: event_count\n  rules: [a]\n  timespan: 300\n  condition: {gte: 1}\n",
        5,
        "no unit",
    ),
    (
        "title: t\ncorrelation:\n  type: event_count\n  rules: [a]\n  timespan: 0m\n  condition: {gte: 1}\n",
        5,
        "longer than zero",
    ),
    (
        "title: t\ncorrelation:\n  type: event_count\n  rules: [a]\n  timespan: 400d\n  condition: {gte: 1}\n",
        5,
        "longer than",
    ),
    ("title: t\ncorrelation:\n  type: event_count\n  rules: [a]\n  timespan: 5m\n", 2, "missing condition"),
    (
        "title: t\ncorrelation:\n  type: value_count\n  rules: [a]\n  timespan: 5m\n  condition:\n    gte: 3\n",
        6,
        "needs the field",
    ),
    (
        "title: t\ncorrelation:\n  type: value_count\n  rules: [a]\n  field: User\n  timespan: 5m\n  condition: {gte: 3}\n",
        5,
        "field belongs in the condition",
    ),
    ("title: t\ncorrelation:\n  type: temporal\n  rules: [a]\n  timespan: 5m\n", 4, "at least two rules"),
    ("title: t\ncorrelation:\n  type: temporal\n  rules: [a, a]\n  timespan: 5m\n", 4, "twice"),
    (
        "title: t\ncorrelation:\n  type: temporal\n  rules: [a, b]\n  timespan: 5m\n  condition:\n    gte: 3\n",
        6,
        "can never hold",
    ),
    (
        "title: t\ncorrelation:\n  type: event_count\n  rules: [a]\n  group_by: [User]\n  timespan: 5m\n  condition: {gte: 1}\n",
        5,
        "did you mean group-by",
    ),
    (
        "title: t\ncorrelation:\n  type: event_count\n  rules: [a]\n  timespan: 5m\n  condition:\n    more: 3\n",
        7,
        "unknown condition key \"more\"",
    ),
    (
        "title: t\ncorrelation:\n  type: event_count\n  rules: [a]\n  timespan: 5m\n  condition: {}\n",
        6,
        "no comparison",
    ),
    (
        "title: t\ncorrelation:\n  type: event_count\n  rules: [a]\n  timespan: 5m\n  condition:\n    gte: -1\n",
        7,
        "whole number",
    ),
    (
        "title: t\ncorrelation:\n  type: event_count\n  rules: [a]\n  timespan: 5m\n  condition:\n    gte: 1000000\n",
        7,
        "above the",
    ),
    (
        "title: t\ncorrelation:\n  type: event_count\n  rules: [a]\n  timespan: 5m\n  condition:\n    lt: 1\n",
        6,
        "can never hold",
    ),
    (
        "title: t\ncorrelation:\n  type: event_count\n  rules: [a]\n  timespan: 5m\n  condition:\n    gte: 1\n    field: X\n",
        8,
        "only for the value types",
    ),
    (
        "title: t\ncorrelation:\n  type: temporal\n  rules: [a, b]\n  group-by: [ip]\n  timespan: 5m\n  aliases:\n    \
         ip:\n      a: source.ip\n      c: dest.ip\n",
        8,
        "not among this correlation's rules",
    ),
    (
        "title: t\ncorrelation:\n  type: temporal\n  rules: [a, b]\n  group-by: [ip]\n  timespan: 5m\n  aliases:\n    \
         ip:\n      a: source.ip\n",
        8,
        "names no field for rule \"b\"",
    ),
    (
        "id: x\ncorrelation:\n  type: event_count\n  rules: [a]\n  timespan: 5m\n  condition: {gte: 1}\n",
        1,
        "missing title",
    ),
    ("title: t\nlevel: severe\ncorrelation: {}\n", 2, "level \"severe\""),
    ("title: t\ncorrelation: [1, 2]\n", 2, "must be a mapping"),
    ("title: t\ncorrelation:\n  rules: [a]\n", 2, "missing correlation type"),
    (
        "title: t\ncorrelation:\n  type: event_count\n  generate: yes please\n  rules: [a]\n  timespan: 5m\n  \
         condition: {gte: 1}\n",
        4,
        "true or false",
    ),
];

#[test]
fn malformed_rules_name_file_and_line() {
    for (yaml, line, words) in MALFORMED {
        let e = parse_error(yaml);
        assert_eq!(e.file, "test.yml", "{yaml}");
        assert!(e.message.contains(words), "expected {words:?} in {e}");
        assert_eq!(e.line, Some(*line), "{e}\n{yaml}");
        assert!(e.to_string().starts_with(&format!("test.yml:{line}: ")), "{e}");
    }
}

#[test]
fn errors_count_lines_from_the_document_start() {
    let yaml = "title: t\ncorrelation:\n  type: nope\n";
    let doc: Value = serde_norway::from_str(yaml).unwrap();
    // The document starts on line 20 of its file (after other documents).
    let e = parse_with_text(&doc, "rules/multi.yml", Some(20), yaml).unwrap_err();
    assert_eq!(e.to_string(), format!("rules/multi.yml:22: {}", e.message));
    // Without the text, the document's line.
    let e = parse(&doc, "rules/multi.yml", Some(20)).unwrap_err();
    assert_eq!(e.line, Some(20));
}

#[test]
fn size_caps() {
    let many: Vec<String> = (0..65).map(|i| format!("rule_{i}")).collect();
    let yaml = format!("title: t\ncorrelation:\n  type: temporal\n  rules: [{}]\n  timespan: 5m\n", many.join(", "));
    assert!(parse_error(&yaml).message.contains("at most 64"));
    let yaml = format!("title: {}\ncorrelation: {{}}\n", "x".repeat(300));
    assert!(parse_error(&yaml).message.contains("longer than 256"));
    let yaml = format!(
        "title: t\ncorrelation:\n  type: event_count\n  rules: [{}]\n  timespan: 5m\n  condition: {{gte: 1}}\n",
        "r".repeat(300)
    );
    assert!(parse_error(&yaml).message.contains("longer than 256"));
}

// ---------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------

#[test]
fn event_count_window_edges() {
    let brute = rule(GOOD);
    // Exactly one timespan apart: inside (windows are closed at both ends).
    let mut c = Correlator::with_options(vec![brute.clone()], options(0));
    let events = [
        ev("failed_login", 0, 1, &[("User", "alice")]),
        ev("failed_login", 150 * S, 2, &[("User", "alice")]),
        ev("failed_login", 5 * M, 3, &[("User", "alice")]),
    ];
    let fired = c.observe("failed_login", None, 0, 1, &events[0].fields);
    assert!(fired.is_empty());
    assert!(c.observe("failed_login", None, 150 * S, 2, &events[1].fields).is_empty());
    // Lateness 0: the hit comes with the event that completes it.
    let hits = c.observe("failed_login", None, 5 * M, 3, &events[2].fields);
    assert_eq!(hits.len(), 1);
    let hit = &hits[0];
    assert_eq!((hit.rule, hit.id.as_str(), hit.title.as_str()), (0, brute.id.as_str(), "Brute force"));
    assert_eq!(group_of(hit), [("User", "alice")]);
    assert_eq!((hit.count, hit.value), (3, 3.0));
    assert_eq!((hit.first_ms, hit.last_ms, hit.fired_ms), (0, 5 * M, 5 * M));
    assert_eq!(hit.events, [1, 2, 3]);
    assert_eq!(
        hit.explain(&brute),
        "3 events matched failed_login within 5m for User=alice (condition: event_count >= 3)"
    );

    // One millisecond more: outside.
    let mut c = Correlator::with_options(vec![brute], options(0));
    let mut late = events.clone();
    late[2].time = 5 * M + 1;
    assert!(run(&mut c, &late).is_empty());
}

#[test]
fn group_by_separates_groups() {
    let mut c = Correlator::with_options(vec![rule(GOOD)], options(0));
    let mut events = Vec::new();
    for i in 0..4 {
        events.push(ev("failed_login", i * 10 * S, i as u64 * 2, &[("User", "alice")]));
        if i < 2 {
            events.push(ev("failed_login", i * 10 * S + 1, i as u64 * 2 + 1, &[("User", "bob")]));
        }
    }
    // Events without the group-by field belong to no group.
    events.push(ev("failed_login", 50 * S, 99, &[("Host", "ws1")]));
    let hits = run(&mut c, &events);
    assert_eq!(hits.len(), 1);
    assert_eq!(group_of(&hits[0]), [("User", "alice")]);
    assert_eq!(hits[0].events, [0, 2, 4]);
    assert_eq!(c.stats().missing_group_field, 1);
}

#[test]
fn a_group_that_fired_waits_one_timespan() {
    let mut c = Correlator::with_options(vec![rule(GOOD)], options(0));
    let mut events: Vec<Ev> = (0..10).map(|i| ev("failed_login", i * 10 * S, i as u64, &[("User", "u")])).collect();
    events.extend((0..3).map(|i| ev("failed_login", 330 * S + i * 10 * S, 10 + i as u64, &[("User", "u")])));
    let hits = run(&mut c, &events);
    // Fired on the third event (20 s); muted until 20 s + 5 m = 320 s; the
    // window ending at 330 s holds the events from 30 s on and fires again.
    let fired: Vec<i64> = hits.iter().map(|h| h.fired_ms).collect();
    assert_eq!(fired, [20 * S, 330 * S]);
    assert_eq!(hits[1].first_ms, 30 * S);
    assert_eq!(hits[1].count, 8);
}

#[test]
fn referenced_by_name_or_id() {
    let r = rule(
        "title: t\ncorrelation:\n  type: event_count\n  rules: [by_name, 0000-id]\n  timespan: 1m\n  condition: \
         {gte: 2}\n",
    );
    let mut c = Correlator::with_options(vec![r], options(0));
    let f = fields(&[]);
    assert!(c.references("other-id", Some("by_name")));
    assert!(!c.references("other-id", Some("nothing")));
    assert!(c.observe("other-id", Some("by_name"), 0, 1, &f).is_empty());
    assert!(c.observe("unrelated", None, 1, 2, &f).is_empty());
    let hits = c.observe("0000-id", Some("whatever"), 2, 3, &f);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].events, [1, 3]);
    assert!(hits[0].group.is_empty());
}

#[test]
fn value_count_counts_distinct_values() {
    let r = rule(
        "title: spray\ncorrelation:\n  type: value_count\n  rules: [failed]\n  group-by: [Host]\n  timespan: 10m\n  \
         condition:\n    field: User\n    gte: 3\n",
    );
    let mut c = Correlator::with_options(vec![r.clone()], options(0));
    let events = [
        ev("failed", 0, 1, &[("Host", "dc1"), ("User", "alice")]),
        ev("failed", S, 2, &[("Host", "dc1"), ("User", "alice")]),
        ev("failed", 2 * S, 3, &[("Host", "dc1"), ("User", "bob")]),
        ev("failed", 3 * S, 4, &[("Host", "dc1")]),
        ev("failed", 4 * S, 5, &[("Host", "dc2"), ("User", "carol")]),
        ev("failed", 5 * S, 6, &[("Host", "dc1"), ("User", "bob")]),
        ev("failed", 6 * S, 7, &[("Host", "dc1"), ("User", "carol")]),
    ];
    let hits = run(&mut c, &events);
    assert_eq!(hits.len(), 1);
    assert_eq!(group_of(&hits[0]), [("Host", "dc1")]);
    assert_eq!((hits[0].value, hits[0].count), (3.0, 5));
    assert_eq!(hits[0].events, [1, 2, 3, 6, 7]);
    assert_eq!(c.stats().missing_value, 1);
    assert!(hits[0].explain(&r).starts_with("3 distinct values of User in 5 events"));
}

const TEMPORAL: &str = "\
title: recon
correlation:
    type: temporal
    rules: [recon_a, recon_b, recon_c]
    group-by: [Host]
    timespan: 5m
";

#[test]
fn temporal_any_order_within_the_window() {
    let mut c = Correlator::with_options(vec![rule(TEMPORAL)], options(0));
    let h = [("Host", "ws1")];
    let events =
        [ev("recon_c", 0, 1, &h), ev("recon_a", M, 2, &h), ev("recon_a", 2 * M, 3, &h), ev("recon_b", 5 * M, 4, &h)];
    let hits = run(&mut c, &events);
    assert_eq!(hits.len(), 1);
    assert_eq!((hits[0].value, hits[0].count, hits[0].first_ms, hits[0].last_ms), (3.0, 4, 0, 5 * M));

    // recon_c falls out of the window ending at recon_b.
    let mut c = Correlator::with_options(vec![rule(TEMPORAL)], options(0));
    let mut outside = events.clone();
    outside[3].time = 5 * M + 1;
    assert!(run(&mut c, &outside).is_empty());

    // Different hosts do not combine.
    let mut c = Correlator::with_options(vec![rule(TEMPORAL)], options(0));
    let events = [ev("recon_a", 0, 1, &h), ev("recon_b", S, 2, &h), ev("recon_c", 2 * S, 3, &[("Host", "ws2")])];
    assert!(run(&mut c, &events).is_empty());
}

#[test]
fn temporal_ordered_needs_the_listed_order() {
    let ordered = rule(&TEMPORAL.replace("type: temporal", "type: temporal_ordered"));
    let h = [("Host", "ws1")];
    let mut c = Correlator::with_options(vec![ordered.clone()], options(0));
    let events = [
        ev("recon_b", 0, 1, &h),
        ev("recon_a", S, 2, &h),
        ev("recon_c", 2 * S, 3, &h),
        ev("recon_b", 3 * S, 4, &h),
        ev("recon_b", 4 * S, 5, &h),
        ev("recon_c", 5 * S, 6, &h),
    ];
    let hits = run(&mut c, &events);
    assert_eq!(hits.len(), 1);
    // The chain a (2), b (4), c (6).
    assert_eq!(hits[0].events, [2, 4, 6]);
    assert_eq!((hits[0].count, hits[0].first_ms, hits[0].last_ms), (3, S, 5 * S));
    assert_eq!(
        hits[0].explain(&ordered),
        "3 of the rules recon_a then recon_b then recon_c matched in that order within 5m for Host=ws1 (condition: \
         temporal_ordered >= 3)"
    );

    // All three, but c before b: the plain temporal fires, the ordered one does not.
    let events = [ev("recon_a", 0, 1, &h), ev("recon_c", S, 2, &h), ev("recon_b", 2 * S, 3, &h)];
    let mut c = Correlator::with_options(vec![ordered], options(0));
    assert!(run(&mut c, &events).is_empty());
    let mut c = Correlator::with_options(vec![rule(TEMPORAL)], options(0));
    assert_eq!(run(&mut c, &events).len(), 1);
}

/// The specification's alias example: one address is the destination in
/// one rule's events and the source in the other's.
#[test]
fn aliases_map_group_by_names_to_each_rules_field() {
    let r = rule(
        "title: alias example\ncorrelation:\n    type: temporal\n    rules:\n        - internal_error\n        - \
         new_network_connection\n    group-by:\n        - internal_ip\n        - remote_ip\n    timespan: 10s\n    \
         aliases:\n        internal_ip:\n            internal_error: destination.ip\n            \
         new_network_connection: source.ip\n        remote_ip:\n            internal_error: source.ip\n            \
         new_network_connection: destination.ip\n",
    );
    let error = ev("internal_error", 0, 1, &[("destination.ip", "10.0.0.5"), ("source.ip", "203.0.113.9")]);
    let matching =
        ev("new_network_connection", 6 * S, 2, &[("source.ip", "10.0.0.5"), ("destination.ip", "203.0.113.9")]);
    let other = ev("new_network_connection", 5 * S, 3, &[("source.ip", "203.0.113.9"), ("destination.ip", "10.0.0.5")]);

    let mut c = Correlator::with_options(vec![r.clone()], options(0));
    let hits = run(&mut c, &[error.clone(), other.clone()]);
    assert!(hits.is_empty());

    let mut c = Correlator::with_options(vec![r], options(0));
    let hits = run(&mut c, &[error, other, matching]);
    assert_eq!(hits.len(), 1);
    assert_eq!(group_of(&hits[0]), [("internal_ip", "10.0.0.5"), ("remote_ip", "203.0.113.9")]);
    assert_eq!(hits[0].events, [1, 2]);
}

const FEWER: &str = "\
title: too few heartbeats
correlation:
    type: event_count
    rules: [heartbeat]
    group-by: [Host]
    timespan: 10m
    condition:
        lt: 3
";

#[test]
fn lt_condition_is_judged_when_the_window_closes() {
    let mut c = Correlator::with_options(vec![rule(FEWER)], options(0));
    let quiet = fields(&[("Host", "quiet")]);
    let busy = fields(&[("Host", "busy")]);
    // In time order (with no lateness allowed, anything else is late).
    let feed = [(0, 0, &quiet), (S, 10, &busy), (M, 1, &quiet), (2 * M, 11, &busy), (3 * M, 12, &busy)];
    for (t, seq, f) in feed {
        assert!(c.observe("heartbeat", None, t, seq, f).is_empty());
    }
    // The windows run [0, 10m] and [1s, 10m 1s]; they close once the
    // watermark passes their ends.
    assert!(c.advance(9 * M).is_empty());
    assert!(c.advance(10 * M).is_empty());
    let hits = c.advance(10 * M + 1);
    assert_eq!(hits.len(), 1);
    assert_eq!(group_of(&hits[0]), [("Host", "quiet")]);
    assert_eq!((hits[0].count, hits[0].first_ms, hits[0].last_ms, hits[0].fired_ms), (2, 0, M, 10 * M));
    assert_eq!(hits[0].events, [0, 1]);
    assert!(c.advance(11 * M).is_empty());
    // A later event opens a new window for the same group.
    assert!(c.observe("heartbeat", None, 30 * M, 5, &quiet).is_empty());
    let hits = c.advance(41 * M);
    assert_eq!(hits.len(), 1);
    assert_eq!((hits[0].count, hits[0].first_ms), (1, 30 * M));
    // Everything closed and idle has been released.
    assert_eq!(c.stats().groups, 0);
    assert_eq!(c.stats().buffered_events, 0);

    // eq: exactly three.
    let mut c = Correlator::with_options(vec![rule(&FEWER.replace("lt: 3", "eq: 3"))], options(0));
    for (t, seq, f) in feed {
        assert!(c.observe("heartbeat", None, t, seq, f).is_empty());
    }
    let hits = c.flush();
    assert_eq!(hits.len(), 1);
    assert_eq!(group_of(&hits[0]), [("Host", "busy")]);
}

#[test]
fn value_metrics() {
    let sum = rule(
        "title: exfil\ncorrelation:\n  type: value_sum\n  rules: [upload]\n  group-by: [User]\n  timespan: 1h\n  \
         condition:\n    field: bytes\n    gt: 1000\n",
    );
    let avg = rule(
        "title: avg\ncorrelation:\n  type: value_avg\n  rules: [upload]\n  group-by: [User]\n  timespan: 1h\n  \
         condition:\n    field: bytes\n    gt: 450.5\n",
    );
    let p90 = rule(
        "title: p90\ncorrelation:\n  type: value_percentile\n  rules: [upload]\n  timespan: 1h\n  condition:\n    \
         field: bytes\n    percentile: 90\n    gte: 900\n",
    );
    let mut c = Correlator::with_options(vec![sum, avg, p90], options(0));
    let mut hits = Vec::new();
    for (i, bytes) in ["400", "500", "not a number", "100", "900"].iter().enumerate() {
        let f = fields(&[("User", "u"), ("bytes", bytes)]);
        hits.extend(c.observe("upload", None, i as i64 * M, i as u64, &f));
    }
    let seen: Vec<(usize, i64, f64)> = hits.iter().map(|h| (h.rule, h.fired_ms, h.value)).collect();
    // At 4 m: the sum first passes 1000 (400+500+100+900); the average
    // first passes 450.5 (1900/4; at 1 m it was 450); the 90th percentile
    // (nearest rank) of four values is the largest.
    assert_eq!(seen, [(0, 4 * M, 1900.0), (1, 4 * M, 475.0), (2, 4 * M, 900.0)]);
    assert_eq!(c.stats().missing_value, 3);
}

#[test]
fn out_of_order_events_give_the_same_hits_as_in_order() {
    let rules = vec![
        rule(
            "title: burst\ncorrelation:\n  type: event_count\n  rules: [a, b]\n  group-by: [User]\n  timespan: 1m\n  condition: {gte: 4}\n",
        ),
        rule(
            "title: spread\ncorrelation:\n  type: value_count\n  rules: [a]\n  group-by: [User]\n  timespan: 2m\n  condition: {field: Host, gte: 3}\n",
        ),
        rule("title: all\ncorrelation:\n  type: temporal\n  rules: [a, b, c]\n  group-by: [User]\n  timespan: 1m\n"),
        rule(
            "title: seq\ncorrelation:\n  type: temporal_ordered\n  rules: [c, a, b]\n  group-by: [User]\n  timespan: 90s\n",
        ),
        rule(
            "title: few\ncorrelation:\n  type: event_count\n  rules: [c]\n  group-by: [User]\n  timespan: 1m\n  condition: {lte: 1}\n",
        ),
        rule(
            "title: range\ncorrelation:\n  type: event_count\n  rules: [a, b, c]\n  group-by: [Host]\n  timespan: 30s\n  condition: {gt: 2, lt: 5}\n",
        ),
        rule(
            "title: bytes\ncorrelation:\n  type: value_sum\n  rules: [b]\n  group-by: [User]\n  timespan: 2m\n  condition: {field: n, gte: 20}\n",
        ),
    ];
    // A deterministic pseudo-random event stream with distinct times.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % n
    };
    let mut events = Vec::new();
    let mut time = 0;
    for seq in 0..600u64 {
        time += 1 + next(4_000) as i64;
        let rule = ["a", "b", "c"][next(3) as usize];
        let user = format!("u{}", next(4));
        let host = format!("h{}", next(5));
        let n = next(10).to_string();
        events.push(ev(rule, time, seq, &[("User", &user), ("Host", &host), ("n", &n)]));
    }

    let reference = run(&mut Correlator::with_options(rules.clone(), options(0)), &events);
    for rule in 0..rules.len() {
        assert!(reference.iter().any(|h| h.rule == rule), "rule {rule} never fired: the test would prove little");
    }
    let in_order = run(&mut Correlator::with_options(rules.clone(), options(60 * S)), &events);
    assert_eq!(in_order, reference);

    // Shuffle: each event arrives as if delayed by up to 50 s.
    let mut shuffled: Vec<(i64, Ev)> = events.iter().map(|e| (e.time + next(50_000) as i64, e.clone())).collect();
    shuffled.sort_by_key(|(arrival, e)| (*arrival, e.seq));
    let shuffled: Vec<Ev> = shuffled.into_iter().map(|(_, e)| e).collect();
    assert_ne!(shuffled.iter().map(|e| e.seq).collect::<Vec<_>>(), events.iter().map(|e| e.seq).collect::<Vec<_>>());
    let mut c = Correlator::with_options(rules.clone(), options(60 * S));
    let out_of_order = run(&mut c, &shuffled);
    assert_eq!(c.stats().late_dropped, 0);
    assert_eq!(out_of_order, reference);

    // With too little lateness, the stragglers are dropped, and counted.
    let mut c = Correlator::with_options(rules, options(5 * S));
    run(&mut c, &shuffled);
    assert!(c.stats().late_dropped > 0);
}

#[test]
fn lateness_delays_hits_until_the_watermark_passes() {
    let mut c = Correlator::with_options(vec![rule(GOOD)], options(30 * S));
    let u = fields(&[("User", "u")]);
    for i in 0..3 {
        assert!(c.observe("failed_login", None, i * S, i as u64, &u).is_empty());
    }
    assert_eq!(c.watermark(), Some(2 * S - 30 * S));
    // An event older than the newest but within the lateness still counts.
    assert!(c.observe("failed_login", None, 500, 9, &u).is_empty());
    assert!(c.advance(31 * S - 1).is_empty());
    let hits = c.advance(31 * S);
    assert_eq!(hits.len(), 1);
    // The window ending at the third event in time order: 0, 0.5 s, 1 s.
    assert_eq!((hits[0].fired_ms, hits[0].count), (S, 3));
    assert_eq!(hits[0].events, [0, 9, 1]);
    // Now older than the watermark: late.
    assert!(c.observe("failed_login", None, S - 1, 10, &u).is_empty());
    assert_eq!(c.stats().late_dropped, 1);
    // At the watermark itself: still in time.
    c.observe("failed_login", None, S, 11, &u);
    assert_eq!(c.stats().late_dropped, 1);
}

#[test]
fn events_far_ahead_of_the_clock_are_dropped() {
    let mut c = Correlator::with_options(vec![rule(GOOD)], options(0));
    let u = fields(&[("User", "u")]);
    c.advance(1_000 * M);
    assert!(c.observe("failed_login", None, 1_000 * M + 2 * 60 * M, 1, &u).is_empty());
    assert_eq!(c.stats().future_dropped, 1);
    assert_eq!(c.stats().inputs, 0);
    assert_eq!(c.watermark(), Some(1_000 * M));
}

/// The specification's complete example: many failed logins (a
/// correlation) followed by a successful login, chained.
#[test]
fn chained_correlations_from_the_specification() {
    let text =
        std::fs::read_to_string(format!("{SPEC_DIR}/specification/sigma-correlation-rules-specification.md")).unwrap();
    let start = text.find("title: Correlation - Multiple Failed Logins").unwrap();
    let block = &text[start..start + text[start..].find("```").unwrap()];
    let mut correlations = Vec::new();
    for document in serde_norway::Deserializer::from_str(block) {
        let doc = Value::deserialize(document).unwrap();
        if doc.get("correlation").is_some() {
            correlations.push(parse(&doc, "spec.md", None).unwrap());
        }
    }
    assert_eq!(correlations.len(), 2);
    assert!(check_references(&correlations).is_empty());
    let mut c = Correlator::with_options(correlations, options(0));
    let failed = ("53ba33fd-3a50-4468-a5ef-c583635cfa92", Some("failed_login"));
    let success = ("4d0a2c83-c62c-4ed4-b475-c7e23a9269b8", Some("successful_login"));
    let alice = fields(&[("User", "alice")]);
    let bob = fields(&[("User", "bob")]);
    let mut hits = Vec::new();
    for i in 0..10 {
        hits.extend(c.observe(failed.0, failed.1, i * 50 * S, i as u64, &alice));
        if i < 5 {
            hits.extend(c.observe(failed.0, failed.1, i * 50 * S + 1, 100 + i as u64, &bob));
        }
    }
    // Bob failed only five times; his success is no brute force.
    hits.extend(c.observe(success.0, success.1, 8 * M, 200, &bob));
    assert!(hits.is_empty(), "the inner correlation is not reported on its own: {hits:?}");
    assert_eq!(c.stats().chained_hits, 1);
    hits.extend(c.observe(success.0, success.1, 9 * M, 201, &alice));
    assert_eq!(hits.len(), 1);
    let hit = &hits[0];
    assert_eq!(hit.title, "Correlation - Multiple Failed Logins Followed by Successful Login");
    assert_eq!(group_of(hit), [("User", "alice")]);
    // The inner hit (ten failures) then the success.
    assert_eq!(hit.events, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 201]);
    assert_eq!((hit.first_ms, hit.last_ms), (450 * S, 9 * M));
    assert_eq!(c.rule(hit.rule).unwrap().level.as_deref(), Some("high"));
}

#[test]
fn generate_reports_inner_correlations_too() {
    let inner = rule(
        "title: inner\nname: inner\ncorrelation:\n  type: event_count\n  rules: [base]\n  timespan: 1m\n  condition: \
         {gte: 2}\n",
    );
    let outer = rule(
        "title: outer\ncorrelation:\n  type: temporal\n  generate: true\n  rules: [inner, other]\n  timespan: 1m\n",
    );
    let mut c = Correlator::with_options(vec![outer, inner], options(0));
    let f = fields(&[]);
    let mut hits = Vec::new();
    hits.extend(c.observe("base", None, 0, 1, &f));
    hits.extend(c.observe("base", None, S, 2, &f));
    hits.extend(c.observe("other", None, 2 * S, 3, &f));
    let titles: Vec<&str> = hits.iter().map(|h| h.title.as_str()).collect();
    assert_eq!(titles, ["inner", "outer"]);
    assert_eq!(hits[1].events, [1, 2, 3]);
}

#[test]
fn reference_cycles_are_rejected() {
    let a = rule(
        "title: a\nname: a\ncorrelation:\n  type: event_count\n  rules: [b]\n  timespan: 1m\n  condition: {gte: 1}\n",
    );
    let b = rule("title: b\nname: b\ncorrelation:\n  type: temporal\n  rules: [a, base]\n  timespan: 1m\n");
    let ok =
        rule("title: ok\ncorrelation:\n  type: event_count\n  rules: [base]\n  timespan: 1m\n  condition: {gte: 1}\n");
    let problems = check_references(&[a.clone(), b.clone(), ok.clone()]);
    assert_eq!(problems.len(), 2);
    assert!(problems[0].message.contains("cycle"), "{}", problems[0]);
    let mut c = Correlator::with_options(vec![a, b, ok], options(0));
    assert_eq!(c.problems().len(), 2);
    let hits = c.observe("base", None, 0, 1, &fields(&[]));
    let titles: Vec<&str> = hits.iter().map(|h| h.title.as_str()).collect();
    assert_eq!(titles, ["ok"]);
}

#[test]
fn memory_stays_bounded_and_drops_are_counted() {
    // Groups per rule.
    let cap = CorrelatorOptions { lateness_ms: 0, max_groups_per_rule: 4, ..CorrelatorOptions::default() };
    let mut c = Correlator::with_options(vec![rule(GOOD)], cap);
    for i in 0..10 {
        c.observe("failed_login", None, i, i as u64, &fields(&[("User", &format!("u{i}"))]));
    }
    let stats = c.stats();
    assert!(stats.groups <= 4, "{stats:?}");
    assert_eq!(stats.groups_evicted, 6);
    assert_eq!(stats.evicted_events, 6);

    // Events per group: the oldest go (the threshold of 3 is below the cap).
    let cap = CorrelatorOptions { lateness_ms: 0, max_events_per_group: 5, ..CorrelatorOptions::default() };
    let mut c = Correlator::with_options(vec![rule(GOOD)], cap);
    let u = fields(&[("User", "u")]);
    for i in 0..20 {
        c.observe("failed_login", None, i * S, i as u64, &u);
    }
    assert_eq!(c.stats().buffered_events, 5);
    assert_eq!(c.stats().events_dropped, 15);

    // A threshold above the cap raises the cap for that rule: 12 must be reachable.
    let mut c = Correlator::with_options(vec![rule(&GOOD.replace("gte: 3", "gte: 12"))], cap);
    let hits: Vec<CorrelationHit> =
        (0..12).flat_map(|i| c.observe("failed_login", None, i * S, i as u64, &u)).collect();
    assert_eq!(hits.len(), 1);
    assert_eq!(c.stats().events_dropped, 0);

    // All events together.
    let cap = CorrelatorOptions { lateness_ms: 0, max_buffered_events: 16, ..CorrelatorOptions::default() };
    let mut c = Correlator::with_options(vec![rule(&GOOD.replace("gte: 3", "gte: 100"))], cap);
    for i in 0..40 {
        c.observe("failed_login", None, i * S, i as u64, &fields(&[("User", &format!("u{}", i % 8))]));
    }
    let stats = c.stats();
    assert!(stats.buffered_events <= 16, "{stats:?}");
    assert!(stats.groups_evicted > 0 && stats.evicted_events > 0, "{stats:?}");

    // Hits carry at most max_hit_events sequence numbers: first and last halves.
    let cap = CorrelatorOptions { lateness_ms: 0, max_hit_events: 4, ..CorrelatorOptions::default() };
    let mut c = Correlator::with_options(vec![rule(&GOOD.replace("gte: 3", "gte: 10"))], cap);
    let hits: Vec<CorrelationHit> =
        (0..10).flat_map(|i| c.observe("failed_login", None, i * S, i as u64, &u)).collect();
    assert_eq!(hits[0].events, [0, 1, 8, 9]);
    assert_eq!(hits[0].count, 10);
}

#[test]
fn state_is_released_as_time_passes() {
    let mut c = Correlator::with_options(vec![rule(GOOD)], options(0));
    for i in 0..50 {
        c.observe("failed_login", None, i * S, i as u64, &fields(&[("User", &format!("u{}", i % 7))]));
    }
    assert!(c.stats().buffered_events > 0);
    assert!(c.stats().groups > 0);
    // One timespan (and the mute) later, nothing is needed.
    c.advance(50 * S + 5 * M + 1);
    let stats = c.stats();
    assert_eq!((stats.groups, stats.buffered_events), (0, 0), "{stats:?}");
}
