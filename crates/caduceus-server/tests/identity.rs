//! Identity end to end through the HTTP API over real TLS: the access policy
//! of every route, brute force against sign-in, password + TOTP and recovery
//! codes, the second factor privileged roles must have, cookie sessions and
//! CSRF, idle and absolute timeouts and revocation, step-up, scoped API keys,
//! and the audit trail sign-ins leave.
//!
//! Time is a `ManualClock` shared by the platform and the test: back-offs,
//! timeouts and TOTP steps move only when a test says so, so nothing here
//! sleeps and every outcome is exact.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::collections::{BTreeMap, BTreeSet};

use caduceus_core::Clock;
use caduceus_core::config::Config;
use caduceus_identity::otp::{Algorithm, Totp};
use caduceus_identity::roles::Role;
use caduceus_identity::service::IdentitySettings;
use caduceus_server::access::{Access, POLICY, SESSION_COOKIE};
use caduceus_server::app;
use reqwest::Method;
use serde_json::{Value, json};
use support::{Options, Reply, START, Server};

async fn start_with(configure: impl FnOnce(&mut Config)) -> Server {
    let options = Options { ledger: false, manual_clock: true, port: 0, admin_label: "identity-tests" };
    support::start(options, configure).await
}

async fn start() -> Server {
    start_with(|_| {}).await
}

impl Server {
    async fn get(&self, path: &str, bearer: &str) -> Reply {
        self.call(Method::GET, path, Some(bearer), None).await
    }

    async fn post(&self, path: &str, bearer: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(bearer), Some(body)).await
    }

    /// Sign in with a password, then the account's current TOTP code.
    async fn login_totp(&self, username: &str, password: &str, totp: &Totp) -> Reply {
        let first = self.login(username, password).await.expect(200);
        assert_eq!(first.body["status"], "mfa_required", "{}", first.body);
        self.second_factor(&first.body["mfa_token"], json!({"totp": self.code(totp)})).await
    }

    async fn second_factor(&self, mfa_token: &Value, factor: Value) -> Reply {
        let mut body = factor;
        body["mfa_token"] = mfa_token.clone();
        self.call(Method::POST, "/api/v1/auth/login/second-factor", None, Some(body)).await
    }

    /// Enrol TOTP for the session's account and confirm it with a first
    /// code; returns the authenticator and the recovery codes.
    async fn enrol_totp(&self, token: &str) -> (Totp, Vec<String>) {
        let r = self.call(Method::POST, "/api/v1/account/totp", Some(token), None).await.expect(200);
        assert!(r.body["uri"].as_str().unwrap().starts_with("otpauth://totp/Caduceus:"), "{}", r.body);
        assert!(r.body["qr_svg"].as_str().unwrap().contains("<svg"));
        let totp = authenticator(r.body["secret"].as_str().unwrap());
        let r = self.post("/api/v1/account/totp/confirm", token, json!({"code": self.code(&totp)})).await.expect(200);
        let codes: Vec<String> =
            r.body["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
        (totp, codes)
    }

    /// A six-digit code that is wrong for every step the server accepts now.
    fn wrong_code(&self, totp: &Totp) -> String {
        let step = totp.step(self.unix_secs());
        let window: Vec<String> = (step - 1..=step + 1).map(|s| totp.format(totp.code_at_step(s))).collect();
        (0..).map(|n: u32| format!("{n:06}")).find(|c| !window.contains(c)).unwrap()
    }
}

/// An authenticator app set up from the base32 secret the server showed.
fn authenticator(secret_base32: &str) -> Totp {
    let secret = data_encoding::BASE32_NOPAD.decode(secret_base32.as_bytes()).unwrap();
    Totp::new(Algorithm::Sha1, secret, 6, 30).unwrap()
}

/// A concrete path for a route template: every parameter becomes `1`.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| if segment.starts_with('{') { "1" } else { segment })
        .collect::<Vec<_>>()
        .join("/")
}

/// The `__Host-` session cookie's value from a `Set-Cookie` header.
fn session_cookie_value(set_cookie: &str) -> String {
    let (pair, _) = set_cookie.split_once(';').unwrap();
    pair.strip_prefix(&format!("{SESSION_COOKIE}=")).unwrap().to_owned()
}

