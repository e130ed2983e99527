//! The configuration schema (version 1), its validation, and parsing of
//! configuration text overlaid by environment variables. Reading the file
//! and the process environment is the server's job; this module is pure. Every field documents itself,
//! and `docs/caduceus.example.toml` shows them all.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::redact::Redacted;

/// The configuration format version this build reads.
pub const CONFIG_VERSION: u32 = 1;

/// A configuration error that names the key at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid setting `{key}`: {problem}")]
pub struct ConfigError {
    pub key: &'static str,
    pub problem: String,
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError { key, problem: problem.into() }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Configuration format version; must be 1.
    pub version: u32,
    /// Where Caduceus keeps its state: the SQLite database, the TLS
    /// certificate it generated, keys.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub spine: SpineConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub ledger: LedgerConfig,
    #[serde(default)]
    pub witness: WitnessConfig,
    #[serde(default)]
    pub identity: IdentityConfig,
    #[serde(default)]
    pub vault: VaultConfig,
    #[serde(default)]
    pub detect: DetectConfig,
    #[serde(default)]
    pub network: NetworkConfig,
    #[serde(default)]
    pub devices: DevicesConfig,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./caduceus-data")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// PEM certificate chain. With neither `tls_cert` nor `tls_key`, a
    /// self-signed certificate is generated into `data_dir/tls/` at first start.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key matching `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP without TLS. Only for a loopback test or behind a
    /// TLS-terminating proxy on the same host.
    #[serde(default)]
    pub danger_plaintext_http: bool,
    /// Largest accepted request body, in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Time a request may take before it is answered with 408.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// On shutdown, how long in-flight requests may take to finish.
    #[serde(default = "default_shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
}

fn default_listen() -> String {
    "127.0.0.1:8443".into()
}
fn default_max_body_bytes() -> usize {
    1024 * 1024
}
fn default_request_timeout_secs() -> u64 {
    30
}
fn default_shutdown_grace_secs() -> u64 {
    20
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            tls_cert: None,
            tls_key: None,
            danger_plaintext_http: false,
            max_body_bytes: default_max_body_bytes(),
            request_timeout_secs: default_request_timeout_secs(),
            shutdown_grace_secs: default_shutdown_grace_secs(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Database URL: `sqlite://PATH` or `postgres://USER@HOST/DB`. Unset means
    /// SQLite at `data_dir/caduceus.db`. May hold a password, so it is redacted
    /// in logs.
    pub url: Option<Redacted<String>>,
    /// Most connections in the pool.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

fn default_max_connections() -> u32 {
    8
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self { url: None, max_connections: default_max_connections() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpineConfig {
    /// Most events in flight between producers and the slowest consumer.
    /// When it is reached, producers wait (back-pressure).
    #[serde(default = "default_spine_capacity")]
    pub capacity: usize,
    /// How long a producer waits for room before it gets an explicit error.
    #[serde(default = "default_publish_timeout_ms")]
    pub publish_timeout_ms: u64,
}

fn default_spine_capacity() -> usize {
    4096
}
fn default_publish_timeout_ms() -> u64 {
    5000
}

impl Default for SpineConfig {
    fn default() -> Self {
        Self { capacity: default_spine_capacity(), publish_timeout_ms: default_publish_timeout_ms() }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line on stderr.
    #[default]
    Json,
    /// Human-readable lines on stderr.
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter, e.g. `info` or `caduceus_server=debug,info`.
    #[serde(default = "default_log_level")]
    pub level: String,
    #[serde(default)]
    pub format: LogFormat,
}

fn default_log_level() -> String {
    "info".into()
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: default_log_level(), format: LogFormat::default() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    /// The log's name, the first line of every checkpoint and the name of its
    /// signing key (C2SP tlog-checkpoint "origin"). Unset: chosen at first
    /// start as `caduceus.invalid/ledger-<random>` and kept with the key.
    pub origin: Option<String>,
    /// Seconds between published checkpoints (when the log has grown).
    #[serde(default = "default_checkpoint_interval_secs")]
    pub checkpoint_interval_secs: u64,
    /// Witnesses asked to cosign every checkpoint.
    #[serde(default)]
    pub witnesses: Vec<WitnessEndpoint>,
    /// How many of `witnesses` must cosign before a checkpoint is published.
    /// 0 publishes checkpoints signed by the log alone.
    #[serde(default)]
    pub witness_quorum: usize,
    /// Seconds to wait for a witness to answer.
    #[serde(default = "default_witness_timeout_secs")]
    pub witness_timeout_secs: u64,
}

fn default_checkpoint_interval_secs() -> u64 {
    10
}
fn default_witness_timeout_secs() -> u64 {
    10
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            origin: None,
            checkpoint_interval_secs: default_checkpoint_interval_secs(),
            witnesses: Vec::new(),
            witness_quorum: 0,
            witness_timeout_secs: default_witness_timeout_secs(),
        }
    }
}

/// A witness this log asks for cosignatures (C2SP tlog-witness).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WitnessEndpoint {
    /// The witness's cosignature verifier key, `name+keyid+base64key`.
    pub vkey: String,
    /// The witness's URL prefix; requests go to `<url>/add-checkpoint`.
    pub url: String,
    /// A PEM CA certificate (or the witness's self-signed certificate) to
    /// trust for this witness, besides the system roots.
    pub ca_cert: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// Act as a witness for the logs below at `/witness/add-checkpoint`.
    #[serde(default)]
    pub enabled: bool,
    /// This witness's name (its cosignature key name). Unset: chosen at first
    /// start as `caduceus.invalid/witness-<random>` and kept with the key.
    pub name: Option<String>,
    /// The logs this instance witnesses.
    #[serde(default)]
    pub logs: Vec<WitnessedLog>,
}

/// A partner's log that this instance witnesses.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WitnessedLog {
    /// The log's origin line.
    pub origin: String,
    /// The log's note verifier key, `name+keyid+base64key`.
    pub vkey: String,
}

/// The patient-record vault.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// Directory of key-encryption key files. Default: `<data_dir>/vault-keys`.
    /// Keep it off the database's storage (and out of its backups) where you can.
    #[serde(default)]
    pub key_dir: Option<PathBuf>,
    /// How long a break-glass grant lasts, in minutes.
    #[serde(default = "default_break_glass_minutes")]
    pub break_glass_minutes: u64,
    /// Break-glass grants by one user within 24 hours that make the event
    /// say "repeated break-glass" (for detection rules).
    #[serde(default = "default_break_glass_alert_threshold")]
    pub break_glass_alert_threshold: u64,
    /// Largest FHIR request body (batch and transaction bundles), in bytes.
    #[serde(default = "default_max_bundle_bytes")]
    pub max_bundle_bytes: usize,
}

