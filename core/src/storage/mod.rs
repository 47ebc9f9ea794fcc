//! Durable storage: the [`EventStore`] port and its SQLite and PostgreSQL adapters.
//!
//! Both adapters run the same tests (`tests/` spawns the server against each). The message log is
//! append-only; `seq` is the position the processing pipeline resumes from.

mod dialect;
pub mod partition;
mod postgres;
mod shared;
mod sqlite;
/// Helpers for the tests of the feature modules' stores: a message, a store on a new file.
#[cfg(test)]
pub(crate) use sqlite::tests::{message as test_message, store_in as test_store_in};
mod sqlite_log_writer;

pub(crate) use dialect::{Dialect, params, placeholders};
pub(crate) use partition::fnv1a;
pub use postgres::{APPENDS_CHANNEL, PROGRESS_CHANNEL, PgStore, listen_for_appends};
pub use sqlite::{SqliteStore, log_file as sqlite_log_file};
pub use sqlite_log_writer::{CommitObserver, Ticket};

use futures_util::future::BoxFuture;
use std::sync::Arc;

/// Whether a stored message passed the tracking plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Conformed to the plan.
    Accepted,
    /// Stored and processed, with violations reported.
    Flagged,
    /// Stored with its violations but never processed further.
    Blocked,
}

impl Status {
    /// The value stored in the `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::Flagged => "flagged",
            Status::Blocked => "blocked",
        }
    }

    /// Reads the `status` column; an unknown value is [`StorageError::Corrupt`].
    pub fn parse(stored: &str) -> Result<Status, StorageError> {
        [Status::Accepted, Status::Flagged, Status::Blocked]
            .into_iter()
            .find(|s| s.as_str() == stored)
            .ok_or_else(|| {
                StorageError::Corrupt(format!(
                    "unknown message status {stored:?} (expected accepted, flagged or blocked)"
                ))
            })
    }
}

/// A message ready to be appended to the log.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The source it came from.
    pub source_id: i64,
    /// The client's messageId (or one the server generated).
    pub message_id: String,
    /// Message type, e.g. `track`.
    pub kind: &'static str,
    /// Track event name.
    pub event: Option<String>,
    /// userId, if any.
    pub user_id: Option<String>,
    /// anonymousId, if any.
    pub anonymous_id: Option<String>,
    /// Skew-corrected event time, ms since the Unix epoch.
    pub event_time_ms: i64,
    /// Server receive time, ms since the Unix epoch.
    pub received_at_ms: i64,
    /// The tracking plan version it was validated against.
    pub plan_version: Arc<str>,
    /// The plan's verdict.
    pub status: Status,
    /// Violations as a JSON array.
    pub violations_json: String,
    /// The full message as JSON.
    pub body_json: String,
}

/// An item a known source sent that could not be read as a message.
#[derive(Debug, Clone)]
pub struct NewRejected {
    /// The source it came from.
    pub source_id: i64,
    /// Server receive time, ms since the Unix epoch.
    pub received_at_ms: i64,
    /// Why it was rejected.
    pub reason: String,
    /// The raw item, as sent (truncated to 32 KB).
    pub body: String,
}

/// What happened to one message of an insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Appended at this log position.
    Stored(i64),
    /// Its messageId was already stored for this source within the dedup window.
    Duplicate,
}

/// A source row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRow {
    /// Primary key.
    pub id: i64,
    /// Human name, unique.
    pub name: String,
    /// The public, ingest-only write key.
    pub write_key: String,
}

/// A message read back from the log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StoredMessage {
    /// Log position.
    pub seq: i64,
    /// Source id.
    pub source_id: i64,
    /// messageId.
    pub message_id: String,
    /// Message type.
    pub kind: String,
    /// `accepted`, `flagged` or `blocked`.
    pub status: String,
    /// The plan version it was validated against.
    pub plan_version: String,
    /// Skew-corrected event time (ms).
    pub event_time_ms: i64,
    /// Receive time (ms).
    pub received_at_ms: i64,
    /// Violations (JSON array).
    pub violations: serde_json::Value,
    /// The stored message.
    pub body: serde_json::Value,
}

