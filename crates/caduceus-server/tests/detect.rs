//! Detection through the real server: a snooping access made through the
//! FHIR API raises an alert the alert API returns with its explanation;
//! rules are added, tested, disabled and enabled through the API; a log
//! record submitted as an event fires a rule; findings are Detection
//! Finding events on the spine, and nothing identifying a patient is in
//! them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod support;

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use support::{Options, Server};

const USER_SYSTEM: &str = "urn:caduceus:user";

async fn start() -> Server {
    let options = Options { ledger: true, manual_clock: true, port: 0, admin_label: "detect-tests" };
    support::start(options, |config| {
        config.identity.idle_timeout_secs = 6 * 3600;
        config.ledger.checkpoint_interval_secs = 86_400;
    })
    .await
}

impl Server {
    async fn user(&self, username: &str, roles: &[&str]) -> (String, String) {
        let (id, password) = self.create_user(username, roles, None).await;
        (id, self.login_token(username, &password).await)
    }

    async fn create(&self, bearer: &str, resource: &Value) -> String {
        let resource_type = resource["resourceType"].as_str().unwrap();
        let r = self.call(Method::POST, &format!("/fhir/{resource_type}"), Some(bearer), Some(resource.clone())).await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["id"].as_str().unwrap().to_owned()
    }

