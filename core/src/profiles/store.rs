//! The profile repository: one implementation generic over the database. The SQL (`$N`
//! placeholders) is the same on SQLite and PostgreSQL; `Dialect` holds what differs.

use crate::identity::{Identifier, ProfileId};
use crate::storage::{BeginRead, BeginWrite, Db, Dialect, StorageError};
use futures_util::future::BoxFuture;
use serde::Serialize;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, QueryBuilder, Type};
use std::collections::HashSet;

/// A message of the log, as the processor reads it.
#[derive(Debug, Clone)]
pub struct LogRow {
    /// Log position.
    pub seq: i64,
    /// The plan's verdict at intake.
    pub status: crate::storage::Status,
    /// Skew-corrected event time (ms).
    pub event_time: i64,
    /// The message JSON.
    pub body: String,
}

/// One write the processor decided on; applied in order inside the batch transaction.
#[derive(Debug, Clone)]
pub enum Op {
    /// A new profile.
    CreateProfile {
        /// Its id.
        id: ProfileId,
        /// Creation time (ms).
        at: i64,
    },
    /// An identifier now belongs to a profile.
    Attach {
        /// The identifier.
        id: Identifier,
        /// The profile.
        profile: ProfileId,
        /// The message that brought it.
        seq: i64,
        /// When (ms).
        at: i64,
    },
    /// `loser` folded into `winner`.
    Merge {
        /// Remaining profile.
        winner: ProfileId,
        /// Folded profile.
        loser: ProfileId,
        /// Why.
        reason: String,
        /// The message that caused it.
        seq: i64,
        /// When (ms).
        at: i64,
    },
    /// A message joins a profile's timeline.
    Link {
        /// Log position.
        seq: i64,
        /// The profile.
        profile: ProfileId,
        /// Message type.
        kind: String,
        /// Track event name.
        event: Option<String>,
        /// Event time (ms).
        event_time: i64,
    },
    /// Traits set by an identify, last write wins by `updated_at` (event time).
    SetTraits {
        /// The profile.
        profile: ProfileId,
        /// Key → JSON value.
        traits: Vec<(String, String)>,
        /// Event time (ms).
        updated_at: i64,
        /// The message.
        seq: i64,
    },
    /// A group call: the profile belongs to the account, whose traits are updated.
    SetAccount {
        /// The profile.
        profile: ProfileId,
        /// groupId.
        group_id: String,
        /// Key → JSON value.
        traits: Vec<(String, String)>,
        /// Event time (ms).
        updated_at: i64,
    },
    /// Something resolution refused, kept for the profile's audit trail.
    Report {
        /// The message.
        seq: i64,
        /// The profile it went to, if any.
        profile: Option<ProfileId>,
        /// Report kind.
        kind: String,
        /// The identifier.
        id: Identifier,
        /// Explanation.
        detail: String,
        /// When (ms).
        at: i64,
    },
    /// Numeric properties of a track event, folded into the profile's property aggregates.
    Aggregate {
        /// The profile.
        profile: ProfileId,
        /// Event name.
        event: String,
        /// Property → value.
        values: Vec<(String, f64)>,
    },
    /// The message carries a suppressed identifier (deleted profile): erase it from the log.
    DropMessage {
        /// Log position.
        seq: i64,
    },
}

impl Op {
    /// The profiles this op writes to.
    fn profiles(&self) -> impl Iterator<Item = &ProfileId> {
        let (a, b) = match self {
            Op::CreateProfile { id, .. } => (Some(id), None),
            Op::Attach { profile, .. }
            | Op::Link { profile, .. }
            | Op::SetTraits { profile, .. }
            | Op::SetAccount { profile, .. }
            | Op::Aggregate { profile, .. } => (Some(profile), None),
            Op::Merge { winner, loser, .. } => (Some(winner), Some(loser)),
            Op::Report { profile, .. } => (profile.as_ref(), None),
            Op::DropMessage { .. } => (None, None),
        };
        a.into_iter().chain(b)
    }
}

/// What a batch's writes need from the profiles they touch, when profile stages of several log
/// partitions run at once.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Profiles that existed before the batch and that it writes to, ascending: locked at write
    /// time, and each must still be live at the version the decision saw.
    pub existing: Vec<ProfileId>,
    /// Profiles whose identifiers the batch changes (attached to, merged): their versions are
    /// bumped, so a stage that decided with the old identifiers redoes its batch.
    pub changed: Vec<ProfileId>,
}

/// The batch's [`Footprint`].
pub fn footprint(ops: &[Op]) -> Footprint {
    let created: HashSet<&ProfileId> = ops
        .iter()
        .filter_map(|op| match op {
            Op::CreateProfile { id, .. } => Some(id),
            _ => None,
        })
        .collect();
    let mut existing: Vec<ProfileId> = ops
        .iter()
        .flat_map(Op::profiles)
        .filter(|p| !created.contains(p))
        .cloned()
        .collect();
    existing.sort();
    existing.dedup();
    let mut changed: Vec<ProfileId> = ops
        .iter()
        .filter(|op| matches!(op, Op::Attach { .. } | Op::Merge { .. }))
        .flat_map(Op::profiles)
        .cloned()
        .collect();
    changed.sort();
    changed.dedup();
    Footprint { existing, changed }
}

/// A profile's id, creation time (ms) and the profile it was merged into, if any.
pub type ProfileHeader = (ProfileId, i64, Option<ProfileId>);

/// A profile row locked for a write: (id, version, merged_into).
pub type LockedProfile = (ProfileId, i64, Option<ProfileId>);

/// An account: its groupId and traits.
pub type Account = (String, Vec<TraitRow>);

/// A property aggregate of a profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AggregateRow {
    /// Event name.
    pub event: String,
    /// Numeric property.
    pub property: String,
    /// Values seen.
    pub count: i64,
    /// Their sum.
    pub sum: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

/// A trait as stored.
#[derive(Debug, Clone, Serialize)]
pub struct TraitRow {
    /// Trait name.
    pub key: String,
    /// JSON value.
    pub value: serde_json::Value,
    /// Event time of the write that set it (ms).
    pub updated_at: i64,
}

/// An identity as stored.
#[derive(Debug, Clone, Serialize)]
pub struct IdentityRow {
    /// Kind.
    pub kind: String,
    /// Value.
    pub value: String,
    /// When attached (ms).
    pub added_at: i64,
    /// The message that brought it.
    pub seq: i64,
}

/// A merge as stored.
#[derive(Debug, Clone, Serialize)]
pub struct MergeRow {
    /// Remaining profile.
    pub winner: ProfileId,
    /// Folded profile.
    pub loser: ProfileId,
    /// Why.
    pub reason: String,
    /// The message that caused it.
    pub seq: i64,
    /// When (ms).
    pub at: i64,
}

/// A resolution report as stored.
#[derive(Debug, Clone, Serialize)]
pub struct ReportRow {
    /// The message.
    pub seq: i64,
    /// Kind.
    pub kind: String,
    /// Identifier kind.
    pub id_kind: String,
    /// Identifier value.
    pub id_value: String,
    /// Explanation.
    pub detail: String,
}

/// Per (type, event) counts of a profile's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventStat {
    /// Message type.
    pub kind: String,
    /// Track event name.
    pub event: Option<String>,
    /// All time.
    pub total: i64,
    /// Since `now - 7 d`.
    pub last_7d: i64,
    /// Since `now - 30 d`.
    pub last_30d: i64,
    /// Earliest event time (ms).
    pub first: i64,
    /// Latest event time (ms).
    pub last: i64,
}

/// One timeline entry.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineRow {
    /// Log position.
    pub seq: i64,
    /// Event time (ms).
    pub event_time: i64,
    /// The message.
    pub message: serde_json::Value,
}

