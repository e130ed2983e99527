//! The identity benchmark (issue 4): argon2id with the production
//! parameters, whole sign-ins through `IdentityService` on SQLite, and
//! validation of cached session secrets and API keys, against the issue's
//! targets (50 password logins a second per core, 200,000 token validations
//! a second). It drives the public service API only and changes nothing in
//! identity; audit events go to a sink that counts them (the spine and the
//! ledger behind the real sink are measured by `ledger`).
//!
//! Sections:
//!
//! - `argon2`: `password::hash` and `password::verify` in a loop on 1 and 2
//!   OS threads, each for a fixed time.
//! - `logins`: `password+totp` is `login_password` → `MfaRequired` →
//!   `login_second_factor` with the current TOTP code, computed from the
//!   enrolment's base32 secret as an authenticator app would; each
//!   concurrent task (its own client address) loops for a fixed time on a
//!   multi-thread runtime. A TOTP code is accepted once per account and
//!   time step, so the service runs on a `ManualClock`: tasks take accounts
//!   from a rotation, and when every account has signed in during the
//!   current step the clock moves on one step (30 s). `password` signs in
//!   accounts without a second factor on a second service over the same
//!   store, on the system clock. Latency is one whole sign-in.
//! - `tokens`: `authenticate_session` on bearer secrets from the `password`
//!   logins (cached, as on the request path) and `authenticate_key` on
//!   issued API keys, in a tight async loop on a current-thread runtime per
//!   OS thread, each thread cycling through the secrets from its own
//!   offset; on the system clock, so cache re-checks and `last_seen`
//!   writes happen as in the server.
//!
//! Rates are wall-clock. Each point also records the CPU time the whole
//! process used (`/proc/self/stat`: every thread, the store's included),
//! so `cpu_ms` per operation, and the rate one fully available core would
//! sustain (`per_cpu_s`), stay meaningful when other work shares the
//! machine; the load average before and after the run is in the report.

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use async_trait::async_trait;
use caduceus_core::config::Config;
use caduceus_core::{Actor, Clock, ManualClock, Redacted, SystemClock};
use caduceus_identity::otp::{Algorithm, Totp};
use caduceus_identity::password::{self, ARGON2_LANES, ARGON2_MEMORY_KIB, ARGON2_PASSES};
use caduceus_identity::roles::{Permission, Role};
use caduceus_identity::service::{
    AuditEvent, AuditSink, IdentityService, IdentitySettings, LoginStep, NewUser, SecondFactor, SessionKind,
};
use caduceus_store::Store;
use serde_json::json;
use tempfile::TempDir;

use crate::util;

/// The issue's targets.
pub const TARGET_LOGINS_PER_CORE: f64 = 50.0;
pub const TARGET_VALIDATIONS_PER_S: f64 = 200_000.0;

/// The password the argon2 section hashes (the logins use generated ones).
const ARGON2_INPUT: &str = "correct horse battery staple";
/// Most session secrets kept from the `password` logins for `tokens`.
const MAX_SESSIONS: usize = 1024;
/// Validations between two looks at the clock in `tokens`.
const BATCH: usize = 1024;
/// TOTP step of the accounts enrolled here (what `Totp::generate` makes,
/// checked against the enrolment URI).
const TOTP_PERIOD_S: u64 = 30;

/// Sizes and durations of one run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub quick: bool,
    /// Each argon2 and token point.
    pub cpu_point: Duration,
    /// Each login point.
    pub login_point: Duration,
    pub argon2_threads: Vec<usize>,
    pub login_concurrency: Vec<usize>,
    pub token_threads: Vec<usize>,
    /// Accounts with a confirmed TOTP, and accounts with a password only.
    pub mfa_users: usize,
    pub password_users: usize,
    pub api_keys: usize,
}

impl Plan {
    pub fn new(quick: bool) -> Self {
        Self {
            quick,
            cpu_point: if quick { Duration::from_millis(300) } else { Duration::from_secs(3) },
            login_point: if quick { Duration::from_millis(500) } else { Duration::from_secs(5) },
            argon2_threads: vec![1, 2],
            login_concurrency: if quick { vec![2, 4] } else { vec![1, 2, 4] },
            token_threads: vec![1, 2],
            mfa_users: if quick { 24 } else { 200 },
            password_users: if quick { 8 } else { 64 },
            api_keys: 16,
        }
    }

    /// The smallest run that still goes through every step, for the test
    /// below (a debug build hashes slowly): no argon2 section, two
    /// accounts of each kind, one point each.
    #[cfg(test)]
    fn smoke() -> Self {
        Self {
            quick: true,
            cpu_point: Duration::from_millis(1),
            login_point: Duration::from_millis(1),
            argon2_threads: Vec::new(),
            login_concurrency: vec![2],
            token_threads: vec![2],
            mfa_users: 2,
            password_users: 2,
            api_keys: 2,
        }
    }
}

/// An audit sink that only counts.
#[derive(Debug, Default)]
struct CountingAudit {
    events: AtomicU64,
}