    /// Poll the alert API until `pick` finds an alert (or give up after 30 s).
    async fn wait_for_alert(&self, query: &str, pick: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..300 {
            let page =
                self.call(Method::GET, &format!("/api/v1/alerts?{query}"), Some(&self.admin), None).await.expect(200);
            if let Some(alert) = page.body["alerts"].as_array().unwrap().iter().find(|a| pick(a)) {
                return alert.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let page = self.call(Method::GET, "/api/v1/alerts", Some(&self.admin), None).await;
        panic!("no alert for {query}; alerts: {}", page.body);
    }
}

fn patient(family: &str, given: &str, line: &str, postal: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "name": [{"use": "official", "family": family, "given": [given]}],
        "gender": "female",
        "birthDate": "1950-05-05",
        "address": [{"use": "home", "line": [line], "city": "Kilbride", "postalCode": postal}],
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snooping_access_through_fhir_raises_an_explained_alert() {
    let server = start().await;
    let (clinician_id, clinician) = server.user("dr.ward", &["clinician"]).await;
    let (_, registrar) = server.user("front.desk", &["registrar"]).await;
    let practitioner = server
        .create(
            &server.admin,
            &json!({
                "resourceType": "Practitioner",
                "identifier": [{"system": USER_SYSTEM, "value": clinician_id}],
                "name": [{"family": "Ward", "given": ["Imogen"]}],
                "address": [{"use": "home", "line": ["4 Quay Lane"], "city": "Kilbride", "postalCode": "KB07 1QL"}],
            }),
        )
        .await;
    // A relative (same surname, same address) she does not treat, and a
    // patient she does (an encounter names her).
    let relative = server.create(&registrar, &patient("Ward", "Conor", "4 Quay Lane", "KB07 1QL")).await;
    let treated = server.create(&registrar, &patient("Okafor", "Amara", "9 Mill Row", "KB02 2MR")).await;
    server
        .create(
            &registrar,
            &json!({
                "resourceType": "Encounter",
                "status": "in-progress",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
                "subject": {"reference": format!("Patient/{treated}")},
                "participant": [{"individual": {"reference": format!("Practitioner/{practitioner}")}}],
            }),
        )
        .await;
    // The directory is rebuilt shortly after patients and staff change.
    tokio::time::sleep(Duration::from_secs(3)).await;

    server.call(Method::GET, &format!("/fhir/Patient/{treated}"), Some(&clinician), None).await.status(200);
    // The relative's record is refused, so she breaks the glass.
    server.call(Method::GET, &format!("/fhir/Patient/{relative}"), Some(&clinician), None).await.status(403);
    let reason = json!({"reason": "collapsed in the car park, needs the medication list"});
    server
        .call(Method::POST, &format!("/fhir/Patient/{relative}/$break-glass"), Some(&clinician), Some(reason))
        .await
        .status(201);
    server.call(Method::GET, &format!("/fhir/Patient/{relative}"), Some(&clinician), None).await.status(200);

    // Unexplained accesses wait out a settle window (an order or encounter
    // recorded soon after would explain them); then the alert is raised.
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.advance_secs(31 * 60);
    // The refused read alerts as a same-surname access; the break-glass and
    // the read under it group into one break-glass alert.
    let refused = server
        .wait_for_alert("rule_id=ehr.family", |a| {
            a["patients"].as_array().unwrap().iter().any(|p| p == relative.as_str())
        })
        .await;
    assert!(refused["explanation"].as_str().unwrap().contains("denied"), "{refused}");
    let alert = server
        .wait_for_alert("rule_id=ehr.break_glass_abuse", |a| {
            a["patients"].as_array().unwrap().iter().any(|p| p == relative.as_str()) && a["count"] == 2
        })
        .await;
    assert_eq!(alert["entity"], clinician_id.as_str(), "{alert}");
    assert_eq!(alert["status"], "open");
    let explanation = alert["explanation"].as_str().unwrap();
    for words in ["surname", "address", "Nothing explains it"] {
        assert!(explanation.contains(words), "`{words}` missing from: {explanation}");
    }
    assert!(alert["context"].as_array().unwrap().iter().any(|c| c.as_str().unwrap().contains("break")), "{alert}");
    // Names and addresses never reach the alert.
    let text = alert.to_string();
    for secret in ["Ward", "Conor", "Quay", "KB07"] {
        assert!(!text.contains(secret), "`{secret}` leaked into {text}");
    }
    // The treated patient raised nothing.
    let all = server.call(Method::GET, "/api/v1/alerts?kind=ehr", Some(&server.admin), None).await.expect(200);
    assert!(
        !all.body["alerts"].as_array().unwrap().iter().any(|a| a["patients"].to_string().contains(&treated)),
        "{}",
        all.body
    );
    // The alert's one by one: GET by id, then the finding on the spine,
    // an OCSF Detection Finding (2004).
    let id = alert["id"].as_str().unwrap();
    let one = server.call(Method::GET, &format!("/api/v1/alerts/{id}"), Some(&server.admin), None).await.expect(200);
    assert_eq!(one.body["explanation"], alert["explanation"]);
    let events = server.events().await;
    let finding = events
        .iter()
        .find(|e| e["class_uid"] == 2004 && e["payload"]["patients"].to_string().contains(&relative))
        .expect("a detection finding event");
    assert_eq!(finding["payload"]["kind"], "ehr");
    assert!(!finding.to_string().contains("Ward"));
    // Triage: acknowledge through the API.
    let r = server
        .call(Method::POST, &format!("/api/v1/alerts/{id}/acknowledge"), Some(&server.admin), Some(json!({})))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "acknowledged");
    let text = server.request(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    assert!(text.contains("caduceus_detect_events_total"), "{text}");
    assert!(text.contains("caduceus_spine_consumer_lag{consumer=\"detect\"}"), "{text}");
    server.stop().await;
}

const SUSPICIOUS_POWERSHELL: &str = r#"
title: Encoded PowerShell from an Office application
id: 5f0c2f7e-8d9a-4f38-9a55-3f1c2f0b7e11
status: experimental
logsource:
    product: windows
    category: process_creation
detection:
    parent:
        ParentImage|endswith:
            - '\winword.exe'
            - '\excel.exe'
    child:
        Image|endswith: '\powershell.exe'
        CommandLine|contains|windash: '-enc'
    condition: parent and child
level: high
tags:
    - attack.execution
    - attack.t1059.001
"#;

#[tokio::test(flavor = "multi_thread")]
async fn rules_are_added_tested_disabled_and_fire_on_submitted_log_records() {
    let server = start().await;
    let admin = server.admin.clone();
    // The built-in rules are there.
    let page = server.call(Method::GET, "/api/v1/detect/rules?limit=500", Some(&admin), None).await.expect(200);
    assert!(page.body["total"].as_u64().unwrap() >= 10, "{}", page.body);
    // A malformed rule is refused with its line.
    let bad = "title: Broken\nid: 1d9b0a44-5d0e-4a38-b1a4-6a8a1f0f0001\nlogsource:\n    product: windows\ndetection:\n    selection:\n        Image|endswith: x\n    condition: selection and missing\n";
    let r = server.call(Method::POST, "/api/v1/detect/rules", Some(&admin), Some(json!({"yaml": bad}))).await;
    assert_eq!(r.status, 422, "{}", r.body);
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("api:8"), "the error names line 8: {message}");

    // Test a rule before adding it.
    let event = json!({
        "logsource": {"product": "windows", "category": "process_creation"},
        "ParentImage": "C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE",
        "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
        "CommandLine": "powershell.exe /enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQA",
    });
    let benign = json!({
        "logsource": {"product": "windows", "category": "process_creation"},
        "ParentImage": "C:\\Windows\\explorer.exe",
        "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
        "CommandLine": "powershell.exe -NoProfile",
    });
    let body = json!({"yaml": SUSPICIOUS_POWERSHELL, "events": [event, benign]});
    let r = server.call(Method::POST, "/api/v1/detect/rules/test", Some(&admin), Some(body)).await.expect(200);
    let id = "5f0c2f7e-8d9a-4f38-9a55-3f1c2f0b7e11";
    assert_eq!(r.body["results"][0]["rules"], json!([id]), "{}", r.body);
    assert_eq!(r.body["results"][1]["rules"], json!([]), "{}", r.body);
    // An event that is not an object is the request's error (schemathesis found it accepted).
    let r = server
        .call(Method::POST, "/api/v1/detect/rules/test", Some(&admin), Some(json!({"events": [benign, []]})))
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("event 1 is not a JSON object"), "{}", r.body);

    // Add it; a second upload of the same id conflicts.
    let r = server
        .call(Method::POST, "/api/v1/detect/rules", Some(&admin), Some(json!({"yaml": SUSPICIOUS_POWERSHELL})))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["ids"], json!([id]));
    let r = server
        .call(Method::POST, "/api/v1/detect/rules", Some(&admin), Some(json!({"yaml": SUSPICIOUS_POWERSHELL})))
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let rule = server.call(Method::GET, &format!("/api/v1/detect/rules/{id}"), Some(&admin), None).await.expect(200);
    assert_eq!(rule.body["origin"], "api");
    assert_eq!(rule.body["enabled"], true);

