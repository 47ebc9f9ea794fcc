//! PostgreSQL adapter: multi-row `UNNEST` inserts so one group commit is one round trip.

use super::partition::{self, Layout};
use super::{InsertOutcome, NewMessage, NewRejected, StorageError};
use futures_util::future::BoxFuture;
use sqlx::postgres::{PgListener, PgPoolOptions};
use std::collections::{BTreeMap, HashMap, HashSet};
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
    /// Connects to `url` and migrates the database; a new database gets the default number of log
    /// partitions.
    pub async fn connect(url: &str) -> Result<PgStore, StorageError> {
        Self::connect_with(url, super::partition::DEFAULT_PARTITIONS).await
    }

    /// Connects to `url` and migrates the database; a new database gets `partitions` log
    /// partitions and one profiles stage over the whole log.
    pub async fn connect_with(url: &str, partitions: u16) -> Result<PgStore, StorageError> {
        Self::connect_laid_out(
            url,
            Layout {
                partitions,
                profiles_per_partition: false,
            },
        )
        .await
    }

    /// Connects to `url` and migrates the database. `layout` applies only to a new database (an
    /// empty log that no node laid out yet): afterwards every node reads the layout the first one
    /// stored, so that all route a device to the same partition and run the same profiles stages.
    pub async fn connect_laid_out(url: &str, layout: Layout) -> Result<PgStore, StorageError> {
        // Room for one profiles stage per partition besides ingestion and the other stages.
        let pool = PgPoolOptions::new()
            .max_connections(24)
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let layout = Self::settle_layout(&pool, layout).await?;
        Ok(PgStore {
            pool: super::Db::new(pool),
            layout,
        })
    }

    /// Lays the log out as `wanted` if no node did yet: a new database gets the partitions (and,
    /// if asked, a cursor per partition for the profiles stage); a database from before the
    /// layout keeps what it has. Returns the stored layout.
    async fn settle_layout(pool: &sqlx::PgPool, wanted: Layout) -> Result<Layout, StorageError> {
        // Under the lock of partition 0, which every append of a one-partition log takes: no
        // append can slip in between the emptiness check and the new rows.
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT 1 FROM log_partitions WHERE partition = 0 FOR UPDATE")
            .execute(&mut *tx)
            .await?;
        let stored: Option<(i32, bool)> =
            sqlx::query_as("SELECT partitions, profiles_per_partition FROM log_layout")
                .fetch_optional(&mut *tx)
                .await?;
        if stored.is_none() {
            let empty: bool = sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM messages)")
                .fetch_one(&mut *tx)
                .await?;
            let wanted_partitions = i32::from(wanted.partitions.max(1));
            if empty {
                sqlx::query(
                    "INSERT INTO log_partitions (partition, next_offset) \
                     SELECT p, 1 FROM generate_series(1, $1 - 1) AS p ON CONFLICT DO NOTHING",
                )
                .bind(wanted_partitions)
                .execute(&mut *tx)
                .await?;
            }
            let per_partition = empty && wanted.profiles_per_partition && wanted_partitions > 1;
            if per_partition {
                // The profiles stage of each partition has its own cursor; the `profiles` cursor
                // becomes the lowest of them.
                sqlx::query(
                    "INSERT INTO pipeline_cursors (name, seq, generation) \
                     SELECT 'profiles/' || partition, 0, 0 FROM log_partitions \
                     ON CONFLICT DO NOTHING",
                )
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "INSERT INTO log_layout (id, partitions, profiles_per_partition) \
                 SELECT 1, COUNT(*), $1 FROM log_partitions",
            )
            .bind(per_partition)
            .execute(&mut *tx)
            .await?;
        }
        let (partitions, per_partition, count, gaps): (i32, bool, i64, bool) = sqlx::query_as(
            "SELECT l.partitions, l.profiles_per_partition, p.n, p.gaps FROM log_layout l, \
             (SELECT COUNT(*) AS n, COUNT(*) <> MAX(partition) + 1 AS gaps FROM log_partitions) p",
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        if gaps || count != i64::from(partitions) {
            return Err(StorageError::Corrupt(
                "log_partitions must number the layout's partitions 0..P-1".into(),
            ));
        }
        let layout = Layout {
            partitions: u16::try_from(partitions)
                .map_err(|_| StorageError::Corrupt("too many log partitions".into()))?,
            profiles_per_partition: per_partition,
        };
        if layout != wanted {
            tracing::info!(
                partitions = layout.partitions,
                profiles_per_partition = layout.profiles_per_partition,
                "the log keeps the layout it was created with"
            );
        }
        Ok(layout)
    }

    /// The database, for the repositories of the feature modules.
    pub fn db(&self) -> &super::Db<sqlx::Postgres> {
        &self.pool
    }

    /// How the log is laid out (as the first node stored it).
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The log position up to which every append has ended (see `BeginRead::log_horizon`).
    pub async fn log_horizon(&self) -> Result<i64, StorageError> {
        Ok(super::BeginRead::log_horizon(&self.pool).await?)
    }
}

/// How many times an append restarts when another partition's append stored one of its messages
/// first (the same messageId sent under two routing keys at once).
const APPEND_ATTEMPTS: usize = 3;

impl PgStore {
    /// Appends messages and rejected items in one durable transaction (see [`EventStore::append`]).
    async fn append_rows(
        &self,
        messages: &[NewMessage],
        rejected: &[NewRejected],
    ) -> Result<Vec<InsertOutcome>, StorageError> {
        let partitions: Vec<i32> = messages
            .iter()
            .map(|m| partition::partition_of(m, self.layout.partitions))
            .collect();
        for _ in 0..APPEND_ATTEMPTS {
            if let Some(out) = self.try_append(messages, &partitions, rejected).await? {
                return Ok(out);
            }
        }
        Err(StorageError::Stage(format!(
            "append lost the race for a duplicate messageId {APPEND_ATTEMPTS} times"
        )))
    }

