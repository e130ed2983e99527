//! Capture file containers: classic pcap (either byte order, microsecond or
//! nanosecond timestamps) and pcapng (section header, interface
//! description, enhanced, simple and the obsolete packet blocks; other
//! blocks are skipped). Hand-written rather than taken from `pcap-file`:
//! its current major version (3.0) is still a release candidate, and the
//! two formats are a few fixed-layout headers — here every length read from
//! the file is checked against a cap before anything is allocated.

use std::io::{self, Read};

use crate::error::NetError;

/// Default cap on one captured packet (the largest snap length tools write
/// is 262144).
pub const DEFAULT_MAX_PACKET_BYTES: usize = 256 * 1024;
/// Most interfaces one pcapng section may describe.
pub const MAX_INTERFACES: usize = 1024;
/// Extra room a pcapng block may take beyond its packet (options).
const MAX_BLOCK_OVERHEAD: usize = 64 * 1024;

const PCAPNG_SHB: u32 = 0x0A0D_0D0A;
const PCAPNG_BYTE_ORDER: u32 = 0x1A2B_3C4D;

/// Which container the file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureFormat {
    /// Classic pcap; `nanos` for the nanosecond variant.
    Pcap {
        big_endian: bool,
        nanos: bool,
    },
    PcapNg,
}

/// One packet as captured.
#[derive(Debug)]
pub struct RawPacket<'a> {
    /// Capture time, seconds since the Unix epoch.
    pub ts: f64,
    /// The link type (1 Ethernet, 101 raw IP, 113 Linux cooked, …).
    pub linktype: u16,
    /// The captured bytes (maybe fewer than were on the wire).
    pub data: &'a [u8],
    /// The packet's length on the wire.
    pub orig_len: u32,
}

/// Where a packet block's data is and what it says about it.
struct PacketSpan {
    ts: f64,
    linktype: u16,
    start: usize,
    len: usize,
    orig_len: u32,
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    linktype: u16,
    snaplen: u32,
    /// Timestamp units per second.
    units: f64,
    /// Seconds added to every timestamp (`if_tsoffset`).
    offset: f64,
}

/// Reads packets one at a time from a pcap or pcapng stream.
pub struct CaptureReader<R> {
    inner: R,
    format: CaptureFormat,
    big_endian: bool,
    max_packet: usize,
    buf: Vec<u8>,
    /// Classic pcap: the file's link type and timestamp units.
    pcap_linktype: u16,
    pcap_units: f64,
    /// pcapng: the interfaces of the current section.
    interfaces: Vec<Interface>,
    last_ts: f64,
    truncated: bool,
}

