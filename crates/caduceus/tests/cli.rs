//! The real `caduceus` binary, end to end: `demo`, `serve --config` on SQLite
//! and PostgreSQL, `admin issue-token`, `version`, bad configurations, and
//! clean shutdown on SIGTERM. The ledger (`cli/ledger.rs`) and the vault
//! commands (`cli/vault.rs`: import, rotate-kek, the patient-verifiable
//! access log) are modules of this binary, using its helpers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

#[path = "cli/detect.rs"]
mod detect;
#[path = "cli/devices.rs"]
mod devices;
#[path = "cli/ledger.rs"]
mod ledger;
#[path = "cli/network.rs"]
mod network;
/// Scanning stored bytes, shared with the server's `vault_at_rest` test.
#[path = "../../caduceus-server/tests/support/scan.rs"]
mod scan;
#[path = "cli/vault.rs"]
mod vault;

const BIN: &str = env!("CARGO_BIN_EXE_caduceus");

/// A running `caduceus` process and the lines it has printed.
struct Running {
    child: Child,
    stdout: Vec<String>,
    url: String,
    /// Its log so far, drained continuously so a busy server never blocks
    /// on a full pipe.
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    stderr_reader: std::thread::JoinHandle<()>,
}

fn command() -> Command {
    let mut cmd = Command::new(BIN);
    // The tests' own environment must not leak settings into the process.
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("CADUCEUS_")) {
        cmd.env_remove(key);
    }
    cmd.env("RUST_LOG", "info");
    cmd
}

/// Start the binary and wait for its `listening on URL` line.
fn spawn(mut cmd: Command) -> Running {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let log = stderr.clone();
    let pipe = child.stderr.take().unwrap();
    let stderr_reader = std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut log = log.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let url = url.to_owned();
                    lines.push(line);
                    return Running { child, stdout: lines, url, stderr, stderr_reader };
                }
                lines.push(line);
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no `listening on` line; stdout so far: {lines:?}; stderr: {}", stderr.lock().unwrap());
            }
        }
    }
}

impl Running {
    fn client(&self, data_dir: &Path) -> reqwest::Client {
        let pem = std::fs::read(data_dir.join("tls/cert.pem")).unwrap();
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .build()
            .unwrap()
    }

    /// SIGTERM, then expect a clean exit; returns stderr.
    fn terminate(self) -> String {
        let Self { mut child, stderr, stderr_reader, .. } = self;
        let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
        assert!(status.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(std::time::Instant::now() < deadline, "did not exit within 30 s of SIGTERM");
            #[allow(clippy::disallowed_methods)] // polling a child process from a test, not runtime code
            std::thread::sleep(Duration::from_millis(50));
        };
        // The pipe is closed: the reader ends once it has read everything.
        stderr_reader.join().unwrap();
        let stderr = stderr.lock().unwrap().clone();
        assert!(status.success(), "exit {status:?}; stderr: {stderr}");
        stderr
    }
}

/// The messages of the events the API lists, in order.
async fn event_messages(client: &reqwest::Client, url: &str, token: &str) -> Vec<String> {
    let events: Value =
        client.get(format!("{url}/api/v1/events")).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    events["events"].as_array().unwrap().iter().map(|e| e["event"]["message"].as_str().unwrap().to_owned()).collect()
}

