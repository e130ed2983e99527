//! What detection keeps: Sigma rules uploaded through the API, whether each
//! rule loaded from a directory is enabled, alerts with their triage state,
//! and suppressions. The store decides nothing about what fires; it merges a
//! finding into its alert atomically, applies suppressions while it does,
//! and enforces which triage step may follow which. Patients appear only as
//! pseudonymous ids.

use async_trait::async_trait;
use caduceus_core::{Severity, Timestamp};

use crate::Result;

/// Most spine seqs an alert keeps of the events that made it fire (its
/// `count` keeps counting past this).
pub const MAX_ALERT_EVENTS: usize = 1000;
/// Most spine seqs of Detection Finding events an alert keeps.
pub const MAX_ALERT_FINDINGS: usize = 1000;
/// Most patients an alert lists.
pub const MAX_ALERT_PATIENTS: usize = 1000;
/// Most tags an alert keeps.
pub const MAX_ALERT_TAGS: usize = 64;
/// Most context lines an alert keeps.
pub const MAX_ALERT_CONTEXT: usize = 32;
/// Largest page of alerts or suppressions.
pub const MAX_PAGE: u32 = 500;

/// A Sigma rule uploaded through the API, as its YAML text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRow {
    pub id: String,
    pub title: String,
    pub yaml: String,
    pub enabled: bool,
    pub created_by: String,
    pub created: Timestamp,
    pub updated: Timestamp,
}

/// Whether a rule loaded from a directory is enabled, as set through the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleStateRow {
    pub rule_id: String,
    pub enabled: bool,
    pub updated_by: String,
    pub updated: Timestamp,
}

/// Where an alert is in triage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertStatus {
    /// New, nobody has looked at it.
    Open,
    /// Someone is looking at it; new findings still join it.
    Acknowledged,
    /// Done with; a new finding opens a new alert.
    Closed,
    /// Silenced by a suppression: kept, but not worked on.
    Suppressed,
}

impl AlertStatus {
    pub const ALL: [AlertStatus; 4] =
        [AlertStatus::Open, AlertStatus::Acknowledged, AlertStatus::Closed, AlertStatus::Suppressed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Acknowledged => "acknowledged",
            Self::Closed => "closed",
            Self::Suppressed => "suppressed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Who did a triage step, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub by: String,
    pub at: Timestamp,
}

/// How an alert was suppressed: by hand (`POST .../suppress`) or because a
/// suppression was active when its finding came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressStamp {
    pub by: String,
    pub at: Timestamp,
    pub reason: String,
    pub until: Timestamp,
}

/// One alert: the findings of one rule about one entity within the group
/// window, de-duplicated.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    /// A UUID.
    pub id: String,
    pub rule_id: String,
    pub rule_title: String,
    /// `sigma`, `correlation` or `ehr`.
    pub kind: String,
    /// The highest severity of its findings.
    pub severity: Severity,
    pub entity: Option<String>,
    /// Findings with the same key (and time within the window) join this alert.
    pub group_key: String,
    pub status: AlertStatus,
    pub assignee: Option<String>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// How many findings it groups.
    pub count: u64,
    /// The highest anomaly score of its findings, where they score.
    pub score: Option<f64>,
    /// The latest finding's explanation.
    pub explanation: String,
    pub context: Vec<String>,
    pub tags: Vec<String>,
    pub patients: Vec<String>,
    /// Spine seqs of the events that made it fire (at most [`MAX_ALERT_EVENTS`]).
    pub events: Vec<u64>,
    /// Spine seqs of its Detection Finding events (at most [`MAX_ALERT_FINDINGS`]).
    pub findings: Vec<u64>,
    pub created: Timestamp,
    pub updated: Timestamp,
    pub acknowledged: Option<Stamp>,
    pub assigned: Option<Stamp>,
    pub closed: Option<Stamp>,
    pub close_reason: Option<String>,
    pub suppressed: Option<SuppressStamp>,
}

/// A finding to store as an alert, or to merge into its group's alert.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    /// The id the alert gets if a new one is created: the uid of the
    /// finding's Detection Finding event, so that storing the same finding
    /// again (a replay after a crash) finds it instead of duplicating it.
    pub id: String,
    pub rule_id: String,
    pub rule_title: String,
    pub kind: String,
    pub severity: Severity,
    pub entity: Option<String>,
    pub group_key: String,
    /// When the finding happened.
    pub time: Timestamp,
    pub score: Option<f64>,
    pub explanation: String,
    pub context: Vec<String>,
    pub tags: Vec<String>,
    pub patients: Vec<String>,
    pub events: Vec<u64>,
    /// The spine seq of the finding's Detection Finding event, once published.
    pub finding_seq: Option<u64>,
}

/// What became of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    /// It opened a new alert.
    Opened,
    /// It joined an open or acknowledged alert (or had already been stored).
    Grouped,
    /// A suppression matched: it opened or joined a suppressed alert.
    Suppressed,
}

/// What [`Detections::upsert_alert`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertUpsert {
    /// The alert as it is now.
    pub alert: AlertRow,
    pub outcome: Upsert,
    /// A new alert (rather than a merge into an existing one).
    pub created: bool,
}