/// Fills `buf` from `inner`; `Ok(false)` on a clean end before the first
/// byte, an error `UnexpectedEof` after it.
fn read_full<R: Read>(inner: &mut R, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        let Some(rest) = buf.get_mut(filled..) else { break };
        match inner.read(rest) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn u16_at(b: &[u8], at: usize, big: bool) -> Option<u16> {
    let v: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
    Some(if big { u16::from_be_bytes(v) } else { u16::from_le_bytes(v) })
}

fn u32_at(b: &[u8], at: usize, big: bool) -> Option<u32> {
    let v: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(if big { u32::from_be_bytes(v) } else { u32::from_le_bytes(v) })
}

fn malformed(what: &str) -> NetError {
    NetError::Format(format!("capture: {what}"))
}

impl<R: Read> CaptureReader<R> {
    /// Reads the file header and detects the container.
    pub fn new(mut inner: R, max_packet_bytes: usize) -> Result<Self, NetError> {
        let mut magic = [0u8; 4];
        if !read_full(&mut inner, &mut magic)? {
            return Err(malformed("empty input"));
        }
        let mut reader = Self {
            inner,
            format: CaptureFormat::PcapNg,
            big_endian: false,
            max_packet: max_packet_bytes.max(64),
            buf: Vec::new(),
            pcap_linktype: 0,
            pcap_units: 1e6,
            interfaces: Vec::new(),
            last_ts: 0.0,
            truncated: false,
        };
        let (big, nanos) = match magic {
            [0xD4, 0xC3, 0xB2, 0xA1] => (false, false),
            [0xA1, 0xB2, 0xC3, 0xD4] => (true, false),
            [0x4D, 0x3C, 0xB2, 0xA1] => (false, true),
            [0xA1, 0xB2, 0x3C, 0x4D] => (true, true),
            [0x0A, 0x0D, 0x0D, 0x0A] => {
                reader.read_section_header()?;
                return Ok(reader);
            }
            _ => return Err(malformed("not a pcap or pcapng file")),
        };
        let mut header = [0u8; 20];
        if !read_full(&mut reader.inner, &mut header)? {
            return Err(malformed("truncated pcap header"));
        }
        // Version (4), thiszone (4), sigfigs (4), snaplen (4), network (4);
        // the upper bits of `network` carry FCS information.
        let network = u32_at(&header, 16, big).ok_or_else(|| malformed("truncated pcap header"))?;
        reader.format = CaptureFormat::Pcap { big_endian: big, nanos };
        reader.big_endian = big;
        reader.pcap_linktype = (network & 0xFFFF) as u16;
        reader.pcap_units = if nanos { 1e9 } else { 1e6 };
        Ok(reader)
    }

    pub fn format(&self) -> CaptureFormat {
        self.format
    }

    /// True when the file ended in the middle of a record (a capture cut
    /// short); the packets before it were all returned.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The next packet, or `None` at the end of the file.
    pub fn next_packet(&mut self) -> Result<Option<RawPacket<'_>>, NetError> {
        match self.format {
            CaptureFormat::Pcap { .. } => self.next_pcap(),
            CaptureFormat::PcapNg => self.next_pcapng(),
        }
    }

    /// Reads the rest of a record; a short read marks the file truncated.
    fn fill(&mut self, len: usize) -> Result<bool, NetError> {
        self.buf.clear();
        self.buf.resize(len, 0);
        match read_full(&mut self.inner, &mut self.buf) {
            Ok(true) => Ok(true),
            Ok(false) if len == 0 => Ok(true),
            Ok(false) => {
                self.truncated = true;
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                self.truncated = true;
                Ok(false)
            }
            Err(e) => Err(NetError::Io(e)),
        }
    }

    fn next_pcap(&mut self) -> Result<Option<RawPacket<'_>>, NetError> {
        let mut head = [0u8; 16];
        match read_full(&mut self.inner, &mut head) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                self.truncated = true;
                return Ok(None);
            }
            Err(e) => return Err(NetError::Io(e)),
        }
        let big = self.big_endian;
        let field = |at| u32_at(&head, at, big).unwrap_or(0);
        let (secs, frac, incl, orig) = (field(0), field(4), field(8), field(12));
        let incl = usize::try_from(incl).unwrap_or(usize::MAX);
        if incl > self.max_packet {
            return Err(NetError::TooLarge { what: "captured packet bytes", max: self.max_packet as u64 });
        }
        if !self.fill(incl)? {
            return Ok(None);
        }
        let ts = f64::from(secs) + f64::from(frac) / self.pcap_units;
        Ok(Some(RawPacket { ts, linktype: self.pcap_linktype, data: &self.buf, orig_len: orig }))
    }

    /// Reads a section header block after its 4-byte type.
    fn read_section_header(&mut self) -> Result<(), NetError> {
        let mut head = [0u8; 8];
        if !read_full(&mut self.inner, &mut head)? {
            return Err(malformed("truncated section header"));
        }
        let order = u32_at(&head, 4, false).ok_or_else(|| malformed("truncated section header"))?;
        self.big_endian = match order {
            PCAPNG_BYTE_ORDER => false,
            0x4D3C_2B1A => true,
            _ => return Err(malformed("bad byte-order magic")),
        };
        let total = u32_at(&head, 0, self.big_endian).unwrap_or(0) as usize;
        if total < 28 || !total.is_multiple_of(4) || total > MAX_BLOCK_OVERHEAD {
            return Err(malformed("bad section header length"));
        }
        // Version, section length, options, trailing length: not needed.
        if !self.fill(total - 12)? {
            return Ok(());
        }
        self.interfaces.clear();
        Ok(())
    }

    fn next_pcapng(&mut self) -> Result<Option<RawPacket<'_>>, NetError> {
        loop {
            let mut head = [0u8; 8];
            match read_full(&mut self.inner, &mut head) {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.truncated = true;
                    return Ok(None);
                }
                Err(e) => return Err(NetError::Io(e)),
            }
            let big = self.big_endian;
            let kind = u32_at(&head, 0, big).unwrap_or(0);
            if kind == PCAPNG_SHB {
                // A new section, maybe in the other byte order: re-read its
                // header with the 4 length bytes already taken.
                let mut rest = [0u8; 4];
                if !read_full(&mut self.inner, &mut rest)? {
                    self.truncated = true;
                    return Ok(None);
                }
                let order = u32_at(&rest, 0, false).unwrap_or(0);
                self.big_endian = match order {
                    PCAPNG_BYTE_ORDER => false,
                    0x4D3C_2B1A => true,
                    _ => return Err(malformed("bad byte-order magic")),
                };
                let total = u32_at(&head, 4, self.big_endian).unwrap_or(0) as usize;
                if total < 28 || !total.is_multiple_of(4) || total > MAX_BLOCK_OVERHEAD {
                    return Err(malformed("bad section header length"));
                }
                if !self.fill(total - 12)? {
                    return Ok(None);
                }
                self.interfaces.clear();
                continue;
            }
            let total = u32_at(&head, 4, big).unwrap_or(0) as usize;
            if total < 12 || !total.is_multiple_of(4) {
                return Err(malformed("bad block length"));
            }
            if total > self.max_packet + MAX_BLOCK_OVERHEAD {
                return Err(NetError::TooLarge {
                    what: "pcapng block bytes",
                    max: (self.max_packet + MAX_BLOCK_OVERHEAD) as u64,
                });
            }
            if !self.fill(total - 8)? {
                return Ok(None);
            }
            // The body, without the trailing copy of the length.
            let body_len = total - 12;
            match kind {
                1 => self.interface_block(body_len)?,
                2 | 3 | 6 => {
                    if let Some(span) = self.packet_block(kind, body_len)? {
                        let data = self
                            .buf
                            .get(span.start..span.start + span.len)
                            .ok_or_else(|| malformed("packet past its block"))?;
                        return Ok(Some(RawPacket {
                            ts: span.ts,
                            linktype: span.linktype,
                            data,
                            orig_len: span.orig_len,
                        }));
                    }
                }
                _ => {}
            }
        }
    }

    fn interface_block(&mut self, body_len: usize) -> Result<(), NetError> {
        let big = self.big_endian;
        let body = self.buf.get(..body_len).ok_or_else(|| malformed("short interface block"))?;
        let linktype = u16_at(body, 0, big).ok_or_else(|| malformed("short interface block"))?;
        let snaplen = u32_at(body, 4, big).ok_or_else(|| malformed("short interface block"))?;
        let mut iface = Interface { linktype, snaplen, units: 1e6, offset: 0.0 };
        let mut at = 8;
        while let (Some(code), Some(len)) = (u16_at(body, at, big), u16_at(body, at + 2, big)) {
            let len = usize::from(len);
            let Some(value) = body.get(at + 4..at + 4 + len) else { break };
            match (code, value) {
                (0, _) => break,
                // if_tsresol: 10^-v, or 2^-v with the top bit set.
                (9, [v]) => {
                    iface.units = if v & 0x80 == 0 {
                        10f64.powi(i32::from(*v).min(30))
                    } else {
                        2f64.powi(i32::from(v & 0x7F).min(120))
                    };
                }
                (14, v) if v.len() == 8 => {
                    let raw: [u8; 8] = v.try_into().unwrap_or_default();
                    let secs = if big { i64::from_be_bytes(raw) } else { i64::from_le_bytes(raw) };
                    iface.offset = secs as f64;
                }
                _ => {}
            }
            at += 4 + len.div_ceil(4) * 4;
        }
        if self.interfaces.len() >= MAX_INTERFACES {
            return Err(NetError::TooLarge { what: "pcapng interfaces", max: MAX_INTERFACES as u64 });
        }
        self.interfaces.push(iface);
        Ok(())
    }

    /// Where a packet block's data is; `None` for a block on an unknown
    /// interface.
    fn packet_block(&mut self, kind: u32, body_len: usize) -> Result<Option<PacketSpan>, NetError> {
        let big = self.big_endian;
        let body = self.buf.get(..body_len).ok_or_else(|| malformed("short packet block"))?;
        let short = || malformed("short packet block");
        let (iface_id, ts_hi, ts_lo, cap_len, orig_len, start) = match kind {
            6 => (
                u32_at(body, 0, big).ok_or_else(short)? as usize,
                u32_at(body, 4, big).ok_or_else(short)?,
                u32_at(body, 8, big).ok_or_else(short)?,
                u32_at(body, 12, big).ok_or_else(short)? as usize,
                u32_at(body, 16, big).ok_or_else(short)?,
                20,
            ),
            2 => (
                usize::from(u16_at(body, 0, big).ok_or_else(short)?),
                u32_at(body, 4, big).ok_or_else(short)?,
                u32_at(body, 8, big).ok_or_else(short)?,
                u32_at(body, 12, big).ok_or_else(short)? as usize,
                u32_at(body, 16, big).ok_or_else(short)?,
                20,
            ),
            _ => {
                // Simple packet block: interface 0, no timestamp; the
                // captured length is what fits the block and the snap length.
                let orig = u32_at(body, 0, big).ok_or_else(short)?;
                let snap =
                    self.interfaces.first().map_or(u32::MAX, |i| if i.snaplen == 0 { u32::MAX } else { i.snaplen });
                let len = body_len.saturating_sub(4).min(orig as usize).min(snap as usize);
                let Some(iface) = self.interfaces.first() else { return Ok(None) };
                return Ok(Some(PacketSpan {
                    ts: self.last_ts,
                    linktype: iface.linktype,
                    start: 4,
                    len,
                    orig_len: orig,
                }));
            }
        };
        if cap_len > body_len.saturating_sub(start) || cap_len > self.max_packet {
            return Err(malformed("captured length past its block"));
        }
        let Some(iface) = self.interfaces.get(iface_id) else { return Ok(None) };
        let units = (u64::from(ts_hi) << 32) | u64::from(ts_lo);
        let ts = units as f64 / iface.units + iface.offset;
        self.last_ts = ts;
        Ok(Some(PacketSpan { ts, linktype: iface.linktype, start, len: cap_len, orig_len }))
    }
}

