//! Suricata EVE JSON input. `flow` events (both directions) and `netflow`
//! events (one direction each) become [`Flow`]s; `alert` events become
//! [`EveAlert`]s, kept so that the server can forward Suricata's own
//! detections. Every other event type (dns, http, tls, fileinfo, stats, …)
//! is counted by type and skipped.
//!
//! Suricata counts whole packets (`bytes_toserver`), not payload: those
//! numbers land in [`Direction::bytes`](crate::flow::Direction) as they are.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::IpAddr;

use caduceus_core::Payload;
use serde_json::{Map, Value};

use crate::error::NetError;
use crate::flow::{Direction, Flow, TcpFlags, Transport};
use crate::util::{DEFAULT_MAX_LINE_BYTES, Line, LineReader, cap_chars, parse_time};

/// Most distinct event types counted by name; the rest count as `other`.
const MAX_COUNTED_TYPES: usize = 64;
/// Longest kept signature, category or other text, in characters.
const MAX_TEXT_CHARS: usize = 256;

/// One record the EVE reader yields.
// Records are handed out one at a time: boxing the flow would only add an
// allocation per record.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum EveRecord {
    Flow(Flow),
    Alert(EveAlert),
}

/// A Suricata alert, as Suricata reported it.
#[derive(Clone, Debug, PartialEq)]
pub struct EveAlert {
    /// Event time, seconds since the Unix epoch.
    pub timestamp: f64,
    pub flow_id: Option<u64>,
    pub src_ip: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub dst_ip: Option<IpAddr>,
    pub dst_port: Option<u16>,
    /// Transport as Suricata names it (`TCP`, `UDP`, `ICMP`, …), lower case.
    pub proto: Option<String>,
    pub app_proto: Option<String>,
    /// The rule's message (`msg`).
    pub signature: String,
    pub signature_id: u64,
    pub gid: Option<u64>,
    pub rev: Option<u64>,
    /// Suricata severity: 1 is the most severe.
    pub severity: Option<u8>,
    pub category: Option<String>,
    /// `allowed` or `blocked`.
    pub action: Option<String>,
}

impl EveAlert {
    /// The alert's fields for the spine and the Sigma engine.
    pub fn to_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("ts".into(), serde_json::Number::from_f64(self.timestamp).map_or(Value::Null, Value::Number));
        if let Some(id) = self.flow_id {
            m.insert("flow_id".into(), id.into());
        }
        for (key, ip) in [("src_ip", self.src_ip), ("dst_ip", self.dst_ip)] {
            if let Some(ip) = ip {
                m.insert(key.into(), ip.to_string().into());
            }
        }
        for (key, port) in [("src_port", self.src_port), ("dst_port", self.dst_port)] {
            if let Some(p) = port {
                m.insert(key.into(), p.into());
            }
        }
        for (key, text) in [
            ("proto", &self.proto),
            ("app_proto", &self.app_proto),
            ("category", &self.category),
            ("action", &self.action),
        ] {
            if let Some(t) = text {
                m.insert(key.into(), t.clone().into());
            }
        }
        m.insert("signature".into(), self.signature.clone().into());
        m.insert("signature_id".into(), self.signature_id.into());
        for (key, v) in [("gid", self.gid), ("rev", self.rev), ("severity", self.severity.map(u64::from))] {
            if let Some(v) = v {
                m.insert(key.into(), v.into());
            }
        }
        m
    }

    /// The alert as a spine payload: service `suricata`, category `ids_alert`.
    pub fn to_payload(&self, product: &str) -> Payload {
        Payload::LogRecord {
            product: Some(product.to_owned()),
            service: Some("suricata".to_owned()),
            category: Some("ids_alert".to_owned()),
            fields: self.to_fields(),
        }
    }
}

/// Counters of what the reader has seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EveStats {
    pub lines: u64,
    pub flows: u64,
    pub alerts: u64,
    pub bad_lines: u64,
    /// Skipped events by `event_type`.
    pub other: BTreeMap<String, u64>,
}

/// Streams flows and alerts out of an EVE JSON file or socket.
pub struct EveReader<R> {
    lines: LineReader<R>,
    stats: EveStats,
    done: bool,
}

impl<R: BufRead> EveReader<R> {
    /// A reader with the default 64 KiB line cap.
    pub fn new(inner: R) -> Self {
        Self::with_max_line(inner, DEFAULT_MAX_LINE_BYTES)
    }

    pub fn with_max_line(inner: R, max_line_bytes: usize) -> Self {
        Self { lines: LineReader::new(inner, max_line_bytes), stats: EveStats::default(), done: false }
    }

