//! The alert API end to end over real TLS: listing with every filter and
//! paging, reading one alert, each triage step and the order they may come
//! in, suppressions (of an alert, of a rule, of an entity) and their effect
//! on new findings, who may do what, bad input, and the events every change
//! leaves on the spine. Alerts are put in place through the store, as the
//! detection stage does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::sync::{Arc, Mutex};

use caduceus_core::{Severity, Timestamp};
use caduceus_server::Platform;
use caduceus_store::detect::{AlertStatus, NewAlert};
use reqwest::Method;
use serde_json::{Value, json};
use support::{Options, START, Server};

/// A finding as the detection stage hands it to the store.
fn finding(rule: &str, kind: &str, entity: &str, severity: Severity, minutes_ago: i64) -> NewAlert {
    NewAlert {
        id: uuid::Uuid::new_v4().to_string(),
        rule_id: rule.into(),
        rule_title: format!("Title of {rule}"),
        kind: kind.into(),
        severity,
        entity: Some(entity.into()),
        group_key: format!("[\"{kind}\",\"{rule}\",\"{entity}\"]"),
        time: Timestamp(START.0 - minutes_ago * 60_000),
        score: (kind == "ehr").then_some(0.91),
        explanation: format!("{rule} fired for {entity}"),
        context: vec!["no encounter, care team or order explains the access".into()],
        tags: vec!["attack.t1078".into(), "attack.initial-access".into()],
        patients: if kind == "ehr" { vec!["pat-0001".into()] } else { vec![] },
        events: vec![1],
        finding_seq: None,
    }
}

struct Harness {
    server: Server,
    platform: Arc<Platform>,
    analyst: String,
    /// The public id of the analyst's key: the actor its changes name.
    analyst_id: String,
    auditor: String,
    clinician: String,
}

