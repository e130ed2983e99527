#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! OpenID Connect login end to end against a real provider, `oidc-provider`
//! (OpenID Certified) run by node from `testing/oidc-provider`: discovery,
//! the code flow with PKCE, a user logging in through the provider's pages,
//! ID token verification, groups and their roles, and the refusals (forged
//! state, replayed code, expired token or login, wrong password).
//!
//! Skips loudly without node or its `npm ci`; `.ci/run` sets
//! `TEST_REQUIRE_OIDC=1` so that there they fail instead.

#[path = "support/oidc_provider.rs"]
mod oidc_provider;

use std::sync::Arc;

use caduceus_core::{Clock, ManualClock, SystemClock, Timestamp};
use caduceus_identity::oidc::{MAX_LOGIN_AGE_MILLIS, OidcClient, OidcError, OidcIdentity, OidcSettings};
use oidc_provider::{OidcProvider, browser_login, try_browser_login};
use rand::SeedableRng;
use url::Url;

const CLIENT_ID: &str = "caduceus-test";
const CLIENT_SECRET: &str = "a-client-secret-of-the-test-rp";
// Never fetched: the browser stops at the redirect back to us.
const REDIRECT: &str = "http://127.0.0.1:9/auth/oidc/callback";

const ALICE_PASSWORD: &str = "correct horse battery staple";

fn accounts() -> String {
    serde_json::json!([
        {
            "login": "alice", "password": ALICE_PASSWORD,
            "sub": "248289761001", "email": "alice@hospital.example", "email_verified": true,
            "name": "Alice Analyst", "preferred_username": "alice",
            "groups": ["soc", "icu-nurses", "canteen", "soc"]
        },
        {
            "login": "bob", "password": "bob's long password",
            "sub": "bob-0002", "email": "bob@hospital.example", "name": "Bob Baker",
            "groups": ["canteen", "car-park"]
        },
        {
            "login": "carol", "password": "carol's long password",
            "sub": "carol-0003", "email": "carol@hospital.example"
        }
    ])
    .to_string()
}

fn start() -> Option<OidcProvider> {
    OidcProvider::start(CLIENT_ID, CLIENT_SECRET, REDIRECT, &accounts())
}

fn settings(provider: &OidcProvider) -> OidcSettings {
    let mut settings = OidcSettings::new(provider.issuer(), CLIENT_ID, Url::parse(REDIRECT).unwrap());
    settings.client_secret = Some(CLIENT_SECRET.to_owned().into());
    settings.scopes = OidcSettings::default_scopes_with_groups();
    settings.role_mapping = vec![
        ("soc".into(), "security-analyst".into()),
        ("icu-nurses".into(), "nurse".into()),
        ("it-admins".into(), "admin".into()),
    ];
    settings
}

async fn client(provider: &OidcProvider) -> OidcClient {
    OidcClient::discover(settings(provider)).await.unwrap()
}

/// The callback's `code` and `state`.
fn callback_params(callback: &Url) -> (String, String) {
    assert_eq!(callback.as_str().split('?').next(), Some(REDIRECT), "{callback}");
    let param = |name: &str| {
        callback.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap_or_else(|| {
            panic!("no {name} in the callback {callback}");
        })
    };
    (param("code"), param("state"))
}

fn assert_alice(identity: &OidcIdentity, provider: &OidcProvider) {
    assert_eq!(identity.issuer, provider.issuer());
    assert_eq!(identity.subject, "248289761001");
    assert_eq!(identity.email.as_deref(), Some("alice@hospital.example"));
    assert!(identity.email_verified);
    assert_eq!(identity.username.as_deref(), Some("alice"));
    assert_eq!(identity.display_name.as_deref(), Some("Alice Analyst"));
    assert_eq!(identity.groups, ["canteen", "icu-nurses", "soc"]);
}

fn assert_send<T: Send>(value: T) -> T {
    value
}

