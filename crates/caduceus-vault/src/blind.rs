//! Blind indexes: how the vault searches values that identify a person
//! (identifiers, names, birth dates, addresses) without storing them.
//!
//! A term is HMAC-SHA256 under an index key (kept beside the key-encryption
//! key, never in the database) of the field's tag and the normalised value.
//! Equal values give equal terms, so the database can match them; without
//! the key a term says nothing about the value, and a dictionary of common
//! names cannot be tried against the table.
//!
//! What this costs, stated plainly: equal values are visibly equal (how many
//! records share a family name shows), and prefix search for names (FHIR
//! string search matches the start of a name part) is served by indexing each
//! prefix of three or more characters, which shows how many names share a
//! prefix. Values are never stored, only these terms.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Shortest name prefix that is indexed (FHIR `name=Smi` finds "Smith").
pub const MIN_PREFIX: usize = 3;
/// Longest value indexed; longer input is cut (by characters) before hashing.
pub const MAX_VALUE_CHARS: usize = 256;

/// Which kind of value a term indexes; each has its own tag, so the same
/// text as a family name and as a city never gives the same term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `system|value` of an Identifier (MRN, national id).
    Identifier,
    /// A family name, whole or a prefix.
    Family,
    /// A given name, whole or a prefix.
    Given,
    /// Any part of any name (FHIR `name`), whole or a prefix.
    Name,
    /// A birth date at day, month or year precision.
    BirthDate,
    /// An address line, city, district, state, postal code or country.
    Address,
}

impl Field {
    fn tag(self) -> &'static [u8] {
        match self {
            Field::Identifier => b"identifier",
            Field::Family => b"family",
            Field::Given => b"given",
            Field::Name => b"name",
            Field::BirthDate => b"birthdate",
            Field::Address => b"address",
        }
    }
}

/// One blind index term, as stored and compared (lower-case hex of the MAC).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Term(pub String);

/// Computes terms under one index key.
pub struct BlindIndexer {
    key: [u8; 32],
}

impl std::fmt::Debug for BlindIndexer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlindIndexer { key: <hidden> }")
    }
}

impl Drop for BlindIndexer {
    fn drop(&mut self) {
        // Best effort: overwrite the key before the memory is freed.
        self.key.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&self.key);
    }
}

impl BlindIndexer {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// The term of one already-normalised value.
    fn mac(&self, field: Field, normalised: &str) -> Term {
        self.mac_tagged(&[field.tag()], normalised)
    }

