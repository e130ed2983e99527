//! Captures written by the test, byte by byte, with real packets built by
//! etherparse's PacketBuilder, read back through `read_pcap`:
//!
//! - Zeek's documentation trace `tm1t.pcap` (a DNS lookup and an HTTP GET),
//!   rebuilt from its tcpdump listing; the flows must agree with the
//!   conn.log Zeek wrote for that trace.
//! - HL7 ADT^A01 over MLLP to an interface engine, with its ACK (pcapng,
//!   VLAN-tagged Ethernet, a segment out of order, a retransmission).
//! - A DICOM association with C-ECHO and a C-MOVE to a foreign AE title
//!   (IPv6, raw-IP link type, big-endian nanosecond pcap), and a rejected one.
//! - ICMP echo and syslog over Linux cooked capture.
//!
//! The capture writers here are the test's own, not the crate's, so that the
//! reader is checked against an independent writer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use caduceus_core::Payload;
use caduceus_net::dicom::build;
use caduceus_net::hl7::mllp_frame;
use caduceus_net::pcap::{AssemblerOptions, CaptureFormat, FlowAssembler, PcapOptions, linktype, read_pcap};
use caduceus_net::zeek::ZeekReader;
use caduceus_net::{AppInfo, Flow, NetFeature, Transport};
use etherparse::{PacketBuilder, VlanId};

// ---------------------------------------------------------------- writers

/// A classic pcap file: byte order and timestamp resolution as asked.
struct PcapWriter {
    out: Vec<u8>,
    big: bool,
    nanos: bool,
}

impl PcapWriter {
    fn new(linktype: u16, big: bool, nanos: bool) -> Self {
        let magic: u32 = if nanos { 0xA1B2_3C4D } else { 0xA1B2_C3D4 };
        let mut w = Self { out: Vec::new(), big, nanos };
        w.u32(magic);
        w.u16(2);
        w.u16(4);
        w.u32(0);
        w.u32(0);
        w.u32(65_535);
        w.u32(u32::from(linktype));
        w
    }
    fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&if self.big { v.to_be_bytes() } else { v.to_le_bytes() });
    }
    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&if self.big { v.to_be_bytes() } else { v.to_le_bytes() });
    }
    fn packet(&mut self, secs: u32, frac: u32, data: &[u8]) {
        assert!(frac < if self.nanos { 1_000_000_000 } else { 1_000_000 });
        self.u32(secs);
        self.u32(frac);
        self.u32(data.len() as u32);
        self.u32(data.len() as u32);
        self.out.extend_from_slice(data);
    }
}

/// A little-endian pcapng file with one interface (microsecond default
/// resolution) and enhanced packet blocks.
struct PcapNgWriter {
    out: Vec<u8>,
}

