//! What the vault keeps: sealed resource versions, the current version of
//! each resource, blind search terms, wrapped data keys, break-glass grants,
//! care assignments and the index from patients to the audit events about
//! them. The store sees ciphertext and keyed hashes only; it decides nothing
//! and never holds a key that opens anything.

use async_trait::async_trait;
use caduceus_core::Timestamp;

use crate::{Result, StoredEvent};

/// One stored version of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    pub resource_type: String,
    pub id: String,
    pub version: u64,
    /// `Patient/<id>` or `shared`: whose data key sealed it.
    pub compartment: String,
    pub updated: Timestamp,
    pub deleted: bool,
    /// AES-256-GCM ciphertext of the resource JSON; `None` for a deletion.
    pub sealed: Option<Vec<u8>>,
}

/// One search term of a resource: a blind term or a date range (ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexValue {
    Term(String),
    Range { lo: i64, hi: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRow {
    pub param: String,
    pub value: IndexValue,
}

/// What the writer believes the current version is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// Create: there must be no resource with this id (a deleted one counts as none).
    Absent,
    /// Update with `If-Match`: the current version must be this one.
    Version(u64),
    /// Unconditional update or delete.
    Any,
}

/// A new version to store, with the terms of the new current version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordWrite {
    pub row: VersionRow,
    pub expected: Expected,
    pub index: Vec<IndexRow>,
}

/// A data key as stored: wrapped by the key-encryption key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    pub compartment: String,
    /// `None` once destroyed (crypto-shredded).
    pub wrapped: Option<Vec<u8>>,
    /// Which key-encryption key wrapped it (hex id).
    pub kek_id: String,
    pub created: Timestamp,
    pub shredded: Option<Timestamp>,
    /// Why erasure is blocked (HIPAA retention, litigation), if it is.
    pub legal_hold: Option<String>,
}

/// FHIR search prefixes, as the store applies them to an indexed range (the
/// vault's search parser uses this same type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RangePrefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    /// Approximately: the caller widens the range; the store tests overlap.
    Ap,
}

impl RangePrefix {
    pub const ALL: [RangePrefix; 9] = [
        RangePrefix::Eq,
        RangePrefix::Ne,
        RangePrefix::Gt,
        RangePrefix::Lt,
        RangePrefix::Ge,
        RangePrefix::Le,
        RangePrefix::Sa,
        RangePrefix::Eb,
        RangePrefix::Ap,
    ];