#[tokio::test]
async fn every_route_declares_its_access_and_the_server_enforces_it() {
    let inventory = app::route_inventory();
    let routes: BTreeSet<(String, String)> = inventory.iter().cloned().collect();
    assert_eq!(routes.len(), inventory.len(), "a route is listed twice");
    let declared: BTreeSet<(String, String)> =
        POLICY.iter().map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned())).collect();
    assert_eq!(declared.len(), POLICY.len(), "a route is declared twice in access::POLICY");
    let undeclared: Vec<_> = routes.difference(&declared).collect();
    assert!(undeclared.is_empty(), "routes without an access rule: {undeclared:?}");
    let stale: Vec<_> = declared.difference(&routes).collect();
    assert!(stale.is_empty(), "access rules for routes that do not exist: {stale:?}");

    let public: BTreeSet<(&str, &str)> =
        POLICY.iter().filter(|(_, _, a)| *a == Access::Public).map(|(m, p, _)| (*m, *p)).collect();
    let expected: BTreeSet<(&str, &str)> = [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/api/openapi.json"),
        ("GET", "/ledger/checkpoint"),
        ("GET", "/ledger/key"),
        ("GET", "/ledger/tile/{*path}"),
        ("POST", "/witness/add-checkpoint"),
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/login/second-factor"),
        ("POST", "/api/v1/auth/login/passkey/begin"),
        ("POST", "/api/v1/auth/passkey/begin"),
        ("POST", "/api/v1/auth/passkey/finish"),
        ("GET", "/api/v1/auth/oidc/login"),
        ("GET", "/api/v1/auth/oidc/callback"),
        ("GET", "/fhir/metadata"),
    ]
    .into_iter()
    .collect();
    assert_eq!(public, expected, "the routes open to anyone");

    let server = start().await;
    // A nurse holds none of the permissions the API's routes ask for.
    let (_, password) = server.create_user("nurse.jones", &["nurse"], None).await;
    let nurse = server.login_token("nurse.jones", &password).await;
    let me = server.get("/api/v1/auth/session", &nurse).await.expect(200);
    assert_eq!(me.body["roles"], json!(["nurse"]), "the nurse's session itself works");

    let mut checked_forbidden = 0;
    for (method, template, access) in POLICY {
        if *access == Access::Public {
            continue;
        }
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let path = concrete(template);
        let r = server.call(method.clone(), &path, None, None).await.expect(401);
        assert_eq!(r.code(), "unauthorized", "{method} {path}");
        assert_eq!(r.headers["www-authenticate"], "Bearer realm=\"caduceus\"", "{method} {path}");

        if let Access::Allowed(permission) | Access::Elevated(Some(permission)) = access {
            assert!(!Role::Nurse.grants(*permission));
            let r = server.call(method.clone(), &path, Some(&nurse), None).await;
            assert_eq!(r.status, 403, "{method} {path} for a nurse: {}", r.body);
            assert_eq!(r.code(), "forbidden", "{method} {path}");
            checked_forbidden += 1;
        }
    }
    assert!(checked_forbidden >= 20, "every permission-guarded route was tried ({checked_forbidden})");

    // A key of the admin role, scoped down to reading events.
    let r = server
        .post(
            "/api/v1/api-keys",
            &server.admin,
            json!({"label": "siem export", "role": "admin", "scopes": ["read_events"], "expires_in_days": 7}),
        )
        .await
        .expect(201);
    let reader = r.body["secret"].as_str().unwrap().to_owned();
    server.get("/api/v1/events", &reader).await.expect(200);
    assert_eq!(server.get("/api/v1/users", &reader).await.expect(403).code(), "forbidden");
    assert_eq!(server.get("/api/v1/api-keys", &reader).await.expect(403).code(), "forbidden");
    let r = server.post("/api/v1/users", &reader, json!({"username": "x.y", "roles": ["admin"]})).await;
    assert_eq!(r.expect(403).code(), "forbidden");
    server.stop().await;
}