fn default_break_glass_minutes() -> u64 {
    30
}
fn default_break_glass_alert_threshold() -> u64 {
    3
}
fn default_max_bundle_bytes() -> usize {
    32 * 1024 * 1024
}

impl Default for VaultConfig {
    fn default() -> Self {
        Self {
            key_dir: None,
            break_glass_minutes: default_break_glass_minutes(),
            break_glass_alert_threshold: default_break_glass_alert_threshold(),
            max_bundle_bytes: default_max_bundle_bytes(),
        }
    }
}

impl Config {
    /// Where the vault's key-encryption keys live.
    pub fn vault_key_dir(&self) -> PathBuf {
        self.vault.key_dir.clone().unwrap_or_else(|| self.data_dir.join("vault-keys"))
    }
}

/// The detection stage: Sigma rules, record-access analytics, alerts and
/// where alerts are sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectConfig {
    /// Run the detection stage in the server.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Directories of Sigma rules (`.yml`) loaded at start, besides the
    /// rules created through the API.
    #[serde(default)]
    pub rules_dirs: Vec<PathBuf>,
    /// Our event field → Sigma taxonomy field, added to (and overriding)
    /// the built-in mapping, e.g. `"actor" = "User"`.
    #[serde(default)]
    pub field_map: std::collections::BTreeMap<String, String>,
    /// Most events the stage takes from the spine at once.
    #[serde(default = "default_detect_batch")]
    pub batch: usize,
    /// Findings of the same rule about the same entity within this many
    /// seconds are grouped into one alert.
    #[serde(default = "default_group_window_secs")]
    pub group_window_secs: u64,
    /// Anomaly score (0..1) at or above which a record access raises an alert.
    #[serde(default = "default_ehr_threshold")]
    pub ehr_alert_threshold: f64,
    /// Alerts are POSTed as JSON to this URL (https, or http on loopback).
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Alerts are sent to this syslog collector: `udp://host:port` or
    /// `tcp://host:port`.
    #[serde(default)]
    pub syslog_url: Option<String>,
    /// `rfc5424` (structured data) or `cef` (ArcSight Common Event Format
    /// inside the syslog message).
    #[serde(default = "default_syslog_format")]
    pub syslog_format: String,
}