/// Writes classic pcap and pcapng files, for tests, fuzz seeds and tools
/// that hand captures on.
pub mod write {
    /// A classic little-endian microsecond pcap header.
    pub fn pcap_header(linktype: u16) -> Vec<u8> {
        let mut out = Vec::with_capacity(24);
        out.extend_from_slice(&0xA1B2_C3D4u32.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&4u16.to_le_bytes());
        out.extend_from_slice(&0i32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&262_144u32.to_le_bytes());
        out.extend_from_slice(&u32::from(linktype).to_le_bytes());
        out
    }

    /// One classic pcap record (microsecond timestamp).
    pub fn pcap_record(out: &mut Vec<u8>, ts: f64, packet: &[u8]) {
        let secs = ts.floor();
        let micros = ((ts - secs) * 1e6).round().min(999_999.0);
        let len = u32::try_from(packet.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&(secs as u32).to_le_bytes());
        out.extend_from_slice(&(micros as u32).to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(packet);
    }

    fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
        let padded = body.len().div_ceil(4) * 4;
        let total = u32::try_from(padded + 12).unwrap_or(u32::MAX);
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&total.to_le_bytes());
        out.extend_from_slice(body);
        out.resize(out.len() + padded - body.len(), 0);
        out.extend_from_slice(&total.to_le_bytes());
    }

    /// A little-endian pcapng section header and one interface with
    /// nanosecond timestamps (`if_tsresol` = 9).
    pub fn pcapng_header(linktype: u16) -> Vec<u8> {
        let mut out = Vec::new();
        let mut shb = Vec::new();
        shb.extend_from_slice(&super::PCAPNG_BYTE_ORDER.to_le_bytes());
        shb.extend_from_slice(&1u16.to_le_bytes());
        shb.extend_from_slice(&0u16.to_le_bytes());
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        block(&mut out, super::PCAPNG_SHB, &shb);
        let mut idb = Vec::new();
        idb.extend_from_slice(&linktype.to_le_bytes());
        idb.extend_from_slice(&0u16.to_le_bytes());
        idb.extend_from_slice(&0u32.to_le_bytes());
        idb.extend_from_slice(&[9, 0, 1, 0, 9, 0, 0, 0]); // if_tsresol = 9
        idb.extend_from_slice(&[0, 0, 0, 0]); // opt_endofopt
        block(&mut out, 1, &idb);
        out
    }

    /// One enhanced packet block on interface 0 (nanosecond timestamp).
    pub fn pcapng_epb(out: &mut Vec<u8>, ts: f64, packet: &[u8]) {
        let units = (ts * 1e9).round() as u64;
        let len = u32::try_from(packet.len()).unwrap_or(u32::MAX);
        let mut body = Vec::with_capacity(20 + packet.len());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&((units >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(units as u32).to_le_bytes());
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(packet);
        block(out, 6, &body);
    }

    /// One simple packet block (interface 0, no timestamp).
    pub fn pcapng_spb(out: &mut Vec<u8>, packet: &[u8]) {
        let mut body = Vec::with_capacity(4 + packet.len());
        body.extend_from_slice(&u32::try_from(packet.len()).unwrap_or(u32::MAX).to_le_bytes());
        body.extend_from_slice(packet);
        block(out, 3, &body);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::write::*;
    use super::*;

    type Packets = Vec<(f64, u16, Vec<u8>)>;

    fn read_all(bytes: &[u8]) -> (Packets, bool, CaptureFormat) {
        let mut reader = CaptureReader::new(bytes, DEFAULT_MAX_PACKET_BYTES).unwrap();
        let mut out = Vec::new();
        while let Some(p) = reader.next_packet().unwrap() {
            out.push((p.ts, p.linktype, p.data.to_vec()));
        }
        (out, reader.truncated(), reader.format())
    }

    #[test]
    fn both_containers_and_byte_orders() {
        let mut pcap = pcap_header(1);
        pcap_record(&mut pcap, 1_591_367_999.305_988, b"abc");
        pcap_record(&mut pcap, 1_591_367_999.5, b"");
        let (packets, truncated, format) = read_all(&pcap);
        assert_eq!(format, CaptureFormat::Pcap { big_endian: false, nanos: false });
        assert!(!truncated);
        assert_eq!(packets.len(), 2);
        assert!((packets[0].0 - 1_591_367_999.305_988).abs() < 1e-6);
        assert_eq!((packets[0].1, packets[0].2.as_slice()), (1, &b"abc"[..]));

        // The same file in big-endian nanosecond form.
        let mut be = vec![0xA1, 0xB2, 0x3C, 0x4D, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0, 0, 101];
        be.extend_from_slice(&10u32.to_be_bytes());
        be.extend_from_slice(&500_000_000u32.to_be_bytes());
        be.extend_from_slice(&3u32.to_be_bytes());
        be.extend_from_slice(&3u32.to_be_bytes());
        be.extend_from_slice(b"xyz");
        let (packets, _, format) = read_all(&be);
        assert_eq!(format, CaptureFormat::Pcap { big_endian: true, nanos: true });
        assert_eq!(packets, [(10.5, 101, b"xyz".to_vec())]);

        let mut ng = pcapng_header(1);
        pcapng_epb(&mut ng, 1_591_367_999.305_988, b"hello");
        pcapng_spb(&mut ng, b"simple");
        let (packets, _, format) = read_all(&ng);
        assert_eq!(format, CaptureFormat::PcapNg);
        assert_eq!(packets.len(), 2);
        assert!((packets[0].0 - 1_591_367_999.305_988).abs() < 1e-6);
        assert_eq!(packets[1].2, b"simple");
        assert_eq!(packets[1].0, packets[0].0);
    }

    #[test]
    fn cut_files_end_cleanly_and_lies_are_refused() {
        let mut pcap = pcap_header(1);
        pcap_record(&mut pcap, 1.0, b"abcdef");
        pcap_record(&mut pcap, 2.0, b"abcdef");
        let cut = &pcap[..pcap.len() - 3];
        let (packets, truncated, _) = read_all(cut);
        assert_eq!(packets.len(), 1);
        assert!(truncated);

        let mut lying = pcap_header(1);
        lying.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0x7F, 0, 0, 0, 0]);
        let mut reader = CaptureReader::new(&lying[..], DEFAULT_MAX_PACKET_BYTES).unwrap();
        assert!(matches!(reader.next_packet(), Err(NetError::TooLarge { .. })));

        assert!(CaptureReader::new(&b"GIF89a"[..], 1024).is_err());
        assert!(CaptureReader::new(&b""[..], 1024).is_err());
        let mut bad_block = pcapng_header(1);
        bad_block.extend_from_slice(&[6, 0, 0, 0, 13, 0, 0, 0]);
        let mut reader = CaptureReader::new(&bad_block[..], 1024).unwrap();
        assert!(reader.next_packet().is_err());
    }
}
