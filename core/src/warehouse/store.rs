//! What the warehouse export reads from and records in Touchpoint's own database: processed log
//! messages, identity changes and the audience feed by position, the cursors of both targets,
//! and the Parquet files committed (recorded in the same transaction as the cursor move).
//!
//! One implementation serves SQLite and PostgreSQL: the statements are the same SQL on both
//! (`$N` placeholders, `CAST(body AS TEXT)`), and the code is generic over the sqlx database.

use super::records::{AudienceRow, GraphRow, IdentityRow, LogRow};
use crate::identity::ProfileId;
use crate::storage::Db;
use crate::storage::{BeginWrite, StorageError};
use futures_util::future::BoxFuture;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};
use std::collections::{BTreeSet, HashMap};

/// Identifiers attached and profiles re-pointed by a range of log positions.
pub type IdentityChanges = (Vec<IdentityRow>, Vec<GraphRow>);

/// Where a target stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Positions {
    /// The target's cursor over the log.
    pub cursor: i64,
    /// Its cursor over the audience feed.
    pub audiences_cursor: i64,
    /// The profiles stage's cursor: only messages it processed are exported.
    pub processed: i64,
    /// The newest log position.
    pub head: i64,
    /// The newest audience-feed position.
    pub audiences_head: i64,
}

/// A Parquet file to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    /// Path relative to the warehouse folder.
    pub path: String,
    /// Its collection folder (`events`, `pages`, …).
    pub collection: String,
    /// First position of the range its name covers.
    pub first: i64,
    /// Last position of that range.
    pub last: i64,
    /// Rows.
    pub rows: i64,
    /// Size.
    pub bytes: i64,
}

/// A step's outcome to record atomically: both cursors move from what the step read to where it
/// got, and its files are recorded, or nothing happens.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The log cursor's name.
    pub cursor: &'static str,
    /// The audience cursor's name.
    pub audiences_cursor: &'static str,
    /// Log cursor: (expected, new).
    pub log: (i64, i64),
    /// Audience cursor: (expected, new).
    pub audiences: (i64, i64),
    /// Files written by the step.
    pub files: Vec<FileRow>,
    /// When (ms).
    pub at: i64,
}

/// The committed Parquet files, summed up.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FilesSummary {
    /// Files.
    pub files: i64,
    /// Rows in them.
    pub rows: i64,
    /// Bytes.
    pub bytes: i64,
    /// When the newest was committed (ms; 0 if none).
    pub last_commit_ms: i64,
}

/// The warehouse export's view of the database.
pub trait WarehouseStore: Send + Sync + 'static {
    /// A target's cursors and what there is to export.
    fn positions<'a>(
        &'a self,
        cursor: &'a str,
        audiences_cursor: &'a str,
    ) -> BoxFuture<'a, Result<Positions, StorageError>>;
    /// At most `limit` processed, not blocked messages with `after < seq <= upto`, in log order,
    /// with their source's name and current profile.
    fn read_log(
        &self,
        after: i64,
        upto: i64,
        limit: i64,
    ) -> BoxFuture<'_, Result<Vec<LogRow>, StorageError>>;
    /// The first exportable message after `after` (up to `upto`): its position and receive time.
    fn first_pending(
        &self,
        after: i64,
        upto: i64,
    ) -> BoxFuture<'_, Result<Option<(i64, i64)>, StorageError>>;
    /// Identifiers attached, and profiles whose canonical profile changed, by messages with
    /// `after < seq <= upto`.
    fn identity_changes(
        &self,
        after: i64,
        upto: i64,
    ) -> BoxFuture<'_, Result<IdentityChanges, StorageError>>;
    /// At most `limit` audience-feed entries after `after`.
    fn audience_events(
        &self,
        after: i64,
        limit: i64,
    ) -> BoxFuture<'_, Result<Vec<AudienceRow>, StorageError>>;
    /// Records a step (see [`Commit`]); false, with nothing changed, when a cursor is no longer
    /// where the step found it.
    fn commit<'a>(&'a self, commit: &'a Commit) -> BoxFuture<'a, Result<bool, StorageError>>;
    /// Which of `paths` are recorded.
    fn recorded<'a>(
        &'a self,
        paths: &'a [String],
    ) -> BoxFuture<'a, Result<BTreeSet<String>, StorageError>>;
    /// The committed files, summed up.
    fn files_summary(&self) -> BoxFuture<'_, Result<FilesSummary, StorageError>>;
    /// Moves cursors forward to the given positions (never back).
    fn advance<'a>(
        &'a self,
        moves: &'a [(&'static str, i64)],
    ) -> BoxFuture<'a, Result<(), StorageError>>;
}

/// The store over a migrated SQLite or PostgreSQL pool.
pub(crate) struct SqlWarehouse<DB: Database> {
    pool: Db<DB>,
}

impl<DB: Database> SqlWarehouse<DB> {
    /// Wraps a migrated pool.
    pub(crate) fn new(pool: Db<DB>) -> Self {
        SqlWarehouse { pool }
    }
}

