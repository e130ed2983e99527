//! Loading the configuration: a TOML file overlaid by `CADUCEUS_*`
//! environment variables (`__` separates sections, so
//! `CADUCEUS_SERVER__LISTEN` sets `server.listen`). Unknown keys are errors,
//! in the file and in the environment alike, and every error names its key.

use std::path::Path;

use caduceus_core::config::Config;
use figment::Figment;
use figment::providers::{Env, Format, Toml};

/// The prefix of environment variables that override the file.
pub const ENV_PREFIX: &str = "CADUCEUS_";

/// Largest configuration file accepted.
pub const MAX_CONFIG_BYTES: u64 = 256 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigLoadError(String);

/// Load and validate the configuration from `path` (if any) and the environment.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigLoadError> {
    let mut figment = Figment::new();
    if let Some(path) = path {
        let meta = std::fs::metadata(path)
            .map_err(|e| ConfigLoadError(format!("cannot read {}: {e}", path.display())))?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(ConfigLoadError(format!(
                "{} is {} bytes, larger than the {MAX_CONFIG_BYTES} byte limit",
                path.display(),
                meta.len()
            )));
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
    from_figment(figment)
}

/// Load from TOML text and explicit environment pairs; for tests and fuzzing.
pub fn load_str(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigLoadError> {
    if toml.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigLoadError(format!("configuration is larger than the {MAX_CONFIG_BYTES} byte limit")));
    }
    let mut figment = Figment::new().merge(Toml::string(toml));
    for (key, value) in env {
        // The same mapping as `Env::split("__")`: lower case, `__` to `.`;
        // values parse as `Env` parses them (numbers, booleans, strings).
        let key = key.strip_prefix(ENV_PREFIX).unwrap_or(key).to_ascii_lowercase().replace("__", ".");
        let Ok(value) = value.parse::<figment::value::Value>();
        figment = figment.merge((key, value));
    }
    from_figment(figment)
}

fn from_figment(figment: Figment) -> Result<Config, ConfigLoadError> {
    let config: Config = figment.extract().map_err(describe)?;
    config.validate().map_err(|e| ConfigLoadError(e.to_string()))?;
    Ok(config)
}

/// One line per problem: which key, where it came from, what was wrong.
fn describe(errors: figment::Error) -> ConfigLoadError {
    let lines: Vec<String> = errors
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = e
                .metadata
                .as_ref()
                .map(|m| match &m.source {
                    Some(source) => format!(" (from {source})"),
                    None => format!(" (from {})", m.name),
                })
                .unwrap_or_default();
            let what = match &e.kind {
                figment::error::Kind::UnknownField(field, _) => {
                    let full = if key.is_empty() { field.clone() } else { format!("{key}.{field}") };
                    return format!("unknown setting `{full}`{source}");
                }
                figment::error::Kind::MissingField(field) => {
                    let full = if key.is_empty() { field.to_string() } else { format!("{key}.{field}") };
                    return format!("missing setting `{full}`{source}");
                }
                kind => kind.to_string(),
            };
            if key.is_empty() { format!("{what}{source}") } else { format!("invalid setting `{key}`{source}: {what}") }
        })
        .collect();
    ConfigLoadError(lines.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../../../docs/caduceus.example.toml");
        let config = load_str(text, &[]).unwrap();
        assert_eq!(config.server.listen, "127.0.0.1:8443");
    }

    #[test]
    fn environment_overrides_the_file() {
        let config =
            load_str("version = 1\n[server]\nlisten = \"127.0.0.1:1\"\n", &[("CADUCEUS_SERVER__LISTEN", "127.0.0.1:9443")])
                .unwrap();
        assert_eq!(config.server.listen, "127.0.0.1:9443");
        let config = load_str("version = 1\n", &[("CADUCEUS_SPINE__CAPACITY", "17")]).unwrap();
        assert_eq!(config.spine.capacity, 17);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("version = 1\n[server]\nlisten = 5\n", "server.listen"),
            ("version = 1\n[server]\nlistne = \"x\"\n", "unknown setting `server.listne`"),
            ("version = 1\nsurprise = true\n", "unknown setting `surprise`"),
            ("[server]\nlisten = \"127.0.0.1:1\"\n", "missing setting `version`"),
            ("version = 2\n", "`version`"),
            ("version = 1\n[spine]\ncapacity = -3\n", "spine.capacity"),
            ("version = 1\n[server]\nlisten = \"nowhere\"\n", "`server.listen`"),
            ("version = 1\n[storage]\nurl = \"mysql://root:pw@db/x\"\n", "`storage.url`"),
            ("version = [1\n", "TOML"),
        ];
        for (text, expected) in cases {
            let err = load_str(text, &[]).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?} gave {err:?}, expected it to mention {expected:?}");
            assert!(!err.contains("pw@"), "a password leaked: {err}");
        }
    }

    #[test]
    fn unknown_environment_keys_are_errors() {
        let err = load_str("version = 1\n", &[("CADUCEUS_SERVER__LISTN", "x")]).unwrap_err().to_string();
        assert!(err.contains("server.listn"), "{err}");
    }
}
