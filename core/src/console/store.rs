//! Read-only queries of the admin console: contacts of profiles, audience size changes, the
//! audience feed and its activations, messages for the identity graph, tracking-plan health and
//! pipeline throughput. One implementation: every statement is plain SQL that SQLite and
//! PostgreSQL both run (integer division for time buckets, `CAST(… AS TEXT)` for the JSON columns
//! PostgreSQL keeps as JSONB, `$N` placeholders), sent through [`Pool`], the only place the two
//! databases differ.

use crate::identity::ProfileId;
use crate::storage::{Status, StorageError, placeholders};
use futures_util::future::BoxFuture;
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, PgPool, SqlitePool};
use std::collections::BTreeMap;

/// Email and name of a profile, for showing people instead of ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Contact {
    /// The profile.
    pub id: ProfileId,
    /// The `email` trait, else the profile's email identifier.
    pub email: Option<String>,
    /// The `name` trait, else `first_name last_name`.
    pub name: Option<String>,
}

/// Entries and exits of an audience per time bucket, and the size before the first bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SizeChanges {
    /// Members at `from`.
    pub base: i64,
    /// (bucket index, entered) for buckets with entries.
    pub entered: Vec<(i64, i64)>,
    /// (bucket index, exited) for buckets with exits.
    pub exited: Vec<(i64, i64)>,
}

/// One entered/exited event of the feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedRow {
    /// Feed position.
    pub id: i64,
    /// Profile.
    pub profile_id: ProfileId,
    /// `audience_entered` or `audience_exited`.
    pub kind: String,
    /// When (ms).
    pub at: i64,
    /// `message`, `window`, `backfill`, `merge`, `delete`.
    pub reason: String,
}

/// Outbox rows made from one audience's events, by destination and status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivationCount {
    /// Destination.
    pub destination: String,
    /// Outbox status.
    pub status: String,
    /// Rows.
    pub count: i64,
    /// Latest change (ms).
    pub last_at: Option<i64>,
}

/// A stored message, as the identity graph needs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkMessage {
    /// Log position.
    pub seq: i64,
    /// Message type.
    pub kind: String,
    /// Track event name.
    pub event: Option<String>,
    /// messageId.
    pub message_id: String,
    /// Event time (ms).
    pub event_time: i64,
    /// The message.
    pub body: serde_json::Value,
}

/// Messages of one UTC day, type, event and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRow {
    /// Days since the epoch (UTC).
    pub day: i64,
    /// Message type.
    pub kind: String,
    /// Track event name.
    pub event: Option<String>,
    /// The plan verdict.
    pub status: Status,
    /// Messages.
    pub count: i64,
}

/// Messages with violations, grouped by everything the health page breaks them down by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViolationRow {
    /// Source name.
    pub source: String,
    /// Message type.
    pub kind: String,
    /// Track event name.
    pub event: Option<String>,
    /// The plan verdict.
    pub status: Status,
    /// The violations (JSON array text).
    pub violations: String,
    /// Messages.
    pub count: i64,
}

/// Items a source sent that were not messages, by reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRow {
    /// Source name.
    pub source: String,
    /// Why.
    pub reason: String,
    /// Items.
    pub count: i64,
}

/// Delivery-log calls of one destination, bucket and outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeRow {
    /// Destination.
    pub destination: String,
    /// Bucket index from the window start.
    pub bucket: i64,
    /// `success`, `retry`, `partial` or `dead`.
    pub outcome: String,
    /// Calls.
    pub count: i64,
}

/// Where a pipeline cursor stands against the feed it reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CursorLag {
    /// Cursor name.
    pub name: String,
    /// Its position.
    pub position: i64,
    /// The newest position of its feed (the message log, or the audience feed).
    pub head: i64,
    /// Positions behind.
    pub behind: i64,
    /// When the oldest position it has not consumed was written (ms), if any.
    pub oldest_waiting_at: Option<i64>,
}