impl PcapNgWriter {
    fn block(&mut self, kind: u32, body: &[u8]) {
        let padded = body.len().div_ceil(4) * 4;
        let total = (padded + 12) as u32;
        self.out.extend_from_slice(&kind.to_le_bytes());
        self.out.extend_from_slice(&total.to_le_bytes());
        self.out.extend_from_slice(body);
        self.out.resize(self.out.len() + padded - body.len(), 0);
        self.out.extend_from_slice(&total.to_le_bytes());
    }
    fn new(linktype: u16) -> Self {
        let mut w = Self { out: Vec::new() };
        let mut shb = 0x1A2B_3C4Du32.to_le_bytes().to_vec();
        shb.extend_from_slice(&[1, 0, 0, 0]);
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        w.block(0x0A0D_0D0A, &shb);
        let mut idb = linktype.to_le_bytes().to_vec();
        idb.extend_from_slice(&[0, 0]);
        idb.extend_from_slice(&0u32.to_le_bytes());
        w.block(1, &idb);
        // A name resolution block the reader must skip.
        w.block(4, &[0, 0, 0, 0]);
        w
    }
    fn packet(&mut self, micros: u64, data: &[u8]) {
        let mut body = 0u32.to_le_bytes().to_vec();
        body.extend_from_slice(&((micros >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(micros as u32).to_le_bytes());
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
        self.block(6, &body);
    }
}

const CLIENT_MAC: [u8; 6] = [0x08, 0x00, 0x27, 0x4a, 0x1b, 0x11];
const GATEWAY_MAC: [u8; 6] = [0xfc, 0xec, 0xda, 0x49, 0xe0, 0x10];

fn ts_of(fraction: &str) -> (u32, u32) {
    // 14:39:59.xxxxxx on 2020-06-05 (UTC) is 1591367999.xxxxxx.
    (1_591_367_999, fraction.parse().unwrap())
}

fn tcp_ts_option(val: u32, ecr: u32) -> Vec<u8> {
    let mut o = vec![0x01, 0x01, 0x08, 0x0a];
    o.extend_from_slice(&val.to_be_bytes());
    o.extend_from_slice(&ecr.to_be_bytes());
    o
}

fn syn_options(mss: u16, val: u32, ecr: u32, wscale: u8) -> Vec<u8> {
    let mut o = vec![0x02, 0x04];
    o.extend_from_slice(&mss.to_be_bytes());
    o.extend_from_slice(&[0x04, 0x02, 0x08, 0x0a]);
    o.extend_from_slice(&val.to_be_bytes());
    o.extend_from_slice(&ecr.to_be_bytes());
    o.extend_from_slice(&[0x01, 0x03, 0x03, wscale]);
    o
}

// ---------------------------------------------------------------- tm1t

/// DNS query for testmyids.com (31 bytes).
fn dns_query(id: u16, qtype: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    q.extend_from_slice(b"\x09testmyids\x03com\x00");
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    q
}

/// The tm1t.pcap trace, as tcpdump lists it in Zeek's "Log Formats" page:
/// same addresses, ports, sequence numbers, windows, options, lengths and
/// times; payloads rebuilt to the listed lengths (the curl request is the
/// real one, 77 bytes).
fn tm1t() -> Vec<u8> {
    let client = [192, 168, 4, 76];
    let resolver = [192, 168, 4, 1];
    let server = [31, 3, 245, 133];
    let mut w = PcapWriter::new(linktype::ETHERNET, false, false);
    let put = |w: &mut PcapWriter, at: &str, builder: PacketBuilderStepAny, payload: &[u8]| {
        let (s, f) = ts_of(at);
        let mut frame = Vec::new();
        builder.write(&mut frame, payload);
        w.packet(s, f, &frame);
    };
    let out = |src, dst, ttl| PacketBuilder::ethernet2(CLIENT_MAC, GATEWAY_MAC).ipv4(src, dst, ttl);
    let back = |src, dst, ttl| PacketBuilder::ethernet2(GATEWAY_MAC, CLIENT_MAC).ipv4(src, dst, ttl);

    // DNS: A and AAAA queries, then the answers (94 and 47 bytes).
    let mut aaaa_answer = dns_query(8555, 28);
    aaaa_answer[2] = 0x81;
    aaaa_answer[3] = 0x80;
    aaaa_answer[9] = 1; // one authority record
    aaaa_answer.resize(94, 0);
    let mut a_answer = dns_query(19671, 1);
    a_answer[2] = 0x81;
    a_answer[3] = 0x80;
    a_answer[7] = 1;
    a_answer.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 31, 3, 245, 133]);
    assert_eq!(a_answer.len(), 47);
    put(&mut w, "305988", PacketBuilderStepAny::Udp(out(client, resolver, 64).udp(36844, 53)), &dns_query(19671, 1));
    put(&mut w, "306059", PacketBuilderStepAny::Udp(out(client, resolver, 64).udp(36844, 53)), &dns_query(8555, 28));
    put(&mut w, "354577", PacketBuilderStepAny::Udp(back(resolver, client, 64).udp(53, 36844)), &aaaa_answer);
    put(&mut w, "372840", PacketBuilderStepAny::Udp(back(resolver, client, 64).udp(53, 36844)), &a_answer);

    // HTTP.
    let (c_isn, s_isn) = (3_723_031_366u32, 2_993_782_376u32);
    let request = b"GET / HTTP/1.1\r\nHost: testmyids.com\r\nUser-Agent: curl/7.47.0\r\nAccept: */*\r\n\r\n";
    assert_eq!(request.len(), 77);
    let body = b"uid=0(root) gid=0(root) groups=0(root)\n";
    let mut head = String::from(
        "HTTP/1.1 200 OK\r\nServer: nginx/1.0.15\r\nDate: Fri, 05 Jun 2020 14:39:59 GMT\r\nContent-Type: text/plain\r\nContent-Length: 39\r\nConnection: keep-alive\r\n",
    );
    let pad = 295 - body.len() - head.len() - "X-Pad: \r\n\r\n".len();
    head.push_str(&format!("X-Pad: {}\r\n\r\n", "a".repeat(pad)));
    let response = [head.as_bytes(), body].concat();
    assert_eq!(response.len(), 295);

