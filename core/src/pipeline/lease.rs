//! Stage leases: which processing node runs which pipeline stage, when several share one
//! PostgreSQL database.
//!
//! Every processing node heartbeats a row in `pipeline_nodes` naming the stages it can run. The
//! owner of a stage is chosen among the live nodes that run it by rendezvous hashing
//! ([`owner`]): every node computes the same answer from the same heartbeats, a joining node takes
//! over only its share, and a node that stops heartbeating (killed, partitioned away) loses its
//! stages to the survivors once its heartbeat is older than the lease time. A node runs a stage
//! only while it holds that stage's row in `stage_leases`: it renews it every third of the lease
//! time, releases it as soon as the stage is someone else's, and can claim it only when the row is
//! free or expired, so two nodes never both think they own a stage for longer than one lease.
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

/// A live node as its heartbeat shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The node's id (random per process start).
    pub id: String,
    /// The stages it runs.
    pub stages: BTreeSet<String>,
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

/// The node that should run `stage`: the highest-scoring live node that runs it (rendezvous
/// hashing, so a node joining or leaving moves only the stages it wins or held).
pub fn owner<'a>(stage: &str, live: &'a [Node]) -> Option<&'a str> {
    live.iter()
        .filter(|n| n.stages.contains(stage))
        .max_by_key(|n| (fnv1a(&[stage, &n.id]), n.id.as_str()))
        .map(|n| n.id.as_str())
}

/// What a node does with its leases on one tick.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Moves {
    /// Stages to claim or renew.
    pub claim: Vec<String>,
    /// Stages it holds but are now another node's.
    pub release: Vec<String>,
}

/// Decides one tick for node `me`: claim (or renew) every stage it owns among `live`, release
/// every stage it holds that another node now owns.
pub fn decide(
    me: &str,
    stages: &BTreeSet<String>,
    live: &[Node],
    held: &BTreeSet<String>,
) -> Moves {
    let mut moves = Moves::default();
    for stage in stages {
        // A node always counts itself as live: its own heartbeat may not be visible yet.
        let mine = match owner(stage, live) {
            Some(o) => o == me,
            None => true,
        };
        if mine {
            moves.claim.push(stage.clone());
        } else if held.contains(stage) {
            moves.release.push(stage.clone());
        }
    }
    moves
}

