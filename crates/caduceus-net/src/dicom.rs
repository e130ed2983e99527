//! DICOM Upper Layer (PS3.8 §9.3) recognised in a TCP byte stream:
//! A-ASSOCIATE-RQ/AC/RJ give the AE titles and whether the association was
//! accepted; in P-DATA-TF, command PDVs (message control header bit 0 set)
//! carry the DIMSE command set (PS3.7 §E, implicit VR little endian), from
//! which the CommandField (0000,0100) and a C-MOVE's MoveDestination
//! (0000,0600) are read. Data PDVs (images, reports) are skipped unread.
//!
//! The scanner streams: it holds at most [`MAX_ASSOCIATE_BYTES`] of an
//! association PDU and [`MAX_COMMAND_BYTES`] of a command set, whatever the
//! PDU and PDV lengths claim. Lost bytes end the scan of that direction: the
//! PDU framing cannot be found again reliably.

use crate::util::clean_token;

/// Bytes of an A-ASSOCIATE PDU read (the fixed part up to the AE titles).
pub const MAX_ASSOCIATE_BYTES: usize = 74;
/// Most bytes of one command set gathered from its fragments.
pub const MAX_COMMAND_BYTES: usize = 4096;

/// What the scanner saw, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DulEvent {
    /// A-ASSOCIATE-RQ with the called (acceptor) and calling (requestor) AE titles.
    AssociateRq {
        called_ae: Option<String>,
        calling_ae: Option<String>,
    },
    AssociateAc,
    AssociateRj,
    /// A DIMSE command: CommandField and, for C-MOVE-RQ, the destination AE.
    Command {
        field: u16,
        move_destination: Option<String>,
    },
    Release,
    Abort,
}

/// The DIMSE name of a CommandField without the request/response suffix
/// (`C-STORE` for both 0x0001 and 0x8001).
pub fn command_name(field: u16) -> Option<&'static str> {
    Some(match field & 0x7FFF {
        0x0001 => "C-STORE",
        0x0010 => "C-GET",
        0x0020 => "C-FIND",
        0x0021 => "C-MOVE",
        0x0030 => "C-ECHO",
        0x0FFF => "C-CANCEL",
        0x0100 => "N-EVENT-REPORT",
        0x0110 => "N-GET",
        0x0120 => "N-SET",
        0x0130 => "N-ACTION",
        0x0140 => "N-CREATE",
        0x0150 => "N-DELETE",
        _ => return None,
    })
}

/// Whether a CommandField is a response (bit 15 set).
pub fn is_response(field: u16) -> bool {
    field & 0x8000 != 0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Collecting the 6-byte PDU header.
    PduHeader,
    /// Inside an A-ASSOCIATE-RQ/AC (type 1/2) or RJ (type 3) PDU.
    Associate { kind: u8, left: u64 },
    /// Inside a PDU whose body is not read (release, abort, unknown).
    Skip { left: u64 },
    /// Inside a P-DATA-TF PDU, collecting a 6-byte PDV item header.
    PdvHeader { pdu_left: u64 },
    /// Inside a PDV's fragment.
    PdvData { pdu_left: u64, item_left: u64, command: bool, last: bool },
    /// Framing lost: nothing more is read.
    Dead,
}

/// Scans one direction of a DICOM association.
#[derive(Clone, Debug)]
pub struct DulScanner {
    state: State,
    head: Vec<u8>,
    body: Vec<u8>,
    command: Vec<u8>,
    /// PDUs whose header was read.
    pub pdus: u64,
}

impl Default for DulScanner {
    fn default() -> Self {
        Self { state: State::PduHeader, head: Vec::with_capacity(6), body: Vec::new(), command: Vec::new(), pdus: 0 }
    }
}

fn be32(b: &[u8]) -> Option<u64> {
    Some(u64::from(u32::from_be_bytes(b.get(..4)?.try_into().ok()?)))
}

impl DulScanner {
    /// True once the framing was lost or broken.
    pub fn is_dead(&self) -> bool {
        self.state == State::Dead
    }

    /// Bytes were lost: stop scanning this direction.
    pub fn gap(&mut self) {
        self.state = State::Dead;
        self.head.clear();
        self.body.clear();
        self.command.clear();
    }

