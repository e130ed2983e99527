//! The harness the server's integration tests share: a `Platform` on a
//! temporary data directory served by `serve::run` over real TLS, a client
//! that trusts exactly the generated certificate, an admin API key, the
//! `Reply` answers are read into, and accounts made and signed in through
//! the API. What only one test binary needs stays in that binary; it may add
//! its own `impl Server` blocks.
//!
//! Included with `mod support;` (a directory module is not a test binary of
//! its own).

// Each test binary uses a subset of this module.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use caduceus_core::config::Config;
use caduceus_core::{Clock, ManualClock, SystemClock, Timestamp};
use caduceus_identity::otp::Totp;
use caduceus_server::serve::{self, Listening};
use caduceus_server::{Platform, auth};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// 2026-01-01T00:00:00Z, on a TOTP step boundary: where manual clocks start.
pub const START: Timestamp = Timestamp(1_767_225_600_000);

/// How to start a server.
pub struct Options {
    /// `Platform::start_with_ledger` (the ledger sealer runs) rather than
    /// `Platform::start`.
    pub ledger: bool,
    /// A `ManualClock` at [`START`] shared with the test, rather than the
    /// system clock.
    pub manual_clock: bool,
    /// The port to listen on; 0 for any free one.
    pub port: u16,
    /// Whom the admin API key is issued to.
    pub admin_label: &'static str,
}

pub struct Server {
    /// The URL the server reports it listens on (a test may replace it with
    /// the name the server gives itself).
    pub url: String,
    pub client: reqwest::Client,
    /// An admin API key (role admin, no scopes), as `caduceus admin issue-token` makes.
    pub admin: String,
    /// The generated certificate (`None` over plaintext HTTP).
    pub cert_path: Option<PathBuf>,
    /// The platform's clock, when it is a manual one.
    clock: Option<ManualClock>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), caduceus_server::platform::ServerError>>,
    dir: tempfile::TempDir,
}

/// A port that was free a moment ago, for a server that must know its port
/// before it binds it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub async fn start(options: Options, configure: impl FnOnce(&mut Config)) -> Server {
    start_prepared(options, configure, async |_| {}).await
}

/// Start a server; `prepare` runs on the platform (after the admin key is
/// issued) before it serves.
pub async fn start_prepared(
    options: Options,
    configure: impl FnOnce(&mut Config),
    prepare: impl AsyncFnOnce(&Arc<Platform>),
) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::with_data_dir(dir.path());
    config.server.listen = format!("127.0.0.1:{}", options.port);
    configure(&mut config);
    let plaintext = config.server.danger_plaintext_http;
    let clock = options.manual_clock.then(|| ManualClock::new(START));
    let platform_clock: Arc<dyn Clock> = match &clock {
        Some(clock) => Arc::new(clock.clone()),
        None => Arc::new(SystemClock),
    };
    let platform = if options.ledger {
        Platform::start_with_ledger(config, platform_clock).await.unwrap()
    } else {
        Platform::start(config, platform_clock).await.unwrap()
    };
    let admin = auth::issue_admin_token(&platform, options.admin_label, None, false).await.unwrap();
    prepare(&platform).await;
    let (tx, rx) = oneshot::channel::<()>();
    let (listening_tx, listening_rx) = oneshot::channel::<Listening>();
    let task = tokio::spawn(serve::run(
        platform,
        async move {
            let _ = rx.await;
        },
        move |l| {
            let _ = listening_tx.send(l.clone());
        },
    ));
    let listening = listening_rx.await.unwrap();
    let mut builder = reqwest::Client::builder().tls_built_in_root_certs(false);
    let cert_path = listening.tls.as_ref().map(|tls| tls.cert_path.clone());
    match &cert_path {
        // Trust exactly the generated certificate: the tests check real TLS.
        Some(path) => {
            let pem = std::fs::read(path).unwrap();
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
        }
        None => assert!(plaintext, "no TLS though plaintext HTTP was not asked for"),
    }
    Server {
        url: listening.url(),
        client: builder.build().unwrap(),
        admin: admin.secret.expose().clone(),
        cert_path,
        clock,
        shutdown: Some(tx),
        task,
        dir,
    }
}

