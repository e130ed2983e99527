//! Version ordering per scheme, `vers` ranges, purls and CPEs.
//!
//! Cases come from the schemes' own published tables (dpkg and rpm test suites, PEP 440's
//! examples, Maven's ComparableVersionTest, semver.org) and from other scanners' bug reports
//! named in issue #8.

use std::cmp::Ordering::{self, Equal, Greater, Less};

use caduceus_devices::cpe::Cpe;
use caduceus_devices::purl::Purl;
use caduceus_devices::vers::VersRange;
use caduceus_devices::version::{Scheme, compare};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Check `compare(a, b) == want` and the mirror `compare(b, a)`.
fn check(scheme: Scheme, a: &str, b: &str, want: Ordering) -> Result<(), String> {
    let got = compare(scheme, a, b);
    if got != Some(want) {
        return Err(format!("{scheme}: compare({a:?}, {b:?}) = {got:?}, want {want:?}"));
    }
    let back = compare(scheme, b, a);
    if back != Some(want.reverse()) {
        return Err(format!("{scheme}: compare({b:?}, {a:?}) = {back:?}, want {:?}", want.reverse()));
    }
    Ok(())
}

fn check_all(scheme: Scheme, cases: &[(&str, &str, Ordering)]) -> TestResult {
    let errors: Vec<String> = cases.iter().filter_map(|(a, b, o)| check(scheme, a, b, *o).err()).collect();
    if errors.is_empty() { Ok(()) } else { Err(errors.join("\n").into()) }
}

/// Every earlier entry is less than every later one.
fn check_ascending(scheme: Scheme, list: &[&str]) -> TestResult {
    let mut errors = Vec::new();
    for (i, a) in list.iter().enumerate() {
        for b in list.iter().skip(i + 1) {
            if let Err(e) = check(scheme, a, b, Less) {
                errors.push(e);
            }
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors.join("\n").into()) }
}