#[async_trait]
impl AuditSink for CountingAudit {
    async fn audit(&self, event: AuditEvent) -> Result<(), String> {
        black_box(event);
        self.events.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// An account the benchmark signs in as.
struct Account {
    username: String,
    password: Redacted<String>,
    /// The authenticator, for accounts with a second factor.
    totp: Option<Totp>,
}

/// Hands out accounts so that none signs in twice in one TOTP step: when
/// every account has been used in this step, the clock moves to the next.
/// An account still in flight when the clock moves finishes with the code
/// of the step before, which the ±1 step window accepts once.
struct Rotation {
    clock: ManualClock,
    period_ms: i64,
    /// Accounts free in this step, and accounts already used in it.
    state: Mutex<(VecDeque<usize>, Vec<usize>)>,
    advances: AtomicU64,
}

impl Rotation {
    /// All accounts start as used: enrolment spent the current step.
    fn new(clock: ManualClock, period: Duration, accounts: usize) -> Self {
        let period_ms = i64::try_from(period.as_millis()).unwrap_or(i64::MAX);
        Self {
            clock,
            period_ms,
            state: Mutex::new((VecDeque::new(), (0..accounts).collect())),
            advances: AtomicU64::new(0),
        }
    }

    /// The next account, or `None` while every account is in flight.
    fn take(&self) -> Option<usize> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (free, used) = &mut *state;
        if free.is_empty() && !used.is_empty() {
            self.clock.advance_millis(self.period_ms);
            self.advances.fetch_add(1, Ordering::Relaxed);
            free.extend(used.drain(..));
        }
        free.pop_front()
    }

    fn give_back(&self, account: usize) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).1.push(account);
    }
}