    let c = |seq: u32, win: u16| out(client, server, 64).tcp(46378, 80, seq, win);
    let s = |seq: u32, win: u16| back(server, client, 52).tcp(80, 46378, seq, win);
    let tcp = PacketBuilderStepAny::Tcp;
    put(
        &mut w,
        "430166",
        tcp(c(c_isn, 65535).syn().options_raw(&syn_options(1460, 3_137_978_796, 0, 11)).unwrap()),
        &[],
    );
    put(
        &mut w,
        "512232",
        tcp(s(s_isn, 28960)
            .syn()
            .ack(c_isn + 1)
            .options_raw(&syn_options(1460, 346_747_623, 3_137_978_796, 7))
            .unwrap()),
        &[],
    );
    put(
        &mut w,
        "512284",
        tcp(c(c_isn + 1, 32).ack(s_isn + 1).options_raw(&tcp_ts_option(3_137_978_878, 346_747_623)).unwrap()),
        &[],
    );
    put(
        &mut w,
        "512593",
        tcp(c(c_isn + 1, 32).psh().ack(s_isn + 1).options_raw(&tcp_ts_option(3_137_978_878, 346_747_623)).unwrap()),
        request,
    );
    put(
        &mut w,
        "600488",
        tcp(s(s_isn + 1, 227).ack(c_isn + 78).options_raw(&tcp_ts_option(346_747_711, 3_137_978_878)).unwrap()),
        &[],
    );
    put(
        &mut w,
        "604000",
        tcp(s(s_isn + 1, 227).psh().ack(c_isn + 78).options_raw(&tcp_ts_option(346_747_713, 3_137_978_878)).unwrap()),
        &response,
    );
    put(
        &mut w,
        "604020",
        tcp(c(c_isn + 78, 33).ack(s_isn + 296).options_raw(&tcp_ts_option(3_137_978_970, 346_747_713)).unwrap()),
        &[],
    );
    put(
        &mut w,
        "604493",
        tcp(c(c_isn + 78, 33).fin().ack(s_isn + 296).options_raw(&tcp_ts_option(3_137_978_970, 346_747_713)).unwrap()),
        &[],
    );
    put(
        &mut w,
        "684281",
        tcp(s(s_isn + 296, 227).fin().ack(c_isn + 79).options_raw(&tcp_ts_option(346_747_796, 3_137_978_970)).unwrap()),
        &[],
    );
    put(
        &mut w,
        "684346",
        tcp(c(c_isn + 79, 33).ack(s_isn + 297).options_raw(&tcp_ts_option(3_137_979_050, 346_747_796)).unwrap()),
        &[],
    );
    w.out
}

/// The two builder steps the tests write.
enum PacketBuilderStepAny {
    Udp(etherparse::PacketBuilderStep<etherparse::UdpHeader>),
    Tcp(etherparse::PacketBuilderStep<etherparse::TcpHeader>),
}

impl PacketBuilderStepAny {
    fn write(self, out: &mut Vec<u8>, payload: &[u8]) {
        match self {
            Self::Udp(b) => b.write(out, payload).unwrap(),
            Self::Tcp(b) => b.write(out, payload).unwrap(),
        }
    }
}

/// conn.log Zeek wrote for tm1t.pcap (its documentation, TSV).
const TM1T_CONN: &str = "#separator \\x09\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\n\
1591367999.305988\tCazOhH2qDUiJTWMCY\t192.168.4.76\t36844\t192.168.4.1\t53\tudp\tdns\t0.066852\t62\t141\tSF\t-\t-\t0\tDd\t2\t118\t2\t197\t-\n\
1591367999.430166\tCLqEx41jYPOdfHF586\t192.168.4.76\t46378\t31.3.245.133\t80\ttcp\thttp\t0.254115\t77\t295\tSF\t-\t-\t0\tShADadFf\t6\t397\t4\t511\t-\n";