#[tokio::test]
async fn login_end_to_end_maps_groups_to_roles() {
    let Some(provider) = start() else { return };
    let client = client(&provider).await;
    let (url, pending) = client.begin();

    // What the provider is asked for: code flow, PKCE S256, state, nonce.
    let query: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let get = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert!(url.as_str().starts_with(&format!("{}/auth?", provider.issuer())), "{url}");
    assert_eq!(get("response_type"), Some("code"));
    assert_eq!(get("client_id"), Some(CLIENT_ID));
    assert_eq!(get("redirect_uri"), Some(REDIRECT));
    assert_eq!(get("code_challenge_method"), Some("S256"));
    assert_eq!(get("code_challenge").map(str::len), Some(43));
    assert_eq!(get("state"), Some(pending.state()));
    assert!(get("nonce").is_some_and(|n| n.len() >= 43));
    assert_eq!(get("scope"), Some("openid profile email groups"));
    // Nothing secret in the pending login's Debug.
    let debug = format!("{pending:?}");
    assert!(!debug.contains(pending.state()), "{debug}");

    let callback = browser_login(&url, "alice", ALICE_PASSWORD).await;
    let (code, state) = callback_params(&callback);
    assert_eq!(state, pending.state());
    assert_eq!(
        callback.query_pairs().find(|(k, _)| k == "iss").map(|(_, v)| v.into_owned()).as_deref(),
        Some(provider.issuer()),
    );

    // The future must be Send: the server runs it inside a request handler.
    let identity = assert_send(client.complete(pending, &code, &state)).await.unwrap();
    assert_alice(&identity, &provider);
    assert_eq!(client.roles_for(&identity.groups), ["nurse", "security-analyst"]);
}

#[tokio::test]
async fn groups_come_from_userinfo_when_the_id_token_has_none() {
    let Some(provider) =
        OidcProvider::start_with_claims_from_userinfo_only(CLIENT_ID, CLIENT_SECRET, REDIRECT, &accounts())
    else {
        return;
    };
    let client = client(&provider).await;
    let (url, pending) = client.begin();
    let (code, state) = callback_params(&browser_login(&url, "alice", ALICE_PASSWORD).await);
    let identity = client.complete(pending, &code, &state).await.unwrap();
    assert_alice(&identity, &provider);
    assert_eq!(client.roles_for(&identity.groups), ["nurse", "security-analyst"]);
}

#[tokio::test]
async fn a_forged_state_is_refused_before_the_code_is_spent() {
    let Some(provider) = start() else { return };
    let client = client(&provider).await;
    // Two identical pending logins from one seed: the second shows that the
    // refused callback did not use up the code.
    let (url, pending) = client.begin_with_rng(&mut rand::rngs::StdRng::seed_from_u64(7));
    let (_, same_pending) = client.begin_with_rng(&mut rand::rngs::StdRng::seed_from_u64(7));
    assert_eq!(pending.state(), same_pending.state());
    let (code, state) = callback_params(&browser_login(&url, "alice", ALICE_PASSWORD).await);

    let forged = client.complete(pending, &code, "attacker-chosen-state").await;
    assert_eq!(forged, Err(OidcError::StateMismatch));
    let empty = client.complete(client.begin().1, &code, "").await;
    assert_eq!(empty, Err(OidcError::StateMismatch));

    let identity = client.complete(same_pending, &code, &state).await.unwrap();
    assert_eq!(identity.subject, "248289761001");
}

#[tokio::test]
async fn a_replayed_code_is_refused() {
    let Some(provider) = start() else { return };
    let client = client(&provider).await;
    // The replay carries the same state, nonce and PKCE verifier: only the
    // provider's single use of codes stops it.
    let (url, pending) = client.begin_with_rng(&mut rand::rngs::StdRng::seed_from_u64(42));
    let (_, replay) = client.begin_with_rng(&mut rand::rngs::StdRng::seed_from_u64(42));
    let (code, state) = callback_params(&browser_login(&url, "alice", ALICE_PASSWORD).await);

    let first = client.complete(pending, &code, &state).await.unwrap();
    assert_eq!(first.subject, "248289761001");

    let err = client.complete(replay, &code, &state).await.unwrap_err();
    assert!(matches!(&err, OidcError::TokenExchange(m) if m.contains("invalid_grant")), "{err:?}");
    // The message names the refusal, never the code or our secret.
    let message = err.to_string();
    assert!(!message.contains(&code) && !message.contains(CLIENT_SECRET), "{message}");
}