fn default_true() -> bool {
    true
}
fn default_detect_batch() -> usize {
    1024
}
fn default_group_window_secs() -> u64 {
    3600
}
fn default_ehr_threshold() -> f64 {
    0.5
}
fn default_syslog_format() -> String {
    "rfc5424".into()
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            rules_dirs: Vec::new(),
            field_map: std::collections::BTreeMap::new(),
            batch: default_detect_batch(),
            group_window_secs: default_group_window_secs(),
            ehr_alert_threshold: default_ehr_threshold(),
            webhook_url: None,
            syslog_url: None,
            syslog_format: default_syslog_format(),
        }
    }
}

/// The network stage: flow sources (Zeek, Suricata, MQTT), the flow model,
/// the online anomaly detector and per-device baselines.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Run the network stage in the server.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Zeek `conn.log` files (TSV or JSON) followed like `tail -F`.
    #[serde(default)]
    pub zeek_logs: Vec<PathBuf>,
    /// Suricata `eve.json` files followed like `tail -F`.
    #[serde(default)]
    pub eve_logs: Vec<PathBuf>,
    /// Device telemetry: an MQTT broker, `mqtt://host:port` (plain, 1883) or
    /// `mqtts://host:port` (TLS, 8883; the broker's certificate is always checked).
    #[serde(default)]
    pub mqtt_broker: Option<String>,
    /// PEM certificates trusted for an `mqtts://` broker (the hospital's CA); the
    /// system's trusted roots when unset.
    #[serde(default)]
    pub mqtt_ca_file: Option<PathBuf>,
    /// Broker login name, when the broker asks for one.
    #[serde(default)]
    pub mqtt_username: Option<String>,
    /// File holding the broker password (first line), for `mqtt_username`.
    #[serde(default)]
    pub mqtt_password_file: Option<PathBuf>,
    /// MQTT topic filters to subscribe to, e.g. `devices/+/telemetry`.
    #[serde(default)]
    pub mqtt_topics: Vec<String>,
    /// A model written by `caduceus detect train` (or an ONNX file); reloaded
    /// when the file changes.
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// Score at or above which a flow raises an alert; the model's own
    /// threshold when unset.
    #[serde(default)]
    pub model_threshold: Option<f64>,
    /// Learn the live traffic with the online detector and alert on
    /// anomalous flows once it has seen `online_warmup` flows.
    #[serde(default = "default_true")]
    pub online_detector: bool,
    #[serde(default = "default_online_warmup")]
    pub online_warmup: u64,
    /// Online anomaly score (0..1) at or above which a flow raises an alert.
    #[serde(default = "default_online_threshold")]
    pub online_threshold: f64,
    /// How long each device's baseline learns before it alerts, in hours.
    #[serde(default = "default_baseline_hours")]
    pub baseline_learning_hours: u64,
    /// Device classes by IP address, e.g. `"10.0.5.21" = "infusion-pump"`.
    #[serde(default)]
    pub device_classes: std::collections::BTreeMap<String, String>,
    /// DICOM AE titles known to this hospital; an association or C-MOVE to
    /// another raises an alert (nothing is checked while empty).
    #[serde(default)]
    pub known_ae_titles: Vec<String>,
    /// Hosts allowed to send HL7 (the interface engines); HL7 from another
    /// host raises an alert (nothing is checked while empty).
    #[serde(default)]
    pub hl7_senders: Vec<String>,
}

fn default_online_warmup() -> u64 {
    1000
}
fn default_online_threshold() -> f64 {
    0.9
}
fn default_baseline_hours() -> u64 {
    24
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            zeek_logs: Vec::new(),
            eve_logs: Vec::new(),
            mqtt_broker: None,
            mqtt_ca_file: None,
            mqtt_username: None,
            mqtt_password_file: None,
            mqtt_topics: Vec::new(),
            model: None,
            model_threshold: None,
            online_detector: true,
            online_warmup: default_online_warmup(),
            online_threshold: default_online_threshold(),
            baseline_learning_hours: default_baseline_hours(),
            device_classes: std::collections::BTreeMap::new(),
            known_ae_titles: Vec::new(),
            hl7_senders: Vec::new(),
        }
    }
}

