//! What every pipeline stage shares: one runner that steps a stage, retries failures with backoff,
//! narrows a failing batch to the message that fails and sets it aside in the quarantine (so no
//! message can stop a stage), wakes on new data, and reports health to `/metrics` and `/readyz`.

pub mod api;
pub mod guard;
pub mod intake_first;
pub mod lease;
pub mod quarantine;

use crate::storage::StorageError;
use futures_util::FutureExt;
pub use guard::{Batch, Guard, Next, Policy};
pub use intake_first::IntakePressure;
pub use lease::{LeaseStore, Leases, PgLeases};
pub use quarantine::{Entry, NewEntry, PgQuarantine, QuarantineStore, SqliteQuarantine};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// The time, injected: stages and health read it here, tests move it.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A clock in the configuration: printable, the system clock by default.
#[derive(Clone)]
pub struct ClockRef(pub Arc<dyn Clock>);

impl std::fmt::Debug for ClockRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.0.now_ms())
    }
}

impl Default for ClockRef {
    fn default() -> Self {
        ClockRef(Arc::new(SystemClock))
    }
}

/// A clock tests set by hand.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock showing `ms`.
    pub fn at(ms: i64) -> ManualClock {
        ManualClock(AtomicI64::new(ms))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// One pipeline stage as the runner drives it.
pub trait Stage: Send + 'static {
    /// The stage's name in metrics, logs and the quarantine.
    fn name(&self) -> &'static str;
    /// Its cursor in `pipeline_cursors`.
    fn cursor_name(&self) -> &'static str;
    /// Its rough cost against the other stages, for spreading stages evenly over processing
    /// nodes ([`lease::assign`]): 1 for a stage that only forwards or filters messages, more for
    /// one that weighs every message against people's state.
    fn weight(&self) -> u32 {
        1
    }
    /// Processes at most a batch (or one position) after the cursor and moves the cursor in the
    /// same transaction; returns how many positions were consumed (0: nothing to do).
    fn step(&mut self, batch: Batch) -> impl Future<Output = Result<usize, StorageError>> + Send;
    /// The position the next step starts with, if there is one.
    fn next_position(&mut self) -> impl Future<Output = Result<Option<i64>, StorageError>> + Send;
    /// Called after a position was set aside (drop caches that assumed the old cursor).
    fn after_set_aside(&mut self) {}
    /// Whether the last step moved what the next stages read up to without consuming a
    /// position (one profiles stage of a partitioned log moving past an idle stretch); taking it
    /// resets it.
    fn take_moved(&mut self) -> bool {
        false
    }
}

/// A counter family: name, help, and how to read it from a stage's health.
type CounterFamily = (&'static str, &'static str, fn(&StageHealth) -> u64);

/// Told of every position set aside.
pub type OnSetAside = Arc<dyn Fn(&NewEntry) + Send + Sync>;

/// What one stage reports: cursor, throughput, retries, quarantined positions, failing since when.
#[derive(Debug)]
pub struct StageHealth {
    /// The stage's name.
    pub name: &'static str,
    /// Positions consumed.
    pub processed: AtomicU64,
    /// Failed steps that were retried.
    pub retries: AtomicU64,
    /// Positions set aside.
    pub quarantined: AtomicU64,
    /// Milliseconds spent holding back for the intake in the same process.
    pub held_ms: AtomicU64,
    /// When the current run of failures began (ms); 0 when the last step succeeded.
    pub failing_since_ms: AtomicI64,
    /// When the stage last succeeded (ms).
    pub last_ok_ms: AtomicI64,
    /// The last error, for `/readyz`.
    pub last_error: Mutex<Option<String>>,
}

impl StageHealth {
    fn new(name: &'static str) -> StageHealth {
        StageHealth {
            name,
            processed: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            quarantined: AtomicU64::new(0),
            held_ms: AtomicU64::new(0),
            failing_since_ms: AtomicI64::new(0),
            last_ok_ms: AtomicI64::new(0),
            last_error: Mutex::new(None),
        }
    }