/// The outcome of each of many sign-in attempts: (status, Retry-After, body).
async fn guess_storm(server: &Server, username: &str, guesses: usize) -> Vec<(u16, Option<u64>, String)> {
    let tasks: Vec<_> = (0..guesses)
        .map(|i| {
            let request = server
                .request(Method::POST, "/api/v1/auth/login")
                .json(&json!({"username": username, "password": format!("wrong guess number {i}")}));
            tokio::spawn(async move {
                let r = request.send().await.unwrap();
                let status = r.status().as_u16();
                let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
                (status, retry, r.text().await.unwrap())
            })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(guesses);
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    outcomes
}

/// How many answers of each (status, body) a storm got.
fn histogram(outcomes: &[(u16, Option<u64>, String)]) -> BTreeMap<(u16, String), usize> {
    let mut counts = BTreeMap::new();
    for (status, _, body) in outcomes {
        *counts.entry((*status, body.clone())).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_parallel_guesses_get_nowhere_and_do_not_reveal_whether_the_account_exists() {
    let server = start().await;
    let (_, password) = server.create_user("clinician.brown", &["clinician"], None).await;
    let free = IdentitySettings::default().account_throttle.free_attempts as usize;

    let known = guess_storm(&server, "clinician.brown", 1000).await;
    assert!(known.iter().all(|(status, _, _)| *status == 401 || *status == 429), "{:?}", histogram(&known));
    let refused = known.iter().filter(|(s, _, _)| *s == 429).count();
    let checked = known.iter().filter(|(s, _, _)| *s == 401).count();
    // The clock stands still: only the free attempts and the first delayed
    // one are let through to the password check, however many run at once.
    assert!(checked <= free + 1, "{checked} guesses reached the password check");
    assert!(refused >= 1000 - free - 1);
    for (status, retry, body) in &known {
        let body: Value = serde_json::from_str(body).unwrap();
        match status {
            401 => assert_eq!(body["error"]["code"], "unauthorized"),
            _ => {
                assert_eq!(body["error"]["code"], "too_many_requests");
                assert!(retry.is_some_and(|s| s >= 1), "a 429 says when to come back");
            }
        }
    }

    // The real user is slowed down too, but not locked out: after the wait
    // the right password works.
    let r = server.login("clinician.brown", &password).await.expect(429);
    let wait: i64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    let longest = known.iter().filter_map(|(_, retry, _)| *retry).max().unwrap();
    assert!(u64::try_from(wait).unwrap() <= longest);
    server.advance_secs(wait);
    let r = server.login("clinician.brown", &password).await.expect(200);
    assert_eq!(r.body["status"], "authenticated");

    // The same storm against a name no account has looks the same.
    let unknown = guess_storm(&server, "clinician.black", 1000).await;
    assert_eq!(histogram(&unknown), histogram(&known), "the answers reveal whether the account exists");
    let retry = |o: &[(u16, Option<u64>, String)]| o.iter().map(|(_, r, _)| *r).collect::<BTreeSet<_>>();
    assert_eq!(retry(&unknown), retry(&known));
    server.stop().await;
}

#[tokio::test]
async fn password_then_totp_each_code_once_and_recovery_codes_once() {
    let server = start().await;
    let (user_id, password) = server.create_user("dr.okafor", &["clinician"], None).await;
    let r = server.login("dr.okafor", &password).await.expect(200);
    assert_eq!(r.body["status"], "authenticated");
    assert_eq!(r.body["methods"], json!(["password"]));
    assert_eq!(r.body["restricted"], false);
    assert_eq!(r.body["user"]["user_id"], user_id.as_str());
    let token = r.body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("cas_"));

    // Enrolment: a wrong first code is refused, the right one confirms and
    // comes with ten distinct recovery codes.
    let r = server.call(Method::POST, "/api/v1/account/totp", Some(&token), None).await.expect(200);
    let totp = authenticator(r.body["secret"].as_str().unwrap());
    server.post("/api/v1/account/totp/confirm", &token, json!({"code": server.wrong_code(&totp)})).await.expect(401);
    let r = server.post("/api/v1/account/totp/confirm", &token, json!({"code": server.code(&totp)})).await.expect(200);
    let codes: BTreeSet<&str> =
        r.body["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(codes.len(), 10);
    let recovery = (*codes.first().unwrap()).to_owned();
    // A second enrolment while one is confirmed is refused.
    server.call(Method::POST, "/api/v1/account/totp", Some(&token), None).await.expect(409);

    // The enrolment code was this step's; sign-ins use the next ones.
    server.advance_secs(30);
    let first = server.login("dr.okafor", &password).await.expect(200);
    assert_eq!(first.body["status"], "mfa_required");
    assert!(first.body.get("token").is_none(), "no session before the second factor");
    let methods = first.body["methods"].as_array().unwrap();
    assert!(methods.contains(&json!("totp")) && methods.contains(&json!("recovery_code")), "{methods:?}");
    let mfa_token = first.body["mfa_token"].clone();

    // A wrong code ends the pending sign-in: the right code cannot follow it.
    let r = server.second_factor(&mfa_token, json!({"totp": server.wrong_code(&totp)})).await.expect(401);
    assert_eq!(r.code(), "unauthorized");
    server.second_factor(&mfa_token, json!({"totp": server.code(&totp)})).await.expect(401);

    let first = server.login("dr.okafor", &password).await.expect(200);
    let code = server.code(&totp);
    let r = server.second_factor(&first.body["mfa_token"], json!({"totp": code})).await.expect(200);
    assert_eq!(r.body["status"], "authenticated");
    assert_eq!(r.body["methods"], json!(["password", "totp"]));
    let session = server.get("/api/v1/auth/session", r.body["token"].as_str().unwrap()).await.expect(200);
    assert_eq!(session.body["methods"], json!(["password", "totp"]));

    // The same code again, in a new sign-in, is refused.
    let first = server.login("dr.okafor", &password).await.expect(200);
    server.second_factor(&first.body["mfa_token"], json!({"totp": code})).await.expect(401);

    // A recovery code works once (dashes and case do not matter) ...
    let first = server.login("dr.okafor", &password).await.expect(200);
    let r = server
        .second_factor(&first.body["mfa_token"], json!({"recovery_code": recovery.to_uppercase()}))
        .await
        .expect(200);
    assert_eq!(r.body["methods"], json!(["password", "recovery_code"]));
    // ... and not twice.
    let first = server.login("dr.okafor", &password).await.expect(200);
    server.second_factor(&first.body["mfa_token"], json!({"recovery_code": recovery})).await.expect(401);
    server.stop().await;
}

#[tokio::test]
async fn a_privileged_role_without_a_second_factor_can_only_enrol_one() {
    let server = start().await;
    let (_, password) = server.create_user("it.admin", &["admin"], None).await;
    let r = server.login("it.admin", &password).await.expect(200);
    assert_eq!(r.body["status"], "authenticated");
    assert_eq!(r.body["restricted"], true);
    let token = r.body["token"].as_str().unwrap().to_owned();

    let r = server.get("/api/v1/users", &token).await.expect(403);
    assert_eq!(r.code(), "forbidden");
    assert!(r.body["error"]["message"].as_str().unwrap().contains("second factor"), "{}", r.body);
    server.get("/api/v1/events", &token).await.expect(403);
    let r = server.post("/api/v1/users", &token, json!({"username": "x.y", "roles": ["admin"]})).await;
    r.expect(403);
    let me = server.get("/api/v1/auth/session", &token).await.expect(200);
    assert_eq!(me.body["restricted"], true);

    let (totp, _) = server.enrol_totp(&token).await;
    server.advance_secs(30);
    let r = server.login_totp("it.admin", &password, &totp).await.expect(200);
    assert_eq!(r.body["restricted"], false);
    let token = r.body["token"].as_str().unwrap().to_owned();
    let users = server.get("/api/v1/users", &token).await.expect(200);
    assert!(users.body.as_array().unwrap().iter().any(|u| u["username"] == "it.admin"));
    server.get("/api/v1/events", &token).await.expect(200);
    server.stop().await;
}

#[tokio::test]
async fn cookie_sessions_need_the_csrf_token_and_the_right_origin() {
    let origin = "https://caduceus.example";
    let server = start_with(|c| c.identity.public_url = Some(origin.to_owned())).await;
    let (_, password) = server.create_user("ward.clerk", &["registrar"], None).await;
    let r = server
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "ward.clerk", "password": password, "session": "cookie"})),
        )
        .await
        .expect(200);
    assert_eq!(r.body["status"], "authenticated");
    assert!(r.body["token"].is_null(), "a cookie session's secret is not in the body: {}", r.body);
    let csrf = r.body["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(csrf.len(), 32);
    let set_cookie = r.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.starts_with(&format!("{SESSION_COOKIE}=cas_")), "{set_cookie}");
    let attributes: BTreeSet<&str> = set_cookie.split(';').skip(1).map(str::trim).collect();
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attributes.contains(attribute), "{attribute} missing from {set_cookie}");
    }
    assert!(!attributes.iter().any(|a| a.starts_with("Domain")), "{set_cookie}");
    let cookie = format!("{SESSION_COOKIE}={}", session_cookie_value(&set_cookie));

    let with_cookie = |method: Method, path: &str| server.request(method, path).header("cookie", &cookie);
    let r = Reply::of(with_cookie(Method::GET, "/api/v1/auth/session").send().await.unwrap()).await.expect(200);
    assert_eq!(r.body["kind"], "cookie");

    // Unsafe requests: no token, a wrong token, a foreign origin: refused.
    let r = Reply::of(with_cookie(Method::POST, "/api/v1/auth/logout").send().await.unwrap()).await.expect(403);
    assert_eq!(r.code(), "forbidden");
    let wrong = "0".repeat(32);
    let r = with_cookie(Method::POST, "/api/v1/auth/logout").header("x-csrf-token", wrong).send().await.unwrap();
    Reply::of(r).await.expect(403);
    let r = with_cookie(Method::POST, "/api/v1/auth/logout")
        .header("x-csrf-token", &csrf)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    Reply::of(r).await.expect(403);
    // Still signed in after all of that.
    Reply::of(with_cookie(Method::GET, "/api/v1/auth/session").send().await.unwrap()).await.expect(200);

    let r = with_cookie(Method::POST, "/api/v1/auth/logout")
        .header("x-csrf-token", &csrf)
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    let r = Reply::of(r).await.expect(204);
    let cleared = r.headers["set-cookie"].to_str().unwrap();
    assert!(cleared.starts_with(&format!("{SESSION_COOKIE}=;")) && cleared.contains("Max-Age=0"), "{cleared}");
    let r = Reply::of(with_cookie(Method::GET, "/api/v1/auth/session").send().await.unwrap()).await.expect(401);
    assert_eq!(r.code(), "unauthorized");
    server.stop().await;
}