/// A processing transaction: holds the cursor lock until commit.
pub trait ProfileTx: Send {
    /// Locks the named cursor (serialising processors across processes); returns (seq, generation).
    fn lock_cursor<'a>(
        &'a mut self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(i64, i64), StorageError>>;
    /// Reads a cursor (seq, generation) without locking it.
    fn peek_cursor<'a>(
        &'a mut self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(i64, i64), StorageError>>;
    /// Messages after `after` (of one partition, when given), in log order, up to the log
    /// horizon taken when the read began.
    fn read_log(
        &mut self,
        after: i64,
        limit: i64,
        partition: Option<i32>,
    ) -> BoxFuture<'_, Result<Vec<LogRow>, StorageError>>;
    /// The log horizon this read transaction stops at (see `storage::BeginRead::log_horizon`).
    fn horizon(&self) -> i64;
    /// Each given profile's version (bumped whenever its identifiers change), as this snapshot
    /// sees it.
    fn versions<'a>(
        &'a mut self,
        profiles: &'a [ProfileId],
    ) -> BoxFuture<'a, Result<Vec<(ProfileId, i64)>, StorageError>>;
    /// Locks the given profiles' rows in ascending id order until commit (PostgreSQL); returns
    /// each one's (id, version, merged_into).
    fn lock_profiles<'a>(
        &'a mut self,
        profiles: &'a [ProfileId],
    ) -> BoxFuture<'a, Result<Vec<LockedProfile>, StorageError>>;
    /// Bumps the given profiles' versions.
    fn bump_versions<'a>(
        &'a mut self,
        profiles: &'a [ProfileId],
    ) -> BoxFuture<'a, Result<(), StorageError>>;
    /// Owners of the given identifiers (those that have one).
    fn owners<'a>(
        &'a mut self,
        ids: &'a [Identifier],
    ) -> BoxFuture<'a, Result<Vec<(Identifier, ProfileId)>, StorageError>>;
    /// Every identifier of the given profiles.
    fn members<'a>(
        &'a mut self,
        profiles: &'a [ProfileId],
    ) -> BoxFuture<'a, Result<Vec<(Identifier, ProfileId)>, StorageError>>;
    /// Which of the identifiers are suppressed.
    fn suppressed<'a>(
        &'a mut self,
        ids: &'a [Identifier],
    ) -> BoxFuture<'a, Result<Vec<Identifier>, StorageError>>;
    /// Applies the ops in order.
    fn apply<'a>(&'a mut self, ops: &'a [Op]) -> BoxFuture<'a, Result<(), StorageError>>;
    /// Moves the cursor and commits everything.
    fn commit(
        self: Box<Self>,
        name: String,
        seq: i64,
    ) -> BoxFuture<'static, Result<(), StorageError>>;
}

/// Profiles: processing transactions and the read API (erasure lives in `crate::privacy`).
pub trait ProfileStore: Send + Sync + 'static {
    /// Starts the transaction that will apply `ops`: it writes the pipeline state only, unless an
    /// op drops a message from the log (then it writes the log file too; where the log has a file
    /// of its own, the drops are committed first, on their own).
    fn begin<'a>(&'a self, ops: &[Op]) -> BoxFuture<'a, Result<Box<dyn ProfileTx>, StorageError>>;
    /// Starts a read-only transaction (a consistent snapshot that never blocks writers).
    fn begin_read(&self) -> BoxFuture<'_, Result<Box<dyn ProfileTx>, StorageError>>;
    /// The live profile owning an identifier.
    fn lookup<'a>(
        &'a self,
        id: &'a Identifier,
    ) -> BoxFuture<'a, Result<Option<ProfileId>, StorageError>>;
    /// A profile's (id, created_at, merged_into), if it exists.
    fn profile<'a>(
        &'a self,
        id: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Option<ProfileHeader>, StorageError>>;
    /// Identities of a profile.
    fn identities<'a>(
        &'a self,
        id: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Vec<IdentityRow>, StorageError>>;
    /// Traits of a profile.
    fn traits<'a>(
        &'a self,
        id: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Vec<TraitRow>, StorageError>>;
    /// Accounts (groupId → traits) of a profile, the first [`MAX_ACCOUNTS_SHOWN`] by group id.
    fn accounts<'a>(
        &'a self,
        id: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Vec<Account>, StorageError>>;
    /// Newest-first timeline page: entries strictly before `before` = (event_time, seq).
    fn timeline<'a>(
        &'a self,
        id: &'a ProfileId,
        before: Option<(i64, i64)>,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<TimelineRow>, StorageError>>;
    /// Message counts by type and event, windows ending at `now` (ms).
    fn event_stats<'a>(
        &'a self,
        id: &'a ProfileId,
        now: i64,
    ) -> BoxFuture<'a, Result<Vec<EventStat>, StorageError>>;
    /// Property aggregates: (event, property, count, sum, min, max).
    fn aggregates<'a>(
        &'a self,
        id: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Vec<AggregateRow>, StorageError>>;
    /// Distinct UTC days with activity since `since` (ms).
    fn active_days<'a>(
        &'a self,
        id: &'a ProfileId,
        since: i64,
    ) -> BoxFuture<'a, Result<i64, StorageError>>;
    /// Merges the profile took part in.
    fn merges<'a>(
        &'a self,
        id: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Vec<MergeRow>, StorageError>>;
    /// Resolution reports of the profile: the newest [`MAX_REPORTS_PER_PROFILE`], oldest first.
    fn reports<'a>(
        &'a self,
        id: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Vec<ReportRow>, StorageError>>;
    /// The processing cursor (seq) of a stage.
    fn cursor<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<i64, StorageError>>;
    /// Moves the `profiles` cursor up to the lowest of the per-partition profile cursors
    /// (`profiles/P`), when there are any: the position below which every message is processed,
    /// which the stages after it read up to. Never moves it back. Returns whether it moved.
    fn settle_profiles_cursor(&self) -> BoxFuture<'_, Result<bool, StorageError>>;
    /// Number of live profiles.
    fn count(&self) -> BoxFuture<'_, Result<i64, StorageError>>;
    /// The newest log position (0 when the log is empty).
    fn head(&self) -> BoxFuture<'_, Result<i64, StorageError>>;
}

/// How an incoming aggregate row folds into the stored one (portable: no LEAST/GREATEST or min/max).
const FOLD: &str = "n = profile_aggregates.n + excluded.n, total = profile_aggregates.total + excluded.total, \
    min_value = CASE WHEN excluded.min_value < profile_aggregates.min_value THEN excluded.min_value ELSE profile_aggregates.min_value END, \
    max_value = CASE WHEN excluded.max_value > profile_aggregates.max_value THEN excluded.max_value ELSE profile_aggregates.max_value END";

fn json_or_string(text: String) -> serde_json::Value {
    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
}

/// [`ProfileStore`] over a migrated SQLite or PostgreSQL pool.
#[derive(Clone, Debug)]
pub struct SqlProfiles<DB: Database> {
    pool: Db<DB>,
}

impl<DB: Database> SqlProfiles<DB> {
    /// Wraps a migrated pool.
    pub fn new(pool: Db<DB>) -> Self {
        SqlProfiles { pool }
    }
}

/// SQLite's profile repository.
pub type SqliteProfiles = SqlProfiles<sqlx::Sqlite>;
/// PostgreSQL's profile repository.
pub type PgProfiles = SqlProfiles<sqlx::Postgres>;

/// An event-stats row: kind, event, total, last 7 d, last 30 d, first, last.
type EventStatTuple = (String, Option<String>, i64, i64, i64, i64, i64);

/// A processing transaction on this database.
pub struct SqlProfileTx<DB: Database> {
    tx: sqlx::Transaction<'static, DB>,
    /// SQLite's in-process write gate, held until the transaction ends.
    _gate: crate::storage::Gate,
    /// The log horizon taken before the snapshot: `read_log` stops there.
    horizon: i64,
}

