//! The HTTP API end to end over real TLS: operations endpoints, the OpenAPI
//! document, JSON errors for every failure, limits, authentication, events,
//! graceful shutdown. Identity has its own test binaries (identity.rs, identity_sso.rs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use caduceus_core::config::Config;
use serde_json::{Value, json};
use support::{Options, Server};

async fn start_with(configure: impl FnOnce(&mut Config)) -> Server {
    let options = Options { ledger: false, manual_clock: false, port: 0, admin_label: "test" };
    support::start(options, |config| {
        config.server.max_body_bytes = 4096;
        configure(config);
    })
    .await
}

async fn start() -> Server {
    start_with(|_| {}).await
}

impl Server {
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(format!("{}{path}", self.url))
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(format!("{}{path}", self.url))
    }
}

/// Assert the one error shape and return its code.
async fn error_code(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status().as_u16(), status);
    assert!(response.headers().contains_key("x-request-id"), "every response carries a request id");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(!message.is_empty());
    body["error"]["code"].as_str().unwrap().to_owned()
}

fn submission(message: &str) -> Value {
    json!({
        "severity_id": 3,
        "actor": {"kind": "device", "uid": "infusion-pump-0042"},
        "target": {"kind": "config", "uid": "pump.drug-library"},
        "message": message,
        "payload": {"type": "config_change", "key": "pump.drug-library", "detail": "library v7 loaded"}
    })
}

