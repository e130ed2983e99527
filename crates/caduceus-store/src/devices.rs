//! What the device inventory keeps: devices, SBOMs per manufacturer, model
//! and version, advisories (the current revision of each, and the history of
//! every revision imported), network sightings of devices not (yet) in the
//! inventory, and findings (which advisory affects which device, and how).
//!
//! `caduceus-devices` computes all of it; the store keeps it as JSON text
//! bodies plus the few columns it is looked up by. It decides nothing: it
//! does not compare advisory revisions, and it never parses a body. No
//! patient data is kept here.

use async_trait::async_trait;
use caduceus_core::Timestamp;

use crate::{Result, StoreError};

/// Largest SBOM or advisory body, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 8 * 1024 * 1024;
/// Largest device, sighting or finding body, in bytes.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
/// Longest id, key or other short text column (manufacturer, model,
/// version, format, digest, source, revision, status), in characters.
pub const MAX_ID_CHARS: usize = 256;
/// Largest page of devices, advisories, sightings or findings (a smaller
/// `limit` is raised to 1).
pub const MAX_DEVICE_PAGE: u32 = 10_000;

/// A device of the inventory, as the JSON `caduceus-devices` made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub id: String,
    /// JSON.
    pub body: String,
    pub created: Timestamp,
    pub updated: Timestamp,
}

/// The SBOM of one manufacturer's model at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbomRow {
    pub id: String,
    pub manufacturer: String,
    pub model: String,
    pub version: String,
    /// Which format the document came in (say `cyclonedx-json`).
    pub format: String,
    /// Hex SHA-256 of the document.
    pub sha256: String,
    pub body: String,
    pub created: Timestamp,
}

/// The current revision of an advisory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvisoryRow {
    pub id: String,
    /// Where it came from (say `csaf`, `osv`).
    pub source: String,
    pub revision: String,
    /// When the publisher last changed it, as it says.
    pub modified: Option<String>,
    pub sha256: String,
    pub body: String,
    pub imported: Timestamp,
}

/// One revision of an advisory that was imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvisoryRevisionRow {
    pub id: String,
    pub revision: String,
    pub modified: Option<String>,
    pub sha256: String,
    pub imported: Timestamp,
}

/// A device seen on the network that is not (yet) in the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SightingRow {
    /// What it was seen as: `ip:10.1.2.3` or `mac:...`.
    pub key: String,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// How many flows it was seen in.
    pub flows: u64,
    /// JSON hints (hostname, protocols, ...).
    pub body: String,
}

/// The current state of one finding: an advisory about a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingRow {
    pub key: String,
    pub device_id: String,
    pub advisory_id: String,
    /// `affected`, `fixed`, `not_affected`, `under_investigation`, ...
    pub status: String,
    /// JSON: provenance, scores, remediation.
    pub body: String,
    pub first_seen: Timestamp,
    pub updated: Timestamp,
}

/// Every write checks its input against the caps above and refuses it with
/// [`StoreError::Invalid`]: an empty or overlong id, an overlong short
/// column, a body over its cap, or a NUL character (which PostgreSQL cannot
/// keep in text). Every listing's `limit` is clamped to 1..=[`MAX_DEVICE_PAGE`].
#[async_trait]
pub trait Devices: Send + Sync {
    /// Store a device, or replace the body and `updated` of the one with its
    /// id (its `created` is kept).
    async fn put_device(&self, device: &DeviceRow) -> Result<()>;
    /// [`Devices::put_device`] for many, in one transaction: all or none.
    /// Of two with one id, the later wins.
    async fn put_devices(&self, devices: &[DeviceRow]) -> Result<()>;
    async fn get_device(&self, id: &str) -> Result<Option<DeviceRow>>;
    /// Devices by id, from the one after `after`.
    async fn list_devices(&self, after: Option<&str>, limit: u32) -> Result<Vec<DeviceRow>>;
    /// Delete a device and its findings; false if there was no such device.
    async fn delete_device(&self, id: &str) -> Result<bool>;
    async fn count_devices(&self) -> Result<u64>;

