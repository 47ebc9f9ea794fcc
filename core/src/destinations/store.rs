//! The outbox repository: the activation stage's transaction, claiming due rows, recording outcomes
//! and the delivery log, replay. One SQL set for both databases (`$N` placeholders work on SQLite
//! too) in one implementation generic over the database; what differs is the database's
//! `DestinationSql` dialect: the claim — PostgreSQL takes rows with `FOR UPDATE SKIP LOCKED` so
//! several core processes never deliver the same row, SQLite (one process) relies on its single
//! writer — and the JSON path test of `latest_consent`.

use super::ActivationKind;
use crate::identity::ProfileId;
use crate::storage::{BeginWrite, Db, Dialect, StorageError};
use futures_util::future::BoxFuture;
use serde::Serialize;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};

/// A message the activation stage reads: processed, not blocked, linked to a profile.
#[derive(Debug, Clone)]
pub struct StageMessage {
    /// Log position.
    pub seq: i64,
    /// messageId.
    pub message_id: String,
    /// Message type.
    pub kind: ActivationKind,
    /// Event time (ms).
    pub event_time: i64,
    /// The message JSON.
    pub body: String,
    /// The (live) profile it belongs to.
    pub profile_id: ProfileId,
}

/// An `audience_events` row.
#[derive(Debug, Clone)]
pub struct AudienceEvent {
    /// Feed position.
    pub id: i64,
    /// Audience id.
    pub audience: String,
    /// Profile.
    pub profile_id: ProfileId,
    /// `audience_entered` or `audience_exited`.
    pub kind: ActivationKind,
    /// When (ms).
    pub at: i64,
}

/// What the stage needs to know about a profile.
#[derive(Debug, Clone, Default)]
pub struct ProfileContext {
    /// Traits as (key, JSON text).
    pub traits: Vec<(String, String)>,
    /// Identities as (kind, value).
    pub identities: Vec<(String, String)>,
    /// groupIds of its accounts.
    pub accounts: Vec<String>,
}

/// What the stage needs to know about an account.
#[derive(Debug, Clone, Default)]
pub struct AccountContext {
    /// Traits as (key, JSON text).
    pub traits: Vec<(String, String)>,
    /// Distinct profiles with a message since the 7-day mark.
    pub active_users_7d: i64,
    /// (event, event_time, message JSON) of the usage events that name features and integrations.
    pub usage: Vec<(String, i64, String)>,
    /// Distinct (type, event) of the account's messages (journey stage).
    pub kinds: Vec<(String, Option<String>)>,
    /// Whether a profile of the account is a member of the PQL audience.
    pub pql_member: bool,
}

/// (destination, status, rows).
pub type StatusCount = (String, String, i64);

/// A member of an audience as a full sync sends it.
#[derive(Debug, Clone)]
pub struct AudienceMember {
    /// The profile.
    pub profile_id: ProfileId,
    /// Identities as (kind, value), newest first.
    pub identities: Vec<(String, String)>,
    /// The JSON of the profile's newest message that collected consent, if any.
    pub latest_consent: Option<String>,
}

/// A new outbox row.
#[derive(Debug, Clone)]
pub struct NewOutbox {
    /// Destination name.
    pub destination: String,
    /// Unique per destination.
    pub key: String,
    /// The activation JSON.
    pub payload: String,
    /// The profile it is about (erasing the profile cancels the row while undelivered).
    pub profile_id: ProfileId,
}

/// A claimed outbox row.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Row id.
    pub id: i64,
    /// Idempotency key.
    pub key: String,
    /// The activation JSON.
    pub payload: String,
    /// Attempts including this one.
    pub attempts: i64,
}

/// What became of a claimed row.
#[derive(Debug, Clone, PartialEq)]
pub enum RowOutcome {
    /// Delivered.
    Delivered,
    /// Due again at `next_at` (ms), with the error.
    Retry {
        /// Next attempt (ms).
        next_at: i64,
        /// The error.
        error: String,
    },
    /// Dead-lettered with the API's message.
    Dead(String),
}

