//! What a stage does after a failure, decided without I/O: retry the batch with backoff; when it
//! keeps failing, narrow to one position at a time to find the message that fails; when that one
//! keeps failing, set it aside (quarantine) so the stage moves on. Bounded in attempts, never a spin.

use std::time::Duration;

/// Retry bounds for one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Failed attempts at one position before narrowing (batch mode) or setting it aside
    /// (one-at-a-time mode).
    pub attempts: u32,
    /// Backoff after the first failure; doubles with each further failure.
    pub backoff_base: Duration,
    /// Longest backoff.
    pub backoff_max: Duration,
    /// Positions processed one at a time after narrowing, before full batches resume.
    pub isolate_span: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            attempts: 3,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            isolate_span: 500,
        }
    }
}

/// How much the next step may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// The stage's normal batch.
    Full,
    /// One position only: the stage is looking for the message that fails.
    One,
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again after `after`, with this batch size.
    Retry {
        /// The batch size of the next attempt.
        batch: Batch,
        /// How long to wait first.
        after: Duration,
    },
    /// The next position failed `attempts` times on its own: quarantine it and move on.
    SetAside {
        /// How many times it failed.
        attempts: u32,
    },
}

/// The retry state of one stage (per cursor).
#[derive(Debug, Clone)]
pub struct Guard {
    policy: Policy,
    /// The position the failures are about and how many there were in a row.
    failing: Option<(i64, u32)>,
    /// Positions left to process one at a time.
    isolating: u32,
}

impl Guard {
    /// A guard with no failures.
    pub fn new(policy: Policy) -> Guard {
        Guard {
            policy,
            failing: None,
            isolating: 0,
        }
    }

    /// The batch size of the next step.
    pub fn batch(&self) -> Batch {
        if self.isolating > 0 {
            Batch::One
        } else {
            Batch::Full
        }
    }

    /// Consecutive failures at the current position.
    pub fn failures(&self) -> u32 {
        self.failing.map_or(0, |(_, n)| n)
    }

    /// A step starting after `cursor` failed.
    pub fn failed(&mut self, cursor: i64) -> Next {
        let n = match self.failing {
            Some((at, n)) if at == cursor => n + 1,
            _ => 1,
        };
        self.failing = Some((cursor, n));
        if n < self.policy.attempts {
            return Next::Retry {
                batch: self.batch(),
                after: self.backoff(n),
            };
        }
        if self.isolating == 0 {
            // The batch keeps failing: look for the one message that fails.
            self.isolating = self.policy.isolate_span.max(1);
            self.failing = Some((cursor, 0));
            return Next::Retry {
                batch: Batch::One,
                after: self.backoff(n),
            };
        }
        Next::SetAside { attempts: n }
    }

    /// A step succeeded (the cursor moved, or there was nothing to do).
    pub fn succeeded(&mut self) {
        self.failing = None;
        self.isolating = self.isolating.saturating_sub(1);
    }

    /// The failing position was quarantined; full batches resume.
    pub fn set_aside(&mut self) {
        self.failing = None;
        self.isolating = 0;
    }

    fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        self.policy
            .backoff_base
            .saturating_mul(factor)
            .min(self.policy.backoff_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> Policy {
        Policy {
            attempts: 3,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(300),
            isolate_span: 2,
        }
    }

    #[test]
    fn a_failing_batch_is_retried_with_growing_backoff_then_narrowed_to_one_message() {
        let mut g = Guard::new(policy());
        assert_eq!(g.batch(), Batch::Full);
        assert_eq!(
            g.failed(10),
            Next::Retry {
                batch: Batch::Full,
                after: Duration::from_millis(100)
            }
        );
        assert_eq!(
            g.failed(10),
            Next::Retry {
                batch: Batch::Full,
                after: Duration::from_millis(200)
            }
        );
        assert_eq!(
            g.failed(10),
            Next::Retry {
                batch: Batch::One,
                after: Duration::from_millis(300)
            }
        );
        assert_eq!(g.batch(), Batch::One);
    }

    #[test]
    fn a_message_that_fails_alone_is_set_aside_after_the_bounded_attempts() {
        let mut g = Guard::new(policy());
        for _ in 0..3 {
            g.failed(10);
        }
        assert!(matches!(
            g.failed(10),
            Next::Retry {
                batch: Batch::One,
                ..
            }
        ));
        assert!(matches!(
            g.failed(10),
            Next::Retry {
                batch: Batch::One,
                ..
            }
        ));
        assert_eq!(g.failed(10), Next::SetAside { attempts: 3 });
        g.set_aside();
        assert_eq!(g.batch(), Batch::Full);
        assert_eq!(g.failures(), 0);
    }

    #[test]
    fn when_the_first_message_succeeds_alone_the_search_goes_on_and_then_full_batches_resume() {
        let mut g = Guard::new(policy());
        for _ in 0..3 {
            g.failed(10);
        }
        g.succeeded(); // position 11 was fine on its own
        assert_eq!(g.batch(), Batch::One);
        g.succeeded();
        assert_eq!(g.batch(), Batch::Full);
    }

    #[test]
    fn a_failure_at_a_new_position_starts_counting_again() {
        let mut g = Guard::new(policy());
        g.failed(10);
        g.failed(10);
        assert!(matches!(
            g.failed(11),
            Next::Retry {
                batch: Batch::Full,
                ..
            }
        ));
        assert_eq!(g.failures(), 1);
    }

    proptest! {
        #[test]
        fn any_run_of_failures_at_one_position_ends_in_quarantine_within_twice_the_attempts(
            attempts in 1u32..6, base_ms in 1u64..1000,
        ) {
            let mut g = Guard::new(Policy {
                attempts,
                backoff_base: Duration::from_millis(base_ms),
                backoff_max: Duration::from_secs(5),
                isolate_span: 10,
            });
            let mut set_aside_after = None;
            for i in 1..=(2 * attempts + 1) {
                match g.failed(7) {
                    Next::SetAside { .. } => { set_aside_after = Some(i); break; }
                    Next::Retry { after, .. } => prop_assert!(after <= Duration::from_secs(5)),
                }
            }
            prop_assert_eq!(set_aside_after, Some(2 * attempts));
        }
    }
}
