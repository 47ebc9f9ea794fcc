//! Stage leases: which processing node runs which pipeline stage, when several share one
//! PostgreSQL database.
//!
//! Every processing node heartbeats a row in `pipeline_nodes` naming the stages it can run, each
//! with a weight (its rough cost: the stages that weigh every message against people's state
//! weigh more). The owner of each stage is chosen among the live nodes that run it by [`assign`]:
//! rendezvous hashing with bounded loads. Every node computes the same answer from the same
//! heartbeats; each stage goes to its highest-ranked node that stays within an even share of the
//! total weight, so the heavy stages spread over the nodes instead of landing together by chance,
//! and a node joining or leaving moves its share and somewhat more (1.0–1.9× its share on average
//! in the unit test, 2 to 7 nodes). A node that stops heartbeating
//! (killed, partitioned away) loses its stages to the survivors once its heartbeat is older than
//! the lease time. A node runs a stage only while it holds that stage's row in `stage_leases`: it
//! renews it every third of the lease time, releases it as soon as the stage is someone else's, and
//! can claim it only when the row is free or expired, so two nodes never both think they own a
//! stage for longer than one lease.
//!
//! Leases spread the stages over the nodes and keep idle nodes from re-reading what another node
//! is processing. They are not what makes processing exactly-once: each stage still moves its
//! cursor in the same transaction as its writes, under the cursor's row lock, so even two nodes
//! stepping one stage at once (a lease handed over mid-step) cannot apply a message twice.

use super::Clock;
use crate::storage::{StorageError, fnv1a};
use futures_util::future::BoxFuture;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The stages a node runs, each with its weight.
pub type Stages = BTreeMap<String, u32>;

/// A live node as its heartbeat shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The node's id (random per process start).
    pub id: String,
    /// The stages it runs, with their weights.
    pub stages: Stages,
}

/// A lease row, for `/admin/pipeline/leases`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseRow {
    /// The stage.
    pub stage: String,
    /// The node holding it.
    pub owner: String,
    /// Until when (ms); renewed every third of the lease time.
    pub expires_at: i64,
}

/// The most a stage can weigh; heavier declarations (or heartbeat rows) count as this much.
pub const MAX_WEIGHT: u32 = 1000;

/// The node that should run each stage any live node runs (stage → node id).
///
/// Rendezvous hashing with bounded loads: stages are placed heaviest first (then by name); each
/// goes to the first node, in its own rendezvous order, whose load plus the stage's weight stays
/// within an even share of the total weight (rounded up), or, when none has room, to the least
/// loaded node (ties in rendezvous order). With two nodes or more, a stage heavier than every
/// other takes its node's whole share, so the other heavy stages go elsewhere (the profiles stage,
/// which every later stage waits for). Only nodes that run a stage are considered for it, and
/// only nodes that run any stage count towards the share (a node just started has registered
/// none yet). The answer depends on nothing but the nodes' ids and stages, so every node
/// computes the same one.
pub fn assign(live: &[Node]) -> BTreeMap<String, String> {
    let live: Vec<&Node> = live.iter().filter(|n| !n.stages.is_empty()).collect();
    let mut stages: BTreeMap<&str, u64> = BTreeMap::new();
    for n in &live {
        for (stage, &w) in &n.stages {
            let w = u64::from(w.clamp(1, MAX_WEIGHT));
            let e = stages.entry(stage.as_str()).or_insert(w);
            *e = (*e).max(w);
        }
    }
    let mut order: Vec<(&str, u64)> = stages.into_iter().collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let total: u64 = order.iter().map(|(_, w)| w).sum();
    let nodes = live.len().max(1) as u64;
    let share = total.div_ceil(nodes);
    let leading = match order.as_slice() {
        [(stage, w), (_, next), ..] if w > next && nodes > 1 => Some(*stage),
        _ => None,
    };
    let mut load: BTreeMap<&str, u64> = BTreeMap::new();
    let mut owners = BTreeMap::new();
    for (stage, w) in order {
        let charge = if leading == Some(stage) {
            w.max(share)
        } else {
            w
        };
        let mut ranked: Vec<&Node> = live
            .iter()
            .copied()
            .filter(|n| n.stages.contains_key(stage))
            .collect();
        ranked.sort_by_key(|n| std::cmp::Reverse((fnv1a(&[stage, &n.id]), n.id.as_str())));
        let load_of = |n: &&Node| load.get(n.id.as_str()).copied().unwrap_or(0);
        let chosen = ranked
            .iter()
            .find(|n| load_of(n) + charge <= share)
            .or_else(|| ranked.iter().min_by_key(|n| load_of(n)))
            .map(|n| n.id.as_str());
        if let Some(id) = chosen {
            *load.entry(id).or_insert(0) += charge;
            owners.insert(stage.to_owned(), id.to_owned());
        }
    }
    owners
}

