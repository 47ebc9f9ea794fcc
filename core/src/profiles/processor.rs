//! The processing pipeline after the durable log: reads messages in log order from a cursor,
//! resolves identities, and writes profiles, traits, accounts and merges in the same transaction as
//! the cursor move, so a crash resumes exactly where it stopped and each message counts once.

use super::decide::{self, Work};
use super::store::{Op, ProfileStore};
use crate::identity::{Graph, Identifier, ProfileId};
use crate::pipeline::{Batch, Clock, Stage};
use crate::plan::PlanHandle;
use crate::storage::StorageError;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

const CURSOR: &str = "profiles";
/// Graph cache bound; beyond it the cache restarts from storage.
const MAX_CACHED_IDENTIFIERS: usize = 2_000_000;

/// Progress the rest of the service can observe.
#[derive(Debug, Default)]
pub struct Progress {
    /// Last log position processed.
    pub cursor: AtomicI64,
}

/// The identity/profile stage of the pipeline.
pub struct Processor {
    store: Arc<dyn ProfileStore>,
    plan: Arc<PlanHandle>,
    clock: Arc<dyn Clock>,
    graph: Graph,
    seen: Option<(i64, i64)>,
    batch: i64,
    progress: Arc<Progress>,
}

impl Processor {
    /// A processor over `store`, processing up to `batch` messages per transaction and stamping
    /// what it writes with `clock`'s time.
    pub fn new(
        store: Arc<dyn ProfileStore>,
        plan: Arc<PlanHandle>,
        clock: Arc<dyn Clock>,
        batch: i64,
    ) -> Processor {
        Processor {
            store,
            plan,
            clock,
            graph: Graph::new(),
            seen: None,
            batch,
            progress: Arc::new(Progress::default()),
        }
    }

    /// Shared progress counters.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Processes one batch; returns how many messages it consumed.
    pub async fn step(&mut self) -> Result<usize, StorageError> {
        self.step_up_to(self.batch).await
    }

    /// Processes at most `limit` messages; returns how many it consumed.
    async fn step_up_to(&mut self, limit: i64) -> Result<usize, StorageError> {
        let result = self.step_inner(limit).await;
        if result.is_err() {
            // The transaction rolled back: the cached graph may hold decisions that never landed.
            self.graph = Graph::new();
            self.seen = None;
        }
        result
    }

    /// Reads and decides in a snapshot that blocks nobody, then takes the cursor lock only to
    /// check nobody moved it meanwhile and to write: ingestion waits for the short write, not for
    /// the whole batch. When the cursor moved (another process, a deletion), the work is redone.
    async fn step_inner(&mut self, limit: i64) -> Result<usize, StorageError> {
        for _ in 0..3 {
            if let Some(n) = self.attempt(limit).await? {
                return Ok(n);
            }
            self.graph = Graph::new();
            self.seen = None;
        }
        Ok(0)
    }

    /// One optimistic attempt; `None` when the cursor moved before the write.
    async fn attempt(&mut self, limit: i64) -> Result<Option<usize>, StorageError> {
        let started = std::time::Instant::now();
        let mut tx = self.store.begin_read().await?;
        let (cursor, generation) = tx.peek_cursor(CURSOR).await?;
        if self.seen != Some((cursor, generation)) || self.graph.len() > MAX_CACHED_IDENTIFIERS {
            // Someone else (another process, or a deletion) changed the graph since we last looked.
            self.graph = Graph::new();
        }
        let rows = tx.read_log(cursor, limit).await?;
        let Some(last) = rows.last().map(|r| r.seq) else {
            drop(tx);
            self.seen = Some((cursor, generation));
            return Ok(Some(0));
        };
        let plan = self.plan.current();
        let rules = plan.plan.identity();

        // Parse and extract identifiers for the whole batch, then load what the graph lacks.
        let work: Vec<Work> = rows
            .into_iter()
            .map(|row| decide::read(row, rules))
            .collect();
        let wanted = decide::wanted(&work);
        let unknown: Vec<Identifier> = wanted
            .iter()
            .filter(|i| !self.graph.knows(i))
            .cloned()
            .collect();
        let owners = tx.owners(&unknown).await?;
        let mut profiles: Vec<ProfileId> = owners
            .iter()
            .map(|(_, p)| p.clone())
            .filter(|p| !self.graph.has_profile(p))
            .collect();
        profiles.sort();
        profiles.dedup();
        for (id, p) in tx.members(&profiles).await? {
            self.graph.insert(id, &p);
        }
        let suppressed: HashSet<Identifier> = tx.suppressed(&wanted).await?.into_iter().collect();

        let consumed = work.len();
        let ops = decide::decide(
            work,
            &mut self.graph,
            &suppressed,
            rules,
            self.clock.now_ms(),
            ProfileId::generate,
        );
        for op in &ops {
            if let Op::Merge {
                winner, loser, seq, ..
            } = op
            {
                tracing::info!(winner = %winner, loser = %loser, seq, "profiles merged");
            }
        }
        drop(tx);
        let write_started = std::time::Instant::now();
        let mut tx = self.store.begin(&ops).await?;
        let gate_ms = write_started.elapsed().as_millis() as u64;
        if tx.lock_cursor(CURSOR).await? != (cursor, generation) {
            return Ok(None);
        }
        tx.apply(&ops).await?;
        tx.commit(CURSOR.into(), last).await?;
        tracing::debug!(
            last,
            messages = consumed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            gate_ms,
            write_ms = write_started.elapsed().as_millis() as u64,
            "profile batch processed"
        );
        self.seen = Some((last, generation));
        self.progress.cursor.store(last, Ordering::Release);
        Ok(Some(consumed))
    }
}

impl Stage for Processor {
    fn name(&self) -> &'static str {
        CURSOR
    }

    fn cursor_name(&self) -> &'static str {
        CURSOR
    }

    async fn step(&mut self, batch: Batch) -> Result<usize, StorageError> {
        let limit = match batch {
            Batch::Full => self.batch,
            Batch::One => 1,
        };
        self.step_up_to(limit).await
    }

    async fn next_position(&mut self) -> Result<Option<i64>, StorageError> {
        let mut tx = self.store.begin_read().await?;
        let (cursor, _) = tx.peek_cursor(CURSOR).await?;
        Ok(tx.read_log(cursor, 1).await?.first().map(|r| r.seq))
    }

    fn after_set_aside(&mut self) {
        self.graph = Graph::new();
        self.seen = None;
    }
}