/// A storage failure. Details are logged, never sent to clients.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database driver failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The embedded log writer's SQLite call failed. Nothing of its commit is stored (each is
    /// one transaction).
    #[error("log write failed: {0}")]
    LogWrite(#[from] rusqlite::Error),
    /// The embedded log writer did not answer: its thread is gone, or it panicked on this commit
    /// (its transaction is rolled back) and goes on with the next.
    #[error("the log writer stopped")]
    LogWriterStopped,
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The URL names no supported database.
    #[error("unsupported DATABASE_URL scheme (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    /// A stored JSON column could not be read back.
    #[error("corrupt JSON column: {0}")]
    Json(#[from] serde_json::Error),
    /// A stored value is not one the code knows (a kind or status column).
    #[error("unexpected stored value: {0}")]
    Corrupt(String),
    /// A pipeline stage's own output failed (a file it writes, another database it loads).
    #[error("{0}")]
    Stage(String),
}

impl StorageError {
    /// Whether the transaction lost a race with another writer and would succeed if redone: a
    /// unique violation, a deadlock the database broke, a serialization failure.
    pub fn is_conflict(&self) -> bool {
        match self {
            StorageError::Database(sqlx::Error::Database(e)) => {
                e.is_unique_violation() || matches!(e.code().as_deref(), Some("40P01" | "40001"))
            }
            _ => false,
        }
    }
}

/// The message log and source registry.
pub trait EventStore: Send + Sync + 'static {
    /// Appends messages (deduplicating on `(source_id, messageId)` inside the window) and rejected
    /// items in one durable transaction; returns one outcome per message, in order.
    fn append<'a>(
        &'a self,
        messages: &'a [NewMessage],
        rejected: &'a [NewRejected],
    ) -> BoxFuture<'a, Result<Vec<InsertOutcome>, StorageError>>;

    /// [`append`](Self::append) for an intake that counts what waits for a commit: `ticket` is
    /// kept until the commit has ended, even when the caller stops waiting (a store that groups
    /// appends itself keeps it with the queued append; others drop it once the append returns).
    fn append_keeping<'a>(
        &'a self,
        messages: Vec<NewMessage>,
        rejected: Vec<NewRejected>,
        ticket: Ticket,
    ) -> BoxFuture<'a, Result<Vec<InsertOutcome>, StorageError>> {
        Box::pin(async move {
            let result = self.append(&messages, &rejected).await;
            drop(ticket);
            result
        })
    }

    /// Whether the store groups concurrent appends into commits itself (the embedded default's log
    /// writer): then it makes commits of at most `largest_commit` messages (or one append, if
    /// larger), tells `observer` of each, and callers append directly instead of through a
    /// group-commit task of their own. Other stores answer false and keep no observer.
    fn groups_appends(&self, observer: Arc<dyn CommitObserver>, largest_commit: usize) -> bool {
        drop((observer, largest_commit));
        false
    }

    /// Creates a source, or updates its write key when the name exists.
    fn upsert_source<'a>(
        &'a self,
        name: &'a str,
        write_key: &'a str,
    ) -> BoxFuture<'a, Result<SourceRow, StorageError>>;

    /// All sources.
    fn sources(&self) -> BoxFuture<'_, Result<Vec<SourceRow>, StorageError>>;

    /// The stored messages with this messageId (any source), oldest first.
    fn messages_by_id<'a>(
        &'a self,
        message_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<StoredMessage>, StorageError>>;

    /// The newest `limit` messages of a source, newest first.
    fn recent_messages(
        &self,
        source_id: i64,
        limit: i64,
    ) -> BoxFuture<'_, Result<Vec<StoredMessage>, StorageError>>;

    /// Number of stored messages and of rejected items.
    fn counts(&self) -> BoxFuture<'_, Result<(i64, i64), StorageError>>;

    /// Forgets messageIds received before `before_ms` so they no longer deduplicate; returns how many.
    fn expire_dedup(&self, before_ms: i64) -> BoxFuture<'_, Result<u64, StorageError>>;

    /// The stored value of a named sync cursor (`None` before the first sync).
    fn sync_cursor<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, StorageError>>;

    /// Records a named sync cursor.
    fn set_sync_cursor<'a>(
        &'a self,
        name: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<(), StorageError>>;

    /// Checks the database answers.
    fn ping(&self) -> BoxFuture<'_, Result<(), StorageError>>;
}