/// The store, the two services and the accounts.
struct Fixture {
    dir: TempDir,
    store: Arc<dyn Store>,
    audit: Arc<CountingAudit>,
    clock: ManualClock,
    /// On the manual clock: accounts with TOTP.
    mfa: Arc<IdentityService>,
    /// On the system clock: accounts with a password only, and API keys.
    live: Arc<IdentityService>,
    mfa_accounts: Vec<Account>,
    password_accounts: Vec<Account>,
    rotation: Rotation,
    /// Round-robin over `password_accounts`.
    next_password: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoginKind {
    PasswordTotp,
    Password,
}

impl LoginKind {
    fn name(self) -> &'static str {
        match self {
            Self::PasswordTotp => "password+totp",
            Self::Password => "password",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenKind {
    Session,
    ApiKey,
}

impl TokenKind {
    fn name(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::ApiKey => "api_key",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Argon2Point {
    pub threads: usize,
    pub hashes_per_s: f64,
    pub verifies_per_s: f64,
    /// CPU milliseconds per hash and per verification.
    pub hash_cpu_ms: Option<f64>,
    pub verify_cpu_ms: Option<f64>,
}

impl Argon2Point {
    /// Wall milliseconds of one verification on one thread.
    pub fn verify_ms(&self) -> f64 {
        self.threads as f64 * 1000.0 / self.verifies_per_s.max(f64::MIN_POSITIVE)
    }
}

#[derive(Debug, Clone)]
pub struct LoginPoint {
    pub kind: &'static str,
    pub concurrency: usize,
    pub logins: u64,
    pub per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    /// CPU milliseconds per sign-in, over the whole process.
    pub cpu_ms: Option<f64>,
}

impl LoginPoint {
    /// Sign-ins one fully available core would sustain.
    pub fn per_cpu_s(&self) -> Option<f64> {
        self.cpu_ms.map(|ms| 1000.0 / ms.max(f64::MIN_POSITIVE))
    }
}

#[derive(Debug, Clone)]
pub struct TokenPoint {
    pub kind: &'static str,
    pub threads: usize,
    pub validations: u64,
    pub per_s: f64,
    /// CPU nanoseconds per validation.
    pub cpu_ns: Option<f64>,
}

impl TokenPoint {
    /// Wall nanoseconds of one validation on one thread.
    pub fn ns(&self) -> f64 {
        self.threads as f64 * 1e9 / self.per_s.max(f64::MIN_POSITIVE)
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub quick: bool,
    pub cores: usize,
    pub argon2: Vec<Argon2Point>,
    pub mfa_users: usize,
    pub password_users: usize,
    pub logins: Vec<LoginPoint>,
    pub totp_steps_advanced: u64,
    pub sessions: usize,
    pub api_keys: usize,
    pub tokens: Vec<TokenPoint>,
    pub audit_events: u64,
    pub setup_s: f64,
    pub total_s: f64,
    /// One-minute load average before and after the run.
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
}

impl Report {
    fn best_login(&self, kind: LoginKind) -> f64 {
        self.logins.iter().filter(|p| p.kind == kind.name()).map(|p| p.per_s).fold(0.0, f64::max)
    }

    fn best_tokens(&self, kind: TokenKind) -> f64 {
        self.tokens.iter().filter(|p| p.kind == kind.name()).map(|p| p.per_s).fold(0.0, f64::max)
    }

    /// The best whole-sign-in rate (password and TOTP) per core.
    pub fn logins_per_core(&self) -> f64 {
        self.best_login(LoginKind::PasswordTotp) / self.cores.max(1) as f64
    }

    /// Whole sign-ins (password and TOTP) per CPU-second, from the point
    /// with the most concurrency (where the cores were busiest).
    pub fn logins_per_cpu_s(&self) -> Option<f64> {
        self.logins
            .iter()
            .filter(|p| p.kind == LoginKind::PasswordTotp.name())
            .max_by_key(|p| p.concurrency)
            .and_then(LoginPoint::per_cpu_s)
    }

    pub fn to_json(&self) -> serde_json::Value {
        let by =
            |kind: &str, f: &dyn Fn(&LoginPoint) -> serde_json::Value| -> serde_json::Map<String, serde_json::Value> {
                self.logins.iter().filter(|p| p.kind == kind).map(|p| (p.concurrency.to_string(), f(p))).collect()
            };
        let login = |p: &LoginPoint| {
            json!({
                "per_s": util::round(p.per_s, 1),
                "per_core": util::round(p.per_s / self.cores.max(1) as f64, 1),
                "p50_ms": util::round(p.p50_ms, 2),
                "p99_ms": util::round(p.p99_ms, 2),
                "mean_ms": util::round(p.mean_ms, 2),
                "cpu_ms": p.cpu_ms.map(|v| util::round(v, 2)),
                "per_cpu_s": p.per_cpu_s().map(|v| util::round(v, 1)),
                "logins": p.logins,
            })
        };
        let tokens = |kind: &str| -> serde_json::Map<String, serde_json::Value> {
            self.tokens
                .iter()
                .filter(|p| p.kind == kind)
                .map(|p| {
                    let figures = json!({
                        "per_s": util::round(p.per_s, 0),
                        "ns_per_validation": util::round(p.ns(), 1),
                        "cpu_ns": p.cpu_ns.map(|v| util::round(v, 1)),
                        "validations": p.validations,
                    });
                    (p.threads.to_string(), figures)
                })
                .collect()
        };
        let logins_per_core = self.logins_per_core();
        let logins_per_cpu_s = self.logins_per_cpu_s();
        let validations = self.best_tokens(TokenKind::Session);
        let by_threads = |f: &dyn Fn(&Argon2Point) -> serde_json::Value| -> serde_json::Map<String, serde_json::Value> {
            self.argon2.iter().map(|p| (p.threads.to_string(), f(p))).collect()
        };
        json!({
            "benchmark": "identity",
            "quick": self.quick,
            "machine": {
                "cores": self.cores,
                "os": std::env::consts::OS,
                "arch": std::env::consts::ARCH,
                "load_before": self.load_before,
                "load_after": self.load_after,
            },
            "argon2": {
                "algorithm": "argon2id",
                "memory_kib": ARGON2_MEMORY_KIB,
                "passes": ARGON2_PASSES,
                "lanes": ARGON2_LANES,
                "hashes_per_s": by_threads(&|p| json!(util::round(p.hashes_per_s, 1))),
                "verifies_per_s": by_threads(&|p| json!(util::round(p.verifies_per_s, 1))),
                "verify_ms": by_threads(&|p| json!(util::round(p.verify_ms(), 2))),
                "hash_cpu_ms": by_threads(&|p| json!(p.hash_cpu_ms.map(|v| util::round(v, 2)))),
                "verify_cpu_ms": by_threads(&|p| json!(p.verify_cpu_ms.map(|v| util::round(v, 2)))),
            },
            "logins": {
                "store": "sqlite",
                "mfa_users": self.mfa_users,
                "password_users": self.password_users,
                "totp_steps_advanced": self.totp_steps_advanced,
                "password_totp": by(LoginKind::PasswordTotp.name(), &login),
                "password": by(LoginKind::Password.name(), &login),
            },
            "tokens": {
                "sessions": self.sessions,
                "api_keys": self.api_keys,
                "session": tokens(TokenKind::Session.name()),
                "api_key": tokens(TokenKind::ApiKey.name()),
            },
            "targets": {
                "logins_per_s_per_core": {
                    "target": TARGET_LOGINS_PER_CORE,
                    "measured": util::round(logins_per_core, 1),
                    "met": logins_per_core >= TARGET_LOGINS_PER_CORE,
                    "per_cpu_s": logins_per_cpu_s.map(|v| util::round(v, 1)),
                    "met_per_cpu_s": logins_per_cpu_s.map(|v| v >= TARGET_LOGINS_PER_CORE),
                },
                "session_validations_per_s": {
                    "target": TARGET_VALIDATIONS_PER_S,
                    "measured": util::round(validations, 0),
                    "met": validations >= TARGET_VALIDATIONS_PER_S,
                },
            },
            "audit_events": self.audit_events,
            "setup_s": util::round(self.setup_s, 1),
            "total_s": util::round(self.total_s, 1),
        })
    }

    /// The compact table printed without `--json`.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let cores = self.cores.max(1) as f64;
        let load = |l: Option<f64>| l.map_or_else(|| "?".to_owned(), |l| format!("{l:.2}"));
        let cpu = |v: Option<f64>, decimals: usize| v.map_or_else(|| "?".to_owned(), |v| format!("{v:.decimals$}"));
        let _ = writeln!(
            out,
            "identity benchmark ({}), {} cores, {} {}, load average {} before, {} after",
            if self.quick { "quick" } else { "full" },
            self.cores,
            std::env::consts::OS,
            std::env::consts::ARCH,
            load(self.load_before),
            load(self.load_after)
        );
        let _ = writeln!(out, "\nargon2id m={ARGON2_MEMORY_KIB} KiB t={ARGON2_PASSES} p={ARGON2_LANES}");
        let _ = writeln!(
            out,
            "  {:>7}  {:>8}  {:>10}  {:>9}  {:>11}  {:>13}",
            "threads", "hashes/s", "verifies/s", "ms/verify", "cpu ms/hash", "cpu ms/verify"
        );
        for p in &self.argon2 {
            let _ = writeln!(
                out,
                "  {:>7}  {:>8.1}  {:>10.1}  {:>9.2}  {:>11}  {:>13}",
                p.threads,
                p.hashes_per_s,
                p.verifies_per_s,
                p.verify_ms(),
                cpu(p.hash_cpu_ms, 2),
                cpu(p.verify_cpu_ms, 2)
            );
        }
        let _ = writeln!(
            out,
            "\nlogins (SQLite; {} accounts with TOTP, {} with a password only)",
            self.mfa_users, self.password_users
        );
        let _ = writeln!(
            out,
            "  {:<13}  {:>10}  {:>8}  {:>8}  {:>7}  {:>7}  {:>10}  {:>9}",
            "kind", "concurrent", "logins/s", "per core", "p50 ms", "p99 ms", "cpu ms/op", "per cpu-s"
        );
        for p in &self.logins {
            let _ = writeln!(
                out,
                "  {:<13}  {:>10}  {:>8.1}  {:>8.1}  {:>7.1}  {:>7.1}  {:>10}  {:>9}",
                p.kind,
                p.concurrency,
                p.per_s,
                p.per_s / cores,
                p.p50_ms,
                p.p99_ms,
                cpu(p.cpu_ms, 2),
                cpu(p.per_cpu_s(), 1)
            );
        }
        let _ = writeln!(out, "\ntoken validations (cached; {} sessions, {} API keys)", self.sessions, self.api_keys);
        let _ = writeln!(
            out,
            "  {:<8}  {:>7}  {:>13}  {:>13}  {:>9}",
            "kind", "threads", "validations/s", "ns/validation", "cpu ns/op"
        );
        for p in &self.tokens {
            let _ = writeln!(
                out,
                "  {:<8}  {:>7}  {:>13.0}  {:>13.1}  {:>9}",
                p.kind,
                p.threads,
                p.per_s,
                p.ns(),
                cpu(p.cpu_ns, 1)
            );
        }
        let logins_per_core = self.logins_per_core();
        let validations = self.best_tokens(TokenKind::Session);
        let verdict = |met: bool| if met { "met" } else { "MISSED" };
        let _ = writeln!(out, "\ntargets");
        let _ = writeln!(
            out,
            "  password+totp logins/s per core >= {TARGET_LOGINS_PER_CORE:.0}: {logins_per_core:.1} ({}); per cpu-second: {}{}",
            verdict(logins_per_core >= TARGET_LOGINS_PER_CORE),
            cpu(self.logins_per_cpu_s(), 1),
            self.logins_per_cpu_s().map_or("", |v| if v >= TARGET_LOGINS_PER_CORE { " (met)" } else { " (MISSED)" })
        );
        let _ = writeln!(
            out,
            "  session validations/s >= {TARGET_VALIDATIONS_PER_S:.0}: {validations:.0} ({})",
            verdict(validations >= TARGET_VALIDATIONS_PER_S)
        );
        let _ = writeln!(
            out,
            "\n{} audit events counted; setup {:.1} s, total {:.1} s",
            self.audit_events, self.setup_s, self.total_s
        );
        out
    }
}

/// Run every section.
pub fn run(plan: &Plan) -> anyhow::Result<Report> {
    let started = Instant::now();
    let load_before = util::load_average();
    let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    util::progress(format!(
        "identity benchmark ({}), {cores} cores, load average {}",
        if plan.quick { "quick" } else { "full" },
        load_before.map_or_else(|| "?".to_owned(), |l| format!("{l:.2}"))
    ));

    let argon2 = argon2_points(plan)?;

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let setup_started = Instant::now();
    let fixture = Arc::new(runtime.block_on(setup(plan))?);
    let setup_s = setup_started.elapsed().as_secs_f64();
    util::progress(format!(
        "setup: {} accounts with TOTP, {} with a password only, in {setup_s:.1} s",
        fixture.mfa_accounts.len(),
        fixture.password_accounts.len()
    ));

    let mut logins = Vec::new();
    let mut sessions = Vec::new();
    for kind in [LoginKind::PasswordTotp, LoginKind::Password] {
        // Untimed: warms the store's connections and page cache.
        runtime.block_on(login_point(&fixture, kind, 2, Duration::ZERO))?;
        for &concurrency in &plan.login_concurrency {
            let (point, secrets) = runtime.block_on(login_point(&fixture, kind, concurrency, plan.login_point))?;
            util::progress(format!(
                "{} logins, {concurrency} concurrent: {:.1}/s ({:.1}/s per core), p50 {:.1} ms, p99 {:.1} ms, \
                 {} cpu ms each",
                point.kind,
                point.per_s,
                point.per_s / cores as f64,
                point.p50_ms,
                point.p99_ms,
                point.cpu_ms.map_or_else(|| "?".to_owned(), |v| format!("{v:.2}"))
            ));
            logins.push(point);
            sessions.extend(secrets.into_iter().take(MAX_SESSIONS.saturating_sub(sessions.len())));
        }
    }
    let totp_steps_advanced = fixture.rotation.advances.load(Ordering::Relaxed);

    let keys = runtime.block_on(issue_keys(&fixture, plan.api_keys))?;
    // Put every secret in the caches (the logins did for sessions; keys are
    // cached on first use), so the points measure the hot path.
    runtime.block_on(async {
        for secret in &sessions {
            fixture.live.authenticate_session(secret).await.context("a fresh session did not authenticate")?;
        }
        for secret in &keys {
            fixture.live.authenticate_key(secret).await.context("a fresh api key did not authenticate")?;
        }
        anyhow::Ok(())
    })?;
    let mut tokens = Vec::new();
    for (kind, secrets) in [(TokenKind::Session, &sessions), (TokenKind::ApiKey, &keys)] {
        for &threads in &plan.token_threads {
            let point = token_point(&fixture, kind, secrets, threads, plan.cpu_point)?;
            util::progress(format!(
                "{} validations, {threads} thread(s): {:.0}/s, {:.0} ns each ({} cpu ns)",
                point.kind,
                point.per_s,
                point.ns(),
                point.cpu_ns.map_or_else(|| "?".to_owned(), |v| format!("{v:.0}"))
            ));
            tokens.push(point);
        }
    }

    let audit_events = fixture.audit.events.load(Ordering::Relaxed);
    let Ok(fixture) = Arc::try_unwrap(fixture) else { bail!("the fixture is still shared after the run") };
    runtime.block_on(fixture.store.close());
    drop(fixture.dir);
    Ok(Report {
        quick: plan.quick,
        cores,
        argon2,
        mfa_users: plan.mfa_users,
        password_users: plan.password_users,
        logins,
        totp_steps_advanced,
        sessions: sessions.len(),
        api_keys: keys.len(),
        tokens,
        audit_events,
        setup_s,
        total_s: started.elapsed().as_secs_f64(),
        load_before,
        load_after: util::load_average(),
    })
}

// ----- argon2 ----------------------------------------------------------------

fn argon2_points(plan: &Plan) -> anyhow::Result<Vec<Argon2Point>> {
    util::progress(format!("argon2id m={ARGON2_MEMORY_KIB} KiB t={ARGON2_PASSES} p={ARGON2_LANES}"));
    let stored = password::hash(ARGON2_INPUT).context("hashing")?;
    let mut points = Vec::new();
    for &threads in &plan.argon2_threads {
        let (hashes_per_s, hash_cpu_ms) = on_threads(threads, plan.cpu_point, || {
            password::hash(ARGON2_INPUT).map(black_box).map(drop).context("hashing")
        })?;
        let (verifies_per_s, verify_cpu_ms) =
            on_threads(threads, plan.cpu_point, || match password::verify(ARGON2_INPUT, &stored) {
                Ok(true) => Ok(()),
                Ok(false) => Err(anyhow!("the right password did not verify")),
                Err(e) => Err(e).context("verifying"),
            })?;
        let point = Argon2Point { threads, hashes_per_s, verifies_per_s, hash_cpu_ms, verify_cpu_ms };
        util::progress(format!(
            "argon2id, {threads} thread(s): {hashes_per_s:.1} hashes/s, {verifies_per_s:.1} verifies/s, \
             {:.2} ms per verify ({} cpu ms)",
            point.verify_ms(),
            verify_cpu_ms.map_or_else(|| "?".to_owned(), |v| format!("{v:.2}"))
        ));
        points.push(point);
    }
    Ok(points)
}

/// Run `op` in a loop on `threads` OS threads for `duration` (at least
/// twice each): operations per second over all of them, and CPU
/// milliseconds per operation.
fn on_threads(
    threads: usize,
    duration: Duration,
    op: impl Fn() -> anyhow::Result<()> + Sync,
) -> anyhow::Result<(f64, Option<f64>)> {
    let start = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<u64> {
                    start.wait();
                    let deadline = Instant::now() + duration;
                    let mut done = 0u64;
                    while done < 2 || Instant::now() < deadline {
                        op()?;
                        done += 1;
                    }
                    Ok(done)
                })
            })
            .collect();
        let cpu = util::process_cpu();
        start.wait();
        let started = Instant::now();
        let mut total = 0;
        for worker in workers {
            total += worker.join().map_err(|_| anyhow!("a benchmark thread panicked"))??;
        }
        Ok((util::rate(total, started.elapsed()), util::cpu_per_op(cpu, total, 1e3)))
    })
}

