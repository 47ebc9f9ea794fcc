//! The lead score: a pure function of a person's traits, their account's traits and their recent
//! events, at a given time. Trait factors give their points when their condition holds; event and
//! page factors give points per event, halved every half-life, capped.

use super::model::{Factor, Model, Signal};
use crate::audiences::condition::Condition;
use crate::audiences::engine::{Column, Table};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// One event of a person's history.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `track`, `page`, `screen`, `identify`, …
    pub kind: String,
    /// The track event's name.
    pub event: Option<String>,
    /// A page call's path.
    pub path: Option<String>,
    /// When it happened (ms).
    pub at: i64,
}

impl Event {
    /// Whether a factor's or trigger's signal matches this event.
    pub fn matches(&self, signal: &Signal) -> bool {
        match signal {
            Signal::Event(name) => self.kind == "track" && self.event.as_deref() == Some(name),
            Signal::Page(prefix) => {
                self.kind == "page" && self.path.as_deref().is_some_and(|p| p.starts_with(prefix))
            }
            Signal::Trait(_) => false,
        }
    }
}

/// What the score is computed from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// The person's traits.
    pub traits: Map<String, Value>,
    /// Their account's traits.
    pub account: Map<String, Value>,
    /// Recent events, any order.
    pub events: Vec<Event>,
}

impl Facts {
    /// Whether a trait condition holds for this person (a one-row evaluation of the audience engine).
    pub fn holds(&self, c: &Condition) -> bool {
        let mut paths = Vec::new();
        c.trait_paths(&mut paths);
        // One row; the evaluation never looks at its id.
        let mut table = Table {
            profiles: vec![crate::identity::ProfileId::new("")],
            ..Table::default()
        };
        for path in paths {
            let value = match path.split_once('.') {
                Some(("account", name)) => self.account.get(name),
                Some(("traits", name)) => self.traits.get(name),
                Some(_) => None,
                None => self.traits.get(&path),
            };
            let mut col = Column::missing(1);
            if let Some(v) = value {
                col.set(0, v);
            }
            table.columns.insert(path, col);
        }
        table.eval(c).get(0)
    }
}

/// A score and where its points came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Score {
    /// The sum.
    pub total: i64,
    /// Factor → points, for the factors that gave any.
    pub breakdown: BTreeMap<String, i64>,
}

impl Score {
    /// Whether this score is news against the one last recorded (total, breakdown as JSON text):
    /// a different total or breakdown. Nothing recorded counts as zero from no factor, so a visitor
    /// who never scored is not sent a `lead_score` of 0 (on new-visitor traffic that was one more
    /// message in the log for every new profile).
    pub fn differs_from(&self, recorded: Option<&(i64, String)>) -> bool {
        match recorded {
            Some((total, breakdown)) => {
                *total != self.total
                    || serde_json::from_str::<Value>(breakdown).ok() != Some(self.breakdown_json())
            }
            None => self.total != 0 || !self.breakdown.is_empty(),
        }
    }

    /// The breakdown as a JSON object.
    pub fn breakdown_json(&self) -> Value {
        Value::Object(
            self.breakdown
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(*v)))
                .collect(),
        )
    }
}

/// The points of one event factor at `now`.
fn event_points(f: &Factor, events: &[Event], now: i64) -> i64 {
    let raw: f64 = events
        .iter()
        .filter(|e| e.matches(&f.signal))
        .map(|e| {
            let age_days = (now - e.at).max(0) as f64 / DAY_MS as f64;
            let decay = f.half_life_days.map_or(1.0, |h| 0.5f64.powf(age_days / h));
            f.points as f64 * decay
        })
        .sum();
    let points = raw.round() as i64;
    match f.cap {
        Some(cap) if f.points >= 0 => points.min(cap),
        Some(cap) => points.max(-cap),
        None => points,
    }
}