#[tokio::test]
async fn users_without_mapped_groups_get_no_roles() {
    let Some(provider) = start() else { return };
    let client = client(&provider).await;

    let (url, pending) = client.begin();
    let (code, state) = callback_params(&browser_login(&url, "bob", "bob's long password").await);
    let bob = client.complete(pending, &code, &state).await.unwrap();
    assert_eq!(bob.subject, "bob-0002");
    assert_eq!(bob.groups, ["canteen", "car-park"]);
    assert!(!bob.email_verified, "the provider did not say it verified bob's email");
    assert!(client.roles_for(&bob.groups).is_empty());

    // No groups claim at all, neither in the ID token nor from UserInfo.
    let (url, pending) = client.begin();
    let (code, state) = callback_params(&browser_login(&url, "carol", "carol's long password").await);
    let carol = client.complete(pending, &code, &state).await.unwrap();
    assert_eq!(carol.subject, "carol-0003");
    assert_eq!(carol.email.as_deref(), Some("carol@hospital.example"));
    assert!(carol.groups.is_empty());
    assert!(client.roles_for(&carol.groups).is_empty());
}

#[tokio::test]
async fn a_wrong_password_never_reaches_the_callback() {
    let Some(provider) = start() else { return };
    let client = client(&provider).await;
    let (url, _pending) = client.begin();
    let err = try_browser_login(&url, "alice", "not alice's password").await.unwrap_err();
    assert!(err.contains("401") && err.contains("invalid login or password"), "{err}");
    let err = try_browser_login(&url, "mallory", ALICE_PASSWORD).await.unwrap_err();
    assert!(err.contains("401"), "{err}");
}

#[tokio::test]
async fn an_expired_id_token_is_refused() {
    let Some(provider) = start() else { return };
    // Our clock runs two hours ahead: the provider's one-hour ID token is
    // already expired for us, while the login itself is fresh.
    let ahead = Timestamp(SystemClock.now().as_millis() + 2 * 60 * 60 * 1000);
    let client = client(&provider).await.with_clock(Arc::new(ManualClock::new(ahead)));
    let (url, pending) = client.begin();
    let (code, state) = callback_params(&browser_login(&url, "alice", ALICE_PASSWORD).await);
    let err = client.complete(pending, &code, &state).await.unwrap_err();
    assert!(matches!(&err, OidcError::IdTokenInvalid(m) if m.contains("expired")), "{err:?}");
}

#[tokio::test]
async fn a_login_left_too_long_is_refused() {
    let Some(provider) = start() else { return };
    let clock = ManualClock::new(SystemClock.now());
    let client = client(&provider).await.with_clock(Arc::new(clock.clone()));
    let (url, pending) = client.begin();
    let (code, state) = callback_params(&browser_login(&url, "alice", ALICE_PASSWORD).await);
    clock.advance_millis(MAX_LOGIN_AGE_MILLIS + 1);
    assert_eq!(client.complete(pending, &code, &state).await, Err(OidcError::LoginExpired));
}

#[tokio::test]
async fn discovery_failures_say_what_is_wrong() {
    // Nothing listens on port 9 of the loopback address.
    let mut nowhere = OidcSettings::new("http://127.0.0.1:9", CLIENT_ID, Url::parse(REDIRECT).unwrap());
    let err = OidcClient::discover(nowhere.clone()).await.unwrap_err();
    assert!(matches!(err, OidcError::ProviderUnreachable(_)), "{err:?}");

    nowhere.role_mapping = vec![("soc".into(), "root".into())];
    let err = OidcClient::discover(nowhere).await.unwrap_err();
    assert!(matches!(&err, OidcError::Settings(m) if m.contains("root")), "{err:?}");

    let Some(provider) = start() else { return };
    // The same provider under another name: its document names its real
    // issuer, which must not be accepted for the one we configured.
    let mut other_name = settings(&provider);
    other_name.issuer = other_name.issuer.replace("127.0.0.1", "localhost");
    let err = OidcClient::discover(other_name).await.unwrap_err();
    assert!(matches!(&err, OidcError::ProviderMisconfigured(m) if m.contains("issuer")), "{err:?}");

    let mut not_a_provider = settings(&provider);
    not_a_provider.issuer = format!("{}/nowhere", provider.issuer());
    let err = OidcClient::discover(not_a_provider).await.unwrap_err();
    assert!(matches!(&err, OidcError::ProviderMisconfigured(m) if m.contains("404")), "{err:?}");
}