impl Server {
    /// The platform's manual clock.
    pub fn clock(&self) -> &ManualClock {
        self.clock.as_ref().expect("a server on a manual clock")
    }

    pub fn advance_secs(&self, secs: i64) {
        self.clock().advance_millis(secs * 1000);
    }

    pub fn unix_secs(&self) -> u64 {
        u64::try_from(self.clock().now().as_millis() / 1000).unwrap()
    }

    /// The code an authenticator app shows now.
    pub fn code(&self, totp: &Totp) -> String {
        totp.format(totp.code_at_step(totp.step(self.unix_secs())))
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.url))
    }

    /// A JSON request with an optional bearer token and body.
    pub async fn call(&self, method: Method, path: &str, bearer: Option<&str>, body: Option<Value>) -> Reply {
        let mut request = self.request(method, path);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Reply::of(request.send().await.unwrap()).await
    }

    /// Create an account through the API with the admin key; the server
    /// generates the password. Returns (user id, password).
    pub async fn create_user(&self, username: &str, roles: &[&str], patient_ref: Option<&str>) -> (String, String) {
        let mut body = json!({"username": username, "roles": roles});
        if let Some(p) = patient_ref {
            body["patient_ref"] = json!(p);
        }
        let r = self.call(Method::POST, "/api/v1/users", Some(&self.admin), Some(body)).await.expect(201);
        assert_eq!(r.body["user"]["username"], username);
        (r.body["user"]["user_id"].as_str().unwrap().to_owned(), r.body["password"].as_str().unwrap().to_owned())
    }

    pub async fn login(&self, username: &str, password: &str) -> Reply {
        self.call(Method::POST, "/api/v1/auth/login", None, Some(json!({"username": username, "password": password})))
            .await
    }

    /// Sign in with a password alone (bearer); the session token.
    pub async fn login_token(&self, username: &str, password: &str) -> String {
        let r = self.login(username, password).await.expect(200);
        assert_eq!(r.body["status"], "authenticated", "{}", r.body);
        r.body["token"].as_str().unwrap().to_owned()
    }

    /// Every event on the spine, paging through, as the admin reads them.
    pub async fn events(&self) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let path = format!("/api/v1/events?after={after}&limit=500");
            let page = self.call(Method::GET, &path, Some(&self.admin), None).await.expect(200);
            all.extend(page.body["events"].as_array().unwrap().iter().map(|e| e["event"].clone()));
            match page.body["next_after"].as_u64() {
                Some(next) => after = next,
                None => return all,
            }
        }
    }

    /// Shut down gracefully; the data directory, to look at afterwards.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.shutdown.take().unwrap().send(()).unwrap();
        self.task.await.unwrap().unwrap();
        self.dir
    }
}

/// An answer: status, headers, and the body as JSON (`Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// A JSON answer (or none); anything else fails the test.
    pub async fn of(response: reqwest::Response) -> Self {
        Self::read(response, false).await
    }

    /// Like [`Reply::of`], but a body that is not JSON becomes a JSON string.
    pub async fn lenient(response: reqwest::Response) -> Self {
        Self::read(response, true).await
    }

    async fn read(response: reqwest::Response, lenient: bool) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else if lenient {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        } else {
            serde_json::from_str(&text).unwrap()
        };
        Self { status, headers, body }
    }

    /// Assert the status; return self.
    pub fn status(self, status: u16) -> Self {
        assert_eq!(self.status, status, "{}", self.body);
        self
    }

    /// Assert the status and, for an error, the platform's one JSON error
    /// shape; return self.
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(self.status, status, "{}", self.body);
        if status >= 400 {
            assert_eq!(self.headers["content-type"], "application/json");
            assert!(!self.body["error"]["message"].as_str().unwrap().is_empty(), "{}", self.body);
        }
        self
    }

    /// The platform error's code (empty when there is none).
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or_default()
    }
}
