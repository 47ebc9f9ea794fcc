//! The handoff stage's repository: what it reads of profiles, audiences and the log, the scores
//! it emitted, and the handoff log. One implementation generic over the database (the SQL is the
//! same on SQLite and PostgreSQL); SQLite writes go through the file's write gate.

use super::decide::Load;
use super::score::{Event, Facts};
use crate::identity::ProfileId;
use crate::storage::{BeginWrite, Db, Dialect, StorageError};
use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, QueryBuilder, Type};
use std::collections::BTreeMap;

/// The stage's cursor in `pipeline_cursors`.
pub const CURSOR: &str = "handoff";

/// One message of a window: whose it was and what it was.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRow {
    /// Log position.
    pub seq: i64,
    /// The (live) profile it belongs to.
    pub profile: ProfileId,
    /// The source it came from (`None` once retention purged the message).
    pub source: Option<i64>,
    /// The event.
    pub event: Event,
}

/// A handoff as the log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HandoffRow {
    /// Id.
    pub id: i64,
    /// The profile handed off.
    pub profile_id: ProfileId,
    /// The rule that fired.
    pub rule: String,
    /// `score`, `behaviour` or `nurture`.
    pub kind: String,
    /// `immediate`, `priority` or `standard`.
    pub priority: String,
    /// The score at the time.
    pub score: i64,
    /// The team.
    pub team: String,
    /// The rep.
    pub rep: String,
    /// How the rep was chosen.
    pub how: String,
    /// `pending` (CRM and email steps not all done), `open`, `reminded`, `completed`, `failed`.
    pub state: String,
    /// What the Task and email carried (JSON).
    pub brief: Value,
    /// Which steps are done (JSON).
    pub progress: Value,
    /// Delivery attempts.
    pub attempts: i64,
    /// The last delivery error.
    pub error: Option<String>,
    /// When (ms, the injected clock).
    pub created_at: i64,
    /// When the reminder went out.
    pub reminded_at: Option<i64>,
}

/// A handoff to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewHandoff {
    /// The profile.
    pub profile_id: ProfileId,
    /// The rule.
    pub rule: String,
    /// Its kind.
    pub kind: String,
    /// Its priority.
    pub priority: String,
    /// The score.
    pub score: i64,
    /// The team.
    pub team: String,
    /// The rep.
    pub rep: String,
    /// How the rep was chosen.
    pub how: String,
    /// The brief (JSON).
    pub brief: Value,
    /// The handoff window, ms: the insert is skipped when the profile was handed off more recently
    /// than this (checked again inside the committing transaction, so two processes deciding at
    /// once still hand a person off only once).
    pub window_ms: i64,
}

/// A changed score to remember.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreRow {
    /// The profile.
    pub profile_id: ProfileId,
    /// The total.
    pub score: i64,
    /// The breakdown (JSON text).
    pub breakdown: String,
}

/// What deciding about one person needs, read for a whole window at once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Person {
    /// Their traits, their account's traits and their events since the time asked for (the
    /// latest 1,000).
    pub facts: Facts,
    /// The audiences they are in, with when they entered.
    pub memberships: Vec<(String, i64)>,
    /// When they were last handed off (failed handoffs do not count).
    pub last_handoff: Option<i64>,
    /// The score last emitted for them: (total, breakdown JSON text).
    pub score: Option<(i64, String)>,
    /// Their `user_id` (preferred) or latest `anonymous_id`: (kind, value).
    pub who: Option<(String, String)>,
}

/// Most scores one statement of [`HandoffStore::commit`] writes (4 parameters each).
const SCORES_PER_STATEMENT: usize = 200;

/// Most profiles one statement of [`HandoffStore::people`] names.
const PEOPLE_PER_STATEMENT: usize = 500;

/// A handoff's new state after a delivery or follow-up step.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// The handoff.
    pub id: i64,
    /// Its state.
    pub state: String,
    /// Its progress.
    pub progress: Value,
    /// Attempts so far.
    pub attempts: i64,
    /// The last error.
    pub error: Option<String>,
    /// When the reminder went out.
    pub reminded_at: Option<i64>,
    /// When it was completed or given up.
    pub closed_at: Option<i64>,
}

