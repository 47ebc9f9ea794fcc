//! The embedded default's log writer: one OS thread that owns a rusqlite connection to the log file
//! and makes the group commits of every append, with prepared statements.
//!
//! Through sqlx, an append went to sqlx's SQLite worker thread as a boxed command whose arguments
//! were copied into owned values, and each `RETURNING` row came back over a channel on its own. Here
//! an append is one hand-off each way: its messages go to the thread, the thread binds them straight
//! into a cached statement, steps it, commits, and sends back one vector of outcomes. The thread
//! keeps the intake's CPU priority (it is not one of the background threads).
//!
//! The thread groups appends itself: when a commit ends, it takes the log's write gate
//! ([`super::SqliteGate::take_for_ingest`]), as any other writer of the log file does, and makes one commit of
//! every append that queued meanwhile. The next commit starts as soon as the last one ended, with
//! no task to wake in between: without the group-commit task that sat between requests and this
//! thread, `/v1/track` made 1.20× the events/s (BENCHMARKS.md, "The log thread groups appends").
//! The gate is held until the commit has ended, so a caller that stops waiting (a cancelled
//! request) never lets another writer in while its commit still runs.

use super::{InsertOutcome, NewMessage, NewRejected, StorageError};
use rusqlite::{Connection, TransactionBehavior};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, OnceLock, mpsc};
use std::time::Duration;
use tokio::sync::oneshot;

/// Messages per multi-row insert: 13 values each, 26,000 in all, under SQLite's limit of 32,766
/// variables per statement. A group commit of up to this many messages is one statement (a batch
/// of 20-message requests from 64 connections fills about 1,300); 2,000 rather than 100 gave
/// `/v1/batch` 1.36× (BENCHMARKS.md).
pub(crate) const ROWS_PER_INSERT: usize = 2_000;
/// Inserts of at most this many rows keep their prepared statement (one per row count); larger ones,
/// which SQLite compiles to hundreds of kilobytes, are prepared for the one use.
pub(crate) const CACHED_ROWS: usize = 100;
/// Until an intake sets its own ([`LogWriter::observe`]), a commit takes queued appends until it
/// holds this many messages (an append is never split).
const COMMIT_UP_TO: usize = 4_096;

/// Told of every commit the log writer makes, for the intake's statistics and pressure.
pub trait CommitObserver: Send + Sync {
    /// A commit of `appends` appends is about to start (reported before it, so a commit that
    /// stalls on the disk does not make the intake look busy for longer).
    fn starting(&self, appends: usize);
    /// A commit with `rows` messages and rejected items in all has ended; `ok` is whether it stored
    /// them. A shared commit that failed and is tried again append by append is not reported;
    /// each retry is.
    fn committed(&self, rows: usize, ok: bool);
}

/// Kept by an append until its commit has ended, even when its caller stops waiting: the intake's
/// count of waiting messages (its queue bound) drops when this does.
pub type Ticket = Box<dyn Send>;

/// One append and where its answer goes.
struct Job {
    messages: Vec<NewMessage>,
    rejected: Vec<NewRejected>,
    /// Dropped with the job, once it is answered.
    ticket: Option<Ticket>,
    done: oneshot::Sender<rusqlite::Result<Vec<InsertOutcome>>>,
}

/// The handle: appends go to the writer thread; the thread ends when this is dropped.
pub(crate) struct LogWriter {
    jobs: mpsc::Sender<Job>,
    thread: std::thread::JoinHandle<()>,
    grouping: Arc<OnceLock<Grouping>>,
}

/// Who hears of each commit, and how many messages one commit takes at most.
struct Grouping {
    observer: Arc<dyn CommitObserver>,
    largest_commit: usize,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter")
            .field("running", &self.is_running())
            .field("observed", &self.grouping.get().is_some())
            .finish()
    }
}