    /// Store an SBOM, replacing the one with its id and the one for its
    /// manufacturer, model and version (there is one per model version).
    async fn put_sbom(&self, sbom: &SbomRow) -> Result<()>;
    async fn get_sbom(&self, id: &str) -> Result<Option<SbomRow>>;
    /// The SBOM of a model version (an exact match of each).
    async fn find_sbom(&self, manufacturer: &str, model: &str, version: &str) -> Result<Option<SbomRow>>;
    /// Every SBOM, by manufacturer, model and version.
    async fn list_sboms(&self) -> Result<Vec<SbomRow>>;
    async fn delete_sbom(&self, id: &str) -> Result<bool>;

    /// The current revision of an advisory.
    async fn get_advisory(&self, id: &str) -> Result<Option<AdvisoryRow>>;
    /// Make this the advisory's current revision (whatever was current
    /// before: the caller decides which revision is newer), and add the
    /// revision to its history unless it is there already; one transaction.
    async fn put_advisory(&self, advisory: &AdvisoryRow) -> Result<()>;
    /// Current advisories by id, from the one after `after`.
    async fn list_advisories(&self, after: Option<&str>, limit: u32) -> Result<Vec<AdvisoryRow>>;
    /// Every current advisory, by id.
    async fn all_advisories(&self) -> Result<Vec<AdvisoryRow>>;
    /// Every revision of an advisory imported, oldest import first.
    async fn advisory_history(&self, id: &str) -> Result<Vec<AdvisoryRevisionRow>>;
    async fn count_advisories(&self) -> Result<u64>;

    /// Record sightings, in one transaction, merging each into the one with
    /// its key: the earliest `first_seen`, the latest `last_seen`, the flows
    /// added (saturating), the body replaced.
    async fn record_sightings(&self, sightings: &[SightingRow]) -> Result<()>;
    /// Sightings, most recently seen first.
    async fn list_sightings(&self, limit: u32) -> Result<Vec<SightingRow>>;
    async fn delete_sighting(&self, key: &str) -> Result<bool>;

    /// Store the current state of a finding (its `first_seen` is kept when
    /// it exists), returning the status it had before, `None` if it is new:
    /// the caller publishes only changes.
    async fn put_finding(&self, finding: &FindingRow) -> Result<Option<String>>;
    /// Findings by key, of one device and/or with one status if given.
    async fn list_findings(&self, device_id: Option<&str>, status: Option<&str>, limit: u32)
    -> Result<Vec<FindingRow>>;
    /// Delete the findings of a device whose keys are not in `keep` (those a
    /// scan no longer produced); returns how many.
    async fn delete_findings_except(&self, device_id: &str, keep: &[String]) -> Result<u64>;
}

fn check_id(what: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(StoreError::Invalid(format!("{what} is empty")));
    }
    check_short(what, id)
}

fn check_short(what: &str, text: &str) -> Result<()> {
    if text.chars().count() > MAX_ID_CHARS {
        return Err(StoreError::Invalid(format!("{what} is longer than {MAX_ID_CHARS} characters")));
    }
    if text.contains('\0') {
        return Err(StoreError::Invalid(format!("{what} contains a NUL character")));
    }
    Ok(())
}

fn check_body(what: &str, body: &str, max: usize) -> Result<()> {
    if body.len() > max {
        return Err(StoreError::Invalid(format!("{what} body is larger than {max} bytes")));
    }
    if body.contains('\0') {
        return Err(StoreError::Invalid(format!("{what} body contains a NUL character")));
    }
    Ok(())
}

pub(crate) fn check_device(device: &DeviceRow) -> Result<()> {
    check_id("device id", &device.id)?;
    check_body("device", &device.body, MAX_RECORD_BYTES)
}

pub(crate) fn check_sbom(sbom: &SbomRow) -> Result<()> {
    check_id("sbom id", &sbom.id)?;
    check_short("sbom manufacturer", &sbom.manufacturer)?;
    check_short("sbom model", &sbom.model)?;
    check_short("sbom version", &sbom.version)?;
    check_short("sbom format", &sbom.format)?;
    check_short("sbom sha256", &sbom.sha256)?;
    check_body("sbom", &sbom.body, MAX_DOCUMENT_BYTES)
}

pub(crate) fn check_advisory(advisory: &AdvisoryRow) -> Result<()> {
    check_id("advisory id", &advisory.id)?;
    check_short("advisory source", &advisory.source)?;
    check_short("advisory revision", &advisory.revision)?;
    if let Some(modified) = &advisory.modified {
        check_short("advisory modified", modified)?;
    }
    check_short("advisory sha256", &advisory.sha256)?;
    check_body("advisory", &advisory.body, MAX_DOCUMENT_BYTES)
}

