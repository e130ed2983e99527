//! Wiring of detection: the rules (from the configured directories and
//! the API), the detection stage subscribed to the spine, and the alert
//! stage that turns findings into alerts and sends them on.
//!
//! Two durable consumers, so that neither loses anything:
//! - `detect` reads every event, runs it through the engine and publishes
//!   each finding back on the spine as an OCSF Detection Finding (sealed in
//!   the ledger like every event). An event is acknowledged only once its
//!   findings are durable. When the spine is full it acknowledges what it
//!   has finished (which makes room) and waits: back-pressure, never a drop.
//! - `alerts` reads the findings, groups them into alerts in the store
//!   (same rule, same entity, within the group window), applies
//!   suppressions, and hands new alerts to the outputs (webhook, syslog).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use caduceus_core::SecurityEvent;
use caduceus_core::event::Payload;
use caduceus_detect::RuleError;
use caduceus_detect::pipeline::{Engine, Output};
use caduceus_detect::sigma::{FieldMap, RuleSet};
use caduceus_spine::{SpineError, Subscription};

use crate::platform::{Platform, ServerError};

/// The consumer that runs the engine.
pub const DETECT_CONSUMER: &str = "detect";
/// The consumer that keeps alerts.
pub const ALERTS_CONSUMER: &str = "alerts";

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct DetectCounters {
    pub events: AtomicU64,
    pub findings_sigma: AtomicU64,
    pub findings_correlation: AtomicU64,
    pub findings_ehr: AtomicU64,
    /// Times the stage found the spine full and waited.
    pub backpressure_waits: AtomicU64,
    /// Nanoseconds spent running the engine.
    pub busy_nanos: AtomicU64,
    pub alerts_opened: AtomicU64,
    pub alerts_grouped: AtomicU64,
    pub alerts_suppressed: AtomicU64,
    pub store_retries: AtomicU64,
}

/// Rules as loaded, with what did not load.
#[derive(Debug)]
pub struct LoadedRules {
    pub rules: Arc<RuleSet>,
    pub errors: Vec<RuleError>,
    /// Ids of the rules that came through the API (the rest came from files).
    pub api_rules: Vec<String>,
}

pub struct DetectService {
    platform: Arc<Platform>,
    vault: Option<Arc<caduceus_vault::service::Vault>>,
    outputs: Option<Arc<caduceus_detect::outputs::Outputs>>,
    field_map: FieldMap,
    loaded: RwLock<Arc<LoadedRules>>,
    /// Bumped whenever `loaded` changes; the stage swaps rules when it sees it move.
    generation: AtomicU64,
    /// A rebuilt staff directory for the analytics, and its generation.
    directory: RwLock<Option<Arc<caduceus_detect::ehr::Directory>>>,
    directory_generation: AtomicU64,
    /// Woken when an event changed staff or patient facts (a new account,
    /// a Patient or Practitioner written): the directory is rebuilt soon.
    directory_dirty: tokio::sync::Notify,
    /// Set once the detection stage has seen the spine close.
    stopped: tokio::sync::watch::Sender<bool>,
    pub counters: Arc<DetectCounters>,
}

impl std::fmt::Debug for DetectService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetectService").finish_non_exhaustive()
    }
}

impl DetectService {
    /// Load the rules (configured directories, then the API's rules from the
    /// store, then the stored enabled/disabled choices).
    pub async fn open(
        platform: &Arc<Platform>,
        vault: Option<Arc<caduceus_vault::service::Vault>>,
    ) -> Result<Arc<Self>, ServerError> {
        let field_map = FieldMap::with_overrides(&platform.config.detect.field_map);
        let outputs = caduceus_detect::outputs::Outputs::start(&platform.config.detect, platform.clock.clone())
            .map_err(|e| ServerError::Io(format!("detect outputs: {e}")))?;
        let outputs = (!outputs.is_empty()).then(|| Arc::new(outputs));
        let service = Arc::new(Self {
            platform: platform.clone(),
            vault,
            outputs,
            field_map,
            loaded: RwLock::new(Arc::new(LoadedRules {
                rules: Arc::new(RuleSet::new()),
                errors: Vec::new(),
                api_rules: Vec::new(),
            })),
            generation: AtomicU64::new(0),
            directory: RwLock::new(None),
            directory_generation: AtomicU64::new(0),
            directory_dirty: tokio::sync::Notify::new(),
            stopped: tokio::sync::watch::channel(false).0,
            counters: Arc::new(DetectCounters::default()),
        });
        service.reload().await?;
        let loaded = service.loaded();
        tracing::info!(
            rules = loaded.rules.rules().count(),
            correlations = loaded.rules.correlations().len(),
            failed = loaded.errors.len(),
            "detection rules loaded"
        );
        for error in loaded.errors.iter().take(20) {
            tracing::warn!(%error, "detection rule not loaded");
        }
        Ok(service)
    }

