//! Flow CSV input: rows in the UNSW-NB15 or CIC-IDS2017 column layout
//! become [`Flow`]s, so that a data set can be replayed as live traffic
//! through the same path as a sensor's flows. The layout is detected from
//! the header; column names are matched trimmed and case-insensitively, and
//! both the improved CIC-IDS2017 names (`Total Fwd Packet`) and the original
//! MachineLearningCVE ones (` Total Fwd Packets`) are accepted, as are the
//! raw UNSW-NB15 names (`srcip`, `Stime`, `Sintpkt`) when a header is given.
//!
//! Rows are split by a small quoted-field splitter rather than the `csv`
//! crate: lines are already capped by the line reader, and the data sets
//! have one record per line.

use std::collections::HashMap;
use std::io::BufRead;

use crate::error::NetError;
use crate::flow::{Direction, Flow, Spread, Transport};
use crate::util::{DEFAULT_MAX_LINE_BYTES, Line, LineReader, cap_chars, parse_time};

/// Most columns accepted in a header.
pub const MAX_CSV_COLUMNS: usize = 512;

/// The column layouts the reader understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsvLayout {
    /// UNSW-NB15 (the partition CSVs, or the raw files with a header).
    UnswNb15,
    /// CIC-IDS2017 (the improved CSVs or the original MachineLearningCVE).
    CicIds2017,
}

/// One data set row: the flow and the row's labels.
#[derive(Clone, Debug, PartialEq)]
pub struct CsvFlow {
    pub flow: Flow,
    /// The label column (`label` 0/1 in UNSW-NB15, `Label` BENIGN or the
    /// attack name in CIC-IDS2017).
    pub label: Option<String>,
    /// The attack category (`attack_cat`, `Attempted Category`).
    pub category: Option<String>,
}

/// A parsed header: the layout and where each column is.
#[derive(Clone, Debug)]
pub struct CsvHeader {
    layout: CsvLayout,
    columns: HashMap<String, usize>,
    width: usize,
}

impl CsvHeader {
    /// Reads a header line and detects its layout.
    pub fn parse(line: &str) -> Result<Self, NetError> {
        let line = line.trim_start_matches('\u{feff}');
        let names = split_row(line, MAX_CSV_COLUMNS)
            .ok_or(NetError::TooLarge { what: "csv header columns", max: MAX_CSV_COLUMNS as u64 })?;
        let mut columns = HashMap::new();
        for (at, name) in names.iter().enumerate() {
            columns.entry(name.trim().to_ascii_lowercase()).or_insert(at);
        }
        let has = |n: &str| columns.contains_key(n);
        let layout = if has("sbytes") && has("dbytes") && has("proto") {
            CsvLayout::UnswNb15
        } else if has("flow duration") && (has("total fwd packet") || has("total fwd packets")) {
            CsvLayout::CicIds2017
        } else {
            return Err(NetError::Format("csv header is neither the unsw-nb15 nor the cic-ids2017 layout".into()));
        };
        Ok(Self { layout, columns, width: names.len() })
    }

    pub fn layout(&self) -> CsvLayout {
        self.layout
    }

    /// One data row under this header.
    pub fn row(&self, line: &str) -> Result<CsvFlow, String> {
        let values = split_row(line, MAX_CSV_COLUMNS).ok_or("too many columns")?;
        if values.len() != self.width {
            return Err(format!("{} columns where the header has {}", values.len(), self.width));
        }
        let row = Row { header: self, values };
        match self.layout {
            CsvLayout::UnswNb15 => unsw_row(&row),
            CsvLayout::CicIds2017 => cic_row(&row),
        }
    }
}

struct Row<'a> {
    header: &'a CsvHeader,
    values: Vec<String>,
}

