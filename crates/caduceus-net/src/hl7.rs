//! HL7 v2 over MLLP, recognised in a TCP byte stream: frames are
//! `0x0B <message> 0x1C 0x0D`, and a message starts with its MSH segment.
//! Only MSH header fields are read — sending and receiving application and
//! facility (MSH-3 … MSH-6) and the message type (MSH-9, e.g.
//! `ADT^A01^ADT_A01` → `ADT^A01`). The scanner looks at no more than
//! [`MAX_MSH_BYTES`] of each frame and never keeps the segments after MSH
//! (PID, NK1, OBX … carry patient data).

use crate::util::clean_token;

/// Most bytes of a frame's start read for its MSH segment.
pub const MAX_MSH_BYTES: usize = 1024;
/// MLLP start of block.
pub const START_BLOCK: u8 = 0x0B;
/// MLLP end of block (followed by a carriage return).
pub const END_BLOCK: u8 = 0x1C;

/// The header fields kept from one message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MshHeader {
    /// MSH-9 message code and trigger event, joined by `^`.
    pub message_type: Option<String>,
    pub sending_application: Option<String>,
    pub sending_facility: Option<String>,
    pub receiving_application: Option<String>,
    pub receiving_facility: Option<String>,
}

/// Reads the MSH fields from the start of a message. `None` when the bytes
/// are not an MSH segment.
pub fn parse_msh(segment: &[u8]) -> Option<MshHeader> {
    let rest = segment.strip_prefix(b"MSH")?;
    let sep = *rest.first()?;
    if !(sep.is_ascii_punctuation()) {
        return None;
    }
    // The segment ends at the first carriage return (or line feed, which
    // some senders use).
    let end = segment.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(segment.len());
    let segment = segment.get(..end)?;
    let fields: Vec<&[u8]> = segment.split(|&b| b == sep).take(10).collect();
    // fields[1] is MSH-2 (the encoding characters); its first is the
    // component separator.
    let component =
        fields.get(1).and_then(|enc| enc.first().copied()).filter(|c| c.is_ascii_punctuation()).unwrap_or(b'^');
    let field = |n: usize| -> Option<String> {
        // MSH-1 is the separator itself, so MSH-n is fields[n - 1].
        let raw = fields.get(n - 1)?;
        let normalised: Vec<u8> = raw.iter().map(|&b| if b == component { b'^' } else { b }).collect();
        clean_token(&normalised, crate::flow::MAX_APP_TOKEN_CHARS)
            .map(|t| t.trim_end_matches('^').to_owned())
            .filter(|t| !t.is_empty())
    };
    let message_type = fields.get(8).and_then(|raw| {
        let mut parts = raw.split(|&b| b == component).filter(|p| !p.is_empty()).take(2);
        let code = clean_token(parts.next()?, 8)?;
        Some(match parts.next().and_then(|e| clean_token(e, 8)) {
            Some(event) => format!("{code}^{event}"),
            None => code,
        })
    });
    Some(MshHeader {
        message_type,
        sending_application: field(3),
        sending_facility: field(4),
        receiving_application: field(5),
        receiving_facility: field(6),
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between frames: looking for a start block.
    Outside,
    /// At the start of a frame: collecting the MSH segment.
    Header,
    /// In the rest of a frame: skipping to its end block.
    Body,
}

/// Scans one direction of a TCP stream for MLLP frames.
#[derive(Clone, Debug)]
pub struct MllpScanner {
    state: State,
    header: Vec<u8>,
    /// Frames whose start was seen.
    pub frames: u64,
    /// Frames that did not start with an MSH segment.
    pub bad_frames: u64,
}

impl Default for MllpScanner {
    fn default() -> Self {
        Self { state: State::Outside, header: Vec::new(), frames: 0, bad_frames: 0 }
    }
}

impl MllpScanner {
    /// Feeds the next in-order bytes; headers of messages found go to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<MshHeader>) {
        while !bytes.is_empty() {
            match self.state {
                State::Outside => match bytes.iter().position(|&b| b == START_BLOCK) {
                    Some(at) => {
                        self.state = State::Header;
                        self.header.clear();
                        self.frames += 1;
                        bytes = bytes.get(at + 1..).unwrap_or_default();
                    }
                    None => return,
                },
                State::Header => {
                    let room = MAX_MSH_BYTES.saturating_sub(self.header.len());
                    let stop = bytes.iter().take(room).position(|&b| matches!(b, b'\r' | b'\n' | END_BLOCK));
                    let take = stop.unwrap_or(room.min(bytes.len()));
                    self.header.extend_from_slice(bytes.get(..take).unwrap_or_default());
                    let ended_frame = stop.is_some_and(|at| bytes.get(at) == Some(&END_BLOCK));
                    bytes = bytes.get(take..).unwrap_or_default();
                    if stop.is_some() || self.header.len() >= MAX_MSH_BYTES {
                        match parse_msh(&self.header) {
                            Some(h) => out.push(h),
                            None => self.bad_frames += 1,
                        }
                        self.header.clear();
                        self.state = if ended_frame { State::Outside } else { State::Body };
                    }
                }
                State::Body => match bytes.iter().position(|&b| b == END_BLOCK) {
                    Some(at) => {
                        self.state = State::Outside;
                        bytes = bytes.get(at + 1..).unwrap_or_default();
                    }
                    None => return,
                },
            }
        }
    }

    /// Bytes were lost: drop the partial frame and look for the next start.
    pub fn gap(&mut self) {
        self.state = State::Outside;
        self.header.clear();
    }
}

/// Wraps one HL7 message (segments separated by `\r`) in an MLLP frame.
pub fn mllp_frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 3);
    out.push(START_BLOCK);
    out.extend_from_slice(message);
    out.extend_from_slice(&[END_BLOCK, b'\r']);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// The ADT^A01 example of HL7 v2.5 chapter 3 (admit), as interface
    /// engines send it; the PID segment is the patient.
    pub(crate) const ADT_A01: &str = "MSH|^~\\&|ADT1|GOOD HEALTH HOSPITAL|GHH LAB, INC.|GOOD HEALTH HOSPITAL|198808181126|SECURITY|ADT^A01^ADT_A01|MSG00001|P|2.5\r\
EVN|A01|200708181123||\r\
PID|1||PATID1234^^^GOOD HEALTH HOSPITAL^MR~123456789^^^USSSA^SS||EVERYMAN^ADAM^A^III||19610615|M||C|2222 HOME STREET^^GREENSBORO^NC^27401-1020|GL|(555) 555-2004|(555)555-2004||S||PATID12345001^2^M10^ADT1^AN^A|444333333|987654^NC|\r\
NK1|1|NUCLEAR^NELDA^W|SPO^SPOUSE||||NK^NEXT OF KIN\r\
PV1|1|I|2000^2012^01||||004777^ATTEND^AARON^A|||SUR||||ADM|A0|\r";

    #[test]
    fn msh_fields_and_nothing_else() {
        let h = parse_msh(ADT_A01.as_bytes()).unwrap();
        assert_eq!(h.message_type.as_deref(), Some("ADT^A01"));
        assert_eq!(h.sending_application.as_deref(), Some("ADT1"));
        assert_eq!(h.sending_facility.as_deref(), Some("GOOD HEALTH HOSPITAL"));
        assert_eq!(h.receiving_application.as_deref(), Some("GHH LAB, INC."));
        let debug = format!("{h:?}");
        assert!(!debug.contains("EVERYMAN") && !debug.contains("PATID"), "{debug}");
        // Another field separator and component separator.
        let h = parse_msh(b"MSH#*~\\&#LAB*1.2.3*ISO#FAC#RCV#RFAC#2024##ORU*R01#1#P#2.3").unwrap();
        assert_eq!(h.message_type.as_deref(), Some("ORU^R01"));
        assert_eq!(h.sending_application.as_deref(), Some("LAB^1.2.3^ISO"));
        assert_eq!(parse_msh(b"PID|1"), None);
        assert_eq!(parse_msh(b"MSH"), None);
    }

    #[test]
    fn frames_split_anywhere_are_found() {
        let ack = "MSH|^~\\&|GHH LAB, INC.|GOOD HEALTH HOSPITAL|ADT1|GOOD HEALTH HOSPITAL|198808181127||ACK^A01^ACK|ACK00001|P|2.5\rMSA|AA|MSG00001\r";
        let mut stream = mllp_frame(ADT_A01.as_bytes());
        stream.extend(mllp_frame(ack.as_bytes()));
        stream.extend(b"\x0bnot hl7\x1c\r");
        for chunk in [1, 2, 7, 64, stream.len()] {
            let mut scanner = MllpScanner::default();
            let mut out = Vec::new();
            for part in stream.chunks(chunk) {
                scanner.feed(part, &mut out);
            }
            let types: Vec<_> = out.iter().map(|h| h.message_type.clone().unwrap()).collect();
            assert_eq!(types, ["ADT^A01", "ACK^A01"], "chunk {chunk}");
            assert_eq!((scanner.frames, scanner.bad_frames), (3, 1));
        }
    }

    #[test]
    fn huge_first_segment_is_cut_at_the_cap() {
        let mut message = b"MSH|^~\\&|APP|FAC|R|RF|2024||ADT^A04|1|P|2.5|".to_vec();
        message.extend(std::iter::repeat_n(b'x', 10 * MAX_MSH_BYTES));
        let mut scanner = MllpScanner::default();
        let mut out = Vec::new();
        scanner.feed(&mllp_frame(&message), &mut out);
        assert_eq!(out[0].message_type.as_deref(), Some("ADT^A04"));
        assert!(scanner.header.capacity() <= 2 * MAX_MSH_BYTES);
    }
}