    // A sensor submits the process start as a log record: the rule fires
    // and the alert carries the rule's ATT&CK tags.
    let submit = |host: &str| {
        json!({
            "severity_id": 1,
            "actor": {"kind": "device", "uid": host},
            "message": "process started",
            "payload": {"type": "log_record", "product": "windows", "service": "sysmon", "category": "process_creation",
                        "fields": {"Computer": host, "ParentImage": "C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE",
                                   "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                                   "CommandLine": "powershell.exe -enc SQBFAFgA"}}
        })
    };
    server.call(Method::POST, "/api/v1/events", Some(&admin), Some(submit("ward-pc-07"))).await.expect(202);
    let alert = server.wait_for_alert(&format!("rule_id={id}"), |_| true).await;
    assert_eq!(alert["entity"], "ward-pc-07");
    assert_eq!(alert["kind"], "sigma");
    assert_eq!(alert["severity"], "high");
    assert!(alert["tags"].to_string().contains("attack.t1059.001"), "{alert}");
    // The same again groups into the open alert.
    server.call(Method::POST, "/api/v1/events", Some(&admin), Some(submit("ward-pc-07"))).await.expect(202);
    let grouped = server.wait_for_alert(&format!("rule_id={id}"), |a| a["count"] == 2).await;
    assert_eq!(grouped["id"], alert["id"]);

    // Disabled, it stays quiet (a new host would otherwise open a new alert).
    let r =
        server.call(Method::POST, &format!("/api/v1/detect/rules/{id}/disable"), Some(&admin), Some(json!({}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["enabled"], false);
    server.call(Method::POST, "/api/v1/events", Some(&admin), Some(submit("lab-pc-02"))).await.expect(202);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let page = server.call(Method::GET, &format!("/api/v1/alerts?rule_id={id}"), Some(&admin), None).await.expect(200);
    assert_eq!(page.body["alerts"].as_array().unwrap().len(), 1, "{}", page.body);
    let r =
        server.call(Method::POST, &format!("/api/v1/detect/rules/{id}/enable"), Some(&admin), Some(json!({}))).await;
    assert_eq!(r.body["enabled"], true);
    server.call(Method::POST, "/api/v1/events", Some(&admin), Some(submit("lab-pc-03"))).await.expect(202);
    server.wait_for_alert(&format!("rule_id={id}"), |a| a["entity"] == "lab-pc-03").await;

    // A clinician may not read or change rules.
    let (_, clinician) = server.user("dr.rules", &["clinician"]).await;
    server.call(Method::GET, "/api/v1/detect/rules", Some(&clinician), None).await.expect(403);
    // Findings cannot be forged through the events API.
    let forged = json!({"severity_id": 4, "actor": {"kind": "service", "uid": "x"}, "message": "fake",
                        "payload": {"type": "detection_finding", "kind": "sigma", "rule_id": "x", "rule_title": "x",
                                    "entity": null, "patients": [], "score_milli": null, "explanation": "x",
                                    "context": [], "tags": [], "events": []}});
    server.call(Method::POST, "/api/v1/events", Some(&admin), Some(forged)).await.expect(422);
    // Deleting it removes it; rules from files cannot be deleted.
    server.call(Method::DELETE, &format!("/api/v1/detect/rules/{id}"), Some(&admin), None).await.expect(204);
    server.call(Method::GET, &format!("/api/v1/detect/rules/{id}"), Some(&admin), None).await.expect(404);
    server.stop().await;
}