/// The console's read-only queries.
pub trait ConsoleStore: Send + Sync + 'static {
    /// Email and name of each of these profiles (missing profiles are left out).
    fn contacts<'a>(
        &'a self,
        ids: &'a [ProfileId],
    ) -> BoxFuture<'a, Result<Vec<Contact>, StorageError>>;
    /// When the audience's first member entered (ms), if anyone ever did.
    fn first_entry<'a>(
        &'a self,
        audience: &'a str,
    ) -> BoxFuture<'a, Result<Option<i64>, StorageError>>;
    /// Entries and exits of an audience in buckets of `bucket` ms from `from` to `to`.
    fn size_changes<'a>(
        &'a self,
        audience: &'a str,
        from: i64,
        to: i64,
        bucket: i64,
    ) -> BoxFuture<'a, Result<SizeChanges, StorageError>>;
    /// The audience's entered/exited events: after `after` oldest first, else before `before`
    /// (or the newest) newest first.
    fn feed<'a>(
        &'a self,
        audience: &'a str,
        after: Option<i64>,
        before: Option<i64>,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<FeedRow>, StorageError>>;
    /// Outbox rows made from the audience's events, by destination and status.
    fn activations<'a>(
        &'a self,
        audience: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ActivationCount>, StorageError>>;
    /// The latest delivery error of each destination about the audience's events.
    fn activation_errors<'a>(
        &'a self,
        audience: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, StorageError>>;
    /// Messages by log position.
    fn messages<'a>(
        &'a self,
        seqs: &'a [i64],
    ) -> BoxFuture<'a, Result<Vec<LinkMessage>, StorageError>>;
    /// Message volume per UTC day (by event time) from `from` (ms).
    fn volume(&self, from: i64) -> BoxFuture<'_, Result<Vec<VolumeRow>, StorageError>>;
    /// Messages with violations from `from` (ms, event time), grouped.
    fn violations(&self, from: i64) -> BoxFuture<'_, Result<Vec<ViolationRow>, StorageError>>;
    /// Items rejected outright since `from` (ms, receive time), by source and reason.
    fn rejected(&self, from: i64) -> BoxFuture<'_, Result<Vec<RejectedRow>, StorageError>>;
    /// Messages received per bucket of `bucket` ms from `from` (index, count); reads at most the
    /// newest `scan` messages.
    fn received(
        &self,
        from: i64,
        bucket: i64,
        scan: i64,
    ) -> BoxFuture<'_, Result<Vec<(i64, i64)>, StorageError>>;
    /// Delivery-log calls per destination, bucket of `bucket` ms from `from`, and outcome.
    fn outcomes(
        &self,
        from: i64,
        bucket: i64,
    ) -> BoxFuture<'_, Result<Vec<OutcomeRow>, StorageError>>;
    /// Every pipeline cursor against its feed.
    fn cursors(&self) -> BoxFuture<'_, Result<Vec<CursorLag>, StorageError>>;
}

/// The database behind the console's queries.
#[derive(Debug, Clone)]
pub enum Pool {
    /// SQLite.
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
}

/// A bound parameter.
#[derive(Debug, Clone)]
enum Arg {
    Int(i64),
    Text(String),
}

/// The console's queries over either database.
#[derive(Debug, Clone)]
pub struct SqlConsole {
    pool: Pool,
}

impl SqlConsole {
    /// Wraps a migrated pool.
    pub fn new(pool: Pool) -> SqlConsole {
        SqlConsole { pool }
    }

