//! Alert outputs, so that a hospital's existing SIEM gets the alerts too:
//! a webhook (the alert's JSON view, POSTed), and syslog over UDP or TCP,
//! either RFC 5424 with structured data or ArcSight CEF inside the syslog
//! message.
//!
//! Outputs never hold up detection: [`Outputs::send`] puts the alert in a
//! bounded queue per output and returns; a task per output delivers, with
//! timeouts and a bounded number of retries. An alert that finds its queue
//! full is dropped, counted and logged — never silently. Counters per
//! output (sent, failed, dropped) are for `/metrics`.
//!
//! This module formats and sends; what to send (new alerts, not every
//! finding grouped into one) is the caller's choice.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use caduceus_core::config::DetectConfig;
use caduceus_core::{Clock, Severity, Timestamp};
use caduceus_store::detect::AlertRow;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::alerts::AlertView;

/// Why the outputs could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    /// A configured URL is not one the outputs can use (the message never
    /// repeats the URL: it may carry a credential).
    #[error("detect.{key}: {problem}")]
    InvalidUrl { key: &'static str, problem: String },
    #[error("webhook client: {0}")]
    Client(String),
}

/// Tunables of delivery; [`OutputSettings::default`] is what the server uses.
#[derive(Debug, Clone)]
pub struct OutputSettings {
    /// Alerts waiting per output before new ones are dropped.
    pub queue: usize,
    /// Whole-request time limit (webhook) or write limit (TCP syslog).
    pub timeout: Duration,
    /// Tries per alert, the first included.
    pub attempts: u32,
    /// Wait before the first retry; doubled each retry, at most `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for OutputSettings {
    fn default() -> Self {
        Self {
            queue: 1024,
            timeout: Duration::from_secs(10),
            attempts: 4,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl OutputSettings {
    fn delay(&self, retry: u32) -> Duration {
        self.backoff.saturating_mul(1u32 << retry.min(16)).min(self.max_backoff)
    }
}

/// How syslog messages are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogFormat {
    /// RFC 5424 with the alert in structured data.
    Rfc5424,
    /// RFC 5424 header with a CEF message.
    Cef,
}

/// What every syslog message shares: who sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogOrigin {
    /// RFC 5424 HOSTNAME (`-` when unknown).
    pub hostname: String,
    pub procid: String,
}

impl SyslogOrigin {
    /// This host and process.
    pub fn local() -> Self {
        Self { hostname: local_hostname(), procid: std::process::id().to_string() }
    }
}

/// The host name, as RFC 5424 allows it (1 to 255 printable US-ASCII
/// characters), or `-`.
fn local_hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|text| text.trim().to_owned())
        .find(|name| (1..=255).contains(&name.len()) && name.bytes().all(|b| (33..=126).contains(&b)))
        .unwrap_or_else(|| "-".to_owned())
}

// ----- formats ----------------------------------------------------------

/// RFC 5424 §6.2.1: security/authorization messages (the facility Linux
/// calls `authpriv`, which receivers keep in a restricted log: alerts name
/// staff accounts and pseudonymous patients).
const FACILITY: u8 = 10;
/// RFC 5424 §6.3.2: an SD-ID with `@` is ours, qualified by an IANA
/// Private Enterprise Number. 32473 is the number RFC 5612 reserves for
/// documentation; a site with its own number can rewrite it in its collector.
pub const SD_ID: &str = "caduceus@32473";
/// Largest datagram sent over UDP. RFC 5426 only promises 480 bytes (IPv4)
/// but common collectors (rsyslog, syslog-ng) take 8 KiB; a longer message
/// is rebuilt compact, with the explanation shortened.
pub const MAX_UDP_MESSAGE: usize = 8192;

/// RFC 5424 §6.2.1 severity for an OCSF severity.
pub fn syslog_severity(severity: Severity) -> u8 {
    match severity {
        Severity::Critical | Severity::Fatal => 2,
        Severity::High => 3,
        Severity::Medium => 4,
        Severity::Low | Severity::Unknown | Severity::Other => 5,
        Severity::Informational => 6,
    }
}

/// CEF severity (0–10) for an OCSF severity.
pub fn cef_severity(severity: Severity) -> u8 {
    match severity {
        Severity::Unknown => 0,
        Severity::Informational => 1,
        Severity::Low => 3,
        Severity::Medium | Severity::Other => 5,
        Severity::High => 8,
        Severity::Critical | Severity::Fatal => 10,
    }
}

/// RFC 5424 TIMESTAMP: RFC 3339 in UTC with milliseconds (at most six
/// fractional digits are allowed).
fn syslog_timestamp(at: Timestamp) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.as_millis()) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| "-".to_owned())
}

/// RFC 5424 §6.3.3: inside PARAM-VALUE, `"`, `\` and `]` are escaped with
/// a backslash; everything else (UTF-8) stays as it is.
pub fn escape_sd_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// CEF header fields: `\` and `|` are escaped; a header cannot span lines,
/// so line breaks and other control characters become spaces.
pub fn escape_cef_header(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// CEF extension values: `\` and `=` are escaped, line breaks written as
/// `\n` and `\r`, other control characters become spaces. (Pipes need no
/// escaping here.)
pub fn escape_cef_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Free text for a syslog MSG: control characters (line breaks) become
/// spaces, so a collector that splits on newlines keeps one alert per line.
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

fn clip(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => text.get(..end).unwrap_or(text),
        None => text,
    }
}

/// The view with its free text shortened, for a message that must be small.
fn compact(view: &AlertView) -> AlertView {
    let mut small = view.clone();
    small.rule_id = clip(&view.rule_id, 128).to_owned();
    small.rule_title = clip(&view.rule_title, 128).to_owned();
    small.entity = view.entity.as_deref().map(|e| clip(e, 128).to_owned());
    small.explanation = clip(&view.explanation, 200).to_owned();
    small.attack.techniques.truncate(8);
    small.attack.tactics.truncate(4);
    small
}

