//! Devices through the real server: an inventory CSV, CISA and OSV
//! advisories (versioned: a revision updates, the same revision changes
//! nothing), an SBOM attached to a model and version, a scan whose findings
//! name the rule that matched, device risk with KEV enrichment, the
//! Vulnerability Finding events raising the built-in alert, unknown devices
//! discovered from network flows, and bad input refused without losing data.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use support::{Options, Server};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data");

fn data(rel: &str) -> PathBuf {
    let path = Path::new(DATA).join(rel);
    assert!(path.exists(), "test data missing: {} (the shared data must sit beside the checkout)", path.display());
    path
}

const INVENTORY: &str = "id,manufacturer,model,version,ip,criticality,segment,end_of_support\n\
pump-1,\"Becton, Dickinson and Company (BD)\",Alaris 8015 PC unit,9.33,10.20.0.11,life_sustaining,10.20.0.0/16,2020-01-01\n\
gw-1,Acme,Gateway,2.0,10.20.0.12,diagnostic,10.20.0.0/16,\n\
printer-1,Globex,LaserJet,1.0,10.30.0.5,non_clinical,,\n";

const CARGO_LOCK: &str = "version = 3\n\n[[package]]\nname = \"tokio\"\nversion = \"1.13.0\"\n\
source = \"registry+https://github.com/rust-lang/crates.io-index\"\n";

const KEV: &str = r#"{"title": "CISA Catalog of Known Exploited Vulnerabilities", "catalogVersion": "2026.11.30",
 "dateReleased": "2026-11-30T00:00:00.000Z", "count": 1, "vulnerabilities": [
 {"cveID": "CVE-2016-9355", "vendorProject": "BD", "product": "Alaris 8015", "vulnerabilityName": "test entry",
  "dateAdded": "2026-11-01", "shortDescription": "test", "requiredAction": "Apply mitigations per vendor instructions.",
  "dueDate": "2026-11-22", "knownRansomwareCampaignUse": "Unknown", "notes": "", "cwes": []}]}"#;

async fn start(kev: &Path) -> Server {
    start_with(kev, Vec::new()).await
}

async fn start_with(kev: &Path, advisory_dirs: Vec<PathBuf>) -> Server {
    let kev = kev.to_owned();
    let options = Options { ledger: false, manual_clock: false, port: 0, admin_label: "devices-tests" };
    support::start(options, move |config| {
        config.devices.kev_file = Some(kev);
        config.devices.advisory_dirs = advisory_dirs;
        config.network.online_detector = false;
    })
    .await
}

impl Server {
    async fn post_bytes(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let r = self
            .request(Method::POST, path)
            .bearer_auth(&self.admin)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        self.call(Method::GET, path, Some(&self.admin), None).await.expect(200).body
    }