    /// One attempt; `None` when a row it planned was stored meanwhile by an append to another
    /// partition (it rolled back, and the next attempt sees that row as a duplicate).
    async fn try_append(
        &self,
        messages: &[NewMessage],
        partitions: &[i32],
        rejected: &[NewRejected],
    ) -> Result<Option<Vec<InsertOutcome>>, StorageError> {
        let (mut tx, _gate) = super::BeginWrite::begin_write(&self.pool).await?;
        let mut out = vec![InsertOutcome::Duplicate; messages.len()];
        if !messages.is_empty() {
            // Lock the touched partitions in ascending order (as every append and log_horizon()
            // do, so none deadlocks) before drawing any position: offsets of one partition commit
            // in order, and positions drawn under the locks are covered by log_horizon().
            let mut touched: Vec<i32> = partitions.to_vec();
            touched.sort_unstable();
            touched.dedup();
            // Each partition is also marked with a shared advisory lock, which the log horizon
            // waits for (migration 0017).
            let next: BTreeMap<i32, i64> = sqlx::query_as::<_, (i32, i64)>(
                "SELECT partition, next_offset, \
                 pg_advisory_xact_lock_shared(7243002, partition)::text \
                 FROM log_partitions WHERE partition = ANY($1) \
                 ORDER BY partition FOR NO KEY UPDATE",
            )
            .bind(&touched)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
            if next.len() != touched.len() {
                return Err(StorageError::Corrupt(
                    "a log partition the routing names is missing".into(),
                ));
            }
            // Duplicates already stored take no offset.
            let stored_rows: Vec<(i64, String)> = sqlx::query_as(
                "SELECT source_id, dedup_key FROM messages \
                 WHERE (source_id, dedup_key) IN (SELECT * FROM UNNEST($1::bigint[], $2::text[]))",
            )
            .bind(messages.iter().map(|m| m.source_id).collect::<Vec<_>>())
            .bind(
                messages
                    .iter()
                    .map(|m| m.message_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&mut *tx)
            .await?;
            let stored: HashSet<(i64, &str)> =
                stored_rows.iter().map(|(s, k)| (*s, k.as_str())).collect();
            let plan = partition::plan(messages, partitions, &stored, &next);
            let rows = &plan.slots;
            let col = |f: fn(&NewMessage) -> Option<String>| -> Vec<Option<String>> {
                rows.iter().map(|s| f(&messages[s.index])).collect()
            };
            let text = |f: fn(&NewMessage) -> String| -> Vec<String> {
                rows.iter().map(|s| f(&messages[s.index])).collect()
            };
            let int = |f: fn(&NewMessage) -> i64| -> Vec<i64> {
                rows.iter().map(|s| f(&messages[s.index])).collect()
            };
            // ORDINALITY keeps the rows (and so the positions drawn) in offset order.
            let returned: Vec<(i32, i64, i64)> = sqlx::query_as(
                "INSERT INTO messages (source_id, message_id, dedup_key, kind, event, user_id, \
                 anonymous_id, event_time, received_at, plan_version, status, violations, body, \
                 partition, part_offset) \
                 SELECT s, m, m, k, e, u, a, t, r, p, st, v::jsonb, b::jsonb, pa, o FROM UNNEST(\
                   $1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                   $7::bigint[], $8::bigint[], $9::text[], $10::text[], $11::text[], $12::text[], \
                   $13::int[], $14::bigint[]) WITH ORDINALITY \
                   AS x(s, m, k, e, u, a, t, r, p, st, v, b, pa, o, n) ORDER BY n \
                 ON CONFLICT (source_id, dedup_key) DO NOTHING \
                 RETURNING partition, part_offset, seq",
            )
            .bind(int(|m| m.source_id))
            .bind(text(|m| m.message_id.clone()))
            .bind(text(|m| m.kind.to_owned()))
            .bind(col(|m| m.event.clone()))
            .bind(col(|m| m.user_id.clone()))
            .bind(col(|m| m.anonymous_id.clone()))
            .bind(int(|m| m.event_time_ms))
            .bind(int(|m| m.received_at_ms))
            .bind(text(|m| m.plan_version.to_string()))
            .bind(text(|m| m.status.as_str().to_owned()))
            .bind(text(|m| m.violations_json.clone()))
            .bind(text(|m| m.body_json.clone()))
            .bind(rows.iter().map(|s| s.partition).collect::<Vec<_>>())
            .bind(rows.iter().map(|s| s.offset).collect::<Vec<_>>())
            .fetch_all(&mut *tx)
            .await?;
            if returned.len() != rows.len() {
                // An append to another partition committed one of these messageIds after our
                // check: taking its offsets would leave a gap, so start again.
                tx.rollback().await?;
                return Ok(None);
            }
            sqlx::query(
                "UPDATE log_partitions l SET next_offset = x.n \
                 FROM UNNEST($1::int[], $2::bigint[]) AS x(p, n) WHERE l.partition = x.p",
            )
            .bind(plan.next.keys().copied().collect::<Vec<_>>())
            .bind(plan.next.values().copied().collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
            let at: HashMap<(i32, i64), i64> = returned
                .into_iter()
                .map(|(p, o, seq)| ((p, o), seq))
                .collect();
            let positions = rows
                .iter()
                .map(|s| at.get(&(s.partition, s.offset)).copied())
                .collect::<Option<Vec<i64>>>()
                .ok_or_else(|| StorageError::Corrupt("an appended row came back unknown".into()))?;
            out = plan.outcomes(messages.len(), &positions);
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
        Ok(Some(out))
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