// ----- fixture -----------------------------------------------------------------

async fn setup(plan: &Plan) -> anyhow::Result<Fixture> {
    let dir = util::scratch_dir("identity")?;
    let store = caduceus_store::open(&Config::with_data_dir(dir.path())).await.context("opening the store")?;
    let audit = Arc::new(CountingAudit::default());
    let clock = ManualClock::new(SystemClock.now());
    let mfa = Arc::new(IdentityService::new(
        store.clone(),
        Arc::new(clock.clone()),
        audit.clone(),
        IdentitySettings::default(),
    ));
    let live = Arc::new(IdentityService::new(
        store.clone(),
        Arc::new(SystemClock),
        audit.clone(),
        IdentitySettings::default(),
    ));
    let mut fixture = Fixture {
        dir,
        store,
        audit,
        rotation: Rotation::new(clock.clone(), Duration::from_secs(TOTP_PERIOD_S), plan.mfa_users),
        clock,
        mfa,
        live,
        mfa_accounts: Vec::new(),
        password_accounts: Vec::new(),
        next_password: AtomicU64::new(0),
    };
    // A few accounts at a time: each costs a hash (and, with TOTP, a
    // verification), which the service runs on tokio's blocking threads.
    let parallel = std::thread::available_parallelism().map(usize::from).unwrap_or(1) * 2;
    let mut mfa_accounts = Vec::with_capacity(plan.mfa_users);
    for chunk in (0..plan.mfa_users).collect::<Vec<_>>().chunks(parallel) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|&i| tokio::spawn(enrol(fixture.mfa.clone(), fixture.clock.clone(), format!("bench-mfa-{i:04}"))))
            .collect();
        for task in tasks {
            mfa_accounts.push(task.await.context("an enrolment task failed")??);
        }
    }
    let mut password_accounts = Vec::with_capacity(plan.password_users);
    for chunk in (0..plan.password_users).collect::<Vec<_>>().chunks(parallel) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|&i| tokio::spawn(create(fixture.live.clone(), format!("bench-pw-{i:04}"), Role::Nurse)))
            .collect();
        for task in tasks {
            password_accounts.push(task.await.context("an account task failed")??);
        }
    }
    fixture.mfa_accounts = mfa_accounts;
    fixture.password_accounts = password_accounts;
    Ok(fixture)
}

