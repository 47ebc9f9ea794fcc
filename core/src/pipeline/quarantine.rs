//! The quarantine: positions a stage set aside after bounded retries, with the error, so the stage
//! moves on. Setting aside and moving the cursor past the position are one transaction.

use crate::storage::{BeginWrite, Db, Dialect, StorageError};
use futures_util::future::BoxFuture;
use serde::Serialize;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};

/// Longest error text kept (database errors can quote values; keep them short).
const MAX_ERROR: usize = 2_000;

/// A position to set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// The stage, e.g. `profiles`.
    pub stage: &'static str,
    /// Its cursor in `pipeline_cursors`.
    pub cursor: &'static str,
    /// The position that fails.
    pub position: i64,
    /// The last error.
    pub error: String,
    /// How many times it failed on its own.
    pub attempts: u32,
    /// When (ms).
    pub at: i64,
}

/// A quarantined position as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Id (for replay).
    pub id: i64,
    /// The stage.
    pub stage: String,
    /// Its cursor.
    pub cursor: String,
    /// The position.
    pub position: i64,
    /// The error.
    pub error: String,
    /// Failed attempts.
    pub attempts: i64,
    /// When it was set aside (ms).
    pub quarantined_at: i64,
    /// When it was replayed (ms), if it was.
    pub replayed_at: Option<i64>,
    /// Why the replay failed, if it did.
    pub replay_error: Option<String>,
}

/// Storage of the quarantine.
pub trait QuarantineStore: Send + Sync + 'static {
    /// Records the entry and moves the stage's cursor to its position, in one transaction.
    /// Returns false (and changes nothing) when the cursor is already at or past the position:
    /// another node moved on meanwhile.
    fn set_aside<'a>(&'a self, entry: &'a NewEntry) -> BoxFuture<'a, Result<bool, StorageError>>;
    /// Entries, newest first; only those not yet replayed when `open_only`.
    fn list(&self, open_only: bool, limit: i64) -> BoxFuture<'_, Result<Vec<Entry>, StorageError>>;
    /// One entry.
    fn get(&self, id: i64) -> BoxFuture<'_, Result<Option<Entry>, StorageError>>;
    /// Open (not replayed) entries per stage.
    fn open_counts(&self) -> BoxFuture<'_, Result<Vec<(String, i64)>, StorageError>>;
    /// Records the outcome of a replay.
    fn replayed<'a>(
        &'a self,
        id: i64,
        at: i64,
        error: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StorageError>>;
    /// Appends a copy of log message `seq` at the head of the log (outside the dedup window), so
    /// every stage processes it again in order; returns the new position.
    fn reappend(&self, seq: i64) -> BoxFuture<'_, Result<Option<i64>, StorageError>>;
}

fn clip(error: &str) -> &str {
    let mut end = error.len().min(MAX_ERROR);
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    &error[..end]
}

type Row = (
    i64,
    String,
    String,
    i64,
    String,
    i64,
    i64,
    Option<i64>,
    Option<String>,
);

fn entry(r: Row) -> Entry {
    Entry {
        id: r.0,
        stage: r.1,
        cursor: r.2,
        position: r.3,
        error: r.4,
        attempts: r.5,
        quarantined_at: r.6,
        replayed_at: r.7,
        replay_error: r.8,
    }
}

const COLUMNS: &str = "id, stage, cursor_name, position, error, CAST(attempts AS BIGINT), \
    quarantined_at, replayed_at, replay_error";

/// [`QuarantineStore`] over a migrated SQLite or PostgreSQL pool. The SQL is the same on both;
/// SQLite writes go through the file's write gate.
#[derive(Clone, Debug)]
pub struct SqlQuarantine<DB: Database> {
    pool: Db<DB>,
}

impl<DB: Database> SqlQuarantine<DB> {
    /// Wraps a migrated pool.
    pub fn new(pool: Db<DB>) -> Self {
        SqlQuarantine { pool }
    }
}

/// SQLite's quarantine.
pub type SqliteQuarantine = SqlQuarantine<sqlx::Sqlite>;
/// PostgreSQL's quarantine.
pub type PgQuarantine = SqlQuarantine<sqlx::Postgres>;

