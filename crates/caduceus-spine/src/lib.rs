//! The event spine: every security event passes through here on its way from
//! producers (vault, identity, sensors, ...) to consumers (ledger, detection,
//! response, ...).
//!
//! Guarantees, for every implementation of [`Spine`]:
//! - an event is persisted before `publish` returns (acknowledgement means durable);
//! - each consumer sees every event exactly once, in `seq` order, while it runs;
//!   after a crash it resumes after its last acknowledged `seq` (so events it
//!   had not acknowledged are delivered again: at-least-once across crashes);
//! - the spine is bounded: when the slowest consumer is `capacity` events
//!   behind, producers wait, and after `publish_timeout` get
//!   [`SpineError::Full`] — never a silent drop. Every rejection is counted.
//!
//! [`InProcessSpine`] is the single-machine implementation. A NATS JetStream
//! implementation can replace it behind the same traits: producers hold an
//! `Arc<dyn Spine>` and consumers a `Box<dyn Subscription>`, nothing more.

mod in_process;

use async_trait::async_trait;
use caduceus_core::SecurityEvent;
use caduceus_core::event::EventDigest;
use caduceus_store::{StoreError, StoredEvent};

pub use in_process::InProcessSpine;

#[derive(Debug, thiserror::Error)]
pub enum SpineError {
    /// No room within the publish timeout: consumers are too far behind.
    #[error("spine is full: consumers are {depth} events behind (capacity {capacity})")]
    Full { depth: u64, capacity: usize },
    /// The spine is shutting down and takes no more events.
    #[error("spine is closed")]
    Closed,
    /// Persisting or reading events failed.
    #[error(transparent)]
    Storage(#[from] StoreError),
    /// A consumer name is already subscribed.
    #[error("consumer `{0}` is already subscribed")]
    AlreadySubscribed(String),
    /// A consumer acknowledged an event it has not been given.
    #[error("consumer `{consumer}` acknowledged seq {seq} beyond what it was delivered ({delivered})")]
    AckBeyondDelivered { consumer: String, seq: u64, delivered: u64 },
}

/// Proof that an event is durable on the spine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub seq: u64,
    pub digest: EventDigest,
}

/// Counters and gauges for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpineStats {
    pub capacity: usize,
    /// Highest `seq` published.
    pub head: u64,
    /// How far the slowest subscribed consumer is behind `head`.
    pub depth: u64,
    pub published: u64,
    /// Publishes refused because the spine was full within the timeout.
    pub rejected_full: u64,
    /// Publishes refused because the spine was closed.
    pub rejected_closed: u64,
    /// Publishes that failed to persist (the producer got the error).
    pub persist_failed: u64,
    /// Events handed to consumers, all consumers together.
    pub delivered: u64,
    /// Per subscribed consumer: (name, last acknowledged seq).
    pub consumers: Vec<(String, u64)>,
}

/// The producer side, and the registry of consumers.
#[async_trait]
pub trait Spine: Send + Sync {
    /// Persist and publish an event, waiting up to the publish timeout for room.
    async fn publish(&self, event: SecurityEvent) -> Result<Receipt, SpineError>;
    /// As `publish`, but fail at once with [`SpineError::Full`] when there is no room.
    async fn try_publish(&self, event: SecurityEvent) -> Result<Receipt, SpineError>;
    /// Subscribe a durable consumer by name; delivery resumes after its last
    /// acknowledged event.
    async fn subscribe(&self, consumer: &str) -> Result<Box<dyn Subscription>, SpineError>;
    fn stats(&self) -> SpineStats;
    /// Stop taking events. Subscribers still receive everything published
    /// before, then `None`.
    async fn close(&self);
}

/// The consumer side.
#[async_trait]
pub trait Subscription: Send {
    fn consumer(&self) -> &str;
    /// The next event in order; waits for one. `None` once the spine is
    /// closed and this consumer has seen everything.
    async fn next(&mut self) -> Result<Option<StoredEvent>, SpineError>;
    /// Acknowledge every event up to and including `seq` as processed. This
    /// frees room for producers and is persisted, so a restart resumes after it.
    async fn ack(&mut self, seq: u64) -> Result<(), SpineError>;
}
