//! OpenID Connect login as a relying party (the `openidconnect` crate):
//! discovery and keys, the authorization code flow with PKCE (S256), state
//! and nonce, ID token verification, the provider's groups and their mapping
//! to our roles.
//!
//! Owns the protocol only. It keeps no state: the caller holds each
//! [`PendingLogin`] server-side, keyed by [`PendingLogin::state`], and hands
//! it back to [`OidcClient::complete`] once. It creates no accounts, starts
//! no sessions and knows no web framework; it links nothing by email (an
//! account is the pair issuer + subject).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use caduceus_core::{Clock, Redacted, SystemClock, Timestamp};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreRevocableToken,
    CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AccessToken, AccessTokenHash, AdditionalClaims, AsyncHttpClient, AuthorizationCode, Client, ClientId, ClientSecret,
    CsrfToken, DiscoveryError, EndpointMaybeSet, EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, IdTokenFields,
    IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope,
    StandardErrorResponse, StandardTokenResponse, SubjectIdentifier, TokenResponse, TokenUrl, UserInfoError,
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use url::Url;

use crate::roles::Role;

/// Longest wait for one request to the provider.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest response read from the provider (discovery, keys, tokens,
/// UserInfo are a few kilobytes each).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// How long a login may take from [`OidcClient::begin`] to
/// [`OidcClient::complete`]; callers should drop older pending logins too.
pub const MAX_LOGIN_AGE_MILLIS: i64 = 10 * 60 * 1000;

/// How to reach one OpenID Connect provider, and what its groups mean here.
/// Sits in the TOML configuration; unknown keys are refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    /// The provider's issuer, character for character as its discovery
    /// document and ID tokens state it (OpenID Connect compares the strings:
    /// `https://idp.example` and `https://idp.example/` are different
    /// issuers, which is why this is not a `Url`, which would add the slash).
    /// HTTPS, except on a loopback address.
    pub issuer: String,
    /// Our client id at the provider.
    pub client_id: String,
    /// Our client secret (a confidential client); `None` for a public
    /// client, which then relies on PKCE alone.
    #[serde(default)]
    pub client_secret: Option<Redacted<String>>,
    /// Where the provider sends the browser back, as registered there.
    pub redirect_url: Url,
    /// Scopes to ask for; `openid` is always sent.
    #[serde(default = "OidcSettings::default_scopes")]
    pub scopes: Vec<String>,
    /// The claim that lists the user's groups (an array of strings), in the
    /// ID token or else from UserInfo.
    #[serde(default = "OidcSettings::default_groups_claim")]
    pub groups_claim: String,
    /// Pairs of (provider group, role name): a member of the group gets the
    /// role. Groups without a pair give nothing. Role names must be ours.
    #[serde(default)]
    pub role_mapping: Vec<(String, String)>,
    /// Accept any TLS certificate from the provider. For tests only: it
    /// lets anyone on the path forge the provider.
    #[serde(default)]
    pub danger_accept_invalid_certs: bool,
}

impl OidcSettings {
    /// Settings with the default scopes, groups claim and no role mapping.
    pub fn new(issuer: impl Into<String>, client_id: impl Into<String>, redirect_url: Url) -> Self {
        Self {
            issuer: issuer.into(),
            client_id: client_id.into(),
            client_secret: None,
            redirect_url,
            scopes: Self::default_scopes(),
            groups_claim: Self::default_groups_claim(),
            role_mapping: Vec::new(),
            danger_accept_invalid_certs: false,
        }
    }

    /// `openid`, `profile` and `email`.
    pub fn default_scopes() -> Vec<String> {
        ["openid", "profile", "email"].map(str::to_owned).to_vec()
    }

    /// The default scopes plus `groups`, the scope most providers want
    /// before they release a groups claim.
    pub fn default_scopes_with_groups() -> Vec<String> {
        let mut scopes = Self::default_scopes();
        scopes.push("groups".to_owned());
        scopes
    }

    fn default_groups_claim() -> String {
        "groups".to_owned()
    }

    /// The roles that these provider groups map to: unique, sorted by name;
    /// unmapped groups are ignored. Matching is exact (case-sensitive).
    pub fn roles_for(&self, groups: &[String]) -> Vec<String> {
        let mut roles: Vec<String> = self
            .role_mapping
            .iter()
            .filter(|(group, _)| groups.contains(group))
            .map(|(_, role)| role.clone())
            .collect();
        roles.sort_unstable();
        roles.dedup();
        roles
    }