impl LogWriter {
    /// Opens the log file at `path` (created and migrated already) and starts the writer thread,
    /// which takes `gate` for each commit.
    pub(crate) fn open(
        path: &Path,
        gate: Arc<super::SqliteGate>,
    ) -> Result<LogWriter, StorageError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // Durable when a commit returns, as every connection of the embedded default.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StorageError::Corrupt(format!(
                "the log file {} stays in journal mode {mode}, not WAL",
                path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.set_prepared_statement_cache_capacity(CACHED_ROWS + 4);
        let (jobs, queue) = mpsc::channel::<Job>();
        let grouping = Arc::new(OnceLock::<Grouping>::new());
        let set = grouping.clone();
        let thread = std::thread::Builder::new()
            .name("tp-sqlite-in".into())
            .spawn(move || {
                let mut conn = conn;
                while let Ok(first) = queue.recv() {
                    // Take the gate first, so the appends that queue while another writer of the
                    // log holds it join this commit.
                    let held = gate.take_for_ingest();
                    let mut jobs = vec![first];
                    let mut rows = jobs[0].rows();
                    let largest = set.get().map_or(COMMIT_UP_TO, |g| g.largest_commit);
                    while rows < largest {
                        let Ok(job) = queue.try_recv() else { break };
                        rows += job.rows();
                        jobs.push(job);
                    }
                    let observer = set.get().map(|g| &*g.observer);
                    if let Some(o) = observer {
                        o.starting(jobs.len());
                    }
                    commit_jobs(&mut conn, jobs, observer);
                    drop(held);
                }
            })
            .map_err(|e| StorageError::Database(sqlx::Error::Io(e)))?;
        Ok(LogWriter {
            jobs,
            thread,
            grouping,
        })
    }

    /// Whether the writer thread still runs (`/readyz` asks): it ends only on a panic outside a
    /// commit's write (in the observer, say), since a panic inside one fails that commit alone.
    pub(crate) fn is_running(&self) -> bool {
        !self.thread.is_finished()
    }

    /// Tells `observer` of every commit from now on, and makes commits of at most
    /// `largest_commit` messages and rejected items (or one append, if larger); false if an
    /// observer was set already (a second intake on the same store then keeps a group-commit task
    /// of its own, whose commits this thread reports to the first).
    pub(crate) fn observe(&self, observer: Arc<dyn CommitObserver>, largest_commit: usize) -> bool {
        let grouping = Grouping {
            observer,
            largest_commit: largest_commit.max(1),
        };
        self.grouping.set(grouping).is_ok()
    }

    /// Appends `messages` and `rejected` durably, in one commit with the other appends queued at
    /// that moment; one outcome per message. The commit stands whether or not the caller still
    /// waits, and `ticket` is kept until it has ended.
    pub(crate) async fn append(
        &self,
        messages: Vec<NewMessage>,
        rejected: Vec<NewRejected>,
        ticket: Option<Ticket>,
    ) -> Result<Vec<InsertOutcome>, StorageError> {
        let (done, answer) = oneshot::channel();
        let job = Job {
            messages,
            rejected,
            ticket,
            done,
        };
        self.jobs
            .send(job)
            .map_err(|_| StorageError::LogWriterStopped)?;
        match answer.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(StorageError::LogWriterStopped),
        }
    }
}

impl Job {
    /// Messages and rejected items.
    fn rows(&self) -> usize {
        self.messages.len() + self.rejected.len()
    }

    /// Lets go of the ticket (the commit has ended), then answers; the caller may have gone (its
    /// request was cancelled), and the commit stands.
    fn answer(self, result: rusqlite::Result<Vec<InsertOutcome>>) {
        let Job { ticket, done, .. } = self;
        drop(ticket);
        drop(done.send(result));
    }
}

/// Whether a failed shared commit may have failed for one of its appends alone, so that trying
/// each on its own saves the others: a constraint, a statement that stored other than asked, or a
/// panic (a bug). A busy or full database, or an I/O error, fails every append alike: trying them
/// one by one would only make each wait again (up to the busy timeout) while holding the gate.
fn worth_retrying_alone(
    result: &std::thread::Result<rusqlite::Result<Vec<InsertOutcome>>>,
) -> bool {
    match result {
        Ok(Ok(_)) => false,
        Ok(Err(rusqlite::Error::SqliteFailure(e, _))) => {
            e.code == rusqlite::ErrorCode::ConstraintViolation
        }
        Ok(Err(_)) | Err(_) => true,
    }
}

