//! Group commit: requests hand their messages to one writer task, which appends everything waiting
//! in one transaction and acknowledges each request only after that commit returned. A store that
//! groups concurrent appends itself (the embedded default's log writer thread) takes the requests'
//! appends directly instead, with no task in between, and tells the writer of each commit.

use crate::pipeline::IntakePressure;
use crate::storage::{
    CommitObserver, EventStore, InsertOutcome, NewMessage, NewRejected, StorageError,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tokio::sync::{mpsc, oneshot};

/// Most message bytes waiting for a commit before new requests get 503 (bounds memory whatever the
/// message sizes).
const MAX_PENDING_BYTES: usize = 256 * 1024 * 1024;

/// A unit of work: one request's messages, answered together.
struct Job {
    bytes: usize,
    messages: Vec<NewMessage>,
    rejected: Vec<NewRejected>,
    reply: oneshot::Sender<Result<Vec<InsertOutcome>, Arc<StorageError>>>,
}

/// Why a submission was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The queue is full; the client should retry later.
    #[error("ingest queue full")]
    Overloaded,
    /// The writer task stopped (shutting down). A stopped log writer thread is a
    /// [`WriteError::Storage`] error (`LogWriterStopped`).
    #[error("writer stopped")]
    Stopped,
    /// The commit failed; nothing of this request was stored.
    #[error("commit failed: {0}")]
    Storage(Arc<StorageError>),
}

/// Counters the writer keeps for `/metrics`.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Commits made.
    pub commits: AtomicU64,
    /// Messages and rejected items written by those commits.
    pub rows: AtomicU64,
    /// Commits that failed.
    pub failures: AtomicU64,
}

/// Counts a store's own commits ([`EventStore::groups_appends`]) as the writer task counts its.
struct Observer {
    stats: Arc<WriterStats>,
    pressure: Option<Arc<IntakePressure>>,
}

impl CommitObserver for Observer {
    fn starting(&self, appends: usize) {
        if let Some(p) = &self.pressure {
            p.committing(appends);
        }
    }