    pub fn loaded(&self) -> Arc<LoadedRules> {
        self.loaded.read().map(|l| l.clone()).unwrap_or_else(|e| e.into_inner().clone())
    }

    pub fn outputs(&self) -> Option<&Arc<caduceus_detect::outputs::Outputs>> {
        self.outputs.as_ref()
    }

    pub fn field_map(&self) -> &FieldMap {
        &self.field_map
    }

    /// Build the rule set again from its sources and swap it in.
    pub async fn reload(&self) -> Result<(), ServerError> {
        let dirs = self.platform.config.detect.rules_dirs.clone();
        let stored = self.platform.store.list_rules().await?;
        let overrides = self.platform.store.rule_enabled_overrides().await?;
        let loaded = tokio::task::spawn_blocking(move || {
            let (mut rules, report) = RuleSet::load_dirs(&dirs);
            let mut errors = report.errors;
            errors.extend(caduceus_detect::builtin::add_to(&mut rules));
            let mut api_rules = Vec::new();
            for rule in &stored {
                match rules.add_yaml(&format!("api:{}", rule.id), &rule.yaml) {
                    Ok(ids) => {
                        for id in &ids {
                            rules.set_enabled(id, rule.enabled);
                        }
                        api_rules.extend(ids);
                    }
                    Err(e) => errors.push(e),
                }
            }
            for state in &overrides {
                rules.set_enabled(&state.rule_id, state.enabled);
            }
            LoadedRules { rules: Arc::new(rules), errors, api_rules }
        })
        .await
        .map_err(|e| ServerError::Io(format!("loading rules failed: {e}")))?;
        if let Ok(mut slot) = self.loaded.write() {
            *slot = Arc::new(loaded);
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Start the detection and alert stages. They stop when the spine closes.
    pub async fn start(self: &Arc<Self>) -> Result<(), ServerError> {
        let engine_ehr = self.analytics().await;
        let outputs = self.outputs.clone();
        let subscription = self.platform.spine.subscribe(DETECT_CONSUMER).await?;
        let alerts = self.platform.spine.subscribe(ALERTS_CONSUMER).await?;
        let engine = Engine::new(self.loaded().rules.clone(), engine_ehr, self.field_map.clone());
        let service = self.clone();
        tokio::spawn(async move {
            service.clone().run_detection(subscription, engine).await;
            service.stopped.send_replace(true);
        });
        tokio::spawn(self.clone().run_alerts(alerts, outputs));
        Ok(())
    }

    async fn run_detection(self: Arc<Self>, mut subscription: Box<dyn Subscription>, mut engine: Engine) {
        let batch = self.platform.config.detect.batch;
        let mut generation = self.generation.load(Ordering::SeqCst);
        let mut directory_generation = self.directory_generation.load(Ordering::SeqCst);
        let mut out = Output::default();
        let mut events = Vec::with_capacity(batch);
        // Time as the events tell it: windows close on event time, so a
        // backlog replayed after a restart is judged as it happened.
        let mut newest_ms = 0i64;
        loop {
            let first = match tokio::time::timeout(IDLE_TICK, subscription.next()).await {
                Ok(Ok(Some(stored))) => stored,
                Ok(Ok(None)) => break,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "detection: reading the spine failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(_) => {
                    // Quiet: let the clock close windows and settle
                    // deferred record-access checks.
                    out.clear();
                    engine.advance(self.platform.clock.now(), &mut out);
                    if !self.publish_findings(&mut subscription, &out, None).await {
                        break;
                    }
                    continue;
                }
            };
            events.clear();
            events.push(first);
            while events.len() < batch {
                match tokio::time::timeout(Duration::from_millis(1), subscription.next()).await {
                    Ok(Ok(Some(stored))) => events.push(stored),
                    _ => break,
                }
            }
            let now_generation = self.generation.load(Ordering::SeqCst);
            if now_generation != generation {
                generation = now_generation;
                engine.set_rules(self.loaded().rules.clone());
            }
            let now_directory = self.directory_generation.load(Ordering::SeqCst);
            if now_directory != directory_generation {
                directory_generation = now_directory;
                let fresh = self.directory.read().ok().and_then(|d| d.clone());
                if let (Some(analytics), Some(fresh)) = (engine.analytics_mut(), fresh) {
                    analytics.set_directory(fresh);
                }
            }
            let mut done = None;
            for stored in &events {
                out.clear();
                let started = Instant::now();
                newest_ms = newest_ms.max(stored.event.time().as_millis());
                if changes_directory(&stored.event) {
                    self.directory_dirty.notify_one();
                }
                engine.process(stored.seq, &stored.event, &mut out);
                self.counters.events.fetch_add(1, Ordering::Relaxed);
                self.counters.busy_nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                if !self.publish_findings(&mut subscription, &out, done).await {
                    return;
                }
                done = Some(stored.seq);
            }
            out.clear();
            engine.advance(caduceus_core::Timestamp(newest_ms), &mut out);
            if !self.publish_findings(&mut subscription, &out, done).await {
                return;
            }
            if let Some(seq) = done
                && let Err(e) = subscription.ack(seq).await
            {
                tracing::warn!(error = %e, "detection: acknowledging failed");
            }
        }
    }

    /// Publish each finding; when the spine is full, acknowledge what is
    /// finished (`done`) so that room is made, and wait. Returns false once
    /// the spine is closed.
    async fn publish_findings(
        &self,
        subscription: &mut Box<dyn Subscription>,
        out: &Output,
        done: Option<u64>,
    ) -> bool {
        for finding in &out.findings {
            let counter = match finding.kind {
                caduceus_detect::FindingKind::Sigma => &self.counters.findings_sigma,
                caduceus_detect::FindingKind::Correlation => &self.counters.findings_correlation,
                caduceus_detect::FindingKind::Ehr => &self.counters.findings_ehr,
                // The network stage publishes its own findings.
                caduceus_detect::FindingKind::Network | caduceus_detect::FindingKind::Baseline => {
                    &self.counters.findings_sigma
                }
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let event = match finding.to_event(self.platform.clock.now()) {
                Ok(event) => event,
                Err(e) => {
                    // Cannot happen for a finding built by the engine (it clips); log loudly.
                    tracing::error!(error = %e, rule = %finding.rule_id, "detection: finding not representable as an event");
                    continue;
                }
            };
            let mut acked = false;
            loop {
                match self.platform.spine.try_publish(event.clone()).await {
                    Ok(_) => break,
                    Err(SpineError::Full { .. }) => {
                        self.counters.backpressure_waits.fetch_add(1, Ordering::Relaxed);
                        if !acked && let Some(seq) = done {
                            let _ = subscription.ack(seq).await;
                            acked = true;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(SpineError::Closed) => return false,
                    Err(e) => {
                        tracing::error!(error = %e, "detection: publishing a finding failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        }
        true
    }

    async fn run_alerts(
        self: Arc<Self>,
        mut subscription: Box<dyn Subscription>,
        outputs: Option<Arc<caduceus_detect::outputs::Outputs>>,
    ) {
        let window_ms =
            i64::try_from(self.platform.config.detect.group_window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        loop {
            let stored = match subscription.next().await {
                Ok(Some(stored)) => stored,
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "alerts: reading the spine failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Some(finding) = finding_of(&stored.event) {
                let mut attempt = 0u32;
                let upserted = loop {
                    let alert =
                        caduceus_detect::alerts::new_alert(&finding, stored.seq, stored.event.uid().to_string());
                    match self.platform.store.upsert_alert(&alert, window_ms, self.platform.clock.now()).await {
                        Ok(result) => break result,
                        Err(e) => {
                            attempt += 1;
                            self.counters.store_retries.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(error = %e, attempt, "alerts: storing an alert failed; retrying");
                            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(25)))).await;
                        }
                    }
                };
                match upserted.outcome {
                    caduceus_store::detect::Upsert::Opened => {
                        self.counters.alerts_opened.fetch_add(1, Ordering::Relaxed);
                        if let Some(outputs) = &outputs {
                            outputs.send(&upserted.alert);
                        }
                    }
                    caduceus_store::detect::Upsert::Grouped => {
                        self.counters.alerts_grouped.fetch_add(1, Ordering::Relaxed);
                    }
                    caduceus_store::detect::Upsert::Suppressed => {
                        self.counters.alerts_suppressed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if let Err(e) = subscription.ack(stored.seq).await {
                tracing::warn!(error = %e, "alerts: acknowledging failed");
            }
        }
        // The spine closed: give queued alerts a moment to reach the SIEM.
        if let Some(outputs) = &outputs {
            outputs.shutdown(Duration::from_secs(5)).await;
        }
    }
}

/// With no event for this long, the stage advances time by the clock.
const IDLE_TICK: Duration = Duration::from_secs(2);

/// After a change to staff or patient facts, the wait before rebuilding.
const DIRECTORY_DEBOUNCE: Duration = Duration::from_secs(1);

/// Whether an event changes what the analytics' directory holds.
fn changes_directory(event: &SecurityEvent) -> bool {
    use caduceus_core::event::{AccessOutcome, AccountChangeKind, RecordAction};
    match event.payload() {
        Payload::AccountChange { change, .. } => {
            matches!(change, AccountChangeKind::Created | AccountChangeKind::RolesChanged | AccountChangeKind::Disabled)
        }
        Payload::RecordAccess {
            action, outcome: AccessOutcome::Allowed, resource_type: Some(resource_type), ..
        } => {
            matches!(action, RecordAction::Create | RecordAction::Update | RecordAction::Delete | RecordAction::Erase)
                && matches!(resource_type.as_str(), "Patient" | "Practitioner" | "PractitionerRole" | "Bundle")
        }
        _ => false,
    }
}

/// How often the analytics' staff directory and patient facts are rebuilt
/// from the vault and the accounts.
const DIRECTORY_REFRESH: Duration = Duration::from_secs(600);

impl DetectService {
    /// The record-access analytics, over what the vault knows (none
    /// without a vault). The directory is rebuilt every ten minutes.
    async fn analytics(self: &Arc<Self>) -> Option<caduceus_detect::ehr::Analytics> {
        use caduceus_detect::ehr::{Analytics, EhrSettings};
        self.vault.as_ref()?;
        let directory = match self.build_directory().await {
            Ok(directory) => directory,
            Err(e) => {
                tracing::error!(error = %e, "detection: building the staff directory failed; record-access analytics start empty");
                caduceus_detect::ehr::Directory::empty()
            }
        };
        let settings = EhrSettings {
            // The vault's directory has no departments for patients yet.
            patient_departments_known: false,
            ..EhrSettings::with_threshold(self.platform.config.detect.ehr_alert_threshold)
        };
        let service = self.clone();
        let mut stopped = self.stopped.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(DIRECTORY_REFRESH) => {}
                    _ = service.directory_dirty.notified() => {
                        // Let a burst of changes (an import) finish first.
                        tokio::time::sleep(DIRECTORY_DEBOUNCE).await;
                    }
                    _ = stopped.changed() => break,
                }
                match service.build_directory().await {
                    Ok(directory) => {
                        if let Ok(mut slot) = service.directory.write() {
                            *slot = Some(Arc::new(directory));
                        }
                        service.directory_generation.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => tracing::warn!(error = %e, "detection: refreshing the staff directory failed"),
                }
            }
        });
        Some(Analytics::new(Arc::new(directory), settings))
    }

    /// Staff (accounts with a clinical or administrative role, their
    /// department and keyed surname/address hashes from their Practitioner
    /// record) and patients (keyed hashes, flags, employee links), from
    /// the vault's [`detection_facts`](caduceus_vault::service::Vault::detection_facts):
    /// no name or address reaches detection.
    pub async fn build_directory(&self) -> Result<caduceus_detect::ehr::Directory, String> {
        use caduceus_detect::ehr::files::{PatientLine, StaffLine};
        use caduceus_detect::ehr::{DirectoryBuilder, TokenKey};
        let Some(vault) = &self.vault else { return Ok(caduceus_detect::ehr::Directory::empty()) };
        let facts = vault.detection_facts().await.map_err(|e| e.to_string())?;
        // Tokens arrive already keyed by the vault; this key would only
        // hash plain text, of which there is none.
        let mut builder = DirectoryBuilder::new(TokenKey::random());
        let staff_by_user: std::collections::HashMap<&str, &caduceus_vault::facts::StaffFacts> =
            facts.staff.iter().map(|s| (s.user_id.as_str(), s)).collect();
        let own_record: std::collections::HashMap<&str, &str> =
            facts.patients.iter().filter_map(|p| p.employee_user.as_deref().map(|u| (u, p.id.as_str()))).collect();
        let mut after = String::new();
        loop {
            let users = self.platform.store.list_users(&after, 500).await.map_err(|e| e.to_string())?;
            let Some(last) = users.last() else { break };
            after = last.username.clone();
            for user in &users {
                let Some(role) = user.roles.iter().find(|r| r.as_str() != "patient") else { continue };
                let practitioner = staff_by_user.get(user.user_id.as_str());
                let line = StaffLine {
                    user: user.user_id.clone(),
                    role: role.clone(),
                    department: practitioner
                        .and_then(|p| p.department.clone())
                        .unwrap_or_else(|| "unassigned".to_owned()),
                    shift: None,
                    utc_offset_minutes: None,
                    surname: None,
                    surname_token: practitioner.and_then(|p| p.surname.clone()),
                    address: None,
                    address_token: practitioner.and_then(|p| p.address.clone()),
                    patient_id: own_record.get(user.user_id.as_str()).map(|p| (*p).to_owned()),
                };
                if let Err(e) = builder.add_staff(line) {
                    tracing::warn!(error = %e, "detection: an account left out of the staff directory");
                }
            }
            if users.len() < 500 {
                break;
            }
        }
        for patient in &facts.patients {
            let line = PatientLine {
                patient: patient.id.clone(),
                surname: None,
                surname_token: patient.surname.clone(),
                address: None,
                address_token: patient.address.clone(),
                vip: patient.flagged,
                flagged: patient.flagged,
                employee: patient.employee_user.clone(),
                departments: Vec::new(),
            };
            if let Err(e) = builder.add_patient(line) {
                tracing::warn!(error = %e, "detection: a patient left out of the directory");
            }
        }
        Ok(builder.build())
    }
}

/// The finding a Detection Finding event carries.
pub fn finding_of(event: &SecurityEvent) -> Option<caduceus_detect::Finding> {
    let Payload::DetectionFinding {
        kind,
        rule_id,
        rule_title,
        entity,
        patients,
        score_milli,
        explanation,
        context,
        tags,
        events,
    } = event.payload()
    else {
        return None;
    };
    let kind = match kind.as_str() {
        "sigma" => caduceus_detect::FindingKind::Sigma,
        "correlation" => caduceus_detect::FindingKind::Correlation,
        "network" => caduceus_detect::FindingKind::Network,
        "baseline" => caduceus_detect::FindingKind::Baseline,
        _ => caduceus_detect::FindingKind::Ehr,
    };
    Some(caduceus_detect::Finding {
        kind,
        rule_id: rule_id.clone(),
        rule_title: rule_title.clone(),
        severity: event.severity(),
        time: event.time(),
        entity: entity.clone(),
        patients: patients.clone(),
        score: score_milli.map(|s| f64::from(s) / 1000.0),
        explanation: explanation.clone(),
        context: context.clone(),
        tags: tags.clone(),
        events: events.clone(),
    })
}
