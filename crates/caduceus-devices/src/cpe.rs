//! CPE names: CPE 2.3 formatted strings (`cpe:2.3:a:vendor:product:version:...`, NISTIR 7695
//! section 6.2) and CPE 2.2 URIs (`cpe:/a:vendor:product:version:...`, section 6.1).
//!
//! Values are kept unescaped (`\:` becomes `:`, `%3a` becomes `:`); `*` is ANY and `-` is NA.
//! A URI's empty or missing component is ANY; a packed 2.2 edition (`~ed~sw~tsw~thw~other`)
//! is unpacked.

use crate::vers::{percent_decode, short};
use crate::{DevicesError, Result};

/// A CPE name, all eleven attributes, unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Cpe {
    /// `a` (application), `o` (operating system), `h` (hardware), or `*`.
    pub part: String,
    pub vendor: String,
    pub product: String,
    pub version: String,
    pub update: String,
    pub edition: String,
    pub language: String,
    pub sw_edition: String,
    pub target_sw: String,
    pub target_hw: String,
    pub other: String,
}

/// Longest CPE accepted.
const MAX_CPE_LEN: usize = 2048;
const ANY: &str = "*";

fn err(value: &str, reason: &str) -> DevicesError {
    DevicesError::Value { kind: "cpe", value: short(value), reason: reason.to_string() }
}

/// Split a 2.3 formatted string on unescaped `:` and drop the escaping backslashes.
fn split_fs(s: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.push(chars.next()?),
            ':' => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    Some(parts)
}

impl Cpe {
    /// Parse a CPE 2.3 formatted string or a CPE 2.2 URI.
    pub fn parse(s: &str) -> Result<Cpe> {
        if s.len() > MAX_CPE_LEN {
            return Err(err(s, "too long"));
        }
        let t = s.trim();
        if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err(s, "contains whitespace"));
        }
        let lower_prefix = t.get(..6).map(str::to_ascii_lowercase);
        match lower_prefix.as_deref() {
            Some("cpe:2.") => Self::parse_fs(s, t),
            Some(p) if p.starts_with("cpe:/") => Self::parse_uri(s, t),
            _ => Err(err(s, "not a CPE (`cpe:2.3:` or `cpe:/`)")),
        }
    }

    fn parse_fs(s: &str, t: &str) -> Result<Cpe> {
        let Some(parts) = split_fs(t) else {
            return Err(err(s, "dangling `\\`"));
        };
        if parts.len() != 13 {
            return Err(err(s, "a CPE 2.3 name has 13 components"));
        }
        if parts.get(1).map(String::as_str) != Some("2.3") {
            return Err(err(s, "not CPE 2.3"));
        }
        let mut it = parts.into_iter().skip(2).map(|p| if p.is_empty() { ANY.to_string() } else { p });
        let mut next = || it.next().unwrap_or_else(|| ANY.to_string());
        let cpe = Cpe {
            part: next().to_ascii_lowercase(),
            vendor: next(),
            product: next(),
            version: next(),
            update: next(),
            edition: next(),
            language: next(),
            sw_edition: next(),
            target_sw: next(),
            target_hw: next(),
            other: next(),
        };
        cpe.check(s)?;
        Ok(cpe)
    }

    fn parse_uri(s: &str, t: &str) -> Result<Cpe> {
        let body = t.get(5..).unwrap_or("");
        let raw: Vec<&str> = body.split(':').collect();
        if raw.len() > 7 {
            return Err(err(s, "a CPE 2.2 URI has at most 7 components"));
        }
        let mut vals = Vec::with_capacity(7);
        for r in &raw {
            let Some(d) = percent_decode(r) else {
                return Err(err(s, "bad percent-encoding"));
            };
            vals.push(if d.is_empty() { ANY.to_string() } else { d });
        }
        vals.resize(7, ANY.to_string());
        let mut it = vals.into_iter();
        let mut next = || it.next().unwrap_or_else(|| ANY.to_string());
        let part = next().to_ascii_lowercase();
        let (vendor, product, version, update, edition_raw, language) =
            (next(), next(), next(), next(), next(), next());
        let mut cpe = Cpe {
            part,
            vendor,
            product,
            version,
            update,
            edition: edition_raw.clone(),
            language,
            sw_edition: ANY.to_string(),
            target_sw: ANY.to_string(),
            target_hw: ANY.to_string(),
            other: ANY.to_string(),
        };
        if let Some(packed) = edition_raw.strip_prefix('~') {
            let fields: Vec<&str> = packed.split('~').collect();
            if fields.len() != 5 {
                return Err(err(s, "a packed edition has 5 fields"));
            }
            let pick =
                |i: usize| fields.get(i).filter(|f| !f.is_empty()).map_or_else(|| ANY.to_string(), |f| f.to_string());
            cpe.edition = pick(0);
            cpe.sw_edition = pick(1);
            cpe.target_sw = pick(2);
            cpe.target_hw = pick(3);
            cpe.other = pick(4);
        }
        cpe.check(s)?;
        Ok(cpe)
    }

    fn check(&self, s: &str) -> Result<()> {
        if !matches!(self.part.as_str(), "a" | "o" | "h" | "*") {
            return Err(err(s, "part must be a, o or h"));
        }
        Ok(())
    }

    /// True when the version is ANY (`*`) or NA (`-`): such a CPE names no version and must
    /// never match a version by itself.
    pub fn version_is_any(&self) -> bool {
        matches!(self.version.as_str(), "*" | "-" | "")
    }

    /// `vendor:product`, lowercased: the pair both of which must match.
    pub fn vendor_product_key(&self) -> String {
        format!("{}:{}", self.vendor.to_lowercase(), self.product.to_lowercase())
    }

    /// True when vendor or product is ANY or NA (too vague to match on).
    pub fn vendor_or_product_is_any(&self) -> bool {
        ["*", "-", ""].contains(&self.vendor.as_str()) || ["*", "-", ""].contains(&self.product.as_str())
    }

    /// The version, or `None` when it is ANY or NA.
    pub fn version(&self) -> Option<&str> {
        if self.version_is_any() { None } else { Some(&self.version) }
    }
}

impl std::fmt::Display for Cpe {
    /// The CPE 2.3 formatted string, re-escaped.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cpe:2.3")?;
        for v in [
            &self.part,
            &self.vendor,
            &self.product,
            &self.version,
            &self.update,
            &self.edition,
            &self.language,
            &self.sw_edition,
            &self.target_sw,
            &self.target_hw,
            &self.other,
        ] {
            f.write_str(":")?;
            if v == "*" || v == "-" {
                f.write_str(v)?;
                continue;
            }
            for c in v.chars() {
                if !(c.is_ascii_alphanumeric() || c == '_' || c == '*' || c == '?') {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}
