//! Blind tokens: how the analytics compares a user's surname and address
//! with a patient's without holding either.
//!
//! A token is HMAC-SHA256, under a key that never leaves the process, of a
//! tag and the normalised value — the same construction, tags and
//! normalisation as the vault's exact blind-index terms
//! (`caduceus_vault::blind::BlindIndexer::exact` with `Field::Family` or
//! `Field::Address`), so that under the vault's index key the two give the
//! same hex string and the server may hand the vault's terms in directly.
//! Equal values give equal tokens; without the key a token says nothing
//! about its value. Plain text read from a file is turned into a token at
//! once and dropped; this module never stores, logs or returns it.

use std::fmt;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Longest value hashed; longer input is cut (by characters) first, as
/// the vault does.
pub const MAX_VALUE_CHARS: usize = 256;
/// Longest token accepted from outside (a pre-hashed export may use its own
/// scheme; anything longer is not a token).
pub const MAX_TOKEN_CHARS: usize = 256;

/// What a token stands for; each has its own tag, so a surname never
/// equals a street name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenField {
    Surname,
    Address,
}

impl TokenField {
    /// The vault's tag for the field (`family`, `address`).
    fn tag(self) -> &'static [u8] {
        match self {
            Self::Surname => b"family",
            Self::Address => b"address",
        }
    }
}

/// An opaque token, compared for equality only.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    /// A token computed elsewhere (the vault, a hospital's pre-hashed
    /// export). Empty or over-long text is refused; case is kept, so hex
    /// from different tools should agree on case.
    pub fn from_external(text: &str) -> Option<Token> {
        let text = text.trim();
        (!text.is_empty() && text.chars().count() <= MAX_TOKEN_CHARS && !text.chars().any(char::is_control))
            .then(|| Token(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A token is not secret, but a short prefix is enough to tell two apart.
        let prefix: String = self.0.chars().take(8).collect();
        write!(f, "Token({prefix}…)")
    }
}

/// The key tokens are computed under. `Debug` hides it.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(**REDACTED**)")
    }
}

impl Drop for TokenKey {
    fn drop(&mut self) {
        // Best effort: overwrite the key before the memory is freed.
        self.0.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&self.0);
    }
}

impl TokenKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh key from the operating system's generator: tokens under it
    /// compare only with each other, which is all one directory needs.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// A key given as 64 hex digits (to compare plain text with an export
    /// pre-hashed under a known key).
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let bytes = hex::decode(text.trim()).map_err(|_| "token key is not hex".to_owned())?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| "token key must be 32 bytes (64 hex digits)".to_owned())?;
        Ok(Self(key))
    }

    /// The token of a plain value, or `None` when nothing is left after
    /// normalisation.
    pub fn token(&self, field: TokenField, value: &str) -> Option<Token> {
        let normalised = normalise(value);
        if normalised.is_empty() {
            return None;
        }
        // HMAC takes keys of any length: this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).ok()?;
        mac.update(b"caduceus-blind-v1\0");
        mac.update(field.tag());
        mac.update(b"\0");
        mac.update(normalised.as_bytes());
        Some(Token(hex::encode(mac.finalize().into_bytes())))
    }
}

/// The vault's normal form for names and addresses: Unicode NFKD with
/// combining marks removed ("Zoë" is "zoe"), lower case, punctuation other
/// than `-` and `'` turned into space, runs of space collapsed.
pub fn normalise(value: &str) -> String {
    let value: String = value.chars().take(MAX_VALUE_CHARS).collect();
    let folded: String = value
        .nfkd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .map(|c| if c.is_alphanumeric() || c == '-' || c == '\'' { c } else { ' ' })
        .collect();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn equal_after_normalisation_and_keyed() {
        let key = TokenKey::new([7; 32]);
        assert_eq!(key.token(TokenField::Surname, "  O'Brién "), key.token(TokenField::Surname, "o'brien"));
        assert_eq!(normalise("12, Rue de l’Église"), "12 rue de l eglise");
        assert_ne!(key.token(TokenField::Surname, "Paris"), key.token(TokenField::Address, "Paris"));
        assert_ne!(key.token(TokenField::Surname, "Paris"), TokenKey::new([8; 32]).token(TokenField::Surname, "Paris"));
        assert_eq!(key.token(TokenField::Surname, " ,. "), None);
        let token = key.token(TokenField::Surname, "Paris").unwrap();
        assert_eq!(token.as_str().len(), 64);
        assert!(!format!("{token:?}").contains("paris"));
        assert_eq!(format!("{key:?}"), "TokenKey(**REDACTED**)");
    }

    #[test]
    fn same_construction_as_the_vault() {
        // HMAC-SHA256(key = 32 × 0x07, "caduceus-blind-v1\0family\0smith"),
        // the vault's `BlindIndexer::new([7; 32]).exact(Field::Family, "Smith")`.
        let key = TokenKey::new([7; 32]);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&[7; 32]).unwrap();
        mac.update(b"caduceus-blind-v1\0family\0smith");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(key.token(TokenField::Surname, "Smith").unwrap().as_str(), expected);
    }

    #[test]
    fn external_tokens_are_checked() {
        assert!(Token::from_external("").is_none());
        assert!(Token::from_external(&"a".repeat(MAX_TOKEN_CHARS + 1)).is_none());
        assert!(Token::from_external("ab\ncd").is_none());
        assert_eq!(Token::from_external(" abc ").unwrap().as_str(), "abc");
        assert!(TokenKey::from_hex("zz").is_err());
        assert!(TokenKey::from_hex(&"00".repeat(31)).is_err());
        assert!(TokenKey::from_hex(&"0a".repeat(32)).is_ok());
    }
}
