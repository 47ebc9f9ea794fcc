//! SQLite adapter: one file in WAL mode with `synchronous = FULL`, so a commit is durable when it returns.

use super::{InsertOutcome, NewMessage, NewRejected, StorageError};
use futures_util::future::BoxFuture;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

/// The embedded default store.
pub type SqliteStore = super::shared::SqlEventStore<sqlx::Sqlite>;

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
        Ok(SqliteStore {
            pool: super::Db::new(pool),
        })
    }

    /// The database, for the repositories of the feature modules: they share its write gate.
    pub fn db(&self) -> &super::Db<sqlx::Sqlite> {
        &self.pool
    }
}

impl SqliteStore {
    /// Appends messages and rejected items in one durable transaction (see [`EventStore::append`]).
    async fn append_rows(
        &self,
        messages: &[NewMessage],
        rejected: &[NewRejected],
    ) -> Result<Vec<InsertOutcome>, StorageError> {
        let (mut tx, _gate) = self.pool.begin_ingest_write().await?;
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
    }
}

impl super::shared::AppendRows for sqlx::Sqlite {
    fn append_rows<'a>(
        store: &'a SqliteStore,
        messages: &'a [NewMessage],
        rejected: &'a [NewRejected],
    ) -> BoxFuture<'a, Result<Vec<InsertOutcome>, StorageError>> {
        Box::pin(store.append_rows(messages, rejected))
    }
}