/// Truncates a rejected body so a hostile client cannot fill the disk through the reject path.
pub(crate) fn truncate_body(body: &str) -> String {
    const MAX: usize = 32 * 1024;
    if body.len() <= MAX {
        return body.to_owned();
    }
    let mut end = MAX;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    body[..end].to_owned()
}

/// Held for the life of a write transaction on SQLite (see [`BeginWrite`]); empty on PostgreSQL.
#[derive(Default)]
pub(crate) struct Gate {
    _held: Vec<tokio::sync::OwnedMutexGuard<()>>,
}

impl Gate {
    /// Whether the transaction holds any in-process gate (SQLite) or none (PostgreSQL).
    #[cfg(test)]
    pub(crate) fn is_held(&self) -> bool {
        !self._held.is_empty()
    }
}

/// The in-process write gate of one SQLite file: writers queue on an async mutex and wake as soon as
/// the previous transaction ends, instead of sleeping in SQLite's busy handler (whose back-off of up
/// to 100 ms per retry was the p99 of ingestion while the pipeline stages were writing). Ingestion
/// has priority: a writer of the log file lets a waiting ingest commit go first (for at most
/// 100 ms), because clients wait for acknowledgements while the stages only catch up later.
#[derive(Default)]
pub(crate) struct SqliteGate {
    lock: Arc<tokio::sync::Mutex<()>>,
    ingest_waiting: std::sync::atomic::AtomicUsize,
}

impl SqliteGate {
    /// Takes the gate for an ingest commit, ahead of the other writers waiting for it (they see
    /// `ingest_waiting`), from a thread outside the async runtime (the log writer's).
    pub(crate) fn take_for_ingest(&self) -> tokio::sync::OwnedMutexGuard<()> {
        use std::sync::atomic::Ordering;
        self.ingest_waiting.fetch_add(1, Ordering::AcqRel);
        let guard = self.lock.clone().blocking_lock_owned();
        self.ingest_waiting.fetch_sub(1, Ordering::AcqRel);
        guard
    }

    /// Waits (at most 100 ms) while an ingest commit is queued on this gate.
    async fn yield_to_ingest(&self) {
        use std::sync::atomic::Ordering;
        for _ in 0..100 {
            if self.ingest_waiting.load(Ordering::Acquire) == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
}

/// A statement that takes the write lock of the state file (SQLite's `main` schema) and of nothing
/// else, without changing a row: SQLite starts the write transaction of the schema an `UPDATE`
/// names before it evaluates the `WHERE`. A deferred transaction that runs it first can then read
/// the log file freely while ingestion keeps appending to it.
const LOCK_STATE_FILE: &str = "UPDATE main.pipeline_cursors SET seq = seq WHERE 0";

/// One database: its connection pool and, on SQLite, the write gates of its files. On the embedded
/// default the log (`sources`, `messages`, `rejected_messages`) lives in a file of its own next to
/// the pipeline state, each with its own gate, so an append never waits behind a stage's commit
/// (see [`SqliteStore::connect`]); an in-memory database is one file with one gate for both. Every
/// repository over the database holds a clone of this one object, so they all queue on the same
/// gates; nothing keeps gates in a process-wide map. Queries run on it like on a pool
/// (`.fetch_all(&self.pool)`).
pub struct Db<D: sqlx::Database> {
    pool: sqlx::Pool<D>,
    /// The log writer thread, when the log has a file of its own (the embedded default): it keeps
    /// the intake's priority while the shared pool's SQLite threads run in the background.
    log_writer: Option<Arc<sqlite_log_writer::LogWriter>>,
    log_gate: Arc<SqliteGate>,
    state_gate: Arc<SqliteGate>,
}

impl<D: sqlx::Database> Clone for Db<D> {
    fn clone(&self) -> Self {
        Db {
            pool: self.pool.clone(),
            log_writer: self.log_writer.clone(),
            log_gate: self.log_gate.clone(),
            state_gate: self.state_gate.clone(),
        }
    }
}

impl<D: sqlx::Database> std::fmt::Debug for Db<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("pool", &self.pool)
            .field("split", &self.is_split())
            .finish()
    }
}