/// Device inventory and vulnerability management: where advisories and
/// enrichment come from, how often devices are rescanned, and whether devices
/// seen on the network but absent from the inventory are listed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesConfig {
    /// Run the device service in the server.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Directories (or files) of CSAF and OSV advisories imported at start.
    #[serde(default)]
    pub advisory_dirs: Vec<PathBuf>,
    /// FIRST EPSS scores (the published CSV), loaded at start.
    #[serde(default)]
    pub epss_file: Option<PathBuf>,
    /// CISA Known Exploited Vulnerabilities (the published JSON or CSV).
    #[serde(default)]
    pub kev_file: Option<PathBuf>,
    /// Rescan every device this often, in minutes (0: only on changes).
    #[serde(default = "default_rescan_minutes")]
    pub rescan_minutes: u64,
    /// List hosts seen in network flows that are not in the inventory.
    #[serde(default = "default_true")]
    pub discovery: bool,
}

fn default_rescan_minutes() -> u64 {
    24 * 60
}

impl Default for DevicesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            advisory_dirs: Vec::new(),
            epss_file: None,
            kev_file: None,
            rescan_minutes: default_rescan_minutes(),
            discovery: true,
        }
    }
}

/// Accounts, sign-in and sessions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// The URL browsers use to reach Caduceus: the WebAuthn relying party
    /// (its host is the RP id) and the base of the OIDC redirect. Unset:
    /// `https://localhost:<listen port>`.
    pub public_url: Option<String>,
    /// Sign a session out after this long without a request (HIPAA automatic logoff).
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// End a session this long after sign-in, however active (a shift).
    #[serde(default = "default_absolute_timeout_secs")]
    pub absolute_timeout_secs: u64,
    /// How long a re-authentication allows privileged actions.
    #[serde(default = "default_step_up_secs")]
    pub step_up_secs: u64,
    /// Roles that must use a passkey (phishing-resistant) as second factor:
    /// once a member has registered one, TOTP and recovery codes are
    /// refused for them at sign-in and step-up.
    #[serde(default)]
    pub phishing_resistant_roles: Vec<String>,
    /// An offline breached-password file in the Have I Been Pwned format
    /// (the SHA-1 ordered file, or a directory of range files), for
    /// air-gapped sites. Passwords found in it are refused.
    pub breached_passwords: Option<PathBuf>,
    /// Sign-in through an OpenID Connect provider (Entra ID, AD FS, Keycloak).
    pub oidc: Option<OidcConfig>,
}

fn default_idle_timeout_secs() -> u64 {
    15 * 60
}
fn default_absolute_timeout_secs() -> u64 {
    12 * 3600
}
fn default_step_up_secs() -> u64 {
    10 * 60
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            idle_timeout_secs: default_idle_timeout_secs(),
            absolute_timeout_secs: default_absolute_timeout_secs(),
            step_up_secs: default_step_up_secs(),
            phishing_resistant_roles: Vec::new(),
            breached_passwords: None,
            oidc: None,
        }
    }
}

/// An OpenID Connect provider for single sign-on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer URL; its discovery document is read at start.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<Redacted<String>>,
    /// Extra scopes besides `openid` (e.g. `profile`, `email`, `groups`).
    #[serde(default = "default_oidc_scopes")]
    pub scopes: Vec<String>,
    /// The ID-token or UserInfo claim listing the user's groups.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Provider group → Caduceus role. Users in no mapped group cannot sign in.
    #[serde(default)]
    pub role_mapping: std::collections::BTreeMap<String, String>,
    /// Accept a provider certificate that does not verify (tests only).
    #[serde(default)]
    pub danger_accept_invalid_certs: bool,
}

fn default_oidc_scopes() -> Vec<String> {
    vec!["profile".into(), "email".into(), "groups".into()]
}
fn default_groups_claim() -> String {
    "groups".into()
}

/// Which database a configuration points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageTarget {
    Sqlite(PathBuf),
    Postgres(Redacted<String>),
}

