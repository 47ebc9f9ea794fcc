//! Per-write-key rate limits on ingest (GCRA, `governor`): each source may send `per_second`
//! messages a second on average, with bursts of up to `burst`; past that a request is answered
//! 429 with `Retry-After`. Counted in messages, not requests: a batch of 50 costs 50 (valid or not),
//! so batching does not buy a client more than its share. A request larger than the burst costs the
//! whole burst (it is accepted from a full allowance and leaves it empty).

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::time::Duration;

/// One allowance per source id.
type KeyedLimiter<C> =
    RateLimiter<i64, HashMapStateStore<i64>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The limiter shared by the ingest handlers; off when built with `per_second == 0`.
pub struct RateLimits<C: Clock = DefaultClock> {
    limiter: Option<KeyedLimiter<C>>,
    burst: NonZeroU32,
}

impl RateLimits {
    /// Limits on the real clock: `per_second` messages a second per source (0 = no limit), bursts
    /// of up to `burst` (0 = twice `per_second`).
    pub fn new(per_second: u32, burst: u32) -> RateLimits {
        RateLimits::with_clock(per_second, burst, DefaultClock::default())
    }
}

impl<C: Clock> RateLimits<C> {
    /// Limits on a given clock (tests pass `governor::clock::FakeRelativeClock`).
    pub fn with_clock(per_second: u32, burst: u32, clock: C) -> RateLimits<C> {
        let Some(rate) = NonZeroU32::new(per_second) else {
            return RateLimits {
                limiter: None,
                burst: NonZeroU32::MIN,
            };
        };
        let burst = NonZeroU32::new(burst).unwrap_or(rate.saturating_add(rate.get()));
        let quota = Quota::per_second(rate).allow_burst(burst);
        RateLimits {
            limiter: Some(RateLimiter::hashmap_with_clock(quota, clock)),
            burst,
        }
    }

    /// Whether any limit applies.
    pub fn enabled(&self) -> bool {
        self.limiter.is_some()
    }

    /// Takes `messages` (at least one, at most the burst) from `source`'s allowance, or says how
    /// long to wait before the same request would be accepted. A refused request takes nothing.
    pub fn check(&self, source: i64, messages: usize) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        let n = u32::try_from(messages)
            .unwrap_or(u32::MAX)
            .clamp(1, self.burst.get());
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        match limiter.check_key_n(&source, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(limiter.clock().now())),
            // Unreachable: `n` is clamped to the burst. Wait a full second rather than panic.
            Err(_) => Err(Duration::from_secs(1)),
        }
    }
}

/// `Retry-After` in whole seconds for a wait: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn limits(per_second: u32, burst: u32) -> (RateLimits<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (
            RateLimits::with_clock(per_second, burst, clock.clone()),
            clock,
        )
    }

    #[test]
    fn zero_messages_per_second_means_no_limit() {
        let (l, _) = limits(0, 0);
        assert!(!l.enabled());
        for _ in 0..1000 {
            assert_eq!(l.check(1, 10_000), Ok(()));
        }
    }

    #[test]
    fn a_source_may_spend_its_burst_then_waits_for_the_refill() {
        let (l, clock) = limits(10, 30);
        assert_eq!(l.check(1, 30), Ok(()));
        let wait = l.check(1, 1).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100), "one message every 100 ms");
        assert_eq!(retry_after_secs(wait), 1);
        clock.advance(Duration::from_millis(100));
        assert_eq!(l.check(1, 1), Ok(()));
        assert!(l.check(1, 1).is_err());
    }

    #[test]
    fn messages_are_counted_not_requests() {
        let (l, clock) = limits(10, 20);
        assert_eq!(l.check(1, 15), Ok(()));
        // Five left: a batch of six waits for one more message's worth of time.
        assert_eq!(l.check(1, 6), Err(Duration::from_millis(100)));
        assert_eq!(l.check(1, 5), Ok(()));
        // A refused batch took nothing: after 2 s the full burst is back.
        clock.advance(Duration::from_secs(2));
        assert_eq!(l.check(1, 20), Ok(()));
    }

    #[test]
    fn each_write_key_has_its_own_allowance() {
        let (l, _) = limits(1, 5);
        assert_eq!(l.check(1, 5), Ok(()));
        assert!(l.check(1, 1).is_err());
        assert_eq!(l.check(2, 5), Ok(()));
    }

    #[test]
    fn a_request_larger_than_the_burst_empties_a_full_allowance() {
        let (l, clock) = limits(100, 200);
        assert_eq!(l.check(7, 2_000), Ok(()));
        assert!(l.check(7, 1).is_err());
        assert!(l.check(7, 2_000).is_err());
        clock.advance(Duration::from_secs(2));
        assert_eq!(l.check(7, 2_000), Ok(()));
    }

    #[test]
    fn the_burst_defaults_to_two_seconds_of_rate() {
        let (l, _) = limits(50, 0);
        assert_eq!(l.check(1, 100), Ok(()));
        assert!(l.check(1, 1).is_err());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2_001)), 3);
    }
}