    fn committed(&self, rows: usize, ok: bool) {
        if ok {
            self.stats.commits.fetch_add(1, Ordering::Relaxed);
            self.stats.rows.fetch_add(rows as u64, Ordering::Relaxed);
        } else {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Where a request's messages go.
#[derive(Clone)]
enum Route {
    /// To the writer task, which groups them with the other requests waiting.
    Task(mpsc::UnboundedSender<Job>),
    /// Straight to the store, which groups concurrent appends itself.
    Store(Arc<dyn EventStore>),
}

/// A request's share of the messages and bytes waiting for a commit, given back when dropped: by
/// the store once the request's commit has ended, even if the request has gone meanwhile (its
/// append still commits, so it still counts against the queue bound until then).
struct Waiting {
    pending: Arc<AtomicUsize>,
    pending_bytes: Arc<AtomicUsize>,
    messages: usize,
    bytes: usize,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.pending.fetch_sub(self.messages, Ordering::AcqRel);
        self.pending_bytes.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Handle used by request handlers.
#[derive(Clone)]
pub struct Writer {
    route: Route,
    pending: Arc<AtomicUsize>,
    pending_bytes: Arc<AtomicUsize>,
    capacity: usize,
    /// Commit statistics.
    pub stats: Arc<WriterStats>,
}

impl Writer {
    /// Starts the writer task over `store` (none when the store groups appends itself); at most
    /// `capacity` messages wait, at most `max_commit` go in one transaction of the task.
    /// `pressure` hears how many requests each commit answers.
    pub fn spawn(
        store: Arc<dyn EventStore>,
        capacity: usize,
        max_commit: usize,
        pressure: Option<Arc<IntakePressure>>,
    ) -> Writer {
        let pending = Arc::new(AtomicUsize::new(0));
        let pending_bytes = Arc::new(AtomicUsize::new(0));
        let stats = Arc::new(WriterStats::default());
        let observer = Arc::new(Observer {
            stats: stats.clone(),
            pressure: pressure.clone(),
        });
        let route = if store.groups_appends(observer, max_commit) {
            Route::Store(store)
        } else {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run(
                store,
                rx,
                pending.clone(),
                pending_bytes.clone(),
                stats.clone(),
                max_commit,
                pressure,
            ));
            Route::Task(tx)
        };
        Writer {
            route,
            pending,
            pending_bytes,
            capacity,
            stats,
        }
    }

    /// Messages waiting for a commit.
    pub fn queue_depth(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Appends durably; resolves once committed, with one outcome per message.
    pub async fn write(
        &self,
        messages: Vec<NewMessage>,
        rejected: Vec<NewRejected>,
    ) -> Result<Vec<InsertOutcome>, WriteError> {
        let n = messages.len() + rejected.len();
        let bytes: usize = messages.iter().map(|m| m.body_json.len()).sum::<usize>()
            + rejected.iter().map(|r| r.body.len()).sum::<usize>();
        let before = self.pending.fetch_add(n, Ordering::AcqRel);
        let before_bytes = self.pending_bytes.fetch_add(bytes, Ordering::AcqRel);
        if before > 0 && (before + n > self.capacity || before_bytes + bytes > MAX_PENDING_BYTES) {
            self.pending.fetch_sub(n, Ordering::AcqRel);
            self.pending_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Err(WriteError::Overloaded);
        }
        let tx = match &self.route {
            Route::Store(store) => {
                let waiting = Waiting {
                    pending: self.pending.clone(),
                    pending_bytes: self.pending_bytes.clone(),
                    messages: n,
                    bytes,
                };
                let appended = store.append_keeping(messages, rejected, Box::new(waiting));
                return appended.await.map_err(|e| {
                    tracing::error!(error = %e, messages = n, "commit failed; request answered 503");
                    WriteError::Storage(Arc::new(e))
                });
            }
            Route::Task(tx) => tx,
        };
        let (reply, answer) = oneshot::channel();
        if tx
            .send(Job {
                bytes,
                messages,
                rejected,
                reply,
            })
            .is_err()
        {
            self.pending.fetch_sub(n, Ordering::AcqRel);
            self.pending_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Err(WriteError::Stopped);
        }
        match answer.await {
            Ok(Ok(outcomes)) => Ok(outcomes),
            Ok(Err(e)) => Err(WriteError::Storage(e)),
            Err(_) => Err(WriteError::Stopped),
        }
    }
}

async fn run(
    store: Arc<dyn EventStore>,
    mut rx: mpsc::UnboundedReceiver<Job>,
    pending: Arc<AtomicUsize>,
    pending_bytes: Arc<AtomicUsize>,
    stats: Arc<WriterStats>,
    max_commit: usize,
    pressure: Option<Arc<IntakePressure>>,
) {
    let mut jobs: Vec<Job> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut size = first.messages.len() + first.rejected.len();
        jobs.push(first);
        while size < max_commit {
            match rx.try_recv() {
                Ok(job) => {
                    size += job.messages.len() + job.rejected.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        if let Some(p) = &pressure {
            p.committing(jobs.len());
        }
        let mut messages = Vec::with_capacity(size);
        let mut rejected = Vec::new();
        let mut shares = Vec::with_capacity(jobs.len());
        let mut rejected_shares = Vec::with_capacity(jobs.len());
        for job in &mut jobs {
            shares.push(job.messages.len());
            rejected_shares.push(job.rejected.len());
            messages.append(&mut job.messages);
            rejected.append(&mut job.rejected);
        }
        let result = store.append(&messages, &rejected).await;
        pending.fetch_sub(size, Ordering::AcqRel);
        pending_bytes.fetch_sub(jobs.iter().map(|j| j.bytes).sum(), Ordering::AcqRel);
        match result {
            Ok(outcomes) => {
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats.rows.fetch_add(size as u64, Ordering::Relaxed);
                let mut rest = outcomes.as_slice();
                for (job, share) in jobs.drain(..).zip(shares) {
                    let (mine, tail) = rest.split_at(share);
                    rest = tail;
                    let _ = job.reply.send(Ok(mine.to_vec()));
                }
            }
            Err(e) if jobs.len() > 1 => {
                // One bad request must not fail the others that shared its commit: retry each on
                // its own, so only the culprit is answered 503.
                tracing::warn!(error = %e, jobs = jobs.len(), "group commit failed; retrying jobs one by one");
                let (mut start, mut rejected_start) = (0, 0);
                for ((job, share), rejected_share) in
                    jobs.drain(..).zip(shares).zip(rejected_shares)
                {
                    let mine = &messages[start..start + share];
                    let mine_rejected = &rejected[rejected_start..rejected_start + rejected_share];
                    start += share;
                    rejected_start += rejected_share;
                    let result = store.append(mine, mine_rejected).await;
                    match result {
                        Ok(outcomes) => {
                            stats.commits.fetch_add(1, Ordering::Relaxed);
                            let _ = job.reply.send(Ok(outcomes));
                        }
                        Err(e) => {
                            stats.failures.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(error = %e, messages = share, "commit failed; request answered 503");
                            let _ = job.reply.send(Err(Arc::new(e)));
                        }
                    }
                }
            }
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, messages = size, "commit failed; requests answered 503");
                let e = Arc::new(e);
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ManualClock;
    use crate::storage::{SqliteStore, test_message as message};

    /// Sends `requests` one-message requests at once and waits for their acknowledgements (on the
    /// test's single thread, every request is queued before the writer runs: one commit).
    async fn requests_sharing_a_commit(requests: usize) -> Arc<IntakePressure> {
        let store = Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap());
        let source = store.upsert_source("web", "wk").await.unwrap().id;
        let pressure = IntakePressure::new(Arc::new(ManualClock::at(7_000)), 16);
        let writer = Writer::spawn(store, 1_000, 4_096, Some(pressure.clone()));
        let writes =
            (0..requests).map(|i| writer.write(vec![message(source, &format!("m{i}"))], vec![]));
        for outcome in futures_util::future::join_all(writes).await {
            assert!(matches!(outcome.unwrap()[..], [InsertOutcome::Stored(_)]));
        }
        assert_eq!(
            writer.stats.commits.load(Ordering::Relaxed),
            1,
            "one group commit"
        );
        pressure
    }

    #[tokio::test]
    async fn on_a_log_file_requests_go_straight_to_the_log_thread_which_commits_them_together() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Arc::new(SqliteStore::connect(&url).await.unwrap());
        let source = store.upsert_source("web", "wk").await.unwrap().id;
        let pressure = IntakePressure::new(Arc::new(ManualClock::at(7_000)), 16);
        let writer = Writer::spawn(store.clone(), 1_000, 4_096, Some(pressure.clone()));
        assert!(matches!(writer.route, Route::Store(_)), "no writer task");
        // Another writer of the log holds its gate while sixteen requests queue at the thread.
        let gate = store.db().ingest_gate().await;
        let mut writes: Vec<_> = (0..16)
            .map(|i| Box::pin(writer.write(vec![message(source, &format!("m{i}"))], vec![])))
            .collect();
        for w in &mut writes {
            assert!(futures_util::FutureExt::now_or_never(w.as_mut()).is_none());
        }
        assert_eq!(writer.queue_depth(), 16);
        drop(gate);
        for outcome in futures_util::future::join_all(writes).await {
            assert!(matches!(outcome.unwrap()[..], [InsertOutcome::Stored(_)]));
        }
        assert_eq!(writer.queue_depth(), 0);
        assert_eq!(
            writer.stats.commits.load(Ordering::Relaxed),
            1,
            "one commit"
        );
        assert_eq!(writer.stats.rows.load(Ordering::Relaxed), 16);
        assert_eq!(
            pressure.last_busy_ms(),
            Some(7_000),
            "it answered sixteen requests"
        );
    }

    #[tokio::test]
    async fn a_request_that_goes_away_counts_against_the_queue_until_its_commit_has_ended() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Arc::new(SqliteStore::connect(&url).await.unwrap());
        let source = store.upsert_source("web", "wk").await.unwrap().id;
        let writer = Writer::spawn(store.clone(), 1, 4_096, None);
        let gate = store.db().ingest_gate().await;
        let mut first = Box::pin(writer.write(vec![message(source, "m1")], vec![]));
        assert!(futures_util::FutureExt::now_or_never(first.as_mut()).is_none());
        drop(first);
        assert_eq!(
            writer.queue_depth(),
            1,
            "its append still waits at the thread"
        );
        assert!(
            matches!(
                writer.write(vec![message(source, "m2")], vec![]).await,
                Err(WriteError::Overloaded)
            ),
            "the queue of one is still full"
        );
        drop(gate);
        let mut drained = false;
        for _ in 0..1_000 {
            if writer.queue_depth() == 0 {
                drained = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(drained, "the count drops once the commit has ended");
        assert_eq!(store.counts().await.unwrap().0, 1, "the append committed");
    }

    #[tokio::test]
    async fn a_commit_answering_sixteen_requests_makes_the_intake_busy() {
        assert_eq!(
            requests_sharing_a_commit(16).await.last_busy_ms(),
            Some(7_000)
        );
    }

    #[tokio::test]
    async fn a_commit_answering_fewer_requests_leaves_the_intake_calm() {
        assert_eq!(requests_sharing_a_commit(15).await.last_busy_ms(), None);
    }
}
