//! Identity and access (issue 4), started: the pure pieces, no I/O yet.
//!
//! - `breached`: an offline Have I Been Pwned breached-password list (one
//!   sorted SHA-1 file searched by bisection, or a directory of range
//!   files) for hospitals that cannot reach the online API;
//! - `oidc`: OpenID Connect login as a relying party (discovery, code flow
//!   with PKCE S256, state and nonce, verified ID token, groups from the ID
//!   token or UserInfo mapped to roles);
//! - `otp`: HOTP (RFC 4226) and TOTP (RFC 6238) with SHA-1/256/512, a ±1
//!   step window, single use of each code, and `otpauth://` enrolment URIs;
//! - `passkeys`: WebAuthn passkeys (webauthn-rs) with user verification
//!   always required, discoverable credentials for passwordless login,
//!   cloned-authenticator counters refused, and a bounded, expiring,
//!   single-use store for ceremonies in flight;
//! - `password`: argon2id hashing with tuned parameters and a NIST SP
//!   800-63B policy (length over composition, common and guessable
//!   passwords refused with a strength estimate in the message);
//! - `qr`: QR codes of enrolment URIs as compact SVG;
//! - `roles`: the roles and the one place that maps them to permissions;
//! - `throttle`: per-account and per-source back-off with attempts booked
//!   before the check (no parallel-guess race) and no permanent lock.
//!
//! Still to come: accounts and sessions in the store, passkeys, recovery
//! codes, OIDC, the HTTP API and CLI, and the audit events.

pub mod breached;
pub mod oidc;
pub mod otp;
pub mod passkeys;
pub mod password;
pub mod qr;
pub mod roles;
pub mod service;
pub mod throttle;
