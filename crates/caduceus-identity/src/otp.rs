//! One-time passwords: HOTP (RFC 4226) and TOTP (RFC 6238).
//!
//! Written here rather than taken from a TOTP crate: the algorithm is a dozen
//! lines over `hmac`, and what a login needs around it — constant-time code
//! comparison, a ±1 step window that reports *which* step matched so each
//! code is accepted once, and strict parsing of user input — is ours anyway.

use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;

/// The HMAC behind the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The name `otpauth://` URIs use.
    pub fn uri_name(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OtpError {
    #[error("a one-time code is {0} digits")]
    Malformed(u32),
    #[error("the code is not valid now")]
    Invalid,
    #[error("the code was already used")]
    Replayed,
    #[error("the secret is too short (at least 16 bytes)")]
    WeakSecret,
    #[error("digits must be 6 to 8")]
    Digits,
}

fn mac(algorithm: Algorithm, secret: &[u8], message: &[u8]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(secret: &[u8], message: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length, so this cannot fail.
        match <M as hmac::digest::KeyInit>::new_from_slice(secret) {
            Ok(mut mac) => {
                mac.update(message);
                mac.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        }
    }
    match algorithm {
        Algorithm::Sha1 => run::<Hmac<sha1::Sha1>>(secret, message),
        Algorithm::Sha256 => run::<Hmac<sha2::Sha256>>(secret, message),
        Algorithm::Sha512 => run::<Hmac<sha2::Sha512>>(secret, message),
    }
}

/// The RFC 4226 dynamic truncation of an HMAC to a 31-bit number.
fn truncate(hmac: &[u8]) -> u32 {
    let offset = hmac.last().map_or(0, |b| usize::from(b & 0x0f));
    let bytes: [u8; 4] = hmac.get(offset..offset + 4).and_then(|s| s.try_into().ok()).unwrap_or_default();
    u32::from_be_bytes(bytes) & 0x7fff_ffff
}

/// HOTP: the code for `counter`, `digits` long.
pub fn hotp(algorithm: Algorithm, secret: &[u8], counter: u64, digits: u32) -> u32 {
    truncate(&mac(algorithm, secret, &counter.to_be_bytes())) % 10u32.pow(digits)
}

/// A TOTP configuration, as enrolled for one account.
#[derive(Clone, PartialEq, Eq)]
pub struct Totp {
    pub algorithm: Algorithm,
    pub digits: u32,
    /// Seconds per step.
    pub period: u64,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Totp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Totp")
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl Totp {
    pub fn new(algorithm: Algorithm, secret: Vec<u8>, digits: u32, period: u64) -> Result<Self, OtpError> {
        if secret.len() < 16 {
            return Err(OtpError::WeakSecret);
        }
        if !(6..=8).contains(&digits) {
            return Err(OtpError::Digits);
        }
        Ok(Self { algorithm, digits, period: period.max(1), secret })
    }

    /// A fresh 160-bit secret with the defaults every authenticator app
    /// understands (SHA-1, 6 digits, 30 s).
    pub fn generate() -> Self {
        let mut secret = vec![0u8; 20];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut secret);
        Self { algorithm: Algorithm::Sha1, digits: 6, period: 30, secret }
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// The time step for a Unix time in seconds.
    pub fn step(&self, unix_secs: u64) -> u64 {
        unix_secs / self.period
    }

    /// The code for a time step.
    pub fn code_at_step(&self, step: u64) -> u32 {
        hotp(self.algorithm, &self.secret, step, self.digits)
    }

    /// The code as shown to the user, zero-padded.
    pub fn format(&self, code: u32) -> String {
        format!("{code:0width$}", width = self.digits as usize)
    }

    /// Check a code typed at `unix_secs`, allowing one step of clock skew
    /// either way. `last_used_step` is the step of the last accepted code for
    /// this account: a code from that step or earlier is refused, so each
    /// code works once. Returns the step that matched, to store as the new
    /// `last_used_step`. Every candidate is compared in constant time.
    pub fn verify(&self, input: &str, unix_secs: u64, last_used_step: Option<u64>) -> Result<u64, OtpError> {
        let input = input.trim();
        if input.len() != self.digits as usize || !input.bytes().all(|b| b.is_ascii_digit()) {
            return Err(OtpError::Malformed(self.digits));
        }
        let now = self.step(unix_secs);
        let mut matched = None;
        for step in [now.saturating_sub(1), now, now.saturating_add(1)] {
            let expected = self.format(self.code_at_step(step));
            if bool::from(expected.as_bytes().ct_eq(input.as_bytes())) && matched.is_none() {
                matched = Some(step);
            }
        }
        match (matched, last_used_step) {
            (None, _) => Err(OtpError::Invalid),
            (Some(step), Some(last)) if step <= last => Err(OtpError::Replayed),
            (Some(step), _) => Ok(step),
        }
    }

    /// The `otpauth://totp/...` URI authenticator apps enrol from (as a QR code).
    pub fn uri(&self, issuer: &str, account: &str) -> String {
        format!(
            "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm={}&digits={}&period={}",
            encode_component(issuer),
            encode_component(account),
            BASE32_NOPAD.encode(&self.secret),
            encode_component(issuer),
            self.algorithm.uri_name(),
            self.digits,
            self.period
        )
    }
}

/// Percent-encode everything but unreserved characters (RFC 3986).
fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn totp() -> Totp {
        Totp::new(Algorithm::Sha1, b"12345678901234567890".to_vec(), 6, 30).unwrap()
    }

    #[test]
    fn codes_work_once_within_one_step_of_skew() {
        let t = totp();
        let now = 1_700_000_000;
        let code = t.format(t.code_at_step(t.step(now) - 1));
        let step = t.verify(&code, now, None).unwrap();
        assert_eq!(step, t.step(now) - 1);
        assert_eq!(t.verify(&code, now, Some(step)), Err(OtpError::Replayed));
        let later = t.format(t.code_at_step(t.step(now)));
        assert_eq!(t.verify(&later, now, Some(step)), Ok(t.step(now)));
        let far = t.format(t.code_at_step(t.step(now) + 2));
        assert_eq!(t.verify(&far, now, None), Err(OtpError::Invalid));
        for bad in ["", "12345", "1234567", "12a456", "+12345"] {
            assert_eq!(t.verify(bad, now, None), Err(OtpError::Malformed(6)), "{bad:?}");
        }
    }

    #[test]
    fn weak_settings_are_refused() {
        assert_eq!(Totp::new(Algorithm::Sha1, vec![1; 10], 6, 30), Err(OtpError::WeakSecret));
        assert_eq!(Totp::new(Algorithm::Sha1, vec![1; 20], 4, 30), Err(OtpError::Digits));
    }

    #[test]
    fn the_uri_carries_everything_an_app_needs() {
        let t = totp();
        assert_eq!(
            t.uri("St Brigid's", "nurse@hospital.example"),
            "otpauth://totp/St%20Brigid%27s:nurse%40hospital.example?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=St%20Brigid%27s&algorithm=SHA1&digits=6&period=30"
        );
    }
}
