//! Outside input to the network sensors: Zeek conn.log (TSV and JSON),
//! Suricata EVE, UNSW-NB15/CIC-IDS2017 flow CSV, pcap and pcapng files and
//! raw frames of each link type (through flow assembly and the HL7/DICOM
//! scanners), MQTT telemetry payloads, and the device baselines fed with
//! whatever flows come out. None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    caduceus_net::fuzz_input(data);
});