impl Config {
    /// A configuration with every default, for the demo and tests.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            version: CONFIG_VERSION,
            data_dir: data_dir.into(),
            server: ServerConfig::default(),
            storage: StorageConfig::default(),
            spine: SpineConfig::default(),
            log: LogConfig::default(),
            ledger: LedgerConfig::default(),
            witness: WitnessConfig::default(),
            identity: IdentityConfig::default(),
            vault: VaultConfig::default(),
            detect: DetectConfig::default(),
            network: NetworkConfig::default(),
            devices: DevicesConfig::default(),
        }
    }

    /// Check every setting; the first problem found names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.version != CONFIG_VERSION {
            return Err(invalid(
                "version",
                format!("this build reads configuration version {CONFIG_VERSION}, the file says {}", self.version),
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        self.listen_addr()?;
        match (&self.server.tls_cert, &self.server.tls_key) {
            (Some(_), None) => return Err(invalid("server.tls_key", "is required when server.tls_cert is set")),
            (None, Some(_)) => return Err(invalid("server.tls_cert", "is required when server.tls_key is set")),
            _ => {}
        }
        if self.server.danger_plaintext_http && self.server.tls_cert.is_some() {
            return Err(invalid("server.danger_plaintext_http", "cannot be combined with server.tls_cert; choose one"));
        }
        if !(1024..=1024 * 1024 * 1024).contains(&self.server.max_body_bytes) {
            return Err(invalid("server.max_body_bytes", "must be between 1 KiB and 1 GiB"));
        }
        if !(1..=3600).contains(&self.server.request_timeout_secs) {
            return Err(invalid("server.request_timeout_secs", "must be between 1 and 3600"));
        }
        if self.server.shutdown_grace_secs > 600 {
            return Err(invalid("server.shutdown_grace_secs", "must be at most 600"));
        }
        if !(1..=1000).contains(&self.storage.max_connections) {
            return Err(invalid("storage.max_connections", "must be between 1 and 1000"));
        }
        self.storage_target()?;
        if !(1..=1_000_000).contains(&self.spine.capacity) {
            return Err(invalid("spine.capacity", "must be between 1 and 1000000"));
        }
        if self.spine.publish_timeout_ms > 600_000 {
            return Err(invalid("spine.publish_timeout_ms", "must be at most 600000"));
        }
        if self.log.level.trim().is_empty() {
            return Err(invalid("log.level", "must not be empty"));
        }
        self.validate_ledger()?;
        self.validate_identity()?;
        self.validate_vault()?;
        self.validate_detect()?;
        self.validate_network()
    }

    fn validate_network(&self) -> Result<(), ConfigError> {
        let network = &self.network;
        if let Some(url) = &network.mqtt_broker
            && !url.starts_with("mqtt://")
            && !url.starts_with("mqtts://")
        {
            return Err(invalid("network.mqtt_broker", "must be mqtt://host:port or mqtts://host:port"));
        }
        if network.mqtt_ca_file.is_some() && !network.mqtt_broker.as_deref().is_some_and(|u| u.starts_with("mqtts://"))
        {
            return Err(invalid("network.mqtt_ca_file", "is for an mqtts:// broker"));
        }
        if network.mqtt_password_file.is_some() && network.mqtt_username.is_none() {
            return Err(invalid("network.mqtt_password_file", "needs mqtt_username"));
        }
        if network.mqtt_broker.is_some() && network.mqtt_topics.is_empty() {
            return Err(invalid("network.mqtt_topics", "name at least one topic filter when mqtt_broker is set"));
        }
        if let Some(t) = network.model_threshold
            && !(0.0..=1.0).contains(&t)
        {
            return Err(invalid("network.model_threshold", "must be between 0 and 1"));
        }
        if !(0.0..=1.0).contains(&network.online_threshold) {
            return Err(invalid("network.online_threshold", "must be between 0 and 1"));
        }
        if self.devices.rescan_minutes > 60 * 24 * 31 {
            return Err(invalid("devices.rescan_minutes", "must be at most 44640 (31 days)"));
        }
        if !(1..=24 * 90).contains(&network.baseline_learning_hours) {
            return Err(invalid("network.baseline_learning_hours", "must be between 1 and 2160"));
        }
        for ip in network.device_classes.keys().chain(network.hl7_senders.iter()) {
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(invalid("network", format!("`{ip}` is not an IP address")));
            }
        }
        Ok(())
    }

    fn validate_detect(&self) -> Result<(), ConfigError> {
        let detect = &self.detect;
        if !(1..=65_536).contains(&detect.batch) {
            return Err(invalid("detect.batch", "must be between 1 and 65536"));
        }
        if !(1..=7 * 86_400).contains(&detect.group_window_secs) {
            return Err(invalid("detect.group_window_secs", "must be between 1 and 604800"));
        }
        if !(0.0..=1.0).contains(&detect.ehr_alert_threshold) {
            return Err(invalid("detect.ehr_alert_threshold", "must be between 0 and 1"));
        }
        if !matches!(detect.syslog_format.as_str(), "rfc5424" | "cef") {
            return Err(invalid("detect.syslog_format", "must be `rfc5424` or `cef`"));
        }
        if let Some(url) = &detect.syslog_url
            && !(url.starts_with("udp://") || url.starts_with("tcp://"))
        {
            return Err(invalid("detect.syslog_url", "must be udp://host:port or tcp://host:port"));
        }
        if let Some(url) = &detect.webhook_url {
            let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"].iter().any(|p| url.starts_with(p));
            if !(url.starts_with("https://") || loopback) {
                return Err(invalid("detect.webhook_url", "must be https:// (or http:// on loopback)"));
            }
        }
        Ok(())
    }

    fn validate_vault(&self) -> Result<(), ConfigError> {
        if !(1..=1440).contains(&self.vault.break_glass_minutes) {
            return Err(invalid("vault.break_glass_minutes", "must be between 1 and 1440"));
        }
        if self.vault.break_glass_alert_threshold == 0 {
            return Err(invalid("vault.break_glass_alert_threshold", "must be at least 1"));
        }
        if !(1024 * 1024..=1024 * 1024 * 1024).contains(&self.vault.max_bundle_bytes) {
            return Err(invalid("vault.max_bundle_bytes", "must be between 1 MiB and 1 GiB"));
        }
        Ok(())
    }

    fn validate_identity(&self) -> Result<(), ConfigError> {
        let identity = &self.identity;
        if let Some(url) = &identity.public_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(invalid("identity.public_url", "must be an http(s) URL"));
        }
        if !(60..=86_400).contains(&identity.idle_timeout_secs) {
            return Err(invalid("identity.idle_timeout_secs", "must be between 60 and 86400"));
        }
        if !(identity.idle_timeout_secs..=30 * 86_400).contains(&identity.absolute_timeout_secs) {
            return Err(invalid(
                "identity.absolute_timeout_secs",
                "must be at least identity.idle_timeout_secs and at most 30 days",
            ));
        }
        if !(30..=3600).contains(&identity.step_up_secs) {
            return Err(invalid("identity.step_up_secs", "must be between 30 and 3600"));
        }
        if let Some(oidc) = &identity.oidc {
            if !(oidc.issuer.starts_with("https://") || oidc.issuer.starts_with("http://")) {
                return Err(invalid("identity.oidc.issuer", "must be an http(s) URL"));
            }
            if oidc.client_id.trim().is_empty() {
                return Err(invalid("identity.oidc.client_id", "must not be empty"));
            }
        }
        Ok(())
    }

    fn validate_ledger(&self) -> Result<(), ConfigError> {
        let ledger = &self.ledger;
        if let Some(origin) = &ledger.origin
            && !is_note_name(origin)
        {
            return Err(invalid("ledger.origin", "must be 1 to 255 printable characters without spaces or `+`"));
        }
        if !(1..=86_400).contains(&ledger.checkpoint_interval_secs) {
            return Err(invalid("ledger.checkpoint_interval_secs", "must be between 1 and 86400"));
        }
        if ledger.witness_quorum > ledger.witnesses.len() {
            return Err(invalid(
                "ledger.witness_quorum",
                format!("is {} but only {} witnesses are configured", ledger.witness_quorum, ledger.witnesses.len()),
            ));
        }
        if !(1..=300).contains(&ledger.witness_timeout_secs) {
            return Err(invalid("ledger.witness_timeout_secs", "must be between 1 and 300"));
        }
        for witness in &ledger.witnesses {
            if !(witness.url.starts_with("https://") || witness.url.starts_with("http://")) {
                return Err(invalid("ledger.witnesses.url", format!("`{}` is not an http(s) URL", witness.url)));
            }
            if witness.vkey.trim().is_empty() {
                return Err(invalid("ledger.witnesses.vkey", "must not be empty"));
            }
        }
        if let Some(name) = &self.witness.name
            && !is_note_name(name)
        {
            return Err(invalid("witness.name", "must be 1 to 255 printable characters without spaces or `+`"));
        }
        for log in &self.witness.logs {
            if !is_note_name(&log.origin) {
                return Err(invalid("witness.logs.origin", format!("`{}` is not a valid origin", log.origin)));
            }
            if log.vkey.trim().is_empty() {
                return Err(invalid("witness.logs.vkey", "must not be empty"));
            }
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|_| {
            invalid(
                "server.listen",
                format!("`{}` is not an address and port such as 127.0.0.1:8443", self.server.listen),
            )
        })
    }

    /// The database this configuration names.
    pub fn storage_target(&self) -> Result<StorageTarget, ConfigError> {
        let Some(url) = &self.storage.url else {
            return Ok(StorageTarget::Sqlite(self.data_dir.join("caduceus.db")));
        };
        let url = url.expose();
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(invalid("storage.url", "sqlite:// needs a file path"));
            }
            return Ok(StorageTarget::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StorageTarget::Postgres(Redacted::new(url.clone())));
        }
        // The URL may contain a password: say what is wrong without echoing it.
        Err(invalid("storage.url", "must start with sqlite:// or postgres://"))
    }
}