    fn validate(&self) -> Result<(), OidcError> {
        let issuer = Url::parse(&self.issuer).map_err(|e| OidcError::Settings(format!("issuer is not a url: {e}")))?;
        require_secure("issuer", &issuer)?;
        require_secure("redirect_url", &self.redirect_url)?;
        if self.client_id.is_empty() {
            return Err(OidcError::Settings("client_id is empty".to_owned()));
        }
        if self.groups_claim.is_empty() {
            return Err(OidcError::Settings("groups_claim is empty".to_owned()));
        }
        if let Some((_, role)) = self.role_mapping.iter().find(|(_, role)| Role::parse(role).is_none()) {
            return Err(OidcError::Settings(format!("role_mapping names an unknown role `{role}`")));
        }
        Ok(())
    }
}

/// HTTPS, or plain HTTP to a loopback address (a provider or callback on
/// the same machine, as in tests).
fn require_secure(what: &str, url: &Url) -> Result<(), OidcError> {
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(OidcError::Settings(format!("{what} must use https (plain http only on a loopback address)"))),
    }
}

/// Why a login with the provider failed. Messages name the step and the
/// provider's error code, never a token, code, verifier or secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// Our own settings are unusable.
    #[error("oidc settings are invalid: {0}")]
    Settings(String),
    /// The provider could not be reached (network, timeout, TLS).
    #[error("oidc provider unreachable: {0}")]
    ProviderUnreachable(String),
    /// The provider answered, but not as a usable OpenID provider
    /// (bad discovery document, issuer mismatch, missing endpoint).
    #[error("oidc provider misconfigured: {0}")]
    ProviderMisconfigured(String),
    /// The state returned with the code is not the pending login's: a
    /// forged or crossed callback.
    #[error("oidc state does not match the pending login")]
    StateMismatch,
    /// The pending login is older than [`MAX_LOGIN_AGE_MILLIS`].
    #[error("oidc login took too long, start again")]
    LoginExpired,
    /// The provider refused the code (used, expired, PKCE mismatch) or the
    /// exchange failed.
    #[error("oidc code exchange failed: {0}")]
    TokenExchange(String),
    /// The ID token is missing or fails verification (signature, issuer,
    /// audience, nonce, expiry, access token hash) or its claims are malformed.
    #[error("oidc id token invalid: {0}")]
    IdTokenInvalid(String),
    /// The UserInfo request, needed for the groups, failed.
    #[error("oidc userinfo failed: {0}")]
    UserInfo(String),
}

/// Who the provider says logged in. The account key is `(issuer, subject)`;
/// the email is informative and never a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcIdentity {
    pub issuer: String,
    pub subject: String,
    /// `preferred_username`, if released.
    pub username: Option<String>,
    pub email: Option<String>,
    /// Whether the provider says it verified `email` (false when it does not say).
    pub email_verified: bool,
    /// `name`, if released.
    pub display_name: Option<String>,
    /// The groups claim, from the ID token or else from UserInfo; empty if
    /// the provider released none.
    pub groups: Vec<String>,
}

/// What [`OidcClient::begin`] gives the caller to keep, server-side, until
/// the browser comes back: the state, the nonce and the PKCE verifier.
/// Deliberately neither `Clone` nor printable: one use, then it is gone.
pub struct PendingLogin {
    state: CsrfToken,
    nonce: Nonce,
    verifier: PkceCodeVerifier,
    started: Timestamp,
}

impl PendingLogin {
    /// The `state` sent to the provider: the key under which to keep this
    /// pending login, and which the callback must return.
    pub fn state(&self) -> &str {
        self.state.secret()
    }

    /// When the login began, for pruning abandoned ones.
    pub fn started_at(&self) -> Timestamp {
        self.started
    }
}

impl fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingLogin").field("started", &self.started).finish_non_exhaustive()
    }
}

/// The claims outside the standard set, kept as JSON so that the groups
/// claim can have any configured name. Absence of any of them is fine.
#[derive(Clone, Default, Serialize, Deserialize)]
struct OtherClaims {
    #[serde(flatten)]
    claims: BTreeMap<String, serde_json::Value>,
}

impl AdditionalClaims for OtherClaims {}

/// Names only: the values may identify a person.
impl fmt::Debug for OtherClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.claims.keys()).finish()
    }
}