#[test]
fn zeek_documentation_trace_gives_zeeks_conn_log() {
    let summary = read_pcap(&tm1t()[..], &PcapOptions::default()).unwrap();
    assert_eq!(summary.format, CaptureFormat::Pcap { big_endian: false, nanos: false });
    assert_eq!((summary.packets, summary.skipped, summary.truncated), (14, 0, false));
    let zeek: Vec<Flow> = ZeekReader::new(TM1T_CONN.as_bytes()).map(Result::unwrap).collect();
    assert_eq!(summary.flows.len(), 2);
    for (ours, theirs) in summary.flows.iter().zip(&zeek) {
        assert_eq!(
            (ours.src_ip, ours.src_port, ours.dst_ip, ours.dst_port),
            (theirs.src_ip, theirs.src_port, theirs.dst_ip, theirs.dst_port)
        );
        assert_eq!(ours.transport, theirs.transport);
        assert_eq!(ours.app_proto, theirs.app_proto, "service");
        assert_eq!(ours.state, theirs.state, "conn_state");
        assert_eq!(ours.history, theirs.history, "history");
        assert_eq!(
            (ours.fwd.pkts, ours.fwd.bytes, ours.fwd.ip_bytes),
            (theirs.fwd.pkts, theirs.fwd.bytes, theirs.fwd.ip_bytes)
        );
        assert_eq!(
            (ours.bwd.pkts, ours.bwd.bytes, ours.bwd.ip_bytes),
            (theirs.bwd.pkts, theirs.bwd.bytes, theirs.bwd.ip_bytes)
        );
        assert!((ours.start - theirs.start).abs() < 1e-6);
        // Zeek stops the clock at the last FIN; we count the final ACK too.
        assert!((ours.duration - theirs.duration).abs() < 1e-3, "{} vs {}", ours.duration, theirs.duration);
    }
    let http = &summary.flows[1];
    assert_eq!(
        (http.fwd.ttl, http.bwd.ttl, http.fwd.win, http.bwd.win),
        (Some(64), Some(52), Some(65535), Some(28960))
    );
    assert_eq!((http.fwd.isn, http.bwd.isn), (Some(3_723_031_366), Some(2_993_782_376)));
    assert!((http.synack.unwrap() - 0.082066).abs() < 1e-6);
    assert!((http.ackdat.unwrap() - 0.000052).abs() < 1e-6);
    assert_eq!((http.fwd.flags.syn, http.fwd.flags.fin, http.fwd.flags.psh, http.fwd.flags.ack), (1, 1, 1, 5));
    assert_eq!(http.fwd.header_bytes, Some(40 + 5 * 32));
    // Model features from the same flow.
    assert_eq!(http.feature("service"), Some(NetFeature::Text("http".into())));
    assert_eq!(http.feature("state"), Some(NetFeature::Text("FIN".into())));
    assert_eq!(http.feature("Total Length of Bwd Packet"), Some(NetFeature::Num(295.0)));
    assert_eq!(http.feature("Fwd Packet Length Max"), Some(NetFeature::Num(77.0)));
    let Payload::LogRecord { service, fields, .. } = http.to_payload("caduceus") else { panic!() };
    assert_eq!(service.as_deref(), Some("http"));
    assert_eq!(Flow::from_fields(&fields).as_ref(), Some(http));
}

// ---------------------------------------------------------------- HL7

const ADT_A01: &str = "MSH|^~\\&|ADT1|GOOD HEALTH HOSPITAL|GHH LAB, INC.|GOOD HEALTH HOSPITAL|198808181126|SECURITY|ADT^A01^ADT_A01|MSG00001|P|2.5\r\
EVN|A01|200708181123||\r\
PID|1||PATID1234^^^GOOD HEALTH HOSPITAL^MR~123456789^^^USSSA^SS||EVERYMAN^ADAM^A^III||19610615|M||C|2222 HOME STREET^^GREENSBORO^NC^27401-1020|GL|(555) 555-2004|(555)555-2004||S||PATID12345001^2^M10^ADT1^AN^A|444333333|987654^NC|\r\
NK1|1|NUCLEAR^NELDA^W|SPO^SPOUSE||||NK^NEXT OF KIN\r\
PV1|1|I|2000^2012^01||||004777^ATTEND^AARON^A|||SUR||||ADM|A0|\r";