impl<D: sqlx::Database> Db<D> {
    /// The database behind `pool`, one file with one write gate.
    pub fn new(pool: sqlx::Pool<D>) -> Db<D> {
        let gate = Arc::<SqliteGate>::default();
        Db {
            pool,
            log_writer: None,
            log_gate: gate.clone(),
            state_gate: gate,
        }
    }

    /// The database behind `pool` whose log tables live in a file of their own (attached as
    /// `log` on every connection): two write gates, one per file.
    pub(crate) fn split(pool: sqlx::Pool<D>) -> Db<D> {
        Db {
            pool,
            log_writer: None,
            log_gate: Arc::default(),
            state_gate: Arc::default(),
        }
    }

    /// The same database, appending through a log writer thread on the log file at `log`; the
    /// thread takes this database's log gate for each of its commits.
    pub(crate) fn with_log_writer(self, log: &std::path::Path) -> Result<Db<D>, StorageError> {
        let writer = sqlite_log_writer::LogWriter::open(log, self.log_gate.clone())?;
        Ok(Db {
            log_writer: Some(Arc::new(writer)),
            ..self
        })
    }

    /// The log writer thread, if the log has a file of its own.
    pub(crate) fn log_writer(&self) -> Option<&sqlite_log_writer::LogWriter> {
        self.log_writer.as_deref()
    }

    /// Whether the log and the pipeline state have separate files and gates.
    fn is_split(&self) -> bool {
        !Arc::ptr_eq(&self.log_gate, &self.state_gate)
    }

