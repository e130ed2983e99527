//! Application protocol recognition for assembled flows: the first payload
//! bytes of each side decide the protocol (by content, as Zeek's dynamic
//! protocol detection does, not by port); HL7 and DICOM streams are then fed
//! to their scanners for the rest of the flow. UDP is named by port.

use crate::dicom::{DulEvent, DulScanner, command_name, is_response};
use crate::flow::{AppInfo, MAX_APP_ITEMS};
use crate::hl7::{MllpScanner, MshHeader};
use crate::util::push_distinct;

/// Payload bytes of the originator needed before giving up on recognition.
const DECIDE_BYTES: usize = 16;

#[derive(Debug, Default)]
pub(crate) struct Hl7Acc {
    fwd: MllpScanner,
    bwd: MllpScanner,
    first_fwd: Option<MshHeader>,
    first_bwd: Option<MshHeader>,
    message_types: Vec<String>,
    scratch: Vec<MshHeader>,
}

impl Hl7Acc {
    fn feed(&mut self, forward: bool, bytes: &[u8]) {
        let scanner = if forward { &mut self.fwd } else { &mut self.bwd };
        scanner.feed(bytes, &mut self.scratch);
        for header in self.scratch.drain(..) {
            if let Some(t) = &header.message_type {
                push_distinct(&mut self.message_types, t.clone(), MAX_APP_ITEMS);
            }
            let first = if forward { &mut self.first_fwd } else { &mut self.first_bwd };
            if first.is_none() {
                *first = Some(header);
            }
        }
    }

    fn info(&self) -> Option<AppInfo> {
        let header = self.first_fwd.as_ref().or(self.first_bwd.as_ref())?.clone();
        Some(AppInfo::Hl7 {
            message_types: self.message_types.clone(),
            sending_application: header.sending_application,
            sending_facility: header.sending_facility,
            receiving_application: header.receiving_application,
            receiving_facility: header.receiving_facility,
        })
    }
}

#[derive(Debug, Default)]
pub(crate) struct DicomAcc {
    fwd: DulScanner,
    bwd: DulScanner,
    called_ae: Option<String>,
    calling_ae: Option<String>,
    commands: Vec<String>,
    move_destinations: Vec<String>,
    accepted: Option<bool>,
    associated: bool,
    scratch: Vec<DulEvent>,
}

impl DicomAcc {
    fn feed(&mut self, forward: bool, bytes: &[u8]) {
        let scanner = if forward { &mut self.fwd } else { &mut self.bwd };
        scanner.feed(bytes, &mut self.scratch);
        for event in self.scratch.drain(..) {
            match event {
                DulEvent::AssociateRq { called_ae, calling_ae } => {
                    self.associated = true;
                    if self.called_ae.is_none() && self.calling_ae.is_none() {
                        (self.called_ae, self.calling_ae) = (called_ae, calling_ae);
                    }
                }
                DulEvent::AssociateAc => self.accepted = Some(true),
                DulEvent::AssociateRj => self.accepted = Some(false),
                DulEvent::Command { field, move_destination } => {
                    if !is_response(field)
                        && let Some(name) = command_name(field)
                    {
                        push_distinct(&mut self.commands, name.to_owned(), MAX_APP_ITEMS);
                        if let Some(dest) = move_destination {
                            push_distinct(&mut self.move_destinations, dest, MAX_APP_ITEMS);
                        }
                    }
                }
                DulEvent::Release | DulEvent::Abort => {}
            }
        }
    }

    fn info(&self) -> Option<AppInfo> {
        (self.associated || !self.commands.is_empty()).then(|| AppInfo::Dicom {
            calling_ae: self.calling_ae.clone(),
            called_ae: self.called_ae.clone(),
            commands: self.commands.clone(),
            move_destinations: self.move_destinations.clone(),
            accepted: self.accepted,
        })
    }
}

