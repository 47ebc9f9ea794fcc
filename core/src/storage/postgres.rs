//! PostgreSQL adapter: multi-row `UNNEST` inserts so one group commit is one round trip.

use super::{InsertOutcome, NewMessage, NewRejected, StorageError};
use futures_util::future::BoxFuture;
use sqlx::Row;
use sqlx::postgres::{PgListener, PgPoolOptions};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// The channel an append notifies at commit, so processing nodes wake on new data at once
/// instead of at their next poll.
pub const APPENDS_CHANNEL: &str = "touchpoint_log_appended";

/// The channel a stage notifies (payload: its name) when it made progress, so the stages after
/// it that run on other processing nodes wake at once.
pub const PROGRESS_CHANNEL: &str = "touchpoint_stage_progressed";

/// Wakes `wake` whenever any process commits an append to the log of the database at `url`, and
/// bumps `progress` whenever a stage on any node announces progress (`LISTEN`; the listener
/// reconnects, and the stages' poll covers the gap).
pub fn listen_for_appends(url: &str, wake: Arc<Notify>, progress: tokio::sync::watch::Sender<u64>) {
    let url = url.to_owned();
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            let listener = async {
                let mut l = PgListener::connect(&url).await?;
                l.listen_all([APPENDS_CHANNEL, PROGRESS_CHANNEL]).await?;
                Ok::<_, sqlx::Error>(l)
            };
            match listener.await {
                Ok(mut l) => {
                    backoff = Duration::from_millis(200);
                    loop {
                        match l.recv().await {
                            Ok(n) if n.channel() == PROGRESS_CHANNEL => {
                                progress.send_modify(|v| *v = v.wrapping_add(1));
                            }
                            Ok(_) => wake.notify_one(),
                            Err(e) => {
                                tracing::warn!(error = %e, "append listener failed; reconnecting");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot listen for appends; retrying"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
}

/// The production store; several core processes may share one database.
pub type PgStore = super::shared::SqlEventStore<sqlx::Postgres>;

impl PgStore {
    /// Connects to `url` and migrates the database.
    pub async fn connect(url: &str) -> Result<PgStore, StorageError> {
        let pool = PgPoolOptions::new().max_connections(8).connect(url).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PgStore {
            pool: super::Db::new(pool),
        })
    }

    /// The database, for the repositories of the feature modules.
    pub fn db(&self) -> &super::Db<sqlx::Postgres> {
        &self.pool
    }
}

impl PgStore {
    /// Appends messages and rejected items in one durable transaction (see [`EventStore::append`]).
    async fn append_rows(
        &self,
        messages: &[NewMessage],
        rejected: &[NewRejected],
    ) -> Result<Vec<InsertOutcome>, StorageError> {
        let (mut tx, _gate) = super::BeginWrite::begin_write(&self.pool).await?;
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
            .bind(
                messages
                    .iter()
                    .map(|m| m.message_id.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(
                messages
                    .iter()
                    .map(|m| m.kind.to_owned())
                    .collect::<Vec<_>>(),
            )
            .bind(col(|m| m.event.clone()))
            .bind(col(|m| m.user_id.clone()))
            .bind(col(|m| m.anonymous_id.clone()))
            .bind(messages.iter().map(|m| m.event_time_ms).collect::<Vec<_>>())
            .bind(
                messages
                    .iter()
                    .map(|m| m.received_at_ms)
                    .collect::<Vec<_>>(),
            )
            .bind(
                messages
                    .iter()
                    .map(|m| m.plan_version.to_string())
                    .collect::<Vec<_>>(),
            )
            .bind(
                messages
                    .iter()
                    .map(|m| m.status.as_str().to_owned())
                    .collect::<Vec<_>>(),
            )
            .bind(
                messages
                    .iter()
                    .map(|m| m.violations_json.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(
                messages
                    .iter()
                    .map(|m| m.body_json.clone())
                    .collect::<Vec<_>>(),
            )
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
        if out.iter().any(|o| matches!(o, InsertOutcome::Stored(_))) {
            // Delivered at commit, to every processing node listening (one per transaction).
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(APPENDS_CHANNEL)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(out)
    }
}

impl super::shared::AppendRows for sqlx::Postgres {
    fn append_rows<'a>(
        store: &'a PgStore,
        messages: &'a [NewMessage],
        rejected: &'a [NewRejected],
    ) -> BoxFuture<'a, Result<Vec<InsertOutcome>, StorageError>> {
        Box::pin(store.append_rows(messages, rejected))
    }
}
