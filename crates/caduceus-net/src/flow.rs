//! The flow: one bidirectional connection with its statistics, whatever
//! input it came from (pcap, Zeek, Suricata, a data set row). It becomes a
//! spine event (`LogRecord`, category `network_connection`) and answers the
//! feature names of the UNSW-NB15 and CIC-IDS2017 layouts for the models.
//!
//! A flow never carries message content: for HL7 only the MSH header fields
//! naming applications, facilities and message types are kept; for DICOM
//! only AE titles and command names.

use std::net::IpAddr;

use caduceus_core::Payload;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Most entries kept in each list of [`AppInfo`].
pub const MAX_APP_ITEMS: usize = 32;
/// Longest kept identifier (application, facility, AE title), in characters.
pub const MAX_APP_TOKEN_CHARS: usize = 64;

/// The transport protocol of a flow.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum Transport {
    Tcp,
    Udp,
    /// ICMP or ICMPv6.
    Icmp,
    /// Anything else, by the name the input gave (`arp`, `ospf`, `sctp`, or
    /// the IP protocol number as text).
    Other(String),
}

/// IANA protocol numbers and names for the protocols the data sets name.
const IP_PROTOCOLS: &[(u8, &str)] = &[
    (0, "hopopt"),
    (2, "igmp"),
    (4, "ipv4"),
    (41, "ipv6"),
    (43, "ipv6-route"),
    (44, "ipv6-frag"),
    (47, "gre"),
    (50, "esp"),
    (51, "ah"),
    (58, "ipv6-icmp"),
    (59, "ipv6-no"),
    (60, "ipv6-opts"),
    (88, "eigrp"),
    (89, "ospf"),
    (103, "pim"),
    (112, "vrrp"),
    (115, "l2tp"),
    (132, "sctp"),
    (136, "udplite"),
];

impl Transport {
    /// The lower-case name: `tcp`, `udp`, `icmp` or the other name.
    pub fn name(&self) -> &str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Icmp => "icmp",
            Self::Other(name) => name,
        }
    }

    /// From a name as Zeek, Suricata or UNSW-NB15 write it (any case).
    pub fn from_name(name: &str) -> Self {
        let lower = name.trim().to_ascii_lowercase();
        match lower.as_str() {
            "tcp" => Self::Tcp,
            "udp" => Self::Udp,
            "icmp" | "icmp6" | "icmpv6" | "ipv6-icmp" => Self::Icmp,
            _ => match lower.parse::<u8>() {
                Ok(number) => Self::from_number(number),
                Err(_) => Self::Other(crate::util::cap_chars(&lower, 32)),
            },
        }
    }

    /// From the IP protocol number.
    pub fn from_number(number: u8) -> Self {
        match number {
            6 => Self::Tcp,
            17 => Self::Udp,
            1 | 58 => Self::Icmp,
            other => match IP_PROTOCOLS.iter().find(|(n, _)| *n == other) {
                Some((_, name)) => Self::Other((*name).to_owned()),
                None => Self::Other(other.to_string()),
            },
        }
    }

    /// The IP protocol number, where the name maps to one (ICMP is 1).
    pub fn number(&self) -> Option<u8> {
        match self {
            Self::Tcp => Some(6),
            Self::Udp => Some(17),
            Self::Icmp => Some(1),
            Self::Other(name) => {
                name.parse().ok().or_else(|| IP_PROTOCOLS.iter().find(|(_, n)| n == name).map(|(number, _)| *number))
            }
        }
    }
}

impl From<Transport> for String {
    fn from(t: Transport) -> String {
        t.name().to_owned()
    }
}

impl From<String> for Transport {
    fn from(name: String) -> Self {
        Self::from_name(&name)
    }
}

/// Mean, sample standard deviation (n − 1), minimum and maximum of a
/// per-packet quantity (inter-arrival time in seconds, payload length).
/// UNSW-NB15 rows give only the mean and the jitter: there `min` and `max`
/// are absent.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub mean: f64,
    pub std: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// Counts of TCP flags seen in one direction (each packet counts once per
/// flag it carries). Suricata reports presence only: there each count is 0 or 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpFlags {
    pub fin: u32,
    pub syn: u32,
    pub rst: u32,
    pub psh: u32,
    pub ack: u32,
    pub urg: u32,
    pub ece: u32,
    pub cwr: u32,
}

