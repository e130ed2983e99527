//! Package URLs (package-url/purl-spec): `pkg:type/namespace/name@version?qualifiers#subpath`.
//!
//! Parsing follows the spec's right-to-left recipe: subpath after `#`, qualifiers after `?`,
//! then type, version after the last `@`, name after the last `/`, the rest the namespace;
//! every component percent-decoded. The type is lowercased, and names are normalised where
//! the type's definition says they are case-insensitive (pypi: lowercase, `_` to `-`; deb,
//! apk, alpm, bitbucket, github, composer, hex: lowercase).

use std::fmt;

use crate::vers::{percent_decode, short};
use crate::{DevicesError, Result};

/// One package URL, decoded and normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Purl {
    pub ty: String,
    pub namespace: Option<String>,
    pub name: String,
    pub version: Option<String>,
    /// Sorted by key; keys lowercased; empty values dropped.
    pub qualifiers: Vec<(String, String)>,
    pub subpath: Option<String>,
}

/// Longest purl accepted.
const MAX_PURL_LEN: usize = 4096;

fn err(value: &str, reason: &str) -> DevicesError {
    DevicesError::Value { kind: "purl", value: short(value), reason: reason.to_string() }
}

fn decode(input: &str, part: &str) -> Result<String> {
    percent_decode(part).ok_or_else(|| err(input, "bad percent-encoding"))
}

impl Purl {
    /// Parse a purl string.
    pub fn parse(s: &str) -> Result<Purl> {
        if s.len() > MAX_PURL_LEN {
            return Err(err(s, "too long"));
        }
        let input = s.trim();
        let Some((scheme, rest)) = input.split_once(':') else {
            return Err(err(s, "no `pkg:` scheme"));
        };
        if !scheme.eq_ignore_ascii_case("pkg") {
            return Err(err(s, "scheme is not `pkg`"));
        }
        let (rest, subpath) = match rest.rsplit_once('#') {
            Some((r, sp)) => {
                let mut segs = Vec::new();
                for seg in sp.split('/') {
                    if seg.is_empty() || seg == "." || seg == ".." {
                        continue;
                    }
                    segs.push(decode(s, seg)?);
                }
                (r, if segs.is_empty() { None } else { Some(segs.join("/")) })
            }
            None => (rest, None),
        };
        let (rest, qualifiers) = match rest.rsplit_once('?') {
            Some((r, q)) => (r, parse_qualifiers(s, q)?),
            None => (rest, Vec::new()),
        };
        let rest = rest.trim_matches('/');
        let Some((ty, rest)) = rest.split_once('/') else {
            return Err(err(s, "no name"));
        };
        let ty = ty.to_ascii_lowercase();
        if ty.is_empty()
            || ty.starts_with(|c: char| c.is_ascii_digit())
            || !ty.bytes().all(|c| c.is_ascii_alphanumeric() || b".+-".contains(&c))
        {
            return Err(err(s, "bad type"));
        }
        let rest = rest.trim_end_matches('/');
        let (rest, version) = match rest.rsplit_once('@') {
            // An `@` inside the namespace (an npm scope) is not a version separator.
            Some((r, v)) if !v.contains('/') => {
                if v.is_empty() {
                    return Err(err(s, "empty version"));
                }
                (r, Some(decode(s, v)?))
            }
            _ => (rest, None),
        };
        let (ns, name) = match rest.rsplit_once('/') {
            Some((ns, name)) => (Some(ns), name),
            None => (None, rest),
        };
        let name = decode(s, name)?;
        if name.is_empty() {
            return Err(err(s, "no name"));
        }
        let mut namespace = None;
        if let Some(ns) = ns {
            let mut segs = Vec::new();
            for seg in ns.split('/').filter(|x| !x.is_empty()) {
                let d = decode(s, seg)?;
                if d.contains('/') {
                    return Err(err(s, "namespace segment contains `/`"));
                }
                segs.push(d);
            }
            if !segs.is_empty() {
                namespace = Some(segs.join("/"));
            }
        }
        let mut purl = Purl { ty, namespace, name, version, qualifiers, subpath };
        purl.normalise();
        purl.check_type_rules(s)?;
        Ok(purl)
    }

