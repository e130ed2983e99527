#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Passkey ceremonies against a real WebAuthn client and authenticator:
//! 1Password's `passkey` crates (`passkey-client` in front of the software
//! `passkey-authenticator`), not JSON we made up. The server side is
//! `caduceus_identity::passkeys` on `webauthn-rs`.
//!
//! The device: an authenticator whose credential store is an
//! `Option<Passkey>` in memory (one credential, discoverable, and found with
//! an empty allow list; the crate's `MemoryStore` map only answers when the
//! request names credential ids, so it cannot do a passwordless login).
//! Signature counters are switched on with
//! `set_make_credentials_with_signature_counter(true)`; the crate's default
//! is no counter (always 0), as synced passkeys have.
//!
//! Between client and server the JSON goes through `serde_json::Value` in
//! the shape a browser's `PublicKeyCredential.toJSON()` gives (binary as
//! unpadded base64url); `passkey-types` would otherwise write byte arrays.

use caduceus_identity::passkeys::{
    AuthenticatedPasskey, Ceremonies, DiscoverableCeremony, PasskeyError, Passkeys, RegistrationCeremony, StoredPasskey,
};
use data_encoding::BASE64URL_NOPAD;
use passkey::authenticator::{Authenticator, UiHint, UserCheck, UserValidationMethod};
use passkey::client::{Client, DefaultClientData, WebauthnError as ClientError};
use passkey::crypto::rust_crypto::RustCryptoBackend;
use passkey::types::Passkey;
use passkey::types::ctap2::{Aaguid, Ctap2Error};
use passkey::types::webauthn::{
    AuthenticatedPublicKeyCredential, CreatedPublicKeyCredential, CredentialCreationOptions, CredentialRequestOptions,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use url::Url;
use uuid::Uuid;

const RP_ID: &str = "caduceus.example";
const ORIGIN: &str = "https://caduceus.example";
/// Any millisecond clock will do; ceremonies only compare against it.
const NOW: u64 = 1_700_000_000_000;

fn rp() -> Passkeys {
    Passkeys::new(RP_ID, &Url::parse(ORIGIN).unwrap(), "Caduceus").unwrap()
}

fn b64(bytes: &[u8]) -> String {
    BASE64URL_NOPAD.encode(bytes)
}

/// The person at the device: always present, and able to pass the PIN or
/// biometric check only if the device has one. Notes when the device tells
/// them a credential is already registered.
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

/// A phone or laptop with a platform authenticator holding one passkey.
/// `Clone` copies the private key and counter: that is the cloned
/// authenticator of the counter test.
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
    async fn create(&mut self, origin: &str, options: &Value) -> Result<Value, ClientError> {
        let request: CredentialCreationOptions =
            serde_json::from_value(options.clone()).expect("server options fit the client");
        let mut client = Client::new(self.authenticator());
        let created = client.register(&Url::parse(origin).unwrap(), request, DefaultClientData).await?;
        self.store = client.authenticator().store().clone();
        Ok(registration_json(&created))
    }

    /// `navigator.credentials.get(options)` on a page at `origin`.
    async fn get(&mut self, origin: &str, options: &Value) -> Result<Value, ClientError> {
        let request: CredentialRequestOptions =
            serde_json::from_value(options.clone()).expect("server options fit the client");
        let mut client = Client::new(self.authenticator());
        let asserted = client.authenticate(&Url::parse(origin).unwrap(), request, DefaultClientData).await?;
        self.store = client.authenticator().store().clone();
        Ok(assertion_json(&asserted, None))
    }

    /// A malicious client: the authenticator signs client data that claims
    /// `claimed_origin`, while the client itself runs the RP id check as if
    /// the page were at our origin (a compromised browser or a relay that
    /// talks to the authenticator directly).
    async fn get_claiming_origin(&mut self, claimed_origin: &str, options: &Value) -> Value {
        let client_data = json!({
            "type": "webauthn.get",
            "challenge": options["publicKey"]["challenge"],
            "origin": claimed_origin,
            "crossOrigin": false,
        })
        .to_string();
        let hash = Sha256::digest(client_data.as_bytes()).to_vec();
        let request: CredentialRequestOptions = serde_json::from_value(options.clone()).unwrap();
        let mut client = Client::new(self.authenticator());
        let asserted = client.authenticate(&Url::parse(ORIGIN).unwrap(), request, Some(hash)).await.unwrap();
        self.store = client.authenticator().store().clone();
        assertion_json(&asserted, Some(client_data.as_bytes()))
    }
}

