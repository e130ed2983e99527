//! WebAuthn passkeys: the registration and login ceremonies, checked with
//! `webauthn-rs`, and a bounded in-memory store for ceremonies in flight.
//!
//! This module owns the rules a passkey must meet (user verification on
//! every ceremony, a discoverable credential at registration, a signature
//! counter that only goes up) and the JSON that goes to and comes from the
//! browser. It does no I/O: the caller stores [`StoredPasskey`] values, keeps
//! ceremonies in a [`Ceremonies`] store and maps [`PasskeyError`] kinds to
//! HTTP answers.
//!
//! # Flows
//!
//! - Registration: [`Passkeys::start_registration`] gives the options for
//!   `navigator.credentials.create()` and a [`RegistrationCeremony`];
//!   [`Passkeys::finish_registration`] checks the browser's answer and gives a
//!   [`StoredPasskey`] to save.
//! - Second factor, user known: [`Passkeys::start_authentication`] with that
//!   user's passkeys, then [`Passkeys::finish_authentication`].
//! - Passwordless, user unknown: [`Passkeys::start_discoverable`], then
//!   [`Passkeys::identify`] on the answer to learn whose passkey it claims to
//!   be, load that user's passkeys, then [`Passkeys::finish_discoverable`].
//!
//! After every successful login, save [`AuthenticatedPasskey::updated`] when
//! it is `Some`: it carries the new signature counter, and the clone check
//! only works if the stored counter is kept current.
//!
//! Ceremony state never leaves the server (the `danger-allow-state-serialisation`
//! feature of `webauthn-rs` is off): a ceremony is a plain value that the
//! caller keeps in a [`Ceremonies`] store, and each `finish_*` call consumes
//! it, so a challenge can be answered at most once.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use url::Url;
use uuid::Uuid;
use webauthn_rs::prelude::{
    AuthenticationResult, DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, WebauthnError,
};
use webauthn_rs::{Webauthn, WebauthnBuilder};
use webauthn_rs_proto::ResidentKeyRequirement;

/// What went wrong in a passkey ceremony.
///
/// The variants tell a server how to answer: [`PasskeyError::Malformed`] is
/// the client's fault (400), [`PasskeyError::Rejected`] means the proof did
/// not hold (401), [`PasskeyError::Config`] and [`PasskeyError::Stored`] are
/// the server's own fault (500). Messages name the check that failed and
/// never carry key material, challenges or the client's input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasskeyError {
    /// The client's JSON does not have the WebAuthn shape or encoding.
    #[error("malformed passkey response: {0}")]
    Malformed(String),
    /// The response is well formed but fails verification: wrong origin or
    /// challenge, bad signature, no user verification, counter regression,
    /// unknown credential.
    #[error("passkey rejected: {0}")]
    Rejected(String),
    /// The relying party settings are unusable, or the caller passed
    /// arguments that cannot make a valid ceremony.
    #[error("passkey configuration error: {0}")]
    Config(String),
    /// A stored passkey could not be read back.
    #[error("stored passkey is unreadable: {0}")]
    Stored(String),
}

impl PasskeyError {
    /// Whether the client caused the error (malformed input or a failed
    /// proof), as opposed to the server's configuration or storage.
    pub fn is_client_error(&self) -> bool {
        matches!(self, Self::Malformed(_) | Self::Rejected(_))
    }
}

/// The relying party: its WebAuthn settings and the ceremonies it runs.
pub struct Passkeys {
    webauthn: Webauthn,
    rp_id: String,
}

impl fmt::Debug for Passkeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Passkeys")
            .field("rp_id", &self.rp_id)
            .field("origins", &self.webauthn.get_allowed_origins())
            .finish_non_exhaustive()
    }
}

/// A passkey as the server keeps it: the credential id (unique across all
/// users), the user it belongs to, and the `webauthn-rs` credential
/// (public key, algorithm, signature counter, backup flags) as JSON.
///
/// Build one with [`StoredPasskey::from_json`] when loading from storage;
/// the credential id is always taken from the JSON, so the three parts
/// cannot disagree.
#[derive(Debug, Clone)]
pub struct StoredPasskey {
    credential_id: Vec<u8>,
    user_handle: Uuid,
    json: String,
    passkey: Passkey,
}

