//! The privacy repository: erasure (one transaction over every table that can hold a copy of a
//! person), regulations and their per-destination status, retention purges, and hashing the
//! plaintext suppressions of earlier versions. One SQL set for both databases (`$N` placeholders
//! work on SQLite too) in one implementation generic over the database; what differs (JSONB casts,
//! claiming with `SKIP LOCKED`, the catalogue) is the database's `PrivacySql` dialect.

use super::{MessageFate, MessageRow, Scrubber, identifier_hash, message_fate};
use crate::destinations::erasure::Subject;
use crate::identity::{Identifier, ProfileId};
use crate::storage::{BeginWrite, Db, Statement, StorageError};
use futures_util::future::BoxFuture;
use serde::Serialize;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};

/// Rows read per candidate page while erasing (bounds memory, not the work).
const PAGE: i64 = 500;
/// Most candidate pages per table (50 million rows naming one person: far beyond any real case).
const MAX_PAGES: usize = 100_000;
/// Rows deleted per retention transaction (keeps each write short).
const PURGE_BATCH: i64 = 5000;
/// Most retention transactions per table and run (every loop is bounded).
const PURGE_ROUNDS: usize = 10_000;

/// An erasure to perform.
#[derive(Debug, Clone)]
pub struct EraseRequest<'a> {
    /// The live profile to erase.
    pub profile_id: &'a ProfileId,
    /// The id of the regulation to record.
    pub regulation: &'a str,
    /// Destinations the request is forwarded to (the enabled ones).
    pub destinations: &'a [&'a str],
    /// Now (ms).
    pub now: i64,
}

/// What an erasure did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Erased {
    /// The regulation recorded.
    pub regulation: String,
    /// Its status (`running` while destinations are pending, else `succeeded`).
    pub status: String,
    /// Profiles removed (the live one and those merged into it).
    pub profiles: usize,
    /// Identifiers suppressed.
    pub identifiers: usize,
    /// Rows of other data deleted because they were the person's or named them.
    pub deleted: u64,
    /// Rows of other people's data rewritten because they mentioned the person.
    pub rewritten: u64,
}

/// A regulation as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Regulation {
    /// Id.
    pub id: String,
    /// `erase`.
    pub kind: String,
    /// The erased profile.
    pub profile_id: ProfileId,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// When it was requested (ms).
    pub requested_at: i64,
    /// When the last destination finished (ms).
    pub finished_at: Option<i64>,
    /// SHA-256 of `kind:value` of each erased identifier.
    pub subject_hashes: Vec<String>,
    /// Status per destination.
    pub destinations: Vec<RegulationDestination>,
}

/// One destination's part of a regulation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegulationDestination {
    /// Destination name.
    pub destination: String,
    /// `pending`, `running`, `succeeded`, `failed` or `not_supported`.
    pub status: String,
    /// Attempts so far.
    pub attempts: i64,
    /// Next attempt (ms) while pending.
    pub next_attempt_at: i64,
    /// The API's last error.
    pub last_error: Option<String>,
    /// What was done, or why it is not supported.
    pub detail: Option<String>,
    /// Last change (ms).
    pub updated_at: i64,
}

/// A destination's part of a regulation, claimed by the erasure worker.
#[derive(Debug, Clone)]
pub struct ClaimedErasure {
    /// Regulation id.
    pub regulation: String,
    /// Destination name.
    pub destination: String,
    /// Attempts including this one.
    pub attempts: i64,
    /// The captured identifiers (`None` if the regulation no longer holds them).
    pub subject: Option<Subject>,
}

/// The outcome of one attempt, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureUpdate {
    /// New status.
    pub status: &'static str,
    /// When to try again (ms), for `pending`.
    pub next_attempt_at: i64,
    /// The API's error.
    pub last_error: Option<String>,
    /// What was done, or why not.
    pub detail: Option<String>,
}

/// Rows a retention run deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Purged {
    /// Raw messages.
    pub messages: u64,
    /// Rejected items.
    pub rejected: u64,
    /// Delivered or dead outbox rows (activation payloads).
    pub outbox: u64,
    /// Delivery-log entries.
    pub delivery_log: u64,
    /// Identity resolution reports (identifiers dropped, with the message's detail).
    pub identity_reports: u64,
}

/// Erasure, regulations and retention.
pub trait PrivacyStore: Send + Sync + 'static {
    /// Erases a live profile and everything that names it, suppresses its identifiers and records
    /// a regulation with one pending row per destination; `None` when there is no such profile.
    fn erase<'a>(
        &'a self,
        request: &'a EraseRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<Erased>, StorageError>>;
    /// The newest regulations.
    fn regulations(&self, limit: i64) -> BoxFuture<'_, Result<Vec<Regulation>, StorageError>>;
    /// One regulation.
    fn regulation<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Regulation>, StorageError>>;
    /// Claims due destination rows until `lease_until` (ms).
    fn claim(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> BoxFuture<'_, Result<Vec<ClaimedErasure>, StorageError>>;
    /// Records an attempt's outcome (ignored if the row was claimed again meanwhile); when every
    /// destination has finished, settles the regulation and forgets its plaintext identifiers.
    fn finish<'a>(
        &'a self,
        claimed: &'a ClaimedErasure,
        update: &'a ErasureUpdate,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StorageError>>;
    /// Deletes raw messages received before `before` (ms) that every stage named in `cursors`
    /// has processed, rejected items, delivered or dead outbox rows, delivery-log entries and
    /// identity resolution reports.
    fn purge<'a>(
        &'a self,
        before: i64,
        cursors: &'a [&'a str],
    ) -> BoxFuture<'a, Result<Purged, StorageError>>;
    /// Hashes and moves plaintext suppressions left by versions before migration 0009; returns
    /// how many were moved.
    fn hash_plaintext_suppressions(&self) -> BoxFuture<'_, Result<u64, StorageError>>;
}

