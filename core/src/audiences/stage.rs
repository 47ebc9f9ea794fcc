//! The audience stage: realtime incremental evaluation of the profiles each processed message
//! touched, scheduled re-checks when a time window expires, backfill of new audiences with
//! progress, and preview: the I/O shell around the pure decision in `decide.rs` (who enters, who
//! exits, when to re-check). All evaluation goes through the columnar engine.

use super::condition::Condition;
use super::decide::{decide, merged_away, needs_of};
use super::definitions::{self, Definition};
use super::store::{AudienceStore, AudienceTx, Change, Scope};
use crate::identity::ProfileId;
use crate::pipeline::{Batch, Clock, Stage};
use crate::plan::PlanHandle;
use crate::storage::StorageError;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

const CURSOR: &str = "audiences";
/// Most processed messages one evaluation window covers.
const WINDOW: i64 = 1000;

/// Definitions parsed from their stored text, in their stored order; one that does not parse is
/// logged and left out.
pub fn parse_definitions(rows: &[super::store::AudienceRow]) -> Vec<Definition> {
    rows.iter()
        .filter_map(|r| match Condition::parse(&r.condition) {
            Ok(condition) => Some(Definition {
                id: r.id.clone(),
                name: r.name.clone(),
                description: r.description.clone(),
                condition,
                line: 0,
            }),
            Err(e) => {
                tracing::error!(audience = %r.id, error = %e, "stored audience does not parse; skipped");
                None
            }
        })
        .collect()
}

/// Definitions parsed from their stored text, in dependency order. Audiences on an `IN AUDIENCE`
/// cycle, or depending on one, are logged and left out; every other audience is still evaluated.
pub fn load_definitions(rows: &[super::store::AudienceRow]) -> Vec<Definition> {
    let defs = parse_definitions(rows);
    let (ordered, on_cycle) = definitions::order_acyclic(&defs);
    if !on_cycle.is_empty() {
        let ids: Vec<&str> = on_cycle.iter().map(|d| d.id.as_str()).collect();
        tracing::error!(
            audiences = ?ids,
            "IN AUDIENCE cycle: these audiences are not evaluated until it is broken"
        );
    }
    ordered.into_iter().cloned().collect()
}

/// Counts of the stage, for tests and the admin API.
#[derive(Debug, Default, Serialize)]
pub struct Backfill {
    /// Profiles checked.
    pub done: i64,
    /// Profiles to check.
    pub total: i64,
}

/// The realtime stage, scheduler and backfills.
pub struct AudienceStage {
    store: Arc<dyn AudienceStore>,
    plan: Arc<PlanHandle>,
    clock: Arc<dyn Clock>,
}

impl AudienceStage {
    /// A stage over `store`, reading the time from `clock`.
    pub fn new(
        store: Arc<dyn AudienceStore>,
        plan: Arc<PlanHandle>,
        clock: Arc<dyn Clock>,
    ) -> AudienceStage {
        AudienceStage { store, plan, clock }
    }

    async fn definitions(
        tx: &mut Box<dyn AudienceTx>,
    ) -> Result<(Vec<Definition>, Vec<String>), StorageError> {
        let rows = tx.audiences().await?;
        let ids = rows.iter().map(|r| r.id.clone()).collect();
        Ok((load_definitions(&rows), ids))
    }

    /// Evaluates the profiles touched by the next window of processed messages. Loading and
    /// evaluation run in a snapshot that blocks nobody; the cursor lock is taken only to check the
    /// window is still ours and to write the changes.
    pub async fn step(&self) -> Result<usize, StorageError> {
        self.step_window(WINDOW).await
    }

    /// Evaluates a window of at most `limit` processed messages.
    async fn step_window(&self, limit: i64) -> Result<usize, StorageError> {
        let started = std::time::Instant::now();
        let mut tx = self.store.begin_read().await?;
        let cursor = tx.peek(CURSOR).await?;
        let cap = tx.peek("profiles").await?;
        if cap <= cursor {
            return Ok(0);
        }
        let upto = tx.window_end(cursor, cap, limit).await?;
        let (defs, ids) = Self::definitions(&mut tx).await?;
        let now = self.clock.now_ms();
        let mut changes: Vec<Change> = merged_away(tx.merged_losers(cursor, upto).await?);
        let affected = tx.affected(cursor, upto).await?;
        if !defs.is_empty() && !affected.is_empty() {
            let needs = needs_of(&defs, &ids);
            let plan = self.plan.current();
            let mut table = tx
                .load(Scope::Ids(affected), &needs, &plan.plan, now)
                .await?;
            changes.extend(decide(&defs, &mut table, true, now));
        }
        drop(tx);
        let mut tx = self.store.begin().await?;
        if tx.lock(CURSOR).await? != cursor {
            // Another process evaluated this window first.
            return Ok(1);
        }
        tx.apply(&changes, now, upto, "message").await?;
        tx.commit(Some((CURSOR, upto))).await?;
        tracing::debug!(
            upto,
            changes = changes.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "audience window evaluated"
        );
        Ok(1)
    }