/// Which alerts to list. Alerts come newest activity first (`last_seen`,
/// then id, descending); `after` continues from the last alert of the
/// previous page. An alert that gains a finding while someone pages moves to
/// the front: a listing is a snapshot per page, not of the whole set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AlertFilter {
    pub status: Option<AlertStatus>,
    /// At least this severity.
    pub severity_min: Option<Severity>,
    pub rule_id: Option<String>,
    pub entity: Option<String>,
    pub kind: Option<String>,
    /// Active at or after this time (`last_seen >= since`).
    pub since: Option<Timestamp>,
    /// Active at or before this time (`first_seen <= until`).
    pub until: Option<Timestamp>,
    /// `(last_seen, id)` of the last alert already seen.
    pub after: Option<(Timestamp, String)>,
    /// 1 to [`MAX_PAGE`].
    pub limit: u32,
}

/// A triage step on an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertAction {
    /// Open → acknowledged. Acknowledging again changes nothing.
    Acknowledge { by: String },
    /// Give the alert to someone (`None`: to nobody). Not on a closed alert.
    Assign { by: String, assignee: Option<String> },
    /// Close it, saying why. Not twice.
    Close { by: String, reason: String },
    /// Suppress it and, until `until`, every new finding of its rule about
    /// its entity: a suppression with id `suppression_id` is created in the
    /// same transaction. An alert without an entity suppresses its rule for
    /// every entity. Not on a closed alert.
    Suppress { by: String, reason: String, until: Timestamp, suppression_id: String },
}

/// While a suppression lasts, new findings it matches are stored as
/// suppressed alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressionRow {
    pub id: String,
    /// `None`: any rule.
    pub rule_id: Option<String>,
    /// `None`: any entity.
    pub entity: Option<String>,
    pub reason: String,
    pub created_by: String,
    pub created: Timestamp,
    pub expires: Timestamp,
}

#[async_trait]
pub trait Detections: Send + Sync {
    /// Store an uploaded rule, or replace the one with its id (keeping who
    /// created it and when).
    async fn put_rule(&self, rule: &RuleRow) -> Result<()>;
    /// Uploaded rules, by id.
    async fn list_rules(&self) -> Result<Vec<RuleRow>>;
    async fn get_rule(&self, id: &str) -> Result<Option<RuleRow>>;
    async fn delete_rule(&self, id: &str) -> Result<bool>;
    /// Enable or disable a rule: an uploaded rule's own flag, or for any
    /// other id (a rule from a directory) the remembered state.
    async fn set_rule_enabled(&self, id: &str, enabled: bool, by: &str, at: Timestamp) -> Result<()>;
    /// The remembered state of rules loaded from directories.
    async fn rule_enabled_overrides(&self) -> Result<Vec<RuleStateRow>>;

    /// Store a finding, atomically: if a suppression matching its rule and
    /// entity is active at `now`, it joins (or starts) its group's suppressed
    /// alert; otherwise it joins its group's open or acknowledged alert whose
    /// `last_seen` is within `window_ms` of the finding, or starts a new open
    /// alert. Joining counts it, widens first/last seen, keeps the highest
    /// severity and score, the latest explanation and context, and adds its
    /// tags, patients and event seqs up to the caps. A finding stored before
    /// (the same `finding_seq` in the alert, or an alert with its `id`)
    /// changes nothing: replaying the spine after a crash is safe.
    async fn upsert_alert(&self, finding: &NewAlert, window_ms: i64, now: Timestamp) -> Result<AlertUpsert>;
    async fn list_alerts(&self, filter: &AlertFilter) -> Result<Vec<AlertRow>>;
    async fn get_alert(&self, id: &str) -> Result<Option<AlertRow>>;
    /// Apply a triage step; `None` if there is no such alert, and a
    /// [`crate::StoreError::Conflict`] naming the status if the step is not
    /// allowed from it.
    async fn update_alert(&self, id: &str, action: &AlertAction, at: Timestamp) -> Result<Option<AlertRow>>;
    /// Record the Detection Finding event of a stored finding (up to the cap).
    async fn add_alert_finding(&self, id: &str, finding_seq: u64) -> Result<bool>;

    async fn add_suppression(&self, suppression: &SuppressionRow) -> Result<()>;
    /// Suppressions, newest first; with `active_at`, only those not expired then.
    async fn list_suppressions(&self, active_at: Option<Timestamp>, limit: u32) -> Result<Vec<SuppressionRow>>;
    async fn get_suppression(&self, id: &str) -> Result<Option<SuppressionRow>>;
    async fn delete_suppression(&self, id: &str) -> Result<bool>;
    /// The suppression matching a rule and entity at `now` that lasts
    /// longest, if any.
    async fn active_suppression(
        &self,
        rule_id: &str,
        entity: Option<&str>,
        now: Timestamp,
    ) -> Result<Option<SuppressionRow>>;
}

