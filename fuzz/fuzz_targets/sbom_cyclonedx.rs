//! CycloneDX SBOMs, JSON and XML (with the NTIA report and the component graph): outside input that must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    caduceus_devices::sbom::fuzz_cyclonedx(data);
});