impl Row<'_> {
    /// The first of `names` present, trimmed; `None` when empty.
    fn text(&self, names: &[&str]) -> Option<&str> {
        let at = names.iter().find_map(|n| self.header.columns.get(*n))?;
        let v = self.values.get(*at)?.trim();
        (!v.is_empty()).then_some(v)
    }

    fn num(&self, names: &[&str]) -> Option<f64> {
        let t = self.text(names)?;
        let v = match t.strip_prefix("0x") {
            Some(hex) => i64::from_str_radix(hex, 16).ok()? as f64,
            None => t.parse::<f64>().ok()?,
        };
        v.is_finite().then_some(v)
    }

    fn count(&self, names: &[&str]) -> Option<u64> {
        self.num(names).filter(|v| *v >= 0.0).map(|v| v as u64)
    }

    fn small<T: TryFrom<u64>>(&self, names: &[&str]) -> Option<T> {
        self.count(names).and_then(|v| T::try_from(v).ok())
    }

    fn labels(&self, label: &[&str], category: &[&str]) -> (Option<String>, Option<String>) {
        let t = |n: &[&str]| self.text(n).map(|s| cap_chars(s, 64));
        (t(label), t(category))
    }
}

/// Splits one CSV line: commas, with `"…"` quoting and `""` for a quote.
/// `None` past `max` columns.
fn split_row(line: &str, max: usize) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(std::mem::take(&mut field));
                if out.len() >= max {
                    return None;
                }
            }
            c => field.push(c),
        }
    }
    out.push(field);
    Some(out)
}

fn unsw_row(r: &Row<'_>) -> Result<CsvFlow, String> {
    let ms = |names: &[&str]| r.num(names).map(|v| v / 1000.0);
    let iat = |mean: &[&str], jit: &[&str]| {
        ms(mean).map(|mean| Spread { mean, std: ms(jit).unwrap_or(0.0), min: None, max: None })
    };
    let direction = |p: char| {
        let n = |suffix: &str| format!("{p}{suffix}");
        let bytes = r.count(&[&n("bytes")]);
        Direction {
            pkts: r.count(&[&n("pkts")]).unwrap_or(0),
            bytes: bytes.unwrap_or(0),
            ip_bytes: bytes,
            ttl: r.small(&[&n("ttl")]),
            win: r.small(&[&n("win")]),
            isn: r.small(&[&n("tcpb")]),
            retrans: r.count(&[&n("loss")]),
            iat: iat(&[&n("inpkt"), &n("intpkt")], &[&n("jit")]),
            ..Direction::default()
        }
    };
    let proto = r.text(&["proto"]).ok_or("no proto")?;
    let ip = |names: &[&str]| r.text(names).and_then(|t| t.parse().ok());
    let port = |names: &[&str]| r.small::<u16>(names);
    let start = r.text(&["stime"]).and_then(parse_time).unwrap_or(0.0);
    let (label, category) = r.labels(&["label"], &["attack_cat"]);
    Ok(CsvFlow {
        flow: Flow {
            start,
            duration: r.num(&["dur"]).ok_or("no dur")?.max(0.0),
            src_ip: ip(&["srcip"]),
            src_port: port(&["sport"]),
            dst_ip: ip(&["dstip"]),
            dst_port: port(&["dsport"]),
            transport: Transport::from_name(proto),
            app_proto: r.text(&["service"]).filter(|s| *s != "-").map(|s| cap_chars(&s.to_ascii_lowercase(), 32)),
            state: r.text(&["state"]).map(|s| cap_chars(s, 16)),
            fwd: direction('s'),
            bwd: direction('d'),
            synack: r.num(&["synack"]),
            ackdat: r.num(&["ackdat"]),
            ..Flow::default()
        },
        label,
        category,
    })
}