/// Storage of heartbeats and leases.
pub trait LeaseStore: Send + Sync + 'static {
    /// Records that `node` (running `stages`) is alive at `now`, forgets nodes silent since
    /// `forget_before`, and returns the nodes heard from since `live_since`.
    fn heartbeat<'a>(
        &'a self,
        node: &'a str,
        stages: &'a [String],
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
    stages: Mutex<BTreeSet<String>>,
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

    /// Declares that this node runs `stage` (called by the runner when the stage starts).
    pub fn register(&self, stage: &str) {
        if lock(&self.stages).insert(stage.to_owned()) {
            // Claim it now rather than at the next tick.
            self.registered.notify_one();
        }
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
                l.register(job);
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
        let stages: Vec<String> = lock(&self.stages).iter().cloned().collect();
        let live = self
            .store
            .heartbeat(&self.node, &stages, now, now - ttl, now - 20 * ttl)
            .await?;
        *lock(&self.live) = live.len().max(1);
        let held = lock(&self.held).clone();
        let moves = decide(&self.node, &stages.iter().cloned().collect(), &live, &held);
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
        stages: &'a [String],
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
            .bind(stages.join(","))
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
                let stages = stages
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
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

    fn node(id: &str, stages: &[&str]) -> Node {
        Node {
            id: id.into(),
            stages: stages.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    const STAGES: [&str; 7] = [
        "profiles",
        "audiences",
        "activation",
        "audience-activation",
        "warehouse",
        "warehouse-postgres",
        "handoff",
    ];

    #[test]
    fn every_node_computes_the_same_owner_whatever_order_it_lists_the_nodes_in() {
        let a = [node("a", &STAGES), node("b", &STAGES), node("c", &STAGES)];
        let b = [a[2].clone(), a[0].clone(), a[1].clone()];
        for s in STAGES {
            assert_eq!(owner(s, &a), owner(s, &b));
        }
    }

    #[test]
    fn a_stage_goes_only_to_a_node_that_runs_it() {
        let live = [
            node("a", &["profiles"]),
            node("b", &["profiles", "warehouse"]),
        ];
        assert_eq!(owner("warehouse", &live), Some("b"));
        assert_eq!(owner("handoff", &live), None);
    }

    #[test]
    fn a_lone_node_claims_every_stage_even_before_its_heartbeat_is_visible() {
        let moves = decide("a", &set(&STAGES), &[], &BTreeSet::new());
        assert_eq!(moves.claim.len(), STAGES.len());
        assert!(moves.release.is_empty());
    }

    #[test]
    fn a_node_releases_the_stages_a_joining_node_now_owns_and_keeps_the_rest() {
        let before = [node("a", &STAGES)];
        let after = [node("a", &STAGES), node("b", &STAGES), node("c", &STAGES)];
        let held = set(&STAGES);
        let moves = decide("a", &set(&STAGES), &after, &held);
        let kept: BTreeSet<String> = moves.claim.iter().cloned().collect();
        let released: BTreeSet<String> = moves.release.iter().cloned().collect();
        assert_eq!(&kept | &released, held);
        assert!(kept.is_disjoint(&released));
        for s in &released {
            assert_ne!(owner(s, &after), Some("a"));
        }
        assert_eq!(
            decide("a", &set(&STAGES), &before, &held).release,
            Vec::<String>::new()
        );
    }

    #[test]
    fn when_a_node_dies_only_its_stages_move() {
        let three = [node("a", &STAGES), node("b", &STAGES), node("c", &STAGES)];
        let two = [three[0].clone(), three[2].clone()];
        for s in STAGES {
            let before = owner(s, &three).unwrap();
            if before != "b" {
                assert_eq!(
                    owner(s, &two),
                    Some(before),
                    "{s} moved although its node lives"
                );
            }
        }
    }

    /// The lease store in memory, with the PostgreSQL adapter's rules.
    #[derive(Default)]
    struct Memory {
        nodes: Mutex<BTreeMap<String, (Vec<String>, i64)>>,
        leases: Mutex<BTreeMap<String, (String, i64)>>,
    }

    impl LeaseStore for Memory {
        fn heartbeat<'a>(
            &'a self,
            node: &'a str,
            stages: &'a [String],
            now: i64,
            live_since: i64,
            _: i64,
        ) -> BoxFuture<'a, Result<Vec<Node>, StorageError>> {
            Box::pin(async move {
                let mut nodes = lock(&self.nodes);
                nodes.insert(node.to_owned(), (stages.to_vec(), now));
                Ok(nodes
                    .iter()
                    .filter(|(_, (_, at))| *at >= live_since)
                    .map(|(id, (stages, _))| Node {
                        id: id.clone(),
                        stages: stages.iter().cloned().collect(),
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
            .filter(|s| l.holds(s))
            .map(|s| (*s).to_owned())
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
        for s in STAGES {
            a.register(s);
            b.register(s);
        }
        a.tick(0).await.unwrap();
        assert_eq!(held(&a), set(&STAGES), "a lone node runs everything");
        // b joins: it cannot take a stage a still holds; a gives up b's share on its next tick,
        // and b takes it on its own next tick.
        b.tick(100).await.unwrap();
        assert!(held(&b).is_empty());
        a.tick(200).await.unwrap();
        b.tick(300).await.unwrap();
        assert!(!held(&b).is_empty(), "b got its share");
        assert!(held(&a).is_disjoint(&held(&b)));
        assert_eq!(&held(&a) | &held(&b), set(&STAGES));
        // a dies (no more ticks): once its heartbeat and leases are a lease time old, b has all.
        b.tick(2_000).await.unwrap();
        assert_ne!(held(&b), set(&STAGES), "a is still live at 2 s");
        b.tick(200 + 5_001).await.unwrap();
        assert_eq!(held(&b), set(&STAGES));
    }

    proptest! {
        #[test]
        fn every_stage_has_exactly_one_claimant_among_the_live_nodes(
            ids in proptest::collection::btree_set("[a-z0-9]{1,12}", 1..6),
        ) {
            let live: Vec<Node> = ids.iter().map(|id| node(id, &STAGES)).collect();
            for s in STAGES {
                let claimants = live
                    .iter()
                    .filter(|n| decide(&n.id, &set(&[s]), &live, &BTreeSet::new()).claim.contains(&s.to_owned()))
                    .count();
                prop_assert_eq!(claimants, 1);
            }
        }
    }
}