const ACK_A01: &str = "MSH|^~\\&|GHH LAB, INC.|GOOD HEALTH HOSPITAL|ADT1|GOOD HEALTH HOSPITAL|198808181127||ACK^A01^ACK|ACK00001|P|2.5\rMSA|AA|MSG00001\r";

/// A TCP conversation: handshake, the client's and server's payload
/// segments (each a (seq offset, bytes) list in send order), FIN exchange.
struct Conversation {
    frames: Vec<(u64, Vec<u8>)>,
    micros: u64,
}

impl Conversation {
    fn push(&mut self, frame: Vec<u8>) {
        self.micros += 1500;
        self.frames.push((self.micros, frame));
    }
}

fn hl7_pcapng() -> Vec<u8> {
    let engine = [10, 0, 1, 20];
    let sender = [10, 0, 2, 15];
    let vlan = VlanId::try_new(100).unwrap();
    let to_engine = |seq: u32| {
        PacketBuilder::ethernet2(CLIENT_MAC, GATEWAY_MAC)
            .single_vlan(vlan)
            .ipv4(sender, engine, 64)
            .tcp(51000, 2575, seq, 64240)
    };
    let to_sender = |seq: u32| {
        PacketBuilder::ethernet2(GATEWAY_MAC, CLIENT_MAC)
            .single_vlan(vlan)
            .ipv4(engine, sender, 128)
            .tcp(2575, 51000, seq, 65535)
    };
    let (c, s) = (1_000_000u32, 7_000_000u32);
    let frame = mllp_frame(ADT_A01.as_bytes());
    let ack = mllp_frame(ACK_A01.as_bytes());
    let mut conv = Conversation { frames: Vec::new(), micros: 1_717_243_200_000_000 };
    let write = |b: etherparse::PacketBuilderStep<etherparse::TcpHeader>, payload: &[u8]| {
        let mut f = Vec::new();
        b.write(&mut f, payload).unwrap();
        f
    };
    conv.push(write(to_engine(c).syn(), &[]));
    conv.push(write(to_sender(s).syn().ack(c + 1), &[]));
    conv.push(write(to_engine(c + 1).ack(s + 1), &[]));
    // The message in three segments: the third arrives before the second,
    // and the first is retransmitted.
    let (a, rest) = frame.split_at(100);
    let (b, tail) = rest.split_at(150);
    conv.push(write(to_engine(c + 1).psh().ack(s + 1), a));
    conv.push(write(to_engine(c + 1 + 250).psh().ack(s + 1), tail));
    conv.push(write(to_engine(c + 1).psh().ack(s + 1), a));
    conv.push(write(to_engine(c + 1 + 100).psh().ack(s + 1), b));
    let sent = frame.len() as u32;
    conv.push(write(to_sender(s + 1).psh().ack(c + 1 + sent), &ack));
    conv.push(write(to_engine(c + 1 + sent).fin().ack(s + 1 + ack.len() as u32), &[]));
    conv.push(write(to_sender(s + 1 + ack.len() as u32).fin().ack(c + 2 + sent), &[]));
    conv.push(write(to_engine(c + 2 + sent).ack(s + 2 + ack.len() as u32), &[]));
    let mut w = PcapNgWriter::new(linktype::ETHERNET);
    for (micros, f) in &conv.frames {
        w.packet(*micros, f);
    }
    w.out
}

#[test]
fn hl7_over_mllp_names_message_types_and_applications_only() {
    let summary = read_pcap(&hl7_pcapng()[..], &PcapOptions::default()).unwrap();
    assert_eq!(summary.format, CaptureFormat::PcapNg);
    assert_eq!(summary.flows.len(), 1);
    let flow = &summary.flows[0];
    assert_eq!(flow.app_proto.as_deref(), Some("hl7"));
    assert_eq!(flow.state.as_deref(), Some("SF"));
    assert_eq!(flow.dst_port, Some(2575));
    assert_eq!(flow.fwd.retrans, Some(1));
    assert_eq!(
        flow.app,
        Some(AppInfo::Hl7 {
            message_types: vec!["ADT^A01".into(), "ACK^A01".into()],
            sending_application: Some("ADT1".into()),
            sending_facility: Some("GOOD HEALTH HOSPITAL".into()),
            receiving_application: Some("GHH LAB, INC.".into()),
            receiving_facility: Some("GOOD HEALTH HOSPITAL".into()),
        })
    );
    // Nothing after MSH reaches the event.
    let json = serde_json::to_string(&flow.to_payload("caduceus")).unwrap();
    for secret in ["EVERYMAN", "PATID", "GREENSBORO", "NUCLEAR", "19610615"] {
        assert!(!json.contains(secret), "{secret} leaked: {json}");
    }
    assert!(json.contains("\"message_type\":[\"ADT^A01\",\"ACK^A01\"]"), "{json}");
}

