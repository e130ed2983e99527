//! Bidirectional flow assembly from packets, usable on a capture file or a
//! live capture: [`FlowAssembler::push`] takes one packet and returns the
//! flows it completed; [`FlowAssembler::flush`] ends the rest.
//!
//! A flow is keyed by its canonical 5-tuple; the sender of its first packet
//! is the originator, unless that packet is a SYN-ACK (then the capture
//! missed the SYN and the direction is flipped, as Zeek does, with `^` in
//! the history). A TCP flow ends after RST or both FINs (plus a short
//! linger for the last ACK); any flow ends after the idle timeout, and a
//! long one is cut at the active timeout (its continuation keeps the
//! application protocol state). The table is bounded: when full, expired
//! flows go first, then the least recently seen eighth.
//!
//! Payload is reassembled in order only while the application protocol is
//! being recognised or read (HL7, DICOM): segments that arrive early wait in
//! a small per-side queue; when the queue or the global byte budget is
//! full, the hole is given up and the protocol scanner told (HL7 finds the
//! next frame; DICOM stops). Retransmitted bytes are not fed twice. IP
//! fragments are counted and not reassembled.

use std::collections::HashMap;
use std::net::IpAddr;

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TransportSlice};

use super::app::{AppState, udp_service};
use crate::flow::{Direction, Flow, Spread, Transport};

/// Link types the assembler decodes.
pub mod linktype {
    pub const NULL: u16 = 0;
    pub const ETHERNET: u16 = 1;
    pub const RAW_OPENBSD: u16 = 12;
    pub const RAW_BSDOS: u16 = 14;
    pub const RAW: u16 = 101;
    pub const LOOP: u16 = 108;
    pub const LINUX_SLL: u16 = 113;
    pub const IPV4: u16 = 228;
    pub const IPV6: u16 = 229;
    pub const LINUX_SLL2: u16 = 276;
}

/// Limits and timeouts of a [`FlowAssembler`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AssemblerOptions {
    /// A flow with no packet for this long (seconds of capture time) ends.
    pub idle_timeout: f64,
    /// A flow older than this is cut; its continuation is a new flow.
    pub active_timeout: f64,
    /// Seconds a closed TCP flow waits for stray packets (the last ACK).
    pub close_linger: f64,
    /// Most flows tracked at once.
    pub max_flows: usize,
    /// Most payload bytes of each side kept while the application protocol
    /// is undecided.
    pub sniff_bytes: usize,
    /// Most payload bytes of each side read by the HL7/DICOM scanners.
    pub max_app_bytes: u64,
    /// Most out-of-order segments held per side.
    pub max_reorder_segments: usize,
    /// Most out-of-order bytes held per side.
    pub max_reorder_bytes: usize,
    /// Most payload bytes held in all flows together (sniff buffers and
    /// reorder queues).
    pub max_held_bytes: usize,
}

impl Default for AssemblerOptions {
    fn default() -> Self {
        Self {
            idle_timeout: 120.0,
            active_timeout: 1800.0,
            close_linger: 5.0,
            max_flows: 65_536,
            sniff_bytes: 16 * 1024,
            max_app_bytes: 256 * 1024 * 1024,
            max_reorder_segments: 16,
            max_reorder_bytes: 16 * 1024,
            max_held_bytes: 64 * 1024 * 1024,
        }
    }
}

/// What the assembler has seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssemblerStats {
    pub packets: u64,
    /// IPv4/IPv6 packets that went into a flow.
    pub ip_packets: u64,
    /// ARP, LLDP and other non-IP frames.
    pub non_ip: u64,
    pub unsupported_linktype: u64,
    /// Frames too short or broken to decode.
    pub malformed: u64,
    /// IP fragments (not reassembled).
    pub fragments: u64,
    /// Flows completed and returned.
    pub flows: u64,
    /// Flows ended early because the table was full.
    pub evicted: u64,
    /// Flows cut at the active timeout.
    pub active_cuts: u64,
    /// Holes in a TCP stream given up (reorder queue or byte budget full,
    /// or bytes missing from the capture).
    pub stream_gaps: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FlowKey {
    proto: u8,
    lo: (IpAddr, u16),
    hi: (IpAddr, u16),
}

/// Incremental count, mean, variance, minimum and maximum.
#[derive(Clone, Copy, Debug, Default)]
struct Welford {
    n: u64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
}