/// A processing transaction on SQLite.
pub type SqliteProfileTx = SqlProfileTx<sqlx::Sqlite>;
/// A processing transaction on PostgreSQL.
pub type PgProfileTx = SqlProfileTx<sqlx::Postgres>;

/// One trait write of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TraitWrite<'a> {
    profile: &'a ProfileId,
    key: &'a str,
    value: &'a str,
    updated_at: i64,
    seq: i64,
}

/// The trait writes of `ops` that applying them one by one would leave standing, one per
/// (profile, key): the latest event time, and among equal times the last in order (the stored
/// upsert replaces a value whose time is not newer). One multi-row upsert of these, with the same
/// rule against the stored row, ends where the per-op statements ended, in one round trip per
/// hundred rows instead of one per trait.
fn latest_traits(ops: &[Op]) -> Vec<TraitWrite<'_>> {
    let mut latest = Latest::default();
    for op in ops {
        let Op::SetTraits {
            profile,
            traits,
            updated_at,
            seq,
        } = op
        else {
            continue;
        };
        for (key, value) in traits {
            let write = TraitWrite {
                profile,
                key,
                value,
                updated_at: *updated_at,
                seq: *seq,
            };
            latest.offer((profile, key.as_str()), *updated_at, write);
        }
    }
    latest.into_writes()
}

/// Per key, the write that applying the writes one by one under a "not older" guard leaves
/// standing: the latest time, and among equal times the last offered. Keys keep the order they
/// were first offered in.
struct Latest<K, W> {
    writes: Vec<(i64, W)>,
    at: std::collections::HashMap<K, usize>,
}

impl<K, W> Default for Latest<K, W> {
    fn default() -> Self {
        Latest {
            writes: Vec::new(),
            at: std::collections::HashMap::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq, W> Latest<K, W> {
    fn offer(&mut self, key: K, updated_at: i64, write: W) {
        match self.at.get(&key) {
            Some(&i) if self.writes[i].0 > updated_at => {}
            Some(&i) => self.writes[i] = (updated_at, write),
            None => {
                self.at.insert(key, self.writes.len());
                self.writes.push((updated_at, write));
            }
        }
    }

    fn into_writes(self) -> Vec<W> {
        self.writes.into_iter().map(|(_, w)| w).collect()
    }
}

/// One account trait write of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AccountTraitWrite<'a> {
    group_id: &'a str,
    key: &'a str,
    value: &'a str,
    updated_at: i64,
}

/// The account writes of `ops` as applying them one by one would leave them: each (profile,
/// account) link once, in order, and per (account, key) the [`Latest`] value, as people's traits.
fn account_writes(ops: &[Op]) -> (Vec<(&ProfileId, &str)>, Vec<AccountTraitWrite<'_>>) {
    let mut links: Vec<(&ProfileId, &str)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut latest = Latest::default();
    for op in ops {
        let Op::SetAccount {
            profile,
            group_id,
            traits,
            updated_at,
        } = op
        else {
            continue;
        };
        if seen.insert((profile, group_id.as_str())) {
            links.push((profile, group_id.as_str()));
        }
        for (key, value) in traits {
            let write = AccountTraitWrite {
                group_id,
                key,
                value,
                updated_at: *updated_at,
            };
            latest.offer((group_id.as_str(), key.as_str()), *updated_at, write);
        }
    }
    (links, latest.into_writes())
}

/// One property aggregate of a batch, already folded over the batch's values.
#[derive(Debug, Clone, Copy, PartialEq)]
struct AggregateWrite<'a> {
    profile: &'a ProfileId,
    event: &'a str,
    property: &'a str,
    n: i64,
    total: f64,
    min: f64,
    max: f64,
}

/// The aggregate rows of `ops`, one per (profile, event, property), each folding the batch's
/// values the way [`FOLD`] folds a row into the stored one (counts and totals add, min and max
/// compare), so one multi-row upsert with `FOLD` ends where one upsert per value ended.
fn folded_aggregates(ops: &[Op]) -> Vec<AggregateWrite<'_>> {
    let mut rows: Vec<AggregateWrite<'_>> = Vec::new();
    let mut at: std::collections::HashMap<(&ProfileId, &str, &str), usize> =
        std::collections::HashMap::new();
    for op in ops {
        let Op::Aggregate {
            profile,
            event,
            values,
        } = op
        else {
            continue;
        };
        for (property, v) in values {
            match at.get(&(profile, event.as_str(), property.as_str())) {
                Some(&i) => {
                    let row = &mut rows[i];
                    row.n += 1;
                    row.total += v;
                    row.min = row.min.min(*v);
                    row.max = row.max.max(*v);
                }
                None => {
                    at.insert((profile, event, property), rows.len());
                    rows.push(AggregateWrite {
                        profile,
                        event,
                        property,
                        n: 1,
                        total: *v,
                        min: *v,
                        max: *v,
                    });
                }
            }
        }
    }
    rows
}