    /// The prefix as written in a search value (`ge`).
    pub fn as_str(&self) -> &'static str {
        match self {
            RangePrefix::Eq => "eq",
            RangePrefix::Ne => "ne",
            RangePrefix::Gt => "gt",
            RangePrefix::Lt => "lt",
            RangePrefix::Ge => "ge",
            RangePrefix::Le => "le",
            RangePrefix::Sa => "sa",
            RangePrefix::Eb => "eb",
            RangePrefix::Ap => "ap",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeCond {
    pub prefix: RangePrefix,
    pub lo: i64,
    pub hi: i64,
}

impl RangeCond {
    /// SQL over the target's `lo`/`hi` columns, binding the search range as
    /// `$a` (lo) and `$b` (hi). Semantics of FHIR R4 §3.1.1.4.2: the target's
    /// range is compared with the implicit range of the search value.
    pub(crate) fn sql(self, lo_col: &str, hi_col: &str, a: usize, b: usize) -> String {
        match self.prefix {
            RangePrefix::Eq => format!("({lo_col} >= ${a} AND {hi_col} <= ${b})"),
            RangePrefix::Ne => format!("NOT ({lo_col} >= ${a} AND {hi_col} <= ${b})"),
            RangePrefix::Gt => format!("({hi_col} > ${b})"),
            RangePrefix::Lt => format!("({lo_col} < ${a})"),
            // "The range above the search value intersects the target, or
            // the search value contains the target."
            RangePrefix::Ge => format!("({hi_col} > ${b} OR ({lo_col} >= ${a} AND {hi_col} <= ${b}))"),
            RangePrefix::Le => format!("({lo_col} < ${a} OR ({lo_col} >= ${a} AND {hi_col} <= ${b}))"),
            RangePrefix::Sa => format!("({lo_col} > ${b})"),
            RangePrefix::Eb => format!("({hi_col} < ${a})"),
            RangePrefix::Ap => format!("({hi_col} >= ${a} AND {lo_col} <= ${b})"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryMatch {
    Term(String),
    Range(RangeCond),
}

/// One search parameter: any of its values may match (FHIR's comma).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryClause {
    pub param: String,
    pub any_of: Vec<QueryMatch>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortField {
    Updated,
    Id,
    /// The earliest indexed `date` of the resource.
    Date,
}

/// A search over current, undeleted resources. Clauses are ANDed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordQuery {
    pub resource_type: Option<String>,
    pub ids: Option<Vec<String>>,
    /// Only resources in these compartments (a patient's own record).
    pub compartments: Option<Vec<String>>,
    pub clauses: Vec<QueryClause>,
    pub updated: Vec<RangeCond>,
    /// `(field, descending)`; by default newest first, then id.
    pub sort: Vec<(SortField, bool)>,
    pub limit: u32,
    pub offset: u64,
    /// Also count every match (FHIR `Bundle.total`).
    pub with_total: bool,
}

/// A break-glass grant as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlassRow {
    pub grant_id: String,
    pub user_id: String,
    pub patient_id: String,
    /// Sealed with the patient's data key.
    pub reason: Vec<u8>,
    pub created: Timestamp,
    pub expires: Timestamp,
    pub reviewed: Option<Timestamp>,
    pub reviewer: Option<String>,
    pub review_outcome: Option<String>,
    pub review_note: Option<Vec<u8>>,
}

#[async_trait]
pub trait Records: Send + Sync {
    /// Store a new key; false (and nothing changes) if the compartment has one.
    async fn insert_key(&self, key: &KeyRow) -> Result<bool>;
    async fn key(&self, compartment: &str) -> Result<Option<KeyRow>>;
    /// Up to `limit` keys whose compartment sorts after `after`.
    async fn keys_after(&self, after: &str, limit: u32) -> Result<Vec<KeyRow>>;
    /// Replace a key's wrapping if it is still wrapped by `old_kek_id`
    /// (compare-and-set, so a rotation can run beside live traffic).
    async fn rewrap_key(&self, compartment: &str, old_kek_id: &str, wrapped: &[u8], new_kek_id: &str) -> Result<bool>;
    async fn set_legal_hold(&self, compartment: &str, hold: Option<&str>) -> Result<bool>;
    /// Destroy a data key and the search terms and current rows of its
    /// compartment, in one transaction; the sealed versions stay, unreadable.
    async fn shred(&self, compartment: &str, at: Timestamp) -> Result<bool>;

    /// Store new versions in one transaction (a FHIR transaction is atomic).
    /// An unmet expectation is a [`crate::StoreError::Conflict`] naming the resource.
    async fn write_records(&self, writes: &[RecordWrite]) -> Result<()>;
    async fn current_record(&self, resource_type: &str, id: &str) -> Result<Option<VersionRow>>;
    async fn record_version(&self, resource_type: &str, id: &str, version: u64) -> Result<Option<VersionRow>>;
    /// Versions, newest first.
    async fn record_history(&self, resource_type: &str, id: &str, limit: u32) -> Result<Vec<VersionRow>>;
    /// Matching current versions, and the total when asked for.
    async fn search_records(&self, query: &RecordQuery) -> Result<(Vec<VersionRow>, Option<u64>)>;
    /// Current, undeleted resources of a compartment, in (type, id) order
    /// after `after`.
    async fn compartment_records(&self, compartment: &str, after: (&str, &str), limit: u32) -> Result<Vec<VersionRow>>;
    /// Current, undeleted resources per type.
    async fn count_records(&self) -> Result<Vec<(String, u64)>>;

    async fn insert_break_glass(&self, grant: &BreakGlassRow) -> Result<()>;
    /// Grants of `user_id` for `patient_id` still valid at `now`.
    async fn active_break_glass(&self, user_id: &str, patient_id: &str, now: Timestamp) -> Result<Vec<BreakGlassRow>>;
    async fn break_glass(&self, grant_id: &str) -> Result<Option<BreakGlassRow>>;
    /// Grants awaiting review (oldest first), or all, newest first.
    async fn list_break_glass(&self, pending_only: bool, limit: u32) -> Result<Vec<BreakGlassRow>>;
    /// How many grants `user_id` received since `since`.
    async fn count_break_glass_since(&self, user_id: &str, since: Timestamp) -> Result<u64>;
    /// Record a review once; false if already reviewed or unknown.
    async fn review_break_glass(
        &self,
        grant_id: &str,
        reviewer: &str,
        outcome: &str,
        note: Option<&[u8]>,
        at: Timestamp,
    ) -> Result<bool>;

    async fn put_assignment(&self, user_id: &str, patient_id: &str, detail: &str, at: Timestamp) -> Result<()>;
    async fn delete_assignment(&self, user_id: &str, patient_id: &str) -> Result<bool>;
    async fn assignment(&self, user_id: &str, patient_id: &str) -> Result<Option<String>>;

    /// Note which patients each spine event `(seq, patients)` records an
    /// access to, in one transaction (repeats are ignored).
    async fn record_access(&self, entries: &[(u64, Vec<String>)]) -> Result<()>;
    /// Events recording accesses to the patient's record, oldest first, after `after_seq`.
    async fn access_events(&self, patient_id: &str, after_seq: u64, limit: u32) -> Result<Vec<StoredEvent>>;
    /// One event by its uid (for `AuditEvent/{id}`).
    async fn event_by_uid(&self, uid: &str) -> Result<Option<StoredEvent>>;
}

/// The SQL, written once for both backends (see `common.rs` for why a macro).
macro_rules! impl_records {
    // `$begin` starts a write transaction: SQLite's must take the write lock
    // at once (`BEGIN IMMEDIATE`), or a transaction that reads first fails
    // with "database is locked" when another writer commits meanwhile.
    ($store:ty, $row:ty, $begin:expr) => {
        const VERSION_COLUMNS: &str = "resource_type, id, version, compartment, updated_ms, deleted, sealed";
        const KEY_COLUMNS: &str = "compartment, wrapped, kek_id, created_ms, shredded_ms, legal_hold";
        const GRANT_COLUMNS: &str = "grant_id, user_id, patient_id, reason, created_ms, expires_ms, reviewed_ms, \
                                     reviewer, review_outcome, review_note";

        fn version_from_row(row: &$row, with_sealed: bool) -> $crate::Result<$crate::vault::VersionRow> {
            use sqlx::Row;
            let e = $crate::StoreError::from_sqlx;
            let version: i64 = row.try_get("version").map_err(e)?;
            Ok($crate::vault::VersionRow {
                resource_type: row.try_get("resource_type").map_err(e)?,
                id: row.try_get("id").map_err(e)?,
                version: u64::try_from(version)
                    .map_err(|_| $crate::StoreError::Corrupt(format!("negative version {version}")))?,
                compartment: row.try_get("compartment").map_err(e)?,
                updated: caduceus_core::Timestamp(row.try_get("updated_ms").map_err(e)?),
                deleted: row.try_get("deleted").map_err(e)?,
                sealed: if with_sealed { row.try_get("sealed").map_err(e)? } else { None },
            })
        }

        fn key_from_row(row: &$row) -> $crate::Result<$crate::vault::KeyRow> {
            use sqlx::Row;
            let e = $crate::StoreError::from_sqlx;
            Ok($crate::vault::KeyRow {
                compartment: row.try_get("compartment").map_err(e)?,
                wrapped: row.try_get("wrapped").map_err(e)?,
                kek_id: row.try_get("kek_id").map_err(e)?,
                created: caduceus_core::Timestamp(row.try_get("created_ms").map_err(e)?),
                shredded: row.try_get::<Option<i64>, _>("shredded_ms").map_err(e)?.map(caduceus_core::Timestamp),
                legal_hold: row.try_get("legal_hold").map_err(e)?,
            })
        }

        fn grant_from_row(row: &$row) -> $crate::Result<$crate::vault::BreakGlassRow> {
            use sqlx::Row;
            let e = $crate::StoreError::from_sqlx;
            Ok($crate::vault::BreakGlassRow {
                grant_id: row.try_get("grant_id").map_err(e)?,
                user_id: row.try_get("user_id").map_err(e)?,
                patient_id: row.try_get("patient_id").map_err(e)?,
                reason: row.try_get("reason").map_err(e)?,
                created: caduceus_core::Timestamp(row.try_get("created_ms").map_err(e)?),
                expires: caduceus_core::Timestamp(row.try_get("expires_ms").map_err(e)?),
                reviewed: row.try_get::<Option<i64>, _>("reviewed_ms").map_err(e)?.map(caduceus_core::Timestamp),
                reviewer: row.try_get("reviewer").map_err(e)?,
                review_outcome: row.try_get("review_outcome").map_err(e)?,
                review_note: row.try_get("review_note").map_err(e)?,
            })
        }

        fn version_i64(version: u64) -> $crate::Result<i64> {
            i64::try_from(version).map_err(|_| $crate::StoreError::Invalid(format!("version {version} out of range")))
        }

        /// A bound value of a dynamically built search.
        enum Bind {
            Text(String),
            Int(i64),
        }

        /// Build the WHERE clause of a search over `vault_current c`.
        fn search_sql(query: &$crate::vault::RecordQuery, binds: &mut Vec<Bind>) -> $crate::Result<String> {
            use $crate::vault::QueryMatch;
            let next = |binds: &mut Vec<Bind>, b: Bind| {
                binds.push(b);
                binds.len()
            };
            let mut conditions = vec!["NOT c.deleted".to_owned()];
            if let Some(t) = &query.resource_type {
                let n = next(binds, Bind::Text(t.clone()));
                conditions.push(format!("c.resource_type = ${n}"));
            }
            if let Some(ids) = &query.ids {
                let list: Vec<String> =
                    ids.iter().map(|id| format!("${}", next(binds, Bind::Text(id.clone())))).collect();
                conditions.push(if list.is_empty() { "FALSE".to_owned() } else { format!("c.id IN ({})", list.join(", ")) });
            }
            if let Some(compartments) = &query.compartments {
                let list: Vec<String> =
                    compartments.iter().map(|c| format!("${}", next(binds, Bind::Text(c.clone())))).collect();
                conditions.push(if list.is_empty() {
                    "FALSE".to_owned()
                } else {
                    format!("c.compartment IN ({})", list.join(", "))
                });
            }
            for range in &query.updated {
                let a = next(binds, Bind::Int(range.lo));
                let b = next(binds, Bind::Int(range.hi));
                conditions.push(range.sql("c.updated_ms", "c.updated_ms", a, b));
            }
            for clause in &query.clauses {
                let p = next(binds, Bind::Text(clause.param.clone()));
                let mut alternatives = Vec::new();
                for m in &clause.any_of {
                    alternatives.push(match m {
                        QueryMatch::Term(term) => format!("i.term = ${}", next(binds, Bind::Text(term.clone()))),
                        QueryMatch::Range(range) => {
                            let a = next(binds, Bind::Int(range.lo));
                            let b = next(binds, Bind::Int(range.hi));
                            format!("(i.lo IS NOT NULL AND {})", range.sql("i.lo", "i.hi", a, b))
                        }
                    });
                }
                if alternatives.is_empty() {
                    conditions.push("FALSE".to_owned());
                    continue;
                }
                conditions.push(format!(
                    "EXISTS (SELECT 1 FROM vault_index i WHERE i.resource_type = c.resource_type AND i.id = c.id \
                     AND i.param = ${p} AND ({}))",
                    alternatives.join(" OR ")
                ));
            }
            Ok(conditions.join(" AND "))
        }

        fn order_sql(query: &$crate::vault::RecordQuery) -> String {
            use $crate::vault::SortField;
            let mut keys: Vec<String> = query
                .sort
                .iter()
                .map(|(field, descending)| {
                    let dir = if *descending { "DESC" } else { "ASC" };
                    match field {
                        SortField::Updated => format!("c.updated_ms {dir}"),
                        SortField::Id => format!("c.id {dir}"),
                        SortField::Date => format!(
                            "(SELECT MIN(d.lo) FROM vault_index d WHERE d.resource_type = c.resource_type \
                             AND d.id = c.id AND d.param = 'date') {dir}"
                        ),
                    }
                })
                .collect();
            if query.sort.is_empty() {
                keys.push("c.updated_ms DESC".to_owned());
            }
            keys.push("c.resource_type ASC".to_owned());
            keys.push("c.id ASC".to_owned());
            keys.join(", ")
        }

        #[async_trait::async_trait]
        impl $crate::vault::Records for $store {
            async fn insert_key(&self, key: &$crate::vault::KeyRow) -> $crate::Result<bool> {
                let done = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO vault_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (compartment) DO NOTHING"
                )))
                .bind(&key.compartment)
                .bind(&key.wrapped)
                .bind(&key.kek_id)
                .bind(key.created.as_millis())
                .bind(key.shredded.map(caduceus_core::Timestamp::as_millis))
                .bind(&key.legal_hold)
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn key(&self, compartment: &str) -> $crate::Result<Option<$crate::vault::KeyRow>> {
                let row: Option<$row> =
                    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {KEY_COLUMNS} FROM vault_keys WHERE compartment = $1")))
                        .bind(compartment)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err($crate::StoreError::from_sqlx)?;
                row.as_ref().map(key_from_row).transpose()
            }

            async fn keys_after(&self, after: &str, limit: u32) -> $crate::Result<Vec<$crate::vault::KeyRow>> {
                let rows: Vec<$row> = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {KEY_COLUMNS} FROM vault_keys WHERE compartment > $1 ORDER BY compartment LIMIT $2"
                )))
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                rows.iter().map(key_from_row).collect()
            }

            async fn rewrap_key(
                &self,
                compartment: &str,
                old_kek_id: &str,
                wrapped: &[u8],
                new_kek_id: &str,
            ) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "UPDATE vault_keys SET wrapped = $1, kek_id = $2 \
                     WHERE compartment = $3 AND kek_id = $4 AND wrapped IS NOT NULL",
                )
                .bind(wrapped)
                .bind(new_kek_id)
                .bind(compartment)
                .bind(old_kek_id)
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn set_legal_hold(&self, compartment: &str, hold: Option<&str>) -> $crate::Result<bool> {
                let done = sqlx::query("UPDATE vault_keys SET legal_hold = $1 WHERE compartment = $2")
                    .bind(hold)
                    .bind(compartment)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn shred(&self, compartment: &str, at: caduceus_core::Timestamp) -> $crate::Result<bool> {
                let e = $crate::StoreError::from_sqlx;
                let mut tx = self.pool.begin_with($begin).await.map_err(e)?;
                let done = sqlx::query(
                    "UPDATE vault_keys SET wrapped = NULL, shredded_ms = $1 \
                     WHERE compartment = $2 AND wrapped IS NOT NULL AND legal_hold IS NULL",
                )
                .bind(at.as_millis())
                .bind(compartment)
                .execute(&mut *tx)
                .await
                .map_err(e)?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                sqlx::query(
                    "DELETE FROM vault_index WHERE EXISTS (SELECT 1 FROM vault_current c WHERE c.compartment = $1 \
                     AND c.resource_type = vault_index.resource_type AND c.id = vault_index.id)",
                )
                .bind(compartment)
                .execute(&mut *tx)
                .await
                .map_err(e)?;
                sqlx::query("DELETE FROM vault_current WHERE compartment = $1")
                    .bind(compartment)
                    .execute(&mut *tx)
                    .await
                    .map_err(e)?;
                tx.commit().await.map_err(e)?;
                Ok(true)
            }

            async fn write_records(&self, writes: &[$crate::vault::RecordWrite]) -> $crate::Result<()> {
                use sqlx::Row;
                use $crate::vault::{Expected, IndexValue};
                let e = $crate::StoreError::from_sqlx;
                let mut tx = self.pool.begin_with($begin).await.map_err(e)?;
                for write in writes {
                    let row = &write.row;
                    let current: Option<$row> = sqlx::query(
                        "SELECT version, deleted FROM vault_current WHERE resource_type = $1 AND id = $2",
                    )
                    .bind(&row.resource_type)
                    .bind(&row.id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(e)?;
                    let current = match current {
                        Some(r) => Some((r.try_get::<i64, _>("version").map_err(e)?, r.try_get::<bool, _>("deleted").map_err(e)?)),
                        None => None,
                    };
                    let name = format!("{}/{}", row.resource_type, row.id);
                    let met = match (write.expected, current) {
                        (Expected::Absent, None) | (Expected::Absent, Some((_, true))) => true,
                        (Expected::Absent, Some(_)) => false,
                        (Expected::Version(v), Some((c, false))) => version_i64(v)? == c,
                        (Expected::Version(_), _) => false,
                        (Expected::Any, _) => true,
                    };
                    if !met {
                        return Err($crate::StoreError::Conflict(format!("{name}: the current version is not the expected one")));
                    }
                    let next = current.map_or(1, |(c, _)| c + 1);
                    if version_i64(row.version)? != next {
                        return Err($crate::StoreError::Conflict(format!("{name}: version {} is not the next ({next})", row.version)));
                    }
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "INSERT INTO vault_versions ({VERSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                    )))
                    .bind(&row.resource_type)
                    .bind(&row.id)
                    .bind(next)
                    .bind(&row.compartment)
                    .bind(row.updated.as_millis())
                    .bind(row.deleted)
                    .bind(&row.sealed)
                    .execute(&mut *tx)
                    .await
                    .map_err(e)?;
                    sqlx::query(
                        "INSERT INTO vault_current (resource_type, id, version, compartment, updated_ms, deleted) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (resource_type, id) DO UPDATE SET \
                         version = excluded.version, compartment = excluded.compartment, \
                         updated_ms = excluded.updated_ms, deleted = excluded.deleted",
                    )
                    .bind(&row.resource_type)
                    .bind(&row.id)
                    .bind(next)
                    .bind(&row.compartment)
                    .bind(row.updated.as_millis())
                    .bind(row.deleted)
                    .execute(&mut *tx)
                    .await
                    .map_err(e)?;
                    if current.is_some() {
                        sqlx::query("DELETE FROM vault_index WHERE resource_type = $1 AND id = $2")
                            .bind(&row.resource_type)
                            .bind(&row.id)
                            .execute(&mut *tx)
                            .await
                            .map_err(e)?;
                    }
                    // One multi-row INSERT per resource: index rows are many
                    // and small, and round trips dominate their cost.
                    for chunk in write.index.chunks(150) {
                        let placeholders: Vec<String> = (0..chunk.len())
                            .map(|i| {
                                let b = i * 6;
                                format!("(${}, ${}, ${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4, b + 5, b + 6)
                            })
                            .collect();
                        let sql = format!(
                            "INSERT INTO vault_index (resource_type, id, param, term, lo, hi) VALUES {}",
                            placeholders.join(", ")
                        );
                        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
                        for entry in chunk {
                            let (term, lo, hi) = match &entry.value {
                                IndexValue::Term(t) => (Some(t.clone()), None, None),
                                IndexValue::Range { lo, hi } => (None, Some(*lo), Some(*hi)),
                            };
                            insert = insert
                                .bind(row.resource_type.clone())
                                .bind(row.id.clone())
                                .bind(entry.param.clone())
                                .bind(term)
                                .bind(lo)
                                .bind(hi);
                        }
                        insert.execute(&mut *tx).await.map_err(e)?;
                    }
                }
                tx.commit().await.map_err(e)
            }

            async fn current_record(&self, resource_type: &str, id: &str) -> $crate::Result<Option<$crate::vault::VersionRow>> {
                let row: Option<$row> = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT v.resource_type, v.id, v.version, v.compartment, v.updated_ms, v.deleted, v.sealed \
                     FROM vault_current c JOIN vault_versions v ON v.resource_type = c.resource_type \
                     AND v.id = c.id AND v.version = c.version WHERE c.resource_type = $1 AND c.id = $2"
                )))
                .bind(resource_type)
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                row.as_ref().map(|r| version_from_row(r, true)).transpose()
            }