impl PartialEq for StoredPasskey {
    fn eq(&self, other: &Self) -> bool {
        self.credential_id == other.credential_id && self.user_handle == other.user_handle && self.json == other.json
    }
}

impl Eq for StoredPasskey {}

impl StoredPasskey {
    /// Rebuilds a stored passkey from the JSON saved by
    /// [`StoredPasskey::json`] and the user it was registered to.
    ///
    /// # Errors
    ///
    /// [`PasskeyError::Stored`] if the JSON is not a `webauthn-rs` passkey.
    pub fn from_json(user_handle: Uuid, json: &str) -> Result<Self, PasskeyError> {
        let passkey: Passkey = serde_json::from_str(json).map_err(|e| PasskeyError::Stored(json_problem(&e)))?;
        Ok(Self { credential_id: passkey.cred_id().clone(), user_handle, json: json.to_owned(), passkey })
    }

    fn from_passkey(user_handle: Uuid, passkey: Passkey) -> Result<Self, PasskeyError> {
        let json = serde_json::to_string(&passkey)
            .map_err(|_| PasskeyError::Config("passkey could not be serialised".to_owned()))?;
        Ok(Self { credential_id: passkey.cred_id().clone(), user_handle, json, passkey })
    }

    /// The credential id chosen by the authenticator (raw bytes). Store it
    /// with a uniqueness constraint: one credential belongs to one user.
    pub fn credential_id(&self) -> &[u8] {
        &self.credential_id
    }

    /// The user this passkey was registered to (the WebAuthn user handle).
    pub fn user_handle(&self) -> Uuid {
        self.user_handle
    }

    /// The `webauthn-rs` credential as JSON, to store as it is.
    pub fn json(&self) -> &str {
        &self.json
    }
}

/// A registration in progress. Keep it on the server (for example in a
/// [`Ceremonies`] store) and hand it to [`Passkeys::finish_registration`].
#[derive(Debug)]
pub struct RegistrationCeremony {
    state: PasskeyRegistration,
    user_handle: Uuid,
}

/// A second-factor login in progress for one known user.
#[derive(Debug)]
pub struct AuthenticationCeremony {
    state: PasskeyAuthentication,
    creds: Vec<StoredPasskey>,
}

/// A passwordless login in progress, started before the user is known.
#[derive(Debug)]
pub struct DiscoverableCeremony {
    state: DiscoverableAuthentication,
}

/// The outcome of a successful login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedPasskey {
    /// The credential that signed the assertion.
    pub credential_id: Vec<u8>,
    /// The user the credential belongs to.
    pub user_handle: Uuid,
    /// The passkey with its new signature counter or backup flags, when they
    /// changed. Save it in place of the old one; the clone check compares
    /// each new counter with the stored one.
    pub updated: Option<StoredPasskey>,
}

impl Passkeys {
    /// Sets up the relying party.
    ///
    /// `rp_id` is the domain passkeys are bound to (for example
    /// `caduceus.example`); `rp_origin` is the one origin allowed to run
    /// ceremonies (for example `https://caduceus.example`), and its host must
    /// be `rp_id` or a subdomain of it. Subdomains of the origin and other
    /// ports are not accepted. `rp_name` is shown to the user by some
    /// authenticators.
    ///
    /// # Errors
    ///
    /// [`PasskeyError::Config`] if the id and origin do not fit together.
    pub fn new(rp_id: &str, rp_origin: &Url, rp_name: &str) -> Result<Self, PasskeyError> {
        let webauthn = WebauthnBuilder::new(rp_id, rp_origin)
            .map_err(|_| {
                PasskeyError::Config("relying party id must be the origin's host or a parent domain of it".to_owned())
            })?
            .rp_name(rp_name)
            .build()
            .map_err(|_| PasskeyError::Config("relying party settings are invalid".to_owned()))?;
        Ok(Self { webauthn, rp_id: rp_id.to_owned() })
    }