#[tokio::test]
async fn sessions_end_when_idle_when_too_old_on_logout_all_and_when_the_account_is_disabled() {
    let server = start_with(|c| {
        c.identity.idle_timeout_secs = 600;
        c.identity.absolute_timeout_secs = 1800;
        c.identity.step_up_secs = 300;
    })
    .await;
    let (user_id, password) = server.create_user("nurse.idle", &["nurse"], None).await;

    // Idle beyond the timeout: over for good.
    let idle = server.login_token("nurse.idle", &password).await;
    server.get("/api/v1/auth/session", &idle).await.expect(200);
    server.advance_secs(601);
    assert_eq!(server.get("/api/v1/auth/session", &idle).await.expect(401).code(), "unauthorized");
    server.advance_secs(1);
    server.get("/api/v1/auth/session", &idle).await.expect(401);

    // Used within the timeout, it lives on, also when the last use was
    // too recent to have been written to storage yet.
    let busy = server.login_token("nurse.idle", &password).await;
    server.advance_secs(59);
    server.get("/api/v1/auth/session", &busy).await.expect(200);
    server.advance_secs(599);
    server.get("/api/v1/auth/session", &busy).await.expect(200);

    // Active, but past the absolute lifetime: over.
    let shift = server.login_token("nurse.idle", &password).await;
    for _ in 0..3 {
        server.advance_secs(500);
        server.get("/api/v1/auth/session", &shift).await.expect(200);
    }
    server.advance_secs(301);
    server.get("/api/v1/auth/session", &shift).await.expect(401);

    // Sign out everywhere ends the other sessions too.
    let here = server.login_token("nurse.idle", &password).await;
    let there = server.login_token("nurse.idle", &password).await;
    let r = server.call(Method::POST, "/api/v1/auth/logout-all", Some(&here), None).await.expect(200);
    assert!(r.body["revoked"].as_u64().unwrap() >= 2, "{}", r.body);
    server.get("/api/v1/auth/session", &there).await.expect(401);
    server.get("/api/v1/auth/session", &here).await.expect(401);

    // Disabling the account ends its sessions and its sign-ins.
    let live = server.login_token("nurse.idle", &password).await;
    let path = format!("/api/v1/users/{user_id}");
    let r = server.call(Method::PATCH, &path, Some(&server.admin), Some(json!({"disabled": true}))).await;
    assert_eq!(r.expect(200).body["disabled"], true);
    server.get("/api/v1/auth/session", &live).await.expect(401);
    let r = server.login("nurse.idle", &password).await.expect(401);
    assert_eq!(r.body["error"]["message"], "invalid credentials", "the same answer as a wrong password");
    server.call(Method::PATCH, &path, Some(&server.admin), Some(json!({"disabled": false}))).await.expect(200);
    server.login_token("nurse.idle", &password).await;
    server.stop().await;
}

