//! SPDX SBOMs, JSON and tag-value: outside input that must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    caduceus_devices::sbom::fuzz_spdx(data);
});