    /// Feeds the next in-order bytes; events found go to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<DulEvent>) {
        while !bytes.is_empty() {
            match self.state {
                State::Dead => return,
                State::PduHeader | State::PdvHeader { .. } => {
                    let take = (6 - self.head.len()).min(bytes.len());
                    self.head.extend_from_slice(bytes.get(..take).unwrap_or_default());
                    bytes = bytes.get(take..).unwrap_or_default();
                    if self.head.len() == 6 {
                        self.on_header(out);
                        self.head.clear();
                    }
                }
                State::Associate { kind, left } => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    let room = MAX_ASSOCIATE_BYTES.saturating_sub(6 + self.body.len());
                    self.body.extend_from_slice(bytes.get(..take.min(room)).unwrap_or_default());
                    bytes = bytes.get(take..).unwrap_or_default();
                    let left = left - take as u64;
                    self.state = State::Associate { kind, left };
                    if left == 0 {
                        self.on_associate(kind, out);
                        self.body.clear();
                        self.state = State::PduHeader;
                    }
                }
                State::Skip { left } => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    bytes = bytes.get(take..).unwrap_or_default();
                    let left = left - take as u64;
                    self.state = if left == 0 { State::PduHeader } else { State::Skip { left } };
                }
                State::PdvData { pdu_left, item_left, command, last } => {
                    let take = usize::try_from(item_left).unwrap_or(usize::MAX).min(bytes.len());
                    if command {
                        let room = MAX_COMMAND_BYTES.saturating_sub(self.command.len());
                        self.command.extend_from_slice(bytes.get(..take.min(room)).unwrap_or_default());
                    }
                    bytes = bytes.get(take..).unwrap_or_default();
                    let (pdu_left, item_left) = (pdu_left - take as u64, item_left - take as u64);
                    if item_left > 0 {
                        self.state = State::PdvData { pdu_left, item_left, command, last };
                        continue;
                    }
                    if command && last {
                        if let Some(event) = parse_command(&self.command) {
                            out.push(event);
                        }
                        self.command.clear();
                    }
                    self.state = if pdu_left == 0 { State::PduHeader } else { State::PdvHeader { pdu_left } };
                }
            }
        }
    }

    fn on_header(&mut self, out: &mut Vec<DulEvent>) {
        let head = self.head.as_slice();
        match self.state {
            State::PduHeader => {
                let (Some(&kind), Some(len)) = (head.first(), head.get(2..).and_then(be32)) else {
                    self.gap();
                    return;
                };
                self.pdus += 1;
                self.state = match kind {
                    1..=3 => State::Associate { kind, left: len },
                    4 => State::PdvHeader { pdu_left: len },
                    5..=7 => {
                        out.push(if kind == 7 { DulEvent::Abort } else { DulEvent::Release });
                        State::Skip { left: len }
                    }
                    _ => State::Dead,
                };
                if len == 0 && self.state != State::Dead {
                    if let State::Associate { kind, .. } = self.state {
                        self.on_associate(kind, out);
                    }
                    self.state = State::PduHeader;
                }
            }
            State::PdvHeader { pdu_left } => {
                let (Some(item_len), Some(&control)) = (be32(head), head.get(5)) else {
                    self.gap();
                    return;
                };
                // The item length counts the context id and control byte.
                if item_len < 2 || item_len + 4 > pdu_left {
                    self.gap();
                    return;
                }
                let pdu_left = pdu_left - 6;
                let item_left = item_len - 2;
                let (command, last) = (control & 1 != 0, control & 2 != 0);
                self.state = if item_left == 0 {
                    if command && last {
                        if let Some(event) = parse_command(&self.command) {
                            out.push(event);
                        }
                        self.command.clear();
                    }
                    if pdu_left == 0 { State::PduHeader } else { State::PdvHeader { pdu_left } }
                } else {
                    State::PdvData { pdu_left, item_left, command, last }
                };
            }
            _ => {}
        }
    }

    fn on_associate(&mut self, kind: u8, out: &mut Vec<DulEvent>) {
        out.push(match kind {
            1 => {
                // Offsets are of the PDU; `body` starts after its 6-byte header.
                let ae = |from: usize| self.body.get(from - 6..from + 10).and_then(|t| clean_token(t, 16));
                DulEvent::AssociateRq { called_ae: ae(10), calling_ae: ae(26) }
            }
            2 => DulEvent::AssociateAc,
            _ => DulEvent::AssociateRj,
        });
    }
}

