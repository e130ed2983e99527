//! The crate's error kinds. Messages never carry a document's name: only a
//! watched root or the simulator's own directory, which the operator chose.

use std::io;

/// What went wrong, by kind.
#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    /// The configuration cannot work (no roots, a root that is not a
    /// directory, a malformed response).
    #[error("invalid sensor configuration: {0}")]
    Config(String),
    /// An operating-system call failed; `context` says which, without file names.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// The simulator refused to touch a directory (no marker, not empty, too
    /// many files). A guard, not a bug.
    #[error("simulator refused: {0}")]
    Refused(String),
}

impl SensorError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }
}
