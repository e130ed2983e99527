//! Zeek `conn.log` input, in either of the formats Zeek writes: TSV with
//! its `#separator` / `#fields` / `#types` header (`-` unset, `(empty)`
//! empty, `\xHH` escapes) and JSON lines (`LogAscii::use_json=T`, with
//! `id.orig_h`-style keys, the `id_orig_h` keys some shippers rewrite them
//! to, or a nested `id` object). Both may be mixed in one stream, as happens
//! when a log directory is concatenated.
//!
//! The reader keeps one line at a time (capped) and the TSV schema; a bad
//! line is reported with its number and skipped.

use std::io::BufRead;
use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::error::NetError;
use crate::flow::{Direction, Flow, Transport};
use crate::util::{DEFAULT_MAX_LINE_BYTES, Line, LineReader, cap_chars, parse_time};

/// Most columns accepted in a `#fields` header.
pub const MAX_TSV_FIELDS: usize = 256;

/// Counters of what the reader has seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ZeekStats {
    pub lines: u64,
    pub flows: u64,
    pub header_lines: u64,
    pub bad_lines: u64,
}

/// The TSV header in force: columns and the special values.
#[derive(Clone, Debug)]
struct TsvSchema {
    separator: u8,
    unset: String,
    empty: String,
    fields: Vec<String>,
}

impl Default for TsvSchema {
    fn default() -> Self {
        Self { separator: b'\t', unset: "-".into(), empty: "(empty)".into(), fields: Vec::new() }
    }
}

/// Streams flows out of a Zeek `conn.log` (TSV or JSON lines).
pub struct ZeekReader<R> {
    lines: LineReader<R>,
    schema: TsvSchema,
    stats: ZeekStats,
    done: bool,
}

impl<R: BufRead> ZeekReader<R> {
    /// A reader with the default 64 KiB line cap.
    pub fn new(inner: R) -> Self {
        Self::with_max_line(inner, DEFAULT_MAX_LINE_BYTES)
    }

    pub fn with_max_line(inner: R, max_line_bytes: usize) -> Self {
        Self {
            lines: LineReader::new(inner, max_line_bytes),
            schema: TsvSchema::default(),
            stats: ZeekStats::default(),
            done: false,
        }
    }

    pub fn stats(&self) -> &ZeekStats {
        &self.stats
    }

    fn next_flow(&mut self) -> Option<Result<Flow, NetError>> {
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
            let Ok(text) = std::str::from_utf8(text) else {
                self.stats.bad_lines += 1;
                return Some(Err(NetError::bad_line(number, "not utf-8")));
            };
            let trimmed = text.trim_start_matches('\u{feff}');
            if trimmed.trim().is_empty() {
                continue;
            }
            let result = if let Some(header) = trimmed.strip_prefix('#') {
                self.stats.header_lines += 1;
                match apply_header(&mut self.schema, header) {
                    Ok(()) => continue,
                    Err(message) => Err(NetError::bad_line(number, message)),
                }
            } else if trimmed.starts_with('{') {
                match serde_json::from_str::<Map<String, Value>>(trimmed) {
                    Ok(map) => flow_from_json(&map).map_err(|m| NetError::bad_line(number, m)),
                    Err(e) => Err(NetError::bad_line(number, format!("not a json object (column {})", e.column()))),
                }
            } else {
                flow_from_tsv(&self.schema, trimmed).map_err(|m| NetError::bad_line(number, m))
            };
            match &result {
                Ok(_) => self.stats.flows += 1,
                Err(_) => self.stats.bad_lines += 1,
            }
            return Some(result);
        }
    }
}

impl<R: BufRead> Iterator for ZeekReader<R> {
    type Item = Result<Flow, NetError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_flow()
    }
}

