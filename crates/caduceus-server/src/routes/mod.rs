//! HTTP handlers, one module per area. Each handler is annotated with
//! `#[utoipa::path]` so that it appears in `/api/openapi.json`.

pub mod auth;
pub mod events;
pub mod health;
pub mod ledger;
pub mod status;
pub mod users;
pub mod witness;
