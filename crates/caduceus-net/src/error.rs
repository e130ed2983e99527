//! The one error type of the network inputs. Messages name the line, the
//! field or the limit, never the content: a log line or a packet may carry
//! anything, including an HL7 message with a patient's name.

/// Why an input could not be read, or why one line of it was skipped.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The underlying reader failed; the input ends here.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    /// One line was not a record of the expected format; the reader skips
    /// it and goes on.
    #[error("line {line}: {message}")]
    BadLine { line: u64, message: String },
    /// One line was longer than the cap; it was skipped whole.
    #[error("line {line} is longer than the {max} byte limit")]
    LineTooLong { line: u64, max: usize },
    /// A capture file or a header that cannot be read on (bad magic, a
    /// block that lies about its length, an unknown CSV layout).
    #[error("{0}")]
    Format(String),
    /// Something passed a size cap (packets, blocks, interfaces, rows).
    #[error("{what} exceeds the limit of {max}")]
    TooLarge { what: &'static str, max: u64 },
    /// The MQTT input could not be set up (bad broker address, closed
    /// channel).
    #[error("mqtt: {0}")]
    Mqtt(String),
}

impl NetError {
    /// The 1-based line the error is about, for line-oriented inputs.
    pub fn line(&self) -> Option<u64> {
        match self {
            Self::BadLine { line, .. } | Self::LineTooLong { line, .. } => Some(*line),
            _ => None,
        }
    }

    /// Whether the input can go on after this error (one bad line) or is
    /// finished (I/O failure, broken container).
    pub fn is_recoverable(&self) -> bool {
        matches!(self, Self::BadLine { .. } | Self::LineTooLong { .. })
    }

    pub(crate) fn bad_line(line: u64, message: impl Into<String>) -> Self {
        Self::BadLine { line, message: message.into() }
    }
}