pub(crate) fn check_sighting(sighting: &SightingRow) -> Result<()> {
    check_id("sighting key", &sighting.key)?;
    flows_i64(sighting.flows)?;
    check_body("sighting", &sighting.body, MAX_RECORD_BYTES)
}

pub(crate) fn check_finding(finding: &FindingRow) -> Result<()> {
    check_id("finding key", &finding.key)?;
    check_id("finding device id", &finding.device_id)?;
    check_id("finding advisory id", &finding.advisory_id)?;
    check_short("finding status", &finding.status)?;
    check_body("finding", &finding.body, MAX_RECORD_BYTES)
}

pub(crate) fn flows_i64(flows: u64) -> Result<i64> {
    i64::try_from(flows).map_err(|_| StoreError::Invalid(format!("flows {flows} out of range")))
}

pub(crate) fn page(limit: u32) -> i64 {
    i64::from(limit.clamp(1, MAX_DEVICE_PAGE))
}

/// A stored count, which is never negative.
pub(crate) fn count_u64(what: &str, n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("{what} {n}")))
}

/// The SQL, written once for both backends (see `common.rs` for why a macro).
macro_rules! impl_devices {
    // `$begin` starts a write transaction (SQLite's takes the write lock at
    // once). `$for_update` ends a SELECT that reads a row the transaction
    // then updates: PostgreSQL locks it (` FOR UPDATE`), so two writers of
    // one finding each see the status the other left; SQLite needs nothing.
    ($store:ty, $row:ty, $begin:expr, $for_update:expr) => {
        const DEVICE_COLUMNS: &str = "id, body, created_ms, updated_ms";
        const SBOM_COLUMNS: &str = "id, manufacturer, model, version, format, sha256, body, created_ms";
        const ADVISORY_COLUMNS: &str = "id, source, revision, modified, sha256, body, imported_ms";
        const SIGHTING_COLUMNS: &str = "key, first_seen_ms, last_seen_ms, flows, body";
        const FINDING_COLUMNS: &str = "key, device_id, advisory_id, status, body, first_seen_ms, updated_ms";

        fn device_from_row(row: &$row) -> $crate::Result<$crate::devices::DeviceRow> {
            use sqlx::Row;
            let e = $crate::StoreError::from_sqlx;
            Ok($crate::devices::DeviceRow {
                id: row.try_get("id").map_err(e)?,
                body: row.try_get("body").map_err(e)?,
                created: caduceus_core::Timestamp(row.try_get("created_ms").map_err(e)?),
                updated: caduceus_core::Timestamp(row.try_get("updated_ms").map_err(e)?),
            })
        }

        fn sbom_from_row(row: &$row) -> $crate::Result<$crate::devices::SbomRow> {
            use sqlx::Row;
            let e = $crate::StoreError::from_sqlx;
            Ok($crate::devices::SbomRow {
                id: row.try_get("id").map_err(e)?,
                manufacturer: row.try_get("manufacturer").map_err(e)?,
                model: row.try_get("model").map_err(e)?,
                version: row.try_get("version").map_err(e)?,
                format: row.try_get("format").map_err(e)?,
                sha256: row.try_get("sha256").map_err(e)?,
                body: row.try_get("body").map_err(e)?,
                created: caduceus_core::Timestamp(row.try_get("created_ms").map_err(e)?),
            })
        }

        fn advisory_from_row(row: &$row) -> $crate::Result<$crate::devices::AdvisoryRow> {
            use sqlx::Row;
            let e = $crate::StoreError::from_sqlx;
            Ok($crate::devices::AdvisoryRow {
                id: row.try_get("id").map_err(e)?,
                source: row.try_get("source").map_err(e)?,
                revision: row.try_get("revision").map_err(e)?,
                modified: row.try_get("modified").map_err(e)?,
                sha256: row.try_get("sha256").map_err(e)?,
                body: row.try_get("body").map_err(e)?,
                imported: caduceus_core::Timestamp(row.try_get("imported_ms").map_err(e)?),
            })
        }

        fn sighting_from_row(row: &$row) -> $crate::Result<$crate::devices::SightingRow> {
            use sqlx::Row;
            let e = $crate::StoreError::from_sqlx;
            let flows: i64 = row.try_get("flows").map_err(e)?;
            Ok($crate::devices::SightingRow {
                key: row.try_get("key").map_err(e)?,
                first_seen: caduceus_core::Timestamp(row.try_get("first_seen_ms").map_err(e)?),
                last_seen: caduceus_core::Timestamp(row.try_get("last_seen_ms").map_err(e)?),
                flows: $crate::devices::count_u64("sighting flows", flows)?,
                body: row.try_get("body").map_err(e)?,
            })
        }

        fn finding_from_row(row: &$row) -> $crate::Result<$crate::devices::FindingRow> {
            use sqlx::Row;
            let e = $crate::StoreError::from_sqlx;
            Ok($crate::devices::FindingRow {
                key: row.try_get("key").map_err(e)?,
                device_id: row.try_get("device_id").map_err(e)?,
                advisory_id: row.try_get("advisory_id").map_err(e)?,
                status: row.try_get("status").map_err(e)?,
                body: row.try_get("body").map_err(e)?,
                first_seen: caduceus_core::Timestamp(row.try_get("first_seen_ms").map_err(e)?),
                updated: caduceus_core::Timestamp(row.try_get("updated_ms").map_err(e)?),
            })
        }

        /// Insert a device or replace its body and `updated`, in the
        /// caller's transaction or pool.
        async fn put_device_in<'c, E>(executor: E, device: &$crate::devices::DeviceRow) -> $crate::Result<()>
        where
            E: sqlx::Executor<'c, Database = <$row as sqlx::Row>::Database>,
        {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO devices ({DEVICE_COLUMNS}) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body, updated_ms = excluded.updated_ms"
            )))
            .bind(&device.id)
            .bind(&device.body)
            .bind(device.created.as_millis())
            .bind(device.updated.as_millis())
            .execute(executor)
            .await
            .map_err($crate::StoreError::from_sqlx)?;
            Ok(())
        }

        #[async_trait::async_trait]
        impl $crate::devices::Devices for $store {
            async fn put_device(&self, device: &$crate::devices::DeviceRow) -> $crate::Result<()> {
                $crate::devices::check_device(device)?;
                put_device_in(&self.pool, device).await
            }

            async fn put_devices(&self, devices: &[$crate::devices::DeviceRow]) -> $crate::Result<()> {
                for device in devices {
                    $crate::devices::check_device(device)?;
                }
                // In id order (a stable sort: of two with one id, the later
                // still wins), so concurrent imports lock rows in one order.
                let mut ordered: Vec<&$crate::devices::DeviceRow> = devices.iter().collect();
                ordered.sort_by(|a, b| a.id.cmp(&b.id));
                let e = $crate::StoreError::from_sqlx;
                let mut tx = self.pool.begin_with($begin).await.map_err(e)?;
                for device in ordered {
                    put_device_in(&mut *tx, device).await?;
                }
                tx.commit().await.map_err(e)
            }

            async fn get_device(&self, id: &str) -> $crate::Result<Option<$crate::devices::DeviceRow>> {
                let row: Option<$row> =
                    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1")))
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err($crate::StoreError::from_sqlx)?;
                row.as_ref().map(device_from_row).transpose()
            }

            async fn list_devices(
                &self,
                after: Option<&str>,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::devices::DeviceRow>> {
                let limit = $crate::devices::page(limit);
                let rows: Vec<$row> = match after {
                    Some(after) => sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT {DEVICE_COLUMNS} FROM devices WHERE id > $1 ORDER BY id LIMIT $2"
                    )))
                    .bind(after)
                    .bind(limit),
                    None => sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT {DEVICE_COLUMNS} FROM devices ORDER BY id LIMIT $1"
                    )))
                    .bind(limit),
                }
                .fetch_all(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                rows.iter().map(device_from_row).collect()
            }

            async fn delete_device(&self, id: &str) -> $crate::Result<bool> {
                let e = $crate::StoreError::from_sqlx;
                let mut tx = self.pool.begin_with($begin).await.map_err(e)?;
                sqlx::query("DELETE FROM device_findings WHERE device_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(e)?;
                let done = sqlx::query("DELETE FROM devices WHERE id = $1").bind(id).execute(&mut *tx).await.map_err(e)?;
                tx.commit().await.map_err(e)?;
                Ok(done.rows_affected() == 1)
            }

            async fn count_devices(&self) -> $crate::Result<u64> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices")
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::StoreError::from_sqlx)?;
                $crate::devices::count_u64("device count", n)
            }

            async fn put_sbom(&self, sbom: &$crate::devices::SbomRow) -> $crate::Result<()> {
                $crate::devices::check_sbom(sbom)?;
                let e = $crate::StoreError::from_sqlx;
                let mut tx = self.pool.begin_with($begin).await.map_err(e)?;
                // Another SBOM of this model version gives way to this one.
                sqlx::query(
                    "DELETE FROM device_sboms WHERE manufacturer = $1 AND model = $2 AND version = $3 AND id <> $4",
                )
                .bind(&sbom.manufacturer)
                .bind(&sbom.model)
                .bind(&sbom.version)
                .bind(&sbom.id)
                .execute(&mut *tx)
                .await
                .map_err(e)?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO device_sboms ({SBOM_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (id) DO UPDATE SET manufacturer = excluded.manufacturer, model = excluded.model, \
                     version = excluded.version, format = excluded.format, sha256 = excluded.sha256, \
                     body = excluded.body, created_ms = excluded.created_ms"
                )))
                .bind(&sbom.id)
                .bind(&sbom.manufacturer)
                .bind(&sbom.model)
                .bind(&sbom.version)
                .bind(&sbom.format)
                .bind(&sbom.sha256)
                .bind(&sbom.body)
                .bind(sbom.created.as_millis())
                .execute(&mut *tx)
                .await
                .map_err(e)?;
                tx.commit().await.map_err(e)
            }

            async fn get_sbom(&self, id: &str) -> $crate::Result<Option<$crate::devices::SbomRow>> {
                let row: Option<$row> =
                    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {SBOM_COLUMNS} FROM device_sboms WHERE id = $1")))
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err($crate::StoreError::from_sqlx)?;
                row.as_ref().map(sbom_from_row).transpose()
            }

            async fn find_sbom(
                &self,
                manufacturer: &str,
                model: &str,
                version: &str,
            ) -> $crate::Result<Option<$crate::devices::SbomRow>> {
                let row: Option<$row> = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {SBOM_COLUMNS} FROM device_sboms WHERE manufacturer = $1 AND model = $2 AND version = $3"
                )))
                .bind(manufacturer)
                .bind(model)
                .bind(version)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                row.as_ref().map(sbom_from_row).transpose()
            }

            async fn list_sboms(&self) -> $crate::Result<Vec<$crate::devices::SbomRow>> {
                let rows: Vec<$row> = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {SBOM_COLUMNS} FROM device_sboms ORDER BY manufacturer, model, version"
                )))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                rows.iter().map(sbom_from_row).collect()
            }

            async fn delete_sbom(&self, id: &str) -> $crate::Result<bool> {
                let done = sqlx::query("DELETE FROM device_sboms WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn get_advisory(&self, id: &str) -> $crate::Result<Option<$crate::devices::AdvisoryRow>> {
                let row: Option<$row> = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {ADVISORY_COLUMNS} FROM device_advisories WHERE id = $1"
                )))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                row.as_ref().map(advisory_from_row).transpose()
            }

            async fn put_advisory(&self, advisory: &$crate::devices::AdvisoryRow) -> $crate::Result<()> {
                $crate::devices::check_advisory(advisory)?;
                let e = $crate::StoreError::from_sqlx;
                let mut tx = self.pool.begin_with($begin).await.map_err(e)?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO device_advisories ({ADVISORY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (id) DO UPDATE SET source = excluded.source, revision = excluded.revision, \
                     modified = excluded.modified, sha256 = excluded.sha256, body = excluded.body, \
                     imported_ms = excluded.imported_ms"
                )))
                .bind(&advisory.id)
                .bind(&advisory.source)
                .bind(&advisory.revision)
                .bind(&advisory.modified)
                .bind(&advisory.sha256)
                .bind(&advisory.body)
                .bind(advisory.imported.as_millis())
                .execute(&mut *tx)
                .await
                .map_err(e)?;
                sqlx::query(
                    "INSERT INTO device_advisory_revisions (id, revision, modified, sha256, imported_ms) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id, revision) DO NOTHING",
                )
                .bind(&advisory.id)
                .bind(&advisory.revision)
                .bind(&advisory.modified)
                .bind(&advisory.sha256)
                .bind(advisory.imported.as_millis())
                .execute(&mut *tx)
                .await
                .map_err(e)?;
                tx.commit().await.map_err(e)
            }

            async fn list_advisories(
                &self,
                after: Option<&str>,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::devices::AdvisoryRow>> {
                let limit = $crate::devices::page(limit);
                let rows: Vec<$row> = match after {
                    Some(after) => sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT {ADVISORY_COLUMNS} FROM device_advisories WHERE id > $1 ORDER BY id LIMIT $2"
                    )))
                    .bind(after)
                    .bind(limit),
                    None => sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT {ADVISORY_COLUMNS} FROM device_advisories ORDER BY id LIMIT $1"
                    )))
                    .bind(limit),
                }
                .fetch_all(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                rows.iter().map(advisory_from_row).collect()
            }

            async fn all_advisories(&self) -> $crate::Result<Vec<$crate::devices::AdvisoryRow>> {
                let rows: Vec<$row> = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {ADVISORY_COLUMNS} FROM device_advisories ORDER BY id"
                )))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                rows.iter().map(advisory_from_row).collect()
            }

            async fn advisory_history(&self, id: &str) -> $crate::Result<Vec<$crate::devices::AdvisoryRevisionRow>> {
                use sqlx::Row;
                let e = $crate::StoreError::from_sqlx;
                let rows: Vec<$row> = sqlx::query(
                    "SELECT id, revision, modified, sha256, imported_ms FROM device_advisory_revisions \
                     WHERE id = $1 ORDER BY imported_ms, n",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await
                .map_err(e)?;
                rows.iter()
                    .map(|row| {
                        Ok($crate::devices::AdvisoryRevisionRow {
                            id: row.try_get("id").map_err(e)?,
                            revision: row.try_get("revision").map_err(e)?,
                            modified: row.try_get("modified").map_err(e)?,
                            sha256: row.try_get("sha256").map_err(e)?,
                            imported: caduceus_core::Timestamp(row.try_get("imported_ms").map_err(e)?),
                        })
                    })
                    .collect()
            }

            async fn count_advisories(&self) -> $crate::Result<u64> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM device_advisories")
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::StoreError::from_sqlx)?;
                $crate::devices::count_u64("advisory count", n)
            }

            async fn record_sightings(&self, sightings: &[$crate::devices::SightingRow]) -> $crate::Result<()> {
                for sighting in sightings {
                    $crate::devices::check_sighting(sighting)?;
                }
                // In key order, so concurrent batches lock rows in one order.
                let mut ordered: Vec<&$crate::devices::SightingRow> = sightings.iter().collect();
                ordered.sort_by(|a, b| a.key.cmp(&b.key));
                let e = $crate::StoreError::from_sqlx;
                let mut tx = self.pool.begin_with($begin).await.map_err(e)?;
                for sighting in ordered {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "INSERT INTO device_sightings ({SIGHTING_COLUMNS}) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (key) DO UPDATE SET \
                         first_seen_ms = CASE WHEN excluded.first_seen_ms < device_sightings.first_seen_ms \
                         THEN excluded.first_seen_ms ELSE device_sightings.first_seen_ms END, \
                         last_seen_ms = CASE WHEN excluded.last_seen_ms > device_sightings.last_seen_ms \
                         THEN excluded.last_seen_ms ELSE device_sightings.last_seen_ms END, \
                         flows = CASE WHEN device_sightings.flows > {max} - excluded.flows \
                         THEN {max} ELSE device_sightings.flows + excluded.flows END, \
                         body = excluded.body",
                        max = i64::MAX
                    )))
                    .bind(&sighting.key)
                    .bind(sighting.first_seen.as_millis())
                    .bind(sighting.last_seen.as_millis())
                    .bind($crate::devices::flows_i64(sighting.flows)?)
                    .bind(&sighting.body)
                    .execute(&mut *tx)
                    .await
                    .map_err(e)?;
                }
                tx.commit().await.map_err(e)
            }

            async fn list_sightings(&self, limit: u32) -> $crate::Result<Vec<$crate::devices::SightingRow>> {
                let rows: Vec<$row> = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {SIGHTING_COLUMNS} FROM device_sightings ORDER BY last_seen_ms DESC, key LIMIT $1"
                )))
                .bind($crate::devices::page(limit))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                rows.iter().map(sighting_from_row).collect()
            }

            async fn delete_sighting(&self, key: &str) -> $crate::Result<bool> {
                let done = sqlx::query("DELETE FROM device_sightings WHERE key = $1")
                    .bind(key)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn put_finding(&self, finding: &$crate::devices::FindingRow) -> $crate::Result<Option<String>> {
                $crate::devices::check_finding(finding)?;
                let e = $crate::StoreError::from_sqlx;
                let mut tx = self.pool.begin_with($begin).await.map_err(e)?;
                // A new finding is inserted; if one has its key already (on
                // PostgreSQL, once its writer has committed), it is read
                // locked and updated.
                let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO device_findings ({FINDING_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (key) DO NOTHING"
                )))
                .bind(&finding.key)
                .bind(&finding.device_id)
                .bind(&finding.advisory_id)
                .bind(&finding.status)
                .bind(&finding.body)
                .bind(finding.first_seen.as_millis())
                .bind(finding.updated.as_millis())
                .execute(&mut *tx)
                .await
                .map_err(e)?;
                if inserted.rows_affected() == 1 {
                    tx.commit().await.map_err(e)?;
                    return Ok(None);
                }
                let previous: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT status FROM device_findings WHERE key = $1{}",
                    $for_update
                )))
                .bind(&finding.key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(e)?;
                // Deleted since the insert found it: it is new again.
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO device_findings ({FINDING_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (key) DO UPDATE SET device_id = excluded.device_id, \
                     advisory_id = excluded.advisory_id, status = excluded.status, body = excluded.body, \
                     updated_ms = excluded.updated_ms"
                )))
                .bind(&finding.key)
                .bind(&finding.device_id)
                .bind(&finding.advisory_id)
                .bind(&finding.status)
                .bind(&finding.body)
                .bind(finding.first_seen.as_millis())
                .bind(finding.updated.as_millis())
                .execute(&mut *tx)
                .await
                .map_err(e)?;
                tx.commit().await.map_err(e)?;
                Ok(previous)
            }

            async fn list_findings(
                &self,
                device_id: Option<&str>,
                status: Option<&str>,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::devices::FindingRow>> {
                let mut conditions: Vec<String> = Vec::new();
                let mut binds: Vec<&str> = Vec::new();
                if let Some(device_id) = device_id {
                    binds.push(device_id);
                    conditions.push(format!("device_id = ${}", binds.len()));
                }
                if let Some(status) = status {
                    binds.push(status);
                    conditions.push(format!("status = ${}", binds.len()));
                }
                let filter =
                    if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
                let sql =
                    format!("SELECT {FINDING_COLUMNS} FROM device_findings{filter} ORDER BY key LIMIT ${}", binds.len() + 1);
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for value in binds {
                    query = query.bind(value);
                }
                let rows: Vec<$row> = query
                    .bind($crate::devices::page(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::StoreError::from_sqlx)?;
                rows.iter().map(finding_from_row).collect()
            }

            async fn delete_findings_except(&self, device_id: &str, keep: &[String]) -> $crate::Result<u64> {
                let keep: std::collections::HashSet<&str> = keep.iter().map(String::as_str).collect();
                let e = $crate::StoreError::from_sqlx;
                let mut tx = self.pool.begin_with($begin).await.map_err(e)?;
                let keys: Vec<String> =
                    sqlx::query_scalar("SELECT key FROM device_findings WHERE device_id = $1 ORDER BY key")
                        .bind(device_id)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(e)?;
                let mut deleted = 0u64;
                for key in keys.iter().filter(|key| !keep.contains(key.as_str())) {
                    let done = sqlx::query("DELETE FROM device_findings WHERE key = $1 AND device_id = $2")
                        .bind(key)
                        .bind(device_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(e)?;
                    deleted = deleted.saturating_add(done.rows_affected());
                }
                tx.commit().await.map_err(e)?;
                Ok(deleted)
            }
        }
    };
}

pub(crate) use impl_devices;
