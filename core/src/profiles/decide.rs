//! The profiles stage's decision, kept pure: from the log rows read, the loaded slice of the identity
//! graph, the suppressed identifiers and the plan's identity rules, the writes to make ([`Op`]s).
//! No I/O, no clock, no random ids: the processor (`processor.rs`) reads, passes the time and an id
//! maker in, and commits what [`decide`] returns.

use super::store::{LogRow, Op};
use crate::identity::{self, Graph, Identifier, ProfileId};
use crate::ingest::limits::is_safe_number;
use serde_json::{Map, Value};
use std::collections::HashSet;
use touchpoint_tracking_plan::{IdentityRules, Message, MessageType};

/// A log row with its parsed message (`None` when the body does not parse), its identifiers and
/// what extracting them reported.
#[derive(Debug, Clone)]
pub struct Work {
    /// The row as read from the log.
    pub row: LogRow,
    /// The parsed message.
    pub message: Option<Message>,
    /// Its identifiers, normalised, best first.
    pub ids: Vec<Identifier>,
    /// Identifiers extraction refused (blocked values, too long, bad kind).
    pub reports: Vec<identity::Report>,
}

/// Parses a log row and extracts its identifiers. Blocked messages are parsed too: they are never
/// processed, but their identifiers are still checked against the suppressions (an erased person's
/// later messages are dropped whatever the plan said).
pub fn read(row: LogRow, rules: &IdentityRules) -> Work {
    let message = serde_json::from_str::<Message>(&row.body).ok();
    let (ids, reports) = match &message {
        Some(m) => identity::extract(m, rules),
        None => (Vec::new(), Vec::new()),
    };
    Work {
        row,
        message,
        ids,
        reports,
    }
}

/// The identifiers whose owners and suppressions deciding on `work` needs, sorted and deduplicated;
/// an alias's previous id is wanted as a user id and as an anonymous id.
pub fn wanted(work: &[Work]) -> Vec<Identifier> {
    let mut wanted: Vec<Identifier> = Vec::new();
    for id in work.iter().flat_map(|w| &w.ids) {
        if id.kind == "previous_id" {
            wanted.push(Identifier::new("user_id", &id.value));
            wanted.push(Identifier::new("anonymous_id", &id.value));
        } else {
            wanted.push(id.clone());
        }
    }
    wanted.sort();
    wanted.dedup();
    wanted
}

/// The writes for a batch, in log order. `graph` must hold the owners of [`wanted`]`(&work)` and
/// their profiles' identifiers; it is updated with what was decided, so the next batch starts from
/// it. `suppressed` are the erased identifiers among them; `now_ms` stamps creations, attachments,
/// merges and reports; `new_id` makes a profile id when one must be created.
pub fn decide(
    work: Vec<Work>,
    graph: &mut Graph,
    suppressed: &HashSet<Identifier>,
    rules: &IdentityRules,
    now_ms: i64,
    mut new_id: impl FnMut() -> ProfileId,
) -> Vec<Op> {
    let mut ops = Vec::new();
    for Work {
        row,
        message,
        mut ids,
        reports,
    } in work
    {
        let Some(message) = message else { continue };
        let (seq, at) = (row.seq, now_ms);
        graph.settle_previous_ids(&mut ids, rules);
        if ids.iter().any(|i| suppressed.contains(i)) {
            ops.push(Op::DropMessage { seq });
            continue;
        }
        if row.status == crate::storage::Status::Blocked {
            continue;
        }
        for r in &reports {
            ops.push(report(seq, None, r, at));
        }
        if ids.is_empty() {
            continue;
        }
        let res = graph.resolve(&ids, rules, &mut new_id);
        if res.created {
            ops.push(Op::CreateProfile {
                id: res.profile.clone(),
                at,
            });
        }
        for m in &res.merges {
            ops.push(Op::Merge {
                winner: m.winner.clone(),
                loser: m.loser.clone(),
                reason: m.reason.clone(),
                seq,
                at,
            });
        }
        for id in &res.attached {
            ops.push(Op::Attach {
                id: id.clone(),
                profile: res.profile.clone(),
                seq,
                at,
            });
        }
        for r in &res.reports {
            ops.push(report(seq, Some(res.profile.clone()), r, at));
        }
        ops.push(Op::Link {
            seq,
            profile: res.profile.clone(),
            kind: message.kind.as_str().into(),
            event: message.event.clone(),
            event_time: row.event_time,
        });
        let profile = res.profile;
        match message.kind {
            MessageType::Identify => {
                let traits = identify_traits(&message);
                if !traits.is_empty() {
                    ops.push(Op::SetTraits {
                        profile,
                        traits,
                        updated_at: row.event_time,
                        seq,
                    });
                }
            }
            MessageType::Track => {
                let values = aggregatable(&message.properties);
                if let (false, Some(event)) = (values.is_empty(), message.event) {
                    ops.push(Op::Aggregate {
                        profile,
                        event,
                        values,
                    });
                }
            }
            MessageType::Group => {
                if let Some(group_id) = message.group_id {
                    ops.push(Op::SetAccount {
                        profile,
                        group_id,
                        traits: encode(&message.traits),
                        updated_at: row.event_time,
                    });
                }
            }
            _ => {}
        }
    }
    ops
}