    async fn wait_for_alert_titled(&self, title: &str) -> Value {
        for _ in 0..300 {
            let page = self.get("/api/v1/alerts").await;
            if let Some(alert) = page["alerts"].as_array().unwrap().iter().find(|a| a["rule_title"] == title) {
                return alert.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no alert titled {title}; alerts: {}", self.get("/api/v1/alerts").await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_advisories_sbom_scan_findings_risk_and_alert() {
    let scratch = tempfile::tempdir().unwrap();
    let kev = scratch.path().join("known_exploited_vulnerabilities.json");
    std::fs::write(&kev, KEV).unwrap();
    let server = start(&kev).await;

    // The inventory: all rows or none.
    let (status, body) = server
        .post_bytes("/api/v1/devices/import", "text/csv", b"id,manufacturer,model\nok,A,B\nbad id!,A,B\n".to_vec())
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("line 3"), "{body}");
    assert_eq!(server.get("/api/v1/devices").await["devices"].as_array().unwrap().len(), 0, "nothing imported");
    let (status, body) = server.post_bytes("/api/v1/devices/import", "text/csv", INVENTORY.as_bytes().to_vec()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["imported"], 3);
    let pump = server.get("/api/v1/devices/pump-1").await;
    assert_eq!(pump["device"]["criticality"], "life_sustaining");

    // Advisories: CSAF (CISA ICSMA) and OSV (RustSec JSON), versioned.
    let csaf = std::fs::read(data("cisa-csaf/icsma/icsma-17-017-02.json")).unwrap();
    let (status, receipt) = server.post_bytes("/api/v1/advisories", "application/json", csaf.clone()).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["id"], "ICSMA-17-017-02");
    assert_eq!(receipt["outcome"], "created");
    let (_, again) = server.post_bytes("/api/v1/advisories", "application/json", csaf.clone()).await;
    assert_eq!(again["outcome"], "unchanged");
    let mut revised: Value = serde_json::from_slice(&csaf).unwrap();
    let tracking = &mut revised["document"]["tracking"];
    let next = tracking["version"].as_str().unwrap().parse::<u32>().unwrap() + 1;
    tracking["version"] = json!(next.to_string());
    tracking["revision_history"]
        .as_array_mut()
        .unwrap()
        .push(json!({"date": "2026-11-30T00:00:00.000Z", "number": next.to_string(), "summary": "Test revision."}));
    tracking["current_release_date"] = json!("2026-11-30T00:00:00.000Z");
    let (status, updated) =
        server.post_bytes("/api/v1/advisories", "application/json", serde_json::to_vec(&revised).unwrap()).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["outcome"], "updated");
    let (_, older) = server.post_bytes("/api/v1/advisories", "application/json", csaf).await;
    assert_eq!(older["outcome"], "older");
    let view = server.get("/api/v1/advisories/ICSMA-17-017-02").await;
    assert_eq!(view["history"].as_array().unwrap().len(), 2, "{}", view["history"]);
    assert_eq!(view["advisory"]["revision"], next.to_string());
    let osv = std::fs::read(data("osv/rustsec-osv/crates/RUSTSEC-2021-0124.json")).unwrap();
    let (status, receipt) = server.post_bytes("/api/v1/advisories", "application/json", osv).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["source"], "osv");
    // A CSAF document the OASIS validator tests mark invalid (6.1.1) is refused, naming the test.
    let invalid = std::fs::read(data(
        "csaf-oasis/oasis-tcs-csaf/csaf_2.0/test/validator/data/mandatory/oasis_csaf_tc-csaf_2_0-2021-6-1-01-01.json",
    ))
    .unwrap();
    let (status, refused) = server.post_bytes("/api/v1/advisories", "application/json", invalid).await;
    assert_eq!(status, 422, "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("6.1.1"), "{refused}");
    let (status, _) =
        server.post_bytes("/api/v1/advisories", "application/json", b"{\"not\": \"an advisory\"}".to_vec()).await;
    assert_eq!(status, 422);

    // The gateway's SBOM (a Cargo.lock here), with its NTIA gaps.
    let (status, sbom) = server
        .post_bytes(
            "/api/v1/devices/sboms?manufacturer=Acme&model=Gateway&version=2.0",
            "application/octet-stream",
            CARGO_LOCK.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(status, 201, "{sbom}");
    assert_eq!(sbom["components"], 1);
    assert_eq!(sbom["ntia"]["complete"], false, "a lock file names no supplier or author");

    // Scan: the pump by its model and firmware, the gateway by its SBOM.
    let summary = server.call(Method::POST, "/api/v1/devices/scan", Some(&server.admin), None).await.expect(200).body;
    assert_eq!(summary["devices"], 3);
    assert!(summary["affected"].as_u64().unwrap() >= 3, "{summary}");
    let pump_findings = server.get("/api/v1/devices/findings?device=pump-1").await["findings"].clone();
    let pump_findings = pump_findings.as_array().unwrap();
    assert_eq!(pump_findings.len(), 2, "{pump_findings:?}");
    for finding in pump_findings {
        assert_eq!(finding["advisory"], "ICSMA-17-017-02");
        assert_eq!(finding["status"], "affected");
        assert_eq!(finding["rule"], "device_model");
        assert!(finding["provenance"]["version_check"].as_str().unwrap().contains("9.33"), "{finding}");
    }
    let kev_finding = pump_findings.iter().find(|f| f["cves"][0] == "CVE-2016-9355").unwrap();
    assert_eq!(kev_finding["kev"], true);
    let gateway = server.get("/api/v1/devices/findings?device=gw-1").await;
    let gateway = gateway["findings"].as_array().unwrap();
    assert_eq!(gateway.len(), 1, "{gateway:?}");
    assert_eq!(gateway[0]["advisory"], "RUSTSEC-2021-0124");
    assert_eq!(gateway[0]["rule"], "purl");
    assert!(server.get("/api/v1/devices/findings?device=printer-1").await["findings"].as_array().unwrap().is_empty());

    // Risk: KEV, life-sustaining and past end of support put the pump on top.
    let risk = server.get("/api/v1/devices/pump-1/risk").await;
    let gateway_risk = server.get("/api/v1/devices/gw-1/risk").await;
    assert!(
        risk["risk"]["score"].as_u64().unwrap() > gateway_risk["risk"]["score"].as_u64().unwrap(),
        "{risk} {gateway_risk}"
    );
    assert_eq!(risk["risk"]["kev"], 1);
    assert!(risk["risk"]["explanation"].to_string().contains("end of support"), "{risk}");

    // The findings went onto the spine; the KEV one raises the built-in alert.
    let alert = server.wait_for_alert_titled("Device affected by a known exploited vulnerability").await;
    assert_eq!(alert["severity"], "critical");

    // A second scan changes nothing.
    let again = server.call(Method::POST, "/api/v1/devices/scan", Some(&server.admin), None).await.expect(200).body;
    assert_eq!(again["changed"], 0, "{again}");
    let status = server.get("/api/v1/devices/status").await;
    assert_eq!(status["advisories"], 2);
    assert_eq!(status["kev_entries"], 1);
    assert!(status["findings_published"].as_u64().unwrap() >= 3);

    // Deleting a device takes its findings with it.
    server.call(Method::DELETE, "/api/v1/devices/gw-1", Some(&server.admin), None).await.expect(204);
    assert!(server.get("/api/v1/devices/findings?device=gw-1").await["findings"].as_array().unwrap().is_empty());
    server.call(Method::GET, "/api/v1/devices/gw-1", Some(&server.admin), None).await.expect(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_seen_in_flows_but_not_in_the_inventory_are_listed_as_unknown() {
    let scratch = tempfile::tempdir().unwrap();
    let kev = scratch.path().join("kev.json");
    std::fs::write(&kev, KEV).unwrap();
    // Advisories in a configured directory are imported at start.
    let advisories = scratch.path().join("advisories");
    std::fs::create_dir(&advisories).unwrap();
    for file in ["cisa-csaf/icsma/icsma-17-017-02.json", "osv/rustsec-osv/crates/RUSTSEC-2021-0124.json"] {
        let from = data(file);
        std::fs::copy(&from, advisories.join(from.file_name().unwrap())).unwrap();
    }
    let server = start_with(&kev, vec![advisories]).await;
    assert_eq!(server.get("/api/v1/devices/status").await["advisories"], 2);
    let device = json!({"id": "mon-1", "manufacturer": "Philips", "model": "IntelliVue MX40", "version": "B.06",
                        "ip": "10.20.0.21", "segment": "10.20.0.0/16", "criticality": "diagnostic"});
    server.call(Method::POST, "/api/v1/devices", Some(&server.admin), Some(device)).await.expect(201);
    let flow = |src: &str, dst: &str, port: u16, app: Value| {
        let mut fields = json!({"ts": 1_764_489_600.0, "duration": 0.5, "src_ip": src, "src_port": 40001,
                                "dst_ip": dst, "dst_port": port, "proto": "tcp", "src_pkts": 3, "dst_pkts": 3,
                                "src_bytes": 300, "dst_bytes": 300});
        if let Some(o) = app.as_object() {
            for (k, v) in o {
                fields[k] = v.clone();
            }
        }
        json!({"severity_id": 1, "actor": {"kind": "device", "uid": "zeek"}, "message": "network flow",
               "payload": {"type": "log_record", "product": "zeek", "service": null,
                           "category": "network_connection", "fields": fields}})
    };
    // The monitor talks to the central station inside its segment, then to an outside host.
    let events = [
        flow("10.20.0.21", "10.20.0.99", 24105, json!({})),
        flow("10.20.0.21", "203.0.113.7", 443, json!({"app_proto": "ssl"})),
        flow(
            "10.40.0.8",
            "10.40.0.2",
            104,
            json!({"app_proto": "dicom", "dicom": {"calling_ae": "CT_SCANNER_2", "called_ae": "PACS"}}),
        ),
    ];
    for event in events {
        server.call(Method::POST, "/api/v1/events", Some(&server.admin), Some(event)).await.expect(202);
    }
    let mut unknown = Value::Null;
    for _ in 0..100 {
        unknown = server.get("/api/v1/devices/unknown").await;
        if unknown["unknown"].as_array().unwrap().len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let keys: Vec<&str> = unknown["unknown"].as_array().unwrap().iter().map(|u| u["key"].as_str().unwrap()).collect();
    for key in ["ip:10.20.0.99", "ip:203.0.113.7", "ip:10.40.0.8", "ip:10.40.0.2"] {
        assert!(keys.contains(&key), "{key} missing from {unknown}");
    }
    assert!(!keys.contains(&"ip:10.20.0.21"), "the inventoried monitor is not unknown");
    let scanner = unknown["unknown"].as_array().unwrap().iter().find(|u| u["key"] == "ip:10.40.0.8").unwrap();
    assert_eq!(scanner["hints"]["ae_title"], "CT_SCANNER_2");
    let pacs = unknown["unknown"].as_array().unwrap().iter().find(|u| u["key"] == "ip:10.40.0.2").unwrap();
    assert_eq!(pacs["hints"]["ports"][0], "tcp/104");
    // The monitor talked outside its segment: it is exposed.
    let mut exposed = false;
    for _ in 0..100 {
        if server.get("/api/v1/devices/mon-1").await["exposed"] == true {
            exposed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(exposed, "mon-1 talked to 203.0.113.7 outside 10.20.0.0/16");
}
