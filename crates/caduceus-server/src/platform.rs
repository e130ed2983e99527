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

use crate::ledger::{LedgerService, LedgerServiceError};
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
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerServiceError),
    #[error("event {seq} was not sealed in the ledger within {waited_ms} ms")]
    SealTimeout { seq: u64, waited_ms: u64 },
    #[error("{0}")]
    Io(String),
    #[error("vault: {0}")]
    Vault(String),
}

pub struct Platform {
    pub config: Config,
    pub clock: Arc<dyn Clock>,
    pub store: Arc<dyn Store>,
    pub spine: Arc<dyn Spine>,
    /// The ledger, in the serving process only: it holds the log's lock.
    pub ledger: Option<Arc<LedgerService>>,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform").field("backend", &self.store.backend()).finish_non_exhaustive()
    }
}

impl Platform {
    /// Open storage (applying migrations) and start the spine. Recording the
    /// start is the server's job: a command such as `admin issue-token`
    /// opens a platform without starting the service, and without the
    /// ledger, which the serving process holds (its events are sealed when
    /// the server's sealer reaches them).
    pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<Arc<Self>, ServerError> {
        Ok(Arc::new(Self::open(config, clock).await?))
    }

    /// As `start`, and open the ledger: every event is sealed, and
    /// `record` answers only once its event's seal is durable.
    pub async fn start_with_ledger(config: Config, clock: Arc<dyn Clock>) -> Result<Arc<Self>, ServerError> {
        let mut platform = Self::open(config, clock).await?;
        match LedgerService::start(&platform.config, platform.spine.clone()).await {
            Ok(ledger) => platform.ledger = Some(ledger),
            Err(e) => {
                platform.shutdown().await;
                return Err(e.into());
            }
        }
        Ok(Arc::new(platform))
    }

    async fn open(config: Config, clock: Arc<dyn Clock>) -> Result<Self, ServerError> {
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
        Ok(Self { config, clock, store, spine: Arc::new(spine), ledger: None })
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
        self.publish(event).await
    }

    /// Publish an event and, when this process holds the ledger, wait until
    /// it is sealed: acknowledged means durable on the spine and in the log.
    pub async fn publish(&self, event: SecurityEvent) -> Result<Receipt, ServerError> {
        let receipt = self.spine.publish(event).await?;
        if let Some(ledger) = &self.ledger {
            let waited_ms = self.config.spine.publish_timeout_ms.max(1000);
            tokio::time::timeout(Duration::from_millis(waited_ms), ledger.ledger.wait_for_seq(receipt.seq))
                .await
                .map_err(|_| ServerError::SealTimeout { seq: receipt.seq, waited_ms })?
                .map_err(|e| ServerError::Ledger(e.into()))?;
        }
        Ok(receipt)
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

    /// Close the spine (consumers drain, the sealer seals the rest), close
    /// the ledger with a last checkpoint, and flush storage.
    pub async fn shutdown(&self) {
        self.spine.close().await;
        if let Some(ledger) = &self.ledger {
            ledger.shutdown().await;
        }
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
