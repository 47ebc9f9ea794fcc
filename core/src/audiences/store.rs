//! Audience repository: loading evaluation tables (typed columns and event counts) for a set of
//! profiles or all of them, and writing the membership changes `decide.rs` chose. What a loaded
//! row means (event filters, window expiry, journey ranks) is decided in `engine.rs`; this file
//! only queries and writes. One implementation generic over the database: the SQL (`$N`
//! placeholders) is the same on SQLite and PostgreSQL; `Dialect` holds what differs.

use super::condition::Performed;
use super::engine::{self, Bits, Column, Counts, Table};
use crate::identity::ProfileId;
use crate::storage::{BeginRead, BeginWrite, Db, Dialect, StorageError, params, placeholders};
use futures_util::future::BoxFuture;
use serde::Serialize;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, QueryBuilder, Type};
use std::collections::HashMap;
use touchpoint_tracking_plan::TrackingPlan;

/// Which profiles to load.
#[derive(Debug, Clone)]
pub enum Scope {
    /// Every live profile.
    All,
    /// These profiles (those that still exist).
    Ids(Vec<ProfileId>),
}

/// What the evaluated conditions read.
#[derive(Debug, Clone, Default)]
pub struct Needs {
    /// Trait paths.
    pub traits: Vec<String>,
    /// Event conditions (deduplicated by their text).
    pub performed: Vec<Performed>,
    /// Audience ids whose membership is loaded.
    pub audiences: Vec<String>,
}

/// A membership change.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The profile entered the audience.
    Enter {
        /// Audience id.
        audience: String,
        /// Profile.
        profile: ProfileId,
    },
    /// The profile left it.
    Exit {
        /// Audience id.
        audience: String,
        /// Profile.
        profile: ProfileId,
    },
    /// The profile left every audience (merged away).
    ExitAll {
        /// Profile.
        profile: ProfileId,
    },
    /// When to re-check the profile for the audience (`None` clears).
    Due {
        /// Audience id.
        audience: String,
        /// Profile.
        profile: ProfileId,
        /// When (ms).
        at: Option<i64>,
    },
}

/// An audience as stored.
#[derive(Debug, Clone, Serialize)]
pub struct AudienceRow {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Condition text.
    pub condition: String,
    /// `file` or `api`.
    pub origin: String,
    /// Profiles checked by the running or last backfill.
    pub backfill_done: i64,
    /// Profiles to check.
    pub backfill_total: i64,
    /// When the last backfill finished (ms).
    pub backfilled_at: Option<i64>,
}

/// A membership period.
#[derive(Debug, Clone, Serialize)]
pub struct Membership {
    /// Audience id.
    pub audience: String,
    /// Profile.
    pub profile_id: ProfileId,
    /// Entered (ms).
    pub entered_at: i64,
    /// Left (ms), if it did.
    pub exited_at: Option<i64>,
}

/// An entered/exited event.
#[derive(Debug, Clone, Serialize)]
pub struct AudienceEvent {
    /// Feed position.
    pub id: i64,
    /// Audience id.
    pub audience: String,
    /// Profile.
    pub profile_id: ProfileId,
    /// `audience_entered` or `audience_exited`.
    pub kind: String,
    /// When (ms).
    pub at: i64,
    /// The message that caused it (0 for schedule/backfill).
    pub seq: i64,
    /// `message`, `window`, `backfill`, `merge`.
    pub reason: String,
}

/// A transaction for evaluation work.
pub trait AudienceTx: Send {
    /// Locks a pipeline cursor; returns its seq.
    fn lock(&mut self, name: &'static str) -> BoxFuture<'_, Result<i64, StorageError>>;
    /// Reads a pipeline cursor without locking it.
    fn peek(&mut self, name: &'static str) -> BoxFuture<'_, Result<i64, StorageError>>;
    /// The end of the next window of at most `limit` log messages after `after`, capped at `cap`.
    fn window_end(
        &mut self,
        after: i64,
        cap: i64,
        limit: i64,
    ) -> BoxFuture<'_, Result<i64, StorageError>>;
    /// Profiles with messages in `(after, upto]`.
    fn affected(
        &mut self,
        after: i64,
        upto: i64,
    ) -> BoxFuture<'_, Result<Vec<ProfileId>, StorageError>>;
    /// Profiles merged away in `(after, upto]`.
    fn merged_losers(
        &mut self,
        after: i64,
        upto: i64,
    ) -> BoxFuture<'_, Result<Vec<ProfileId>, StorageError>>;
    /// Live profiles with id > `after` (`None`: from the first), in id order.
    fn live_page<'a>(
        &'a mut self,
        after: Option<&'a ProfileId>,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<ProfileId>, StorageError>>;
    /// Number of live profiles.
    fn live_count(&mut self) -> BoxFuture<'_, Result<i64, StorageError>>;
    /// Profiles with a re-check due at or before `now`; their due rows are removed.
    fn take_due(
        &mut self,
        now: i64,
        limit: i64,
    ) -> BoxFuture<'_, Result<Vec<ProfileId>, StorageError>>;
    /// Loads an evaluation table.
    fn load<'a>(
        &'a mut self,
        scope: Scope,
        needs: &'a Needs,
        plan: &'a TrackingPlan,
        now: i64,
    ) -> BoxFuture<'a, Result<Table, StorageError>>;
    /// Every audience definition.
    fn audiences(&mut self) -> BoxFuture<'_, Result<Vec<AudienceRow>, StorageError>>;
    /// Writes changes (membership, history, the event feed, re-check times).
    fn apply<'a>(
        &'a mut self,
        changes: &'a [Change],
        now: i64,
        seq: i64,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), StorageError>>;
    /// Records backfill progress.
    fn backfill_progress<'a>(
        &'a mut self,
        id: &'a str,
        done: i64,
        total: i64,
        finished: Option<i64>,
    ) -> BoxFuture<'a, Result<(), StorageError>>;
    /// Moves a cursor (if given) and commits.
    fn commit(
        self: Box<Self>,
        cursor: Option<(&'static str, i64)>,
    ) -> BoxFuture<'static, Result<(), StorageError>>;
}

