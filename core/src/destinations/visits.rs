//! Visits (sessions) derived server-side: a profile's page, screen and track events form one visit
//! while no two consecutive events are 30 minutes or more apart (GA4's default session timeout).
//! [`visit`] is the whole rule, pure; the activation stage reads the profile's earlier event times
//! (newest first, at most [`LOOKBACK_MS`] back and [`LOOKBACK_EVENTS`] of them) and stores the
//! result on the activation, so every destination encoder sees the same visit for a message.
//!
//! The visit is per profile, not per device: server-side events of a person (sent with only a
//! userId) join the visit their browser is in, which is what makes them count in GA4 sessions.

use serde::{Deserialize, Serialize};

/// Inactivity that ends a visit (30 minutes).
pub const INACTIVITY_MS: i64 = 30 * 60 * 1000;
/// How far back the stage looks for the start of a visit (a day): a longer visit is cut there.
pub const LOOKBACK_MS: i64 = 24 * 60 * 60 * 1000;
/// How many earlier events the stage reads at most for one message.
pub const LOOKBACK_EVENTS: i64 = 500;

/// The visit an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visit {
    /// When the visit started (ms): the first event of the unbroken run that ends with this one.
    pub started_ms: i64,
    /// The visit's previous event (ms), `None` for its first.
    #[serde(default)]
    pub previous_ms: Option<i64>,
}

/// The visit of an event at `at` (ms), given the profile's earlier event times, newest first
/// (events at `at` itself that came before it count as earlier).
pub fn visit(earlier_newest_first: &[i64], at: i64) -> Visit {
    let mut started = at;
    let mut previous = None;
    for &t in earlier_newest_first {
        if t > started || started - t >= INACTIVITY_MS {
            break;
        }
        previous.get_or_insert(t);
        started = t;
    }
    Visit {
        started_ms: started,
        previous_ms: previous,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn events_less_than_30_minutes_apart_share_the_visit_of_the_first() {
        let t0 = 1_790_000_000_000;
        // 10:00, 10:20, 10:45 (each gap under 30 minutes, the whole span over it).
        let v = visit(&[t0 + 20 * MIN, t0], t0 + 45 * MIN);
        assert_eq!(v.started_ms, t0);
        assert_eq!(v.previous_ms, Some(t0 + 20 * MIN));
        assert_eq!(visit(&[t0], t0 + 20 * MIN).started_ms, t0);
        assert_eq!(
            visit(&[], t0),
            Visit {
                started_ms: t0,
                previous_ms: None
            }
        );
    }

    #[test]
    fn thirty_minutes_of_inactivity_start_a_new_visit() {
        let t0 = 1_790_000_000_000;
        let v = visit(&[t0 + 5 * MIN, t0], t0 + 35 * MIN - 1);
        assert_eq!(
            v.started_ms, t0,
            "just under 30 minutes after the previous event"
        );
        let v = visit(&[t0 + 5 * MIN, t0], t0 + 35 * MIN);
        assert_eq!(v.started_ms, t0 + 35 * MIN, "exactly 30 minutes later");
        assert_eq!(v.previous_ms, None);
        // An older visit further back does not matter.
        let v = visit(&[t0 + 50 * MIN, t0 + 40 * MIN, t0], t0 + 60 * MIN);
        assert_eq!(v.started_ms, t0 + 40 * MIN);
    }

    #[test]
    fn every_event_of_a_visit_gets_the_same_start_whatever_it_saw_later() {
        let t0 = 1_790_000_000_000;
        let times = [
            t0,
            t0 + 10 * MIN,
            t0 + 25 * MIN,
            t0 + 50 * MIN,
            t0 + 70 * MIN,
        ];
        let starts: Vec<i64> = (0..times.len())
            .map(|i| {
                let earlier: Vec<i64> = times[..i].iter().rev().copied().collect();
                visit(&earlier, times[i]).started_ms
            })
            .collect();
        assert!(starts.iter().all(|s| *s == t0), "{starts:?}");
        // Same-millisecond events (a batch stamped at once) stay together.
        assert_eq!(visit(&[t0, t0], t0).started_ms, t0);
    }
}
