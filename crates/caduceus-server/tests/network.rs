//! The network stage through the real server: a pcap posted to the API
//! becomes flows on the spine, and a DICOM C-MOVE to an AE title the
//! hospital does not know raises an alert; HL7 from a host that is not an
//! interface engine too; a followed Zeek `conn.log` feeds flows that the
//! configured flow model scores (and a rewritten model file is hot-loaded);
//! the status endpoint and `/metrics` count it all; bad captures get a 400.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod support;

use std::time::Duration;

use caduceus_net::dicom::build;
use caduceus_net::pcap::capture::write;
use caduceus_net::pcap::linktype;
use etherparse::PacketBuilder;
use reqwest::Method;
use serde_json::Value;
use support::{Options, Server};

const PATIENT_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.1.2";

/// One TCP conversation from `client` to `server:port`: handshake, the
/// client's messages each answered by the server's, and a FIN exchange.
fn conversation(client: [u8; 4], server: [u8; 4], port: u16, exchange: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = write::pcap_header(linktype::RAW);
    let (mut c, mut s) = (1000u32, 5000u32);
    let mut t = 1_717_250_000.0;
    let mut put = |b: etherparse::PacketBuilderStep<etherparse::TcpHeader>, payload: &[u8]| {
        let mut f = Vec::new();
        b.write(&mut f, payload).unwrap();
        write::pcap_record(&mut out, t, &f);
        t += 0.01;
    };
    let up = |seq| PacketBuilder::ipv4(client, server, 64).tcp(40_001, port, seq, 64_000);
    let down = |seq| PacketBuilder::ipv4(server, client, 64).tcp(port, 40_001, seq, 64_000);
    put(up(c).syn(), &[]);
    put(down(s).syn().ack(c + 1), &[]);
    c += 1;
    s += 1;
    put(up(c).ack(s), &[]);
    for (ask, answer) in exchange {
        put(up(c).psh().ack(s), ask);
        c += ask.len() as u32;
        if !answer.is_empty() {
            put(down(s).psh().ack(c), answer);
            s += answer.len() as u32;
        }
    }
    put(up(c).fin().ack(s), &[]);
    put(down(s).fin().ack(c + 1), &[]);
    put(up(c + 1).ack(s + 1), &[]);
    out
}

fn c_move_pcap(destination: &str) -> Vec<u8> {
    let command = build::p_data(true, true, &build::command_set(0x0021, PATIENT_ROOT_MOVE, 1, Some(destination)));
    conversation(
        [10, 0, 3, 7],
        [10, 0, 5, 9],
        104,
        &[
            (build::associate_rq("PACS", "MODALITY1", PATIENT_ROOT_MOVE), build::associate_ac("PACS", "MODALITY1")),
            (command, Vec::new()),
            (build::release_rq(), Vec::new()),
        ],
    )
}

fn hl7_pcap(from: [u8; 4]) -> Vec<u8> {
    let message = b"MSH|^~\\&|RADIOLOGY|ST-MARY|EHR|ST-MARY|202611300830||ADT^A01^ADT_A01|MSG0001|P|2.5\rEVN|A01|202611300830\rPID|1||12345^^^ST-MARY^MR||DOE^JANE\r";
    let mut framed = vec![0x0b];
    framed.extend_from_slice(message);
    framed.extend_from_slice(&[0x1c, 0x0d]);
    let ack =
        b"\x0bMSH|^~\\&|EHR|ST-MARY|RADIOLOGY|ST-MARY|202611300830||ACK^A01|ACK0001|P|2.5\rMSA|AA|MSG0001\r\x1c\x0d";
    conversation(from, [10, 0, 9, 1], 2575, &[(framed, ack.to_vec())])
}

async fn start(configure: impl FnOnce(&mut caduceus_core::config::Config)) -> Server {
    let options = Options { ledger: false, manual_clock: false, port: 0, admin_label: "network-tests" };
    support::start(options, configure).await
}

