//! Core types shared by every Caduceus crate: identifiers, time, the security
//! event model, the redacting wrapper and the configuration schema.
//!
//! This crate performs no I/O (no files, sockets or databases) and depends on
//! no async runtime, so every other crate can use it, and it stays cheap to test.

pub mod clock;
pub mod config;
pub mod event;
pub mod redact;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use event::{
    AccountChangeKind, Actor, ActorKind, AuthActivity, EventId, Payload, SecurityEvent, Severity, Status, Target,
};
pub use redact::Redacted;

/// The product version, as built.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