/// One delivery-log entry.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    /// Destination.
    pub destination: String,
    /// Outbox rows carried.
    pub outbox_ids: Vec<i64>,
    /// What was called.
    pub request: String,
    /// HTTP status, if any.
    pub status_code: Option<i64>,
    /// Duration (ms).
    pub duration_ms: i64,
    /// `success`, `retry`, `partial` or `dead`.
    pub outcome: String,
    /// The API's message.
    pub error: Option<String>,
    /// When (ms).
    pub at: i64,
}

/// Where an outbox row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    /// Waiting for its next attempt.
    Pending,
    /// Claimed by a worker (until its lease ends).
    Delivering,
    /// Accepted by the API.
    Delivered,
    /// Refused, or out of attempts: waits for a replay.
    Dead,
}

impl OutboxStatus {
    const ALL: [OutboxStatus; 4] = [
        OutboxStatus::Pending,
        OutboxStatus::Delivering,
        OutboxStatus::Delivered,
        OutboxStatus::Dead,
    ];

    /// The value stored in `outbox.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Delivering => "delivering",
            OutboxStatus::Delivered => "delivered",
            OutboxStatus::Dead => "dead",
        }
    }

    /// Reads `outbox.status`; an unknown value is [`StorageError::Corrupt`].
    pub fn parse(stored: &str) -> Result<OutboxStatus, StorageError> {
        OutboxStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == stored)
            .ok_or_else(|| {
                StorageError::Corrupt(format!(
                    "unknown outbox status {stored:?} (expected pending, delivering, delivered or dead)"
                ))
            })
    }
}

/// An outbox row as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxRow {
    /// Row id.
    pub id: i64,
    /// Idempotency key.
    pub idempotency_key: String,
    /// Status.
    pub status: OutboxStatus,
    /// Attempts so far.
    pub attempts: i64,
    /// Next attempt (ms).
    pub next_attempt_at: i64,
    /// The API's last message.
    pub last_error: Option<String>,
    /// The activation.
    pub payload: serde_json::Value,
}

/// The activation stage's transaction (holds its cursor lock until commit).
pub trait StageTx: Send {
    /// Locks a cursor row; returns its position.
    fn lock_cursor<'a>(&'a mut self, name: &'a str) -> BoxFuture<'a, Result<i64, StorageError>>;
    /// Another stage's position (read only).
    fn cursor<'a>(&'a mut self, name: &'a str) -> BoxFuture<'a, Result<i64, StorageError>>;
    /// Processed, non-blocked, profile-linked messages with `after < seq <= upto`, in log order.
    fn messages(
        &mut self,
        after: i64,
        upto: i64,
        limit: i64,
    ) -> BoxFuture<'_, Result<Vec<StageMessage>, StorageError>>;
    /// Audience events after `after`, in feed order.
    fn audience_events(
        &mut self,
        after: i64,
        limit: i64,
    ) -> BoxFuture<'_, Result<Vec<AudienceEvent>, StorageError>>;
    /// The live profile a (possibly merged) profile id ended in.
    fn live_profile<'a>(
        &'a mut self,
        id: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Option<ProfileId>, StorageError>>;
    /// Traits, identities and accounts of a profile.
    fn profile<'a>(
        &'a mut self,
        id: &'a ProfileId,
    ) -> BoxFuture<'a, Result<ProfileContext, StorageError>>;
    /// Usage figures of an account since `since_7d` (ms).
    fn account<'a>(
        &'a mut self,
        group_id: &'a str,
        since_7d: i64,
        pql_audience: &'a str,
        usage_events: [&'a str; 3],
    ) -> BoxFuture<'a, Result<AccountContext, StorageError>>;
    /// The JSON of the profile's newest message (by event time, then log position) whose
    /// `context.consent.categoryPreferences` is present and not null; `None` if there is none.
    fn latest_consent<'a>(
        &'a mut self,
        profile_id: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Option<String>, StorageError>>;
    /// Event times (ms) of the profile's page, screen and track messages before (`event_time`,
    /// `seq`) and not before `since`, newest first, at most `limit` (what a visit is derived from).
    fn activity_before<'a>(
        &'a mut self,
        profile_id: &'a ProfileId,
        event_time: i64,
        seq: i64,
        since: i64,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<i64>, StorageError>>;
    /// Inserts outbox rows (a repeated key is ignored); returns how many were new.
    fn enqueue<'a>(
        &'a mut self,
        rows: &'a [NewOutbox],
        now: i64,
    ) -> BoxFuture<'a, Result<u64, StorageError>>;
    /// Moves the cursor and commits.
    fn commit(
        self: Box<Self>,
        name: String,
        seq: i64,
    ) -> BoxFuture<'static, Result<(), StorageError>>;
}

