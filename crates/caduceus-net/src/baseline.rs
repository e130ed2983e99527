//! Per-device behaviour baselines. During a learning window that starts at
//! a device's first flow, each device (and its class, e.g. `infusion-pump`)
//! learns its peers, the service ports it uses and offers, its application
//! protocols, its bytes per flow (log scale, Welford) and the hours of the
//! day (UTC, in flow time) it is active. Afterwards the baseline is frozen
//! and a flow that breaks it raises a [`BaselineAlert`] saying, in plain
//! words, what was seen and which baseline it broke.
//!
//! Behaviour normal for the device's class is not alerted: a pump talking to
//! the pump server that other pumps talk to is fine. A new device whose
//! class baseline is already established is checked against the class from
//! its first flow, so a rogue "pump" gets no free learning window; what it
//! does that is new for the class is alerted and not learned into the class.
//!
//! Memory is bounded (devices, peers, ports, protocols, remembered alerts),
//! and the whole state serialises so the server can persist it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::flow::{Flow, Transport};

/// Version of the serialised [`BaselineState`].
pub const BASELINE_STATE_VERSION: u16 = 1;

/// Which hosts get a baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackDevices {
    /// Only hosts the classifier names.
    Classified,
    /// Classified hosts and any private, link-local or unique-local address.
    Private,
    /// Every address seen (up to `max_devices`).
    All,
}

/// How baselines learn and when they alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaselineParams {
    /// Length of each device's learning window, in seconds of flow time.
    pub learning_secs: f64,
    /// Flows a baseline needs before volume and off-hours checks apply.
    pub min_observations: u64,
    /// Devices a class needs to have learned from before it covers a new
    /// device of the class.
    pub min_class_devices: u64,
    /// Bytes per flow beyond this many standard deviations (log scale) above
    /// the mean are a volume anomaly.
    pub volume_z: f64,
    pub track: TrackDevices,
    pub max_devices: usize,
    /// Peers remembered per device (and class); a device that talks to more
    /// during learning gets no new-peer alerts.
    pub max_peers: usize,
    pub max_ports: usize,
    pub max_protocols: usize,
    pub max_classes: usize,
    /// (device, kind, value) triples remembered so an alert fires once.
    pub max_alerted: usize,
}

impl Default for BaselineParams {
    fn default() -> Self {
        Self {
            learning_secs: 24.0 * 3600.0,
            min_observations: 50,
            min_class_devices: 2,
            volume_z: 4.0,
            track: TrackDevices::Private,
            max_devices: 10_000,
            max_peers: 128,
            max_ports: 64,
            max_protocols: 32,
            max_classes: 256,
            max_alerted: 100_000,
        }
    }
}

/// What kind of baseline a flow broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    NewPeer,
    NewPort,
    NewProtocol,
    VolumeAnomaly,
    OffHours,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewPeer => "new_peer",
            Self::NewPort => "new_port",
            Self::NewProtocol => "new_protocol",
            Self::VolumeAnomaly => "volume_anomaly",
            Self::OffHours => "off_hours",
        }
    }
}

/// A flow that broke a device's baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaselineAlert {
    pub device: IpAddr,
    pub device_class: Option<String>,
    pub kind: AlertKind,
    /// The new thing, as a value rules can match (`10.0.5.9`, `4444/tcp`,
    /// `ssh`, `03`).
    pub value: String,
    /// What was seen, in words.
    pub observed: String,
    /// The baseline it broke, in words.
    pub baseline: String,
    /// Start of the flow, seconds since the Unix epoch.
    pub at: f64,
    pub flow_uid: Option<String>,
    /// The z-score, for volume anomalies.
    pub score: Option<f64>,
}

impl BaselineAlert {
    /// One line: what was seen and the baseline it broke.
    pub fn explanation(&self) -> String {
        let class = self.device_class.as_deref().map(|c| format!(" ({c})")).unwrap_or_default();
        format!("{}{}: {}: {}", self.device, class, self.observed, self.baseline)
    }
}

/// Mean and variance, incrementally.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Moments {
    n: u64,
    mean: f64,
    m2: f64,
}