/// The same error for another append of a failed shared commit.
fn shared_error(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

/// Makes one commit of `jobs` and answers each. When that commit fails for what may be one append's
/// fault ([`worth_retrying_alone`]) and holds more than one, each is tried again in a commit of its
/// own, so one bad append does not fail the others that shared its commit; any other failure is
/// every append's answer. A panic (a bug) fails the appends of its commit alone: their callers see
/// the writer stop for them; unwinding rolls the transaction back.
fn commit_jobs(conn: &mut Connection, mut jobs: Vec<Job>, observer: Option<&dyn CommitObserver>) {
    let mut messages = Vec::with_capacity(jobs.iter().map(|j| j.messages.len()).sum());
    let mut rejected = Vec::new();
    let mut shares = Vec::with_capacity(jobs.len());
    for job in &mut jobs {
        shares.push((job.messages.len(), job.rejected.len()));
        messages.append(&mut job.messages);
        rejected.append(&mut job.rejected);
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        write(conn, &messages, &rejected)
    }));
    let retry = jobs.len() > 1 && worth_retrying_alone(&result);
    if let Some(o) = observer
        && !retry
    {
        o.committed(messages.len() + rejected.len(), matches!(result, Ok(Ok(_))));
    }
    if retry {
        match &result {
            Ok(Err(e)) => tracing::warn!(
                error = %e,
                appends = jobs.len(),
                "a group commit of the log failed; trying its appends one by one"
            ),
            _ => tracing::error!(
                appends = jobs.len(),
                "the log writer panicked on a group commit; trying its appends one by one"
            ),
        }
        let mut messages = messages.into_iter();
        let mut rejected = rejected.into_iter();
        for (mut job, (share, rejected_share)) in jobs.into_iter().zip(shares) {
            job.messages = messages.by_ref().take(share).collect();
            job.rejected = rejected.by_ref().take(rejected_share).collect();
            commit_jobs(conn, vec![job], observer);
        }
        return;
    }
    match result {
        Ok(Ok(outcomes)) => {
            let mut rest = outcomes.as_slice();
            for (job, (share, _)) in jobs.into_iter().zip(shares) {
                let (mine, tail) = rest.split_at(share);
                rest = tail;
                job.answer(Ok(mine.to_vec()));
            }
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, appends = jobs.len(), "a commit of the log failed");
            let mut jobs = jobs.into_iter();
            let last = jobs.next_back();
            for job in jobs {
                job.answer(Err(shared_error(&e)));
            }
            if let Some(job) = last {
                job.answer(Err(e));
            }
        }
        // Dropping the jobs unanswered tells their callers the writer stopped for them.
        Err(_) => tracing::error!(
            messages = messages.len(),
            "the log writer panicked on a commit; its caller gets an error"
        ),
    }
}

/// One group commit, in one transaction: the messages not already inside the dedup window
/// ([`fresh`]), then the rejected items.
fn write(
    conn: &mut Connection,
    messages: &[NewMessage],
    rejected: &[NewRejected],
) -> rusqlite::Result<Vec<InsertOutcome>> {
    // End any transaction an earlier failure left open (rusqlite ignores a failed rollback when a
    // transaction drops), so this commit is not folded into it.
    if !conn.is_autocommit() {
        tracing::warn!("the log writer found a transaction left open; rolling it back");
        conn.execute_batch("ROLLBACK")?;
    }
    let mut out = vec![InsertOutcome::Duplicate; messages.len()];
    if messages.is_empty() && rejected.is_empty() {
        return Ok(out);
    }
    // Immediate: the dedup probes and the insert see no other writer's commit in between, even
    // one from another process on the same file.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let keep = fresh(&tx, messages)?;
    for slots in keep.chunks(ROWS_PER_INSERT) {
        insert_messages(&tx, messages, slots, &mut out)?;
    }
    {
        let mut insert = tx.prepare_cached(INSERT_REJECTED)?;
        for r in rejected {
            insert.execute((
                r.source_id,
                r.received_at_ms,
                &r.reason,
                super::truncate_body(&r.body),
            ))?;
        }
    }
    tx.commit()?;
    Ok(out)
}

/// Whether the log holds a messageId of a source inside the dedup window (`dedup_key` is set
/// until the window has passed). It runs on the log file's one index over messageIds,
/// `(message_id, source_id)`; a hit reads the row, a miss (almost every message) does not.
const IN_DEDUP_WINDOW: &str = "SELECT EXISTS (SELECT 1 FROM messages \
     WHERE message_id = ?1 AND source_id = ?2 AND dedup_key IS NOT NULL)";