/// Recognition state of one flow.
#[derive(Debug)]
pub(crate) enum AppState {
    /// Undecided: the first payload bytes of each side, up to the cap.
    Sniff {
        fwd: Vec<u8>,
        bwd: Vec<u8>,
    },
    Hl7(Box<Hl7Acc>),
    Dicom(Box<DicomAcc>),
    /// Recognised; nothing more to read.
    Named(&'static str),
    /// Not recognised; nothing more to read.
    Unknown,
}

impl Default for AppState {
    fn default() -> Self {
        Self::Sniff { fwd: Vec::new(), bwd: Vec::new() }
    }
}

/// What the first bytes say.
enum Verdict {
    Hl7,
    Dicom,
    Named(&'static str),
    Wait,
    Unknown,
}

fn sniff(fwd: &[u8], bwd: &[u8], fwd_full: bool) -> Verdict {
    const METHODS: &[&[u8]] =
        &[b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"CONNECT ", b"TRACE "];
    match fwd {
        [0x0B, b'M', b'S', b'H', ..] => return Verdict::Hl7,
        // A-ASSOCIATE-RQ: type 1, reserved, length, protocol version 1.
        [0x01, 0x00, _, _, _, _, 0x00, 0x01, ..] => return Verdict::Dicom,
        [0x16, 0x03, 0x00..=0x04, ..] => return Verdict::Named("tls"),
        [b'S', b'S', b'H', b'-', ..] => return Verdict::Named("ssh"),
        // SMB over TCP: NetBIOS session header, then \xFFSMB or \xFESMB.
        [0x00, _, _, _, 0xFF | 0xFE, b'S', b'M', b'B', ..] => return Verdict::Named("smb"),
        _ => {}
    }
    if METHODS.iter().any(|m| fwd.starts_with(m)) {
        return Verdict::Named("http");
    }
    if is_mqtt_connect(fwd) {
        return Verdict::Named("mqtt");
    }
    if bwd.starts_with(b"SSH-") {
        return Verdict::Named("ssh");
    }
    if fwd.len() >= DECIDE_BYTES || fwd_full { Verdict::Unknown } else { Verdict::Wait }
}

/// MQTT CONNECT: type 1 fixed header, remaining length (1–4 bytes), then
/// the protocol name `MQTT` (3.1.1, 5) or `MQIsdp` (3.1).
fn is_mqtt_connect(b: &[u8]) -> bool {
    if b.first() != Some(&0x10) {
        return false;
    }
    let mut at = 1;
    while let Some(&byte) = b.get(at) {
        at += 1;
        if byte & 0x80 == 0 || at > 4 {
            break;
        }
    }
    let rest = b.get(at..).unwrap_or_default();
    rest.starts_with(b"\x00\x04MQTT") || rest.starts_with(b"\x00\x06MQIsdp")
}

/// The service of a UDP flow, by port (either side), for the protocols a
/// hospital network carries in the clear.
pub(crate) fn udp_service(a: u16, b: u16) -> Option<&'static str> {
    let named = |p: u16| match p {
        53 => Some("dns"),
        67 | 68 => Some("dhcp"),
        69 => Some("tftp"),
        123 => Some("ntp"),
        137 | 138 => Some("netbios"),
        161 | 162 => Some("snmp"),
        514 => Some("syslog"),
        1900 => Some("ssdp"),
        5353 => Some("mdns"),
        5683 => Some("coap"),
        _ => None,
    };
    named(b).or_else(|| named(a))
}

impl AppState {
    /// Payload bytes held for recognition.
    pub(crate) fn buffered(&self) -> usize {
        match self {
            Self::Sniff { fwd, bwd } => fwd.len() + bwd.len(),
            _ => 0,
        }
    }

    /// Stops buffering (the assembler's byte budget is spent): decides on
    /// what was seen so far.
    pub(crate) fn give_up(&mut self) {
        if let Self::Sniff { fwd, bwd } = self {
            *self = match sniff(fwd, bwd, true) {
                Verdict::Named(name) => Self::Named(name),
                _ => Self::Unknown,
            };
        }
    }

    /// Whether in-order stream bytes are still wanted.
    pub(crate) fn wants_bytes(&self) -> bool {
        matches!(self, Self::Sniff { .. } | Self::Hl7(_) | Self::Dicom(_))
    }