    /// Starts registering a new passkey for a user.
    ///
    /// `exclude` lists the credential ids the user already has, so the same
    /// authenticator is not registered twice. Returns the JSON for
    /// `navigator.credentials.create()` (`{"publicKey": {...}}`) and the
    /// ceremony to keep on the server.
    ///
    /// The options require user verification (PIN or biometric) and a
    /// discoverable credential (`residentKey: "required"`), so the passkey
    /// can later sign the user in without a username.
    ///
    /// # Errors
    ///
    /// [`PasskeyError::Malformed`] if the user name or display name is not
    /// acceptable to WebAuthn; [`PasskeyError::Config`] otherwise.
    pub fn start_registration(
        &self,
        user_handle: Uuid,
        username: &str,
        display_name: &str,
        exclude: &[Vec<u8>],
    ) -> Result<(Value, RegistrationCeremony), PasskeyError> {
        let exclude = (!exclude.is_empty()).then(|| exclude.to_vec());
        let (mut options, state) = self
            .webauthn
            .start_passkey_registration(user_handle, username, display_name, exclude)
            .map_err(|e| match e {
                WebauthnError::InvalidUsername => PasskeyError::Malformed("user name is not acceptable".to_owned()),
                _ => PasskeyError::Config("registration could not be started".to_owned()),
            })?;

        // webauthn-rs asks for `residentKey: "discouraged"` in its passkey
        // flow (to spare the few resident slots of old security keys). We
        // need discoverable credentials for passwordless login, so we ask
        // for them; the ceremony state does not record this choice (the
        // library does not check it at the end), and
        // `finish_registration` checks what the client reports instead.
        let selection = options
            .public_key
            .authenticator_selection
            .as_mut()
            .ok_or_else(|| PasskeyError::Config("registration options lack authenticator selection".to_owned()))?;
        selection.resident_key = Some(ResidentKeyRequirement::Required);
        selection.require_resident_key = true;

        let json = serde_json::to_value(&options)
            .map_err(|_| PasskeyError::Config("registration options could not be serialised".to_owned()))?;
        Ok((json, RegistrationCeremony { state, user_handle }))
    }

    /// Checks the browser's answer to `navigator.credentials.create()`
    /// (a `PublicKeyCredential` in its JSON form, binary fields as
    /// unpadded base64url) and returns the passkey to store.
    ///
    /// Checked here or by `webauthn-rs`: the client data type, challenge and
    /// origin; the RP id hash; user presence and user verification; the
    /// algorithm; that the credential is not one of those excluded. The
    /// caller must still check that the credential id is not registered to
    /// any user yet.
    ///
    /// The credential must be discoverable. Whether it is comes from the
    /// client's unsigned `credProps` output: a client that says `rk: false`
    /// is refused. A client that reports nothing is accepted, because it was
    /// asked for `residentKey: "required"` and a conforming client fails the
    /// ceremony rather than make a non-discoverable credential.
    ///
    /// # Errors
    ///
    /// [`PasskeyError::Malformed`] if the JSON is not a registration
    /// response; [`PasskeyError::Rejected`] if it fails a check.
    pub fn finish_registration(
        &self,
        response_json: &Value,
        ceremony: RegistrationCeremony,
    ) -> Result<StoredPasskey, PasskeyError> {
        let response = RegisterPublicKeyCredential::deserialize(response_json)
            .map_err(|e| PasskeyError::Malformed(format!("registration response: {}", json_problem(&e))))?;

        let discoverable = response.extensions.cred_props.as_ref().and_then(|p| p.rk);
        if discoverable == Some(false) {
            return Err(PasskeyError::Rejected(
                "the authenticator did not create a discoverable credential".to_owned(),
            ));
        }

        let passkey =
            self.webauthn.finish_passkey_registration(&response, &ceremony.state).map_err(verification_error)?;
        StoredPasskey::from_passkey(ceremony.user_handle, passkey)
    }