impl Moments {
    fn push(&mut self, x: f64) {
        self.n += 1;
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
    }

    fn std(&self) -> f64 {
        if self.n > 1 { (self.m2 / (self.n - 1) as f64).max(0.0).sqrt() } else { 0.0 }
    }
}

/// What one device or one class learned.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Learned {
    flows: u64,
    peers: BTreeMap<IpAddr, u64>,
    peers_overflow: bool,
    /// Service ports used as a client: `port/proto`.
    uses: BTreeSet<String>,
    /// Ports offered as a server: `port/proto`.
    offers: BTreeSet<String>,
    ports_overflow: bool,
    protocols: BTreeSet<String>,
    protocols_overflow: bool,
    volume: Moments,
    hours: [u64; 24],
}

impl Learned {
    fn learn(&mut self, f: &Facts, p: &BaselineParams) {
        self.flows += 1;
        if let Some(count) = self.peers.get_mut(&f.peer) {
            *count += 1;
        } else if self.peers.len() < p.max_peers {
            self.peers.insert(f.peer, 1);
        } else {
            self.peers_overflow = true;
        }
        if let Some((port, offered)) = &f.port {
            let set = if *offered { &mut self.offers } else { &mut self.uses };
            if !set.contains(port) {
                if self.uses.len() + self.offers.len() < p.max_ports {
                    let set = if *offered { &mut self.offers } else { &mut self.uses };
                    set.insert(port.clone());
                } else {
                    self.ports_overflow = true;
                }
            }
        }
        if let Some(proto) = &f.protocol
            && !self.protocols.contains(proto)
        {
            if self.protocols.len() < p.max_protocols {
                self.protocols.insert(proto.clone());
            } else {
                self.protocols_overflow = true;
            }
        }
        self.volume.push(f.log_bytes);
        if let Some(slot) = self.hours.get_mut(f.hour) {
            *slot += 1;
        }
    }

    fn knows_port(&self, port: &str, offered: bool) -> bool {
        self.ports_overflow || if offered { self.offers.contains(port) } else { self.uses.contains(port) }
    }

    fn top_peers(&self, n: usize) -> String {
        let mut peers: Vec<(&IpAddr, &u64)> = self.peers.iter().collect();
        peers.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let mut text: Vec<String> = peers.iter().take(n).map(|(ip, _)| ip.to_string()).collect();
        if peers.len() > n {
            text.push(format!("and {} more", peers.len() - n));
        }
        if text.is_empty() { "none".to_owned() } else { text.join(", ") }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct DeviceState {
    class: Option<String>,
    first_seen: f64,
    last_seen: f64,
    learned: Learned,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct ClassState {
    devices: u64,
    learned: Learned,
}

/// Everything the baselines know; serialisable for persistence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaselineState {
    pub version: u16,
    devices: HashMap<IpAddr, DeviceState>,
    classes: HashMap<String, ClassState>,
    alerted: VecDeque<(IpAddr, AlertKind, String)>,
    /// New devices not tracked because `max_devices` was reached.
    pub devices_refused: u64,
}

impl Default for BaselineState {
    fn default() -> Self {
        Self {
            version: BASELINE_STATE_VERSION,
            devices: HashMap::new(),
            classes: HashMap::new(),
            alerted: VecDeque::new(),
            devices_refused: 0,
        }
    }
}

impl BaselineState {
    pub fn device_count(&self) -> usize {
        self.devices.len()
    }
}

/// What a flow says about one of its ends.
struct Facts {
    peer: IpAddr,
    peer_port: Option<u16>,
    /// The device was the responder.
    inbound: bool,
    /// `port/proto` and whether the device offered it (was the responder).
    port: Option<(String, bool)>,
    protocol: Option<String>,
    log_bytes: f64,
    bytes: u64,
    hour: usize,
}

type Classifier = Box<dyn Fn(IpAddr) -> Option<String> + Send + Sync>;

/// Per-device and per-class baselines.
pub struct Baselines {
    params: BaselineParams,
    classify: Classifier,
    state: BaselineState,
    alerted: HashSet<(IpAddr, AlertKind, String)>,
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_link_local() || v4.is_loopback(),
        IpAddr::V6(v6) => {
            let first = v6.segments().first().copied().unwrap_or(0);
            (first & 0xFE00) == 0xFC00 || (first & 0xFFC0) == 0xFE80 || v6.is_loopback()
        }
    }
}

/// 1234567 → "1,234,567".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn human_bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = b;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    let name = UNITS.get(unit).copied().unwrap_or("B");
    if unit == 0 { format!("{value:.0} {name}") } else { format!("{value:.1} {name}") }
}

