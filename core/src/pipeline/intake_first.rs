//! Intake first: while many clients wait on the intake's commits, the stages on the same node hold
//! back, so acknowledgements get the CPU and the stages work through the burst once it is over.
//!
//! On one machine the intake and the stages share the cores. Under a burst the stages' work (each
//! message costs more to process than to take in) would otherwise lengthen every client's wait for
//! its acknowledgement. Nothing is lost by holding back: the log is durable. A held stage still
//! steps at least once every [`HoldPolicy::longest_hold`], but its backlog grows while the burst
//! lasts. At moderate load a commit answers a request or two and nothing is held.
//!
//! On by default on SQLite only ([`busy_requests`]): there a commit answering 16 requests means the
//! machine is near saturation. A PostgreSQL commit takes several milliseconds, so 16 requests can
//! share one at a load the node handles with CPU to spare, and holding back would only slow
//! processing; there ingest and processing nodes are split instead.
//!
//! The intake's writer reports each commit it starts ([`IntakePressure::committing`]), through the
//! log writer thread when that groups the appends (`CommitObserver::starting`); the decision
//! ([`turn`]) is a pure function of the times involved.

use super::Clock;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Requests answered by one commit from which the intake counts as busy, by default on SQLite. At
/// moderate load a commit answers one or two; under a burst from 64 connections, a few dozen.
pub const BUSY_REQUESTS: usize = 16;

/// The threshold in force: the setting (`TOUCHPOINT_INTAKE_BUSY_REQUESTS`) if given, else
/// [`BUSY_REQUESTS`] on SQLite and 0 (never hold back) on PostgreSQL.
pub fn busy_requests(setting: Option<usize>, sqlite: bool) -> usize {
    setting.unwrap_or(if sqlite { BUSY_REQUESTS } else { 0 })
}

/// No commit was busy yet.
const NEVER: i64 = i64::MIN;

/// What the intake's writer tells the stages: when a commit last answered many requests at once.
pub struct IntakePressure {
    clock: Arc<dyn Clock>,
    /// Requests answered by one commit from which the intake counts as busy (0: never).
    busy_requests: usize,
    hold: HoldPolicy,
    last_busy_ms: AtomicI64,
}

impl IntakePressure {
    /// Pressure read on `clock`; a commit answering `busy_requests` requests or more is busy
    /// (0 turns holding back off).
    pub fn new(clock: Arc<dyn Clock>, busy_requests: usize) -> Arc<IntakePressure> {
        Arc::new(IntakePressure {
            clock,
            busy_requests,
            hold: HoldPolicy::default(),
            last_busy_ms: AtomicI64::new(NEVER),
        })
    }

    /// The writer starts a commit that will answer `requests` requests. (Reported before the
    /// commit, so a commit that stalls on the disk counts as calm once 20 ms have passed: the
    /// intake is then waiting on I/O, not on the CPU.)
    pub fn committing(&self, requests: usize) {
        if self.busy_requests > 0 && requests >= self.busy_requests {
            self.last_busy_ms
                .store(self.clock.now_ms(), Ordering::Relaxed);
        }
    }

    /// When a commit was last busy, if ever.
    pub fn last_busy_ms(&self) -> Option<i64> {
        Some(self.last_busy_ms.load(Ordering::Relaxed)).filter(|&t| t != NEVER)
    }

    /// Resolves when a stage that wants to step now may: at once unless the intake is busy, and
    /// after [`HoldPolicy::longest_hold`] at the latest. Returns how long it held back, measured
    /// on the runtime's clock (the one its sleeps run on).
    pub async fn wait_turn(&self) -> Duration {
        let started = tokio::time::Instant::now();
        let wanted = self.clock.now_ms();
        // Bounded in count too, whatever the injected clock does.
        let looks = self.hold.longest_hold.as_millis() / self.hold.recheck.as_millis().max(1) + 2;
        for _ in 0..looks {
            match turn(&self.hold, self.clock.now_ms(), wanted, self.last_busy_ms()) {
                Turn::Step => break,
                Turn::Hold(d) => tokio::time::sleep(d).await,
            }
        }
        started.elapsed()
    }
}

/// How long a stage holds back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldPolicy {
    /// The intake counts as busy for this long after a busy commit (commits come every 1–2 ms
    /// under load, so one commit answering few requests does not end a burst).
    pub calm_after: Duration,
    /// A stage that wants to step never waits longer than this, so it keeps stepping under a
    /// burst that does not end (its backlog still grows while the burst lasts).
    pub longest_hold: Duration,
    /// How often a holding stage looks again.
    pub recheck: Duration,
}