impl Welford {
    fn push(&mut self, x: f64) {
        self.n += 1;
        if self.n == 1 {
            (self.min, self.max) = (x, x);
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
    }

    fn spread(&self) -> Option<Spread> {
        (self.n > 0).then(|| Spread {
            mean: self.mean,
            std: if self.n > 1 { (self.m2 / (self.n - 1) as f64).max(0.0).sqrt() } else { 0.0 },
            min: Some(self.min),
            max: Some(self.max),
        })
    }
}

/// In-order reassembly of one side's payload.
#[derive(Debug, Default)]
struct Stream {
    next: Option<u32>,
    pending: Vec<(u32, Vec<u8>)>,
    pending_bytes: usize,
    fed: u64,
}

/// TCP flag bits.
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

#[derive(Debug, Default)]
struct Side {
    pkts: u64,
    bytes: u64,
    ip_bytes: u64,
    header_bytes: u64,
    data_pkts: u64,
    retrans: u64,
    ttl: Option<u8>,
    win: Option<u32>,
    isn: Option<u32>,
    last_ts: Option<f64>,
    iat: Welford,
    size: Welford,
    flags: crate::flow::TcpFlags,
    /// The last few (sequence, length) pairs sent: a segment seen again is
    /// a retransmission (reordered segments are not).
    recent: [(u32, u32); 8],
    recent_next: usize,
    syn: bool,
    fin: bool,
    rst: bool,
    stream: Stream,
}

impl Side {
    fn direction(&self, tcp: bool) -> Direction {
        Direction {
            pkts: self.pkts,
            bytes: self.bytes,
            ip_bytes: Some(self.ip_bytes),
            header_bytes: Some(self.header_bytes),
            data_pkts: Some(self.data_pkts),
            ttl: self.ttl,
            win: self.win,
            isn: self.isn,
            retrans: tcp.then_some(self.retrans),
            iat: self.iat.spread(),
            size: self.size.spread(),
            flags: self.flags,
        }
    }
}

#[derive(Debug)]
struct FlowState {
    proto: u8,
    orig: (IpAddr, u16),
    resp: (IpAddr, u16),
    /// The ports as recorded (ICMP: type and code of the first packet).
    shown_ports: (u16, u16),
    start: f64,
    last: f64,
    closed_at: Option<f64>,
    fwd: Side,
    bwd: Side,
    iat: Welford,
    history: String,
    history_seen: u32,
    syn_ts: Option<f64>,
    synack_ts: Option<f64>,
    ack_ts: Option<f64>,
    app: AppState,
    udp_service: Option<&'static str>,
}

/// One decoded packet.
struct Packet<'a> {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    ttl: u8,
    ip_len: u64,
    /// Ports used in the flow key (ICMP echo: the identifier on both sides).
    key_ports: (u16, u16),
    /// Ports as recorded (ICMP: type, code).
    shown_ports: (u16, u16),
    header_len: u64,
    payload_len: u64,
    payload: &'a [u8],
    tcp: Option<(u32, u8, u16)>,
}

enum Skip {
    NonIp,
    Unsupported,
    Malformed,
    Fragment,
}