fn check_invalid(scheme: Scheme, list: &[&str]) -> TestResult {
    for v in list {
        if compare(scheme, v, "1.0").is_some() || compare(scheme, "1.0", v).is_some() {
            return Err(format!("{scheme}: {v:?} should be invalid").into());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- SemVer

#[test]
fn semver_spec_precedence() -> TestResult {
    // semver.org, item 11.
    check_ascending(
        Scheme::Semver,
        &[
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "2.0.0",
            "2.1.0",
            "2.1.1",
        ],
    )
}

#[test]
fn semver_build_metadata_and_leniencies() -> TestResult {
    check_all(
        Scheme::Semver,
        &[
            ("1.0.0+build.1", "1.0.0", Equal),
            ("1.0.0-alpha+001", "1.0.0-alpha+002", Equal),
            ("v1.2.3", "1.2.3", Equal),
            ("1.2", "1.2.0", Equal),
            ("1", "1.0.0", Equal),
            ("0.0.0-0", "0.0.0", Less),
            ("0.0.0-0", "0.0.1", Less),
            ("1.9.0", "1.10.0", Less),
            ("18446744073709551616.0.0", "18446744073709551615.0.0", Greater),
            ("v0.0.0-20191109021931-daa7c04131f5", "v0.0.1", Less),
            ("1.0.0-x-y-z.--", "1.0.0-x-y-z.-", Greater),
        ],
    )?;
    check_invalid(Scheme::Semver, &["01.2.3", "1.2.3-01", "1.2.3.4", "1.2.3-", "a.b.c", "1.2.3+", "", "1..2"])
}

#[test]
fn nuget_rules() -> TestResult {
    check_all(
        Scheme::Nuget,
        &[
            ("1.0.0.1", "1.0.0", Greater),
            ("1.0.0-Beta", "1.0.0-beta", Equal),
            ("1.0.0-alpha", "1.0.0", Less),
            ("1.01", "1.1", Equal),
            ("1.0.0.0", "1.0", Equal),
        ],
    )
}

// ---------------------------------------------------------------- PEP 440

#[test]
fn pep440_spec_ordering() -> TestResult {
    // PEP 440, "Summary of permitted suffixes and relative ordering".
    check_ascending(
        Scheme::Pep440,
        &[
            "1.dev0",
            "1.0.dev456",
            "1.0a1",
            "1.0a2.dev456",
            "1.0a12.dev456",
            "1.0a12",
            "1.0b1.dev456",
            "1.0b2",
            "1.0b2.post345.dev456",
            "1.0b2.post345",
            "1.0rc1.dev456",
            "1.0rc1",
            "1.0",
            "1.0+abc.5",
            "1.0+abc.7",
            "1.0+5",
            "1.0.post456.dev34",
            "1.0.post456",
            "1.0.15",
            "1.1.dev1",
        ],
    )
}

#[test]
fn pep440_normalisation_and_epochs() -> TestResult {
    check_all(
        Scheme::Pep440,
        &[
            ("1.0.0a1", "1.0.0-alpha.1", Equal),
            ("1.0.0a1", "1.0.0.alpha1", Equal),
            ("1.0-post1", "1.0.post1", Equal),
            ("1.0-1", "1.0.post1", Equal),
            ("1.0-r4", "1.0.post4", Equal),
            ("1.0rev4", "1.0.post4", Equal),
            ("v1.0", "1.0", Equal),
            ("1.0RC1", "1.0rc1", Equal),
            ("1.0c1", "1.0rc1", Equal),
            ("1.0-preview2", "1.0rc2", Equal),
            ("1.0pre2", "1.0rc2", Equal),
            ("1.0.dev", "1.0.dev0", Equal),
            ("1.0a", "1.0a0", Equal),
            ("1.0", "1.0.0", Equal),
            ("1.0_beta_2", "1.0b2", Equal),
            ("1.0+ubuntu-1", "1.0+ubuntu.1", Equal),
            ("1!1.0", "2.0", Greater),
            ("0!2.0", "2.0", Equal),
            ("2.0.1", "2.0.1.post1", Less),
            ("1.11", "1.9", Greater),
            ("1.0.dev1", "1.0a1", Less),
        ],
    )?;
    check_invalid(Scheme::Pep440, &["1.0+", "abc", "1.0.x", "1..0", "1.0-", "1.0+a..b", "!1.0"])
}

// ---------------------------------------------------------------- Debian

#[test]
fn debian_policy_and_dpkg_cases() -> TestResult {
    // Debian Policy 5.6.12: "~~" < "~~a" < "~" < "" < "a".
    check_ascending(Scheme::Debian, &["1.0~~", "1.0~~a", "1.0~", "1.0", "1.0a"])?;
    check_all(
        Scheme::Debian,
        &[
            ("1.0", "1.0", Equal),
            ("0:1.1-1", "1.1-1", Equal),
            ("1.0-1", "1.0-2", Less),
            ("2.0", "1.9", Greater),
            ("1:0.9", "2.0", Greater),
            ("1.2.3", "1.2.3a", Less),
            ("7.6p2-4", "7.6-0", Greater),
            ("1.0.3-3", "1.0-1", Greater),
            ("1.3", "1.2.2-2", Greater),
            ("1.3", "1.2.2", Greater),
            ("0-pre", "0-pre", Equal),
            ("0-pre", "0-pree", Less),
            ("1.1.6r2-2", "1.1.6r-1", Greater),
            ("2.6b2-1", "2.6b-2", Greater),
            ("0.4a6-2", "0.4-1", Greater),
            ("1:3.0.5-2", "1:3.0.5.1", Less),
            ("10.3", "10.3-1", Less),
            ("1.10", "1.9", Greater),
            ("1.001", "1.1", Equal),
            ("2.30-1", "2.3-1", Greater),
            // Trivy #1886 / #3576: epochs and backports.
            ("1:2.0-1", "3.0-1", Greater),
            ("1.2.3-1+deb12u1", "1.2.3-1", Greater),
            ("1.2.3-1+deb12u1", "1.2.3-2", Less),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1-1", "1.0-1", Less),
            ("2.4.7-1~bpo11+1", "2.4.7-1", Less),
            ("2.4.7-1~bpo11+1", "2.4.6-3", Greater),
            ("1:1.2.11.dfsg-2+deb11u2", "1:1.2.11.dfsg-2", Greater),
            ("5.10.0-21", "5.10.0-9", Greater),
        ],
    )?;
    check_invalid(Scheme::Debian, &["", "a1.0", "1.0-", ":1.0", "x:1.0", "1.0 beta", "1.0_1"])
}

// ---------------------------------------------------------------- RPM

#[test]
fn rpm_rpmvercmp_table() -> TestResult {
    // rpm's tests/rpmvercmp.at (the cases with a letter or digit in them).
    check_all(
        Scheme::Rpm,
        &[
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("2.0.1", "2.0.1", Equal),
            ("2.0", "2.0.1", Less),
            ("2.0.1a", "2.0.1a", Equal),
            ("2.0.1a", "2.0.1", Greater),
            ("5.5p1", "5.5p1", Equal),
            ("5.5p1", "5.5p2", Less),
            ("5.5p10", "5.5p10", Equal),
            ("5.5p1", "5.5p10", Less),
            ("10xyz", "10.1xyz", Less),
            ("xyz10", "xyz10", Equal),
            ("xyz10", "xyz10.1", Less),
            ("xyz.4", "xyz.4", Equal),
            ("xyz.4", "8", Less),
            ("xyz.4", "2", Less),
            ("5.5p2", "5.6p1", Less),
            ("5.6p1", "6.5p1", Less),
            ("6.0.rc1", "6.0", Greater),
            ("10b2", "10a1", Greater),
            ("10a2", "10b2", Less),
            ("1.0aa", "1.0aa", Equal),
            ("1.0a", "1.0aa", Less),
            ("10.0001", "10.0001", Equal),
            ("10.0001", "10.1", Equal),
            ("10.0001", "10.0039", Less),
            ("4.999.9", "5.0", Less),
            ("20101121", "20101122", Less),
            ("2_0", "2_0", Equal),
            ("2.0", "2_0", Equal),
            ("a", "a", Equal),
            ("a+", "a_", Equal),
            ("+a", "_a", Equal),
            ("1.0~rc1", "1.0~rc1", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0~rc1~git123", "1.0~rc1~git123", Equal),
            ("1.0~rc1~git123", "1.0~rc1", Less),
            ("1.0^", "1.0^", Equal),
            ("1.0^", "1.0", Greater),
            ("1.0^git1", "1.0", Greater),
            ("1.0^git1", "1.0^git2", Less),
            ("1.0^git1", "1.01", Less),
            ("1.0^20160101", "1.0.1", Less),
            ("1.0^20160101^git1", "1.0^20160101^git1", Equal),
            ("1.0^20160102", "1.0^20160101^git1", Greater),
            ("1.0~rc1^git1", "1.0~rc1", Greater),
            ("1.0^git1~pre", "1.0^git1~pre", Equal),
            ("1.0^git1", "1.0^git1~pre", Greater),
        ],
    )
}

#[test]
fn rpm_epoch_and_release() -> TestResult {
    check_all(
        Scheme::Rpm,
        &[
            ("1:1.0-1.el9", "2.0-1.el9", Greater),
            ("0:1.0-1", "1.0-1", Equal),
            ("1.0-1.el9", "1.0-2.el9", Less),
            ("1.0-1.el9_2", "1.0-1.el9", Greater),
            ("3.0.7-16.el9_2", "3.0.7-24.el9", Less),
            // A version without release matches every release of it.
            ("1.0", "1.0-5", Equal),
        ],
    )?;
    check_invalid(Scheme::Rpm, &["", "x:1.0", "1.0-", "1.0 1", "+"])
}

// ---------------------------------------------------------------- Maven

#[test]
fn maven_comparable_version_order() -> TestResult {
    // Maven's ComparableVersionTest, VERSIONS_QUALIFIER.
    check_ascending(
        Scheme::Maven,
        &[
            "1-alpha2snapshot",
            "1-alpha2",
            "1-alpha-123",
            "1-beta-2",
            "1-beta123",
            "1-m2",
            "1-m11",
            "1-rc",
            "1-cr2",
            "1-rc123",
            "1-SNAPSHOT",
            "1",
            "1-sp",
            "1-sp2",
            "1-sp123",
            "1-abc",
            "1-def",
            "1-pom-1",
            "1-1-snapshot",
            "1-1",
            "1-2",
            "1-123",
        ],
    )?;
    // VERSIONS_NUMBER.
    check_ascending(
        Scheme::Maven,
        &[
            "2.0", "2-1", "2.0.a", "2.0.0.a", "2.0.2", "2.0.123", "2.1.0", "2.1-a", "2.1b", "2.1-c", "2.1-1",
            "2.1.0.1", "2.2", "2.123", "11.a2", "11.a11", "11.b2", "11.b11", "11.m2", "11.m11", "11", "11.a", "11b",
            "11c", "11m",
        ],
    )?;
    // testVersionComparing.
    check_all(
        Scheme::Maven,
        &[
            ("1", "2", Less),
            ("1.5", "2", Less),
            ("1", "2.5", Less),
            ("1.0", "1.1", Less),
            ("1.1", "1.2", Less),
            ("1.0.0", "1.1", Less),
            ("1.0.1", "1.1", Less),
            ("1.1", "1.2.0", Less),
            ("1.0-alpha-1", "1.0", Less),
            ("1.0-alpha-1", "1.0-alpha-2", Less),
            ("1.0-alpha-1", "1.0-beta-1", Less),
            ("1.0-beta-1", "1.0-SNAPSHOT", Less),
            ("1.0-SNAPSHOT", "1.0", Less),
            ("1.0-alpha-1-SNAPSHOT", "1.0-alpha-1", Less),
            ("1.0", "1.0-1", Less),
            ("1.0-1", "1.0-2", Less),
            ("1.0.0", "1.0-1", Less),
            ("2.0-1", "2.0.1", Less),
            ("2.0.1-klm", "2.0.1-lmn", Less),
            ("2.0.1", "2.0.1-xyz", Less),
            ("2.0.1", "2.0.1-123", Less),
            ("2.0.1-xyz", "2.0.1-123", Less),
        ],
    )?;
    // testVersionsEqual (the ones this generation of ComparableVersion defines).
    check_all(
        Scheme::Maven,
        &[
            ("1", "1.0", Equal),
            ("1", "1.0.0", Equal),
            ("1.0", "1.0.0", Equal),
            ("1", "1-0", Equal),
            ("1", "1.0-0", Equal),
            ("1.0", "1.0-0", Equal),
            ("1ga", "1", Equal),
            ("1final", "1", Equal),
            ("1GA", "1", Equal),
            ("1FINAL", "1", Equal),
            ("1cr", "1rc", Equal),
            ("1Cr", "1Rc", Equal),
            ("1a1", "1alpha1", Equal),
            ("1b2", "1beta2", Equal),
            ("1m3", "1milestone3", Equal),
            ("1m3", "1MileStone3", Equal),
            ("1X", "1x", Equal),
            ("1-abcdefghijklmnopqrstuvwxyz", "1-ABCDEFGHIJKLMNOPQRSTUVWXYZ", Equal),
            // Documented qualifier order: alpha < beta < milestone < rc < snapshot < "" < sp.
            ("1.0-alpha", "1.0-beta", Less),
            ("1.0-beta", "1.0-milestone", Less),
            ("1.0-milestone", "1.0-rc", Less),
            ("1.0-rc", "1.0-snapshot", Less),
            ("1.0-snapshot", "1.0", Less),
            ("1.0", "1.0-sp", Less),
            ("2.17.0", "2.17.1", Less),
            ("2.15.0-rc2", "2.15.0", Less),
        ],
    )
}

// ---------------------------------------------------------------- Generic

#[test]
fn generic_letter_suffixes_from_scanner_bugs() -> TestResult {
    check_all(
        Scheme::Generic,
        &[
            // Dependency-Track #2803.
            ("2.8.123e", "2.8.75", Greater),
            // Grype #2844 (ntp 4.2.8p18).
            ("4.2.8p18", "4.2.8p15", Greater),
            ("4.2.8p18", "4.2.8p9", Greater),
            ("4.2.8p9", "4.2.8", Greater),
            ("4.2.8p18", "4.2.9", Less),
            ("4.2.8p18", "4.2.8p18", Equal),
        ],
    )?;
    check_ascending(Scheme::Generic, &["4.2.8", "4.2.8p9", "4.2.8p15", "4.2.8p18", "4.2.9", "4.3"])
}

#[test]
fn generic_prereleases_and_shapes() -> TestResult {
    check_ascending(
        Scheme::Generic,
        &["1.0dev1", "1.0alpha", "1.0-alpha2", "1.0beta1", "1.0b2", "1.0rc1", "1.0-RC2", "1.0", "1.0a", "1.0.1"],
    )?;
    check_all(
        Scheme::Generic,
        &[
            ("1.0", "1.0.0", Equal),
            ("v2.1", "2.1", Equal),
            ("V2.1", "2.1", Equal),
            ("2.1-final", "2.1", Equal),
            ("1.0.2a", "1.0.2", Greater),
            ("1.0.2a", "1.0.3", Less),
            ("1.0.2a", "1.0.2b", Less),
            ("10.0", "9.9", Greater),
            ("2024.01.15", "2023.12.31", Greater),
            ("1_2_3", "1.2.3", Equal),
            ("3.2", "3.2.0.0", Equal),
        ],
    )?;
    check_invalid(Scheme::Generic, &["", "abc", "1.0 beta", "latest", "-", ">=1.0", "1.0|2.0", ".1.0"])
}

// ---------------------------------------------------------------- Alpine, RubyGems

#[test]
fn alpine_apk_rules() -> TestResult {
    check_ascending(
        Scheme::Alpine,
        &[
            "1.0_alpha1",
            "1.0_beta1",
            "1.0_pre1",
            "1.0_rc1",
            "1.0",
            "1.0-r1",
            "1.0-r2",
            "1.0_p1",
            "1.0a",
            "1.0b",
            "1.0.1",
            "1.1",
        ],
    )?;
    check_all(
        Scheme::Alpine,
        &[("2.0_git20200101", "2.0", Greater), ("1.2.3-r10", "1.2.3-r9", Greater), ("3.0.8-r0", "3.0.10-r0", Less)],
    )?;
    check_invalid(Scheme::Alpine, &["", "a1", "1.0_foo", "1.0-r", "1..0"])
}

#[test]
fn rubygems_rules() -> TestResult {
    check_all(
        Scheme::RubyGems,
        &[
            ("1.0.a", "1.0", Less),
            ("1.0.0", "1", Equal),
            ("1.0.b1", "1.0.a2", Greater),
            ("1.0-1", "1.0", Less),
            ("1.9.3", "1.10.0", Less),
            ("2.0.0.rc1", "2.0.0", Less),
            ("2.0.0.rc1", "2.0.0.beta2", Greater),
        ],
    )
}

#[test]
fn scheme_names() {
    assert_eq!(Scheme::from_purl_type("cargo"), Scheme::Semver);
    assert_eq!(Scheme::from_purl_type("npm"), Scheme::Semver);
    assert_eq!(Scheme::from_purl_type("golang"), Scheme::Semver);
    assert_eq!(Scheme::from_purl_type("pypi"), Scheme::Pep440);
    assert_eq!(Scheme::from_purl_type("deb"), Scheme::Debian);
    assert_eq!(Scheme::from_purl_type("rpm"), Scheme::Rpm);
    assert_eq!(Scheme::from_purl_type("maven"), Scheme::Maven);
    assert_eq!(Scheme::from_purl_type("generic"), Scheme::Generic);
    assert_eq!(Scheme::from_purl_type("whatever"), Scheme::Generic);
    assert_eq!(Scheme::from_osv_ecosystem("crates.io"), Scheme::Semver);
    assert_eq!(Scheme::from_osv_ecosystem("PyPI"), Scheme::Pep440);
    assert_eq!(Scheme::from_osv_ecosystem("Debian:12"), Scheme::Debian);
    assert_eq!(Scheme::from_osv_ecosystem("Ubuntu:22.04:LTS"), Scheme::Debian);
    assert_eq!(Scheme::from_osv_ecosystem("AlmaLinux:9"), Scheme::Rpm);
    assert_eq!(Scheme::from_osv_ecosystem("Maven"), Scheme::Maven);
    assert_eq!(Scheme::from_osv_ecosystem("npm"), Scheme::Semver);
    assert_eq!(Scheme::from_osv_ecosystem("Go"), Scheme::Semver);
    assert_eq!(Scheme::from_osv_ecosystem("Alpine:v3.18"), Scheme::Alpine);
    assert_eq!(Scheme::from_vers_scheme("semver"), Scheme::Semver);
    assert_eq!(Scheme::from_vers_scheme("npm"), Scheme::Semver);
    assert_eq!(Scheme::from_vers_scheme("cargo"), Scheme::Semver);
    assert_eq!(Scheme::from_vers_scheme("pypi"), Scheme::Pep440);
    assert_eq!(Scheme::from_vers_scheme("deb"), Scheme::Debian);
    assert_eq!(Scheme::from_vers_scheme("rpm"), Scheme::Rpm);
    assert_eq!(Scheme::from_vers_scheme("maven"), Scheme::Maven);
    assert_eq!(Scheme::from_vers_scheme("generic"), Scheme::Generic);
    for s in [Scheme::Semver, Scheme::Pep440, Scheme::Debian, Scheme::Rpm, Scheme::Maven, Scheme::Generic] {
        assert_eq!(Scheme::from_vers_scheme(s.as_str()), s);
    }
}

// ---------------------------------------------------------------- vers

fn contains(vers: &str, version: &str) -> Result<Option<bool>, Box<dyn std::error::Error>> {
    Ok(VersRange::parse(vers)?.contains(version))
}

#[test]
fn vers_ranges() -> TestResult {
    let cases: &[(&str, &str, Option<bool>)] = &[
        ("vers:semver/>=1.0.0|<1.2.5", "1.1.0", Some(true)),
        ("vers:semver/>=1.0.0|<1.2.5", "1.0.0", Some(true)),
        ("vers:semver/>=1.0.0|<1.2.5", "1.2.5", Some(false)),
        ("vers:semver/>=1.0.0|<1.2.5", "0.9.9", Some(false)),
        ("vers:semver/>=1.0.0|<1.2.5", "not-a-version", None),
        ("vers:generic/<=3.2", "3.2", Some(true)),
        ("vers:generic/<=3.2", "3.1.9", Some(true)),
        ("vers:generic/<=3.2", "3.2.1", Some(false)),
        ("vers:generic/<4.2.9", "4.2.8p18", Some(true)),
        ("vers:generic/<4.2.8p15", "4.2.8p18", Some(false)),
        ("vers:all/*", "anything at all", Some(true)),
        ("vers:deb/>=1:2.0|!=1:2.1", "1:2.0", Some(true)),
        ("vers:deb/>=1:2.0|!=1:2.1", "1:2.1", Some(false)),
        ("vers:deb/>=1:2.0|!=1:2.1", "1:3.0", Some(true)),
        ("vers:deb/>=1:2.0|!=1:2.1", "2.5", Some(false)),
        ("vers:npm/1.2.3|>=2.0.0|<5.0.0", "1.2.3", Some(true)),
        ("vers:npm/1.2.3|>=2.0.0|<5.0.0", "3.0.0", Some(true)),
        ("vers:npm/1.2.3|>=2.0.0|<5.0.0", "1.5.0", Some(false)),
        ("vers:npm/1.2.3|>=2.0.0|<5.0.0", "5.0.0", Some(false)),
        ("vers:pypi/>=1.0|<2.0|>=3.0|<4.0", "3.5", Some(true)),
        ("vers:pypi/>=1.0|<2.0|>=3.0|<4.0", "2.5", Some(false)),
        ("vers:pypi/>=1.0|<2.0|>=3.0|<4.0", "1.0rc1", Some(false)),
        ("vers:pypi/<1.0|>=3.0", "0.5", Some(true)),
        ("vers:pypi/<1.0|>=3.0", "2.0", Some(false)),
        ("vers:pypi/<1.0|>=3.0", "7.0", Some(true)),
        ("vers:maven/>=2.0.0|<2.17.1", "2.15.0-rc2", Some(true)),
        ("vers:rpm/<1:1.1.1k-7.el8", "1:1.1.1k-6.el8", Some(true)),
        ("vers:gem/>=1.0|<=1.5", "1.3", Some(true)),
        ("vers:semver/ >= 1.0.0 | < 2.0.0 ", "1.5.0", Some(true)),
        ("vers:generic/=1.0|=2.0", "2.0.0", Some(true)),
    ];
    let mut errors = Vec::new();
    for (vers, version, want) in cases {
        match contains(vers, version) {
            Ok(got) if got == *want => {}
            Ok(got) => errors.push(format!("{vers} contains {version:?}: {got:?}, want {want:?}")),
            Err(e) => errors.push(format!("{vers}: {e}")),
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("\n").into());
    }
    let r = VersRange::parse("vers:deb/>=1:2.0|!=1:2.1")?;
    assert_eq!(r.scheme, Scheme::Debian);
    assert_eq!(r.to_string(), "vers:deb/>=1:2.0|!=1:2.1");
    assert!(VersRange::parse("vers:all/*")?.all);
    for bad in [
        "vers:semver/>=abc",
        "semver/1.0",
        "vers:semver/",
        "vers:semver/*|1.0",
        "vers:/1.0",
        "ver:semver/1.0",
        "vers:semver/<",
    ] {
        if VersRange::parse(bad).is_ok() {
            return Err(format!("{bad} should not parse").into());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- purl

/// (input, canonical form, type, namespace, name, version)
type PurlCase = (&'static str, &'static str, &'static str, Option<&'static str>, &'static str, Option<&'static str>);

#[test]
fn purl_spec_cases() -> TestResult {
    // (input, canonical, type, namespace, name, version)
    let cases: &[PurlCase] = &[
        (
            "pkg:maven/org.apache.commons/io",
            "pkg:maven/org.apache.commons/io",
            "maven",
            Some("org.apache.commons"),
            "io",
            None,
        ),
        (
            "pkg:maven/org.apache.xmlgraphics/batik-anim@1.9.1?packaging=sources",
            "pkg:maven/org.apache.xmlgraphics/batik-anim@1.9.1?packaging=sources",
            "maven",
            Some("org.apache.xmlgraphics"),
            "batik-anim",
            Some("1.9.1"),
        ),
        (
            "pkg:PYPI/Django_package@1.11.1.dev1",
            "pkg:pypi/django-package@1.11.1.dev1",
            "pypi",
            None,
            "django-package",
            Some("1.11.1.dev1"),
        ),
        (
            "pkg:deb/debian/curl@7.50.3-1?arch=i386&distro=jessie",
            "pkg:deb/debian/curl@7.50.3-1?arch=i386&distro=jessie",
            "deb",
            Some("debian"),
            "curl",
            Some("7.50.3-1"),
        ),
        (
            "pkg:docker/customer/dockerimage@sha256:244fd47e07d10?repository_url=gcr.io",
            "pkg:docker/customer/dockerimage@sha256:244fd47e07d10?repository_url=gcr.io",
            "docker",
            Some("customer"),
            "dockerimage",
            Some("sha256:244fd47e07d10"),
        ),
        (
            "pkg:GOLANG/google.golang.org/genproto#googleapis/api/annotations/",
            "pkg:golang/google.golang.org/genproto#googleapis/api/annotations",
            "golang",
            Some("google.golang.org"),
            "genproto",
            None,
        ),
        (
            "pkg:npm/%40angular/animation@12.3.1",
            "pkg:npm/%40angular/animation@12.3.1",
            "npm",
            Some("@angular"),
            "animation",
            Some("12.3.1"),
        ),
        ("pkg:cargo/rand@0.7.2", "pkg:cargo/rand@0.7.2", "cargo", None, "rand", Some("0.7.2")),
        (
            "pkg:gem/ruby-advisory-db-check@0.12.4",
            "pkg:gem/ruby-advisory-db-check@0.12.4",
            "gem",
            None,
            "ruby-advisory-db-check",
            Some("0.12.4"),
        ),
        (
            "pkg:GITHUB/Package-URL/purl-spec@244fd47e07d1004",
            "pkg:github/package-url/purl-spec@244fd47e07d1004",
            "github",
            Some("package-url"),
            "purl-spec",
            Some("244fd47e07d1004"),
        ),
        (
            "pkg:nuget/EnterpriseLibrary.Common@6.0.1304",
            "pkg:nuget/EnterpriseLibrary.Common@6.0.1304",
            "nuget",
            None,
            "EnterpriseLibrary.Common",
            Some("6.0.1304"),
        ),
        (
            "pkg:rpm/fedora/curl@7.50.3-1.fc25?arch=i386&distro=fedora-25",
            "pkg:rpm/fedora/curl@7.50.3-1.fc25?arch=i386&distro=fedora-25",
            "rpm",
            Some("fedora"),
            "curl",
            Some("7.50.3-1.fc25"),
        ),
        (
            "pkg://maven/org.apache.commons/io",
            "pkg:maven/org.apache.commons/io",
            "maven",
            Some("org.apache.commons"),
            "io",
            None,
        ),
        (
            "pkg:generic/openssl@1.1.10g?download_url=https://openssl.org/source/openssl-1.1.0g.tar.gz&checksum=sha256:de4d501267da",
            "pkg:generic/openssl@1.1.10g?checksum=sha256:de4d501267da&download_url=https://openssl.org/source/openssl-1.1.0g.tar.gz",
            "generic",
            None,
            "openssl",
            Some("1.1.10g"),
        ),
        (
            "pkg:generic/bitwarderl?vcs_url=git%2Bhttps://git.fsfe.org/dxtr/bitwarderl%40cc55108da32",
            "pkg:generic/bitwarderl?vcs_url=git%2Bhttps://git.fsfe.org/dxtr/bitwarderl%40cc55108da32",
            "generic",
            None,
            "bitwarderl",
            None,
        ),
    ];
    let mut errors = Vec::new();
    for (input, canonical, ty, ns, name, version) in cases {
        let p = match Purl::parse(input) {
            Ok(p) => p,
            Err(e) => {
                errors.push(format!("{input}: {e}"));
                continue;
            }
        };
        let got = (p.ty.as_str(), p.namespace.as_deref(), p.name.as_str(), p.version.as_deref());
        if got != (*ty, *ns, *name, *version) {
            errors.push(format!("{input}: parsed as {got:?}"));
        }
        if p.to_string() != *canonical {
            errors.push(format!("{input}: canonical {p}, want {canonical}"));
        }
        // Canonical form must re-parse to the same value.
        match Purl::parse(&p.to_string()) {
            Ok(q) if q == p => {}
            other => errors.push(format!("{input}: {} does not round-trip ({other:?})", p)),
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("\n").into());
    }
    // Exact canonical strings where the spec's test suite fixes them.
    assert_eq!(Purl::parse("pkg:PYPI/Django_package@1.11.1.dev1")?.to_string(), "pkg:pypi/django-package@1.11.1.dev1");
    assert_eq!(Purl::parse("pkg:npm/%40angular/animation@12.3.1")?.to_string(), "pkg:npm/%40angular/animation@12.3.1");
    assert_eq!(Purl::parse("pkg:npm/@angular/animation@12.3.1")?.to_string(), "pkg:npm/%40angular/animation@12.3.1");
    assert_eq!(
        Purl::parse("pkg:GOLANG/google.golang.org/genproto#/googleapis/api/annotations/")?.to_string(),
        "pkg:golang/google.golang.org/genproto#googleapis/api/annotations"
    );
    assert_eq!(
        Purl::parse("pkg:deb/debian/curl@7.50.3-1?distro=jessie&ARCH=i386")?.to_string(),
        "pkg:deb/debian/curl@7.50.3-1?arch=i386&distro=jessie"
    );
    assert_eq!(Purl::parse("pkg:maven/org.apache.commons/io?checksum=")?.qualifiers, Vec::<(String, String)>::new());
    // package_key: no version, normalised.
    assert_eq!(Purl::parse("pkg:pypi/Django_Package@1.0")?.package_key(), "pypi/django-package");
    assert_eq!(
        Purl::parse("pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1")?.package_key(),
        "maven/org.apache.logging.log4j/log4j-core"
    );
    assert_eq!(Purl::parse("pkg:cargo/tokio@1.0.0")?.package_key(), "cargo/tokio");
    assert_eq!(Purl::parse("pkg:deb/Debian/OpenSSL@3.0.11-1~deb12u2")?.package_key(), "deb/debian/openssl");
    // Invalid per the spec's test suite.
    for bad in [
        "EnterpriseLibrary.Common@6.0.1304",
        "pkg:EnterpriseLibrary.Common@6.0.1304",
        "pkg:maven/@1.3.4",
        "pkg:/1.2.3",
        "pkg:maven",
        "pkg:3pp/name",
        "pkg:maven/io@1.0",
        "pkg:generic/name?a=1&a=2",
        "pkg:cargo/rand@",
        "pkg:generic/na%ZZme",
    ] {
        if Purl::parse(bad).is_ok() {
            return Err(format!("{bad} should not parse").into());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- CPE

#[test]
fn cpe_formatted_strings_and_uris() -> TestResult {
    let c = Cpe::parse("cpe:2.3:a:microsoft:internet_explorer:8.0.6001:beta:*:*:*:*:*:*")?;
    assert_eq!((c.part.as_str(), c.vendor.as_str(), c.product.as_str()), ("a", "microsoft", "internet_explorer"));
    assert_eq!((c.version.as_str(), c.update.as_str()), ("8.0.6001", "beta"));
    assert!(!c.version_is_any());
    assert_eq!(c.vendor_product_key(), "microsoft:internet_explorer");

    let c = Cpe::parse(r"cpe:2.3:a:hp:insight_diagnostics:7.4.0.1570:-:*:*:online:win2003:x64:*")?;
    assert_eq!(
        (c.update.as_str(), c.sw_edition.as_str(), c.target_sw.as_str(), c.target_hw.as_str()),
        ("-", "online", "win2003", "x64")
    );

    let c = Cpe::parse(r"cpe:2.3:a:foo\:bar:big\$money_2010:1.0\:1:*:*:*:*:*:*:*")?;
    assert_eq!((c.vendor.as_str(), c.product.as_str(), c.version.as_str()), ("foo:bar", "big$money_2010", "1.0:1"));
    assert_eq!(Cpe::parse(&c.to_string())?, c);

    let c = Cpe::parse("cpe:2.3:o:Linux:Linux_Kernel:*:*:*:*:*:*:*:*")?;
    assert!(c.version_is_any());
    assert_eq!(c.vendor_product_key(), "linux:linux_kernel");
    assert!(Cpe::parse("cpe:2.3:h:philips:intellivue_mx40:-:*:*:*:*:*:*:*")?.version_is_any());

    // CPE 2.2 URIs.
    let c = Cpe::parse("cpe:/a:microsoft:internet_explorer:8.0.6001:beta")?;
    assert_eq!(
        (c.vendor.as_str(), c.version.as_str(), c.update.as_str(), c.edition.as_str()),
        ("microsoft", "8.0.6001", "beta", "*")
    );
    let c = Cpe::parse("cpe:/a:hp:insight_diagnostics:7.4.0.1570::~~online~win2003~x64~")?;
    assert_eq!(
        (c.update.as_str(), c.sw_edition.as_str(), c.target_sw.as_str(), c.target_hw.as_str(), c.other.as_str()),
        ("*", "online", "win2003", "x64", "*")
    );
    let c = Cpe::parse("cpe:/a:foo%7ebar:big%24money")?;
    assert_eq!((c.vendor.as_str(), c.product.as_str()), ("foo~bar", "big$money"));
    assert!(c.version_is_any());
    let c = Cpe::parse("cpe:/o:openbsd:openbsd")?;
    assert_eq!(c.vendor_product_key(), "openbsd:openbsd");

    for bad in [
        "cpe:2.3:a:vendor:product",
        "cpe:2.3:x:vendor:product:1.0:*:*:*:*:*:*:*",
        "cpe:2.2:a:vendor:product:1.0:*:*:*:*:*:*:*",
        "cpe:/a:v:p:1:2:3:4:5",
        "not a cpe",
        "cpe:2.3:a:vendor:product:1.0:*:*:*:*:*:*:*\\",
    ] {
        if Cpe::parse(bad).is_ok() {
            return Err(format!("{bad} should not parse").into());
        }
    }
    Ok(())
}

/// Pseudo-random strings over a version-ish alphabet: no parser panics, and every scheme's
/// order is antisymmetric and reflexive on what it accepts.
#[test]
fn random_inputs_never_panic_and_order_is_consistent() -> TestResult {
    const ALPHABET: &[u8] = b"0123456789..--__~~^^++::abcprvtxz%/@?#*|<=>!AB \\";
    let schemes = [
        Scheme::Semver,
        Scheme::Pep440,
        Scheme::Debian,
        Scheme::Rpm,
        Scheme::Maven,
        Scheme::Alpine,
        Scheme::Nuget,
        Scheme::RubyGems,
        Scheme::Generic,
    ];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut random_string = || -> String {
        let len = (next() % 12) as usize;
        (0..len)
            .map(|_| {
                let i = (next() % ALPHABET.len() as u64) as usize;
                char::from(ALPHABET.get(i).copied().unwrap_or(b'0'))
            })
            .collect()
    };
    for _ in 0..4000 {
        let (a, b) = (random_string(), random_string());
        for s in schemes {
            if compare(s, &a, &a).is_some_and(|o| o != Equal) {
                return Err(format!("{s}: {a:?} is not equal to itself").into());
            }
            if let (Some(x), Some(y)) = (compare(s, &a, &b), compare(s, &b, &a))
                && x != y.reverse()
            {
                return Err(format!("{s}: {a:?} vs {b:?} is not antisymmetric").into());
            }
        }
        let _ = Purl::parse(&format!("pkg:{a}/{b}"));
        let _ = Cpe::parse(&format!("cpe:2.3:{a}:{b}"));
        let _ = Cpe::parse(&format!("cpe:/{a}:{b}"));
        let _ = VersRange::parse(&format!("vers:generic/{a}|{b}"));
    }
    Ok(())
}
