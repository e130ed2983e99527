//! Caduceus network inputs and device baselines.
//!
//! Each input reads what hospitals already run or record — Zeek `conn.log`
//! ([`zeek`]), Suricata EVE JSON ([`eve`]), flow CSVs in the UNSW-NB15 and
//! CIC-IDS2017 layouts ([`flowcsv`]), packet captures ([`pcap`]) and device
//! telemetry over MQTT ([`mqtt`]) — and turns it into [`Flow`]s (or
//! telemetry records) that become spine events. The packet path recognises
//! HL7 v2 over MLLP ([`hl7`]) and DICOM associations ([`dicom`]) so that
//! rules can name message types, applications and AE titles. [`baseline`]
//! learns each device's normal peers, ports, protocols, volumes and hours
//! and says which baseline a flow broke.
//!
//! Every parser is bounded (line, packet, block, table and buffer caps) and
//! returns an error instead of panicking; no message content (HL7 segments
//! after MSH, DICOM data sets, MQTT payload text) is kept.

pub mod baseline;
pub mod dicom;
pub mod error;
pub mod eve;
pub mod flow;
pub mod flowcsv;
pub mod hl7;
pub mod mqtt;
pub mod pcap;
pub mod util;
pub mod zeek;

pub use error::NetError;
pub use flow::{AppInfo, Direction, Flow, NetFeature, Spread, TcpFlags, Transport};

/// Runs every parser of outside input over `bytes` with small caps: Zeek
/// (TSV and JSON), EVE, flow CSV, pcap/pcapng with flow assembly, raw
/// frames of each link type, the HL7 and DICOM stream scanners, an MQTT
/// payload, and the baselines over whatever flows came out. For the fuzz
/// target; nothing here may panic, whatever the bytes.
pub fn fuzz_input(bytes: &[u8]) {
    use pcap::{AssemblerOptions, FlowAssembler, PcapOptions};

    let mut flows: Vec<Flow> = Vec::new();
    let mut keep = |flow: Flow| {
        let _ = flow.feature("sload");
        let _ = flow.feature("Packet Length Std");
        let _ = flow.unsw_state();
        if let Some(back) = Flow::from_fields(&flow.to_fields()) {
            let _ = back.to_payload("caduceus");
        }
        if flows.len() < 256 {
            flows.push(flow);
        }
    };
    for flow in zeek::ZeekReader::with_max_line(bytes, 4096).take(1024).flatten() {
        keep(flow);
    }
    for record in eve::EveReader::with_max_line(bytes, 4096).take(1024).flatten() {
        match record {
            eve::EveRecord::Flow(flow) => keep(flow),
            eve::EveRecord::Alert(alert) => {
                let _ = alert.to_payload("suricata");
            }
        }
    }
    for row in flowcsv::FlowCsvReader::with_max_line(bytes, 4096).take(1024).flatten() {
        keep(row.flow);
    }
    let assembler = AssemblerOptions {
        max_flows: 64,
        sniff_bytes: 512,
        max_reorder_segments: 4,
        max_reorder_bytes: 4096,
        max_held_bytes: 64 * 1024,
        ..AssemblerOptions::default()
    };
    let opts = PcapOptions { assembler, max_packet_bytes: 16 * 1024, max_packets: 4096, max_flows_kept: 256 };
    if let Ok(summary) = pcap::read_pcap(bytes, &opts) {
        summary.flows.into_iter().for_each(&mut keep);
    }
    let mut live = FlowAssembler::new(assembler);
    for (i, link) in [1u16, 101, 113, 276, 0, 108].into_iter().enumerate() {
        for flow in live.push(i as f64, bytes, link) {
            keep(flow);
        }
    }
    live.flush().into_iter().for_each(&mut keep);

    let mut headers = Vec::new();
    let mut mllp = hl7::MllpScanner::default();
    for chunk in bytes.chunks(7) {
        mllp.feed(chunk, &mut headers);
    }
    let _ = hl7::parse_msh(bytes);
    let mut events = Vec::new();
    let mut dul = dicom::DulScanner::default();
    for chunk in bytes.chunks(5) {
        dul.feed(chunk, &mut events);
    }
    let telemetry = mqtt::Telemetry::from_publish("ward/device/x", bytes, 1, caduceus_core::Timestamp(0));
    let _ = telemetry.to_payload();

    let params = baseline::BaselineParams {
        learning_secs: 1.0,
        min_observations: 1,
        min_class_devices: 1,
        track: baseline::TrackDevices::All,
        max_devices: 32,
        max_peers: 8,
        max_alerted: 64,
        ..baseline::BaselineParams::default()
    };
    let mut baselines = baseline::Baselines::new(params, |ip| ip.is_ipv4().then(|| "v4".to_owned()));
    for flow in &flows {
        for alert in baselines.observe(flow) {
            let _ = alert.explanation();
        }
    }
}