/// A new account with a generated password.
async fn create(service: Arc<IdentityService>, username: String, role: Role) -> anyhow::Result<Account> {
    let new = NewUser {
        username: username.clone(),
        display_name: String::new(),
        roles: vec![role],
        password: None,
        patient_ref: None,
    };
    let (_, password) = service.create_user(Actor::system(), new).await.context("creating an account")?;
    let password = password.ok_or_else(|| anyhow!("no generated password was returned"))?;
    Ok(Account { username, password, totp: None })
}

/// A new account with TOTP enrolled and confirmed, as a user would: sign
/// in, start enrolment, scan the secret, confirm with the first code.
async fn enrol(service: Arc<IdentityService>, clock: ManualClock, username: String) -> anyhow::Result<Account> {
    let mut account = create(service.clone(), username, Role::Clinician).await?;
    let step = service
        .login_password(&account.username, account.password.expose(), "192.0.2.250", SessionKind::Bearer)
        .await
        .context("first sign-in")?;
    let LoginStep::Authenticated(session) = step else { bail!("a new account asked for a second factor") };
    let principal = service.authenticate_session(session.secret.expose()).await.context("new session")?;
    let enrolment = service.begin_totp(&principal).await.context("starting TOTP enrolment")?;
    let uri = enrolment.uri.expose();
    if !uri.contains(&format!("period={TOTP_PERIOD_S}")) || !uri.contains("digits=6") || !uri.contains("algorithm=SHA1")
    {
        bail!("the enrolment is not SHA-1, 6 digits, {TOTP_PERIOD_S} s: the benchmark needs updating");
    }
    let secret = data_encoding::BASE32_NOPAD
        .decode(enrolment.secret_base32.expose().as_bytes())
        .context("decoding the enrolment secret")?;
    let totp = Totp::new(Algorithm::Sha1, secret, 6, TOTP_PERIOD_S).context("the enrolment secret")?;
    let code = current_code(&totp, &clock);
    service.confirm_totp(&principal, &code).await.context("confirming TOTP")?;
    account.totp = Some(totp);
    Ok(account)
}

