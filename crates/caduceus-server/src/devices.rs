//! The device service: inventory, SBOMs, advisories, scans and discovery.
//!
//! - Devices, SBOMs and advisories are kept by the store as the JSON the
//!   `caduceus-devices` crate produces; the advisory index used for matching
//!   is rebuilt in memory from the store after every import.
//! - An advisory imported again with a later revision replaces the current one
//!   (the store keeps every revision's id, time and digest); an older or equal
//!   revision changes nothing.
//! - A scan matches every device (and its model's SBOM) against the index,
//!   scores its risk, keeps the findings, and publishes an OCSF Vulnerability
//!   Finding on the spine for each finding that is new, changed status, or is
//!   no longer produced — so detection, response and compliance see them.
//! - The `devices` consumer reads network flows from the spine and lists
//!   hosts that are not in the inventory as unknown devices to confirm, and
//!   marks known devices that talk outside their segment as exposed.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use caduceus_core::event::{FindingActivity, Payload};
use caduceus_core::{Actor, Severity, Target, Timestamp};
use caduceus_devices::enrich::Enrichment;
use caduceus_devices::inventory::{Cidr, Device};
use caduceus_devices::matching::{Finding, PreparedSbom};
use caduceus_devices::model::{Advisory, FindingStatus, Sbom};
use caduceus_devices::risk::{self, Risk};
use caduceus_devices::scan::{Scanner, compare_revisions, parse_advisory};
use caduceus_spine::Subscription;
use caduceus_store::devices::{AdvisoryRow, DeviceRow, FindingRow, SbomRow, SightingRow};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use tokio::sync::Mutex;

use crate::platform::{Platform, ServerError};

/// The consumer that watches flows for devices.
pub const DEVICES_CONSUMER: &str = "devices";
/// Most flows taken from the spine at once.
const BATCH: usize = 512;
/// How long sightings are gathered before they are written.
const FLUSH: Duration = Duration::from_secs(2);

/// Counters for `/metrics` and the status endpoint.
#[derive(Debug, Default)]
pub struct DevicesCounters {
    pub scans: AtomicU64,
    pub findings_published: AtomicU64,
    pub advisories_imported: AtomicU64,
    pub advisories_refused: AtomicU64,
    pub flows_seen: AtomicU64,
}

/// What a network consumer learned about one host, kept as a sighting's body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SightingHints {
    pub ip: Option<String>,
    /// Services it answered on (`tcp/104`, `tcp/2575`).
    pub ports: Vec<String>,
    /// Application protocols seen (`dicom`, `hl7`, `http`).
    pub protocols: Vec<String>,
    /// DICOM AE title it used.
    pub ae_title: Option<String>,
    /// HL7 sending application it used.
    pub hl7_application: Option<String>,
}

/// Outcome of importing one advisory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportOutcome {
    /// First time this advisory id was seen.
    Created,
    /// A later revision replaced the current one.
    Updated,
    /// The same revision again.
    Unchanged,
    /// An earlier revision than the current one: kept in history only by id, not applied.
    Older,
}

/// One scan's totals.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ScanSummary {
    pub devices: u64,
    pub findings: u64,
    pub affected: u64,
    pub under_investigation: u64,
    pub fixed: u64,
    pub not_affected: u64,
    /// Findings that were new, changed status, or closed.
    pub changed: u64,
    pub milliseconds: u64,
}

/// A device as the store keeps it: the inventory record plus what the service learned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredDevice {
    #[serde(flatten)]
    pub device: Device,
    /// Seen talking to a peer outside its segment.
    #[serde(default)]
    pub exposed: bool,
    /// Risk after the last scan.
    #[serde(default)]
    pub risk: Option<Risk>,
}

pub struct DevicesService {
    platform: Arc<Platform>,
    scanner: RwLock<Arc<Scanner>>,
    /// Serialises imports and scans (one writer at a time; readers never wait).
    write: Mutex<()>,
    pub counters: DevicesCounters,
    closing: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for DevicesService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevicesService").finish_non_exhaustive()
    }
}