    async fn fetch<T>(&self, sql: &str, args: &[Arg]) -> Result<Vec<T>, StorageError>
    where
        T: Send + Unpin + for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow>,
    {
        Ok(match &self.pool {
            Pool::Sqlite(pool) => {
                let mut q = sqlx::query_as::<_, T>(sql);
                for a in args {
                    q = match a {
                        Arg::Int(i) => q.bind(*i),
                        Arg::Text(s) => q.bind(s.clone()),
                    };
                }
                q.fetch_all(pool).await?
            }
            Pool::Postgres(pool) => {
                let mut q = sqlx::query_as::<_, T>(sql);
                for a in args {
                    q = match a {
                        Arg::Int(i) => q.bind(*i),
                        Arg::Text(s) => q.bind(s.clone()),
                    };
                }
                q.fetch_all(pool).await?
            }
        })
    }

    async fn count(&self, sql: &str, args: &[Arg]) -> Result<i64, StorageError> {
        let rows: Vec<(Option<i64>,)> = self.fetch(sql, args).await?;
        Ok(rows.first().and_then(|r| r.0).unwrap_or(0))
    }
}

/// Most ids or positions looked up in one statement.
const MAX_LOOKUP: usize = 500;

/// Picks email and name out of trait rows (key, JSON text) and email identifiers.
pub fn contacts_from(
    ids: &[ProfileId],
    traits: &[(ProfileId, String, String)],
    emails: &[(ProfileId, String)],
) -> Vec<Contact> {
    let mut by_id: BTreeMap<&ProfileId, BTreeMap<&str, String>> = BTreeMap::new();
    for (profile, key, value) in traits {
        let text = match serde_json::from_str::<serde_json::Value>(value) {
            Ok(serde_json::Value::String(s)) => s,
            Ok(serde_json::Value::Number(n)) => n.to_string(),
            _ => continue,
        };
        let text = text.trim().to_owned();
        if !text.is_empty() {
            by_id.entry(profile).or_default().insert(key.as_str(), text);
        }
    }
    ids.iter()
        .map(|id| {
            let t = by_id.get(id);
            let get = |k: &str| t.and_then(|t| t.get(k)).cloned();
            let name = get("name").or_else(|| {
                let parts: Vec<String> = [get("first_name"), get("last_name")]
                    .into_iter()
                    .flatten()
                    .collect();
                (!parts.is_empty()).then(|| parts.join(" "))
            });
            let email = get("email")
                .or_else(|| emails.iter().find(|(p, _)| p == id).map(|(_, e)| e.clone()));
            Contact {
                id: id.clone(),
                email,
                name,
            }
        })
        .collect()
}