fn decode(link: u16, data: &[u8]) -> Result<Packet<'_>, Skip> {
    use self::linktype as lt;
    let be16 = |at: usize| data.get(at..at + 2).and_then(|b| b.try_into().ok()).map(u16::from_be_bytes);
    let sliced = match link {
        lt::ETHERNET => LaxSlicedPacket::from_ethernet(data).map_err(|_| Skip::Malformed)?,
        lt::LINUX_SLL => {
            let proto = be16(14).ok_or(Skip::Malformed)?;
            LaxSlicedPacket::from_ether_type(EtherType(proto), data.get(16..).ok_or(Skip::Malformed)?)
        }
        lt::LINUX_SLL2 => {
            let proto = be16(0).ok_or(Skip::Malformed)?;
            LaxSlicedPacket::from_ether_type(EtherType(proto), data.get(20..).ok_or(Skip::Malformed)?)
        }
        lt::NULL | lt::LOOP => {
            // The address family, in the capturing host's byte order for
            // NULL and in network order for LOOP: 2 is IPv4, 24/28/30 IPv6.
            let raw: [u8; 4] = data.get(..4).and_then(|b| b.try_into().ok()).ok_or(Skip::Malformed)?;
            let family = [u32::from_le_bytes(raw), u32::from_be_bytes(raw)];
            if !family.iter().any(|f| matches!(f, 2 | 24 | 28 | 30)) {
                return Err(Skip::NonIp);
            }
            LaxSlicedPacket::from_ip(data.get(4..).ok_or(Skip::Malformed)?).map_err(|_| Skip::Malformed)?
        }
        lt::RAW | lt::RAW_OPENBSD | lt::RAW_BSDOS | lt::IPV4 | lt::IPV6 => {
            LaxSlicedPacket::from_ip(data).map_err(|_| Skip::Malformed)?
        }
        _ => return Err(Skip::Unsupported),
    };
    let captured = |payload: &[u8]| payload.len() as u64;
    let (src, dst, ttl, ip_len, transport_len, fragmented, proto) = match &sliced.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            let header_len = u64::from(h.ihl()) * 4;
            let total = u64::from(h.total_len());
            let payload = v4.payload();
            let ip_len = if total == 0 { header_len + captured(payload.payload) } else { total };
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                h.ttl(),
                ip_len,
                ip_len.saturating_sub(header_len),
                v4.is_payload_fragmented(),
                payload.ip_number.0,
            )
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            let ext = v6.extensions().slice().len() as u64;
            let payload = v6.payload();
            let len = u64::from(h.payload_length());
            let len = if len == 0 { ext + captured(payload.payload) } else { len };
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                h.hop_limit(),
                40 + len,
                len.saturating_sub(ext),
                v6.is_payload_fragmented(),
                payload.ip_number.0,
            )
        }
        Some(LaxNetSlice::Arp(_)) => return Err(Skip::NonIp),
        None => return Err(if sliced.stop_err.is_some() { Skip::Malformed } else { Skip::NonIp }),
    };
    if fragmented {
        return Err(Skip::Fragment);
    }
    let mut packet = Packet {
        src,
        dst,
        proto,
        ttl,
        ip_len,
        key_ports: (0, 0),
        shown_ports: (0, 0),
        header_len: 0,
        payload_len: transport_len,
        payload: &[],
        tcp: None,
    };
    match &sliced.transport {
        Some(TransportSlice::Tcp(t)) => {
            let header_len = u64::from(t.data_offset()) * 4;
            let bits = [t.fin(), t.syn(), t.rst(), t.psh(), t.ack(), t.urg(), t.ece(), t.cwr()]
                .iter()
                .enumerate()
                .fold(0u8, |acc, (i, set)| if *set { acc | (1 << i) } else { acc });
            let ports = (t.source_port(), t.destination_port());
            packet = Packet {
                key_ports: ports,
                shown_ports: ports,
                header_len,
                payload_len: transport_len.saturating_sub(header_len),
                payload: t.payload(),
                tcp: Some((t.sequence_number(), bits, t.window_size())),
                ..packet
            };
        }
        Some(TransportSlice::Udp(u)) => {
            let ports = (u.source_port(), u.destination_port());
            packet = Packet {
                key_ports: ports,
                shown_ports: ports,
                header_len: 8,
                payload_len: transport_len.saturating_sub(8),
                payload: u.payload(),
                ..packet
            };
        }
        Some(TransportSlice::Icmpv4(i)) => {
            let echo = matches!(i.type_u8(), 0 | 8);
            packet = icmp(packet, i.type_u8(), i.code_u8(), echo, i.bytes5to8(), transport_len);
        }
        Some(TransportSlice::Icmpv6(i)) => {
            let echo = matches!(i.type_u8(), 128 | 129);
            packet = icmp(packet, i.type_u8(), i.code_u8(), echo, i.bytes5to8(), transport_len);
        }
        Some(TransportSlice::Igmp(_)) | None => {
            // TCP or UDP whose header did not fit the capture.
            if matches!(proto, 6 | 17) {
                return Err(Skip::Malformed);
            }
        }
    }
    Ok(packet)
}