fn human_span(secs: f64) -> String {
    if secs >= 2.0 * 86_400.0 {
        format!("{:.0} days", secs / 86_400.0)
    } else if secs >= 3600.0 {
        format!("{:.0} h", secs / 3600.0)
    } else {
        format!("{:.0} min", (secs / 60.0).max(1.0))
    }
}

impl Baselines {
    /// Baselines with a classifier naming each device's class (or none).
    pub fn new(params: BaselineParams, classify: impl Fn(IpAddr) -> Option<String> + Send + Sync + 'static) -> Self {
        Self::restore(params, classify, BaselineState::default())
    }

    /// Baselines with a fixed map of device classes.
    pub fn with_classes(params: BaselineParams, classes: HashMap<IpAddr, String>) -> Self {
        Self::new(params, move |ip| classes.get(&ip).cloned())
    }

    /// Baselines from a saved state.
    pub fn restore(
        params: BaselineParams,
        classify: impl Fn(IpAddr) -> Option<String> + Send + Sync + 'static,
        state: BaselineState,
    ) -> Self {
        let alerted = state.alerted.iter().cloned().collect();
        Self { params, classify: Box::new(classify), state, alerted }
    }

    pub fn state(&self) -> &BaselineState {
        &self.state
    }

    pub fn params(&self) -> &BaselineParams {
        &self.params
    }

    /// Checks a flow against the baselines of both its ends, then learns
    /// from it where an end is still in its learning window.
    pub fn observe(&mut self, flow: &Flow) -> Vec<BaselineAlert> {
        let mut alerts = Vec::new();
        let (Some(src), Some(dst)) = (flow.src_ip, flow.dst_ip) else { return alerts };
        if !flow.start.is_finite() {
            return alerts;
        }
        let bytes = flow.bytes();
        let hour = ((flow.start.rem_euclid(86_400.0)) / 3600.0) as usize;
        let protocol = flow.app_proto.clone();
        let proto_name = flow.transport.name().to_owned();
        let icmp = flow.transport == Transport::Icmp;
        for (device, peer, peer_port, port, offered) in
            [(src, dst, flow.dst_port, flow.dst_port, false), (dst, src, flow.src_port, flow.dst_port, true)]
        {
            if device == peer && offered {
                continue;
            }
            let facts = Facts {
                peer,
                peer_port,
                inbound: offered,
                port: port.filter(|_| !icmp).map(|p| (format!("{p}/{proto_name}"), offered)),
                protocol: protocol.clone(),
                log_bytes: (bytes as f64).ln_1p(),
                bytes,
                hour: hour.min(23),
            };
            self.observe_end(device, &facts, flow, &mut alerts);
        }
        alerts
    }

