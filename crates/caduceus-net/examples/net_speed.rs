//! Rough speed of the network inputs, for the report (the bench harness
//! owns the real numbers): pcap reading with flow assembly, the assembler
//! alone, Zeek TSV and JSON lines, EVE lines, the UNSW-NB15 CSV, and the
//! baselines. Run with `cargo run --release -p caduceus-net --example net_speed`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use caduceus_net::baseline::{BaselineParams, Baselines};
use caduceus_net::eve::EveReader;
use caduceus_net::flowcsv::FlowCsvReader;
use caduceus_net::pcap::capture::write::{pcap_header, pcap_record};
use caduceus_net::pcap::{AssemblerOptions, FlowAssembler, PcapOptions, linktype, read_pcap};
use caduceus_net::zeek::ZeekReader;
use etherparse::PacketBuilder;

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

/// A TCP conversation of 10 packets (handshake, request, response, close),
/// HL7 on every 8th flow, and a UDP request/response for every 4th.
fn traffic(flows: u32) -> Vec<(f64, Vec<u8>)> {
    let mut out = Vec::new();
    let hl7 = b"\x0bMSH|^~\\&|ADT1|FAC|LAB|FAC|2024||ADT^A01^ADT_A01|1|P|2.5\rPID|1||X\r\x1c\r";
    for i in 0..flows {
        let client = [10, 1, (i >> 8) as u8, i as u8];
        let server = [10, 0, 1, (i % 7) as u8 + 1];
        let port = 20000 + (i % 40000) as u16;
        let t = f64::from(i) * 0.001;
        let payload: &[u8] = if i % 8 == 0 { hl7 } else { b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" };
        let reply = [b'x'; 600];
        let c = |seq: u32| PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(client, server, 64).tcp(port, 2575, seq, 64240);
        let s = |seq: u32| PacketBuilder::ethernet2(MAC_B, MAC_A).ipv4(server, client, 64).tcp(2575, port, seq, 65535);
        let plen = payload.len() as u32;
        let frames: Vec<(f64, Vec<u8>)> = vec![
            (t, write(c(1000).syn(), &[])),
            (t + 0.0001, write(s(5000).syn().ack(1001), &[])),
            (t + 0.0002, write(c(1001).ack(5001), &[])),
            (t + 0.0003, write(c(1001).psh().ack(5001), payload)),
            (t + 0.0004, write(s(5001).ack(1001 + plen), &[])),
            (t + 0.0005, write(s(5001).psh().ack(1001 + plen), &reply)),
            (t + 0.0006, write(c(1001 + plen).ack(5601), &[])),
            (t + 0.0007, write(c(1001 + plen).fin().ack(5601), &[])),
            (t + 0.0008, write(s(5601).fin().ack(1002 + plen), &[])),
            (t + 0.0009, write(c(1002 + plen).ack(5602), &[])),
        ];
        out.extend(frames);
        if i % 4 == 0 {
            let mut q = Vec::new();
            PacketBuilder::ethernet2(MAC_A, MAC_B)
                .ipv4(client, [10, 0, 0, 53], 64)
                .udp(port, 53)
                .write(&mut q, &[0u8; 31])
                .unwrap();
            out.push((t + 0.0001, q));
            let mut r = Vec::new();
            PacketBuilder::ethernet2(MAC_B, MAC_A)
                .ipv4([10, 0, 0, 53], client, 64)
                .udp(53, port)
                .write(&mut r, &[0u8; 47])
                .unwrap();
            out.push((t + 0.0002, r));
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

fn write(b: etherparse::PacketBuilderStep<etherparse::TcpHeader>, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    b.write(&mut f, payload).unwrap();
    f
}

fn rate(what: &str, count: u64, unit: &str, start: Instant) {
    let secs = start.elapsed().as_secs_f64();
    println!("{what:<44} {count:>9} {unit} in {secs:>6.3} s = {:>12.0} {unit}/s", count as f64 / secs);
}

fn main() {
    let frames = traffic(50_000);
    let mut file = pcap_header(linktype::ETHERNET);
    for (ts, f) in &frames {
        pcap_record(&mut file, 1_700_000_000.0 + ts, f);
    }
    println!("capture: {} packets, {:.1} MB", frames.len(), file.len() as f64 / 1e6);

    let start = Instant::now();
    let summary = read_pcap(&file[..], &PcapOptions::default()).unwrap();
    rate("read_pcap (container + assembly)", summary.packets, "packets", start);
    assert_eq!(summary.flows.len(), 50_000 + 12_500);
    assert_eq!(summary.flows.iter().filter(|f| f.app_proto.as_deref() == Some("hl7")).count(), 6_250);

    let mut asm = FlowAssembler::new(AssemblerOptions::default());
    let mut out = Vec::new();
    let start = Instant::now();
    for (ts, f) in &frames {
        asm.push_into(1_700_000_000.0 + ts, f, linktype::ETHERNET, &mut out);
    }
    out.extend(asm.flush());
    rate("FlowAssembler::push_into (frames in memory)", frames.len() as u64, "packets", start);

    // Zeek: the two lines of Zeek's documentation trace, repeated.
    let header = "#separator \\x09\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\n";
    let mut tsv = String::from(header);
    let mut json = String::new();
    for i in 0..200_000u32 {
        tsv.push_str(&format!("1591367999.{:06}\tCLqEx41jYPOdfHF586\t192.168.4.76\t{}\t31.3.245.133\t80\ttcp\thttp\t0.254115\t77\t295\tSF\t-\t-\t0\tShADadFf\t6\t397\t4\t511\t-\n", i % 1_000_000, 1024 + i % 60000));
        json.push_str(&format!("{{\"ts\":1591367999.{:06},\"uid\":\"C5bLoe2Mvxqhawzqqd\",\"id.orig_h\":\"192.168.4.76\",\"id.orig_p\":{},\"id.resp_h\":\"31.3.245.133\",\"id.resp_p\":80,\"proto\":\"tcp\",\"service\":\"http\",\"duration\":0.25411510467529297,\"orig_bytes\":77,\"resp_bytes\":295,\"conn_state\":\"SF\",\"missed_bytes\":0,\"history\":\"ShADadFf\",\"orig_pkts\":6,\"orig_ip_bytes\":397,\"resp_pkts\":4,\"resp_ip_bytes\":511}}\n", i % 1_000_000, 1024 + i % 60000));
    }
    let start = Instant::now();
    let n = ZeekReader::new(tsv.as_bytes()).filter(Result::is_ok).count();
    rate("Zeek conn.log TSV", n as u64, "lines", start);
    let start = Instant::now();
    let n = ZeekReader::new(json.as_bytes()).filter(Result::is_ok).count();
    rate("Zeek conn.log JSON", n as u64, "lines", start);

    let mut eve = String::new();
    for i in 0..200_000u32 {
        eve.push_str(&format!("{{\"timestamp\":\"2015-10-20T11:24:46.195059-0600\",\"flow_id\":{i},\"event_type\":\"flow\",\"src_ip\":\"10.10.10.30\",\"src_port\":{},\"dest_ip\":\"10.10.10.10\",\"dest_port\":102,\"proto\":\"TCP\",\"flow\":{{\"pkts_toserver\":3,\"pkts_toclient\":8,\"bytes_toserver\":186,\"bytes_toclient\":480,\"start\":\"2015-10-20T11:24:10.230829-0600\",\"end\":\"2015-10-20T11:24:46.195059-0600\",\"age\":36,\"state\":\"closed\",\"reason\":\"shutdown\",\"alerted\":false}},\"tcp\":{{\"tcp_flags\":\"16\",\"tcp_flags_ts\":\"16\",\"tcp_flags_tc\":\"16\",\"syn\":true,\"rst\":true,\"ack\":true,\"state\":\"closed\"}}}}\n", 1024 + i % 60000));
    }
    let start = Instant::now();
    let n = EveReader::new(eve.as_bytes()).filter(Result::is_ok).count();
    rate("Suricata EVE flow events", n as u64, "lines", start);

    let unsw = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/unsw-nb15/UNSW_NB15_training-set.csv"
    ))
    .expect("UNSW-NB15 CSV in shared/data");
    let start = Instant::now();
    let n = FlowCsvReader::new(&unsw[..]).filter(Result::is_ok).count();
    rate("UNSW-NB15 CSV rows", n as u64, "rows", start);

    let mut baselines = Baselines::new(BaselineParams::default(), |_| None);
    let start = Instant::now();
    let mut alerts = 0;
    for flow in &summary.flows {
        alerts += baselines.observe(flow).len();
    }
    rate("Baselines::observe", summary.flows.len() as u64, "flows", start);
    println!("baseline alerts during learning: {alerts}, devices: {}", baselines.state().device_count());
}
