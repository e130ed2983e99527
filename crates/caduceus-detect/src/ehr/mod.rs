//! Record-access (EHR snooping) analytics: who opened which patient's
//! record, whether anything explains it, and how suspicious it is.
//!
//! - [`model`]: the directory (staff, patients, relationships over time)
//!   that explains accesses; plain surnames and addresses become blind
//!   [`token`]s the moment they are read.
//! - [`analytics`]: the explanation filter, the signals and the score.
//! - [`log`]: the access-log line format and its conversion to the vault's
//!   record-access event, so replays travel the real pipeline.
//! - [`files`]: the data-set file formats and their size-capped reader.
//!
//! This module never reads labels of a data set; the evaluator does, after
//! the replay (`crate::evaluate`).

pub mod analytics;
pub mod files;
pub mod log;
pub mod model;
pub mod token;

pub use analytics::{Analytics, Assessment, EhrSettings, NOTHING_EXPLAINS, Signal, SignalKind, Weights};
pub use files::{Limits, LoadError};
pub use log::{AccessLine, QueryKind, to_event};
pub use model::{Directory, DirectoryBuilder, Shift, Windows};
pub use token::{Token, TokenKey};
