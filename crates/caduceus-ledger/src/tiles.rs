//! C2SP tlog-tiles resource paths: `tile/<L>/<N>[.p/<W>]` for hash tiles and
//! `tile/entries/<N>[.p/<W>]` for entry bundles, with `<N>` split into
//! zero-padded three-digit elements, all but the last prefixed by `x`
//! (index 1234067 is `x001/x234/067`).
//!
//! Parsing is strict (no extra leading zeros, widths 1–255 only for partial
//! tiles) so that each resource has exactly one path and caches stay exact.

use crate::log::TILE_WIDTH;

/// Longest tile path accepted (a u64 index needs 7 elements).
pub const MAX_TILE_PATH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileKind {
    /// Hashes of tree level `8 · level`.
    Hashes { level: u32 },
    /// Entry bundle.
    Entries,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TilePath {
    pub kind: TileKind,
    pub index: u64,
    /// 256 for a full tile, 1–255 for a partial one.
    pub width: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a tile path: {0}")]
pub struct TilePathError(&'static str);

fn decimal(s: &str, max: u64) -> Result<u64, TilePathError> {
    let canonical = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if !canonical || s.len() > 3 {
        return Err(TilePathError("expected a decimal number without leading zeros"));
    }
    s.parse::<u64>().ok().filter(|n| *n <= max).ok_or(TilePathError("number out of range"))
}

impl TilePath {
    /// Parse the part after `tile/`.
    pub fn parse(path: &str) -> Result<Self, TilePathError> {
        if path.len() > MAX_TILE_PATH {
            return Err(TilePathError("too long"));
        }
        let mut parts: Vec<&str> = path.split('/').collect();
        let width = match parts.as_slice() {
            [.., last, w] if last.ends_with(".p") => {
                let width = decimal(w, TILE_WIDTH - 1)?;
                if width == 0 {
                    return Err(TilePathError("a partial tile has 1 to 255 entries"));
                }
                parts.pop();
                if let Some(last) = parts.last_mut() {
                    // Exactly one suffix: `273.p.p/1` is not a tile.
                    *last = last.strip_suffix(".p").unwrap_or(last);
                }
                width
            }
            _ => TILE_WIDTH,
        };
        let Some((first, elements)) = parts.split_first() else { return Err(TilePathError("empty")) };
        let kind = if *first == "entries" {
            TileKind::Entries
        } else {
            TileKind::Hashes { level: decimal(first, 63)? as u32 }
        };
        let Some((last, leading)) = elements.split_last() else { return Err(TilePathError("no tile index")) };
        let mut index: u64 = 0;
        for element in leading {
            let digits = element.strip_prefix('x').ok_or(TilePathError("index elements but the last start with x"))?;
            index = push_group(index, digits)?;
            if index == 0 {
                return Err(TilePathError("leading zero groups"));
            }
        }
        let index = push_group(index, last)?;
        Ok(Self { kind, index, width })
    }

    /// The path after `tile/`.
    pub fn to_path(&self) -> String {
        let mut groups = Vec::new();
        let mut n = self.index;
        loop {
            groups.push(n % 1000);
            n /= 1000;
            if n == 0 {
                break;
            }
        }
        let mut out = match self.kind {
            TileKind::Hashes { level } => level.to_string(),
            TileKind::Entries => "entries".to_owned(),
        };
        for (i, group) in groups.iter().enumerate().rev() {
            out.push_str(if i == 0 { "/" } else { "/x" });
            out.push_str(&format!("{group:03}"));
        }
        if self.width < TILE_WIDTH {
            out.push_str(&format!(".p/{}", self.width));
        }
        out
    }
}

fn push_group(index: u64, digits: &str) -> Result<u64, TilePathError> {
    if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TilePathError("index elements are three digits"));
    }
    let group: u64 = digits.parse().map_err(|_| TilePathError("index elements are three digits"))?;
    index.checked_mul(1000).and_then(|i| i.checked_add(group)).ok_or(TilePathError("index out of range"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_examples_parse_and_round_trip() {
        let hashes = |level, index, width| TilePath { kind: TileKind::Hashes { level }, index, width };
        for (path, tile) in [
            ("0/x001/x234/067", hashes(0, 1_234_067, 256)),
            ("0/000", hashes(0, 0, 256)),
            ("1/000.p/17", hashes(1, 0, 17)),
            ("2/x001/000", hashes(2, 1000, 256)),
            ("entries/273.p/112", TilePath { kind: TileKind::Entries, index: 273, width: 112 }),
            (
                "entries/x018/x446/x744/x073/x709/x551/615",
                TilePath { kind: TileKind::Entries, index: u64::MAX, width: 256 },
            ),
        ] {
            assert_eq!(TilePath::parse(path), Ok(tile), "{path}");
            assert_eq!(tile.to_path(), path);
        }
    }

    #[test]
    fn non_canonical_paths_are_refused() {
        for bad in [
            "",
            "0",
            "0/1",
            "0/0001",
            "00/000",
            "64/000",
            "0/000.p/0",
            "0/000.p/256",
            "0/000.p/07",
            "0/001/002",
            "0/x000/001",
            "0/x1/001",
            "entries",
            "entries/",
            "0/000/",
            "a/000",
            "0/-01",
            "0/+01",
            "entries/x018/x446/x744/x073/x709/x551/616",
            "0/000.p",
            "0/000.p/",
        ] {
            assert!(TilePath::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