/// Reads CommandField and MoveDestination from a command set (implicit VR
/// little endian: group, element, 4-byte length, value).
fn parse_command(set: &[u8]) -> Option<DulEvent> {
    let mut field = None;
    let mut move_destination = None;
    let mut at = 0usize;
    while let Some(head) = set.get(at..at + 8) {
        let group = u16::from_le_bytes([*head.first()?, *head.get(1)?]);
        let element = u16::from_le_bytes([*head.get(2)?, *head.get(3)?]);
        let len = usize::try_from(u32::from_le_bytes(head.get(4..8)?.try_into().ok()?)).ok()?;
        if group != 0x0000 {
            break;
        }
        let value = set.get(at + 8..at.checked_add(8)?.checked_add(len)?)?;
        match element {
            0x0100 => field = value.get(..2).and_then(|v| v.try_into().ok()).map(u16::from_le_bytes),
            0x0600 => move_destination = clean_token(value, 16),
            _ => {}
        }
        at += 8 + len;
    }
    Some(DulEvent::Command { field: field?, move_destination })
}

/// Builders of real PDUs, byte by byte after PS3.8 §9.3 and PS3.7 §E, for
/// tests and for the fuzz seeds.
pub mod build {
    /// An AE title field: 16 bytes, space padded.
    fn ae(title: &str) -> [u8; 16] {
        let mut out = [b' '; 16];
        for (slot, b) in out.iter_mut().zip(title.bytes()) {
            *slot = b;
        }
        out
    }