/// Applies one `#…` header line to the schema.
fn apply_header(schema: &mut TsvSchema, header: &str) -> Result<(), String> {
    // `#separator` is followed by a space; the others by the separator.
    if let Some(value) = header.strip_prefix("separator") {
        let value = unescape(value.trim_start_matches([' ', '\t']));
        let [sep] = value.as_bytes() else {
            return Err("separator must be one byte".into());
        };
        *schema = TsvSchema { separator: *sep, ..TsvSchema::default() };
        return Ok(());
    }
    let sep = char::from(schema.separator);
    let (key, rest) = header.split_once(sep).unwrap_or((header, ""));
    match key {
        "unset_field" => schema.unset = unescape(rest),
        "empty_field" => schema.empty = unescape(rest),
        "fields" => {
            let fields: Vec<String> = rest.split(sep).map(unescape).collect();
            if fields.len() > MAX_TSV_FIELDS {
                return Err(format!("more than {MAX_TSV_FIELDS} fields"));
            }
            schema.fields = fields;
        }
        // #set_separator, #path, #open, #close, #types and comments need
        // nothing: a set column is read as text.
        _ => {}
    }
    Ok(())
}

/// Undoes Zeek's `\xHH` escaping (other backslashes are kept).
fn unescape(text: &str) -> String {
    if !text.contains("\\x") {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'\\'
            && bytes.get(i + 1) == Some(&b'x')
            && let Some(hex) = text.get(i + 2..i + 4)
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A conn.log record as (name, value) lookups, whatever the format.
trait Record {
    fn text(&self, name: &str) -> Option<String>;
    fn number(&self, name: &str) -> Option<f64>;
}

struct TsvRecord<'a> {
    schema: &'a TsvSchema,
    values: Vec<&'a str>,
}

impl Record for TsvRecord<'_> {
    fn text(&self, name: &str) -> Option<String> {
        let at = self.schema.fields.iter().position(|f| f == name)?;
        let raw = *self.values.get(at)?;
        if raw == self.schema.unset {
            return None;
        }
        if raw == self.schema.empty {
            return Some(String::new());
        }
        Some(unescape(raw))
    }

    fn number(&self, name: &str) -> Option<f64> {
        self.text(name)?.parse().ok()
    }
}

struct JsonRecord<'a>(&'a Map<String, Value>);

impl JsonRecord<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        let m = self.0;
        m.get(name).or_else(|| m.get(&name.replace('.', "_"))).or_else(|| {
            let (outer, inner) = name.split_once('.')?;
            m.get(outer)?.as_object()?.get(inner)
        })
    }
}

impl Record for JsonRecord<'_> {
    fn text(&self, name: &str) -> Option<String> {
        match self.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Array(items) => Some(items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")),
            _ => None,
        }
    }

    fn number(&self, name: &str) -> Option<f64> {
        match self.get(name)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }
}

fn flow_from_tsv(schema: &TsvSchema, line: &str) -> Result<Flow, String> {
    if schema.fields.is_empty() {
        return Err("data line before a #fields header".into());
    }
    let values: Vec<&str> = line.split(char::from(schema.separator)).take(MAX_TSV_FIELDS + 1).collect();
    if values.len() != schema.fields.len() {
        return Err(format!("{} columns where the header has {}", values.len(), schema.fields.len()));
    }
    flow_from_record(&TsvRecord { schema, values })
}

fn flow_from_json(map: &Map<String, Value>) -> Result<Flow, String> {
    flow_from_record(&JsonRecord(map))
}