fn devices_error(e: impl std::fmt::Display) -> ServerError {
    ServerError::Io(format!("devices: {e}"))
}

impl DevicesService {
    /// Load enrichment files and every stored advisory, and import the configured advisory
    /// directories.
    pub async fn open(platform: &Arc<Platform>) -> Result<Arc<Self>, ServerError> {
        let config = platform.config.devices.clone();
        let mut enrichment = Enrichment::default();
        for file in config.epss_file.iter().chain(config.kev_file.iter()) {
            let path = file.clone();
            let mut loaded = std::mem::take(&mut enrichment);
            let result = tokio::task::spawn_blocking(move || loaded.load_file(&path).map(|n| (n, loaded)))
                .await
                .map_err(devices_error)?;
            match result {
                Ok((n, loaded)) => {
                    tracing::info!(file = %file.display(), entries = n, "devices: enrichment loaded");
                    enrichment = loaded;
                }
                Err(e) => {
                    return Err(devices_error(format!("cannot load {}: {e}", file.display())));
                }
            }
        }
        let service = Arc::new(Self {
            platform: platform.clone(),
            scanner: RwLock::new(Arc::new(Scanner::new(Vec::new(), Enrichment::default(), Vec::new()))),
            write: Mutex::new(()),
            counters: DevicesCounters::default(),
            closing: std::sync::atomic::AtomicBool::new(false),
        });
        service.rebuild(enrichment).await?;
        for dir in &config.advisory_dirs {
            let dir = dir.clone();
            let files = tokio::task::spawn_blocking(move || caduceus_devices::scan::advisory_files(&dir))
                .await
                .map_err(devices_error)?
                .map_err(devices_error)?;
            let mut outcomes: HashMap<&'static str, u64> = HashMap::new();
            for file in files {
                let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
                let bytes = match caduceus_devices::scan::read_capped(&file, caduceus_devices::MAX_ADVISORY_BYTES) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(file = %file.display(), error = %e, "devices: advisory not read");
                        continue;
                    }
                };
                match service.import_advisory_deferred(&bytes, Some(&name)).await {
                    Ok((_, outcome)) => *outcomes.entry(outcome_name(outcome)).or_default() += 1,
                    Err(e) => {
                        *outcomes.entry("refused").or_default() += 1;
                        tracing::warn!(file = %file.display(), error = %e, "devices: advisory refused");
                    }
                }
            }
            tracing::info!(?outcomes, "devices: advisory directory imported");
        }
        if !config.advisory_dirs.is_empty() {
            let enrichment = service.scanner().enrichment.clone();
            service.rebuild(enrichment).await?;
        }
        Ok(service)
    }

    /// Start the discovery consumer and the periodic rescan.
    pub async fn start(self: &Arc<Self>) -> Result<(), ServerError> {
        if self.platform.config.devices.discovery {
            let subscription = self.platform.spine.subscribe(DEVICES_CONSUMER).await?;
            tokio::spawn(self.clone().discover(subscription));
        }
        let minutes = self.platform.config.devices.rescan_minutes;
        if minutes > 0 {
            let service = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(minutes * 60));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if service.closing.load(Ordering::Relaxed) {
                        return;
                    }
                    if let Err(e) = service.scan_all().await {
                        tracing::warn!(error = %e, "devices: periodic scan failed");
                    }
                }
            });
        }
        Ok(())
    }

    pub fn stop(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    pub fn scanner(&self) -> Arc<Scanner> {
        self.scanner.read().map(|s| s.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Rebuild the advisory index from the store.
    async fn rebuild(&self, enrichment: Enrichment) -> Result<(), ServerError> {
        let rows = self.platform.store.all_advisories().await?;
        let scanner = tokio::task::spawn_blocking(move || {
            let advisories: Vec<Advisory> = rows
                .iter()
                .filter_map(|row| match serde_json::from_str::<Advisory>(&row.body) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        tracing::error!(advisory = %row.id, error = %e, "devices: stored advisory unreadable");
                        None
                    }
                })
                .collect();
            Scanner::new(advisories, enrichment, Vec::new())
        })
        .await
        .map_err(devices_error)?;
        let scanner = Arc::new(scanner);
        match self.scanner.write() {
            Ok(mut slot) => *slot = scanner,
            Err(poisoned) => *poisoned.into_inner() = scanner,
        }
        Ok(())
    }

    /// Import one CSAF or OSV document and rebuild the index.
    pub async fn import_advisory(
        &self,
        bytes: &[u8],
        name: Option<&str>,
    ) -> Result<(Advisory, ImportOutcome), DevicesApiError> {
        let result = self.import_advisory_deferred(bytes, name).await?;
        if result.1 != ImportOutcome::Unchanged && result.1 != ImportOutcome::Older {
            let enrichment = self.scanner().enrichment.clone();
            self.rebuild(enrichment).await.map_err(DevicesApiError::Server)?;
        }
        Ok(result)
    }

    async fn import_advisory_deferred(
        &self,
        bytes: &[u8],
        name: Option<&str>,
    ) -> Result<(Advisory, ImportOutcome), DevicesApiError> {
        let owned = bytes.to_vec();
        let name_owned = name.map(str::to_owned);
        let parsed = tokio::task::spawn_blocking(move || parse_advisory(&owned, name_owned.as_deref()))
            .await
            .map_err(|e| DevicesApiError::Server(devices_error(e)))?;
        let advisory = match parsed {
            Ok(a) => a,
            Err(e) => {
                self.counters.advisories_refused.fetch_add(1, Ordering::Relaxed);
                return Err(DevicesApiError::Invalid(e.to_string()));
            }
        };
        let _guard = self.write.lock().await;
        let store = &self.platform.store;
        let current = store.get_advisory(&advisory.id).await.map_err(server)?;
        let outcome = match &current {
            None => ImportOutcome::Created,
            Some(row) => match serde_json::from_str::<Advisory>(&row.body) {
                Ok(existing) => match compare_revisions(&existing, &advisory) {
                    std::cmp::Ordering::Less => ImportOutcome::Updated,
                    std::cmp::Ordering::Equal => ImportOutcome::Unchanged,
                    std::cmp::Ordering::Greater => ImportOutcome::Older,
                },
                Err(_) => ImportOutcome::Updated,
            },
        };
        if matches!(outcome, ImportOutcome::Created | ImportOutcome::Updated) {
            let body = serde_json::to_string(&advisory).map_err(|e| DevicesApiError::Server(devices_error(e)))?;
            let row = AdvisoryRow {
                id: advisory.id.clone(),
                source: format!("{:?}", advisory.source).to_lowercase(),
                revision: advisory.revision.clone(),
                modified: advisory.modified.clone(),
                sha256: hex::encode(sha2::Sha256::digest(bytes)),
                body,
                imported: self.platform.clock.now(),
            };
            store.put_advisory(&row).await.map_err(server)?;
            self.counters.advisories_imported.fetch_add(1, Ordering::Relaxed);
        }
        Ok((advisory, outcome))
    }

    /// Validate and store one device.
    pub async fn put_device(&self, device: Device) -> Result<StoredDevice, DevicesApiError> {
        let device = device.normalise();
        device.validate().map_err(|e| DevicesApiError::Invalid(e.to_string()))?;
        let now = self.platform.clock.now();
        let previous = self.get_device(&device.id).await?;
        let stored = StoredDevice {
            device,
            exposed: previous.as_ref().is_some_and(|p| p.exposed),
            risk: previous.and_then(|p| p.risk),
        };
        self.store_device(&stored, now).await?;
        Ok(stored)
    }

    async fn store_device(&self, stored: &StoredDevice, now: Timestamp) -> Result<(), DevicesApiError> {
        let body = serde_json::to_string(stored).map_err(|e| DevicesApiError::Server(devices_error(e)))?;
        let row = DeviceRow { id: stored.device.id.clone(), body, created: now, updated: now };
        self.platform.store.put_device(&row).await.map_err(server)
    }

    /// Import an inventory CSV: every row, or none.
    pub async fn import_csv(&self, bytes: &[u8]) -> Result<(usize, Vec<String>), DevicesApiError> {
        let import = caduceus_devices::inventory::read_csv(bytes).map_err(|errors| {
            let lines: Vec<String> = errors.iter().take(20).map(|e| format!("line {}: {}", e.line, e.reason)).collect();
            DevicesApiError::Invalid(format!("the inventory was not imported: {}", lines.join("; ")))
        })?;
        let now = self.platform.clock.now();
        let existing: HashMap<String, StoredDevice> = {
            let mut map = HashMap::new();
            for device in &import.devices {
                if let Some(stored) = self.get_device(&device.id).await? {
                    map.insert(device.id.clone(), stored);
                }
            }
            map
        };
        let mut rows = Vec::with_capacity(import.devices.len());
        for device in import.devices {
            let previous = existing.get(&device.id);
            let stored = StoredDevice {
                device,
                exposed: previous.is_some_and(|p| p.exposed),
                risk: previous.and_then(|p| p.risk.clone()),
            };
            let body = serde_json::to_string(&stored).map_err(|e| DevicesApiError::Server(devices_error(e)))?;
            rows.push(DeviceRow { id: stored.device.id.clone(), body, created: now, updated: now });
        }
        let count = rows.len();
        self.platform.store.put_devices(&rows).await.map_err(server)?;
        Ok((count, import.ignored_columns))
    }

    pub async fn get_device(&self, id: &str) -> Result<Option<StoredDevice>, DevicesApiError> {
        let row = self.platform.store.get_device(id).await.map_err(server)?;
        row.map(|r| parse_device(&r)).transpose()
    }

    pub async fn list_devices(&self, after: Option<&str>, limit: u32) -> Result<Vec<StoredDevice>, DevicesApiError> {
        let rows = self.platform.store.list_devices(after, limit).await.map_err(server)?;
        rows.iter().map(parse_device).collect()
    }

    pub async fn delete_device(&self, id: &str) -> Result<bool, DevicesApiError> {
        self.platform.store.delete_device(id).await.map_err(server)
    }

    /// Attach an SBOM to a manufacturer, model and version.
    pub async fn attach_sbom(
        &self,
        manufacturer: &str,
        model: &str,
        version: &str,
        bytes: &[u8],
    ) -> Result<(SbomRow, Sbom), DevicesApiError> {
        for (field, value) in [("manufacturer", manufacturer), ("model", model), ("version", version)] {
            if value.trim().is_empty() || value.chars().count() > 256 {
                return Err(DevicesApiError::Invalid(format!("`{field}` must be 1 to 256 characters")));
            }
        }
        let owned = bytes.to_vec();
        let sbom = tokio::task::spawn_blocking(move || {
            if caduceus_devices::lockfile::is_cargo_lock(&owned) {
                caduceus_devices::lockfile::parse_cargo_lock(&owned)
            } else {
                caduceus_devices::sbom::parse(&owned)
            }
        })
        .await
        .map_err(|e| DevicesApiError::Server(devices_error(e)))?
        .map_err(|e| DevicesApiError::Invalid(e.to_string()))?;
        let body = serde_json::to_string(&sbom).map_err(|e| DevicesApiError::Server(devices_error(e)))?;
        let key = sbom_key(manufacturer, model, version);
        let row = SbomRow {
            id: key,
            manufacturer: manufacturer.trim().to_owned(),
            model: model.trim().to_owned(),
            version: version.trim().to_owned(),
            format: format!("{:?}", sbom.format).to_lowercase(),
            sha256: hex::encode(sha2::Sha256::digest(bytes)),
            body,
            created: self.platform.clock.now(),
        };
        self.platform.store.put_sbom(&row).await.map_err(server)?;
        Ok((row, sbom))
    }

    /// The SBOM attached to a device's model and version, if any.
    async fn sbom_for(&self, device: &Device) -> Result<Option<Sbom>, DevicesApiError> {
        let Some(version) = &device.version else { return Ok(None) };
        let row = self.platform.store.get_sbom(&sbom_key(&device.manufacturer, &device.model, version)).await;
        match row.map_err(server)? {
            Some(row) => serde_json::from_str(&row.body)
                .map(Some)
                .map_err(|e| DevicesApiError::Server(devices_error(format!("stored SBOM {}: {e}", row.id)))),
            None => Ok(None),
        }
    }

    /// Findings and risk for one device, without storing anything.
    pub async fn assess(&self, stored: &StoredDevice) -> Result<(Vec<Finding>, Risk), DevicesApiError> {
        let sbom = self.sbom_for(&stored.device).await?;
        let scanner = self.scanner();
        let device = stored.device.clone();
        let exposed = stored.exposed;
        let today = today(self.platform.clock.now());
        tokio::task::spawn_blocking(move || {
            let prepared = sbom.as_ref().map(PreparedSbom::new);
            let findings = scanner.scan_device(&device, prepared.as_ref());
            let risk = risk::score(&device, &findings, risk::Context { exposed, today });
            (findings, risk)
        })
        .await
        .map_err(|e| DevicesApiError::Server(devices_error(e)))
    }

    /// Scan every device: keep findings, score risk, publish changes on the spine.
    pub async fn scan_all(&self) -> Result<ScanSummary, DevicesApiError> {
        let started = std::time::Instant::now();
        let _guard = self.write.lock().await;
        let mut summary = ScanSummary::default();
        let mut after: Option<String> = None;
        loop {
            let page = self.list_devices(after.as_deref(), 1000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.device.id.clone());
            for mut stored in page {
                let (findings, risk) = self.assess(&stored).await?;
                summary.devices += 1;
                summary.changed += self.keep_findings(&stored.device, &findings, &risk).await?;
                for f in &findings {
                    summary.findings += 1;
                    match f.status {
                        FindingStatus::Affected => summary.affected += 1,
                        FindingStatus::UnderInvestigation => summary.under_investigation += 1,
                        FindingStatus::Fixed => summary.fixed += 1,
                        FindingStatus::NotAffected => summary.not_affected += 1,
                    }
                }
                stored.risk = Some(risk);
                self.store_device(&stored, self.platform.clock.now()).await?;
            }
        }
        summary.milliseconds = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.counters.scans.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            devices = summary.devices,
            findings = summary.findings,
            affected = summary.affected,
            changed = summary.changed,
            "devices: scan finished"
        );
        Ok(summary)
    }

    /// Store a device's findings; publish a Vulnerability Finding for each new, changed or
    /// closed one. Returns how many changed.
    async fn keep_findings(&self, device: &Device, findings: &[Finding], risk: &Risk) -> Result<u64, DevicesApiError> {
        let store = &self.platform.store;
        let before = store.list_findings(Some(&device.id), None, 10_000).await.map_err(server)?;
        let now = self.platform.clock.now();
        let mut keep = Vec::with_capacity(findings.len());
        let mut changed = 0;
        for finding in findings {
            let key = finding_key(finding);
            let body = serde_json::to_string(finding).map_err(|e| DevicesApiError::Server(devices_error(e)))?;
            let row = FindingRow {
                key: key.clone(),
                device_id: device.id.clone(),
                advisory_id: finding.advisory.clone(),
                status: finding.status.as_str().to_owned(),
                body,
                first_seen: now,
                updated: now,
            };
            let previous = store.put_finding(&row).await.map_err(server)?;
            keep.push(key);
            let activity = match previous.as_deref() {
                None => FindingActivity::Created,
                Some(p) if p != finding.status.as_str() => FindingActivity::Updated,
                Some(_) => continue,
            };
            changed += 1;
            self.publish_finding(device, finding, activity, risk.score).await;
        }
        let kept: HashSet<&str> = keep.iter().map(String::as_str).collect();
        for gone in before.iter().filter(|row| !kept.contains(row.key.as_str())) {
            if let Ok(finding) = serde_json::from_str::<Finding>(&gone.body) {
                changed += 1;
                self.publish_finding(device, &finding, FindingActivity::Closed, risk.score).await;
            }
        }
        store.delete_findings_except(&device.id, &keep).await.map_err(server)?;
        Ok(changed)
    }

    async fn publish_finding(&self, device: &Device, finding: &Finding, activity: FindingActivity, risk: u32) {
        let severity = match (activity, finding.status, finding.cvss.as_ref().map(|c| c.base_score)) {
            (FindingActivity::Closed, ..) | (_, FindingStatus::Fixed | FindingStatus::NotAffected, _) => {
                Severity::Informational
            }
            (_, _, Some(s)) if s >= 9.0 || finding.kev => Severity::Critical,
            (_, _, Some(s)) if s >= 7.0 => Severity::High,
            (_, _, Some(s)) if s >= 4.0 => Severity::Medium,
            _ => Severity::Low,
        };
        let explanation = format!(
            "{} matched {} ({}) by {}: {} = {}; {}",
            device.id,
            finding.advisory,
            finding.vulnerability,
            finding.provenance.rule.as_str(),
            finding.provenance.subject_field,
            finding.provenance.subject_value,
            finding.provenance.version_check
        );
        let payload = Payload::VulnerabilityFinding {
            activity,
            device: device.id.clone(),
            component: finding.component.as_ref().map(|c| c.purl.clone().unwrap_or_else(|| c.name.clone())),
            advisory: finding.advisory.clone(),
            vulnerability: finding.vulnerability.clone(),
            cves: finding.cves.iter().take(32).cloned().collect(),
            status: finding.status.as_str().to_owned(),
            cvss_tenths: finding.cvss.as_ref().map(|c| (c.base_score * 10.0).round().clamp(0.0, 100.0) as u32),
            kev: finding.kev,
            risk: risk.min(100),
            explanation: explanation.chars().take(4000).collect(),
        };
        let target = Some(Target { kind: "device".into(), uid: device.id.clone() });
        let message = format!("vulnerability finding {}", finding.status.as_str());
        match self.platform.event(severity, Actor::system(), target, &message, payload) {
            Ok(event) => match self.platform.spine.publish(event).await {
                Ok(_) => {
                    self.counters.findings_published.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!(error = %e, "devices: finding not published"),
            },
            Err(e) => tracing::warn!(error = %e, "devices: finding not representable as an event"),
        }
    }

    /// Read network flows from the spine: unknown hosts become sightings, known devices that
    /// talk outside their segment become exposed.
    async fn discover(self: Arc<Self>, mut subscription: Box<dyn Subscription>) {
        let mut pending: HashMap<String, (Timestamp, Timestamp, u64, SightingHints)> = HashMap::new();
        let mut last_flush = std::time::Instant::now();
        let mut known: Option<(std::time::Instant, Inventory)> = None;
        loop {
            let next = tokio::time::timeout(FLUSH, subscription.next()).await;
            let stored = match next {
                Ok(Ok(Some(stored))) => Some(stored),
                Ok(Ok(None)) => return,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "devices: reading the spine failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    None
                }
                Err(_) => None,
            };
            if let Some(stored) = &stored
                && let Payload::LogRecord { category: Some(category), fields, .. } = stored.event.payload()
                && category == "network_connection"
            {
                self.counters.flows_seen.fetch_add(1, Ordering::Relaxed);
                if known.as_ref().is_none_or(|(at, _)| at.elapsed() > Duration::from_secs(30)) {
                    match self.inventory().await {
                        Ok(inventory) => known = Some((std::time::Instant::now(), inventory)),
                        Err(e) => tracing::warn!(error = %e, "devices: inventory not read"),
                    }
                }
                if let Some((_, inventory)) = &mut known {
                    let time = stored.event.time();
                    for (key, hints, peer) in hosts_of(fields) {
                        if let Some(id) = inventory.by_ip.get(&key).cloned() {
                            if let (Some(peer), Some(segment)) = (peer, inventory.segments.get(&id))
                                && !segment.contains(peer)
                                && inventory.exposed.insert(id.clone())
                            {
                                self.mark_exposed(&id).await;
                            }
                            continue;
                        }
                        let entry = pending.entry(key).or_insert_with(|| (time, time, 0, SightingHints::default()));
                        entry.0 = entry.0.min(time);
                        entry.1 = entry.1.max(time);
                        entry.2 += 1;
                        merge_hints(&mut entry.3, hints);
                    }
                }
            }
            if let Some(stored) = &stored
                && let Err(e) = subscription.ack(stored.seq).await
            {
                tracing::warn!(error = %e, "devices: ack failed");
            }
            if (!pending.is_empty() && last_flush.elapsed() >= FLUSH) || pending.len() >= BATCH {
                let rows: Vec<SightingRow> = pending
                    .drain()
                    .filter_map(|(key, (first, last, flows, hints))| {
                        Some(SightingRow {
                            key,
                            first_seen: first,
                            last_seen: last,
                            flows,
                            body: serde_json::to_string(&hints).ok()?,
                        })
                    })
                    .collect();
                if let Err(e) = self.platform.store.record_sightings(&rows).await {
                    tracing::warn!(error = %e, "devices: sightings not recorded");
                }
                last_flush = std::time::Instant::now();
            }
            if self.closing.load(Ordering::Relaxed) && stored.is_none() {
                return;
            }
        }
    }

    async fn mark_exposed(&self, id: &str) {
        let Ok(Some(mut stored)) = self.get_device(id).await else { return };
        if stored.exposed {
            return;
        }
        stored.exposed = true;
        if let Err(e) = self.store_device(&stored, self.platform.clock.now()).await {
            tracing::warn!(error = %e, "devices: exposure not recorded");
        }
    }

    async fn inventory(&self) -> Result<Inventory, DevicesApiError> {
        let mut inventory = Inventory::default();
        let mut after: Option<String> = None;
        loop {
            let page = self.list_devices(after.as_deref(), 1000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.device.id.clone());
            for stored in page {
                let d = &stored.device;
                if stored.exposed {
                    inventory.exposed.insert(d.id.clone());
                }
                if let Some(segment) = d.segment.as_deref().and_then(Cidr::parse) {
                    inventory.segments.insert(d.id.clone(), segment);
                }
                if let Some(ip) = &d.ip {
                    inventory.by_ip.insert(format!("ip:{ip}"), d.id.clone());
                }
            }
        }
        Ok(inventory)
    }

    pub async fn sightings(&self, limit: u32) -> Result<Vec<SightingRow>, DevicesApiError> {
        self.platform.store.list_sightings(limit).await.map_err(server)
    }
}