fn report(seq: i64, profile: Option<ProfileId>, r: &identity::Report, at: i64) -> Op {
    Op::Report {
        seq,
        profile,
        kind: r.kind.into(),
        id: r.identifier.clone(),
        detail: r.detail.clone(),
        at,
    }
}

/// An identify's traits as key → JSON text: the call's own, then those only in `context.traits`
/// (analytics.js repeats cached traits there; the call's own win).
fn identify_traits(message: &Message) -> Vec<(String, String)> {
    let mut traits = encode(&message.traits);
    if let Some(ctx) = message.context.get("traits").and_then(Value::as_object) {
        for (k, v) in encode(ctx) {
            if !traits.iter().any(|(key, _)| *key == k) {
                traits.push((k, v));
            }
        }
    }
    traits
}

/// A track's numeric properties that can be summed. Beyond ±2^53 a sum loses meaning (and
/// 1e308 + 1e308 overflows PostgreSQL's double): such values were reported at intake.
fn aggregatable(properties: &Map<String, Value>) -> Vec<(String, f64)> {
    properties
        .iter()
        .filter_map(|(k, v)| match v {
            Value::Number(n) => n
                .as_f64()
                .filter(|f| is_safe_number(Some(*f)))
                .map(|f| (k.clone(), f)),
            _ => None,
        })
        .collect()
}