/// Audience definitions, members and the feed.
pub trait AudienceStore: Send + Sync + 'static {
    /// Starts a transaction that writes (takes SQLite's write lock up front).
    fn begin(&self) -> BoxFuture<'_, Result<Box<dyn AudienceTx>, StorageError>>;
    /// Starts a read-only transaction (preview), which never blocks writers on SQLite.
    fn begin_read(&self) -> BoxFuture<'_, Result<Box<dyn AudienceTx>, StorageError>>;
    /// Creates or replaces a definition; returns true when the condition changed (or it is new).
    fn upsert<'a>(
        &'a self,
        id: &'a str,
        name: &'a str,
        description: &'a str,
        condition: &'a str,
        origin: &'a str,
    ) -> BoxFuture<'a, Result<bool, StorageError>>;
    /// Every definition.
    fn list(&self) -> BoxFuture<'_, Result<Vec<AudienceRow>, StorageError>>;
    /// Current members (newest first) and their count.
    fn members<'a>(
        &'a self,
        id: &'a str,
        limit: i64,
    ) -> BoxFuture<'a, Result<(Vec<Membership>, i64), StorageError>>;
    /// Membership history of a profile.
    fn memberships<'a>(
        &'a self,
        profile: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Vec<Membership>, StorageError>>;
    /// The entered/exited feed after `after`.
    fn events(
        &self,
        after: i64,
        limit: i64,
    ) -> BoxFuture<'_, Result<Vec<AudienceEvent>, StorageError>>;
}

/// The live (not merged-away) profiles among `n` ids, in id order.
fn live_among<DB: Dialect>(n: usize) -> String {
    params::<DB>(format!(
        "SELECT id FROM profiles WHERE merged_into IS NULL AND id IN ({}) ORDER BY id",
        placeholders(1, n)
    ))
}

/// Where an event condition's messages live: (SQL predicate on profile_messages, bound event name).
fn event_predicate(p: &Performed) -> (&'static str, Option<String>) {
    match p.event.as_str() {
        "any" => ("pm.kind IN ('track', 'page', 'screen')", None),
        "page_viewed" => ("pm.kind = 'page'", None),
        "screen_viewed" => ("pm.kind = 'screen'", None),
        e => ("pm.kind = 'track' AND pm.event = $1", Some(e.to_owned())),
    }
}