#[tokio::test]
async fn privileged_changes_need_a_recent_re_authentication() {
    let server = start_with(|c| {
        c.identity.idle_timeout_secs = 900;
        c.identity.step_up_secs = 300;
    })
    .await;
    let (_, password) = server.create_user("sec.admin", &["admin"], None).await;
    let restricted = server.login_token("sec.admin", &password).await;
    let (totp, _) = server.enrol_totp(&restricted).await;
    server.advance_secs(30);
    let r = server.login_totp("sec.admin", &password, &totp).await.expect(200);
    let token = r.body["token"].as_str().unwrap().to_owned();

    // A full sign-in is a fresh authentication ...
    server.post("/api/v1/users", &token, json!({"username": "nurse.one", "roles": ["nurse"]})).await.expect(201);
    // ... for the step-up window only.
    server.advance_secs(301);
    let r = server.post("/api/v1/users", &token, json!({"username": "nurse.two", "roles": ["nurse"]})).await;
    assert_eq!(r.expect(403).code(), "step_up_required");
    server.get("/api/v1/users", &token).await.expect(200);

    let r = server.post("/api/v1/auth/step-up", &token, json!({"totp": server.wrong_code(&totp)})).await;
    r.expect(401);
    let r = server.post("/api/v1/auth/step-up", &token, json!({"password": password})).await;
    assert_eq!(r.expect(400).code(), "bad_request", "an account with a second factor steps up with it");
    let r = server.post("/api/v1/auth/step-up", &token, json!({"totp": server.code(&totp)})).await.expect(200);
    let until = r.body["elevated_until"].as_i64().unwrap();
    assert_eq!(until, server.clock().now().as_millis() + 300_000);
    server.post("/api/v1/users", &token, json!({"username": "nurse.two", "roles": ["nurse"]})).await.expect(201);
    server.stop().await;
}