/// Multi-row inserts of the profiles, identities, timeline links and reports in `ops`.
async fn insert_batched<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    ops: &[Op],
) -> Result<(), StorageError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    String: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    Option<String>: Type<DB> + for<'q> Encode<'q, DB>,
    Option<ProfileId>: Type<DB> + for<'q> Encode<'q, DB>,
    i64: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    f64: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB>,
{
    const ROWS: usize = 100;
    let profiles: Vec<(&ProfileId, &i64)> = ops
        .iter()
        .filter_map(|op| match op {
            Op::CreateProfile { id, at } => Some((id, at)),
            _ => None,
        })
        .collect();
    for chunk in profiles.chunks(ROWS) {
        let mut q = QueryBuilder::<DB>::new("INSERT INTO profiles (id, created_at) ");
        q.push_values(chunk, |mut b, (id, at)| {
            b.push_bind(*id).push_bind(**at);
        });
        DB::build(&mut q).execute(&mut **tx).await?;
    }
    for chunk in latest_traits(ops).chunks(ROWS) {
        let mut q = QueryBuilder::<DB>::new(
            "INSERT INTO profile_traits (profile_id, key, value, updated_at, seq) ",
        );
        q.push_values(chunk, |mut b, t| {
            b.push_bind(t.profile)
                .push_bind(t.key)
                .push_bind(t.value)
                .push_bind(t.updated_at)
                .push_bind(t.seq);
        });
        q.push(
            " ON CONFLICT (profile_id, key) DO UPDATE SET value = excluded.value, \
             updated_at = excluded.updated_at, seq = excluded.seq \
             WHERE excluded.updated_at >= profile_traits.updated_at",
        );
        DB::build(&mut q).execute(&mut **tx).await?;
    }
    let (account_links, account_traits) = account_writes(ops);
    for chunk in account_links.chunks(ROWS) {
        let mut q = QueryBuilder::<DB>::new("INSERT INTO profile_accounts (profile_id, group_id) ");
        q.push_values(chunk, |mut b, (profile, group_id)| {
            b.push_bind(*profile).push_bind(*group_id);
        });
        q.push(" ON CONFLICT DO NOTHING");
        DB::build(&mut q).execute(&mut **tx).await?;
    }
    for chunk in account_traits.chunks(ROWS) {
        let mut q = QueryBuilder::<DB>::new(
            "INSERT INTO account_traits (group_id, key, value, updated_at) ",
        );
        q.push_values(chunk, |mut b, t| {
            b.push_bind(t.group_id)
                .push_bind(t.key)
                .push_bind(t.value)
                .push_bind(t.updated_at);
        });
        q.push(
            " ON CONFLICT (group_id, key) DO UPDATE SET value = excluded.value, \
             updated_at = excluded.updated_at \
             WHERE excluded.updated_at >= account_traits.updated_at",
        );
        DB::build(&mut q).execute(&mut **tx).await?;
    }
    for chunk in folded_aggregates(ops).chunks(ROWS) {
        let mut q = QueryBuilder::<DB>::new(
            "INSERT INTO profile_aggregates \
             (profile_id, event, property, n, total, min_value, max_value) ",
        );
        q.push_values(chunk, |mut b, a| {
            b.push_bind(a.profile)
                .push_bind(a.event)
                .push_bind(a.property)
                .push_bind(a.n)
                .push_bind(a.total)
                .push_bind(a.min)
                .push_bind(a.max);
        });
        q.push(format!(
            " ON CONFLICT (profile_id, event, property) DO UPDATE SET {FOLD}"
        ));
        DB::build(&mut q).execute(&mut **tx).await?;
    }
    let mut attach: Vec<(&Identifier, &ProfileId, &i64, &i64)> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Attach {
                id,
                profile,
                seq,
                at,
            } => Some((id, profile, seq, at)),
            _ => None,
        })
        .collect();
    // In one order everywhere: two profile stages of different partitions inserting the same
    // identifiers then wait for each other in one direction only, never in a cycle.
    attach.sort_by(|a, b| (&a.0.kind, &a.0.value).cmp(&(&b.0.kind, &b.0.value)));
    for chunk in attach.chunks(ROWS) {
        let mut q = QueryBuilder::<DB>::new(
            "INSERT INTO identities (kind, value, profile_id, added_at, seq) ",
        );
        q.push_values(chunk, |mut b, (id, profile, seq, at)| {
            b.push_bind(&id.kind)
                .push_bind(&id.value)
                .push_bind(*profile)
                .push_bind(**at)
                .push_bind(**seq);
        });
        DB::build(&mut q).execute(&mut **tx).await?;
    }
    let links: Vec<(&i64, &ProfileId, &String, &Option<String>, &i64)> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Link {
                seq,
                profile,
                kind,
                event,
                event_time,
            } => Some((seq, profile, kind, event, event_time)),
            _ => None,
        })
        .collect();
    for chunk in links.chunks(ROWS) {
        let mut q = QueryBuilder::<DB>::new(
            "INSERT INTO profile_messages (seq, profile_id, kind, event, event_time) ",
        );
        q.push_values(chunk, |mut b, (seq, profile, kind, event, event_time)| {
            b.push_bind(**seq)
                .push_bind(*profile)
                .push_bind(*kind)
                .push_bind(*event)
                .push_bind(**event_time);
        });
        DB::build(&mut q).execute(&mut **tx).await?;
    }
    let reports: Vec<&Op> = ops
        .iter()
        .filter(|op| matches!(op, Op::Report { .. }))
        .collect();
    for chunk in reports.chunks(ROWS) {
        let mut q = QueryBuilder::<DB>::new(
            "INSERT INTO identity_reports (seq, profile_id, kind, id_kind, id_value, detail, at) ",
        );
        q.push_values(chunk, |mut b, op| {
            if let Op::Report {
                seq,
                profile,
                kind,
                id,
                detail,
                at,
            } = op
            {
                b.push_bind(*seq)
                    .push_bind(profile.clone())
                    .push_bind(kind.clone())
                    .push_bind(id.kind.clone())
                    .push_bind(id.value.clone())
                    .push_bind(detail.clone())
                    .push_bind(*at);
            }
        });
        DB::build(&mut q).execute(&mut **tx).await?;
    }
    Ok(())
}

/// Deletes all but the newest [`MAX_REPORTS_PER_PROFILE`] reports of every profile the batch
/// reported on or merged into (a merge moves the loser's reports to the winner), and all but the
/// newest [`MAX_UNATTACHED_REPORTS`] of those on no profile. A shared device
/// over the identifier limit is reported on every message it sends, and nothing else bounds that.
/// Profiles in a fixed order, so two partitions' batches never wait on each other in a cycle.
async fn prune_reports<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    ops: &[Op],
) -> Result<(), StorageError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    Option<ProfileId>: Type<DB> + for<'q> Encode<'q, DB>,
    i64: Type<DB> + for<'q> Encode<'q, DB>,
{
    let mut touched: Vec<&ProfileId> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Report {
                profile: Some(p), ..
            } => Some(p),
            Op::Merge { winner, .. } => Some(winner),
            _ => None,
        })
        .collect();
    touched.sort();
    touched.dedup();
    let unattached = ops
        .iter()
        .any(|op| matches!(op, Op::Report { profile: None, .. }));
    if unattached {
        // Reports on messages that reached no profile (every id blocked): a client sending
        // `userId: "null"` forever would otherwise add a row per message.
        sqlx::query(
            "DELETE FROM identity_reports WHERE profile_id IS NULL AND id < \
             (SELECT id FROM identity_reports WHERE profile_id IS NULL \
              ORDER BY id DESC LIMIT 1 OFFSET $1)",
        )
        .bind(MAX_UNATTACHED_REPORTS - 1)
        .execute(&mut **tx)
        .await?;
    }
    for profile in touched {
        sqlx::query(
            "DELETE FROM identity_reports WHERE profile_id = $1 AND id < \
             (SELECT id FROM identity_reports WHERE profile_id = $2 ORDER BY id DESC LIMIT 1 OFFSET $3)",
        )
        .bind(Some(profile.clone()))
        .bind(Some(profile.clone()))
        .bind(MAX_REPORTS_PER_PROFILE - 1)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Most accounts a profile read shows (the first by group id); the profile keeps every one.
pub const MAX_ACCOUNTS_SHOWN: i64 = 100;

/// Most identity resolution reports kept for messages that reached no profile (the newest).
pub const MAX_UNATTACHED_REPORTS: i64 = 10_000;

/// Most identity resolution reports a profile keeps (the newest).
pub const MAX_REPORTS_PER_PROFILE: i64 = 100;

/// Where each profile a batch merged away ends: its last winner, following chains (`a` into `b`,
/// then `b` into `c`, sends `a` to `c`), in the order of the merges. A pure decision.
pub(crate) fn final_winners(ops: &[Op]) -> Vec<(&ProfileId, &ProfileId)> {
    let mut winners: Vec<(&ProfileId, &ProfileId)> = Vec::new();
    for op in ops {
        let Op::Merge { winner, loser, .. } = op else {
            continue;
        };
        // A winner merged away earlier in the batch has an end of its own.
        let end = winners
            .iter()
            .find(|(l, _)| *l == winner)
            .map_or(winner, |(_, w)| *w);
        for entry in winners.iter_mut() {
            if entry.1 == loser {
                entry.1 = end;
            }
        }
        match winners.iter_mut().find(|(l, _)| *l == loser) {
            Some(entry) => entry.1 = end,
            None => winners.push((loser, end)),
        }
    }
    winners
}

/// Writes every merge of a batch in a dozen statements over a (loser, winner) table, whatever
/// the number of merges: the merged-away profiles' identities, timeline, accounts and reports
/// move to their final winners, their traits join the winners' (the latest per key wins, and the
/// later message at equal times), their aggregates fold into the winners', and the merges are
/// recorded.
async fn merge_all<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    ops: &[Op],
) -> Result<(), StorageError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    String: Type<DB> + for<'q> Encode<'q, DB>,
    i64: Type<DB> + for<'q> Encode<'q, DB>,
{
    const ROWS: usize = 100;
    const MOVES: [&str; 11] = [
        "UPDATE identities SET profile_id = m.winner FROM m WHERE identities.profile_id = m.loser",
        "UPDATE profile_messages SET profile_id = m.winner FROM m \
         WHERE profile_messages.profile_id = m.loser",
        "INSERT INTO profile_traits (profile_id, key, value, updated_at, seq) \
         SELECT winner, key, value, updated_at, seq FROM ( \
           SELECT m.winner, t.key, t.value, t.updated_at, t.seq, ROW_NUMBER() OVER ( \
             PARTITION BY m.winner, t.key ORDER BY t.updated_at DESC, t.seq DESC) AS latest \
           FROM profile_traits t JOIN m ON t.profile_id = m.loser) AS moved \
         WHERE latest = 1 \
         ON CONFLICT (profile_id, key) DO UPDATE SET value = excluded.value, \
         updated_at = excluded.updated_at, seq = excluded.seq \
         WHERE (excluded.updated_at, excluded.seq) >= (profile_traits.updated_at, profile_traits.seq)",
        "DELETE FROM profile_traits WHERE profile_id IN (SELECT loser FROM m)",
        "INSERT INTO profile_accounts (profile_id, group_id) \
         SELECT DISTINCT m.winner, a.group_id FROM profile_accounts a JOIN m ON a.profile_id = m.loser \
         WHERE true ON CONFLICT DO NOTHING",
        "DELETE FROM profile_accounts WHERE profile_id IN (SELECT loser FROM m)",
        "UPDATE profiles SET merged_into = m.winner FROM m WHERE profiles.merged_into = m.loser",
        "UPDATE profiles SET merged_into = m.winner FROM m WHERE profiles.id = m.loser",
        "INSERT INTO profile_aggregates (profile_id, event, property, n, total, min_value, max_value) \
         SELECT winner, event, property, n, total, min_value, max_value FROM ( \
           SELECT m.winner, a.event, a.property, SUM(a.n) AS n, SUM(a.total) AS total, \
             MIN(a.min_value) AS min_value, MAX(a.max_value) AS max_value \
           FROM profile_aggregates a JOIN m ON a.profile_id = m.loser \
           GROUP BY m.winner, a.event, a.property) AS folded \
         WHERE true ON CONFLICT (profile_id, event, property) DO UPDATE SET ",
        "UPDATE identity_reports SET profile_id = m.winner FROM m \
         WHERE identity_reports.profile_id = m.loser",
        "DELETE FROM profile_aggregates WHERE profile_id IN (SELECT loser FROM m)",
    ];
    let winners = final_winners(ops);
    for chunk in winners.chunks(ROWS) {
        for sql in MOVES {
            let mut q = QueryBuilder::<DB>::new("WITH m (loser, winner) AS (");
            q.push_values(chunk, |mut b, (loser, winner)| {
                b.push_bind(*loser).push_bind(*winner);
            });
            q.push(") ");
            q.push(sql);
            if sql.ends_with("DO UPDATE SET ") {
                q.push(FOLD);
            }
            DB::build(&mut q).execute(&mut **tx).await?;
        }
    }
    let merges: Vec<&Op> = ops
        .iter()
        .filter(|op| matches!(op, Op::Merge { .. }))
        .collect();
    for chunk in merges.chunks(ROWS) {
        let mut q = QueryBuilder::<DB>::new("INSERT INTO merges (winner, loser, reason, seq, at) ");
        q.push_values(chunk, |mut b, op| {
            if let Op::Merge {
                winner,
                loser,
                reason,
                seq,
                at,
            } = op
            {
                b.push_bind(winner.clone())
                    .push_bind(loser.clone())
                    .push_bind(reason.clone())
                    .push_bind(*seq)
                    .push_bind(*at);
            }
        });
        DB::build(&mut q).execute(&mut **tx).await?;
    }
    Ok(())
}

