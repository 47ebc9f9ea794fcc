//! The part of the [`EventStore`](super::EventStore) that is the same SQL on SQLite and PostgreSQL
//! (`$N` placeholders work on both; JSON columns are read through `CAST(… AS TEXT)`). Each adapter
//! keeps only what differs: connecting, and `append_rows` (multi-row inserts tuned per database),
//! which it provides through [`AppendRows`]; everything else is one generic implementation.

use super::{
    BeginWrite, CommitObserver, Db, Dialect, EventStore, InsertOutcome, NewMessage, NewRejected,
    SourceRow, StorageError, StoredMessage, Ticket,
};
use futures_util::future::BoxFuture;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};

/// The message log over a migrated database: [`SqliteStore`](super::SqliteStore) or
/// [`PgStore`](super::PgStore).
#[derive(Clone, Debug)]
pub struct SqlEventStore<DB: Database> {
    pub(super) pool: Db<DB>,
    /// How the log is laid out (one partition, one profiles stage on SQLite).
    pub(super) layout: super::partition::Layout,
}

/// What each adapter does its own way: appending messages and rejected items in one durable
/// transaction (see [`EventStore::append`]).
pub(super) trait AppendRows: Database {
    /// Appends the rows; one outcome per message, in order.
    fn append_rows<'a>(
        store: &'a SqlEventStore<Self>,
        messages: &'a [NewMessage],
        rejected: &'a [NewRejected],
    ) -> BoxFuture<'a, Result<Vec<InsertOutcome>, StorageError>>;
}

impl<DB> EventStore for SqlEventStore<DB>
where
    DB: AppendRows,
    Db<DB>: BeginWrite<Db = DB>,
    for<'c> &'c Db<DB>: Executor<'c, Database = DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    String: Type<DB> + for<'r> Decode<'r, DB>,
    Option<String>: Type<DB> + for<'r> Decode<'r, DB>,
    i64: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB>,
    DB: Dialect,
{
    fn append<'a>(
        &'a self,
        messages: &'a [NewMessage],
        rejected: &'a [NewRejected],
    ) -> BoxFuture<'a, Result<Vec<InsertOutcome>, StorageError>> {
        DB::append_rows(self, messages, rejected)
    }

    fn append_keeping<'a>(
        &'a self,
        messages: Vec<NewMessage>,
        rejected: Vec<NewRejected>,
        ticket: Ticket,
    ) -> BoxFuture<'a, Result<Vec<InsertOutcome>, StorageError>> {
        Box::pin(async move {
            match self.pool.log_writer() {
                Some(writer) => writer.append(messages, rejected, Some(ticket)).await,
                None => {
                    let result = DB::append_rows(self, &messages, &rejected).await;
                    drop(ticket);
                    result
                }
            }
        })
    }

    fn groups_appends(
        &self,
        observer: std::sync::Arc<dyn CommitObserver>,
        largest_commit: usize,
    ) -> bool {
        self.pool
            .log_writer()
            .is_some_and(|w| w.observe(observer, largest_commit))
    }

    fn upsert_source<'a>(
        &'a self,
        name: &'a str,
        write_key: &'a str,
    ) -> BoxFuture<'a, Result<SourceRow, StorageError>> {
        Box::pin(async move {
            // Safe when several processes start at once: insert if absent (any unique
            // conflict is left alone), then move the key if the name exists with another one.
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
            let (id, name, write_key): (i64, String, String) =
                sqlx::query_as("SELECT id, name, write_key FROM sources WHERE name = $1")
                    .bind(name)
                    .fetch_one(&self.pool)
                    .await?;
            Ok(SourceRow {
                id,
                name,
                write_key,
            })
        })
    }

    fn sources(&self) -> BoxFuture<'_, Result<Vec<SourceRow>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<(i64, String, String)> =
                sqlx::query_as("SELECT id, name, write_key FROM sources ORDER BY id")
                    .fetch_all(&self.pool)
                    .await?;
            Ok(rows
                .into_iter()
                .map(|(id, name, write_key)| SourceRow {
                    id,
                    name,
                    write_key,
                })
                .collect())
        })
    }

    fn messages_by_id<'a>(
        &'a self,
        message_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<StoredMessage>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<MessageTuple> = sqlx::query_as(&format!(
                "{} WHERE message_id = $1 ORDER BY seq",
                SELECT_MESSAGE
            ))
            .bind(message_id)
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter().map(stored).collect()
        })
    }

    fn recent_messages(
        &self,
        source_id: i64,
        limit: i64,
    ) -> BoxFuture<'_, Result<Vec<StoredMessage>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<MessageTuple> = sqlx::query_as(&format!(
                "{} WHERE source_id = $1 ORDER BY seq DESC LIMIT $2",
                SELECT_MESSAGE
            ))
            .bind(source_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter().map(stored).collect()
        })
    }

    fn counts(&self) -> BoxFuture<'_, Result<(i64, i64), StorageError>> {
        Box::pin(async move {
            Ok(sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM messages), (SELECT COUNT(*) FROM rejected_messages)",
            )
            .fetch_one(&self.pool)
            .await?)
        })
    }

    fn expire_dedup(&self, before_ms: i64) -> BoxFuture<'_, Result<u64, StorageError>> {
        Box::pin(async move {
            // Small transactions through the write gate, so ingestion never waits long.
            let mut total = 0;
            for _ in 0..10_000 {
                let (mut tx, _gate) = self.pool.begin_write().await?;
                let done = sqlx::query(
                    "UPDATE messages SET dedup_key = NULL WHERE seq IN (SELECT seq FROM messages \
                     WHERE dedup_key IS NOT NULL AND received_at < $1 ORDER BY seq LIMIT 5000)",
                )
                .bind(before_ms)
                .execute(&mut *tx)
                .await
                .map(|r| DB::rows_affected(&r))?;
                tx.commit().await?;
                total += done;
                if done == 0 {
                    break;
                }
            }
            Ok(total)
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
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, \
                 updated_at = excluded.updated_at",
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
            if self.pool.log_writer().is_some_and(|w| !w.is_running()) {
                return Err(StorageError::LogWriterStopped);
            }
            Ok(())
        })
    }
}

/// The columns of a stored message, JSON read as text on both databases.
pub(crate) const SELECT_MESSAGE: &str = "SELECT seq, source_id, message_id, kind, status, \
     plan_version, event_time, received_at, CAST(violations AS TEXT), CAST(body AS TEXT) FROM messages";

/// A row of [`SELECT_MESSAGE`].
pub(crate) type MessageTuple = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    i64,
    i64,
    String,
    String,
);

/// Converts a [`MessageTuple`].
pub(crate) fn stored(row: MessageTuple) -> Result<super::StoredMessage, super::StorageError> {
    let (seq, source_id, message_id, kind, status, plan_version, event_time, received_at, v, b) =
        row;
    Ok(super::StoredMessage {
        seq,
        source_id,
        message_id,
        kind,
        status,
        plan_version,
        event_time_ms: event_time,
        received_at_ms: received_at,
        violations: serde_json::from_str(&v)?,
        body: serde_json::from_str(&b)?,
    })
}