/// `extra` added to `into` without repeats, up to `cap` items.
pub(crate) fn merge_capped<T: PartialEq + Clone>(into: &mut Vec<T>, extra: &[T], cap: usize) {
    for item in extra {
        if into.len() >= cap {
            break;
        }
        if !into.contains(item) {
            into.push(item.clone());
        }
    }
}

/// A finding merged into an alert (the alert's triage state is untouched).
pub(crate) fn merge_into(alert: &mut AlertRow, finding: &NewAlert, now: Timestamp) {
    alert.count = alert.count.saturating_add(1);
    alert.first_seen = alert.first_seen.min(finding.time);
    if finding.time >= alert.last_seen {
        // The latest finding explains the alert.
        alert.rule_title.clone_from(&finding.rule_title);
        alert.explanation.clone_from(&finding.explanation);
        alert.context = finding.context.iter().take(MAX_ALERT_CONTEXT).cloned().collect();
    }
    alert.last_seen = alert.last_seen.max(finding.time);
    alert.severity = alert.severity.max(finding.severity);
    alert.score = match (alert.score, finding.score) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    merge_capped(&mut alert.tags, &finding.tags, MAX_ALERT_TAGS);
    merge_capped(&mut alert.patients, &finding.patients, MAX_ALERT_PATIENTS);
    merge_capped(&mut alert.events, &finding.events, MAX_ALERT_EVENTS);
    if let Some(seq) = finding.finding_seq {
        merge_capped(&mut alert.findings, &[seq], MAX_ALERT_FINDINGS);
    }
    alert.updated = now;
}

/// A new alert from its first finding.
pub(crate) fn new_alert(finding: &NewAlert, suppression: Option<&SuppressionRow>, now: Timestamp) -> AlertRow {
    let mut alert = AlertRow {
        id: finding.id.clone(),
        rule_id: finding.rule_id.clone(),
        rule_title: finding.rule_title.clone(),
        kind: finding.kind.clone(),
        severity: finding.severity,
        entity: finding.entity.clone(),
        group_key: finding.group_key.clone(),
        status: if suppression.is_some() { AlertStatus::Suppressed } else { AlertStatus::Open },
        assignee: None,
        first_seen: finding.time,
        last_seen: finding.time,
        count: 1,
        score: finding.score,
        explanation: finding.explanation.clone(),
        context: finding.context.iter().take(MAX_ALERT_CONTEXT).cloned().collect(),
        tags: Vec::new(),
        patients: Vec::new(),
        events: Vec::new(),
        findings: finding.finding_seq.into_iter().collect(),
        created: now,
        updated: now,
        acknowledged: None,
        assigned: None,
        closed: None,
        close_reason: None,
        suppressed: suppression.map(|s| SuppressStamp {
            by: s.created_by.clone(),
            at: now,
            reason: s.reason.clone(),
            until: s.expires,
        }),
    };
    merge_capped(&mut alert.tags, &finding.tags, MAX_ALERT_TAGS);
    merge_capped(&mut alert.patients, &finding.patients, MAX_ALERT_PATIENTS);
    merge_capped(&mut alert.events, &finding.events, MAX_ALERT_EVENTS);
    alert
}

