//! Demo data: a small, living hospital for a newcomer to look at. Each
//! capability adds its own realistic data here as it lands (staff, patients,
//! devices, events). Nothing here is real patient data.

use caduceus_core::{Actor, Payload, Severity, Target};

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