fn token_from(lines: &[String]) -> String {
    lines
        .iter()
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with("cad_")).map(str::to_owned))
        .expect("a token line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_https_with_a_fresh_credential_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut cmd = command();
    cmd.args(["demo", "--listen", "127.0.0.1:0", "--data-dir"]).arg(&data);
    let demo = spawn(cmd);
    assert!(demo.url.starts_with("https://127.0.0.1:"), "{}", demo.url);
    let fingerprint = demo.stdout.iter().find(|l| l.contains("sha-256 fingerprint")).unwrap().clone();
    let token = token_from(&demo.stdout);

    let client = demo.client(&data);
    for path in ["/healthz", "/readyz", "/metrics", "/api/openapi.json"] {
        let r = client.get(format!("{}{path}", demo.url)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let messages = event_messages(&client, &demo.url, &token).await;
    assert!(messages.iter().any(|m| m == "caduceus started"));
    assert!(messages.iter().any(|m| m == "admin api token issued"));
    assert!(messages.iter().any(|m| m == "demo configuration loaded"));
    // Every role has a demo account that signs in with its printed password.
    let accounts = demo_accounts(&demo.stdout);
    assert_eq!(accounts.len(), 8, "{:?}", demo.stdout);
    let clinician = accounts.iter().find(|(u, _)| u == "demo.clinician").unwrap().1.clone();
    assert_eq!(login(&client, &demo.url, "demo.clinician", &clinician).await, 200);
    assert_eq!(login(&client, &demo.url, "demo.clinician", "not the password at all").await, 401);
    let stderr = demo.terminate();
    assert!(stderr.contains("shut down cleanly"), "{stderr}");
    assert!(!stderr.contains(&token), "the token must never reach the log");
    for (_, password) in &accounts {
        assert!(!stderr.contains(password.as_str()), "a password must never reach the log");
    }
    // Logs are JSON lines.
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }

    // A second start reuses the certificate and replaces the credential.
    let mut cmd = command();
    cmd.args(["demo", "--listen", "127.0.0.1:0", "--data-dir"]).arg(&data);
    let again = spawn(cmd);
    let fingerprint_again = again.stdout.iter().find(|l| l.contains("sha-256 fingerprint")).unwrap();
    assert_eq!(&fingerprint, fingerprint_again);
    let new_token = token_from(&again.stdout);
    assert_ne!(token, new_token, "each demo start prints a new credential");
    let client = again.client(&data);
    let old = client.get(format!("{}/api/v1/events", again.url)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(old.status(), 401, "the previous demo credential stops working");
    let new = client.get(format!("{}/api/v1/events", again.url)).bearer_auth(&new_token).send().await.unwrap();
    assert_eq!(new.status(), 200);
    let fresh = demo_accounts(&again.stdout).into_iter().find(|(u, _)| u == "demo.clinician").unwrap().1;
    assert_ne!(fresh, clinician, "each demo start prints new passwords");
    assert_eq!(login(&client, &again.url, "demo.clinician", &clinician).await, 401, "the old one stops working");
    assert_eq!(login(&client, &again.url, "demo.clinician", &fresh).await, 200);
    again.terminate();
}

/// The `demo.<role>  <password>` lines the demo prints.
fn demo_accounts(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let user = words.next()?;
            let password = words.next()?;
            (user.starts_with("demo.") && words.next().is_none()).then(|| (user.to_owned(), password.to_owned()))
        })
        .collect()
}

async fn login(client: &reqwest::Client, url: &str, username: &str, password: &str) -> u16 {
    let body = serde_json::json!({"username": username, "password": password});
    client.post(format!("{url}/api/v1/auth/login")).json(&body).send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_create_user_bootstraps_an_empty_install() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let mut cmd = command();
    cmd.args(["serve", "--config"]).arg(&config);
    let server = spawn(cmd);
    assert!(server.stdout.iter().any(|l| l.contains("no account exists yet")), "{:?}", server.stdout);
    server.terminate();

    // A generated password, printed once.
    let output = command()
        .args(["admin", "create-user", "--username", "Ada.Admin", "--role", "admin", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("username: ada.admin"), "{stdout}");
    assert!(stdout.contains("first account"), "{stdout}");
    assert!(stdout.contains("must enrol a second factor"), "{stdout}");
    let password = stdout.lines().find_map(|l| l.strip_prefix("password: ")).unwrap().trim().to_owned();
    assert!(!String::from_utf8_lossy(&output.stderr).contains(&password));

    // A chosen password on stdin is checked against the policy.
    let run_with_stdin = |username: &str, password: &str| {
        let mut child = command()
            .args(["admin", "create-user", "--role", "nurse", "--password-stdin", "--username", username, "--config"])
            .arg(&config)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        child.wait_with_output().unwrap()
    };
    let weak = run_with_stdin("nina.nurse", "password1234");
    assert!(!weak.status.success());
    let stderr = String::from_utf8_lossy(&weak.stderr);
    assert!(stderr.contains("commonly used") || stderr.contains("too easy"), "{stderr}");
    assert!(!stderr.contains("password1234"), "the password is never echoed: {stderr}");
    let ok = run_with_stdin("nina.nurse", "correct horse battery staple on ward nine");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let again = run_with_stdin("Nina.Nurse", "another long passphrase for the night shift");
    assert!(!again.status.success(), "usernames are unique, case-insensitively");
    assert!(String::from_utf8_lossy(&again.stderr).contains("taken"));

    // Both sign in through the server.
    let mut cmd = command();
    cmd.args(["serve", "--config"]).arg(&config);
    let server = spawn(cmd);
    assert!(!server.stdout.iter().any(|l| l.contains("no account exists yet")));
    let client = server.client(&dir.path().join("data"));
    let body = serde_json::json!({"username": "ada.admin", "password": password});
    let r: Value = client
        .post(format!("{}/api/v1/auth/login", server.url))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "authenticated");
    assert_eq!(r["restricted"], true, "an admin without a second factor may only enrol one: {r}");
    assert_eq!(login(&client, &server.url, "nina.nurse", "correct horse battery staple on ward nine").await, 200);
    server.terminate();
}

