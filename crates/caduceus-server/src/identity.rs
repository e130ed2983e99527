//! Wiring of the identity service: its settings from the configuration,
//! passkeys for the public URL, the OpenID Connect provider, and audit
//! events published on the spine (and so sealed in the ledger).

use std::sync::Arc;

use async_trait::async_trait;
use caduceus_core::EventId;
use caduceus_core::SecurityEvent;
use caduceus_identity::oidc::{OidcClient, OidcSettings};
use caduceus_identity::passkeys::Passkeys;
use caduceus_identity::roles::Role;
use caduceus_identity::service::{AuditEvent, AuditSink, IdentityService, IdentitySettings};

use crate::platform::{Platform, ServerError};

/// Publishes identity's audit events through the platform.
#[derive(Debug)]
pub struct PlatformAudit(pub Arc<Platform>);

#[async_trait]
impl AuditSink for PlatformAudit {
    async fn audit(&self, e: AuditEvent) -> Result<(), String> {
        let now = self.0.clock.now();
        let event =
            SecurityEvent::new(EventId::new(now), now, e.severity, e.status, e.actor, e.target, e.message, e.payload)
                .map_err(|e| e.to_string())?;
        self.0.publish(event).await.map(|_| ()).map_err(|e| e.to_string())
    }
}

/// The URL browsers reach this server at.
pub fn public_url(platform: &Platform) -> Result<url::Url, ServerError> {
    let config = &platform.config;
    let text = match &config.identity.public_url {
        Some(url) => url.clone(),
        None => {
            let port = config.listen_addr()?.port();
            let scheme = if config.server.danger_plaintext_http { "http" } else { "https" };
            format!("{scheme}://localhost:{port}")
        }
    };
    url::Url::parse(&text).map_err(|e| config_error(format!("identity.public_url: {e}")))
}

fn config_error(message: String) -> ServerError {
    ServerError::Config(caduceus_core::config::ConfigLoadError(message))
}

fn parse_roles(key: &str, names: &[String]) -> Result<Vec<Role>, ServerError> {
    names.iter().map(|n| Role::parse(n).ok_or_else(|| config_error(format!("{key}: `{n}` is not a role")))).collect()
}

/// Build the identity service for a platform. With `online`, the OpenID
/// Connect provider is contacted (discovery); the CLI builds it offline.
pub async fn service(platform: &Arc<Platform>, online: bool) -> Result<Arc<IdentityService>, ServerError> {
    let config = &platform.config.identity;
    let secs = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
    let settings = IdentitySettings {
        idle_timeout_ms: secs(config.idle_timeout_secs),
        absolute_timeout_ms: secs(config.absolute_timeout_secs),
        step_up_ms: secs(config.step_up_secs),
        phishing_resistant: parse_roles("identity.phishing_resistant_roles", &config.phishing_resistant_roles)?,
        ..IdentitySettings::default()
    };
    let audit = Arc::new(PlatformAudit(platform.clone()));
    let mut service = IdentityService::new(platform.store.clone(), platform.clock.clone(), audit, settings);

    let public = public_url(platform)?;
    let rp_id = public.host_str().unwrap_or("localhost").to_owned();
    match Passkeys::new(&rp_id, &public, "Caduceus") {
        Ok(passkeys) => service = service.with_passkeys(passkeys),
        Err(e) => return Err(config_error(format!("identity.public_url cannot host passkeys: {e}"))),
    }
    if let Some(path) = &config.breached_passwords {
        let list = caduceus_identity::breached::BreachedList::open(path)
            .map_err(|e| config_error(format!("identity.breached_passwords: {e}")))?;
        service = service.with_breached_list(list);
    }
    if let (Some(oidc), true) = (&config.oidc, online) {
        let mut redirect = public.clone();
        redirect.set_path("/api/v1/auth/oidc/callback");
        let mut settings = OidcSettings::new(oidc.issuer.clone(), oidc.client_id.clone(), redirect);
        settings.client_secret = oidc.client_secret.clone();
        settings.scopes = oidc.scopes.clone();
        settings.groups_claim = oidc.groups_claim.clone();
        for (group, role) in &oidc.role_mapping {
            parse_roles("identity.oidc.role_mapping", std::slice::from_ref(role))?;
            settings.role_mapping.push((group.clone(), role.clone()));
        }
        settings.danger_accept_invalid_certs = oidc.danger_accept_invalid_certs;
        let client = OidcClient::discover(settings)
            .await
            .map_err(|e| config_error(format!("identity.oidc: cannot use the provider: {e}")))?
            .with_clock(platform.clock.clone());
        service = service.with_oidc(client);
    }
    Ok(Arc::new(service))
}