    fn ok(&self, now: i64, consumed: usize) {
        self.processed.fetch_add(consumed as u64, Ordering::Relaxed);
        self.failing_since_ms.store(0, Ordering::Relaxed);
        self.last_ok_ms.store(now, Ordering::Relaxed);
    }

    fn failed(&self, now: i64, error: &str) {
        let _ =
            self.failing_since_ms
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.to_owned());
    }

    /// Whether the stage has not advanced for longer than `after`: it keeps failing, or no step
    /// has finished at all (a hung query, a dead task) although an idle stage finishes one per poll.
    pub fn stalled(&self, now: i64, after: Duration) -> bool {
        let after = after.as_millis() as i64;
        let since = self.failing_since_ms.load(Ordering::Relaxed);
        let last_ok = self.last_ok_ms.load(Ordering::Relaxed);
        (since != 0 && now - since > after) || (last_ok != 0 && now - last_ok > after)
    }
}

/// Every stage's health, shared with the ops endpoints.
#[derive(Default)]
pub struct Pipeline {
    stages: Mutex<Vec<Arc<StageHealth>>>,
}

impl Pipeline {
    /// Registers a stage (or returns its existing health).
    pub fn stage(&self, name: &'static str) -> Arc<StageHealth> {
        let mut stages = self.stages.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = stages.iter().find(|s| s.name == name) {
            return s.clone();
        }
        let s = Arc::new(StageHealth::new(name));
        stages.push(s.clone());
        s
    }