fn flow_from_record(r: &dyn Record) -> Result<Flow, String> {
    let start = r.text("ts").and_then(|t| parse_time(&t)).ok_or("no usable ts")?;
    let ip = |name: &str| -> Result<Option<IpAddr>, String> {
        match r.text(name) {
            None => Ok(None),
            Some(t) => t.parse().map(Some).map_err(|_| format!("{name} is not an ip address")),
        }
    };
    let port = |name: &str| r.number(name).and_then(|p| (0.0..=65535.0).contains(&p).then_some(p as u16));
    let count = |name: &str| r.number(name).filter(|v| *v >= 0.0).map(|v| v as u64);
    let src_ip = ip("id.orig_h")?;
    let dst_ip = ip("id.resp_h")?;
    if src_ip.is_none() || dst_ip.is_none() {
        return Err("no id.orig_h / id.resp_h: not a conn.log record".into());
    }
    let transport = r.text("proto").map_or(Transport::Other("unknown".into()), |p| Transport::from_name(&p));
    // `service` is a comma-separated list of confirmed protocols; removed
    // ones are prefixed with `-`. The first confirmed one is the flow's.
    let app_proto = r.text("service").and_then(|s| {
        s.split(',')
            .map(str::trim)
            .find(|p| !p.is_empty() && !p.starts_with('-'))
            .map(|p| cap_chars(&p.to_ascii_lowercase(), 32))
    });
    let direction = |side: &str| Direction {
        pkts: count(&format!("{side}_pkts")).unwrap_or(0),
        bytes: count(&format!("{side}_bytes")).unwrap_or(0),
        ip_bytes: count(&format!("{side}_ip_bytes")),
        ..Direction::default()
    };
    Ok(Flow {
        uid: r.text("uid").map(|u| cap_chars(&u, 64)),
        start,
        duration: r.number("duration").filter(|d| d.is_finite() && *d >= 0.0).unwrap_or(0.0),
        src_ip,
        src_port: port("id.orig_p"),
        dst_ip,
        dst_port: port("id.resp_p"),
        transport,
        app_proto,
        state: r.text("conn_state").map(|s| cap_chars(&s, 16)),
        history: r.text("history").map(|h| cap_chars(&h, 32)),
        fwd: direction("orig"),
        bwd: direction("resp"),
        ..Flow::default()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// The conn.log Zeek writes for its documentation trace `tm1t.pcap`
    /// ("Zeek Log Formats and Inspection", TSV, tabs restored).
    pub(crate) const TM1T_CONN_TSV: &str = "#separator \\x09\n\
#set_separator\t,\n\
#empty_field\t(empty)\n\
#unset_field\t-\n\
#path\tconn\n\
#open\t2020-06-05-14-48-32\n\
#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\n\
#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]\n\
1591367999.305988\tCazOhH2qDUiJTWMCY\t192.168.4.76\t36844\t192.168.4.1\t53\tudp\tdns\t0.066852\t62\t141\tSF\t-\t-\t0\tDd\t2\t118\t2\t197\t-\n\
1591367999.430166\tCLqEx41jYPOdfHF586\t192.168.4.76\t46378\t31.3.245.133\t80\ttcp\thttp\t0.254115\t77\t295\tSF\t-\t-\t0\tShADadFf\t6\t397\t4\t511\t-\n\
#close\t2020-06-05-14-48-32\n";

    /// The same trace with `LogAscii::use_json=T` (same documentation page).
    const TM1T_CONN_JSON: &str = r#"{"ts":1591367999.305988,"uid":"CMdzit1AMNsmfAIiQc","id.orig_h":"192.168.4.76","id.orig_p":36844,"id.resp_h":"192.168.4.1","id.resp_p":53,"proto":"udp","service":"dns","duration":0.06685185432434082,"orig_bytes":62,"resp_bytes":141,"conn_state":"SF","missed_bytes":0,"history":"Dd","orig_pkts":2,"orig_ip_bytes":118,"resp_pkts":2,"resp_ip_bytes":197}
{"ts":1591367999.430166,"uid":"C5bLoe2Mvxqhawzqqd","id.orig_h":"192.168.4.76","id.orig_p":46378,"id.resp_h":"31.3.245.133","id.resp_p":80,"proto":"tcp","service":"http","duration":0.25411510467529297,"orig_bytes":77,"resp_bytes":295,"conn_state":"SF","missed_bytes":0,"history":"ShADadFf","orig_pkts":6,"orig_ip_bytes":397,"resp_pkts":4,"resp_ip_bytes":511}
"#;

    /// Security Onion's rewrite of conn.log JSON: underscore keys and ISO
    /// timestamps (a responder-only DNS answer, state SHR).
    const SO_CONN_JSON: &str = r#"{"local_resp": true, "resp_bytes": 234, "uid": "CPQ9vC2my8sIGasb3a", "service": "dns", "proto": "udp", "orig_ip_bytes": 0, "duration": 0.000368, "orig_pkts": 0, "ts": "2019-03-14T23:59:49.920582Z", "resp_ip_bytes": 290, "resp_pkts": 2, "history": "^d", "conn_state": "SHR", "local_orig": true, "missed_bytes": 0, "id_resp_h": "192.168.4.1", "orig_bytes": 0, "id_resp_p": 53, "id_orig_p": 42051, "id_orig_h": "192.168.4.57"}"#;

    fn read_all(input: &str) -> (Vec<Flow>, Vec<NetError>) {
        let mut flows = Vec::new();
        let mut errors = Vec::new();
        for item in ZeekReader::new(input.as_bytes()) {
            match item {
                Ok(f) => flows.push(f),
                Err(e) => errors.push(e),
            }
        }
        (flows, errors)
    }

    #[test]
    fn tsv_and_json_of_the_same_trace_agree() {
        let (tsv, errors) = read_all(TM1T_CONN_TSV);
        assert!(errors.is_empty(), "{errors:?}");
        let (json, errors) = read_all(TM1T_CONN_JSON);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(tsv.len(), 2);
        assert_eq!(json.len(), 2);
        for (t, j) in tsv.iter().zip(&json) {
            assert_eq!((t.src_ip, t.src_port, t.dst_ip, t.dst_port), (j.src_ip, j.src_port, j.dst_ip, j.dst_port));
            assert_eq!((t.fwd.pkts, t.fwd.bytes, t.fwd.ip_bytes), (j.fwd.pkts, j.fwd.bytes, j.fwd.ip_bytes));
            assert_eq!((t.bwd.pkts, t.bwd.bytes, t.bwd.ip_bytes), (j.bwd.pkts, j.bwd.bytes, j.bwd.ip_bytes));
            assert_eq!((&t.state, &t.history, &t.app_proto), (&j.state, &j.history, &j.app_proto));
            assert!((t.duration - j.duration).abs() < 1e-6);
        }
        let http = &tsv[1];
        assert_eq!(http.transport, Transport::Tcp);
        assert_eq!(http.app_proto.as_deref(), Some("http"));
        assert_eq!(http.history.as_deref(), Some("ShADadFf"));
        assert_eq!(
            (http.fwd.bytes, http.bwd.bytes, http.fwd.ip_bytes, http.bwd.ip_bytes),
            (77, 295, Some(397), Some(511))
        );
        assert_eq!(http.start, 1_591_367_999.430_166);
        assert_eq!(http.uid.as_deref(), Some("CLqEx41jYPOdfHF586"));
    }

    #[test]
    fn shipper_rewritten_json_is_read() {
        let (flows, errors) = read_all(SO_CONN_JSON);
        assert!(errors.is_empty(), "{errors:?}");
        let f = &flows[0];
        assert_eq!(f.src_ip, "192.168.4.57".parse().ok());
        assert_eq!(f.dst_port, Some(53));
        assert_eq!(f.state.as_deref(), Some("SHR"));
        assert_eq!(f.bwd.ip_bytes, Some(290));
        assert_eq!(f.start, 1_552_607_989.920_582);
    }

    #[test]
    fn bad_lines_are_reported_with_numbers_and_skipped() {
        let mut input = String::from("1591367999.3\tCx\n"); // data before #fields
        input.push_str(TM1T_CONN_TSV);
        input.push_str("1591367999.9\tshort line\n");
        input.push_str("{\"ts\": 1, \"id.orig_h\": \"not-an-ip\", \"id.resp_h\": \"10.0.0.1\"}\n");
        input.push_str("{not json\n");
        input.push_str(&format!("{}\n", "x".repeat(500)));
        let reader = ZeekReader::with_max_line(input.as_bytes(), 400);
        let results: Vec<_> = reader.collect();
        let lines: Vec<Option<u64>> = results.iter().filter_map(|r| r.as_ref().err()).map(NetError::line).collect();
        assert_eq!(lines, [Some(1), Some(13), Some(14), Some(15), Some(16)]);
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 2);
        // Messages never echo the line.
        for e in results.iter().filter_map(|r| r.as_ref().err()) {
            assert!(!e.to_string().contains("not-an-ip"), "{e}");
        }
    }

    #[test]
    fn escapes_and_custom_unset() {
        assert_eq!(unescape("a\\x09b\\x5cx"), "a\tb\\x");
        let input = "#separator ,\n#unset_field,NONE\n#fields,ts,id.orig_h,id.orig_p,id.resp_h,id.resp_p,proto,service,orig_pkts\n1.5,10.0.0.1,1,10.0.0.2,2,tcp,NONE,3\n";
        let (flows, errors) = read_all(input);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(flows[0].app_proto, None);
        assert_eq!(flows[0].fwd.pkts, 3);
    }
}