/// The outbox and delivery log.
pub trait DestinationStore: Send + Sync + 'static {
    /// Starts an activation-stage transaction.
    fn begin(&self) -> BoxFuture<'_, Result<Box<dyn StageTx>, StorageError>>;
    /// Claims up to `limit` due rows of a destination until `lease_until` (ms).
    fn claim<'a>(
        &'a self,
        destination: &'a str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<Claimed>, StorageError>>;
    /// Records outcomes — (row id, the attempt number it was claimed with, outcome) — and the calls
    /// made, in one transaction. A row whose lease expired and was claimed again meanwhile is left
    /// to its new owner.
    fn finish<'a>(
        &'a self,
        outcomes: &'a [(i64, i64, RowOutcome)],
        log: &'a [LogEntry],
        now: i64,
    ) -> BoxFuture<'a, Result<(), StorageError>>;
    /// (destination, status, rows) for every destination with rows.
    fn counts(&self) -> BoxFuture<'_, Result<Vec<StatusCount>, StorageError>>;
    /// Newest delivery-log entries of a destination.
    fn log<'a>(
        &'a self,
        destination: &'a str,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<LogEntry>, StorageError>>;
    /// Newest outbox rows of a destination with a status.
    fn rows<'a>(
        &'a self,
        destination: &'a str,
        status: OutboxStatus,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<OutboxRow>, StorageError>>;
    /// Makes a destination's dead letters due again (attempts reset); returns how many.
    fn replay<'a>(
        &'a self,
        destination: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<u64, StorageError>>;
    /// How many profiles are members of an audience now.
    fn audience_size<'a>(&'a self, audience: &'a str) -> BoxFuture<'a, Result<i64, StorageError>>;
    /// Members of an audience with a profile id after `after` (`None`: from the first), in
    /// profile id order, at most `limit`, with their identities and latest consent (a full sync
    /// pages through them).
    fn audience_members<'a>(
        &'a self,
        audience: &'a str,
        after: Option<&'a ProfileId>,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<AudienceMember>, StorageError>>;
}

const CLAIM_PG: &str = "UPDATE outbox SET status = 'delivering', attempts = attempts + 1, \
     next_attempt_at = $3, updated_at = $2 WHERE id IN (SELECT id FROM outbox \
     WHERE destination = $1 AND status IN ('pending', 'delivering') AND next_attempt_at <= $2 \
     ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED) \
     RETURNING id, idempotency_key, payload, attempts";

const CLAIM_SQLITE: &str = "UPDATE outbox SET status = 'delivering', attempts = attempts + 1, \
     next_attempt_at = $3, updated_at = $2 WHERE id IN (SELECT id FROM outbox \
     WHERE destination = $1 AND status IN ('pending', 'delivering') AND next_attempt_at <= $2 \
     ORDER BY id LIMIT $4) \
     RETURNING id, idempotency_key, payload, attempts";

