//! The audience stage's decision, kept pure: from the loaded evaluation table (the profiles a
//! window touched, or a page of all of them) and the audience definitions, who enters, who exits
//! and when each profile must be re-checked. No I/O and no clock: the stage (`stage.rs`) loads the
//! table through the store, passes the time in, and writes the [`Change`]s the store is given.

use super::condition::Performed;
use super::definitions::Definition;
use super::engine::{self, Bits, Table};
use super::store::{Change, Needs};
use crate::identity::ProfileId;
use std::collections::HashSet;

/// What evaluating `defs` reads: their trait paths and event conditions, and the membership of
/// every audience (`all_audiences`), since a condition may name any of them.
pub fn needs_of(defs: &[Definition], all_audiences: &[String]) -> Needs {
    let mut needs = Needs {
        audiences: all_audiences.to_vec(),
        ..Needs::default()
    };
    let mut seen: HashSet<String> = HashSet::new();
    for d in defs {
        d.condition.trait_paths(&mut needs.traits);
        let mut ps: Vec<&Performed> = Vec::new();
        d.condition.performed(&mut ps);
        for p in ps {
            if seen.insert(engine::counts_key(p)) {
                needs.performed.push(p.clone());
            }
        }
    }
    needs.traits.sort();
    needs.traits.dedup();
    needs
}

/// Profiles merged into another leave every audience (without an exit event: the person did not
/// leave, and the profile they merged into is evaluated on its own).
pub fn merged_away(losers: Vec<ProfileId>) -> Vec<Change> {
    losers
        .into_iter()
        .map(|profile| Change::ExitAll { profile })
        .collect()
}

/// Evaluates `defs` (in dependency order) over the table's profiles: a profile that now holds a
/// condition and was not a member enters, a member that no longer holds it exits, the rest is
/// unchanged. With `track_due`, audiences whose membership can change by time passing alone (event
/// windows, computed traits that age) get each profile's next re-check time (`None` clears it).
/// The table's membership columns are updated as it goes, so dependents see the new memberships.
/// A profile not in the table (deleted or merged since) is never decided on.
pub fn decide(defs: &[Definition], table: &mut Table, track_due: bool, now_ms: i64) -> Vec<Change> {
    let mut changes = Vec::new();
    for d in defs {
        let now_in = table.eval(&d.condition);
        let was = table
            .members
            .get(&d.id)
            .cloned()
            .unwrap_or_else(|| Bits::zeros(table.len()));
        let mut performed = Vec::new();
        d.condition.performed(&mut performed);
        let mut paths = Vec::new();
        d.condition.trait_paths(&mut paths);
        // Computed traits that age by themselves are re-checked daily, like event windows.
        let ages = paths.iter().any(|p| {
            matches!(
                p.as_str(),
                "computed.active_days_30d" | "computed.last_seen"
            )
        });
        let windowed = track_due && (ages || performed.iter().any(|p| p.within_days.is_some()));
        for i in 0..table.len() {
            let profile = &table.profiles[i];
            match (was.get(i), now_in.get(i)) {
                (false, true) => changes.push(Change::Enter {
                    audience: d.id.clone(),
                    profile: profile.clone(),
                }),
                (true, false) => changes.push(Change::Exit {
                    audience: d.id.clone(),
                    profile: profile.clone(),
                }),
                _ => {}
            }
            if windowed {
                let mut at = table.next_expiry(&d.condition, i);
                if ages {
                    at = at.min(next_utc_midnight(now_ms));
                }
                changes.push(Change::Due {
                    audience: d.id.clone(),
                    profile: profile.clone(),
                    at: (at != i64::MAX).then_some(at),
                });
            }
        }
        table.members.insert(d.id.clone(), now_in);
    }
    changes
}

