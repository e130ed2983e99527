//! Outside input to `caduceus detect evaluate --model`, `network flows --model`
//! and the server's hot-loaded `network.model`: a model file, ours (JSON) or
//! an ONNX graph. None may panic out of the loader or the scorer.
//!
//! The loader runs tract (a dependency) behind `catch_unwind` and turns its
//! panics into errors. libfuzzer-sys's panic hook aborts on any panic, caught
//! or not, so this target puts the default hook back: a panic that escapes
//! our code still reaches libfuzzer-sys's own catch, which aborts.
#![no_main]

use std::sync::Once;

use libfuzzer_sys::fuzz_target;

static DEFAULT_HOOK: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    DEFAULT_HOOK.call_once(|| drop(std::panic::take_hook()));
    caduceus_ml::fuzz_model(data);
});
