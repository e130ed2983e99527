//! Small shared pieces of the line-oriented inputs: a line reader that never
//! holds more than its cap, timestamp parsing for the formats the sensors
//! write, and cleaning of short identifiers taken from the wire.

use std::io::{self, BufRead};

/// Default cap on one line of a Zeek, EVE or CSV input.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;

/// One line from [`LineReader::next_line`].
pub(crate) enum Line<'a> {
    /// The line without its end of line (`\n` or `\r\n`).
    Text(&'a [u8]),
    /// The line was over the cap (given); its bytes were skipped without
    /// keeping them.
    TooLong(usize),
}

/// Reads lines one at a time, refusing a line over the cap before it is
/// held in memory whole.
pub(crate) struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    line: u64,
    max: usize,
}

impl<R: BufRead> LineReader<R> {
    pub(crate) fn new(inner: R, max: usize) -> Self {
        Self { inner, buf: Vec::new(), line: 0, max: max.max(1) }
    }

    /// The next line with its 1-based number, or `None` at the end of the input.
    pub(crate) fn next_line(&mut self) -> io::Result<Option<(u64, Line<'_>)>> {
        self.buf.clear();
        let limit = u64::try_from(self.max).unwrap_or(u64::MAX).saturating_add(1);
        let read = io::Read::take(&mut self.inner, limit).read_until(b'\n', &mut self.buf)?;
        if read == 0 {
            return Ok(None);
        }
        self.line += 1;
        let ended = self.buf.last() == Some(&b'\n');
        if ended {
            self.buf.pop();
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
        }
        if self.buf.len() > self.max {
            if !ended {
                skip_line(&mut self.inner)?;
            }
            self.buf.clear();
            return Ok(Some((self.line, Line::TooLong(self.max))));
        }
        Ok(Some((self.line, Line::Text(&self.buf))))
    }
}

/// Consumes input up to and including the next `\n` without keeping it.
fn skip_line<R: BufRead>(inner: &mut R) -> io::Result<()> {
    loop {
        let (done, used) = {
            let chunk = inner.fill_buf()?;
            if chunk.is_empty() {
                return Ok(());
            }
            match chunk.iter().position(|&b| b == b'\n') {
                Some(at) => (true, at + 1),
                None => (false, chunk.len()),
            }
        };
        inner.consume(used);
        if done {
            return Ok(());
        }
    }
}

/// Seconds since the Unix epoch from the time formats the sensors and data
/// sets write: epoch seconds (`1591367999.305988`), ISO 8601 with `T` or a
/// space, optional fraction and optional offset (`Z`, `+01:00`, `+0100`;
/// none means UTC), and the original CIC-IDS2017 `7/7/2017 8:59[:02]`
/// (month first, UTC).
pub fn parse_time(text: &str) -> Option<f64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(secs) = text.parse::<f64>() {
        return secs.is_finite().then_some(secs);
    }
    if text.contains('/') {
        return parse_us_time(text);
    }
    parse_iso_time(text)
}