/// The repository.
pub trait HandoffStore: Send + Sync + 'static {
    /// The stage's cursor and the profiles stage's (how far the stage may read).
    fn cursors(&self) -> BoxFuture<'_, Result<(i64, i64), StorageError>>;
    /// Messages of live profiles in `(after, upto]`.
    fn window(&self, after: i64, upto: i64) -> BoxFuture<'_, Result<Vec<WindowRow>, StorageError>>;
    /// What deciding needs of each of `profiles`, in a few statements whatever their number (every
    /// profile asked for has an entry; one without rows gets [`Person::default`]). Events count from
    /// `since`.
    fn people<'a>(
        &'a self,
        profiles: &'a [ProfileId],
        since: i64,
    ) -> BoxFuture<'a, Result<BTreeMap<ProfileId, Person>, StorageError>>;
    /// Members of an audience who entered before `before` (at most `limit`, oldest first).
    fn members_since<'a>(
        &'a self,
        audience: &'a str,
        before: i64,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<ProfileId>, StorageError>>;
    /// Open handoffs per rep and the last rep of each team.
    fn load(&self) -> BoxFuture<'_, Result<Load, StorageError>>;
    /// The score last emitted for a person: (total, breakdown JSON text).
    fn score<'a>(
        &'a self,
        profile: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Option<(i64, String)>, StorageError>>;
    /// Records scores (at most one per profile) and handoffs and, with `cursor = Some((from,
    /// to))`, moves the cursor in the same transaction; `None` when the cursor was no longer at
    /// `from` (nothing written).
    /// Returns the new handoffs' ids.
    fn commit<'a>(
        &'a self,
        cursor: Option<(i64, i64)>,
        scores: &'a [ScoreRow],
        handoffs: &'a [NewHandoff],
        now: i64,
    ) -> BoxFuture<'a, Result<Option<Vec<i64>>, StorageError>>;
    /// Handoffs in a state, oldest first.
    fn in_state<'a>(
        &'a self,
        state: &'a str,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<HandoffRow>, StorageError>>;
    /// The log, newest first, optionally of one state or one profile.
    fn list<'a>(
        &'a self,
        state: Option<&'a str>,
        profile: Option<&'a ProfileId>,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<HandoffRow>, StorageError>>;
    /// Saves a handoff's progress.
    fn update<'a>(&'a self, u: &'a Update, now: i64) -> BoxFuture<'a, Result<(), StorageError>>;
    /// Claims a pending handoff for one delivery attempt: counts the attempt if nobody else did since
    /// `seen_attempts` was read. `false` means another task or process is delivering it.
    fn claim(&self, id: i64, seen_attempts: i64) -> BoxFuture<'_, Result<bool, StorageError>>;
}

/// [`HandoffStore`] over a migrated SQLite or PostgreSQL pool.
#[derive(Clone, Debug)]
pub struct SqlHandoffs<DB: Database> {
    pool: Db<DB>,
}

impl<DB: Database> SqlHandoffs<DB> {
    /// Wraps a migrated pool.
    pub fn new(pool: Db<DB>) -> Self {
        SqlHandoffs { pool }
    }
}

/// SQLite's handoff store.
pub type SqliteHandoffs = SqlHandoffs<sqlx::Sqlite>;
/// PostgreSQL's handoff store.
pub type PgHandoffs = SqlHandoffs<sqlx::Postgres>;

type RowTuple = (
    i64,
    ProfileId,
    String,
    String,
    String,
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
    i64,
    Option<i64>,
);

type WindowTuple = (
    i64,
    ProfileId,
    String,
    Option<String>,
    i64,
    Option<String>,
    Option<i64>,
);

const COLUMNS: &str = "id, profile_id, rule, kind, priority, score, team, rep, how, state, brief, \
     progress, attempts, error, created_at, reminded_at";

fn row(t: RowTuple) -> HandoffRow {
    HandoffRow {
        id: t.0,
        profile_id: t.1,
        rule: t.2,
        kind: t.3,
        priority: t.4,
        score: t.5,
        team: t.6,
        rep: t.7,
        how: t.8,
        state: t.9,
        brief: serde_json::from_str(&t.10).unwrap_or(Value::Null),
        progress: serde_json::from_str(&t.11).unwrap_or(Value::Null),
        attempts: t.12,
        error: t.13,
        created_at: t.14,
        reminded_at: t.15,
    }
}

