//! Passkeys and single sign-on end to end through the real HTTPS server,
//! driven by real clients: 1Password's `passkey` crates (the WebAuthn client
//! `passkey-client` in front of the software `passkey-authenticator`) and
//! `oidc-provider` (OpenID Certified, run by node from
//! `testing/oidc-provider`) with a user logging in through its pages.
//!
//! The server is reached as `https://localhost:<port>`, its configured
//! `identity.public_url`: that is the WebAuthn origin (RP id `localhost`)
//! and the base of the OpenID Connect redirect URI. The test client resolves
//! `localhost` to the listening address and trusts exactly the server's
//! generated certificate.
//!
//! The OIDC tests skip loudly without node or `npm ci` in
//! `testing/oidc-provider`; with `TEST_REQUIRE_OIDC=1` they fail instead.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "../../caduceus-identity/tests/support/oidc_provider.rs"]
mod oidc_provider;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use caduceus_core::config::{Config, OidcConfig};
use caduceus_core::event::AuthActivity;
use caduceus_core::{Actor, Clock, ManualClock, Payload, Redacted, SystemClock};
use caduceus_identity::otp::{Algorithm, Totp};
use caduceus_identity::roles::Role;
use caduceus_identity::service::NewUser;
use caduceus_server::Platform;
use caduceus_server::access::SESSION_COOKIE;
use caduceus_server::routes::auth::OIDC_BINDING_COOKIE;
use caduceus_server::serve::{self, Listening};
use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD};
use oidc_provider::{OidcProvider, browser_login};
use passkey::authenticator::{Authenticator, UiHint, UserCheck, UserValidationMethod};
use passkey::client::{Client, DefaultClientData};
use passkey::crypto::rust_crypto::RustCryptoBackend;
use passkey::types::Passkey;
use passkey::types::ctap2::{Aaguid, Ctap2Error};
use passkey::types::webauthn::{
    AuthenticatedPublicKeyCredential, CreatedPublicKeyCredential, CredentialCreationOptions, CredentialRequestOptions,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use url::Url;

const PASSWORD: &str = "ward seven night shift kettle";
const CALLBACK_PATH: &str = "/api/v1/auth/oidc/callback";

// ----- the server -----------------------------------------------------------

struct TestServer {
    /// `https://localhost:<port>`: the public URL, and where the client goes.
    origin: String,
    client: reqwest::Client,
    platform: Arc<Platform>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), caduceus_server::platform::ServerError>>,
    _dir: tempfile::TempDir,
}

/// A port that was free a moment ago: the public URL must name the port
/// before the server binds it.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn start(port: u16, clock: Arc<dyn Clock>, configure: impl FnOnce(&mut Config)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::with_data_dir(dir.path());
    config.server.listen = format!("127.0.0.1:{port}");
    config.identity.public_url = Some(format!("https://localhost:{port}"));
    configure(&mut config);
    let platform = Platform::start(config, clock).await.unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let (listening_tx, listening_rx) = oneshot::channel::<Listening>();
    let task = tokio::spawn(serve::run(
        platform.clone(),
        async move {
            let _ = rx.await;
        },
        move |l| {
            let _ = listening_tx.send(l.clone());
        },
    ));
    let listening = listening_rx.await.unwrap();
    let pem = std::fs::read(&listening.tls.as_ref().unwrap().cert_path).unwrap();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], listening.addr.port())))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    TestServer { origin: format!("https://localhost:{port}"), client, platform, shutdown: Some(tx), task, _dir: dir }
}

/// A server on a frozen clock the test moves.
async fn start_manual(configure: impl FnOnce(&mut Config)) -> (TestServer, ManualClock) {
    let clock = ManualClock::new(SystemClock.now());
    (start(free_port(), Arc::new(clock.clone()), configure).await, clock)
}

impl TestServer {
    /// An account with [`PASSWORD`], made as the CLI would.
    async fn create_user(&self, username: &str, role: Role) -> String {
        let identity = caduceus_server::identity::service(&self.platform, false).await.unwrap();
        let new = NewUser {
            username: username.into(),
            display_name: String::new(),
            roles: vec![role],
            password: Some(Redacted::new(PASSWORD.to_owned())),
            patient_ref: None,
        };
        identity.create_user(Actor::system(), new).await.unwrap().0.user_id
    }

