//! What the identity capability keeps: accounts, their second factors, and
//! sessions. The store checks nothing about credentials; it persists them,
//! and offers the compare-and-set operations that make one-time codes
//! single-use even under parallel requests.

use async_trait::async_trait;
use caduceus_core::Timestamp;

use crate::Result;

/// One account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// A UUID, also the WebAuthn user handle. Safe to log.
    pub user_id: String,
    /// Normalised (trimmed, lower case). Unique.
    pub username: String,
    pub display_name: String,
    /// Role names, as the identity crate spells them.
    pub roles: Vec<String>,
    /// argon2id PHC string; `None` for passkey- or SSO-only accounts.
    pub password_hash: Option<String>,
    /// For patient accounts: the pseudonymous id of their own record.
    pub patient_ref: Option<String>,
    /// For accounts that sign in through an OpenID Connect provider.
    pub external: Option<ExternalIdentity>,
    pub disabled: Option<Timestamp>,
    pub created: Timestamp,
    pub updated: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIdentity {
    pub issuer: String,
    pub subject: String,
}

/// A TOTP secret and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpRecord {
    pub secret: Vec<u8>,
    /// `SHA1`, `SHA256` or `SHA512`.
    pub algorithm: String,
    pub digits: u32,
    pub period: u64,
    /// `None` while enrolment waits for the first correct code.
    pub confirmed: Option<Timestamp>,
    /// The last time step accepted (-1: none yet).
    pub last_step: i64,
}

/// A registered WebAuthn credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyRecord {
    pub credential_id: Vec<u8>,
    pub user_id: String,
    pub name: String,
    /// The verifier's serialised credential: public key and counter.
    pub passkey: String,
    pub created: Timestamp,
    pub last_used: Option<Timestamp>,
}

/// A signed-in session, kept as the SHA-256 of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub session_hash: [u8; 32],
    /// Public identifier, safe to log and show.
    pub session_id: String,
    pub user_id: String,
    /// `cookie` (browser) or `bearer` (API client).
    pub kind: String,
    /// How the user proved who they are, e.g. `password,totp` or `passkey`.
    pub methods: Vec<String>,
    /// The client address at sign-in.
    pub source: String,
    pub created: Timestamp,
    pub last_seen: Timestamp,
    /// Absolute end of the session, however active it is.
    pub expires: Timestamp,
    /// Until when privileged actions are allowed without re-authenticating.
    pub elevated_until: Option<Timestamp>,
    pub revoked: Option<Timestamp>,
}

#[async_trait]
pub trait Identities: Send + Sync {
    /// A duplicate username (or external identity) is a [`crate::StoreError::Conflict`].
    async fn create_user(&self, user: &UserRecord) -> Result<()>;
    async fn user_by_id(&self, user_id: &str) -> Result<Option<UserRecord>>;
    async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>>;
    async fn user_by_external(&self, issuer: &str, subject: &str) -> Result<Option<UserRecord>>;
    /// Up to `limit` users whose username sorts after `after`, in username order.
    async fn list_users(&self, after: &str, limit: u32) -> Result<Vec<UserRecord>>;
    async fn count_users(&self) -> Result<u64>;
    /// Replace the mutable fields of an existing user; false if there is none.
    async fn update_user(&self, user: &UserRecord) -> Result<bool>;

    /// Set (or replace) the user's TOTP secret.
    async fn put_totp(&self, user_id: &str, totp: &TotpRecord) -> Result<()>;
    async fn totp(&self, user_id: &str) -> Result<Option<TotpRecord>>;
    /// Mark enrolment complete and consume `step`, if it is still unconfirmed.
    async fn confirm_totp(&self, user_id: &str, step: i64, at: Timestamp) -> Result<bool>;
    /// Accept time step `step` once: true only if it is later than the last
    /// accepted step of a confirmed secret (atomic compare-and-set).
    async fn use_totp_step(&self, user_id: &str, step: i64) -> Result<bool>;
    async fn delete_totp(&self, user_id: &str) -> Result<bool>;

    /// Replace all of the user's recovery codes, in one transaction.
    async fn replace_recovery_codes(&self, user_id: &str, hashes: &[[u8; 32]]) -> Result<()>;
    /// Spend one recovery code: true if it existed and was unused.
    async fn use_recovery_code(&self, user_id: &str, hash: &[u8; 32], at: Timestamp) -> Result<bool>;
    async fn unused_recovery_codes(&self, user_id: &str) -> Result<u64>;

