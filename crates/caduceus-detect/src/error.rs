//! Errors in rules: always naming the rule's source (file or API upload)
//! and, where known, the line.

use std::fmt;

/// A rule that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RuleError {
    /// The file the rule came from, or `api` for an uploaded rule.
    pub file: String,
    /// 1-based line of the problem, where known.
    pub line: Option<usize>,
    pub message: String,
}

impl RuleError {
    pub fn new(file: impl Into<String>, line: Option<usize>, message: impl Into<String>) -> Self {
        Self { file: file.into(), line, message: message.into() }
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}