/// The inventory as discovery needs it.
#[derive(Default)]
struct Inventory {
    by_ip: HashMap<String, String>,
    segments: HashMap<String, Cidr>,
    exposed: HashSet<String>,
}

/// The two ends of a flow: each end's key, what it showed, and its peer's address.
fn hosts_of(fields: &serde_json::Map<String, serde_json::Value>) -> Vec<(String, SightingHints, Option<IpAddr>)> {
    let ip = |k: &str| fields.get(k).and_then(|v| v.as_str()).and_then(|s| s.parse::<IpAddr>().ok());
    let (Some(src), Some(dst)) = (ip("src_ip"), ip("dst_ip")) else { return Vec::new() };
    let proto = fields.get("proto").and_then(|v| v.as_str()).unwrap_or("ip");
    let app = fields.get("app_proto").and_then(|v| v.as_str()).map(str::to_owned);
    let dst_port = fields.get("dst_port").and_then(serde_json::Value::as_u64);
    let dicom = fields.get("dicom").and_then(|v| v.as_object());
    let hl7 = fields.get("hl7").and_then(|v| v.as_object());
    let text = |o: Option<&serde_json::Map<String, serde_json::Value>>, k: &str| {
        o.and_then(|o| o.get(k)).and_then(|v| v.as_str()).map(|s| s.chars().take(64).collect::<String>())
    };
    let client = SightingHints {
        ip: Some(src.to_string()),
        ports: Vec::new(),
        protocols: app.iter().cloned().collect(),
        ae_title: text(dicom, "calling_ae"),
        hl7_application: text(hl7, "sending_application"),
    };
    let server = SightingHints {
        ip: Some(dst.to_string()),
        ports: dst_port.map(|p| format!("{proto}/{p}")).into_iter().collect(),
        protocols: app.into_iter().collect(),
        ae_title: text(dicom, "called_ae"),
        hl7_application: text(hl7, "receiving_application"),
    };
    vec![(format!("ip:{src}"), client, Some(dst)), (format!("ip:{dst}"), server, Some(src))]
}

