//! The processing pipeline after the durable log: reads messages in log order from a cursor,
//! resolves identities, and writes profiles, traits, accounts and merges in the same transaction as
//! the cursor move, so a crash resumes exactly where it stopped and each message counts once.

use super::store::{LogRow, Op, ProfileStore};
use crate::identity::{self, Graph, Identifier};
use crate::ingest::limits::is_safe_number;
use crate::pipeline::{Batch, Stage};
use crate::plan::PlanHandle;
use crate::storage::StorageError;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use touchpoint_tracking_plan::{Message, MessageType};

const CURSOR: &str = "profiles";
/// Graph cache bound; beyond it the cache restarts from storage.
const MAX_CACHED_IDENTIFIERS: usize = 2_000_000;

/// A log row with its parsed message, identifiers and extraction reports.
type Work = (
    LogRow,
    Option<Message>,
    Vec<Identifier>,
    Vec<identity::Report>,
);

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
    graph: Graph,
    seen: Option<(i64, i64)>,
    batch: i64,
    progress: Arc<Progress>,
}

impl Processor {
    /// A processor over `store`, processing up to `batch` messages per transaction.
    pub fn new(store: Arc<dyn ProfileStore>, plan: Arc<PlanHandle>, batch: i64) -> Processor {
        Processor {
            store,
            plan,
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
        let mut work: Vec<Work> = Vec::with_capacity(rows.len());
        let mut wanted: Vec<Identifier> = Vec::new();
        for row in rows {
            // Blocked messages are never processed, but their identifiers are still checked against
            // the suppressions: an erased person's later messages are dropped whatever the plan said.
            let message = serde_json::from_str::<Message>(&row.body).ok();
            let (ids, reports) = match &message {
                Some(m) => identity::extract(m, rules),
                None => (Vec::new(), Vec::new()),
            };
            for id in &ids {
                if id.kind == "previous_id" {
                    wanted.push(Identifier::new("user_id", &id.value));
                    wanted.push(Identifier::new("anonymous_id", &id.value));
                } else {
                    wanted.push(id.clone());
                }
            }
            work.push((row, message, ids, reports));
        }
        wanted.sort();
        wanted.dedup();
        let unknown: Vec<Identifier> = wanted
            .iter()
            .filter(|i| !self.graph.knows(i))
            .cloned()
            .collect();
        let owners = tx.owners(&unknown).await?;
        let mut profiles: Vec<String> = owners
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

        let now = chrono::Utc::now().timestamp_millis();
        let consumed = work.len();
        let mut ops = Vec::new();
        for (row, message, mut ids, reports) in work {
            let Some(message) = message else { continue };
            let seq = row.seq;
            let at = now;
            self.graph.settle_previous_ids(&mut ids, rules);
            if ids.iter().any(|i| suppressed.contains(i)) {
                ops.push(Op::DropMessage { seq });
                continue;
            }
            if row.status == "blocked" {
                continue;
            }
            for r in &reports {
                ops.push(Op::Report {
                    seq,
                    profile: None,
                    kind: r.kind.into(),
                    id: r.identifier.clone(),
                    detail: r.detail.clone(),
                    at,
                });
            }
            if ids.is_empty() {
                continue;
            }
            let res = self
                .graph
                .resolve(&ids, rules, || uuid::Uuid::new_v4().to_string());
            if res.created {
                ops.push(Op::CreateProfile {
                    id: res.profile.clone(),
                    at,
                });
            }
            for m in &res.merges {
                tracing::info!(winner = %m.winner, loser = %m.loser, seq, "profiles merged");
                ops.push(Op::Merge {
                    winner: m.winner.clone(),
                    loser: m.loser.clone(),
                    reason: m.reason.clone(),
                    seq,
                    at,
                });
            }
            for id in &res.attached {
                ops.push(Op::Attach {
                    id: id.clone(),
                    profile: res.profile.clone(),
                    seq,
                    at,
                });
            }
            for r in &res.reports {
                ops.push(Op::Report {
                    seq,
                    profile: Some(res.profile.clone()),
                    kind: r.kind.into(),
                    id: r.identifier.clone(),
                    detail: r.detail.clone(),
                    at,
                });
            }
            ops.push(Op::Link {
                seq,
                profile: res.profile.clone(),
                kind: message.kind.as_str().into(),
                event: message.event.clone(),
                event_time: row.event_time,
            });
            match message.kind {
                MessageType::Identify => {
                    let mut traits = encode(&message.traits);
                    if let Some(ctx) = message.context.get("traits").and_then(Value::as_object) {
                        // analytics.js repeats cached traits in context.traits; the call's own win.
                        for (k, v) in encode(ctx) {
                            if !traits.iter().any(|(key, _)| *key == k) {
                                traits.push((k, v));
                            }
                        }
                    }
                    if !traits.is_empty() {
                        ops.push(Op::SetTraits {
                            profile: res.profile.clone(),
                            traits,
                            updated_at: row.event_time,
                            seq,
                        });
                    }
                }
                MessageType::Track => {
                    let values: Vec<(String, f64)> = message
                        .properties
                        .iter()
                        .filter_map(|(k, v)| match v {
                            // Beyond ±2^53 a sum loses meaning (and 1e308 + 1e308 overflows
                            // PostgreSQL's double): such values were reported at intake.
                            Value::Number(n) => n
                                .as_f64()
                                .filter(|f| is_safe_number(Some(*f)))
                                .map(|f| (k.clone(), f)),
                            _ => None,
                        })
                        .collect();
                    if let (false, Some(event)) = (values.is_empty(), message.event.clone()) {
                        ops.push(Op::Aggregate {
                            profile: res.profile.clone(),
                            event,
                            values,
                        });
                    }
                }
                MessageType::Group => {
                    if let Some(group_id) = message.group_id.clone() {
                        ops.push(Op::SetAccount {
                            profile: res.profile.clone(),
                            group_id,
                            traits: encode(&message.traits),
                            updated_at: row.event_time,
                        });
                    }
                }
                _ => {}
            }
        }
        drop(tx);
        let write_started = std::time::Instant::now();
        let mut tx = self.store.begin().await?;
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

fn encode(map: &Map<String, Value>) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect()
}
