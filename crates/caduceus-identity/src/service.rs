//! The identity service: accounts, sign-in (password, TOTP, recovery codes,
//! passkeys, OpenID Connect), sessions and API keys, over the store, with
//! every security-relevant step reported to an [`AuditSink`].
//!
//! The server wires it to HTTP; the CLI uses it to create the first user.
//! Nothing here knows about HTTP: callers pass the client address and the
//! secrets they received, and get typed outcomes and errors back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use caduceus_core::event::{AccountChangeKind, AuthActivity};
use caduceus_core::{Actor, ActorKind, Clock, Payload, Redacted, Severity, Status, Target, Timestamp};
use caduceus_store::{ApiTokenRecord, PasskeyRecord, SessionRecord, Store, StoreError, TotpRecord, UserRecord};
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::oidc::{OidcClient, OidcIdentity, PendingLogin};
use crate::otp::{self, Totp};
use crate::passkeys::{
    AuthenticationCeremony, Ceremonies, DiscoverableCeremony, PasskeyError, Passkeys, RegistrationCeremony,
    StoredPasskey,
};
use crate::password::{self, PasswordError};
use crate::roles::{Permission, Permissions, Role};
use crate::throttle::{Throttle, ThrottlePolicy};

/// Prefix of session secrets (`cas_`) and API keys (`cad_`), so a leaked
/// secret is recognisable to secret scanners and to us.
pub const SESSION_PREFIX: &str = "cas_";
pub const API_KEY_PREFIX: &str = "cad_";
/// Longest username and password accepted before any work is done.
const MAX_USERNAME: usize = 128;
const MAX_SECRET_INPUT: usize = 1024;
/// How long a password-verified login waits for its second factor.
const PENDING_MFA: Duration = Duration::from_secs(300);
/// How often a cached session or key is re-read from the store, so that a
/// revocation made by another process (the CLI) takes effect.
const RECHECK_MS: i64 = 30_000;
/// How far `last_seen` may run ahead of the stored value before it is written.
const TOUCH_EVERY_MS: i64 = 60_000;
const RECOVERY_CODES: usize = 10;
/// Most entries in the in-memory session and key caches.
const CACHE_CAPACITY: usize = 100_000;

/// Where audit events go (the server publishes them on the spine, where
/// they are sealed in the ledger).
#[async_trait]
pub trait AuditSink: Send + Sync {
    async fn audit(&self, event: AuditEvent) -> Result<(), String>;
}

/// One security event from identity; never carries a secret.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub severity: Severity,
    pub status: Status,
    pub actor: Actor,
    pub target: Option<Target>,
    pub message: String,
    pub payload: Payload,
}

/// Tunables, from the `[identity]` configuration.
#[derive(Debug, Clone)]
pub struct IdentitySettings {
    pub idle_timeout_ms: i64,
    pub absolute_timeout_ms: i64,
    pub step_up_ms: i64,
    /// Roles whose members must use a passkey as second factor.
    pub phishing_resistant: Vec<Role>,
    /// Back-off per account and client address together.
    pub account_throttle: ThrottlePolicy,
    /// Back-off per client address, over all accounts (stuffing).
    pub source_throttle: ThrottlePolicy,
    /// The issuer name in `otpauth://` URIs.
    pub totp_issuer: String,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        Self {
            idle_timeout_ms: 15 * 60_000,
            absolute_timeout_ms: 12 * 3_600_000,
            step_up_ms: 10 * 60_000,
            phishing_resistant: Vec::new(),
            account_throttle: ThrottlePolicy::default(),
            source_throttle: ThrottlePolicy { free_attempts: 30, ..ThrottlePolicy::default() },
            totp_issuer: "Caduceus".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Wrong username, password or code: one answer for all of them.
    #[error("invalid credentials")]
    BadCredentials,
    #[error("too many attempts; try again in {} s", (retry_after_ms + 999) / 1000)]
    Throttled { retry_after_ms: i64 },
    #[error("not signed in, or the session has ended")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(String),
    /// The action needs a recent re-authentication (step-up).
    #[error("this action needs a recent re-authentication: POST /api/v1/auth/step-up")]
    StepUpRequired,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("single sign-on is not configured")]
    SsoDisabled,
    #[error("single sign-on failed: {0}")]
    Sso(String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("audit: {0}")]
    Audit(String),
    #[error("internal: {0}")]
    Internal(String),
}

type Result<T, E = IdentityError> = std::result::Result<T, E>;

/// Who is making a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub subject: Subject,
    pub user_id: Option<String>,
    /// Username, or the API key's label.
    pub name: String,
    pub roles: Vec<Role>,
    pub permissions: Permissions,
    /// A privileged user who has not enrolled a second factor yet may only
    /// enrol one (and sign out).
    pub restricted: bool,
    pub patient_ref: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Subject {
    Session(Arc<CachedSession>),
    ApiKey { token_id: String },
}

impl Principal {
    pub fn can(&self, permission: Permission) -> bool {
        !self.restricted && self.permissions.contains(permission)
    }

    /// Sessions must have re-authenticated recently; API keys are not
    /// interactive and carry only the scopes they were issued with.
    pub fn is_elevated(&self, now: Timestamp) -> bool {
        match &self.subject {
            Subject::Session(session) => session.elevated_until.load(Ordering::Relaxed) > now.as_millis(),
            Subject::ApiKey { .. } => true,
        }
    }

    pub fn session(&self) -> Option<&Arc<CachedSession>> {
        match &self.subject {
            Subject::Session(s) => Some(s),
            Subject::ApiKey { .. } => None,
        }
    }

    pub fn actor(&self) -> Actor {
        match &self.subject {
            Subject::Session(s) => Actor { kind: ActorKind::User, uid: s.user_id.clone() },
            Subject::ApiKey { token_id } => Actor { kind: ActorKind::Service, uid: token_id.clone() },
        }
    }
}

/// A session as held in memory between store reads.
#[derive(Debug)]
pub struct CachedSession {
    pub session_hash: [u8; 32],
    pub session_id: String,
    pub user_id: String,
    pub kind: SessionKind,
    pub methods: Vec<String>,
    pub created: Timestamp,
    pub expires: Timestamp,
    pub elevated_until: AtomicI64,
    last_seen: AtomicI64,
    stored_last_seen: AtomicI64,
    revoked: AtomicBool,
}

impl CachedSession {
    pub fn last_seen(&self) -> Timestamp {
        Timestamp(self.last_seen.load(Ordering::Relaxed))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// A browser: the secret travels in a cookie, unsafe requests need the CSRF token.
    Cookie,
    /// An API client: the secret travels as a bearer token.
    Bearer,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cookie => "cookie",
            Self::Bearer => "bearer",
        }
    }

    fn parse(text: &str) -> Self {
        if text == "cookie" { Self::Cookie } else { Self::Bearer }
    }
}

/// A new session: its secret exists only here and in the caller's hands.
#[derive(Debug)]
pub struct NewSession {
    pub secret: Redacted<String>,
    pub csrf_token: String,
    pub session_id: String,
    pub user: UserRecord,
    pub kind: SessionKind,
    pub methods: Vec<String>,
    pub expires: Timestamp,
    pub restricted: bool,
}

/// What a first sign-in step led to.
#[derive(Debug)]
pub enum LoginStep {
    Authenticated(Box<NewSession>),
    /// The password was right; a second factor is needed. `mfa_token` names
    /// the pending login (single use, five minutes).
    MfaRequired {
        mfa_token: Redacted<String>,
        methods: Vec<&'static str>,
        expires_in_secs: u64,
    },
}

/// A second factor offered to finish a login or to step up.
#[derive(Debug)]
pub enum SecondFactor {
    Totp(Redacted<String>),
    RecoveryCode(Redacted<String>),
}

struct PendingMfa {
    user_id: String,
    kind: SessionKind,
    source: String,
    methods: Vec<String>,
}

/// Where a passkey ceremony was started and for what.
enum PasskeyCeremony {
    Register { user_id: String, name: String, ceremony: RegistrationCeremony },
    SecondFactor { mfa: PendingMfa, ceremony: AuthenticationCeremony },
    StepUp { session_hash: [u8; 32], ceremony: AuthenticationCeremony },
    Passwordless { kind: SessionKind, ceremony: DiscoverableCeremony },
}