/// Scores a person at `now`.
pub fn score(model: &Model, facts: &Facts, now: i64) -> Score {
    let mut s = Score::default();
    for f in &model.factors {
        let points = match &f.signal {
            Signal::Trait(c) => {
                if facts.holds(c) {
                    f.points
                } else {
                    0
                }
            }
            _ => event_points(f, &facts.events, now),
        };
        if points != 0 {
            s.total += points;
            s.breakdown.insert(f.id.clone(), points);
        }
    }
    s.total = s.total.max(0);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handoff::model::parse;
    use serde_json::json;

    fn model() -> Model {
        parse(include_str!("../../../LEAD_HANDOFF.md")).0
    }

    #[test]
    fn a_score_is_news_when_its_total_or_breakdown_moved_and_a_first_score_of_nothing_is_not() {
        let nothing = Score::default();
        assert!(!nothing.differs_from(None));
        let some = Score {
            total: 60,
            breakdown: BTreeMap::from([("pricing_page".to_string(), 60)]),
        };
        assert!(some.differs_from(None));
        let recorded = (60, some.breakdown_json().to_string());
        assert!(!some.differs_from(Some(&recorded)));
        let same_total = Score {
            total: 60,
            breakdown: BTreeMap::from([("trial_started".to_string(), 60)]),
        };
        assert!(same_total.differs_from(Some(&recorded)));
        // Decayed back to nothing after having scored: news, the trait must come down.
        assert!(nothing.differs_from(Some(&recorded)));
        // Points that cancel out to a clamped zero still name their factors.
        let cancelled = Score {
            total: 0,
            breakdown: BTreeMap::from([("unsubscribed".to_string(), -80)]),
        };
        assert!(cancelled.differs_from(None));
    }

    fn track(name: &str, at: i64) -> Event {
        Event {
            kind: "track".into(),
            event: Some(name.into()),
            path: None,
            at,
        }
    }

    fn page(path: &str, at: i64) -> Event {
        Event {
            kind: "page".into(),
            event: None,
            path: Some(path.into()),
            at,
        }
    }

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn traits_and_events_add_up_with_a_breakdown() {
        let facts = Facts {
            traits: json!({"job_title": "VP Engineering"})
                .as_object()
                .unwrap()
                .clone(),
            account: json!({"employees": 500}).as_object().unwrap().clone(),
            events: (0..4)
                .map(|i| track("teammate_invited", NOW - i * 1000))
                .collect(),
        };
        let s = score(&model(), &facts, NOW);
        assert_eq!(s.breakdown["senior_role"], 150);
        assert_eq!(s.breakdown["company_200_plus"], 200);
        assert_eq!(s.breakdown["teammate_invited"], 160);
        assert!(!s.breakdown.contains_key("company_50_plus"));
        assert_eq!(s.total, 510);
    }

    #[test]
    fn event_points_are_capped() {
        let facts = Facts {
            events: (0..10).map(|i| page("/pricing/teams", NOW - i)).collect(),
            ..Facts::default()
        };
        assert_eq!(score(&model(), &facts, NOW).breakdown["pricing_page"], 180);
    }

    #[test]
    fn events_lose_half_their_points_every_half_life() {
        let m = model();
        let fresh = Facts {
            events: vec![page("/pricing", NOW)],
            ..Facts::default()
        };
        let week_old = Facts {
            events: vec![page("/pricing", NOW - 7 * DAY_MS)],
            ..Facts::default()
        };
        let month_old = Facts {
            events: vec![page("/pricing", NOW - 28 * DAY_MS)],
            ..Facts::default()
        };
        assert_eq!(score(&m, &fresh, NOW).total, 60);
        assert_eq!(score(&m, &week_old, NOW).total, 30);
        assert_eq!(score(&m, &month_old, NOW).total, 4);
        // The same event scores less as the clock moves on.
        assert_eq!(score(&m, &fresh, NOW + 7 * DAY_MS).total, 30);
    }

    #[test]
    fn other_pages_and_events_score_nothing() {
        let facts = Facts {
            events: vec![page("/blog", NOW), track("report_generated", NOW)],
            ..Facts::default()
        };
        assert_eq!(score(&model(), &facts, NOW), Score::default());
    }
}
