//! Loading the configuration: the TOML file named on the command line,
//! overlaid by `CADUCEUS_*` environment variables. Parsing and validation
//! live in `caduceus_core::config::load_str`; this module does the I/O.

use std::io::Read;
use std::path::Path;

use caduceus_core::config::{Config, ConfigLoadError, ENV_PREFIX, MAX_CONFIG_BYTES, load_str};

/// Load and validate the configuration from `path` and the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigLoadError> {
    let cannot = |e: std::io::Error| ConfigLoadError(format!("cannot read {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut text = String::new();
    // Read one byte past the limit to tell "at the limit" from "over it".
    file.take(MAX_CONFIG_BYTES as u64 + 1).read_to_string(&mut text).map_err(cannot)?;
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ConfigLoadError(format!("{} is larger than the {MAX_CONFIG_BYTES} byte limit", path.display())));
    }
    let env: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
    load_str(&text, &env).map_err(|e| ConfigLoadError(format!("{}: {}", path.display(), e.0)))
}