/// `latest_consent`: the JSON path test is the one dialect difference (PostgreSQL stores bodies as
/// JSONB; SQLite as text, checked with `json_valid` first so a bad body never fails the stage).
const LATEST_CONSENT_PG: &str = "SELECT CAST(m.body AS TEXT) FROM profile_messages pm \
     JOIN messages m ON m.seq = pm.seq WHERE pm.profile_id = $1 \
     AND COALESCE(jsonb_typeof(m.body #> '{context,consent,categoryPreferences}'), 'null') <> 'null' \
     ORDER BY pm.event_time DESC, pm.seq DESC LIMIT 1";

const LATEST_CONSENT_SQLITE: &str = "SELECT CAST(m.body AS TEXT) FROM profile_messages pm \
     JOIN messages m ON m.seq = pm.seq WHERE pm.profile_id = $1 \
     AND COALESCE(CASE WHEN json_valid(m.body) \
     THEN json_type(m.body, '$.context.consent.categoryPreferences') END, 'null') <> 'null' \
     ORDER BY pm.event_time DESC, pm.seq DESC LIMIT 1";

/// The SQL that differs between the databases the outbox runs on.
trait DestinationSql: Database {
    /// Claims due rows: destination $1, now $2, lease end $3, limit $4.
    const CLAIM: &'static str;
    /// The newest message of profile $1 that collected consent.
    const LATEST_CONSENT: &'static str;
}

impl DestinationSql for sqlx::Sqlite {
    const CLAIM: &'static str = CLAIM_SQLITE;
    const LATEST_CONSENT: &'static str = LATEST_CONSENT_SQLITE;
}

impl DestinationSql for sqlx::Postgres {
    const CLAIM: &'static str = CLAIM_PG;
    const LATEST_CONSENT: &'static str = LATEST_CONSENT_PG;
}

fn json_or_null(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or(serde_json::Value::Null)
}

/// [`DestinationStore`] over a migrated SQLite or PostgreSQL pool.
#[derive(Clone, Debug)]
pub struct SqlDestinations<DB: Database> {
    pool: Db<DB>,
}

impl<DB: Database> SqlDestinations<DB> {
    /// Wraps a migrated pool.
    pub fn new(pool: Db<DB>) -> Self {
        SqlDestinations { pool }
    }
}

/// SQLite's outbox repository.
pub type SqliteDestinations = SqlDestinations<sqlx::Sqlite>;
/// PostgreSQL's outbox repository.
pub type PgDestinations = SqlDestinations<sqlx::Postgres>;

/// An activation-stage transaction.
pub struct SqlStageTx<DB: Database> {
    tx: sqlx::Transaction<'static, DB>,
    /// SQLite's in-process write gate, held until the transaction ends.
    _gate: crate::storage::Gate,
}

/// An activation-stage transaction on SQLite.
pub type SqliteStageTx = SqlStageTx<sqlx::Sqlite>;
/// An activation-stage transaction on PostgreSQL.
pub type PgStageTx = SqlStageTx<sqlx::Postgres>;