fn icmp(packet: Packet<'_>, kind: u8, code: u8, echo: bool, rest: [u8; 4], len: u64) -> Packet<'_> {
    // Echo request and reply share a flow by their identifier; other
    // messages between two hosts share one.
    let [hi, lo, ..] = rest;
    let id = if echo { u16::from_be_bytes([hi, lo]) } else { 0 };
    Packet {
        key_ports: (id, id),
        shown_ports: (u16::from(kind), u16::from(code)),
        header_len: 8,
        payload_len: len.saturating_sub(8),
        ..packet
    }
}

impl FlowState {
    fn new(p: &Packet<'_>, ts: f64) -> Self {
        let flipped = matches!(p.tcp, Some((_, bits, _)) if bits & (SYN | ACK) == SYN | ACK);
        let (orig, resp, shown) = if flipped {
            ((p.dst, p.key_ports.1), (p.src, p.key_ports.0), (p.shown_ports.1, p.shown_ports.0))
        } else {
            ((p.src, p.key_ports.0), (p.dst, p.key_ports.1), p.shown_ports)
        };
        let udp = (p.proto == 17).then(|| udp_service(shown.0, shown.1)).flatten();
        Self {
            proto: p.proto,
            orig,
            resp,
            shown_ports: shown,
            start: ts,
            last: ts,
            closed_at: None,
            fwd: Side::default(),
            bwd: Side::default(),
            iat: Welford::default(),
            history: if flipped { "^".to_owned() } else { String::new() },
            history_seen: 0,
            syn_ts: None,
            synack_ts: None,
            ack_ts: None,
            app: if p.proto == 6 { AppState::default() } else { AppState::Unknown },
            udp_service: udp,
        }
    }

    /// The continuation of a flow cut at the active timeout: same ends,
    /// fresh counters, the application state and stream positions carried on.
    fn continuation(old: &mut FlowState, ts: f64) -> Self {
        let mut next = Self {
            proto: old.proto,
            orig: old.orig,
            resp: old.resp,
            shown_ports: old.shown_ports,
            start: ts,
            last: ts,
            closed_at: None,
            fwd: Side::default(),
            bwd: Side::default(),
            iat: Welford::default(),
            history: String::new(),
            history_seen: 0,
            syn_ts: None,
            synack_ts: None,
            ack_ts: None,
            app: std::mem::replace(&mut old.app, AppState::Unknown),
            udp_service: old.udp_service,
        };
        next.fwd.stream = std::mem::take(&mut old.fwd.stream);
        next.bwd.stream = std::mem::take(&mut old.bwd.stream);
        (next.fwd.recent, next.fwd.recent_next) = (old.fwd.recent, old.fwd.recent_next);
        (next.bwd.recent, next.bwd.recent_next) = (old.bwd.recent, old.bwd.recent_next);
        next
    }

    fn held(&self) -> usize {
        self.app.buffered() + self.fwd.stream.pending_bytes + self.bwd.stream.pending_bytes
    }

    fn mark(&mut self, letter: char, forward: bool) {
        let index = match letter {
            'S' => 0,
            'H' => 1,
            'A' => 2,
            'D' => 3,
            'F' => 4,
            'R' => 5,
            _ => 6,
        };
        let bit = 1u32 << (index * 2 + u32::from(!forward));
        if self.history_seen & bit == 0 && self.history.len() < 32 {
            self.history_seen |= bit;
            self.history.push(if forward { letter } else { letter.to_ascii_lowercase() });
        }
    }

    fn update(&mut self, p: &Packet<'_>, ts: f64, forward: bool, opts: &AssemblerOptions, stats: &mut AssemblerStats) {
        if ts > self.last {
            self.iat.push(ts - self.last);
        } else if self.fwd.pkts + self.bwd.pkts > 0 {
            self.iat.push(0.0);
        }
        self.last = self.last.max(ts);
        let side = if forward { &mut self.fwd } else { &mut self.bwd };
        side.pkts += 1;
        side.bytes += p.payload_len;
        side.ip_bytes += p.ip_len;
        side.header_bytes += p.header_len;
        side.ttl.get_or_insert(p.ttl);
        if p.payload_len > 0 {
            side.data_pkts += 1;
        }
        side.size.push(p.payload_len as f64);
        if let Some(last) = side.last_ts {
            side.iat.push((ts - last).max(0.0));
        }
        side.last_ts = Some(ts);
        let mut letters: [Option<char>; 4] = [None; 4];
        if let Some((seq, bits, win)) = p.tcp {
            side.flags.add_byte(bits);
            side.win.get_or_insert(u32::from(win));
            let (syn, ack) = (bits & SYN != 0, bits & ACK != 0);
            if syn {
                side.isn.get_or_insert(seq);
                side.syn = true;
            }
            if bits & FIN != 0 {
                side.fin = true;
            }
            if bits & RST != 0 {
                side.rst = true;
            }
            let mut retransmitted = false;
            if p.payload_len > 0 {
                let segment = (seq, u32::try_from(p.payload_len).unwrap_or(u32::MAX));
                if side.recent.contains(&segment) {
                    side.retrans += 1;
                    retransmitted = true;
                } else if let Some(slot) = side.recent.get_mut(side.recent_next % 8) {
                    *slot = segment;
                    side.recent_next = side.recent_next.wrapping_add(1);
                }
            }
            letters = [
                syn.then_some(if ack { 'H' } else { 'S' }),
                if p.payload_len > 0 {
                    Some('D')
                } else if ack && bits & (SYN | FIN | RST) == 0 {
                    Some('A')
                } else {
                    None
                },
                (bits & FIN != 0).then_some('F'),
                if bits & RST != 0 { Some('R') } else { retransmitted.then_some('T') },
            ];
            // Handshake timing.
            if forward && syn && !ack && self.syn_ts.is_none() {
                self.syn_ts = Some(ts);
            } else if !forward && syn && ack && self.synack_ts.is_none() {
                self.synack_ts = Some(ts);
            } else if forward && ack && !syn && self.synack_ts.is_some() && self.ack_ts.is_none() {
                self.ack_ts = Some(ts);
            }
            // Payload for recognition, in order.
            if self.app.wants_bytes() {
                let side = if forward { &mut self.fwd } else { &mut self.bwd };
                side.stream.segment(&mut self.app, forward, seq, syn, p.payload, p.payload_len, opts, stats);
            }
            let (f, b) = (&self.fwd, &self.bwd);
            if self.closed_at.is_none() && (bits & RST != 0 || (f.fin && b.fin)) {
                self.closed_at = Some(ts);
            }
        } else if p.payload_len > 0 {
            letters[1] = Some('D');
        }
        for letter in letters.into_iter().flatten() {
            self.mark(letter, forward);
        }
    }

    /// Zeek's `conn_state` from what was seen.
    fn conn_state(&self) -> &'static str {
        let (f, b) = (&self.fwd, &self.bwd);
        if self.proto != 6 {
            return match (f.pkts > 0, b.pkts > 0) {
                (true, true) => "SF",
                (false, true) => "SHR",
                _ => "S0",
            };
        }
        let syn = self.syn_ts.is_some();
        let synack = b.syn;
        match (syn, synack) {
            (false, false) => "OTH",
            (true, false) => {
                if b.rst {
                    "REJ"
                } else if f.rst {
                    "RSTOS0"
                } else if f.fin {
                    "SH"
                } else {
                    "S0"
                }
            }
            (false, true) => {
                if b.rst {
                    "RSTRH"
                } else if b.fin {
                    "SHR"
                } else {
                    "OTH"
                }
            }
            (true, true) => {
                if f.rst {
                    "RSTO"
                } else if b.rst {
                    "RSTR"
                } else if f.fin && b.fin {
                    "SF"
                } else if f.fin {
                    "S2"
                } else if b.fin {
                    "S3"
                } else {
                    "S1"
                }
            }
        }
    }

    fn finish(&self) -> Flow {
        let transport = Transport::from_number(self.proto);
        let tcp = transport == Transport::Tcp;
        let (app_proto, app) = if tcp { self.app.finish() } else { (self.udp_service, None) };
        let synack = self.syn_ts.zip(self.synack_ts).map(|(s, a)| (a - s).max(0.0));
        let ackdat = self.synack_ts.zip(self.ack_ts).map(|(s, a)| (a - s).max(0.0));
        Flow {
            uid: None,
            start: self.start,
            duration: (self.last - self.start).max(0.0),
            src_ip: Some(self.orig.0),
            src_port: Some(self.shown_ports.0),
            dst_ip: Some(self.resp.0),
            dst_port: Some(self.shown_ports.1),
            transport,
            app_proto: app_proto.map(str::to_owned),
            state: Some(self.conn_state().to_owned()),
            history: Some(self.history.clone()),
            fwd: self.fwd.direction(tcp),
            bwd: self.bwd.direction(tcp),
            iat: self.iat.spread(),
            synack,
            ackdat,
            app,
        }
    }
}