    /// Starts a login for a known user (for example as a second factor after
    /// a password), allowing only that user's passkeys.
    ///
    /// Returns the JSON for `navigator.credentials.get()` and the ceremony.
    /// User verification is required.
    ///
    /// # Errors
    ///
    /// [`PasskeyError::Rejected`] if `creds` is empty (the user has no
    /// passkey); [`PasskeyError::Config`] if `creds` belong to more than one
    /// user, since any one of them could then satisfy the ceremony.
    pub fn start_authentication(
        &self,
        creds: &[StoredPasskey],
    ) -> Result<(Value, AuthenticationCeremony), PasskeyError> {
        let Some(first) = creds.first() else {
            return Err(PasskeyError::Rejected("no passkey is registered for this account".to_owned()));
        };
        if creds.iter().any(|c| c.user_handle != first.user_handle) {
            return Err(PasskeyError::Config("passkeys of more than one user in one login".to_owned()));
        }
        let passkeys: Vec<Passkey> = creds.iter().map(|c| c.passkey.clone()).collect();
        let (options, state) = self
            .webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(|_| PasskeyError::Config("login could not be started".to_owned()))?;
        let json = serde_json::to_value(&options)
            .map_err(|_| PasskeyError::Config("login options could not be serialised".to_owned()))?;
        Ok((json, AuthenticationCeremony { state, creds: creds.to_vec() }))
    }

    /// Checks the browser's answer to the `navigator.credentials.get()`
    /// started by [`Passkeys::start_authentication`].
    ///
    /// Besides the checks of `webauthn-rs` (challenge, origin, RP id hash,
    /// signature, user presence and verification, signature counter), the
    /// user handle, when the authenticator returns one, must be the owner of
    /// the credential.
    ///
    /// # Errors
    ///
    /// [`PasskeyError::Malformed`] if the JSON is not an assertion;
    /// [`PasskeyError::Rejected`] if it fails a check.
    pub fn finish_authentication(
        &self,
        response: &Value,
        ceremony: AuthenticationCeremony,
    ) -> Result<AuthenticatedPasskey, PasskeyError> {
        let assertion = parse_assertion(response)?;
        let stored = ceremony
            .creds
            .iter()
            .find(|c| c.credential_id == assertion.raw_id)
            .ok_or_else(|| PasskeyError::Rejected("credential is not allowed in this login".to_owned()))?;
        if assertion.get_user_unique_id().is_some_and(|h| h != stored.user_handle.as_bytes()) {
            return Err(PasskeyError::Rejected("user handle does not own this credential".to_owned()));
        }
        let result =
            self.webauthn.finish_passkey_authentication(&assertion, &ceremony.state).map_err(verification_error)?;
        authenticated(stored, &result)
    }

    /// Starts a passwordless login: no user is named, and the authenticator
    /// offers whichever discoverable passkey the user picks.
    ///
    /// The JSON carries `"mediation": "conditional"` as `webauthn-rs` sets
    /// it, for the browser's autofill prompt; a page that signs in from a
    /// button can drop that member to get the modal prompt instead. User
    /// verification is required.
    ///
    /// # Errors
    ///
    /// [`PasskeyError::Config`] if the options cannot be made.
    pub fn start_discoverable(&self) -> Result<(Value, DiscoverableCeremony), PasskeyError> {
        let (options, state) = self
            .webauthn
            .start_discoverable_authentication()
            .map_err(|_| PasskeyError::Config("login could not be started".to_owned()))?;
        let json = serde_json::to_value(&options)
            .map_err(|_| PasskeyError::Config("login options could not be serialised".to_owned()))?;
        Ok((json, DiscoverableCeremony { state }))
    }

    /// Reads which user and credential a passwordless assertion claims, so
    /// the caller can load that user's passkeys for
    /// [`Passkeys::finish_discoverable`]. Nothing is verified yet.
    ///
    /// # Errors
    ///
    /// [`PasskeyError::Malformed`] if the JSON is not an assertion or has no
    /// user handle (the credential is not discoverable);
    /// [`PasskeyError::Rejected`] if the user handle is not one of our user
    /// ids.
    pub fn identify(&self, response: &Value) -> Result<(Uuid, Vec<u8>), PasskeyError> {
        let assertion = parse_assertion(response)?;
        let user = claimed_user(&assertion)?;
        Ok((user, assertion.raw_id))
    }