    fn observe_end(&mut self, device: IpAddr, facts: &Facts, flow: &Flow, alerts: &mut Vec<BaselineAlert>) {
        let p = &self.params;
        let class = (self.classify)(device);
        let tracked = class.is_some()
            || match p.track {
                TrackDevices::Classified => false,
                TrackDevices::Private => is_private(device),
                TrackDevices::All => true,
            };
        if !tracked {
            return;
        }
        if !self.state.devices.contains_key(&device) {
            if self.state.devices.len() >= p.max_devices {
                self.state.devices_refused += 1;
                return;
            }
            self.state.devices.insert(
                device,
                DeviceState {
                    class: class.clone(),
                    first_seen: flow.start,
                    last_seen: flow.start,
                    learned: Learned::default(),
                },
            );
            if let Some(c) = &class
                && (self.state.classes.contains_key(c) || self.state.classes.len() < p.max_classes)
            {
                self.state.classes.entry(c.clone()).or_default().devices += 1;
            }
        }
        let Some(dev) = self.state.devices.get(&device) else { return };
        let class = dev.class.clone();
        let learning = flow.start - dev.first_seen < p.learning_secs;
        let class_state = class.as_ref().and_then(|c| self.state.classes.get(c));
        let class_ready =
            class_state.is_some_and(|c| c.devices >= p.min_class_devices && c.learned.flows >= p.min_observations);
        // Findings: (kind, value, observed, baseline, score).
        let mut findings: Vec<(AlertKind, String, String, String, Option<f64>)> = Vec::new();
        if !learning || class_ready {
            let own = &dev.learned;
            let cls = class_state.map(|c| &c.learned);
            let (reference, ref_flows, span) = if learning {
                // A new device of an established class: the class is the baseline.
                (cls, cls.map_or(0, |c| c.flows), p.learning_secs)
            } else {
                (Some(own), own.flows, p.learning_secs.min((dev.last_seen - dev.first_seen).max(0.0)).max(60.0))
            };
            let whose = if learning {
                format!("its class {}", class.as_deref().unwrap_or("-"))
            } else {
                "this device".to_owned()
            };
            let over = format!("{} flows over {}", thousands(ref_flows), human_span(span));
            let what =
                facts.protocol.as_deref().unwrap_or(facts.port.as_ref().map_or("traffic", |(port, _)| port.as_str()));
            let peer_text = match facts.peer_port {
                Some(port) if !matches!(flow.transport, Transport::Icmp) => format!("{}:{port}", facts.peer),
                _ => facts.peer.to_string(),
            };
            let known_peer =
                own.peers.contains_key(&facts.peer) || cls.is_some_and(|c| c.peers.contains_key(&facts.peer));
            let overflowed = own.peers_overflow || (learning && cls.is_some_and(|c| c.peers_overflow));
            // A new client of an unclassified server is everyday business;
            // a new peer of a device that reached out, or of a medical
            // device at all, is not.
            let matters = !facts.inbound || class.is_some();
            if !known_peer && !overflowed && matters {
                let normal = reference.map_or_else(|| "none".to_owned(), |r| r.top_peers(3));
                findings.push((
                    AlertKind::NewPeer,
                    facts.peer.to_string(),
                    format!("{what} with {peer_text}"),
                    format!("peer never seen in {over} of {whose}; normal peers: {normal}"),
                    None,
                ));
            }
            if let Some((port, offered)) = &facts.port {
                let known = own.knows_port(port, *offered) || cls.is_some_and(|c| c.knows_port(port, *offered));
                if !known {
                    let (observed, list) = if *offered {
                        (format!("accepted {what} on port {port} from {}", facts.peer), reference.map(|r| &r.offers))
                    } else {
                        (format!("connected to port {port} on {}", facts.peer), reference.map(|r| &r.uses))
                    };
                    let normal = list.map_or_else(
                        || "none".to_owned(),
                        |l| {
                            if l.is_empty() {
                                "none".to_owned()
                            } else {
                                l.iter().take(6).cloned().collect::<Vec<_>>().join(", ")
                            }
                        },
                    );
                    let role = if *offered { "offered" } else { "used" };
                    findings.push((
                        AlertKind::NewPort,
                        port.clone(),
                        observed,
                        format!("port never {role} in {over} of {whose}; normal: {normal}"),
                        None,
                    ));
                }
            }
            if let Some(proto) = &facts.protocol {
                let known = own.protocols.contains(proto)
                    || own.protocols_overflow
                    || cls.is_some_and(|c| c.protocols.contains(proto) || c.protocols_overflow);
                if !known {
                    let normal = reference.map_or_else(
                        || "none".to_owned(),
                        |r| {
                            if r.protocols.is_empty() {
                                "none".to_owned()
                            } else {
                                r.protocols.iter().cloned().collect::<Vec<_>>().join(", ")
                            }
                        },
                    );
                    findings.push((
                        AlertKind::NewProtocol,
                        proto.clone(),
                        format!("{proto} with {peer_text}"),
                        format!("protocol never seen in {over} of {whose}; normal protocols: {normal}"),
                        None,
                    ));
                }
            }
            if let Some(r) = reference
                && r.volume.n >= p.min_observations
            {
                // A floor on the spread keeps a device that always sends the
                // same size from alerting on a few bytes more.
                let std = r.volume.std().max(0.25);
                let z = (facts.log_bytes - r.volume.mean) / std;
                if z > p.volume_z {
                    let typical = r.volume.mean.exp_m1();
                    let high = (r.volume.mean + p.volume_z * std).exp_m1();
                    findings.push((
                        AlertKind::VolumeAnomaly,
                        facts.peer.to_string(),
                        format!("{} in one {what} flow with {peer_text}", human_bytes(facts.bytes as f64)),
                        format!(
                            "{z:.1} standard deviations above {whose}'s normal: typically {} per flow, {} at most in {over}",
                            human_bytes(typical),
                            human_bytes(high)
                        ),
                        Some(z),
                    ));
                }
            }
            if let Some(r) = reference
                && r.flows >= p.min_observations
            {
                let seen = |l: &Learned| l.hours.get(facts.hour).copied().unwrap_or(0) > 0;
                if !seen(own) && !cls.is_some_and(seen) {
                    let active: Vec<String> =
                        r.hours.iter().enumerate().filter(|(_, c)| **c > 0).map(|(h, _)| format!("{h:02}")).collect();
                    findings.push((
                        AlertKind::OffHours,
                        format!("{:02}", facts.hour),
                        format!("{what} with {peer_text} at {:02}:00-{:02}:59 UTC", facts.hour, facts.hour),
                        format!(
                            "never active in that hour in {over} of {whose}; active hours (UTC): {}",
                            active.join(" ")
                        ),
                        None,
                    ));
                }
            }
        }
        let novel_for_class = !findings.is_empty();
        for (kind, value, observed, baseline, score) in findings {
            let key = (device, kind, value.clone());
            if self.alerted.contains(&key) {
                continue;
            }
            if self.state.alerted.len() >= self.params.max_alerted.max(1)
                && let Some(old) = self.state.alerted.pop_front()
            {
                self.alerted.remove(&old);
            }
            self.alerted.insert(key.clone());
            self.state.alerted.push_back(key);
            alerts.push(BaselineAlert {
                device,
                device_class: class.clone(),
                kind,
                value,
                observed,
                baseline,
                at: flow.start,
                flow_uid: flow.uid.clone(),
                score,
            });
        }
        // Learn: the device during its window; the class from it too, unless
        // the flow was new for an established class (no poisoning).
        let params = &self.params;
        if let Some(dev) = self.state.devices.get_mut(&device) {
            dev.last_seen = dev.last_seen.max(flow.start);
            if learning {
                dev.learned.learn(facts, params);
                if !(class_ready && novel_for_class)
                    && let Some(c) = class.as_ref().and_then(|c| self.state.classes.get_mut(c))
                {
                    c.learned.learn(facts, params);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const DAY: f64 = 86_400.0;
    /// 2024-06-03 00:00 UTC.
    const T0: f64 = 1_717_372_800.0;

    fn flow(src: &str, dst: &str, port: u16, proto: &str, bytes: u64, at: f64) -> Flow {
        Flow {
            start: at,
            duration: 1.0,
            src_ip: src.parse().ok(),
            src_port: Some(40000),
            dst_ip: dst.parse().ok(),
            dst_port: Some(port),
            transport: Transport::Tcp,
            app_proto: Some(proto.to_owned()),
            fwd: crate::flow::Direction { pkts: 10, bytes: bytes / 2, ..Default::default() },
            bwd: crate::flow::Direction { pkts: 10, bytes: bytes - bytes / 2, ..Default::default() },
            uid: Some(format!("C{at}")),
            ..Flow::default()
        }
    }

    fn classes() -> HashMap<IpAddr, String> {
        let mut m = HashMap::new();
        for ip in ["10.0.7.31", "10.0.7.32", "10.0.7.33", "10.0.7.99"] {
            m.insert(ip.parse().unwrap(), "infusion-pump".to_owned());
        }
        m.insert("10.0.3.7".parse().unwrap(), "ct-scanner".to_owned());
        m
    }

    /// A CT scanner sends studies to the PACS, 08:00-17:59, a day long.
    fn learned_scanner() -> Baselines {
        let mut b = Baselines::with_classes(BaselineParams::default(), classes());
        let mut n = 0;
        for hour in 8..18 {
            for i in 0..12 {
                let at = T0 + f64::from(hour) * 3600.0 + f64::from(i) * 300.0;
                let bytes = 40_000_000 + (i as u64 % 5) * 2_000_000;
                let alerts = b.observe(&flow("10.0.3.7", "10.0.5.9", 104, "dicom", bytes, at));
                assert!(alerts.is_empty(), "learning raised {alerts:?}");
                n += 1;
            }
        }
        assert_eq!(n, 120);
        b
    }

    #[test]
    fn learned_behaviour_is_quiet_and_new_behaviour_is_explained() {
        let mut b = learned_scanner();
        // The next day, the same thing: quiet.
        assert!(b.observe(&flow("10.0.3.7", "10.0.5.9", 104, "dicom", 41_000_000, T0 + DAY + 9.0 * 3600.0)).is_empty());
        // DICOM to a host it never used, at 03:00 (the learning window ran
        // from its first flow, 08:00 on day one, to 08:00 on day two).
        let alerts =
            b.observe(&flow("10.0.3.7", "203.0.113.50", 104, "dicom", 41_000_000, T0 + 2.0 * DAY + 3.0 * 3600.0));
        let kinds: Vec<AlertKind> = alerts.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, [AlertKind::NewPeer, AlertKind::OffHours]);
        let peer = &alerts[0];
        assert_eq!(peer.device_class.as_deref(), Some("ct-scanner"));
        assert_eq!(peer.value, "203.0.113.50");
        assert_eq!(
            peer.explanation(),
            "10.0.3.7 (ct-scanner): dicom with 203.0.113.50:104: peer never seen in 120 flows over 24 h of this device; normal peers: 10.0.5.9"
        );
        assert!(
            alerts[1].baseline.contains("active hours (UTC): 08 09 10 11 12 13 14 15 16 17"),
            "{}",
            alerts[1].baseline
        );
        // The same again: no repeat.
        assert!(
            b.observe(&flow("10.0.3.7", "203.0.113.50", 104, "dicom", 41_000_000, T0 + 2.0 * DAY + 3.5 * 3600.0))
                .is_empty()
        );
        // A new protocol and port (SMB to the file server), and a volume spike.
        let alerts = b.observe(&flow("10.0.3.7", "10.0.5.20", 445, "smb", 900_000_000_000, T0 + DAY + 10.0 * 3600.0));
        let kinds: Vec<AlertKind> = alerts.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, [AlertKind::NewPeer, AlertKind::NewPort, AlertKind::NewProtocol, AlertKind::VolumeAnomaly]);
        assert_eq!(alerts[1].value, "445/tcp");
        assert!(alerts[2].baseline.ends_with("normal protocols: dicom"), "{}", alerts[2].baseline);
        assert!(alerts[3].score.unwrap() > 4.0);
        assert!(alerts[3].observed.starts_with("900.0 GB in one smb flow"), "{}", alerts[3].observed);
    }

    #[test]
    fn the_server_side_learns_what_it_offers() {
        let mut b = learned_scanner();
        // 10.0.5.9 (the PACS, unclassified but private) offered 104 only.
        let alerts = b.observe(&flow("10.0.9.9", "10.0.5.9", 22, "ssh", 5000, T0 + DAY + 9.0 * 3600.0));
        let pacs: Vec<_> = alerts.iter().filter(|a| a.device == "10.0.5.9".parse::<IpAddr>().unwrap()).collect();
        let kinds: Vec<AlertKind> = pacs.iter().map(|a| a.kind).collect();
        // A new client alone is no alert for an unclassified server.
        assert_eq!(kinds, [AlertKind::NewPort, AlertKind::NewProtocol]);
        assert!(pacs[0].observed.starts_with("accepted ssh on port 22/tcp"), "{}", pacs[0].observed);
        assert!(pacs[0].baseline.contains("normal: 104/tcp"), "{}", pacs[0].baseline);
        // The scanner (classified) accepting a connection from a stranger is.
        let alerts = b.observe(&flow("10.0.9.9", "10.0.3.7", 104, "dicom", 40_000_000, T0 + DAY + 9.5 * 3600.0));
        let kinds: Vec<AlertKind> = alerts.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, [AlertKind::NewPeer, AlertKind::NewPort]);
    }

    #[test]
    fn class_baseline_covers_a_new_device_of_the_class() {
        let mut b = Baselines::with_classes(BaselineParams::default(), classes());
        // Two pumps learn the pump server and the NTP server.
        for (i, pump) in ["10.0.7.31", "10.0.7.32"].iter().enumerate() {
            for k in 0..40 {
                let at = T0 + (i as f64) * 60.0 + f64::from(k) * 1800.0;
                assert!(b.observe(&flow(pump, "10.0.1.50", 443, "tls", 20_000, at)).is_empty());
                assert!(b.observe(&flow(pump, "10.0.1.1", 123, "ntp", 90, at + 5.0)).is_empty());
            }
        }
        // A third pump, new: what pumps do is fine from its first flow...
        let late = T0 + 3.0 * DAY;
        assert!(b.observe(&flow("10.0.7.33", "10.0.1.50", 443, "tls", 21_000, late)).is_empty());
        // ...but the pump class never spoke SSH to the internet.
        let alerts = b.observe(&flow("10.0.7.99", "198.51.100.7", 22, "ssh", 4000, late + 60.0));
        let kinds: Vec<AlertKind> = alerts.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, [AlertKind::NewPeer, AlertKind::NewPort, AlertKind::NewProtocol]);
        assert!(alerts[0].baseline.contains("of its class infusion-pump"), "{}", alerts[0].baseline);
        assert!(alerts[0].baseline.contains("normal peers: 10.0.1.50, 10.0.1.1"), "{}", alerts[0].baseline);
        // It was not learned into the class: another new pump doing it alerts too.
        let again = b.observe(&flow("10.0.7.32", "198.51.100.7", 22, "ssh", 4000, late + 120.0));
        assert!(!again.is_empty());
    }