    /// One JSON request; the status and the JSON answer (`null` if none).
    async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.origin));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    async fn login(&self, username: &str) -> Value {
        let (status, body) =
            self.post("/api/v1/auth/login", None, json!({"username": username, "password": PASSWORD})).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Registers a passkey on `device` from a signed-in session.
    async fn register_passkey(&self, token: &str, device: &mut Device) -> Value {
        let (status, begun) =
            self.post("/api/v1/account/passkeys/begin", Some(token), json!({"name": "ward laptop"})).await;
        assert_eq!(status, 200, "{begun}");
        assert_eq!(begun["options"]["publicKey"]["authenticatorSelection"]["userVerification"], "required");
        let credential = device.create(&self.origin, &begun["options"]).await;
        let body = json!({"ceremony": begun["ceremony"], "credential": credential});
        let (status, view) = self.post("/api/v1/account/passkeys/finish", Some(token), body).await;
        assert_eq!(status, 201, "{view}");
        assert_eq!(view["name"], "ward laptop");
        assert_eq!(view["credential_id"], BASE64URL_NOPAD.encode(&device.credential_id()));
        view
    }

    /// Begins a passwordless sign-in: the ceremony id and the options.
    async fn begin_passwordless(&self) -> (Value, Value) {
        let (status, begun) = self.post("/api/v1/auth/passkey/begin", None, json!({})).await;
        assert_eq!(status, 200, "{begun}");
        (begun["ceremony"].clone(), begun["options"].clone())
    }

    async fn finish(&self, ceremony: &Value, credential: &Value) -> (StatusCode, Value) {
        self.post("/api/v1/auth/passkey/finish", None, json!({"ceremony": ceremony, "credential": credential})).await
    }

    /// A full passwordless sign-in with `device`.
    async fn passwordless(&self, device: &mut Device) -> (StatusCode, Value) {
        let (ceremony, options) = self.begin_passwordless().await;
        let credential = device.get(&self.origin, &options).await;
        self.finish(&ceremony, &credential).await
    }

    /// The Authentication audit events recorded so far.
    async fn authentications(&self) -> Vec<(AuthActivity, String, String, Option<String>, Option<String>)> {
        let events = self.platform.store.events_after(0, 10_000).await.unwrap();
        events
            .iter()
            .filter_map(|e| match e.event.payload() {
                Payload::Authentication { activity, account, methods, session_id, failure, .. } => {
                    Some((*activity, account.clone(), methods.clone(), session_id.clone(), failure.clone()))
                }
                _ => None,
            })
            .collect()
    }

    async fn stop(mut self) {
        self.shutdown.take().unwrap().send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

fn assert_error(status: StatusCode, body: &Value, expected: u16, code: &str) {
    assert_eq!(status.as_u16(), expected, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
}

// ----- the device: a real WebAuthn client and authenticator ------------------

/// The person at the device: present, and passing the PIN or biometric
/// check when the device has one.
struct Person {
    can_verify: bool,
    told_already_registered: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl UserValidationMethod for Person {
    type PasskeyItem = Passkey;

    async fn check_user<'a>(
        &self,
        hint: UiHint<'a, Passkey>,
        presence: bool,
        verification: bool,
    ) -> Result<UserCheck, Ctap2Error> {
        if matches!(hint, UiHint::InformExcludedCredentialFound(_)) {
            self.told_already_registered.store(true, Ordering::SeqCst);
        }
        Ok(UserCheck { presence, verification: verification && self.can_verify })
    }

    fn is_presence_enabled(&self) -> bool {
        true
    }

    fn is_verification_enabled(&self) -> Option<bool> {
        self.can_verify.then_some(true)
    }
}

/// A laptop with a platform authenticator holding one discoverable passkey
/// with a signature counter. `Clone` copies the private key and the counter:
/// the cloned authenticator of the counter test.
#[derive(Clone)]
struct Device {
    store: Option<Passkey>,
    can_verify: bool,
    told_already_registered: Arc<AtomicBool>,
}

impl Device {
    fn new(can_verify: bool) -> Self {
        Self { store: None, can_verify, told_already_registered: Arc::default() }
    }

    fn authenticator(&self) -> Authenticator<Option<Passkey>, Person, RustCryptoBackend> {
        let mut authenticator = Authenticator::new(
            Aaguid::new_empty(),
            self.store.clone(),
            Person { can_verify: self.can_verify, told_already_registered: self.told_already_registered.clone() },
            RustCryptoBackend,
        );
        authenticator.set_make_credentials_with_signature_counter(true);
        authenticator
    }

    fn counter(&self) -> Option<u32> {
        self.store.as_ref().and_then(|p| p.counter)
    }

    fn credential_id(&self) -> Vec<u8> {
        self.store.as_ref().unwrap().credential_id.to_vec()
    }

    /// `navigator.credentials.create(options)` on a page at `origin`.
    async fn create(&mut self, origin: &str, options: &Value) -> Value {
        let request: CredentialCreationOptions = serde_json::from_value(options.clone()).unwrap();
        // The RP id is `localhost`, a secure context for browsers too.
        let mut client = Client::new(self.authenticator()).allows_insecure_localhost(true);
        let created = client.register(&Url::parse(origin).unwrap(), request, DefaultClientData).await.unwrap();
        self.store = client.authenticator().store().clone();
        registration_json(&created)
    }

    /// `navigator.credentials.get(options)` on a page at `origin`.
    async fn get(&mut self, origin: &str, options: &Value) -> Value {
        let request: CredentialRequestOptions = serde_json::from_value(options.clone()).unwrap();
        // The RP id is `localhost`, a secure context for browsers too.
        let mut client = Client::new(self.authenticator()).allows_insecure_localhost(true);
        let asserted = client.authenticate(&Url::parse(origin).unwrap(), request, DefaultClientData).await.unwrap();
        self.store = client.authenticator().store().clone();
        assertion_json(&asserted, None)
    }

    /// A malicious client (a compromised browser, a relay talking to the
    /// authenticator directly): the authenticator signs client data naming
    /// `claimed_origin` while the RP id check runs as if at `real_origin`.
    async fn get_claiming_origin(&mut self, real_origin: &str, claimed_origin: &str, options: &Value) -> Value {
        let client_data = json!({
            "type": "webauthn.get",
            "challenge": options["publicKey"]["challenge"],
            "origin": claimed_origin,
            "crossOrigin": false,
        })
        .to_string();
        let hash = Sha256::digest(client_data.as_bytes()).to_vec();
        let request: CredentialRequestOptions = serde_json::from_value(options.clone()).unwrap();
        // The RP id is `localhost`, a secure context for browsers too.
        let mut client = Client::new(self.authenticator()).allows_insecure_localhost(true);
        let asserted = client.authenticate(&Url::parse(real_origin).unwrap(), request, Some(hash)).await.unwrap();
        self.store = client.authenticator().store().clone();
        assertion_json(&asserted, Some(client_data.as_bytes()))
    }
}

/// `PublicKeyCredential.toJSON()` for a registration.
fn registration_json(c: &CreatedPublicKeyCredential) -> Value {
    json!({
        "id": c.id,
        "rawId": BASE64URL_NOPAD.encode(&c.raw_id),
        "type": "public-key",
        "response": {
            "clientDataJSON": BASE64URL_NOPAD.encode(&c.response.client_data_json),
            "attestationObject": BASE64URL_NOPAD.encode(&c.response.attestation_object),
            "transports": c.response.transports,
        },
        "clientExtensionResults": c.client_extension_results,
    })
}

/// `PublicKeyCredential.toJSON()` for an assertion; `client_data` replaces
/// the client data the client made.
fn assertion_json(c: &AuthenticatedPublicKeyCredential, client_data: Option<&[u8]>) -> Value {
    json!({
        "id": c.id,
        "rawId": BASE64URL_NOPAD.encode(&c.raw_id),
        "type": "public-key",
        "response": {
            "clientDataJSON": BASE64URL_NOPAD.encode(client_data.unwrap_or(&c.response.client_data_json)),
            "authenticatorData": BASE64URL_NOPAD.encode(&c.response.authenticator_data),
            "signature": BASE64URL_NOPAD.encode(&c.response.signature),
            "userHandle": c.response.user_handle.as_ref().map(|h| BASE64URL_NOPAD.encode(h)),
        },
        "clientExtensionResults": {},
    })
}

// ----- passkeys --------------------------------------------------------------

#[tokio::test]
async fn passkey_registration_passwordless_login_and_second_factor() {
    let (server, _clock) = start_manual(|_| {}).await;
    let user_id = server.create_user("carol", Role::Clinician).await;

    // Password only: a clinician needs no second factor.
    let login = server.login("carol").await;
    assert_eq!(login["status"], "authenticated", "{login}");
    assert_eq!(login["methods"], json!(["password"]));
    let password_token = login["token"].as_str().unwrap().to_owned();

    let mut laptop = Device::new(true);
    server.register_passkey(&password_token, &mut laptop).await;
    let (status, listed) = server.get("/api/v1/account/passkeys", &password_token).await;
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // Registering the same authenticator again: the options exclude it.
    let (status, begun) = server.post("/api/v1/account/passkeys/begin", Some(&password_token), json!({})).await;
    assert_eq!(status, 200);
    let excluded = &begun["options"]["publicKey"]["excludeCredentials"];
    assert_eq!(excluded[0]["id"], BASE64URL_NOPAD.encode(&laptop.credential_id()), "{begun}");

    // Passwordless: no username, the passkey names the account.
    let (ceremony, options) = server.begin_passwordless().await;
    assert!(options["publicKey"]["allowCredentials"].as_array().is_none_or(Vec::is_empty), "{options}");
    assert_eq!(options["publicKey"]["userVerification"], "required");
    let credential = laptop.get(&server.origin, &options).await;
    let (status, signed_in) = server.finish(&ceremony, &credential).await;
    assert_eq!(status, 200, "{signed_in}");
    assert_eq!(signed_in["status"], "authenticated");
    assert_eq!(signed_in["user"]["user_id"], user_id.as_str());
    assert_eq!(signed_in["methods"], json!(["passkey"]));
    assert_eq!(signed_in["restricted"], false);
    let passkey_token = signed_in["token"].as_str().unwrap();
    let (status, session) = server.get("/api/v1/auth/session", passkey_token).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["user"]["username"], "carol");
    assert_eq!(session["methods"], json!(["passkey"]));
    assert_eq!(laptop.counter(), Some(1));

    // The same ceremony id a second time: it was used up.
    let (status, body) = server.finish(&ceremony, &credential).await;
    assert_error(status, &body, 404, "not_found");

    // The password now asks for the passkey.
    let pending = server.login("carol").await;
    assert_eq!(pending["status"], "mfa_required", "{pending}");
    assert!(pending["methods"].as_array().unwrap().contains(&json!("passkey")), "{pending}");
    let (status, begun) =
        server.post("/api/v1/auth/login/passkey/begin", None, json!({"mfa_token": pending["mfa_token"]})).await;
    assert_eq!(status, 200, "{begun}");
    // Only carol's passkey is asked for.
    assert_eq!(
        begun["options"]["publicKey"]["allowCredentials"][0]["id"],
        BASE64URL_NOPAD.encode(&laptop.credential_id())
    );
    let credential = laptop.get(&server.origin, &begun["options"]).await;
    let (status, signed_in) = server.finish(&begun["ceremony"], &credential).await;
    assert_eq!(status, 200, "{signed_in}");
    assert_eq!(signed_in["user"]["user_id"], user_id.as_str());
    assert_eq!(signed_in["methods"], json!(["password", "passkey"]));
    // The pending sign-in was spent by `begin`.
    let (status, body) =
        server.post("/api/v1/auth/login/passkey/begin", None, json!({"mfa_token": pending["mfa_token"]})).await;
    assert_error(status, &body, 401, "unauthorized");

    let logons: Vec<String> = server
        .authentications()
        .await
        .into_iter()
        .filter(|(activity, account, _, _, failure)| {
            *activity == AuthActivity::Logon && *account == user_id && failure.is_none()
        })
        .map(|(_, _, methods, _, _)| methods)
        .collect();
    assert_eq!(logons, ["password", "passkey", "password+passkey"]);
    server.stop().await;
}

#[tokio::test]
async fn forged_origin_cloned_authenticator_replay_and_missing_verification_are_refused() {
    let (server, _clock) = start_manual(|_| {}).await;
    let user_id = server.create_user("dave", Role::Nurse).await;
    let token = server.login("dave").await["token"].as_str().unwrap().to_owned();
    let mut laptop = Device::new(true);
    server.register_passkey(&token, &mut laptop).await;
    // The attacker copies the credential: private key and counter (0).
    let mut clone = laptop.clone();

    // An assertion over client data naming a phishing origin: a valid
    // signature, refused by the origin check.
    let (ceremony, options) = server.begin_passwordless().await;
    let forged = laptop.get_claiming_origin(&server.origin, "https://evil.example", &options).await;
    let (status, body) = server.finish(&ceremony, &forged).await;
    assert_error(status, &body, 401, "unauthorized");
    // An honest client on a page at another port of this host (another
    // service): the browser lets it use our RP id; the origin check stops it.
    let (ceremony, options) = server.begin_passwordless().await;
    let other_port = laptop.get("https://localhost:1", &options).await;
    let (status, body) = server.finish(&ceremony, &other_port).await;
    assert_error(status, &body, 401, "unauthorized");
    // The same forgery naming our origin passes: the refusal above was the
    // origin check, not a broken forgery.
    let (ceremony, options) = server.begin_passwordless().await;
    let honest = laptop.get_claiming_origin(&server.origin, &server.origin, &options).await;
    let (status, body) = server.finish(&ceremony, &honest).await;
    assert_eq!(status, 200, "{body}");

    // A captured response against a fresh ceremony: wrong challenge.
    let (ceremony, _options) = server.begin_passwordless().await;
    let (status, body) = server.finish(&ceremony, &honest).await;
    assert_error(status, &body, 401, "unauthorized");

    // The owner signs in once more; the server has stored counter 4 (the
    // refused assertions' 1 and 2 were never stored).
    let (status, body) = server.passwordless(&mut laptop).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(laptop.counter(), Some(4));

    // The clone signs with counter 1, 2, 3, then 4: none above the stored 4.
    for _ in 0..4 {
        let (status, body) = server.passwordless(&mut clone).await;
        assert_error(status, &body, 401, "unauthorized");
    }
    // Also as a second factor.
    let pending = server.login("dave").await;
    let (_, begun) =
        server.post("/api/v1/auth/login/passkey/begin", None, json!({"mfa_token": pending["mfa_token"]})).await;
    let credential = clone.get(&server.origin, &begun["options"]).await;
    assert_eq!(clone.counter(), Some(5));
    let (status, body) = server.finish(&begun["ceremony"], &credential).await;
    // 5 > 4: a clone that has overtaken the owner cannot be told apart; but
    // the owner's next use (5, not above the stored 5) then shows the clone.
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.passwordless(&mut laptop).await;
    assert_error(status, &body, 401, "unauthorized");

    // Refused assertions are in the audit trail.
    let rejected = server
        .authentications()
        .await
        .into_iter()
        .filter(|(_, account, methods, _, failure)| {
            *account == user_id && methods == "passkey" && failure.as_deref() == Some("passkey_rejected")
        })
        .count();
    assert_eq!(rejected, 1 + 1 + 1 + 4 + 1, "two origins, replay, four clone uses, owner after the clone");

    // A key without user verification, behind a client that downgrades the
    // requirement: the server sees the missing UV flag.
    let mut key = Device::new(false);
    let (status, mut begun) = server.post("/api/v1/account/passkeys/begin", Some(&token), json!({})).await;
    assert_eq!(status, 200);
    begun["options"]["publicKey"]["authenticatorSelection"]["userVerification"] = json!("discouraged");
    let credential = key.create(&server.origin, &begun["options"]).await;
    let body = json!({"ceremony": begun["ceremony"], "credential": credential});
    let (status, body) = server.post("/api/v1/account/passkeys/finish", Some(&token), body).await;
    assert_error(status, &body, 401, "unauthorized");
    server.stop().await;
}

#[tokio::test]
async fn passkey_step_up_elevates_the_session_it_was_begun_for() {
    let (server, clock) = start_manual(|_| {}).await;
    server.create_user("erin", Role::Clinician).await;
    let token = server.login("erin").await["token"].as_str().unwrap().to_owned();
    let mut laptop = Device::new(true);
    let view = server.register_passkey(&token, &mut laptop).await;
    let (status, signed_in) = server.passwordless(&mut laptop).await;
    assert_eq!(status, 200, "{signed_in}");
    let session = signed_in["token"].as_str().unwrap().to_owned();

    // A fresh sign-in is elevated for the step-up window (10 minutes);
    // eleven minutes later it is not, and removing a passkey needs a step-up.
    clock.advance_millis(11 * 60_000);
    let now = clock.now().as_millis();
    let (_, view_before) = server.get("/api/v1/auth/session", &session).await;
    assert!(view_before["elevated_until"].as_i64().unwrap() < now, "{view_before}");
    let remove = format!("/api/v1/account/passkeys/{}", view["credential_id"].as_str().unwrap());
    let (status, body) = server.call(Method::DELETE, &remove, Some(&session), None).await;
    assert_error(status, &body, 403, "step_up_required");

    // A re-authentication begun for one session cannot elevate another.
    let (status, begun) = server.post("/api/v1/auth/step-up/passkey/begin", Some(&token), json!({})).await;
    assert_eq!(status, 200, "{begun}");
    let credential = laptop.get(&server.origin, &begun["options"]).await;
    let body = json!({"ceremony": begun["ceremony"], "credential": credential});
    let (status, body) = server.post("/api/v1/auth/step-up", Some(&session), body).await;
    assert_error(status, &body, 403, "forbidden");

    let (status, begun) = server.post("/api/v1/auth/step-up/passkey/begin", Some(&session), json!({})).await;
    assert_eq!(status, 200, "{begun}");
    assert_eq!(begun["options"]["publicKey"]["userVerification"], "required");
    let credential = laptop.get(&server.origin, &begun["options"]).await;
    let body = json!({"ceremony": begun["ceremony"], "credential": credential});
    let (status, elevated) = server.post("/api/v1/auth/step-up", Some(&session), body.clone()).await;
    assert_eq!(status, 200, "{elevated}");
    let until = elevated["elevated_until"].as_i64().unwrap();
    assert_eq!(until, now + 10 * 60_000);
    let (_, view_after) = server.get("/api/v1/auth/session", &session).await;
    assert_eq!(view_after["elevated_until"].as_i64(), Some(until));
    // The step-up ceremony is single use too.
    let (status, body) = server.post("/api/v1/auth/step-up", Some(&session), body).await;
    assert_error(status, &body, 404, "not_found");

    // Elevated: the privileged action goes through.
    let (status, body) = server.call(Method::DELETE, &remove, Some(&session), None).await;
    assert_eq!(status, 204, "{body}");
    let step_ups: Vec<String> = server
        .authentications()
        .await
        .into_iter()
        .filter(|(activity, _, _, _, failure)| *activity == AuthActivity::StepUp && failure.is_none())
        .map(|(_, _, methods, session_id, _)| format!("{methods} {}", session_id.unwrap_or_default()))
        .collect();
    assert_eq!(step_ups, [format!("passkey {}", signed_in["session_id"].as_str().unwrap())]);
    server.stop().await;
}

// ----- phishing-resistant roles -----------------------------------------------

/// The current TOTP code for an enrolment's base32 secret.
fn totp_code(secret: &str, clock: &ManualClock) -> String {
    let totp = Totp::new(Algorithm::Sha1, BASE32_NOPAD.decode(secret.as_bytes()).unwrap(), 6, 30).unwrap();
    let step = totp.step(u64::try_from(clock.now().as_millis() / 1000).unwrap());
    totp.format(totp.code_at_step(step))
}

#[tokio::test]
async fn a_phishing_resistant_role_must_use_its_passkey() {
    let (server, clock) = start_manual(|c| c.identity.phishing_resistant_roles = vec!["security-analyst".into()]).await;
    server.create_user("sam", Role::SecurityAnalyst).await;

    // Password only: signed in, but restricted to enrolling a factor.
    let first = server.login("sam").await;
    assert_eq!(first["status"], "authenticated", "{first}");
    assert_eq!(first["restricted"], true);
    let token = first["token"].as_str().unwrap().to_owned();
    let (status, body) = server.get("/api/v1/events", &token).await;
    assert_error(status, &body, 403, "forbidden");

    // TOTP enrolled (with recovery codes) and a passkey.
    let (status, enrolment) = server.post("/api/v1/account/totp", Some(&token), json!({})).await;
    assert_eq!(status, 200, "{enrolment}");
    let secret = enrolment["secret"].as_str().unwrap().to_owned();
    let body = json!({"code": totp_code(&secret, &clock)});
    let (status, codes) = server.post("/api/v1/account/totp/confirm", Some(&token), body).await;
    assert_eq!(status, 200, "{codes}");
    let recovery_code = codes["recovery_codes"][0].as_str().unwrap().to_owned();
    let mut laptop = Device::new(true);
    server.register_passkey(&token, &mut laptop).await;

    // Only the passkey is offered ...
    let pending = server.login("sam").await;
    assert_eq!(pending["status"], "mfa_required", "{pending}");
    assert_eq!(pending["methods"], json!(["passkey"]));
    // ... and a right TOTP code (a new step) or recovery code is refused.
    clock.advance_millis(30_000);
    let body = json!({"mfa_token": pending["mfa_token"], "totp": totp_code(&secret, &clock)});
    let (status, body) = server.post("/api/v1/auth/login/second-factor", None, body).await;
    assert_error(status, &body, 403, "forbidden");
    let pending = server.login("sam").await;
    let body = json!({"mfa_token": pending["mfa_token"], "recovery_code": recovery_code});
    let (status, body) = server.post("/api/v1/auth/login/second-factor", None, body).await;
    assert_error(status, &body, 403, "forbidden");

    // The passkey finishes the sign-in, unrestricted.
    let pending = server.login("sam").await;
    let (status, begun) =
        server.post("/api/v1/auth/login/passkey/begin", None, json!({"mfa_token": pending["mfa_token"]})).await;
    assert_eq!(status, 200, "{begun}");
    let credential = laptop.get(&server.origin, &begun["options"]).await;
    let (status, signed_in) = server.finish(&begun["ceremony"], &credential).await;
    assert_eq!(status, 200, "{signed_in}");
    assert_eq!(signed_in["methods"], json!(["password", "passkey"]));
    assert_eq!(signed_in["restricted"], false);
    assert_eq!(signed_in["user"]["roles"], json!(["security-analyst"]));
    let session = signed_in["token"].as_str().unwrap();
    let (status, body) = server.get("/api/v1/events", session).await;
    assert_eq!(status, 200, "{body}");

    // Re-authenticating with TOTP is refused too.
    clock.advance_millis(30_000);
    let body = json!({"totp": totp_code(&secret, &clock)});
    let (status, body) = server.post("/api/v1/auth/step-up", Some(session), body).await;
    assert_error(status, &body, 403, "forbidden");
    server.stop().await;
}

#[tokio::test]
async fn a_phishing_resistant_role_without_a_passkey_still_needs_its_totp() {
    // An analyst with TOTP and no passkey yet (enrolled before the role was
    // made phishing resistant, or from the first, factorless session). The
    // password alone must not sign in: that session could register the
    // attacker's own passkey, and with it sign in without password or TOTP.
    let (server, clock) = start_manual(|c| c.identity.phishing_resistant_roles = vec!["security-analyst".into()]).await;
    server.create_user("tess", Role::SecurityAnalyst).await;
    let token = server.login("tess").await["token"].as_str().unwrap().to_owned();
    let (_, enrolment) = server.post("/api/v1/account/totp", Some(&token), json!({})).await;
    let secret = enrolment["secret"].as_str().unwrap().to_owned();
    let body = json!({"code": totp_code(&secret, &clock)});
    assert_eq!(server.post("/api/v1/account/totp/confirm", Some(&token), body).await.0, 200);

    let pending = server.login("tess").await;
    assert_eq!(pending["status"], "mfa_required", "{pending}");
    assert_eq!(pending["methods"], json!(["totp", "recovery_code"]));
    clock.advance_millis(30_000);
    let body = json!({"mfa_token": pending["mfa_token"], "totp": totp_code(&secret, &clock)});
    let (status, signed_in) = server.post("/api/v1/auth/login/second-factor", None, body).await;
    assert_eq!(status, 200, "{signed_in}");
    assert_eq!(signed_in["methods"], json!(["password", "totp"]));
    let session = signed_in["token"].as_str().unwrap();
    // Re-authentication, likewise, takes the TOTP and not the password.
    let (status, body) = server.post("/api/v1/auth/step-up", Some(session), json!({"password": PASSWORD})).await;
    assert_error(status, &body, 400, "bad_request");
    clock.advance_millis(30_000);
    let body = json!({"totp": totp_code(&secret, &clock)});
    assert_eq!(server.post("/api/v1/auth/step-up", Some(session), body).await.0, 200);

    // Its passkey, registered from the TOTP session, then becomes the only
    // second factor.
    let mut laptop = Device::new(true);
    server.register_passkey(session, &mut laptop).await;
    assert_eq!(server.login("tess").await["methods"], json!(["passkey"]));
    server.stop().await;
}

// ----- OpenID Connect -----------------------------------------------------------

const CLIENT_ID: &str = "caduceus-server-test";
const CLIENT_SECRET: &str = "the-server-test-client-secret";

fn accounts() -> String {
    json!([
        {
            "login": "olivia", "password": "olivia's long password", "sub": "olivia-0001",
            "email": "olivia@hospital.example", "email_verified": true, "name": "Olivia Oncall",
            "preferred_username": "olivia", "groups": ["caduceus-clinicians", "canteen"]
        },
        {
            "login": "adam", "password": "adam's long password", "sub": "adam-0002",
            "email": "adam@hospital.example", "name": "Adam Admin",
            "preferred_username": "adam", "groups": ["caduceus-admins"]
        },
        {
            "login": "pat", "password": "pat's long password", "sub": "pat-0003",
            "email": "pat@hospital.example", "preferred_username": "pat", "groups": ["canteen", "car-park"]
        }
    ])
    .to_string()
}

/// A provider and a server configured for it, or `None` (skipped).
async fn start_sso() -> Option<(OidcProvider, TestServer)> {
    let port = free_port();
    let redirect = format!("https://localhost:{port}{CALLBACK_PATH}");
    let provider = OidcProvider::start(CLIENT_ID, CLIENT_SECRET, &redirect, &accounts())?;
    let issuer = provider.issuer().to_owned();
    let server = start(port, Arc::new(SystemClock), move |c| {
        c.identity.oidc = Some(OidcConfig {
            issuer,
            client_id: CLIENT_ID.into(),
            client_secret: Some(Redacted::new(CLIENT_SECRET.to_owned())),
            scopes: vec!["profile".into(), "email".into(), "groups".into()],
            groups_claim: "groups".into(),
            role_mapping: BTreeMap::from([
                ("caduceus-clinicians".into(), "clinician".into()),
                ("caduceus-admins".into(), "admin".into()),
            ]),
            danger_accept_invalid_certs: false,
        });
    })
    .await;
    Some((provider, server))
}

impl TestServer {
    /// `GET /api/v1/auth/oidc/login`: the provider URL it redirects to, and
    /// the cookie (`name=value`) that binds the sign-in to this browser.
    async fn oidc_login(&self, provider: &OidcProvider) -> (Url, String) {
        let response = self.client.get(format!("{}/api/v1/auth/oidc/login", self.origin)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let location = Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
        assert!(location.as_str().starts_with(&format!("{}/auth?", provider.issuer())), "{location}");
        let redirect_uri = location.query_pairs().find(|(k, _)| k == "redirect_uri").unwrap().1.into_owned();
        assert_eq!(redirect_uri, format!("{}{CALLBACK_PATH}", self.origin));
        let set_cookie = response.headers()["set-cookie"].to_str().unwrap();
        let (binding, attributes) = set_cookie.split_once(';').unwrap();
        assert!(binding.starts_with(&format!("{OIDC_BINDING_COOKIE}=")), "{set_cookie}");
        for flag in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
            assert!(attributes.split(';').any(|a| a.trim() == flag), "{flag} missing from {set_cookie}");
        }
        (location, binding.to_owned())
    }

    /// Follows the provider's redirect back to us, as a browser holding
    /// `binding` (or no cookie) would.
    async fn callback(&self, url: &Url, binding: Option<&str>) -> reqwest::Response {
        assert_eq!(url.origin().ascii_serialization(), self.origin, "{url}");
        assert_eq!(url.path(), CALLBACK_PATH);
        let mut request = self.client.get(url.clone());
        if let Some(binding) = binding {
            request = request.header("cookie", binding);
        }
        request.send().await.unwrap()
    }

    /// A whole single sign-on as `login`; the callback's response.
    async fn sso(&self, provider: &OidcProvider, login: &str, password: &str) -> reqwest::Response {
        let (authorization, binding) = self.oidc_login(provider).await;
        let callback = browser_login(&authorization, login, password).await;
        self.callback(&callback, Some(&binding)).await
    }
}

/// The session cookie's value from a sign-in response, checking its flags
/// and that the single sign-on binding cookie is cleared.
fn session_cookie(response: &reqwest::Response) -> String {
    let set_cookies: Vec<&str> = response.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    let cleared = format!("{OIDC_BINDING_COOKIE}=;");
    assert!(set_cookies.iter().any(|c| c.starts_with(&cleared) && c.contains("Max-Age=0")), "{set_cookies:?}");
    let header = set_cookies.iter().find(|c| c.starts_with(&format!("{SESSION_COOKIE}="))).unwrap();
    let (pair, attributes) = header.split_once(';').unwrap();
    for flag in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(attributes.split(';').any(|a| a.trim() == flag), "{flag} missing from {header}");
    }
    let value = pair.split_once('=').unwrap().1;
    assert!(value.starts_with("cas_"), "{header}");
    value.to_owned()
}

fn with_query(url: &Url, name: &str, value: &str) -> Url {
    let mut changed = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == name { value.to_owned() } else { v.into_owned() };
            (k.into_owned(), v)
        })
        .collect();
    changed.query_pairs_mut().clear().extend_pairs(pairs);
    changed
}

