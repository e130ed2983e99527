//! Tile paths arrive in every `GET /ledger/tile/...` request: parsing must
//! never panic, and a path that parses is the one canonical path of its
//! tile (re-encoding gives the same bytes), so caches never hold a tile
//! under two names.
#![no_main]

use caduceus_ledger::tiles::TilePath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(tile) = TilePath::parse(text) {
        assert_eq!(tile.to_path(), text);
        assert!((1..=256).contains(&tile.width));
    }
});