impl TcpFlags {
    const NAMES: [&'static str; 8] = ["fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr"];

    fn get(&self, name: &str) -> Option<u32> {
        Some(match name {
            "fin" => self.fin,
            "syn" => self.syn,
            "rst" => self.rst,
            "psh" => self.psh,
            "ack" => self.ack,
            "urg" => self.urg,
            "ece" => self.ece,
            "cwr" => self.cwr,
            _ => return None,
        })
    }

    fn slot(&mut self, name: &str) -> Option<&mut u32> {
        Some(match name {
            "fin" => &mut self.fin,
            "syn" => &mut self.syn,
            "rst" => &mut self.rst,
            "psh" => &mut self.psh,
            "ack" => &mut self.ack,
            "urg" => &mut self.urg,
            "ece" => &mut self.ece,
            "cwr" => &mut self.cwr,
            _ => return None,
        })
    }

    /// Adds one for each flag set in a TCP flags byte (FIN = 0x01 … CWR = 0x80).
    pub fn add_byte(&mut self, bits: u8) {
        for (i, name) in Self::NAMES.iter().enumerate() {
            if bits & (1 << i) != 0
                && let Some(slot) = self.slot(name)
            {
                *slot = slot.saturating_add(1);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What one side of a flow sent. `fwd` is the originator (the sender of the
/// first packet, or of the SYN), `bwd` the responder.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Direction {
    pub pkts: u64,
    /// Application payload bytes (TCP/UDP payload; Zeek `orig_bytes`; CIC
    /// `Total Length of Fwd Packet`). Suricata and UNSW-NB15 count whole
    /// packets only: from them this holds their packet bytes.
    pub bytes: u64,
    /// Bytes of the whole IP packets (Zeek `orig_ip_bytes`, UNSW `sbytes`).
    pub ip_bytes: Option<u64>,
    /// Bytes of transport headers (TCP with options, UDP 8), as CIC counts them.
    pub header_bytes: Option<u64>,
    /// Packets carrying payload.
    pub data_pkts: Option<u64>,
    /// IP TTL or hop limit of the first packet (UNSW `sttl`), or the lowest
    /// seen where the input reports a minimum (Suricata netflow).
    pub ttl: Option<u8>,
    /// TCP window of the first packet.
    pub win: Option<u32>,
    /// Initial TCP sequence number.
    pub isn: Option<u32>,
    /// TCP segments carrying only bytes already sent (retransmissions).
    pub retrans: Option<u64>,
    /// Time between this side's packets, in seconds.
    pub iat: Option<Spread>,
    /// Payload length of this side's packets, in bytes.
    pub size: Option<Spread>,
    pub flags: TcpFlags,
}

/// What was recognised of a healthcare protocol carried by the flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AppInfo {
    /// HL7 v2 over MLLP: MSH header fields only, never a segment after MSH.
    Hl7 {
        /// MSH-9 message code and trigger event (`ADT^A01`, `ACK^A01`, `ORU^R01`).
        message_types: Vec<String>,
        /// MSH-3 of the originator's first message.
        sending_application: Option<String>,
        /// MSH-4.
        sending_facility: Option<String>,
        /// MSH-5.
        receiving_application: Option<String>,
        /// MSH-6.
        receiving_facility: Option<String>,
    },
    /// A DICOM association.
    Dicom {
        /// The requestor's AE title (A-ASSOCIATE-RQ bytes 26..42).
        calling_ae: Option<String>,
        /// The acceptor's AE title (A-ASSOCIATE-RQ bytes 10..26).
        called_ae: Option<String>,
        /// DIMSE requests seen, in order of first use (`C-STORE`, `C-FIND`,
        /// `C-MOVE`, `C-GET`, `C-ECHO`, `N-…`).
        commands: Vec<String>,
        /// MoveDestination AE titles of C-MOVE requests.
        move_destinations: Vec<String>,
        /// `true` after A-ASSOCIATE-AC, `false` after A-ASSOCIATE-RJ.
        accepted: Option<bool>,
    },
}

/// One bidirectional connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    /// The input's own id of the connection (Zeek `uid`, Suricata `flow_id`).
    pub uid: Option<String>,
    /// Time of the first packet, seconds since the Unix epoch.
    pub start: f64,
    /// Seconds from the first to the last packet.
    pub duration: f64,
    pub src_ip: Option<IpAddr>,
    /// Source port; for ICMP the message type (as Zeek does).
    pub src_port: Option<u16>,
    pub dst_ip: Option<IpAddr>,
    /// Destination port; for ICMP the message code.
    pub dst_port: Option<u16>,
    pub transport: Transport,
    /// The application protocol recognised (`hl7`, `dicom`, `http`, `tls`,
    /// `dns`, `mqtt`, `ssh`, `smb`, …), lower case.
    pub app_proto: Option<String>,
    /// Connection state: Zeek `conn_state` (pcap flows use the same
    /// vocabulary), Suricata's state, or the data set's own (`FIN`, `INT`, …).
    pub state: Option<String>,
    /// Zeek-style history letters (`ShADadFf`).
    pub history: Option<String>,
    pub fwd: Direction,
    pub bwd: Direction,
    /// Time between all packets of the flow, in seconds.
    pub iat: Option<Spread>,
    /// Seconds from SYN to SYN-ACK.
    pub synack: Option<f64>,
    /// Seconds from SYN-ACK to the originator's ACK.
    pub ackdat: Option<f64>,
    pub app: Option<AppInfo>,
}

impl Default for Flow {
    fn default() -> Self {
        Self {
            uid: None,
            start: 0.0,
            duration: 0.0,
            src_ip: None,
            src_port: None,
            dst_ip: None,
            dst_port: None,
            transport: Transport::Other("unknown".into()),
            app_proto: None,
            state: None,
            history: None,
            fwd: Direction::default(),
            bwd: Direction::default(),
            iat: None,
            synack: None,
            ackdat: None,
            app: None,
        }
    }
}

/// A feature value for a model: a number or a category.
#[derive(Clone, Debug, PartialEq)]
pub enum NetFeature {
    Num(f64),
    Text(String),
}

/// Per-direction integer fields of [`Flow::to_fields`], as (suffix, getter, setter).
type DirField = (&'static str, fn(&Direction) -> Option<u64>, fn(&mut Direction, u64));

const DIR_FIELDS: &[DirField] = &[
    ("ip_bytes", |d| d.ip_bytes, |d, v| d.ip_bytes = Some(v)),
    ("header_bytes", |d| d.header_bytes, |d, v| d.header_bytes = Some(v)),
    ("data_pkts", |d| d.data_pkts, |d, v| d.data_pkts = Some(v)),
    ("ttl", |d| d.ttl.map(u64::from), |d, v| d.ttl = u8::try_from(v).ok()),
    ("win", |d| d.win.map(u64::from), |d, v| d.win = u32::try_from(v).ok()),
    ("isn", |d| d.isn.map(u64::from), |d, v| d.isn = u32::try_from(v).ok()),
    ("retrans", |d| d.retrans, |d, v| d.retrans = Some(v)),
];

fn num(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

fn spread_value(s: &Spread) -> Value {
    let mut o = Map::new();
    o.insert("mean".into(), num(s.mean));
    o.insert("std".into(), num(s.std));
    for (key, v) in [("min", s.min), ("max", s.max)] {
        if let Some(v) = v {
            o.insert(key.into(), num(v));
        }
    }
    Value::Object(o)
}

fn spread_from(v: Option<&Value>) -> Option<Spread> {
    let o = v?.as_object()?;
    let f = |k: &str| o.get(k).and_then(Value::as_f64);
    Some(Spread { mean: f("mean")?, std: f("std")?, min: f("min"), max: f("max") })
}

fn pooled(a: &Direction, b: &Direction) -> Option<Spread> {
    // Payload-length statistics of the whole flow from the two sides'.
    let (n1, n2) = (a.pkts as f64, b.pkts as f64);
    let n = n1 + n2;
    if n == 0.0 {
        return None;
    }
    let empty = Spread { mean: 0.0, std: 0.0, min: None, max: None };
    let side = |d: &Direction| if d.pkts == 0 { Some(empty) } else { d.size };
    let (s1, s2) = (side(a)?, side(b)?);
    let mean = (n1 * s1.mean + n2 * s2.mean) / n;
    let ss = |n: f64, s: &Spread| (n - 1.0).max(0.0) * s.std * s.std + n * (s.mean - mean).powi(2);
    let var = if n > 1.0 { (ss(n1, &s1) + ss(n2, &s2)) / (n - 1.0) } else { 0.0 };
    let both = |x: Option<f64>, y: Option<f64>, pick: fn(f64, f64) -> f64| match (x, y) {
        (Some(x), Some(y)) => Some(pick(x, y)),
        (one, None) | (None, one) => one,
    };
    let needs = |d: &Direction, s: &Spread| d.pkts == 0 || (s.min.is_some() && s.max.is_some());
    let complete = needs(a, &s1) && needs(b, &s2);
    Some(Spread {
        mean,
        std: var.max(0.0).sqrt(),
        min: both(s1.min, s2.min, f64::min).filter(|_| complete),
        max: both(s1.max, s2.max, f64::max).filter(|_| complete),
    })
}

impl Flow {
    /// The flow as a flat field map for the spine and the Sigma engine:
    /// `src_ip`, `src_port`, `dst_ip`, `dst_port`, `proto`, `app_proto`,
    /// `duration`, `src_bytes`, `dst_bytes`, `src_pkts`, `dst_pkts`, `state`,
    /// … and nested `hl7` / `dicom` objects (the Sigma engine reads them as
    /// `hl7.message_type`, `dicom.called_ae`, …). Absent values are left out.
    pub fn to_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("ts".into(), num(self.start));
        m.insert("duration".into(), num(self.duration));
        if let Some(uid) = &self.uid {
            m.insert("uid".into(), uid.clone().into());
        }
        if let Some(ip) = self.src_ip {
            m.insert("src_ip".into(), ip.to_string().into());
        }
        if let Some(port) = self.src_port {
            m.insert("src_port".into(), port.into());
        }
        if let Some(ip) = self.dst_ip {
            m.insert("dst_ip".into(), ip.to_string().into());
        }
        if let Some(port) = self.dst_port {
            m.insert("dst_port".into(), port.into());
        }
        m.insert("proto".into(), self.transport.name().into());
        for (key, value) in [("app_proto", &self.app_proto), ("state", &self.state), ("history", &self.history)] {
            if let Some(v) = value {
                m.insert(key.into(), v.clone().into());
            }
        }
        for (side, d) in [("src", &self.fwd), ("dst", &self.bwd)] {
            m.insert(format!("{side}_pkts"), d.pkts.into());
            m.insert(format!("{side}_bytes"), d.bytes.into());
            for (suffix, get, _) in DIR_FIELDS {
                if let Some(v) = get(d) {
                    m.insert(format!("{side}_{suffix}"), v.into());
                }
            }
            if let Some(s) = &d.iat {
                m.insert(format!("{side}_iat"), spread_value(s));
            }
            if let Some(s) = &d.size {
                m.insert(format!("{side}_size"), spread_value(s));
            }
            if !d.flags.is_empty() {
                let flags: Map<String, Value> = TcpFlags::NAMES
                    .iter()
                    .filter_map(|n| d.flags.get(n).filter(|c| *c > 0).map(|c| ((*n).to_owned(), c.into())))
                    .collect();
                m.insert(format!("{side}_flags"), Value::Object(flags));
            }
        }
        if let Some(s) = &self.iat {
            m.insert("iat".into(), spread_value(s));
        }
        for (key, value) in [("synack", self.synack), ("ackdat", self.ackdat)] {
            if let Some(v) = value {
                m.insert(key.into(), num(v));
            }
        }
        match &self.app {
            Some(AppInfo::Hl7 {
                message_types,
                sending_application,
                sending_facility,
                receiving_application,
                receiving_facility,
            }) => {
                let mut h = Map::new();
                h.insert("message_type".into(), json!(message_types));
                for (key, value) in [
                    ("sending_application", sending_application),
                    ("sending_facility", sending_facility),
                    ("receiving_application", receiving_application),
                    ("receiving_facility", receiving_facility),
                ] {
                    if let Some(v) = value {
                        h.insert(key.into(), v.clone().into());
                    }
                }
                m.insert("hl7".into(), Value::Object(h));
            }
            Some(AppInfo::Dicom { calling_ae, called_ae, commands, move_destinations, accepted }) => {
                let mut d = Map::new();
                for (key, value) in [("calling_ae", calling_ae), ("called_ae", called_ae)] {
                    if let Some(v) = value {
                        d.insert(key.into(), v.clone().into());
                    }
                }
                d.insert("command".into(), json!(commands));
                d.insert("move_destination".into(), json!(move_destinations));
                if let Some(a) = accepted {
                    d.insert("accepted".into(), (*a).into());
                }
                m.insert("dicom".into(), Value::Object(d));
            }
            None => {}
        }
        m
    }

    /// The flow back from [`Flow::to_fields`]. `None` when the map is not a
    /// flow (no `proto` or no `ts`).
    pub fn from_fields(m: &Map<String, Value>) -> Option<Flow> {
        let text = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
        let f = |k: &str| m.get(k).and_then(Value::as_f64);
        let port = |k: &str| m.get(k).and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok());
        let ip = |k: &str| m.get(k).and_then(Value::as_str).and_then(|s| s.parse().ok());
        let mut flow = Flow {
            uid: text("uid"),
            start: f("ts")?,
            duration: f("duration").unwrap_or(0.0),
            src_ip: ip("src_ip"),
            src_port: port("src_port"),
            dst_ip: ip("dst_ip"),
            dst_port: port("dst_port"),
            transport: Transport::from_name(m.get("proto")?.as_str()?),
            app_proto: text("app_proto"),
            state: text("state"),
            history: text("history"),
            iat: spread_from(m.get("iat")),
            synack: f("synack"),
            ackdat: f("ackdat"),
            ..Flow::default()
        };
        for (side, d) in [("src", &mut flow.fwd), ("dst", &mut flow.bwd)] {
            d.pkts = m.get(&format!("{side}_pkts")).and_then(Value::as_u64).unwrap_or(0);
            d.bytes = m.get(&format!("{side}_bytes")).and_then(Value::as_u64).unwrap_or(0);
            for (suffix, _, set) in DIR_FIELDS {
                if let Some(v) = m.get(&format!("{side}_{suffix}")).and_then(Value::as_u64) {
                    set(d, v);
                }
            }
            d.iat = spread_from(m.get(&format!("{side}_iat")));
            d.size = spread_from(m.get(&format!("{side}_size")));
            if let Some(flags) = m.get(&format!("{side}_flags")).and_then(Value::as_object) {
                for (name, count) in flags {
                    if let Some(slot) = d.flags.slot(name) {
                        *slot = count.as_u64().and_then(|c| u32::try_from(c).ok()).unwrap_or(0);
                    }
                }
            }
        }
        let list = |o: &Map<String, Value>, k: &str| -> Vec<String> {
            o.get(k)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).take(MAX_APP_ITEMS).collect())
                .unwrap_or_default()
        };
        let opt = |o: &Map<String, Value>, k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
        if let Some(h) = m.get("hl7").and_then(Value::as_object) {
            flow.app = Some(AppInfo::Hl7 {
                message_types: list(h, "message_type"),
                sending_application: opt(h, "sending_application"),
                sending_facility: opt(h, "sending_facility"),
                receiving_application: opt(h, "receiving_application"),
                receiving_facility: opt(h, "receiving_facility"),
            });
        } else if let Some(d) = m.get("dicom").and_then(Value::as_object) {
            flow.app = Some(AppInfo::Dicom {
                calling_ae: opt(d, "calling_ae"),
                called_ae: opt(d, "called_ae"),
                commands: list(d, "command"),
                move_destinations: list(d, "move_destination"),
                accepted: d.get("accepted").and_then(Value::as_bool),
            });
        }
        Some(flow)
    }

    /// The flow as a spine payload: a `LogRecord` with service = the
    /// application protocol (or `conn`) and category `network_connection`.
    pub fn to_payload(&self, product: &str) -> Payload {
        Payload::LogRecord {
            product: Some(product.to_owned()),
            service: Some(self.app_proto.clone().unwrap_or_else(|| "conn".to_owned())),
            category: Some("network_connection".to_owned()),
            fields: self.to_fields(),
        }
    }

    /// Total packets, both directions.
    pub fn packets(&self) -> u64 {
        self.fwd.pkts.saturating_add(self.bwd.pkts)
    }

    /// Total payload bytes, both directions.
    pub fn bytes(&self) -> u64 {
        self.fwd.bytes.saturating_add(self.bwd.bytes)
    }

    /// The state in the UNSW-NB15 (Argus) vocabulary: `FIN`, `CON`, `INT`,
    /// `REQ`, `RST`, … Zeek and Suricata states are mapped; a state already
    /// in that vocabulary is kept.
    pub fn unsw_state(&self) -> String {
        const ARGUS: &[&str] = &[
            "FIN", "INT", "CON", "REQ", "RST", "ACC", "CLO", "ECO", "ECR", "PAR", "URN", "URH", "URP", "TST", "TXD",
            "MAS", "no",
        ];
        let replied = self.bwd.pkts > 0;
        let state = self.state.as_deref().unwrap_or_default();
        if ARGUS.contains(&state) {
            return state.to_owned();
        }
        let tcp = self.transport == Transport::Tcp;
        let mapped = match state {
            "SF" | "S2" | "S3" | "SHR" | "closed" if tcp => "FIN",
            "S0" | "SH" if tcp => "REQ",
            "REJ" | "RSTO" | "RSTR" | "RSTOS0" | "RSTRH" if tcp => "RST",
            "S1" | "OTH" | "established" if tcp => "CON",
            _ if tcp => {
                if replied {
                    "CON"
                } else {
                    "REQ"
                }
            }
            _ if self.transport == Transport::Icmp => {
                if replied {
                    "ECR"
                } else {
                    "ECO"
                }
            }
            _ if replied => "CON",
            _ => "INT",
        };
        mapped.to_owned()
    }

    /// A feature by its UNSW-NB15 or CIC-IDS2017 column name (both the
    /// improved-CSV names and the original MachineLearningCVE ones), or `None`
    /// where this flow does not carry what the column needs (cross-flow
    /// counts like `ct_srv_src`, bulk and active/idle statistics, HTTP depth).
    pub fn feature(&self, name: &str) -> Option<NetFeature> {
        use NetFeature::{Num, Text};
        let name = name.trim();
        let (f, b) = (&self.fwd, &self.bwd);
        let dur = self.duration.max(0.0);
        let per_sec = |x: f64| if dur > 0.0 { x / dur } else { 0.0 };
        let tcp = self.transport == Transport::Tcp;
        // A side that sent nothing has zeros, as the data sets write them.
        // What the input gave wins; a side that sent nothing has zeros, as
        // the data sets write them.
        let side = |d: &Direction, v: Option<f64>| v.or((d.pkts == 0).then_some(0.0));
        let mean_size = |d: &Direction| {
            d.size.map(|s| s.mean).or_else(|| Some(if d.pkts == 0 { 0.0 } else { d.bytes as f64 / d.pkts as f64 }))
        };
        let spread = |d: &Direction, s: Option<Spread>, pick: fn(&Spread) -> Option<f64>, scale: f64| {
            s.and_then(|s| pick(&s)).map(|v| v * scale).or((d.pkts == 0).then_some(0.0))
        };
        let iat_ms = |d: &Direction, pick: fn(&Spread) -> Option<f64>| {
            d.iat.and_then(|s| pick(&s)).map(|v| v * 1000.0).or((d.pkts < 2).then_some(0.0))
        };
        let unsw_bytes = |d: &Direction| d.ip_bytes.unwrap_or(d.bytes) as f64;
        let load = |d: &Direction| {
            if dur > 0.0 && d.pkts > 0 {
                8.0 * unsw_bytes(d) * (d.pkts as f64 - 1.0) / d.pkts as f64 / dur
            } else {
                0.0
            }
        };
        let tcp_only = |v: Option<f64>| if tcp { v } else { Some(0.0) };
        let flags_total = |pick: fn(&TcpFlags) -> u32| Some(f64::from(pick(&f.flags)) + f64::from(pick(&b.flags)));
        let all_size = || pooled(f, b);
        let flow_iat = |pick: fn(&Spread) -> Option<f64>| {
            self.iat.and_then(|s| pick(&s)).map(|v| v * 1e6).or((self.packets() < 2).then_some(0.0))
        };
        let icmp_part = |port: Option<u16>| {
            if self.transport == Transport::Icmp { port.map(f64::from) } else { Some(-1.0) }
        };
        let value = match name {
            // UNSW-NB15.
            "dur" => Some(dur),
            "proto" => return Some(Text(self.transport.name().to_owned())),
            "service" => return Some(Text(self.app_proto.clone().unwrap_or_else(|| "-".to_owned()))),
            "state" => return Some(Text(self.unsw_state())),
            "spkts" => Some(f.pkts as f64),
            "dpkts" => Some(b.pkts as f64),
            "sbytes" => Some(unsw_bytes(f)),
            "dbytes" => Some(unsw_bytes(b)),
            "rate" => Some(if dur > 0.0 { (self.packets() as f64 - 1.0).max(0.0) / dur } else { 0.0 }),
            "sttl" => side(f, f.ttl.map(f64::from)),
            "dttl" => side(b, b.ttl.map(f64::from)),
            "sload" => Some(load(f)),
            "dload" => Some(load(b)),
            "sloss" => side(f, f.retrans.map(|v| v as f64)),
            "dloss" => side(b, b.retrans.map(|v| v as f64)),
            "sinpkt" => iat_ms(f, |s| Some(s.mean)),
            "dinpkt" => iat_ms(b, |s| Some(s.mean)),
            "sjit" => iat_ms(f, |s| Some(s.std)),
            "djit" => iat_ms(b, |s| Some(s.std)),
            "swin" => tcp_only(side(f, f.win.map(f64::from))),
            "dwin" => tcp_only(side(b, b.win.map(f64::from))),
            "stcpb" => tcp_only(side(f, f.isn.map(f64::from))),
            "dtcpb" => tcp_only(side(b, b.isn.map(f64::from))),
            "synack" => tcp_only(self.synack.or(Some(0.0))),
            "ackdat" => tcp_only(self.ackdat.or(Some(0.0))),
            "tcprtt" => tcp_only(Some(self.synack.unwrap_or(0.0) + self.ackdat.unwrap_or(0.0))),
            "smean" => Some(if f.pkts == 0 { 0.0 } else { (unsw_bytes(f) / f.pkts as f64).round() }),
            "dmean" => Some(if b.pkts == 0 { 0.0 } else { (unsw_bytes(b) / b.pkts as f64).round() }),
            "is_sm_ips_ports" => match (self.src_ip, self.dst_ip) {
                (Some(s), Some(d)) => Some(f64::from(u8::from(s == d && self.src_port == self.dst_port))),
                _ => None,
            },
            // CIC-IDS2017 (improved CSV names, then the original ones).
            "Src Port" | "Source Port" => self.src_port.map(f64::from),
            "Dst Port" | "Destination Port" => self.dst_port.map(f64::from),
            "Protocol" => self.transport.number().map(f64::from),
            "Flow Duration" => Some(dur * 1e6),
            "Total Fwd Packet" | "Total Fwd Packets" => Some(f.pkts as f64),
            "Total Bwd packets" | "Total Backward Packets" => Some(b.pkts as f64),
            "Total Length of Fwd Packet" | "Total Length of Fwd Packets" => Some(f.bytes as f64),
            "Total Length of Bwd Packet" | "Total Length of Bwd Packets" => Some(b.bytes as f64),
            "Fwd Packet Length Max" => spread(f, f.size, |s| s.max, 1.0),
            "Fwd Packet Length Min" => spread(f, f.size, |s| s.min, 1.0),
            "Fwd Packet Length Mean" | "Fwd Segment Size Avg" | "Avg Fwd Segment Size" => mean_size(f),
            "Fwd Packet Length Std" => spread(f, f.size, |s| Some(s.std), 1.0),
            "Bwd Packet Length Max" => spread(b, b.size, |s| s.max, 1.0),
            "Bwd Packet Length Min" => spread(b, b.size, |s| s.min, 1.0),
            "Bwd Packet Length Mean" | "Bwd Segment Size Avg" | "Avg Bwd Segment Size" => mean_size(b),
            "Bwd Packet Length Std" => spread(b, b.size, |s| Some(s.std), 1.0),
            "Flow Bytes/s" => Some(per_sec(self.bytes() as f64)),
            "Flow Packets/s" => Some(per_sec(self.packets() as f64)),
            "Fwd Packets/s" => Some(per_sec(f.pkts as f64)),
            "Bwd Packets/s" => Some(per_sec(b.pkts as f64)),
            "Flow IAT Mean" => flow_iat(|s| Some(s.mean)),
            "Flow IAT Std" => flow_iat(|s| Some(s.std)),
            "Flow IAT Max" => flow_iat(|s| s.max),
            "Flow IAT Min" => flow_iat(|s| s.min),
            "Fwd IAT Total" => iat_total(f),
            "Fwd IAT Mean" => iat_us(f, |s| Some(s.mean)),
            "Fwd IAT Std" => iat_us(f, |s| Some(s.std)),
            "Fwd IAT Max" => iat_us(f, |s| s.max),
            "Fwd IAT Min" => iat_us(f, |s| s.min),
            "Bwd IAT Total" => iat_total(b),
            "Bwd IAT Mean" => iat_us(b, |s| Some(s.mean)),
            "Bwd IAT Std" => iat_us(b, |s| Some(s.std)),
            "Bwd IAT Max" => iat_us(b, |s| s.max),
            "Bwd IAT Min" => iat_us(b, |s| s.min),
            "Fwd PSH Flags" => Some(f64::from(f.flags.psh)),
            "Bwd PSH Flags" => Some(f64::from(b.flags.psh)),
            "Fwd URG Flags" => Some(f64::from(f.flags.urg)),
            "Bwd URG Flags" => Some(f64::from(b.flags.urg)),
            "Fwd RST Flags" => Some(f64::from(f.flags.rst)),
            "Bwd RST Flags" => Some(f64::from(b.flags.rst)),
            "Fwd Header Length" => side(f, f.header_bytes.map(|v| v as f64)),
            "Bwd Header Length" => side(b, b.header_bytes.map(|v| v as f64)),
            "Packet Length Min" | "Min Packet Length" => all_size().and_then(|s| s.min),
            "Packet Length Max" | "Max Packet Length" => all_size().and_then(|s| s.max),
            "Packet Length Mean" => all_size().map(|s| s.mean),
            "Packet Length Std" => all_size().map(|s| s.std),
            "Packet Length Variance" => all_size().map(|s| s.std * s.std),
            "FIN Flag Count" => flags_total(|t| t.fin),
            "SYN Flag Count" => flags_total(|t| t.syn),
            "RST Flag Count" => flags_total(|t| t.rst),
            "PSH Flag Count" => flags_total(|t| t.psh),
            "ACK Flag Count" => flags_total(|t| t.ack),
            "URG Flag Count" => flags_total(|t| t.urg),
            "CWR Flag Count" => flags_total(|t| t.cwr),
            "ECE Flag Count" => flags_total(|t| t.ece),
            "Down/Up Ratio" => Some(if f.pkts == 0 { 0.0 } else { b.pkts as f64 / f.pkts as f64 }),
            "Average Packet Size" => {
                Some(if self.packets() == 0 { 0.0 } else { self.bytes() as f64 / self.packets() as f64 })
            }
            "FWD Init Win Bytes" | "Init_Win_bytes_forward" => tcp_only(f.win.map(f64::from)),
            "Bwd Init Win Bytes" | "Init_Win_bytes_backward" => tcp_only(b.win.map(f64::from)),
            "Fwd Act Data Pkts" | "act_data_pkt_fwd" => f.data_pkts.map(|v| v as f64),
            "ICMP Code" => icmp_part(self.dst_port),
            "ICMP Type" => icmp_part(self.src_port),
            _ => None,
        };
        value.filter(|v| v.is_finite()).map(Num)
    }
}

fn iat_us(d: &Direction, pick: fn(&Spread) -> Option<f64>) -> Option<f64> {
    d.iat.and_then(|s| pick(&s)).map(|v| v * 1e6).or((d.pkts < 2).then_some(0.0))
}

fn iat_total(d: &Direction) -> Option<f64> {
    if d.pkts < 2 { Some(0.0) } else { d.iat.map(|s| s.mean * (d.pkts as f64 - 1.0) * 1e6) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn dicom_flow() -> Flow {
        Flow {
            uid: Some("C1".into()),
            start: 1_700_000_000.25,
            duration: 1.5,
            src_ip: "10.0.1.7".parse().ok(),
            src_port: Some(40512),
            dst_ip: "10.0.5.9".parse().ok(),
            dst_port: Some(104),
            transport: Transport::Tcp,
            app_proto: Some("dicom".into()),
            state: Some("SF".into()),
            history: Some("ShADadFf".into()),
            fwd: Direction {
                pkts: 6,
                bytes: 700,
                ip_bytes: Some(1012),
                ttl: Some(64),
                win: Some(64240),
                iat: Some(Spread { mean: 0.3, std: 0.1, min: Some(0.1), max: Some(0.5) }),
                flags: TcpFlags { syn: 1, ack: 5, fin: 1, psh: 2, ..TcpFlags::default() },
                ..Direction::default()
            },
            bwd: Direction { pkts: 4, bytes: 300, ..Direction::default() },
            synack: Some(0.001),
            app: Some(AppInfo::Dicom {
                calling_ae: Some("MODALITY1".into()),
                called_ae: Some("PACS".into()),
                commands: vec!["C-ECHO".into(), "C-MOVE".into()],
                move_destinations: vec!["EVIL_AE".into()],
                accepted: Some(true),
            }),
            ..Flow::default()
        }
    }

    #[test]
    fn fields_round_trip() {
        let flow = dicom_flow();
        let fields = flow.to_fields();
        assert_eq!(fields["dst_port"], 104);
        assert_eq!(fields["dicom"]["move_destination"][0], "EVIL_AE");
        assert_eq!(Flow::from_fields(&fields), Some(flow.clone()));
        let Payload::LogRecord { service, category, .. } = flow.to_payload("caduceus") else { panic!() };
        assert_eq!((service.as_deref(), category.as_deref()), (Some("dicom"), Some("network_connection")));
        let hl7 = Flow {
            app: Some(AppInfo::Hl7 {
                message_types: vec!["ADT^A01".into()],
                sending_application: Some("ADT1".into()),
                sending_facility: None,
                receiving_application: None,
                receiving_facility: None,
            }),
            ..Flow::default()
        };
        assert_eq!(Flow::from_fields(&hl7.to_fields()), Some(hl7));
        assert_eq!(Flow::from_fields(&Map::new()), None);
    }

    #[test]
    fn features_by_dataset_names() {
        let flow = dicom_flow();
        let num = |n: &str| match flow.feature(n) {
            Some(NetFeature::Num(v)) => v,
            other => panic!("{n}: {other:?}"),
        };
        assert_eq!(flow.feature("proto"), Some(NetFeature::Text("tcp".into())));
        assert_eq!(flow.feature("service"), Some(NetFeature::Text("dicom".into())));
        assert_eq!(flow.feature("state"), Some(NetFeature::Text("FIN".into())));
        assert_eq!(num("sbytes"), 1012.0);
        assert_eq!(num("dbytes"), 300.0);
        assert!((num("rate") - 9.0 / 1.5).abs() < 1e-9);
        assert!((num("sinpkt") - 300.0).abs() < 1e-9);
        assert_eq!(num("Protocol"), 6.0);
        assert_eq!(num("Flow Duration"), 1.5e6);
        assert_eq!(num("Total Length of Fwd Packet"), 700.0);
        assert!((num("Flow Bytes/s") - 1000.0 / 1.5).abs() < 1e-9);
        assert_eq!(num("SYN Flag Count"), 1.0);
        assert_eq!(num("Fwd PSH Flags"), 2.0);
        assert_eq!(num("ICMP Type"), -1.0);
        assert_eq!(flow.feature("ct_srv_src"), None);
        assert_eq!(flow.feature("no such column"), None);
    }

    #[test]
    fn transport_names_and_numbers() {
        assert_eq!(Transport::from_name("TCP"), Transport::Tcp);
        assert_eq!(Transport::from_name("IPv6-ICMP"), Transport::Icmp);
        assert_eq!(Transport::from_name("17"), Transport::Udp);
        assert_eq!(Transport::from_name("ospf").number(), Some(89));
        assert_eq!(Transport::from_number(200), Transport::Other("200".into()));
        assert_eq!(Transport::from_name("arp").number(), None);
    }

    #[test]
    fn pooled_sizes_match_the_union() {
        // Sizes 35, 35 forward and 51, 51 back (CIC BENIGN row 1).
        let side = |v: f64| Direction {
            pkts: 2,
            bytes: (2.0 * v) as u64,
            size: Some(Spread { mean: v, std: 0.0, min: Some(v), max: Some(v) }),
            ..Direction::default()
        };
        let flow = Flow { fwd: side(35.0), bwd: side(51.0), ..Flow::default() };
        let s = pooled(&flow.fwd, &flow.bwd).unwrap();
        assert_eq!((s.min, s.max, s.mean), (Some(35.0), Some(51.0), 43.0));
        assert!((s.std * s.std - 85.333_333).abs() < 1e-3);
    }
}