    fn normalise(&mut self) {
        match self.ty.as_str() {
            "pypi" => {
                self.name = self.name.to_ascii_lowercase().replace('_', "-");
            }
            "deb" | "apk" | "alpm" | "bitbucket" | "github" | "composer" | "hex" | "rpm" => {
                if let Some(ns) = &mut self.namespace {
                    *ns = ns.to_ascii_lowercase();
                }
                if self.ty != "rpm" {
                    self.name = self.name.to_ascii_lowercase();
                }
            }
            _ => {}
        }
    }

    fn check_type_rules(&self, s: &str) -> Result<()> {
        match self.ty.as_str() {
            "maven" if self.namespace.is_none() => Err(err(s, "maven purl needs a namespace (groupId)")),
            "swift" if self.namespace.is_none() => Err(err(s, "swift purl needs a namespace")),
            "cran" if self.version.is_none() => Err(err(s, "cran purl needs a version")),
            "conan" => {
                let has_channel = self.qualifiers.iter().any(|(k, _)| k == "channel");
                if self.namespace.is_some() && !has_channel {
                    Err(err(s, "conan purl with a namespace needs a channel qualifier"))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// `type/namespace/name` (or `type/name`), normalised, without version: the key a
    /// package is looked up by.
    pub fn package_key(&self) -> String {
        let lower_all = matches!(self.ty.as_str(), "nuget" | "golang");
        let ns = self.namespace.as_deref().map(|n| if lower_all { n.to_lowercase() } else { n.to_string() });
        let name = if lower_all { self.name.to_lowercase() } else { self.name.clone() };
        match ns {
            Some(ns) => format!("{}/{}/{}", self.ty, ns, name),
            None => format!("{}/{}", self.ty, name),
        }
    }

    /// The value of a qualifier.
    pub fn qualifier(&self, key: &str) -> Option<&str> {
        self.qualifiers.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

fn parse_qualifiers(input: &str, q: &str) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(err(input, "qualifier without `=`"));
        };
        let k = k.to_ascii_lowercase();
        if k.is_empty()
            || k.starts_with(|c: char| c.is_ascii_digit())
            || !k.bytes().all(|c| c.is_ascii_alphanumeric() || b".-_".contains(&c))
        {
            return Err(err(input, "bad qualifier key"));
        }
        let v = decode(input, v)?;
        if v.is_empty() {
            continue;
        }
        if out.iter().any(|(x, _)| *x == k) {
            return Err(err(input, "duplicate qualifier"));
        }
        out.push((k, v));
    }
    out.sort();
    Ok(out)
}

/// Percent-encode everything but unreserved characters (and `extra`).
fn encode(s: &str, extra: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || "-._~".contains(c) || extra.contains(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

impl fmt::Display for Purl {
    /// The canonical form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pkg:{}/", self.ty)?;
        if let Some(ns) = &self.namespace {
            let segs: Vec<String> = ns.split('/').map(|s| encode(s, ":")).collect();
            write!(f, "{}/", segs.join("/"))?;
        }
        f.write_str(&encode(&self.name, ":"))?;
        if let Some(v) = &self.version {
            write!(f, "@{}", encode(v, ":"))?;
        }
        if !self.qualifiers.is_empty() {
            let qs: Vec<String> = self.qualifiers.iter().map(|(k, v)| format!("{k}={}", encode(v, ":/"))).collect();
            write!(f, "?{}", qs.join("&"))?;
        }
        if let Some(sp) = &self.subpath {
            let segs: Vec<String> = sp.split('/').map(|s| encode(s, ":")).collect();
            write!(f, "#{}", segs.join("/"))?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Purl {
    type Err = DevicesError;
    fn from_str(s: &str) -> Result<Self> {
        Purl::parse(s)
    }
}