    /// All registered stages.
    pub fn stages(&self) -> Vec<Arc<StageHealth>> {
        self.stages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stages failing for longer than `after`, with their last error.
    pub fn stalled(&self, now: i64, after: Duration) -> Vec<(&'static str, String)> {
        self.stages()
            .iter()
            .filter(|s| s.stalled(now, after))
            .map(|s| {
                let failing = s.failing_since_ms.load(Ordering::Relaxed) != 0;
                let e = s.last_error.lock().unwrap_or_else(|e| e.into_inner());
                let why = match (&*e, failing) {
                    (Some(e), true) => e.clone(),
                    _ => "no step finished".to_owned(),
                };
                (s.name, why)
            })
            .collect()
    }

    /// Records the stages' counters into the current (per-scrape) recorder (`crate::exposition`).
    pub fn record_metrics(&self) {
        let stages = self.stages();
        let counters: [CounterFamily; 4] = [
            (
                "touchpoint_stage_processed_total",
                "Positions a pipeline stage consumed.",
                |s| s.processed.load(Ordering::Relaxed),
            ),
            (
                "touchpoint_stage_retries_total",
                "Failed pipeline steps that were retried.",
                |s| s.retries.load(Ordering::Relaxed),
            ),
            (
                "touchpoint_stage_quarantined_total",
                "Messages a stage set aside after bounded retries (this process).",
                |s| s.quarantined.load(Ordering::Relaxed),
            ),
            (
                "touchpoint_stage_held_milliseconds_total",
                "Time a stage held back while the intake in the same process was busy.",
                |s| s.held_ms.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, read) in counters {
            metrics::describe_counter!(name, help);
            for s in &stages {
                metrics::counter!(name, "stage" => s.name).absolute(read(s));
            }
        }
        let failing = "touchpoint_stage_failing";
        metrics::describe_gauge!(failing, "1 while the stage's last step failed.");
        for s in &stages {
            let value = u8::from(s.failing_since_ms.load(Ordering::Relaxed) != 0);
            metrics::gauge!(failing, "stage" => s.name).set(f64::from(value));
        }
    }
}

/// What the runner needs besides the stage.
#[derive(Clone)]
pub struct Runner {
    /// Where failing positions go.
    pub quarantine: Arc<dyn QuarantineStore>,
    /// Retry bounds.
    pub policy: Policy,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Health registry.
    pub pipeline: Arc<Pipeline>,
    /// Longest wait for a wake-up before looking again (other processes append too).
    pub poll: Duration,
    /// Told of every position set aside (the live debugger shows them).
    pub on_set_aside: Option<OnSetAside>,
    /// Several processing nodes: a stage runs only on the node holding its lease.
    pub leases: Option<Arc<Leases>>,
    /// Stage progress on other nodes (PostgreSQL `LISTEN`): wakes this node's stages, whose
    /// upstream may run elsewhere.
    pub remote_progress: Option<watch::Receiver<u64>>,
    /// The runtime stages run on: the background one in the `touchpoint` binary (its threads
    /// yield the CPU to the intake, see `crate::background`), else the caller's.
    pub on: Option<tokio::runtime::Handle>,
    /// The intake in the same process: while many requests wait on its commits, stages hold
    /// back for a bounded time (see [`intake_first`]).
    pub intake: Option<Arc<IntakePressure>>,
}

impl Runner {
    /// Starts [`Runner::run`] as a task on the stages' runtime.
    pub fn spawn<S: Stage>(
        self,
        stage: S,
        wake: Arc<Notify>,
        downstream: Arc<Notify>,
    ) -> tokio::task::JoinHandle<()> {
        match self.on.clone() {
            Some(on) => on.spawn(self.run(stage, wake, downstream)),
            None => tokio::spawn(self.run(stage, wake, downstream)),
        }
    }

    /// Drives `stage` until the process ends: step; on success wake `downstream`; on failure retry
    /// with backoff, narrow to one position, and set the failing position aside.
    pub async fn run<S: Stage>(self, mut stage: S, wake: Arc<Notify>, downstream: Arc<Notify>) {
        let health = self.pipeline.stage(stage.name());
        health.ok(self.clock.now_ms(), 0);
        let mut guard = Guard::new(self.policy);
        let mut leases_changed = self.leases.as_ref().map(|l| {
            l.register(stage.name(), stage.weight());
            l.subscribe()
        });
        let mut remote = self.remote_progress.clone();
        loop {
            // Before the lease check, so a stage never steps on a lease it lost while holding
            // back. A stage narrowing a failing batch to one message does not hold back.
            if let Some(intake) = &self.intake
                && guard.batch() == Batch::Full
            {
                let held = intake.wait_turn().await;
                let held = u64::try_from(held.as_millis()).unwrap_or(u64::MAX);
                let _ = health
                    .held_ms
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                        Some(t.saturating_add(held))
                    });
            }
            if let (Some(leases), Some(changed)) = (&self.leases, &mut leases_changed)
                && !leases.holds(stage.name())
            {
                // Another node runs this stage; this one is idle, not stalled.
                health.ok(self.clock.now_ms(), 0);
                let _ = tokio::time::timeout(self.poll.max(leases.ttl / 3), self::changed(changed))
                    .await;
                continue;
            }
            let batch = guard.batch();
            // A panic in a stage is a failure of the message being processed like any other: it
            // is retried, narrowed and quarantined, never allowed to end the stage's task.
            let result = match AssertUnwindSafe(stage.step(batch)).catch_unwind().await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(panic) => {
                    stage.after_set_aside();
                    Err(format!("panicked: {}", panic_text(&*panic)))
                }
            };
            match result {
                Ok(n) => {
                    guard.succeeded();
                    health.ok(self.clock.now_ms(), n);
                    if n > 0 || stage.take_moved() {
                        downstream.notify_one();
                        if let Some(leases) = &self.leases
                            && leases.live_nodes() > 1
                        {
                            // The stages after this one may run on other nodes.
                            leases.announce(stage.name());
                        }
                    }
                    if n > 0 {
                        if batch == Batch::Full {
                            // Let a few more commits gather before the next write.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        continue;
                    }
                    let remote_wake = async {
                        match &mut remote {
                            Some(r) => changed(r).await,
                            None => std::future::pending().await,
                        }
                    };
                    let leases_wake = async {
                        match &mut leases_changed {
                            Some(r) => changed(r).await,
                            None => std::future::pending().await,
                        }
                    };
                    let _ = tokio::time::timeout(self.poll, async {
                        tokio::select! {
                            _ = wake.notified() => {}
                            _ = remote_wake => {}
                            _ = leases_wake => {}
                        }
                    })
                    .await;
                }
                Err(error) => {
                    health.failed(self.clock.now_ms(), &error);
                    health.retries.fetch_add(1, Ordering::Relaxed);
                    let position = match stage.next_position().await {
                        Ok(Some(p)) => p,
                        Ok(None) | Err(_) => {
                            tracing::warn!(stage = stage.name(), error = %error, "stage step failed; retrying");
                            tokio::time::sleep(self.policy.backoff_max).await;
                            continue;
                        }
                    };
                    match guard.failed(position) {
                        Next::Retry { after, batch } => {
                            tracing::warn!(stage = stage.name(), position, error = %error, ?batch, retry_in_ms = after.as_millis() as u64, "stage step failed; retrying");
                            tokio::time::sleep(after).await;
                        }
                        Next::SetAside { attempts } => {
                            let entry = NewEntry {
                                stage: stage.name(),
                                cursor: stage.cursor_name(),
                                position,
                                error: error.clone(),
                                attempts,
                                at: self.clock.now_ms(),
                            };
                            match self.quarantine.set_aside(&entry).await {
                                Ok(moved) => {
                                    if moved {
                                        tracing::error!(stage = stage.name(), position, attempts, error = %error, "message quarantined; the stage moves on");
                                        health.quarantined.fetch_add(1, Ordering::Relaxed);
                                        if let Some(tell) = &self.on_set_aside {
                                            tell(&entry);
                                        }
                                    }
                                    guard.set_aside();
                                    stage.after_set_aside();
                                    downstream.notify_one();
                                }
                                Err(qe) => {
                                    tracing::error!(stage = stage.name(), error = %qe, "could not quarantine; retrying");
                                    tokio::time::sleep(self.policy.backoff_max).await;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Passes every wake-up of `from` on to each of `to`: one stage's progress wakes all the stages
/// that read after it (a [`Notify`] wakes a single waiter). A wake-up given while a receiver is not
/// waiting is kept as its permit, so none is lost.
pub fn fan_out(from: Arc<Notify>, to: Vec<Arc<Notify>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            from.notified().await;
            for n in &to {
                n.notify_one();
            }
        }
    })
}

/// Waits for the next change of `r`; forever once its sender is gone.
async fn changed(r: &mut watch::Receiver<u64>) {
    if r.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The message of a panic payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_is_stalled_only_after_failing_longer_than_the_threshold() {
        let p = Pipeline::default();
        let s = p.stage("profiles");
        s.failed(1_000, "boom");
        assert!(!s.stalled(20_000, Duration::from_secs(30)));
        assert!(s.stalled(31_001, Duration::from_secs(30)));
        assert_eq!(
            p.stalled(31_001, Duration::from_secs(30)),
            vec![("profiles", "boom".to_string())]
        );
        s.ok(31_002, 1);
        assert!(!s.stalled(40_000, Duration::from_secs(30)));
    }

    #[test]
    fn a_stage_whose_steps_stop_finishing_is_stalled_without_any_error() {
        let p = Pipeline::default();
        let s = p.stage("audiences");
        s.ok(1_000, 0);
        assert!(!s.stalled(30_000, Duration::from_secs(30)));
        assert!(s.stalled(31_001, Duration::from_secs(30)));
        assert_eq!(
            p.stalled(31_001, Duration::from_secs(30)),
            vec![("audiences", "no step finished".to_string())]
        );
    }

    #[test]
    fn a_run_of_failures_is_dated_from_its_first_failure() {
        let s = StageHealth::new("x");
        s.failed(5, "a");
        s.failed(50, "b");
        assert_eq!(s.failing_since_ms.load(Ordering::Relaxed), 5);
        assert_eq!(s.last_error.lock().unwrap().as_deref(), Some("b"));
    }

    #[test]
    fn stage_metrics_carry_the_stage_label() {
        let p = Pipeline::default();
        p.stage("audiences")
            .quarantined
            .fetch_add(2, Ordering::Relaxed);
        p.stage("audiences")
            .held_ms
            .fetch_add(1_500, Ordering::Relaxed);
        let out = crate::exposition::render(|| p.record_metrics());
        assert!(out.contains("touchpoint_stage_quarantined_total{stage=\"audiences\"} 2"));
        assert!(out.contains("touchpoint_stage_held_milliseconds_total{stage=\"audiences\"} 1500"));
    }

    #[tokio::test]
    async fn one_wake_up_reaches_every_stage_downstream() {
        let (from, a, b) = (
            Arc::new(Notify::new()),
            Arc::new(Notify::new()),
            Arc::new(Notify::new()),
        );
        let relay = fan_out(from.clone(), vec![a.clone(), b.clone()]);
        from.notify_one();
        // Bounded: each receiver must be woken within 5 s (the permit is kept if it waits late).
        for n in [&a, &b] {
            tokio::time::timeout(Duration::from_secs(5), n.notified())
                .await
                .expect("woken");
        }
        relay.abort();
    }

    /// A stage over an in-memory log in which some positions always fail.
    struct Fake {
        log: Vec<i64>,
        poison: Vec<i64>,
        panics: Vec<i64>,
        cursor: Arc<AtomicI64>,
        done: Arc<Mutex<Vec<i64>>>,
    }

    impl Stage for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn cursor_name(&self) -> &'static str {
            "fake"
        }
        async fn step(&mut self, batch: Batch) -> Result<usize, StorageError> {
            let cursor = self.cursor.load(Ordering::SeqCst);
            let take = if batch == Batch::One { 1 } else { 4 };
            let rows: Vec<i64> = self
                .log
                .iter()
                .copied()
                .filter(|p| *p > cursor)
                .take(take)
                .collect();
            if rows.iter().any(|p| self.poison.contains(p)) {
                return Err(StorageError::UnsupportedUrl);
            }
            if rows.iter().any(|p| self.panics.contains(p)) {
                panic!("bug in decide for {rows:?}");
            }
            if let Some(last) = rows.last() {
                self.cursor.store(*last, Ordering::SeqCst);
                self.done.lock().unwrap().extend(&rows);
            }
            Ok(rows.len())
        }
        async fn next_position(&mut self) -> Result<Option<i64>, StorageError> {
            let cursor = self.cursor.load(Ordering::SeqCst);
            Ok(self.log.iter().copied().find(|p| *p > cursor))
        }
    }

    /// The quarantine in memory, moving the fake's cursor like the real one.
    struct Memory {
        cursor: Arc<AtomicI64>,
        entries: Mutex<Vec<NewEntry>>,
    }

    impl QuarantineStore for Memory {
        fn set_aside<'a>(
            &'a self,
            e: &'a NewEntry,
        ) -> futures_util::future::BoxFuture<'a, Result<bool, StorageError>> {
            Box::pin(async move {
                self.cursor.store(e.position, Ordering::SeqCst);
                self.entries.lock().unwrap().push(e.clone());
                Ok(true)
            })
        }
        fn list(
            &self,
            _: bool,
            _: i64,
        ) -> futures_util::future::BoxFuture<'_, Result<Vec<Entry>, StorageError>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn get(
            &self,
            _: i64,
        ) -> futures_util::future::BoxFuture<'_, Result<Option<Entry>, StorageError>> {
            Box::pin(async { Ok(None) })
        }
        fn open_counts(
            &self,
        ) -> futures_util::future::BoxFuture<'_, Result<Vec<(String, i64)>, StorageError>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn replayed<'a>(
            &'a self,
            _: i64,
            _: i64,
            _: Option<&'a str>,
        ) -> futures_util::future::BoxFuture<'a, Result<(), StorageError>> {
            Box::pin(async { Ok(()) })
        }
        fn reappend(
            &self,
            _: i64,
        ) -> futures_util::future::BoxFuture<'_, Result<Option<i64>, StorageError>> {
            Box::pin(async { Ok(None) })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn poison_and_panicking_messages_are_set_aside_and_every_other_message_is_processed() {
        run_fake_with_poison_to_the_end(None).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_stage_held_back_by_an_intake_that_stays_busy_still_processes_every_message() {
        // A stopped clock and a busy commit: the intake never calms down.
        let intake = IntakePressure::new(Arc::new(ManualClock::at(0)), 1);
        intake.committing(64);
        let health = run_fake_with_poison_to_the_end(Some(intake)).await;
        // Every full-batch step waited the longest hold (narrowing steps do not).
        let steps = health.processed.load(Ordering::Relaxed);
        assert!(
            health.held_ms.load(Ordering::Relaxed) >= 250 * 3,
            "held {} ms over {steps} positions",
            health.held_ms.load(Ordering::Relaxed)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stage_beside_a_calm_intake_never_holds_back() {
        let intake = IntakePressure::new(Arc::new(ManualClock::at(0)), 16);
        intake.committing(1);
        let health = run_fake_with_poison_to_the_end(Some(intake)).await;
        assert_eq!(health.held_ms.load(Ordering::Relaxed), 0);
    }

    /// Runs the fake stage over positions 1..=20 (6 and 7 poison, 15 panics) until its cursor is at
    /// the end, checks what was processed and set aside, and returns the stage's health.
    async fn run_fake_with_poison_to_the_end(
        intake: Option<Arc<IntakePressure>>,
    ) -> Arc<StageHealth> {
        let cursor = Arc::new(AtomicI64::new(0));
        let done = Arc::new(Mutex::new(Vec::new()));
        let memory = Arc::new(Memory {
            cursor: cursor.clone(),
            entries: Mutex::new(Vec::new()),
        });
        let stage = Fake {
            log: (1..=20).collect(),
            poison: vec![6, 7],
            panics: vec![15],
            cursor: cursor.clone(),
            done: done.clone(),
        };
        let runner = Runner {
            quarantine: memory.clone(),
            policy: Policy {
                attempts: 2,
                backoff_base: Duration::from_millis(10),
                backoff_max: Duration::from_millis(40),
                isolate_span: 4,
            },
            clock: Arc::new(ManualClock::at(0)),
            pipeline: Arc::new(Pipeline::default()),
            poll: Duration::from_millis(50),
            on_set_aside: None,
            leases: None,
            remote_progress: None,
            on: None,
            intake,
        };
        let health = runner.pipeline.stage("fake");
        let task =
            tokio::spawn(runner.run(stage, Arc::new(Notify::new()), Arc::new(Notify::new())));
        // Paused time: the runner's sleeps advance the clock instantly; bounded by count.
        for _ in 0..10_000 {
            if cursor.load(Ordering::SeqCst) == 20 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        task.abort();
        assert_eq!(cursor.load(Ordering::SeqCst), 20);
        let set_aside: Vec<i64> = memory
            .entries
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.position)
            .collect();
        assert_eq!(set_aside, vec![6, 7, 15]);
        let panicked = &memory.entries.lock().unwrap()[2];
        assert!(
            panicked.error.contains("panicked: bug in decide"),
            "{}",
            panicked.error
        );
        let expected: Vec<i64> = (1..=20).filter(|p| ![6, 7, 15].contains(p)).collect();
        assert_eq!(*done.lock().unwrap(), expected);
        assert_eq!(health.quarantined.load(Ordering::Relaxed), 3);
        health
    }
}