            async fn record_version(
                &self,
                resource_type: &str,
                id: &str,
                version: u64,
            ) -> $crate::Result<Option<$crate::vault::VersionRow>> {
                let row: Option<$row> = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {VERSION_COLUMNS} FROM vault_versions WHERE resource_type = $1 AND id = $2 AND version = $3"
                )))
                .bind(resource_type)
                .bind(id)
                .bind(version_i64(version)?)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                row.as_ref().map(|r| version_from_row(r, true)).transpose()
            }

            async fn record_history(
                &self,
                resource_type: &str,
                id: &str,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::vault::VersionRow>> {
                let rows: Vec<$row> = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {VERSION_COLUMNS} FROM vault_versions WHERE resource_type = $1 AND id = $2 \
                     ORDER BY version DESC LIMIT $3"
                )))
                .bind(resource_type)
                .bind(id)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                rows.iter().map(|r| version_from_row(r, true)).collect()
            }

            async fn search_records(
                &self,
                query: &$crate::vault::RecordQuery,
            ) -> $crate::Result<(Vec<$crate::vault::VersionRow>, Option<u64>)> {
                let e = $crate::StoreError::from_sqlx;
                let mut binds = Vec::new();
                let condition = search_sql(query, &mut binds)?;
                let total = if query.with_total {
                    let sql = format!("SELECT COUNT(*) FROM vault_current c WHERE {condition}");
                    let mut count = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
                    for b in &binds {
                        count = match b {
                            Bind::Text(t) => count.bind(t.clone()),
                            Bind::Int(i) => count.bind(*i),
                        };
                    }
                    Some(u64::try_from(count.fetch_one(&self.pool).await.map_err(e)?).unwrap_or(0))
                } else {
                    None
                };
                let limit = binds.len() + 1;
                let offset = binds.len() + 2;
                let sql = format!(
                    "SELECT v.resource_type, v.id, v.version, v.compartment, v.updated_ms, v.deleted, v.sealed \
                     FROM vault_current c JOIN vault_versions v ON v.resource_type = c.resource_type \
                     AND v.id = c.id AND v.version = c.version WHERE {condition} ORDER BY {} LIMIT ${limit} OFFSET ${offset}",
                    order_sql(query)
                );
                let mut select = sqlx::query(sqlx::AssertSqlSafe(sql));
                for b in &binds {
                    select = match b {
                        Bind::Text(t) => select.bind(t.clone()),
                        Bind::Int(i) => select.bind(*i),
                    };
                }
                let offset = i64::try_from(query.offset).map_err(|_| $crate::StoreError::Invalid("offset out of range".into()))?;
                let rows: Vec<$row> =
                    select.bind(i64::from(query.limit)).bind(offset).fetch_all(&self.pool).await.map_err(e)?;
                let rows = rows.iter().map(|r| version_from_row(r, true)).collect::<$crate::Result<Vec<_>>>()?;
                Ok((rows, total))
            }

            async fn compartment_records(
                &self,
                compartment: &str,
                after: (&str, &str),
                limit: u32,
            ) -> $crate::Result<Vec<$crate::vault::VersionRow>> {
                let rows: Vec<$row> = sqlx::query(
                    "SELECT v.resource_type, v.id, v.version, v.compartment, v.updated_ms, v.deleted, v.sealed \
                     FROM vault_current c JOIN vault_versions v ON v.resource_type = c.resource_type \
                     AND v.id = c.id AND v.version = c.version \
                     WHERE c.compartment = $1 AND NOT c.deleted AND (c.resource_type > $2 OR (c.resource_type = $2 AND c.id > $3)) \
                     ORDER BY c.resource_type, c.id LIMIT $4",
                )
                .bind(compartment)
                .bind(after.0)
                .bind(after.1)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                rows.iter().map(|r| version_from_row(r, true)).collect()
            }

            async fn count_records(&self) -> $crate::Result<Vec<(String, u64)>> {
                use sqlx::Row;
                let e = $crate::StoreError::from_sqlx;
                let rows: Vec<$row> = sqlx::query(
                    "SELECT resource_type, COUNT(*) AS n FROM vault_current WHERE NOT deleted \
                     GROUP BY resource_type ORDER BY resource_type",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(e)?;
                rows.iter()
                    .map(|r| {
                        let n: i64 = r.try_get("n").map_err(e)?;
                        Ok((r.try_get("resource_type").map_err(e)?, u64::try_from(n).unwrap_or(0)))
                    })
                    .collect()
            }

            async fn insert_break_glass(&self, grant: &$crate::vault::BreakGlassRow) -> $crate::Result<()> {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO vault_break_glass ({GRANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                )))
                .bind(&grant.grant_id)
                .bind(&grant.user_id)
                .bind(&grant.patient_id)
                .bind(&grant.reason)
                .bind(grant.created.as_millis())
                .bind(grant.expires.as_millis())
                .bind(grant.reviewed.map(caduceus_core::Timestamp::as_millis))
                .bind(&grant.reviewer)
                .bind(&grant.review_outcome)
                .bind(&grant.review_note)
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                Ok(())
            }

            async fn active_break_glass(
                &self,
                user_id: &str,
                patient_id: &str,
                now: caduceus_core::Timestamp,
            ) -> $crate::Result<Vec<$crate::vault::BreakGlassRow>> {
                let rows: Vec<$row> = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {GRANT_COLUMNS} FROM vault_break_glass WHERE user_id = $1 AND patient_id = $2 \
                     AND expires_ms > $3 AND created_ms <= $3 ORDER BY expires_ms DESC"
                )))
                .bind(user_id)
                .bind(patient_id)
                .bind(now.as_millis())
                .fetch_all(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                rows.iter().map(grant_from_row).collect()
            }

            async fn break_glass(&self, grant_id: &str) -> $crate::Result<Option<$crate::vault::BreakGlassRow>> {
                let row: Option<$row> = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {GRANT_COLUMNS} FROM vault_break_glass WHERE grant_id = $1"
                )))
                .bind(grant_id)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                row.as_ref().map(grant_from_row).transpose()
            }

            async fn list_break_glass(
                &self,
                pending_only: bool,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::vault::BreakGlassRow>> {
                let sql = if pending_only {
                    format!("SELECT {GRANT_COLUMNS} FROM vault_break_glass WHERE reviewed_ms IS NULL ORDER BY created_ms LIMIT $1")
                } else {
                    format!("SELECT {GRANT_COLUMNS} FROM vault_break_glass ORDER BY created_ms DESC LIMIT $1")
                };
                let rows: Vec<$row> = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::StoreError::from_sqlx)?;
                rows.iter().map(grant_from_row).collect()
            }

            async fn count_break_glass_since(&self, user_id: &str, since: caduceus_core::Timestamp) -> $crate::Result<u64> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM vault_break_glass WHERE user_id = $1 AND created_ms >= $2")
                    .bind(user_id)
                    .bind(since.as_millis())
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::StoreError::from_sqlx)?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            async fn review_break_glass(
                &self,
                grant_id: &str,
                reviewer: &str,
                outcome: &str,
                note: Option<&[u8]>,
                at: caduceus_core::Timestamp,
            ) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "UPDATE vault_break_glass SET reviewed_ms = $1, reviewer = $2, review_outcome = $3, review_note = $4 \
                     WHERE grant_id = $5 AND reviewed_ms IS NULL",
                )
                .bind(at.as_millis())
                .bind(reviewer)
                .bind(outcome)
                .bind(note)
                .bind(grant_id)
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn put_assignment(
                &self,
                user_id: &str,
                patient_id: &str,
                detail: &str,
                at: caduceus_core::Timestamp,
            ) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO vault_assignments (user_id, patient_id, detail, created_ms) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (user_id, patient_id) DO UPDATE SET detail = excluded.detail",
                )
                .bind(user_id)
                .bind(patient_id)
                .bind(detail)
                .bind(at.as_millis())
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                Ok(())
            }

            async fn delete_assignment(&self, user_id: &str, patient_id: &str) -> $crate::Result<bool> {
                let done = sqlx::query("DELETE FROM vault_assignments WHERE user_id = $1 AND patient_id = $2")
                    .bind(user_id)
                    .bind(patient_id)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn assignment(&self, user_id: &str, patient_id: &str) -> $crate::Result<Option<String>> {
                sqlx::query_scalar("SELECT detail FROM vault_assignments WHERE user_id = $1 AND patient_id = $2")
                    .bind(user_id)
                    .bind(patient_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::StoreError::from_sqlx)
            }

            async fn record_access(&self, entries: &[(u64, Vec<String>)]) -> $crate::Result<()> {
                let mut rows = Vec::new();
                for (seq, patients) in entries {
                    let seq = $crate::seq_to_i64(*seq)?;
                    rows.extend(patients.iter().map(|p| (seq, p.clone())));
                }
                if rows.is_empty() {
                    return Ok(());
                }
                let mut tx = self.pool.begin_with($begin).await.map_err($crate::StoreError::from_sqlx)?;
                for chunk in rows.chunks(400) {
                    let placeholders: Vec<String> =
                        (0..chunk.len()).map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2)).collect();
                    let sql = format!(
                        "INSERT INTO vault_access (patient_id, seq) VALUES {} ON CONFLICT DO NOTHING",
                        placeholders.join(", ")
                    );
                    let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for (seq, patient) in chunk {
                        insert = insert.bind(patient.clone()).bind(*seq);
                    }
                    insert.execute(&mut *tx).await.map_err($crate::StoreError::from_sqlx)?;
                }
                tx.commit().await.map_err($crate::StoreError::from_sqlx)
            }

            async fn access_events(
                &self,
                patient_id: &str,
                after_seq: u64,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::StoredEvent>> {
                use sqlx::Row;
                let e = $crate::StoreError::from_sqlx;
                let rows: Vec<$row> = sqlx::query(
                    "SELECT e.seq, e.digest, e.body FROM vault_access a JOIN events e ON e.seq = a.seq \
                     WHERE a.patient_id = $1 AND a.seq > $2 ORDER BY a.seq LIMIT $3",
                )
                .bind(patient_id)
                .bind($crate::seq_to_i64(after_seq)?)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(e)?;
                rows.iter()
                    .map(|row| {
                        let seq: i64 = row.try_get("seq").map_err(e)?;
                        let digest: Vec<u8> = row.try_get("digest").map_err(e)?;
                        let body: String = row.try_get("body").map_err(e)?;
                        $crate::StoredEvent::from_row(seq, &digest, &body)
                    })
                    .collect()
            }

            async fn event_by_uid(&self, uid: &str) -> $crate::Result<Option<$crate::StoredEvent>> {
                use sqlx::Row;
                let e = $crate::StoreError::from_sqlx;
                let row: Option<$row> = sqlx::query("SELECT seq, digest, body FROM events WHERE uid = $1")
                    .bind(uid)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(e)?;
                row.map(|row| {
                    let seq: i64 = row.try_get("seq").map_err(e)?;
                    let digest: Vec<u8> = row.try_get("digest").map_err(e)?;
                    let body: String = row.try_get("body").map_err(e)?;
                    $crate::StoredEvent::from_row(seq, &digest, &body)
                })
                .transpose()
            }
        }
    };
}

pub(crate) use impl_records;