impl OtherClaims {
    /// The groups under `name`: `None` when absent (or null), an error when
    /// it is neither an array of strings nor a single string.
    fn groups(&self, name: &str) -> Result<Option<Vec<String>>, String> {
        match self.claims.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            // Some providers send a lone group as a string.
            Some(serde_json::Value::String(group)) => Ok(Some(vec![group.clone()])),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| format!("the `{name}` claim holds a value that is not a string")),
            Some(_) => Err(format!("the `{name}` claim is not an array of strings")),
        }
    }
}

type IdFields = IdTokenFields<
    OtherClaims,
    openidconnect::EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type ProviderTokenResponse = StandardTokenResponse<IdFields, CoreTokenType>;
type ProviderClient = Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    ProviderTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointMaybeSet,
>;

/// A relying party for one provider, made by [`OidcClient::discover`].
/// Share it behind an `Arc`; it holds no per-login state. The provider's
/// signing keys are those fetched at discovery: discover again (a new
/// client) when the provider rotates them.
pub struct OidcClient {
    settings: OidcSettings,
    client: ProviderClient,
    http: HttpClient,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcClient").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl OidcClient {
    /// Checks the settings, then fetches the provider's discovery document
    /// and signing keys (the document's issuer must equal `settings.issuer`).
    pub async fn discover(settings: OidcSettings) -> Result<Self, OidcError> {
        settings.validate()?;
        let http = HttpClient::new(settings.danger_accept_invalid_certs)?;
        let issuer = IssuerUrl::new(settings.issuer.clone())
            .map_err(|e| OidcError::Settings(format!("issuer is not a url: {e}")))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &http).await.map_err(discovery_error)?;

        let token_url = metadata.token_endpoint().cloned().ok_or_else(|| {
            OidcError::ProviderMisconfigured("the discovery document has no token endpoint".to_owned())
        })?;
        let endpoints = [
            ("authorization endpoint", metadata.authorization_endpoint().url()),
            ("token endpoint", token_url.url()),
            ("jwks uri", metadata.jwks_uri().url()),
        ];
        for (what, url) in endpoints {
            require_secure(what, url)
                .map_err(|_| OidcError::ProviderMisconfigured(format!("the {what} is not https")))?;
        }
        if let Some(userinfo) = metadata.userinfo_endpoint() {
            require_secure("userinfo", userinfo.url())
                .map_err(|_| OidcError::ProviderMisconfigured("the userinfo endpoint is not https".to_owned()))?;
        }