impl ConsoleStore for SqlConsole {
    fn contacts<'a>(
        &'a self,
        ids: &'a [ProfileId],
    ) -> BoxFuture<'a, Result<Vec<Contact>, StorageError>> {
        Box::pin(async move {
            let ids = &ids[..ids.len().min(MAX_LOOKUP)];
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let args: Vec<Arg> = ids.iter().map(|i| Arg::Text(i.to_string())).collect();
            let list = placeholders(1, ids.len());
            let traits: Vec<(ProfileId, String, String)> = self
                .fetch(
                    &format!(
                        "SELECT profile_id, key, value FROM profile_traits WHERE profile_id IN ({list}) \
                         AND key IN ('email', 'name', 'first_name', 'last_name')"
                    ),
                    &args,
                )
                .await?;
            let emails: Vec<(ProfileId, String)> = self
                .fetch(
                    &format!(
                        "SELECT profile_id, value FROM identities WHERE profile_id IN ({list}) \
                         AND kind = 'email' ORDER BY added_at"
                    ),
                    &args,
                )
                .await?;
            let live: Vec<(ProfileId,)> = self
                .fetch(
                    &format!("SELECT id FROM profiles WHERE id IN ({list})"),
                    &args,
                )
                .await?;
            let live: Vec<ProfileId> = ids
                .iter()
                .filter(|id| live.iter().any(|(l,)| l == *id))
                .cloned()
                .collect();
            Ok(contacts_from(&live, &traits, &emails))
        })
    }

    fn first_entry<'a>(
        &'a self,
        audience: &'a str,
    ) -> BoxFuture<'a, Result<Option<i64>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<(Option<i64>,)> = self
                .fetch(
                    "SELECT MIN(entered_at) FROM audience_history WHERE audience = $1",
                    &[Arg::Text(audience.to_owned())],
                )
                .await?;
            Ok(rows.first().and_then(|r| r.0))
        })
    }

    fn size_changes<'a>(
        &'a self,
        audience: &'a str,
        from: i64,
        to: i64,
        bucket: i64,
    ) -> BoxFuture<'a, Result<SizeChanges, StorageError>> {
        Box::pin(async move {
            let bucket = bucket.max(1);
            let base = self
                .count(
                    "SELECT COUNT(*) FROM audience_history WHERE audience = $1 AND entered_at < $2 \
                     AND (exited_at IS NULL OR exited_at >= $2)",
                    &[Arg::Text(audience.to_owned()), Arg::Int(from)],
                )
                .await?;
            let args = [
                Arg::Text(audience.to_owned()),
                Arg::Int(from),
                Arg::Int(to),
                Arg::Int(bucket),
            ];
            let entered: Vec<(i64, i64)> = self
                .fetch(
                    "SELECT (entered_at - $2) / $4, COUNT(*) FROM audience_history \
                     WHERE audience = $1 AND entered_at >= $2 AND entered_at <= $3 GROUP BY 1 ORDER BY 1",
                    &args,
                )
                .await?;
            let exited: Vec<(i64, i64)> = self
                .fetch(
                    "SELECT (exited_at - $2) / $4, COUNT(*) FROM audience_history \
                     WHERE audience = $1 AND exited_at >= $2 AND exited_at <= $3 GROUP BY 1 ORDER BY 1",
                    &args,
                )
                .await?;
            Ok(SizeChanges {
                base,
                entered,
                exited,
            })
        })
    }

    fn feed<'a>(
        &'a self,
        audience: &'a str,
        after: Option<i64>,
        before: Option<i64>,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<FeedRow>, StorageError>> {
        Box::pin(async move {
            let (sql, position) = match (after, before) {
                (Some(after), _) => (
                    "SELECT id, profile_id, kind, at, reason FROM audience_events \
                     WHERE audience = $1 AND id > $2 ORDER BY id LIMIT $3",
                    after,
                ),
                (None, before) => (
                    "SELECT id, profile_id, kind, at, reason FROM audience_events \
                     WHERE audience = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                    before.unwrap_or(i64::MAX),
                ),
            };
            let rows: Vec<(i64, ProfileId, String, i64, String)> = self
                .fetch(
                    sql,
                    &[
                        Arg::Text(audience.to_owned()),
                        Arg::Int(position),
                        Arg::Int(limit),
                    ],
                )
                .await?;
            Ok(rows
                .into_iter()
                .map(|(id, profile_id, kind, at, reason)| FeedRow {
                    id,
                    profile_id,
                    kind,
                    at,
                    reason,
                })
                .collect())
        })
    }

    fn activations<'a>(
        &'a self,
        audience: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ActivationCount>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<(String, String, i64, Option<i64>)> = self
                .fetch(
                    "SELECT o.destination, o.status, COUNT(*), MAX(o.updated_at) FROM outbox o \
                     JOIN audience_events e ON o.idempotency_key = 'a:' || CAST(e.id AS TEXT) \
                     WHERE e.audience = $1 GROUP BY o.destination, o.status ORDER BY 1, 2",
                    &[Arg::Text(audience.to_owned())],
                )
                .await?;
            Ok(rows
                .into_iter()
                .map(|(destination, status, count, last_at)| ActivationCount {
                    destination,
                    status,
                    count,
                    last_at,
                })
                .collect())
        })
    }

    fn activation_errors<'a>(
        &'a self,
        audience: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<(String, String)> = self
                .fetch(
                    "SELECT o.destination, o.last_error FROM outbox o \
                     JOIN audience_events e ON o.idempotency_key = 'a:' || CAST(e.id AS TEXT) \
                     WHERE e.audience = $1 AND o.last_error IS NOT NULL \
                     ORDER BY o.updated_at DESC, o.id DESC LIMIT 100",
                    &[Arg::Text(audience.to_owned())],
                )
                .await?;
            let mut out = BTreeMap::new();
            for (destination, error) in rows {
                out.entry(destination).or_insert(error);
            }
            Ok(out)
        })
    }

    fn messages<'a>(
        &'a self,
        seqs: &'a [i64],
    ) -> BoxFuture<'a, Result<Vec<LinkMessage>, StorageError>> {
        Box::pin(async move {
            let seqs = &seqs[..seqs.len().min(MAX_LOOKUP)];
            if seqs.is_empty() {
                return Ok(Vec::new());
            }
            let args: Vec<Arg> = seqs.iter().map(|s| Arg::Int(*s)).collect();
            let rows: Vec<(i64, String, Option<String>, String, i64, String)> = self
                .fetch(
                    &format!(
                        "SELECT seq, kind, event, message_id, event_time, CAST(body AS TEXT) \
                         FROM messages WHERE seq IN ({}) ORDER BY seq",
                        placeholders(1, seqs.len())
                    ),
                    &args,
                )
                .await?;
            Ok(rows
                .into_iter()
                .map(
                    |(seq, kind, event, message_id, event_time, body)| LinkMessage {
                        seq,
                        kind,
                        event,
                        message_id,
                        event_time,
                        body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
                    },
                )
                .collect())
        })
    }

    fn volume(&self, from: i64) -> BoxFuture<'_, Result<Vec<VolumeRow>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<(i64, String, Option<String>, String, i64)> = self
                .fetch(
                    "SELECT event_time / 86400000, kind, event, status, COUNT(*) FROM messages \
                     WHERE event_time >= $1 GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
                    &[Arg::Int(from)],
                )
                .await?;
            rows.into_iter()
                .map(|(day, kind, event, status, count)| {
                    Ok(VolumeRow {
                        day,
                        kind,
                        event,
                        status: Status::parse(&status)?,
                        count,
                    })
                })
                .collect()
        })
    }

    fn violations(&self, from: i64) -> BoxFuture<'_, Result<Vec<ViolationRow>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<(String, String, Option<String>, String, String, i64)> = self
                .fetch(
                    "SELECT s.name, m.kind, m.event, m.status, CAST(m.violations AS TEXT), COUNT(*) \
                     FROM messages m JOIN sources s ON s.id = m.source_id \
                     WHERE m.event_time >= $1 AND (m.status <> 'accepted' OR CAST(m.violations AS TEXT) <> '[]') \
                     GROUP BY s.name, m.kind, m.event, m.status, CAST(m.violations AS TEXT)",
                    &[Arg::Int(from)],
                )
                .await?;
            rows.into_iter()
                .map(|(source, kind, event, status, violations, count)| {
                    Ok(ViolationRow {
                        source,
                        kind,
                        event,
                        status: Status::parse(&status)?,
                        violations,
                        count,
                    })
                })
                .collect()
        })
    }

    fn rejected(&self, from: i64) -> BoxFuture<'_, Result<Vec<RejectedRow>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<(String, String, i64)> = self
                .fetch(
                    "SELECT s.name, r.reason, COUNT(*) FROM rejected_messages r \
                     JOIN sources s ON s.id = r.source_id WHERE r.received_at >= $1 \
                     GROUP BY s.name, r.reason ORDER BY 3 DESC LIMIT 200",
                    &[Arg::Int(from)],
                )
                .await?;
            Ok(rows
                .into_iter()
                .map(|(source, reason, count)| RejectedRow {
                    source,
                    reason,
                    count,
                })
                .collect())
        })
    }

    fn received(
        &self,
        from: i64,
        bucket: i64,
        scan: i64,
    ) -> BoxFuture<'_, Result<Vec<(i64, i64)>, StorageError>> {
        Box::pin(async move {
            let head = self.count("SELECT MAX(seq) FROM messages", &[]).await?;
            self.fetch(
                "SELECT (received_at - $1) / $2, COUNT(*) FROM messages \
                 WHERE seq > $3 AND received_at >= $1 GROUP BY 1 ORDER BY 1",
                &[
                    Arg::Int(from),
                    Arg::Int(bucket.max(1)),
                    Arg::Int(head - scan),
                ],
            )
            .await
        })
    }

    fn outcomes(
        &self,
        from: i64,
        bucket: i64,
    ) -> BoxFuture<'_, Result<Vec<OutcomeRow>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<(String, i64, String, i64)> = self
                .fetch(
                    "SELECT destination, (at - $1) / $2, outcome, COUNT(*) FROM delivery_log \
                     WHERE at >= $1 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
                    &[Arg::Int(from), Arg::Int(bucket.max(1))],
                )
                .await?;
            Ok(rows
                .into_iter()
                .map(|(destination, bucket, outcome, count)| OutcomeRow {
                    destination,
                    bucket,
                    outcome,
                    count,
                })
                .collect())
        })
    }

    fn cursors(&self) -> BoxFuture<'_, Result<Vec<CursorLag>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<(String, i64)> = self
                .fetch("SELECT name, seq FROM pipeline_cursors ORDER BY name", &[])
                .await?;
            let log_head = self.count("SELECT MAX(seq) FROM messages", &[]).await?;
            let feed_head = self
                .count("SELECT MAX(id) FROM audience_events", &[])
                .await?;
            let mut out = Vec::new();
            for (name, position) in rows {
                // The destinations' audience cursor reads the audience feed; the others the log.
                let over_feed = name == "destinations_audiences";
                let (head, oldest) = if over_feed {
                    (
                        feed_head,
                        "SELECT MIN(at) FROM audience_events WHERE id = \
                         (SELECT MIN(id) FROM audience_events WHERE id > $1)",
                    )
                } else {
                    (
                        log_head,
                        "SELECT MIN(received_at) FROM messages WHERE seq = \
                         (SELECT MIN(seq) FROM messages WHERE seq > $1)",
                    )
                };
                let oldest_waiting_at = if head > position {
                    let rows: Vec<(Option<i64>,)> =
                        self.fetch(oldest, &[Arg::Int(position)]).await?;
                    rows.first().and_then(|r| r.0)
                } else {
                    None
                };
                out.push(CursorLag {
                    name,
                    position,
                    head,
                    behind: (head - position).max(0),
                    oldest_waiting_at,
                });
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_prefer_traits_then_email_identities_and_skip_blank_values() {
        let ids: Vec<ProfileId> = vec!["p1".into(), "p2".into(), "p3".into()];
        let traits = vec![
            ("p1".into(), "email".into(), "\"ada@acme.example\"".into()),
            ("p1".into(), "name".into(), "\"Ada Lovelace\"".into()),
            ("p2".into(), "first_name".into(), "\"Grace\"".into()),
            ("p2".into(), "last_name".into(), "\"Hopper\"".into()),
            ("p2".into(), "name".into(), "\"  \"".into()),
            ("p3".into(), "name".into(), "{\"not\": \"text\"}".into()),
        ];
        let emails = vec![
            ("p2".into(), "grace@navy.example".into()),
            ("p1".into(), "other@acme.example".into()),
        ];
        let c = contacts_from(&ids, &traits, &emails);
        assert_eq!(c[0].email.as_deref(), Some("ada@acme.example"));
        assert_eq!(c[0].name.as_deref(), Some("Ada Lovelace"));
        assert_eq!(c[1].email.as_deref(), Some("grace@navy.example"));
        assert_eq!(c[1].name.as_deref(), Some("Grace Hopper"));
        assert_eq!(
            c[2],
            Contact {
                id: "p3".into(),
                email: None,
                name: None
            }
        );
    }
}