#[tokio::test]
async fn operations_endpoints_answer_over_tls() {
    let server = start().await;
    let health = server.get("/healthz").send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.headers()["strict-transport-security"], "max-age=31536000");
    assert_eq!(health.headers()["x-content-type-options"], "nosniff");
    assert_eq!(health.json::<Value>().await.unwrap()["status"], "ok");

    let ready: Value = server.get("/readyz").send().await.unwrap().json().await.unwrap();
    assert_eq!(ready, json!({"status": "ready", "storage": "sqlite"}));

    // The spine's consumers (the vault's access index) acknowledge the start
    // events moments after they are published: wait for them to catch up.
    let mut text = String::new();
    for _ in 0..100 {
        let metrics = server.get("/metrics").send().await.unwrap();
        assert_eq!(metrics.status(), 200);
        text = metrics.text().await.unwrap();
        if text.contains("caduceus_spine_depth 0") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(text.contains(r#"caduceus_http_requests_total{method="GET",route="/healthz",status="200"} 1"#), "{text}");
    assert!(
        text.contains(r#"caduceus_http_request_duration_seconds_count{method="GET",route="/readyz",status="200"} 1"#)
    );
    assert!(text.contains("caduceus_spine_depth 0"));
    assert!(text.contains("caduceus_spine_published_total 2"), "start and token events: {text}");
    assert!(text.contains(r#"caduceus_spine_rejected_total{reason="full"} 0"#));
    assert!(text.ends_with("# EOF\n"));
    server.stop().await;
}

#[tokio::test]
async fn openapi_document_is_3_1_and_lists_every_endpoint() {
    let server = start().await;
    let doc: Value = server.get("/api/openapi.json").send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().unwrap();
    for path in ["/healthz", "/readyz", "/metrics", "/api/v1/events", "/api/v1/status"] {
        assert!(paths.contains_key(path), "{path} missing from the OpenAPI document");
    }
    assert!(paths["/api/v1/events"]["post"].is_object());
    assert!(paths["/api/v1/events"]["get"].is_object());
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert!(doc["components"]["schemas"]["SecurityEvent"].is_object());
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    for variant in doc["components"]["schemas"]["Payload"]["oneOf"].as_array().unwrap() {
        assert_eq!(variant["additionalProperties"], false, "payloads refuse unknown fields: {variant}");
    }
    assert_eq!(doc["components"]["schemas"]["Severity"]["enum"], json!([0, 1, 2, 3, 4, 5, 6, 99]));
    server.stop().await;
}

#[tokio::test]
async fn every_failure_is_a_json_error_with_a_stable_code() {
    let server = start().await;
    let auth = format!("Bearer {}", server.admin);

    let r = server.get("/no/such/route").send().await.unwrap();
    assert_eq!(error_code(r, 404).await, "not_found");

    let r = server.client.delete(format!("{}/healthz", server.url)).send().await.unwrap();
    assert_eq!(error_code(r, 405).await, "method_not_allowed");

    // Over the body limit, by Content-Length (refused before the body is read) ...
    let big = "x".repeat(10_000);
    let r = server.post("/api/v1/events").header("authorization", &auth).body(big.clone()).send().await.unwrap();
    assert_eq!(error_code(r, 413).await, "payload_too_large");
    // ... and streamed without a length.
    let r = server
        .post("/api/v1/events")
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .body(chunked(big.into_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 413).await, "payload_too_large");

    let r = server
        .post("/api/v1/events")
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 400).await, "bad_request");

    let r = server.post("/api/v1/events").header("authorization", &auth).body("{}").send().await.unwrap();
    assert_eq!(error_code(r, 415).await, "unsupported_media_type");

    let mut wrong = submission("x");
    wrong["payload"]["type"] = json!("no_such_payload");
    let r = server.post("/api/v1/events").header("authorization", &auth).json(&wrong).send().await.unwrap();
    assert_eq!(error_code(r, 422).await, "unprocessable");

    let r = server.get("/api/v1/events?limit=0").header("authorization", &auth).send().await.unwrap();
    assert_eq!(error_code(r, 400).await, "bad_request");
    let r = server.get("/api/v1/events?after=-1").header("authorization", &auth).send().await.unwrap();
    assert_eq!(error_code(r, 400).await, "bad_request");
    server.stop().await;
}

/// A body sent in chunks with no Content-Length.
fn chunked(bytes: Vec<u8>) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = bytes.chunks(1000).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

#[tokio::test]
async fn api_requires_a_valid_token() {
    let server = start().await;
    let r = server.get("/api/v1/events").send().await.unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"caduceus\"");
    assert_eq!(error_code(r, 401).await, "unauthorized");
    let r = server.get("/api/v1/events").bearer_auth("cad_not-a-real-token").send().await.unwrap();
    assert_eq!(error_code(r, 401).await, "unauthorized");
    let r = server.get("/api/v1/status").bearer_auth("something else").send().await.unwrap();
    assert_eq!(error_code(r, 401).await, "unauthorized");
    let status: Value =
        server.get("/api/v1/status").bearer_auth(&server.admin).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["storage"], "sqlite");
    assert_eq!(status["spine"]["head_seq"], 2);
    server.stop().await;
}

#[tokio::test]
async fn submitted_events_are_durable_and_listed_in_order() {
    let server = start().await;
    let r = server.post("/api/v1/events").bearer_auth(&server.admin).json(&submission("pump reconfigured")).send();
    let r = r.await.unwrap();
    assert_eq!(r.status(), 202);
    let receipt: Value = r.json().await.unwrap();
    assert_eq!(receipt["seq"], 3);

    let page: Value = server
        .get("/api/v1/events?after=0&limit=2")
        .bearer_auth(&server.admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert_eq!(page["next_after"], 2);
    let page: Value =
        server.get("/api/v1/events?after=2").bearer_auth(&server.admin).send().await.unwrap().json().await.unwrap();
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert!(page["next_after"].is_null());
    assert_eq!(events[0]["digest"], receipt["digest"]);
    let event = &events[0]["event"];
    assert_eq!(event["class_uid"], 6003);
    assert_eq!(event["severity_id"], 3);
    assert_eq!(event["actor"]["uid"], "infusion-pump-0042");
    server.stop().await;
}

#[tokio::test]
async fn hostile_requests_never_crash_the_server() {
    let server = start().await;
    let odd_paths = [
        "/%00",
        "/..%2f..%2fetc/passwd",
        "/api/v1/events?limit=99999999999999999999",
        "/api/v1/events?after=abc",
        "/healthz?%zz",
        "/api/openapi.json/../../x",
        "/metrics/",
        "//",
        "/api/v1/events?limit=1&limit=2",
    ];
    for path in odd_paths {
        let r = server.get(path).bearer_auth(&server.admin).send().await.unwrap();
        assert!(r.status().as_u16() < 500, "{path} gave {}", r.status());
    }
    let bodies = [
        "null",
        "[]",
        "\"\"",
        "{\"severity_id\": 300}",
        "{\"a\":",
        &"[".repeat(3000),
        &format!("\"{}\"", "\\u0000".repeat(500)),
    ];
    for body in bodies {
        let r = server
            .post("/api/v1/events")
            .bearer_auth(&server.admin)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{body:.40} gave {}", r.status());
    }
    assert_eq!(server.get("/healthz").send().await.unwrap().status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_records_the_stop_and_flushes_storage() {
    let server = start().await;
    assert_eq!(server.get("/healthz").send().await.unwrap().status(), 200);
    let dir = server.stop().await;
    // The database is consistent and complete after shutdown.
    let store = caduceus_store::open(&Config::with_data_dir(dir.path())).await.unwrap();
    let events = store.events_after(0, 100).await.unwrap();
    let messages: Vec<&str> = events.iter().map(|e| e.event.message()).collect();
    assert_eq!(messages, vec!["admin api token issued", "caduceus started", "caduceus stopping"]);
    assert!(
        !dir.path().join("caduceus.db-wal").exists()
            || std::fs::metadata(dir.path().join("caduceus.db-wal")).unwrap().len() == 0
    );
    store.close().await;
}

#[tokio::test]
async fn plaintext_only_when_asked_for_by_its_danger_name() {
    let server = start_with(|c| c.server.danger_plaintext_http = true).await;
    assert!(server.url.starts_with("http://"));
    let r = server.get("/healthz").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(!r.headers().contains_key("strict-transport-security"));
    server.stop().await;
}

#[tokio::test]
async fn a_request_that_takes_too_long_gets_a_json_408() {
    let server = start_with(|c| c.server.request_timeout_secs = 1).await;
    // A client that sends half a body, then stalls (slowloris on the body).
    let stalled = futures_util::stream::unfold(0u8, |step| async move {
        match step {
            0 => Some((Ok::<_, std::io::Error>(b"{\"severity_id\": 1,".to_vec()), 1)),
            1 => {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                Some((Ok(b"}".to_vec()), 2))
            }
            _ => None,
        }
    });
    let started = std::time::Instant::now();
    let r = server
        .post("/api/v1/events")
        .bearer_auth(&server.admin)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stalled))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 408).await, "timeout");
    assert!(started.elapsed() < std::time::Duration::from_secs(4), "answered at the timeout, not after the body");
    server.stop().await;
}
