//! The backend API's repository: API tokens (hashed) and the paged reads the read API needs beyond
//! the profile and audience repositories (filtered event pages, member pages, accounts, metadata).
//! One implementation generic over the database (`$N` placeholders work on SQLite and PostgreSQL;
//! nothing here differs between them); SQLite writes go through the file's write gate.

use super::tokens::Scope;
use crate::identity::ProfileId;
use crate::storage::{BeginWrite, Db, Dialect, Statement, StorageError};
use futures_util::future::BoxFuture;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};

/// A token as stored (never the token itself: only its hash is kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    /// Id (for revocation; also the rate-limit key).
    pub id: i64,
    /// What it is for, e.g. `personalisation/production`.
    pub name: String,
    /// Scopes granted (unknown stored names are dropped).
    pub scopes: Vec<Scope>,
    /// The token's first characters, to tell tokens apart.
    pub prefix: String,
    /// Created (ms).
    pub created_at: i64,
    /// Last used (ms), written at most once a minute.
    pub last_used_at: Option<i64>,
    /// Revoked (ms), if it is.
    pub revoked_at: Option<i64>,
}

/// A token to store.
#[derive(Debug, Clone)]
pub struct NewToken<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its scopes.
    pub scopes: &'a [Scope],
    /// Lowercase hex SHA-256 of the token.
    pub hash: &'a str,
    /// The token's first characters.
    pub prefix: &'a str,
    /// Now (ms).
    pub at: i64,
}

/// Which of a profile's messages to read, one page at a time.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Resume strictly after this (event time, seq) in the page order.
    pub after: Option<(i64, i64)>,
    /// Oldest first (default newest first).
    pub ascending: bool,
    /// Event time at or after (ms).
    pub start: Option<i64>,
    /// Event time strictly before (ms).
    pub end: Option<i64>,
    /// Only these event names (empty: any): track events by name, page and screen views as
    /// `Page Viewed` and `Screen Viewed`.
    pub events: Vec<String>,
    /// Never these event names (same names as `events`).
    pub exclude: Vec<String>,
    /// Only these message types (empty: any).
    pub kinds: Vec<String>,
    /// Page size.
    pub limit: i64,
}

/// One message of a profile, with where it came from.
#[derive(Debug, Clone)]
pub struct EventRow {
    /// Log position.
    pub seq: i64,
    /// Event time (ms).
    pub event_time: i64,
    /// Message type.
    pub kind: String,
    /// Track event name.
    pub event: Option<String>,
    /// messageId.
    pub message_id: String,
    /// The source's name.
    pub source: Option<String>,
    /// The stored message.
    pub body: serde_json::Value,
}

/// A trait with the source of the message that set it.
#[derive(Debug, Clone)]
pub struct SourcedTrait {
    /// Name.
    pub key: String,
    /// Value.
    pub value: serde_json::Value,
    /// Event time of the write (ms).
    pub updated_at: i64,
    /// The source's name.
    pub source: Option<String>,
}

/// An identifier of a profile, with the message that brought it.
#[derive(Debug, Clone)]
pub struct ExternalIdRow {
    /// Kind.
    pub kind: String,
    /// Value.
    pub value: String,
    /// Attached (ms).
    pub added_at: i64,
    /// messageId of the message that brought it.
    pub message_id: Option<String>,
    /// Its source's name.
    pub source: Option<String>,
}

/// First and last message of a profile.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    /// messageId and source of the first message.
    pub first: Option<(String, Option<String>)>,
    /// messageId and source of the last message.
    pub last: Option<(String, Option<String>)>,
    /// Latest event time (ms).
    pub last_event_time: Option<i64>,
}

/// An identifier of a profile: (profile, kind, value).
pub type ProfileIdentity = (ProfileId, String, String);

/// An account trait: (key, value, updated_at).
pub type AccountTrait = (String, serde_json::Value, i64);

/// An event row as read: seq, event time, type, event, messageId, source, body.
type EventTuple = (
    i64,
    i64,
    String,
    Option<String>,
    String,
    Option<String>,
    String,
);

/// An identifier row as read: kind, value, added_at, messageId, source.
type ExternalIdTuple = (String, String, i64, Option<String>, Option<String>);