impl Server {
    async fn post_pcap(&self, bytes: Vec<u8>, content_type: &str) -> (u16, Value) {
        let r = self
            .request(Method::POST, "/api/v1/network/pcap")
            .bearer_auth(&self.admin)
            .header("content-type", content_type)
            .body(bytes)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn wait_for_alert(&self, pick: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..300 {
            let page = self.call(Method::GET, "/api/v1/alerts", Some(&self.admin), None).await.expect(200);
            if let Some(alert) = page.body["alerts"].as_array().unwrap().iter().find(|a| pick(a)) {
                return alert.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let page = self.call(Method::GET, "/api/v1/alerts", Some(&self.admin), None).await;
        panic!("no such alert; alerts: {}", page.body);
    }

    async fn status(&self) -> Value {
        self.call(Method::GET, "/api/v1/network/status", Some(&self.admin), None).await.expect(200).body
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c_move_to_an_unknown_ae_title_in_a_posted_pcap_raises_an_alert() {
    let server = start(|config| {
        config.network.known_ae_titles = vec!["PACS".into(), "MODALITY1".into(), "VIEWER1".into()];
        config.network.hl7_senders = vec!["10.0.8.8".into()];
    })
    .await;
    // A move to a known AE title raises nothing about the destination.
    let (status, receipt) = server.post_pcap(c_move_pcap("VIEWER1"), "application/vnd.tcpdump.pcap").await;
    assert_eq!(status, 202, "{receipt}");
    assert_eq!(receipt["flows"], 1, "{receipt}");
    let (status, receipt) = server.post_pcap(c_move_pcap("EXFIL_AE"), "application/octet-stream").await;
    assert_eq!(status, 202, "{receipt}");
    let alert = server.wait_for_alert(|a| a["rule_id"] == "caduceus-net-dicom-move-unknown-ae").await;
    assert_eq!(alert["kind"], "network");
    assert_eq!(alert["severity"], "high");
    assert_eq!(alert["entity"], "10.0.3.7");
    let detail = server
        .call(Method::GET, &format!("/api/v1/alerts/{}", alert["id"].as_str().unwrap()), Some(&server.admin), None)
        .await
        .expect(200);
    let text = detail.body.to_string();
    assert!(text.contains("EXFIL_AE"), "{text}");
    assert!(!text.contains("VIEWER1"), "one alert per unknown destination: {text}");

    // HL7 from a host that is not the interface engine; the patient in the
    // message is never kept.
    let (status, _) = server.post_pcap(hl7_pcap([10, 0, 4, 4]), "application/vnd.tcpdump.pcap").await;
    assert_eq!(status, 202);
    let alert = server.wait_for_alert(|a| a["rule_id"] == "caduceus-net-hl7-unexpected-sender").await;
    let detail = server
        .call(Method::GET, &format!("/api/v1/alerts/{}", alert["id"].as_str().unwrap()), Some(&server.admin), None)
        .await
        .expect(200);
    let text = detail.body.to_string();
    assert!(text.contains("ADT^A01") && text.contains("RADIOLOGY"), "{text}");
    assert!(!text.contains("DOE") && !text.contains("12345"), "{text}");
    let events = server.call(Method::GET, "/api/v1/events?limit=200", Some(&server.admin), None).await.expect(200);
    let all = events.body.to_string();
    assert!(!all.contains("DOE^JANE"), "patient data reached the spine");

    let status = server.status().await;
    assert_eq!(status["flows_ingested"], 3, "{status}");
    assert!(status["findings_protocol"].as_u64().unwrap() >= 2, "{status}");
    let metrics = server.request(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("network_flows_ingested_total 3"), "{metrics}");

    // Not a capture: a clear 400; the wrong media type: 415.
    let (status, body) = server.post_pcap(b"not a capture at all".to_vec(), "application/vnd.tcpdump.pcap").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("capture"), "{body}");
    let (status, _) = server.post_pcap(c_move_pcap("X"), "text/plain").await;
    assert_eq!(status, 415);
}

/// A Zeek conn.log header and one line per flow.
fn zeek_lines(flows: &[(u16, u64)]) -> String {
    let mut text = String::from(
        "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n\
         #fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\n\
         #types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]\n",
    );
    for (i, (port, bytes)) in flows.iter().enumerate() {
        text.push_str(&format!(
            "1764491400.{i:06}\tC{i:017}\t10.0.3.7\t4{i:04}\t10.0.5.9\t{port}\ttcp\t-\t1.5\t{bytes}\t300\tSF\t-\t-\t0\tShADadFf\t10\t{}\t8\t700\t-\n",
            bytes + 520
        ));
    }
    text
}

/// A labelled CSV: flows over 1 MB sent are attacks.
fn training_csv(dir: &std::path::Path) -> std::path::PathBuf {
    let mut text = String::from("dur,sbytes,dbytes,spkts,dpkts,label\n");
    for i in 0..2000u64 {
        let attack = i % 4 == 0;
        let sbytes = if attack { 2_000_000 + i * 1000 } else { 200 + (i * 37) % 5000 };
        text.push_str(&format!(
            "{},{sbytes},{},{},{},{}\n",
            0.5 + (i % 7) as f64,
            300 + i % 50,
            10 + i % 9,
            8,
            u8::from(attack)
        ));
    }
    let path = dir.join("train.csv");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_zeek_log_is_scored_by_the_model_which_reloads_when_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let csv = training_csv(dir.path());
    let ds = caduceus_ml::Dataset::load(
        &csv,
        &caduceus_ml::LoadOptions { label_column: Some("label".into()), ..Default::default() },
    )
    .unwrap();
    let (model, _) = caduceus_ml::train(&ds, caduceus_ml::ModelKind::Gbt, &Default::default()).unwrap();
    let model_path = dir.path().join("flows.model");
    model.save(&model_path).unwrap();
    let log = dir.path().join("conn.log");
    std::fs::write(&log, "").unwrap();
    let (log_c, model_c) = (log.clone(), model_path.clone());
    let server = start(move |config| {
        config.network.zeek_logs = vec![log_c];
        config.network.model = Some(model_c);
        config.network.online_detector = false;
    })
    .await;
    let status = server.status().await;
    assert_eq!(status["model"]["kind"], "gbt", "{status}");
    assert_eq!(status["model_loads"], 1);

    // Ordinary flows, then one that sends 5 MB: the model flags that one.
    let mut flows: Vec<(u16, u64)> = (0..20).map(|i| (443, 400 + i * 10)).collect();
    flows.push((8443, 5_000_000));
    std::fs::write(&log, zeek_lines(&flows)).unwrap();
    let alert = server.wait_for_alert(|a| a["rule_id"] == "caduceus-net-model").await;
    assert_eq!(alert["count"], 1, "only the big flow: {alert}");
    assert_eq!(alert["entity"], "10.0.3.7");
    let status = server.status().await;
    assert_eq!(status["flows_ingested"], 21, "{status}");

    // A rewritten model file is loaded without a restart.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    model.save(&model_path).unwrap();
    for _ in 0..100 {
        if server.status().await["model_loads"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server.status().await["model_loads"], 2);
    // A broken one is refused and the loaded model stays.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(&model_path, b"{\"format\": \"caduceus-model\", \"version\": 99}").unwrap();
    for _ in 0..100 {
        if server.status().await["model_load_errors"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = server.status().await;
    assert_eq!(status["model_load_errors"], 1, "{status}");
    assert_eq!(status["model"]["kind"], "gbt");
}

/// The status endpoint's number, polled until `done` says it is reached.
async fn wait_for_status(server: &Server, key: &str, done: impl Fn(u64) -> bool) -> u64 {
    let mut value = 0;
    for _ in 0..300 {
        value = server.status().await[key].as_u64().unwrap();
        if done(value) {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{key} stayed at {value}");
}

/// Device baselines survive a restart: the server writes them when it stops and reads them
/// back when it starts, so a restart neither forgets what is normal nor gives every device a
/// fresh learning window. A file that is not a baseline state is set aside and learning
/// starts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_baselines_are_saved_at_shutdown_and_restored_at_start() {
    let server = start(|_| {}).await;
    let (status, receipt) = server.post_pcap(hl7_pcap([10, 0, 4, 4]), "application/vnd.tcpdump.pcap").await;
    assert_eq!(status, 202, "{receipt}");
    // Both ends are private addresses: each gets a baseline.
    let devices = wait_for_status(&server, "baseline_devices", |n| n >= 2).await;
    let dir = server.stop().await;
    let saved = std::fs::read(dir.path().join("network/baselines.json")).unwrap();
    let state: caduceus_net::baseline::BaselineState = serde_json::from_slice(&saved).unwrap();
    assert_eq!(state.device_count() as u64, devices);

    let restarted = start(|config| {
        let network = config.data_dir.join("network");
        std::fs::create_dir_all(&network).unwrap();
        std::fs::write(network.join("baselines.json"), &saved).unwrap();
    })
    .await;
    wait_for_status(&restarted, "baseline_devices_restored", |n| n == devices).await;
    let dir = restarted.stop().await;
    let again: caduceus_net::baseline::BaselineState =
        serde_json::from_slice(&std::fs::read(dir.path().join("network/baselines.json")).unwrap()).unwrap();
    assert_eq!(again, state, "restored and saved again unchanged");

    let broken = start(|config| {
        let network = config.data_dir.join("network");
        std::fs::create_dir_all(&network).unwrap();
        std::fs::write(network.join("baselines.json"), b"{\"version\": 1, \"devices\": [").unwrap();
    })
    .await;
    let (status, _) = broken.post_pcap(hl7_pcap([10, 0, 4, 5]), "application/vnd.tcpdump.pcap").await;
    assert_eq!(status, 202);
    wait_for_status(&broken, "baseline_devices", |n| n >= 2).await;
    assert_eq!(broken.status().await["baseline_devices_restored"], 0);
    let dir = broken.stop().await;
    assert!(dir.path().join("network/baselines.json.unreadable").exists());
    assert!(dir.path().join("network/baselines.json").exists());
}

/// The online detector survives a restart too: the flows it learned and its count, so the
/// warm-up does not start again. A state of another width or version is set aside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_online_detector_is_saved_at_shutdown_and_restored_at_start() {
    let server = start(|_| {}).await;
    let (status, receipt) = server.post_pcap(hl7_pcap([10, 0, 4, 6]), "application/vnd.tcpdump.pcap").await;
    assert_eq!(status, 202, "{receipt}");
    let judged = wait_for_status(&server, "flows_judged", |n| n >= 1).await;
    let dir = server.stop().await;
    let saved = std::fs::read(dir.path().join("network/online.json")).unwrap();
    let state: serde_json::Value = serde_json::from_slice(&saved).unwrap();
    assert_eq!(state["version"], 1);
    let seen = state["seen"].as_u64().unwrap();
    assert!(seen >= judged && seen > 0, "every judged flow was learned: {seen} of {judged}");
    assert!(state["detector"].is_object());

    let restarted = start(|config| {
        let network = config.data_dir.join("network");
        std::fs::create_dir_all(&network).unwrap();
        std::fs::write(network.join("online.json"), &saved).unwrap();
    })
    .await;
    wait_for_status(&restarted, "online_flows_restored", |n| n == seen).await;
    let (status, _) = restarted.post_pcap(hl7_pcap([10, 0, 4, 7]), "application/vnd.tcpdump.pcap").await;
    assert_eq!(status, 202);
    let more = wait_for_status(&restarted, "flows_judged", |n| n >= 1).await;
    let dir = restarted.stop().await;
    let again: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("network/online.json")).unwrap()).unwrap();
    let now = again["seen"].as_u64().unwrap();
    assert!(now >= seen + more, "learning went on from the saved count: {now} after {seen} and {more}");

    // Another width (as if the flow features changed): learning starts again.
    let mut other = state.clone();
    other["detector"]["dims"] = serde_json::json!(3);
    let widened = start(|config| {
        let network = config.data_dir.join("network");
        std::fs::create_dir_all(&network).unwrap();
        std::fs::write(network.join("online.json"), serde_json::to_vec(&other).unwrap()).unwrap();
    })
    .await;
    let (status, _) = widened.post_pcap(hl7_pcap([10, 0, 4, 8]), "application/vnd.tcpdump.pcap").await;
    assert_eq!(status, 202);
    wait_for_status(&widened, "flows_judged", |n| n >= 1).await;
    assert_eq!(widened.status().await["online_flows_restored"], 0);
    let dir = widened.stop().await;
    assert!(dir.path().join("network/online.json.unreadable").exists());
    assert!(dir.path().join("network/online.json").exists());
}