impl Default for HoldPolicy {
    fn default() -> Self {
        HoldPolicy {
            calm_after: Duration::from_millis(20),
            longest_hold: Duration::from_millis(250),
            recheck: Duration::from_millis(5),
        }
    }
}

/// What a stage that wants to step does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Step.
    Step,
    /// Look again after this long.
    Hold(Duration),
}

/// Whether a stage that has wanted to step since `wanted_since_ms` steps at `now_ms`, given the
/// last busy commit.
pub fn turn(
    policy: &HoldPolicy,
    now_ms: i64,
    wanted_since_ms: i64,
    last_busy_ms: Option<i64>,
) -> Turn {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let Some(busy) = last_busy_ms else {
        return Turn::Step;
    };
    let calm_at = busy.saturating_add(ms(policy.calm_after));
    let give_up_at = wanted_since_ms.saturating_add(ms(policy.longest_hold));
    if now_ms >= calm_at || now_ms >= give_up_at {
        return Turn::Step;
    }
    let until = calm_at.min(give_up_at).saturating_sub(now_ms);
    Turn::Hold(
        policy
            .recheck
            .min(Duration::from_millis(u64::try_from(until).unwrap_or(0))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ManualClock;

    fn policy() -> HoldPolicy {
        HoldPolicy::default()
    }

    #[test]
    fn a_stage_steps_at_once_when_the_intake_was_never_busy() {
        assert_eq!(turn(&policy(), 1_000, 1_000, None), Turn::Step);
    }

    #[test]
    fn a_stage_holds_back_while_commits_answer_many_requests() {
        assert_eq!(
            turn(&policy(), 1_000, 1_000, Some(995)),
            Turn::Hold(Duration::from_millis(5))
        );
    }

    #[test]
    fn a_stage_steps_once_the_intake_has_been_calm_for_a_while() {
        assert_eq!(turn(&policy(), 1_020, 1_000, Some(1_000)), Turn::Step);
        assert_eq!(
            turn(&policy(), 1_018, 1_000, Some(1_000)),
            Turn::Hold(Duration::from_millis(2)),
            "it looks again when the calm would begin, not later"
        );
    }

    #[test]
    fn a_stage_never_holds_longer_than_the_longest_hold_under_a_burst_that_does_not_end() {
        let p = policy();
        let wanted = 1_000;
        let mut now = wanted;
        let mut looks = 0;
        // The intake stays busy: every look sees a busy commit a millisecond ago.
        while let Turn::Hold(d) = turn(&p, now, wanted, Some(now - 1)) {
            now += i64::try_from(d.as_millis()).unwrap();
            looks += 1;
            assert!(looks <= 1_000, "the hold never ended");
        }
        assert_eq!(now, wanted + 250);
    }

    #[test]
    fn only_commits_answering_many_requests_make_the_intake_busy() {
        let clock = Arc::new(ManualClock::at(5_000));
        let pressure = IntakePressure::new(clock.clone(), 8);
        pressure.committing(7);
        assert_eq!(pressure.last_busy_ms(), None);
        pressure.committing(8);
        assert_eq!(pressure.last_busy_ms(), Some(5_000));
        clock.advance(Duration::from_millis(30));
        pressure.committing(1);
        assert_eq!(pressure.last_busy_ms(), Some(5_000));
    }

    #[test]
    fn holding_back_is_on_by_default_on_sqlite_only_unless_set() {
        assert_eq!(busy_requests(None, true), BUSY_REQUESTS);
        assert_eq!(busy_requests(None, false), 0);
        assert_eq!(busy_requests(Some(32), false), 32);
        assert_eq!(busy_requests(Some(0), true), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stage_steps_at_once_when_the_last_busy_commit_is_long_past() {
        let clock = Arc::new(ManualClock::at(5_000));
        let pressure = IntakePressure::new(clock.clone(), 16);
        pressure.committing(64);
        clock.advance(Duration::from_secs(1));
        assert_eq!(pressure.wait_turn().await, Duration::ZERO);
    }

    #[test]
    fn a_threshold_of_zero_turns_holding_back_off() {
        let pressure = IntakePressure::new(Arc::new(ManualClock::at(5_000)), 0);
        pressure.committing(10_000);
        assert_eq!(pressure.last_busy_ms(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stage_waiting_its_turn_on_a_stopped_clock_still_steps_after_a_bounded_number_of_looks()
     {
        let pressure = IntakePressure::new(Arc::new(ManualClock::at(5_000)), 1);
        pressure.committing(1);
        let held = tokio::time::timeout(Duration::from_secs(5), pressure.wait_turn())
            .await
            .expect("the wait ends");
        assert!(
            held >= Duration::from_millis(250) && held <= Duration::from_millis(260),
            "{held:?}"
        );
    }
}