    pub fn stats(&self) -> &EveStats {
        &self.stats
    }

    fn count_other(&mut self, event_type: &str) {
        let key = if self.stats.other.len() < MAX_COUNTED_TYPES || self.stats.other.contains_key(event_type) {
            cap_chars(event_type, 32)
        } else {
            "other".to_owned()
        };
        *self.stats.other.entry(key).or_default() += 1;
    }
}

impl<R: BufRead> Iterator for EveReader<R> {
    type Item = Result<EveRecord, NetError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            let (number, line) = match self.lines.next_line() {
                Ok(Some(next)) => next,
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(NetError::Io(e)));
                }
            };
            self.stats.lines += 1;
            let text = match line {
                Line::Text(t) => t,
                Line::TooLong(max) => {
                    self.stats.bad_lines += 1;
                    return Some(Err(NetError::LineTooLong { line: number, max }));
                }
            };
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let parsed = serde_json::from_slice::<Map<String, Value>>(text);
            let event = match parsed {
                Ok(event) => event,
                Err(e) => {
                    self.stats.bad_lines += 1;
                    return Some(Err(NetError::bad_line(number, format!("not a json object (column {})", e.column()))));
                }
            };
            let event_type = event.get("event_type").and_then(Value::as_str).unwrap_or("");
            let result = match event_type {
                "flow" => flow_event(&event, true).map(EveRecord::Flow),
                "netflow" => flow_event(&event, false).map(EveRecord::Flow),
                "alert" => alert_event(&event).map(EveRecord::Alert),
                "" => Err("no event_type".to_owned()),
                other => {
                    let other = other.to_owned();
                    self.count_other(&other);
                    continue;
                }
            };
            match &result {
                Ok(EveRecord::Flow(_)) => self.stats.flows += 1,
                Ok(EveRecord::Alert(_)) => self.stats.alerts += 1,
                Err(_) => self.stats.bad_lines += 1,
            }
            return Some(result.map_err(|m| NetError::bad_line(number, m)));
        }
    }
}

fn text(v: Option<&Value>, max: usize) -> Option<String> {
    v.and_then(Value::as_str).map(|s| cap_chars(s, max))
}

fn port(v: Option<&Value>) -> Option<u16> {
    v.and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok())
}

fn ip(event: &Map<String, Value>, key: &str) -> Result<Option<IpAddr>, String> {
    match event.get(key).and_then(Value::as_str) {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| format!("{key} is not an ip address")),
    }
}

fn flags_from_hex(v: Option<&Value>) -> TcpFlags {
    let mut flags = TcpFlags::default();
    if let Some(bits) = v.and_then(Value::as_str).and_then(|h| u8::from_str_radix(h, 16).ok()) {
        flags.add_byte(bits);
    }
    flags
}

/// A `flow` (both directions) or `netflow` (this direction only) event.
fn flow_event(event: &Map<String, Value>, bidirectional: bool) -> Result<Flow, String> {
    let body =
        event.get(if bidirectional { "flow" } else { "netflow" }).and_then(Value::as_object).ok_or("no flow object")?;
    let time = |k: &str| body.get(k).and_then(Value::as_str).and_then(parse_time);
    let event_time = event.get("timestamp").and_then(Value::as_str).and_then(parse_time);
    let start = time("start").or(event_time).ok_or("no usable start or timestamp")?;
    let duration = match time("end") {
        Some(end) => (end - start).max(0.0),
        None => body.get("age").and_then(Value::as_f64).unwrap_or(0.0).max(0.0),
    };
    let count = |k: &str| body.get(k).and_then(Value::as_u64).unwrap_or(0);
    let tcp = event.get("tcp").and_then(Value::as_object);
    let (fwd, bwd) = if bidirectional {
        (
            Direction {
                pkts: count("pkts_toserver"),
                bytes: count("bytes_toserver"),
                flags: flags_from_hex(tcp.and_then(|t| t.get("tcp_flags_ts"))),
                ..Direction::default()
            },
            Direction {
                pkts: count("pkts_toclient"),
                bytes: count("bytes_toclient"),
                flags: flags_from_hex(tcp.and_then(|t| t.get("tcp_flags_tc"))),
                ..Direction::default()
            },
        )
    } else {
        (
            Direction {
                pkts: count("pkts"),
                bytes: count("bytes"),
                ttl: body.get("min_ttl").and_then(Value::as_u64).and_then(|t| u8::try_from(t).ok()),
                flags: flags_from_hex(tcp.and_then(|t| t.get("tcp_flags"))),
                ..Direction::default()
            },
            Direction::default(),
        )
    };
    let app_proto = text(event.get("app_proto"), 32)
        .map(|a| a.to_ascii_lowercase())
        .filter(|a| !matches!(a.as_str(), "failed" | "unknown" | ""));
    Ok(Flow {
        uid: event.get("flow_id").and_then(Value::as_u64).map(|id| id.to_string()),
        start,
        duration,
        src_ip: ip(event, "src_ip")?,
        src_port: port(event.get("src_port")),
        dst_ip: ip(event, "dest_ip")?,
        dst_port: port(event.get("dest_port")),
        transport: event
            .get("proto")
            .and_then(Value::as_str)
            .map_or(Transport::Other("unknown".into()), Transport::from_name),
        app_proto,
        state: text(body.get("state"), 16),
        fwd,
        bwd,
        ..Flow::default()
    })
}