fn merge_hints(into: &mut SightingHints, from: SightingHints) {
    for port in from.ports {
        if !into.ports.contains(&port) && into.ports.len() < 32 {
            into.ports.push(port);
        }
    }
    for protocol in from.protocols {
        if !into.protocols.contains(&protocol) && into.protocols.len() < 16 {
            into.protocols.push(protocol);
        }
    }
    into.ip = into.ip.take().or(from.ip);
    into.ae_title = into.ae_title.take().or(from.ae_title);
    into.hl7_application = into.hl7_application.take().or(from.hl7_application);
}

/// A finding's store key: short and stable (the parts can be long).
fn finding_key(finding: &Finding) -> String {
    let digest = sha2::Sha256::digest(finding.key().as_bytes());
    hex::encode(digest.get(..16).unwrap_or_default())
}

/// An SBOM's id from its manufacturer, model and version (normalised as matching does).
pub fn sbom_key(manufacturer: &str, model: &str, version: &str) -> String {
    let joined = format!(
        "{}|{}|{}",
        caduceus_devices::matching::normalise_vendor(manufacturer),
        caduceus_devices::matching::normalise_name(model),
        version.trim()
    );
    hex::encode(sha2::Sha256::digest(joined.as_bytes()).get(..16).unwrap_or_default())
}