    /// Finishes a passwordless login. `creds` are the passkeys of the user
    /// named by [`Passkeys::identify`]; the one used must be among them and
    /// owned by the user in the assertion's user handle.
    ///
    /// # Errors
    ///
    /// [`PasskeyError::Malformed`] if the JSON is not an assertion with a
    /// user handle; [`PasskeyError::Rejected`] if it fails a check.
    pub fn finish_discoverable(
        &self,
        response: &Value,
        ceremony: DiscoverableCeremony,
        creds: &[StoredPasskey],
    ) -> Result<AuthenticatedPasskey, PasskeyError> {
        let assertion = parse_assertion(response)?;
        let user = claimed_user(&assertion)?;
        let stored = creds
            .iter()
            .find(|c| c.credential_id == assertion.raw_id)
            .ok_or_else(|| PasskeyError::Rejected("credential is not registered".to_owned()))?;
        if stored.user_handle != user {
            return Err(PasskeyError::Rejected("user handle does not own this credential".to_owned()));
        }
        let result = self
            .webauthn
            .finish_discoverable_authentication_v2(&assertion, ceremony.state, &stored.passkey)
            .map_err(verification_error)?;
        authenticated(stored, &result)
    }
}

/// Builds the login outcome and the updated passkey.
///
/// Counter regression: webauthn-rs 0.6 already fails the assertion with
/// `CredentialPossibleCompromise` when the new counter or the stored one is
/// non-zero and the new one is not greater (`require_valid_counter_value` is
/// on in every `Webauthn` built by `WebauthnBuilder`, and no builder method
/// turns it off). So a cloned authenticator whose counter lags the stored
/// one is refused there, and mapped to [`PasskeyError::Rejected`] by
/// [`verification_error`]. What remains for us is to hand back the new
/// counter so the caller stores it; the integration test
/// `cloned_authenticator_with_stale_counter_is_rejected` guards the library
/// behaviour against a future change.
fn authenticated(stored: &StoredPasskey, result: &AuthenticationResult) -> Result<AuthenticatedPasskey, PasskeyError> {
    // The ceremonies ask webauthn-rs for `UserVerificationPolicy::Required`,
    // which already refuses a missing UV flag; checked again here so that a
    // change of ceremony cannot silently drop it.
    if !result.user_verified() {
        return Err(PasskeyError::Rejected("user verification was not performed".to_owned()));
    }
    let updated = if result.needs_update() {
        let mut passkey = stored.passkey.clone();
        match passkey.update_credential(result) {
            Some(true) => Some(StoredPasskey::from_passkey(stored.user_handle, passkey)?),
            Some(false) => None,
            None => {
                return Err(PasskeyError::Config("verified credential differs from the stored one".to_owned()));
            }
        }
    } else {
        None
    };
    Ok(AuthenticatedPasskey { credential_id: stored.credential_id.clone(), user_handle: stored.user_handle, updated })
}

/// The user named by an assertion's user handle (not yet verified).
fn claimed_user(assertion: &PublicKeyCredential) -> Result<Uuid, PasskeyError> {
    let handle = assertion
        .get_user_unique_id()
        .ok_or_else(|| PasskeyError::Malformed("assertion has no user handle".to_owned()))?;
    Uuid::from_slice(handle).map_err(|_| PasskeyError::Rejected("user handle is not a user id".to_owned()))
}

fn parse_assertion(response: &Value) -> Result<PublicKeyCredential, PasskeyError> {
    PublicKeyCredential::deserialize(response)
        .map_err(|e| PasskeyError::Malformed(format!("assertion: {}", json_problem(&e))))
}

/// Describes a JSON error without quoting the input: serde messages such
/// as `invalid type: string "…"` echo what the client sent, which must not
/// reach a log line. Missing and unknown fields name our schema only.
fn json_problem(e: &serde_json::Error) -> String {
    let message = e.to_string();
    if message.starts_with("missing field") || message.starts_with("unknown field") {
        return message;
    }
    let what = match e.classify() {
        serde_json::error::Category::Io => "could not be read",
        serde_json::error::Category::Syntax => "is not valid json",
        serde_json::error::Category::Data => "has a field of the wrong type or encoding",
        serde_json::error::Category::Eof => "ends early",
    };
    if e.line() == 0 { what.to_owned() } else { format!("{what} (line {}, column {})", e.line(), e.column()) }
}