impl Stream {
    #[allow(clippy::too_many_arguments)]
    fn segment(
        &mut self,
        app: &mut AppState,
        forward: bool,
        seq: u32,
        syn: bool,
        payload: &[u8],
        real_len: u64,
        opts: &AssemblerOptions,
        stats: &mut AssemblerStats,
    ) {
        if syn {
            self.next = Some(seq.wrapping_add(1));
            return;
        }
        if real_len == 0 || !app.wants_bytes() {
            return;
        }
        let len = u32::try_from(real_len).unwrap_or(u32::MAX);
        if (payload.len() as u64) < real_len {
            // The capture cut the packet (snap length): those bytes are lost.
            app.gap(forward);
            stats.stream_gaps += 1;
            self.clear_pending();
            self.next = Some(seq.wrapping_add(len));
            return;
        }
        let next = *self.next.get_or_insert(seq);
        let ahead = seq.wrapping_sub(next) as i32;
        if ahead > 0 {
            let room = self.pending.len() < opts.max_reorder_segments
                && self.pending_bytes + payload.len() <= opts.max_reorder_bytes;
            if room {
                self.pending_bytes += payload.len();
                self.pending.push((seq, payload.to_vec()));
            } else {
                app.gap(forward);
                stats.stream_gaps += 1;
                self.clear_pending();
                self.deliver(app, forward, payload, opts);
                self.next = Some(seq.wrapping_add(len));
            }
            return;
        }
        self.take_from(app, forward, seq, payload, opts);
        // Drain queued segments that now fit.
        while let Some(at) = self.pending.iter().position(|(s, _)| {
            let next = self.next.unwrap_or(*s);
            s.wrapping_sub(next) as i32 <= 0
        }) {
            let (s, bytes) = self.pending.swap_remove(at);
            self.pending_bytes -= bytes.len();
            self.take_from(app, forward, s, &bytes, opts);
        }
    }

