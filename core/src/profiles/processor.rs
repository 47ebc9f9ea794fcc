//! The processing pipeline after the durable log: reads messages in log order from a cursor,
//! resolves identities, and writes profiles, traits, accounts and merges in the same transaction as
//! the cursor move, so a crash resumes exactly where it stopped and each message counts once.

use super::decide::{self, Work};
use super::store::{self, Op, ProfileStore};
use crate::identity::{Graph, Identifier, ProfileId};
use crate::pipeline::{Batch, Clock, Stage};
use crate::plan::PlanHandle;
use crate::storage::StorageError;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// The stage's cursor over the whole log (and, when the log has partitions, the lowest of the
/// partitions' cursors: what the stages after it read up to).
const CURSOR: &str = "profiles";
/// How often a batch is redone after it lost a race before the step gives up (the stage then
/// looks again at its next wake-up).
const ATTEMPTS: usize = 5;
/// Graph cache bound; beyond it the cache restarts from storage.
const MAX_CACHED_IDENTIFIERS: usize = 2_000_000;

/// Progress the rest of the service can observe.
#[derive(Debug, Default)]
pub struct Progress {
    /// Last log position processed.
    pub cursor: AtomicI64,
}

/// Which part of the log a processor reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The whole log, behind the `profiles` cursor (SQLite, or a one-partition log).
    Whole,
    /// One partition of the log, behind its own `profiles/P` cursor. The processors of the other
    /// partitions run at the same time, on this node or others: each locks the profiles its batch
    /// writes and redoes the batch when another changed them first.
    Partition(i32),
}

impl Scope {
    /// The cursor (and the stage's name): `profiles`, or `profiles/P`.
    pub fn cursor(self) -> &'static str {
        match self {
            Scope::Whole => CURSOR,
            Scope::Partition(p) => partition_cursor(p),
        }
    }

    /// The partition read, if one.
    fn partition(self) -> Option<i32> {
        match self {
            Scope::Whole => None,
            Scope::Partition(p) => Some(p),
        }
    }
}

/// `profiles/P`, for the lifetime of the process (stage names are `&'static str`; there are at
/// most as many as the log has partitions).
fn partition_cursor(p: i32) -> &'static str {
    static NAMES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let wanted = format!("{CURSOR}/{p}");
    if let Some(name) = names.iter().find(|n| **n == wanted) {
        return name;
    }
    let name: &'static str = Box::leak(wanted.into_boxed_str());
    names.push(name);
    name
}

/// Something to await between a batch's decision and its write.
pub type PauseHook = Arc<dyn Fn() -> futures_util::future::BoxFuture<'static, ()> + Send + Sync>;

