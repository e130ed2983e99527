//! Events arrive from outside (the API, later sensors and peers): parsing
//! must never panic, and anything accepted must survive the canonical round
//! trip unchanged, with a stable digest.
#![no_main]

use caduceus_core::SecurityEvent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = SecurityEvent::from_json_slice(data) else { return };
    let canonical = event.canonical_bytes().expect("an accepted event canonicalises");
    let again = SecurityEvent::from_json_slice(&canonical).expect("the canonical form parses");
    assert_eq!(again, event);
    assert_eq!(again.canonical_bytes().expect("canonicalises"), canonical);
    assert_eq!(again.digest().expect("digest"), event.digest().expect("digest"));
});