    async fn insert_passkey(&self, passkey: &PasskeyRecord) -> Result<()>;
    async fn passkeys_of(&self, user_id: &str) -> Result<Vec<PasskeyRecord>>;
    /// Store the credential's new state (its counter) after a use.
    async fn update_passkey(&self, credential_id: &[u8], passkey: &str, at: Timestamp) -> Result<bool>;
    async fn delete_passkey(&self, user_id: &str, credential_id: &[u8]) -> Result<bool>;

    async fn insert_session(&self, session: &SessionRecord) -> Result<()>;
    async fn find_session(&self, session_hash: &[u8; 32]) -> Result<Option<SessionRecord>>;
    async fn sessions_of(&self, user_id: &str) -> Result<Vec<SessionRecord>>;
    async fn touch_session(&self, session_hash: &[u8; 32], last_seen: Timestamp) -> Result<()>;
    async fn elevate_session(&self, session_hash: &[u8; 32], until: Timestamp) -> Result<bool>;
    async fn revoke_session(&self, session_hash: &[u8; 32], at: Timestamp) -> Result<bool>;
    /// Revoke every live session of the user except `keep`; returns how many.
    async fn revoke_sessions_of(&self, user_id: &str, keep: Option<&[u8; 32]>, at: Timestamp) -> Result<u64>;
}

pub(crate) fn join(items: &[String]) -> String {
    items.join(",")
}

