//! PostgreSQL adapter: multi-row `UNNEST` inserts so one group commit is one round trip.

use super::{
    EventStore, InsertOutcome, NewMessage, NewRejected, SourceRow, StorageError, StoredMessage,
};
use futures_util::future::BoxFuture;
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use std::collections::HashMap;

/// The production store; several core processes may share one database.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` and migrates the database.
    pub async fn connect(url: &str) -> Result<PgStore, StorageError> {
        let pool = PgPoolOptions::new().max_connections(8).connect(url).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PgStore { pool })
    }

    /// The connection pool, for the modules that add their own tables.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

fn stored_from_row(row: &PgRow) -> Result<StoredMessage, StorageError> {
    Ok(StoredMessage {
        seq: row.try_get("seq")?,
        source_id: row.try_get("source_id")?,
        message_id: row.try_get("message_id")?,
        kind: row.try_get("kind")?,
        status: row.try_get("status")?,
        plan_version: row.try_get("plan_version")?,
        event_time_ms: row.try_get("event_time")?,
        received_at_ms: row.try_get("received_at")?,
        violations: row.try_get("violations")?,
        body: row.try_get("body")?,
    })
}

const SELECT_MESSAGE: &str = "SELECT seq, source_id, message_id, kind, status, plan_version, \
     event_time, received_at, violations, body FROM messages";