fn cic_row(r: &Row<'_>) -> Result<CsvFlow, String> {
    let us = |name: &str| r.num(&[name]).map(|v| v / 1e6);
    let spread = |prefix: &str, scale: f64| {
        let get = |what: &str| r.num(&[&format!("{prefix} {what}")]).map(|v| v * scale);
        get("mean").map(|mean| Spread { mean, std: get("std").unwrap_or(0.0), min: get("min"), max: get("max") })
    };
    let win = |names: &[&str]| r.num(names).filter(|v| *v >= 0.0).and_then(|v| u32::try_from(v as u64).ok());
    let mut fwd = Direction {
        pkts: r.count(&["total fwd packet", "total fwd packets"]).ok_or("no total fwd packets")?,
        bytes: r.count(&["total length of fwd packet", "total length of fwd packets"]).unwrap_or(0),
        header_bytes: r.count(&["fwd header length"]),
        data_pkts: r.count(&["fwd act data pkts", "act_data_pkt_fwd"]),
        win: win(&["fwd init win bytes", "init_win_bytes_forward"]),
        size: spread("fwd packet length", 1.0),
        iat: spread("fwd iat", 1e-6),
        ..Direction::default()
    };
    let mut bwd = Direction {
        pkts: r.count(&["total bwd packets", "total backward packets"]).unwrap_or(0),
        bytes: r.count(&["total length of bwd packet", "total length of bwd packets"]).unwrap_or(0),
        header_bytes: r.count(&["bwd header length"]),
        win: win(&["bwd init win bytes", "init_win_bytes_backward"]),
        size: spread("bwd packet length", 1.0),
        iat: spread("bwd iat", 1e-6),
        ..Direction::default()
    };
    // PSH, URG and RST come per direction; FIN, SYN, ACK, CWR and ECE only
    // as totals, which are kept on the forward side.
    let flag = |name: &str| r.count(&[name]).and_then(|v| u32::try_from(v).ok());
    for name in ["psh", "urg", "rst", "fin", "syn", "ack", "cwr", "ece"] {
        let total = flag(&format!("{name} flag count"));
        let f = flag(&format!("fwd {name} flags"));
        let b = flag(&format!("bwd {name} flags")).unwrap_or(0);
        let f = f.or_else(|| total.map(|t| t.saturating_sub(b))).unwrap_or(0);
        set_flag(&mut fwd, name, f);
        set_flag(&mut bwd, name, b);
    }
    let proto = r
        .num(&["protocol"])
        .filter(|p| (0.0..=255.0).contains(p))
        .map_or(Transport::Other("unknown".into()), |p| Transport::from_number(p as u8));
    let ip = |names: &[&str]| r.text(names).and_then(|t| t.parse().ok());
    let mut src_port = r.small::<u16>(&["src port", "source port"]);
    let mut dst_port = r.small::<u16>(&["dst port", "destination port"]);
    // ICMP type and code go where Zeek puts them, unless ports were given.
    if proto == Transport::Icmp
        && src_port.unwrap_or(0) == 0
        && dst_port.unwrap_or(0) == 0
        && let (Some(t), Some(c)) = (r.small::<u16>(&["icmp type"]), r.small::<u16>(&["icmp code"]))
    {
        (src_port, dst_port) = (Some(t), Some(c));
    }
    let (label, category) = r.labels(&["label"], &["attempted category"]);
    Ok(CsvFlow {
        flow: Flow {
            uid: r.text(&["flow id"]).map(|s| cap_chars(s, 64)),
            start: r.text(&["timestamp"]).and_then(parse_time).unwrap_or(0.0),
            duration: us("flow duration").ok_or("no flow duration")?.max(0.0),
            src_ip: ip(&["src ip", "source ip"]),
            src_port,
            dst_ip: ip(&["dst ip", "destination ip"]),
            dst_port,
            transport: proto,
            iat: spread("flow iat", 1e-6),
            fwd,
            bwd,
            ..Flow::default()
        },
        label,
        category,
    })
}

fn set_flag(d: &mut Direction, name: &str, count: u32) {
    let slot = match name {
        "fin" => &mut d.flags.fin,
        "syn" => &mut d.flags.syn,
        "rst" => &mut d.flags.rst,
        "psh" => &mut d.flags.psh,
        "ack" => &mut d.flags.ack,
        "urg" => &mut d.flags.urg,
        "ece" => &mut d.flags.ece,
        _ => &mut d.flags.cwr,
    };
    *slot = count;
}

/// Counters of what the reader has seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CsvStats {
    pub rows: u64,
    pub bad_rows: u64,
}