fn write_config(dir: &Path, storage: &str) -> std::path::PathBuf {
    let path = dir.join("caduceus.toml");
    let text = format!(
        "version = 1\ndata_dir = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\n{storage}",
        dir.join("data").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

async fn serve_round_trip(config: &Path, data: &Path, expected_backend: &str) {
    // With no token yet, serve says how to make one.
    let mut cmd = command();
    cmd.args(["serve", "--config"]).arg(config);
    let server = spawn(cmd);
    assert!(server.stdout.iter().any(|l| l.contains("no admin api token exists yet")), "{:?}", server.stdout);
    server.terminate();

    // Issue a token with the server stopped, then serve and use it.
    let output = command().args(["admin", "issue-token", "--label", "ops", "--config"]).arg(config).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let token = token_from(&String::from_utf8(output.stdout).unwrap().lines().map(str::to_owned).collect::<Vec<_>>());

    let mut cmd = command();
    cmd.args(["serve", "--config"]).arg(config);
    let server = spawn(cmd);
    assert!(!server.stdout.iter().any(|l| l.contains("no admin api token")));
    let client = server.client(data);
    let ready: Value = client.get(format!("{}/readyz", server.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["storage"], expected_backend);
    let status = client.get(format!("{}/api/v1/status", server.url)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(status.status(), 200);
    // Issuing a token is not a service start: the log says only what happened.
    let messages = event_messages(&client, &server.url, &token).await;
    assert_eq!(messages, vec!["caduceus started", "caduceus stopping", "admin api token issued", "caduceus started"]);
    // A token issued while the server runs works too, and the server keeps publishing.
    let output = command().args(["admin", "issue-token", "--config"]).arg(config).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let body = serde_json::json!({
        "severity_id": 1, "actor": {"kind": "system", "uid": "test"}, "message": "after cli",
        "payload": {"type": "config_change", "key": "k", "detail": "d"}
    });
    let r = client.post(format!("{}/api/v1/events", server.url)).bearer_auth(&token).json(&body).send().await;
    assert_eq!(r.unwrap().status(), 202);
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_a_config_file_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    serve_round_trip(&config, &dir.path().join("data"), "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_a_config_file_on_postgresql() {
    let admin_url =
        std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let admin = match sqlx_free_connect(&admin_url) {
        Ok(()) => admin_url,
        Err(e) => {
            if std::env::var("TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!("TEST_REQUIRE_POSTGRES=1 but PostgreSQL is unreachable: {e}");
            }
            eprintln!("\n*** SKIPPED: serve on PostgreSQL: cannot connect ({e}). ***\n");
            return;
        }
    };
    let name = format!("caduceus_cli_{}", std::process::id());
    psql(&admin, &format!("DROP DATABASE IF EXISTS {name}"));
    psql(&admin, &format!("CREATE DATABASE {name}"));
    let base = admin.rsplit_once('/').unwrap().0;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &format!("[storage]\nurl = \"{base}/{name}\"\n"));
    serve_round_trip(&config, &dir.path().join("data"), "postgres").await;
    psql(&admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}

/// Reach PostgreSQL with the `psql` client (no database driver in this crate).
fn sqlx_free_connect(url: &str) -> Result<(), String> {
    let out = Command::new("psql").args([url, "-tAc", "SELECT 1"]).output().map_err(|e| e.to_string())?;
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()) }
}

fn psql(url: &str, sql: &str) {
    let out = Command::new("psql").args([url, "-v", "ON_ERROR_STOP=1", "-tAc", sql]).output().unwrap();
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn bad_configurations_fail_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("version = 1\n[server]\nlistne = \"x\"\n", "unknown setting `server.listne`"),
        ("version = 1\n[server]\nmax_body_bytes = \"big\"\n", "`server.max_body_bytes`"),
        ("version = 1\n[server]\nlisten = \"not an address\"\n", "`server.listen`"),
        ("version = 3\n", "`version`"),
        ("version = \n", "TOML"),
    ];
    for (text, expected) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let output = command().args(["serve", "--config"]).arg(&path).output().unwrap();
        assert!(!output.status.success(), "{text:?} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(stderr.contains(expected), "{text:?}: {stderr}");
    }
    // An unknown environment override is refused the same way.
    let path = dir.path().join("ok.toml");
    std::fs::write(&path, "version = 1\n").unwrap();
    let output = command().args(["serve", "--config"]).arg(&path).env("CADUCEUS_SERVER__LISTN", "x").output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("server.listn"));
    // A missing file.
    let output = command().args(["serve", "--config", "/nonexistent/caduceus.toml"]).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read /nonexistent/caduceus.toml"));
}

#[test]
fn version_prints_the_version() {
    let output = command().arg("version").output().unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8(output.stdout).unwrap().trim(), format!("caduceus {}", env!("CARGO_PKG_VERSION")));
}
