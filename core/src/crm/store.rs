//! The CRM sync's repository: watermarks, known records and the last known value of every synced
//! field. One implementation generic over the database (the SQL is the same on SQLite and
//! PostgreSQL: `$N` placeholders and `ON CONFLICT … DO UPDATE` work on both); SQLite writes go
//! through the file's write gate like every other writer.

use super::mapping::Crm;
use crate::storage::Db;
use crate::storage::{BeginWrite, StorageError, placeholders};
use futures_util::future::BoxFuture;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};
use std::collections::HashMap;

/// How keys and values are kept: a SHA-256 digest (128 bits, hex). The sync only ever compares
/// them, so no person's identifiers (a userId or an email as a record key, an email as a field
/// value) are copied into these tables, and an erasure leaves nothing here to find.
pub fn digest(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))[..32].to_owned()
}

/// What Touchpoint knows of one CRM record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordRow {
    /// The CRM's id.
    pub record_id: String,
    /// The [`digest`] of its external key (userId, groupId, email) or of `id:<record_id>`.
    pub record_key: String,
    /// Unused (kept NULL: the identity a record's messages carry is looked up, never stored).
    pub who: Option<String>,
    /// The account it belongs to (or is).
    pub group_id: Option<String>,
    /// A converted Lead's Contact id.
    pub converted: Option<String>,
    /// An account change waiting for a known member (JSON).
    pub pending: Option<String>,
}

/// The last known value of one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRow {
    /// The [`digest`] of the record's key.
    pub record_key: String,
    /// The CRM field.
    pub field: String,
    /// The [`digest`] of the value's canonical text ([`super::mapping::canon`]).
    pub value: String,
    /// When it was set (ms).
    pub modified_at: i64,
    /// `in` (the CRM changed it) or `out` (we wrote it).
    pub origin: String,
}

/// Everything one sync step writes, in one transaction.
#[derive(Debug, Clone, Default)]
pub struct Writes {
    /// (object, record).
    pub records: Vec<(String, RecordRow)>,
    /// (object, field).
    pub fields: Vec<(String, FieldRow)>,
    /// (object, old key, new key): a record that got its external key.
    pub rekeys: Vec<(String, String, String)>,
    /// (object, modified watermark, deleted watermark).
    pub watermarks: Vec<(String, i64, i64)>,
}

/// The repository.
pub trait CrmStore: Send + Sync + 'static {
    /// The watermarks of an object: (modified, deleted), ms.
    fn watermark<'a>(
        &'a self,
        crm: Crm,
        object: &'a str,
    ) -> BoxFuture<'a, Result<Option<(i64, i64)>, StorageError>>;
    /// Sets both watermarks of an object to `at` unless it has them already.
    fn init_watermark<'a>(
        &'a self,
        crm: Crm,
        object: &'a str,
        at: i64,
    ) -> BoxFuture<'a, Result<(), StorageError>>;
    /// Known records by CRM id.
    fn records<'a>(
        &'a self,
        crm: Crm,
        object: &'a str,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<RecordRow>, StorageError>>;
    /// Known records whose account change waits for a member.
    fn pending(&self, crm: Crm) -> BoxFuture<'_, Result<Vec<(String, RecordRow)>, StorageError>>;
    /// Field states of records by key.
    fn fields<'a>(
        &'a self,
        crm: Crm,
        object: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<FieldRow>, StorageError>>;
    /// Writes a sync step's decisions in one transaction.
    fn apply<'a>(
        &'a self,
        crm: Crm,
        writes: &'a Writes,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StorageError>>;
    /// The `user_id` (preferred) or an `anonymous_id` of the live profile holding identity
    /// (kind, value): what a message about that person should carry.
    fn who<'a>(
        &'a self,
        kind: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<Option<(String, String)>, StorageError>>;
    /// A member of an account (its `user_id` or an `anonymous_id`).
    fn member<'a>(
        &'a self,
        group_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<(String, String)>, StorageError>>;
}

/// [`CrmStore`] over a migrated SQLite or PostgreSQL pool.
#[derive(Clone, Debug)]
pub struct SqlCrm<DB: Database> {
    pool: Db<DB>,
}

impl<DB: Database> SqlCrm<DB> {
    /// Wraps a migrated pool.
    pub fn new(pool: Db<DB>) -> Self {
        SqlCrm { pool }
    }
}