/// Streams the rows of a flow CSV. The first non-blank line is the header;
/// a header of neither layout ends the input with an error.
pub struct FlowCsvReader<R> {
    lines: LineReader<R>,
    header: Option<CsvHeader>,
    stats: CsvStats,
    done: bool,
}

impl<R: BufRead> FlowCsvReader<R> {
    /// A reader with the default 64 KiB line cap.
    pub fn new(inner: R) -> Self {
        Self::with_max_line(inner, DEFAULT_MAX_LINE_BYTES)
    }

    pub fn with_max_line(inner: R, max_line_bytes: usize) -> Self {
        Self { lines: LineReader::new(inner, max_line_bytes), header: None, stats: CsvStats::default(), done: false }
    }

    /// The layout, once the header has been read.
    pub fn layout(&self) -> Option<CsvLayout> {
        self.header.as_ref().map(CsvHeader::layout)
    }

    pub fn stats(&self) -> &CsvStats {
        &self.stats
    }
}

impl<R: BufRead> Iterator for FlowCsvReader<R> {
    type Item = Result<CsvFlow, NetError>;

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
            let text = match line {
                Line::Text(t) => String::from_utf8_lossy(t).into_owned(),
                Line::TooLong(max) => {
                    if self.header.is_none() {
                        self.done = true;
                    }
                    self.stats.bad_rows += 1;
                    return Some(Err(NetError::LineTooLong { line: number, max }));
                }
            };
            if text.trim().is_empty() {
                continue;
            }
            let Some(header) = &self.header else {
                match CsvHeader::parse(&text) {
                    Ok(h) => {
                        self.header = Some(h);
                        continue;
                    }
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            };
            let result = header.row(&text).map_err(|m| NetError::bad_line(number, m));
            match &result {
                Ok(_) => self.stats.rows += 1,
                Err(_) => self.stats.bad_rows += 1,
            }
            return Some(result);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use std::io::BufReader;

    use super::*;
    use crate::flow::NetFeature;

    const UNSW: &str =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/unsw-nb15/UNSW_NB15_training-set.csv");
    const CIC_BENIGN: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/cic-ids2017-improved-sample/nids-daten/sampled_CICIDS2017_improved_rnd_5000/BENIGN_5000.csv"
    );
    const CIC_PORTSCAN: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/cic-ids2017-improved-sample/nids-daten/sampled_CICIDS2017_improved_rnd_5000/Portscan_5000.csv"
    );

    /// Reads the first `n` data rows, keeping the raw columns beside each flow.
    fn first_rows(path: &str, n: usize) -> (Vec<String>, Vec<(Vec<String>, CsvFlow)>) {
        let text = std::fs::read_to_string(path).unwrap();
        let mut lines = text.lines();
        let header: Vec<String> =
            split_row(lines.next().unwrap().trim_start_matches('\u{feff}'), MAX_CSV_COLUMNS).unwrap();
        let raw: Vec<Vec<String>> = lines.take(n).map(|l| split_row(l, MAX_CSV_COLUMNS).unwrap()).collect();
        let file = BufReader::new(std::fs::File::open(path).unwrap());
        let flows: Vec<CsvFlow> = FlowCsvReader::new(file).take(n).map(Result::unwrap).collect();
        (header, raw.into_iter().zip(flows).collect())
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn unsw_rows_answer_their_own_columns() {
        let (header, rows) = first_rows(UNSW, 2000);
        assert_eq!(rows.len(), 2000);
        let exact = [
            "dur", "spkts", "dpkts", "sbytes", "dbytes", "sttl", "dttl", "sloss", "dloss", "sinpkt", "dinpkt", "sjit",
            "djit", "swin", "dwin", "stcpb", "dtcpb", "synack", "ackdat", "smean", "dmean",
        ];
        let mut derived_close = 0;
        let mut derived_total = 0;
        for (raw, row) in &rows {
            let col = |name: &str| raw[header.iter().position(|h| h == name).unwrap()].clone();
            for name in exact {
                let Some(NetFeature::Num(v)) = row.flow.feature(name) else { panic!("{name}") };
                let want: f64 = col(name).parse().unwrap();
                assert!(close(v, want), "{name}: {v} vs {want} in {raw:?}");
            }
            for name in ["proto", "service", "state"] {
                assert_eq!(row.flow.feature(name), Some(NetFeature::Text(col(name))), "{name}");
            }
            assert_eq!(row.label.as_deref(), Some(col("label").as_str()));
            assert_eq!(row.category.as_deref(), Some(col("attack_cat").as_str()));
            // rate, sload, dload and tcprtt are derived, as Argus derives them.
            for name in ["rate", "sload", "dload", "tcprtt"] {
                let Some(NetFeature::Num(v)) = row.flow.feature(name) else { panic!("{name}") };
                let want: f64 = col(name).parse().unwrap();
                derived_total += 1;
                if (v - want).abs() <= 0.01 * want.abs().max(1e-3) {
                    derived_close += 1;
                }
            }
        }
        assert!(derived_close * 100 >= derived_total * 97, "{derived_close} of {derived_total}");
        assert_eq!(rows[0].1.flow.transport, Transport::Udp);
    }

    #[test]
    fn cic_rows_answer_their_own_columns() {
        for path in [CIC_BENIGN, CIC_PORTSCAN] {
            let (header, rows) = first_rows(path, 500);
            let skip = ["id", "Flow ID", "Src IP", "Dst IP", "Timestamp", "Label", "Attempted Category"];
            let mut checked = 0;
            for (raw, row) in &rows {
                for (name, value) in header.iter().zip(raw) {
                    if skip.contains(&name.as_str()) {
                        continue;
                    }
                    let want: f64 = value.parse().unwrap();
                    // The improved CSVs sometimes count a PSH/URG/RST total
                    // that is not the sum of its per-direction columns; the
                    // per-direction ones are kept.
                    if let Some(flag) = ["PSH", "URG", "RST"].iter().find(|f| *name == format!("{f} Flag Count")) {
                        let at = |n: String| raw[header.iter().position(|h| *h == n).unwrap()].parse::<f64>().unwrap();
                        if at(format!("Fwd {flag} Flags")) + at(format!("Bwd {flag} Flags")) != want {
                            continue;
                        }
                    }
                    match row.flow.feature(name) {
                        Some(NetFeature::Num(v)) => {
                            // Means and standard deviations are recomputed
                            // from totals in places: allow rounding.
                            assert!((v - want).abs() <= 1e-3 * want.abs().max(1.0), "{name}: {v} vs {want}");
                            checked += 1;
                        }
                        Some(NetFeature::Text(t)) => panic!("{name} gave text {t}"),
                        // Bulk, subflow-window and active/idle columns are not carried.
                        None => assert!(
                            name.contains("Bulk")
                                || name.starts_with("Subflow")
                                || name.starts_with("Active")
                                || name.starts_with("Idle")
                                || name == "Fwd Seg Size Min"
                                || name == "Total TCP Flow Time",
                            "{name} not answered"
                        ),
                    }
                }
                assert_eq!(
                    row.label.as_deref(),
                    raw.get(header.iter().position(|h| h == "Label").unwrap()).map(String::as_str)
                );
            }
            assert!(checked > 500 * 60, "{checked}");
        }
    }

    #[test]
    fn bad_header_and_rows() {
        let mut reader = FlowCsvReader::new("a,b,c\n1,2,3\n".as_bytes());
        assert!(matches!(reader.next(), Some(Err(NetError::Format(_)))));
        assert!(reader.next().is_none());
        let input = "dur,proto,sbytes,dbytes\n0.1,tcp,10,20\n0.1,tcp\n\"x\",udp,1,1\n";
        let results: Vec<_> = FlowCsvReader::new(input.as_bytes()).collect();
        assert!(results[0].is_ok());
        assert_eq!(results[1].as_ref().err().and_then(NetError::line), Some(3));
        assert_eq!(results[2].as_ref().err().and_then(NetError::line), Some(4));
        assert_eq!(split_row("a,\"b,\"\"c\"\"\",d", 8).unwrap(), ["a", "b,\"c\"", "d"]);
        assert!(split_row("a,b,c", 2).is_none());
    }
}
