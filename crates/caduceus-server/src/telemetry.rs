//! Logging: tracing to stderr, JSON by default. Secrets and patient data reach
//! log lines only through `caduceus_core::Redacted`, which prints a mask.

use caduceus_core::config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Install the global subscriber. `RUST_LOG`, when set, wins over the config.
/// Calling it twice is harmless (the second call does nothing).
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