    /// Feeds the next in-order payload bytes of one side.
    pub(crate) fn feed(&mut self, forward: bool, bytes: &[u8], sniff_cap: usize) {
        match self {
            Self::Hl7(acc) => acc.feed(forward, bytes),
            Self::Dicom(acc) => acc.feed(forward, bytes),
            Self::Named(_) | Self::Unknown => {}
            Self::Sniff { fwd, bwd } => {
                let buf = if forward { &mut *fwd } else { &mut *bwd };
                let room = sniff_cap.saturating_sub(buf.len());
                buf.extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
                let fwd_full = fwd.len() >= sniff_cap;
                let next = match sniff(fwd, bwd, fwd_full) {
                    Verdict::Wait => {
                        // The responder's buffer may fill while the
                        // originator says little: give up then too.
                        if bwd.len() >= sniff_cap { Some(Self::Unknown) } else { None }
                    }
                    Verdict::Unknown => Some(Self::Unknown),
                    Verdict::Named(name) => Some(Self::Named(name)),
                    Verdict::Hl7 => {
                        let mut acc = Box::<Hl7Acc>::default();
                        acc.feed(true, fwd);
                        acc.feed(false, bwd);
                        Some(Self::Hl7(acc))
                    }
                    Verdict::Dicom => {
                        let mut acc = Box::<DicomAcc>::default();
                        acc.feed(true, fwd);
                        acc.feed(false, bwd);
                        Some(Self::Dicom(acc))
                    }
                };
                if let Some(next) = next {
                    *self = next;
                }
            }
        }
    }

    /// Bytes of one side were lost (a hole the reorder queue could not fill).
    pub(crate) fn gap(&mut self, forward: bool) {
        match self {
            Self::Hl7(acc) => {
                if forward {
                    acc.fwd.gap()
                } else {
                    acc.bwd.gap()
                }
            }
            Self::Dicom(acc) => {
                if forward {
                    acc.fwd.gap()
                } else {
                    acc.bwd.gap()
                }
            }
            Self::Sniff { fwd, .. } if forward && fwd.is_empty() => {}
            Self::Sniff { .. } => *self = Self::Unknown,
            Self::Named(_) | Self::Unknown => {}
        }
    }

    /// The application protocol and what was recognised of it.
    pub(crate) fn finish(&self) -> (Option<&'static str>, Option<AppInfo>) {
        match self {
            Self::Hl7(acc) => {
                let info = acc.info();
                (info.as_ref().map(|_| "hl7"), info)
            }
            Self::Dicom(acc) => {
                let info = acc.info();
                (info.as_ref().map(|_| "dicom"), info)
            }
            Self::Named(name) => (Some(*name), None),
            Self::Sniff { fwd, bwd } => match sniff(fwd, bwd, true) {
                Verdict::Named(name) => (Some(name), None),
                Verdict::Hl7 => {
                    let mut acc = Hl7Acc::default();
                    acc.feed(true, fwd);
                    acc.feed(false, bwd);
                    let info = acc.info();
                    (info.as_ref().map(|_| "hl7"), info)
                }
                Verdict::Dicom => {
                    let mut acc = DicomAcc::default();
                    acc.feed(true, fwd);
                    acc.feed(false, bwd);
                    let info = acc.info();
                    (info.as_ref().map(|_| "dicom"), info)
                }
                Verdict::Wait | Verdict::Unknown => (None, None),
            },
            Self::Unknown => (None, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_name_the_protocol() {
        let name = |fwd: &[u8], bwd: &[u8]| {
            let mut state = AppState::default();
            state.feed(true, fwd, 16 * 1024);
            state.feed(false, bwd, 16 * 1024);
            state.finish().0
        };
        assert_eq!(name(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 200 OK\r\n"), Some("http"));
        assert_eq!(name(&[0x16, 0x03, 0x01, 0x02, 0x00], b""), Some("tls"));
        assert_eq!(name(b"\x10\x12\x00\x04MQTT\x04\x02\x00\x3c\x00\x06client", b""), Some("mqtt"));
        assert_eq!(name(b"", b"SSH-2.0-OpenSSH_9.6\r\n"), Some("ssh"));
        assert_eq!(name(b"\x00\x00\x00\x85\xfeSMB@\x00", b""), Some("smb"));
        assert_eq!(name(b"random binary protocol bytes", b""), None);
        assert_eq!(name(b"\x0bMSH", b""), None, "an MLLP start without a full MSH is not a message");
        assert_eq!(udp_service(40000, 53), Some("dns"));
        assert_eq!(udp_service(123, 123), Some("ntp"));
        assert_eq!(udp_service(40000, 40001), None);
    }
}
