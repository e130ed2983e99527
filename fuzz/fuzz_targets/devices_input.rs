//! The smaller outside inputs of the device inventory: the first byte picks the reader, the
//! rest is its input. CVSS vectors, EPSS/KEV enrichment files, inventory CSVs, Cargo.lock
//! files, purls, CPEs, `vers:` ranges and versions of every scheme. None may panic, and
//! version ordering must be antisymmetric.
#![no_main]

use caduceus_devices::cpe::Cpe;
use caduceus_devices::purl::Purl;
use caduceus_devices::vers::VersRange;
use caduceus_devices::version::{Scheme, compare};
use caduceus_devices::{cvss, enrich, inventory, lockfile};
use libfuzzer_sys::fuzz_target;

const SCHEMES: [Scheme; 9] = [
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

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    match selector % 6 {
        0 => cvss::fuzz_cvss(rest),
        1 => enrich::fuzz_enrich(rest),
        2 => inventory::fuzz_inventory(rest),
        3 => lockfile::fuzz_lockfile(rest),
        4 => {
            // One identifier per line: each read as a purl, a CPE and a `vers:` range; the
            // range then asked about the other lines.
            let text = String::from_utf8_lossy(rest);
            let lines: Vec<&str> = text.lines().take(16).collect();
            for line in &lines {
                if let Ok(purl) = Purl::parse(line) {
                    let _ = purl.package_key();
                }
                if let Ok(cpe) = Cpe::parse(line) {
                    let _ = cpe.vendor_product_key();
                    let _ = cpe.version_is_any();
                }
                if let Ok(range) = VersRange::parse(line) {
                    for other in &lines {
                        let _ = range.contains(other);
                    }
                }
            }
        }
        _ => {
            // Two versions, compared in every scheme both ways.
            let text = String::from_utf8_lossy(rest);
            let (a, b) = text.split_once('\n').unwrap_or((&text, ""));
            for scheme in SCHEMES {
                let forward = compare(scheme, a, b);
                let backward = compare(scheme, b, a);
                assert_eq!(forward, backward.map(std::cmp::Ordering::reverse), "{scheme:?}: {a:?} vs {b:?}");
                if let Some(same) = compare(scheme, a, a) {
                    assert_eq!(same, std::cmp::Ordering::Equal, "{scheme:?}: {a:?} vs itself");
                }
            }
        }
    }
});