/// The SQL, written once for both backends (see `common.rs` for why a macro).
macro_rules! impl_detections {
    // `$begin` starts a write transaction (SQLite's takes the write lock at
    // once, which serialises upserts). `$group_lock` is run first in an
    // upsert's transaction with the group key bound: PostgreSQL takes a
    // transaction-scoped advisory lock on it, so two findings of one group
    // never both create an alert; SQLite needs nothing more.
    ($store:ty, $row:ty, $begin:expr, $group_lock:expr) => {
        const RULE_COLUMNS: &str = "id, title, yaml, enabled, created_by, created_ms, updated_ms";
        const ALERT_COLUMNS: &str = "id, rule_id, rule_title, kind, severity, entity, group_key, status, assignee, \
             first_seen_ms, last_seen_ms, count, score, explanation, context, tags, patients, events, findings, \
             created_ms, updated_ms, acknowledged_by, acknowledged_ms, assigned_by, assigned_ms, closed_by, \
             closed_ms, close_reason, suppressed_by, suppressed_ms, suppress_reason, suppressed_until_ms";
        const SUPPRESSION_COLUMNS: &str = "id, rule_id, entity, reason, created_by, created_ms, expires_ms";

        fn rule_from_row(row: &$row) -> $crate::Result<$crate::detect::RuleRow> {
            use sqlx::Row;
            let e = $crate::StoreError::from_sqlx;
            Ok($crate::detect::RuleRow {
                id: row.try_get("id").map_err(e)?,
                title: row.try_get("title").map_err(e)?,
                yaml: row.try_get("yaml").map_err(e)?,
                enabled: row.try_get("enabled").map_err(e)?,
                created_by: row.try_get("created_by").map_err(e)?,
                created: caduceus_core::Timestamp(row.try_get("created_ms").map_err(e)?),
                updated: caduceus_core::Timestamp(row.try_get("updated_ms").map_err(e)?),
            })
        }

        fn suppression_from_row(row: &$row) -> $crate::Result<$crate::detect::SuppressionRow> {
            use sqlx::Row;
            let e = $crate::StoreError::from_sqlx;
            Ok($crate::detect::SuppressionRow {
                id: row.try_get("id").map_err(e)?,
                rule_id: row.try_get("rule_id").map_err(e)?,
                entity: row.try_get("entity").map_err(e)?,
                reason: row.try_get("reason").map_err(e)?,
                created_by: row.try_get("created_by").map_err(e)?,
                created: caduceus_core::Timestamp(row.try_get("created_ms").map_err(e)?),
                expires: caduceus_core::Timestamp(row.try_get("expires_ms").map_err(e)?),
            })
        }

        fn json_strings(row: &$row, column: &str) -> $crate::Result<Vec<String>> {
            use sqlx::Row;
            let text: String = row.try_get(column).map_err($crate::StoreError::from_sqlx)?;
            serde_json::from_str(&text).map_err(|err| $crate::StoreError::Corrupt(format!("alert {column}: {err}")))
        }

        fn json_seqs(row: &$row, column: &str) -> $crate::Result<Vec<u64>> {
            use sqlx::Row;
            let text: String = row.try_get(column).map_err($crate::StoreError::from_sqlx)?;
            serde_json::from_str(&text).map_err(|err| $crate::StoreError::Corrupt(format!("alert {column}: {err}")))
        }

        fn strings_json(items: &[String]) -> $crate::Result<String> {
            serde_json::to_string(items).map_err(|err| $crate::StoreError::Invalid(err.to_string()))
        }

        fn seqs_json(items: &[u64]) -> $crate::Result<String> {
            serde_json::to_string(items).map_err(|err| $crate::StoreError::Invalid(err.to_string()))
        }

        fn stamp(row: &$row, by: &str, at: &str) -> $crate::Result<Option<$crate::detect::Stamp>> {
            use sqlx::Row;
            let e = $crate::StoreError::from_sqlx;
            let by: Option<String> = row.try_get(by).map_err(e)?;
            let at: Option<i64> = row.try_get(at).map_err(e)?;
            Ok(by.zip(at).map(|(by, at)| $crate::detect::Stamp { by, at: caduceus_core::Timestamp(at) }))
        }

        fn alert_from_row(row: &$row) -> $crate::Result<$crate::detect::AlertRow> {
            use sqlx::Row;
            let e = $crate::StoreError::from_sqlx;
            let severity: i64 = row.try_get("severity").map_err(e)?;
            let severity = u8::try_from(severity)
                .ok()
                .and_then(|s| caduceus_core::Severity::try_from(s).ok())
                .ok_or_else(|| $crate::StoreError::Corrupt(format!("alert severity {severity}")))?;
            let status: String = row.try_get("status").map_err(e)?;
            let status = $crate::detect::AlertStatus::parse(&status)
                .ok_or_else(|| $crate::StoreError::Corrupt(format!("alert status {status}")))?;
            let count: i64 = row.try_get("count").map_err(e)?;
            let suppressed = {
                let by: Option<String> = row.try_get("suppressed_by").map_err(e)?;
                let at: Option<i64> = row.try_get("suppressed_ms").map_err(e)?;
                let reason: Option<String> = row.try_get("suppress_reason").map_err(e)?;
                let until: Option<i64> = row.try_get("suppressed_until_ms").map_err(e)?;
                match (by, at, reason, until) {
                    (Some(by), Some(at), Some(reason), Some(until)) => Some($crate::detect::SuppressStamp {
                        by,
                        at: caduceus_core::Timestamp(at),
                        reason,
                        until: caduceus_core::Timestamp(until),
                    }),
                    _ => None,
                }
            };
            Ok($crate::detect::AlertRow {
                id: row.try_get("id").map_err(e)?,
                rule_id: row.try_get("rule_id").map_err(e)?,
                rule_title: row.try_get("rule_title").map_err(e)?,
                kind: row.try_get("kind").map_err(e)?,
                severity,
                entity: row.try_get("entity").map_err(e)?,
                group_key: row.try_get("group_key").map_err(e)?,
                status,
                assignee: row.try_get("assignee").map_err(e)?,
                first_seen: caduceus_core::Timestamp(row.try_get("first_seen_ms").map_err(e)?),
                last_seen: caduceus_core::Timestamp(row.try_get("last_seen_ms").map_err(e)?),
                count: u64::try_from(count).map_err(|_| $crate::StoreError::Corrupt(format!("alert count {count}")))?,
                score: row.try_get("score").map_err(e)?,
                explanation: row.try_get("explanation").map_err(e)?,
                context: json_strings(row, "context")?,
                tags: json_strings(row, "tags")?,
                patients: json_strings(row, "patients")?,
                events: json_seqs(row, "events")?,
                findings: json_seqs(row, "findings")?,
                created: caduceus_core::Timestamp(row.try_get("created_ms").map_err(e)?),
                updated: caduceus_core::Timestamp(row.try_get("updated_ms").map_err(e)?),
                acknowledged: stamp(row, "acknowledged_by", "acknowledged_ms")?,
                assigned: stamp(row, "assigned_by", "assigned_ms")?,
                closed: stamp(row, "closed_by", "closed_ms")?,
                close_reason: row.try_get("close_reason").map_err(e)?,
                suppressed,
            })
        }

        fn count_i64(count: u64) -> $crate::Result<i64> {
            i64::try_from(count).map_err(|_| $crate::StoreError::Invalid(format!("count {count} out of range")))
        }

        /// A bound value of a dynamically built alert listing.
        enum DetectBind {
            Text(String),
            Int(i64),
        }

        /// The suppression active for a rule and entity at `now`, read in
        /// the caller's transaction or pool.
        async fn active_suppression_in<'c, E>(
            executor: E,
            rule_id: &str,
            entity: Option<&str>,
            now: caduceus_core::Timestamp,
        ) -> $crate::Result<Option<$crate::detect::SuppressionRow>>
        where
            E: sqlx::Executor<'c, Database = <$row as sqlx::Row>::Database>,
        {
            let row: Option<$row> = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {SUPPRESSION_COLUMNS} FROM detect_suppressions \
                 WHERE (rule_id IS NULL OR rule_id = $1) AND (entity IS NULL OR entity = $2) AND expires_ms > $3 \
                 ORDER BY expires_ms DESC, id LIMIT 1"
            )))
            .bind(rule_id)
            .bind(entity)
            .bind(now.as_millis())
            .fetch_optional(executor)
            .await
            .map_err($crate::StoreError::from_sqlx)?;
            row.as_ref().map(suppression_from_row).transpose()
        }

        #[async_trait::async_trait]
        impl $crate::detect::Detections for $store {
            async fn put_rule(&self, rule: &$crate::detect::RuleRow) -> $crate::Result<()> {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO detect_rules ({RULE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (id) DO UPDATE SET title = excluded.title, yaml = excluded.yaml, \
                     enabled = excluded.enabled, updated_ms = excluded.updated_ms"
                )))
                .bind(&rule.id)
                .bind(&rule.title)
                .bind(&rule.yaml)
                .bind(rule.enabled)
                .bind(&rule.created_by)
                .bind(rule.created.as_millis())
                .bind(rule.updated.as_millis())
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                Ok(())
            }

            async fn list_rules(&self) -> $crate::Result<Vec<$crate::detect::RuleRow>> {
                let rows: Vec<$row> =
                    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {RULE_COLUMNS} FROM detect_rules ORDER BY id")))
                        .fetch_all(&self.pool)
                        .await
                        .map_err($crate::StoreError::from_sqlx)?;
                rows.iter().map(rule_from_row).collect()
            }

            async fn get_rule(&self, id: &str) -> $crate::Result<Option<$crate::detect::RuleRow>> {
                let row: Option<$row> =
                    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {RULE_COLUMNS} FROM detect_rules WHERE id = $1")))
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err($crate::StoreError::from_sqlx)?;
                row.as_ref().map(rule_from_row).transpose()
            }

            async fn delete_rule(&self, id: &str) -> $crate::Result<bool> {
                let done = sqlx::query("DELETE FROM detect_rules WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn set_rule_enabled(
                &self,
                id: &str,
                enabled: bool,
                by: &str,
                at: caduceus_core::Timestamp,
            ) -> $crate::Result<()> {
                let e = $crate::StoreError::from_sqlx;
                let mut tx = self.pool.begin_with($begin).await.map_err(e)?;
                let uploaded = sqlx::query("UPDATE detect_rules SET enabled = $1, updated_ms = $2 WHERE id = $3")
                    .bind(enabled)
                    .bind(at.as_millis())
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(e)?;
                if uploaded.rows_affected() == 0 {
                    sqlx::query(
                        "INSERT INTO detect_rule_state (rule_id, enabled, updated_by, updated_ms) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (rule_id) DO UPDATE SET \
                         enabled = excluded.enabled, updated_by = excluded.updated_by, updated_ms = excluded.updated_ms",
                    )
                    .bind(id)
                    .bind(enabled)
                    .bind(by)
                    .bind(at.as_millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(e)?;
                }
                tx.commit().await.map_err(e)
            }

            async fn rule_enabled_overrides(&self) -> $crate::Result<Vec<$crate::detect::RuleStateRow>> {
                use sqlx::Row;
                let e = $crate::StoreError::from_sqlx;
                let rows: Vec<$row> = sqlx::query(
                    "SELECT rule_id, enabled, updated_by, updated_ms FROM detect_rule_state ORDER BY rule_id",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(e)?;
                rows.iter()
                    .map(|row| {
                        Ok($crate::detect::RuleStateRow {
                            rule_id: row.try_get("rule_id").map_err(e)?,
                            enabled: row.try_get("enabled").map_err(e)?,
                            updated_by: row.try_get("updated_by").map_err(e)?,
                            updated: caduceus_core::Timestamp(row.try_get("updated_ms").map_err(e)?),
                        })
                    })
                    .collect()
            }

            async fn upsert_alert(
                &self,
                finding: &$crate::detect::NewAlert,
                window_ms: i64,
                now: caduceus_core::Timestamp,
            ) -> $crate::Result<$crate::detect::AlertUpsert> {
                use $crate::detect::Upsert;
                let e = $crate::StoreError::from_sqlx;
                let mut tx = self.pool.begin_with($begin).await.map_err(e)?;
                let lock: &str = $group_lock;
                if !lock.is_empty() {
                    sqlx::query(lock).bind(&finding.group_key).execute(&mut *tx).await.map_err(e)?;
                }
                let suppression =
                    active_suppression_in(&mut *tx, &finding.rule_id, finding.entity.as_deref(), now).await?;
                let outcome = if suppression.is_some() { Upsert::Suppressed } else { Upsert::Grouped };
                // The finding that created an alert, stored again.
                let own: Option<$row> =
                    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {ALERT_COLUMNS} FROM detect_alerts WHERE id = $1")))
                        .bind(&finding.id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(e)?;
                if let Some(row) = own {
                    return Ok($crate::detect::AlertUpsert { alert: alert_from_row(&row)?, outcome, created: false });
                }
                // A suppressed finding joins the group's suppressed alert;
                // any other joins the group's alert still being worked on.
                let statuses = if suppression.is_some() { "('suppressed')" } else { "('open', 'acknowledged')" };
                let earliest = finding.time.as_millis().saturating_sub(window_ms.max(0));
                let current: Option<$row> = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {ALERT_COLUMNS} FROM detect_alerts WHERE group_key = $1 AND status IN {statuses} \
                     AND last_seen_ms >= $2 ORDER BY last_seen_ms DESC, id DESC LIMIT 1"
                )))
                .bind(&finding.group_key)
                .bind(earliest)
                .fetch_optional(&mut *tx)
                .await
                .map_err(e)?;
                if let Some(row) = current {
                    let mut alert = alert_from_row(&row)?;
                    if finding.finding_seq.is_some_and(|seq| alert.findings.contains(&seq)) {
                        return Ok($crate::detect::AlertUpsert { alert, outcome, created: false });
                    }
                    $crate::detect::merge_into(&mut alert, finding, now);
                    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE detect_alerts SET rule_title = $1, severity = $2, first_seen_ms = $3, \
                         last_seen_ms = $4, count = $5, score = $6, explanation = $7, context = $8, tags = $9, \
                         patients = $10, events = $11, findings = $12, updated_ms = $13 \
                         WHERE id = $14 AND status IN {statuses}"
                    )))
                    .bind(&alert.rule_title)
                    .bind(i64::from(u8::from(alert.severity)))
                    .bind(alert.first_seen.as_millis())
                    .bind(alert.last_seen.as_millis())
                    .bind(count_i64(alert.count)?)
                    .bind(alert.score)
                    .bind(&alert.explanation)
                    .bind(strings_json(&alert.context)?)
                    .bind(strings_json(&alert.tags)?)
                    .bind(strings_json(&alert.patients)?)
                    .bind(seqs_json(&alert.events)?)
                    .bind(seqs_json(&alert.findings)?)
                    .bind(alert.updated.as_millis())
                    .bind(&alert.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(e)?;
                    if done.rows_affected() == 1 {
                        tx.commit().await.map_err(e)?;
                        return Ok($crate::detect::AlertUpsert { alert, outcome, created: false });
                    }
                }
                let alert = $crate::detect::new_alert(finding, suppression.as_ref(), now);
                let stamp = alert.suppressed.as_ref();
                let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO detect_alerts ({ALERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, \
                     $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, NULL, NULL, NULL, NULL, NULL, \
                     NULL, NULL, $21, $22, $23, $24) ON CONFLICT (id) DO NOTHING"
                )))
                .bind(&alert.id)
                .bind(&alert.rule_id)
                .bind(&alert.rule_title)
                .bind(&alert.kind)
                .bind(i64::from(u8::from(alert.severity)))
                .bind(&alert.entity)
                .bind(&alert.group_key)
                .bind(alert.status.as_str())
                .bind(alert.first_seen.as_millis())
                .bind(alert.last_seen.as_millis())
                .bind(count_i64(alert.count)?)
                .bind(alert.score)
                .bind(&alert.explanation)
                .bind(strings_json(&alert.context)?)
                .bind(strings_json(&alert.tags)?)
                .bind(strings_json(&alert.patients)?)
                .bind(seqs_json(&alert.events)?)
                .bind(seqs_json(&alert.findings)?)
                .bind(alert.created.as_millis())
                .bind(alert.updated.as_millis())
                .bind(stamp.map(|s| s.by.clone()))
                .bind(stamp.map(|s| s.at.as_millis()))
                .bind(stamp.map(|s| s.reason.clone()))
                .bind(stamp.map(|s| s.until.as_millis()))
                .execute(&mut *tx)
                .await
                .map_err(e)?;
                if inserted.rows_affected() == 0 {
                    // Its alert exists already (stored before, since closed).
                    let row: $row = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT {ALERT_COLUMNS} FROM detect_alerts WHERE id = $1"
                    )))
                    .bind(&finding.id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(e)?;
                    let alert = alert_from_row(&row)?;
                    tx.commit().await.map_err(e)?;
                    return Ok($crate::detect::AlertUpsert { alert, outcome, created: false });
                }
                tx.commit().await.map_err(e)?;
                let outcome = if suppression.is_some() { Upsert::Suppressed } else { Upsert::Opened };
                Ok($crate::detect::AlertUpsert { alert, outcome, created: true })
            }

            async fn list_alerts(
                &self,
                filter: &$crate::detect::AlertFilter,
            ) -> $crate::Result<Vec<$crate::detect::AlertRow>> {
                let mut binds: Vec<DetectBind> = Vec::new();
                let mut conditions: Vec<String> = Vec::new();
                // `$?` in a condition stands for its value's placeholder.
                let mut add = |sql: &str, value: DetectBind| {
                    binds.push(value);
                    conditions.push(sql.replace("$?", &format!("${}", binds.len())));
                };
                if let Some(status) = filter.status {
                    add("status = $?", DetectBind::Text(status.as_str().to_owned()));
                }
                if let Some(severity) = filter.severity_min {
                    add("severity >= $?", DetectBind::Int(i64::from(u8::from(severity))));
                }
                if let Some(rule_id) = &filter.rule_id {
                    add("rule_id = $?", DetectBind::Text(rule_id.clone()));
                }
                if let Some(entity) = &filter.entity {
                    add("entity = $?", DetectBind::Text(entity.clone()));
                }
                if let Some(kind) = &filter.kind {
                    add("kind = $?", DetectBind::Text(kind.clone()));
                }
                if let Some(since) = filter.since {
                    add("last_seen_ms >= $?", DetectBind::Int(since.as_millis()));
                }
                if let Some(until) = filter.until {
                    add("first_seen_ms <= $?", DetectBind::Int(until.as_millis()));
                }
                if let Some((last_seen, id)) = &filter.after {
                    binds.push(DetectBind::Int(last_seen.as_millis()));
                    let a = binds.len();
                    binds.push(DetectBind::Text(id.clone()));
                    let b = binds.len();
                    conditions.push(format!("(last_seen_ms < ${a} OR (last_seen_ms = ${a} AND id < ${b}))"));
                }
                let limit = filter.limit.clamp(1, $crate::detect::MAX_PAGE);
                binds.push(DetectBind::Int(i64::from(limit)));
                let where_sql =
                    if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
                let sql = format!(
                    "SELECT {ALERT_COLUMNS} FROM detect_alerts {where_sql} \
                     ORDER BY last_seen_ms DESC, id DESC LIMIT ${}",
                    binds.len()
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for bind in binds {
                    query = match bind {
                        DetectBind::Text(t) => query.bind(t),
                        DetectBind::Int(i) => query.bind(i),
                    };
                }
                let rows: Vec<$row> = query.fetch_all(&self.pool).await.map_err($crate::StoreError::from_sqlx)?;
                rows.iter().map(alert_from_row).collect()
            }

            async fn get_alert(&self, id: &str) -> $crate::Result<Option<$crate::detect::AlertRow>> {
                let row: Option<$row> =
                    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {ALERT_COLUMNS} FROM detect_alerts WHERE id = $1")))
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err($crate::StoreError::from_sqlx)?;
                row.as_ref().map(alert_from_row).transpose()
            }

            async fn update_alert(
                &self,
                id: &str,
                action: &$crate::detect::AlertAction,
                at: caduceus_core::Timestamp,
            ) -> $crate::Result<Option<$crate::detect::AlertRow>> {
                use sqlx::Row;
                use $crate::detect::AlertAction;
                let e = $crate::StoreError::from_sqlx;
                let mut tx = self.pool.begin_with($begin).await.map_err(e)?;
                let ms = at.as_millis();
                // Each step is one conditional UPDATE: the status it may
                // follow is in its WHERE clause, so concurrent steps cannot
                // both pass the check.
                let done = match action {
                    AlertAction::Acknowledge { by } => sqlx::query(
                        "UPDATE detect_alerts SET status = 'acknowledged', acknowledged_by = $1, \
                         acknowledged_ms = $2, updated_ms = $2 WHERE id = $3 AND status = 'open'",
                    )
                    .bind(by)
                    .bind(ms)
                    .bind(id),
                    AlertAction::Assign { by, assignee } => sqlx::query(
                        "UPDATE detect_alerts SET assignee = $1, assigned_by = $2, assigned_ms = $3, updated_ms = $3 \
                         WHERE id = $4 AND status <> 'closed'",
                    )
                    .bind(assignee)
                    .bind(by)
                    .bind(ms)
                    .bind(id),
                    AlertAction::Close { by, reason } => sqlx::query(
                        "UPDATE detect_alerts SET status = 'closed', closed_by = $1, closed_ms = $2, \
                         close_reason = $3, updated_ms = $2 WHERE id = $4 AND status <> 'closed'",
                    )
                    .bind(by)
                    .bind(ms)
                    .bind(reason)
                    .bind(id),
                    AlertAction::Suppress { by, reason, until, .. } => sqlx::query(
                        "UPDATE detect_alerts SET status = 'suppressed', suppressed_by = $1, suppressed_ms = $2, \
                         suppress_reason = $3, suppressed_until_ms = $4, updated_ms = $2 \
                         WHERE id = $5 AND status <> 'closed'",
                    )
                    .bind(by)
                    .bind(ms)
                    .bind(reason)
                    .bind(until.as_millis())
                    .bind(id),
                }
                .execute(&mut *tx)
                .await
                .map_err(e)?;
                if done.rows_affected() == 0 {
                    let status: Option<String> = sqlx::query("SELECT status FROM detect_alerts WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(e)?
                        .map(|row: $row| row.try_get("status"))
                        .transpose()
                        .map_err(e)?;
                    let Some(status) = status else { return Ok(None) };
                    // Acknowledging an acknowledged alert changes nothing.
                    let repeat = matches!(action, AlertAction::Acknowledge { .. }) && status == "acknowledged";
                    if !repeat {
                        return Err($crate::StoreError::Conflict(format!("the alert is {status}")));
                    }
                }
                if let AlertAction::Suppress { by, reason, until, suppression_id } = action {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "INSERT INTO detect_suppressions ({SUPPRESSION_COLUMNS}) \
                         SELECT $1, rule_id, entity, $2, $3, $4, $5 FROM detect_alerts WHERE id = $6"
                    )))
                    .bind(suppression_id)
                    .bind(reason)
                    .bind(by)
                    .bind(ms)
                    .bind(until.as_millis())
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(e)?;
                }
                let row: Option<$row> =
                    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {ALERT_COLUMNS} FROM detect_alerts WHERE id = $1")))
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(e)?;
                let alert = row.as_ref().map(alert_from_row).transpose()?;
                tx.commit().await.map_err(e)?;
                Ok(alert)
            }

            async fn add_alert_finding(&self, id: &str, finding_seq: u64) -> $crate::Result<bool> {
                use sqlx::Row;
                let e = $crate::StoreError::from_sqlx;
                let mut tx = self.pool.begin_with($begin).await.map_err(e)?;
                let row: Option<$row> = sqlx::query("SELECT findings FROM detect_alerts WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(e)?;
                let Some(row) = row else { return Ok(false) };
                let text: String = row.try_get("findings").map_err(e)?;
                let mut findings: Vec<u64> = serde_json::from_str(&text)
                    .map_err(|err| $crate::StoreError::Corrupt(format!("alert findings: {err}")))?;
                $crate::detect::merge_capped(&mut findings, &[finding_seq], $crate::detect::MAX_ALERT_FINDINGS);
                sqlx::query("UPDATE detect_alerts SET findings = $1 WHERE id = $2")
                    .bind(seqs_json(&findings)?)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(e)?;
                tx.commit().await.map_err(e)?;
                Ok(true)
            }

            async fn add_suppression(&self, suppression: &$crate::detect::SuppressionRow) -> $crate::Result<()> {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO detect_suppressions ({SUPPRESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                )))
                .bind(&suppression.id)
                .bind(&suppression.rule_id)
                .bind(&suppression.entity)
                .bind(&suppression.reason)
                .bind(&suppression.created_by)
                .bind(suppression.created.as_millis())
                .bind(suppression.expires.as_millis())
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                Ok(())
            }

            async fn list_suppressions(
                &self,
                active_at: Option<caduceus_core::Timestamp>,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::detect::SuppressionRow>> {
                let limit = i64::from(limit.clamp(1, $crate::detect::MAX_PAGE));
                let rows: Vec<$row> = match active_at {
                    Some(now) => sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT {SUPPRESSION_COLUMNS} FROM detect_suppressions WHERE expires_ms > $1 \
                         ORDER BY created_ms DESC, id DESC LIMIT $2"
                    )))
                    .bind(now.as_millis())
                    .bind(limit),
                    None => sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT {SUPPRESSION_COLUMNS} FROM detect_suppressions \
                         ORDER BY created_ms DESC, id DESC LIMIT $1"
                    )))
                    .bind(limit),
                }
                .fetch_all(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                rows.iter().map(suppression_from_row).collect()
            }

            async fn get_suppression(&self, id: &str) -> $crate::Result<Option<$crate::detect::SuppressionRow>> {
                let row: Option<$row> = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {SUPPRESSION_COLUMNS} FROM detect_suppressions WHERE id = $1"
                )))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                row.as_ref().map(suppression_from_row).transpose()
            }

            async fn delete_suppression(&self, id: &str) -> $crate::Result<bool> {
                let done = sqlx::query("DELETE FROM detect_suppressions WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn active_suppression(
                &self,
                rule_id: &str,
                entity: Option<&str>,
                now: caduceus_core::Timestamp,
            ) -> $crate::Result<Option<$crate::detect::SuppressionRow>> {
                active_suppression_in(&self.pool, rule_id, entity, now).await
            }
        }
    };
}

pub(crate) use impl_detections;