pub(crate) fn split(text: &str) -> Vec<String> {
    text.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

pub(crate) fn hash32(bytes: Vec<u8>, what: &str) -> Result<[u8; 32]> {
    bytes.try_into().map_err(|_| crate::StoreError::Corrupt(format!("{what} is not 32 bytes")))
}

/// The SQL, written once for both backends (see `common.rs` for why a macro).
macro_rules! impl_identity {
    ($store:ty, $row:ty) => {
        const USER_COLUMNS: &str = "user_id, username, display_name, roles, password_hash, patient_ref, \
                                    external_issuer, external_subject, disabled_ms, created_ms, updated_ms";
        const SESSION_COLUMNS: &str = "session_hash, session_id, user_id, kind, methods, source, created_ms, \
                                       last_seen_ms, expires_ms, elevated_until_ms, revoked_ms";

        fn user_from_row(row: &$row) -> $crate::Result<$crate::UserRecord> {
            use sqlx::Row;
            let e = $crate::StoreError::from_sqlx;
            let issuer: Option<String> = row.try_get("external_issuer").map_err(e)?;
            let subject: Option<String> = row.try_get("external_subject").map_err(e)?;
            let roles: String = row.try_get("roles").map_err(e)?;
            Ok($crate::UserRecord {
                user_id: row.try_get("user_id").map_err(e)?,
                username: row.try_get("username").map_err(e)?,
                display_name: row.try_get("display_name").map_err(e)?,
                roles: $crate::identity::split(&roles),
                password_hash: row.try_get("password_hash").map_err(e)?,
                patient_ref: row.try_get("patient_ref").map_err(e)?,
                external: issuer.zip(subject).map(|(issuer, subject)| $crate::ExternalIdentity { issuer, subject }),
                disabled: row.try_get::<Option<i64>, _>("disabled_ms").map_err(e)?.map(caduceus_core::Timestamp),
                created: caduceus_core::Timestamp(row.try_get("created_ms").map_err(e)?),
                updated: caduceus_core::Timestamp(row.try_get("updated_ms").map_err(e)?),
            })
        }

        fn session_from_row(row: &$row) -> $crate::Result<$crate::SessionRecord> {
            use sqlx::Row;
            let e = $crate::StoreError::from_sqlx;
            let ms = |column: &str| -> $crate::Result<Option<caduceus_core::Timestamp>> {
                Ok(row.try_get::<Option<i64>, _>(column).map_err(e)?.map(caduceus_core::Timestamp))
            };
            let required = |column: &str| -> $crate::Result<caduceus_core::Timestamp> {
                ms(column)?.ok_or_else(|| $crate::StoreError::Corrupt(format!("session without {column}")))
            };
            let methods: String = row.try_get("methods").map_err(e)?;
            Ok($crate::SessionRecord {
                session_hash: $crate::identity::hash32(row.try_get("session_hash").map_err(e)?, "session hash")?,
                session_id: row.try_get("session_id").map_err(e)?,
                user_id: row.try_get("user_id").map_err(e)?,
                kind: row.try_get("kind").map_err(e)?,
                methods: $crate::identity::split(&methods),
                source: row.try_get("source").map_err(e)?,
                created: required("created_ms")?,
                last_seen: required("last_seen_ms")?,
                expires: required("expires_ms")?,
                elevated_until: ms("elevated_until_ms")?,
                revoked: ms("revoked_ms")?,
            })
        }

        fn passkey_from_row(row: &$row) -> $crate::Result<$crate::PasskeyRecord> {
            use sqlx::Row;
            let e = $crate::StoreError::from_sqlx;
            Ok($crate::PasskeyRecord {
                credential_id: row.try_get("credential_id").map_err(e)?,
                user_id: row.try_get("user_id").map_err(e)?,
                name: row.try_get("name").map_err(e)?,
                passkey: row.try_get("passkey").map_err(e)?,
                created: caduceus_core::Timestamp(row.try_get("created_ms").map_err(e)?),
                last_used: row.try_get::<Option<i64>, _>("last_used_ms").map_err(e)?.map(caduceus_core::Timestamp),
            })
        }

        impl $store {
            async fn one_user(&self, condition: &str, binds: &[&str]) -> $crate::Result<Option<$crate::UserRecord>> {
                let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE {condition}");
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for value in binds {
                    query = query.bind(*value);
                }
                let row: Option<$row> =
                    query.fetch_optional(&self.pool).await.map_err($crate::StoreError::from_sqlx)?;
                row.as_ref().map(user_from_row).transpose()
            }
        }

        #[async_trait::async_trait]
        impl $crate::Identities for $store {
            async fn create_user(&self, user: &$crate::UserRecord) -> $crate::Result<()> {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                )))
                .bind(&user.user_id)
                .bind(&user.username)
                .bind(&user.display_name)
                .bind($crate::identity::join(&user.roles))
                .bind(&user.password_hash)
                .bind(&user.patient_ref)
                .bind(user.external.as_ref().map(|x| x.issuer.clone()))
                .bind(user.external.as_ref().map(|x| x.subject.clone()))
                .bind(user.disabled.map(caduceus_core::Timestamp::as_millis))
                .bind(user.created.as_millis())
                .bind(user.updated.as_millis())
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                Ok(())
            }

            async fn user_by_id(&self, user_id: &str) -> $crate::Result<Option<$crate::UserRecord>> {
                self.one_user("user_id = $1", &[user_id]).await
            }

            async fn user_by_username(&self, username: &str) -> $crate::Result<Option<$crate::UserRecord>> {
                self.one_user("username = $1", &[username]).await
            }

            async fn user_by_external(
                &self,
                issuer: &str,
                subject: &str,
            ) -> $crate::Result<Option<$crate::UserRecord>> {
                self.one_user("external_issuer = $1 AND external_subject = $2", &[issuer, subject]).await
            }

            async fn list_users(&self, after: &str, limit: u32) -> $crate::Result<Vec<$crate::UserRecord>> {
                let rows: Vec<$row> = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE username > $1 ORDER BY username LIMIT $2"
                )))
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                rows.iter().map(user_from_row).collect()
            }

            async fn count_users(&self) -> $crate::Result<u64> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::StoreError::from_sqlx)?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            async fn update_user(&self, user: &$crate::UserRecord) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "UPDATE users SET display_name = $2, roles = $3, password_hash = $4, patient_ref = $5, \
                     external_issuer = $6, external_subject = $7, disabled_ms = $8, updated_ms = $9 \
                     WHERE user_id = $1",
                )
                .bind(&user.user_id)
                .bind(&user.display_name)
                .bind($crate::identity::join(&user.roles))
                .bind(&user.password_hash)
                .bind(&user.patient_ref)
                .bind(user.external.as_ref().map(|x| x.issuer.clone()))
                .bind(user.external.as_ref().map(|x| x.subject.clone()))
                .bind(user.disabled.map(caduceus_core::Timestamp::as_millis))
                .bind(user.updated.as_millis())
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn put_totp(&self, user_id: &str, totp: &$crate::TotpRecord) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO totp_secrets (user_id, secret, algorithm, digits, period, confirmed_ms, last_step) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, algorithm = excluded.algorithm, \
                     digits = excluded.digits, period = excluded.period, confirmed_ms = excluded.confirmed_ms, \
                     last_step = excluded.last_step",
                )
                .bind(user_id)
                .bind(totp.secret.as_slice())
                .bind(&totp.algorithm)
                .bind(i64::from(totp.digits))
                .bind(i64::try_from(totp.period).unwrap_or(i64::MAX))
                .bind(totp.confirmed.map(caduceus_core::Timestamp::as_millis))
                .bind(totp.last_step)
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                Ok(())
            }

            async fn totp(&self, user_id: &str) -> $crate::Result<Option<$crate::TotpRecord>> {
                use sqlx::Row;
                let row: Option<$row> = sqlx::query(
                    "SELECT secret, algorithm, digits, period, confirmed_ms, last_step \
                     FROM totp_secrets WHERE user_id = $1",
                )
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                let Some(row) = row else { return Ok(None) };
                let e = $crate::StoreError::from_sqlx;
                let corrupt = |what: &str| $crate::StoreError::Corrupt(format!("totp {what} out of range"));
                Ok(Some($crate::TotpRecord {
                    secret: row.try_get("secret").map_err(e)?,
                    algorithm: row.try_get("algorithm").map_err(e)?,
                    digits: u32::try_from(row.try_get::<i64, _>("digits").map_err(e)?)
                        .map_err(|_| corrupt("digits"))?,
                    period: u64::try_from(row.try_get::<i64, _>("period").map_err(e)?)
                        .map_err(|_| corrupt("period"))?,
                    confirmed: row
                        .try_get::<Option<i64>, _>("confirmed_ms")
                        .map_err(e)?
                        .map(caduceus_core::Timestamp),
                    last_step: row.try_get("last_step").map_err(e)?,
                }))
            }

            async fn confirm_totp(&self, user_id: &str, step: i64, at: caduceus_core::Timestamp) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "UPDATE totp_secrets SET confirmed_ms = $2, last_step = $3 \
                     WHERE user_id = $1 AND confirmed_ms IS NULL",
                )
                .bind(user_id)
                .bind(at.as_millis())
                .bind(step)
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn use_totp_step(&self, user_id: &str, step: i64) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "UPDATE totp_secrets SET last_step = $2 \
                     WHERE user_id = $1 AND confirmed_ms IS NOT NULL AND last_step < $2",
                )
                .bind(user_id)
                .bind(step)
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_totp(&self, user_id: &str) -> $crate::Result<bool> {
                let done = sqlx::query("DELETE FROM totp_secrets WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn replace_recovery_codes(&self, user_id: &str, hashes: &[[u8; 32]]) -> $crate::Result<()> {
                let mut tx = self.pool.begin().await.map_err($crate::StoreError::from_sqlx)?;
                sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::StoreError::from_sqlx)?;
                for hash in hashes {
                    sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                        .bind(user_id)
                        .bind(hash.as_slice())
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::StoreError::from_sqlx)?;
                }
                tx.commit().await.map_err($crate::StoreError::from_sqlx)
            }

            async fn use_recovery_code(
                &self,
                user_id: &str,
                hash: &[u8; 32],
                at: caduceus_core::Timestamp,
            ) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "UPDATE recovery_codes SET used_ms = $3 \
                     WHERE user_id = $1 AND code_hash = $2 AND used_ms IS NULL",
                )
                .bind(user_id)
                .bind(hash.as_slice())
                .bind(at.as_millis())
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn unused_recovery_codes(&self, user_id: &str) -> $crate::Result<u64> {
                let n: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_ms IS NULL")
                        .bind(user_id)
                        .fetch_one(&self.pool)
                        .await
                        .map_err($crate::StoreError::from_sqlx)?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            async fn insert_passkey(&self, passkey: &$crate::PasskeyRecord) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO passkeys (credential_id, user_id, name, passkey, created_ms, last_used_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(passkey.credential_id.as_slice())
                .bind(&passkey.user_id)
                .bind(&passkey.name)
                .bind(&passkey.passkey)
                .bind(passkey.created.as_millis())
                .bind(passkey.last_used.map(caduceus_core::Timestamp::as_millis))
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                Ok(())
            }

            async fn passkeys_of(&self, user_id: &str) -> $crate::Result<Vec<$crate::PasskeyRecord>> {
                let rows: Vec<$row> = sqlx::query(
                    "SELECT credential_id, user_id, name, passkey, created_ms, last_used_ms \
                     FROM passkeys WHERE user_id = $1 ORDER BY created_ms, credential_id",
                )
                .bind(user_id)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                rows.iter().map(passkey_from_row).collect()
            }

            async fn update_passkey(
                &self,
                credential_id: &[u8],
                passkey: &str,
                at: caduceus_core::Timestamp,
            ) -> $crate::Result<bool> {
                let done = sqlx::query("UPDATE passkeys SET passkey = $2, last_used_ms = $3 WHERE credential_id = $1")
                    .bind(credential_id)
                    .bind(passkey)
                    .bind(at.as_millis())
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_passkey(&self, user_id: &str, credential_id: &[u8]) -> $crate::Result<bool> {
                let done = sqlx::query("DELETE FROM passkeys WHERE user_id = $1 AND credential_id = $2")
                    .bind(user_id)
                    .bind(credential_id)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn insert_session(&self, s: &$crate::SessionRecord) -> $crate::Result<()> {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                )))
                .bind(s.session_hash.as_slice())
                .bind(&s.session_id)
                .bind(&s.user_id)
                .bind(&s.kind)
                .bind($crate::identity::join(&s.methods))
                .bind(&s.source)
                .bind(s.created.as_millis())
                .bind(s.last_seen.as_millis())
                .bind(s.expires.as_millis())
                .bind(s.elevated_until.map(caduceus_core::Timestamp::as_millis))
                .bind(s.revoked.map(caduceus_core::Timestamp::as_millis))
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                Ok(())
            }

            async fn find_session(&self, session_hash: &[u8; 32]) -> $crate::Result<Option<$crate::SessionRecord>> {
                let row: Option<$row> = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions WHERE session_hash = $1"
                )))
                .bind(session_hash.as_slice())
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                row.as_ref().map(session_from_row).transpose()
            }

            async fn sessions_of(&self, user_id: &str) -> $crate::Result<Vec<$crate::SessionRecord>> {
                let rows: Vec<$row> = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1 ORDER BY created_ms, session_id"
                )))
                .bind(user_id)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                rows.iter().map(session_from_row).collect()
            }

            async fn touch_session(
                &self,
                session_hash: &[u8; 32],
                last_seen: caduceus_core::Timestamp,
            ) -> $crate::Result<()> {
                sqlx::query(
                    "UPDATE sessions SET last_seen_ms = $2 WHERE session_hash = $1 AND last_seen_ms < $2",
                )
                .bind(session_hash.as_slice())
                .bind(last_seen.as_millis())
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                Ok(())
            }

            async fn elevate_session(
                &self,
                session_hash: &[u8; 32],
                until: caduceus_core::Timestamp,
            ) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "UPDATE sessions SET elevated_until_ms = $2 WHERE session_hash = $1 AND revoked_ms IS NULL",
                )
                .bind(session_hash.as_slice())
                .bind(until.as_millis())
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn revoke_session(
                &self,
                session_hash: &[u8; 32],
                at: caduceus_core::Timestamp,
            ) -> $crate::Result<bool> {
                let done =
                    sqlx::query("UPDATE sessions SET revoked_ms = $2 WHERE session_hash = $1 AND revoked_ms IS NULL")
                        .bind(session_hash.as_slice())
                        .bind(at.as_millis())
                        .execute(&self.pool)
                        .await
                        .map_err($crate::StoreError::from_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn revoke_sessions_of(
                &self,
                user_id: &str,
                keep: Option<&[u8; 32]>,
                at: caduceus_core::Timestamp,
            ) -> $crate::Result<u64> {
                let done = sqlx::query(
                    "UPDATE sessions SET revoked_ms = $2 \
                     WHERE user_id = $1 AND revoked_ms IS NULL AND session_hash <> $3",
                )
                .bind(user_id)
                .bind(at.as_millis())
                .bind(keep.map(|k| k.to_vec()).unwrap_or_default())
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                Ok(done.rows_affected())
            }
        }
    };
}

pub(crate) use impl_identity;