    /// Feeds the part of a segment at `seq` that is past `next`.
    fn take_from(&mut self, app: &mut AppState, forward: bool, seq: u32, payload: &[u8], opts: &AssemblerOptions) {
        let next = self.next.unwrap_or(seq);
        let overlap = next.wrapping_sub(seq) as usize;
        if overlap >= payload.len() {
            return;
        }
        self.deliver(app, forward, payload.get(overlap..).unwrap_or_default(), opts);
        self.next = Some(seq.wrapping_add(payload.len() as u32));
    }

    fn deliver(&mut self, app: &mut AppState, forward: bool, bytes: &[u8], opts: &AssemblerOptions) {
        if self.fed >= opts.max_app_bytes {
            return;
        }
        let room = usize::try_from(opts.max_app_bytes - self.fed).unwrap_or(usize::MAX);
        let bytes = bytes.get(..room.min(bytes.len())).unwrap_or_default();
        self.fed += bytes.len() as u64;
        app.feed(forward, bytes, opts.sniff_bytes);
    }

    fn clear_pending(&mut self) {
        self.pending.clear();
        self.pending_bytes = 0;
    }
}

/// Assembles packets into bidirectional flows.
pub struct FlowAssembler {
    opts: AssemblerOptions,
    table: HashMap<FlowKey, FlowState, foldhash::fast::RandomState>,
    stats: AssemblerStats,
    now: f64,
    last_sweep: f64,
    held: usize,
}

impl FlowAssembler {
    pub fn new(opts: AssemblerOptions) -> Self {
        Self {
            opts,
            table: HashMap::default(),
            stats: AssemblerStats::default(),
            now: f64::NEG_INFINITY,
            last_sweep: f64::NEG_INFINITY,
            held: 0,
        }
    }

    pub fn stats(&self) -> &AssemblerStats {
        &self.stats
    }

    /// Flows being tracked.
    pub fn active_flows(&self) -> usize {
        self.table.len()
    }

    /// Payload bytes held now (sniff buffers and reorder queues).
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// Takes one packet (capture time in seconds, the frame, its link
    /// type) and returns the flows this completed.
    pub fn push(&mut self, ts: f64, packet: &[u8], linktype: u16) -> Vec<Flow> {
        let mut out = Vec::new();
        self.push_into(ts, packet, linktype, &mut out);
        out
    }