/// The positions in `messages` to insert: the first of each (source, messageId) in the commit,
/// unless the log already holds it inside the dedup window.
///
/// The log file keeps one index over messageIds instead of a unique one for deduplication beside
/// one for lookups (migration `sqlite-log/0002`): SDKs send random (UUIDv4) messageIds, so each
/// such index costs every message a page of its own in the commit's WAL frames and again in the
/// checkpoint. The probe runs under the log gate in the commit's transaction, so no other writer
/// can store the same messageId between the probe and the insert.
fn fresh(tx: &Connection, messages: &[NewMessage]) -> rusqlite::Result<Vec<usize>> {
    let mut seen: HashSet<(i64, &str)> = HashSet::with_capacity(messages.len());
    let mut probe = tx.prepare_cached(IN_DEDUP_WINDOW)?;
    let mut keep = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        if !seen.insert((m.source_id, m.message_id.as_str())) {
            continue;
        }
        let held: bool = probe.query_row((&m.message_id, m.source_id), |r| r.get(0))?;
        if !held {
            keep.push(i);
        }
    }
    Ok(keep)
}

/// The insert of one rejected item (source, received at, reason, truncated body); the in-memory
/// path runs it through sqlx.
pub(crate) const INSERT_REJECTED: &str =
    "INSERT INTO rejected_messages (source_id, received_at, reason, body) VALUES (?1, ?2, ?3, ?4)";

/// Values per message in [`insert_sql`]'s statement.
const COLUMNS: usize = 13;

/// How an insert of messages leaves out repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Repeats {
    /// The caller left them out already ([`fresh`]): the log file, which has no unique index.
    LeftOut,
    /// `ON CONFLICT` on the unique `(source_id, dedup_key)` index drops them: a database of one
    /// file (in memory), whose schema keeps that index.
    DroppedOnConflict,
}

/// The insert of `rows` messages in one statement, `?` placeholders in the order the callers bind
/// (source, messageId twice (the id and its dedup key), kind, event, userId, anonymousId, event
/// time, received at, plan version, status, violations, body).
///
/// With [`Repeats::DroppedOnConflict`] some rows may not be stored, so it returns each stored row's
/// seq, source and messageId ([`match_stored`]). With [`Repeats::LeftOut`] every row is stored, in
/// order, at consecutive seqs ending at the connection's last insert rowid (`AUTOINCREMENT` gives
/// each row one more than the largest seq ever used, and the writer holds the file's write lock):
/// no `RETURNING`, whose rows SQLite buffers and copies out one by one. It is `INSERT OR ROLLBACK`:
/// a `NOT NULL` or `CHECK` failure ends the whole transaction at once instead of the statement
/// alone. A foreign-key failure still aborts the statement alone (SQLite applies no conflict clause
/// to foreign keys), and [`write`]'s transaction is then rolled back as it drops. The two changes
/// together took the statement journal's page copies off the writer's profile
/// (`subjournalPageIfRequired` 1.7 % → 0.1 % of the server's samples); which of them did it was
/// not measured apart.
pub(crate) fn insert_sql(rows: usize, repeats: Repeats) -> String {
    let mut sql = String::with_capacity(200 + rows * 2 * COLUMNS);
    sql.push_str(match repeats {
        Repeats::LeftOut => "INSERT OR ROLLBACK",
        Repeats::DroppedOnConflict => "INSERT",
    });
    sql.push_str(
        " INTO messages (source_id, message_id, dedup_key, kind, event, user_id, \
         anonymous_id, event_time, received_at, plan_version, status, violations, body) VALUES ",
    );
    for i in 0..rows {
        sql.push_str(if i == 0 { "(?" } else { ",(?" });
        sql.push_str(&",?".repeat(COLUMNS - 1));
        sql.push(')');
    }
    if repeats == Repeats::DroppedOnConflict {
        sql.push_str(
            " ON CONFLICT (source_id, dedup_key) DO NOTHING RETURNING seq, source_id, message_id",
        );
    }
    sql
}