impl<DB> QuarantineStore for SqlQuarantine<DB>
where
    DB: Dialect,
    Db<DB>: BeginWrite<Db = DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    String: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    i64: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB>,
{
    fn set_aside<'a>(&'a self, e: &'a NewEntry) -> BoxFuture<'a, Result<bool, StorageError>> {
        Box::pin(async move {
            let (mut tx, _gate) = self.pool.begin_state_write().await?;
            let moved = DB::rows_affected(
                &sqlx::query::<DB>(
                    "UPDATE pipeline_cursors SET seq = $1 WHERE name = $2 AND seq < $1",
                )
                .bind(e.position)
                .bind(e.cursor)
                .execute(&mut *tx)
                .await?,
            );
            if moved == 0 {
                return Ok(false);
            }
            sqlx::query::<DB>(
                "INSERT INTO quarantine (stage, cursor_name, position, error, attempts, quarantined_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(e.stage)
            .bind(e.cursor)
            .bind(e.position)
            .bind(clip(&e.error))
            .bind(i64::from(e.attempts))
            .bind(e.at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    fn list(&self, open_only: bool, limit: i64) -> BoxFuture<'_, Result<Vec<Entry>, StorageError>> {
        Box::pin(async move {
            let filter = if open_only {
                "WHERE replayed_at IS NULL"
            } else {
                ""
            };
            let rows: Vec<Row> = sqlx::query_as::<DB, Row>(&format!(
                "SELECT {COLUMNS} FROM quarantine {filter} ORDER BY id DESC LIMIT $1"
            ))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.into_iter().map(entry).collect())
        })
    }

    fn get(&self, id: i64) -> BoxFuture<'_, Result<Option<Entry>, StorageError>> {
        Box::pin(async move {
            let row: Option<Row> = sqlx::query_as::<DB, Row>(&format!(
                "SELECT {COLUMNS} FROM quarantine WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.map(entry))
        })
    }

    fn open_counts(&self) -> BoxFuture<'_, Result<Vec<(String, i64)>, StorageError>> {
        Box::pin(async move {
            Ok(sqlx::query_as::<DB, (String, i64)>(
                "SELECT stage, COUNT(*) FROM quarantine WHERE replayed_at IS NULL \
                 GROUP BY stage ORDER BY stage",
            )
            .fetch_all(&self.pool)
            .await?)
        })
    }

    fn replayed<'a>(
        &'a self,
        id: i64,
        at: i64,
        error: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let (mut tx, _gate) = self.pool.begin_state_write().await?;
            match error {
                None => sqlx::query::<DB>(
                    "UPDATE quarantine SET replayed_at = $2, replay_error = NULL WHERE id = $1",
                )
                .bind(id)
                .bind(at),
                Some(e) => {
                    sqlx::query::<DB>("UPDATE quarantine SET replay_error = $2 WHERE id = $1")
                        .bind(id)
                        .bind(clip(e).to_owned())
                }
            }
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn reappend(&self, seq: i64) -> BoxFuture<'_, Result<Option<i64>, StorageError>> {
        Box::pin(async move {
            let (mut tx, _gate) = self.pool.begin_write().await?;
            // The copy keeps its partition (on PostgreSQL a trigger gives it the partition's
            // next offset under the partition's lock, as an append would).
            let partition = DB::LOG_PARTITION_COLUMN;
            let sql = format!(
                "INSERT INTO messages (source_id, message_id, dedup_key, kind, event, user_id, \
                 anonymous_id, event_time, received_at, plan_version, status, violations, \
                 body{partition}) \
                 SELECT source_id, message_id, NULL, kind, event, user_id, anonymous_id, \
                 event_time, received_at, plan_version, status, violations, body{partition} \
                 FROM messages WHERE seq = $1 RETURNING seq"
            );
            let new: Option<i64> = sqlx::query_scalar::<DB, i64>(&sql)
                .bind(seq)
                .fetch_optional(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(new)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn long_errors_are_clipped_on_a_character_boundary() {
        let e = "é".repeat(2_000);
        let c = clip(&e);
        assert!(c.len() <= super::MAX_ERROR);
        assert!(e.starts_with(c));
    }
}