/// A signed-note key name: non-empty, printable, no spaces and no `+`.
fn is_note_name(name: &str) -> bool {
    (1..=255).contains(&name.len()) && name.chars().all(|c| !c.is_whitespace() && !c.is_control() && c != '+')
}

/// The prefix of environment variables that override the file.
pub const ENV_PREFIX: &str = "CADUCEUS_";

/// Largest configuration text accepted.
pub const MAX_CONFIG_BYTES: usize = 256 * 1024;

/// Why a configuration could not be loaded; one line per problem, each
/// naming its key and where the value came from.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("configuration error: {0}")]
pub struct ConfigLoadError(pub String);

/// Parse configuration TOML overlaid by environment variables, then validate.
///
/// `env` holds `(name, value)` pairs; only names starting with
/// [`ENV_PREFIX`] are used, `__` separates a section from its key
/// (`CADUCEUS_SERVER__LISTEN` sets `server.listen`), and values parse as
/// TOML scalars where they can (numbers, booleans), else as strings.
/// Unknown keys are errors, from the file and the environment alike.
pub fn load_str(toml: &str, env: &[(String, String)]) -> Result<Config, ConfigLoadError> {
    use figment::Figment;
    use figment::providers::{Format, Toml};

    if toml.len() > MAX_CONFIG_BYTES {
        return Err(ConfigLoadError(format!("configuration is larger than the {MAX_CONFIG_BYTES} byte limit")));
    }
    let figment = Figment::new().merge(Toml::string(toml)).merge(EnvPairs(env));
    let config: Config = figment.extract().map_err(describe)?;
    config.validate().map_err(|e| ConfigLoadError(e.to_string()))?;
    Ok(config)
}