/// What a node does with its leases on one tick.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Moves {
    /// Stages to claim or renew.
    pub claim: Vec<String>,
    /// Stages it holds but are now another node's.
    pub release: Vec<String>,
}

/// Decides one tick for node `me`, which runs `stages`: claim (or renew) every stage
/// [`assign`] gives it among `live`, release every stage it holds that another node now owns.
/// A node always counts itself as live: its own heartbeat may not be visible yet.
pub fn decide(me: &str, stages: &Stages, live: &[Node], held: &BTreeSet<String>) -> Moves {
    let mut live = live.to_vec();
    if !live.iter().any(|n| n.id == me) {
        live.push(Node {
            id: me.to_owned(),
            stages: stages.clone(),
        });
    }
    let owners = assign(&live);
    let mut moves = Moves::default();
    for stage in stages.keys() {
        if owners.get(stage).is_none_or(|o| o == me) {
            moves.claim.push(stage.clone());
        } else if held.contains(stage) {
            moves.release.push(stage.clone());
        }
    }
    moves
}

/// A node's stages as its heartbeat row stores them: `name@weight`, comma-separated.
pub fn encode_stages(stages: &Stages) -> String {
    stages
        .iter()
        .map(|(s, w)| format!("{s}@{w}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The stages of a heartbeat row, weights kept within 1 and [`MAX_WEIGHT`]; a name without
/// `@weight` weighs 1. (A node of the version before weights writes bare names, which this reads;
/// it cannot read `name@weight` itself, so upgrade the processing nodes together.)
pub fn decode_stages(text: &str) -> Stages {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            match s
                .rsplit_once('@')
                .and_then(|(name, w)| Some((name, w.parse::<u32>().ok()?)))
            {
                Some((name, w)) => (name.to_owned(), w.clamp(1, MAX_WEIGHT)),
                None => (s.to_owned(), 1),
            }
        })
        .collect()
}

/// Storage of heartbeats and leases.
pub trait LeaseStore: Send + Sync + 'static {
    /// Records that `node` (running `stages`) is alive at `now`, forgets nodes silent since
    /// `forget_before`, and returns the nodes heard from since `live_since`.
    fn heartbeat<'a>(
        &'a self,
        node: &'a str,
        stages: &'a Stages,
        now: i64,
        live_since: i64,
        forget_before: i64,
    ) -> BoxFuture<'a, Result<Vec<Node>, StorageError>>;
    /// Takes or renews the lease of `stage` until `until` when it is free, expired at `now`, or
    /// already `node`'s; returns whether `node` holds it.
    fn claim<'a>(
        &'a self,
        stage: &'a str,
        node: &'a str,
        now: i64,
        until: i64,
    ) -> BoxFuture<'a, Result<bool, StorageError>>;
    /// Gives the lease of `stage` up at once, if `node` holds it.
    fn release<'a>(
        &'a self,
        stage: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<(), StorageError>>;
    /// Every lease.
    fn leases(&self) -> BoxFuture<'_, Result<Vec<LeaseRow>, StorageError>>;
    /// Tells the other nodes, without waiting, that `stage` made progress (a lost notice costs
    /// the stages after it one poll interval).
    fn announce(&self, stage: &'static str);
}

/// This node's view of its leases, shared with the stage runners.
pub struct Leases {
    /// This node's id.
    pub node: String,
    /// How long a lease lasts without renewal; the takeover time after a node dies.
    pub ttl: Duration,
    store: Arc<dyn LeaseStore>,
    stages: Mutex<Stages>,
    held: Mutex<BTreeSet<String>>,
    live: Mutex<usize>,
    changed: watch::Sender<u64>,
    registered: tokio::sync::Notify,
}