        let secret = settings.client_secret.as_ref().map(|s| ClientSecret::new(s.expose().clone()));
        let client: ProviderClient =
            Client::from_provider_metadata(metadata, ClientId::new(settings.client_id.clone()), secret)
                .set_token_uri(TokenUrl::from_url(token_url.url().clone()))
                .set_redirect_uri(RedirectUrl::from_url(settings.redirect_url.clone()));
        Ok(Self { settings, client, http, clock: Arc::new(SystemClock) })
    }

    /// Reads time from `clock` instead of the wall clock: login age and
    /// ID token expiry.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// See [`OidcSettings::roles_for`].
    pub fn roles_for(&self, groups: &[String]) -> Vec<String> {
        self.settings.roles_for(groups)
    }

    /// Starts a login: the URL to send the browser to, and what to keep
    /// until it comes back. State, nonce and verifier come from the
    /// thread's CSPRNG.
    pub fn begin(&self) -> (Url, PendingLogin) {
        self.begin_with_rng(&mut rand::rng())
    }

    /// [`Self::begin`] with the randomness passed in (tests use a seeded
    /// generator to replay a login exactly).
    pub fn begin_with_rng<R: rand::CryptoRng + ?Sized>(&self, rng: &mut R) -> (Url, PendingLogin) {
        let state = CsrfToken::new(random_token(rng));
        let nonce = Nonce::new(random_token(rng));
        // 32 random bytes are 43 base64url characters: the shortest verifier
        // RFC 7636 allows, with 256 bits of entropy.
        let verifier = PkceCodeVerifier::new(random_token(rng));
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&verifier);

        let (sent_state, sent_nonce) = (state.clone(), nonce.clone());
        let scopes = self.settings.scopes.iter().filter(|s| s.as_str() != "openid").map(|s| Scope::new(s.clone()));
        let (url, _, _) = self
            .client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, move || sent_state, move || sent_nonce)
            .add_scopes(scopes)
            .set_pkce_challenge(challenge)
            .url();
        (url, PendingLogin { state, nonce, verifier, started: self.clock.now() })
    }

    /// Finishes a login from the callback's `code` and `state`: checks the
    /// state, exchanges the code with the PKCE verifier, verifies the ID
    /// token and reads the identity (asking UserInfo for the groups if the
    /// ID token has none).
    pub async fn complete(
        &self,
        pending: PendingLogin,
        code: &str,
        returned_state: &str,
    ) -> Result<OidcIdentity, OidcError> {
        if !bool::from(pending.state.secret().as_bytes().ct_eq(returned_state.as_bytes())) {
            return Err(OidcError::StateMismatch);
        }
        let age = self.clock.now().as_millis().saturating_sub(pending.started.as_millis());
        if age > MAX_LOGIN_AGE_MILLIS {
            return Err(OidcError::LoginExpired);
        }

        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(pending.verifier)
            .request_async(&self.http)
            .await
            .map_err(token_error)?;

        let id_token = response
            .id_token()
            .ok_or_else(|| OidcError::IdTokenInvalid("the token response has no id token".to_owned()))?;
        let clock = Arc::clone(&self.clock);
        let verifier = self.client.id_token_verifier().set_time_fn(move || {
            chrono::DateTime::from_timestamp_millis(clock.now().as_millis()).unwrap_or(chrono::DateTime::UNIX_EPOCH)
        });
        let claims =
            id_token.claims(&verifier, &pending.nonce).map_err(|e| OidcError::IdTokenInvalid(e.to_string()))?;

        // The access token is bound to the ID token when the provider says so.
        if let Some(expected) = claims.access_token_hash() {
            let invalid = |what: &str| OidcError::IdTokenInvalid(format!("cannot check the access token hash: {what}"));
            let alg = id_token.signing_alg().map_err(|_| invalid("unknown algorithm"))?;
            let key = id_token.signing_key(&verifier).map_err(|_| invalid("unknown key"))?;
            let actual = AccessTokenHash::from_token(response.access_token(), alg, key)
                .map_err(|_| invalid("unsupported algorithm"))?;
            if actual != *expected {
                return Err(OidcError::IdTokenInvalid("the access token hash does not match".to_owned()));
            }
        }

        let mut identity = OidcIdentity {
            issuer: claims.issuer().to_string(),
            subject: claims.subject().to_string(),
            username: claims.preferred_username().map(|u| u.to_string()),
            email: claims.email().map(|e| e.to_string()),
            email_verified: claims.email_verified().unwrap_or(false),
            display_name: claims.name().and_then(|n| n.get(None)).map(|n| n.to_string()),
            groups: Vec::new(),
        };
        let groups =
            claims.additional_claims().groups(&self.settings.groups_claim).map_err(OidcError::IdTokenInvalid)?;
        match groups {
            Some(groups) => identity.groups = groups,
            None => self.add_userinfo(&mut identity, response.access_token().clone(), claims.subject().clone()).await?,
        }
        identity.groups.sort_unstable();
        identity.groups.dedup();
        Ok(identity)
    }

    /// Fills the groups, and any profile claim the ID token lacked, from
    /// UserInfo (whose subject must be the ID token's). No UserInfo
    /// endpoint: no groups.
    async fn add_userinfo(
        &self,
        identity: &mut OidcIdentity,
        access_token: AccessToken,
        subject: SubjectIdentifier,
    ) -> Result<(), OidcError> {
        let Ok(request) = self.client.user_info(access_token, Some(subject)) else {
            return Ok(());
        };
        let info: openidconnect::UserInfoClaims<OtherClaims, CoreGenderClaim> =
            request.request_async(&self.http).await.map_err(userinfo_error)?;
        if let Some(groups) =
            info.additional_claims().groups(&self.settings.groups_claim).map_err(OidcError::UserInfo)?
        {
            identity.groups = groups;
        }
        if identity.username.is_none() {
            identity.username = info.preferred_username().map(|u| u.to_string());
        }
        if identity.email.is_none() {
            identity.email = info.email().map(|e| e.to_string());
            identity.email_verified = info.email_verified().unwrap_or(false);
        }
        if identity.display_name.is_none() {
            identity.display_name = info.name().and_then(|n| n.get(None)).map(|n| n.to_string());
        }
        Ok(())
    }
}