/// Environment variables as a figment provider. Written by hand instead of
/// `figment::providers::Env` so the same code path serves the real process
/// environment, tests and the fuzzer, which pass explicit pairs.
struct EnvPairs<'a>(&'a [(String, String)]);

impl figment::Provider for EnvPairs<'_> {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("environment variable")
    }

    fn data(&self) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let mut dict = figment::value::Dict::new();
        for (name, value) in self.0 {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
            let key = rest.to_ascii_lowercase().replace("__", ".");
            if key.is_empty() || key.split('.').any(str::is_empty) {
                return Err(figment::Error::from(format!("environment variable `{name}` names no setting")));
            }
            let Ok(value) = value.parse::<figment::value::Value>();
            if let figment::value::Value::Dict(_, nested) = figment::util::nest(&key, value) {
                dict = merge_dicts(dict, nested);
            }
        }
        Ok(figment::Profile::Default.collect(dict))
    }
}

fn merge_dicts(mut into: figment::value::Dict, from: figment::value::Dict) -> figment::value::Dict {
    use figment::value::Value;
    for (key, value) in from {
        let merged = match (into.remove(&key), value) {
            (Some(Value::Dict(tag, a)), Value::Dict(_, b)) => Value::Dict(tag, merge_dicts(a, b)),
            (_, value) => value,
        };
        into.insert(key, merged);
    }
    into
}