/// Pushes ` AND (LOWER(<column>) LIKE p OR …)` for every pattern and column.
fn push_like<'a, DB: sqlx::Database>(
    q: &mut Statement<'a, DB>,
    columns: &[&str],
    patterns: &'a [String],
) where
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    q.push(" AND (1 = 0");
    for c in columns {
        for p in patterns {
            q.push(format!(" OR LOWER({c}) LIKE "));
            q.push_bind(p.clone());
            q.push(" ESCAPE '\\'");
        }
    }
    q.push(")");
}

/// Settles a regulation's status from its destinations' statuses (`None` while any is pending).
pub fn settle(statuses: &[String]) -> Option<&'static str> {
    if statuses.iter().any(|s| s == "pending" || s == "running") {
        None
    } else if statuses.iter().any(|s| s == "failed") {
        Some("failed")
    } else {
        Some("succeeded")
    }
}

/// A message row the erasure reads: seq, user_id, anonymous_id, body, violations, profile.
type MessageTuple = (
    i64,
    Option<String>,
    Option<String>,
    String,
    String,
    Option<ProfileId>,
);

/// A `regulations` row: id, kind, profile, status, requested, finished, hashes.
type RegulationRow = (String, String, ProfileId, String, i64, Option<i64>, String);

/// Per-database SQL.
struct Dialect {
    /// Rewrites a message: body $1, violations $2, user_id $3, anonymous_id $4, seq $5.
    rewrite_message: &'static str,
    /// Whether the pre-0009 `suppressions` table exists.
    old_suppressions_exist: &'static str,
    /// Claims due regulation rows: now $1, lease end $2, limit $3.
    claim: &'static str,
}

const SQLITE: Dialect = Dialect {
    rewrite_message: "UPDATE messages SET body = $1, violations = $2, user_id = $3, anonymous_id = $4 \
        WHERE seq = $5",
    old_suppressions_exist: "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'suppressions'",
    claim: "UPDATE regulation_destinations SET status = 'running', attempts = attempts + 1, \
        next_attempt_at = $2, updated_at = $1 WHERE (regulation, destination) IN \
        (SELECT regulation, destination FROM regulation_destinations \
         WHERE status IN ('pending', 'running') AND next_attempt_at <= $1 \
         ORDER BY next_attempt_at LIMIT $3) \
        RETURNING regulation, destination, attempts",
};

const POSTGRES: Dialect = Dialect {
    rewrite_message: "UPDATE messages SET body = CAST($1 AS JSONB), violations = CAST($2 AS JSONB), \
        user_id = $3, anonymous_id = $4 WHERE seq = $5",
    old_suppressions_exist: "SELECT COUNT(*) FROM information_schema.tables \
        WHERE table_schema = current_schema() AND table_name = 'suppressions'",
    claim: "UPDATE regulation_destinations SET status = 'running', attempts = attempts + 1, \
        next_attempt_at = $2, updated_at = $1 WHERE (regulation, destination) IN \
        (SELECT regulation, destination FROM regulation_destinations \
         WHERE status IN ('pending', 'running') AND next_attempt_at <= $1 \
         ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
        RETURNING regulation, destination, attempts",
};

/// The SQL that differs between the databases the privacy store runs on.
trait PrivacySql: Database {
    /// This database's statements.
    const DIALECT: Dialect;
}

impl PrivacySql for sqlx::Sqlite {
    const DIALECT: Dialect = SQLITE;
}

impl PrivacySql for sqlx::Postgres {
    const DIALECT: Dialect = POSTGRES;
}

/// The log rows on a profile's timeline (`$1`), deleted with it; before its `profile_messages`.
const TIMELINE_MESSAGES: &str =
    "DELETE FROM messages WHERE seq IN (SELECT seq FROM profile_messages WHERE profile_id = $1)";

/// Pipeline-state tables keyed by profile id whose rows are deleted with the profile (`$1`).
const BY_PROFILE: [&str; 11] = [
    "DELETE FROM profile_messages WHERE profile_id = $1",
    "DELETE FROM profile_traits WHERE profile_id = $1",
    "DELETE FROM profile_aggregates WHERE profile_id = $1",
    "DELETE FROM profile_accounts WHERE profile_id = $1",
    "DELETE FROM identities WHERE profile_id = $1",
    "DELETE FROM identity_reports WHERE profile_id = $1",
    "DELETE FROM merges WHERE winner = $1 OR loser = $1",
    "DELETE FROM audience_members WHERE profile_id = $1",
    "DELETE FROM audience_history WHERE profile_id = $1",
    "DELETE FROM audience_checks WHERE profile_id = $1",
    // Undelivered activations are cancelled; delivered ones erased.
    "DELETE FROM outbox WHERE profile_id = $1",
];

/// Whom an erasure is about: the live profile and the profiles merged into it, and its identifiers.
struct Person {
    erased: Vec<ProfileId>,
    own: Vec<Identifier>,
}

/// Where an erasure's writes to the log tables happen.
enum LogPart {
    /// In the erasure's own transaction (one SQLite file, or PostgreSQL).
    Here,
    /// Already committed by `erase_log_in`, which also deleted these messages of other
    /// timelines; their `profile_messages` rows are left for the erasure to delete.
    Done { dropped: Vec<i64> },
}

/// [`PrivacyStore`] over a migrated SQLite or PostgreSQL pool.
#[derive(Clone, Debug)]
pub struct SqlPrivacy<DB: Database> {
    pool: Db<DB>,
}

impl<DB: Database> SqlPrivacy<DB> {
    /// Wraps a migrated pool.
    pub fn new(pool: Db<DB>) -> Self {
        SqlPrivacy { pool }
    }
}

/// SQLite's privacy store.
pub type SqlitePrivacy = SqlPrivacy<sqlx::Sqlite>;
/// PostgreSQL's privacy store.
pub type PgPrivacy = SqlPrivacy<sqlx::Postgres>;