/// What `begin_totp` hands the user to scan.
#[derive(Debug)]
pub struct TotpEnrolment {
    pub secret_base32: Redacted<String>,
    pub uri: Redacted<String>,
    pub qr_svg: String,
}

/// A newly issued API key: the secret is shown once.
#[derive(Debug)]
pub struct IssuedKey {
    pub record: ApiTokenRecord,
    pub secret: Redacted<String>,
}

/// A request to create an account.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub roles: Vec<Role>,
    /// `None`: generate a strong password and return it once.
    pub password: Option<Redacted<String>>,
    pub patient_ref: Option<String>,
}

/// Changes to an account; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub display_name: Option<String>,
    pub roles: Option<Vec<Role>>,
    pub disabled: Option<bool>,
}

struct CachedKey {
    record: ApiTokenRecord,
    checked: AtomicI64,
}

struct CachedEntry {
    session: Arc<CachedSession>,
    user: Arc<UserRecord>,
    checked: AtomicI64,
}

pub struct IdentityService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    audit: Arc<dyn AuditSink>,
    settings: IdentitySettings,
    by_account: Throttle<(String, String)>,
    by_source: Throttle<String>,
    by_mfa: Throttle<String>,
    pending: Ceremonies<PendingMfa>,
    ceremonies: Ceremonies<PasskeyCeremony>,
    oidc_pending: Ceremonies<(PendingLogin, SessionKind, String)>,
    passkeys: Option<Passkeys>,
    oidc: Option<OidcClient>,
    sessions: RwLock<HashMap<[u8; 32], Arc<CachedEntry>>>,
    keys: RwLock<HashMap<[u8; 32], Arc<CachedKey>>>,
    /// Per-process key for naming unknown usernames in audit events.
    unknown_key: [u8; 32],
    breached: Option<Arc<crate::breached::BreachedList>>,
}

impl std::fmt::Debug for IdentityService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityService").field("settings", &self.settings).finish_non_exhaustive()
    }
}

fn random_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The CSRF token of a cookie session: derived from its secret, which a
/// page on another origin cannot read, so it need not be stored.
pub fn csrf_token(session_secret: &str) -> String {
    let digest = Sha256::new().chain_update(b"caduceus-csrf-v1\0").chain_update(session_secret.as_bytes()).finalize();
    hex::encode(digest.get(..16).unwrap_or_default())
}

/// Usernames compare trimmed and in lower case.
pub fn normalise_username(name: &str) -> String {
    name.trim().to_lowercase()
}

fn valid_username(name: &str) -> bool {
    (1..=MAX_USERNAME).contains(&name.len())
        && name.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'))
}

fn roles_of(user: &UserRecord) -> Vec<Role> {
    user.roles.iter().filter_map(|r| Role::parse(r)).collect()
}

fn role_names(roles: &[Role]) -> Vec<String> {
    let mut names: Vec<String> = roles.iter().map(|r| r.name().to_owned()).collect();
    names.sort();
    names.dedup();
    names
}

fn algorithm_name(algorithm: otp::Algorithm) -> &'static str {
    algorithm.uri_name()
}

fn parse_algorithm(name: &str) -> Result<otp::Algorithm> {
    match name {
        "SHA1" => Ok(otp::Algorithm::Sha1),
        "SHA256" => Ok(otp::Algorithm::Sha256),
        "SHA512" => Ok(otp::Algorithm::Sha512),
        other => Err(IdentityError::Internal(format!("stored totp algorithm {other} is unknown"))),
    }
}

fn user_target(user_id: &str) -> Option<Target> {
    Some(Target { kind: "account".into(), uid: user_id.to_owned() })
}

/// Run CPU-heavy work (argon2) off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| IdentityError::Internal(format!("worker failed: {e}")))
}