/// Sets `out[i]` to where `messages[i]` was stored, for each `i` in `slots`, from the `RETURNING`
/// rows of [`insert_sql`] (seq, source, messageId), which come in no promised order; a message
/// without a row was a duplicate and keeps its outcome. Among the slots, the first input of a
/// messageId wins.
pub(crate) fn match_stored(
    messages: &[NewMessage],
    slots: impl IntoIterator<Item = usize>,
    stored: &[(i64, i64, String)],
    out: &mut [InsertOutcome],
) {
    let mut inserted: HashMap<(i64, &str), i64> = stored
        .iter()
        .map(|(seq, source, id)| ((*source, id.as_str()), *seq))
        .collect();
    for i in slots {
        let m = &messages[i];
        if let Some(seq) = inserted.remove(&(m.source_id, m.message_id.as_str())) {
            out[i] = InsertOutcome::Stored(seq);
        }
    }
}

/// Inserts the messages at `slots` (at most [`ROWS_PER_INSERT`], no two alike) in one statement,
/// setting their outcomes in `out` to where each was stored.
fn insert_messages(
    tx: &Connection,
    messages: &[NewMessage],
    slots: &[usize],
    out: &mut [InsertOutcome],
) -> rusqlite::Result<()> {
    let sql = insert_sql(slots.len(), Repeats::LeftOut);
    let mut cached;
    let mut once;
    let statement = if slots.len() <= CACHED_ROWS {
        cached = tx.prepare_cached(&sql)?;
        &mut *cached
    } else {
        once = tx.prepare(&sql)?;
        &mut once
    };
    for (i, m) in slots.iter().map(|&s| &messages[s]).enumerate() {
        let at = i * COLUMNS;
        statement.raw_bind_parameter(at + 1, m.source_id)?;
        statement.raw_bind_parameter(at + 2, &m.message_id)?;
        statement.raw_bind_parameter(at + 3, &m.message_id)?;
        statement.raw_bind_parameter(at + 4, m.kind)?;
        statement.raw_bind_parameter(at + 5, &m.event)?;
        statement.raw_bind_parameter(at + 6, &m.user_id)?;
        statement.raw_bind_parameter(at + 7, &m.anonymous_id)?;
        statement.raw_bind_parameter(at + 8, m.event_time_ms)?;
        statement.raw_bind_parameter(at + 9, m.received_at_ms)?;
        statement.raw_bind_parameter(at + 10, &*m.plan_version)?;
        statement.raw_bind_parameter(at + 11, m.status.as_str())?;
        statement.raw_bind_parameter(at + 12, &m.violations_json)?;
        statement.raw_bind_parameter(at + 13, &m.body_json)?;
    }
    let inserted = statement.raw_execute()?;
    if inserted != slots.len() {
        // Cannot happen (no conflict clause; a failed constraint is an error); refuse to guess seqs.
        return Err(rusqlite::Error::StatementChangedRows(inserted));
    }
    let last = tx.last_insert_rowid();
    for (seq, &slot) in consecutive_seqs(last, slots.len()).zip(slots) {
        out[slot] = InsertOutcome::Stored(seq);
    }
    Ok(())
}

