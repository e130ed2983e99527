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
/// patient's accounting of disclosures is one indexed query. Events that
/// arrive together are indexed in one transaction, then acknowledged. Runs
/// until the spine closes; resumes after its last acknowledged event on
/// restart (indexing is idempotent, so a repeat after a crash is harmless).
pub async fn start_access_index(platform: &Arc<Platform>) -> Result<tokio::task::JoinHandle<()>, ServerError> {
    /// Most events indexed in one transaction.
    const BATCH: usize = 512;
    let mut subscription = platform.spine.subscribe(ACCESS_INDEX_CONSUMER).await?;
    let store = platform.store.clone();
    Ok(tokio::spawn(async move {
        loop {
            // Wait for one event, then take whatever else is ready at once.
            let first = match subscription.next().await {
                Ok(Some(stored)) => stored,
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "access index: reading the spine failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut last = first.seq;
            let mut entries = Vec::new();
            push_entry(&mut entries, &first);
            let mut taken = 1;
            while taken < BATCH {
                match tokio::time::timeout(Duration::from_millis(2), subscription.next()).await {
                    Ok(Ok(Some(stored))) => {
                        last = stored.seq;
                        taken += 1;
                        push_entry(&mut entries, &stored);
                    }
                    _ => break,
                }
            }
            let mut stored = store.record_access(&entries).await;
            if let Err(e) = &stored {
                tracing::error!(error = %e, "access index: storing failed; retrying once");
                tokio::time::sleep(Duration::from_secs(1)).await;
                stored = store.record_access(&entries).await;
            }
            match stored {
                Ok(()) => {
                    if let Err(e) = subscription.ack(last).await {
                        tracing::warn!(error = %e, "access index: acknowledging failed");
                    }
                }
                // Not acknowledged: the events come again after a restart.
                Err(e) => tracing::error!(error = %e, seq = last, "access index: events not indexed"),
            }
        }
    }))
}

fn push_entry(entries: &mut Vec<(u64, Vec<String>)>, stored: &caduceus_store::StoredEvent) {
    if let Payload::RecordAccess { patients, .. } = stored.event.payload()
        && !patients.is_empty()
    {
        entries.push((stored.seq, patients.clone()));
    }
}