/// The path of a page call, from its stored body.
fn page_path(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let from_url = |u: &str| {
        let rest = u.split_once("://").map_or(u, |(_, r)| r);
        rest.find('/')
            .map(|i| rest[i..].split(['?', '#']).next().unwrap_or("").to_owned())
    };
    v["properties"]["path"]
        .as_str()
        .or_else(|| v["context"]["page"]["path"].as_str())
        .map(str::to_owned)
        .or_else(|| {
            v["properties"]["url"]
                .as_str()
                .or_else(|| v["context"]["page"]["url"].as_str())
                .and_then(from_url)
        })
}

fn event(kind: String, name: Option<String>, at: i64, body: Option<String>) -> Event {
    let path = if kind == "page" {
        body.as_deref().and_then(page_path)
    } else {
        None
    };
    Event {
        kind,
        event: name,
        path,
        at,
    }
}

/// Most events per person [`HandoffStore::people`] reads (the latest).
const EVENTS_PER_PERSON: usize = 1000;

/// (profile, kind, event, event time, page body).
type EventTuple = (ProfileId, String, Option<String>, i64, Option<String>);

/// `head`, then the ids as a bound list, then `tail`.
fn among<'a, DB>(head: &str, ids: &'a [ProfileId], tail: &str) -> QueryBuilder<'a, DB>
where
    DB: Database,
    ProfileId: Type<DB> + Encode<'a, DB>,
{
    let mut q = QueryBuilder::new(head);
    let mut list = q.separated(", ");
    for id in ids {
        list.push_bind(id);
    }
    q.push(tail);
    q
}

/// What the statements of [`HandoffStore::people`] returned for one chunk of profiles.
struct Rows {
    traits: Vec<(ProfileId, String, String)>,
    account: Vec<(ProfileId, String, String)>,
    events: Vec<EventTuple>,
    memberships: Vec<(ProfileId, String, i64)>,
    last: Vec<(ProfileId, Option<i64>)>,
    scores: Vec<(ProfileId, i64, String)>,
    ids: Vec<(ProfileId, String, String, i64)>,
}

/// Sorts `rows` into the people they belong to (rows of profiles not asked for are ignored). A
/// person's `who` is their `user_id`, else their latest `anonymous_id` (by when it was added, then
/// by value).
fn gather(out: &mut BTreeMap<ProfileId, Person>, rows: Rows) {
    let mut traits: BTreeMap<ProfileId, Vec<(String, String)>> = BTreeMap::new();
    for (p, k, v) in rows.traits {
        traits.entry(p).or_default().push((k, v));
    }
    let mut account: BTreeMap<ProfileId, Vec<(String, String)>> = BTreeMap::new();
    for (p, k, v) in rows.account {
        account.entry(p).or_default().push((k, v));
    }
    for (p, kvs) in traits {
        if let Some(person) = out.get_mut(&p) {
            person.facts.traits = object(kvs);
        }
    }
    for (p, kvs) in account {
        if let Some(person) = out.get_mut(&p) {
            person.facts.account = object(kvs);
        }
    }
    for (p, kind, name, at, body) in rows.events {
        if let Some(person) = out.get_mut(&p) {
            person.facts.events.push(event(kind, name, at, body));
        }
    }
    for (p, audience, entered_at) in rows.memberships {
        if let Some(person) = out.get_mut(&p) {
            person.memberships.push((audience, entered_at));
        }
    }
    for (p, at) in rows.last {
        if let Some(person) = out.get_mut(&p) {
            person.last_handoff = at;
        }
    }
    for (p, score, breakdown) in rows.scores {
        if let Some(person) = out.get_mut(&p) {
            person.score = Some((score, breakdown));
        }
    }
    let mut ids: BTreeMap<ProfileId, Vec<(String, String, i64)>> = BTreeMap::new();
    for (p, kind, value, added_at) in rows.ids {
        if kind == "user_id" || kind == "anonymous_id" {
            ids.entry(p).or_default().push((kind, value, added_at));
        }
    }
    for (p, candidates) in ids {
        if let Some(person) = out.get_mut(&p) {
            person.who = candidates
                .into_iter()
                .min_by(|a, b| {
                    (a.0 != "user_id", std::cmp::Reverse(a.2), &a.1).cmp(&(
                        b.0 != "user_id",
                        std::cmp::Reverse(b.2),
                        &b.1,
                    ))
                })
                .map(|(kind, value, _)| (kind, value));
        }
    }
}