impl EventStore for PgStore {
    fn append<'a>(
        &'a self,
        messages: &'a [NewMessage],
        rejected: &'a [NewRejected],
    ) -> BoxFuture<'a, Result<Vec<InsertOutcome>, StorageError>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            // Serialise appends across core processes so log positions commit in order and the
            // pipeline, which reads `seq > cursor`, can never skip a late-committing row.
            sqlx::query("SELECT pg_advisory_xact_lock(7243001)")
                .execute(&mut *tx)
                .await?;
            let mut out = vec![InsertOutcome::Duplicate; messages.len()];
            if !messages.is_empty() {
                let col = |f: fn(&NewMessage) -> Option<String>| -> Vec<Option<String>> {
                    messages.iter().map(f).collect()
                };
                let rows = sqlx::query(
                    "INSERT INTO messages (source_id, message_id, dedup_key, kind, event, user_id, \
                     anonymous_id, event_time, received_at, plan_version, status, violations, body) \
                     SELECT s, m, m, k, e, u, a, t, r, p, st, v::jsonb, b::jsonb FROM UNNEST(\
                       $1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                       $7::bigint[], $8::bigint[], $9::text[], $10::text[], $11::text[], $12::text[]) \
                       AS x(s, m, k, e, u, a, t, r, p, st, v, b) \
                     ON CONFLICT (source_id, dedup_key) DO NOTHING \
                     RETURNING seq, source_id, message_id",
                )
                .bind(messages.iter().map(|m| m.source_id).collect::<Vec<_>>())
                .bind(messages.iter().map(|m| m.message_id.clone()).collect::<Vec<_>>())
                .bind(messages.iter().map(|m| m.kind.to_owned()).collect::<Vec<_>>())
                .bind(col(|m| m.event.clone()))
                .bind(col(|m| m.user_id.clone()))
                .bind(col(|m| m.anonymous_id.clone()))
                .bind(messages.iter().map(|m| m.event_time_ms).collect::<Vec<_>>())
                .bind(messages.iter().map(|m| m.received_at_ms).collect::<Vec<_>>())
                .bind(messages.iter().map(|m| m.plan_version.to_string()).collect::<Vec<_>>())
                .bind(messages.iter().map(|m| m.status.as_str().to_owned()).collect::<Vec<_>>())
                .bind(messages.iter().map(|m| m.violations_json.clone()).collect::<Vec<_>>())
                .bind(messages.iter().map(|m| m.body_json.clone()).collect::<Vec<_>>())
                .fetch_all(&mut *tx)
                .await?;
                // Map inserted rows back to the inputs; the first input with a key wins, like SQLite.
                let mut inserted: HashMap<(i64, String), i64> = HashMap::with_capacity(rows.len());
                for row in &rows {
                    inserted.insert(
                        (row.try_get("source_id")?, row.try_get("message_id")?),
                        row.try_get("seq")?,
                    );
                }
                for (i, m) in messages.iter().enumerate() {
                    if let Some(seq) = inserted.remove(&(m.source_id, m.message_id.clone())) {
                        out[i] = InsertOutcome::Stored(seq);
                    }
                }
            }
            if !rejected.is_empty() {
                sqlx::query(
                    "INSERT INTO rejected_messages (source_id, received_at, reason, body) \
                     SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[])",
                )
                .bind(rejected.iter().map(|r| r.source_id).collect::<Vec<_>>())
                .bind(
                    rejected
                        .iter()
                        .map(|r| r.received_at_ms)
                        .collect::<Vec<_>>(),
                )
                .bind(
                    rejected
                        .iter()
                        .map(|r| r.reason.clone())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    rejected
                        .iter()
                        .map(|r| super::truncate_body(&r.body))
                        .collect::<Vec<_>>(),
                )
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(out)
        })
    }

    fn upsert_source<'a>(
        &'a self,
        name: &'a str,
        write_key: &'a str,
    ) -> BoxFuture<'a, Result<SourceRow, StorageError>> {
        Box::pin(async move {
            // Safe when several processes start at once: insert if absent (any unique conflict is
            // left alone), then move the key if the name exists with another one.
            sqlx::query(
                "INSERT INTO sources (name, write_key, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(name)
            .bind(write_key)
            .bind(chrono::Utc::now().timestamp_millis())
            .execute(&self.pool)
            .await?;
            sqlx::query("UPDATE sources SET write_key = $2 WHERE name = $1 AND write_key <> $2")
                .bind(name)
                .bind(write_key)
                .execute(&self.pool)
                .await?;
            let row = sqlx::query("SELECT id, name, write_key FROM sources WHERE name = $1")
                .bind(name)
                .fetch_one(&self.pool)
                .await?;
            Ok(SourceRow {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                write_key: row.try_get("write_key")?,
            })
        })
    }

    fn sources(&self) -> BoxFuture<'_, Result<Vec<SourceRow>, StorageError>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT id, name, write_key FROM sources ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(SourceRow {
                        id: r.try_get("id")?,
                        name: r.try_get("name")?,
                        write_key: r.try_get("write_key")?,
                    })
                })
                .collect()
        })
    }

    fn messages_by_id<'a>(
        &'a self,
        message_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<StoredMessage>, StorageError>> {
        Box::pin(async move {
            let rows = sqlx::query(&format!(
                "{SELECT_MESSAGE} WHERE message_id = $1 ORDER BY seq"
            ))
            .bind(message_id)
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(stored_from_row).collect()
        })
    }

    fn recent_messages(
        &self,
        source_id: i64,
        limit: i64,
    ) -> BoxFuture<'_, Result<Vec<StoredMessage>, StorageError>> {
        Box::pin(async move {
            let rows = sqlx::query(&format!(
                "{SELECT_MESSAGE} WHERE source_id = $1 ORDER BY seq DESC LIMIT $2"
            ))
            .bind(source_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(stored_from_row).collect()
        })
    }

    fn counts(&self) -> BoxFuture<'_, Result<(i64, i64), StorageError>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT (SELECT COUNT(*) FROM messages) AS m, \
                 (SELECT COUNT(*) FROM rejected_messages) AS r",
            )
            .fetch_one(&self.pool)
            .await?;
            Ok((row.try_get("m")?, row.try_get("r")?))
        })
    }

    fn expire_dedup(&self, before_ms: i64) -> BoxFuture<'_, Result<u64, StorageError>> {
        Box::pin(async move {
            let done = sqlx::query(
                "UPDATE messages SET dedup_key = NULL \
                 WHERE dedup_key IS NOT NULL AND received_at < $1",
            )
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected())
        })
    }

    fn sync_cursor<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, StorageError>> {
        Box::pin(async move {
            let v: Option<Option<String>> =
                sqlx::query_scalar("SELECT value FROM sync_cursors WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
            Ok(v.flatten())
        })
    }

    fn set_sync_cursor<'a>(
        &'a self,
        name: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO sync_cursors (name, value, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )
            .bind(name)
            .bind(value)
            .bind(chrono::Utc::now().timestamp_millis())
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async move {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
    }
}