    /// The term of one already-normalised value under a tag given in parts
    /// (hashed one after the other, so `[b"family"]` gives the same term as
    /// [`Self::mac`] with [`Field::Family`]).
    fn mac_tagged(&self, tag: &[&[u8]], normalised: &str) -> Term {
        // HMAC takes keys of any length: this cannot fail.
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.key) else {
            return Term(String::new());
        };
        mac.update(b"caduceus-blind-v1\0");
        tag.iter().for_each(|part| mac.update(part));
        mac.update(b"\0");
        mac.update(normalised.as_bytes());
        Term(hex::encode(mac.finalize().into_bytes()))
    }

    /// The term of a token (a code, `system|code`, a `Type/id` reference)
    /// under a search parameter, for values that identify no one but are
    /// still kept blind. The tag is `token:<param>`: no [`Field`] tag
    /// contains a `:`, so a token never shares a term with a name, an
    /// identifier or another parameter's token. `param` is a search
    /// parameter name from the vault's own table (it contains no NUL). The
    /// value is compared as given (codes are case-sensitive), trimmed and cut
    /// to [`MAX_VALUE_CHARS`].
    pub fn token(&self, param: &str, value: &str) -> Term {
        let value: String = value.trim().chars().take(MAX_VALUE_CHARS).collect();
        self.mac_tagged(&[b"token:", param.as_bytes()], value.trim())
    }

    /// The term of a whole value compared exactly (FHIR `:exact`): Unicode
    /// NFC, case and accents kept, surrounding space trimmed and inner runs
    /// of space collapsed. Its tag is the field's with `:exact` appended, so
    /// "Smith" whole never matches the prefix terms of "Smithson". Empty:
    /// no term.
    pub fn whole(&self, field: Field, value: &str) -> Option<Term> {
        let cut: String = value.chars().take(MAX_VALUE_CHARS).collect();
        let normalised = cut.nfc().collect::<String>().split_whitespace().collect::<Vec<_>>().join(" ");
        (!normalised.is_empty()).then(|| self.mac_tagged(&[field.tag(), b":exact"], &normalised))
    }

    /// The term to store for, and to search by, an exact value. Empty after
    /// normalisation: no term.
    pub fn exact(&self, field: Field, value: &str) -> Option<Term> {
        let normalised = normalise(field, value);
        (!normalised.is_empty()).then(|| self.mac(field, &normalised))
    }

    /// Every term to store for a value: for names, each part whole and each
    /// of its prefixes from [`MIN_PREFIX`] characters; for birth dates, the
    /// day, the month and the year; otherwise the exact term.
    pub fn terms(&self, field: Field, value: &str) -> Vec<Term> {
        let normalised = normalise(field, value);
        if normalised.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        match field {
            Field::Family | Field::Given | Field::Name => {
                for part in normalised.split(' ') {
                    let chars: Vec<char> = part.chars().collect();
                    for end in MIN_PREFIX.min(chars.len())..=chars.len() {
                        let prefix: String = chars.iter().take(end).collect();
                        out.push(self.mac(field, &prefix));
                    }
                }
                if normalised.contains(' ') {
                    out.push(self.mac(field, &normalised));
                }
            }
            Field::BirthDate => {
                // YYYY-MM-DD, YYYY-MM and YYYY: FHIR dates search at the
                // precision asked for.
                for len in [10, 7, 4] {
                    if let Some(part) = normalised.get(..len)
                        && normalised.len() >= len
                    {
                        out.push(self.mac(field, part));
                    }
                }
            }
            Field::Identifier | Field::Address => out.push(self.mac(field, &normalised)),
        }
        out.sort();
        out.dedup();
        out
    }
}