#[tokio::test]
async fn api_keys_are_scoped_expire_and_can_be_revoked() {
    let server = start().await;
    let issue = json!({
        "label": "infusion pump gateway",
        "role": "device-service",
        "scopes": ["publish_events"],
        "expires_in_days": 30
    });
    let r = server.post("/api/v1/api-keys", &server.admin, issue.clone()).await.expect(201);
    let secret = r.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("cad_"));
    let key = &r.body["key"];
    assert_eq!(key["role"], "device-service");
    assert_eq!(key["scopes"], json!(["publish_events"]));
    assert_eq!(key["expires"].as_i64().unwrap(), START.as_millis() + 30 * 86_400_000);
    let token_id = key["token_id"].as_str().unwrap().to_owned();

    let event = json!({
        "severity_id": 3,
        "actor": {"kind": "device", "uid": "infusion-pump-0042"},
        "target": {"kind": "config", "uid": "pump.drug-library"},
        "message": "pump reconfigured",
        "payload": {"type": "config_change", "key": "pump.drug-library", "detail": "library v7 loaded"}
    });
    server.post("/api/v1/events", &secret, event.clone()).await.expect(202);
    assert_eq!(server.get("/api/v1/events", &secret).await.expect(403).code(), "forbidden");

    let listed = server.get("/api/v1/api-keys", &server.admin).await.expect(200);
    assert!(listed.body.as_array().unwrap().iter().any(|k| k["token_id"] == token_id.as_str()));
    assert!(!listed.body.to_string().contains(&secret), "listing never shows a secret");

    server.call(Method::DELETE, &format!("/api/v1/api-keys/{token_id}"), Some(&server.admin), None).await.expect(204);
    assert_eq!(server.post("/api/v1/events", &secret, event.clone()).await.expect(401).code(), "unauthorized");
    server.call(Method::DELETE, &format!("/api/v1/api-keys/{token_id}"), Some(&server.admin), None).await.expect(404);

    // Keys expire.
    let r = server.post("/api/v1/api-keys", &server.admin, issue.clone()).await.expect(201);
    let expiring = r.body["secret"].as_str().unwrap().to_owned();
    server.post("/api/v1/events", &expiring, event.clone()).await.expect(202);
    server.advance_secs(30 * 86_400);
    server.post("/api/v1/events", &expiring, event).await.expect(401);

    // Only holders of manage_identity issue keys.
    let (_, password) = server.create_user("dr.keys", &["clinician"], None).await;
    let clinician = server.login_token("dr.keys", &password).await;
    let r = server.post("/api/v1/api-keys", &clinician, issue).await.expect(403);
    assert_eq!(r.code(), "forbidden");
    server.stop().await;
}

