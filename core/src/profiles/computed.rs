//! Computed traits: derived from a profile's messages at read time (first/last seen, counts in
//! rolling windows, active days, journey stage from the plan's stage mapping).

use super::store::EventStat;
use serde::Serialize;
use std::collections::BTreeMap;
use touchpoint_tracking_plan::TrackingPlan;

/// Counts of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// All time.
    pub total: i64,
    /// Last 7 days.
    pub last_7d: i64,
    /// Last 30 days.
    pub last_30d: i64,
}

/// The computed traits of a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComputedTraits {
    /// Earliest event time (ms), if any message.
    pub first_seen: Option<i64>,
    /// Latest event time (ms).
    pub last_seen: Option<i64>,
    /// Number of messages of any type.
    pub messages_total: i64,
    /// Page views (page + screen messages).
    pub page_views: Counts,
    /// Track events by name.
    pub events: BTreeMap<String, Counts>,
    /// Distinct days with activity in the last 30 days.
    pub active_days_30d: i64,
    /// The furthest journey stage reached, by the plan's stage order and event → stage mapping.
    pub journey_stage: Option<String>,
}

/// Derives computed traits from per-event stats.
pub fn compute(stats: &[EventStat], active_days_30d: i64, plan: &TrackingPlan) -> ComputedTraits {
    let mut events: BTreeMap<String, Counts> = BTreeMap::new();
    let mut page_views = Counts {
        total: 0,
        last_7d: 0,
        last_30d: 0,
    };
    let mut stage_rank: Option<usize> = None;
    let rank_of = |event: &str| {
        plan.stage_of(event)
            .and_then(|s| plan.stages().iter().position(|st| st.name == s))
    };
    for s in stats {
        let name = match (s.kind.as_str(), &s.event) {
            ("track", Some(e)) => Some(e.as_str()),
            ("page", _) => Some("page_viewed"),
            ("screen", _) => Some("screen_viewed"),
            _ => None,
        };
        if s.kind == "page" || s.kind == "screen" {
            page_views.total += s.total;
            page_views.last_7d += s.last_7d;
            page_views.last_30d += s.last_30d;
        } else if let Some(e) = &s.event {
            let c = events.entry(e.clone()).or_insert(Counts {
                total: 0,
                last_7d: 0,
                last_30d: 0,
            });
            c.total += s.total;
            c.last_7d += s.last_7d;
            c.last_30d += s.last_30d;
        }
        if let Some(r) = name.and_then(rank_of) {
            stage_rank = Some(stage_rank.map_or(r, |cur| cur.max(r)));
        }
    }
    ComputedTraits {
        first_seen: stats.iter().map(|s| s.first).min(),
        last_seen: stats.iter().map(|s| s.last).max(),
        messages_total: stats.iter().map(|s| s.total).sum(),
        page_views,
        events,
        active_days_30d,
        journey_stage: stage_rank.map(|r| plan.stages()[r].name.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(kind: &str, event: Option<&str>, total: i64, first: i64, last: i64) -> EventStat {
        EventStat {
            kind: kind.into(),
            event: event.map(Into::into),
            total,
            last_7d: total,
            last_30d: total,
            first,
            last,
        }
    }

    #[test]
    fn the_journey_stage_is_the_furthest_stage_reached() {
        let plan =
            touchpoint_tracking_plan::parse(include_str!("../../../TRACKING_PLAN.md")).unwrap();
        let only_pages = compute(&[stat("page", None, 3, 10, 20)], 1, &plan);
        assert_eq!(only_pages.journey_stage.as_deref(), Some("Evaluation"));
        let invited = compute(
            &[
                stat("page", None, 3, 10, 20),
                stat("track", Some("workspace_created"), 1, 30, 30),
                stat("track", Some("teammate_invited"), 2, 40, 50),
            ],
            2,
            &plan,
        );
        assert_eq!(invited.journey_stage.as_deref(), Some("Expansion"));
        assert_eq!(invited.events["teammate_invited"].total, 2);
        assert_eq!(invited.first_seen, Some(10));
        assert_eq!(invited.last_seen, Some(50));
        assert_eq!(invited.messages_total, 6);
        assert_eq!(invited.page_views.total, 3);
    }
}