fn object(rows: Vec<(String, String)>) -> Map<String, Value> {
    rows.into_iter()
        .map(|(k, v)| {
            let v = serde_json::from_str(&v).unwrap_or(Value::String(v));
            (k, v)
        })
        .collect()
}

impl<DB> HandoffStore for SqlHandoffs<DB>
where
    DB: Dialect,
    Db<DB>: BeginWrite<Db = DB>,
    for<'c> &'c Db<DB>: Executor<'c, Database = DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    String: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    Option<String>: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    i64: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    Option<i64>: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB>,
{
    fn cursors(&self) -> BoxFuture<'_, Result<(i64, i64), StorageError>> {
        Box::pin(async move {
            let rows: Vec<(String, i64)> = sqlx::query_as::<DB, (String, i64)>(
                "SELECT name, seq FROM pipeline_cursors WHERE name IN ('handoff', 'profiles')",
            )
            .fetch_all(&self.pool)
            .await?;
            let of = |n: &str| rows.iter().find(|(k, _)| k == n).map_or(0, |(_, s)| *s);
            Ok((of(CURSOR), of("profiles")))
        })
    }

    fn window(&self, after: i64, upto: i64) -> BoxFuture<'_, Result<Vec<WindowRow>, StorageError>> {
        Box::pin(async move {
            let rows = sqlx::query_as::<DB, WindowTuple>(
                "SELECT pm.seq, pm.profile_id, pm.kind, pm.event, pm.event_time, \
                 CASE WHEN pm.kind = 'page' THEN CAST(m.body AS TEXT) END, m.source_id \
                 FROM profile_messages pm \
                 JOIN profiles p ON p.id = pm.profile_id AND p.merged_into IS NULL \
                 LEFT JOIN messages m ON m.seq = pm.seq \
                 WHERE pm.seq > $1 AND pm.seq <= $2 ORDER BY pm.seq",
            )
            .bind(after)
            .bind(upto)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(seq, profile, kind, name, at, body, source)| WindowRow {
                    seq,
                    profile,
                    source,
                    event: event(kind, name, at, body),
                })
                .collect())
        })
    }

    fn people<'a>(
        &'a self,
        profiles: &'a [ProfileId],
        since: i64,
    ) -> BoxFuture<'a, Result<BTreeMap<ProfileId, Person>, StorageError>> {
        Box::pin(async move {
            let mut out: BTreeMap<ProfileId, Person> = profiles
                .iter()
                .map(|p| (p.clone(), Person::default()))
                .collect();
            // Each person once, whatever the caller passed: rows are added to a person.
            let unique: Vec<ProfileId> = out.keys().cloned().collect();
            for chunk in unique.chunks(PEOPLE_PER_STATEMENT) {
                let mut q = among(
                    "SELECT profile_id, key, value FROM profile_traits WHERE profile_id IN (",
                    chunk,
                    ")",
                );
                let traits: Vec<(ProfileId, String, String)> =
                    DB::build_query_as(&mut q).fetch_all(&self.pool).await?;
                // The account each person joined first (by group id when several).
                let mut q = among(
                    "SELECT pa.profile_id, t.key, t.value FROM \
                     (SELECT profile_id, MIN(group_id) AS group_id FROM profile_accounts \
                      WHERE profile_id IN (",
                    chunk,
                    ") GROUP BY profile_id) pa \
                     JOIN account_traits t ON t.group_id = pa.group_id",
                );
                let account: Vec<(ProfileId, String, String)> =
                    DB::build_query_as(&mut q).fetch_all(&self.pool).await?;
                // Numbered on the timeline alone; only the kept events' page bodies are read.
                let mut q = among(
                    "SELECT e.profile_id, e.kind, e.event, e.event_time, \
                     CASE WHEN e.kind = 'page' THEN CAST(m.body AS TEXT) END FROM \
                     (SELECT pm.seq, pm.profile_id, pm.kind, pm.event, pm.event_time, \
                      ROW_NUMBER() OVER (PARTITION BY pm.profile_id \
                                         ORDER BY pm.event_time DESC, pm.seq DESC) AS n \
                      FROM profile_messages pm \
                      WHERE pm.kind IN ('track', 'page') AND pm.profile_id IN (",
                    chunk,
                    ") AND pm.event_time >= ",
                );
                q.push_bind(since).push(format!(
                    ") e LEFT JOIN messages m ON m.seq = e.seq WHERE e.n <= {EVENTS_PER_PERSON} \
                     ORDER BY e.profile_id, e.event_time DESC, e.seq DESC"
                ));
                let events: Vec<EventTuple> =
                    DB::build_query_as(&mut q).fetch_all(&self.pool).await?;
                let mut q = among(
                    "SELECT profile_id, audience, entered_at FROM audience_members \
                     WHERE profile_id IN (",
                    chunk,
                    ")",
                );
                let memberships: Vec<(ProfileId, String, i64)> =
                    DB::build_query_as(&mut q).fetch_all(&self.pool).await?;
                let mut q = among(
                    "SELECT profile_id, MAX(created_at) FROM handoffs WHERE state <> 'failed' \
                     AND profile_id IN (",
                    chunk,
                    ") GROUP BY profile_id",
                );
                let last: Vec<(ProfileId, Option<i64>)> =
                    DB::build_query_as(&mut q).fetch_all(&self.pool).await?;
                let mut q = among(
                    "SELECT profile_id, score, breakdown FROM lead_scores WHERE profile_id IN (",
                    chunk,
                    ")",
                );
                let scores: Vec<(ProfileId, i64, String)> =
                    DB::build_query_as(&mut q).fetch_all(&self.pool).await?;
                // Every identifier of these people, by the profile index (a filter on `kind`
                // here made SQLite walk the primary key's `user_id` and `anonymous_id` entries
                // instead); `gather` keeps the two kinds that name a person.
                let mut q = among(
                    "SELECT profile_id, kind, value, added_at FROM identities WHERE profile_id IN (",
                    chunk,
                    ")",
                );
                let ids: Vec<(ProfileId, String, String, i64)> =
                    DB::build_query_as(&mut q).fetch_all(&self.pool).await?;
                gather(
                    &mut out,
                    Rows {
                        traits,
                        account,
                        events,
                        memberships,
                        last,
                        scores,
                        ids,
                    },
                );
            }
            Ok(out)
        })
    }

    fn members_since<'a>(
        &'a self,
        audience: &'a str,
        before: i64,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<ProfileId>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<(ProfileId,)> = sqlx::query_as::<DB, (ProfileId,)>(
                "SELECT profile_id FROM audience_members WHERE audience = $1 AND entered_at <= $2 \
                 ORDER BY entered_at, profile_id LIMIT $3",
            )
            .bind(audience)
            .bind(before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.into_iter().map(|(p,)| p).collect())
        })
    }

    fn load(&self) -> BoxFuture<'_, Result<Load, StorageError>> {
        Box::pin(async move {
            let open = sqlx::query_as::<DB, (String, i64)>(
                "SELECT rep, COUNT(*) FROM handoffs \
                 WHERE state IN ('pending', 'open', 'reminded') GROUP BY rep",
            )
            .fetch_all(&self.pool)
            .await?;
            let last = sqlx::query_as::<DB, (String, String)>(
                "SELECT h.team, h.rep FROM handoffs h \
                 WHERE h.id = (SELECT MAX(x.id) FROM handoffs x WHERE x.team = h.team)",
            )
            .fetch_all(&self.pool)
            .await?;
            Ok(Load {
                open: open
                    .into_iter()
                    .map(|(r, n)| (r, u32::try_from(n).unwrap_or(u32::MAX)))
                    .collect(),
                last: last.into_iter().collect(),
            })
        })
    }

    fn score<'a>(
        &'a self,
        profile: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Option<(i64, String)>, StorageError>> {
        Box::pin(async move {
            Ok(sqlx::query_as::<DB, (i64, String)>(
                "SELECT score, breakdown FROM lead_scores WHERE profile_id = $1",
            )
            .bind(profile)
            .fetch_optional(&self.pool)
            .await?)
        })
    }

    fn commit<'a>(
        &'a self,
        cursor: Option<(i64, i64)>,
        scores: &'a [ScoreRow],
        handoffs: &'a [NewHandoff],
        now: i64,
    ) -> BoxFuture<'a, Result<Option<Vec<i64>>, StorageError>> {
        Box::pin(async move {
            let (mut tx, _gate) = self.pool.begin_state_write().await?;
            if cursor.is_none() && !handoffs.is_empty() {
                // The time-based tick: take the stage's cursor row lock too, so its commits and the
                // stage's (from any process) run one at a time and each sees the others' handoffs.
                sqlx::query::<DB>("UPDATE pipeline_cursors SET seq = seq WHERE name = $1")
                    .bind(CURSOR)
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some((from, to)) = cursor {
                let moved: Option<(i64,)> = sqlx::query_as::<DB, (i64,)>(
                    "UPDATE pipeline_cursors SET seq = $3 WHERE name = $1 AND seq = $2 RETURNING seq",
                )
                .bind(CURSOR)
                .bind(from)
                .bind(to)
                .fetch_optional(&mut *tx)
                .await?;
                if moved.is_none() {
                    return Ok(None);
                }
            }
            // Multi-row: a window of new visitors changes hundreds of scores (one profile once
            // each, as `ON CONFLICT … DO UPDATE` on PostgreSQL requires).
            for chunk in scores.chunks(SCORES_PER_STATEMENT) {
                let mut q = QueryBuilder::<DB>::new(
                    "INSERT INTO lead_scores (profile_id, score, breakdown, updated_at) ",
                );
                q.push_values(chunk, |mut row, s| {
                    row.push_bind(&s.profile_id)
                        .push_bind(s.score)
                        .push_bind(&s.breakdown)
                        .push_bind(now);
                });
                q.push(
                    " ON CONFLICT (profile_id) DO UPDATE SET score = excluded.score, \
                     breakdown = excluded.breakdown, updated_at = excluded.updated_at",
                );
                DB::build(&mut q).execute(&mut *tx).await?;
            }
            let mut ids = Vec::with_capacity(handoffs.len());
            for h in handoffs {
                let (recent,): (i64,) = sqlx::query_as::<DB, (i64,)>(
                    "SELECT COUNT(*) FROM handoffs WHERE profile_id = $1 AND state <> 'failed' \
                     AND created_at > $2",
                )
                .bind(h.profile_id.clone())
                .bind(now - h.window_ms)
                .fetch_one(&mut *tx)
                .await?;
                if recent > 0 {
                    tracing::info!(profile = %h.profile_id, "already handed off by another process; skipped");
                    continue;
                }
                let (id,): (i64,) = sqlx::query_as::<DB, (i64,)>(
                    "INSERT INTO handoffs (profile_id, rule, kind, priority, score, team, rep, how, \
                     state, brief, progress, attempts, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, '{}', 0, $10, $10) RETURNING id",
                )
                .bind(h.profile_id.clone())
                .bind(h.rule.clone())
                .bind(h.kind.clone())
                .bind(h.priority.clone())
                .bind(h.score)
                .bind(h.team.clone())
                .bind(h.rep.clone())
                .bind(h.how.clone())
                .bind(h.brief.to_string())
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                ids.push(id);
            }
            tx.commit().await?;
            Ok(Some(ids))
        })
    }

    fn in_state<'a>(
        &'a self,
        state: &'a str,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<HandoffRow>, StorageError>> {
        Box::pin(async move {
            let sql =
                format!("SELECT {COLUMNS} FROM handoffs WHERE state = $1 ORDER BY id LIMIT $2");
            let rows = sqlx::query_as::<DB, RowTuple>(&sql)
                .bind(state)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
            Ok(rows.into_iter().map(row).collect())
        })
    }

    fn list<'a>(
        &'a self,
        state: Option<&'a str>,
        profile: Option<&'a ProfileId>,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<HandoffRow>, StorageError>> {
        Box::pin(async move {
            let sql = format!(
                "SELECT {COLUMNS} FROM handoffs WHERE ($1 = '' OR state = $1) \
                 AND ($2 = '' OR profile_id = $2) ORDER BY id DESC LIMIT $3"
            );
            let rows = sqlx::query_as::<DB, RowTuple>(&sql)
                .bind(state.unwrap_or(""))
                .bind(profile.map_or("", ProfileId::as_str))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
            Ok(rows.into_iter().map(row).collect())
        })
    }

    fn update<'a>(&'a self, u: &'a Update, now: i64) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let (mut tx, _gate) = self.pool.begin_state_write().await?;
            sqlx::query::<DB>(
                "UPDATE handoffs SET state = $2, progress = $3, attempts = $4, error = $5, \
                 reminded_at = $6, closed_at = $7, updated_at = $8 WHERE id = $1",
            )
            .bind(u.id)
            .bind(u.state.clone())
            .bind(u.progress.to_string())
            .bind(u.attempts)
            .bind(u.error.clone())
            .bind(u.reminded_at)
            .bind(u.closed_at)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn claim(&self, id: i64, seen_attempts: i64) -> BoxFuture<'_, Result<bool, StorageError>> {
        Box::pin(async move {
            let (mut tx, _gate) = self.pool.begin_state_write().await?;
            let claimed: Option<(i64,)> = sqlx::query_as::<DB, (i64,)>(
                "UPDATE handoffs SET attempts = attempts + 1 \
                 WHERE id = $1 AND attempts = $2 AND state = 'pending' RETURNING id",
            )
            .bind(id)
            .bind(seen_attempts)
            .fetch_optional(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(claimed.is_some())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{HandoffStore, NewHandoff, Person, ScoreRow, SqliteHandoffs, page_path};
    use crate::identity::ProfileId;

    fn handoff(profile: &str, window_ms: i64) -> NewHandoff {
        NewHandoff {
            profile_id: profile.into(),
            rule: "score_threshold".into(),
            kind: "score".into(),
            priority: "immediate".into(),
            score: 510,
            team: "inbound".into(),
            rep: "ines".into(),
            how: "round robin".into(),
            brief: serde_json::json!({}),
            window_ms,
        }
    }

    #[tokio::test]
    async fn people_are_read_for_a_whole_window_at_once_each_with_their_own_rows() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::storage::test_store_in(dir.path()).await;
        let pool = db.db().pool().clone();
        let store = SqliteHandoffs::new(db.db().clone());
        let run = |sql: String| {
            let pool = pool.clone();
            async move { sqlx::query(&sql).execute(&pool).await.unwrap() }
        };
        // p1: traits, two accounts (the first by id counts), 1,002 events, both kinds of id.
        run(
            "INSERT INTO profile_traits VALUES ('p1', 'email', '\"p1@example.com\"', 1, 1), \
             ('p4', 'email', '\"p4@example.com\"', 1, 1)"
                .into(),
        )
        .await;
        run("INSERT INTO profile_accounts VALUES ('p1', 'g3'), ('p1', 'g2')".into()).await;
        run(
            "INSERT INTO account_traits VALUES ('g2', 'industry', '\"software\"', 1), \
             ('g3', 'industry', '\"retail\"', 1)"
                .into(),
        )
        .await;
        let events: Vec<String> = (1..=1002)
            .map(|t| format!("({t}, 'p1', 'track', 'report_generated', {t})"))
            .collect();
        run(format!(
            "INSERT INTO profile_messages VALUES {}",
            events.join(", ")
        ))
        .await;
        run(
            "INSERT INTO identities VALUES ('anonymous_id', 'a1', 'p1', 9, 1), \
             ('user_id', 'u1', 'p1', 2, 1), \
             ('anonymous_id', 'a-old', 'p2', 1, 1), ('anonymous_id', 'a-new', 'p2', 5, 1), \
             ('email', 'p2@example.com', 'p2', 7, 1)"
                .into(),
        )
        .await;
        run("INSERT INTO audience_members VALUES ('pql', 'p1', 50)".into()).await;
        let day = 86_400_000;
        let handoff = NewHandoff {
            profile_id: "p1".into(),
            ..handoff("p1", 90 * day)
        };
        let score = ScoreRow {
            profile_id: "p1".into(),
            score: 42,
            breakdown: "{}".into(),
        };
        store.commit(None, &[score], &[handoff], 70).await.unwrap();

        let asked: Vec<ProfileId> = ["p1", "p2", "p3"].map(ProfileId::from).to_vec();
        let people = store.people(&asked, 2).await.unwrap();

        assert_eq!(people.keys().cloned().collect::<Vec<_>>(), asked);
        let p1 = &people[&ProfileId::from("p1")];
        assert_eq!(p1.facts.traits["email"], "p1@example.com");
        assert_eq!(p1.facts.account["industry"], "software");
        // Events from `since` on (1,001 of them), the latest 1,000.
        assert_eq!(p1.facts.events.len(), 1000);
        assert_eq!(p1.facts.events.iter().map(|e| e.at).min(), Some(3));
        assert_eq!(p1.memberships, vec![("pql".to_owned(), 50)]);
        assert_eq!(p1.last_handoff, Some(70));
        assert_eq!(p1.score, Some((42, "{}".to_owned())));
        assert_eq!(p1.who, Some(("user_id".to_owned(), "u1".to_owned())));
        let p2 = &people[&ProfileId::from("p2")];
        assert_eq!(
            p2.who,
            Some(("anonymous_id".to_owned(), "a-new".to_owned()))
        );
        assert_eq!(people[&ProfileId::from("p3")], Person::default());
    }

    #[tokio::test]
    async fn a_person_handed_off_by_another_process_within_the_window_is_not_handed_off_again() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let stores = crate::stores::connect(&url).await.unwrap();
        let store = &stores.handoffs;
        let day = 86_400_000;
        // Two processes decided on the same person; the first commit wins.
        let first = store
            .commit(None, &[], &[handoff("p1", 90 * day)], 1_000)
            .await
            .unwrap();
        assert_eq!(first.map(|ids| ids.len()), Some(1));
        let second = store
            .commit(
                None,
                &[],
                &[handoff("p1", 90 * day), handoff("p2", 90 * day)],
                2_000,
            )
            .await
            .unwrap();
        assert_eq!(second.map(|ids| ids.len()), Some(1), "only p2 is new");
        // After the window has passed, the person may be handed off again.
        let later = store
            .commit(None, &[], &[handoff("p1", 90 * day)], 1_000 + 91 * day)
            .await
            .unwrap();
        assert_eq!(later.map(|ids| ids.len()), Some(1));
        assert_eq!(
            store
                .list(None, Some(&"p1".into()), 10)
                .await
                .unwrap()
                .len(),
            2
        );
    }

    #[tokio::test]
    async fn a_pending_handoff_is_claimed_by_one_deliverer_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let stores = crate::stores::connect(&url).await.unwrap();
        let store = &stores.handoffs;
        let ids = store
            .commit(None, &[], &[handoff("p1", 1)], 1_000)
            .await
            .unwrap()
            .unwrap();
        let row = &store.in_state("pending", 10).await.unwrap()[0];
        assert_eq!(row.id, ids[0]);
        // Two deliverers read the same row; only the first claim counts.
        assert!(store.claim(row.id, row.attempts).await.unwrap());
        assert!(!store.claim(row.id, row.attempts).await.unwrap());
        // The next round claims from the attempts it reads then.
        let again = &store.in_state("pending", 10).await.unwrap()[0];
        assert_eq!(again.attempts, row.attempts + 1);
        assert!(store.claim(again.id, again.attempts).await.unwrap());
    }

    #[test]
    fn a_page_path_comes_from_the_properties_or_the_url() {
        assert_eq!(
            page_path(r#"{"properties":{"path":"/pricing"}}"#).as_deref(),
            Some("/pricing")
        );
        assert_eq!(
            page_path(r#"{"properties":{"url":"https://x.example/pricing/teams?a=1"}}"#).as_deref(),
            Some("/pricing/teams")
        );
        assert_eq!(
            page_path(r#"{"context":{"page":{"path":"/docs"}}}"#).as_deref(),
            Some("/docs")
        );
        assert_eq!(page_path("{}"), None);
    }
}
