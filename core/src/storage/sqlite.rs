//! SQLite adapter: WAL mode with `synchronous = FULL`, so a commit is durable when it returns.
//!
//! A database on disk is two files in one folder: `<name>.db` holds the pipeline state (profiles,
//! audiences, outbox, cursors…) and `<name>-log.db` the log (`sources`, `messages`,
//! `rejected_messages`), attached as `log` on every connection so unqualified table names resolve
//! to whichever file has the table. Each file has its own in-process write gate: an append commits
//! while a stage's transaction is open on the state file (see [`super::BeginWrite`]). Back up the
//! folder. An in-memory database keeps everything in one file with one gate.

use super::sqlite_log_writer::{
    CACHED_ROWS, INSERT_REJECTED, ROWS_PER_INSERT, Repeats, insert_sql, match_stored,
};
use super::{InsertOutcome, NewMessage, NewRejected, StorageError};
use futures_util::future::BoxFuture;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Executor};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// The embedded default store.
pub type SqliteStore = super::shared::SqlEventStore<sqlx::Sqlite>;

/// Rows sqlx's SQLite thread may hand over before it waits for the reader to take them. sqlx's
/// default (50) is below a stage's batch (500 log rows, a 1,000-position audience window), so the
/// thread stopped and was woken again several times per read: 11 % less stage CPU per message
/// with room for a whole batch (BENCHMARKS.md, "Ingestion").
const ROW_BUFFER: usize = 1024;

/// The log tables, parents first.
const LOG_TABLES: [&str; 3] = ["sources", "messages", "rejected_messages"];

/// The log file of the database whose state file is `state`: `data/touchpoint.db` →
/// `data/touchpoint-log.db`.
pub fn log_file(state: &Path) -> PathBuf {
    let stem = state
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match state.extension() {
        Some(ext) => format!("{stem}-log.{}", ext.to_string_lossy()),
        None => format!("{stem}-log"),
    };
    state.with_file_name(name)
}

