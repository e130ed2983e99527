//! CSAF 2.0 documents (JSON, through the 6.1 mandatory tests and into the normalised advisory): outside input that must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    caduceus_devices::csaf::fuzz_csaf(data);
});