#[tokio::test]
async fn oidc_sign_in_maps_groups_to_roles_and_reuses_the_account() {
    let Some((provider, server)) = start_sso().await else { return };

    let response = server.sso(&provider, "olivia", "olivia's long password").await;
    assert_eq!(response.status(), 200);
    let cookie = session_cookie(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "authenticated", "{body}");
    assert_eq!(body["methods"], json!(["oidc"]));
    assert_eq!(body["user"]["roles"], json!(["clinician"]));
    assert_eq!(body["user"]["username"], "olivia");
    assert_eq!(body["user"]["display_name"], "Olivia Oncall");
    assert_eq!(body["user"]["sso"], true);
    assert!(body["token"].is_null(), "a cookie session never shows its secret: {body}");
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    let user_id = body["user"]["user_id"].as_str().unwrap().to_owned();
    let first_session = body["session_id"].as_str().unwrap().to_owned();

    // The cookie is the session.
    let session: Value = server
        .client
        .get(format!("{}/api/v1/auth/session", server.origin))
        .header("cookie", format!("{SESSION_COOKIE}={cookie}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["user"]["user_id"], user_id.as_str(), "{session}");
    assert_eq!(session["kind"], "cookie");
    assert_eq!(session["methods"], json!(["oidc"]));
    assert_eq!(session["roles"], json!(["clinician"]));

    // The same person again: the same account, a new session.
    let response = server.sso(&provider, "olivia", "olivia's long password").await;
    assert_eq!(response.status(), 200);
    let again: Value = response.json().await.unwrap();
    assert_eq!(again["user"]["user_id"], user_id.as_str());
    assert_ne!(again["session_id"], first_session.as_str());

    // An administrator by group: signed in with the provider's
    // authentication standing in for the second factor, not restricted.
    let response = server.sso(&provider, "adam", "adam's long password").await;
    assert_eq!(response.status(), 200);
    let adam: Value = response.json().await.unwrap();
    assert_eq!(adam["user"]["roles"], json!(["admin"]), "{adam}");
    assert_eq!(adam["restricted"], false);

    // Sign-out with the cookie needs the CSRF token.
    let logout = |csrf: Option<&str>| {
        let mut request = server
            .client
            .post(format!("{}/api/v1/auth/logout", server.origin))
            .header("cookie", format!("{SESSION_COOKIE}={cookie}"))
            .header("origin", &server.origin);
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        request.send()
    };
    assert_eq!(logout(None).await.unwrap().status(), 403);
    assert_eq!(logout(Some(&csrf)).await.unwrap().status(), 204);

    let logons: Vec<(String, Option<String>)> = server
        .authentications()
        .await
        .into_iter()
        .filter(|(activity, account, _, _, failure)| {
            *activity == AuthActivity::Logon && *account == user_id && failure.is_none()
        })
        .map(|(_, _, methods, session_id, _)| (methods, session_id))
        .collect();
    assert_eq!(
        logons,
        [
            ("oidc".to_owned(), Some(first_session)),
            ("oidc".to_owned(), again["session_id"].as_str().map(str::to_owned))
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn oidc_refusals_unmapped_groups_tampered_state_other_browser_and_replay() {
    let Some((provider, server)) = start_sso().await else { return };

    // Groups that map to no role: no account, 403, and an audit event.
    let response = server.sso(&provider, "pat", "pat's long password").await;
    assert_eq!(response.status(), 403);
    assert!(response.headers().get("set-cookie").is_none());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    let failures: Vec<(String, Option<String>)> = server
        .authentications()
        .await
        .into_iter()
        .filter(|(_, _, _, _, failure)| failure.is_some())
        .map(|(_, _, methods, _, failure)| (methods, failure))
        .collect();
    assert_eq!(failures, [("oidc".to_owned(), Some("no_mapped_group".to_owned()))]);

    // Olivia signs in; her browser holds the binding cookie.
    let (authorization, binding) = server.oidc_login(&provider).await;
    let callback = browser_login(&authorization, "olivia", "olivia's long password").await;

    // A tampered state is refused.
    let state = callback.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let mut tampered_state = state.clone();
    let last = tampered_state.pop().unwrap();
    tampered_state.push(if last == 'A' { 'B' } else { 'A' });
    let response = server.callback(&with_query(&callback, "state", &tampered_state), Some(&binding)).await;
    assert_eq!(response.status(), 401);
    assert!(response.headers().get("set-cookie").is_none());
    // Login CSRF: her callback link opened in another browser, one without
    // a sign-in of its own or one in the middle of its own, is refused.
    assert_eq!(server.callback(&callback, None).await.status(), 401);
    let (other_authorization, other_binding) = server.oidc_login(&provider).await;
    assert_ne!(other_binding, binding);
    assert_eq!(server.callback(&callback, Some(&other_binding)).await.status(), 401);
    // The provider's refusal.
    let mut refused = callback.clone();
    refused.query_pairs_mut().append_pair("error", "access_denied");
    assert_eq!(server.callback(&refused, Some(&binding)).await.status(), 401);

    // None of that spent her sign-in: the genuine callback works, once.
    let response = server.callback(&callback, Some(&binding)).await;
    assert_eq!(response.status(), 200);
    session_cookie(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["roles"], json!(["clinician"]));
    let replay = server.callback(&callback, Some(&binding)).await;
    assert_eq!(replay.status(), 401);
    assert!(replay.headers().get("set-cookie").is_none());

    // A wrong code is refused by the provider, and spends the sign-in.
    let callback = browser_login(&other_authorization, "olivia", "olivia's long password").await;
    let response = server.callback(&with_query(&callback, "code", "not-the-code"), Some(&other_binding)).await;
    assert_eq!(response.status(), 401);
    assert_eq!(server.callback(&callback, Some(&other_binding)).await.status(), 401);
    server.stop().await;
}