impl IdentityService {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        audit: Arc<dyn AuditSink>,
        settings: IdentitySettings,
    ) -> Self {
        let mut unknown_key = [0u8; 32];
        rand::rng().fill_bytes(&mut unknown_key);
        Self {
            store,
            clock,
            audit,
            by_account: Throttle::new(settings.account_throttle),
            by_source: Throttle::new(settings.source_throttle),
            by_mfa: Throttle::new(settings.account_throttle),
            settings,
            pending: Ceremonies::new(10_000, PENDING_MFA),
            ceremonies: Ceremonies::new(10_000, PENDING_MFA),
            oidc_pending: Ceremonies::new(10_000, Duration::from_secs(600)),
            passkeys: None,
            oidc: None,
            sessions: RwLock::new(HashMap::new()),
            keys: RwLock::new(HashMap::new()),
            unknown_key,
            breached: None,
        }
    }

    pub fn with_passkeys(mut self, passkeys: Passkeys) -> Self {
        self.passkeys = Some(passkeys);
        self
    }

    pub fn with_oidc(mut self, oidc: OidcClient) -> Self {
        self.oidc = Some(oidc);
        self
    }

    pub fn with_breached_list(mut self, list: crate::breached::BreachedList) -> Self {
        self.breached = Some(Arc::new(list));
        self
    }

    pub fn settings(&self) -> &IdentitySettings {
        &self.settings
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.now().as_millis()).unwrap_or(0)
    }

    async fn emit(&self, event: AuditEvent) -> Result<()> {
        self.audit.audit(event).await.map_err(IdentityError::Audit)
    }

    async fn emit_auth(
        &self,
        activity: AuthActivity,
        account: &str,
        methods: &str,
        source: &str,
        session_id: Option<&str>,
        failure: Option<&str>,
    ) -> Result<()> {
        let ok = failure.is_none();
        let message = match (activity, ok) {
            (AuthActivity::Logon, true) => "sign-in succeeded",
            (AuthActivity::Logon, false) => "sign-in failed",
            (AuthActivity::Logoff, _) => "signed out",
            (AuthActivity::Throttled, _) => "sign-in refused while backing off",
            (AuthActivity::StepUp, true) => "re-authenticated for privileged actions",
            (AuthActivity::StepUp, false) => "re-authentication failed",
        };
        let actor = Actor { kind: ActorKind::User, uid: account.to_owned() };
        self.emit(AuditEvent {
            severity: if ok { Severity::Informational } else { Severity::Low },
            status: if ok { Status::Success } else { Status::Failure },
            actor,
            target: None,
            message: message.into(),
            payload: Payload::Authentication {
                activity,
                account: account.to_owned(),
                methods: methods.to_owned(),
                source: source.to_owned(),
                session_id: session_id.map(str::to_owned),
                failure: failure.map(str::to_owned),
            },
        })
        .await
    }

    async fn emit_change(&self, actor: Actor, change: AccountChangeKind, user_id: &str, detail: String) -> Result<()> {
        let message = match change {
            AccountChangeKind::Created => "account created",
            AccountChangeKind::Enabled => "account enabled",
            AccountChangeKind::PasswordChanged => "password changed",
            AccountChangeKind::Disabled => "account disabled",
            AccountChangeKind::RolesChanged => "roles changed",
            AccountChangeKind::MfaEnrolled => "second factor enrolled",
            AccountChangeKind::MfaRemoved => "second factor removed",
            AccountChangeKind::RecoveryCodesIssued => "recovery codes issued",
            AccountChangeKind::ApiKeyRevoked => "api key revoked",
        };
        self.emit(AuditEvent {
            severity: Severity::Low,
            status: Status::Success,
            actor,
            target: user_target(user_id),
            message: message.into(),
            payload: Payload::AccountChange { change, account: user_id.to_owned(), detail },
        })
        .await
    }

    /// How an unknown username appears in audit events: a keyed hash, so
    /// the same name from many places is visible without storing it.
    fn unknown_account(&self, username: &str) -> String {
        let digest = Sha256::new().chain_update(self.unknown_key).chain_update(username.as_bytes()).finalize();
        format!("unknown:{}", hex::encode(digest.get(..8).unwrap_or_default()))
    }

    // ----- accounts -------------------------------------------------------

    /// Check a new password against the policy and, when configured, the
    /// offline breached-password list (file reads, so on a blocking thread;
    /// zxcvbn's estimate is CPU work of a fraction of a millisecond).
    pub async fn check_password(&self, password: &str, context: &[&str]) -> Result<()> {
        password::check_policy(password, context)?;
        if let Some(list) = self.breached.clone() {
            let candidate = Redacted::new(password.to_owned());
            match blocking(move || list.count(candidate.expose())).await? {
                Ok(Some(_)) => return Err(PasswordError::Breached.into()),
                Ok(None) => {}
                Err(e) => return Err(IdentityError::Internal(format!("breached-password list: {e}"))),
            }
        }
        Ok(())
    }

    pub async fn create_user(&self, actor: Actor, new: NewUser) -> Result<(UserRecord, Option<Redacted<String>>)> {
        let username = normalise_username(&new.username);
        if !valid_username(&username) {
            return Err(IdentityError::BadRequest("a username is 1 to 128 letters, digits and . - _ @".into()));
        }
        let display_name = new.display_name.trim().to_owned();
        if display_name.chars().count() > 256 {
            return Err(IdentityError::BadRequest("display_name is at most 256 characters".into()));
        }
        if new.roles.is_empty() {
            return Err(IdentityError::BadRequest("an account needs at least one role".into()));
        }
        if new.roles.contains(&Role::Patient) && new.roles.len() > 1 {
            return Err(IdentityError::BadRequest("a patient account has no other role".into()));
        }
        let (password, generated) = match new.password {
            Some(p) => {
                self.check_password(p.expose(), &[&username, &display_name]).await?;
                (p, None)
            }
            None => {
                let p = Redacted::new(generate_password());
                (p.clone(), Some(p))
            }
        };
        let secret = password.expose().clone();
        let password_hash = blocking(move || password::hash(&secret)).await??;
        let now = self.now();
        let user = UserRecord {
            user_id: Uuid::new_v4().to_string(),
            username,
            display_name,
            roles: role_names(&new.roles),
            password_hash: Some(password_hash),
            patient_ref: new.patient_ref,
            external: None,
            disabled: None,
            created: now,
            updated: now,
        };
        self.store.create_user(&user).await.map_err(|e| match e {
            StoreError::Conflict(_) => IdentityError::Conflict("that username is taken".into()),
            other => other.into(),
        })?;
        self.emit_change(actor, AccountChangeKind::Created, &user.user_id, format!("roles: {}", user.roles.join(",")))
            .await?;
        Ok((user, generated))
    }

    pub async fn user(&self, user_id: &str) -> Result<UserRecord> {
        self.store.user_by_id(user_id).await?.ok_or_else(|| IdentityError::NotFound("no such user".into()))
    }

    pub async fn list_users(&self, after: &str, limit: u32) -> Result<Vec<UserRecord>> {
        Ok(self.store.list_users(after, limit.clamp(1, 500)).await?)
    }

    pub async fn update_user(&self, actor: Actor, user_id: &str, changes: UserChanges) -> Result<UserRecord> {
        let mut user = self.user(user_id).await?;
        let mut events = Vec::new();
        if let Some(name) = changes.display_name {
            if name.chars().count() > 256 {
                return Err(IdentityError::BadRequest("display_name is at most 256 characters".into()));
            }
            user.display_name = name.trim().to_owned();
        }
        if let Some(roles) = changes.roles {
            if roles.is_empty() {
                return Err(IdentityError::BadRequest("an account needs at least one role".into()));
            }
            let names = role_names(&roles);
            if names != user.roles {
                events.push((
                    AccountChangeKind::RolesChanged,
                    format!("{} -> {}", user.roles.join(","), names.join(",")),
                ));
                user.roles = names;
            }
        }
        if let Some(disabled) = changes.disabled {
            match (disabled, user.disabled.is_some()) {
                (true, false) => {
                    user.disabled = Some(self.now());
                    events.push((AccountChangeKind::Disabled, String::new()));
                }
                (false, true) => {
                    user.disabled = None;
                    events.push((AccountChangeKind::Enabled, String::new()));
                }
                _ => {}
            }
        }
        user.updated = self.now();
        self.store.update_user(&user).await?;
        if user.disabled.is_some() {
            self.store.revoke_sessions_of(user_id, None, self.now()).await?;
        }
        self.forget_user(user_id);
        for (change, detail) in events {
            self.emit_change(actor.clone(), change, user_id, detail).await?;
        }
        Ok(user)
    }

    /// Set a user's password as an administrator (or the demo); every
    /// session of the account ends. `None` generates one, returned once.
    pub async fn set_password(
        &self,
        actor: Actor,
        user_id: &str,
        new: Option<Redacted<String>>,
    ) -> Result<Redacted<String>> {
        let mut user = self.user(user_id).await?;
        let new = match new {
            Some(p) => {
                self.check_password(p.expose(), &[&user.username, &user.display_name]).await?;
                p
            }
            None => Redacted::new(generate_password()),
        };
        let secret = new.expose().clone();
        user.password_hash = Some(blocking(move || password::hash(&secret)).await??);
        user.updated = self.now();
        self.store.update_user(&user).await?;
        self.revoke_sessions(user_id).await?;
        self.forget_user(user_id);
        self.emit_change(actor, AccountChangeKind::PasswordChanged, user_id, "set by an administrator".into()).await?;
        Ok(new)
    }

    pub async fn change_password(&self, principal: &Principal, current: &str, new: &str) -> Result<()> {
        let user_id = principal.user_id.clone().ok_or_else(not_an_account)?;
        let mut user = self.user(&user_id).await?;
        let Some(stored) = user.password_hash.clone() else {
            return Err(IdentityError::BadRequest("this account has no password".into()));
        };
        let attempt = self.by_mfa.begin(&format!("pw:{user_id}"), self.now().as_millis());
        let Ok(attempt) = attempt else { return Err(IdentityError::Throttled { retry_after_ms: 1000 }) };
        let current = current.to_owned();
        if !blocking(move || password::verify(&current, &stored)).await?? {
            return Err(IdentityError::BadCredentials);
        }
        self.by_mfa.succeeded(attempt);
        self.check_password(new, &[&user.username, &user.display_name]).await?;
        let new = new.to_owned();
        user.password_hash = Some(blocking(move || password::hash(&new)).await??);
        user.updated = self.now();
        self.store.update_user(&user).await?;
        // Other sessions may belong to whoever knew the old password.
        let keep = principal.session().map(|s| s.session_hash);
        self.store.revoke_sessions_of(&user_id, keep.as_ref(), self.now()).await?;
        self.forget_user_except(&user_id, keep.as_ref());
        self.emit_change(principal.actor(), AccountChangeKind::PasswordChanged, &user_id, String::new()).await
    }

    // ----- sign-in ----------------------------------------------------------

    /// First step: username and password. Unknown users, disabled users and
    /// wrong passwords get the same error after the same work.
    pub async fn login_password(
        &self,
        username: &str,
        password_input: &str,
        source: &str,
        kind: SessionKind,
    ) -> Result<LoginStep> {
        let username = normalise_username(username);
        if username.is_empty() || username.len() > MAX_USERNAME || password_input.len() > MAX_SECRET_INPUT {
            return Err(IdentityError::BadCredentials);
        }
        let now = self.now().as_millis();
        // Book the attempt against the account (with this source) and the
        // source before looking at anything: parallel guesses all count.
        let account_attempt = self.by_account.begin(&(username.clone(), source.to_owned()), now);
        let source_attempt = self.by_source.begin(&source.to_owned(), now);
        let (account_attempt, source_attempt) = match (account_attempt, source_attempt) {
            (Ok(a), Ok(s)) => (a, s),
            (a, s) => {
                let retry_after_ms =
                    [a.err(), s.err()].into_iter().flatten().map(|t| t.retry_after_ms).max().unwrap_or(1000);
                // Recorded against the account when there is one (the
                // answer to the client is the same either way).
                let account = match self.store.user_by_username(&username).await? {
                    Some(user) => user.user_id,
                    None => self.unknown_account(&username),
                };
                self.emit_auth(AuthActivity::Throttled, &account, "password", source, None, Some("throttled")).await?;
                return Err(IdentityError::Throttled { retry_after_ms });
            }
        };
        let user = self.store.user_by_username(&username).await?;
        let stored = user.as_ref().filter(|u| u.disabled.is_none()).and_then(|u| u.password_hash.clone());
        let input = password_input.to_owned();
        let verified = match stored {
            Some(hash) => blocking(move || password::verify(&input, &hash).unwrap_or(false)).await?,
            None => {
                blocking(move || password::verify_against_nothing(&input)).await?;
                false
            }
        };
        let user = match (verified, user) {
            (true, Some(user)) => user,
            (_, known) => {
                let account = known.map_or_else(|| self.unknown_account(&username), |u| u.user_id);
                self.emit_auth(AuthActivity::Logon, &account, "password", source, None, Some("bad_credentials"))
                    .await?;
                return Err(IdentityError::BadCredentials);
            }
        };
        self.by_account.succeeded(account_attempt);
        self.by_source.succeeded(source_attempt);
        if user.password_hash.as_deref().is_some_and(password::needs_rehash) {
            let input = password_input.to_owned();
            if let Ok(Ok(hash)) = blocking(move || password::hash(&input)).await {
                let mut upgraded = user.clone();
                upgraded.password_hash = Some(hash);
                self.store.update_user(&upgraded).await?;
            }
        }
        let methods = self.second_factors(&user).await?;
        if methods.is_empty() {
            return self
                .finish_login(user, vec!["password".into()], kind, source)
                .await
                .map(|s| LoginStep::Authenticated(Box::new(s)));
        }
        let pending =
            PendingMfa { user_id: user.user_id, kind, source: source.to_owned(), methods: vec!["password".into()] };
        let mfa_token = self.pending.insert(pending, self.now_ms());
        Ok(LoginStep::MfaRequired {
            mfa_token: Redacted::new(mfa_token),
            methods,
            expires_in_secs: PENDING_MFA.as_secs(),
        })
    }

    /// The second factors the user may finish a login with. A
    /// phishing-resistant role with a passkey may use only the passkey;
    /// without one yet, its TOTP still stands (the password alone must not
    /// open a session that could register an attacker's passkey).
    async fn second_factors(&self, user: &UserRecord) -> Result<Vec<&'static str>> {
        let mut methods = Vec::new();
        let has_passkey = !self.store.passkeys_of(&user.user_id).await?.is_empty();
        if has_passkey && self.passkeys.is_some() {
            methods.push("passkey");
        }
        if !methods.is_empty() && self.phishing_resistant_only(user) {
            return Ok(methods);
        }
        if self.store.totp(&user.user_id).await?.is_some_and(|t| t.confirmed.is_some()) {
            methods.push("totp");
            if self.store.unused_recovery_codes(&user.user_id).await? > 0 {
                methods.push("recovery_code");
            }
        }
        if methods.is_empty() && has_passkey {
            // Passkeys registered but the relying party is not configured:
            // a second factor exists, so never fall back to password only.
            return Err(IdentityError::Internal("passkeys are not configured on this server".into()));
        }
        Ok(methods)
    }

    fn phishing_resistant_only(&self, user: &UserRecord) -> bool {
        roles_of(user).iter().any(|r| self.settings.phishing_resistant.contains(r))
    }

    /// Whether the user can sign in with a passkey here.
    async fn has_passkey(&self, user: &UserRecord) -> Result<bool> {
        Ok(self.passkeys.is_some() && !self.store.passkeys_of(&user.user_id).await?.is_empty())
    }

    fn requires_mfa(user: &UserRecord) -> bool {
        roles_of(user).iter().any(|r| r.requires_mfa())
    }

    /// Second step: a TOTP or recovery code for a pending login. A wrong
    /// code ends the pending login (sign in again with the password).
    pub async fn login_second_factor(&self, mfa_token: &str, factor: SecondFactor) -> Result<NewSession> {
        let pending = self.pending.take(mfa_token, self.now_ms()).ok_or(IdentityError::Unauthenticated)?;
        let user = self.user(&pending.user_id).await.map_err(|_| IdentityError::BadCredentials)?;
        if user.disabled.is_some() {
            return Err(IdentityError::BadCredentials);
        }
        if self.phishing_resistant_only(&user) && self.has_passkey(&user).await? {
            return Err(IdentityError::Forbidden("this role must sign in with a passkey".into()));
        }
        let method = self.check_second_factor(&user, &factor, &pending.source).await?;
        let mut methods = pending.methods;
        methods.push(method.into());
        self.finish_login(user, methods, pending.kind, &pending.source).await
    }

    /// Verify a TOTP or recovery code for `user`, under the per-account
    /// second-factor back-off, spending it (single use) when right.
    async fn check_second_factor(
        &self,
        user: &UserRecord,
        factor: &SecondFactor,
        source: &str,
    ) -> Result<&'static str> {
        let now = self.now();
        let attempt = match self.by_mfa.begin(&user.user_id, now.as_millis()) {
            Ok(a) => a,
            Err(t) => {
                self.emit_auth(
                    AuthActivity::Throttled,
                    &user.user_id,
                    "second_factor",
                    source,
                    None,
                    Some("throttled"),
                )
                .await?;
                return Err(IdentityError::Throttled { retry_after_ms: t.retry_after_ms });
            }
        };
        let (method, ok) = match factor {
            SecondFactor::Totp(code) => ("totp", self.check_totp(&user.user_id, code.expose(), now).await?),
            SecondFactor::RecoveryCode(code) => {
                let hash = hash_secret(&normalise_recovery_code(code.expose()));
                ("recovery_code", self.store.use_recovery_code(&user.user_id, &hash, now).await?)
            }
        };
        if !ok {
            self.emit_auth(
                AuthActivity::Logon,
                &user.user_id,
                &format!("password+{method}"),
                source,
                None,
                Some("bad_code"),
            )
            .await?;
            return Err(IdentityError::BadCredentials);
        }
        self.by_mfa.succeeded(attempt);
        Ok(method)
    }

    async fn check_totp(&self, user_id: &str, code: &str, now: Timestamp) -> Result<bool> {
        let Some(record) = self.store.totp(user_id).await?.filter(|t| t.confirmed.is_some()) else { return Ok(false) };
        let totp = Totp::new(parse_algorithm(&record.algorithm)?, record.secret, record.digits, record.period)
            .map_err(|e| IdentityError::Internal(format!("stored totp secret: {e}")))?;
        let last = u64::try_from(record.last_step).ok();
        let unix = u64::try_from(now.as_millis() / 1000).unwrap_or(0);
        let Ok(step) = totp.verify(code, unix, last) else { return Ok(false) };
        // Compare-and-set in the store: of two parallel uses of one code, one wins.
        Ok(self.store.use_totp_step(user_id, i64::try_from(step).unwrap_or(i64::MAX)).await?)
    }

    async fn finish_login(
        &self,
        user: UserRecord,
        methods: Vec<String>,
        kind: SessionKind,
        source: &str,
    ) -> Result<NewSession> {
        let restricted =
            methods.len() < 2 && Self::requires_mfa(&user) && !methods.iter().any(|m| m == "passkey" || m == "oidc");
        let now = self.now();
        let secret = random_secret(SESSION_PREFIX);
        let session_hash = hash_secret(&secret);
        let session_id = format!("ses_{}", hex::encode(session_hash.get(..8).unwrap_or_default()));
        let expires = Timestamp(now.as_millis().saturating_add(self.settings.absolute_timeout_ms));
        // A sign-in with every factor the account has is a fresh
        // authentication: privileged actions are allowed for the step-up
        // window without asking again.
        let elevated_until = (!restricted).then(|| Timestamp(now.as_millis().saturating_add(self.settings.step_up_ms)));
        let record = SessionRecord {
            session_hash,
            session_id: session_id.clone(),
            user_id: user.user_id.clone(),
            kind: kind.as_str().into(),
            methods: methods.clone(),
            source: source.chars().take(256).collect(),
            created: now,
            last_seen: now,
            expires,
            elevated_until,
            revoked: None,
        };
        self.store.insert_session(&record).await?;
        self.cache_session(&record, Arc::new(user.clone()));
        self.emit_auth(AuthActivity::Logon, &user.user_id, &methods.join("+"), source, Some(&session_id), None).await?;
        Ok(NewSession {
            csrf_token: csrf_token(&secret),
            secret: Redacted::new(secret),
            session_id,
            user,
            kind,
            methods,
            expires,
            restricted,
        })
    }

    // ----- sessions and keys on the request path ---------------------------

    fn cache_session(&self, record: &SessionRecord, user: Arc<UserRecord>) -> Arc<CachedEntry> {
        let entry = Arc::new(CachedEntry {
            session: Arc::new(CachedSession {
                session_hash: record.session_hash,
                session_id: record.session_id.clone(),
                user_id: record.user_id.clone(),
                kind: SessionKind::parse(&record.kind),
                methods: record.methods.clone(),
                created: record.created,
                expires: record.expires,
                elevated_until: AtomicI64::new(record.elevated_until.map_or(0, |t| t.as_millis())),
                last_seen: AtomicI64::new(record.last_seen.as_millis()),
                stored_last_seen: AtomicI64::new(record.last_seen.as_millis()),
                revoked: AtomicBool::new(record.revoked.is_some()),
            }),
            user,
            checked: AtomicI64::new(self.now().as_millis()),
        });
        let mut sessions = self.sessions.write().unwrap_or_else(PoisonError::into_inner);
        if sessions.len() >= CACHE_CAPACITY {
            // Dropping entries only costs a store read on their next use.
            sessions.clear();
        }
        sessions.insert(record.session_hash, entry.clone());
        entry
    }

    fn forget_user(&self, user_id: &str) {
        self.forget_user_except(user_id, None);
    }

    fn forget_user_except(&self, user_id: &str, keep: Option<&[u8; 32]>) {
        let mut sessions = self.sessions.write().unwrap_or_else(PoisonError::into_inner);
        sessions.retain(|hash, e| e.session.user_id != user_id || Some(hash) == keep);
    }

    /// Who holds this session secret, if it is live: not revoked, within its
    /// absolute lifetime, and used within the idle timeout.
    pub async fn authenticate_session(&self, secret: &str) -> Result<Principal> {
        if !secret.starts_with(SESSION_PREFIX) || secret.len() > 128 {
            return Err(IdentityError::Unauthenticated);
        }
        let hash = hash_secret(secret);
        let now = self.now().as_millis();
        let cached = self.sessions.read().unwrap_or_else(PoisonError::into_inner).get(&hash).cloned();
        let entry = match cached {
            Some(entry) if now - entry.checked.load(Ordering::Relaxed) < RECHECK_MS => entry,
            _ => {
                let record = self.store.find_session(&hash).await?.ok_or(IdentityError::Unauthenticated)?;
                let user = self.store.user_by_id(&record.user_id).await?.ok_or(IdentityError::Unauthenticated)?;
                let fresh = self.cache_session(&record, Arc::new(user));
                // The store's `last_seen` lags by up to TOUCH_EVERY_MS: keep
                // the uses this process saw, or an active session would be
                // signed out before its idle timeout.
                if let Some(stale) = cached {
                    let seen = stale.session.last_seen.load(Ordering::Relaxed);
                    fresh.session.last_seen.fetch_max(seen, Ordering::Relaxed);
                }
                fresh
            }
        };
        let session = &entry.session;
        let last_seen = session.last_seen.load(Ordering::Relaxed);
        if session.revoked.load(Ordering::Relaxed)
            || entry.user.disabled.is_some()
            || now >= session.expires.as_millis()
        {
            return Err(IdentityError::Unauthenticated);
        }
        if now - last_seen > self.settings.idle_timeout_ms {
            // Automatic logoff: the session ends for good.
            session.revoked.store(true, Ordering::Relaxed);
            self.store.revoke_session(&hash, Timestamp(now)).await?;
            self.emit_auth(AuthActivity::Logoff, &session.user_id, "idle_timeout", "", Some(&session.session_id), None)
                .await?;
            return Err(IdentityError::Unauthenticated);
        }
        session.last_seen.fetch_max(now, Ordering::Relaxed);
        if now - session.stored_last_seen.load(Ordering::Relaxed) > TOUCH_EVERY_MS {
            session.stored_last_seen.store(now, Ordering::Relaxed);
            self.store.touch_session(&hash, Timestamp(now)).await?;
        }
        let roles = roles_of(&entry.user);
        let restricted = session.methods.len() < 2
            && roles.iter().any(|r| r.requires_mfa())
            && !session.methods.iter().any(|m| m == "passkey" || m == "oidc");
        Ok(Principal {
            subject: Subject::Session(session.clone()),
            user_id: Some(entry.user.user_id.clone()),
            name: entry.user.username.clone(),
            permissions: Permissions::of_roles(&roles),
            roles,
            restricted,
            patient_ref: entry.user.patient_ref.clone(),
        })
    }

    /// Who holds this API key, if it is live.
    pub async fn authenticate_key(&self, secret: &str) -> Result<Principal> {
        if !secret.starts_with(API_KEY_PREFIX) || secret.len() > 128 {
            return Err(IdentityError::Unauthenticated);
        }
        let hash = hash_secret(secret);
        let now = self.now();
        let cached = self.keys.read().unwrap_or_else(PoisonError::into_inner).get(&hash).cloned();
        let key = match cached {
            Some(key) if now.as_millis() - key.checked.load(Ordering::Relaxed) < RECHECK_MS => key,
            _ => {
                let record = self.store.find_token(&hash).await?.ok_or(IdentityError::Unauthenticated)?;
                let key = Arc::new(CachedKey { record, checked: AtomicI64::new(now.as_millis()) });
                let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
                if keys.len() >= CACHE_CAPACITY {
                    keys.clear();
                }
                keys.insert(hash, key.clone());
                key
            }
        };
        let record = &key.record;
        if record.revoked.is_some() || record.expires.is_some_and(|at| at <= now) {
            return Err(IdentityError::Unauthenticated);
        }
        let roles: Vec<Role> = Role::parse(&record.role).into_iter().collect();
        let scopes: Vec<Permission> = record.scopes.iter().filter_map(|s| Permission::parse(s)).collect();
        Ok(Principal {
            subject: Subject::ApiKey { token_id: record.token_id.clone() },
            // A key acts for a service, never as its issuer's account.
            user_id: None,
            name: record.label.clone(),
            permissions: Permissions::of_roles(&roles).limited_to(&scopes),
            roles,
            restricted: false,
            patient_ref: None,
        })
    }

    /// End this session.
    pub async fn logout(&self, principal: &Principal) -> Result<()> {
        let Some(session) = principal.session() else {
            return Err(IdentityError::Forbidden("an API key is revoked, not signed out".into()));
        };
        session.revoked.store(true, Ordering::Relaxed);
        self.store.revoke_session(&session.session_hash, self.now()).await?;
        self.emit_auth(AuthActivity::Logoff, &session.user_id, "session", "", Some(&session.session_id), None).await
    }

    /// End every session of the principal's account ("log out everywhere").
    pub async fn logout_everywhere(&self, principal: &Principal) -> Result<u64> {
        let user_id = principal.user_id.clone().ok_or_else(not_an_account)?;
        let count = self.revoke_sessions(&user_id).await?;
        self.emit_auth(AuthActivity::Logoff, &user_id, "all_sessions", "", None, None).await?;
        Ok(count)
    }

    /// Revoke every session of a user (an administrator's action too).
    pub async fn revoke_sessions(&self, user_id: &str) -> Result<u64> {
        let count = self.store.revoke_sessions_of(user_id, None, self.now()).await?;
        let sessions = self.sessions.read().unwrap_or_else(PoisonError::into_inner);
        for entry in sessions.values().filter(|e| e.session.user_id == user_id) {
            entry.session.revoked.store(true, Ordering::Relaxed);
        }
        Ok(count)
    }

    /// Re-authenticate the current session with a password or a second
    /// factor; privileged actions are then allowed for the step-up window.
    /// An account with a second factor must use it.
    pub async fn step_up(
        &self,
        principal: &Principal,
        password_input: Option<&str>,
        factor: Option<SecondFactor>,
        source: &str,
    ) -> Result<Timestamp> {
        let session =
            principal.session().ok_or_else(|| IdentityError::Forbidden("API keys do not step up".into()))?.clone();
        let user = self.user(&session.user_id).await?;
        let has_factor = !self.second_factors(&user).await?.is_empty();
        let method = match (factor, password_input) {
            (Some(factor), _) => {
                if self.phishing_resistant_only(&user) && self.has_passkey(&user).await? {
                    return Err(IdentityError::Forbidden("this role must re-authenticate with a passkey".into()));
                }
                match self.check_second_factor(&user, &factor, source).await {
                    Ok(m) => m,
                    Err(e) => {
                        self.emit_auth(
                            AuthActivity::StepUp,
                            &user.user_id,
                            "second_factor",
                            source,
                            Some(&session.session_id),
                            Some("bad_code"),
                        )
                        .await?;
                        return Err(e);
                    }
                }
            }
            (None, Some(_)) if has_factor => {
                return Err(IdentityError::BadRequest("this account re-authenticates with its second factor".into()));
            }
            (None, Some(input)) => {
                let Some(stored) = user.password_hash.clone() else { return Err(IdentityError::BadCredentials) };
                let attempt = self
                    .by_mfa
                    .begin(&user.user_id, self.now().as_millis())
                    .map_err(|t| IdentityError::Throttled { retry_after_ms: t.retry_after_ms })?;
                let input = input.to_owned();
                if !blocking(move || password::verify(&input, &stored).unwrap_or(false)).await? {
                    self.emit_auth(
                        AuthActivity::StepUp,
                        &user.user_id,
                        "password",
                        source,
                        Some(&session.session_id),
                        Some("bad_credentials"),
                    )
                    .await?;
                    return Err(IdentityError::BadCredentials);
                }
                self.by_mfa.succeeded(attempt);
                "password"
            }
            (None, None) => return Err(IdentityError::BadCredentials),
        };
        self.elevate(&session, method, source).await
    }

    async fn elevate(&self, session: &CachedSession, method: &str, source: &str) -> Result<Timestamp> {
        let until = Timestamp(self.now().as_millis().saturating_add(self.settings.step_up_ms));
        if !self.store.elevate_session(&session.session_hash, until).await? {
            return Err(IdentityError::Unauthenticated);
        }
        session.elevated_until.store(until.as_millis(), Ordering::Relaxed);
        self.emit_auth(AuthActivity::StepUp, &session.user_id, method, source, Some(&session.session_id), None).await?;
        Ok(until)
    }

    pub async fn sessions_of(&self, user_id: &str) -> Result<Vec<SessionRecord>> {
        Ok(self.store.sessions_of(user_id).await?)
    }

    // ----- TOTP and recovery codes -----------------------------------------

    /// Start TOTP enrolment: a new secret, waiting for its first code.
    pub async fn begin_totp(&self, principal: &Principal) -> Result<TotpEnrolment> {
        let user_id = principal.user_id.clone().ok_or_else(not_an_account)?;
        if principal.session().is_none() {
            return Err(IdentityError::Forbidden("second factors are enrolled from a signed-in session".into()));
        }
        if self.store.totp(&user_id).await?.is_some_and(|t| t.confirmed.is_some()) {
            return Err(IdentityError::Conflict("TOTP is already enrolled; remove it first".into()));
        }
        let totp = Totp::generate();
        self.store
            .put_totp(
                &user_id,
                &TotpRecord {
                    secret: totp.secret().to_vec(),
                    algorithm: algorithm_name(totp.algorithm).into(),
                    digits: totp.digits,
                    period: totp.period,
                    confirmed: None,
                    last_step: -1,
                },
            )
            .await?;
        let uri = totp.uri(&self.settings.totp_issuer, &principal.name);
        let qr_svg = crate::qr::svg(&uri).map_err(|e| IdentityError::Internal(e.to_string()))?;
        Ok(TotpEnrolment {
            secret_base32: Redacted::new(data_encoding::BASE32_NOPAD.encode(totp.secret())),
            uri: Redacted::new(uri),
            qr_svg,
        })
    }

    /// Finish TOTP enrolment with a first code. Returns fresh recovery codes
    /// when the account had none.
    pub async fn confirm_totp(&self, principal: &Principal, code: &str) -> Result<Option<Vec<Redacted<String>>>> {
        let user_id = principal.user_id.clone().ok_or_else(not_an_account)?;
        let record = self
            .store
            .totp(&user_id)
            .await?
            .filter(|t| t.confirmed.is_none())
            .ok_or_else(|| IdentityError::BadRequest("no TOTP enrolment is waiting; start one first".into()))?;
        let totp = Totp::new(parse_algorithm(&record.algorithm)?, record.secret, record.digits, record.period)
            .map_err(|e| IdentityError::Internal(e.to_string()))?;
        let attempt = self
            .by_mfa
            .begin(&user_id, self.now().as_millis())
            .map_err(|t| IdentityError::Throttled { retry_after_ms: t.retry_after_ms })?;
        let unix = u64::try_from(self.now().as_millis() / 1000).unwrap_or(0);
        let step = totp.verify(code, unix, None).map_err(|_| IdentityError::BadCredentials)?;
        if !self.store.confirm_totp(&user_id, i64::try_from(step).unwrap_or(i64::MAX), self.now()).await? {
            return Err(IdentityError::Conflict("enrolment was already confirmed".into()));
        }
        self.by_mfa.succeeded(attempt);
        self.forget_user(&user_id);
        self.emit_change(principal.actor(), AccountChangeKind::MfaEnrolled, &user_id, "totp".into()).await?;
        if self.store.unused_recovery_codes(&user_id).await? == 0 {
            return Ok(Some(self.issue_recovery_codes(principal, &user_id).await?));
        }
        Ok(None)
    }

    pub async fn remove_totp(&self, principal: &Principal) -> Result<()> {
        let user_id = principal.user_id.clone().ok_or_else(not_an_account)?;
        if !self.store.delete_totp(&user_id).await? {
            return Err(IdentityError::NotFound("no TOTP is enrolled".into()));
        }
        self.emit_change(principal.actor(), AccountChangeKind::MfaRemoved, &user_id, "totp".into()).await
    }

    /// Replace the account's recovery codes; the new ones are shown once.
    pub async fn regenerate_recovery_codes(&self, principal: &Principal) -> Result<Vec<Redacted<String>>> {
        let user_id = principal.user_id.clone().ok_or_else(not_an_account)?;
        self.issue_recovery_codes(principal, &user_id).await
    }

    async fn issue_recovery_codes(&self, principal: &Principal, user_id: &str) -> Result<Vec<Redacted<String>>> {
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| generate_recovery_code()).collect();
        let hashes: Vec<[u8; 32]> = codes.iter().map(|c| hash_secret(&normalise_recovery_code(c))).collect();
        self.store.replace_recovery_codes(user_id, &hashes).await?;
        self.emit_change(
            principal.actor(),
            AccountChangeKind::RecoveryCodesIssued,
            user_id,
            format!("{RECOVERY_CODES} codes"),
        )
        .await?;
        Ok(codes.into_iter().map(Redacted::new).collect())
    }

    // ----- passkeys ---------------------------------------------------------

    fn passkeys(&self) -> Result<&Passkeys> {
        self.passkeys.as_ref().ok_or_else(|| IdentityError::BadRequest("passkeys are not configured".into()))
    }

    async fn stored_passkeys(&self, user_id: &str) -> Result<Vec<StoredPasskey>> {
        let handle = Uuid::parse_str(user_id).map_err(|_| IdentityError::Internal("user id is not a UUID".into()))?;
        self.store
            .passkeys_of(user_id)
            .await?
            .iter()
            .map(|p| StoredPasskey::from_json(handle, &p.passkey).map_err(|e| IdentityError::Internal(e.to_string())))
            .collect()
    }

    /// Start registering a passkey for the signed-in user.
    pub async fn begin_passkey_registration(
        &self,
        principal: &Principal,
        name: &str,
    ) -> Result<(String, serde_json::Value)> {
        let user_id = principal.user_id.clone().ok_or_else(not_an_account)?;
        if principal.session().is_none() {
            return Err(IdentityError::Forbidden("passkeys are registered from a signed-in session".into()));
        }
        let user = self.user(&user_id).await?;
        let handle = Uuid::parse_str(&user_id).map_err(|_| IdentityError::Internal("user id is not a UUID".into()))?;
        let exclude: Vec<Vec<u8>> =
            self.store.passkeys_of(&user_id).await?.into_iter().map(|p| p.credential_id).collect();
        let display = if user.display_name.is_empty() { user.username.clone() } else { user.display_name.clone() };
        let (options, ceremony) =
            self.passkeys()?.start_registration(handle, &user.username, &display, &exclude).map_err(passkey_error)?;
        let name: String = name.trim().chars().take(64).collect();
        let name = if name.is_empty() { "passkey".to_owned() } else { name };
        let id = self.ceremonies.insert(PasskeyCeremony::Register { user_id, name, ceremony }, self.now_ms());
        Ok((id, options))
    }

    pub async fn finish_passkey_registration(
        &self,
        principal: &Principal,
        ceremony_id: &str,
        response: &serde_json::Value,
    ) -> Result<PasskeyRecord> {
        let Some(PasskeyCeremony::Register { user_id, name, ceremony }) =
            self.ceremonies.take(ceremony_id, self.now_ms())
        else {
            return Err(IdentityError::NotFound("no such registration in progress (it may have expired)".into()));
        };
        if principal.user_id.as_deref() != Some(user_id.as_str()) {
            return Err(IdentityError::Forbidden("that registration belongs to another session".into()));
        }
        let stored = self.passkeys()?.finish_registration(response, ceremony).map_err(passkey_error)?;
        let record = PasskeyRecord {
            credential_id: stored.credential_id().to_vec(),
            user_id: user_id.clone(),
            name,
            passkey: stored.json().to_owned(),
            created: self.now(),
            last_used: None,
        };
        self.store.insert_passkey(&record).await.map_err(|e| match e {
            StoreError::Conflict(_) => IdentityError::Conflict("that passkey is already registered".into()),
            other => other.into(),
        })?;
        self.forget_user(&user_id);
        self.emit_change(principal.actor(), AccountChangeKind::MfaEnrolled, &user_id, "passkey".into()).await?;
        Ok(record)
    }

    pub async fn list_passkeys(&self, principal: &Principal) -> Result<Vec<PasskeyRecord>> {
        let user_id = principal.user_id.clone().ok_or_else(not_an_account)?;
        Ok(self.store.passkeys_of(&user_id).await?)
    }

    pub async fn remove_passkey(&self, principal: &Principal, credential_id: &[u8]) -> Result<()> {
        let user_id = principal.user_id.clone().ok_or_else(not_an_account)?;
        if !self.store.delete_passkey(&user_id, credential_id).await? {
            return Err(IdentityError::NotFound("no such passkey".into()));
        }
        self.emit_change(principal.actor(), AccountChangeKind::MfaRemoved, &user_id, "passkey".into()).await
    }

    /// Start a passkey assertion as the second factor of a pending login.
    pub async fn begin_passkey_second_factor(&self, mfa_token: &str) -> Result<(String, serde_json::Value)> {
        let pending = self.pending.take(mfa_token, self.now_ms()).ok_or(IdentityError::Unauthenticated)?;
        let creds = self.stored_passkeys(&pending.user_id).await?;
        let (options, ceremony) = self.passkeys()?.start_authentication(&creds).map_err(passkey_error)?;
        let id = self.ceremonies.insert(PasskeyCeremony::SecondFactor { mfa: pending, ceremony }, self.now_ms());
        Ok((id, options))
    }

    /// Start a passwordless sign-in with a discoverable passkey.
    pub fn begin_passkey_login(&self, kind: SessionKind) -> Result<(String, serde_json::Value)> {
        let (options, ceremony) = self.passkeys()?.start_discoverable().map_err(passkey_error)?;
        let id = self.ceremonies.insert(PasskeyCeremony::Passwordless { kind, ceremony }, self.now_ms());
        Ok((id, options))
    }

    /// Start a passkey re-authentication of the current session.
    pub async fn begin_passkey_step_up(&self, principal: &Principal) -> Result<(String, serde_json::Value)> {
        let session = principal.session().ok_or_else(|| IdentityError::Forbidden("API keys do not step up".into()))?;
        let creds = self.stored_passkeys(&session.user_id).await?;
        let (options, ceremony) = self.passkeys()?.start_authentication(&creds).map_err(passkey_error)?;
        let id = self
            .ceremonies
            .insert(PasskeyCeremony::StepUp { session_hash: session.session_hash, ceremony }, self.now_ms());
        Ok((id, options))
    }

    /// Finish any passkey assertion started above. For a login it returns
    /// the new session; for a step-up, `None` after elevating the session.
    pub async fn finish_passkey(
        &self,
        ceremony_id: &str,
        response: &serde_json::Value,
        principal: Option<&Principal>,
        source: &str,
    ) -> Result<Option<NewSession>> {
        let passkeys = self.passkeys()?;
        let ceremony = self.ceremonies.take(ceremony_id, self.now_ms()).ok_or_else(|| {
            IdentityError::NotFound("no such passkey ceremony in progress (it may have expired)".into())
        })?;
        match ceremony {
            PasskeyCeremony::Register { .. } => {
                Err(IdentityError::BadRequest("that is a registration ceremony".into()))
            }
            PasskeyCeremony::SecondFactor { mfa, ceremony } => {
                let result = passkeys.finish_authentication(response, ceremony);
                let done = self.passkey_outcome(&mfa.user_id, result, source).await?;
                let user = self.user(&done).await?;
                if user.disabled.is_some() {
                    return Err(IdentityError::BadCredentials);
                }
                let mut methods = mfa.methods;
                methods.push("passkey".into());
                self.finish_login(user, methods, mfa.kind, &mfa.source).await.map(Some)
            }
            PasskeyCeremony::Passwordless { kind, ceremony } => {
                let (handle, _) = passkeys.identify(response).map_err(passkey_error)?;
                let user_id = handle.to_string();
                let creds = self.stored_passkeys(&user_id).await?;
                let result = passkeys.finish_discoverable(response, ceremony, &creds);
                let done = self.passkey_outcome(&user_id, result, source).await?;
                let user = self.user(&done).await?;
                if user.disabled.is_some() {
                    return Err(IdentityError::BadCredentials);
                }
                self.finish_login(user, vec!["passkey".into()], kind, source).await.map(Some)
            }
            PasskeyCeremony::StepUp { session_hash, ceremony } => {
                let session = principal
                    .and_then(Principal::session)
                    .filter(|s| s.session_hash == session_hash)
                    .ok_or_else(|| {
                        IdentityError::Forbidden("that re-authentication belongs to another session".into())
                    })?
                    .clone();
                let result = passkeys.finish_authentication(response, ceremony);
                self.passkey_outcome(&session.user_id, result, source).await?;
                self.elevate(&session, "passkey", source).await?;
                Ok(None)
            }
        }
    }

    /// Record a passkey assertion's outcome; store the new counter.
    async fn passkey_outcome(
        &self,
        user_id: &str,
        result: std::result::Result<crate::passkeys::AuthenticatedPasskey, PasskeyError>,
        source: &str,
    ) -> Result<String> {
        match result {
            Ok(done) => {
                if let Some(updated) = &done.updated {
                    self.store.update_passkey(updated.credential_id(), updated.json(), self.now()).await?;
                }
                Ok(done.user_handle.to_string())
            }
            Err(e) => {
                self.emit_auth(AuthActivity::Logon, user_id, "passkey", source, None, Some("passkey_rejected")).await?;
                Err(passkey_error(e))
            }
        }
    }

    // ----- single sign-on ---------------------------------------------------

    pub fn oidc_enabled(&self) -> bool {
        self.oidc.is_some()
    }

    /// Start an OpenID Connect sign-in: the provider URL to send the browser to.
    pub fn begin_oidc(&self, kind: SessionKind, source: &str) -> Result<url::Url> {
        let oidc = self.oidc.as_ref().ok_or(IdentityError::SsoDisabled)?;
        let (url, pending) = oidc.begin();
        let state = pending.state().to_owned();
        self.oidc_pending.insert_with_id(state, (pending, kind, source.to_owned()), self.now_ms());
        Ok(url)
    }

    /// Finish an OpenID Connect sign-in from the provider's redirect.
    /// Accounts are matched by issuer and subject, created on first sign-in,
    /// and their roles follow the provider's groups at every sign-in.
    pub async fn complete_oidc(&self, state: &str, code: &str, source: &str) -> Result<NewSession> {
        let oidc = self.oidc.as_ref().ok_or(IdentityError::SsoDisabled)?;
        let (pending, kind, _) = self
            .oidc_pending
            .take(state, self.now_ms())
            .ok_or_else(|| IdentityError::Sso("unknown or expired sign-in state".into()))?;
        let identity: OidcIdentity = match oidc.complete(pending, code, state).await {
            Ok(identity) => identity,
            Err(e) => {
                self.emit_auth(AuthActivity::Logon, "unknown:oidc", "oidc", source, None, Some("sso_failed")).await?;
                return Err(IdentityError::Sso(e.to_string()));
            }
        };
        let roles: Vec<Role> = oidc.roles_for(&identity.groups).iter().filter_map(|r| Role::parse(r)).collect();
        let existing = self.store.user_by_external(&identity.issuer, &identity.subject).await?;
        if roles.is_empty() {
            let account =
                existing.as_ref().map_or_else(|| self.unknown_account(&identity.subject), |u| u.user_id.clone());
            self.emit_auth(AuthActivity::Logon, &account, "oidc", source, None, Some("no_mapped_group")).await?;
            return Err(IdentityError::Forbidden("your groups at the identity provider grant no role here".into()));
        }
        let user = match existing {
            Some(mut user) => {
                if user.disabled.is_some() {
                    return Err(IdentityError::Forbidden("this account is disabled".into()));
                }
                let names = role_names(&roles);
                if names != user.roles {
                    let detail =
                        format!("{} -> {} (from identity provider groups)", user.roles.join(","), names.join(","));
                    user.roles = names;
                    user.updated = self.now();
                    self.store.update_user(&user).await?;
                    self.forget_user(&user.user_id);
                    self.emit_change(Actor::system(), AccountChangeKind::RolesChanged, &user.user_id, detail).await?;
                }
                user
            }
            None => self.provision_oidc_user(&identity, &roles).await?,
        };
        self.finish_login(user, vec!["oidc".into()], kind, source).await
    }

    async fn provision_oidc_user(&self, identity: &OidcIdentity, roles: &[Role]) -> Result<UserRecord> {
        let base =
            identity.username.clone().or_else(|| identity.email.clone()).unwrap_or_else(|| identity.subject.clone());
        let mut username: String = normalise_username(&base)
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'))
            .take(100)
            .collect();
        if username.is_empty() || self.store.user_by_username(&username).await?.is_some() {
            username = format!("{username}.sso-{}", &Uuid::new_v4().simple().to_string()[..8]);
        }
        let now = self.now();
        let user = UserRecord {
            user_id: Uuid::new_v4().to_string(),
            username,
            display_name: identity.display_name.clone().unwrap_or_default(),
            roles: role_names(roles),
            password_hash: None,
            patient_ref: None,
            external: Some(caduceus_store::ExternalIdentity {
                issuer: identity.issuer.clone(),
                subject: identity.subject.clone(),
            }),
            disabled: None,
            created: now,
            updated: now,
        };
        self.store.create_user(&user).await?;
        self.emit_change(
            Actor::system(),
            AccountChangeKind::Created,
            &user.user_id,
            format!("roles: {} (single sign-on)", user.roles.join(",")),
        )
        .await?;
        Ok(user)
    }

    // ----- API keys ---------------------------------------------------------

    /// Issue an API key for a service or device. Its role and scopes may not
    /// exceed what the issuer holds.
    pub async fn issue_key(
        &self,
        issuer: Option<&Principal>,
        label: &str,
        role: Role,
        scopes: &[Permission],
        expires: Option<Timestamp>,
    ) -> Result<IssuedKey> {
        let label = label.trim();
        if label.is_empty() || label.chars().count() > 128 {
            return Err(IdentityError::BadRequest("a label is 1 to 128 characters".into()));
        }
        let granted = Permissions::of_roles(&[role]).limited_to(scopes);
        if let Some(issuer) = issuer
            && granted.iter().any(|p| !issuer.permissions.contains(p))
        {
            return Err(IdentityError::Forbidden("a key cannot carry permissions its issuer does not hold".into()));
        }
        let secret = random_secret(API_KEY_PREFIX);
        let token_hash = hash_secret(&secret);
        let record = ApiTokenRecord {
            token_hash,
            token_id: format!("tok_{}", hex::encode(token_hash.get(..6).unwrap_or_default())),
            label: label.to_owned(),
            role: role.name().to_owned(),
            scopes: scopes.iter().map(|p| p.name().to_owned()).collect(),
            owner: issuer.and_then(|p| p.user_id.clone()),
            created: self.now(),
            expires,
            revoked: None,
        };
        self.store.insert_token(&record).await?;
        self.emit(AuditEvent {
            severity: Severity::Low,
            status: Status::Success,
            actor: issuer.map_or_else(Actor::system, Principal::actor),
            target: Some(Target { kind: "api_token".into(), uid: record.token_id.clone() }),
            message: "api key issued".into(),
            payload: Payload::ApiTokenIssued { token_id: record.token_id.clone(), label: record.label.clone() },
        })
        .await?;
        Ok(IssuedKey { record, secret: Redacted::new(secret) })
    }

    pub async fn list_keys(&self) -> Result<Vec<ApiTokenRecord>> {
        Ok(self.store.list_tokens().await?)
    }

    pub async fn revoke_key(&self, actor: Actor, token_id: &str) -> Result<()> {
        if !self.store.revoke_token(token_id, self.now()).await? {
            return Err(IdentityError::NotFound("no such live API key".into()));
        }
        self.keys.write().unwrap_or_else(PoisonError::into_inner).retain(|_, k| k.record.token_id != token_id);
        self.emit_change(actor, AccountChangeKind::ApiKeyRevoked, token_id, String::new()).await
    }
}