/// Takes merged-away profiles out of every audience: their memberships end (in the history) and
/// go, with their pending re-checks. No `audience_exited`: the person did not leave, their
/// profile merged into another, whose own evaluation says where it stands.
async fn exit_all<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    profiles: &[&ProfileId],
    now: i64,
) -> Result<(), StorageError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: Type<DB> + for<'q> Encode<'q, DB>,
    String: Type<DB> + for<'q> Encode<'q, DB>,
{
    fn list<DB: Dialect>(q: &mut QueryBuilder<'_, DB>, profiles: &[&ProfileId])
    where
        String: Type<DB> + for<'q> Encode<'q, DB>,
    {
        q.push(" AND profile_id IN (");
        let mut list = q.separated(", ");
        for p in profiles {
            list.push_bind(p.as_str().to_owned());
        }
        q.push(")");
    }
    for chunk in profiles.chunks(500) {
        let mut q = QueryBuilder::<DB>::new("UPDATE audience_history SET exited_at = ");
        q.push_bind(now).push(
            " WHERE exited_at IS NULL AND EXISTS (SELECT 1 FROM audience_members m \
             WHERE m.audience = audience_history.audience \
             AND m.profile_id = audience_history.profile_id)",
        );
        list(&mut q, chunk);
        DB::build(&mut q).execute(&mut **tx).await?;
        for table in ["audience_members", "audience_checks"] {
            let mut q = QueryBuilder::<DB>::new(format!("DELETE FROM {table} WHERE true"));
            list(&mut q, chunk);
            DB::build(&mut q).execute(&mut **tx).await?;
        }
    }
    Ok(())
}

/// [`AudienceStore`] over a migrated SQLite or PostgreSQL pool.
#[derive(Clone, Debug)]
pub struct SqlAudiences<DB: Database> {
    pool: Db<DB>,
}

impl<DB: Database> SqlAudiences<DB> {
    /// Wraps a migrated pool.
    pub fn new(pool: Db<DB>) -> Self {
        SqlAudiences { pool }
    }
}

/// SQLite's audience repository.
pub type SqliteAudiences = SqlAudiences<sqlx::Sqlite>;
/// PostgreSQL's audience repository.
pub type PgAudiences = SqlAudiences<sqlx::Postgres>;

/// An `audiences` row: id, name, description, condition, origin, backfill done, total, finished.
type AudienceTuple = (
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
);

/// An evaluation transaction on this database.
struct SqlAudienceTx<DB: Database> {
    tx: sqlx::Transaction<'static, DB>,
    /// SQLite's in-process write gate, held until the transaction ends.
    _gate: crate::storage::Gate,
}

impl<DB> AudienceTx for SqlAudienceTx<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    String: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    i64: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    Option<i64>: Type<DB> + for<'q> Encode<'q, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB>,
{
    fn lock(&mut self, name: &'static str) -> BoxFuture<'_, Result<i64, StorageError>> {
        Box::pin(async move {
            Ok(sqlx::query_scalar(
                "UPDATE pipeline_cursors SET seq = seq WHERE name = $1 RETURNING seq",
            )
            .bind(name)
            .fetch_one(&mut *self.tx)
            .await?)
        })
    }

    fn peek(&mut self, name: &'static str) -> BoxFuture<'_, Result<i64, StorageError>> {
        Box::pin(async move {
            Ok(
                sqlx::query_scalar("SELECT seq FROM pipeline_cursors WHERE name = $1")
                    .bind(name)
                    .fetch_one(&mut *self.tx)
                    .await?,
            )
        })
    }

    fn window_end(
        &mut self,
        after: i64,
        cap: i64,
        limit: i64,
    ) -> BoxFuture<'_, Result<i64, StorageError>> {
        Box::pin(async move {
            let end: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(seq) FROM (SELECT seq FROM messages WHERE seq > $1 AND seq <= $2 \
                 ORDER BY seq LIMIT $3) w",
            )
            .bind(after)
            .bind(cap)
            .bind(limit)
            .fetch_one(&mut *self.tx)
            .await?;
            // Messages erased (deleted profiles) leave gaps: jump to the cap then.
            Ok(end.unwrap_or(cap))
        })
    }

    fn affected(
        &mut self,
        after: i64,
        upto: i64,
    ) -> BoxFuture<'_, Result<Vec<ProfileId>, StorageError>> {
        Box::pin(async move {
            Ok(sqlx::query_scalar(
                "SELECT DISTINCT profile_id FROM profile_messages WHERE seq > $1 AND seq <= $2",
            )
            .bind(after)
            .bind(upto)
            .fetch_all(&mut *self.tx)
            .await?)
        })
    }

    fn merged_losers(
        &mut self,
        after: i64,
        upto: i64,
    ) -> BoxFuture<'_, Result<Vec<ProfileId>, StorageError>> {
        Box::pin(async move {
            Ok(
                sqlx::query_scalar(
                    "SELECT DISTINCT loser FROM merges WHERE seq > $1 AND seq <= $2",
                )
                .bind(after)
                .bind(upto)
                .fetch_all(&mut *self.tx)
                .await?,
            )
        })
    }

    fn live_page<'a>(
        &'a mut self,
        after: Option<&'a ProfileId>,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<ProfileId>, StorageError>> {
        Box::pin(async move {
            Ok(sqlx::query_scalar(
                "SELECT id FROM profiles WHERE merged_into IS NULL AND id > $1 ORDER BY id LIMIT $2",
            )
            // Every id sorts after the empty string.
            .bind(after.map_or("", ProfileId::as_str))
            .bind(limit)
            .fetch_all(&mut *self.tx)
            .await?)
        })
    }

    fn live_count(&mut self) -> BoxFuture<'_, Result<i64, StorageError>> {
        Box::pin(async move {
            Ok(
                sqlx::query_scalar("SELECT COUNT(*) FROM profiles WHERE merged_into IS NULL")
                    .fetch_one(&mut *self.tx)
                    .await?,
            )
        })
    }

    fn take_due(
        &mut self,
        now: i64,
        limit: i64,
    ) -> BoxFuture<'_, Result<Vec<ProfileId>, StorageError>> {
        Box::pin(async move {
            let profiles: Vec<ProfileId> = sqlx::query_scalar(
                "SELECT DISTINCT profile_id FROM (SELECT profile_id FROM audience_checks \
                 WHERE due_at <= $1 ORDER BY due_at LIMIT $2) d",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *self.tx)
            .await?;
            for p in &profiles {
                sqlx::query("DELETE FROM audience_checks WHERE profile_id = $1 AND due_at <= $2")
                    .bind(p)
                    .bind(now)
                    .execute(&mut *self.tx)
                    .await?;
            }
            Ok(profiles)
        })
    }

    fn load<'a>(
        &'a mut self,
        scope: Scope,
        needs: &'a Needs,
        plan: &'a TrackingPlan,
        now: i64,
    ) -> BoxFuture<'a, Result<Table, StorageError>> {
        Box::pin(async move {
            let profiles: Vec<ProfileId> = match &scope {
                Scope::All => {
                    sqlx::query_scalar(
                        "SELECT id FROM profiles WHERE merged_into IS NULL ORDER BY id",
                    )
                    .fetch_all(&mut *self.tx)
                    .await?
                }
                Scope::Ids(ids) => {
                    let mut live = Vec::new();
                    for chunk in ids.chunks(500) {
                        let sql = live_among::<DB>(chunk.len());
                        let mut q = sqlx::query_scalar::<_, ProfileId>(&sql);
                        for id in chunk {
                            q = q.bind(id);
                        }
                        live.extend(q.fetch_all(&mut *self.tx).await?);
                    }
                    live
                }
            };
            let scope = match scope {
                Scope::All => Scope::All,
                Scope::Ids(_) => Scope::Ids(profiles.clone()),
            };
            let index: HashMap<&ProfileId, usize> =
                profiles.iter().enumerate().map(|(i, p)| (p, i)).collect();
            let n = profiles.len();
            let mut table = Table {
                profiles: profiles.clone(),
                ..Table::default()
            };
            if n == 0 {
                return Ok(table);
            }
            // Traits.
            for path in &needs.traits {
                let mut col = Column::missing(n);
                let rows: Vec<(ProfileId, String)> = match path.split_once('.') {
                    Some(("computed", name)) => {
                        Self::computed_column(self, name, &scope, plan, now, &index, &mut col)
                            .await?;
                        table.columns.insert(path.clone(), col);
                        continue;
                    }
                    Some(("account", key)) => {
                        let base = "SELECT pa.profile_id, at.value FROM profile_accounts pa \
                                    JOIN account_traits at ON at.group_id = pa.group_id WHERE at.key = $1";
                        self.fetch_pairs(base, "AND pa.", key, &scope, "ORDER BY at.updated_at")
                            .await?
                    }
                    _ => {
                        let key = path.strip_prefix("traits.").unwrap_or(path);
                        let base = "SELECT profile_id, value FROM profile_traits WHERE key = $1";
                        self.fetch_pairs(base, "AND", key, &scope, "").await?
                    }
                };
                for (p, value) in rows {
                    if let Some(&i) = index.get(&p) {
                        col.set(i, &engine::stored_value(value));
                    }
                }
                table.columns.insert(path.clone(), col);
            }
            // Event counts.
            for p in &needs.performed {
                let since = p
                    .within_days
                    .map_or(i64::MIN, |d| now - i64::from(d) * 86_400_000);
                let window_ms = p.within_days.map(|d| i64::from(d) * 86_400_000);
                let mut counts = Counts::none(n);
                let (pred, event) = event_predicate(p);
                let (pred, since_param) = if event.is_some() {
                    (pred.to_owned(), "$2")
                } else {
                    (pred.to_owned(), "$1")
                };
                let first_scope_param = if event.is_some() { 3 } else { 2 };
                let scope_sql = |k: usize| {
                    format!(
                        " AND pm.profile_id IN ({})",
                        placeholders(first_scope_param, k)
                    )
                };
                let chunks: Vec<Option<&[ProfileId]>> = match &scope {
                    Scope::All => vec![None],
                    Scope::Ids(ids) => ids.chunks(500).map(Some).collect(),
                };
                for chunk in chunks {
                    let in_scope = chunk.map_or(String::new(), |c| scope_sql(c.len()));
                    if p.filters.is_empty() {
                        let sql = params::<DB>(format!(
                            "SELECT pm.profile_id, COUNT(*), MIN(pm.event_time) FROM profile_messages pm \
                             WHERE {pred} AND pm.event_time >= {since_param}{in_scope} GROUP BY pm.profile_id"
                        ));
                        let mut q = sqlx::query_as::<_, (ProfileId, i64, i64)>(&sql);
                        if let Some(e) = &event {
                            q = q.bind(e);
                        }
                        q = q.bind(since);
                        for id in chunk.unwrap_or(&[]) {
                            q = q.bind(id);
                        }
                        for (profile, count, oldest) in q.fetch_all(&mut *self.tx).await? {
                            if let Some(&i) = index.get(&profile) {
                                counts.record_total(i, count, oldest, window_ms);
                            }
                        }
                    } else {
                        let sql = params::<DB>(format!(
                            "SELECT pm.profile_id, pm.event_time, CAST(m.body AS TEXT) FROM profile_messages pm \
                             JOIN messages m ON m.seq = pm.seq \
                             WHERE {pred} AND pm.event_time >= {since_param}{in_scope}"
                        ));
                        let mut q = sqlx::query_as::<_, (ProfileId, i64, String)>(&sql);
                        if let Some(e) = &event {
                            q = q.bind(e);
                        }
                        q = q.bind(since);
                        for id in chunk.unwrap_or(&[]) {
                            q = q.bind(id);
                        }
                        for (profile, at, body) in q.fetch_all(&mut *self.tx).await? {
                            if let Some(&i) = index.get(&profile)
                                && engine::event_matches(&body, &p.filters)
                            {
                                counts.record_one(i, at, window_ms);
                            }
                        }
                    }
                }
                table.counts.insert(engine::counts_key(p), counts);
            }
            // Memberships.
            for a in &needs.audiences {
                let rows = self
                    .fetch_pairs(
                        "SELECT profile_id, audience FROM audience_members WHERE audience = $1",
                        "AND",
                        a,
                        &scope,
                        "",
                    )
                    .await?;
                let mut bits = Bits::zeros(n);
                for (p, _) in rows {
                    if let Some(&i) = index.get(&p) {
                        bits.set(i, true);
                    }
                }
                table.members.insert(a.clone(), bits);
            }
            Ok(table)
        })
    }

    fn audiences(&mut self) -> BoxFuture<'_, Result<Vec<AudienceRow>, StorageError>> {
        Box::pin(async move { Self::list_rows(&mut *self.tx).await })
    }

    fn apply<'a>(
        &'a mut self,
        changes: &'a [Change],
        now: i64,
        seq: i64,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let tx = &mut self.tx;
            // Profiles merged away leave every audience in a few statements per run of them
            // (a window of a busy log merges hundreds); the other changes go one by one.
            for run in changes.chunk_by(|a, b| {
                matches!(a, Change::ExitAll { .. }) == matches!(b, Change::ExitAll { .. })
            }) {
                let gone: Vec<&ProfileId> = run
                    .iter()
                    .filter_map(|c| match c {
                        Change::ExitAll { profile } => Some(profile),
                        _ => None,
                    })
                    .collect();
                if !gone.is_empty() {
                    exit_all::<DB>(tx, &gone, now).await?;
                    continue;
                }
                Self::apply_memberships(tx, run, now, seq, reason).await?;
            }
            // Re-check times in multi-row statements: a window touches many profiles.
            let mut clear: HashMap<&str, Vec<&ProfileId>> = HashMap::new();
            let mut set: Vec<(&str, &ProfileId, i64)> = Vec::new();
            for c in changes {
                match c {
                    Change::Due {
                        audience,
                        profile,
                        at: None,
                    } => clear.entry(audience).or_default().push(profile),
                    Change::Due {
                        audience,
                        profile,
                        at: Some(at),
                    } => set.push((audience, profile, *at)),
                    _ => {}
                }
            }
            for (audience, profiles) in clear {
                for chunk in profiles.chunks(500) {
                    let mut q =
                        QueryBuilder::<DB>::new("DELETE FROM audience_checks WHERE audience = ");
                    q.push_bind(audience).push(" AND profile_id IN (");
                    let mut list = q.separated(", ");
                    for p in chunk {
                        list.push_bind(*p);
                    }
                    q.push(")");
                    DB::build(&mut q).execute(&mut **tx).await?;
                }
            }
            for chunk in set.chunks(200) {
                let mut q = QueryBuilder::<DB>::new(
                    "INSERT INTO audience_checks (audience, profile_id, due_at) ",
                );
                q.push_values(chunk, |mut b, (a, p, at)| {
                    b.push_bind(*a).push_bind(*p).push_bind(*at);
                });
                q.push(
                    " ON CONFLICT (audience, profile_id) DO UPDATE SET due_at = excluded.due_at",
                );
                DB::build(&mut q).execute(&mut **tx).await?;
            }
            Ok(())
        })
    }

    fn backfill_progress<'a>(
        &'a mut self,
        id: &'a str,
        done: i64,
        total: i64,
        finished: Option<i64>,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            sqlx::query(
                "UPDATE audiences SET backfill_done = $2, backfill_total = $3, \
                 backfilled_at = COALESCE($4, backfilled_at) WHERE id = $1",
            )
            .bind(id)
            .bind(done)
            .bind(total)
            .bind(finished)
            .execute(&mut *self.tx)
            .await?;
            Ok(())
        })
    }

    fn commit(
        self: Box<Self>,
        cursor: Option<(&'static str, i64)>,
    ) -> BoxFuture<'static, Result<(), StorageError>> {
        Box::pin(async move {
            let mut tx = self.tx;
            if let Some((name, seq)) = cursor {
                sqlx::query("UPDATE pipeline_cursors SET seq = $1 WHERE name = $2")
                    .bind(seq)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }
}

impl<DB> SqlAudienceTx<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    String: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    i64: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    Option<i64>: Type<DB> + for<'q> Encode<'q, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB>,
{
    /// (profile, value) pairs of `base` (which binds `$1` = key) restricted to the scope.
    async fn fetch_pairs(
        &mut self,
        base: &str,
        join: &str,
        key: &str,
        scope: &Scope,
        order: &str,
    ) -> Result<Vec<(ProfileId, String)>, StorageError> {
        let column = if join.ends_with('.') {
            "profile_id"
        } else {
            " profile_id"
        };
        let mut out = Vec::new();
        match scope {
            Scope::All => {
                let sql = params::<DB>(format!("{base} {order}"));
                out.extend(
                    sqlx::query_as::<_, (ProfileId, String)>(&sql)
                        .bind(key)
                        .fetch_all(&mut *self.tx)
                        .await?,
                );
            }
            Scope::Ids(ids) => {
                for chunk in ids.chunks(500) {
                    let sql = params::<DB>(format!(
                        "{base} {join}{column} IN ({}) {order}",
                        placeholders(2, chunk.len())
                    ));
                    let mut q = sqlx::query_as::<_, (ProfileId, String)>(&sql).bind(key);
                    for id in chunk {
                        q = q.bind(id);
                    }
                    out.extend(q.fetch_all(&mut *self.tx).await?);
                }
            }
        }
        Ok(out)
    }

    async fn computed_column(
        tx: &mut Self,
        name: &str,
        scope: &Scope,
        plan: &TrackingPlan,
        now: i64,
        index: &HashMap<&ProfileId, usize>,
        col: &mut Column,
    ) -> Result<(), StorageError> {
        let chunks: Vec<Option<&[ProfileId]>> = match scope {
            Scope::All => vec![None],
            Scope::Ids(ids) => ids.chunks(500).map(Some).collect(),
        };
        for chunk in chunks {
            let in_scope = chunk.map_or(String::new(), |c| {
                format!(" WHERE profile_id IN ({})", placeholders(1, c.len()))
            });
            if name == "journey_stage" {
                let sql = params::<DB>(format!(
                    "SELECT DISTINCT profile_id, kind, COALESCE(event, '') FROM profile_messages{in_scope}"
                ));
                let mut q = sqlx::query_as::<_, (ProfileId, String, String)>(&sql);
                for id in chunk.unwrap_or(&[]) {
                    q = q.bind(id);
                }
                let mut best: HashMap<usize, usize> = HashMap::new();
                for (p, kind, event) in q.fetch_all(&mut *tx.tx).await? {
                    let rank = engine::journey_rank(plan, &kind, &event);
                    if let (Some(&i), Some(r)) = (index.get(&p), rank) {
                        let e = best.entry(i).or_insert(r);
                        *e = (*e).max(r);
                    }
                }
                for (i, r) in best {
                    col.set(i, &serde_json::Value::String(plan.stages()[r].name.clone()));
                }
                continue;
            }
            // The 30-day threshold is a number computed here, written into the statement.
            let expr = match name {
                "messages_total" => "COUNT(*)".to_owned(),
                "first_seen" => "MIN(event_time)".to_owned(),
                "last_seen" => "MAX(event_time)".to_owned(),
                "active_days_30d" => format!(
                    "COUNT(DISTINCT CASE WHEN event_time >= {} THEN event_time / 86400000 END)",
                    now - 30 * 86_400_000
                ),
                _ => return Ok(()),
            };
            let sql = params::<DB>(format!(
                "SELECT profile_id, {expr} FROM profile_messages{in_scope} GROUP BY profile_id"
            ));
            let mut q = sqlx::query_as::<_, (ProfileId, i64)>(&sql);
            for id in chunk.unwrap_or(&[]) {
                q = q.bind(id);
            }
            for (p, v) in q.fetch_all(&mut *tx.tx).await? {
                if let Some(&i) = index.get(&p) {
                    col.set(i, &serde_json::json!(v));
                }
            }
        }
        Ok(())
    }

    /// Writes a run of entries and exits in a few statements per hundred: the memberships that
    /// really change (only live profiles enter: one deleted or merged since the snapshot never
    /// does; only members leave), their history, and one event each: the exits first, then the
    /// entries, each in the order of the changes.
    async fn apply_memberships(
        tx: &mut sqlx::Transaction<'static, DB>,
        run: &[Change],
        now: i64,
        seq: i64,
        reason: &str,
    ) -> Result<(), StorageError> {
        const ROWS: usize = 100;
        let (mut enters, mut exits) = (Vec::new(), Vec::new());
        for change in run {
            match change {
                Change::Enter { audience, profile } => {
                    enters.push((audience.clone(), profile.as_str().to_owned()));
                }
                Change::Exit { audience, profile } => {
                    exits.push((audience.clone(), profile.as_str().to_owned()));
                }
                Change::ExitAll { .. } | Change::Due { .. } => {}
            }
        }
        for (entering, wanted, statement, kind) in [
            (
                false,
                exits,
                ") DELETE FROM audience_members \
                 WHERE (audience, profile_id) IN (SELECT audience, profile_id FROM v) \
                 RETURNING audience, profile_id",
                "audience_exited",
            ),
            (
                true,
                enters,
                ") INSERT INTO audience_members (audience, profile_id, entered_at) \
                 SELECT v.audience, v.profile_id, ",
                "audience_entered",
            ),
        ] {
            for chunk in wanted.chunks(ROWS) {
                let mut q = QueryBuilder::<DB>::new("WITH v (audience, profile_id) AS (");
                q.push_values(chunk, |mut b, (a, p)| {
                    b.push_bind(a.clone()).push_bind(p.clone());
                });
                q.push(statement);
                if entering {
                    q.push_bind(now).push(
                        " FROM v JOIN profiles p ON p.id = v.profile_id \
                         WHERE p.merged_into IS NULL \
                         ON CONFLICT DO NOTHING RETURNING audience, profile_id",
                    );
                }
                let mut changed: Vec<(String, String)> =
                    DB::build_query_as(&mut q).fetch_all(&mut **tx).await?;
                if changed.is_empty() {
                    continue;
                }
                // RETURNING gives no order: keep the changes' own.
                changed.sort_by_key(|pair| chunk.iter().position(|c| c == pair));
                if entering {
                    let mut q = QueryBuilder::<DB>::new(
                        "INSERT INTO audience_history (audience, profile_id, entered_at) ",
                    );
                    q.push_values(&changed, |mut b, (a, p)| {
                        b.push_bind(a.clone()).push_bind(p.clone()).push_bind(now);
                    });
                    DB::build(&mut q).execute(&mut **tx).await?;
                } else {
                    let mut q = QueryBuilder::<DB>::new("WITH v (audience, profile_id) AS (");
                    q.push_values(&changed, |mut b, (a, p)| {
                        b.push_bind(a.clone()).push_bind(p.clone());
                    });
                    q.push(") UPDATE audience_history SET exited_at = ");
                    q.push_bind(now).push(
                        " WHERE exited_at IS NULL \
                         AND (audience, profile_id) IN (SELECT audience, profile_id FROM v)",
                    );
                    DB::build(&mut q).execute(&mut **tx).await?;
                }
                let mut q = QueryBuilder::<DB>::new(
                    "INSERT INTO audience_events (audience, profile_id, kind, at, seq, reason) ",
                );
                q.push_values(&changed, |mut b, (a, p)| {
                    b.push_bind(a.clone())
                        .push_bind(p.clone())
                        .push_bind(kind)
                        .push_bind(now)
                        .push_bind(seq)
                        .push_bind(reason.to_owned());
                });
                DB::build(&mut q).execute(&mut **tx).await?;
            }
        }
        Ok(())
    }

    async fn list_rows(conn: &mut DB::Connection) -> Result<Vec<AudienceRow>, StorageError> {
        let rows: Vec<AudienceTuple> = sqlx::query_as(
            "SELECT id, name, description, condition, origin, backfill_done, backfill_total, backfilled_at \
             FROM audiences ORDER BY id",
        )
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    id,
                    name,
                    description,
                    condition,
                    origin,
                    backfill_done,
                    backfill_total,
                    backfilled_at,
                )| {
                    AudienceRow {
                        id,
                        name,
                        description,
                        condition,
                        origin,
                        backfill_done,
                        backfill_total,
                        backfilled_at,
                    }
                },
            )
            .collect())
    }
}