impl Leases {
    /// Leases for a new node id over `store`.
    pub fn new(store: Arc<dyn LeaseStore>, ttl: Duration) -> Arc<Leases> {
        Leases::for_node(uuid::Uuid::new_v4().to_string(), store, ttl)
    }

    /// Leases for the node `node`.
    pub fn for_node(node: String, store: Arc<dyn LeaseStore>, ttl: Duration) -> Arc<Leases> {
        Arc::new(Leases {
            node,
            ttl,
            store,
            stages: Mutex::default(),
            held: Mutex::default(),
            live: Mutex::new(1),
            changed: watch::channel(0).0,
            registered: tokio::sync::Notify::new(),
        })
    }

    /// Declares that this node runs `stage`, of weight `weight` (called by the runner when the
    /// stage starts).
    pub fn register(&self, stage: &str, weight: u32) {
        // Kept as declared: `assign` and `decode_stages` bound every weight they read.
        if lock(&self.stages)
            .insert(stage.to_owned(), weight)
            .is_none()
        {
            // Claim it now rather than at the next tick.
            self.registered.notify_one();
        }
    }

    /// Every lease this node holds now: stages and periodic jobs.
    pub fn held(&self) -> BTreeSet<String> {
        lock(&self.held).clone()
    }

    /// Whether this node holds `stage`'s lease now.
    pub fn holds(&self, stage: &str) -> bool {
        lock(&self.held).contains(stage)
    }

    /// Whether a periodic job named `job` (one that must run on one node only, like a CRM poll)
    /// should run on this node now: always without leases (one process); with leases, only on
    /// the node holding the job's lease (the job is registered like a stage on first call).
    pub fn runs_here(leases: Option<&Arc<Leases>>, job: &str) -> bool {
        match leases {
            None => true,
            Some(l) => {
                l.register(job, 1);
                l.holds(job)
            }
        }
    }

    /// How many processing nodes were live at the last heartbeat (this one included).
    pub fn live_nodes(&self) -> usize {
        *lock(&self.live)
    }

    /// A receiver that changes whenever this node's leases do.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Tells the other nodes that `stage` made progress, so the stages after it wake there.
    pub fn announce(&self, stage: &'static str) {
        self.store.announce(stage);
    }

    /// Every lease in the database.
    pub async fn all(&self) -> Result<Vec<LeaseRow>, StorageError> {
        self.store.leases().await
    }

    /// One tick: heartbeat, then claim, renew and release as [`decide`] says.
    pub async fn tick(&self, now: i64) -> Result<(), StorageError> {
        let ttl = self.ttl.as_millis() as i64;
        let stages = lock(&self.stages).clone();
        let live = self
            .store
            .heartbeat(&self.node, &stages, now, now - ttl, now - 20 * ttl)
            .await?;
        *lock(&self.live) = live.len().max(1);
        let held = lock(&self.held).clone();
        let moves = decide(&self.node, &stages, &live, &held);
        let mut now_held = BTreeSet::new();
        for stage in &moves.release {
            // Stop first, then give the lease up: the new owner may start at once.
            lock(&self.held).remove(stage);
            self.store.release(stage, &self.node).await?;
        }
        for stage in &moves.claim {
            if self.store.claim(stage, &self.node, now, now + ttl).await? {
                now_held.insert(stage.clone());
            }
        }
        let before = std::mem::replace(&mut *lock(&self.held), now_held.clone());
        if before != now_held {
            tracing::info!(node = %self.node, held = ?now_held, "stage leases changed");
            self.changed.send_modify(|n| *n += 1);
        }
        Ok(())
    }