impl Harness {
    async fn start() -> Self {
        let slot: Arc<Mutex<Option<Arc<Platform>>>> = Arc::default();
        let keep = slot.clone();
        let options = Options { ledger: false, manual_clock: true, port: 0, admin_label: "alerts-tests" };
        let server = support::start_prepared(
            options,
            |_| {},
            async move |platform: &Arc<Platform>| {
                *keep.lock().unwrap() = Some(platform.clone());
            },
        )
        .await;
        let platform = slot.lock().unwrap().take().unwrap();
        let key = |role: &'static str| {
            let server = &server;
            async move {
                let body = json!({"label": format!("{role} key"), "role": role, "expires_in_days": 7});
                let r = server.call(Method::POST, "/api/v1/api-keys", Some(&server.admin), Some(body)).await;
                let r = r.expect(201);
                (r.body["secret"].as_str().unwrap().to_owned(), r.body["key"]["token_id"].as_str().unwrap().to_owned())
            }
        };
        let (analyst, analyst_id) = key("security-analyst").await;
        let (auditor, _) = key("auditor").await;
        let (_, password) = server.create_user("dr.house", &["clinician"], None).await;
        let clinician = server.login_token("dr.house", &password).await;
        Self { server, platform, analyst, analyst_id, auditor, clinician }
    }

    async fn store(&self, finding: &NewAlert) -> String {
        let now = self.platform.clock.now();
        self.platform.store.upsert_alert(finding, 3_600_000, now).await.unwrap().alert.id
    }

    async fn get(&self, path: &str, token: &str) -> support::Reply {
        self.server.call(Method::GET, path, Some(token), None).await
    }

    async fn post(&self, path: &str, token: &str, body: Option<Value>) -> support::Reply {
        self.server.call(Method::POST, path, Some(token), body).await
    }

    /// Ids of the alerts a listing returns.
    async fn ids(&self, query: &str) -> Vec<String> {
        let r = self.get(&format!("/api/v1/alerts{query}"), &self.auditor).await.expect(200);
        r.body["alerts"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect()
    }

    /// The triage events on the spine: (key, target uid, detail).
    async fn triage_events(&self) -> Vec<(String, String, String)> {
        self.server
            .events()
            .await
            .into_iter()
            .filter(|e| e["payload"]["type"] == "config_change")
            .filter(|e| e["payload"]["key"].as_str().unwrap().starts_with("detect."))
            .map(|e| {
                (
                    e["payload"]["key"].as_str().unwrap().to_owned(),
                    e["target"]["uid"].as_str().unwrap_or_default().to_owned(),
                    e["payload"]["detail"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

#[tokio::test]
async fn alerts_are_listed_filtered_paged_and_read() {
    let h = Harness::start().await;
    // Oldest first: six alerts, one of them grouped from two findings.
    let a = h.store(&finding("proc-creation-1", "sigma", "WS-7", Severity::Medium, 50)).await;
    let b = h.store(&finding("proc-creation-1", "sigma", "WS-9", Severity::High, 40)).await;
    let c = h.store(&finding("brute-force", "correlation", "alice", Severity::High, 30)).await;
    let d = h.store(&finding("ehr-surname", "ehr", "u-17", Severity::Critical, 20)).await;
    let e = h.store(&finding("ehr-vip", "ehr", "u-18", Severity::Low, 10)).await;
    let f = h.store(&finding("proc-creation-1", "sigma", "WS-7", Severity::Low, 5)).await;
    assert_eq!(f, a, "a second finding of the same rule and entity within the window joins the alert");
    let g = h.store(&finding("dns-tunnel", "sigma", "WS-7", Severity::Informational, 1)).await;

    assert_eq!(h.ids("").await, [g.clone(), a.clone(), e.clone(), d.clone(), c.clone(), b.clone()]);
    assert_eq!(h.ids("?rule_id=proc-creation-1").await, [a.clone(), b.clone()]);
    assert_eq!(h.ids("?entity=WS-7").await, [g.clone(), a.clone()]);
    assert_eq!(h.ids("?kind=ehr").await, [e.clone(), d.clone()]);
    assert_eq!(h.ids("?severity=high").await, [d.clone(), c.clone(), b.clone()]);
    assert_eq!(h.ids("?severity=critical&kind=ehr").await, [d.as_str()]);
    let since = START.0 - 25 * 60_000;
    let until = START.0 - 8 * 60_000;
    assert_eq!(h.ids(&format!("?since={since}&until={until}")).await, [a.clone(), e.clone(), d.clone()]);
    assert!(h.ids("?status=closed").await.is_empty());
    assert_eq!(h.ids("?status=open").await.len(), 6);

    // Pages of two, following next_cursor, cover everything once.
    let mut seen = Vec::new();
    let mut path = "/api/v1/alerts?limit=2".to_owned();
    loop {
        let page = h.get(&path, &h.analyst).await.expect(200);
        seen.extend(page.body["alerts"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()));
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/alerts?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, h.ids("").await);

    // One alert, with what the analyst needs to judge it.
    let one = h.get(&format!("/api/v1/alerts/{a}"), &h.auditor).await.expect(200).body;
    assert_eq!(one["count"], 2);
    assert_eq!(one["severity"], "medium", "the highest severity of its findings");
    assert_eq!(one["status"], "open");
    assert_eq!(one["entity"], "WS-7");
    assert_eq!(one["first_seen"], START.0 - 50 * 60_000);
    assert_eq!(one["last_seen"], START.0 - 5 * 60_000);
    assert_eq!(one["attack"]["techniques"], json!(["T1078"]));
    assert_eq!(one["attack"]["tactics"], json!(["Initial Access"]));
    assert_eq!(one["explanation"], "proc-creation-1 fired for WS-7");
    let ehr = h.get(&format!("/api/v1/alerts/{d}"), &h.server.admin).await.expect(200).body;
    assert_eq!((ehr["score"].as_f64(), ehr["patients"].clone()), (Some(0.91), json!(["pat-0001"])));
    let r = h.get("/api/v1/alerts/no-such-alert", &h.analyst).await.expect(404);
    assert_eq!(r.code(), "not_found");

    // Bad queries: 400 with the one error shape.
    for bad in [
        "?limit=0",
        "?limit=501",
        "?limit=x",
        "?status=pending",
        "?severity=severe",
        "?kind=yara",
        "?since=-1",
        "?until=253402300800000",
        "?cursor=garbage",
        "?cursor=1.a%20b",
    ] {
        let r = h.get(&format!("/api/v1/alerts{bad}"), &h.analyst).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert_eq!(r.code(), "bad_request", "{bad}");
    }
    let long = "x".repeat(257);
    assert_eq!(h.get(&format!("/api/v1/alerts?entity={long}"), &h.analyst).await.expect(400).code(), "bad_request");

    // Who may read: not a clinician, not without credentials.
    assert_eq!(h.get("/api/v1/alerts", &h.clinician).await.expect(403).code(), "forbidden");
    assert_eq!(h.get(&format!("/api/v1/alerts/{a}"), &h.clinician).await.expect(403).code(), "forbidden");
    assert_eq!(h.get("/api/v1/suppressions", &h.clinician).await.expect(403).code(), "forbidden");
    assert_eq!(h.server.call(Method::GET, "/api/v1/alerts", None, None).await.expect(401).code(), "unauthorized");
    h.server.stop().await;
}

#[tokio::test]
async fn triage_follows_the_alert_status_and_is_recorded_on_the_spine() {
    let h = Harness::start().await;
    let id = h.store(&finding("ehr-surname", "ehr", "u-17", Severity::High, 10)).await;
    let path = |step: &str| format!("/api/v1/alerts/{id}/{step}");

    // Auditors and clinicians read or nothing; they do not triage.
    for token in [&h.auditor, &h.clinician] {
        assert_eq!(h.post(&path("acknowledge"), token, None).await.expect(403).code(), "forbidden");
        let r = h.post(&path("close"), token, Some(json!({"reason": "x"}))).await;
        assert_eq!(r.expect(403).code(), "forbidden");
    }
    assert_eq!(h.post("/api/v1/alerts/nope/acknowledge", &h.analyst, None).await.expect(404).code(), "not_found");

    let acked = h.post(&path("acknowledge"), &h.analyst, None).await.expect(200).body;
    assert_eq!(acked["status"], "acknowledged");
    assert_eq!(acked["acknowledged"]["by"], h.analyst_id.as_str(), "the key that acknowledged");
    assert_eq!(acked["acknowledged"]["at"], START.0);
    h.server.advance_secs(60);
    let again = h.post(&path("acknowledge"), &h.server.admin, None).await.expect(200).body;
    assert_eq!(again["acknowledged"], acked["acknowledged"], "acknowledging twice changes nothing");

    let r = h.post(&path("assign"), &h.analyst, Some(json!({"assignee": "soc-tier-2"}))).await.expect(200);
    assert_eq!((r.body["assignee"].clone(), r.body["status"].clone()), (json!("soc-tier-2"), json!("acknowledged")));
    let r = h.post(&path("assign"), &h.analyst, Some(json!({}))).await.expect(200);
    assert_eq!(r.body["assignee"], Value::Null, "assigning to nobody");
    for bad in [
        json!({"assignee": ""}),
        json!({"assignee": "x".repeat(257)}),
        json!({"assignee": 7}),
        json!({"assignee": "a", "extra": 1}),
        json!(["soc"]),
    ] {
        let r = h.post(&path("assign"), &h.analyst, Some(bad.clone())).await;
        assert_eq!((r.status, r.code()), (422, "unprocessable"), "{bad}: {}", r.body);
    }
    for bad in [json!({}), json!({"reason": ""}), json!({"reason": "x".repeat(1025)})] {
        let r = h.post(&path("close"), &h.analyst, Some(bad.clone())).await;
        assert_eq!((r.status, r.code()), (422, "unprocessable"), "{bad}: {}", r.body);
    }

    // The reason is kept with the alert, not on the spine (it may name a patient).
    let reason = "Jane Roe's chart: the clerk was checking her own appointment";
    let closed = h.post(&path("close"), &h.analyst, Some(json!({"reason": reason}))).await.expect(200).body;
    assert_eq!((closed["status"].clone(), closed["closed"]["reason"].clone()), (json!("closed"), json!(reason)));
    // Nothing follows a close.
    for (step, body) in [
        ("close", Some(json!({"reason": "again"}))),
        ("acknowledge", None),
        ("assign", Some(json!({"assignee": "x"}))),
        ("suppress", Some(json!({"reason": "r", "duration_minutes": 5}))),
    ] {
        let r = h.post(&path(step), &h.analyst, body).await;
        assert_eq!((r.status, r.code()), (409, "conflict"), "{step}: {}", r.body);
    }
    let stored = h.platform.store.get_alert(&id).await.unwrap().unwrap();
    assert_eq!(stored.status, AlertStatus::Closed);

    let events = h.triage_events().await;
    let keys: Vec<&str> = events.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "detect.alert.acknowledged",
            "detect.alert.acknowledged",
            "detect.alert.assigned",
            "detect.alert.assigned",
            "detect.alert.closed"
        ],
        "every change, and only changes that happened"
    );
    assert!(events.iter().all(|(_, target, detail)| *target == id && detail.contains(&id)));
    assert_eq!(events[2].2, format!("alert {id} assigned to soc-tier-2"));
    assert!(events.iter().all(|(_, _, detail)| !detail.contains("Jane") && !detail.contains("pat-0001")));
    h.server.stop().await;
}

#[tokio::test]
async fn suppressions_turn_new_findings_into_suppressed_alerts_until_they_expire() {
    let h = Harness::start().await;
    let id = h.store(&finding("proc-creation-1", "sigma", "WS-7", Severity::High, 10)).await;

    // Bad suppressions of an alert.
    for bad in [
        json!({"reason": "noisy"}),
        json!({"reason": "noisy", "duration_minutes": 0}),
        json!({"reason": "noisy", "duration_minutes": 129_601}),
        json!({"reason": "", "duration_minutes": 5}),
        json!({"reason": "noisy", "duration_minutes": 5, "until": 1}),
    ] {
        let r = h.post(&format!("/api/v1/alerts/{id}/suppress"), &h.analyst, Some(bad.clone())).await;
        assert_eq!((r.status, r.code()), (422, "unprocessable"), "{bad}: {}", r.body);
    }
    let body = json!({"reason": "x", "duration_minutes": 5});
    let r = h.post(&format!("/api/v1/alerts/{id}/suppress"), &h.auditor, Some(body)).await;
    assert_eq!(r.expect(403).code(), "forbidden");

    let r = h
        .post(
            &format!("/api/v1/alerts/{id}/suppress"),
            &h.analyst,
            Some(json!({"reason": "patch rollout on WS-7 this hour", "duration_minutes": 60})),
        )
        .await
        .expect(200);
    assert_eq!(r.body["alert"]["status"], "suppressed");
    assert_eq!(r.body["alert"]["suppressed"]["until"], START.0 + 3_600_000);
    let suppression = r.body["suppression"].clone();
    assert_eq!(
        (suppression["rule_id"].clone(), suppression["entity"].clone(), suppression["active"].clone()),
        (json!("proc-creation-1"), json!("WS-7"), json!(true))
    );

    // A new finding of that rule about that host joins the suppressed alert;
    // about another host, it opens an alert.
    h.server.advance_secs(120);
    let again = h.store(&finding("proc-creation-1", "sigma", "WS-7", Severity::High, -2)).await;
    assert_eq!(again, id);
    let other = h.store(&finding("proc-creation-1", "sigma", "WS-8", Severity::High, -2)).await;
    assert_eq!(h.ids("?status=suppressed").await, [id.as_str()]);
    assert_eq!(h.ids("?status=open").await, [other.as_str()]);

    // A suppression of one entity for every rule, made directly.
    for bad in [
        json!({"reason": "r", "duration_minutes": 30}),
        json!({"rule_id": null, "entity": null, "reason": "r", "duration_minutes": 30}),
        json!({"entity": "", "reason": "r", "duration_minutes": 30}),
        json!({"entity": "scanner", "reason": "r"}),
        json!({"entity": "scanner", "reason": "r", "duration_minutes": 30, "everything": true}),
    ] {
        let r = h.post("/api/v1/suppressions", &h.analyst, Some(bad.clone())).await;
        assert_eq!((r.status, r.code()), (422, "unprocessable"), "{bad}: {}", r.body);
    }
    let body = json!({"entity": "vuln-scanner-01", "reason": "authorised weekly scan", "duration_minutes": 30});
    assert_eq!(h.post("/api/v1/suppressions", &h.clinician, Some(body.clone())).await.expect(403).code(), "forbidden");
    let created = h.post("/api/v1/suppressions", &h.analyst, Some(body)).await.expect(201).body;
    let sid = created["id"].as_str().unwrap().to_owned();
    assert_eq!((created["rule_id"].clone(), created["entity"].clone()), (Value::Null, json!("vuln-scanner-01")));
    let scan = h.store(&finding("port-scan", "sigma", "vuln-scanner-01", Severity::Medium, -3)).await;
    assert_eq!(h.get(&format!("/api/v1/alerts/{scan}"), &h.analyst).await.expect(200).body["status"], "suppressed");

    let listed = |include_expired: bool| {
        let h = &h;
        async move {
            let r = h.get(&format!("/api/v1/suppressions?include_expired={include_expired}"), &h.auditor).await;
            r.expect(200).body["suppressions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(false).await.len(), 2);
    assert_eq!(h.get("/api/v1/suppressions?limit=0", &h.analyst).await.expect(400).code(), "bad_request");

    // Thirty-one minutes on, the scanner's has expired: its findings open alerts again.
    h.server.advance_secs(31 * 60);
    assert_eq!(listed(false).await, [suppression["id"].as_str().unwrap().to_owned()]);
    assert_eq!(listed(true).await.len(), 2);
    let later = h.store(&finding("port-scan", "sigma", "vuln-scanner-01", Severity::Medium, -40)).await;
    assert_eq!(h.get(&format!("/api/v1/alerts/{later}"), &h.analyst).await.expect(200).body["status"], "open");

    // Lifting a suppression; unknown ones are 404.
    let r = h.server.call(Method::DELETE, &format!("/api/v1/suppressions/{sid}"), Some(&h.auditor), None).await;
    assert_eq!(r.expect(403).code(), "forbidden");
    let r = h.server.call(Method::DELETE, &format!("/api/v1/suppressions/{sid}"), Some(&h.analyst), None).await;
    assert_eq!(r.status(204).body, Value::Null);
    let r = h.server.call(Method::DELETE, &format!("/api/v1/suppressions/{sid}"), Some(&h.analyst), None).await;
    assert_eq!(r.expect(404).code(), "not_found");
    assert_eq!(listed(true).await.len(), 1);

    let events = h.triage_events().await;
    let keys: Vec<&str> = events.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(keys, ["detect.alert.suppressed", "detect.suppression.created", "detect.suppression.deleted"]);
    assert!(events[0].2.contains(suppression["id"].as_str().unwrap()) && events[0].1 == id);
    assert!(events.iter().all(|(_, _, detail)| !detail.contains("patch rollout") && !detail.contains("weekly scan")));
    assert_eq!((events[1].1.as_str(), events[2].1.as_str()), (sid.as_str(), sid.as_str()));
    h.server.stop().await;
}

#[tokio::test]
async fn the_openapi_document_describes_the_alert_api() {
    let h = Harness::start().await;
    let doc = h.get("/api/openapi.json", &h.analyst).await.expect(200).body;
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/alerts", "get"),
        ("/api/v1/alerts/{id}", "get"),
        ("/api/v1/alerts/{id}/acknowledge", "post"),
        ("/api/v1/alerts/{id}/assign", "post"),
        ("/api/v1/alerts/{id}/close", "post"),
        ("/api/v1/alerts/{id}/suppress", "post"),
        ("/api/v1/suppressions", "get"),
        ("/api/v1/suppressions", "post"),
        ("/api/v1/suppressions/{id}", "delete"),
    ] {
        let op = &paths[path][method];
        assert!(op.is_object(), "{method} {path}");
        for status in ["401", "403"] {
            assert!(op["responses"][status].is_object(), "{method} {path} documents {status}");
        }
    }
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["NewSuppression"]["anyOf"].as_array().unwrap().len(), 2);
    assert_eq!(schemas["Closing"]["properties"]["reason"]["maxLength"], 1024);
    assert_eq!(schemas["Suppressing"]["properties"]["duration_minutes"]["maximum"], 129_600);
    assert_eq!(schemas["AlertView"]["properties"]["explanation"]["maxLength"], 4096);
    assert_eq!(schemas["AlertState"]["enum"], json!(["open", "acknowledged", "closed", "suppressed"]));
    h.server.stop().await;
}
