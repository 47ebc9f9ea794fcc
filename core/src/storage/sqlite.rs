//! SQLite adapter: one file in WAL mode with `synchronous = FULL`, so a commit is durable when it returns.

use super::{
    EventStore, InsertOutcome, NewMessage, NewRejected, SourceRow, StorageError, StoredMessage,
};
use futures_util::future::BoxFuture;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

/// The embedded default store.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` and migrates it.
    pub async fn connect(url: &str) -> Result<SqliteStore, StorageError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        if let Some(parent) = options.get_filename().parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| StorageError::Database(e.into()))?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqliteStore { pool })
    }

    /// The connection pool, for the modules that add their own tables.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

pub(super) fn stored_from_row(row: &SqliteRow) -> Result<StoredMessage, StorageError> {
    let violations: String = row.try_get("violations")?;
    let body: String = row.try_get("body")?;
    Ok(StoredMessage {
        seq: row.try_get("seq")?,
        source_id: row.try_get("source_id")?,
        message_id: row.try_get("message_id")?,
        kind: row.try_get("kind")?,
        status: row.try_get("status")?,
        plan_version: row.try_get("plan_version")?,
        event_time_ms: row.try_get("event_time")?,
        received_at_ms: row.try_get("received_at")?,
        violations: serde_json::from_str(&violations)?,
        body: serde_json::from_str(&body)?,
    })
}

const SELECT_MESSAGE: &str = "SELECT seq, source_id, message_id, kind, status, plan_version, \
     event_time, received_at, violations, body FROM messages";

impl EventStore for SqliteStore {
    fn append<'a>(
        &'a self,
        messages: &'a [NewMessage],
        rejected: &'a [NewRejected],
    ) -> BoxFuture<'a, Result<Vec<InsertOutcome>, StorageError>> {
        Box::pin(async move {
            let (mut tx, _gate) = super::begin_ingest_write(&self.pool).await?;
            let mut out = vec![InsertOutcome::Duplicate; messages.len()];
            // Multi-row inserts: one statement (one trip through sqlx's SQLite worker) per 100 rows.
            for (chunk_no, chunk) in messages.chunks(100).enumerate() {
                let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                    "INSERT INTO messages (source_id, message_id, dedup_key, kind, event, user_id, \
                     anonymous_id, event_time, received_at, plan_version, status, violations, body) ",
                );
                q.push_values(chunk, |mut b, m| {
                    b.push_bind(m.source_id)
                        .push_bind(&m.message_id)
                        .push_bind(&m.message_id)
                        .push_bind(m.kind)
                        .push_bind(&m.event)
                        .push_bind(&m.user_id)
                        .push_bind(&m.anonymous_id)
                        .push_bind(m.event_time_ms)
                        .push_bind(m.received_at_ms)
                        .push_bind(&*m.plan_version)
                        .push_bind(m.status.as_str())
                        .push_bind(&m.violations_json)
                        .push_bind(&m.body_json);
                });
                q.push(
                    " ON CONFLICT (source_id, dedup_key) DO NOTHING RETURNING seq, source_id, message_id",
                );
                let rows: Vec<(i64, i64, String)> = q.build_query_as().fetch_all(&mut *tx).await?;
                // Map inserted rows back to their inputs; within a batch the first input wins.
                let mut inserted: HashMap<(i64, &str), i64> = rows
                    .iter()
                    .map(|(seq, source, id)| ((*source, id.as_str()), *seq))
                    .collect();
                for (i, m) in chunk.iter().enumerate() {
                    if let Some(seq) = inserted.remove(&(m.source_id, m.message_id.as_str())) {
                        out[chunk_no * 100 + i] = InsertOutcome::Stored(seq);
                    }
                }
            }
            for r in rejected {
                sqlx::query(
                    "INSERT INTO rejected_messages (source_id, received_at, reason, body) \
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .bind(r.source_id)
                .bind(r.received_at_ms)
                .bind(&r.reason)
                .bind(super::truncate_body(&r.body))
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
                "INSERT INTO sources (name, write_key, created_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(name)
            .bind(write_key)
            .bind(chrono::Utc::now().timestamp_millis())
            .execute(&self.pool)
            .await?;
            sqlx::query("UPDATE sources SET write_key = ?2 WHERE name = ?1 AND write_key <> ?2")
                .bind(name)
                .bind(write_key)
                .execute(&self.pool)
                .await?;
            let row = sqlx::query("SELECT id, name, write_key FROM sources WHERE name = ?1")
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
                "{SELECT_MESSAGE} WHERE message_id = ?1 ORDER BY seq"
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
                "{SELECT_MESSAGE} WHERE source_id = ?1 ORDER BY seq DESC LIMIT ?2"
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
                 WHERE dedup_key IS NOT NULL AND received_at < ?1",
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
                sqlx::query_scalar("SELECT value FROM sync_cursors WHERE name = ?1")
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
                "INSERT INTO sync_cursors (name, value, updated_at) VALUES (?1, ?2, ?3) \
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
