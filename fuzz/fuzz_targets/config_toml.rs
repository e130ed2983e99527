//! Configuration text and environment overrides: loading must never panic
//! and must either yield a configuration that validates or an error.
//! Input: TOML text, then optionally a NUL byte and `NAME=value` lines
//! treated as environment variables.
#![no_main]

use caduceus_core::config::load_str;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (toml, env_text) = text.split_once('\0').unwrap_or((text, ""));
    let env: Vec<(String, String)> = env_text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (format!("CADUCEUS_{k}"), v.to_owned()))
        .collect();
    if let Ok(config) = load_str(toml, &env) {
        assert!(config.validate().is_ok());
    }
});