fn current_code(totp: &Totp, clock: &dyn Clock) -> String {
    let unix = u64::try_from(clock.now().as_millis() / 1000).unwrap_or(0);
    totp.format(totp.code_at_step(totp.step(unix)))
}

async fn issue_keys(fixture: &Fixture, count: usize) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::with_capacity(count);
    for i in 0..count {
        let issued = fixture
            .live
            .issue_key(None, &format!("bench-device-{i}"), Role::DeviceService, &[Permission::PublishEvents], None)
            .await
            .context("issuing an api key")?;
        keys.push(issued.secret.into_inner());
    }
    Ok(keys)
}

// ----- logins --------------------------------------------------------------------

/// One timed point: `concurrency` tasks signing in for `duration` (at
/// least once each). Returns the figures and the bearer secrets of the
/// sessions opened by `password` logins.
async fn login_point(
    fixture: &Arc<Fixture>,
    kind: LoginKind,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<(LoginPoint, Vec<String>)> {
    let cpu = util::process_cpu();
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let fixture = fixture.clone();
            let source = format!("192.0.2.{}", task + 1);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut secrets = Vec::new();
                while latencies.is_empty() || Instant::now() < deadline {
                    let began = Instant::now();
                    if let Some(secret) = login(&fixture, kind, &source).await? {
                        secrets.push(secret);
                    }
                    latencies.push(began.elapsed());
                }
                anyhow::Ok((latencies, secrets))
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut secrets = Vec::new();
    for task in tasks {
        let (mut l, mut s) = task.await.context("a login task failed")??;
        latencies.append(&mut l);
        secrets.append(&mut s);
    }
    let elapsed = started.elapsed();
    let cpu_ms = util::cpu_per_op(cpu, latencies.len() as u64, 1e3);
    latencies.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let total: Duration = latencies.iter().sum();
    let point = LoginPoint {
        kind: kind.name(),
        concurrency,
        logins: latencies.len() as u64,
        per_s: util::rate(latencies.len() as u64, elapsed),
        p50_ms: ms(util::percentile(&latencies, 50.0)),
        p99_ms: ms(util::percentile(&latencies, 99.0)),
        mean_ms: util::mean_us(total, latencies.len()) / 1000.0,
        cpu_ms,
    };
    Ok((point, secrets))
}

/// One whole sign-in; for `password`, the new session's bearer secret.
async fn login(fixture: &Fixture, kind: LoginKind, source: &str) -> anyhow::Result<Option<String>> {
    match kind {
        LoginKind::PasswordTotp => {
            let index = loop {
                match fixture.rotation.take() {
                    Some(index) => break index,
                    None => tokio::task::yield_now().await,
                }
            };
            let account = fixture.mfa_accounts.get(index).ok_or_else(|| anyhow!("no account {index}"))?;
            let totp = account.totp.as_ref().ok_or_else(|| anyhow!("account {index} has no TOTP"))?;
            let service = &fixture.mfa;
            let step = service
                .login_password(&account.username, account.password.expose(), source, SessionKind::Bearer)
                .await
                .with_context(|| format!("password step of account {index}"))?;
            let LoginStep::MfaRequired { mfa_token, .. } = step else {
                bail!("account {index} signed in without its second factor")
            };
            let code = current_code(totp, &fixture.clock);
            service
                .login_second_factor(mfa_token.expose(), SecondFactor::Totp(Redacted::new(code)))
                .await
                .with_context(|| format!("TOTP step of account {index}"))?;
            fixture.rotation.give_back(index);
            Ok(None)
        }
        LoginKind::Password => {
            let next = fixture.next_password.fetch_add(1, Ordering::Relaxed);
            let index = usize::try_from(next).unwrap_or(0) % fixture.password_accounts.len().max(1);
            let account = fixture.password_accounts.get(index).ok_or_else(|| anyhow!("no account {index}"))?;
            let step = fixture
                .live
                .login_password(&account.username, account.password.expose(), source, SessionKind::Bearer)
                .await
                .with_context(|| format!("password sign-in of account {index}"))?;
            let LoginStep::Authenticated(session) = step else { bail!("account {index} asked for a second factor") };
            Ok(Some(session.secret.into_inner()))
        }
    }
}

// ----- tokens ----------------------------------------------------------------------

/// Validations per second of `secrets` on `threads` OS threads, each with
/// its own current-thread runtime, for `duration`.
fn token_point(
    fixture: &Fixture,
    kind: TokenKind,
    secrets: &[String],
    threads: usize,
    duration: Duration,
) -> anyhow::Result<TokenPoint> {
    if secrets.is_empty() {
        bail!("no {} secrets to validate", kind.name());
    }
    let service = &fixture.live;
    let start = Barrier::new(threads + 1);
    let (validations, elapsed, cpu_ns) = std::thread::scope(|scope| -> anyhow::Result<(u64, Duration, Option<f64>)> {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let start = &start;
                scope.spawn(move || -> anyhow::Result<u64> {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                    start.wait();
                    runtime.block_on(async {
                        let deadline = Instant::now() + duration;
                        let mut position = thread * secrets.len() / threads;
                        let mut done = 0u64;
                        let mut failed = 0u64;
                        while done == 0 || Instant::now() < deadline {
                            for _ in 0..BATCH {
                                position = (position + 1) % secrets.len();
                                let secret = secrets.get(position).map_or("", String::as_str);
                                let ok = match kind {
                                    TokenKind::Session => black_box(service.authenticate_session(secret).await).is_ok(),
                                    TokenKind::ApiKey => black_box(service.authenticate_key(secret).await).is_ok(),
                                };
                                failed += u64::from(!ok);
                            }
                            done += BATCH as u64;
                        }
                        if failed > 0 {
                            bail!("{failed} of {done} {} validations failed", kind.name());
                        }
                        Ok(done)
                    })
                })
            })
            .collect();
        let cpu = util::process_cpu();
        start.wait();
        let started = Instant::now();
        let mut total = 0;
        for worker in workers {
            total += worker.join().map_err(|_| anyhow!("a benchmark thread panicked"))??;
        }
        Ok((total, started.elapsed(), util::cpu_per_op(cpu, total, 1e9)))
    })?;
    Ok(TokenPoint { kind: kind.name(), threads, validations, per_s: util::rate(validations, elapsed), cpu_ns })
}