// The erasure's private steps need the bounds of the `PrivacyStore` impl below; those name
// crate-private traits, which the lint would only accept on a trait impl.
#[allow(private_bounds)]
impl<DB> SqlPrivacy<DB>
where
    DB: PrivacySql,
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
    for<'q> Option<&'q str>: Type<DB> + Encode<'q, DB>,
    DB: crate::storage::Dialect,
{
    /// The live profile `profile_id` names, the profiles merged into it and its identifiers;
    /// `None` when no live profile has that id.
    async fn person_in(
        tx: &mut sqlx::Transaction<'static, DB>,
        profile_id: &ProfileId,
    ) -> Result<Option<Person>, StorageError> {
        let live: Option<ProfileId> =
            sqlx::query_scalar("SELECT id FROM profiles WHERE id = $1 AND merged_into IS NULL")
                .bind(profile_id)
                .fetch_optional(&mut **tx)
                .await?;
        if live.is_none() {
            return Ok(None);
        }
        let mut erased: Vec<ProfileId> = vec![profile_id.clone()];
        erased.extend(
            sqlx::query_scalar::<_, ProfileId>(
                "SELECT id FROM profiles WHERE merged_into = $1 ORDER BY id",
            )
            .bind(profile_id)
            .fetch_all(&mut **tx)
            .await?,
        );
        let own: Vec<Identifier> = sqlx::query_as::<_, (String, String)>(
            "SELECT kind, value FROM identities WHERE profile_id = $1 ORDER BY kind, value",
        )
        .bind(profile_id)
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .map(|(kind, value)| Identifier { kind, value })
        .collect();
        Ok(Some(Person { erased, own }))
    }

    /// The erasure's writes to the log tables alone: the messages on the person's timelines, the
    /// messages and rejected items that carry or mention them. Where the log is a file of its own,
    /// this commits before the rest of the erasure: SQLite commits the files of one transaction
    /// one after the other, state first, and a crash between the two must never leave the
    /// erasure recorded while the log still holds the person. Returns the scrubbed messages
    /// it deleted, whose `profile_messages` rows the rest of the erasure deletes
    /// ([`LogPart::Done`]).
    async fn erase_log_in(
        tx: &mut sqlx::Transaction<'static, DB>,
        r: &EraseRequest<'_>,
        out: &mut Erased,
    ) -> Result<Vec<i64>, StorageError> {
        let Some(person) = Self::person_in(tx, r.profile_id).await? else {
            return Ok(Vec::new());
        };
        for p in &person.erased {
            out.deleted += sqlx::query(TIMELINE_MESSAGES)
                .bind(p)
                .execute(&mut **tx)
                .await
                .map(|r| DB::rows_affected(&r))?;
        }
        let scrubber = Scrubber::new(person.own.iter().map(|i| i.value.as_str()));
        if scrubber.is_empty() {
            return Ok(Vec::new());
        }
        let patterns = scrubber.like_patterns();
        let d: &Dialect = &DB::DIALECT;
        let dropped = Self::scrub_messages(tx, d, &person, &scrubber, &patterns, out).await?;
        Self::scrub_rejected(tx, &scrubber, &patterns, out).await?;
        Ok(dropped)
    }

    async fn erase_in(
        tx: &mut sqlx::Transaction<'static, DB>,
        r: &EraseRequest<'_>,
        log: LogPart,
    ) -> Result<Option<Erased>, StorageError> {
        let d: &Dialect = &DB::DIALECT;
        // Serialise with the profiles stage (each partition's, on a partitioned log) and make it
        // drop its cached graph, with every writer of memberships and the audience feed…
        sqlx::query(
            "UPDATE pipeline_cursors SET generation = generation + 1 \
             WHERE name = 'profiles' OR name LIKE 'profiles/%'",
        )
        .execute(&mut **tx)
        .await?;
        // …and with the activation stage, so it never enqueues the person after this commit.
        sqlx::query(
            "UPDATE pipeline_cursors SET seq = seq \
             WHERE name IN ('audiences', 'destinations', 'destinations_audiences')",
        )
        .execute(&mut **tx)
        .await?;
        let Some(person) = Self::person_in(tx, r.profile_id).await? else {
            return Ok(None);
        };
        let Person { erased, own } = &person;
        let mut hashes: Vec<String> = own.iter().map(identifier_hash).collect();
        hashes.sort();
        hashes.dedup();
        let scrubber = Scrubber::new(own.iter().map(|i| i.value.as_str()));
        let mut out = Erased {
            regulation: r.regulation.to_owned(),
            profiles: erased.len(),
            identifiers: own.len(),
            ..Erased::default()
        };

        for h in &hashes {
            sqlx::query(
                "INSERT INTO suppression_hashes (hash, at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(h)
            .bind(r.now)
            .execute(&mut **tx)
            .await?;
        }
        // Every membership ends (the audience feed records the exits).
        sqlx::query(
            "INSERT INTO audience_events (audience, profile_id, kind, at, seq, reason) \
             SELECT audience, profile_id, 'audience_exited', $2, 0, 'delete' FROM audience_members \
             WHERE profile_id = $1",
        )
        .bind(r.profile_id)
        .bind(r.now)
        .execute(&mut **tx)
        .await?;
        let log_here = matches!(log, LogPart::Here);
        for p in erased {
            let timeline = log_here.then_some(TIMELINE_MESSAGES);
            for sql in timeline.into_iter().chain(BY_PROFILE) {
                out.deleted += sqlx::query(sql)
                    .bind(p)
                    .execute(&mut **tx)
                    .await
                    .map(|r| DB::rows_affected(&r))?;
            }
        }
        sqlx::query("DELETE FROM profiles WHERE id = $1 OR merged_into = $1")
            .bind(r.profile_id)
            .execute(&mut **tx)
            .await?;

        let patterns = scrubber.like_patterns();
        let dropped = match log {
            LogPart::Here if !scrubber.is_empty() => {
                Self::scrub_rejected(tx, &scrubber, &patterns, &mut out).await?;
                Self::scrub_messages(tx, d, &person, &scrubber, &patterns, &mut out).await?
            }
            LogPart::Here => Vec::new(),
            LogPart::Done { dropped } => dropped,
        };
        for seq in dropped {
            sqlx::query("DELETE FROM profile_messages WHERE seq = $1")
                .bind(seq)
                .execute(&mut **tx)
                .await?;
        }
        if !scrubber.is_empty() {
            Self::scrub_rows(tx, erased, own, &scrubber, &patterns, &mut out).await?;
        }

        let subject = Subject::new(r.regulation, r.profile_id, own);
        let finished = r.destinations.is_empty();
        out.status = if finished { "succeeded" } else { "running" }.to_owned();
        sqlx::query(
            "INSERT INTO regulations (id, kind, profile_id, subject_hashes, subject, status, \
             requested_at, finished_at) VALUES ($1, 'erase', $2, $3, $4, $5, $6, $7)",
        )
        .bind(r.regulation)
        .bind(r.profile_id)
        .bind(serde_json::to_string(&hashes)?)
        .bind(
            (!finished)
                .then(|| serde_json::to_string(&subject))
                .transpose()?,
        )
        .bind(&out.status)
        .bind(r.now)
        .bind(finished.then_some(r.now))
        .execute(&mut **tx)
        .await?;
        for dest in r.destinations {
            sqlx::query(
                "INSERT INTO regulation_destinations (regulation, destination, status, attempts, \
                 next_attempt_at, updated_at) VALUES ($1, $2, 'pending', 0, $3, $3)",
            )
            .bind(r.regulation)
            .bind(*dest)
            .bind(r.now)
            .execute(&mut **tx)
            .await?;
        }
        Ok(Some(out))
    }

    /// Messages that are not on an erased timeline but carry or mention the person: rewritten, or
    /// deleted (returned, for their `profile_messages` rows). Writes the log tables only.
    async fn scrub_messages(
        tx: &mut sqlx::Transaction<'static, DB>,
        d: &Dialect,
        person: &Person,
        scrubber: &Scrubber,
        patterns: &[String],
        out: &mut Erased,
    ) -> Result<Vec<i64>, StorageError> {
        let Person { erased, own } = person;
        let mut dropped = Vec::new();
        let mut after = 0i64;
        for _ in 0..MAX_PAGES {
            let mut q = Statement::<DB>::new(
                "SELECT m.seq, m.user_id, m.anonymous_id, CAST(m.body AS TEXT), \
                 CAST(m.violations AS TEXT), pm.profile_id FROM messages m \
                 LEFT JOIN profile_messages pm ON pm.seq = m.seq WHERE m.seq > ",
            );
            q.push_bind(after);
            // Its own userId / anonymousId is one of theirs, or its JSON mentions them.
            q.push(" AND (1 = 0");
            for (column, kind) in [("m.user_id", "user_id"), ("m.anonymous_id", "anonymous_id")] {
                for id in own.iter().filter(|i| i.kind == kind) {
                    q.push(format!(" OR {column} = "));
                    q.push_bind(id.value.clone());
                }
            }
            q.push(" OR (1 = 1");
            push_like(
                &mut q,
                &["CAST(m.body AS TEXT)", "CAST(m.violations AS TEXT)"],
                patterns,
            );
            q.push(format!(")) ORDER BY m.seq LIMIT {PAGE}"));
            let (sql, args) = q.into_parts();
            let rows: Vec<MessageTuple> =
                sqlx::query_as_with(&sql, args).fetch_all(&mut **tx).await?;
            let Some(last) = rows.last().map(|r| r.0) else {
                break;
            };
            let full = rows.len() as i64 == PAGE;
            for (seq, user_id, anonymous_id, body, violations, profile_id) in rows {
                let row = MessageRow {
                    seq,
                    user_id,
                    anonymous_id,
                    body,
                    violations,
                    profile_id,
                };
                match message_fate(&row, erased, own, scrubber) {
                    MessageFate::Delete => {
                        dropped.push(seq);
                        out.deleted += sqlx::query("DELETE FROM messages WHERE seq = $1")
                            .bind(seq)
                            .execute(&mut **tx)
                            .await
                            .map(|r| DB::rows_affected(&r))?;
                    }
                    MessageFate::Rewrite {
                        body,
                        violations,
                        user_id,
                        anonymous_id,
                    } => {
                        out.rewritten += sqlx::query(d.rewrite_message)
                            .bind(body)
                            .bind(violations)
                            .bind(user_id)
                            .bind(anonymous_id)
                            .bind(seq)
                            .execute(&mut **tx)
                            .await
                            .map(|r| DB::rows_affected(&r))?;
                    }
                    MessageFate::Keep => {}
                }
            }
            if !full {
                break;
            }
            after = last;
        }
        Ok(dropped)
    }

    /// Rejected items were never messages: one naming the person is deleted.
    async fn scrub_rejected(
        tx: &mut sqlx::Transaction<'static, DB>,
        scrubber: &Scrubber,
        patterns: &[String],
        out: &mut Erased,
    ) -> Result<(), StorageError> {
        let mut after = 0i64;
        for _ in 0..MAX_PAGES {
            let mut q =
                Statement::<DB>::new("SELECT id, body, reason FROM rejected_messages WHERE id > ");
            q.push_bind(after);
            push_like(&mut q, &["body", "reason"], patterns);
            q.push(format!(" ORDER BY id LIMIT {PAGE}"));
            let (sql, args) = q.into_parts();
            let rows: Vec<(i64, String, String)> =
                sqlx::query_as_with(&sql, args).fetch_all(&mut **tx).await?;
            let Some(last) = rows.last().map(|r| r.0) else {
                break;
            };
            for (id, body, reason) in &rows {
                if scrubber.mentions(body) || scrubber.mentions(reason) {
                    out.deleted += sqlx::query("DELETE FROM rejected_messages WHERE id = $1")
                        .bind(id)
                        .execute(&mut **tx)
                        .await
                        .map(|r| DB::rows_affected(&r))?;
                }
            }
            if (rows.len() as i64) < PAGE {
                break;
            }
            after = last;
        }
        Ok(())
    }

    /// Everything else that can name the person without being keyed by their profile.
    async fn scrub_rows(
        tx: &mut sqlx::Transaction<'static, DB>,
        erased: &[ProfileId],
        own: &[Identifier],
        scrubber: &Scrubber,
        patterns: &[String],
        out: &mut Erased,
    ) -> Result<(), StorageError> {
        // Resolution reports on other profiles about one of the person's identifiers.
        let mut after = 0i64;
        for _ in 0..MAX_PAGES {
            let mut q = Statement::<DB>::new(
                "SELECT id, id_kind, id_value, detail FROM identity_reports WHERE id > ",
            );
            q.push_bind(after);
            push_like(&mut q, &["id_value", "detail"], patterns);
            q.push(format!(" ORDER BY id LIMIT {PAGE}"));
            let (sql, args) = q.into_parts();
            let rows: Vec<(i64, String, String, String)> =
                sqlx::query_as_with(&sql, args).fetch_all(&mut **tx).await?;
            let Some(last) = rows.last().map(|r| r.0) else {
                break;
            };
            for (id, kind, value, detail) in &rows {
                let theirs = own.iter().any(|i| &i.kind == kind && &i.value == value);
                if theirs || scrubber.mentions(value) || scrubber.mentions(detail) {
                    out.deleted += sqlx::query("DELETE FROM identity_reports WHERE id = $1")
                        .bind(id)
                        .execute(&mut **tx)
                        .await
                        .map(|r| DB::rows_affected(&r))?;
                }
            }
            if (rows.len() as i64) < PAGE {
                break;
            }
            after = last;
        }

        // Merges whose reason names them (merges of their profiles went with them).
        let mut after = 0i64;
        for _ in 0..MAX_PAGES {
            let mut q = Statement::<DB>::new("SELECT id, reason FROM merges WHERE id > ");
            q.push_bind(after);
            push_like(&mut q, &["reason"], patterns);
            q.push(format!(" ORDER BY id LIMIT {PAGE}"));
            let (sql, args) = q.into_parts();
            let rows: Vec<(i64, String)> =
                sqlx::query_as_with(&sql, args).fetch_all(&mut **tx).await?;
            let Some(last) = rows.last().map(|r| r.0) else {
                break;
            };
            for (id, reason) in &rows {
                if scrubber.mentions(reason) {
                    out.deleted += sqlx::query("DELETE FROM merges WHERE id = $1")
                        .bind(id)
                        .execute(&mut **tx)
                        .await
                        .map(|r| DB::rows_affected(&r))?;
                }
            }
            if (rows.len() as i64) < PAGE {
                break;
            }
            after = last;
        }

        // Outbox rows: the person's (rows from before profile_id existed) are deleted,
        // other people's payloads and errors that mention them rewritten.
        let mut after = 0i64;
        for _ in 0..MAX_PAGES {
            let mut q =
                Statement::<DB>::new("SELECT id, payload, last_error FROM outbox WHERE id > ");
            q.push_bind(after);
            push_like(&mut q, &["payload", "COALESCE(last_error, '')"], patterns);
            q.push(format!(" ORDER BY id LIMIT {PAGE}"));
            let (sql, args) = q.into_parts();
            let rows: Vec<(i64, String, Option<String>)> =
                sqlx::query_as_with(&sql, args).fetch_all(&mut **tx).await?;
            let Some(last) = rows.last().map(|r| r.0) else {
                break;
            };
            for (id, payload, last_error) in &rows {
                let owner = serde_json::from_str::<serde_json::Value>(payload)
                    .ok()
                    .and_then(|v| {
                        v.get("profile_id")
                            .and_then(|p| p.as_str())
                            .map(ProfileId::from)
                    });
                if owner.is_some_and(|o| erased.contains(&o)) {
                    out.deleted += sqlx::query("DELETE FROM outbox WHERE id = $1")
                        .bind(id)
                        .execute(&mut **tx)
                        .await
                        .map(|r| DB::rows_affected(&r))?;
                    continue;
                }
                let new_payload = scrubber.scrub_json_text(payload);
                let new_error = last_error.as_deref().and_then(|e| scrubber.redact_text(e));
                if new_payload.is_some() || new_error.is_some() {
                    out.rewritten += sqlx::query(
                        "UPDATE outbox SET payload = $1, last_error = $2 WHERE id = $3",
                    )
                    .bind(new_payload.as_deref().unwrap_or(payload))
                    .bind(new_error.as_deref().or(last_error.as_deref()))
                    .bind(id)
                    .execute(&mut **tx)
                    .await
                    .map(|r| DB::rows_affected(&r))?;
                }
            }
            if (rows.len() as i64) < PAGE {
                break;
            }
            after = last;
        }

        // Delivery-log entries: the API's error messages may quote the person.
        let mut after = 0i64;
        for _ in 0..MAX_PAGES {
            let mut q =
                Statement::<DB>::new("SELECT id, request, error FROM delivery_log WHERE id > ");
            q.push_bind(after);
            push_like(&mut q, &["request", "COALESCE(error, '')"], patterns);
            q.push(format!(" ORDER BY id LIMIT {PAGE}"));
            let (sql, args) = q.into_parts();
            let rows: Vec<(i64, String, Option<String>)> =
                sqlx::query_as_with(&sql, args).fetch_all(&mut **tx).await?;
            let Some(last) = rows.last().map(|r| r.0) else {
                break;
            };
            for (id, request, error) in &rows {
                let new_request = scrubber.scrub_text(request);
                let new_error = error.as_deref().and_then(|e| scrubber.redact_text(e));
                if new_request.is_some() || new_error.is_some() {
                    out.rewritten += sqlx::query(
                        "UPDATE delivery_log SET request = $1, error = $2 WHERE id = $3",
                    )
                    .bind(new_request.as_deref().unwrap_or(request))
                    .bind(new_error.as_deref().or(error.as_deref()))
                    .bind(id)
                    .execute(&mut **tx)
                    .await
                    .map(|r| DB::rows_affected(&r))?;
                }
            }
            if (rows.len() as i64) < PAGE {
                break;
            }
            after = last;
        }

        // Errors of messages a stage set aside may quote them.
        let mut after = 0i64;
        for _ in 0..MAX_PAGES {
            let mut q =
                Statement::<DB>::new("SELECT id, error, replay_error FROM quarantine WHERE id > ");
            q.push_bind(after);
            push_like(&mut q, &["error", "COALESCE(replay_error, '')"], patterns);
            q.push(format!(" ORDER BY id LIMIT {PAGE}"));
            let (sql, args) = q.into_parts();
            let rows: Vec<(i64, String, Option<String>)> =
                sqlx::query_as_with(&sql, args).fetch_all(&mut **tx).await?;
            let Some(last) = rows.last().map(|r| r.0) else {
                break;
            };
            for (id, error, replay_error) in &rows {
                let new_error = scrubber.redact_text(error);
                let new_replay = replay_error
                    .as_deref()
                    .and_then(|e| scrubber.redact_text(e));
                if new_error.is_some() || new_replay.is_some() {
                    out.rewritten += sqlx::query(
                        "UPDATE quarantine SET error = $1, replay_error = $2 WHERE id = $3",
                    )
                    .bind(new_error.as_deref().unwrap_or(error))
                    .bind(new_replay.as_deref().or(replay_error.as_deref()))
                    .bind(id)
                    .execute(&mut **tx)
                    .await
                    .map(|r| DB::rows_affected(&r))?;
                }
            }
            if (rows.len() as i64) < PAGE {
                break;
            }
            after = last;
        }

        // Other people's and accounts' traits that mention them (e.g. `referred_by`).
        for (table, owner) in [
            ("profile_traits", "profile_id"),
            ("account_traits", "group_id"),
        ] {
            let mut q = Statement::<DB>::new(format!(
                "SELECT {owner}, key, value FROM {table} WHERE 1 = 1"
            ));
            push_like(&mut q, &["value"], patterns);
            let (sql, args) = q.into_parts();
            let rows: Vec<(String, String, String)> =
                sqlx::query_as_with(&sql, args).fetch_all(&mut **tx).await?;
            for (who, key, value) in rows {
                if let Some(new) = scrubber.scrub_json_text(&value) {
                    out.rewritten += sqlx::query(&format!(
                        "UPDATE {table} SET value = $1 WHERE {owner} = $2 AND key = $3"
                    ))
                    .bind(new)
                    .bind(who)
                    .bind(key)
                    .execute(&mut **tx)
                    .await
                    .map(|r| DB::rows_affected(&r))?;
                }
            }
        }
        Ok(())
    }

    async fn load_regulations(
        &self,
        ids: Vec<RegulationRow>,
    ) -> Result<Vec<Regulation>, StorageError> {
        let mut out = Vec::with_capacity(ids.len());
        for (id, kind, profile_id, status, requested_at, finished_at, hashes) in ids {
            #[allow(clippy::type_complexity)]
            let rows: Vec<(String, String, i64, i64, Option<String>, Option<String>, i64)> =
                sqlx::query_as(
                    "SELECT destination, status, attempts, next_attempt_at, last_error, detail, \
                     updated_at FROM regulation_destinations WHERE regulation = $1 ORDER BY destination",
                )
                .bind(&id)
                .fetch_all(&self.pool)
                .await?;
            out.push(Regulation {
                id,
                kind,
                profile_id,
                status,
                requested_at,
                finished_at,
                subject_hashes: serde_json::from_str(&hashes).unwrap_or_default(),
                destinations: rows
                    .into_iter()
                    .map(
                        |(
                            destination,
                            status,
                            attempts,
                            next_attempt_at,
                            last_error,
                            detail,
                            updated_at,
                        )| {
                            RegulationDestination {
                                destination,
                                status,
                                attempts,
                                next_attempt_at,
                                last_error,
                                detail,
                                updated_at,
                            }
                        },
                    )
                    .collect(),
            });
        }
        Ok(out)
    }
}

impl<DB> PrivacyStore for SqlPrivacy<DB>
where
    DB: PrivacySql,
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
    for<'q> Option<&'q str>: Type<DB> + Encode<'q, DB>,
    DB: crate::storage::Dialect,
{
    fn erase<'a>(
        &'a self,
        request: &'a EraseRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<Erased>, StorageError>> {
        Box::pin(async move {
            let (mut tx, gate) = self.pool.begin_write().await?;
            let mut logged = Erased::default();
            let log = if self.pool.log_file_is_separate() {
                let dropped = Self::erase_log_in(&mut tx, request, &mut logged).await?;
                tx.commit().await?;
                // Still under the same gates: no writer in this process runs in between.
                tx = self.pool.begin_write_under(&gate).await?;
                LogPart::Done { dropped }
            } else {
                LogPart::Here
            };
            let mut out = Self::erase_in(&mut tx, request, log).await?;
            if let Some(out) = out.as_mut() {
                out.deleted += logged.deleted;
                out.rewritten += logged.rewritten;
                tx.commit().await?;
            }
            Ok(out)
        })
    }

    fn regulations(&self, limit: i64) -> BoxFuture<'_, Result<Vec<Regulation>, StorageError>> {
        Box::pin(async move {
            let ids = sqlx::query_as(
                "SELECT id, kind, profile_id, status, requested_at, finished_at, subject_hashes \
                 FROM regulations ORDER BY requested_at DESC, id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            self.load_regulations(ids).await
        })
    }

    fn regulation<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Regulation>, StorageError>> {
        Box::pin(async move {
            let ids = sqlx::query_as(
                "SELECT id, kind, profile_id, status, requested_at, finished_at, subject_hashes \
                 FROM regulations WHERE id = $1",
            )
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
            Ok(self.load_regulations(ids).await?.pop())
        })
    }

    fn claim(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> BoxFuture<'_, Result<Vec<ClaimedErasure>, StorageError>> {
        Box::pin(async move {
            let d: &Dialect = &DB::DIALECT;
            let (mut tx, _gate) = self.pool.begin_write().await?;
            let rows: Vec<(String, String, i64)> = sqlx::query_as(d.claim)
                .bind(now)
                .bind(lease_until)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for (regulation, destination, attempts) in rows {
                let subject: Option<String> =
                    sqlx::query_scalar("SELECT subject FROM regulations WHERE id = $1")
                        .bind(&regulation)
                        .fetch_optional(&mut *tx)
                        .await?
                        .flatten();
                out.push(ClaimedErasure {
                    regulation,
                    destination,
                    attempts,
                    subject: subject.and_then(|s| serde_json::from_str(&s).ok()),
                });
            }
            tx.commit().await?;
            Ok(out)
        })
    }

    fn finish<'a>(
        &'a self,
        claimed: &'a ClaimedErasure,
        update: &'a ErasureUpdate,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let (mut tx, _gate) = self.pool.begin_write().await?;
            sqlx::query(
                "UPDATE regulation_destinations SET status = $1, next_attempt_at = $2, \
                 last_error = $3, detail = $4, updated_at = $5 \
                 WHERE regulation = $6 AND destination = $7 AND attempts = $8 AND status = 'running'",
            )
            .bind(update.status)
            .bind(update.next_attempt_at)
            .bind(&update.last_error)
            .bind(&update.detail)
            .bind(now)
            .bind(&claimed.regulation)
            .bind(&claimed.destination)
            .bind(claimed.attempts)
            .execute(&mut *tx)
            .await?;
            let rows: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
                "SELECT destination, status, last_error, detail FROM regulation_destinations \
                 WHERE regulation = $1",
            )
            .bind(&claimed.regulation)
            .fetch_all(&mut *tx)
            .await?;
            let statuses: Vec<String> = rows.iter().map(|r| r.1.clone()).collect();
            if let Some(status) = settle(&statuses) {
                // The plaintext identifiers go; so do quotes of them in the APIs' messages.
                let scrubber = claimed
                    .subject
                    .as_ref()
                    .map(|s| Scrubber::new(s.values()))
                    .unwrap_or_default();
                for (destination, _, last_error, detail) in &rows {
                    let e = last_error.as_deref().and_then(|t| scrubber.redact_text(t));
                    let dt = detail.as_deref().and_then(|t| scrubber.redact_text(t));
                    if e.is_some() || dt.is_some() {
                        sqlx::query(
                            "UPDATE regulation_destinations SET last_error = $1, detail = $2 \
                             WHERE regulation = $3 AND destination = $4",
                        )
                        .bind(e.as_deref().or(last_error.as_deref()))
                        .bind(dt.as_deref().or(detail.as_deref()))
                        .bind(&claimed.regulation)
                        .bind(destination)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                sqlx::query(
                    "UPDATE regulations SET status = $1, finished_at = $2, subject = NULL WHERE id = $3",
                )
                .bind(status)
                .bind(now)
                .bind(&claimed.regulation)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn purge<'a>(
        &'a self,
        before: i64,
        cursors: &'a [&'a str],
    ) -> BoxFuture<'a, Result<Purged, StorageError>> {
        Box::pin(async move {
            let mut out = Purged::default();
            // Raw messages: only those every stage has read (a stage never loses input).
            let mut floor_sql = Statement::<DB>::new(
                "SELECT COALESCE(MIN(seq), 0) FROM pipeline_cursors WHERE name IN (",
            );
            floor_sql.push_bind_list(cursors.iter().copied()).push(")");
            let floor: i64 = if cursors.is_empty() {
                0
            } else {
                let (sql, args) = floor_sql.into_parts();
                sqlx::query_scalar_with(&sql, args)
                    .fetch_one(&self.pool)
                    .await?
            };
            // Quarantined log messages stay until replayed: a fix must still find them.
            let messages = "DELETE FROM messages WHERE seq IN (SELECT seq FROM messages \
                WHERE seq <= $3 AND received_at < $1 AND seq NOT IN (SELECT position FROM \
                quarantine WHERE replayed_at IS NULL AND cursor_name <> 'destinations_audiences') \
                ORDER BY seq LIMIT $2)";
            let batches: [(&str, &mut u64); 5] = [
                (messages, &mut out.messages),
                (
                    "DELETE FROM rejected_messages WHERE id IN (SELECT id FROM rejected_messages \
                     WHERE received_at < $1 ORDER BY id LIMIT $2)",
                    &mut out.rejected,
                ),
                (
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE status IN \
                     ('delivered', 'dead') AND updated_at < $1 ORDER BY id LIMIT $2)",
                    &mut out.outbox,
                ),
                (
                    "DELETE FROM delivery_log WHERE id IN (SELECT id FROM delivery_log \
                     WHERE at < $1 ORDER BY id LIMIT $2)",
                    &mut out.delivery_log,
                ),
                (
                    "DELETE FROM identity_reports WHERE id IN (SELECT id FROM identity_reports \
                     WHERE at < $1 ORDER BY id LIMIT $2)",
                    &mut out.identity_reports,
                ),
            ];
            for (sql, count) in batches {
                for _ in 0..PURGE_ROUNDS {
                    let (mut tx, _gate) = self.pool.begin_write().await?;
                    let mut q = sqlx::query(sql).bind(before).bind(PURGE_BATCH);
                    if sql == messages {
                        q = q.bind(floor);
                    }
                    let n = q.execute(&mut *tx).await.map(|r| DB::rows_affected(&r))?;
                    tx.commit().await?;
                    *count += n;
                    if n < PURGE_BATCH as u64 {
                        break;
                    }
                }
            }
            Ok(out)
        })
    }

    fn hash_plaintext_suppressions(&self) -> BoxFuture<'_, Result<u64, StorageError>> {
        Box::pin(async move {
            let d: &Dialect = &DB::DIALECT;
            let exists: i64 = sqlx::query_scalar(d.old_suppressions_exist)
                .fetch_one(&self.pool)
                .await?;
            if exists == 0 {
                return Ok(0);
            }
            let (mut tx, _gate) = self.pool.begin_write().await?;
            let rows: Vec<(String, String, i64)> =
                sqlx::query_as("SELECT kind, value, at FROM suppressions")
                    .fetch_all(&mut *tx)
                    .await?;
            for (kind, value, at) in &rows {
                sqlx::query(
                    "INSERT INTO suppression_hashes (hash, at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                )
                .bind(identifier_hash(&Identifier::new(kind, value)))
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("DROP TABLE suppressions")
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(rows.len() as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regulation_settles_when_no_destination_is_pending_and_fails_if_any_failed() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(settle(&s(&["succeeded", "running"])), None);
        assert_eq!(settle(&s(&["succeeded", "pending"])), None);
        assert_eq!(
            settle(&s(&["succeeded", "not_supported"])),
            Some("succeeded")
        );
        assert_eq!(settle(&s(&["failed", "succeeded"])), Some("failed"));
        assert_eq!(settle(&[]), Some("succeeded"));
    }
}

#[cfg(test)]
mod two_file_tests {
    use super::*;
    use crate::storage::SqliteStore;

    /// A two-file SQLite database with one person (profile `p1`, anonymousId `a-1`, email
    /// `ann@example.com`): their message 1, and message 2 of someone else that mentions them.
    async fn database_with_a_person(dir: &std::path::Path) -> SqlitePrivacy {
        let url = format!("sqlite://{}", dir.join("touchpoint.db").display());
        let store = SqliteStore::connect(&url).await.unwrap();
        sqlx::raw_sql(
            "INSERT INTO sources (id, name, write_key, created_at) VALUES (1, 'web', 'wk', 0); \
             INSERT INTO messages (seq, source_id, message_id, dedup_key, kind, anonymous_id, \
               event_time, received_at, plan_version, status, violations, body) VALUES \
               (1, 1, 'm1', 'm1', 'track', 'a-1', 1, 1, '1', 'accepted', '[]', '{\"anonymousId\":\"a-1\"}'), \
               (2, 1, 'm2', 'm2', 'track', 'a-2', 1, 1, '1', 'accepted', '[]', \
                '{\"anonymousId\":\"a-2\",\"properties\":{\"referrer\":\"ann@example.com\"}}'); \
             INSERT INTO profiles (id, created_at) VALUES ('p1', 0), ('p2', 0); \
             INSERT INTO identities (kind, value, profile_id, added_at, seq) VALUES \
               ('anonymous_id', 'a-1', 'p1', 0, 1), ('email', 'ann@example.com', 'p1', 0, 1), \
               ('anonymous_id', 'a-2', 'p2', 0, 2); \
             INSERT INTO profile_messages (seq, profile_id, kind, event_time) VALUES \
               (1, 'p1', 'track', 1), (2, 'p2', 'track', 1)",
        )
        .execute(store.db().pool())
        .await
        .unwrap();
        SqlPrivacy::new(store.db().clone())
    }

    fn request(profile: &ProfileId) -> EraseRequest<'_> {
        EraseRequest {
            profile_id: profile,
            regulation: "r1",
            destinations: &[],
            now: 10,
        }
    }

    #[tokio::test]
    async fn the_log_part_of_an_erasure_commits_alone_and_leaves_the_state_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let privacy = database_with_a_person(dir.path()).await;
        let p1 = ProfileId::from("p1".to_owned());
        let (mut tx, gate) = privacy.pool.begin_write().await.unwrap();
        let mut out = Erased::default();
        SqlitePrivacy::erase_log_in(&mut tx, &request(&p1), &mut out)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        drop(gate);
        // What a crash right after this commit would leave: the log is clean…
        let bodies: Vec<String> = sqlx::query_scalar("SELECT body FROM messages ORDER BY seq")
            .fetch_all(privacy.pool.pool())
            .await
            .unwrap();
        assert_eq!(bodies.len(), 1, "their own message is gone: {bodies:?}");
        assert!(!bodies[0].contains("ann@"), "{bodies:?}");
        assert_eq!((out.deleted, out.rewritten), (1, 1));
        // …and the state says nothing was erased, so asking again does the rest.
        let live: i64 = sqlx::query_scalar("SELECT count(*) FROM profiles WHERE id = 'p1'")
            .fetch_one(privacy.pool.pool())
            .await
            .unwrap();
        assert_eq!(live, 1);
        let erased = privacy.erase(&request(&p1)).await.unwrap().unwrap();
        assert_eq!(erased.profiles, 1);
        let left: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM profiles WHERE id = 'p1') \
             + (SELECT count(*) FROM identities WHERE profile_id = 'p1') \
             + (SELECT count(*) FROM profile_messages WHERE profile_id = 'p1')",
        )
        .fetch_one(privacy.pool.pool())
        .await
        .unwrap();
        assert_eq!(left, 0);
    }

    #[tokio::test]
    async fn an_erasure_on_two_files_reports_what_both_steps_removed() {
        let dir = tempfile::tempdir().unwrap();
        let privacy = database_with_a_person(dir.path()).await;
        let p1 = ProfileId::from("p1".to_owned());
        let erased = privacy.erase(&request(&p1)).await.unwrap().unwrap();
        assert_eq!(erased.rewritten, 1, "{erased:?}");
        assert!(erased.deleted >= 1, "{erased:?}");
        let messages: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
            .fetch_one(privacy.pool.pool())
            .await
            .unwrap();
        assert_eq!(messages, 1);
    }
}
