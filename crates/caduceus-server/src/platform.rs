//! The running platform: configuration, clock, store and spine, started in
//! order and stopped in reverse. HTTP is layered on top by `serve`; commands
//! that need no server (issuing a token) use a platform alone.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use caduceus_core::config::Config;
use caduceus_core::event::{EventError, EventId, LifecyclePhase};
use caduceus_core::{Actor, Clock, Payload, SecurityEvent, Severity, Status, Target};
use caduceus_spine::{InProcessSpine, Receipt, Spine, SpineError};
use caduceus_store::{Store, StoreError};

use crate::tls::TlsError;
use caduceus_core::config::ConfigLoadError;

/// Anything that stops the platform from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigLoadError),
    #[error(transparent)]
    InvalidConfig(#[from] caduceus_core::config::ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Spine(#[from] SpineError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Event(#[from] EventError),
    #[error("{0}")]
    Io(String),
}

pub struct Platform {
    pub config: Config,
    pub clock: Arc<dyn Clock>,
    pub store: Arc<dyn Store>,
    pub spine: Arc<dyn Spine>,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform").field("backend", &self.store.backend()).finish_non_exhaustive()
    }
}

impl Platform {
    /// Open storage (applying migrations) and start the spine. Recording the
    /// start is the server's job: a command such as `admin issue-token`
    /// opens a platform without starting the service.
    pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<Arc<Self>, ServerError> {
        config.validate()?;
        create_private_dir(&config.data_dir)?;
        let store = caduceus_store::open(&config).await?;
        tracing::info!(backend = store.backend().as_str(), "storage ready");
        let spine = InProcessSpine::open(
            store.clone(),
            config.spine.capacity,
            Duration::from_millis(config.spine.publish_timeout_ms),
        )
        .await?;
        Ok(Arc::new(Self { config, clock, store, spine: Arc::new(spine) }))
    }

    /// Build an event stamped with this platform's clock.
    pub fn event(
        &self,
        severity: Severity,
        actor: Actor,
        target: Option<Target>,
        message: &str,
        payload: Payload,
    ) -> Result<SecurityEvent, EventError> {
        let now = self.clock.now();
        SecurityEvent::new(EventId::new(now), now, severity, Status::Success, actor, target, message, payload)
    }

    /// Build and publish an event; returns once it is durable.
    pub async fn record(
        &self,
        severity: Severity,
        actor: Actor,
        target: Option<Target>,
        message: &str,
        payload: Payload,
    ) -> Result<Receipt, ServerError> {
        let event = self.event(severity, actor, target, message, payload)?;
        Ok(self.spine.publish(event).await?)
    }

    /// Record a lifecycle event of the serving process.
    pub async fn record_lifecycle(&self, phase: LifecyclePhase) -> Result<Receipt, ServerError> {
        let message = match phase {
            LifecyclePhase::Started => "caduceus started",
            LifecyclePhase::Stopping => "caduceus stopping",
        };
        let payload = Payload::ServiceLifecycle { phase, version: caduceus_core::VERSION.into() };
        self.record(Severity::Informational, Actor::system(), None, message, payload).await
    }

    /// Close the spine (consumers drain) and flush storage.
    pub async fn shutdown(&self) {
        self.spine.close().await;
        self.store.close().await;
        tracing::info!("storage flushed and closed");
    }
}

/// Create the data directory readable only by its owner.
fn create_private_dir(dir: &Path) -> Result<(), ServerError> {
    std::fs::create_dir_all(dir).map_err(|e| ServerError::Io(format!("cannot create {}: {e}", dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| ServerError::Io(format!("cannot restrict {}: {e}", dir.display())))?;
    }
    Ok(())
}