/// The next 00:00 UTC after `now_ms`.
fn next_utc_midnight(now_ms: i64) -> i64 {
    const DAY: i64 = 86_400_000;
    (now_ms.div_euclid(DAY) + 1) * DAY
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audiences::Condition;
    use crate::audiences::engine::{Column, Counts};
    use serde_json::json;

    const DAY: i64 = 86_400_000;
    const NOW: i64 = 20_000 * DAY + 3_600_000;

    fn def(id: &str, condition: &str) -> Definition {
        Definition {
            id: id.into(),
            name: id.into(),
            description: String::new(),
            condition: Condition::parse(condition).unwrap(),
            line: 0,
        }
    }

    /// A table of `plans` (one profile per entry, `p0`, `p1`, …; `None` for no plan trait) with
    /// `members` of the `pro` audience.
    fn table(plans: &[Option<&str>], members: &[usize]) -> Table {
        let n = plans.len();
        let mut t = Table {
            profiles: (0..n).map(|i| ProfileId::from(format!("p{i}"))).collect(),
            ..Table::default()
        };
        let mut col = Column::missing(n);
        for (i, p) in plans.iter().enumerate() {
            if let Some(p) = p {
                col.set(i, &json!(p));
            }
        }
        t.columns.insert("plan".into(), col);
        t.members
            .insert("pro".into(), Bits::from_fn(n, |i| members.contains(&i)));
        t
    }

    fn enter(audience: &str, profile: &str) -> Change {
        Change::Enter {
            audience: audience.into(),
            profile: profile.into(),
        }
    }

    fn exit(audience: &str, profile: &str) -> Change {
        Change::Exit {
            audience: audience.into(),
            profile: profile.into(),
        }
    }

    #[test]
    fn a_profile_that_now_holds_the_condition_enters() {
        let mut t = table(&[Some("pro")], &[]);
        let changes = decide(&[def("pro", "plan = 'pro'")], &mut t, true, NOW);
        assert_eq!(changes, vec![enter("pro", "p0")]);
        assert!(t.members["pro"].get(0));
    }

    #[test]
    fn a_member_that_no_longer_holds_the_condition_exits() {
        let mut t = table(&[Some("free"), None], &[0, 1]);
        let changes = decide(&[def("pro", "plan = 'pro'")], &mut t, true, NOW);
        assert_eq!(changes, vec![exit("pro", "p0"), exit("pro", "p1")]);
    }

    #[test]
    fn members_that_still_hold_it_and_others_that_still_do_not_are_unchanged() {
        let mut t = table(&[Some("pro"), Some("free")], &[0]);
        let changes = decide(&[def("pro", "plan = 'pro'")], &mut t, true, NOW);
        assert!(changes.is_empty(), "{changes:?}");
    }

    #[test]
    fn a_deleted_profile_is_not_in_the_table_and_gets_no_change() {
        // The store loads live profiles only: p1 was deleted, so only p0 is decided on.
        let mut t = table(&[Some("pro")], &[]);
        let changes = decide(&[def("pro", "plan = 'pro'")], &mut t, true, NOW);
        assert!(
            changes
                .iter()
                .all(|c| matches!(c, Change::Enter { profile, .. } if profile.as_str() == "p0"))
        );
        let mut empty = Table::default();
        assert!(decide(&[def("pro", "plan = 'pro'")], &mut empty, true, NOW).is_empty());
    }

    #[test]
    fn a_merged_away_profile_leaves_every_audience() {
        assert_eq!(
            merged_away(vec!["p7".into()]),
            vec![Change::ExitAll {
                profile: "p7".into()
            }]
        );
    }

    #[test]
    fn an_audience_built_on_another_sees_its_new_members_in_the_same_pass() {
        let mut t = table(&[Some("pro"), Some("free")], &[]);
        let defs = [
            def("pro", "plan = 'pro'"),
            def("not_pro", "NOT IN AUDIENCE pro"),
        ];
        let changes = decide(&defs, &mut t, true, NOW);
        assert_eq!(changes, vec![enter("pro", "p0"), enter("not_pro", "p1")]);
    }

    #[test]
    fn an_event_window_schedules_a_recheck_when_the_oldest_event_leaves_it() {
        let d = def("recent", "PERFORMED signup WITHIN 7 DAYS");
        let mut t = table(&[None, None], &[]);
        let Condition::Performed(p) = &d.condition else {
            unreachable!()
        };
        t.counts.insert(
            engine::counts_key(p),
            Counts {
                counts: vec![1, 0],
                expires: vec![NOW + DAY, i64::MAX],
            },
        );
        let changes = decide(std::slice::from_ref(&d), &mut t, true, NOW);
        assert_eq!(
            changes,
            vec![
                enter("recent", "p0"),
                Change::Due {
                    audience: "recent".into(),
                    profile: "p0".into(),
                    at: Some(NOW + DAY)
                },
                Change::Due {
                    audience: "recent".into(),
                    profile: "p1".into(),
                    at: None
                },
            ]
        );
        let mut t2 = t.clone();
        t2.members.remove("recent");
        let without = decide(std::slice::from_ref(&d), &mut t2, false, NOW);
        assert_eq!(without, vec![enter("recent", "p0")], "no re-checks asked");
    }

    #[test]
    fn audiences_on_aging_computed_traits_are_rechecked_at_the_next_utc_midnight() {
        let mut t = table(&[None], &[]);
        let changes = decide(
            &[def("active", "computed.active_days_30d >= 3")],
            &mut t,
            true,
            NOW,
        );
        assert_eq!(
            changes,
            vec![Change::Due {
                audience: "active".into(),
                profile: "p0".into(),
                at: Some(20_001 * DAY)
            }]
        );
    }

    #[test]
    fn needs_name_each_event_condition_once_and_every_audience() {
        let defs = [
            def("a", "PERFORMED x AT LEAST 2 TIMES AND plan = 'pro'"),
            def("b", "PERFORMED x AT MOST 5 TIMES OR plan = 'free'"),
        ];
        let needs = needs_of(&defs, &["a".into(), "b".into(), "c".into()]);
        assert_eq!(needs.traits, vec!["plan".to_string()]);
        assert_eq!(needs.performed.len(), 1);
        assert_eq!(needs.audiences, vec!["a", "b", "c"]);
    }
}
