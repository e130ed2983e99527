//! A wrapper for secrets and patient data that cannot reach a log line by
//! accident: its `Debug` and `Display` print `**REDACTED**`, and it does not
//! implement `Serialize`, so the only way to the value is `expose()`, which is
//! easy to find in review.

use std::fmt;

use serde::{Deserialize, Deserializer};

const MASK: &str = "**REDACTED**";

#[derive(Clone, PartialEq, Eq, Default)]
pub struct Redacted<T>(T);

impl<T> Redacted<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The wrapped value. Every call site is a place where a secret or patient
    /// datum leaves its wrapper: keep them few and never pass the result to a log.
    pub fn expose(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Redacted<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl<T> fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Redacted<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    #[allow(dead_code)]
    struct Login {
        user: String,
        password: Redacted<String>,
    }

    #[test]
    fn never_prints_the_value() {
        let login = Login { user: "nurse.jones".into(), password: Redacted::new("hunter2".into()) };
        let debug = format!("{login:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains(MASK));
        assert_eq!(format!("{}", login.password), MASK);
        assert_eq!(login.password.expose(), "hunter2");
    }

    #[test]
    fn deserialises_transparently() {
        let secret: Redacted<String> = serde_json::from_str("\"s3cret\"").unwrap_or_default();
        assert_eq!(secret.expose(), "s3cret");
    }
}