#[tokio::test]
async fn sign_ins_are_audited_without_secrets_or_unknown_names() {
    let server = start().await;
    let (user_id, password) = server.create_user("dr.audit", &["clinician"], None).await;
    let enrolment = server.login_token("dr.audit", &password).await;
    let r = server.call(Method::POST, "/api/v1/account/totp", Some(&enrolment), None).await.expect(200);
    let secret = r.body["secret"].as_str().unwrap().to_owned();
    let totp = authenticator(&secret);
    let r = server.post("/api/v1/account/totp/confirm", &enrolment, json!({"code": server.code(&totp)})).await;
    let recovery: Vec<String> = r.expect(200).body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    server.advance_secs(30);

    let wrong_password = "not the right password at all";
    server.login("dr.audit", wrong_password).await.expect(401);
    server.login("dr.nobody", wrong_password).await.expect(401);
    let first = server.login("dr.audit", &password).await.expect(200);
    let mfa_token = first.body["mfa_token"].as_str().unwrap().to_owned();
    let r = server.second_factor(&first.body["mfa_token"], json!({"totp": server.code(&totp)})).await.expect(200);
    let session_id = r.body["session_id"].as_str().unwrap().to_owned();
    let token = r.body["token"].as_str().unwrap().to_owned();

    let events = server.events().await;
    let sign_ins: Vec<&Value> = events.iter().filter(|e| e["class_uid"] == 3002).collect();
    let failed = sign_ins
        .iter()
        .find(|e| e["payload"]["account"] == user_id.as_str() && e["status_id"] == 2)
        .unwrap_or_else(|| panic!("no failed sign-in for the account: {sign_ins:#?}"));
    assert_eq!(failed["payload"]["failure"], "bad_credentials");
    assert_eq!(failed["payload"]["methods"], "password");
    let succeeded = sign_ins
        .iter()
        .find(|e| e["payload"]["session_id"] == session_id.as_str())
        .unwrap_or_else(|| panic!("no sign-in for the session: {sign_ins:#?}"));
    assert_eq!(succeeded["status_id"], 1);
    assert_eq!(succeeded["payload"]["account"], user_id.as_str());
    assert_eq!(succeeded["payload"]["methods"], "password+totp");
    assert_eq!(succeeded["payload"]["source"], "127.0.0.1");

    // The unknown name appears only as a keyed hash.
    let unknown: Vec<&str> = sign_ins
        .iter()
        .filter_map(|e| e["payload"]["account"].as_str())
        .filter(|a| a.starts_with("unknown:"))
        .collect();
    assert_eq!(unknown.len(), 1, "{sign_ins:#?}");
    let hash = unknown[0].strip_prefix("unknown:").unwrap();
    assert!(hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{hash}");

    let trail = serde_json::to_string(&events).unwrap();
    assert!(!trail.contains("dr.nobody"), "an unknown username reached the audit trail");
    for (what, secret) in [
        ("the password", password.as_str()),
        ("a wrong password", wrong_password),
        ("the TOTP secret", secret.as_str()),
        ("a session token", token.as_str()),
        ("a session token", enrolment.as_str()),
        ("the pending sign-in token", mfa_token.as_str()),
        ("the admin key", server.admin.as_str()),
    ] {
        assert!(!trail.contains(secret), "{what} reached the audit trail");
    }
    for code in &recovery {
        assert!(!trail.contains(code.as_str()), "a recovery code reached the audit trail");
    }
    server.stop().await;
}