// ---------------------------------------------------------------- DICOM

const PATIENT_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.1.2";
const VERIFICATION: &str = "1.2.840.10008.1.1";

fn dicom_pcap() -> Vec<u8> {
    let modality: [u8; 16] = "fd00:10:3::7".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let pacs: [u8; 16] = "fd00:10:5::9".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let to_pacs = |port: u16, seq: u32| PacketBuilder::ipv6(modality, pacs, 64).tcp(port, 104, seq, 64000);
    let to_modality = |port: u16, seq: u32| PacketBuilder::ipv6(pacs, modality, 64).tcp(104, port, seq, 64000);
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let write = |frames: &mut Vec<Vec<u8>>, b: etherparse::PacketBuilderStep<etherparse::TcpHeader>, payload: &[u8]| {
        let mut f = Vec::new();
        b.write(&mut f, payload).unwrap();
        frames.push(f);
    };

    // Association 1: accepted; C-ECHO, then C-MOVE to EVIL_AE.
    let (mut c, mut s) = (500u32, 9000u32);
    write(&mut frames, to_pacs(40001, c).syn(), &[]);
    write(&mut frames, to_modality(40001, s).syn().ack(c + 1), &[]);
    c += 1;
    s += 1;
    write(&mut frames, to_pacs(40001, c).ack(s), &[]);
    let client_says = |frames: &mut Vec<Vec<u8>>, c: &mut u32, s: u32, bytes: &[u8]| {
        write(frames, to_pacs(40001, *c).psh().ack(s), bytes);
        *c += bytes.len() as u32;
    };
    client_says(&mut frames, &mut c, s, &build::associate_rq("PACS", "MODALITY1", PATIENT_ROOT_MOVE));
    let ac = build::associate_ac("PACS", "MODALITY1");
    write(&mut frames, to_modality(40001, s).psh().ack(c), &ac);
    s += ac.len() as u32;
    client_says(&mut frames, &mut c, s, &build::p_data(true, true, &build::command_set(0x0030, VERIFICATION, 1, None)));
    // The C-ECHO response (0x8030) comes back.
    let rsp = build::p_data(true, true, &build::command_set(0x8030, VERIFICATION, 1, None));
    write(&mut frames, to_modality(40001, s).psh().ack(c), &rsp);
    s += rsp.len() as u32;
    // The C-MOVE PDU split across two TCP segments.
    let mv = build::p_data(true, true, &build::command_set(0x0021, PATIENT_ROOT_MOVE, 2, Some("EVIL_AE")));
    let (first, second) = mv.split_at(13);
    client_says(&mut frames, &mut c, s, first);
    client_says(&mut frames, &mut c, s, second);
    client_says(&mut frames, &mut c, s, &build::release_rq());
    write(&mut frames, to_pacs(40001, c).fin().ack(s), &[]);
    write(&mut frames, to_modality(40001, s).fin().ack(c + 1), &[]);
    write(&mut frames, to_pacs(40001, c + 1).ack(s + 1), &[]);

    // Association 2: rejected.
    let (c, s) = (70_000u32, 80_000u32);
    write(&mut frames, to_pacs(40002, c).syn(), &[]);
    write(&mut frames, to_modality(40002, s).syn().ack(c + 1), &[]);
    let rq = build::associate_rq("PACS", "UNKNOWN_SCU", VERIFICATION);
    write(&mut frames, to_pacs(40002, c + 1).psh().ack(s + 1), &rq);
    let rj = build::associate_rj();
    write(&mut frames, to_modality(40002, s + 1).psh().ack(c + 1 + rq.len() as u32), &rj);
    write(&mut frames, to_modality(40002, s + 1 + rj.len() as u32).rst(), &[]);

    let mut w = PcapWriter::new(linktype::RAW, true, true);
    for (i, f) in frames.iter().enumerate() {
        w.packet(1_717_250_000, (i as u32) * 1_000_000, f);
    }
    w.out
}