    #[test]
    fn state_round_trips_and_memory_is_bounded() {
        let params = BaselineParams { max_devices: 3, max_peers: 4, max_alerted: 5, ..BaselineParams::default() };
        let mut b = Baselines::new(params.clone(), |_| None);
        for i in 0..50u8 {
            b.observe(&flow(&format!("10.1.0.{i}"), "10.0.0.1", 80, "http", 100, T0 + f64::from(i)));
        }
        assert_eq!(b.state().device_count(), 3);
        assert!(b.state().devices_refused > 0);
        // A device with many peers during learning gets no new-peer alerts.
        let mut b = Baselines::new(params.clone(), |_| None);
        for i in 0..10u8 {
            b.observe(&flow("10.2.0.1", &format!("10.3.0.{i}"), 80, "http", 100, T0 + f64::from(i)));
        }
        let later = b.observe(&flow("10.2.0.1", "10.3.0.200", 80, "http", 100, T0 + 2.0 * DAY));
        assert!(
            later.iter().all(|a| a.kind != AlertKind::NewPeer || a.device != "10.2.0.1".parse::<IpAddr>().unwrap())
        );
        let json = serde_json::to_string(b.state()).unwrap();
        let state: BaselineState = serde_json::from_str(&json).unwrap();
        assert_eq!(&state, b.state());
        assert_eq!(state.version, BASELINE_STATE_VERSION);
        let restored = Baselines::restore(params, |_| None, state);
        assert!(restored.state().alerted.len() <= 5);
        // Public internet hosts are not tracked by default.
        let mut b = Baselines::new(BaselineParams::default(), |_| None);
        b.observe(&flow("8.8.8.8", "1.1.1.1", 53, "dns", 100, T0));
        assert_eq!(b.state().device_count(), 0);
        assert_eq!(thousands(1_204), "1,204");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