fn header(view: &AlertView, origin: &SyslogOrigin, now: Timestamp) -> String {
    let pri = FACILITY * 8 + syslog_severity(view.severity_id);
    format!("<{pri}>1 {} {} caduceus {} alert", syslog_timestamp(now), origin.hostname, origin.procid)
}

/// One RFC 5424 message for an alert: the alert's identity in structured
/// data (`[caduceus@32473 id=… rule=… severity=… entity=…]`), its title and
/// explanation as the (UTF-8, BOM-prefixed) MSG.
pub fn rfc5424(view: &AlertView, origin: &SyslogOrigin, now: Timestamp) -> String {
    let mut sd = format!("[{SD_ID}");
    let mut param = |name: &str, value: &str| {
        let _ = write!(sd, " {name}=\"{}\"", escape_sd_value(value));
    };
    param("id", &view.id);
    param("rule", &view.rule_id);
    param("kind", &view.kind);
    param("severity", &view.severity);
    param("status", status_name(view));
    if let Some(entity) = &view.entity {
        param("entity", entity);
    }
    param("count", &view.count.to_string());
    if let Some(score) = view.score {
        param("score", &format!("{score:.3}"));
    }
    if !view.attack.techniques.is_empty() {
        param("attack", &view.attack.techniques.join(","));
    }
    if !view.attack.tactics.is_empty() {
        param("tactics", &view.attack.tactics.join(","));
    }
    param("first", &syslog_timestamp(Timestamp(view.first_seen)));
    param("last", &syslog_timestamp(Timestamp(view.last_seen)));
    sd.push(']');
    let msg = one_line(&format!("{}: {}", view.rule_title, view.explanation));
    format!("{} {sd} \u{feff}{msg}", header(view, origin, now))
}

fn status_name(view: &AlertView) -> &'static str {
    match view.status {
        crate::alerts::AlertState::Open => "open",
        crate::alerts::AlertState::Acknowledged => "acknowledged",
        crate::alerts::AlertState::Closed => "closed",
        crate::alerts::AlertState::Suppressed => "suppressed",
    }
}

/// The CEF record for an alert:
/// `CEF:0|Caduceus|Caduceus|<version>|<rule id>|<title>|<0-10>|<extension>`.
pub fn cef(view: &AlertView) -> String {
    let mut out = format!(
        "CEF:0|Caduceus|Caduceus|{}|{}|{}|{}|",
        escape_cef_header(caduceus_core::VERSION),
        escape_cef_header(&view.rule_id),
        escape_cef_header(&view.rule_title),
        cef_severity(view.severity_id)
    );
    let mut fields: Vec<(&str, String)> = vec![
        ("rt", view.last_seen.to_string()),
        ("start", view.first_seen.to_string()),
        ("end", view.last_seen.to_string()),
        ("externalId", view.id.clone()),
        ("cat", view.kind.clone()),
        ("cnt", view.count.to_string()),
        ("msg", view.explanation.clone()),
        ("cs2Label", "status".to_owned()),
        ("cs2", status_name(view).to_owned()),
    ];
    if let Some(entity) = &view.entity {
        fields.push(("cs1Label", "entity".to_owned()));
        fields.push(("cs1", entity.clone()));
    }
    if !view.attack.techniques.is_empty() {
        fields.push(("cs3Label", "attackTechniques".to_owned()));
        fields.push(("cs3", view.attack.techniques.join(",")));
    }
    if !view.attack.tactics.is_empty() {
        fields.push(("cs4Label", "attackTactics".to_owned()));
        fields.push(("cs4", view.attack.tactics.join(",")));
    }
    if let Some(score) = view.score {
        fields.push(("cfp1Label", "score".to_owned()));
        fields.push(("cfp1", format!("{score:.3}")));
    }
    if !view.patients.is_empty() {
        fields.push(("cn1Label", "patients".to_owned()));
        fields.push(("cn1", view.patients.len().to_string()));
    }
    let extension: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={}", escape_cef_value(v))).collect();
    out.push_str(&extension.join(" "));
    out
}

/// A syslog message carrying the CEF record (nil structured data; no BOM,
/// which CEF parsers do not expect).
pub fn cef_syslog(view: &AlertView, origin: &SyslogOrigin, now: Timestamp) -> String {
    format!("{} - {}", header(view, origin, now), cef(view))
}

/// The syslog message for an alert, in the configured format, at most
/// `max` bytes (rebuilt compact when the full one is longer).
pub fn syslog_message(
    view: &AlertView,
    format: SyslogFormat,
    origin: &SyslogOrigin,
    now: Timestamp,
    max: usize,
) -> String {
    let build = |view: &AlertView| match format {
        SyslogFormat::Rfc5424 => rfc5424(view, origin, now),
        SyslogFormat::Cef => cef_syslog(view, origin, now),
    };
    let full = build(view);
    if full.len() <= max {
        return full;
    }
    let small = build(&compact(view));
    if small.len() <= max {
        return small;
    }
    // Only a `max` far below any real collector's limit gets here: cut at
    // a character boundary (the tail may lose an escape's second half).
    let mut end = max;
    while !small.is_char_boundary(end) {
        end -= 1;
    }
    small.get(..end).unwrap_or_default().to_owned()
}

/// RFC 6587 §3.4.1 octet-counting framing: `MSG-LEN SP SYSLOG-MSG`.
pub fn octet_counted(message: &str) -> Vec<u8> {
    let mut frame = format!("{} ", message.len()).into_bytes();
    frame.extend_from_slice(message.as_bytes());
    frame
}

// ----- delivery ---------------------------------------------------------

/// Counters of one output.
#[derive(Debug, Default)]
pub struct OutputCounters {
    /// Alerts delivered.
    pub sent: AtomicU64,
    /// Alerts given up on after every retry.
    pub failed: AtomicU64,
    /// Alerts that found the queue full.
    pub dropped: AtomicU64,
}