/// API keys act for services, not people: account actions are refused.
fn not_an_account() -> IdentityError {
    IdentityError::Forbidden("an API key has no account; sign in as a user".into())
}

fn passkey_error(e: PasskeyError) -> IdentityError {
    match e {
        PasskeyError::Malformed(m) => IdentityError::BadRequest(m),
        PasskeyError::Rejected(_) => IdentityError::BadCredentials,
        other => IdentityError::Internal(other.to_string()),
    }
}

/// A generated password: 20 characters from a 56-symbol alphabet without
/// look-alikes (about 116 bits).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20).map(|_| char::from(*ALPHABET.get(rng.next_u32() as usize % ALPHABET.len()).unwrap_or(&b'x'))).collect()
}

/// A recovery code: 16 base32 characters (80 bits) in four groups.
fn generate_recovery_code() -> String {
    let mut bytes = [0u8; 10];
    rand::rng().fill_bytes(&mut bytes);
    let text = data_encoding::BASE32_NOPAD.encode(&bytes).to_lowercase();
    text.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("-")
}

/// Recovery codes compare without dashes, spaces or case.
fn normalise_recovery_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_have_the_promised_shape() {
        let pw = generate_password();
        assert_eq!(pw.chars().count(), 20);
        assert!(password::check_policy(&pw, &[]).is_ok());
        let code = generate_recovery_code();
        assert_eq!(code.len(), 19, "{code}");
        assert_eq!(normalise_recovery_code(&code.to_uppercase().replace('-', " ")), code.replace('-', ""));
        assert!(random_secret(SESSION_PREFIX).starts_with(SESSION_PREFIX));
        assert_ne!(csrf_token("cas_a"), csrf_token("cas_b"));
        assert_eq!(normalise_username("  Alice.Smith "), "alice.smith");
        assert!(valid_username("alice.smith@ward-3") && !valid_username("alice smith") && !valid_username(""));
    }
}
