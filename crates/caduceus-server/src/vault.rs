//! Wiring of the vault: its keys from the key directory, its settings from
//! the configuration, its audit events published on the spine (durable
//! before the access is carried out, sealed in the ledger by the sealer),
//! and the consumer that indexes those events by patient for `$access-log`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use caduceus_core::SecurityEvent;
use caduceus_core::event::Payload;
use caduceus_spine::Spine;
use caduceus_store::Store;
use caduceus_vault::keyring::{KekDir, Keyring};
use caduceus_vault::service::{AccessSink, Vault, VaultSettings};

use crate::platform::{Platform, ServerError};

/// The consumer name under which access events are indexed.
pub const ACCESS_INDEX_CONSUMER: &str = "vault-access-index";

/// Publishes the vault's access events on the spine. An access waits until
/// its event is durable (the spine's group commit), not for its seal: the
/// sealer seals it moments later, and an unsealed event is still in the
/// store and checked by `ledger verify`.
pub struct SpineSink(pub Arc<dyn Spine>);

impl std::fmt::Debug for SpineSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpineSink")
    }
}

#[async_trait]
impl AccessSink for SpineSink {
    async fn record(&self, event: SecurityEvent) -> Result<u64, String> {
        self.0.publish(event).await.map(|r| r.seq).map_err(|e| e.to_string())
    }
}

pub fn settings(platform: &Platform) -> VaultSettings {
    let config = &platform.config.vault;
    VaultSettings {
        break_glass_ms: i64::try_from(config.break_glass_minutes.saturating_mul(60_000)).unwrap_or(i64::MAX),
        break_glass_alert_threshold: config.break_glass_alert_threshold,
        server_name: crate::identity::public_url(platform).map(|u| u.to_string()).unwrap_or_else(|_| "caduceus".into()),
        ..VaultSettings::default()
    }
}

/// Open the vault over a platform (creating its first keys if new).
pub async fn open(platform: &Arc<Platform>) -> Result<Arc<Vault>, ServerError> {
    let dir = KekDir::new(platform.config.vault_key_dir());
    let keys = Keyring::open(platform.store.clone(), dir, platform.clock.now())
        .await
        .map_err(|e| ServerError::Vault(e.to_string()))?;
    let sink = Arc::new(SpineSink(platform.spine.clone()));
    Ok(Arc::new(Vault::new(platform.store.clone(), platform.clock.clone(), keys, sink, settings(platform))))
}

/// Index every `RecordAccess` event by the patients it names, so a
/// patient's accounting of disclosures is one indexed query. Runs until the
/// spine closes; resumes after its last acknowledged event on restart.
pub async fn start_access_index(platform: &Arc<Platform>) -> Result<tokio::task::JoinHandle<()>, ServerError> {
    let mut subscription = platform.spine.subscribe(ACCESS_INDEX_CONSUMER).await?;
    let store = platform.store.clone();
    Ok(tokio::spawn(async move {
        let mut unacked = None;
        loop {
            let next = match unacked {
                // Something to acknowledge: wait briefly for more, then ack.
                Some(_) => match tokio::time::timeout(Duration::from_millis(50), subscription.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        if let Some(seq) = unacked.take()
                            && let Err(e) = subscription.ack(seq).await
                        {
                            tracing::warn!(error = %e, "access index: acknowledging failed");
                        }
                        continue;
                    }
                },
                None => subscription.next().await,
            };
            match next {
                Ok(Some(stored)) => {
                    if let Err(e) = index_event(&*store, &stored).await {
                        tracing::error!(error = %e, seq = stored.seq, "access index: storing failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        if let Err(e) = index_event(&*store, &stored).await {
                            tracing::error!(error = %e, seq = stored.seq, "access index: event not indexed");
                        }
                    }
                    unacked = Some(stored.seq);
                    if stored.seq % 256 == 0 {
                        if let Err(e) = subscription.ack(stored.seq).await {
                            tracing::warn!(error = %e, "access index: acknowledging failed");
                        }
                        unacked = None;
                    }
                }
                Ok(None) => {
                    if let Some(seq) = unacked.take() {
                        let _ = subscription.ack(seq).await;
                    }
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "access index: reading the spine failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }))
}

async fn index_event(store: &dyn Store, stored: &caduceus_store::StoredEvent) -> Result<(), String> {
    if let Payload::RecordAccess { patients, .. } = &stored.event.payload() {
        store.record_access(stored.seq, patients).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}