/// A snapshot of one output's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputStats {
    /// `webhook` or `syslog`.
    pub output: &'static str,
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
}

struct Sink {
    name: &'static str,
    queue: Mutex<Option<mpsc::Sender<Arc<AlertView>>>>,
    counters: Arc<OutputCounters>,
    /// Seconds (since `started`) of the last "dropped" log line, plus one.
    last_drop_log: AtomicU64,
}

/// The running outputs. Cheap to share (`Arc`); [`Outputs::send`] never waits.
pub struct Outputs {
    sinks: Vec<Sink>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    started: Instant,
}

impl std::fmt::Debug for Outputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.sinks.iter().map(|s| s.name).collect();
        f.debug_struct("Outputs").field("outputs", &names).finish_non_exhaustive()
    }
}

/// Where syslog goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SyslogTarget {
    Udp(String),
    Tcp(String),
}

/// `udp://host:port` or `tcp://host:port` (IPv6 in brackets), nothing more.
fn parse_syslog_url(url: &str) -> Result<SyslogTarget, OutputError> {
    let bad = |problem: &str| OutputError::InvalidUrl { key: "syslog_url", problem: problem.to_owned() };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("must be udp://host:port or tcp://host:port"))?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) || authority.len() > 300 {
        return Err(bad("must be udp://host:port or tcp://host:port, without a path"));
    }
    let port = authority.rsplit_once(':').map(|(_, p)| p).unwrap_or_default();
    if port.parse::<u16>().map_or(true, |p| p == 0) || authority.ends_with("]") {
        return Err(bad("needs a port (1-65535)"));
    }
    match scheme {
        "udp" => Ok(SyslogTarget::Udp(authority.to_owned())),
        "tcp" => Ok(SyslogTarget::Tcp(authority.to_owned())),
        _ => Err(bad("must be udp://host:port or tcp://host:port")),
    }
}

impl Outputs {
    /// Start the outputs the configuration names (none: an `Outputs` that
    /// sends nothing). Needs a Tokio runtime.
    pub fn start(config: &DetectConfig, clock: Arc<dyn Clock>) -> Result<Self, OutputError> {
        Self::start_with(config, clock, OutputSettings::default(), SyslogOrigin::local())
    }