fn random_token<R: rand::CryptoRng + ?Sized>(rng: &mut R) -> String {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    data_encoding::BASE64URL_NOPAD.encode(&bytes)
}

/// The error and its causes on one line ("error sending request: connection refused").
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn discovery_error(error: DiscoveryError<HttpError>) -> OidcError {
    match error {
        DiscoveryError::Request(e) => OidcError::ProviderUnreachable(chain(&e)),
        DiscoveryError::Response(status, _, _) => {
            OidcError::ProviderMisconfigured(format!("discovery answered http {}", status.as_u16()))
        }
        DiscoveryError::Parse(_) => {
            OidcError::ProviderMisconfigured("unparsable discovery document or keys".to_owned())
        }
        DiscoveryError::Validation(reason) => OidcError::ProviderMisconfigured(reason.to_lowercase()),
        DiscoveryError::UrlParse(_) => OidcError::ProviderMisconfigured("unusable url in discovery".to_owned()),
        DiscoveryError::Other(reason) => OidcError::ProviderMisconfigured(reason.to_lowercase()),
        _ => OidcError::ProviderMisconfigured("discovery failed".to_owned()),
    }
}

fn token_error(error: RequestTokenError<HttpError, StandardErrorResponse<CoreErrorResponseType>>) -> OidcError {
    match error {
        // Only the provider's error code: its description is free text.
        RequestTokenError::ServerResponse(response) => {
            OidcError::TokenExchange(format!("the provider refused the code ({})", response.error()))
        }
        RequestTokenError::Request(e) => OidcError::TokenExchange(chain(&e)),
        // The body may hold tokens: never echo it.
        RequestTokenError::Parse(_, _) => OidcError::TokenExchange("unparsable token response".to_owned()),
        RequestTokenError::Other(reason) => OidcError::TokenExchange(reason.to_lowercase()),
    }
}

fn userinfo_error(error: UserInfoError<HttpError>) -> OidcError {
    match error {
        UserInfoError::ClaimsVerification(e) => OidcError::UserInfo(e.to_string()),
        UserInfoError::Parse(_) => OidcError::UserInfo("unparsable userinfo response".to_owned()),
        UserInfoError::Request(e) => OidcError::UserInfo(chain(&e)),
        UserInfoError::Response(status, _, _) => {
            OidcError::UserInfo(format!("userinfo answered http {}", status.as_u16()))
        }
        UserInfoError::Other(reason) => OidcError::UserInfo(reason.to_lowercase()),
        _ => OidcError::UserInfo("userinfo failed".to_owned()),
    }
}