    /// [`push`](Self::push) into a caller's buffer (no allocation per packet).
    pub fn push_into(&mut self, ts: f64, packet: &[u8], linktype: u16, out: &mut Vec<Flow>) {
        self.stats.packets += 1;
        let ts = if ts.is_finite() { ts } else { self.now.max(0.0) };
        if ts > self.now {
            self.now = ts;
        }
        if self.now - self.last_sweep >= 1.0 {
            self.sweep(out);
        }
        let p = match decode(linktype, packet) {
            Ok(p) => p,
            Err(skip) => {
                match skip {
                    Skip::NonIp => self.stats.non_ip += 1,
                    Skip::Unsupported => self.stats.unsupported_linktype += 1,
                    Skip::Malformed => self.stats.malformed += 1,
                    Skip::Fragment => self.stats.fragments += 1,
                }
                return;
            }
        };
        self.stats.ip_packets += 1;
        let (a, b) = ((p.src, p.key_ports.0), (p.dst, p.key_ports.1));
        let key = FlowKey { proto: p.proto, lo: a.min(b), hi: a.max(b) };
        let opts = self.opts;
        // End a flow this packet does not belong to any more.
        if let Some(flow) = self.table.get_mut(&key) {
            let new_syn = matches!(p.tcp, Some((_, bits, _)) if bits & (SYN | ACK) == SYN);
            let ended = flow.closed_at.is_some_and(|c| ts - c > opts.close_linger || new_syn)
                || ts - flow.last > opts.idle_timeout;
            if ended {
                if let Some(old) = self.table.remove(&key) {
                    self.complete(&old, out);
                }
            } else if ts - flow.start > opts.active_timeout {
                // The cut flow carries what was recognised so far; the
                // continuation keeps reading the same stream.
                let cut = flow.finish();
                *flow = FlowState::continuation(flow, ts);
                self.stats.active_cuts += 1;
                self.stats.flows += 1;
                out.push(cut);
            }
        }
        if !self.table.contains_key(&key) {
            if self.table.len() >= opts.max_flows.max(1) {
                self.make_room(out);
            }
            self.table.insert(key, FlowState::new(&p, ts));
        }
        let Some(flow) = self.table.get_mut(&key) else { return };
        let forward = (p.src, p.key_ports.0) == flow.orig;
        let before = flow.held();
        flow.update(&p, ts, forward, &opts, &mut self.stats);
        let after = flow.held();
        self.held = (self.held + after).saturating_sub(before);
        if self.held > opts.max_held_bytes {
            // Over budget: this flow stops buffering.
            flow.app.give_up();
            flow.fwd.stream.clear_pending();
            flow.bwd.stream.clear_pending();
            self.stats.stream_gaps += 1;
            self.held = self.held.saturating_sub(after);
        }
    }

    /// Ends every flow (end of a capture file, shutdown).
    pub fn flush(&mut self) -> Vec<Flow> {
        let mut out = Vec::with_capacity(self.table.len());
        let mut flows: Vec<FlowState> = self.table.drain().map(|(_, f)| f).collect();
        flows.sort_by(|a, b| a.start.total_cmp(&b.start));
        for flow in &flows {
            self.complete(flow, &mut out);
        }
        self.held = 0;
        out
    }

    fn complete(&mut self, flow: &FlowState, out: &mut Vec<Flow>) {
        self.held = self.held.saturating_sub(flow.held());
        self.stats.flows += 1;
        out.push(flow.finish());
    }

    /// Ends the flows that timed out or closed.
    fn sweep(&mut self, out: &mut Vec<Flow>) {
        self.last_sweep = self.now;
        let (now, opts) = (self.now, &self.opts);
        let expired: Vec<FlowState> = self
            .table
            .extract_if(|_, f| {
                f.closed_at.is_some_and(|c| now - c > opts.close_linger) || now - f.last > opts.idle_timeout
            })
            .map(|(_, f)| f)
            .collect();
        let mut expired = expired;
        expired.sort_by(|a, b| a.start.total_cmp(&b.start));
        for flow in &expired {
            self.complete(flow, out);
        }
    }

    /// The table is full: sweep, then end the least recently seen eighth.
    fn make_room(&mut self, out: &mut Vec<Flow>) {
        self.sweep(out);
        if self.table.len() < self.opts.max_flows.max(1) {
            return;
        }
        let mut ages: Vec<(f64, FlowKey)> = self.table.iter().map(|(k, f)| (f.last, *k)).collect();
        let count = (ages.len() / 8).max(1);
        ages.select_nth_unstable_by(count - 1, |a, b| a.0.total_cmp(&b.0));
        for (_, key) in ages.iter().take(count) {
            if let Some(flow) = self.table.remove(key) {
                self.stats.evicted += 1;
                self.complete(&flow, out);
            }
        }
    }
}