impl<DB> AudienceStore for SqlAudiences<DB>
where
    Db<DB>: BeginWrite<Db = DB> + BeginRead<Db = DB>,
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    String: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    i64: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    Option<i64>: Type<DB> + for<'q> Encode<'q, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB>,
{
    fn begin(&self) -> BoxFuture<'_, Result<Box<dyn AudienceTx>, StorageError>> {
        Box::pin(async move {
            let (tx, gate) = self.pool.begin_state_write().await?;
            Ok(Box::new(SqlAudienceTx { tx, _gate: gate }) as Box<dyn AudienceTx>)
        })
    }

    fn begin_read(&self) -> BoxFuture<'_, Result<Box<dyn AudienceTx>, StorageError>> {
        Box::pin(async move {
            let tx = crate::storage::BeginRead::begin_read(&self.pool).await?;
            Ok(Box::new(SqlAudienceTx {
                tx,
                _gate: Default::default(),
            }) as Box<dyn AudienceTx>)
        })
    }

    fn upsert<'a>(
        &'a self,
        id: &'a str,
        name: &'a str,
        description: &'a str,
        condition: &'a str,
        origin: &'a str,
    ) -> BoxFuture<'a, Result<bool, StorageError>> {
        Box::pin(async move {
            let (mut tx, _gate) = self.pool.begin_state_write().await?;
            let old: Option<String> =
                sqlx::query_scalar("SELECT condition FROM audiences WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let now = chrono::Utc::now().timestamp_millis();
            sqlx::query(
                "INSERT INTO audiences (id, name, description, condition, origin, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
                 description = excluded.description, condition = excluded.condition, \
                 origin = excluded.origin, updated_at = excluded.updated_at",
            )
            .bind(id)
            .bind(name)
            .bind(description)
            .bind(condition)
            .bind(origin)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(old.as_deref() != Some(condition))
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<AudienceRow>, StorageError>> {
        Box::pin(async move {
            let mut conn = self.pool.pool().acquire().await?;
            SqlAudienceTx::<DB>::list_rows(&mut conn).await
        })
    }

    fn members<'a>(
        &'a self,
        id: &'a str,
        limit: i64,
    ) -> BoxFuture<'a, Result<(Vec<Membership>, i64), StorageError>> {
        Box::pin(async move {
            let rows: Vec<(String, ProfileId, i64)> = sqlx::query_as(
                "SELECT audience, profile_id, entered_at FROM audience_members WHERE audience = $1 \
                 ORDER BY entered_at DESC, profile_id LIMIT $2",
            )
            .bind(id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            let count: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM audience_members WHERE audience = $1")
                    .bind(id)
                    .fetch_one(&self.pool)
                    .await?;
            Ok((
                rows.into_iter()
                    .map(|(audience, profile_id, entered_at)| Membership {
                        audience,
                        profile_id,
                        entered_at,
                        exited_at: None,
                    })
                    .collect(),
                count,
            ))
        })
    }

    fn memberships<'a>(
        &'a self,
        profile: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Vec<Membership>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<(String, ProfileId, i64, Option<i64>)> = sqlx::query_as(
                "SELECT audience, profile_id, entered_at, exited_at FROM audience_history \
                 WHERE profile_id = $1 ORDER BY id",
            )
            .bind(profile)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(audience, profile_id, entered_at, exited_at)| Membership {
                    audience,
                    profile_id,
                    entered_at,
                    exited_at,
                })
                .collect())
        })
    }

    fn events(
        &self,
        after: i64,
        limit: i64,
    ) -> BoxFuture<'_, Result<Vec<AudienceEvent>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<(i64, String, ProfileId, String, i64, i64, String)> = sqlx::query_as(
                "SELECT id, audience, profile_id, kind, at, seq, reason FROM audience_events \
                 WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(
                    |(id, audience, profile_id, kind, at, seq, reason)| AudienceEvent {
                        id,
                        audience,
                        profile_id,
                        kind,
                        at,
                        seq,
                        reason,
                    },
                )
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn live_profiles_among_a_window_are_found_by_id_not_by_walking_every_live_profile() {
        // With a full index on `merged_into`, SQLite (no statistics on a fresh database) answered
        // this by walking every live profile through `merged_into IS NULL`, so each window of the
        // audience stage took longer as profiles accumulated.
        let dir = tempfile::tempdir().unwrap();
        let store = crate::storage::test_store_in(dir.path()).await;
        let sql = format!("EXPLAIN QUERY PLAN {}", live_among::<sqlx::Sqlite>(500));
        let mut q = sqlx::query_as::<_, (i64, i64, i64, String)>(&sql);
        for i in 0..500 {
            q = q.bind(format!("p-{i}"));
        }
        let plan: Vec<String> = q
            .fetch_all(store.db().pool())
            .await
            .unwrap()
            .into_iter()
            .map(|row| row.3)
            .collect();
        assert!(
            plan.iter().any(|step| step.contains("(id=?)")),
            "expected a lookup by id, got {plan:?}"
        );
        assert!(
            !plan
                .iter()
                .any(|step| step.contains("profiles_merged_into")),
            "expected no walk of the merged_into index, got {plan:?}"
        );
    }
}