fn today(now: Timestamp) -> (i32, u8, u8) {
    let millis = now.as_millis();
    time::OffsetDateTime::from_unix_timestamp(millis.div_euclid(1000))
        .map(|t| (t.year(), u8::from(t.month()), t.day()))
        .unwrap_or((1970, 1, 1))
}

fn parse_device(row: &DeviceRow) -> Result<StoredDevice, DevicesApiError> {
    serde_json::from_str(&row.body)
        .map_err(|e| DevicesApiError::Server(devices_error(format!("stored device {}: {e}", row.id))))
}

fn outcome_name(outcome: ImportOutcome) -> &'static str {
    match outcome {
        ImportOutcome::Created => "created",
        ImportOutcome::Updated => "updated",
        ImportOutcome::Unchanged => "unchanged",
        ImportOutcome::Older => "older",
    }
}

fn server(e: caduceus_store::StoreError) -> DevicesApiError {
    match e {
        caduceus_store::StoreError::Invalid(m) => DevicesApiError::Invalid(m),
        other => DevicesApiError::Server(ServerError::Store(other)),
    }
}

/// The service's errors, as the routes turn them into responses.
#[derive(Debug, thiserror::Error)]
pub enum DevicesApiError {
    /// The input is malformed or breaks a rule (422).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Server(ServerError),
}
