//! OSV advisories, JSON and YAML: outside input that must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    caduceus_devices::osv::fuzz_osv(data);
});