#[test]
fn dicom_associations_give_ae_titles_and_commands() {
    let summary = read_pcap(&dicom_pcap()[..], &PcapOptions::default()).unwrap();
    assert_eq!(summary.format, CaptureFormat::Pcap { big_endian: true, nanos: true });
    assert_eq!(summary.skipped, 0);
    let mut flows = summary.flows.clone();
    flows.sort_by_key(|f| f.src_port);
    assert_eq!(flows.len(), 2);
    let moved = &flows[0];
    assert_eq!(moved.app_proto.as_deref(), Some("dicom"));
    assert_eq!(moved.src_ip, "fd00:10:3::7".parse().ok());
    assert_eq!(moved.state.as_deref(), Some("SF"));
    assert_eq!(
        moved.app,
        Some(AppInfo::Dicom {
            calling_ae: Some("MODALITY1".into()),
            called_ae: Some("PACS".into()),
            commands: vec!["C-ECHO".into(), "C-MOVE".into()],
            move_destinations: vec!["EVIL_AE".into()],
            accepted: Some(true),
        })
    );
    let fields = moved.to_fields();
    assert_eq!(fields["dicom"]["move_destination"][0], "EVIL_AE");
    assert_eq!(fields["dicom"]["calling_ae"], "MODALITY1");
    let rejected = &flows[1];
    assert_eq!(rejected.state.as_deref(), Some("RSTR"));
    let Some(AppInfo::Dicom { calling_ae, accepted, commands, .. }) = &rejected.app else {
        panic!("{:?}", rejected.app)
    };
    assert_eq!((calling_ae.as_deref(), *accepted, commands.len()), (Some("UNKNOWN_SCU"), Some(false), 0));
}

// ---------------------------------------------------------------- SLL, ICMP, UDP

fn sll(ip_packet: &[u8]) -> Vec<u8> {
    // Linux cooked header: packet type (sent by us = 4), ARPHRD_ETHER,
    // address length 6, address (8 bytes), protocol IPv4.
    let mut f = vec![0, 4, 0, 1, 0, 6];
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0, 0, 0x08, 0x00]);
    f.extend_from_slice(ip_packet);
    f
}

#[test]
fn icmp_echo_and_udp_over_linux_cooked_capture() {
    let pump = [10, 0, 7, 31];
    let server = [10, 0, 1, 5];
    let mut w = PcapWriter::new(linktype::LINUX_SLL, false, false);
    let mut at = 0;
    let mut put = |w: &mut PcapWriter, ip: Vec<u8>| {
        at += 1;
        w.packet(1_717_260_000, at * 1000, &sll(&ip));
    };
    for seq in 1..=3u16 {
        let mut p = Vec::new();
        PacketBuilder::ipv4(pump, server, 64).icmpv4_echo_request(0x4242, seq).write(&mut p, b"ping").unwrap();
        put(&mut w, p);
        let mut p = Vec::new();
        PacketBuilder::ipv4(server, pump, 64).icmpv4_echo_reply(0x4242, seq).write(&mut p, b"ping").unwrap();
        put(&mut w, p);
    }
    let mut p = Vec::new();
    PacketBuilder::ipv4(pump, server, 64).udp(50514, 514).write(&mut p, b"<134>pump: occlusion alarm cleared").unwrap();
    put(&mut w, p);
    // An ARP frame in a cooked capture is skipped, not an error.
    let mut arp = vec![0, 4, 0, 1, 0, 6];
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[0, 0, 0x08, 0x06]);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&[0u8; 20]);
    at += 1;
    w.packet(1_717_260_000, at * 1000, &arp);
    let summary = read_pcap(&w.out[..], &PcapOptions::default()).unwrap();
    assert_eq!((summary.packets, summary.skipped, summary.assembler.non_ip), (8, 1, 1));
    let icmp = summary.flows.iter().find(|f| f.transport == Transport::Icmp).unwrap();
    assert_eq!((icmp.fwd.pkts, icmp.bwd.pkts, icmp.src_port, icmp.dst_port), (3, 3, Some(8), Some(0)));
    assert_eq!(icmp.state.as_deref(), Some("SF"));
    let syslog = summary.flows.iter().find(|f| f.transport == Transport::Udp).unwrap();
    assert_eq!(
        (syslog.app_proto.as_deref(), syslog.state.as_deref(), syslog.history.as_deref()),
        (Some("syslog"), Some("S0"), Some("D"))
    );
}

