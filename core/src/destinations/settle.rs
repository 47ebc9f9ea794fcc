//! The settle step of delivery (pure): what becomes of one outbox row after its delivery attempt —
//! delivered, due again after a backoff (at least as long as a rate-limited API asked), or dead
//! (the API refused it, or a retryable failure used the last attempt). `worker.rs` reads the rows,
//! calls the destination, and stores what [`settle`] decides.

use super::config::DeliveryConfig;
use super::store::RowOutcome;
use std::time::Duration;

/// Worst-wins outcome of one activation across the calls that carried it.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every call carrying it succeeded (or none had anything to send).
    Delivered,
    /// Try again; `Some(after)` when the API said how long to wait (Retry-After, rate limits).
    Retry(Option<Duration>, String),
    /// Do not try again, with the API's message.
    Dead(String),
}

impl Verdict {
    /// Folds in the outcome of another call that carried the same activation: dead beats retry
    /// beats delivered; of two retries the longer wait wins, with the later reason.
    pub fn merge(&mut self, other: Verdict) {
        let rank = |v: &Verdict| match v {
            Verdict::Delivered => 0,
            Verdict::Retry(..) => 1,
            Verdict::Dead(_) => 2,
        };
        match (&mut *self, other) {
            (Verdict::Retry(a, _), Verdict::Retry(b, reason)) => {
                *self = Verdict::Retry((*a).max(b), reason);
            }
            (s, o) if rank(&o) > rank(s) => *s = o,
            _ => {}
        }
    }
}

/// Where in `[base/2, base]` a retry delay falls: a fraction in `[0, 1)`. Random in production,
/// chosen by tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Jitter(f64);

impl Jitter {
    /// A jitter of `fraction`, clamped into `[0, 1)`.
    pub fn new(fraction: f64) -> Jitter {
        Jitter(if fraction.is_finite() {
            fraction.clamp(0.0, 0.999)
        } else {
            0.0
        })
    }