    fn item(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![kind, 0];
        out.extend_from_slice(&u16::try_from(body.len()).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn pdu(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![kind, 0];
        out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// The DICOM application context name (PS3.7 Annex A).
    const APPLICATION_CONTEXT: &[u8] = b"1.2.840.10008.3.1.1.1";
    /// Implicit VR Little Endian transfer syntax.
    const IMPLICIT_LE: &[u8] = b"1.2.840.10008.1.2";

    /// A-ASSOCIATE-RQ (type 0x01) proposing one abstract syntax.
    pub fn associate_rq(called: &str, calling: &str, abstract_syntax: &str) -> Vec<u8> {
        let mut body = vec![0x00, 0x01, 0x00, 0x00]; // protocol version 1, reserved
        body.extend_from_slice(&ae(called));
        body.extend_from_slice(&ae(calling));
        body.extend_from_slice(&[0u8; 32]);
        body.extend(item(0x10, APPLICATION_CONTEXT));
        let mut pc = vec![0x01, 0, 0, 0]; // presentation context id 1
        pc.extend(item(0x30, abstract_syntax.as_bytes()));
        pc.extend(item(0x40, IMPLICIT_LE));
        body.extend(item(0x20, &pc));
        // User information: maximum length 16384.
        body.extend(item(0x50, &item(0x51, &16384u32.to_be_bytes())));
        pdu(0x01, &body)
    }

    /// A-ASSOCIATE-AC (type 0x02) accepting presentation context 1.
    pub fn associate_ac(called: &str, calling: &str) -> Vec<u8> {
        let mut body = vec![0x00, 0x01, 0x00, 0x00];
        body.extend_from_slice(&ae(called));
        body.extend_from_slice(&ae(calling));
        body.extend_from_slice(&[0u8; 32]);
        body.extend(item(0x10, APPLICATION_CONTEXT));
        let mut pc = vec![0x01, 0, 0x00, 0]; // id 1, result 0 = acceptance
        pc.extend(item(0x40, IMPLICIT_LE));
        body.extend(item(0x21, &pc));
        body.extend(item(0x50, &item(0x51, &16384u32.to_be_bytes())));
        pdu(0x02, &body)
    }

    /// A-ASSOCIATE-RJ (type 0x03): rejected-permanent, by the service user,
    /// called AE title not recognised.
    pub fn associate_rj() -> Vec<u8> {
        pdu(0x03, &[0x00, 0x01, 0x01, 0x07])
    }

    /// A-RELEASE-RQ (type 0x05).
    pub fn release_rq() -> Vec<u8> {
        pdu(0x05, &[0u8; 4])
    }

    fn element(group: u16, element: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&group.to_le_bytes());
        out.extend_from_slice(&element.to_le_bytes());
        out.extend_from_slice(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(value);
        out
    }

    /// A UI value padded to even length with NUL.
    fn uid(value: &str) -> Vec<u8> {
        let mut v = value.as_bytes().to_vec();
        if v.len() % 2 == 1 {
            v.push(0);
        }
        v
    }

    /// A DIMSE request command set: (0000,0000) group length, (0000,0002)
    /// affected SOP class, (0000,0100) command field, (0000,0110) message
    /// id, (0000,0600) move destination where given, (0000,0700) priority
    /// for C-STORE/C-FIND/C-MOVE/C-GET, (0000,0800) data set type.
    pub fn command_set(
        command_field: u16,
        sop_class: &str,
        message_id: u16,
        move_destination: Option<&str>,
    ) -> Vec<u8> {
        let mut rest = Vec::new();
        rest.extend(element(0x0000, 0x0002, &uid(sop_class)));
        rest.extend(element(0x0000, 0x0100, &command_field.to_le_bytes()));
        rest.extend(element(0x0000, 0x0110, &message_id.to_le_bytes()));
        if let Some(dest) = move_destination {
            rest.extend(element(0x0000, 0x0600, &ae(dest)));
        }
        if command_field != 0x0030 {
            rest.extend(element(0x0000, 0x0700, &0u16.to_le_bytes()));
        }
        // 0x0101: no data set follows (C-ECHO); 0x0000: a data set follows.
        let data_set_type: u16 = if command_field == 0x0030 { 0x0101 } else { 0x0000 };
        rest.extend(element(0x0000, 0x0800, &data_set_type.to_le_bytes()));
        let mut out = element(0x0000, 0x0000, &u32::try_from(rest.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend(rest);
        out
    }

    /// P-DATA-TF (type 0x04) with one PDV on presentation context 1.
    pub fn p_data(command: bool, last: bool, fragment: &[u8]) -> Vec<u8> {
        let control = u8::from(command) | (u8::from(last) << 1);
        let mut body = Vec::new();
        body.extend_from_slice(&u32::try_from(fragment.len() + 2).unwrap_or(u32::MAX).to_be_bytes());
        body.push(0x01);
        body.push(control);
        body.extend_from_slice(fragment);
        pdu(0x04, &body)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::build::*;
    use super::*;

    const PATIENT_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.1.2";

    fn scan(stream: &[u8], chunk: usize) -> (Vec<DulEvent>, DulScanner) {
        let mut scanner = DulScanner::default();
        let mut out = Vec::new();
        for part in stream.chunks(chunk.max(1)) {
            scanner.feed(part, &mut out);
        }
        (out, scanner)
    }

    #[test]
    fn association_and_commands_in_any_chunking() {
        let rq = associate_rq("PACS", "MODALITY1", PATIENT_ROOT_MOVE);
        assert_eq!(&rq[10..26], b"PACS            ");
        assert_eq!(&rq[26..42], b"MODALITY1       ");
        let mut stream = rq.clone();
        stream.extend(p_data(true, true, &command_set(0x0030, "1.2.840.10008.1.1", 1, None)));
        // A C-MOVE command split over two fragments, then its identifier.
        let moved = command_set(0x0021, PATIENT_ROOT_MOVE, 2, Some("EVIL_AE"));
        stream.extend(p_data(true, false, &moved[..20]));
        stream.extend(p_data(true, true, &moved[20..]));
        stream.extend(p_data(false, true, b"\x10\x00\x20\x00\x06\x00\x00\x00PID123"));
        stream.extend(release_rq());
        for chunk in [1, 3, 6, 100, stream.len()] {
            let (events, scanner) = scan(&stream, chunk);
            assert_eq!(
                events,
                [
                    DulEvent::AssociateRq { called_ae: Some("PACS".into()), calling_ae: Some("MODALITY1".into()) },
                    DulEvent::Command { field: 0x0030, move_destination: None },
                    DulEvent::Command { field: 0x0021, move_destination: Some("EVIL_AE".into()) },
                    DulEvent::Release,
                ],
                "chunk {chunk}"
            );
            assert!(!scanner.is_dead());
            assert_eq!(scanner.pdus, 6);
        }
        let (events, _) = scan(&[associate_ac("PACS", "MODALITY1"), associate_rj()].concat(), 5);
        assert_eq!(events, [DulEvent::AssociateAc, DulEvent::AssociateRj]);
        assert_eq!(command_name(0x8021), Some("C-MOVE"));
        assert!(is_response(0x8021));
    }

    #[test]
    fn lying_lengths_kill_the_scan_without_big_buffers() {
        // A PDV longer than its PDU.
        let mut bad = p_data(true, true, &[0u8; 8]);
        bad[6..10].copy_from_slice(&1000u32.to_be_bytes());
        let (events, scanner) = scan(&bad, 4);
        assert!(events.is_empty());
        assert!(scanner.is_dead());
        // A PDU claiming 4 GiB, then nothing: memory stays small.
        let mut huge = vec![0x04, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0xF0, 1, 1];
        huge.extend(std::iter::repeat_n(0u8, 100_000));
        let (_, scanner) = scan(&huge, 4096);
        assert!(scanner.command.len() <= MAX_COMMAND_BYTES);
        // An unknown PDU type.
        let (_, scanner) = scan(&[0x09, 0, 0, 0, 0, 1, 0], 7);
        assert!(scanner.is_dead());
    }
}