// ---------------------------------------------------------------- live use

fn udp_frame(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, GATEWAY_MAC)
        .ipv4(src, dst, 64)
        .udp(sport, dport)
        .write(&mut f, b"telemetry")
        .unwrap();
    f
}

#[test]
fn streaming_assembler_times_out_and_stays_bounded() {
    let opts = AssemblerOptions { idle_timeout: 60.0, max_flows: 8, ..AssemblerOptions::default() };
    let mut asm = FlowAssembler::new(opts);
    let monitor = [10, 0, 8, 2];
    let central = [10, 0, 1, 9];
    // The same conversation twice, 100 s apart: two flows.
    assert!(asm.push(1000.0, &udp_frame(monitor, 4000, central, 7000), linktype::ETHERNET).is_empty());
    assert!(asm.push(1001.0, &udp_frame(central, 7000, monitor, 4000), linktype::ETHERNET).is_empty());
    let done = asm.push(1101.0, &udp_frame(monitor, 4000, central, 7000), linktype::ETHERNET);
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].fwd.pkts, done[0].bwd.pkts), (1, 1));
    // A scan of 100 ports never holds more than 8 flows.
    let mut completed = 1;
    for port in 0..100u16 {
        completed += asm.push(1102.0, &udp_frame(monitor, 5000, central, port), linktype::ETHERNET).len();
        assert!(asm.active_flows() <= 8);
    }
    completed += asm.flush().len();
    assert_eq!(completed, 102);
    assert!(asm.stats().evicted > 0);
    // Garbage is counted, never a panic.
    assert!(asm.push(1103.0, &[0xFF; 7], linktype::ETHERNET).is_empty());
    assert!(asm.push(1103.0, &[0x45; 30], linktype::RAW).is_empty());
    assert!(asm.push(1103.0, b"abc", 9999).is_empty());
    assert_eq!(asm.stats().unsupported_linktype, 1);
}

#[test]
fn a_long_hl7_connection_is_cut_and_keeps_its_protocol() {
    let opts = AssemblerOptions { active_timeout: 10.0, ..AssemblerOptions::default() };
    let mut asm = FlowAssembler::new(opts);
    let (sender, engine) = ([10, 0, 2, 15], [10, 0, 1, 20]);
    let to_engine = |seq: u32| {
        PacketBuilder::ethernet2(CLIENT_MAC, GATEWAY_MAC).ipv4(sender, engine, 64).tcp(51001, 2575, seq, 64240)
    };
    let write = |b: etherparse::PacketBuilderStep<etherparse::TcpHeader>, payload: &[u8]| {
        let mut f = Vec::new();
        b.write(&mut f, payload).unwrap();
        f
    };
    let adt = mllp_frame(ADT_A01.as_bytes());
    let a04 = mllp_frame(ADT_A01.replace("ADT^A01^ADT_A01", "ADT^A04^ADT_A01").as_bytes());
    let mut done = Vec::new();
    done.extend(asm.push(100.0, &write(to_engine(1).syn(), &[]), linktype::ETHERNET));
    done.extend(asm.push(100.1, &write(to_engine(2).psh(), &adt), linktype::ETHERNET));
    // Twenty seconds on, past the active timeout, the next message.
    done.extend(asm.push(120.0, &write(to_engine(2 + adt.len() as u32).psh(), &a04), linktype::ETHERNET));
    assert_eq!(done.len(), 1);
    assert_eq!(asm.stats().active_cuts, 1);
    let types = |f: &Flow| match &f.app {
        Some(AppInfo::Hl7 { message_types, .. }) => message_types.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(done[0].app_proto.as_deref(), Some("hl7"));
    assert_eq!(types(&done[0]), ["ADT^A01"]);
    let rest = asm.flush();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].app_proto.as_deref(), Some("hl7"));
    assert_eq!(types(&rest[0]), ["ADT^A01", "ADT^A04"]);
    assert_eq!(rest[0].state.as_deref(), Some("OTH"));
}