/// Maps a `webauthn-rs` verification failure to our kinds: decoding
/// failures of the binary fields are the client's malformed input, every
/// other failure is a rejected proof.
fn verification_error(e: WebauthnError) -> PasskeyError {
    use WebauthnError as W;
    let rejected = |m: &str| PasskeyError::Rejected(m.to_owned());
    match e {
        W::ParseBase64Failure(_)
        | W::ParseCBORFailure(_)
        | W::ParseJSONFailure(_)
        | W::ParseNOMFailure
        | W::ParseInsufficientBytesAvailable
        | W::MissingAttestationCredentialData
        | W::AttestationStatementMapInvalid
        | W::COSEKeyInvalidCBORValue => PasskeyError::Malformed("authenticator data could not be decoded".to_owned()),
        W::InvalidClientDataType => rejected("client data type does not match the ceremony"),
        W::MismatchedChallenge => rejected("challenge does not match this ceremony"),
        W::InvalidRPOrigin => rejected("origin is not allowed"),
        W::CredentialCrossOrigin => rejected("cross-origin ceremonies are not allowed"),
        W::InvalidRPIDHash => rejected("relying party id does not match"),
        W::UserNotPresent => rejected("user presence was not asserted"),
        W::UserNotVerified => rejected("user verification was not performed"),
        W::CredentialPossibleCompromise => {
            rejected("signature counter did not increase: the authenticator may be cloned")
        }
        W::CredentialNotFound => rejected("credential is not allowed in this ceremony"),
        W::CredentialExcludedFromRequest => rejected("credential is already registered"),
        W::CredentialAlteredAlgFromRequest => rejected("credential algorithm was not offered"),
        W::AuthenticationFailure | W::SignatureInvalid => rejected("signature is not valid"),
        W::CredentialBackupEligibilityInconsistent => rejected("backup eligibility of the credential changed"),
        W::COSEKeyInvalidType
        | W::COSEKeyEDUnsupported
        | W::COSEKeyECDSAXYInvalid
        | W::COSEKeyRSANEInvalid
        | W::COSEKeyECDSAInvalidCurve
        | W::COSEKeyEDDSAXInvalid
        | W::COSEKeyEDDSAInvalidCurve
        | W::COSEKeyInvalidAlgorithm
        | W::CredentialInsecureCryptography => rejected("credential key is not supported"),
        _ => rejected("verification failed"),
    }
}

/// Default number of ceremonies kept at once; past it the oldest is dropped.
pub const DEFAULT_CEREMONY_CAPACITY: usize = 10_000;

/// Default lifetime of a ceremony, equal to the timeout `webauthn-rs` puts
/// in the options it sends to the browser.
pub const DEFAULT_CEREMONY_TTL: Duration = Duration::from_secs(300);

/// In-memory store for ceremonies in flight, keyed by random ids.
///
/// Bounded: at most `capacity` entries, the oldest dropped first when full;
/// each entry lives `ttl`. Taking an entry removes it, so a ceremony can be
/// finished at most once. Time is passed in as milliseconds since any fixed
/// epoch (the same for every call), which keeps the store testable.
///
/// The store lives in one process: a deployment with several server
/// instances needs sticky sessions or a shared store.
pub struct Ceremonies<T> {
    inner: Mutex<Inner<T>>,
    capacity: usize,
    ttl_ms: u64,
}

struct Inner<T> {
    entries: HashMap<String, Entry<T>>,
    /// Ids in insertion order. May hold ids already taken; they are skipped
    /// when met, and compacted away when they pile up.
    order: VecDeque<String>,
}

struct Entry<T> {
    value: T,
    expires_at_ms: u64,
}

impl<T> fmt::Debug for Ceremonies<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ceremonies")
            .field("capacity", &self.capacity)
            .field("ttl_ms", &self.ttl_ms)
            .field("len", &self.len())
            .finish()
    }
}

impl<T> Default for Ceremonies<T> {
    fn default() -> Self {
        Self::new(DEFAULT_CEREMONY_CAPACITY, DEFAULT_CEREMONY_TTL)
    }
}

impl<T> Ceremonies<T> {
    /// A store holding at most `capacity` ceremonies (at least one), each for
    /// `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner { entries: HashMap::new(), order: VecDeque::new() }),
            capacity: capacity.max(1),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Stores a ceremony and returns its id: 128 random bits as 32
    /// lower-case hex digits, to give to the client.
    pub fn insert(&self, value: T, now_ms: u64) -> String {
        let id = format!("{:032x}", rand::random::<u128>());
        self.insert_with_id(id.clone(), value, now_ms);
        id
    }