impl<DB> StageTx for SqlStageTx<DB>
where
    DB: DestinationSql,
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
    DB: Dialect,
{
    fn lock_cursor<'a>(&'a mut self, name: &'a str) -> BoxFuture<'a, Result<i64, StorageError>> {
        Box::pin(async move {
            Ok(sqlx::query_scalar(
                "UPDATE pipeline_cursors SET seq = seq WHERE name = $1 RETURNING seq",
            )
            .bind(name)
            .fetch_one(&mut *self.tx)
            .await?)
        })
    }

    fn cursor<'a>(&'a mut self, name: &'a str) -> BoxFuture<'a, Result<i64, StorageError>> {
        Box::pin(async move {
            Ok(
                sqlx::query_scalar::<_, i64>("SELECT seq FROM pipeline_cursors WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut *self.tx)
                    .await?
                    .unwrap_or(0),
            )
        })
    }

    fn messages(
        &mut self,
        after: i64,
        upto: i64,
        limit: i64,
    ) -> BoxFuture<'_, Result<Vec<StageMessage>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<(i64, String, String, i64, String, ProfileId)> = sqlx::query_as(
                "SELECT m.seq, m.message_id, m.kind, m.event_time, CAST(m.body AS TEXT), pm.profile_id \
                 FROM messages m JOIN profile_messages pm ON pm.seq = m.seq \
                 WHERE m.seq > $1 AND m.seq <= $2 AND m.status <> 'blocked' ORDER BY m.seq LIMIT $3",
            )
            .bind(after)
            .bind(upto)
            .bind(limit)
            .fetch_all(&mut *self.tx)
            .await?;
            rows.into_iter()
                .map(|(seq, message_id, kind, event_time, body, profile_id)| {
                    Ok(StageMessage {
                        seq,
                        message_id,
                        kind: ActivationKind::parse(&kind)?,
                        event_time,
                        body,
                        profile_id,
                    })
                })
                .collect()
        })
    }

    fn audience_events(
        &mut self,
        after: i64,
        limit: i64,
    ) -> BoxFuture<'_, Result<Vec<AudienceEvent>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<(i64, String, ProfileId, String, i64)> = sqlx::query_as(
                "SELECT id, audience, profile_id, kind, at FROM audience_events \
                 WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(&mut *self.tx)
            .await?;
            rows.into_iter()
                .map(|(id, audience, profile_id, kind, at)| {
                    Ok(AudienceEvent {
                        id,
                        audience,
                        profile_id,
                        kind: ActivationKind::parse(&kind)?,
                        at,
                    })
                })
                .collect()
        })
    }

    fn live_profile<'a>(
        &'a mut self,
        id: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Option<ProfileId>, StorageError>> {
        Box::pin(async move {
            let mut current = id.clone();
            for _ in 0..64 {
                let row: Option<(ProfileId, Option<ProfileId>)> =
                    sqlx::query_as("SELECT id, merged_into FROM profiles WHERE id = $1")
                        .bind(&current)
                        .fetch_optional(&mut *self.tx)
                        .await?;
                match row {
                    None => return Ok(None),
                    Some((_, None)) => return Ok(Some(current)),
                    Some((_, Some(next))) => current = next,
                }
            }
            Ok(None)
        })
    }

    fn profile<'a>(
        &'a mut self,
        id: &'a ProfileId,
    ) -> BoxFuture<'a, Result<ProfileContext, StorageError>> {
        Box::pin(async move {
            let traits: Vec<(String, String)> = sqlx::query_as(
                "SELECT key, value FROM profile_traits WHERE profile_id = $1 ORDER BY key",
            )
            .bind(id)
            .fetch_all(&mut *self.tx)
            .await?;
            let identities: Vec<(String, String)> = sqlx::query_as(
                "SELECT kind, value FROM identities WHERE profile_id = $1 ORDER BY added_at DESC, kind, value",
            )
            .bind(id)
            .fetch_all(&mut *self.tx)
            .await?;
            let accounts: Vec<String> = sqlx::query_scalar(
                "SELECT group_id FROM profile_accounts WHERE profile_id = $1 ORDER BY group_id",
            )
            .bind(id)
            .fetch_all(&mut *self.tx)
            .await?;
            Ok(ProfileContext {
                traits,
                identities,
                accounts,
            })
        })
    }

    fn account<'a>(
        &'a mut self,
        group_id: &'a str,
        since_7d: i64,
        pql_audience: &'a str,
        usage_events: [&'a str; 3],
    ) -> BoxFuture<'a, Result<AccountContext, StorageError>> {
        Box::pin(async move {
            let traits: Vec<(String, String)> = sqlx::query_as(
                "SELECT key, value FROM account_traits WHERE group_id = $1 ORDER BY key",
            )
            .bind(group_id)
            .fetch_all(&mut *self.tx)
            .await?;
            let active_users_7d: i64 = sqlx::query_scalar(
                "SELECT COUNT(DISTINCT pm.profile_id) FROM profile_messages pm \
                 JOIN profile_accounts pa ON pa.profile_id = pm.profile_id \
                 WHERE pa.group_id = $1 AND pm.event_time >= $2",
            )
            .bind(group_id)
            .bind(since_7d)
            .fetch_one(&mut *self.tx)
            .await?;
            let usage: Vec<(String, i64, String)> = sqlx::query_as(
                "SELECT pm.event, pm.event_time, CAST(m.body AS TEXT) FROM profile_messages pm \
                 JOIN profile_accounts pa ON pa.profile_id = pm.profile_id \
                 JOIN messages m ON m.seq = pm.seq \
                 WHERE pa.group_id = $1 AND pm.kind = 'track' \
                 AND pm.event IN ($2, $3, $4) \
                 ORDER BY pm.seq DESC LIMIT 500",
            )
            .bind(group_id)
            .bind(usage_events[0])
            .bind(usage_events[1])
            .bind(usage_events[2])
            .fetch_all(&mut *self.tx)
            .await?;
            let kinds: Vec<(String, Option<String>)> = sqlx::query_as(
                "SELECT DISTINCT pm.kind, pm.event FROM profile_messages pm \
                 JOIN profile_accounts pa ON pa.profile_id = pm.profile_id WHERE pa.group_id = $1",
            )
            .bind(group_id)
            .fetch_all(&mut *self.tx)
            .await?;
            let members: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM audience_members am \
                 JOIN profile_accounts pa ON pa.profile_id = am.profile_id \
                 WHERE pa.group_id = $1 AND am.audience = $2",
            )
            .bind(group_id)
            .bind(pql_audience)
            .fetch_one(&mut *self.tx)
            .await?;
            Ok(AccountContext {
                traits,
                active_users_7d,
                usage,
                kinds,
                pql_member: members > 0,
            })
        })
    }

    fn latest_consent<'a>(
        &'a mut self,
        profile_id: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Option<String>, StorageError>> {
        Box::pin(async move {
            Ok(sqlx::query_scalar(DB::LATEST_CONSENT)
                .bind(profile_id)
                .fetch_optional(&mut *self.tx)
                .await?)
        })
    }

    fn activity_before<'a>(
        &'a mut self,
        profile_id: &'a ProfileId,
        event_time: i64,
        seq: i64,
        since: i64,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<i64>, StorageError>> {
        Box::pin(async move {
            Ok(sqlx::query_scalar(
                "SELECT event_time FROM profile_messages WHERE profile_id = $1 \
                 AND kind IN ('page', 'screen', 'track') AND event_time >= $2 \
                 AND (event_time < $3 OR (event_time = $3 AND seq < $4)) \
                 ORDER BY event_time DESC, seq DESC LIMIT $5",
            )
            .bind(profile_id)
            .bind(since)
            .bind(event_time)
            .bind(seq)
            .bind(limit)
            .fetch_all(&mut *self.tx)
            .await?)
        })
    }

    fn enqueue<'a>(
        &'a mut self,
        rows: &'a [NewOutbox],
        now: i64,
    ) -> BoxFuture<'a, Result<u64, StorageError>> {
        Box::pin(async move {
            let mut added = 0;
            for r in rows {
                added += sqlx::query(
                    "INSERT INTO outbox (destination, idempotency_key, payload, status, attempts, \
                     next_attempt_at, created_at, updated_at, profile_id) \
                     VALUES ($1, $2, $3, 'pending', 0, $4, $4, $4, $5) \
                     ON CONFLICT (destination, idempotency_key) DO NOTHING",
                )
                .bind(&r.destination)
                .bind(&r.key)
                .bind(&r.payload)
                .bind(now)
                .bind(&r.profile_id)
                .execute(&mut *self.tx)
                .await
                .map(|r| DB::rows_affected(&r))?;
            }
            Ok(added)
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

impl<DB> DestinationStore for SqlDestinations<DB>
where
    DB: DestinationSql,
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
    DB: Dialect,
{
    fn begin(&self) -> BoxFuture<'_, Result<Box<dyn StageTx>, StorageError>> {
        Box::pin(async move {
            let (tx, gate) = self.pool.begin_state_write().await?;
            Ok(Box::new(SqlStageTx { tx, _gate: gate }) as Box<dyn StageTx>)
        })
    }

    fn claim<'a>(
        &'a self,
        destination: &'a str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<Claimed>, StorageError>> {
        Box::pin(async move {
            // A claim writes: on SQLite it must queue on the write gate like every writer, or it
            // meets SQLite's busy handler (sleeps of up to 100 ms) behind the stages.
            let (mut tx, _gate) = self.pool.begin_state_write().await?;
            let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(DB::CLAIM)
                .bind(destination)
                .bind(now)
                .bind(lease_until)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            let mut out: Vec<Claimed> = rows
                .into_iter()
                .map(|(id, key, payload, attempts)| Claimed {
                    id,
                    key,
                    payload,
                    attempts,
                })
                .collect();
            out.sort_by_key(|c| c.id);
            Ok(out)
        })
    }

    fn finish<'a>(
        &'a self,
        outcomes: &'a [(i64, i64, RowOutcome)],
        log: &'a [LogEntry],
        now: i64,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let (mut tx, _gate) = self.pool.begin_state_write().await?;
            for (id, attempts, outcome) in outcomes {
                let (status, next_at, error) = match outcome {
                    RowOutcome::Delivered => (OutboxStatus::Delivered.as_str(), now, None),
                    RowOutcome::Retry { next_at, error } => (
                        OutboxStatus::Pending.as_str(),
                        *next_at,
                        Some(error.as_str()),
                    ),
                    RowOutcome::Dead(e) => (OutboxStatus::Dead.as_str(), now, Some(e.as_str())),
                };
                sqlx::query(
                    "UPDATE outbox SET status = $1, next_attempt_at = $2, \
                     last_error = COALESCE($3, last_error), updated_at = $4 \
                     WHERE id = $5 AND status = 'delivering' AND attempts = $6",
                )
                .bind(status)
                .bind(next_at)
                .bind(error)
                .bind(now)
                .bind(id)
                .bind(attempts)
                .execute(&mut *tx)
                .await?;
            }
            for e in log {
                sqlx::query(
                    "INSERT INTO delivery_log (destination, outbox_ids, request, status_code, \
                     duration_ms, outcome, error, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&e.destination)
                .bind(serde_json::to_string(&e.outbox_ids)?)
                .bind(&e.request)
                .bind(e.status_code)
                .bind(e.duration_ms)
                .bind(&e.outcome)
                .bind(&e.error)
                .bind(e.at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn counts(&self) -> BoxFuture<'_, Result<Vec<StatusCount>, StorageError>> {
        Box::pin(async move {
            Ok(sqlx::query_as(
                "SELECT destination, status, COUNT(*) FROM outbox GROUP BY destination, status \
                 ORDER BY destination, status",
            )
            .fetch_all(&self.pool)
            .await?)
        })
    }

    fn log<'a>(
        &'a self,
        destination: &'a str,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<LogEntry>, StorageError>> {
        Box::pin(async move {
            #[allow(clippy::type_complexity)]
            let rows: Vec<(String, String, String, Option<i64>, i64, String, Option<String>, i64)> =
                sqlx::query_as(
                    "SELECT destination, outbox_ids, request, status_code, duration_ms, outcome, error, at \
                     FROM delivery_log WHERE destination = $1 ORDER BY id DESC LIMIT $2",
                )
                .bind(destination)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
            Ok(rows
                .into_iter()
                .map(
                    |(destination, ids, request, status_code, duration_ms, outcome, error, at)| {
                        LogEntry {
                            destination,
                            outbox_ids: serde_json::from_str(&ids).unwrap_or_default(),
                            request,
                            status_code,
                            duration_ms,
                            outcome,
                            error,
                            at,
                        }
                    },
                )
                .collect())
        })
    }

    fn rows<'a>(
        &'a self,
        destination: &'a str,
        status: OutboxStatus,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<OutboxRow>, StorageError>> {
        Box::pin(async move {
            #[allow(clippy::type_complexity)]
            let rows: Vec<(i64, String, String, i64, i64, Option<String>, String)> = sqlx::query_as(
                "SELECT id, idempotency_key, status, attempts, next_attempt_at, last_error, payload \
                 FROM outbox WHERE destination = $1 AND status = $2 ORDER BY id DESC LIMIT $3",
            )
            .bind(destination)
            .bind(status.as_str())
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter()
                .map(
                    |(
                        id,
                        idempotency_key,
                        status,
                        attempts,
                        next_attempt_at,
                        last_error,
                        payload,
                    )| {
                        Ok(OutboxRow {
                            id,
                            idempotency_key,
                            status: OutboxStatus::parse(&status)?,
                            attempts,
                            next_attempt_at,
                            last_error,
                            payload: json_or_null(&payload),
                        })
                    },
                )
                .collect()
        })
    }

    fn replay<'a>(
        &'a self,
        destination: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<u64, StorageError>> {
        Box::pin(async move {
            Ok(sqlx::query(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = $2, updated_at = $2 \
                 WHERE destination = $1 AND status = 'dead'",
            )
            .bind(destination)
            .bind(now)
            .execute(&self.pool)
            .await
            .map(|r| DB::rows_affected(&r))?)
        })
    }

    fn audience_size<'a>(&'a self, audience: &'a str) -> BoxFuture<'a, Result<i64, StorageError>> {
        Box::pin(async move {
            Ok(
                sqlx::query_scalar("SELECT COUNT(*) FROM audience_members WHERE audience = $1")
                    .bind(audience)
                    .fetch_one(&self.pool)
                    .await?,
            )
        })
    }

    fn audience_members<'a>(
        &'a self,
        audience: &'a str,
        after: Option<&'a ProfileId>,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<AudienceMember>, StorageError>> {
        Box::pin(async move {
            let ids: Vec<ProfileId> = sqlx::query_scalar(
                "SELECT profile_id FROM audience_members WHERE audience = $1 AND profile_id > $2 \
                 ORDER BY profile_id LIMIT $3",
            )
            .bind(audience)
            // Every id sorts after the empty string.
            .bind(after.map_or("", ProfileId::as_str))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            let mut out = Vec::with_capacity(ids.len());
            for profile_id in ids {
                let identities: Vec<(String, String)> = sqlx::query_as(
                    "SELECT kind, value FROM identities WHERE profile_id = $1 \
                     ORDER BY added_at DESC, kind, value",
                )
                .bind(&profile_id)
                .fetch_all(&self.pool)
                .await?;
                let latest_consent: Option<String> = sqlx::query_scalar(DB::LATEST_CONSENT)
                    .bind(&profile_id)
                    .fetch_optional(&self.pool)
                    .await?;
                out.push(AudienceMember {
                    profile_id,
                    identities,
                    latest_consent,
                });
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::OutboxStatus;

    #[test]
    fn every_outbox_status_reads_back_from_its_stored_name() {
        for s in OutboxStatus::ALL {
            assert_eq!(OutboxStatus::parse(s.as_str()).unwrap(), s);
        }
    }

    #[test]
    fn an_unknown_stored_outbox_status_is_a_clear_error() {
        let e = OutboxStatus::parse("sent").unwrap_err().to_string();
        assert!(e.contains("unknown outbox status \"sent\""), "{e}");
    }
}