fn encode(map: &Map<String, Value>) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::collections::HashMap;

    const NOW: i64 = 1_700_000_000_000;

    fn rules() -> IdentityRules {
        touchpoint_tracking_plan::parse(include_str!("../../../TRACKING_PLAN.md"))
            .unwrap()
            .identity()
            .clone()
    }

    /// A log row holding `message` as the ingest writer stores it.
    fn row(seq: i64, status: &str, message: serde_json::Value) -> LogRow {
        let m = Message::from_value(message, None).unwrap().message;
        LogRow {
            seq,
            status: crate::storage::Status::parse(status).unwrap(),
            event_time: 1_000 + seq,
            body: serde_json::to_string(&m).unwrap(),
        }
    }

    fn counter() -> impl FnMut() -> ProfileId {
        let mut n = 0;
        move || {
            n += 1;
            ProfileId::from(format!("p{n}"))
        }
    }

    /// Decides on `messages` (accepted, at positions 1, 2, …) over `graph`, nothing suppressed.
    fn run(graph: &mut Graph, messages: Vec<serde_json::Value>) -> Vec<Op> {
        run_with(graph, &HashSet::new(), "accepted", messages)
    }

    fn run_with(
        graph: &mut Graph,
        suppressed: &HashSet<Identifier>,
        status: &str,
        messages: Vec<serde_json::Value>,
    ) -> Vec<Op> {
        let r = rules();
        let work: Vec<Work> = messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| read(row(i as i64 + 1, status, m), &r))
            .collect();
        decide(work, graph, suppressed, &r, NOW, counter())
    }

    fn attached(ops: &[Op]) -> Vec<(Identifier, ProfileId)> {
        ops.iter()
            .filter_map(|op| match op {
                Op::Attach { id, profile, .. } => Some((id.clone(), profile.clone())),
                _ => None,
            })
            .collect()
    }

    fn set_traits(ops: &[Op]) -> Vec<(String, String)> {
        ops.iter()
            .find_map(|op| match op {
                Op::SetTraits { traits, .. } => Some(traits.clone()),
                _ => None,
            })
            .expect("a SetTraits op")
    }

    #[test]
    fn an_identify_with_a_new_user_id_creates_one_profile_and_attaches_both_ids() {
        let mut g = Graph::new();
        let ops = run(
            &mut g,
            vec![json!({"type": "identify", "userId": "u-1", "anonymousId": "a-1"})],
        );
        let created: Vec<&Op> = ops
            .iter()
            .filter(|op| matches!(op, Op::CreateProfile { .. }))
            .collect();
        assert_eq!(created.len(), 1);
        assert!(matches!(created[0], Op::CreateProfile { id, at: NOW } if id.as_str() == "p1"));
        let mut ids = attached(&ops);
        ids.sort();
        assert_eq!(
            ids,
            vec![
                (Identifier::new("anonymous_id", "a-1"), "p1".into()),
                (Identifier::new("user_id", "u-1"), "p1".into()),
            ]
        );
        assert!(ops.iter().any(|op| matches!(op,
            Op::Link { seq: 1, profile, kind, event_time: 1_001, .. } if profile.as_str() == "p1" && kind == "identify")));
        assert_eq!(
            g.owner(&Identifier::new("user_id", "u-1")),
            Some(&"p1".into())
        );
    }

    #[test]
    fn anonymous_browsing_then_an_identify_keeps_one_profile_without_a_merge() {
        let mut g = Graph::new();
        let ops = run(
            &mut g,
            vec![
                json!({"type": "page", "anonymousId": "a-1"}),
                json!({"type": "identify", "userId": "u-1", "anonymousId": "a-1"}),
            ],
        );
        let creates = ops
            .iter()
            .filter(|op| matches!(op, Op::CreateProfile { .. }))
            .count();
        assert_eq!(creates, 1);
        assert!(!ops.iter().any(|op| matches!(op, Op::Merge { .. })));
        assert!(attached(&ops).iter().all(|(_, p)| p.as_str() == "p1"));
    }

    #[test]
    fn two_anonymous_profiles_merge_when_one_user_id_is_seen_with_both() {
        let mut g = Graph::new();
        let ops = run(
            &mut g,
            vec![
                json!({"type": "page", "anonymousId": "a-1"}),
                json!({"type": "page", "anonymousId": "a-2"}),
                json!({"type": "identify", "userId": "u-1", "anonymousId": "a-1"}),
                json!({"type": "identify", "userId": "u-1", "anonymousId": "a-2"}),
            ],
        );
        let merges: Vec<(&str, &str, i64)> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Merge {
                    winner, loser, seq, ..
                } => Some((winner.as_str(), loser.as_str(), *seq)),
                _ => None,
            })
            .collect();
        assert_eq!(merges, vec![("p1", "p2", 4)]);
    }

    #[test]
    fn a_suppressed_identifier_drops_the_message() {
        let mut g = Graph::new();
        let suppressed = HashSet::from([Identifier::new("email", "gone@example.com")]);
        let ops = run_with(
            &mut g,
            &suppressed,
            "accepted",
            vec![json!({"type": "identify", "userId": "u-9",
                        "traits": {"email": "Gone@Example.com"}})],
        );
        assert!(matches!(ops.as_slice(), [Op::DropMessage { seq: 1 }]));
        assert!(g.is_empty(), "nothing of a suppressed person is resolved");
    }

    #[test]
    fn a_suppressed_blocked_message_is_still_dropped() {
        let mut g = Graph::new();
        let suppressed = HashSet::from([Identifier::new("user_id", "u-9")]);
        let ops = run_with(
            &mut g,
            &suppressed,
            "blocked",
            vec![json!({"type": "track", "event": "unplanned", "userId": "u-9"})],
        );
        assert!(matches!(ops.as_slice(), [Op::DropMessage { seq: 1 }]));
    }

    #[test]
    fn a_blocked_message_is_never_linked() {
        let mut g = Graph::new();
        let ops = run_with(
            &mut g,
            &HashSet::new(),
            "blocked",
            vec![json!({"type": "identify", "userId": "u-1", "traits": {"plan": "pro"}})],
        );
        assert!(ops.is_empty(), "{ops:?}");
        assert!(g.is_empty());
    }

    #[test]
    fn an_unparseable_row_is_consumed_without_writes() {
        let r = rules();
        let mut bad = row(1, "accepted", json!({"type": "page", "anonymousId": "a-1"}));
        bad.body = "{not json".into();
        let ops = decide(
            vec![read(bad, &r)],
            &mut Graph::new(),
            &HashSet::new(),
            &r,
            NOW,
            counter(),
        );
        assert!(ops.is_empty());
    }

    #[test]
    fn blocked_identifier_values_are_reported_without_a_profile() {
        let mut g = Graph::new();
        let ops = run(
            &mut g,
            vec![json!({"type": "track", "event": "x", "userId": "undefined"})],
        );
        assert!(
            matches!(ops.as_slice(), [Op::Report { seq: 1, profile: None, kind, at: NOW, .. }] if kind == "blocked_value"),
            "{ops:?}"
        );
    }

    #[test]
    fn traits_from_the_call_win_over_context_traits() {
        let mut g = Graph::new();
        let ops = run(
            &mut g,
            vec![json!({"type": "identify", "userId": "u-1",
                        "traits": {"plan": "pro"},
                        "context": {"traits": {"plan": "free", "company": "Acme"}}})],
        );
        let traits: HashMap<String, String> = set_traits(&ops).into_iter().collect();
        assert_eq!(traits["plan"], "\"pro\"");
        assert_eq!(traits["company"], "\"Acme\"");
        assert!(ops.iter().any(|op| matches!(op,
            Op::SetTraits { updated_at: 1_001, seq: 1, profile, .. } if profile.as_str() == "p1")));
    }

    /// JSON carries no NaN or infinity; numbers beyond ±2^53 are what the guard meets in practice.
    #[test]
    fn non_finite_or_unsafe_numbers_are_not_aggregated() {
        let mut g = Graph::new();
        let ops = run(
            &mut g,
            vec![
                json!({"type": "track", "event": "order_completed", "userId": "u-1",
                        "properties": {"revenue": 12.5, "huge": 1e300, "too_big": 4e16,
                                       "label": "x", "flag": true, "seats": 3}}),
            ],
        );
        let values = ops
            .iter()
            .find_map(|op| match op {
                Op::Aggregate { event, values, .. } if event == "order_completed" => {
                    Some(values.clone())
                }
                _ => None,
            })
            .expect("an Aggregate op");
        let mut keys: Vec<&str> = values.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(keys, vec!["revenue", "seats"]);
    }

    #[test]
    fn a_track_without_numbers_aggregates_nothing() {
        let mut g = Graph::new();
        let ops = run(
            &mut g,
            vec![json!({"type": "track", "event": "x", "userId": "u-1", "properties": {"a": "b"}})],
        );
        assert!(!ops.iter().any(|op| matches!(op, Op::Aggregate { .. })));
    }

    #[test]
    fn a_group_call_sets_the_account_with_its_traits() {
        let mut g = Graph::new();
        let ops = run(
            &mut g,
            vec![json!({"type": "group", "userId": "u-1", "groupId": "acme",
                        "traits": {"industry": "retail"}})],
        );
        assert!(ops.iter().any(|op| matches!(op,
            Op::SetAccount { profile, group_id, traits, updated_at: 1_001 }
                if profile.as_str() == "p1" && group_id == "acme"
                    && traits == &vec![("industry".to_string(), "\"retail\"".to_string())])));
    }

    #[test]
    fn an_alias_finds_the_previous_id_among_known_user_ids() {
        let mut g = Graph::new();
        g.insert(Identifier::new("user_id", "old"), &ProfileId::from("p0"));
        let ops = run(
            &mut g,
            vec![json!({"type": "alias", "userId": "new", "previousId": "old"})],
        );
        assert!(
            !ops.iter().any(|op| matches!(op, Op::CreateProfile { .. })),
            "{ops:?}"
        );
        assert!(
            ops.iter()
                .any(|op| matches!(op, Op::Link { profile, .. } if profile.as_str() == "p0"))
        );
    }

    #[test]
    fn wanted_asks_for_an_alias_previous_id_under_both_kinds() {
        let r = rules();
        let w = vec![read(
            row(
                1,
                "accepted",
                json!({"type": "alias", "userId": "u", "previousId": "x"}),
            ),
            &r,
        )];
        assert_eq!(
            wanted(&w),
            vec![
                Identifier::new("anonymous_id", "x"),
                Identifier::new("user_id", "u"),
                Identifier::new("user_id", "x"),
            ]
        );
    }

    /// The messages one person might send: each carries some of the person's identifiers; the
    /// last one always carries all three, so the person's identifiers are connected.
    fn person_messages(person: usize, shapes: &[u8]) -> Vec<serde_json::Value> {
        let (u, a, e) = (
            format!("u-{person}"),
            format!("a-{person}"),
            format!("p{person}@example.com"),
        );
        let mut out: Vec<serde_json::Value> = shapes
            .iter()
            .map(|s| match s % 4 {
                0 => json!({"type": "page", "anonymousId": a}),
                1 => json!({"type": "identify", "userId": u, "anonymousId": a}),
                2 => json!({"type": "identify", "userId": u, "traits": {"email": e}}),
                _ => json!({"type": "track", "event": "x", "anonymousId": a,
                            "context": {"traits": {"email": e}}}),
            })
            .collect();
        out.push(json!({"type": "identify", "userId": u, "anonymousId": a,
                        "traits": {"email": e}}));
        out
    }

    proptest! {
        #[test]
        fn whatever_order_identifies_arrive_in_each_identifier_ends_up_on_exactly_one_profile(
            (messages, batch) in prop::collection::vec(prop::collection::vec(0u8..4, 0..4), 1..5)
                .prop_flat_map(|people| {
                    let messages: Vec<(usize, serde_json::Value)> = people
                        .iter()
                        .enumerate()
                        .flat_map(|(p, shapes)| {
                            person_messages(p, shapes).into_iter().map(move |m| (p, m))
                        })
                        .collect();
                    let n = messages.len();
                    (Just(messages).prop_shuffle(), 1..=n)
                })
        ) {
            let r = rules();
            let mut graph = Graph::new();
            let mut next = counter();
            let mut ops = Vec::new();
            let rows: Vec<(usize, LogRow)> = messages
                .iter()
                .enumerate()
                .map(|(i, (p, m))| (*p, row(i as i64 + 1, "accepted", m.clone())))
                .collect();
            // Batches of any size, the graph carried over as the processor does.
            for chunk in rows.chunks(batch) {
                let work = chunk.iter().map(|(_, row)| read(row.clone(), &r)).collect();
                ops.extend(decide(work, &mut graph, &HashSet::new(), &r, NOW, &mut next));
            }

            // Replay the ops: attachments, creations and merges.
            let mut created: HashSet<ProfileId> = HashSet::new();
            let mut merged_away: HashSet<ProfileId> = HashSet::new();
            let mut owner: HashMap<Identifier, ProfileId> = HashMap::new();
            for op in &ops {
                match op {
                    Op::CreateProfile { id, .. } => prop_assert!(created.insert(id.clone())),
                    Op::Attach { id, profile, .. } => {
                        prop_assert!(created.contains(profile) && !merged_away.contains(profile));
                        prop_assert!(owner.insert(id.clone(), profile.clone()).is_none(),
                            "{:?} attached twice", id);
                    }
                    Op::Merge { winner, loser, .. } => {
                        prop_assert!(!merged_away.contains(winner) && !merged_away.contains(loser));
                        merged_away.insert(loser.clone());
                        for p in owner.values_mut().filter(|p| *p == loser) {
                            *p = winner.clone();
                        }
                    }
                    Op::Link { profile, .. } => prop_assert!(!merged_away.contains(profile)),
                    Op::Report { kind, .. } => prop_assert!(false, "unexpected report {}", kind),
                    _ => {}
                }
            }
            // Every identifier sent is attached once, and each person ends on one profile of
            // their own.
            let people: HashSet<usize> = messages.iter().map(|(p, _)| *p).collect();
            let mut profiles: HashSet<&ProfileId> = HashSet::new();
            for p in &people {
                let ids = [
                    Identifier::new("user_id", &format!("u-{p}")),
                    Identifier::new("anonymous_id", &format!("a-{p}")),
                    Identifier::new("email", &format!("p{p}@example.com")),
                ];
                let first = owner.get(&ids[0]);
                prop_assert!(first.is_some());
                for id in &ids {
                    prop_assert_eq!(owner.get(id), first, "{:?}", id);
                }
                prop_assert!(profiles.insert(first.unwrap()), "two people share a profile");
            }
            prop_assert_eq!(owner.len(), 3 * people.len());
            prop_assert_eq!(created.len() - merged_away.len(), people.len());
        }
    }
}
