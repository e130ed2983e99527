//! Packet captures: the container reader ([`capture`]), flow assembly with
//! application recognition ([`assemble`]) and [`read_pcap`], which runs a
//! whole file through both.

mod app;
pub mod assemble;
pub mod capture;

use std::io::Read;

pub use assemble::{AssemblerOptions, AssemblerStats, FlowAssembler, linktype};
pub use capture::{CaptureFormat, CaptureReader, DEFAULT_MAX_PACKET_BYTES, RawPacket};

use crate::error::NetError;
use crate::flow::Flow;

/// Limits of [`read_pcap`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PcapOptions {
    pub assembler: AssemblerOptions,
    /// Largest captured packet accepted.
    pub max_packet_bytes: usize,
    /// Most packets read; the rest of the file is left unread.
    pub max_packets: u64,
    /// Most flows returned; later ones are counted, not kept.
    pub max_flows_kept: usize,
}

impl Default for PcapOptions {
    fn default() -> Self {
        Self {
            assembler: AssemblerOptions::default(),
            max_packet_bytes: DEFAULT_MAX_PACKET_BYTES,
            max_packets: 100_000_000,
            max_flows_kept: 1_000_000,
        }
    }
}

/// What a capture file held.
#[derive(Clone, Debug)]
pub struct PcapSummary {
    pub format: CaptureFormat,
    /// The flows, in the order they completed.
    pub flows: Vec<Flow>,
    /// Packets read from the file.
    pub packets: u64,
    /// Packets not in any flow (non-IP, malformed, fragments, unknown link type).
    pub skipped: u64,
    /// Flows past `max_flows_kept`, counted only.
    pub flows_dropped: u64,
    /// The file ended inside a record.
    pub truncated: bool,
    /// `max_packets` was reached before the end of the file.
    pub packet_cap_reached: bool,
    pub assembler: AssemblerStats,
}

/// Reads a whole pcap or pcapng stream into flows.
pub fn read_pcap<R: Read>(input: R, opts: &PcapOptions) -> Result<PcapSummary, NetError> {
    let mut reader = CaptureReader::new(input, opts.max_packet_bytes)?;
    let mut assembler = FlowAssembler::new(opts.assembler);
    let mut flows = Vec::new();
    let mut dropped = 0u64;
    let mut done = Vec::new();
    let mut packets = 0u64;
    let mut cap_reached = false;
    let mut keep = |done: &mut Vec<Flow>, flows: &mut Vec<Flow>| {
        for flow in done.drain(..) {
            if flows.len() < opts.max_flows_kept {
                flows.push(flow);
            } else {
                dropped += 1;
            }
        }
    };
    while let Some(packet) = reader.next_packet()? {
        if packets >= opts.max_packets {
            cap_reached = true;
            break;
        }
        packets += 1;
        assembler.push_into(packet.ts, packet.data, packet.linktype, &mut done);
        keep(&mut done, &mut flows);
    }
    done.extend(assembler.flush());
    keep(&mut done, &mut flows);
    let stats = assembler.stats().clone();
    Ok(PcapSummary {
        format: reader.format(),
        flows,
        packets,
        skipped: stats.non_ip + stats.unsupported_linktype + stats.malformed + stats.fragments,
        flows_dropped: dropped,
        truncated: reader.truncated(),
        packet_cap_reached: cap_reached,
        assembler: stats,
    })
}