    pub fn start_with(
        config: &DetectConfig,
        clock: Arc<dyn Clock>,
        settings: OutputSettings,
        origin: SyslogOrigin,
    ) -> Result<Self, OutputError> {
        let mut sinks = Vec::new();
        let mut tasks = Vec::new();
        let queue = settings.queue.max(1);
        if let Some(url) = &config.webhook_url {
            let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
                .iter()
                .any(|p| url.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/'])));
            if !(url.starts_with("https://") || loopback) {
                return Err(OutputError::InvalidUrl {
                    key: "webhook_url",
                    problem: "must be https:// (or http:// on loopback)".into(),
                });
            }
            let client = reqwest::Client::builder()
                .timeout(settings.timeout)
                .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("caduceus/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| OutputError::Client(e.to_string()))?;
            let (tx, rx) = mpsc::channel(queue);
            let counters = Arc::new(OutputCounters::default());
            tasks.push(tokio::spawn(run_webhook(url.clone(), client, rx, counters.clone(), settings.clone())));
            sinks.push(Sink {
                name: "webhook",
                queue: Mutex::new(Some(tx)),
                counters,
                last_drop_log: AtomicU64::new(0),
            });
        }
        if let Some(url) = &config.syslog_url {
            let target = parse_syslog_url(url)?;
            let format = match config.syslog_format.as_str() {
                "rfc5424" => SyslogFormat::Rfc5424,
                "cef" => SyslogFormat::Cef,
                _ => {
                    return Err(OutputError::InvalidUrl {
                        key: "syslog_format",
                        problem: "must be `rfc5424` or `cef`".into(),
                    });
                }
            };
            let (tx, rx) = mpsc::channel(queue);
            let counters = Arc::new(OutputCounters::default());
            let syslog =
                Syslog { target, format, origin: origin.clone(), clock: clock.clone(), settings: settings.clone() };
            tasks.push(tokio::spawn(syslog.run(rx, counters.clone())));
            sinks.push(Sink {
                name: "syslog",
                queue: Mutex::new(Some(tx)),
                counters,
                last_drop_log: AtomicU64::new(0),
            });
        }
        Ok(Self { sinks, tasks: Mutex::new(tasks), started: Instant::now() })
    }

    /// Whether any output is configured.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }

    /// Queue an alert for every output; never waits. A full queue drops
    /// the alert for that output, counted and logged (at most every 10 s,
    /// with the total so far).
    pub fn send(&self, alert: &AlertRow) {
        if self.sinks.is_empty() {
            return;
        }
        self.send_view(Arc::new(AlertView::from(alert)));
    }

    pub fn send_view(&self, view: Arc<AlertView>) {
        for sink in &self.sinks {
            let queued = match sink.queue.lock() {
                Ok(guard) => guard.as_ref().map(|tx| tx.try_send(view.clone())),
                Err(_) => None,
            };
            if matches!(queued, Some(Ok(()))) {
                continue;
            }
            let dropped = sink.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            let now = self.started.elapsed().as_secs() + 1;
            let last = sink.last_drop_log.load(Ordering::Relaxed);
            if (last == 0 || now >= last + 10)
                && sink.last_drop_log.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
            {
                let why = if queued.is_none() { "output stopped" } else { "queue full" };
                tracing::warn!(
                    output = sink.name,
                    reason = why,
                    dropped_total = dropped,
                    "alert output dropped an alert"
                );
            }
        }
    }

    pub fn stats(&self) -> Vec<OutputStats> {
        self.sinks
            .iter()
            .map(|s| OutputStats {
                output: s.name,
                sent: s.counters.sent.load(Ordering::Relaxed),
                failed: s.counters.failed.load(Ordering::Relaxed),
                dropped: s.counters.dropped.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Stop taking alerts, deliver what is queued for up to `grace`, then
    /// stop. What could not be delivered in time is counted as failed.
    pub async fn shutdown(&self, grace: Duration) {
        for sink in &self.sinks {
            if let Ok(mut guard) = sink.queue.lock() {
                guard.take();
            }
        }
        let tasks: Vec<JoinHandle<()>> = match self.tasks.lock() {
            Ok(mut guard) => guard.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        let deadline = tokio::time::Instant::now() + grace;
        for mut task in tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                tracing::warn!("alert output still delivering at shutdown; stopped");
            }
        }
    }
}

/// POST each alert; retry network errors, timeouts, 408, 429 and 5xx.
async fn run_webhook(
    url: String,
    client: reqwest::Client,
    mut rx: mpsc::Receiver<Arc<AlertView>>,
    counters: Arc<OutputCounters>,
    settings: OutputSettings,
) {
    while let Some(view) = rx.recv().await {
        let body = match serde_json::to_vec(&*view) {
            Ok(body) => body,
            Err(e) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "webhook: alert not serialisable");
                continue;
            }
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = client
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let (retry, problem) = match result {
                Ok(response) if response.status().is_success() => {
                    counters.sent.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(response) => {
                    let status = response.status();
                    let retry = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
                    (retry, format!("status {}", status.as_u16()))
                }
                // The error's text can hold the URL (and its credentials): only its kind is logged.
                Err(e) if e.is_timeout() => (true, "timed out".to_owned()),
                Err(e) if e.is_connect() => (true, "cannot connect".to_owned()),
                Err(_) => (true, "request failed".to_owned()),
            };
            if !retry || attempt >= settings.attempts {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(output = "webhook", alert = %view.id, attempts = attempt, problem = %problem, "alert not delivered");
                break;
            }
            tokio::time::sleep(settings.delay(attempt - 1)).await;
        }
    }
}

struct Syslog {
    target: SyslogTarget,
    format: SyslogFormat,
    origin: SyslogOrigin,
    clock: Arc<dyn Clock>,
    settings: OutputSettings,
}

/// Most bytes of one message over TCP (octet counting carries any length;
/// this bounds what a collector must buffer).
const MAX_TCP_MESSAGE: usize = 64 * 1024;

impl Syslog {
    async fn run(self, mut rx: mpsc::Receiver<Arc<AlertView>>, counters: Arc<OutputCounters>) {
        let mut udp: Option<tokio::net::UdpSocket> = None;
        let mut tcp: Option<tokio::net::TcpStream> = None;
        while let Some(view) = rx.recv().await {
            let now = self.clock.now();
            let mut attempt = 0;
            loop {
                attempt += 1;
                let result = match &self.target {
                    SyslogTarget::Udp(addr) => {
                        let message = syslog_message(&view, self.format, &self.origin, now, MAX_UDP_MESSAGE);
                        self.send_udp(&mut udp, addr, message.as_bytes()).await
                    }
                    SyslogTarget::Tcp(addr) => {
                        let message = syslog_message(&view, self.format, &self.origin, now, MAX_TCP_MESSAGE);
                        self.send_tcp(&mut tcp, addr, &octet_counted(&message)).await
                    }
                };
                match result {
                    Ok(()) => {
                        counters.sent.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Err(problem) => {
                        // A broken connection is made again on the next try.
                        udp = None;
                        tcp = None;
                        if attempt >= self.settings.attempts {
                            counters.failed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(output = "syslog", alert = %view.id, attempts = attempt, problem = %problem, "alert not delivered");
                            break;
                        }
                        tokio::time::sleep(self.settings.delay(attempt - 1)).await;
                    }
                }
            }
        }
        if let Some(mut stream) = tcp {
            let _ = stream.shutdown().await;
        }
    }

    async fn send_udp(
        &self,
        socket: &mut Option<tokio::net::UdpSocket>,
        addr: &str,
        datagram: &[u8],
    ) -> Result<(), String> {
        if socket.is_none() {
            let target = tokio::net::lookup_host(addr)
                .await
                .map_err(|e| format!("cannot resolve the collector: {e}"))?
                .next()
                .ok_or_else(|| "the collector's name resolves to nothing".to_owned())?;
            let local = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
            let s = tokio::net::UdpSocket::bind(local).await.map_err(|e| format!("udp bind: {e}"))?;
            s.connect(target).await.map_err(|e| format!("udp connect: {e}"))?;
            *socket = Some(s);
        }
        let Some(s) = socket.as_ref() else { return Err("no socket".to_owned()) };
        s.send(datagram).await.map(|_| ()).map_err(|e| format!("udp send: {e}"))
    }

    async fn send_tcp(
        &self,
        stream: &mut Option<tokio::net::TcpStream>,
        addr: &str,
        frame: &[u8],
    ) -> Result<(), String> {
        let limit = self.settings.timeout;
        if stream.is_none() {
            let s = tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| "connect timed out".to_owned())?
                .map_err(|e| format!("cannot connect: {e}"))?;
            let _ = s.set_nodelay(true);
            *stream = Some(s);
        }
        let Some(s) = stream.as_mut() else { return Err("no connection".to_owned()) };
        // A collector that went away is only seen at the next write: check
        // first whether it closed the connection, so that this alert goes
        // to a fresh connection instead of into a dead one.
        if peer_closed(s) {
            return Err("the collector closed the connection".to_owned());
        }
        tokio::time::timeout(limit, s.write_all(frame))
            .await
            .map_err(|_| "write timed out".to_owned())?
            .map_err(|e| format!("write: {e}"))
    }
}

/// Whether the peer has closed (or reset) a connection we only write to.
fn peer_closed(stream: &tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 1];
    match stream.try_read(&mut buf) {
        Ok(0) => true,
        // A syslog collector sends nothing; data is ignored.
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

    use std::collections::BTreeMap;
    use std::sync::atomic::AtomicUsize;

    use caduceus_core::ManualClock;
    use caduceus_store::detect::AlertStatus;
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::alerts::{AlertState, Attack};

    const AT: Timestamp = Timestamp(1_767_225_600_123);
    const NASTY: &str = "quote\" back\\slash ]bracket |pipe =equals\nnew\rline \u{7} bell é ✓ x cs1=evil";

    fn view(n: u32) -> AlertView {
        AlertView {
            id: format!("0193a000-0000-7000-8000-00000000000{n}"),
            rule_id: "5b0b75dc-9190-4047-b9a8-14164cee8a31".into(),
            rule_title: format!("Suspicious PowerShell #{n}"),
            kind: "sigma".into(),
            severity_id: Severity::High,
            severity: "high".into(),
            status: AlertState::Open,
            entity: Some("WORKSTATION-7".into()),
            assignee: None,
            first_seen: AT.0 - 60_000,
            first_seen_time: Timestamp(AT.0 - 60_000).to_rfc3339(),
            last_seen: AT.0,
            last_seen_time: AT.to_rfc3339(),
            count: 3,
            score: Some(0.8766),
            explanation: "encoded command line".into(),
            context: vec![],
            tags: vec!["attack.t1059.001".into(), "attack.execution".into()],
            attack: Attack {
                techniques: vec!["T1059.001".into()],
                tactics: vec!["Execution".into()],
                groups: vec![],
                software: vec![],
            },
            patients: vec!["pat-1".into(), "pat-2".into()],
            events: vec![11, 12, 13],
            findings: vec![14],
            acknowledged: None,
            assigned: None,
            closed: None,
            suppressed: None,
            created: AT.0,
            updated: AT.0,
        }
    }

    fn nasty() -> AlertView {
        let mut v = view(9);
        v.rule_id = NASTY.into();
        v.rule_title = NASTY.into();
        v.entity = Some(NASTY.into());
        v.explanation = NASTY.into();
        v
    }

    fn origin() -> SyslogOrigin {
        SyslogOrigin { hostname: "caduceus-test".into(), procid: "4242".into() }
    }

    /// An RFC 5424 message taken apart: header fields, SD params (unescaped), MSG.
    #[derive(Debug)]
    struct Parsed {
        pri: u8,
        timestamp: String,
        hostname: String,
        app: String,
        procid: String,
        msgid: String,
        sd_id: Option<String>,
        params: BTreeMap<String, String>,
        msg: String,
    }

    fn parse_5424(text: &str) -> Parsed {
        let rest = text.strip_prefix('<').unwrap();
        let (pri, rest) = rest.split_once(">1 ").unwrap();
        let mut fields = rest.splitn(6, ' ');
        let timestamp = fields.next().unwrap().to_owned();
        let hostname = fields.next().unwrap().to_owned();
        let app = fields.next().unwrap().to_owned();
        let procid = fields.next().unwrap().to_owned();
        let msgid = fields.next().unwrap().to_owned();
        let rest = fields.next().unwrap();
        let mut params = BTreeMap::new();
        let (sd_id, msg) = if let Some(rest) = rest.strip_prefix('-') {
            (None, rest.strip_prefix(' ').unwrap_or(rest).to_owned())
        } else {
            let body = rest.strip_prefix('[').unwrap();
            let (id, mut body) = body.split_once(' ').unwrap();
            loop {
                if let Some(after) = body.strip_prefix(']') {
                    body = after;
                    break;
                }
                body = body.strip_prefix(' ').unwrap_or(body);
                let (name, after) = body.split_once("=\"").unwrap();
                let mut value = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    let (i, c) = chars.next().unwrap();
                    match c {
                        '\\' => {
                            let (_, next) = chars.next().unwrap();
                            assert!(matches!(next, '"' | '\\' | ']'), "only \" \\ ] are escaped");
                            value.push(next);
                        }
                        '"' => break i,
                        ']' => panic!("an unescaped ] inside a value"),
                        c => value.push(c),
                    }
                };
                params.insert(name.to_owned(), value);
                body = &after[end + 1..];
            }
            (Some(id.to_owned()), body.strip_prefix(' ').unwrap().to_owned())
        };
        Parsed { pri: pri.parse().unwrap(), timestamp, hostname, app, procid, msgid, sd_id, params, msg }
    }

    /// A CEF record taken apart: seven header fields (unescaped) and the extension.
    fn parse_cef(text: &str) -> (Vec<String>, BTreeMap<String, String>) {
        let mut header = Vec::new();
        let mut field = String::new();
        let mut chars = text.chars();
        while header.len() < 7 {
            match chars.next().unwrap() {
                '\\' => field.push(chars.next().unwrap()),
                '|' => header.push(std::mem::take(&mut field)),
                c => {
                    assert!(!c.is_control(), "no control characters in a CEF header");
                    field.push(c);
                }
            }
        }
        let extension: String = chars.collect();
        // Keys are the `word=` preceded by a space (or the start) where `=` is unescaped.
        let mut map = BTreeMap::new();
        let mut key: Option<String> = None;
        let mut value = String::new();
        let mut word = String::new();
        let mut it = extension.chars().peekable();
        while let Some(c) = it.next() {
            match c {
                '\\' => {
                    let next = it.next().unwrap();
                    let unescaped = match next {
                        'n' => '\n',
                        'r' => '\r',
                        '\\' | '=' => next,
                        other => panic!("unknown escape \\{other}"),
                    };
                    value.push_str(&word);
                    word.clear();
                    value.push(unescaped);
                }
                '=' => {
                    // `word` is the next key; what came before it was the value.
                    if let Some(k) = key.take() {
                        map.insert(k, value.strip_suffix(' ').unwrap().to_owned());
                    } else {
                        assert!(value.is_empty());
                    }
                    value.clear();
                    key = Some(std::mem::take(&mut word));
                }
                ' ' => {
                    value.push_str(&word);
                    word.clear();
                    value.push(' ');
                }
                c => word.push(c),
            }
        }
        value.push_str(&word);
        if let Some(k) = key {
            map.insert(k, value);
        }
        (header, map)
    }

    #[test]
    fn rfc5424_messages_carry_the_alert_in_structured_data() {
        let text = rfc5424(&view(1), &origin(), AT);
        assert!(
            text.starts_with("<83>1 2026-01-01T00:00:00.123Z caduceus-test caduceus 4242 alert [caduceus@32473 id="),
            "{text}"
        );
        let p = parse_5424(&text);
        assert_eq!(p.pri, 10 * 8 + 3, "authpriv, error (an OCSF high)");
        assert_eq!(
            (p.timestamp.as_str(), p.hostname.as_str(), p.app.as_str()),
            ("2026-01-01T00:00:00.123Z", "caduceus-test", "caduceus")
        );
        assert_eq!((p.procid.as_str(), p.msgid.as_str(), p.sd_id.as_deref()), ("4242", "alert", Some(SD_ID)));
        assert_eq!(p.params["rule"], "5b0b75dc-9190-4047-b9a8-14164cee8a31");
        assert_eq!(p.params["severity"], "high");
        assert_eq!(p.params["entity"], "WORKSTATION-7");
        assert_eq!(p.params["count"], "3");
        assert_eq!(p.params["score"], "0.877");
        assert_eq!(p.params["attack"], "T1059.001");
        assert_eq!(p.params["first"], "2025-12-31T23:59:00.123Z");
        assert_eq!(p.msg, "\u{feff}Suspicious PowerShell #1: encoded command line");
        // Every severity maps to a syslog severity.
        let sev = |s| syslog_severity(s);
        assert_eq!(
            [sev(Severity::Critical), sev(Severity::Medium), sev(Severity::Low), sev(Severity::Informational)],
            [2, 4, 5, 6]
        );
    }

    #[test]
    fn structured_data_escapes_quotes_backslashes_and_brackets() {
        assert_eq!(escape_sd_value(r#"a"b\c]d[e"#), r#"a\"b\\c\]d[e"#);
        let text = rfc5424(&nasty(), &origin(), AT);
        let p = parse_5424(&text);
        assert_eq!(p.params["rule"], NASTY, "values come back exactly");
        assert_eq!(p.params["entity"], NASTY);
        assert!(!p.msg.contains(['\n', '\r', '\u{7}']), "MSG is one line: {:?}", p.msg);
        assert!(p.msg.contains("é ✓ x cs1=evil"));
    }

    #[test]
    fn cef_records_escape_headers_and_extensions() {
        assert_eq!(escape_cef_header("a|b\\c=d\ne"), "a\\|b\\\\c=d e");
        assert_eq!(escape_cef_value("a|b\\c=d\ne\rf"), "a|b\\\\c\\=d\\ne\\rf");
        let text = cef(&view(1));
        assert!(
            text.starts_with(&format!(
                "CEF:0|Caduceus|Caduceus|{}|5b0b75dc-9190-4047-b9a8-14164cee8a31|Suspicious PowerShell #1|8|rt=1767225600123 ",
                caduceus_core::VERSION
            )),
            "{text}"
        );
        let (header, ext) = parse_cef(&text);
        assert_eq!(header[6], "8");
        assert_eq!(ext["cs1"], "WORKSTATION-7");
        assert_eq!(ext["cs3"], "T1059.001");
        assert_eq!(ext["cn1"], "2", "patients are counted, not listed");
        assert_eq!(ext["cfp1"], "0.877");
        assert_eq!(ext["cnt"], "3");

        let (header, ext) = parse_cef(&cef(&nasty()));
        assert_eq!(header.len(), 7);
        assert_eq!(header[4], NASTY.replace(['\n', '\r', '\u{7}'], " "), "a header loses only its line breaks");
        assert_eq!(header[5], header[4]);
        assert_eq!(ext["cs1"], NASTY.replace('\u{7}', " "), "an extension keeps its line breaks");
        assert_eq!(ext["msg"], ext["cs1"]);
        assert!(
            !ext.contains_key("evil") && ext.get("cs1Label").map(String::as_str) == Some("entity"),
            "no injected key"
        );
        let severities = [
            Severity::Unknown,
            Severity::Informational,
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ];
        assert_eq!(severities.map(cef_severity), [0, 1, 3, 5, 8, 10]);
    }

    #[test]
    fn oversized_messages_are_rebuilt_compact() {
        let mut big = view(1);
        big.explanation = "ü".repeat(5000);
        let full = syslog_message(&big, SyslogFormat::Rfc5424, &origin(), AT, 1 << 20);
        assert!(full.len() > MAX_UDP_MESSAGE);
        let small = syslog_message(&big, SyslogFormat::Rfc5424, &origin(), AT, MAX_UDP_MESSAGE);
        assert!(small.len() <= MAX_UDP_MESSAGE);
        let p = parse_5424(&small);
        assert_eq!(p.params["rule"], big.rule_id, "the alert's identity survives");
        assert_eq!(p.msg.chars().filter(|c| *c == 'ü').count(), 200, "the explanation is shortened");
        let cef_small = syslog_message(&big, SyslogFormat::Cef, &origin(), AT, MAX_UDP_MESSAGE);
        assert!(cef_small.len() <= MAX_UDP_MESSAGE && cef_small.contains("CEF:0|"));
        let tiny = syslog_message(&big, SyslogFormat::Rfc5424, &origin(), AT, 101);
        assert!(tiny.len() <= 101);
        assert_eq!(octet_counted("héllo"), b"6 h\xc3\xa9llo".to_vec());
    }

    #[test]
    fn syslog_urls_are_checked() {
        assert_eq!(parse_syslog_url("udp://127.0.0.1:514").unwrap(), SyslogTarget::Udp("127.0.0.1:514".into()));
        assert_eq!(parse_syslog_url("tcp://[::1]:6514/").unwrap(), SyslogTarget::Tcp("[::1]:6514".into()));
        assert_eq!(parse_syslog_url("tcp://siem.example:601").unwrap(), SyslogTarget::Tcp("siem.example:601".into()));
        for bad in [
            "udp://host",
            "udp://host:0",
            "udp://host:99999",
            "http://host:514",
            "udp://h:514/x",
            "udp://u:p@h:514",
            "tcp://[::1]",
            "",
        ] {
            assert!(parse_syslog_url(bad).is_err(), "{bad}");
        }
        let err = parse_syslog_url("udp://user:secret@h:514").unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
    }

    fn config(webhook: Option<String>, syslog: Option<String>, format: &str) -> DetectConfig {
        DetectConfig {
            webhook_url: webhook,
            syslog_url: syslog,
            syslog_format: format.into(),
            ..DetectConfig::default()
        }
    }

    fn fast() -> OutputSettings {
        OutputSettings {
            queue: 64,
            timeout: Duration::from_secs(2),
            attempts: 3,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
        }
    }

    fn clock() -> Arc<dyn Clock> {
        Arc::new(ManualClock::new(AT))
    }

    async fn wait_for(outputs: &Outputs, what: impl Fn(&OutputStats) -> bool) -> OutputStats {
        for _ in 0..500 {
            if let Some(s) = outputs.stats().into_iter().find(|s| what(s)) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("outputs never reached the expected state: {:?}", outputs.stats());
    }

    #[tokio::test]
    async fn syslog_over_udp_reaches_a_real_socket() {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let url = format!("udp://{}", socket.local_addr().unwrap());
        let outputs = Outputs::start_with(&config(None, Some(url), "rfc5424"), clock(), fast(), origin()).unwrap();
        for n in 1..=3 {
            outputs.send_view(Arc::new(view(n)));
        }
        outputs.send_view(Arc::new(nasty()));
        let mut buf = vec![0u8; 65536];
        for n in 1..=3 {
            let len = socket.recv(&mut buf).await.unwrap();
            let p = parse_5424(std::str::from_utf8(&buf[..len]).unwrap());
            assert_eq!(p.params["id"], view(n).id);
            assert_eq!(p.timestamp, "2026-01-01T00:00:00.123Z");
        }
        let len = socket.recv(&mut buf).await.unwrap();
        assert_eq!(parse_5424(std::str::from_utf8(&buf[..len]).unwrap()).params["entity"], NASTY);
        let stats = wait_for(&outputs, |s| s.sent == 4).await;
        assert_eq!((stats.output, stats.failed, stats.dropped), ("syslog", 0, 0));
        outputs.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn cef_over_udp() {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let url = format!("udp://{}", socket.local_addr().unwrap());
        let outputs = Outputs::start_with(&config(None, Some(url), "cef"), clock(), fast(), origin()).unwrap();
        let mut row_view = view(1);
        row_view.status = AlertState::Suppressed;
        outputs.send_view(Arc::new(row_view));
        let mut buf = vec![0u8; 65536];
        let len = socket.recv(&mut buf).await.unwrap();
        let p = parse_5424(std::str::from_utf8(&buf[..len]).unwrap());
        assert_eq!(p.sd_id, None, "nil structured data");
        let (header, ext) = parse_cef(&p.msg);
        assert_eq!(
            (header[0].as_str(), header[1].as_str(), header[4].as_str()),
            ("CEF:0", "Caduceus", "5b0b75dc-9190-4047-b9a8-14164cee8a31")
        );
        assert_eq!(ext["cs2"], "suppressed");
        outputs.shutdown(Duration::from_secs(1)).await;
    }

    /// Read octet-counted frames from a connection until it closes.
    async fn read_frames(stream: &mut tokio::net::TcpStream, want: usize) -> Vec<String> {
        let mut data = Vec::new();
        let mut frames = Vec::new();
        let mut buf = [0u8; 4096];
        while frames.len() < want {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed after {} frames", frames.len());
            data.extend_from_slice(&buf[..n]);
            while let Some(space) = data.iter().position(|b| *b == b' ') {
                let len: usize = std::str::from_utf8(&data[..space]).unwrap().parse().unwrap();
                if data.len() < space + 1 + len {
                    break;
                }
                frames.push(String::from_utf8(data[space + 1..space + 1 + len].to_vec()).unwrap());
                data.drain(..space + 1 + len);
            }
        }
        frames
    }

    #[tokio::test]
    async fn syslog_over_tcp_uses_octet_counting_and_reconnects() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("tcp://{}", listener.local_addr().unwrap());
        let outputs = Outputs::start_with(&config(None, Some(url), "rfc5424"), clock(), fast(), origin()).unwrap();
        outputs.send_view(Arc::new(nasty()));
        outputs.send_view(Arc::new(view(1)));
        let (mut first, _) = listener.accept().await.unwrap();
        let frames = read_frames(&mut first, 2).await;
        assert_eq!(parse_5424(&frames[0]).params["rule"], NASTY, "a frame may hold line breaks and all");
        assert_eq!(parse_5424(&frames[1]).params["id"], view(1).id);
        wait_for(&outputs, |s| s.sent == 2).await;
        // The collector restarts: the next alert goes over a new connection.
        drop(first);
        tokio::time::sleep(Duration::from_millis(50)).await;
        outputs.send_view(Arc::new(view(2)));
        let (mut second, _) = listener.accept().await.unwrap();
        let frames = read_frames(&mut second, 1).await;
        assert_eq!(parse_5424(&frames[0]).params["id"], view(2).id);
        let stats = wait_for(&outputs, |s| s.sent == 3).await;
        assert_eq!((stats.failed, stats.dropped), (0, 0));
        outputs.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn syslog_to_nobody_fails_after_bounded_retries() {
        // A port nobody listens on (bound, then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("tcp://127.0.0.1:{port}");
        let outputs = Outputs::start_with(&config(None, Some(url), "rfc5424"), clock(), fast(), origin()).unwrap();
        outputs.send_view(Arc::new(view(1)));
        let stats = wait_for(&outputs, |s| s.failed == 1).await;
        assert_eq!(stats.sent, 0);
        outputs.shutdown(Duration::from_secs(1)).await;
    }

    /// A webhook receiver: answers each request with the next status of
    /// `script` (then 200), or never, and keeps the bodies.
    async fn receiver(script: Vec<u16>, hang: bool) -> (String, Arc<Mutex<Vec<serde_json::Value>>>, Arc<AtomicUsize>) {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let hits = Arc::new(AtomicUsize::new(0));
        let (b, h) = (bodies.clone(), hits.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (b, h, script) = (b.clone(), h.clone(), script.clone());
                async move {
                    let n = h.fetch_add(1, Ordering::SeqCst);
                    assert_eq!(headers["content-type"], "application/json");
                    if hang {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    let status = script.get(n).copied().unwrap_or(200);
                    if status == 200 {
                        b.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
                    }
                    axum::http::StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, bodies, hits)
    }

    #[tokio::test]
    async fn webhook_posts_the_alert_json_and_retries_server_errors() {
        let (url, bodies, hits) = receiver(vec![503, 500], false).await;
        let outputs = Outputs::start_with(&config(Some(url), None, "rfc5424"), clock(), fast(), origin()).unwrap();
        let row = AlertRow {
            id: "a-1".into(),
            rule_id: "r1".into(),
            rule_title: NASTY.into(),
            kind: "ehr".into(),
            severity: Severity::Critical,
            entity: Some("u-17".into()),
            group_key: "k".into(),
            status: AlertStatus::Open,
            assignee: None,
            first_seen: AT,
            last_seen: AT,
            count: 1,
            score: Some(0.97),
            explanation: "same surname as the user; no encounter, care team or order explains it".into(),
            context: vec!["no encounter".into()],
            tags: vec![],
            patients: vec!["pat-9".into()],
            events: vec![5],
            findings: vec![6],
            created: AT,
            updated: AT,
            acknowledged: None,
            assigned: None,
            closed: None,
            close_reason: None,
            suppressed: None,
        };
        outputs.send(&row);
        let stats = wait_for(&outputs, |s| s.sent == 1).await;
        assert_eq!((stats.output, stats.failed, stats.dropped), ("webhook", 0, 0));
        assert_eq!(hits.load(Ordering::SeqCst), 3, "two retries after 503 and 500");
        let got: AlertView = serde_json::from_value(bodies.lock().unwrap()[0].clone()).unwrap();
        assert_eq!(got, AlertView::from(&row));
        outputs.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn webhook_gives_up_on_client_errors_and_after_the_last_retry() {
        let (url, _, hits) = receiver(vec![400, 503, 503, 503], false).await;
        let outputs = Outputs::start_with(&config(Some(url), None, "rfc5424"), clock(), fast(), origin()).unwrap();
        outputs.send_view(Arc::new(view(1)));
        wait_for(&outputs, |s| s.failed == 1).await;
        assert_eq!(hits.load(Ordering::SeqCst), 1, "a 400 is not retried");
        outputs.send_view(Arc::new(view(2)));
        let stats = wait_for(&outputs, |s| s.failed == 2).await;
        assert_eq!((hits.load(Ordering::SeqCst), stats.sent), (4, 0), "three tries, then given up");
        outputs.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_stuck_webhook_never_blocks_and_drops_are_counted() {
        let (url, _, hits) = receiver(vec![], true).await;
        let settings = OutputSettings { queue: 2, timeout: Duration::from_secs(30), ..fast() };
        let outputs = Outputs::start_with(&config(Some(url), None, "rfc5424"), clock(), settings, origin()).unwrap();
        let started = Instant::now();
        for n in 0..20 {
            outputs.send_view(Arc::new(view(n)));
        }
        assert!(started.elapsed() < Duration::from_millis(500), "send never waits");
        // One in flight, two queued: at least seventeen dropped.
        let stats = outputs.stats()[0];
        assert!(stats.dropped >= 17, "{stats:?}");
        assert_eq!(stats.sent + stats.failed, 0);
        assert!(hits.load(Ordering::SeqCst) <= 1);
        // Shutdown is bounded even so; afterwards, sends are dropped (counted).
        outputs.shutdown(Duration::from_millis(100)).await;
        outputs.send_view(Arc::new(view(99)));
        assert_eq!(outputs.stats()[0].dropped, stats.dropped + 1);
    }

    #[test]
    fn webhook_urls_must_be_https_or_loopback() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _guard = runtime.enter();
        for bad in ["http://siem.example/hook", "http://127.0.0.1.evil.example/x", "ftp://x"] {
            let err = Outputs::start(&config(Some(bad.into()), None, "rfc5424"), clock()).unwrap_err();
            assert!(matches!(err, OutputError::InvalidUrl { key: "webhook_url", .. }), "{bad}");
        }
        for good in ["https://siem.example/hook", "http://127.0.0.1:8080/x", "http://localhost/x"] {
            assert!(Outputs::start(&config(Some(good.into()), None, "rfc5424"), clock()).is_ok(), "{good}");
        }
        let none = Outputs::start(&DetectConfig::default(), clock()).unwrap();
        assert!(none.is_empty() && none.stats().is_empty());
        none.send_view(Arc::new(view(1)));
    }
}
