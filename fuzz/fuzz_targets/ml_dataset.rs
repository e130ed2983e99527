//! Outside input to `caduceus detect train/evaluate`: a labelled CSV of
//! flow features (any layout). None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    caduceus_ml::fuzz_dataset(data);
});