/// Whether `url` names an in-memory database (one file: nothing to split).
fn in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` and migrates it: the state file and, on
    /// disk, the log file next to it, moving the log tables of a database from before the split
    /// into the log file.
    pub async fn connect(url: &str) -> Result<SqliteStore, StorageError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .row_buffer_size(ROW_BUFFER);
        let pool = SqlitePoolOptions::new().max_connections(8);
        if in_memory(url) {
            let pool = pool.connect_with(options).await?;
            sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
            return Ok(SqliteStore {
                pool: super::Db::new(pool),
                layout: super::partition::Layout::single(),
            });
        }
        let state = options.get_filename().to_owned();
        if let Some(parent) = state.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| StorageError::Database(e.into()))?;
        }
        let log = log_file(&state);
        let mut conn = options.connect().await?;
        sqlx::migrate!("./migrations/sqlite").run(&mut conn).await?;
        let mut log_conn = options.clone().filename(&log).connect().await?;
        sqlx::migrate!("./migrations/sqlite-log")
            .run(&mut log_conn)
            .await?;
        log_conn.close().await?;
        attach_log(&mut conn, &log).await?;
        move_log_tables(&mut conn).await?;
        conn.close().await?;
        // Appends go through a thread of their own (see `sqlite_log_writer`); the shared pool
        // (stages, API, console) runs its SQLite threads in the background (see
        // `crate::background`), so under a burst acknowledgements go first.
        let log_path = log.clone();
        let log = log.display().to_string();
        let pool = pool
            .after_connect(move |conn, _| {
                let log = log.clone();
                Box::pin(async move {
                    attach_log(conn, Path::new(&log)).await?;
                    // The connection's worker thread exists now.
                    crate::background::lower_threads_named(crate::background::SQLITE_THREADS);
                    Ok(())
                })
            })
            .connect_with(
                options.thread_name(|id| format!("{}-{id}", crate::background::SQLITE_THREADS)),
            )
            .await?;
        Ok(SqliteStore {
            pool: super::Db::split(pool).with_log_writer(&log_path)?,
            layout: super::partition::Layout::single(),
        })
    }

    /// The database, for the repositories of the feature modules: they share its write gates.
    pub fn db(&self) -> &super::Db<sqlx::Sqlite> {
        &self.pool
    }
}

/// Attaches the log file as `log`, as durable as the state file.
async fn attach_log(conn: &mut SqliteConnection, log: &Path) -> Result<(), sqlx::Error> {
    sqlx::query("ATTACH DATABASE ?1 AS log")
        .bind(log.display().to_string())
        .execute(&mut *conn)
        .await?;
    conn.execute("PRAGMA log.synchronous = FULL").await?;
    Ok(())
}

/// Moves the log tables of a database from before the split (where they sat in the state file)
/// into the attached log file. Two transactions, each writing one file, so a crash between them
/// loses nothing: the copy replaces whatever a previous attempt left in the log file, and the
/// state file's tables are dropped only once the copy has committed.
async fn move_log_tables(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    // Checked inside the transaction: another process starting on the same files may have moved
    // the tables since this one looked.
    let mut copy = conn.begin_with("BEGIN IMMEDIATE").await?;
    let legacy: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM main.sqlite_master WHERE type = 'table' AND name = 'messages'",
    )
    .fetch_one(&mut *copy)
    .await?;
    if legacy == 0 {
        return Ok(());
    }
    for table in LOG_TABLES.iter().rev() {
        copy.execute(format!("DELETE FROM log.{table}").as_str())
            .await?;
    }
    for table in LOG_TABLES {
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info(?1, 'main') ORDER BY cid")
                .bind(table)
                .fetch_all(&mut *copy)
                .await?;
        let columns = columns.join(", ");
        copy.execute(
            format!("INSERT INTO log.{table} ({columns}) SELECT {columns} FROM main.{table}")
                .as_str(),
        )
        .await?;
    }
    // Keep positions never reused: AUTOINCREMENT's high-water marks come along too.
    copy.execute(
        "DELETE FROM log.sqlite_sequence WHERE name IN ('messages', 'rejected_messages'); \
         INSERT INTO log.sqlite_sequence (name, seq) SELECT name, seq FROM main.sqlite_sequence \
         WHERE name IN ('messages', 'rejected_messages')",
    )
    .await?;
    copy.commit().await?;
    let mut drop = conn.begin_with("BEGIN IMMEDIATE").await?;
    for table in LOG_TABLES.iter().rev() {
        drop.execute(format!("DROP TABLE main.{table}").as_str())
            .await?;
    }
    drop.commit().await?;
    tracing::info!("moved the log tables into the log file");
    Ok(())
}

impl SqliteStore {
    /// Appends messages and rejected items in one durable commit (see [`EventStore::append`]):
    /// through the log writer thread when the log has a file of its own.
    async fn append_rows(
        &self,
        messages: &[NewMessage],
        rejected: &[NewRejected],
    ) -> Result<Vec<InsertOutcome>, StorageError> {
        if let Some(writer) = self.pool.log_writer() {
            return writer
                .append(messages.to_vec(), rejected.to_vec(), None)
                .await;
        }
        // A database of one file (in memory): one transaction on the shared pool.
        let mut out = vec![InsertOutcome::Duplicate; messages.len()];
        let (mut tx, _gate) = self.pool.begin_ingest_write().await?;
        for (chunk, out) in messages
            .chunks(ROWS_PER_INSERT)
            .zip(out.chunks_mut(ROWS_PER_INSERT))
        {
            insert_messages(&mut tx, chunk, out).await?;
        }
        for r in rejected {
            sqlx::query(INSERT_REJECTED)
                .bind(r.source_id)
                .bind(r.received_at_ms)
                .bind(&r.reason)
                .bind(super::truncate_body(&r.body))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(out)
    }
}

/// Inserts `chunk` (at most [`ROWS_PER_INSERT`] messages) with the in-memory database's form of the
/// insert ([`insert_sql`] with `ON CONFLICT … RETURNING`), setting `out[i]` to where each new
/// message was stored.
async fn insert_messages(
    conn: &mut SqliteConnection,
    chunk: &[NewMessage],
    out: &mut [InsertOutcome],
) -> Result<(), StorageError> {
    let sql = insert_sql(chunk.len(), Repeats::DroppedOnConflict);
    let mut q = sqlx::query_as::<_, (i64, i64, String)>(&sql);
    for m in chunk {
        q = q
            .bind(m.source_id)
            .bind(&m.message_id)
            .bind(&m.message_id)
            .bind(m.kind)
            .bind(&m.event)
            .bind(&m.user_id)
            .bind(&m.anonymous_id)
            .bind(m.event_time_ms)
            .bind(m.received_at_ms)
            .bind(&*m.plan_version)
            .bind(m.status.as_str())
            .bind(&m.violations_json)
            .bind(&m.body_json);
    }
    let stored = q
        .persistent(chunk.len() <= CACHED_ROWS)
        .fetch_all(&mut *conn)
        .await?;
    match_stored(chunk, 0..chunk.len(), &stored, out);
    Ok(())
}

impl super::shared::AppendRows for sqlx::Sqlite {
    fn append_rows<'a>(
        store: &'a SqliteStore,
        messages: &'a [NewMessage],
        rejected: &'a [NewRejected],
    ) -> BoxFuture<'a, Result<Vec<InsertOutcome>, StorageError>> {
        Box::pin(store.append_rows(messages, rejected))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::storage::{EventStore, Status};
    use std::sync::Arc;

    /// A track message of `source_id` with messageId `id`.
    pub(crate) fn message(source_id: i64, id: &str) -> NewMessage {
        NewMessage {
            source_id,
            message_id: id.into(),
            kind: "track",
            event: Some("signed_up".into()),
            user_id: None,
            anonymous_id: Some("a-1".into()),
            event_time_ms: 1,
            received_at_ms: 1,
            plan_version: Arc::from("1"),
            status: Status::Accepted,
            violations_json: "[]".into(),
            body_json: "{}".into(),
        }
    }

    /// The positions of the stored messages among `out`, in input order.
    fn stored_positions(out: &[InsertOutcome]) -> Vec<i64> {
        out.iter()
            .filter_map(|o| match o {
                InsertOutcome::Stored(seq) => Some(*seq),
                InsertOutcome::Duplicate => None,
            })
            .collect()
    }

    /// A store on a new database in `dir` (`t.db`), the log in a file of its own.
    pub(crate) async fn store_in(dir: &Path) -> SqliteStore {
        let url = format!("sqlite://{}", dir.join("t.db").display());
        SqliteStore::connect(&url).await.unwrap()
    }

    /// A connection to `file` (created in WAL mode if missing), migrated by `migrations`.
    async fn migrated(file: &Path, migrations: sqlx::migrate::Migrator) -> SqliteConnection {
        let mut conn = SqliteConnectOptions::new()
            .filename(file)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .connect()
            .await
            .unwrap();
        migrations.run(&mut conn).await.unwrap();
        conn
    }

    /// A database as the releases before the split left it: every table in one file, with two
    /// messages kept of three appended (the third was purged).
    async fn legacy_database(state: &Path) {
        let mut conn = migrated(state, sqlx::migrate!("./migrations/sqlite")).await;
        conn.execute(
            "INSERT INTO sources (id, name, write_key, created_at) VALUES (1, 'web', 'wk', 0); \
             INSERT INTO messages (source_id, message_id, dedup_key, kind, event_time, received_at, \
               plan_version, status, violations, body) VALUES \
               (1, 'm1', 'm1', 'track', 1, 1, '1', 'accepted', '[]', '{}'), \
               (1, 'm2', 'm2', 'track', 1, 1, '1', 'accepted', '[]', '{}'), \
               (1, 'm3', 'm3', 'track', 1, 1, '1', 'accepted', '[]', '{}'); \
             DELETE FROM messages WHERE message_id = 'm3'; \
             INSERT INTO rejected_messages (source_id, received_at, reason, body) \
               VALUES (1, 1, 'not JSON', 'x')",
        )
        .await
        .unwrap();
        conn.close().await.unwrap();
    }

    async fn tables(file: &Path) -> Vec<String> {
        let mut conn = SqliteConnectOptions::new()
            .filename(file)
            .connect()
            .await
            .unwrap();
        sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name IN ('sources', 'messages', 'rejected_messages') ORDER BY name",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn an_append_longer_than_one_statement_stores_each_message_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path()).await;
        let source = store.upsert_source("web", "wk").await.unwrap().id;
        // Three statements' worth, a duplicate inside the first and one across statements.
        let n = 2 * ROWS_PER_INSERT + 10;
        let mut batch: Vec<NewMessage> =
            (0..n).map(|i| message(source, &format!("m{i}"))).collect();
        batch[7] = message(source, "m3");
        batch[ROWS_PER_INSERT + 5] = message(source, "m4");
        let out = store.append(&batch, &[]).await.unwrap();
        let stored = stored_positions(&out);
        assert_eq!(stored.len(), n - 2);
        assert!(
            stored.windows(2).all(|w| w[0] < w[1]),
            "positions follow the input"
        );
        assert_eq!(out[7], InsertOutcome::Duplicate);
        assert_eq!(out[ROWS_PER_INSERT + 5], InsertOutcome::Duplicate);
        // A short append: a repeat of the first append's first message, and a new one.
        let again = store
            .append(&[message(source, "m0"), message(source, "late")], &[])
            .await
            .unwrap();
        assert_eq!(again[0], InsertOutcome::Duplicate);
        assert!(matches!(again[1], InsertOutcome::Stored(seq) if seq > stored[n - 3]));
    }

    #[tokio::test]
    async fn a_messageid_repeats_only_inside_the_dedup_window_and_per_source() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path()).await;
        let web = store.upsert_source("web", "wk").await.unwrap().id;
        let ios = store.upsert_source("ios", "wk2").await.unwrap().id;
        let first = store.append(&[message(web, "m1")], &[]).await.unwrap();
        assert!(matches!(first[0], InsertOutcome::Stored(_)));
        // A retry of the same message, and the same messageId from another source.
        let again = store
            .append(&[message(web, "m1"), message(ios, "m1")], &[])
            .await
            .unwrap();
        assert_eq!(again[0], InsertOutcome::Duplicate);
        assert!(matches!(again[1], InsertOutcome::Stored(_)), "{again:?}");
        // Once the window has passed, the messageId is new again.
        assert_eq!(store.expire_dedup(i64::MAX).await.unwrap(), 2);
        let later = store.append(&[message(web, "m1")], &[]).await.unwrap();
        assert!(matches!(later[0], InsertOutcome::Stored(_)), "{later:?}");
        assert_eq!(store.messages_by_id("m1").await.unwrap().len(), 3);
        assert_eq!(
            store.append(&[message(web, "m1")], &[]).await.unwrap()[0],
            InsertOutcome::Duplicate,
            "the new copy deduplicates in its own window"
        );
    }

    #[tokio::test]
    async fn the_log_file_keeps_one_index_over_messageids() {
        let dir = tempfile::tempdir().unwrap();
        let _store = store_in(dir.path()).await;
        let mut log = SqliteConnectOptions::new()
            .filename(log_file(&dir.path().join("t.db")))
            .connect()
            .await
            .unwrap();
        let indexes: Vec<(String,)> = sqlx::query_as(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages' \
             AND (sql LIKE '%message_id%' OR sql LIKE '%dedup_key)%') ORDER BY name",
        )
        .fetch_all(&mut log)
        .await
        .unwrap();
        assert_eq!(indexes, [("messages_message_id".to_owned(),)]);
    }

    #[test]
    fn the_log_file_sits_next_to_the_state_file() {
        assert_eq!(
            log_file(Path::new("data/touchpoint.db")),
            PathBuf::from("data/touchpoint-log.db")
        );
        assert_eq!(
            log_file(Path::new("/x/state")),
            PathBuf::from("/x/state-log")
        );
    }

    #[tokio::test]
    async fn a_new_database_keeps_the_log_in_its_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("touchpoint.db");
        let store = SqliteStore::connect(&format!("sqlite://{}", state.display()))
            .await
            .unwrap();
        let source = store.upsert_source("web", "wk").await.unwrap();
        store
            .append(&[message(source.id, "m1")], &[])
            .await
            .unwrap();
        assert!(tables(&state).await.is_empty());
        assert_eq!(
            tables(&log_file(&state)).await,
            ["messages", "rejected_messages", "sources"]
        );
        assert_eq!(store.counts().await.unwrap(), (1, 0));
    }

    #[tokio::test]
    async fn an_upgraded_database_moves_its_log_and_never_reuses_a_position() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("touchpoint.db");
        legacy_database(&state).await;
        let store = SqliteStore::connect(&format!("sqlite://{}", state.display()))
            .await
            .unwrap();
        assert!(
            tables(&state).await.is_empty(),
            "the state file keeps no log table"
        );
        assert_eq!(store.counts().await.unwrap(), (2, 1));
        let out = store.append(&[message(1, "m4")], &[]).await.unwrap();
        assert_eq!(
            out,
            [InsertOutcome::Stored(4)],
            "position 3 was purged, not free"
        );
        let again = store.append(&[message(1, "m1")], &[]).await.unwrap();
        assert_eq!(again, [InsertOutcome::Duplicate], "dedup keys came along");
    }

    #[tokio::test]
    async fn a_move_cut_short_before_the_drop_is_redone_from_the_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("touchpoint.db");
        legacy_database(&state).await;
        // A previous start copied into the log file, then died before dropping the old tables.
        let log_migrations = sqlx::migrate!("./migrations/sqlite-log");
        let mut log = migrated(&log_file(&state), log_migrations).await;
        log.execute(
            "INSERT INTO sources (id, name, write_key, created_at) VALUES (1, 'web', 'wk', 0); \
             INSERT INTO messages (source_id, message_id, dedup_key, kind, event_time, received_at, \
               plan_version, status, violations, body) \
               VALUES (1, 'm1', 'm1', 'track', 1, 1, '1', 'accepted', '[]', '{}')",
        )
        .await
        .unwrap();
        log.close().await.unwrap();
        let store = SqliteStore::connect(&format!("sqlite://{}", state.display()))
            .await
            .unwrap();
        assert_eq!(store.counts().await.unwrap(), (2, 1));
        let ids: Vec<String> = store
            .messages_by_id("m2")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.message_id)
            .collect();
        assert_eq!(ids, ["m2"]);
    }

    #[tokio::test]
    async fn a_failed_commit_is_an_error_for_its_caller_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path()).await;
        let source = store.upsert_source("web", "wk").await.unwrap().id;
        // No such source: the foreign key refuses the whole statement.
        let failed = store
            .append(&[message(source, "m1"), message(source + 99, "m2")], &[])
            .await;
        assert!(
            matches!(failed, Err(StorageError::LogWrite(_))),
            "{failed:?}"
        );
        let out = store.append(&[message(source, "m1")], &[]).await.unwrap();
        assert!(matches!(out[..], [InsertOutcome::Stored(_)]), "{out:?}");
        assert_eq!(
            store.counts().await.unwrap().0,
            1,
            "nothing of the failed commit"
        );
    }

    #[tokio::test]
    async fn a_cancelled_append_still_commits_holding_the_log_gate_until_it_has_ended() {
        use futures_util::FutureExt;
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path()).await;
        let source = store.upsert_source("web", "wk").await.unwrap().id;
        // Another process holds the log's write lock: the writer's commit waits for it.
        let blocker = rusqlite::Connection::open(log_file(&dir.path().join("t.db"))).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        // One poll hands the append to the writer thread; then the caller gives up on it.
        let messages = [message(source, "m1")];
        assert!(store.append(&messages, &[]).now_or_never().is_none());
        let gate = &store.db().log_gate.lock;
        let mut taken = false;
        for _ in 0..1_000 {
            if gate.try_lock().is_err() {
                taken = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            taken,
            "the writer thread takes the gate for the cancelled append's commit, which waits for \
             the blocker's lock"
        );
        blocker.execute_batch("COMMIT").unwrap();
        let mut released = false;
        for _ in 0..1_000 {
            if gate.try_lock().is_ok() {
                released = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(released, "the gate is let go once the commit has ended");
        assert_eq!(store.counts().await.unwrap().0, 1, "the commit stands");
    }

    #[tokio::test]
    async fn an_in_memory_database_appends_through_the_same_statement_and_deduplicates() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        assert!(store.db().log_writer().is_none(), "no log file, no writer");
        let source = store.upsert_source("web", "wk").await.unwrap().id;
        // Two statements: a full one and the rest; a repeat in each, and one across them.
        let mut batch: Vec<NewMessage> = (0..ROWS_PER_INSERT + 3)
            .map(|i| message(source, &format!("m{i}")))
            .collect();
        batch[7] = message(source, "m1");
        batch[ROWS_PER_INSERT + 1] = message(source, "m2");
        let out = store.append(&batch, &[]).await.unwrap();
        assert_eq!(out[7], InsertOutcome::Duplicate);
        assert_eq!(out[ROWS_PER_INSERT + 1], InsertOutcome::Duplicate);
        let stored = stored_positions(&out);
        assert_eq!(stored.len(), ROWS_PER_INSERT + 1);
        assert!(
            stored.windows(2).all(|w| w[0] < w[1]),
            "stored in input order"
        );
        assert_eq!(store.counts().await.unwrap().0, stored.len() as i64);
    }

    #[tokio::test]
    async fn an_empty_append_stores_nothing_and_fails_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path()).await;
        assert!(store.append(&[], &[]).await.unwrap().is_empty());
        assert_eq!(store.counts().await.unwrap(), (0, 0));
    }

    #[tokio::test]
    async fn rejected_items_commit_with_the_messages_beside_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path()).await;
        let source = store.upsert_source("web", "wk").await.unwrap().id;
        let rejected = NewRejected {
            source_id: source,
            received_at_ms: 5,
            reason: "missing messageId".into(),
            body: "x".repeat(40_000),
        };
        let out = store
            .append(&[message(source, "m1"), message(source, "m1")], &[rejected])
            .await
            .unwrap();
        assert!(
            matches!(
                out[..],
                [InsertOutcome::Stored(_), InsertOutcome::Duplicate]
            ),
            "{out:?}"
        );
        let (reason, body): (String, String) =
            sqlx::query_as("SELECT reason, body FROM rejected_messages")
                .fetch_one(store.db().pool())
                .await
                .unwrap();
        assert_eq!(reason, "missing messageId");
        assert!(
            body.len() <= 32 * 1024,
            "stored body is truncated: {}",
            body.len()
        );
    }
}