fn parse_iso_time(text: &str) -> Option<f64> {
    let bytes = text.as_bytes();
    let (date, rest) = (text.get(..10)?, text.get(11..)?);
    if !matches!(bytes.get(10), Some(b'T' | b' ')) {
        return None;
    }
    let mut parts = date.split('-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    // Split the clock from the offset: the offset starts at `Z`, `+` or a
    // `-` after the seconds.
    let offset_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (clock, offset) = rest.split_at(offset_at);
    let mut fields = clock.split(':');
    let hour: u8 = fields.next()?.parse().ok()?;
    let minute: u8 = fields.next()?.parse().ok()?;
    let seconds: f64 = match fields.next() {
        Some(s) => s.parse().ok()?,
        None => 0.0,
    };
    if fields.next().is_some() || !(0.0..61.0).contains(&seconds) {
        return None;
    }
    let offset_secs = parse_offset(offset)?;
    let base = epoch_seconds(year, month, day, hour, minute)?;
    Some(base + seconds - offset_secs)
}

fn parse_offset(offset: &str) -> Option<f64> {
    if offset.is_empty() || offset.eq_ignore_ascii_case("z") {
        return Some(0.0);
    }
    let (sign, digits) = match offset.split_at_checked(1)? {
        ("+", d) => (1.0, d),
        ("-", d) => (-1.0, d),
        _ => return None,
    };
    let digits: String = digits.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: f64 = digits.get(..2)?.parse().ok()?;
    let minutes: f64 = digits.get(2..)?.parse().ok()?;
    Some(sign * (hours * 3600.0 + minutes * 60.0))
}

fn parse_us_time(text: &str) -> Option<f64> {
    let (date, clock) = text.split_once(' ').unwrap_or((text, "0:00"));
    let mut parts = date.split('/');
    let month: u8 = parts.next()?.trim().parse().ok()?;
    let day: u8 = parts.next()?.trim().parse().ok()?;
    let year: i32 = parts.next()?.trim().parse().ok()?;
    let mut fields = clock.trim().split(':');
    let hour: u8 = fields.next()?.parse().ok()?;
    let minute: u8 = fields.next().unwrap_or("0").parse().ok()?;
    let seconds: f64 = fields.next().unwrap_or("0").parse().ok()?;
    Some(epoch_seconds(year, month, day, hour, minute)? + seconds)
}

fn epoch_seconds(year: i32, month: u8, day: u8, hour: u8, minute: u8) -> Option<f64> {
    if hour > 23 || minute > 59 {
        return None;
    }
    let month = time::Month::try_from(month).ok()?;
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    // Julian day 2440588 is 1970-01-01.
    let days = f64::from(date.to_julian_day() - 2_440_588);
    Some(days * 86_400.0 + f64::from(hour) * 3600.0 + f64::from(minute) * 60.0)
}

/// A short identifier from the wire (AE title, HL7 application name, topic
/// segment) made safe to store: printable ASCII only, trimmed, at most `max`
/// characters. `None` when nothing printable is left.
pub fn clean_token(raw: &[u8], max: usize) -> Option<String> {
    let text: String =
        raw.iter().filter(|b| b.is_ascii_graphic() || **b == b' ').take(max).map(|&b| char::from(b)).collect();
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// A string from a log line cut to `max` characters.
pub(crate) fn cap_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => text.get(..at).unwrap_or_default().to_owned(),
        None => text.to_owned(),
    }
}

/// Pushes `value` onto a bounded list of distinct values.
pub(crate) fn push_distinct(list: &mut Vec<String>, value: String, max: usize) {
    if list.len() < max && !list.contains(&value) {
        list.push(value);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn times_in_every_written_format() {
        assert_eq!(parse_time("1591367999.305988"), Some(1_591_367_999.305_988));
        // Zeek JSON with ISO timestamps, Suricata's offset without a colon.
        assert_eq!(parse_time("2019-03-14T23:59:49.5Z"), Some(1_552_607_989.5));
        let eve = parse_time("2009-11-24T21:27:09.534255+0100").unwrap();
        assert!((eve - 1_259_094_429.534_255).abs() < 1e-6);
        assert_eq!(parse_time("2009-11-24T21:27:09+01:00"), parse_time("2009-11-24T20:27:09Z"));
        // CIC-IDS2017 improved and original.
        let cic = parse_time("2017-07-06 12:39:06.818901").unwrap();
        assert!((cic - 1_499_344_746.818_901).abs() < 1e-6);
        assert_eq!(parse_time("7/7/2017 8:59"), Some(1_499_417_940.0));
        for bad in ["", "yesterday", "2017-13-01T00:00:00", "2017-01-01T25:00:00", "1/2", "NaN", "inf"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn lines_over_the_cap_are_skipped_whole() {
        let input = b"short\r\nthis line is too long\nok\n";
        let mut reader = LineReader::new(&input[..], 8);
        let mut seen = Vec::new();
        while let Some((number, line)) = reader.next_line().unwrap() {
            seen.push(match line {
                Line::Text(t) => String::from_utf8(t.to_vec()).unwrap(),
                Line::TooLong(_) => format!("too long at {number}"),
            });
        }
        assert_eq!(seen, ["short", "too long at 2", "ok"]);
    }

    #[test]
    fn tokens_keep_printable_ascii_only() {
        assert_eq!(clean_token(b"  STORESCU  \0\0", 16), Some("STORESCU".into()));
        assert_eq!(clean_token(b"\x01\x02", 16), None);
        assert_eq!(clean_token(b"ABCDEFGHIJKLMNOPQRS", 4), Some("ABCD".into()));
        assert_eq!(cap_chars("h\u{e9}llo", 2), "h\u{e9}");
    }
}