fn alert_event(event: &Map<String, Value>) -> Result<EveAlert, String> {
    let alert = event.get("alert").and_then(Value::as_object).ok_or("no alert object")?;
    let timestamp = event.get("timestamp").and_then(Value::as_str).and_then(parse_time).ok_or("no usable timestamp")?;
    Ok(EveAlert {
        timestamp,
        flow_id: event.get("flow_id").and_then(Value::as_u64),
        src_ip: ip(event, "src_ip")?,
        src_port: port(event.get("src_port")),
        dst_ip: ip(event, "dest_ip")?,
        dst_port: port(event.get("dest_port")),
        proto: text(event.get("proto"), 16).map(|p| p.to_ascii_lowercase()),
        app_proto: text(event.get("app_proto"), 32).map(|a| a.to_ascii_lowercase()),
        signature: text(alert.get("signature"), MAX_TEXT_CHARS).unwrap_or_default(),
        signature_id: alert.get("signature_id").and_then(Value::as_u64).ok_or("no alert.signature_id")?,
        gid: alert.get("gid").and_then(Value::as_u64),
        rev: alert.get("rev").and_then(Value::as_u64),
        severity: alert.get("severity").and_then(Value::as_u64).and_then(|s| u8::try_from(s).ok()),
        category: text(alert.get("category"), MAX_TEXT_CHARS).filter(|c| !c.is_empty()),
        action: text(alert.get("action"), 16),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// EVE lines in the format of Suricata's user guide ("Eve JSON Format"):
    /// the documented alert example, flow events as `suricata -r` writes
    /// them (a closed TCP session with flags, a UDP flow), netflow events in
    /// both directions, a dns event (counted, skipped) and stats.
    const EVE: &str = r#"{"timestamp":"2017-04-07T22:24:37.251547+0100","flow_id":586497171462735,"pcap_cnt":53381,"event_type":"alert","src_ip":"192.168.2.14","src_port":50096,"dest_ip":"209.53.113.5","dest_port":80,"proto":"TCP","metadata":{"flowbits":["http.dottedquadhost"]},"tx_id":4,"alert":{"action":"allowed","gid":1,"signature_id":2018358,"rev":10,"signature":"ET HUNTING GENERIC SUSPICIOUS POST to Dotted Quad with Fake Browser 1","category":"Potentially Bad Traffic","severity":2},"app_proto":"http"}
{"timestamp":"2015-10-20T11:24:46.195059-0600","flow_id":1042873772049837,"event_type":"flow","src_ip":"10.10.10.30","src_port":57656,"dest_ip":"10.10.10.10","dest_port":102,"proto":"TCP","flow":{"pkts_toserver":3,"pkts_toclient":8,"bytes_toserver":186,"bytes_toclient":480,"start":"2015-10-20T11:24:10.230829-0600","end":"2015-10-20T11:24:46.195059-0600","age":36,"state":"closed","reason":"shutdown","alerted":false},"tcp":{"tcp_flags":"16","tcp_flags_ts":"16","tcp_flags_tc":"16","syn":true,"rst":true,"ack":true,"state":"closed"}}
{"timestamp":"2024-11-13T12:21:43.564905+1100","flow_id":252156359044262,"event_type":"dns","src_ip":"172.18.0.2","src_port":41195,"dest_ip":"92.42.1.83","dest_port":53,"proto":"UDP","dns":{"type":"query","id":4908,"rrname":"example.com","rrtype":"TXT","tx_id":0,"opcode":0}}
{"timestamp":"2024-11-13T12:22:10.000000+1100","flow_id":229978107844536,"event_type":"flow","src_ip":"172.18.0.2","src_port":41195,"dest_ip":"92.42.1.83","dest_port":53,"proto":"UDP","app_proto":"dns","flow":{"pkts_toserver":1,"pkts_toclient":1,"bytes_toserver":86,"bytes_toclient":142,"start":"2024-11-13T12:22:00.381225+1100","end":"2024-11-13T12:22:00.412001+1100","age":0,"state":"established","reason":"timeout","alerted":false}}
{"timestamp":"2024-11-08T21:55:18.257416+0000","flow_id":234143298308779,"event_type":"netflow","src_ip":"13.127.20.7","src_port":56630,"dest_ip":"172.31.2.4","dest_port":80,"proto":"TCP","app_proto":"unknown","netflow":{"pkts":4,"bytes":216,"start":"2024-11-08T21:54:16.972019+0000","end":"2024-11-08T21:54:17.263030+0000","age":1,"min_ttl":112,"max_ttl":112},"tcp":{"tcp_flags":"13","syn":true,"fin":true,"ack":true}}
{"timestamp":"2024-11-08T21:55:18.257420+0000","flow_id":234143298308779,"event_type":"netflow","src_ip":"172.31.2.4","src_port":80,"dest_ip":"13.127.20.7","dest_port":56630,"proto":"TCP","app_proto":"unknown","netflow":{"pkts":2,"bytes":112,"start":"2024-11-08T21:54:16.972019+0000","end":"2024-11-08T21:54:17.263030+0000","age":1,"min_ttl":126,"max_ttl":126},"tcp":{"tcp_flags":"13","syn":true,"fin":true,"ack":true}}
{"timestamp":"2020-04-03T15:37:20.358120+0000","event_type":"stats","stats":{"uptime":8}}
"#;

    #[test]
    fn flows_alerts_and_counted_others() {
        let mut reader = EveReader::new(EVE.as_bytes());
        let records: Vec<EveRecord> = reader.by_ref().map(Result::unwrap).collect();
        assert_eq!(records.len(), 5);
        let EveRecord::Alert(alert) = &records[0] else { panic!("{:?}", records[0]) };
        assert_eq!(alert.signature_id, 2_018_358);
        assert_eq!(alert.severity, Some(2));
        assert_eq!(alert.category.as_deref(), Some("Potentially Bad Traffic"));
        assert_eq!(alert.dst_port, Some(80));
        let Payload::LogRecord { service, category, fields, .. } = alert.to_payload("suricata") else { panic!() };
        assert_eq!((service.as_deref(), category.as_deref()), (Some("suricata"), Some("ids_alert")));
        assert_eq!(fields["signature_id"], 2_018_358);

        let EveRecord::Flow(s7) = &records[1] else { panic!() };
        assert_eq!(s7.transport, Transport::Tcp);
        assert_eq!((s7.fwd.pkts, s7.bwd.pkts, s7.fwd.bytes, s7.bwd.bytes), (3, 8, 186, 480));
        assert!((s7.duration - 35.96423).abs() < 1e-5);
        // 0x16 = SYN | RST | ACK.
        assert_eq!((s7.fwd.flags.syn, s7.fwd.flags.rst, s7.fwd.flags.ack, s7.fwd.flags.fin), (1, 1, 1, 0));
        assert_eq!(s7.state.as_deref(), Some("closed"));
        assert_eq!(s7.uid.as_deref(), Some("1042873772049837"));

        let EveRecord::Flow(dns) = &records[2] else { panic!() };
        assert_eq!(dns.app_proto.as_deref(), Some("dns"));
        assert_eq!(dns.transport, Transport::Udp);

        let EveRecord::Flow(nf) = &records[3] else { panic!() };
        assert_eq!((nf.fwd.pkts, nf.fwd.bytes, nf.fwd.ttl, nf.bwd.pkts), (4, 216, Some(112), 0));
        assert_eq!(nf.app_proto, None);

        let stats = reader.stats();
        assert_eq!((stats.flows, stats.alerts, stats.bad_lines), (4, 1, 0));
        assert_eq!(stats.other.get("dns"), Some(&1));
        assert_eq!(stats.other.get("stats"), Some(&1));
    }

    #[test]
    fn bad_events_are_reported_and_skipped() {
        let input = "{\"event_type\":\"alert\",\"timestamp\":\"2017-04-07T22:24:37Z\",\"alert\":{}}\n[]\n\n{\"event_type\":\"flow\",\"timestamp\":\"x\",\"flow\":{}}\n{\"timestamp\":\"2017-04-07T22:24:37Z\"}\n";
        let results: Vec<_> = EveReader::new(input.as_bytes()).collect();
        let lines: Vec<_> = results.iter().map(|r| r.as_ref().err().and_then(NetError::line)).collect();
        assert_eq!(lines, [Some(1), Some(2), Some(4), Some(5)]);
    }
}