/// Tokens and the read API's queries.
pub trait ApiStore: Send + Sync + 'static {
    /// Stores a new token.
    fn create_token<'a>(
        &'a self,
        token: &'a NewToken<'a>,
    ) -> BoxFuture<'a, Result<TokenRow, StorageError>>;
    /// Every token, newest first.
    fn tokens(&self) -> BoxFuture<'_, Result<Vec<TokenRow>, StorageError>>;
    /// The token with this hash (revoked or not).
    fn token_by_hash<'a>(
        &'a self,
        hash: &'a str,
    ) -> BoxFuture<'a, Result<Option<TokenRow>, StorageError>>;
    /// Revokes a token; false when there is no such unrevoked token.
    fn revoke_token(&self, id: i64, at: i64) -> BoxFuture<'_, Result<bool, StorageError>>;
    /// Records that the token was used at `at`.
    fn touch_token(&self, id: i64, at: i64) -> BoxFuture<'_, Result<(), StorageError>>;
    /// A page of a profile's messages.
    fn events<'a>(
        &'a self,
        profile: &'a ProfileId,
        query: &'a EventQuery,
    ) -> BoxFuture<'a, Result<Vec<EventRow>, StorageError>>;
    /// A profile's traits with their sources, by name.
    fn sourced_traits<'a>(
        &'a self,
        profile: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Vec<SourcedTrait>, StorageError>>;
    /// A profile's identifiers by kind and value.
    fn external_ids<'a>(
        &'a self,
        profile: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Vec<ExternalIdRow>, StorageError>>;
    /// A profile's first and last message.
    fn metadata<'a>(
        &'a self,
        profile: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Metadata, StorageError>>;
    /// Current members of an audience with profile id > `after` (`None`: from the first), by
    /// profile id: (id, entered_at).
    fn members_page<'a>(
        &'a self,
        audience: &'a str,
        after: Option<&'a ProfileId>,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<(ProfileId, i64)>, StorageError>>;
    /// When the profile entered the audience, if it is a member now.
    fn membership<'a>(
        &'a self,
        audience: &'a str,
        profile: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Option<i64>, StorageError>>;
    /// Identifiers of these profiles: (profile, kind, value), by profile, kind and value.
    fn identities_of<'a>(
        &'a self,
        profiles: &'a [ProfileId],
    ) -> BoxFuture<'a, Result<Vec<ProfileIdentity>, StorageError>>;
    /// An account's traits: (key, value, updated_at), by key.
    fn account_traits<'a>(
        &'a self,
        group_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<AccountTrait>, StorageError>>;
    /// Profiles of an account with id > `after` (`None`: from the first), by id, and the
    /// account's member count.
    fn account_members<'a>(
        &'a self,
        group_id: &'a str,
        after: Option<&'a ProfileId>,
        limit: i64,
    ) -> BoxFuture<'a, Result<(Vec<ProfileId>, i64), StorageError>>;
}

/// A message's event name for filters: the track event, or `Page Viewed` / `Screen Viewed`.
const EVENT_NAME: &str = "(CASE pm.kind WHEN 'page' THEN 'Page Viewed' \
    WHEN 'screen' THEN 'Screen Viewed' ELSE pm.event END)";

const TOKEN_COLUMNS: &str =
    "id, name, scopes, prefix, created_at, last_used_at, revoked_at FROM api_tokens";

type TokenTuple = (i64, String, String, String, i64, Option<i64>, Option<i64>);

fn token_row(r: TokenTuple) -> TokenRow {
    TokenRow {
        id: r.0,
        name: r.1,
        scopes: Scope::parse_list(&r.2).unwrap_or_default(),
        prefix: r.3,
        created_at: r.4,
        last_used_at: r.5,
        revoked_at: r.6,
    }
}

fn json_or_string(text: String) -> serde_json::Value {
    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
}

/// [`ApiStore`] over a migrated SQLite or PostgreSQL pool.
#[derive(Clone, Debug)]
pub struct SqlApiStore<DB: Database> {
    pool: Db<DB>,
}

impl<DB: Database> SqlApiStore<DB> {
    /// Wraps a migrated pool.
    pub fn new(pool: Db<DB>) -> Self {
        SqlApiStore { pool }
    }
}

/// SQLite's backend API store.
pub type SqliteApiStore = SqlApiStore<sqlx::Sqlite>;
/// PostgreSQL's backend API store.
pub type PgApiStore = SqlApiStore<sqlx::Postgres>;