    /// Re-evaluates profiles whose time window boundary has passed.
    pub async fn recheck_due(&self, now: i64) -> Result<usize, StorageError> {
        let mut tx = self.store.begin().await?;
        tx.lock(CURSOR).await?;
        let due = tx.take_due(now, 1000).await?;
        let n = due.len();
        if n > 0 {
            let (defs, ids) = Self::definitions(&mut tx).await?;
            let needs = needs_of(&defs, &ids);
            let plan = self.plan.current();
            let mut table = tx.load(Scope::Ids(due), &needs, &plan.plan, now).await?;
            let changes = decide(&defs, &mut table, true, now);
            tx.apply(&changes, now, 0, "window").await?;
        }
        tx.commit(None).await?;
        Ok(n)
    }

    /// Re-evaluates the profiles of one log position now (a quarantined position being replayed);
    /// membership is a function of the profile's state, so doing it again is harmless.
    pub async fn reevaluate_position(&self, seq: i64, now: i64) -> Result<usize, StorageError> {
        let mut tx = self.store.begin().await?;
        tx.lock(CURSOR).await?;
        let affected = tx.affected(seq - 1, seq).await?;
        let n = affected.len();
        if n > 0 {
            let (defs, ids) = Self::definitions(&mut tx).await?;
            let needs = needs_of(&defs, &ids);
            let plan = self.plan.current();
            let mut table = tx
                .load(Scope::Ids(affected), &needs, &plan.plan, now)
                .await?;
            let changes = decide(&defs, &mut table, true, now);
            tx.apply(&changes, now, 0, "replay").await?;
        }
        tx.commit(None).await?;
        Ok(n)
    }

    /// Evaluates one audience over every live profile, in pages, recording progress.
    pub async fn backfill(&self, id: &str) -> Result<Backfill, StorageError> {
        let mut progress = Backfill::default();
        let mut after: Option<ProfileId> = None;
        loop {
            let mut tx = self.store.begin().await?;
            tx.lock(CURSOR).await?;
            if progress.total == 0 {
                progress.total = tx.live_count().await?;
            }
            let (defs, ids) = Self::definitions(&mut tx).await?;
            let Some(def) = defs.iter().find(|d| d.id == id).cloned() else {
                tx.commit(None).await?;
                return Ok(progress);
            };
            let page = tx.live_page(after.as_ref(), 5000).await?;
            let now = self.clock.now_ms();
            let finished = page.len() < 5000;
            if let Some(last) = page.last() {
                after = Some(last.clone());
                progress.done += page.len() as i64;
                let needs = needs_of(std::slice::from_ref(&def), &ids);
                let plan = self.plan.current();
                let mut table = tx.load(Scope::Ids(page), &needs, &plan.plan, now).await?;
                let changes = decide(std::slice::from_ref(&def), &mut table, true, now);
                tx.apply(&changes, now, 0, "backfill").await?;
            }
            progress.total = progress.total.max(progress.done);
            tx.backfill_progress(id, progress.done, progress.total, finished.then_some(now))
                .await?;
            tx.commit(None).await?;
            if finished {
                tracing::info!(audience = %id, profiles = progress.done, "audience backfilled");
                return Ok(progress);
            }
        }
    }

    /// Counts who a condition would hold today, with a sample of members, without saving anything.
    pub async fn preview(
        &self,
        condition: &Condition,
        sample: usize,
    ) -> Result<(usize, Vec<ProfileId>, usize), StorageError> {
        let mut tx = self.store.begin_read().await?;
        let (_, ids) = Self::definitions(&mut tx).await?;
        let def = Definition {
            id: String::new(),
            name: String::new(),
            description: String::new(),
            condition: condition.clone(),
            line: 0,
        };
        let needs = needs_of(std::slice::from_ref(&def), &ids);
        let plan = self.plan.current();
        let now = self.clock.now_ms();
        let table = tx.load(Scope::All, &needs, &plan.plan, now).await?;
        let bits = table.eval(condition);
        let members: Vec<ProfileId> = bits
            .ones_iter()
            .take(sample)
            .map(|i| table.profiles[i].clone())
            .collect();
        drop(tx);
        Ok((bits.count(), members, table.len()))
    }

    /// Re-checks time windows every second until the process ends (the realtime part runs under
    /// the pipeline runner, see [`Realtime`]); with several processing nodes, only on the node
    /// that runs the audience stage.
    pub async fn run_scheduler(
        self: Arc<Self>,
        clock: Arc<dyn Clock>,
        leases: Option<Arc<crate::pipeline::Leases>>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if leases.as_ref().is_some_and(|l| !l.holds(CURSOR)) {
                continue;
            }
            if let Err(e) = self.recheck_due(clock.now_ms()).await {
                tracing::warn!(error = %e, "audience window re-check failed");
            }
        }
    }
}

/// The realtime audience stage as the pipeline runner drives it.
pub struct Realtime(pub Arc<AudienceStage>);

impl Stage for Realtime {
    fn name(&self) -> &'static str {
        CURSOR
    }

    fn cursor_name(&self) -> &'static str {
        CURSOR
    }

    /// Re-evaluates every touched profile against every audience.
    fn weight(&self) -> u32 {
        4
    }

    async fn step(&mut self, batch: Batch) -> Result<usize, StorageError> {
        let limit = match batch {
            Batch::Full => WINDOW,
            Batch::One => 1,
        };
        self.0.step_window(limit).await
    }

    async fn next_position(&mut self) -> Result<Option<i64>, StorageError> {
        let mut tx = self.0.store.begin_read().await?;
        let cursor = tx.peek(CURSOR).await?;
        let cap = tx.peek("profiles").await?;
        if cap <= cursor {
            return Ok(None);
        }
        Ok(Some(tx.window_end(cursor, cap, 1).await?))
    }
}