    /// A random jitter (thousandths).
    pub fn random() -> Jitter {
        Jitter((uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0)
    }
}

/// Exponential backoff for the `attempt`-th failure (1-based): `retry_base` doubled per attempt,
/// capped at `retry_max`, placed by `jitter` in `[base/2, base]`, and at least `after` (what the
/// API asked for, which may be longer than `retry_max`).
pub fn backoff_delay(
    policy: &DeliveryConfig,
    attempt: i64,
    after: Option<Duration>,
    jitter: Jitter,
) -> Duration {
    let exp = attempt.clamp(1, 30) as u32 - 1;
    let base = policy
        .retry_base
        .saturating_mul(1u32 << exp.min(20))
        .min(policy.retry_max);
    let jittered = base.mul_f64(0.5 + jitter.0 / 2.0);
    jittered.max(after.unwrap_or_default())
}

/// What becomes of a row after its `attempts`-th delivery attempt (counting this one) ended with
/// `verdict`, at `now_ms`.
pub fn settle(
    verdict: Verdict,
    attempts: i64,
    policy: &DeliveryConfig,
    now_ms: i64,
    jitter: Jitter,
) -> RowOutcome {
    match verdict {
        Verdict::Delivered => RowOutcome::Delivered,
        Verdict::Retry(_, reason) if attempts >= policy.max_attempts => {
            RowOutcome::Dead(format!("gave up after {attempts} attempts: {reason}"))
        }
        Verdict::Retry(after, reason) => {
            let wait = backoff_delay(policy, attempts, after, jitter);
            RowOutcome::Retry {
                next_at: now_ms.saturating_add(wait.as_millis() as i64),
                error: reason,
            }
        }
        Verdict::Dead(message) => RowOutcome::Dead(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> DeliveryConfig {
        DeliveryConfig {
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(10),
            max_attempts: 5,
            ..DeliveryConfig::default()
        }
    }

    #[test]
    fn the_worst_outcome_of_an_activation_wins() {
        let mut v = Verdict::Delivered;
        v.merge(Verdict::Retry(Some(Duration::from_secs(1)), "a".into()));
        v.merge(Verdict::Retry(Some(Duration::from_secs(5)), "b".into()));
        assert_eq!(v, Verdict::Retry(Some(Duration::from_secs(5)), "b".into()));
        v.merge(Verdict::Dead("PICKLIST_INVALID_VALUE".into()));
        v.merge(Verdict::Delivered);
        assert_eq!(v, Verdict::Dead("PICKLIST_INVALID_VALUE".into()));
    }

    #[test]
    fn a_delivered_row_is_settled_as_delivered() {
        let s = settle(Verdict::Delivered, 5, &policy(), 1_000, Jitter::new(0.5));
        assert_eq!(s, RowOutcome::Delivered);
    }

    #[test]
    fn a_retryable_failure_is_due_again_after_the_exponential_backoff() {
        let retry = |attempts, jitter| {
            let v = Verdict::Retry(None, "503".into());
            settle(v, attempts, &policy(), 1_000, Jitter::new(jitter))
        };
        let first = RowOutcome::Retry {
            next_at: 1_050,
            error: "503".into(),
        };
        assert_eq!(retry(1, 0.0), first);
        let third = RowOutcome::Retry {
            next_at: 1_200,
            error: "503".into(),
        };
        assert_eq!(retry(3, 0.0), third);
    }

    #[test]
    fn a_rate_limited_row_waits_as_long_as_the_api_asked_even_beyond_the_max() {
        let v = Verdict::Retry(Some(Duration::from_secs(60)), "429".into());
        let s = settle(v, 1, &policy(), 1_000, Jitter::new(0.5));
        let expected = RowOutcome::Retry {
            next_at: 61_000,
            error: "429".into(),
        };
        assert_eq!(s, expected);
    }

    #[test]
    fn a_retryable_failure_on_the_last_attempt_is_dead_lettered_with_its_reason() {
        let v = Verdict::Retry(None, "timeout".into());
        let s = settle(v, 5, &policy(), 1_000, Jitter::new(0.5));
        assert_eq!(
            s,
            RowOutcome::Dead("gave up after 5 attempts: timeout".into())
        );
    }

    #[test]
    fn a_refused_row_is_dead_lettered_at_once_with_the_apis_message() {
        let v = Verdict::Dead("INVALID_EMAIL_ADDRESS".into());
        let s = settle(v, 1, &policy(), 1_000, Jitter::new(0.5));
        assert_eq!(s, RowOutcome::Dead("INVALID_EMAIL_ADDRESS".into()));
    }

    fn any_policy() -> impl Strategy<Value = DeliveryConfig> {
        (1u64..10_000_000, 1u64..100_000_000, 1i64..50).prop_map(|(base, max, attempts)| {
            DeliveryConfig {
                retry_base: Duration::from_millis(base),
                retry_max: Duration::from_millis(max),
                max_attempts: attempts,
                ..DeliveryConfig::default()
            }
        })
    }

    proptest! {
        #[test]
        fn the_backoff_never_exceeds_its_max_unless_the_api_asked_for_longer(
            policy in any_policy(),
            attempt in any::<i64>(),
            after in proptest::option::of(0u64..200_000_000),
            jitter in 0.0f64..1.0,
        ) {
            let after = after.map(Duration::from_millis);
            let wait = backoff_delay(&policy, attempt, after, Jitter::new(jitter));
            prop_assert!(wait <= policy.retry_max.max(after.unwrap_or_default()));
            prop_assert!(wait >= after.unwrap_or_default());
        }

        #[test]
        fn a_row_is_retried_only_while_it_has_attempts_left(
            policy in any_policy(),
            attempts in 1i64..100,
            after in proptest::option::of(0u64..200_000_000),
            now in 0i64..4_000_000_000_000,
            jitter in 0.0f64..1.0,
        ) {
            let after = after.map(Duration::from_millis);
            let v = Verdict::Retry(after, "e".into());
            match settle(v, attempts, &policy, now, Jitter::new(jitter)) {
                RowOutcome::Retry { next_at, .. } => {
                    prop_assert!(attempts < policy.max_attempts);
                    let longest = policy.retry_max.max(after.unwrap_or_default());
                    prop_assert!(next_at >= now && next_at <= now + longest.as_millis() as i64);
                }
                RowOutcome::Dead(_) => prop_assert!(attempts >= policy.max_attempts),
                RowOutcome::Delivered => prop_assert!(false, "a retry is never delivered"),
            }
        }
    }
}