impl<DB> ProfileTx for SqlProfileTx<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    String: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    Option<String>: Type<DB> + for<'q> Encode<'q, DB>,
    Option<ProfileId>: Type<DB> + for<'q> Encode<'q, DB>,
    i64: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    f64: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB>,
{
    fn lock_cursor<'a>(
        &'a mut self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(i64, i64), StorageError>> {
        Box::pin(async move {
            // A write first: takes SQLite's write lock / PostgreSQL's row lock up front.
            let row: (i64, i64) = sqlx::query_as(
                "UPDATE pipeline_cursors SET seq = seq WHERE name = $1 RETURNING seq, generation",
            )
            .bind(name)
            .fetch_one(&mut *self.tx)
            .await?;
            Ok(row)
        })
    }

    fn peek_cursor<'a>(
        &'a mut self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(i64, i64), StorageError>> {
        Box::pin(async move {
            Ok(
                sqlx::query_as("SELECT seq, generation FROM pipeline_cursors WHERE name = $1")
                    .bind(name)
                    .fetch_one(&mut *self.tx)
                    .await?,
            )
        })
    }

    fn horizon(&self) -> i64 {
        self.horizon
    }

    fn versions<'a>(
        &'a mut self,
        profiles: &'a [ProfileId],
    ) -> BoxFuture<'a, Result<Vec<(ProfileId, i64)>, StorageError>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(profiles.len());
            for chunk in profiles.chunks(500) {
                let mut q =
                    QueryBuilder::<DB>::new("SELECT id, version FROM profiles WHERE id IN (");
                let mut list = q.separated(", ");
                for p in chunk {
                    list.push_bind(p);
                }
                q.push(")");
                out.extend(
                    DB::build_query_as::<(ProfileId, i64)>(&mut q)
                        .fetch_all(&mut *self.tx)
                        .await?,
                );
            }
            Ok(out)
        })
    }

    fn lock_profiles<'a>(
        &'a mut self,
        profiles: &'a [ProfileId],
    ) -> BoxFuture<'a, Result<Vec<LockedProfile>, StorageError>> {
        Box::pin(async move {
            let mut sorted: Vec<&ProfileId> = profiles.iter().collect();
            sorted.sort();
            sorted.dedup();
            let mut out = Vec::with_capacity(sorted.len());
            // Chunks in ascending order too, so two lockers can never wait on each other.
            for chunk in sorted.chunks(500) {
                let mut q = QueryBuilder::<DB>::new(
                    "SELECT id, version, merged_into FROM profiles WHERE id IN (",
                );
                let mut list = q.separated(", ");
                for p in chunk {
                    list.push_bind(*p);
                }
                q.push(") ORDER BY id FOR UPDATE");
                out.extend(
                    DB::build_query_as::<LockedProfile>(&mut q)
                        .fetch_all(&mut *self.tx)
                        .await?,
                );
            }
            Ok(out)
        })
    }

    fn bump_versions<'a>(
        &'a mut self,
        profiles: &'a [ProfileId],
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            for chunk in profiles.chunks(500) {
                let mut q = QueryBuilder::<DB>::new(
                    "UPDATE profiles SET version = version + 1 WHERE id IN (",
                );
                let mut list = q.separated(", ");
                for p in chunk {
                    list.push_bind(p);
                }
                q.push(")");
                DB::build(&mut q).execute(&mut *self.tx).await?;
            }
            Ok(())
        })
    }

    fn read_log(
        &mut self,
        after: i64,
        limit: i64,
        partition: Option<i32>,
    ) -> BoxFuture<'_, Result<Vec<LogRow>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<(i64, String, i64, String)> = sqlx::query_as(match partition {
                None => {
                    "SELECT seq, status, event_time, CAST(body AS TEXT) FROM messages \
                         WHERE seq > $1 AND seq <= $3 ORDER BY seq LIMIT $2"
                }
                // PostgreSQL only: the SQLite log has no partitions.
                Some(_) => {
                    "SELECT seq, status, event_time, CAST(body AS TEXT) FROM messages \
                         WHERE partition = $4 AND seq > $1 AND seq <= $3 ORDER BY seq LIMIT $2"
                }
            })
            .bind(after)
            .bind(limit)
            .bind(self.horizon)
            .bind(i64::from(partition.unwrap_or(0)))
            .fetch_all(&mut *self.tx)
            .await?;
            rows.into_iter()
                .map(|(seq, status, event_time, body)| {
                    Ok(LogRow {
                        seq,
                        status: crate::storage::Status::parse(&status)?,
                        event_time,
                        body,
                    })
                })
                .collect()
        })
    }

    fn owners<'a>(
        &'a mut self,
        ids: &'a [Identifier],
    ) -> BoxFuture<'a, Result<Vec<(Identifier, ProfileId)>, StorageError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            // One round trip per 200 identifiers instead of one each.
            for chunk in ids.chunks(200) {
                let mut q = QueryBuilder::<DB>::new(
                    "SELECT kind, value, profile_id FROM identities WHERE (kind, value) IN (",
                );
                q.push_values(chunk, |mut row, id| {
                    row.push_bind(&id.kind).push_bind(&id.value);
                });
                q.push(")");
                let rows: Vec<(String, String, ProfileId)> =
                    DB::build_query_as(&mut q).fetch_all(&mut *self.tx).await?;
                out.extend(
                    rows.into_iter()
                        .map(|(kind, value, p)| (Identifier { kind, value }, p)),
                );
            }
            Ok(out)
        })
    }

    fn members<'a>(
        &'a mut self,
        profiles: &'a [ProfileId],
    ) -> BoxFuture<'a, Result<Vec<(Identifier, ProfileId)>, StorageError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for chunk in profiles.chunks(500) {
                let mut q = QueryBuilder::<DB>::new(
                    "SELECT kind, value, profile_id FROM identities WHERE profile_id IN (",
                );
                let mut list = q.separated(", ");
                for p in chunk {
                    list.push_bind(p);
                }
                q.push(")");
                let rows: Vec<(String, String, ProfileId)> =
                    DB::build_query_as(&mut q).fetch_all(&mut *self.tx).await?;
                out.extend(
                    rows.into_iter()
                        .map(|(kind, value, p)| (Identifier { kind, value }, p)),
                );
            }
            Ok(out)
        })
    }

    fn suppressed<'a>(
        &'a mut self,
        ids: &'a [Identifier],
    ) -> BoxFuture<'a, Result<Vec<Identifier>, StorageError>> {
        Box::pin(async move {
            // Suppressions are kept as hashes of `kind:value` (see `crate::privacy`).
            let hashed: Vec<(String, &Identifier)> = ids
                .iter()
                .map(|id| (crate::privacy::identifier_hash(id), id))
                .collect();
            let mut hits = std::collections::HashSet::new();
            for chunk in hashed.chunks(500) {
                let mut q =
                    QueryBuilder::<DB>::new("SELECT hash FROM suppression_hashes WHERE hash IN (");
                let mut list = q.separated(", ");
                for (h, _) in chunk {
                    list.push_bind(h.as_str());
                }
                q.push(")");
                let rows: Vec<String> = DB::build_query_scalar(&mut q)
                    .fetch_all(&mut *self.tx)
                    .await?;
                hits.extend(rows);
            }
            Ok(hashed
                .into_iter()
                .filter(|(h, _)| hits.contains(h))
                .map(|(_, id)| id.clone())
                .collect())
        })
    }

    fn apply<'a>(&'a mut self, ops: &'a [Op]) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let tx = &mut self.tx;
            // The inserts (profiles, identities, timeline links, traits, accounts, aggregates,
            // reports) go in multi-row statements, then the ops written one by one, in order, then every
            // merge of the batch at once: rows a merged-away profile holds move to its final
            // winner, whichever op wrote them (`merge_all`).
            insert_batched(tx, ops).await?;
            for op in ops {
                match op {
                    Op::DropMessage { seq } => {
                        sqlx::query("DELETE FROM messages WHERE seq = $1")
                            .bind(seq)
                            .execute(&mut **tx)
                            .await?;
                    }
                    // Written by `insert_batched` (traits the latest per key, aggregates folded
                    // per profile, event and property) or by `merge_all` below.
                    Op::CreateProfile { .. }
                    | Op::SetAccount { .. }
                    | Op::Attach { .. }
                    | Op::Link { .. }
                    | Op::Report { .. }
                    | Op::SetTraits { .. }
                    | Op::Aggregate { .. }
                    | Op::Merge { .. } => {}
                }
            }
            merge_all(tx, ops).await?;
            prune_reports(tx, ops).await
        })
    }

    fn commit(
        self: Box<Self>,
        name: String,
        seq: i64,
    ) -> BoxFuture<'static, Result<(), StorageError>> {
        Box::pin(async move {
            let mut tx = self.tx;
            sqlx::query("UPDATE pipeline_cursors SET seq = $1 WHERE name = $2")
                .bind(seq)
                .bind(&name)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }
}

