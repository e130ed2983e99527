//! Passwords per NIST SP 800-63B: length over composition rules, no forced
//! rotation, and common or guessable passwords refused, with the reason and
//! a strength estimate (zxcvbn, whose dictionaries include the most common
//! leaked passwords) in the message; a password on zxcvbn's list of common
//! passwords is refused as such whatever its estimate. Breach corpora are
//! `crate::breached`. Stored only as argon2id PHC strings.
//!
//! Argon2id parameters follow OWASP's recommendation (19 MiB, 2 passes, one
//! lane): about 20 ms per hash on one core here, so a core can still verify
//! about 50 logins a second while each guess costs an attacker the same.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use zxcvbn::matching::patterns::MatchPattern;

/// Memory cost in KiB, passes, lanes.
pub const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
pub const ARGON2_PASSES: u32 = 2;
pub const ARGON2_LANES: u32 = 1;

/// Length limits, in characters.
pub const MIN_LENGTH: usize = 12;
pub const MAX_LENGTH: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("a password needs at least {MIN_LENGTH} characters")]
    TooShort,
    #[error("a password may have at most {MAX_LENGTH} characters")]
    TooLong,
    /// The whole password (ignoring case and undoing l33t substitutions
    /// zxcvbn recognises) is on zxcvbn's list of the 30,000 most common
    /// leaked passwords: refused whatever its strength estimate.
    #[error("this password is on a list of commonly used passwords: use a longer phrase of unrelated words")]
    Common,
    /// The password is in a breach corpus (`crate::breached`); `check_policy`
    /// does not consult one, its caller does.
    #[error("this password has appeared in a data breach: choose another")]
    Breached,
    #[error("this password is too easy to guess (strength {score} of 4): {advice}")]
    Guessable { score: u8, advice: String },
    #[error("the stored password hash is not usable")]
    BadHash,
}

fn argon2() -> Argon2<'static> {
    // The constants are valid parameters; should a future argon2 refuse
    // them, fall back to its own defaults rather than fail every login.
    let params = Params::new(ARGON2_MEMORY_KIB, ARGON2_PASSES, ARGON2_LANES, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Check a new password against the policy. `context` holds what the user
/// is known by (user name, email, real name): a password built from them is
/// refused. A password that is, as a whole, on zxcvbn's list of common
/// passwords is refused as `Common` even when its estimate would pass (an
/// odd capitalisation or l33t spelling raises the estimate but not the
/// odds that an attacker's list has it). Nothing about the password itself
/// appears in an error.
///
/// This uses only zxcvbn's embedded lists; the full breached-password
/// corpus, where a hospital has it offline, is `crate::breached`.
pub fn check_policy(password: &str, context: &[&str]) -> Result<(), PasswordError> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Err(PasswordError::TooShort);
    }
    if length > MAX_LENGTH {
        return Err(PasswordError::TooLong);
    }
    let estimate = zxcvbn::zxcvbn(password, context);
    if is_common(password, estimate.sequence()) {
        return Err(PasswordError::Common);
    }
    let score = u8::from(estimate.score());
    if score < 3 {
        let advice = estimate
            .feedback()
            .map(|f| {
                let mut parts: Vec<String> = f.warning().map(|w| w.to_string()).into_iter().collect();
                parts.extend(f.suggestions().iter().map(|s| s.to_string()));
                parts.join(" ")
            })
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "use a longer phrase of unrelated words".into());
        return Err(PasswordError::Guessable { score, advice });
    }
    Ok(())
}

/// Whether the whole password is on zxcvbn's "passwords" list (the most
/// common leaked passwords), ignoring case and undoing the l33t
/// substitutions (`@` for `a`, `0` for `o`, …) that zxcvbn reported in
/// `sequence`, its best reading of the password.
///
/// zxcvbn only shows that best reading, not every match it found, and the
/// reading may split a listed password whose odd capitalisation makes the
/// whole-list match dearer ("PaSsWoRd1234" reads as "password" + "1234").
/// So when case or a reported substitution changes the text, the plain
/// lower-case form is estimated again, a few rounds at most (zxcvbn breaks
/// ties between equally cheap readings in hash order, so "P@SSW0RD1234"
/// may first read as the listed "p@ssw0rd" + "1234", and only the next
/// round undoes the substitutions). A reversed listed password is left to
/// the strength estimate, since the text itself is not on the list.
fn is_common(password: &str, sequence: &[zxcvbn::Match]) -> bool {
    const ROUNDS: usize = 3;
    if is_one_listed_match(sequence, password.chars().count()) {
        return true;
    }
    let mut previous = password.to_owned();
    let mut text = unsubstituted_lowercase(password, sequence);
    for _ in 0..ROUNDS {
        if text == previous {
            return false;
        }
        let estimate = zxcvbn::zxcvbn(&text, &[]);
        if is_one_listed_match(estimate.sequence(), text.chars().count()) {
            return true;
        }
        let next = unsubstituted_lowercase(&text, estimate.sequence());
        previous = std::mem::replace(&mut text, next);
    }
    false
}