    /// Stores a ceremony under an id the caller chose (one that is itself
    /// unguessable, such as an OpenID Connect `state`).
    pub fn insert_with_id(&self, id: String, value: T, now_ms: u64) {
        let mut inner = self.lock();
        inner.purge_expired(now_ms);
        while inner.entries.len() >= self.capacity {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            inner.entries.remove(&oldest);
        }
        inner.entries.insert(id.clone(), Entry { value, expires_at_ms: now_ms.saturating_add(self.ttl_ms) });
        inner.order.push_back(id.clone());
        // Ids taken before they reached the front stay in `order`; drop them
        // once they outnumber the live entries, so memory stays bounded.
        if inner.order.len() > self.capacity.saturating_mul(2) {
            let Inner { entries, order } = &mut *inner;
            order.retain(|id| entries.contains_key(id));
        }
    }

    /// Removes and returns the ceremony with this id, or `None` if there is
    /// none or it has expired. A second `take` of the same id returns `None`.
    pub fn take(&self, id: &str, now_ms: u64) -> Option<T> {
        let entry = self.lock().entries.remove(id)?;
        (now_ms < entry.expires_at_ms).then_some(entry.value)
    }

    /// Number of ceremonies held, expired ones included until they are
    /// purged by the next insert.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the store holds no ceremony.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        // No code path panics while holding the lock, and each update leaves
        // the maps consistent, so a poisoned lock still holds valid data.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T> Inner<T> {
    /// Drops expired entries from the front. Entries expire in insertion
    /// order (one TTL for all) unless the clock went back; a late one left
    /// behind is refused by `take` and evicted by capacity.
    fn purge_expired(&mut self, now_ms: u64) {
        while let Some(front) = self.order.front() {
            match self.entries.get(front) {
                Some(entry) if now_ms < entry.expires_at_ms => break,
                Some(_) => {
                    self.entries.remove(front);
                }
                None => {}
            }
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(capacity: usize) -> Ceremonies<u32> {
        Ceremonies::new(capacity, Duration::from_secs(300))
    }

    #[test]
    fn ids_are_128_bit_hex_and_distinct() {
        let s = store(10);
        let a = s.insert(1, 0);
        let b = s.insert(2, 0);
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn take_is_single_use() {
        let s = store(10);
        let id = s.insert(7, 1_000);
        assert_eq!(s.take(&id, 1_001), Some(7));
        assert_eq!(s.take(&id, 1_002), None);
        assert!(s.is_empty());
    }

    #[test]
    fn unknown_id_gives_none() {
        let s = store(10);
        s.insert(7, 0);
        assert_eq!(s.take("00000000000000000000000000000000", 0), None);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn entries_expire_after_ttl() {
        let s = store(10);
        let id = s.insert(7, 1_000);
        // Valid up to the last millisecond before expiry.
        let id2 = s.insert(8, 1_000);
        assert_eq!(s.take(&id2, 1_000 + 299_999), Some(8));
        assert_eq!(s.take(&id, 1_000 + 300_000), None);
        // The expired entry was removed by the take, not left behind.
        assert!(s.is_empty());
    }

    #[test]
    fn insert_purges_expired_entries() {
        let s = store(10);
        s.insert(1, 0);
        s.insert(2, 0);
        let live = s.insert(3, 400_000);
        assert_eq!(s.len(), 1);
        assert_eq!(s.take(&live, 400_001), Some(3));
    }

    #[test]
    fn capacity_evicts_oldest() {
        let s = store(3);
        let ids: Vec<String> = (0..5).map(|i| s.insert(i, u64::from(i))).collect();
        assert_eq!(s.len(), 3);
        let got: Vec<Option<u32>> = ids.iter().map(|id| s.take(id, 10)).collect();
        assert_eq!(got, vec![None, None, Some(2), Some(3), Some(4)]);
    }

    #[test]
    fn taken_ids_do_not_count_against_capacity_or_grow_memory() {
        let s = store(4);
        let keep = s.insert(99, 0);
        for i in 0..1_000 {
            let id = s.insert(i, 0);
            assert_eq!(s.take(&id, 0), Some(i));
        }
        // The first entry survived 1,000 insert/take rounds in a store of 4.
        assert_eq!(s.take(&keep, 0), Some(99));
        let inner = s.lock();
        assert!(inner.order.len() <= 8, "order grew to {}", inner.order.len());
    }

    #[test]
    fn capacity_of_zero_still_holds_one() {
        let s = store(0);
        let a = s.insert(1, 0);
        let b = s.insert(2, 0);
        assert_eq!(s.take(&a, 0), None);
        assert_eq!(s.take(&b, 0), Some(2));
    }

    #[test]
    fn clock_going_back_does_not_revive_or_break() {
        let s = store(10);
        let id = s.insert(1, 1_000_000);
        assert_eq!(s.take(&id, 0), Some(1));
        let id = s.insert(2, u64::MAX);
        assert_eq!(s.take(&id, u64::MAX), None);
    }

    fn rp() -> Result<Passkeys, PasskeyError> {
        let origin =
            Url::parse("https://caduceus.example").map_err(|_| PasskeyError::Config("test origin".to_owned()))?;
        Passkeys::new("caduceus.example", &origin, "Caduceus")
    }

    #[test]
    fn rp_id_must_fit_the_origin() -> Result<(), PasskeyError> {
        let origin =
            Url::parse("https://caduceus.example").map_err(|_| PasskeyError::Config("test origin".to_owned()))?;
        assert!(matches!(Passkeys::new("evil.example", &origin, "Caduceus"), Err(PasskeyError::Config(_))));
        rp().map(|_| ())
    }

    #[test]
    fn registration_options_require_uv_and_resident_key() -> Result<(), PasskeyError> {
        let user = Uuid::new_v4();
        let (json, ceremony) = rp()?.start_registration(user, "alice", "Alice", &[vec![1, 2, 3]])?;
        assert_eq!(ceremony.user_handle, user);
        let sel = &json["publicKey"]["authenticatorSelection"];
        assert_eq!(sel["residentKey"], "required");
        assert_eq!(sel["requireResidentKey"], true);
        assert_eq!(sel["userVerification"], "required");
        assert_eq!(json["publicKey"]["rp"]["id"], "caduceus.example");
        assert_eq!(json["publicKey"]["excludeCredentials"][0]["id"], "AQID");
        Ok(())
    }

    #[test]
    fn malformed_responses_are_malformed_not_rejected() -> Result<(), PasskeyError> {
        let rp = rp()?;
        let (_, ceremony) = rp.start_registration(Uuid::new_v4(), "alice", "Alice", &[])?;
        let err = rp.finish_registration(&serde_json::json!({"id": 5}), ceremony);
        assert!(matches!(err, Err(PasskeyError::Malformed(_))), "{err:?}");

        let secret = "s3cret-looking-input";
        let bad = serde_json::json!({
            "id": "x", "rawId": secret, "type": "public-key",
            "response": {"clientDataJSON": "", "authenticatorData": "", "signature": ""}
        });
        match rp.identify(&bad) {
            Err(PasskeyError::Malformed(m)) => assert!(!m.contains(secret), "{m}"),
            other => panic!("expected malformed, got {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn identify_requires_a_user_handle() -> Result<(), PasskeyError> {
        let no_handle = serde_json::json!({
            "id": "AQID", "rawId": "AQID", "type": "public-key",
            "response": {"clientDataJSON": "", "authenticatorData": "", "signature": ""}
        });
        assert!(matches!(rp()?.identify(&no_handle), Err(PasskeyError::Malformed(_))));
        let short_handle = serde_json::json!({
            "id": "AQID", "rawId": "AQID", "type": "public-key",
            "response": {"clientDataJSON": "", "authenticatorData": "", "signature": "",
                         "userHandle": "AQID"}
        });
        assert!(matches!(rp()?.identify(&short_handle), Err(PasskeyError::Rejected(_))));
        Ok(())
    }

    #[test]
    fn empty_credential_list_is_refused() -> Result<(), PasskeyError> {
        assert!(matches!(rp()?.start_authentication(&[]), Err(PasskeyError::Rejected(_))));
        Ok(())
    }

    #[test]
    fn stored_passkey_rejects_garbage() {
        assert!(matches!(StoredPasskey::from_json(Uuid::new_v4(), "{\"cred\": 1}"), Err(PasskeyError::Stored(_))));
    }
}