impl<DB> ProfileStore for SqlProfiles<DB>
where
    Db<DB>: BeginWrite<Db = DB> + BeginRead<Db = DB>,
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    String: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    Option<String>: Type<DB> + for<'q> Encode<'q, DB>,
    Option<ProfileId>: Type<DB> + for<'q> Encode<'q, DB>,
    i64: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    f64: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB>,
{
    fn begin_read(&self) -> BoxFuture<'_, Result<Box<dyn ProfileTx>, StorageError>> {
        Box::pin(async move {
            // The horizon first: the snapshot, taken at the transaction's first read, then sees
            // every append up to it.
            let horizon = crate::storage::BeginRead::log_horizon(&self.pool).await?;
            let tx = crate::storage::BeginRead::begin_read(&self.pool).await?;
            Ok(Box::new(SqlProfileTx {
                tx,
                _gate: Default::default(),
                horizon,
            }) as Box<dyn ProfileTx>)
        })
    }

    fn begin<'a>(&'a self, ops: &[Op]) -> BoxFuture<'a, Result<Box<dyn ProfileTx>, StorageError>> {
        let drops: Vec<i64> = ops
            .iter()
            .filter_map(|op| match op {
                Op::DropMessage { seq } => Some(*seq),
                _ => None,
            })
            .collect();
        Box::pin(async move {
            let (tx, gate) = if drops.is_empty() {
                self.pool.begin_state_write().await?
            } else if self.pool.log_file_is_separate() {
                // A transaction writing both files commits the state file (the cursor) first: a
                // crash between the two would leave the cursor past messages never dropped. So
                // they leave the log in a commit of their own first (a retry finds them gone),
                // and the batch follows under the same gates.
                let (mut first, gate) = self.pool.begin_write().await?;
                for chunk in drops.chunks(500) {
                    let mut q = QueryBuilder::<DB>::new("DELETE FROM messages WHERE seq IN (");
                    let mut list = q.separated(", ");
                    for seq in chunk {
                        list.push_bind(*seq);
                    }
                    q.push(")");
                    DB::build(&mut q).execute(&mut *first).await?;
                }
                first.commit().await?;
                (self.pool.begin_write_under(&gate).await?, gate)
            } else {
                self.pool.begin_write().await?
            };
            Ok(Box::new(SqlProfileTx {
                tx,
                _gate: gate,
                horizon: i64::MAX,
            }) as Box<dyn ProfileTx>)
        })
    }

    fn lookup<'a>(
        &'a self,
        id: &'a Identifier,
    ) -> BoxFuture<'a, Result<Option<ProfileId>, StorageError>> {
        Box::pin(async move {
            Ok(sqlx::query_scalar(
                "SELECT profile_id FROM identities WHERE kind = $1 AND value = $2",
            )
            .bind(&id.kind)
            .bind(&id.value)
            .fetch_optional(&self.pool)
            .await?)
        })
    }

    fn profile<'a>(
        &'a self,
        id: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Option<ProfileHeader>, StorageError>> {
        Box::pin(async move {
            Ok(
                sqlx::query_as("SELECT id, created_at, merged_into FROM profiles WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?,
            )
        })
    }

    fn identities<'a>(
        &'a self,
        id: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Vec<IdentityRow>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
                "SELECT kind, value, added_at, seq FROM identities WHERE profile_id = $1 \
                 ORDER BY added_at, kind, value",
            )
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(kind, value, added_at, seq)| IdentityRow {
                    kind,
                    value,
                    added_at,
                    seq,
                })
                .collect())
        })
    }

    fn traits<'a>(
        &'a self,
        id: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Vec<TraitRow>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT key, value, updated_at FROM profile_traits WHERE profile_id = $1 ORDER BY key",
            )
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(key, value, updated_at)| TraitRow {
                    key,
                    value: json_or_string(value),
                    updated_at,
                })
                .collect())
        })
    }

    fn accounts<'a>(
        &'a self,
        id: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Vec<Account>, StorageError>> {
        Box::pin(async move {
            // One statement for the accounts and their traits (not one per account), and at most
            // MAX_ACCOUNTS_SHOWN of them: a client can attach a profile to any number of groups.
            type Row = (String, Option<String>, Option<String>, Option<i64>);
            let rows: Vec<Row> = sqlx::query_as(
                "SELECT a.group_id, t.key, t.value, t.updated_at FROM \
                 (SELECT group_id FROM profile_accounts WHERE profile_id = $1 \
                  ORDER BY group_id LIMIT $2) a \
                 LEFT JOIN account_traits t ON t.group_id = a.group_id \
                 ORDER BY a.group_id, t.key",
            )
            .bind(id)
            .bind(MAX_ACCOUNTS_SHOWN)
            .fetch_all(&self.pool)
            .await?;
            let mut out: Vec<Account> = Vec::new();
            for (group, key, value, updated_at) in rows {
                if out.last().is_none_or(|(g, _)| *g != group) {
                    out.push((group, Vec::new()));
                }
                if let (Some(key), Some(value), Some(updated_at), Some((_, traits))) =
                    (key, value, updated_at, out.last_mut())
                {
                    traits.push(TraitRow {
                        key,
                        value: json_or_string(value),
                        updated_at,
                    });
                }
            }
            Ok(out)
        })
    }

    fn timeline<'a>(
        &'a self,
        id: &'a ProfileId,
        before: Option<(i64, i64)>,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<TimelineRow>, StorageError>> {
        Box::pin(async move {
            let (t, s) = before.unwrap_or((i64::MAX, i64::MAX));
            let rows: Vec<(i64, i64, String)> = sqlx::query_as(
                "SELECT pm.seq, pm.event_time, CAST(m.body AS TEXT) FROM profile_messages pm \
                 JOIN messages m ON m.seq = pm.seq WHERE pm.profile_id = $1 \
                 AND (pm.event_time < $2 OR (pm.event_time = $2 AND pm.seq < $3)) \
                 ORDER BY pm.event_time DESC, pm.seq DESC LIMIT $4",
            )
            .bind(id)
            .bind(t)
            .bind(s)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(seq, event_time, body)| TimelineRow {
                    seq,
                    event_time,
                    message: json_or_string(body),
                })
                .collect())
        })
    }

    fn event_stats<'a>(
        &'a self,
        id: &'a ProfileId,
        now: i64,
    ) -> BoxFuture<'a, Result<Vec<EventStat>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<EventStatTuple> = sqlx::query_as(
                "SELECT kind, event, COUNT(*), \
                 SUM(CASE WHEN event_time >= $2 THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN event_time >= $3 THEN 1 ELSE 0 END), \
                 MIN(event_time), MAX(event_time) \
                 FROM profile_messages WHERE profile_id = $1 GROUP BY kind, event ORDER BY kind, event",
            )
            .bind(id)
            .bind(now - 7 * 86_400_000)
            .bind(now - 30 * 86_400_000)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(
                    |(kind, event, total, last_7d, last_30d, first, last)| EventStat {
                        kind,
                        event,
                        total,
                        last_7d,
                        last_30d,
                        first,
                        last,
                    },
                )
                .collect())
        })
    }

    fn aggregates<'a>(
        &'a self,
        id: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Vec<AggregateRow>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<(String, String, i64, f64, f64, f64)> = sqlx::query_as(
                "SELECT event, property, n, total, min_value, max_value FROM profile_aggregates \
                 WHERE profile_id = $1 ORDER BY event, property",
            )
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(event, property, count, sum, min, max)| AggregateRow {
                    event,
                    property,
                    count,
                    sum,
                    min,
                    max,
                })
                .collect())
        })
    }

    fn active_days<'a>(
        &'a self,
        id: &'a ProfileId,
        since: i64,
    ) -> BoxFuture<'a, Result<i64, StorageError>> {
        Box::pin(async move {
            Ok(sqlx::query_scalar(
                "SELECT COUNT(DISTINCT event_time / 86400000) FROM profile_messages \
                 WHERE profile_id = $1 AND event_time >= $2",
            )
            .bind(id)
            .bind(since)
            .fetch_one(&self.pool)
            .await?)
        })
    }

    fn merges<'a>(
        &'a self,
        id: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Vec<MergeRow>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<(ProfileId, ProfileId, String, i64, i64)> = sqlx::query_as(
                "SELECT winner, loser, reason, seq, at FROM merges \
                 WHERE winner = $1 OR loser = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(winner, loser, reason, seq, at)| MergeRow {
                    winner,
                    loser,
                    reason,
                    seq,
                    at,
                })
                .collect())
        })
    }

    fn reports<'a>(
        &'a self,
        id: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Vec<ReportRow>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<(i64, String, String, String, String)> = sqlx::query_as(
                "SELECT seq, kind, id_kind, id_value, detail FROM identity_reports \
                 WHERE profile_id = $1 ORDER BY id DESC LIMIT $2",
            )
            .bind(id)
            .bind(MAX_REPORTS_PER_PROFILE)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .rev()
                .map(|(seq, kind, id_kind, id_value, detail)| ReportRow {
                    seq,
                    kind,
                    id_kind,
                    id_value,
                    detail,
                })
                .collect())
        })
    }

    fn settle_profiles_cursor(&self) -> BoxFuture<'_, Result<bool, StorageError>> {
        Box::pin(async move {
            // A statement of its own, after the partition's commit: the row is every partition
            // stage's, so no stage holds it across a batch. A stale read of another partition's
            // cursor only leaves it lower than it could be, until the next call.
            let moved = sqlx::query(
                "UPDATE pipeline_cursors SET seq = low.seq FROM (SELECT MIN(seq) AS seq \
                 FROM pipeline_cursors WHERE name LIKE 'profiles/%') AS low \
                 WHERE name = 'profiles' AND low.seq > pipeline_cursors.seq",
            )
            .execute(&self.pool)
            .await?;
            Ok(DB::rows_affected(&moved) > 0)
        })
    }

    fn cursor<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<i64, StorageError>> {
        Box::pin(async move {
            Ok(
                sqlx::query_scalar("SELECT seq FROM pipeline_cursors WHERE name = $1")
                    .bind(name)
                    .fetch_one(&self.pool)
                    .await?,
            )
        })
    }

    fn head(&self) -> BoxFuture<'_, Result<i64, StorageError>> {
        Box::pin(async move {
            Ok(
                sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM messages")
                    .fetch_one(&self.pool)
                    .await?,
            )
        })
    }

    fn count(&self) -> BoxFuture<'_, Result<i64, StorageError>> {
        Box::pin(async move {
            Ok(
                sqlx::query_scalar("SELECT COUNT(*) FROM profiles WHERE merged_into IS NULL")
                    .fetch_one(&self.pool)
                    .await?,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_locks_the_profiles_it_writes_that_existed_and_bumps_those_whose_identifiers_change()
    {
        let id = |v: &str| Identifier::new("anonymous_id", v);
        let ops = [
            Op::CreateProfile {
                id: "new".into(),
                at: 0,
            },
            Op::Attach {
                id: id("a"),
                profile: "new".into(),
                seq: 1,
                at: 0,
            },
            Op::Link {
                seq: 1,
                profile: "p2".into(),
                kind: "track".into(),
                event: None,
                event_time: 0,
            },
            Op::Merge {
                winner: "p3".into(),
                loser: "p1".into(),
                reason: String::new(),
                seq: 2,
                at: 0,
            },
            Op::Report {
                seq: 2,
                profile: None,
                kind: "limit".into(),
                id: id("b"),
                detail: String::new(),
                at: 0,
            },
            Op::DropMessage { seq: 3 },
        ];
        assert_eq!(
            footprint(&ops),
            Footprint {
                existing: vec!["p1".into(), "p2".into(), "p3".into()],
                changed: vec!["new".into(), "p1".into(), "p3".into()],
            }
        );
    }

    fn set(profile: &str, traits: &[(&str, &str)], updated_at: i64, seq: i64) -> Op {
        Op::SetTraits {
            profile: ProfileId::from(profile),
            traits: traits
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            updated_at,
            seq,
        }
    }

    fn values(ops: &[Op]) -> Vec<(String, String, String, i64)> {
        latest_traits(ops)
            .into_iter()
            .map(|t| {
                (
                    t.profile.to_string(),
                    t.key.to_owned(),
                    t.value.to_owned(),
                    t.seq,
                )
            })
            .collect()
    }

    fn join(profile: &str, group: &str, traits: &[(&str, &str)], updated_at: i64) -> Op {
        Op::SetAccount {
            profile: ProfileId::from(profile),
            group_id: group.into(),
            traits: traits
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            updated_at,
        }
    }

    #[test]
    fn account_writes_keep_each_link_once_and_per_account_key_the_value_one_by_one_writes_leave() {
        let ops = [
            join("p1", "acme", &[("plan", "\"pro\""), ("seats", "5")], 20),
            join("p2", "acme", &[("plan", "\"free\"")], 10),
            join("p1", "acme", &[("seats", "7")], 20),
            join("p1", "beta", &[("seats", "1")], 5),
        ];
        let (links, traits) = account_writes(&ops);
        let links: Vec<(String, &str)> =
            links.into_iter().map(|(p, g)| (p.to_string(), g)).collect();
        assert_eq!(
            links,
            [
                ("p1".into(), "acme"),
                ("p2".into(), "acme"),
                ("p1".into(), "beta")
            ]
        );
        let traits: Vec<(&str, &str, &str, i64)> = traits
            .iter()
            .map(|t| (t.group_id, t.key, t.value, t.updated_at))
            .collect();
        // An older value does not replace a newer one; at equal times the later op wins.
        assert_eq!(
            traits,
            [
                ("acme", "plan", "\"pro\"", 20),
                ("acme", "seats", "7", 20),
                ("beta", "seats", "1", 5)
            ]
        );
    }

    fn aggregate(profile: &str, event: &str, values: &[(&str, f64)]) -> Op {
        Op::Aggregate {
            profile: ProfileId::from(profile),
            event: event.into(),
            values: values.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    fn merge(winner: &str, loser: &str) -> Op {
        Op::Merge {
            winner: ProfileId::from(winner.to_owned()),
            loser: ProfileId::from(loser.to_owned()),
            reason: "test".into(),
            seq: 1,
            at: 1,
        }
    }

    fn ends(ops: &[Op]) -> Vec<(String, String)> {
        final_winners(ops)
            .into_iter()
            .map(|(l, w)| (l.to_string(), w.to_string()))
            .collect()
    }

    #[test]
    fn a_profile_merged_away_ends_at_the_last_winner_of_its_chain() {
        let ops = [merge("b", "a"), merge("c", "b")];
        assert_eq!(
            ends(&ops),
            [("a".into(), "c".into()), ("b".into(), "c".into())]
        );
    }

    #[test]
    fn a_merge_into_a_profile_merged_away_earlier_ends_at_that_profiles_winner() {
        let ops = [merge("b", "a"), merge("a", "x")];
        assert_eq!(
            ends(&ops),
            [("a".into(), "b".into()), ("x".into(), "b".into())]
        );
    }

    #[test]
    fn other_ops_are_not_merges_and_independent_merges_keep_their_winners() {
        let ops = [
            set("p", &[("plan", "pro")], 1, 1),
            merge("b", "a"),
            merge("d", "c"),
        ];
        assert_eq!(
            ends(&ops),
            [("a".into(), "b".into()), ("c".into(), "d".into())]
        );
    }

    #[test]
    fn a_batch_folds_its_values_per_profile_event_and_property() {
        let ops = [
            aggregate(
                "p1",
                "order_completed",
                &[("revenue", 30.0), ("items", 2.0)],
            ),
            aggregate("p2", "order_completed", &[("revenue", 5.0)]),
            aggregate("p1", "order_completed", &[("revenue", 10.0)]),
            aggregate("p1", "refund_issued", &[("revenue", 7.0)]),
        ];
        let rows: Vec<(String, &str, &str, i64, f64, f64, f64)> = folded_aggregates(&ops)
            .into_iter()
            .map(|a| {
                let p = a.profile.to_string();
                (p, a.event, a.property, a.n, a.total, a.min, a.max)
            })
            .collect();
        assert_eq!(
            rows,
            [
                (
                    "p1".into(),
                    "order_completed",
                    "revenue",
                    2,
                    40.0,
                    10.0,
                    30.0
                ),
                ("p1".into(), "order_completed", "items", 1, 2.0, 2.0, 2.0),
                ("p2".into(), "order_completed", "revenue", 1, 5.0, 5.0, 5.0),
                ("p1".into(), "refund_issued", "revenue", 1, 7.0, 7.0, 7.0),
            ]
        );
    }

    #[test]
    fn the_latest_event_time_wins_a_key_whatever_the_order_of_the_messages() {
        let ops = [
            set("p1", &[("plan", "\"pro\"")], 20, 1),
            set("p1", &[("plan", "\"free\"")], 10, 2),
        ];
        assert_eq!(
            values(&ops),
            [("p1".into(), "plan".into(), "\"pro\"".into(), 1)]
        );
    }

    #[test]
    fn at_equal_times_the_later_message_wins_as_the_per_op_upsert_did() {
        let ops = [
            set("p1", &[("plan", "\"pro\"")], 10, 1),
            set("p1", &[("plan", "\"team\"")], 10, 2),
        ];
        assert_eq!(
            values(&ops),
            [("p1".into(), "plan".into(), "\"team\"".into(), 2)]
        );
    }

    #[tokio::test]
    async fn dropped_messages_leave_a_separate_log_file_even_if_the_batch_never_commits() {
        use crate::storage::{EventStore, test_message, test_store_in};
        let dir = tempfile::tempdir().unwrap();
        let store = test_store_in(dir.path()).await;
        let source = store.upsert_source("web", "wk").await.unwrap().id;
        let message = |id: &str| test_message(source, id);
        let out = store
            .append(&[message("keep"), message("drop")], &[])
            .await
            .unwrap();
        let crate::storage::InsertOutcome::Stored(seq) = out[1] else {
            panic!("{out:?}")
        };
        let profiles = SqlProfiles::new(store.db().clone());
        // The batch's transaction ends without a commit, as in a crash before it.
        drop(profiles.begin(&[Op::DropMessage { seq }]).await.unwrap());
        assert_eq!(store.counts().await.unwrap().0, 1, "the drop stands alone");
    }

    #[test]
    fn keys_and_profiles_are_written_once_each_and_other_ops_are_ignored() {
        let ops = [
            set("p1", &[("plan", "1"), ("seats", "3")], 10, 1),
            Op::DropMessage { seq: 2 },
            set("p2", &[("plan", "2")], 5, 3),
            set("p1", &[("seats", "4")], 11, 4),
        ];
        assert_eq!(
            values(&ops),
            [
                ("p1".into(), "plan".into(), "1".into(), 1),
                ("p1".into(), "seats".into(), "4".into(), 4),
                ("p2".into(), "plan".into(), "2".into(), 3),
            ]
        );
    }
}