#[cfg(test)]
mod tests {
    use super::*;
    use caduceus_core::Timestamp;

    /// The whole harness against the real service and store, tiny: every
    /// sign-in succeeds (a failure aborts the run), TOTP steps advance, and
    /// every secret validates.
    #[test]
    fn a_tiny_run_signs_in_and_validates() {
        let report = run(&Plan::smoke()).unwrap();
        let kinds: Vec<_> = report.logins.iter().map(|p| (p.kind, p.concurrency)).collect();
        assert_eq!(kinds, [("password+totp", 2), ("password", 2)]);
        assert!(report.logins.iter().all(|p| p.logins >= 2 && p.per_s > 0.0), "{:?}", report.logins);
        assert!(report.totp_steps_advanced >= 2, "warm-up and point each needed a fresh step");
        assert!(report.sessions >= 2, "the timed password point opened a session per task");
        assert_eq!(report.tokens.len(), 2);
        assert!(report.tokens.iter().all(|p| p.validations >= 2 * BATCH as u64), "{:?}", report.tokens);
        assert!(report.audit_events > 0);
        assert!(report.table().contains("targets"));
    }

    #[test]
    fn the_rotation_moves_the_clock_once_every_account_is_used() {
        let clock = ManualClock::new(Timestamp(1_000_000));
        let rotation = Rotation::new(clock.clone(), Duration::from_secs(30), 3);
        // Enrolment spent the first step: the first take moves the clock.
        let first: Vec<usize> = (0..3).map(|_| rotation.take().unwrap()).collect();
        assert_eq!(clock.now(), Timestamp(1_030_000));
        assert_eq!(rotation.take(), None, "all three are in flight");
        for account in first {
            rotation.give_back(account);
        }
        assert_eq!(clock.now(), Timestamp(1_030_000), "giving back does not move the clock");
        let again = rotation.take().unwrap();
        assert_eq!(clock.now(), Timestamp(1_060_000));
        rotation.give_back(again);
        assert_eq!(rotation.take().map(|_| ()), Some(()));
        assert_eq!(clock.now(), Timestamp(1_060_000), "two accounts were still free in this step");
        assert_eq!(rotation.advances.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn codes_follow_the_clock() {
        // RFC 6238 appendix B, SHA-1: 59 s gives 94287082 (8 digits).
        let totp = Totp::new(Algorithm::Sha1, b"12345678901234567890".to_vec(), 8, 30).unwrap();
        assert_eq!(current_code(&totp, &ManualClock::new(Timestamp(59_000))), "94287082");
    }

    #[test]
    fn cpu_time_and_load_are_read_on_linux() {
        if cfg!(target_os = "linux") {
            let before = util::process_cpu().unwrap();
            let spin = Instant::now();
            while spin.elapsed() < Duration::from_millis(50) {
                black_box(0u64);
            }
            assert!(util::process_cpu().unwrap() >= before);
            assert!(util::cpu_per_op(Some(before), 10, 1e3).is_some());
            assert_eq!(util::cpu_per_op(Some(before), 0, 1e3), None);
            assert!(util::load_average().is_some());
        }
    }

    #[test]
    fn the_report_renders_and_judges_the_targets() {
        let report = Report {
            quick: true,
            cores: 2,
            argon2: vec![Argon2Point {
                threads: 2,
                hashes_per_s: 80.0,
                verifies_per_s: 100.0,
                hash_cpu_ms: Some(25.0),
                verify_cpu_ms: Some(20.0),
            }],
            mfa_users: 4,
            password_users: 2,
            logins: vec![LoginPoint {
                kind: "password+totp",
                concurrency: 2,
                logins: 60,
                per_s: 120.0,
                p50_ms: 16.0,
                p99_ms: 30.0,
                mean_ms: 17.0,
                cpu_ms: Some(25.0),
            }],
            totp_steps_advanced: 15,
            sessions: 1,
            api_keys: 1,
            tokens: vec![TokenPoint { kind: "session", threads: 2, validations: 10, per_s: 150_000.0, cpu_ns: None }],
            audit_events: 70,
            setup_s: 1.0,
            total_s: 2.0,
            load_before: Some(0.5),
            load_after: None,
        };
        assert!((report.argon2[0].verify_ms() - 20.0).abs() < 1e-9);
        let json = report.to_json();
        assert_eq!(json["targets"]["logins_per_s_per_core"]["measured"], 60.0);
        assert_eq!(json["targets"]["logins_per_s_per_core"]["met"], true);
        assert_eq!(json["targets"]["session_validations_per_s"]["met"], false);
        assert_eq!(json["targets"]["logins_per_s_per_core"]["per_cpu_s"], 40.0);
        assert_eq!(json["targets"]["logins_per_s_per_core"]["met_per_cpu_s"], false);
        assert_eq!(json["logins"]["password_totp"]["2"]["per_core"], 60.0);
        let table = report.table();
        assert!(
            table.contains("password+totp logins/s per core >= 50: 60.0 (met); per cpu-second: 40.0 (MISSED)"),
            "{table}"
        );
        assert!(table.contains("session validations/s >= 200000: 150000 (MISSED)"), "{table}");
    }
}