    /// The connection pool (migrations, a module's own tables).
    pub fn pool(&self) -> &sqlx::Pool<D> {
        &self.pool
    }
}
impl<'p, D: sqlx::Database> sqlx::Executor<'p> for &'_ Db<D>
where
    for<'c> &'c mut D::Connection: sqlx::Executor<'c, Database = D>,
{
    type Database = D;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> futures_util::stream::BoxStream<
        'e,
        Result<sqlx::Either<D::QueryResult, D::Row>, sqlx::Error>,
    >
    where
        E: 'q + sqlx::Execute<'q, D>,
    {
        (&self.pool).fetch_many(query)
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<D::Row>, sqlx::Error>>
    where
        E: 'q + sqlx::Execute<'q, D>,
    {
        (&self.pool).fetch_optional(query)
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [D::TypeInfo],
    ) -> BoxFuture<'e, Result<D::Statement<'q>, sqlx::Error>> {
        (&self.pool).prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, Result<sqlx::Describe<D>, sqlx::Error>> {
        (&self.pool).describe(sql)
    }
}

impl Db<sqlx::Sqlite> {
    /// Begins an append's transaction on the shared pool, ahead of waiting writers of the log
    /// file: the path of a database of one file (in memory), whose appends have no log writer
    /// thread. On a split database it would take the log gate alone and start deferred (its first
    /// statement is the insert, which takes the log file's write lock and no other).
    pub(crate) async fn begin_ingest_write(
        &self,
    ) -> Result<(sqlx::Transaction<'static, sqlx::Sqlite>, Gate), sqlx::Error> {
        let guard = self.ingest_gate().await;
        let begin = if self.is_split() {
            "BEGIN"
        } else {
            "BEGIN IMMEDIATE"
        };
        let tx = self.pool.begin_with(begin).await?;
        Ok((tx, Gate { _held: vec![guard] }))
    }

    /// The log gate, ahead of the other writers waiting for it (they see `ingest_waiting`): the
    /// appends of a database of one file take it; the log writer thread takes it itself
    /// ([`SqliteGate::take_for_ingest`]).
    pub(crate) async fn ingest_gate(&self) -> tokio::sync::OwnedMutexGuard<()> {
        use std::sync::atomic::Ordering;
        self.log_gate.ingest_waiting.fetch_add(1, Ordering::AcqRel);
        let guard = self.log_gate.lock.clone().lock_owned().await;
        self.log_gate.ingest_waiting.fetch_sub(1, Ordering::AcqRel);
        guard
    }
}

/// Starts a transaction that will write. On SQLite it waits for the in-process write gates, then
/// takes the write locks before the first read, so a transaction that reads and then writes can
/// never fail with "database is locked" when another writer committed in between. Keep the
/// returned [`Gate`] until the transaction ends.
pub(crate) trait BeginWrite {
    /// The database.
    type Db: sqlx::Database;

    /// Begins a transaction that may write anything, the log included (erasure, retention, replay
    /// of quarantined messages): on SQLite it takes both gates (log first) and `BEGIN IMMEDIATE`.
    fn begin_write(
        &self,
    ) -> impl std::future::Future<
        Output = Result<(sqlx::Transaction<'static, Self::Db>, Gate), sqlx::Error>,
    > + Send;

    /// Begins another transaction that may write anything, under the gates a finished
    /// [`begin_write`](BeginWrite::begin_write) transaction returned: for work committed in two
    /// steps with no other writer of this process in between.
    fn begin_write_under(
        &self,
        held: &Gate,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>>
    + Send;

    /// Whether the log tables live in a file of their own (the embedded default on disk), whose
    /// commits are not atomic with the state file's: a transaction writing both commits the state
    /// file first.
    fn log_file_is_separate(&self) -> bool;

    /// Begins a transaction that may read the log but writes only the pipeline state (every
    /// stage's batch, the outbox, audiences, CRM and API bookkeeping). On a split SQLite database
    /// it takes the state gate and the state file's write lock only, so ingestion keeps
    /// committing to the log meanwhile; it must not write a log table.
    fn begin_state_write(
        &self,
    ) -> impl std::future::Future<
        Output = Result<(sqlx::Transaction<'static, Self::Db>, Gate), sqlx::Error>,
    > + Send;
}

impl BeginWrite for Db<sqlx::Sqlite> {
    type Db = sqlx::Sqlite;

    fn log_file_is_separate(&self) -> bool {
        self.is_split()
    }

    async fn begin_write_under(
        &self,
        _held: &Gate,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    async fn begin_write(
        &self,
    ) -> Result<(sqlx::Transaction<'static, sqlx::Sqlite>, Gate), sqlx::Error> {
        self.log_gate.yield_to_ingest().await;
        let mut guards = vec![self.log_gate.lock.clone().lock_owned().await];
        if self.is_split() {
            guards.push(self.state_gate.lock.clone().lock_owned().await);
        }
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok((tx, Gate { _held: guards }))
    }

    async fn begin_state_write(
        &self,
    ) -> Result<(sqlx::Transaction<'static, sqlx::Sqlite>, Gate), sqlx::Error> {
        if !self.is_split() {
            return self.begin_write().await;
        }
        let guard = self.state_gate.lock.clone().lock_owned().await;
        let mut tx = self.pool.begin_with("BEGIN").await?;
        sqlx::query(LOCK_STATE_FILE).execute(&mut *tx).await?;
        Ok((tx, Gate { _held: vec![guard] }))
    }
}

impl BeginWrite for Db<sqlx::Postgres> {
    type Db = sqlx::Postgres;

    fn log_file_is_separate(&self) -> bool {
        false
    }

    async fn begin_write_under(
        &self,
        _held: &Gate,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    async fn begin_write(
        &self,
    ) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, Gate), sqlx::Error> {
        Ok((self.pool.begin().await?, Gate::default()))
    }

    async fn begin_state_write(
        &self,
    ) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, Gate), sqlx::Error> {
        self.begin_write().await
    }
}

/// A statement assembled at run time with its bound values: the text `sqlx::QueryBuilder` would
/// build (each bind formatted by the database's own arguments, `?` on SQLite and `$N` on
/// PostgreSQL), but the arguments are handed over by value. Generic code cannot run a
/// `QueryBuilder`: running it borrows the builder for the lifetime of its own arguments, and the
/// borrow checker then cannot prove that dropping the builder is sound for an unknown database.
pub(crate) struct Statement<'a, DB: sqlx::Database> {
    sql: String,
    args: DB::Arguments<'a>,
}

impl<'a, DB: sqlx::Database> Statement<'a, DB> {
    /// Starts a statement with a SQL fragment.
    pub(crate) fn new(init: impl Into<String>) -> Self {
        Statement {
            sql: init.into(),
            args: Default::default(),
        }
    }

    /// Appends SQL text.
    pub(crate) fn push(&mut self, sql: impl std::fmt::Display) -> &mut Self {
        use std::fmt::Write;
        write!(self.sql, "{sql}").expect("error formatting `sql`");
        self
    }

    /// Binds a value and appends its placeholder.
    pub(crate) fn push_bind<T: 'a + sqlx::Encode<'a, DB> + sqlx::Type<DB>>(
        &mut self,
        value: T,
    ) -> &mut Self {
        use sqlx::Arguments;
        self.args.add(value).expect("Failed to add argument");
        self.args
            .format_placeholder(&mut self.sql)
            .expect("error in format_placeholder");
        self
    }

    /// Binds values and appends their placeholders, separated by `, `.
    pub(crate) fn push_bind_list<T: 'a + sqlx::Encode<'a, DB> + sqlx::Type<DB>>(
        &mut self,
        values: impl IntoIterator<Item = T>,
    ) -> &mut Self {
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.push_bind(value);
        }
        self
    }

    /// The SQL text and its arguments, for `sqlx::query_as_with` and friends.
    pub(crate) fn into_parts(self) -> (String, DB::Arguments<'a>) {
        (self.sql, self.args)
    }
}

/// Starts a read-only transaction that sees one consistent snapshot for all its statements:
/// SQLite's deferred read transaction; PostgreSQL's `REPEATABLE READ READ ONLY` (its default READ
/// COMMITTED would let a commit land between the statements of one evaluation).
pub(crate) trait BeginRead {
    /// The database.
    type Db: sqlx::Database;
    /// Begins the read transaction.
    fn begin_read(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>>
    + Send;

    /// The log position up to which every append has ended, committed or rolled back: a reader
    /// whose snapshot starts after this call and reads `seq <= horizon` never skips a row that
    /// commits later. SQLite appends one transaction at a time, in position order, so any
    /// position it can see is safe.
    fn log_horizon(&self) -> impl std::future::Future<Output = Result<i64, sqlx::Error>> + Send;
}

impl BeginRead for Db<sqlx::Sqlite> {
    type Db = sqlx::Sqlite;
    async fn begin_read(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin().await
    }

    async fn log_horizon(&self) -> Result<i64, sqlx::Error> {
        Ok(i64::MAX)
    }
}

impl BeginRead for Db<sqlx::Postgres> {
    type Db = sqlx::Postgres;
    async fn begin_read(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
    }

    async fn log_horizon(&self) -> Result<i64, sqlx::Error> {
        // Appends to different partitions commit in any order, but each draws its positions
        // while marking its partitions (a shared advisory lock), until it ends. log_horizon()
        // (migration 0017) reads the last position drawn, then waits, one partition at a time
        // and holding nothing while it waits, until each partition is unmarked for a moment. An
        // append that drew a position up to `last` was marking its partitions when `last` was
        // read, so it has ended by then. One statement of its own, on no open transaction.
        sqlx::query_scalar("SELECT log_horizon()")
            .fetch_one(&self.pool)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_repository_over_one_database_queues_on_its_one_write_gate() {
        let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
        let db = Db::new(pool.clone());
        let repository = db.clone();
        let (tx, gate) = db.begin_write().await.unwrap();
        assert!(gate.is_held());
        assert!(
            repository.state_gate.lock.try_lock().is_err(),
            "a clone waits for the writer"
        );
        assert!(
            Db::new(pool).state_gate.lock.try_lock().is_ok(),
            "another database has a gate of its own"
        );
        drop((tx, gate));
        assert!(repository.state_gate.lock.try_lock().is_ok());
    }

    /// A database split like the embedded default's: `main` with `pipeline_cursors`, `log` with
    /// `messages`, in two files of `dir`.
    async fn split_database(dir: &std::path::Path) -> Db<sqlx::Sqlite> {
        use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
        let log = dir.join("log.db").display().to_string();
        let options = SqliteConnectOptions::new()
            .filename(dir.join("state.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_millis(200));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .after_connect(move |conn, _| {
                let log = log.clone();
                Box::pin(async move {
                    sqlx::query("ATTACH DATABASE ?1 AS log")
                        .bind(log)
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .unwrap();
        sqlx::raw_sql(
            "CREATE TABLE main.pipeline_cursors (name TEXT PRIMARY KEY, seq BIGINT); \
             PRAGMA log.journal_mode = WAL; \
             CREATE TABLE log.messages (seq INTEGER PRIMARY KEY)",
        )
        .execute(&pool)
        .await
        .unwrap();
        Db::split(pool)
    }

    #[tokio::test]
    async fn on_a_split_database_an_append_commits_while_a_stage_holds_the_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = split_database(dir.path()).await;
        let (mut stage, _state_gate) = db.begin_state_write().await.unwrap();
        sqlx::query("SELECT count(*) FROM messages")
            .execute(&mut *stage)
            .await
            .unwrap();
        let (mut append, gate) = db.begin_ingest_write().await.unwrap();
        sqlx::query("INSERT INTO messages (seq) VALUES (1)")
            .execute(&mut *append)
            .await
            .unwrap();
        append.commit().await.unwrap();
        drop(gate);
        sqlx::query("INSERT INTO pipeline_cursors (name, seq) VALUES ('profiles', 1)")
            .execute(&mut *stage)
            .await
            .unwrap();
        stage.commit().await.unwrap();
    }

    #[tokio::test]
    async fn a_stage_transaction_holds_the_state_file_write_lock_from_its_first_statement() {
        let dir = tempfile::tempdir().unwrap();
        let db = split_database(dir.path()).await;
        let (_stage, _gate) = db.begin_state_write().await.unwrap();
        // A writer that skips the gate (another process) finds the state file locked.
        let e = sqlx::query("INSERT INTO pipeline_cursors (name, seq) VALUES ('x', 1)")
            .execute(db.pool())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("locked"), "{e}");
    }

    #[tokio::test]
    async fn a_write_to_both_files_waits_for_both_gates() {
        let dir = tempfile::tempdir().unwrap();
        let db = split_database(dir.path()).await;
        let (stage, gate) = db.begin_state_write().await.unwrap();
        assert!(
            db.log_gate.lock.try_lock().is_ok(),
            "a stage leaves the log gate free"
        );
        let both = tokio::spawn({
            let db = db.clone();
            async move { db.begin_write().await.map(|_| ()) }
        });
        // It takes the log gate, then queues on the state gate the stage holds.
        for _ in 0..1000 {
            if db.log_gate.lock.try_lock().is_err() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(
            db.log_gate.lock.try_lock().is_err(),
            "it holds the log gate"
        );
        assert!(!both.is_finished(), "it waits for the stage");
        drop((stage, gate));
        both.await.unwrap().unwrap();
    }

    #[test]
    fn every_status_reads_back_from_its_stored_name() {
        for s in [Status::Accepted, Status::Flagged, Status::Blocked] {
            assert_eq!(Status::parse(s.as_str()).unwrap(), s);
        }
    }

    #[test]
    fn an_unknown_stored_status_is_a_clear_error() {
        let e = Status::parse("quarantined").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unexpected stored value: unknown message status \"quarantined\" (expected accepted, flagged or blocked)"
        );
    }
}
