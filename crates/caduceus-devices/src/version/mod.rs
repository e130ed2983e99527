//! Version ordering, one set of rules per ecosystem.
//!
//! [`compare`] orders two versions by the published rules of a [`Scheme`] and returns `None`
//! when either is not a valid version in that scheme: a matcher must not guess, so an
//! unparseable version is "unknown", never "less" or "greater".

use std::cmp::Ordering;

mod alpine;
mod debian;
mod generic;
mod maven;
mod pep440;
mod rpm;
mod rubygems;
mod semver;

/// A version ordering scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// SemVer 2.0 (cargo, npm, Go modules, Hex, Pub), with a leading `v` and a missing
    /// minor or patch accepted.
    Semver,
    /// Python's PEP 440.
    Pep440,
    /// Debian policy 5.6.12 / dpkg (`epoch:upstream-revision`, `~`).
    Debian,
    /// rpmvercmp with epoch, `~` and `^`.
    Rpm,
    /// Maven's `ComparableVersion`.
    Maven,
    /// Alpine's apk (`1.2.3a_rc1-r2`).
    Alpine,
    /// NuGet: SemVer 2.0 with up to four numbers and case-insensitive labels.
    Nuget,
    /// RubyGems' `Gem::Version`.
    RubyGems,
    /// Anything else: numeric and alphabetic runs (see [`generic`](self) rules).
    Generic,
}

impl Scheme {
    /// The scheme for a purl type (`pkg:<type>/...`).
    pub fn from_purl_type(ty: &str) -> Scheme {
        match ty.to_ascii_lowercase().as_str() {
            "cargo" | "npm" | "golang" | "hex" | "pub" | "swift" => Scheme::Semver,
            "pypi" => Scheme::Pep440,
            "deb" => Scheme::Debian,
            "rpm" => Scheme::Rpm,
            "maven" => Scheme::Maven,
            "apk" => Scheme::Alpine,
            "nuget" => Scheme::Nuget,
            "gem" => Scheme::RubyGems,
            _ => Scheme::Generic,
        }
    }

    /// The scheme for an OSV `ecosystem` (`"crates.io"`, `"PyPI"`, `"Debian:12"`, ...); the
    /// part after `:` (a release) does not change the rules.
    pub fn from_osv_ecosystem(eco: &str) -> Scheme {
        let base = eco.split(':').next().unwrap_or(eco).trim();
        match base.to_ascii_lowercase().as_str() {
            "crates.io" | "npm" | "go" | "hex" | "pub" | "swifturl" => Scheme::Semver,
            "pypi" => Scheme::Pep440,
            "debian" | "ubuntu" => Scheme::Debian,
            "almalinux" | "rocky linux" | "red hat" | "suse" | "opensuse" | "mageia" | "openeuler" | "photon os"
            | "azure linux" | "oracle linux" => Scheme::Rpm,
            "maven" => Scheme::Maven,
            "alpine" | "wolfi" | "chainguard" | "alpaquita" | "bellsoft hardened containers" => Scheme::Alpine,
            "nuget" => Scheme::Nuget,
            "rubygems" => Scheme::RubyGems,
            _ => Scheme::Generic,
        }
    }

    /// The scheme for a `vers:` URI scheme name (`semver`, `pypi`, `deb`, `rpm`, ...).
    pub fn from_vers_scheme(s: &str) -> Scheme {
        match s.to_ascii_lowercase().as_str() {
            "semver" | "npm" | "cargo" | "golang" | "hex" | "pub" | "swift" => Scheme::Semver,
            "pypi" => Scheme::Pep440,
            "deb" => Scheme::Debian,
            "rpm" => Scheme::Rpm,
            "maven" => Scheme::Maven,
            "apk" | "alpine" => Scheme::Alpine,
            "nuget" => Scheme::Nuget,
            "gem" | "gems" | "rubygems" => Scheme::RubyGems,
            _ => Scheme::Generic,
        }
    }

    /// The name of the scheme, as a `vers:` URI writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Semver => "semver",
            Scheme::Pep440 => "pypi",
            Scheme::Debian => "deb",
            Scheme::Rpm => "rpm",
            Scheme::Maven => "maven",
            Scheme::Alpine => "apk",
            Scheme::Nuget => "nuget",
            Scheme::RubyGems => "gem",
            Scheme::Generic => "generic",
        }
    }
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest version string considered; longer ones are not versions.
const MAX_VERSION_LEN: usize = 256;

/// Order `a` against `b` by `scheme`'s rules. `None` when either is not a valid version in
/// the scheme (never guess).
pub fn compare(scheme: Scheme, a: &str, b: &str) -> Option<Ordering> {
    if a.len() > MAX_VERSION_LEN || b.len() > MAX_VERSION_LEN {
        return None;
    }
    match scheme {
        Scheme::Semver => semver::compare(a, b, semver::Flavor::SemVer),
        Scheme::Nuget => semver::compare(a, b, semver::Flavor::NuGet),
        Scheme::Pep440 => pep440::compare(a, b),
        Scheme::Debian => debian::compare(a, b),
        Scheme::Rpm => rpm::compare(a, b),
        Scheme::Maven => maven::compare(a, b),
        Scheme::Alpine => alpine::compare(a, b),
        Scheme::RubyGems => rubygems::compare(a, b),
        Scheme::Generic => generic::compare(a, b),
    }
}

/// True when `v` is a valid version in `scheme`.
pub fn is_valid(scheme: Scheme, v: &str) -> bool {
    compare(scheme, v, v).is_some()
}

/// Compare two runs of ASCII digits by value, however long (leading zeros ignored).
pub(crate) fn cmp_digits(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Split `s` at the first byte where `pred` stops holding.
pub(crate) fn take_while(s: &str, pred: impl Fn(u8) -> bool) -> (&str, &str) {
    let n = s.bytes().take_while(|&c| pred(c)).count();
    s.split_at_checked(n).unwrap_or((s, ""))
}