/// The identity/profile stage of the pipeline.
pub struct Processor {
    store: Arc<dyn ProfileStore>,
    plan: Arc<PlanHandle>,
    clock: Arc<dyn Clock>,
    scope: Scope,
    graph: Graph,
    /// The version of each profile in the graph, as loaded or last written (partitions only).
    versions: HashMap<ProfileId, i64>,
    seen: Option<(i64, i64)>,
    /// Whether the `profiles` cursor moved since the runner last asked (partitions only).
    moved: bool,
    /// Awaited between the decision and the write (tests use it to interleave two stages).
    pause_before_write: Option<PauseHook>,
    /// Identifiers the graph cache may hold before it restarts from storage.
    cache_limit: usize,
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
            scope: Scope::Whole,
            graph: Graph::new(),
            versions: HashMap::new(),
            seen: None,
            moved: false,
            pause_before_write: None,
            cache_limit: MAX_CACHED_IDENTIFIERS,
            batch,
            progress: Arc::new(Progress::default()),
        }
    }

    /// The processor of one of `of` partitions of the log: its own cursor, and a share of the
    /// graph cache's bound (each partition's stage keeps a cache of its own).
    pub fn for_partition(mut self, partition: i32, of: u16) -> Processor {
        self.scope = Scope::Partition(partition);
        self.cache_limit = MAX_CACHED_IDENTIFIERS / usize::from(of.max(1));
        self
    }

    /// Awaits `hook` after every decision, before its write: lets a test hold this stage between
    /// the two while another commits.
    pub fn with_pause_before_write(mut self, hook: PauseHook) -> Processor {
        self.pause_before_write = Some(hook);
        self
    }

    /// Forgets the cached graph (after a failure, a conflict, or a change made elsewhere).
    fn forget(&mut self) {
        self.graph = Graph::new();
        self.versions.clear();
        self.seen = None;
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
            self.forget();
        }
        if let Scope::Partition(_) = self.scope {
            // What the stages after this one read up to; a failure here is retried next step.
            match self.store.settle_profiles_cursor().await {
                Ok(moved) => self.moved |= moved,
                Err(e) => tracing::warn!(error = %e, "could not settle the profiles cursor"),
            }
        }
        result
    }

    /// Reads and decides in a snapshot that blocks nobody, then takes the cursor lock only to
    /// check nobody moved it meanwhile and to write: ingestion waits for the short write, not for
    /// the whole batch. When the cursor moved (another process, a deletion), the work is redone.
    async fn step_inner(&mut self, limit: i64) -> Result<usize, StorageError> {
        for _ in 0..ATTEMPTS {
            match self.attempt(limit).await {
                Ok(Some(n)) => return Ok(n),
                Ok(None) => {}
                // Another partition's stage won a race (it attached one of our new identifiers
                // first, or the database broke a deadlock between us): redo with what it wrote.
                Err(e) if matches!(self.scope, Scope::Partition(_)) && e.is_conflict() => {
                    tracing::debug!(stage = self.scope.cursor(), error = %e, "lost a race; redoing the batch");
                }
                Err(e) => return Err(e),
            }
            self.forget();
        }
        Ok(0)
    }

    /// One optimistic attempt; `None` when the cursor moved before the write.
    async fn attempt(&mut self, limit: i64) -> Result<Option<usize>, StorageError> {
        let started = std::time::Instant::now();
        let name = self.scope.cursor();
        let partition = self.scope.partition();
        let mut tx = self.store.begin_read().await?;
        // Erasure bumps the generation of every profiles cursor.
        let (cursor, generation) = tx.peek_cursor(name).await?;
        if self.seen != Some((cursor, generation)) || self.graph.len() > self.cache_limit {
            // Someone else (another process, or a deletion) changed the graph since we last looked.
            self.graph = Graph::new();
            self.versions.clear();
        }
        let horizon = tx.horizon();
        let rows = tx.read_log(cursor, limit, partition).await?;
        let read_all = (rows.len() as i64) < limit;
        let Some(last) = rows.last().map(|r| r.seq) else {
            drop(tx);
            if partition.is_some() && horizon > cursor {
                // Nothing of this partition up to the horizon: move past it, so the lowest of the
                // partitions' cursors (what the next stages read up to) is not held back.
                let mut tx = self.store.begin(&[]).await?;
                if tx.lock_cursor(name).await?.0 != cursor {
                    return Ok(None);
                }
                tx.commit(name.into(), horizon).await?;
                self.seen = Some((horizon, generation));
                return Ok(Some(0));
            }
            self.seen = Some((cursor, generation));
            return Ok(Some(0));
        };
        // With partitions, a batch that read everything up to the horizon takes the cursor there.
        let upto = if partition.is_some() && read_all {
            horizon.max(last)
        } else {
            last
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
        if partition.is_some() {
            // Read in the same snapshot as the members, so a version names what the graph holds.
            self.versions.extend(tx.versions(&profiles).await?);
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
        if let Some(pause) = &self.pause_before_write {
            pause().await;
        }
        let write_started = std::time::Instant::now();
        let mut tx = self.store.begin(&ops).await?;
        let gate_ms = write_started.elapsed().as_millis() as u64;
        // Our cursor: another process, a quarantine or an erasure may have moved it meanwhile.
        if tx.lock_cursor(name).await? != (cursor, generation) {
            return Ok(None);
        }
        let footprint = match partition {
            None => None,
            Some(_) => {
                // The profiles the batch writes, in ascending order: each must still be live at
                // the version the decision saw.
                let footprint = store::footprint(&ops);
                let locked = tx.lock_profiles(&footprint.existing).await?;
                let unchanged = locked.len() == footprint.existing.len()
                    && locked.iter().all(|(id, version, merged_into)| {
                        merged_into.is_none() && self.versions.get(id) == Some(version)
                    });
                if !unchanged {
                    tracing::debug!(stage = name, "profiles changed under the batch; redoing it");
                    return Ok(None);
                }
                Some((footprint, locked))
            }
        };
        tx.apply(&ops).await?;
        if let Some((footprint, _)) = &footprint {
            tx.bump_versions(&footprint.changed).await?;
        }
        tx.commit(name.into(), upto).await?;
        if let Some((footprint, locked)) = footprint {
            for (id, version, _) in locked {
                self.versions.insert(id, version);
            }
            for id in footprint.changed {
                *self.versions.entry(id).or_insert(0) += 1;
            }
        }
        tracing::debug!(
            last,
            messages = consumed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            gate_ms,
            write_ms = write_started.elapsed().as_millis() as u64,
            "profile batch processed"
        );
        self.seen = Some((upto, generation));
        self.progress.cursor.store(upto, Ordering::Release);
        Ok(Some(consumed))
    }
}

impl Stage for Processor {
    fn name(&self) -> &'static str {
        self.scope.cursor()
    }

    fn cursor_name(&self) -> &'static str {
        self.scope.cursor()
    }

    /// Resolves every message against the identity graph, and every later stage reads only what
    /// it has processed. Over the whole log it is the heaviest stage, so with two nodes or more it
    /// gets a node without the other heavy stages ([`crate::pipeline::lease::assign`]); one
    /// partition's stage is a share of that.
    fn weight(&self) -> u32 {
        match self.scope {
            Scope::Whole => 7,
            Scope::Partition(_) => 1,
        }
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
        let (cursor, _) = tx.peek_cursor(self.scope.cursor()).await?;
        Ok(tx
            .read_log(cursor, 1, self.scope.partition())
            .await?
            .first()
            .map(|r| r.seq))
    }

    fn after_set_aside(&mut self) {
        self.forget();
    }

    fn take_moved(&mut self) -> bool {
        std::mem::take(&mut self.moved)
    }
}