/// SQLite's CRM store.
pub type SqliteCrm = SqlCrm<sqlx::Sqlite>;
/// PostgreSQL's CRM store.
pub type PgCrm = SqlCrm<sqlx::Postgres>;

type RecordTuple = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

type PendingTuple = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn record(t: RecordTuple) -> RecordRow {
    RecordRow {
        record_id: t.0,
        record_key: t.1,
        who: t.2,
        group_id: t.3,
        converted: t.4,
        pending: t.5,
    }
}

const WHO: &str = "SELECT p.kind, p.value FROM identities i \
     JOIN identities p ON p.profile_id = i.profile_id \
     JOIN profiles pr ON pr.id = i.profile_id AND pr.merged_into IS NULL \
     WHERE i.kind = $1 AND i.value = $2 AND p.kind IN ('user_id', 'anonymous_id') \
     ORDER BY CASE p.kind WHEN 'user_id' THEN 0 ELSE 1 END, p.added_at DESC, p.value LIMIT 1";

const MEMBER: &str = "SELECT p.kind, p.value FROM profile_accounts pa \
     JOIN profiles pr ON pr.id = pa.profile_id AND pr.merged_into IS NULL \
     JOIN identities p ON p.profile_id = pa.profile_id \
     WHERE pa.group_id = $1 AND p.kind IN ('user_id', 'anonymous_id') \
     ORDER BY CASE p.kind WHEN 'user_id' THEN 0 ELSE 1 END, pa.profile_id, p.value LIMIT 1";