/// One line per problem: which key, where it came from, what was wrong.
fn describe(errors: figment::Error) -> ConfigLoadError {
    let lines: Vec<String> = errors
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = e.metadata.as_ref().map(|m| format!(" (from {})", m.name)).unwrap_or_default();
            // Depending on the error, figment's path may or may not end with the field.
            let joined = |field: &str| match e.path.last() {
                Some(last) if last == field => key.clone(),
                _ if key.is_empty() => field.to_owned(),
                _ => format!("{key}.{field}"),
            };
            match &e.kind {
                figment::error::Kind::UnknownField(field, _) => format!("unknown setting `{}`{source}", joined(field)),
                figment::error::Kind::MissingField(field) => format!("missing setting `{}`{source}", joined(field)),
                kind if key.is_empty() => format!("{kind}{source}"),
                kind => format!("invalid setting `{key}`{source}: {kind}"),
            }
        })
        .collect();
    ConfigLoadError(lines.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::with_data_dir("/tmp/caduceus-test")
    }

    #[test]
    fn defaults_are_valid_and_secure() {
        let c = config();
        assert_eq!(c.validate(), Ok(()));
        assert!(!c.server.danger_plaintext_http);
        assert_eq!(c.storage_target(), Ok(StorageTarget::Sqlite("/tmp/caduceus-test/caduceus.db".into())));
    }

    #[test]
    fn each_bad_setting_names_its_key() {
        type Mutation = Box<dyn Fn(&mut Config)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("version", Box::new(|c| c.version = 2)),
            ("server.listen", Box::new(|c| c.server.listen = "localhost".into())),
            ("server.tls_key", Box::new(|c| c.server.tls_cert = Some("c.pem".into()))),
            ("server.tls_cert", Box::new(|c| c.server.tls_key = Some("k.pem".into()))),
            ("server.max_body_bytes", Box::new(|c| c.server.max_body_bytes = 0)),
            ("server.request_timeout_secs", Box::new(|c| c.server.request_timeout_secs = 0)),
            ("storage.url", Box::new(|c| c.storage.url = Some(Redacted::new("mysql://u:pw@h/db".into())))),
            ("storage.max_connections", Box::new(|c| c.storage.max_connections = 0)),
            ("spine.capacity", Box::new(|c| c.spine.capacity = 0)),
            ("log.level", Box::new(|c| c.log.level = " ".into())),
            ("ledger.origin", Box::new(|c| c.ledger.origin = Some("two words".into()))),
            ("ledger.checkpoint_interval_secs", Box::new(|c| c.ledger.checkpoint_interval_secs = 0)),
            ("ledger.witness_quorum", Box::new(|c| c.ledger.witness_quorum = 1)),
            ("witness.name", Box::new(|c| c.witness.name = Some("a+b".into()))),
        ];
        for (key, mutate) in cases {
            let mut c = config();
            mutate(&mut c);
            let err = c.validate().unwrap_err();
            assert_eq!(err.key, key, "{err}");
            assert!(!err.to_string().contains("pw@"), "a password leaked into an error: {err}");
        }
    }

    #[test]
    fn postgres_url_is_accepted_and_redacted() {
        let mut c = config();
        c.storage.url = Some(Redacted::new("postgres://caduceus:pw@127.0.0.1/caduceus".into()));
        let target = c.storage_target().unwrap();
        assert!(matches!(target, StorageTarget::Postgres(_)));
        assert!(!format!("{c:?}").contains("pw@"));
    }

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../../../docs/caduceus.example.toml");
        let config = load_str(text, &[]).unwrap();
        assert_eq!(config.server.listen, "127.0.0.1:8443");
    }

    #[test]
    fn environment_overrides_the_file() {
        let config = load_str(
            "version = 1\n[server]\nlisten = \"127.0.0.1:1\"\n",
            &env(&[("CADUCEUS_SERVER__LISTEN", "127.0.0.1:9443")]),
        )
        .unwrap();
        assert_eq!(config.server.listen, "127.0.0.1:9443");
        let config = load_str("version = 1\n", &env(&[("CADUCEUS_SPINE__CAPACITY", "17")])).unwrap();
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
        let err = load_str("version = 1\n", &env(&[("CADUCEUS_SERVER__LISTN", "x")])).unwrap_err().to_string();
        assert!(err.contains("server.listn"), "{err}");
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn other_environment_variables_are_ignored() {
        let config = load_str("version = 1\n", &env(&[("PATH", "/bin"), ("CADUCEUSX", "1")])).unwrap();
        assert_eq!(config.version, 1);
        let err = load_str("version = 1\n", &env(&[("CADUCEUS_", "1")])).unwrap_err().to_string();
        assert!(err.contains("names no setting"), "{err}");
    }
}
