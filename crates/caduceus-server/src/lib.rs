//! The Caduceus server: wires storage, the event spine and every capability
//! behind one HTTP API (axum over rustls), and implements the commands the
//! binary exposes.
//!
//! Domain crates never see HTTP; this crate translates between them and the
//! wire. It owns no business rules of its own beyond authentication of API
//! callers and the shape of requests and errors.

pub mod access;
pub mod app;
pub mod auth;
pub mod commands;
pub mod config;
pub mod demo;
pub mod detect;
pub mod devices;
pub mod error;
pub mod identity;
pub mod ledger;
pub mod metrics;
pub mod network;
pub mod platform;
pub mod routes;
pub mod serve;
pub mod telemetry;
pub mod tls;
pub mod vault;

pub use app::AppState;
pub use platform::Platform;
