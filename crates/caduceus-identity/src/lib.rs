//! Identity and access (issue 4), started: the pure pieces, no I/O yet.
//!
//! - `otp`: HOTP (RFC 4226) and TOTP (RFC 6238) with SHA-1/256/512, a ±1
//!   step window, single use of each code, and `otpauth://` enrolment URIs;
//! - `password`: argon2id hashing with tuned parameters and a NIST SP
//!   800-63B policy (length over composition, common and guessable
//!   passwords refused with a strength estimate in the message);
//! - `roles`: the roles and the one place that maps them to permissions;
//! - `throttle`: per-account and per-source back-off with attempts booked
//!   before the check (no parallel-guess race) and no permanent lock.
//!
//! Still to come: accounts and sessions in the store, passkeys, recovery
//! codes, OIDC, the HTTP API and CLI, and the audit events.

pub mod otp;
pub mod password;
pub mod roles;
pub mod throttle;