    /// Ticks every third of the lease time until the process ends. A failed tick drops every
    /// lease this node holds (it cannot know whether it was renewed) and retries.
    pub fn start(self: &Arc<Self>, clock: Arc<dyn Clock>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let every = (me.ttl / 3).max(Duration::from_millis(50));
            loop {
                if let Err(e) = me.tick(clock.now_ms()).await {
                    tracing::warn!(error = %e, "stage lease heartbeat failed; pausing this node's stages");
                    if !std::mem::take(&mut *lock(&me.held)).is_empty() {
                        me.changed.send_modify(|n| *n += 1);
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = me.registered.notified() => {}
                }
            }
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The leases on PostgreSQL.
#[derive(Clone, Debug)]
pub struct PgLeases {
    pool: sqlx::PgPool,
}

impl PgLeases {
    /// Wraps a migrated pool.
    pub fn new(pool: sqlx::PgPool) -> PgLeases {
        PgLeases { pool }
    }
}

impl LeaseStore for PgLeases {
    fn heartbeat<'a>(
        &'a self,
        node: &'a str,
        stages: &'a Stages,
        now: i64,
        live_since: i64,
        forget_before: i64,
    ) -> BoxFuture<'a, Result<Vec<Node>, StorageError>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO pipeline_nodes (node, stages, heartbeat_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (node) DO UPDATE SET stages = EXCLUDED.stages, heartbeat_at = EXCLUDED.heartbeat_at",
            )
            .bind(node)
            .bind(encode_stages(stages))
            .bind(now)
            .execute(&self.pool)
            .await?;
            sqlx::query("DELETE FROM pipeline_nodes WHERE heartbeat_at < $1")
                .bind(forget_before)
                .execute(&self.pool)
                .await?;
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT node, stages FROM pipeline_nodes WHERE heartbeat_at >= $1 ORDER BY node",
            )
            .bind(live_since)
            .fetch_all(&self.pool)
            .await?;
            let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
            for (id, stages) in rows {
                let stages = decode_stages(&stages);
                nodes.insert(id.clone(), Node { id, stages });
            }
            Ok(nodes.into_values().collect())
        })
    }

    fn claim<'a>(
        &'a self,
        stage: &'a str,
        node: &'a str,
        now: i64,
        until: i64,
    ) -> BoxFuture<'a, Result<bool, StorageError>> {
        Box::pin(async move {
            let got: Option<String> = sqlx::query_scalar(
                "INSERT INTO stage_leases (stage, owner, expires_at) VALUES ($1, $2, $4) \
                 ON CONFLICT (stage) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at \
                 WHERE stage_leases.owner = EXCLUDED.owner OR stage_leases.expires_at < $3 \
                 RETURNING owner",
            )
            .bind(stage)
            .bind(node)
            .bind(now)
            .bind(until)
            .fetch_optional(&self.pool)
            .await?;
            Ok(got.as_deref() == Some(node))
        })
    }

    fn release<'a>(
        &'a self,
        stage: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            sqlx::query("UPDATE stage_leases SET expires_at = 0 WHERE stage = $1 AND owner = $2")
                .bind(stage)
                .bind(node)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
    }

    fn announce(&self, stage: &'static str) {
        let pool = self.pool.clone();
        tokio::spawn(async move {
            if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(crate::storage::PROGRESS_CHANNEL)
                .bind(stage)
                .execute(&pool)
                .await
            {
                tracing::debug!(error = %e, stage, "could not announce stage progress");
            }
        });
    }

    fn leases(&self) -> BoxFuture<'_, Result<Vec<LeaseRow>, StorageError>> {
        Box::pin(async move {
            let rows: Vec<(String, String, i64)> =
                sqlx::query_as("SELECT stage, owner, expires_at FROM stage_leases ORDER BY stage")
                    .fetch_all(&self.pool)
                    .await?;
            Ok(rows
                .into_iter()
                .map(|(stage, owner, expires_at)| LeaseRow {
                    stage,
                    owner,
                    expires_at,
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The stages a node of the demo setup runs, with their weights.
    const STAGES: [(&str, u32); 7] = [
        ("profiles", 7),
        ("audiences", 4),
        ("handoff", 4),
        ("destinations", 1),
        ("destinations_audiences", 1),
        ("warehouse", 2),
        ("crm-poll", 1),
    ];

    fn weighted(stages: &[(&str, u32)]) -> Stages {
        stages.iter().map(|(s, w)| ((*s).to_owned(), *w)).collect()
    }

    fn node(id: &str, stages: &[(&str, u32)]) -> Node {
        Node {
            id: id.into(),
            stages: weighted(stages),
        }
    }

    fn names() -> BTreeSet<String> {
        STAGES.iter().map(|(s, _)| (*s).to_owned()).collect()
    }

    /// Each node's summed weight under `owners`.
    fn loads(owners: &BTreeMap<String, String>, live: &[Node]) -> BTreeMap<String, u32> {
        let mut loads: BTreeMap<String, u32> = live.iter().map(|n| (n.id.clone(), 0)).collect();
        for (stage, owner) in owners {
            let w = live
                .iter()
                .find_map(|n| n.stages.get(stage))
                .copied()
                .unwrap_or(1);
            *loads.entry(owner.clone()).or_default() += w;
        }
        loads
    }

    #[test]
    fn every_node_computes_the_same_owners_whatever_order_it_lists_the_nodes_in() {
        let a = [node("a", &STAGES), node("b", &STAGES), node("c", &STAGES)];
        let b = [a[2].clone(), a[0].clone(), a[1].clone()];
        assert_eq!(assign(&a), assign(&b));
        assert_eq!(assign(&a).len(), STAGES.len());
    }

    #[test]
    fn a_stage_goes_only_to_a_node_that_runs_it() {
        let live = [
            node("a", &[("profiles", 4)]),
            node("b", &[("profiles", 4), ("warehouse", 2)]),
        ];
        let owners = assign(&live);
        assert_eq!(owners.get("warehouse").map(String::as_str), Some("b"));
        assert_eq!(owners.get("handoff"), None);
    }

    #[test]
    fn heartbeat_rows_keep_each_stages_weight_and_a_bare_name_weighs_one() {
        let stages = weighted(&STAGES);
        assert_eq!(decode_stages(&encode_stages(&stages)), stages);
        assert_eq!(
            decode_stages("profiles,audiences@4,odd@name"),
            weighted(&[("profiles", 1), ("audiences", 4), ("odd@name", 1)])
        );
        assert!(decode_stages("").is_empty());
    }

    #[test]
    fn a_lone_node_claims_every_stage_even_before_its_heartbeat_is_visible() {
        let moves = decide("a", &weighted(&STAGES), &[], &BTreeSet::new());
        assert_eq!(moves.claim.len(), STAGES.len());
        assert!(moves.release.is_empty());
    }

    #[test]
    fn a_node_releases_the_stages_a_joining_node_now_owns_and_keeps_the_rest() {
        let before = [node("a", &STAGES)];
        let after = [node("a", &STAGES), node("b", &STAGES), node("c", &STAGES)];
        let held = names();
        let moves = decide("a", &weighted(&STAGES), &after, &held);
        let kept: BTreeSet<String> = moves.claim.iter().cloned().collect();
        let released: BTreeSet<String> = moves.release.iter().cloned().collect();
        assert_eq!(&kept | &released, held);
        assert!(kept.is_disjoint(&released));
        assert!(!released.is_empty(), "the joining nodes get a share");
        let owners = assign(&after);
        for s in &released {
            assert_ne!(owners.get(s).map(String::as_str), Some("a"));
        }
        assert_eq!(
            decide("a", &weighted(&STAGES), &before, &held).release,
            Vec::<String>::new()
        );
    }

    #[test]
    fn when_a_node_dies_its_stages_go_to_the_survivors() {
        let three = [node("a", &STAGES), node("b", &STAGES), node("c", &STAGES)];
        let two = [three[0].clone(), three[2].clone()];
        let owners = assign(&two);
        assert_eq!(owners.len(), STAGES.len());
        assert!(owners.values().all(|o| o != "b"));
    }

    /// The stages a node may run besides profiles and audiences: a CRM, a warehouse export or
    /// two, the lead handoff, destinations.
    const OPTIONAL: [(&str, u32); 6] = [
        ("handoff", 4),
        ("warehouse_parquet", 2),
        ("warehouse_postgres", 2),
        ("destinations", 1),
        ("destinations_audiences", 1),
        ("crm-poll", 1),
    ];

    /// A node set: profiles and audiences always, each optional stage where `pick` says.
    fn cluster(ids: &BTreeSet<String>, pick: &[bool]) -> Vec<Node> {
        let mut stages = vec![("profiles", 7), ("audiences", 4)];
        stages.extend(
            OPTIONAL
                .iter()
                .zip(pick)
                .filter(|(_, p)| **p)
                .map(|(s, _)| *s),
        );
        ids.iter().map(|id| node(id, &stages)).collect()
    }

    proptest! {
        #[test]
        fn every_stage_has_exactly_one_claimant_among_the_live_nodes(
            ids in proptest::collection::btree_set("[a-z0-9]{1,12}", 1..6),
            pick in proptest::collection::vec(any::<bool>(), OPTIONAL.len()),
            blind in any::<bool>(),
        ) {
            let live = cluster(&ids, &pick);
            let stages = live[0].stages.clone();
            for stage in stages.keys() {
                let claimants = live
                    .iter()
                    .filter(|n| {
                        // A node may not see its own heartbeat yet: it counts itself anyway.
                        let view: Vec<Node> = live
                            .iter()
                            .filter(|o| !blind || o.id != n.id)
                            .cloned()
                            .collect();
                        decide(&n.id, &n.stages, &view, &BTreeSet::new()).claim.contains(stage)
                    })
                    .count();
                prop_assert_eq!(claimants, 1, "{}", stage);
            }
        }

        #[test]
        fn the_profiles_stage_shares_its_node_with_no_other_heavy_stage_whatever_else_runs(
            ids in proptest::collection::btree_set("[a-z0-9]{1,12}", 2..6),
            pick in proptest::collection::vec(any::<bool>(), OPTIONAL.len()),
        ) {
            let live = cluster(&ids, &pick);
            let owners = assign(&live);
            prop_assert_eq!(owners.len(), live[0].stages.len());
            let profiles = &owners["profiles"];
            for (stage, owner) in &owners {
                let w = live[0].stages[stage];
                prop_assert!(stage == "profiles" || w < 4 || owner != profiles, "{owners:?}");
            }
            // No node carries more than an even share of the weight plus its heaviest stage.
            let total: u32 = live[0].stages.values().sum();
            let share = total.div_ceil(live.len() as u32);
            for (id, load) in loads(&owners, &live) {
                prop_assert!(load <= share + 7, "{id} carries {load}, share {share}: {owners:?}");
            }
        }

        #[test]
        fn weights_out_of_bounds_in_a_heartbeat_row_are_clamped_not_overflowed(
            w in any::<u32>(),
            ids in proptest::collection::btree_set("[a-z0-9]{1,12}", 1..4),
        ) {
            let stages = decode_stages(&format!("profiles@{w},audiences@{w},x@4294967295"));
            prop_assert!(stages.values().all(|w| (1..=MAX_WEIGHT).contains(w)));
            let live: Vec<Node> = ids.iter().map(|id| Node { id: id.clone(), stages: stages.clone() }).collect();
            prop_assert_eq!(assign(&live).len(), 3);
        }
    }

    #[test]
    fn a_node_that_runs_no_stage_yet_does_not_change_the_others_shares() {
        let two = [node("a", &STAGES), node("b", &STAGES)];
        let mut three = two.to_vec();
        three.push(node("c", &[]));
        assert_eq!(assign(&two), assign(&three));
    }

    #[test]
    fn a_node_joining_moves_about_its_own_share_of_the_stages_not_all_of_them() {
        // Twenty equal stages (partitioned stages), 300 sets of node ids per cluster size: the
        // bounded loads move somewhat more than a joining node's share (its share is the least
        // that can move), never a reshuffle of everything.
        let stages: Vec<(String, u32)> = (0..20).map(|k| (format!("profiles_p{k}"), 1)).collect();
        let stages: Vec<(&str, u32)> = stages.iter().map(|(s, w)| (s.as_str(), *w)).collect();
        for n in 2..8usize {
            let (mut worst, mut total) = (0, 0u32);
            for t in 0..300 {
                let all: Vec<Node> = (0..n)
                    .map(|i| node(&format!("node-{t}-{i}"), &stages))
                    .collect();
                let (before, after) = (assign(&all[1..]), assign(&all));
                let moved = before.iter().filter(|(s, o)| after[*s] != **o).count();
                worst = worst.max(moved);
                total += u32::try_from(moved).unwrap_or(u32::MAX);
            }
            let share = 20.0 / n as f64;
            let mean = f64::from(total) / 300.0;
            assert!(
                mean <= 2.0 * share,
                "{n} nodes: {mean} moved on average, share {share}"
            );
            assert!(
                worst <= 3 * 20usize.div_ceil(n),
                "{n} nodes: {worst} moved at worst"
            );
        }
    }

    /// The lease store in memory, with the PostgreSQL adapter's rules.
    #[derive(Default)]
    struct Memory {
        nodes: Mutex<BTreeMap<String, (Stages, i64)>>,
        leases: Mutex<BTreeMap<String, (String, i64)>>,
    }

    impl LeaseStore for Memory {
        fn heartbeat<'a>(
            &'a self,
            node: &'a str,
            stages: &'a Stages,
            now: i64,
            live_since: i64,
            _: i64,
        ) -> BoxFuture<'a, Result<Vec<Node>, StorageError>> {
            Box::pin(async move {
                let mut nodes = lock(&self.nodes);
                nodes.insert(node.to_owned(), (stages.clone(), now));
                Ok(nodes
                    .iter()
                    .filter(|(_, (_, at))| *at >= live_since)
                    .map(|(id, (stages, _))| Node {
                        id: id.clone(),
                        stages: stages.clone(),
                    })
                    .collect())
            })
        }
        fn claim<'a>(
            &'a self,
            stage: &'a str,
            node: &'a str,
            now: i64,
            until: i64,
        ) -> BoxFuture<'a, Result<bool, StorageError>> {
            Box::pin(async move {
                let mut leases = lock(&self.leases);
                let free = leases
                    .get(stage)
                    .is_none_or(|(owner, expires)| owner == node || *expires < now);
                if free {
                    leases.insert(stage.to_owned(), (node.to_owned(), until));
                }
                Ok(free)
            })
        }
        fn release<'a>(
            &'a self,
            stage: &'a str,
            node: &'a str,
        ) -> BoxFuture<'a, Result<(), StorageError>> {
            Box::pin(async move {
                if let Some((owner, expires)) = lock(&self.leases).get_mut(stage)
                    && owner == node
                {
                    *expires = 0;
                }
                Ok(())
            })
        }
        fn leases(&self) -> BoxFuture<'_, Result<Vec<LeaseRow>, StorageError>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn announce(&self, _: &'static str) {}
    }

    fn held(l: &Leases) -> BTreeSet<String> {
        STAGES
            .iter()
            .filter(|(s, _)| l.holds(s))
            .map(|(s, _)| (*s).to_owned())
            .collect()
    }

    #[tokio::test]
    async fn a_joining_node_gets_its_share_and_a_dead_nodes_stages_move_after_one_lease_time() {
        let store = Arc::new(Memory::default());
        let ttl = Duration::from_secs(5);
        let (a, b) = (
            Leases::for_node("a".into(), store.clone(), ttl),
            Leases::for_node("b".into(), store.clone(), ttl),
        );
        for (s, w) in STAGES {
            a.register(s, w);
            b.register(s, w);
        }
        a.tick(0).await.unwrap();
        assert_eq!(held(&a), names(), "a lone node runs everything");
        // b joins: it cannot take a stage a still holds; a gives up b's share on its next tick,
        // and b takes it on its own next tick.
        b.tick(100).await.unwrap();
        assert!(held(&b).is_empty());
        a.tick(200).await.unwrap();
        b.tick(300).await.unwrap();
        assert!(!held(&b).is_empty(), "b got its share");
        assert!(held(&a).is_disjoint(&held(&b)));
        assert_eq!(&held(&a) | &held(&b), names());
        // a dies (no more ticks): once its heartbeat and leases are a lease time old, b has all.
        b.tick(2_000).await.unwrap();
        assert_ne!(held(&b), names(), "a is still live at 2 s");
        b.tick(200 + 5_001).await.unwrap();
        assert_eq!(held(&b), names());
    }
}