/// Whether `sequence` is one match, covering all `length` characters, in
/// zxcvbn's "passwords" dictionary. zxcvbn keeps its dictionary enum in a
/// private module, so the variant cannot be named here; its derived `Debug`
/// gives the variant name, and the tests pin that listed passwords are
/// still found.
fn is_one_listed_match(sequence: &[zxcvbn::Match], length: usize) -> bool {
    let [only] = sequence else { return false };
    let MatchPattern::Dictionary(pattern) = &only.pattern else { return false };
    only.i == 0
        && only.j.checked_add(1) == Some(length)
        && !pattern.reversed
        && format!("{:?}", pattern.dictionary_name) == "Passwords"
}

/// The password in lower case with each l33t substitution that zxcvbn
/// reported undone inside the characters of the match that reported it.
fn unsubstituted_lowercase(password: &str, sequence: &[zxcvbn::Match]) -> String {
    password
        .chars()
        .enumerate()
        .map(|(index, c)| {
            sequence
                .iter()
                .filter(|m| m.range_inclusive().contains(&index))
                .find_map(|m| match &m.pattern {
                    MatchPattern::Dictionary(p) if p.l33t => p.sub.as_ref().and_then(|sub| sub.get(&c).copied()),
                    _ => None,
                })
                .unwrap_or(c)
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// Hash a password for storage (a PHC string with its own salt and parameters).
pub fn hash(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|_| PasswordError::BadHash)
}

/// Check a password against a stored hash, in time independent of where
/// they differ. A hash made with older parameters still verifies (its
/// parameters are inside it); `needs_rehash` tells when to upgrade it.
pub fn verify(password: &str, stored: &str) -> Result<bool, PasswordError> {
    let parsed = PasswordHash::new(stored).map_err(|_| PasswordError::BadHash)?;
    Ok(argon2().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// Whether a stored hash uses weaker parameters than the current ones.
pub fn needs_rehash(stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else { return true };
    let Ok(params) = Params::try_from(&parsed) else { return true };
    parsed.algorithm != Algorithm::Argon2id.ident()
        || params.m_cost() < ARGON2_MEMORY_KIB
        || params.t_cost() < ARGON2_PASSES
}

/// A dummy hash with the current parameters, verified against when a user
/// does not exist so that the answer takes as long as for a real one.
pub fn verify_against_nothing(password: &str) {
    static DUMMY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if let Some(dummy) = DUMMY.get_or_init(|| hash("caduceus: no such user, equal timing").ok()) {
        let _ = verify(password, dummy);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn short_common_and_personal_passwords_are_refused() {
        assert_eq!(check_policy("Tr0ub4dor&3", &[]), Err(PasswordError::TooShort));
        assert_eq!(check_policy(&"a".repeat(MAX_LENGTH + 1), &[]), Err(PasswordError::TooLong));
        for weak in ["asdfghjkl1234", "Password123!", "aaaaaaaaaaaaaaaa"] {
            assert!(matches!(check_policy(weak, &[]), Err(PasswordError::Guessable { .. })), "{weak} was accepted");
        }
        // On zxcvbn's list as a whole, also with odd case or l33t spelling.
        for common in ["password1234", "PaSsWoRd1234", "P@SSW0RD1234", "LeAvEmEaLoNe"] {
            assert_eq!(check_policy(common, &[]), Err(PasswordError::Common), "{common}");
        }
        let personal = check_policy("margaret.hale1985", &["margaret.hale", "margaret", "hale"]);
        assert!(matches!(personal, Err(PasswordError::Guessable { .. })), "{personal:?}");
        assert_eq!(check_policy("correct horse battery staple", &[]), Ok(()));
        // The message explains without repeating the password.
        let message = check_policy("asdfghjkl1234", &[]).unwrap_err().to_string();
        assert!(!message.contains("asdfghjkl1234"), "{message}");
        assert!(message.contains("strength"), "{message}");
    }

    #[test]
    fn unsubstitution_stays_inside_the_reporting_match() {
        use zxcvbn::matching::patterns::DictionaryPattern;
        let l33t = DictionaryPattern {
            l33t: true,
            sub: Some([('@', 'a'), ('0', 'o')].into_iter().collect()),
            ..DictionaryPattern::default()
        };
        let sequence = [
            zxcvbn::Match { i: 0, j: 7, pattern: MatchPattern::Dictionary(l33t), ..zxcvbn::Match::default() },
            zxcvbn::Match { i: 8, j: 11, pattern: MatchPattern::BruteForce, ..zxcvbn::Match::default() },
        ];
        assert_eq!(unsubstituted_lowercase("P@SSW0RD1@00", &sequence), "password1@00");
        assert!(!is_one_listed_match(&sequence, 12));
        assert!(!is_one_listed_match(&[], 0));
    }

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let stored = hash("correct horse battery staple").unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
        assert_ne!(stored, hash("correct horse battery staple").unwrap(), "salted");
        assert_eq!(verify("correct horse battery staple", &stored), Ok(true));
        assert_eq!(verify("correct horse battery stapler", &stored), Ok(false));
        assert!(!needs_rehash(&stored));
        assert!(needs_rehash("$argon2id$v=19$m=4096,t=1,p=1$c2FsdHNhbHRzYWx0$YWJjZGVmZ2hpamtsbW5vcA"));
        assert_eq!(verify("x", "not a hash"), Err(PasswordError::BadHash));
        verify_against_nothing("anything");
    }
}
