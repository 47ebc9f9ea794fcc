//! The decisions of delivery (pure): what one call's answer means for the outbox rows it carried
//! ([`judge`], folded per row by [`Verdicts`]), and what becomes of one row after its attempt
//! ([`settle`]) — delivered, due again after a backoff (at least as long as a rate-limited API
//! asked), or dead (the API refused it, or a retryable failure used the last attempt). `worker.rs`
//! claims the rows, makes the calls, and stores what these decide.

use super::RetryAction;
use super::config::DeliveryConfig;
use super::store::RowOutcome;
use std::collections::BTreeMap;
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

/// Each claimed row's verdict so far (rows by their position in the claim), folded over every call
/// that carried it.
#[derive(Debug, Default)]
pub struct Verdicts(BTreeMap<usize, Verdict>);

impl Verdicts {
    /// Folds `verdict` into row `row`'s (see [`Verdict::merge`]).
    pub fn add(&mut self, row: usize, verdict: Verdict) {
        self.0
            .entry(row)
            .or_insert(Verdict::Delivered)
            .merge(verdict);
    }

    /// Row `row`'s verdict; a row no call carried had nothing to send, so it is delivered.
    pub fn take(&mut self, row: usize) -> Verdict {
        self.0.remove(&row).unwrap_or(Verdict::Delivered)
    }
}

/// What one call's answer means, for its delivery-log line and for the calls after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    /// `success`, `retry`, `dead` or `partial`.
    pub outcome: &'static str,
    /// The failure, as logged.
    pub error: Option<String>,
    /// Set when the whole call must be retried: the later calls of the batch are not sent (they
    /// may depend on this one, e.g. Contacts on their Account) and wait for the retry too.
    pub halts: Option<String>,
}

/// Folds the answer to one call into the verdicts of the rows it carried. `carried` are the claimed
/// rows of the call; `rows_of` maps item indices of the request to claimed rows (for answers that
/// name single items).
pub fn judge(
    action: &RetryAction,
    carried: &[usize],
    rows_of: impl Fn(&[usize]) -> Vec<usize>,
    verdicts: &mut Verdicts,
) -> Judged {
    let judged = |outcome, error: Option<String>| Judged {
        outcome,
        error,
        halts: None,
    };
    match action {
        RetryAction::Success => {
            for &i in carried {
                verdicts.add(i, Verdict::Delivered);
            }
            judged("success", None)
        }
        RetryAction::Retry { after, reason } => {
            for &i in carried {
                verdicts.add(i, Verdict::Retry(*after, reason.clone()));
            }
            Judged {
                halts: Some(reason.clone()),
                ..judged("retry", Some(reason.clone()))
            }
        }
        RetryAction::DontRetry(message) => {
            for &i in carried {
                verdicts.add(i, Verdict::Dead(message.clone()));
            }
            judged("dead", Some(message.clone()))
        }
        RetryAction::RetryPart {
            retry,
            dead,
            reason,
        } => {
            for &i in carried {
                verdicts.add(i, Verdict::Delivered);
            }
            for i in rows_of(retry) {
                verdicts.add(i, Verdict::Retry(None, reason.clone()));
            }
            let mut messages = Vec::new();
            for (item, message) in dead {
                messages.push(message.clone());
                for i in rows_of(&[*item]) {
                    verdicts.add(i, Verdict::Dead(message.clone()));
                }
            }
            if !retry.is_empty() {
                messages.push(reason.clone());
            }
            judged("partial", Some(messages.join("; ")))
        }
    }
}

/// The rows of a call that was not sent because an earlier call of the batch must be retried.
pub fn not_sent(carried: &[usize], reason: &str, verdicts: &mut Verdicts) {
    for &i in carried {
        verdicts.add(i, Verdict::Retry(None, format!("not sent: {reason}")));
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

    /// Items map to claimed rows one to one, shifted by 10.
    fn rows(items: &[usize]) -> Vec<usize> {
        items.iter().map(|i| i + 10).collect()
    }

    #[test]
    fn a_successful_call_delivers_every_row_it_carried_and_a_row_no_call_carried() {
        let mut v = Verdicts::default();
        let j = judge(&RetryAction::Success, &[10, 11], rows, &mut v);
        assert_eq!((j.outcome, j.error, j.halts), ("success", None, None));
        assert_eq!(v.take(10), Verdict::Delivered);
        assert_eq!(v.take(12), Verdict::Delivered);
    }

    #[test]
    fn a_whole_call_to_retry_halts_the_calls_after_it_which_are_retried_unsent() {
        let mut v = Verdicts::default();
        let retry = RetryAction::Retry {
            after: Some(Duration::from_secs(30)),
            reason: "429 Too Many Requests".into(),
        };
        let j = judge(&retry, &[10], rows, &mut v);
        assert_eq!(j.outcome, "retry");
        assert_eq!(j.halts.as_deref(), Some("429 Too Many Requests"));
        not_sent(&[11], "429 Too Many Requests", &mut v);
        assert_eq!(
            v.take(10),
            Verdict::Retry(
                Some(Duration::from_secs(30)),
                "429 Too Many Requests".into()
            )
        );
        assert_eq!(
            v.take(11),
            Verdict::Retry(None, "not sent: 429 Too Many Requests".into())
        );
    }

    #[test]
    fn a_partial_answer_retries_and_kills_only_the_items_it_names() {
        let mut v = Verdicts::default();
        let part = RetryAction::RetryPart {
            retry: vec![1],
            dead: vec![(2, "INVALID_EMAIL_ADDRESS".into())],
            reason: "UNABLE_TO_LOCK_ROW".into(),
        };
        let j = judge(&part, &[10, 11, 12], rows, &mut v);
        assert_eq!(j.outcome, "partial");
        assert_eq!(
            j.error.as_deref(),
            Some("INVALID_EMAIL_ADDRESS; UNABLE_TO_LOCK_ROW")
        );
        assert_eq!(j.halts, None, "the other items landed; later calls go on");
        assert_eq!(v.take(10), Verdict::Delivered);
        assert_eq!(
            v.take(11),
            Verdict::Retry(None, "UNABLE_TO_LOCK_ROW".into())
        );
        assert_eq!(v.take(12), Verdict::Dead("INVALID_EMAIL_ADDRESS".into()));
    }

    #[test]
    fn a_row_carried_by_two_calls_keeps_the_worst_answer() {
        let mut v = Verdicts::default();
        judge(&RetryAction::DontRetry("bad".into()), &[10], rows, &mut v);
        judge(&RetryAction::Success, &[10], rows, &mut v);
        assert_eq!(v.take(10), Verdict::Dead("bad".into()));
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
