//! Demo data: a small, living hospital for a newcomer to look at. Each
//! capability adds its own realistic data here as it lands (staff, patients,
//! devices, events). Nothing here is real patient data.

use caduceus_core::{Actor, Payload, Redacted, Severity, Target};
use caduceus_identity::roles::Role;
use caduceus_identity::service::{IdentityError, IdentityService, NewUser};

use crate::platform::{Platform, ServerError};

/// The fictional site the demo runs.
pub const DEMO_SITE: &str = "St. Brigid's Community Hospital (demo)";

/// Seed the demo's starting state onto the spine.
pub async fn seed(platform: &Platform) -> Result<(), ServerError> {
    let config = &platform.config;
    let settings = [
        ("site.name", DEMO_SITE.to_owned()),
        ("storage.backend", platform.store.backend().as_str().to_owned()),
        ("spine.capacity", config.spine.capacity.to_string()),
        ("server.tls", if config.server.danger_plaintext_http { "plaintext (danger)" } else { "tls" }.to_owned()),
    ];
    for (key, detail) in settings {
        platform
            .record(
                Severity::Informational,
                Actor::system(),
                Some(Target { kind: "config".into(), uid: key.into() }),
                "demo configuration loaded",
                Payload::ConfigChange { key: key.into(), detail },
            )
            .await?;
    }
    Ok(())
}

/// One demo account and the password generated for it at this start.
#[derive(Debug)]
pub struct DemoUser {
    pub role: Role,
    pub username: String,
    pub password: Redacted<String>,
}

/// An account for every role, each with a password generated at this start
/// (earlier demo passwords stop working, as the admin token does).
/// Privileged roles must enrol a second factor at their first sign-in.
pub async fn seed_users(identity: &IdentityService) -> Result<Vec<DemoUser>, IdentityError> {
    let mut users = Vec::new();
    for role in Role::ALL {
        let username = format!("demo.{}", role.name());
        let password = match identity.store().user_by_username(&username).await? {
            Some(existing) => identity.set_password(Actor::system(), &existing.user_id, None).await?,
            None => {
                let new = NewUser {
                    username: username.clone(),
                    display_name: format!("Demo {}", role.name()),
                    roles: vec![role],
                    password: None,
                    // The demo patient's own record, by pseudonymous reference.
                    patient_ref: (role == Role::Patient).then(|| "demo-patient-0001".to_owned()),
                };
                let (_, generated) = identity.create_user(Actor::system(), new).await?;
                generated.ok_or_else(|| IdentityError::Internal("no password was generated".into()))?
            }
        };
        users.push(DemoUser { role, username, password });
    }
    Ok(users)
}