impl<DB> ApiStore for SqlApiStore<DB>
where
    DB: Database,
    Db<DB>: BeginWrite<Db = DB>,
    for<'c> &'c Db<DB>: Executor<'c, Database = DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    String: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    Option<String>: Type<DB> + for<'r> Decode<'r, DB>,
    i64: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
    Option<i64>: Type<DB> + for<'r> Decode<'r, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB>,
    DB: Dialect,
{
    fn create_token<'a>(
        &'a self,
        t: &'a NewToken<'a>,
    ) -> BoxFuture<'a, Result<TokenRow, StorageError>> {
        Box::pin(async move {
            let (mut tx, _gate) = self.pool.begin_state_write().await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO api_tokens (name, scopes, token_hash, prefix, created_at) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(t.name)
            .bind(Scope::join(t.scopes))
            .bind(t.hash)
            .bind(t.prefix)
            .bind(t.at)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(TokenRow {
                id,
                name: t.name.to_owned(),
                scopes: t.scopes.to_vec(),
                prefix: t.prefix.to_owned(),
                created_at: t.at,
                last_used_at: None,
                revoked_at: None,
            })
        })
    }

    fn tokens(&self) -> BoxFuture<'_, Result<Vec<TokenRow>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<TokenTuple> =
                sqlx::query_as(&format!("SELECT {TOKEN_COLUMNS} ORDER BY id DESC"))
                    .fetch_all(&self.pool)
                    .await?;
            Ok(rows.into_iter().map(token_row).collect())
        })
    }

    fn token_by_hash<'a>(
        &'a self,
        hash: &'a str,
    ) -> BoxFuture<'a, Result<Option<TokenRow>, StorageError>> {
        Box::pin(async move {
            let row: Option<TokenTuple> =
                sqlx::query_as(&format!("SELECT {TOKEN_COLUMNS} WHERE token_hash = $1"))
                    .bind(hash)
                    .fetch_optional(&self.pool)
                    .await?;
            Ok(row.map(token_row))
        })
    }

    fn revoke_token(&self, id: i64, at: i64) -> BoxFuture<'_, Result<bool, StorageError>> {
        Box::pin(async move {
            let (mut tx, _gate) = self.pool.begin_state_write().await?;
            let n = sqlx::query(
                "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            )
            .bind(id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(DB::rows_affected(&n) == 1)
        })
    }

    fn touch_token(&self, id: i64, at: i64) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async move {
            let (mut tx, _gate) = self.pool.begin_state_write().await?;
            sqlx::query(
                "UPDATE api_tokens SET last_used_at = $2 WHERE id = $1 \
                 AND (last_used_at IS NULL OR last_used_at < $2)",
            )
            .bind(id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn events<'a>(
        &'a self,
        profile: &'a ProfileId,
        q: &'a EventQuery,
    ) -> BoxFuture<'a, Result<Vec<EventRow>, StorageError>> {
        Box::pin(async move {
            let mut b = Statement::<DB>::new(
                "SELECT pm.seq, pm.event_time, pm.kind, pm.event, m.message_id, s.name, \
                 CAST(m.body AS TEXT) FROM profile_messages pm \
                 JOIN messages m ON m.seq = pm.seq \
                 LEFT JOIN sources s ON s.id = m.source_id WHERE pm.profile_id = ",
            );
            b.push_bind(profile);
            if let Some(start) = q.start {
                b.push(" AND pm.event_time >= ").push_bind(start);
            }
            if let Some(end) = q.end {
                b.push(" AND pm.event_time < ").push_bind(end);
            }
            if !q.events.is_empty() {
                b.push(format!(" AND {EVENT_NAME} IN ("))
                    .push_bind_list(&q.events)
                    .push(")");
            }
            if !q.exclude.is_empty() {
                b.push(format!(
                    " AND ({EVENT_NAME} IS NULL OR {EVENT_NAME} NOT IN ("
                ))
                .push_bind_list(&q.exclude)
                .push("))");
            }
            if !q.kinds.is_empty() {
                b.push(" AND pm.kind IN (")
                    .push_bind_list(&q.kinds)
                    .push(")");
            }
            let (cmp, order) = if q.ascending {
                (">", "ASC")
            } else {
                ("<", "DESC")
            };
            if let Some((t, s)) = q.after {
                b.push(format!(" AND (pm.event_time {cmp} "))
                    .push_bind(t)
                    .push(" OR (pm.event_time = ")
                    .push_bind(t)
                    .push(format!(" AND pm.seq {cmp} "))
                    .push_bind(s)
                    .push("))");
            }
            b.push(format!(
                " ORDER BY pm.event_time {order}, pm.seq {order} LIMIT "
            ))
            .push_bind(q.limit);
            let (sql, args) = b.into_parts();
            let rows: Vec<EventTuple> = sqlx::query_as_with(&sql, args)
                .fetch_all(&self.pool)
                .await?;
            Ok(rows
                .into_iter()
                .map(
                    |(seq, event_time, kind, event, message_id, source, body)| EventRow {
                        seq,
                        event_time,
                        kind,
                        event,
                        message_id,
                        source,
                        body: json_or_string(body),
                    },
                )
                .collect())
        })
    }

    fn sourced_traits<'a>(
        &'a self,
        profile: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Vec<SourcedTrait>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<(String, String, i64, Option<String>)> = sqlx::query_as(
                "SELECT t.key, t.value, t.updated_at, s.name FROM profile_traits t \
                 LEFT JOIN messages m ON m.seq = t.seq \
                 LEFT JOIN sources s ON s.id = m.source_id \
                 WHERE t.profile_id = $1 ORDER BY t.key",
            )
            .bind(profile)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(key, value, updated_at, source)| SourcedTrait {
                    key,
                    value: json_or_string(value),
                    updated_at,
                    source,
                })
                .collect())
        })
    }

    fn external_ids<'a>(
        &'a self,
        profile: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Vec<ExternalIdRow>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<ExternalIdTuple> = sqlx::query_as(
                "SELECT i.kind, i.value, i.added_at, m.message_id, s.name \
                     FROM identities i LEFT JOIN messages m ON m.seq = i.seq \
                     LEFT JOIN sources s ON s.id = m.source_id \
                     WHERE i.profile_id = $1 ORDER BY i.kind, i.value",
            )
            .bind(profile)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(
                    |(kind, value, added_at, message_id, source)| ExternalIdRow {
                        kind,
                        value,
                        added_at,
                        message_id,
                        source,
                    },
                )
                .collect())
        })
    }

    fn metadata<'a>(
        &'a self,
        profile: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Metadata, StorageError>> {
        Box::pin(async move {
            let (first, last, latest): (Option<i64>, Option<i64>, Option<i64>) = sqlx::query_as(
                "SELECT MIN(seq), MAX(seq), MAX(event_time) FROM profile_messages \
                     WHERE profile_id = $1",
            )
            .bind(profile)
            .fetch_one(&self.pool)
            .await?;
            let mut out = Metadata {
                last_event_time: latest,
                ..Metadata::default()
            };
            for (seq, slot) in [(first, &mut out.first), (last, &mut out.last)] {
                if let Some(seq) = seq {
                    *slot = sqlx::query_as(
                        "SELECT m.message_id, s.name FROM messages m \
                         LEFT JOIN sources s ON s.id = m.source_id WHERE m.seq = $1",
                    )
                    .bind(seq)
                    .fetch_optional(&self.pool)
                    .await?;
                }
            }
            Ok(out)
        })
    }

    fn members_page<'a>(
        &'a self,
        audience: &'a str,
        after: Option<&'a ProfileId>,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<(ProfileId, i64)>, StorageError>> {
        Box::pin(async move {
            Ok(sqlx::query_as(
                "SELECT profile_id, entered_at FROM audience_members \
                 WHERE audience = $1 AND profile_id > $2 ORDER BY profile_id LIMIT $3",
            )
            .bind(audience)
            // Every id sorts after the empty string.
            .bind(after.map_or("", ProfileId::as_str))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
        })
    }

    fn membership<'a>(
        &'a self,
        audience: &'a str,
        profile: &'a ProfileId,
    ) -> BoxFuture<'a, Result<Option<i64>, StorageError>> {
        Box::pin(async move {
            Ok(sqlx::query_scalar(
                "SELECT entered_at FROM audience_members WHERE audience = $1 AND profile_id = $2",
            )
            .bind(audience)
            .bind(profile)
            .fetch_optional(&self.pool)
            .await?)
        })
    }

    fn identities_of<'a>(
        &'a self,
        profiles: &'a [ProfileId],
    ) -> BoxFuture<'a, Result<Vec<ProfileIdentity>, StorageError>> {
        Box::pin(async move {
            if profiles.is_empty() {
                return Ok(Vec::new());
            }
            let mut b = Statement::<DB>::new(
                "SELECT profile_id, kind, value FROM identities WHERE profile_id IN (",
            );
            b.push_bind_list(profiles)
                .push(") ORDER BY profile_id, kind, value");
            let (sql, args) = b.into_parts();
            Ok(sqlx::query_as_with(&sql, args)
                .fetch_all(&self.pool)
                .await?)
        })
    }

    fn account_traits<'a>(
        &'a self,
        group_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<AccountTrait>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT key, value, updated_at FROM account_traits WHERE group_id = $1 ORDER BY key",
            )
            .bind(group_id)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(k, v, t)| (k, json_or_string(v), t))
                .collect())
        })
    }

    fn account_members<'a>(
        &'a self,
        group_id: &'a str,
        after: Option<&'a ProfileId>,
        limit: i64,
    ) -> BoxFuture<'a, Result<(Vec<ProfileId>, i64), StorageError>> {
        Box::pin(async move {
            let page: Vec<ProfileId> = sqlx::query_scalar(
                "SELECT profile_id FROM profile_accounts WHERE group_id = $1 AND profile_id > $2 \
                 ORDER BY profile_id LIMIT $3",
            )
            .bind(group_id)
            // Every id sorts after the empty string.
            .bind(after.map_or("", ProfileId::as_str))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            let count: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM profile_accounts WHERE group_id = $1")
                    .bind(group_id)
                    .fetch_one(&self.pool)
                    .await?;
            Ok((page, count))
        })
    }
}