type LogTuple = (i64, String, String, i64, i64, Option<ProfileId>, String);
type IdentityTuple = (
    ProfileId,
    String,
    String,
    i64,
    i64,
    Option<String>,
    Option<String>,
);
type MergeTuple = (
    ProfileId,
    ProfileId,
    ProfileId,
    String,
    i64,
    i64,
    Option<String>,
    Option<String>,
);
type AudienceTuple = (
    i64,
    String,
    Option<String>,
    ProfileId,
    Option<String>,
    String,
    i64,
    i64,
    String,
);

fn message(id: Option<String>, kind: Option<String>) -> Option<(String, String)> {
    id.zip(kind)
}

impl<DB> WarehouseStore for SqlWarehouse<DB>
where
    DB: Database,
    Db<DB>: BeginWrite<Db = DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    fn positions<'a>(
        &'a self,
        cursor: &'a str,
        audiences_cursor: &'a str,
    ) -> BoxFuture<'a, Result<Positions, StorageError>> {
        Box::pin(async move {
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT name, seq FROM pipeline_cursors WHERE name IN ($1, $2, 'profiles')",
            )
            .bind(cursor)
            .bind(audiences_cursor)
            .fetch_all(&self.pool)
            .await?;
            let named: HashMap<String, i64> = rows.into_iter().collect();
            let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM messages")
                .fetch_one(&self.pool)
                .await?;
            let audiences_head: i64 =
                sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM audience_events")
                    .fetch_one(&self.pool)
                    .await?;
            Ok(Positions {
                cursor: named.get(cursor).copied().unwrap_or(0),
                audiences_cursor: named.get(audiences_cursor).copied().unwrap_or(0),
                processed: named.get("profiles").copied().unwrap_or(0),
                head,
                audiences_head,
            })
        })
    }

    fn read_log(
        &self,
        after: i64,
        upto: i64,
        limit: i64,
    ) -> BoxFuture<'_, Result<Vec<LogRow>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<LogTuple> = sqlx::query_as(
                "SELECT m.seq, s.name, m.message_id, m.event_time, m.received_at, pm.profile_id, \
                 CAST(m.body AS TEXT) \
                 FROM messages m JOIN sources s ON s.id = m.source_id \
                 LEFT JOIN profile_messages pm ON pm.seq = m.seq \
                 WHERE m.seq > $1 AND m.seq <= $2 AND m.status <> 'blocked' \
                 ORDER BY m.seq LIMIT $3",
            )
            .bind(after)
            .bind(upto)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|r| LogRow {
                    seq: r.0,
                    source: r.1,
                    message_id: r.2,
                    event_time: r.3,
                    received_at: r.4,
                    profile_id: r.5,
                    body: r.6,
                })
                .collect())
        })
    }

    fn first_pending(
        &self,
        after: i64,
        upto: i64,
    ) -> BoxFuture<'_, Result<Option<(i64, i64)>, StorageError>> {
        Box::pin(async move {
            Ok(sqlx::query_as(
                "SELECT seq, received_at FROM messages \
                 WHERE seq > $1 AND seq <= $2 AND status <> 'blocked' ORDER BY seq LIMIT 1",
            )
            .bind(after)
            .bind(upto)
            .fetch_optional(&self.pool)
            .await?)
        })
    }

    fn identity_changes(
        &self,
        after: i64,
        upto: i64,
    ) -> BoxFuture<'_, Result<IdentityChanges, StorageError>> {
        Box::pin(async move {
            let ids: Vec<IdentityTuple> = sqlx::query_as(
                "SELECT i.profile_id, i.kind, i.value, i.seq, i.added_at, m.message_id, m.kind \
                 FROM identities i LEFT JOIN messages m ON m.seq = i.seq \
                 WHERE i.seq > $1 AND i.seq <= $2 ORDER BY i.seq, i.kind, i.value",
            )
            .bind(after)
            .bind(upto)
            .fetch_all(&self.pool)
            .await?;
            let identities = ids
                .into_iter()
                .map(|r| IdentityRow {
                    profile_id: r.0,
                    kind: r.1,
                    value: r.2,
                    seq: r.3,
                    added_at: r.4,
                    message: message(r.5, r.6),
                })
                .collect();
            // The loser of each merge now resolves to its winner's canonical profile (merges
            // flatten `merged_into`), and so does every profile merged into it before.
            let merges: Vec<MergeTuple> = sqlx::query_as(
                "SELECT mg.loser, COALESCE(p.merged_into, mg.winner), mg.winner, mg.reason, mg.seq, \
                 mg.at, m.message_id, m.kind \
                 FROM merges mg LEFT JOIN profiles p ON p.id = mg.loser \
                 LEFT JOIN messages m ON m.seq = mg.seq \
                 WHERE mg.seq > $1 AND mg.seq <= $2 ORDER BY mg.id",
            )
            .bind(after)
            .bind(upto)
            .fetch_all(&self.pool)
            .await?;
            let mut graph = Vec::new();
            let mut done = BTreeSet::new();
            let mut clusters: HashMap<ProfileId, Vec<ProfileId>> = HashMap::new();
            for (loser, canonical, winner, reason, seq, at, id, kind) in merges {
                if !clusters.contains_key(&canonical) {
                    let members: Vec<ProfileId> = sqlx::query_scalar(
                        "SELECT id FROM profiles WHERE merged_into = $1 ORDER BY id",
                    )
                    .bind(canonical.clone())
                    .fetch_all(&self.pool)
                    .await?;
                    clusters.insert(canonical.clone(), members);
                }
                let members = clusters.get(&canonical).map(Vec::as_slice).unwrap_or(&[]);
                let message = message(id, kind);
                for profile in
                    std::iter::once(&loser).chain(members.iter().filter(|m| **m != loser))
                {
                    if done.insert((profile.clone(), seq)) {
                        graph.push(GraphRow {
                            profile_id: profile.clone(),
                            canonical_profile_id: canonical.clone(),
                            merged_into: winner.clone(),
                            reason: reason.clone(),
                            seq,
                            at,
                            message: message.clone(),
                        });
                    }
                }
            }
            Ok((identities, graph))
        })
    }

    fn audience_events(
        &self,
        after: i64,
        limit: i64,
    ) -> BoxFuture<'_, Result<Vec<AudienceRow>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<AudienceTuple> = sqlx::query_as(
                "SELECT e.id, e.audience, a.name, e.profile_id, \
                 (SELECT MIN(i.value) FROM identities i WHERE i.profile_id = e.profile_id AND i.kind = 'user_id'), \
                 e.kind, e.at, e.seq, e.reason \
                 FROM audience_events e LEFT JOIN audiences a ON a.id = e.audience \
                 WHERE e.id > $1 ORDER BY e.id LIMIT $2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|r| AudienceRow {
                    id: r.0,
                    audience: r.1,
                    name: r.2,
                    profile_id: r.3,
                    user_id: r.4,
                    kind: r.5,
                    at: r.6,
                    seq: r.7,
                    reason: r.8,
                })
                .collect())
        })
    }

    fn commit<'a>(&'a self, c: &'a Commit) -> BoxFuture<'a, Result<bool, StorageError>> {
        Box::pin(async move {
            let (mut tx, _gate) = self.pool.begin_state_write().await?;
            for (name, (from, to)) in [(c.cursor, c.log), (c.audiences_cursor, c.audiences)] {
                let moved: Option<i64> = sqlx::query_scalar(
                    "UPDATE pipeline_cursors SET seq = $3 WHERE name = $1 AND seq = $2 RETURNING seq",
                )
                .bind(name)
                .bind(from)
                .bind(to)
                .fetch_optional(&mut *tx)
                .await?;
                if moved.is_none() {
                    return Ok(false);
                }
            }
            for f in &c.files {
                sqlx::query(
                    "INSERT INTO warehouse_files (path, collection, first_seq, last_seq, row_count, \
                     byte_count, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (path) DO UPDATE SET row_count = excluded.row_count, \
                     byte_count = excluded.byte_count, created_at = excluded.created_at",
                )
                .bind(f.path.clone())
                .bind(f.collection.clone())
                .bind(f.first)
                .bind(f.last)
                .bind(f.rows)
                .bind(f.bytes)
                .bind(c.at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    fn recorded<'a>(
        &'a self,
        paths: &'a [String],
    ) -> BoxFuture<'a, Result<BTreeSet<String>, StorageError>> {
        Box::pin(async move {
            let mut out = BTreeSet::new();
            if paths.len() <= 64 {
                for p in paths {
                    let found: Option<String> =
                        sqlx::query_scalar("SELECT path FROM warehouse_files WHERE path = $1")
                            .bind(p.clone())
                            .fetch_optional(&self.pool)
                            .await?;
                    out.extend(found);
                }
            } else {
                // Many candidates (a start-up scan): one pass over the recorded paths.
                let wanted: BTreeSet<&String> = paths.iter().collect();
                let all: Vec<String> = sqlx::query_scalar("SELECT path FROM warehouse_files")
                    .fetch_all(&self.pool)
                    .await?;
                out.extend(all.into_iter().filter(|p| wanted.contains(p)));
            }
            Ok(out)
        })
    }

    fn files_summary(&self) -> BoxFuture<'_, Result<FilesSummary, StorageError>> {
        Box::pin(async move {
            let (files, rows, bytes, last): (i64, i64, i64, i64) = sqlx::query_as(
                "SELECT COUNT(*), CAST(COALESCE(SUM(row_count), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(byte_count), 0) AS BIGINT), COALESCE(MAX(created_at), 0) \
                 FROM warehouse_files",
            )
            .fetch_one(&self.pool)
            .await?;
            Ok(FilesSummary {
                files,
                rows,
                bytes,
                last_commit_ms: last,
            })
        })
    }

    fn advance<'a>(
        &'a self,
        moves: &'a [(&'static str, i64)],
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let (mut tx, _gate) = self.pool.begin_state_write().await?;
            for (name, to) in moves {
                sqlx::query("UPDATE pipeline_cursors SET seq = $2 WHERE name = $1 AND seq < $2")
                    .bind(*name)
                    .bind(*to)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }
}