/// The normal form a field is compared in.
///
/// - names and addresses: Unicode NFKD with combining marks removed (so
///   "Zoë" matches "Zoe"), lower case, punctuation other than `-` and `'`
///   dropped, runs of space collapsed;
/// - identifiers: `system|value` as given, trimmed (identifier values are
///   case-sensitive in FHIR);
/// - birth dates: the leading `YYYY[-MM[-DD]]` if it is one.
pub fn normalise(field: Field, value: &str) -> String {
    let value: String = value.chars().take(MAX_VALUE_CHARS).collect();
    match field {
        Field::Identifier => value.trim().to_owned(),
        Field::BirthDate => {
            let date: String = value.trim().chars().take(10).collect();
            let valid = date.char_indices().all(|(i, c)| if i == 4 || i == 7 { c == '-' } else { c.is_ascii_digit() })
                && matches!(date.len(), 4 | 7 | 10);
            if valid { date } else { String::new() }
        }
        Field::Family | Field::Given | Field::Name | Field::Address => {
            let folded: String = value
                .nfkd()
                .filter(|c| !is_combining_mark(*c))
                .flat_map(char::to_lowercase)
                .map(|c| if c.is_alphanumeric() || c == '-' || c == '\'' { c } else { ' ' })
                .collect();
            folded.split_whitespace().collect::<Vec<_>>().join(" ")
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn indexer() -> BlindIndexer {
        BlindIndexer::new([7; 32])
    }

    #[test]
    fn equal_values_match_after_normalisation() {
        let ix = indexer();
        let a = ix.exact(Field::Family, "  O'Brién ").unwrap();
        let b = ix.exact(Field::Family, "o'brien").unwrap();
        assert_eq!(a, b);
        assert_eq!(ix.exact(Field::Given, "Zoë  Ann"), ix.exact(Field::Given, "zoe ann"));
        assert_eq!(normalise(Field::Address, "12, Rue de l’Église"), "12 rue de l eglise");
        assert_eq!(ix.exact(Field::Family, " ,. "), None, "nothing left: no term");
    }

    #[test]
    fn terms_are_keyed_and_separated_by_field() {
        let ix = indexer();
        let family = ix.exact(Field::Family, "Paris").unwrap();
        assert_ne!(Some(family.clone()), ix.exact(Field::Address, "Paris"), "a name is not a city");
        assert_ne!(Some(family.clone()), BlindIndexer::new([8; 32]).exact(Field::Family, "Paris"), "keyed");
        assert_eq!(family.0.len(), 64);
        assert!(!family.0.contains("paris"));
    }

    #[test]
    fn name_terms_cover_prefixes_and_the_whole_name() {
        let ix = indexer();
        let terms = ix.terms(Field::Name, "Smith Jones");
        for query in ["smi", "smit", "smith", "jon", "jones", "smith jones"] {
            let term = ix.exact(Field::Name, query).unwrap();
            assert!(terms.contains(&term), "{query} should find the record");
        }
        assert!(!terms.contains(&ix.exact(Field::Name, "sm").unwrap()), "two letters are too few to index");
        assert!(!terms.contains(&ix.exact(Field::Name, "mith").unwrap()), "prefixes only");
        // A short name is indexed whole.
        assert!(ix.terms(Field::Given, "Al").contains(&ix.exact(Field::Given, "al").unwrap()));
    }

    #[test]
    fn identifiers_are_exact_and_dates_searchable_by_precision() {
        let ix = indexer();
        let mrn = "http://hospital.example/mrn|AB-123";
        assert_eq!(ix.terms(Field::Identifier, mrn), vec![ix.exact(Field::Identifier, mrn).unwrap()]);
        assert_ne!(ix.exact(Field::Identifier, mrn), ix.exact(Field::Identifier, &mrn.to_lowercase()));
        let terms = ix.terms(Field::BirthDate, "1987-06-05");
        for query in ["1987-06-05", "1987-06", "1987"] {
            assert!(terms.contains(&ix.exact(Field::BirthDate, query).unwrap()), "{query}");
        }
        assert_eq!(terms.len(), 3);
        assert!(ix.terms(Field::BirthDate, "05/06/1987").is_empty(), "not a FHIR date");
        assert_eq!(ix.terms(Field::BirthDate, "1987-06").len(), 2);
    }

    #[test]
    fn tokens_and_whole_values_have_their_own_tags() {
        let ix = indexer();
        assert_eq!(ix.token("code", " 8302-2 "), ix.token("code", "8302-2"));
        assert_ne!(ix.token("code", "male"), ix.token("gender", "male"), "tagged by parameter");
        let identifier = ix.exact(Field::Identifier, "x").unwrap();
        assert_ne!(ix.token("identifier", "x"), identifier, "a token is not an identifier term");
        assert_ne!(ix.token("", "x"), identifier);
        let whole = ix.whole(Field::Family, "  Smith   Jones ").unwrap();
        assert_eq!(Some(whole.clone()), ix.whole(Field::Family, "Smith Jones"));
        assert_ne!(Some(whole), ix.whole(Field::Family, "smith jones"), "exact keeps case");
        assert_eq!(ix.whole(Field::Given, "Zoe\u{308}"), ix.whole(Field::Given, "Zo\u{eb}"), "NFC");
        assert_ne!(ix.whole(Field::Family, "smith"), ix.exact(Field::Family, "smith"), "whole is not prefix");
        assert_eq!(ix.whole(Field::Family, " \t "), None);
    }

    #[test]
    fn long_and_odd_input_is_capped_and_never_panics() {
        let ix = indexer();
        let long = "x".repeat(10_000);
        assert_eq!(ix.exact(Field::Family, &long), ix.exact(Field::Family, &"x".repeat(MAX_VALUE_CHARS)));
        for odd in ["", "\u{0}", "٣٤٥", "🙂🙂🙂", "a\u{301}\u{301}\u{301}", "----"] {
            for field in [Field::Identifier, Field::Family, Field::Name, Field::BirthDate, Field::Address] {
                let _ = ix.terms(field, odd);
            }
        }
        assert!(format!("{ix:?}").contains("hidden"));
    }
}