/// `PublicKeyCredential.toJSON()` for a registration.
fn registration_json(c: &CreatedPublicKeyCredential) -> Value {
    json!({
        "id": c.id,
        "rawId": b64(&c.raw_id),
        "type": "public-key",
        "response": {
            "clientDataJSON": b64(&c.response.client_data_json),
            "attestationObject": b64(&c.response.attestation_object),
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
        "rawId": b64(&c.raw_id),
        "type": "public-key",
        "response": {
            "clientDataJSON": b64(client_data.unwrap_or(&c.response.client_data_json)),
            "authenticatorData": b64(&c.response.authenticator_data),
            "signature": b64(&c.response.signature),
            "userHandle": c.response.user_handle.as_ref().map(|h| b64(h)),
        },
        "clientExtensionResults": {},
    })
}

/// Registers a passkey for `user` on `device` through the whole ceremony,
/// with the ceremony kept in a `Ceremonies` store as a server would.
async fn enrol(rp: &Passkeys, device: &mut Device, user: Uuid, name: &str) -> StoredPasskey {
    let ceremonies: Ceremonies<RegistrationCeremony> = Ceremonies::default();
    let (options, ceremony) = rp.start_registration(user, name, name, &[]).unwrap();
    let id = ceremonies.insert(ceremony, NOW);
    let response = device.create(ORIGIN, &options).await.unwrap();
    let ceremony = ceremonies.take(&id, NOW + 20_000).unwrap();
    rp.finish_registration(&response, ceremony).unwrap()
}

/// A passwordless login: no user named, `identify`, load, finish.
async fn passwordless(
    rp: &Passkeys,
    device: &mut Device,
    registry: &[StoredPasskey],
) -> Result<AuthenticatedPasskey, PasskeyError> {
    let (options, ceremony) = rp.start_discoverable().unwrap();
    let response = device.get(ORIGIN, &options).await.unwrap();
    let (user, _) = rp.identify(&response)?;
    let creds: Vec<StoredPasskey> = registry.iter().filter(|c| c.user_handle() == user).cloned().collect();
    rp.finish_discoverable(&response, ceremony, &creds)
}

/// Replaces the stored passkey with its update, as the database would.
fn save(registry: &mut [StoredPasskey], outcome: &AuthenticatedPasskey) {
    if let Some(updated) = &outcome.updated {
        let slot = registry.iter_mut().find(|c| c.credential_id() == updated.credential_id()).unwrap();
        *slot = updated.clone();
    }
}

fn assert_rejected<T: std::fmt::Debug>(result: Result<T, PasskeyError>, reason: &str) {
    match result {
        Err(PasskeyError::Rejected(message)) => {
            assert!(message.contains(reason), "rejected for {message:?}, expected {reason:?}")
        }
        other => panic!("expected rejection ({reason}), got {other:?}"),
    }
}

#[tokio::test]
async fn register_then_passwordless_then_second_factor() {
    let rp = rp();
    let alice = Uuid::new_v4();
    let mut phone = Device::new(true);

    let (options, ceremony) = rp.start_registration(alice, "alice@caduceus.example", "Alice", &[]).unwrap();
    let response = phone.create(ORIGIN, &options).await.unwrap();
    assert_eq!(response["clientExtensionResults"]["credProps"]["rk"], true, "client made a discoverable key");
    let stored = rp.finish_registration(&response, ceremony).unwrap();
    assert_eq!(stored.user_handle(), alice);
    assert_eq!(stored.credential_id(), phone.credential_id().as_slice());
    // What the database gives back is the same passkey.
    let reloaded = StoredPasskey::from_json(alice, stored.json()).unwrap();
    assert_eq!(reloaded, stored);
    let mut registry = vec![reloaded];

    // Passwordless: the server names no user and no credential.
    let (options, ceremony) = rp.start_discoverable().unwrap();
    assert!(options["publicKey"]["allowCredentials"].as_array().is_none_or(Vec::is_empty));
    assert_eq!(options["publicKey"]["userVerification"], "required");
    let response = phone.get(ORIGIN, &options).await.unwrap();
    let (user, credential_id) = rp.identify(&response).unwrap();
    assert_eq!((user, credential_id.as_slice()), (alice, stored.credential_id()));
    let outcome = rp.finish_discoverable(&response, ceremony, &registry).unwrap();
    assert_eq!(outcome.user_handle, alice);
    assert_eq!(outcome.credential_id, stored.credential_id());
    let updated = outcome.updated.clone().expect("counter 0 -> 1 needs saving");
    assert_ne!(updated.json(), stored.json());
    save(&mut registry, &outcome);

    // Second factor for a known user: only her credentials are allowed.
    let (options, ceremony) = rp.start_authentication(&registry).unwrap();
    assert_eq!(options["publicKey"]["allowCredentials"][0]["id"], b64(stored.credential_id()));
    assert_eq!(options["publicKey"]["userVerification"], "required");
    let response = phone.get(ORIGIN, &options).await.unwrap();
    let outcome = rp.finish_authentication(&response, ceremony).unwrap();
    assert_eq!(outcome.user_handle, alice);
    assert!(outcome.updated.is_some(), "counter 1 -> 2 needs saving");
    assert_eq!(phone.counter(), Some(2));
}

#[tokio::test]
async fn exclude_list_reaches_the_authenticator() {
    let rp = rp();
    let alice = Uuid::new_v4();
    let mut phone = Device::new(true);
    let stored = enrol(&rp, &mut phone, alice, "alice").await;
    assert!(!phone.told_already_registered.load(Ordering::SeqCst));

    // The authenticator matches our encoded exclude list against the
    // credential it holds and tells the user. (passkey-authenticator 0.6
    // then goes on to make a new credential instead of failing with
    // CTAP2_ERR_CREDENTIAL_EXCLUDED as CTAP 2 says, so the refusal itself
    // cannot be observed with this authenticator.)
    let (options, _ceremony) =
        rp.start_registration(alice, "alice", "Alice", &[stored.credential_id().to_vec()]).unwrap();
    let _ = phone.create(ORIGIN, &options).await;
    assert!(phone.told_already_registered.load(Ordering::SeqCst), "exclude list did not match");
}

#[tokio::test]
async fn assertion_from_a_sibling_subdomain_is_rejected() {
    // A page on a subdomain (a forgotten marketing site, a takeover) may ask
    // for our passkeys: the browser allows it because the RP id is a suffix
    // of its host. Only the server's origin check stops it.
    let rp = rp();
    let mut phone = Device::new(true);
    let registry = vec![enrol(&rp, &mut phone, Uuid::new_v4(), "alice").await];

    let (options, ceremony) = rp.start_discoverable().unwrap();
    let response = phone.get("https://evil.caduceus.example", &options).await.unwrap();
    assert_rejected(rp.finish_discoverable(&response, ceremony, &registry), "origin is not allowed");

    let (options, ceremony) = rp.start_authentication(&registry).unwrap();
    let response = phone.get("https://evil.caduceus.example", &options).await.unwrap();
    assert_rejected(rp.finish_authentication(&response, ceremony), "origin is not allowed");
}

#[tokio::test]
async fn assertion_for_a_foreign_origin_is_rejected() {
    let rp = rp();
    let mut phone = Device::new(true);
    let registry = vec![enrol(&rp, &mut phone, Uuid::new_v4(), "alice").await];

    // An honest client on https://evil.example will not even ask.
    let (options, _ceremony) = rp.start_discoverable().unwrap();
    assert_eq!(phone.get("https://evil.example", &options).await, Err(ClientError::OriginRpMissmatch));

    // A dishonest one gets a valid signature over client data that names
    // the phishing origin; the server refuses it.
    let (options, ceremony) = rp.start_discoverable().unwrap();
    let response = phone.get_claiming_origin("https://evil.example", &options).await;
    assert_rejected(rp.finish_discoverable(&response, ceremony, &registry), "origin is not allowed");

    // The same forgery naming our own origin passes, so the rejection above
    // is the origin check and not a broken forgery.
    let (options, ceremony) = rp.start_discoverable().unwrap();
    let response = phone.get_claiming_origin(ORIGIN, &options).await;
    rp.finish_discoverable(&response, ceremony, &registry).unwrap();
}

#[tokio::test]
async fn registration_from_a_wrong_origin_is_rejected() {
    let rp = rp();
    let mut phone = Device::new(true);
    let (options, ceremony) = rp.start_registration(Uuid::new_v4(), "alice", "Alice", &[]).unwrap();
    let response = phone.create("https://evil.caduceus.example", &options).await.unwrap();
    assert_rejected(rp.finish_registration(&response, ceremony), "origin is not allowed");
}

#[tokio::test]
async fn cloned_authenticator_with_stale_counter_is_rejected() {
    let rp = rp();
    let alice = Uuid::new_v4();
    let mut phone = Device::new(true);
    let mut registry = vec![enrol(&rp, &mut phone, alice, "alice").await];
    // The attacker copies the credential, private key and counter (0).
    let mut clone = phone.clone();

    // The owner signs in twice; the server saves counters 1 and 2.
    for expected in 1..=2 {
        let outcome = passwordless(&rp, &mut phone, &registry).await.unwrap();
        save(&mut registry, &outcome);
        assert_eq!(phone.counter(), Some(expected));
    }

    // The clone's first use signs with counter 1, below the stored 2.
    let (options, ceremony) = rp.start_authentication(&registry).unwrap();
    let response = clone.get(ORIGIN, &options).await.unwrap();
    assert_eq!(clone.counter(), Some(1));
    assert_rejected(rp.finish_authentication(&response, ceremony), "may be cloned");

    // Its second use signs with 2, equal to the stored one: also refused.
    assert_rejected(passwordless(&rp, &mut clone, &registry).await, "may be cloned");

    // The owner, at 3, still gets in: the refusals changed nothing stored.
    passwordless(&rp, &mut phone, &registry).await.unwrap();
}

#[tokio::test]
async fn a_used_ceremony_cannot_be_replayed() {
    let rp = rp();
    let mut phone = Device::new(true);
    let registry = vec![enrol(&rp, &mut phone, Uuid::new_v4(), "alice").await];
    let ceremonies: Ceremonies<DiscoverableCeremony> = Ceremonies::new(100, Duration::from_secs(300));

    let (options, ceremony) = rp.start_discoverable().unwrap();
    let id = ceremonies.insert(ceremony, NOW);
    let response = phone.get(ORIGIN, &options).await.unwrap();
    let ceremony = ceremonies.take(&id, NOW + 1_000).unwrap();
    rp.finish_discoverable(&response, ceremony, &registry).unwrap();

    // The same id again: the ceremony is gone.
    assert!(ceremonies.take(&id, NOW + 2_000).is_none());

    // The captured response against a fresh ceremony: wrong challenge.
    let (_options, fresh) = rp.start_discoverable().unwrap();
    let fresh_id = ceremonies.insert(fresh, NOW + 3_000);
    let fresh = ceremonies.take(&fresh_id, NOW + 4_000).unwrap();
    assert_rejected(rp.finish_discoverable(&response, fresh, &registry), "challenge does not match");

    // And a ceremony answered too late has expired.
    let (options, late) = rp.start_discoverable().unwrap();
    let late_id = ceremonies.insert(late, NOW);
    phone.get(ORIGIN, &options).await.unwrap();
    assert!(ceremonies.take(&late_id, NOW + 300_000).is_none());
}

#[tokio::test]
async fn registration_without_user_verification_is_rejected() {
    let rp = rp();
    // A security key with no PIN or biometric.
    let mut key = Device::new(false);

    // An honest client passes on the requirement, and the key cannot meet it.
    let (options, _ceremony) = rp.start_registration(Uuid::new_v4(), "alice", "Alice", &[]).unwrap();
    assert_eq!(
        key.create(ORIGIN, &options).await,
        Err(ClientError::AuthenticatorError(Ctap2Error::UnsupportedOption.into()))
    );

    // A client that downgrades the requirement gets a credential made with
    // presence only; the server sees the missing UV flag.
    let (mut options, ceremony) = rp.start_registration(Uuid::new_v4(), "alice", "Alice", &[]).unwrap();
    options["publicKey"]["authenticatorSelection"]["userVerification"] = json!("discouraged");
    let response = key.create(ORIGIN, &options).await.unwrap();
    assert_rejected(rp.finish_registration(&response, ceremony), "user verification was not performed");
}

#[tokio::test]
async fn login_without_user_verification_is_rejected() {
    let rp = rp();
    let mut phone = Device::new(true);
    let registry = vec![enrol(&rp, &mut phone, Uuid::new_v4(), "alice").await];
    // The same credential, used where the PIN/biometric check is skipped.
    let mut unverified = Device { can_verify: false, ..phone.clone() };

    let (mut options, ceremony) = rp.start_discoverable().unwrap();
    options["publicKey"]["userVerification"] = json!("discouraged");
    let response = unverified.get(ORIGIN, &options).await.unwrap();
    assert_rejected(rp.finish_discoverable(&response, ceremony, &registry), "user verification");

    let (mut options, ceremony) = rp.start_authentication(&registry).unwrap();
    options["publicKey"]["userVerification"] = json!("discouraged");
    let response = unverified.get(ORIGIN, &options).await.unwrap();
    assert_rejected(rp.finish_authentication(&response, ceremony), "user verification");
}

#[tokio::test]
async fn non_discoverable_credential_is_rejected() {
    // `credProps.rk` is the client's report; a client that says the key is
    // not discoverable would leave the user unable to sign in without a
    // username, so the registration is refused.
    let rp = rp();
    let mut phone = Device::new(true);
    let (options, ceremony) = rp.start_registration(Uuid::new_v4(), "alice", "Alice", &[]).unwrap();
    let mut response = phone.create(ORIGIN, &options).await.unwrap();
    response["clientExtensionResults"]["credProps"]["rk"] = json!(false);
    assert_rejected(rp.finish_registration(&response, ceremony), "discoverable");
}

#[tokio::test]
async fn user_handle_must_own_the_credential() {
    let rp = rp();
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let mut alice_phone = Device::new(true);
    let mut bob_phone = Device::new(true);
    let registry =
        vec![enrol(&rp, &mut alice_phone, alice, "alice").await, enrol(&rp, &mut bob_phone, bob, "bob").await];

    // The user handle is not signed: Bob relabels his assertion as Alice's.
    let (options, ceremony) = rp.start_discoverable().unwrap();
    let mut response = bob_phone.get(ORIGIN, &options).await.unwrap();
    response["response"]["userHandle"] = json!(b64(alice.as_bytes()));
    let (claimed, _) = rp.identify(&response).unwrap();
    assert_eq!(claimed, alice);
    // Loading Alice's passkeys (as a server should) does not find Bob's.
    let alices: Vec<StoredPasskey> = registry.iter().filter(|c| c.user_handle() == alice).cloned().collect();
    assert_rejected(rp.finish_discoverable(&response, ceremony, &alices), "not registered");
    // Handing over every passkey (as a careless server might) still fails.
    let (options, ceremony) = rp.start_discoverable().unwrap();
    let mut response = bob_phone.get(ORIGIN, &options).await.unwrap();
    response["response"]["userHandle"] = json!(b64(alice.as_bytes()));
    assert_rejected(rp.finish_discoverable(&response, ceremony, &registry), "does not own");

    // A second-factor login mixing two users' passkeys is a server bug.
    assert!(matches!(rp.start_authentication(&registry), Err(PasskeyError::Config(_))));

    // Second factor for Bob: a relabelled user handle is refused too.
    let bobs: Vec<StoredPasskey> = registry.iter().filter(|c| c.user_handle() == bob).cloned().collect();
    let (options, ceremony) = rp.start_authentication(&bobs).unwrap();
    let mut response = bob_phone.get(ORIGIN, &options).await.unwrap();
    response["response"]["userHandle"] = json!(b64(alice.as_bytes()));
    assert_rejected(rp.finish_authentication(&response, ceremony), "does not own");
}

#[tokio::test]
async fn malformed_client_json_is_malformed() {
    let rp = rp();
    let mut phone = Device::new(true);
    let registry = vec![enrol(&rp, &mut phone, Uuid::new_v4(), "alice").await];
    let (options, ceremony) = rp.start_discoverable().unwrap();
    let mut response = phone.get(ORIGIN, &options).await.unwrap();
    response["response"]["signature"] = json!("not base64url!");
    assert!(matches!(rp.finish_discoverable(&response, ceremony, &registry), Err(PasskeyError::Malformed(_))));

    let (_options, ceremony) = rp.start_registration(Uuid::new_v4(), "alice", "Alice", &[]).unwrap();
    let err = rp.finish_registration(&json!({"type": "public-key"}), ceremony).unwrap_err();
    assert!(matches!(&err, PasskeyError::Malformed(m) if m.contains("missing field")), "{err:?}");
    assert!(err.is_client_error());
}