/// The seqs of `rows` rows one multi-row insert stored, in `VALUES` order, the last at `last`.
fn consecutive_seqs(last: i64, rows: usize) -> impl Iterator<Item = i64> {
    let first = last - rows as i64 + 1;
    first..=last
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::sqlite::tests::{message, store_in};
    use crate::storage::{EventStore, sqlite_log_file};

    #[test]
    fn the_insert_binds_thirteen_values_per_message() {
        let sql = insert_sql(3, Repeats::LeftOut);
        assert_eq!(sql.matches('?').count(), 3 * COLUMNS);
        assert_eq!(sql.matches("),(").count(), 2);
        assert!(sql.starts_with("INSERT OR ROLLBACK INTO"), "{sql}");
        assert!(!sql.contains("ON CONFLICT") && !sql.contains("RETURNING"));
        let on_conflict = insert_sql(3, Repeats::DroppedOnConflict);
        assert!(on_conflict.contains("ON CONFLICT") && on_conflict.contains("RETURNING"));
    }

    #[test]
    fn a_multi_row_insert_takes_consecutive_seqs_ending_at_the_last_rowid() {
        assert_eq!(consecutive_seqs(12, 3).collect::<Vec<_>>(), [10, 11, 12]);
        assert_eq!(consecutive_seqs(1, 1).collect::<Vec<_>>(), [1]);
    }

    #[tokio::test]
    async fn seqs_returned_are_the_seqs_stored_even_after_the_newest_rows_were_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path()).await;
        let source = store.upsert_source("web", "wk").await.unwrap().id;
        let mut conn = Connection::open(sqlite_log_file(&dir.path().join("t.db"))).unwrap();
        let first = write(
            &mut conn,
            &[message(source, "a"), message(source, "b")],
            &[],
        )
        .unwrap();
        // AUTOINCREMENT never reuses a seq, even when the newest rows are gone.
        conn.execute("DELETE FROM messages", []).unwrap();
        let batch = [
            message(source, "c"),
            message(source, "d"),
            message(source, "c"),
        ];
        let out = write(&mut conn, &batch, &[]).unwrap();
        let stored: Vec<(i64, String)> = conn
            .prepare("SELECT seq, message_id FROM messages ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(first, [InsertOutcome::Stored(1), InsertOutcome::Stored(2)]);
        assert_eq!(
            out,
            [
                InsertOutcome::Stored(3),
                InsertOutcome::Stored(4),
                InsertOutcome::Duplicate
            ]
        );
        assert_eq!(stored, [(3, "c".to_owned()), (4, "d".to_owned())]);
    }

    #[test]
    fn a_constraint_failure_rolls_the_whole_commit_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = log_with_one_source(dir.path());
        // Source 2 does not exist: the second row breaks the foreign key.
        let err = write(&mut conn, &[message(1, "a"), message(2, "b")], &[]).unwrap_err();
        assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
        assert!(conn.is_autocommit(), "no transaction is left open");
        let count: i64 = conn
            .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 0, "the first row went with the second");
        let out = write(&mut conn, &[message(1, "a")], &[]).unwrap();
        assert_eq!(out, [InsertOutcome::Stored(1)], "the writer goes on");
    }

    #[test]
    fn returned_rows_in_any_order_are_matched_back_and_duplicates_keep_their_outcome() {
        let chunk = [
            message(1, "a"),
            message(2, "a"),
            message(1, "b"),
            message(1, "a"),
        ];
        let mut out = [InsertOutcome::Duplicate; 4];
        let stored = [
            (12, 1, "b".to_owned()),
            (10, 1, "a".to_owned()),
            (11, 2, "a".to_owned()),
        ];
        match_stored(&chunk, 0..chunk.len(), &stored, &mut out);
        assert_eq!(
            out,
            [
                InsertOutcome::Stored(10),
                InsertOutcome::Stored(11),
                InsertOutcome::Stored(12),
                InsertOutcome::Duplicate,
            ]
        );
    }

    /// A log file migrated by hand, with `foreign_keys` on as the writer thread has it, and source 1.
    fn log_with_one_source(dir: &Path) -> Connection {
        let conn = Connection::open(dir.join("t-log.db")).unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        conn.execute_batch(include_str!("../../migrations/sqlite-log/0001_log.sql"))
            .unwrap();
        conn.execute_batch(include_str!(
            "../../migrations/sqlite-log/0002_one_message_id_index.sql"
        ))
        .unwrap();
        conn.execute(
            "INSERT INTO sources (id, name, write_key, created_at) VALUES (1, 'web', 'wk', 0)",
            [],
        )
        .unwrap();
        conn
    }

    /// An append of `messages` and where its answer arrives.
    fn job(
        messages: Vec<NewMessage>,
    ) -> (Job, oneshot::Receiver<rusqlite::Result<Vec<InsertOutcome>>>) {
        let (done, answer) = oneshot::channel();
        let job = Job {
            messages,
            rejected: vec![],
            ticket: None,
            done,
        };
        (job, answer)
    }

    /// Remembers what it was told of each commit's end (the thread's loop reports the start).
    #[derive(Default)]
    struct Told(std::sync::Mutex<Vec<(usize, bool)>>);

    impl CommitObserver for Told {
        fn starting(&self, _appends: usize) {}

        fn committed(&self, rows: usize, ok: bool) {
            self.0.lock().unwrap().push((rows, ok));
        }
    }

    #[test]
    fn queued_appends_share_one_commit_and_each_gets_its_own_outcomes() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = log_with_one_source(dir.path());
        let (a, a_answer) = job(vec![message(1, "a1"), message(1, "a2")]);
        let (b, b_answer) = job(vec![message(1, "b1"), message(1, "a1")]);
        let told = Told::default();
        commit_jobs(&mut conn, vec![a, b], Some(&told));
        assert_eq!(
            a_answer.blocking_recv().unwrap().unwrap(),
            [InsertOutcome::Stored(1), InsertOutcome::Stored(2)]
        );
        assert_eq!(
            b_answer.blocking_recv().unwrap().unwrap(),
            [InsertOutcome::Stored(3), InsertOutcome::Duplicate],
            "the first of a messageId in the commit wins, across appends"
        );
        assert_eq!(*told.0.lock().unwrap(), [(4, true)]);
    }

    #[test]
    fn a_failed_shared_commit_is_retried_append_by_append_so_only_the_bad_one_fails() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = log_with_one_source(dir.path());
        let (good, good_answer) = job(vec![message(1, "g1")]);
        // Source 2 does not exist: this append breaks the foreign key.
        let (bad, bad_answer) = job(vec![message(2, "b1")]);
        let (later, later_answer) = job(vec![message(1, "g2")]);
        let told = Told::default();
        commit_jobs(&mut conn, vec![good, bad, later], Some(&told));
        assert_eq!(
            good_answer.blocking_recv().unwrap().unwrap(),
            [InsertOutcome::Stored(1)]
        );
        let err = bad_answer.blocking_recv().unwrap().unwrap_err();
        assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
        assert_eq!(
            later_answer.blocking_recv().unwrap().unwrap(),
            [InsertOutcome::Stored(2)]
        );
        assert_eq!(
            *told.0.lock().unwrap(),
            [(1, true), (1, false), (1, true)],
            "the shared commit that was retried is not counted as a failure"
        );
    }

    #[test]
    fn a_busy_log_fails_every_append_of_the_commit_without_trying_each_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = log_with_one_source(dir.path());
        conn.busy_timeout(Duration::ZERO).unwrap();
        // Another process holds the log's write lock.
        let blocker = Connection::open(dir.path().join("t-log.db")).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let (a, a_answer) = job(vec![message(1, "a1")]);
        let (b, b_answer) = job(vec![message(1, "b1")]);
        let told = Told::default();
        commit_jobs(&mut conn, vec![a, b], Some(&told));
        for answer in [a_answer, b_answer] {
            let err = answer.blocking_recv().unwrap().unwrap_err();
            assert_eq!(
                err.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy)
            );
        }
        assert_eq!(
            *told.0.lock().unwrap(),
            [(2, false)],
            "one commit, not three"
        );
    }

    #[test]
    fn each_message_of_a_commit_longer_than_one_statement_gets_the_seq_it_was_stored_at() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = log_with_one_source(dir.path());
        write(&mut conn, &[message(1, "before")], &[]).unwrap();
        let batch: Vec<NewMessage> = (0..ROWS_PER_INSERT + 3)
            .map(|i| message(1, &format!("m{i}")))
            .collect();
        let out = write(&mut conn, &batch, &[]).unwrap();
        let stored: HashMap<String, i64> = conn
            .prepare("SELECT message_id, seq FROM messages")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for (m, outcome) in batch.iter().zip(&out) {
            assert_eq!(
                *outcome,
                InsertOutcome::Stored(stored[&m.message_id]),
                "{}",
                m.message_id
            );
        }
    }

    #[tokio::test]
    async fn a_transaction_left_open_is_rolled_back_before_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path()).await;
        let source = store.upsert_source("web", "wk").await.unwrap().id;
        let mut conn = Connection::open(sqlite_log_file(&dir.path().join("t.db"))).unwrap();
        conn.execute_batch("BEGIN").unwrap();
        let out = write(&mut conn, &[message(source, "m1")], &[]).unwrap();
        assert!(matches!(out[..], [InsertOutcome::Stored(_)]), "{out:?}");
        assert!(
            conn.is_autocommit(),
            "the commit is not left in a transaction"
        );
        assert_eq!(
            store.counts().await.unwrap().0,
            1,
            "another connection sees the message: it committed"
        );
    }
}