/// Transport failures talking to the provider.
#[derive(Debug, thiserror::Error)]
enum HttpError {
    #[error("request failed")]
    Transport(#[source] reqwest::Error),
    #[error("response larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("malformed response")]
    Malformed(#[source] openidconnect::http::Error),
}

/// reqwest with what `openidconnect` asks of its HTTP client (no redirects:
/// a redirect could carry the code or a token elsewhere) and what we ask of
/// every client (timeouts, a cap on what is read).
#[derive(Clone)]
struct HttpClient(reqwest::Client);

impl HttpClient {
    fn new(danger_accept_invalid_certs: bool) -> Result<Self, OidcError> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .danger_accept_invalid_certs(danger_accept_invalid_certs)
            .user_agent(concat!("caduceus/", env!("CARGO_PKG_VERSION")))
            .build()
            .map(Self)
            .map_err(|e| OidcError::Settings(format!("cannot build the http client: {}", chain(&e))))
    }

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let request = reqwest::Request::try_from(request).map_err(HttpError::Transport)?;
        let mut response = self.0.execute(request).await.map_err(|e| HttpError::Transport(e.without_url()))?;
        if response.content_length().is_some_and(|length| length > MAX_RESPONSE_BYTES as u64) {
            return Err(HttpError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| HttpError::Transport(e.without_url()))? {
            if body.len().saturating_add(chunk.len()) > MAX_RESPONSE_BYTES {
                return Err(HttpError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        let mut builder =
            openidconnect::http::Response::builder().status(response.status()).version(response.version());
        for (name, value) in response.headers() {
            builder = builder.header(name, value);
        }
        builder.body(body).map_err(HttpError::Malformed)
    }
}

impl<'c> AsyncHttpClient<'c> for HttpClient {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> OidcSettings {
        let mut settings = OidcSettings::new(
            "https://login.example.org/realms/hospital",
            "caduceus",
            Url::parse("https://caduceus.example.org/auth/oidc/callback").unwrap(),
        );
        settings.role_mapping = vec![
            ("icu-nurses".into(), "nurse".into()),
            ("soc".into(), "security-analyst".into()),
            ("soc-leads".into(), "security-analyst".into()),
            ("it-admins".into(), "admin".into()),
        ];
        settings
    }

    #[test]
    fn roles_are_unique_sorted_and_ignore_unmapped_groups() {
        let groups = ["soc", "soc-leads", "canteen", "icu-nurses"].map(String::from);
        assert_eq!(settings().roles_for(&groups), ["nurse", "security-analyst"]);
        assert!(settings().roles_for(&["canteen".to_owned(), "SOC".to_owned()]).is_empty());
        assert!(settings().roles_for(&[]).is_empty());
    }

    #[test]
    fn settings_refuse_unknown_roles_and_plain_http() {
        assert_eq!(settings().validate(), Ok(()));
        let mut unknown = settings();
        unknown.role_mapping.push(("x".into(), "superuser".into()));
        assert!(matches!(unknown.validate(), Err(OidcError::Settings(m)) if m.contains("superuser")));
        let mut http = settings();
        http.issuer = "http://login.example.org".into();
        assert!(matches!(http.validate(), Err(OidcError::Settings(m)) if m.contains("issuer")));
        http.issuer = "http://127.0.0.1:8080".into();
        assert_eq!(http.validate(), Ok(()));
        http.issuer = "http://[::1]:8080".into();
        assert_eq!(http.validate(), Ok(()));
        http.issuer = "not a url".into();
        assert!(matches!(http.validate(), Err(OidcError::Settings(m)) if m.contains("issuer")));
    }

    #[test]
    fn settings_from_toml_like_json_with_defaults_and_no_unknown_keys() {
        let settings: OidcSettings = serde_json::from_value(serde_json::json!({
            "issuer": "https://login.example.org",
            "client_id": "caduceus",
            "client_secret": "s3cret-value",
            "redirect_url": "https://caduceus.example.org/cb",
            "role_mapping": [["soc", "security-analyst"]],
        }))
        .unwrap();
        assert_eq!(settings.scopes, ["openid", "profile", "email"]);
        assert_eq!(settings.groups_claim, "groups");
        assert!(!settings.danger_accept_invalid_certs);
        assert_eq!(settings.roles_for(&["soc".to_owned()]), ["security-analyst"]);
        let debug = format!("{settings:?}");
        assert!(!debug.contains("s3cret-value"), "{debug}");

        let typo = serde_json::from_value::<OidcSettings>(serde_json::json!({
            "issuer": "https://login.example.org",
            "client_id": "caduceus",
            "redirect_url": "https://caduceus.example.org/cb",
            "danger_accept_invalid_cert": true,
        }));
        assert!(typo.is_err());
    }

    #[test]
    fn groups_claim_tolerates_absence_and_refuses_other_shapes() {
        let claims = |value: serde_json::Value| OtherClaims { claims: BTreeMap::from([("groups".to_owned(), value)]) };
        assert_eq!(OtherClaims::default().groups("groups"), Ok(None));
        assert_eq!(claims(serde_json::Value::Null).groups("groups"), Ok(None));
        assert_eq!(claims(serde_json::json!(["a", "b"])).groups("groups"), Ok(Some(vec!["a".into(), "b".into()])));
        assert_eq!(claims(serde_json::json!("a")).groups("groups"), Ok(Some(vec!["a".into()])));
        assert!(claims(serde_json::json!(["a", 1])).groups("groups").is_err());
        assert!(claims(serde_json::json!({"a": true})).groups("groups").is_err());
        assert_eq!(claims(serde_json::json!(["a"])).groups("roles"), Ok(None));
        assert_eq!(format!("{:?}", claims(serde_json::json!(["secret-group"]))), r#"{"groups"}"#);
    }

    #[test]
    fn client_and_pending_login_can_be_shared_across_tasks() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<OidcClient>();
        shareable::<PendingLogin>();
        shareable::<OidcError>();
    }

    #[test]
    fn random_tokens_are_43_base64url_characters() {
        let token = random_token(&mut rand::rng());
        assert_eq!(token.len(), 43);
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(token, random_token(&mut rand::rng()));
    }
}
