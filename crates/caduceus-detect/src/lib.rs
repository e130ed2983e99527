//! Detection: every event on the spine is normalised to a field map, run
//! through Sigma rules (indexed so that an event meets only the rules that
//! could match it), Sigma correlations, and the record-access analytics;
//! what fires becomes a [`Finding`], published back on the spine as an OCSF
//! Detection Finding and kept as an alert.

pub mod alerts;
pub mod builtin;
pub mod correlation;
pub mod ehr;
pub mod error;
pub mod evaluate;
pub mod fields;
pub mod finding;
pub mod offline;
pub mod outputs;
pub mod pipeline;
pub mod sigma;
pub mod simulate;

pub use error::RuleError;
pub use fields::FieldLookup;
pub use finding::{Finding, FindingKind};