impl<DB> CrmStore for SqlCrm<DB>
where
    DB: Database,
    Db<DB>: BeginWrite<Db = DB>,
    for<'c> &'c Db<DB>: Executor<'c, Database = DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    String: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    Option<String>: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    i64: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB>,
{
    fn watermark<'a>(
        &'a self,
        crm: Crm,
        object: &'a str,
    ) -> BoxFuture<'a, Result<Option<(i64, i64)>, StorageError>> {
        Box::pin(async move {
            Ok(sqlx::query_as::<DB, (i64, i64)>(
                "SELECT modified_at, deleted_at FROM crm_watermarks WHERE crm = $1 AND object = $2",
            )
            .bind(crm.as_str())
            .bind(object)
            .fetch_optional(&self.pool)
            .await?)
        })
    }

    fn init_watermark<'a>(
        &'a self,
        crm: Crm,
        object: &'a str,
        at: i64,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let (mut tx, _gate) = self.pool.begin_state_write().await?;
            sqlx::query::<DB>(
                "INSERT INTO crm_watermarks (crm, object, modified_at, deleted_at, updated_at) \
                 VALUES ($1, $2, $3, $3, $3) ON CONFLICT (crm, object) DO NOTHING",
            )
            .bind(crm.as_str())
            .bind(object)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn records<'a>(
        &'a self,
        crm: Crm,
        object: &'a str,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<RecordRow>, StorageError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for chunk in ids.chunks(500) {
                let sql = format!(
                    "SELECT record_id, record_key, who, group_id, converted, pending FROM crm_records \
                     WHERE crm = $1 AND object = $2 AND record_id IN ({})",
                    placeholders(3, chunk.len())
                );
                let mut q = sqlx::query_as::<DB, RecordTuple>(&sql)
                    .bind(crm.as_str())
                    .bind(object);
                for id in chunk {
                    q = q.bind(id.clone());
                }
                out.extend(q.fetch_all(&self.pool).await?.into_iter().map(record));
            }
            Ok(out)
        })
    }

    fn pending(&self, crm: Crm) -> BoxFuture<'_, Result<Vec<(String, RecordRow)>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<PendingTuple> = sqlx::query_as::<DB, PendingTuple>(
                "SELECT object, record_id, record_key, who, group_id, converted, pending \
                 FROM crm_records WHERE crm = $1 AND pending IS NOT NULL ORDER BY updated_at LIMIT 1000",
            )
            .bind(crm.as_str())
            .fetch_all(&self.pool)
            .await?;
            let rows: Vec<(String, RecordTuple)> = rows
                .into_iter()
                .map(|(o, a, b, c, d, e, f)| (o, (a, b, c, d, e, f)))
                .collect();
            Ok(rows.into_iter().map(|(o, t)| (o, record(t))).collect())
        })
    }

    fn fields<'a>(
        &'a self,
        crm: Crm,
        object: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<FieldRow>, StorageError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for chunk in keys.chunks(500) {
                let sql = format!(
                    "SELECT record_key, field, value, modified_at, origin FROM crm_fields \
                     WHERE crm = $1 AND object = $2 AND record_key IN ({})",
                    placeholders(3, chunk.len())
                );
                let mut q = sqlx::query_as::<DB, (String, String, String, i64, String)>(&sql)
                    .bind(crm.as_str())
                    .bind(object);
                for k in chunk {
                    q = q.bind(k.clone());
                }
                out.extend(q.fetch_all(&self.pool).await?.into_iter().map(
                    |(record_key, field, value, modified_at, origin)| FieldRow {
                        record_key,
                        field,
                        value,
                        modified_at,
                        origin,
                    },
                ));
            }
            Ok(out)
        })
    }

    fn apply<'a>(
        &'a self,
        crm: Crm,
        w: &'a Writes,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let c = crm.as_str();
            let (mut tx, _gate) = self.pool.begin_state_write().await?;
            for (object, old, new) in &w.rekeys {
                // A key the record already had rows under wins over the id-keyed rows.
                sqlx::query::<DB>(
                    "DELETE FROM crm_fields WHERE crm = $1 AND object = $2 AND record_key = $3 \
                     AND field IN (SELECT field FROM crm_fields WHERE crm = $1 AND object = $2 AND record_key = $4)",
                )
                .bind(c)
                .bind(object.clone())
                .bind(old.clone())
                .bind(new.clone())
                .execute(&mut *tx)
                .await?;
                sqlx::query::<DB>(
                    "UPDATE crm_fields SET record_key = $4 WHERE crm = $1 AND object = $2 AND record_key = $3",
                )
                .bind(c)
                .bind(object.clone())
                .bind(old.clone())
                .bind(new.clone())
                .execute(&mut *tx)
                .await?;
            }
            for (object, r) in &w.records {
                sqlx::query::<DB>(
                    "INSERT INTO crm_records (crm, object, record_id, record_key, who, group_id, converted, pending, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (crm, object, record_id) DO UPDATE SET record_key = excluded.record_key, \
                     who = excluded.who, group_id = excluded.group_id, converted = excluded.converted, \
                     pending = excluded.pending, updated_at = excluded.updated_at",
                )
                .bind(c)
                .bind(object.clone())
                .bind(r.record_id.clone())
                .bind(r.record_key.clone())
                .bind(None::<String>)
                .bind(r.group_id.clone())
                .bind(r.converted.clone())
                .bind(r.pending.clone())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            for (object, f) in &w.fields {
                sqlx::query::<DB>(
                    "INSERT INTO crm_fields (crm, object, record_key, field, value, modified_at, origin) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (crm, object, record_key, field) DO UPDATE SET value = excluded.value, \
                     modified_at = excluded.modified_at, origin = excluded.origin",
                )
                .bind(c)
                .bind(object.clone())
                .bind(f.record_key.clone())
                .bind(f.field.clone())
                .bind(f.value.clone())
                .bind(f.modified_at)
                .bind(f.origin.clone())
                .execute(&mut *tx)
                .await?;
            }
            for (object, modified, deleted) in &w.watermarks {
                sqlx::query::<DB>(
                    "INSERT INTO crm_watermarks (crm, object, modified_at, deleted_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (crm, object) DO UPDATE SET \
                     modified_at = excluded.modified_at, deleted_at = excluded.deleted_at, \
                     updated_at = excluded.updated_at",
                )
                .bind(c)
                .bind(object.clone())
                .bind(*modified)
                .bind(*deleted)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn who<'a>(
        &'a self,
        kind: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<Option<(String, String)>, StorageError>> {
        Box::pin(async move {
            Ok(sqlx::query_as::<DB, (String, String)>(WHO)
                .bind(kind)
                .bind(value)
                .fetch_optional(&self.pool)
                .await?)
        })
    }

    fn member<'a>(
        &'a self,
        group_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<(String, String)>, StorageError>> {
        Box::pin(async move {
            Ok(sqlx::query_as::<DB, (String, String)>(MEMBER)
                .bind(group_id)
                .fetch_optional(&self.pool)
                .await?)
        })
    }
}

/// The CRM-side modified times of fields: (key, field) → ms, for the fields the CRM changed.
pub fn inbound_times(rows: &[FieldRow]) -> HashMap<(String, String), i64> {
    rows.iter()
        .filter(|r| r.origin == "in")
        .map(|r| ((r.record_key.clone(), r.field.clone()), r.modified_at))
        .collect()
}
