//! The admin console: the pages (audiences and their builder, profiles, tracking-plan health,
//! pipeline health, deliveries), the chart library they share (uPlot, vendored under
//! `core/assets/vendor/uplot/`), and the read-only endpoints that aggregate what the pages chart.
//!
//! The shaping of query results into charts is pure and tested here ([`size_series`],
//! [`plan_health`], [`identity_graph`], [`outcome_series`]); [`store`] runs the queries and
//! [`api`] wires both to routes.

pub mod api;
pub mod store;

pub use store::{ConsoleStore, Pool, SqlConsole};

use crate::identity::ProfileId;
use crate::storage::Status;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use store::{LinkMessage, OutcomeRow, RejectedRow, SizeChanges, ViolationRow, VolumeRow};
use touchpoint_tracking_plan::TrackingPlan;

/// One day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// Audience size at `from` and at the end of each of `buckets` buckets of `bucket` ms:
/// `(time, members)` pairs, `buckets + 1` of them.
pub fn size_series(c: &SizeChanges, from: i64, bucket: i64, buckets: i64) -> Vec<(i64, i64)> {
    let mut delta: BTreeMap<i64, i64> = BTreeMap::new();
    for (b, n) in &c.entered {
        *delta.entry(*b).or_default() += n;
    }
    for (b, n) in &c.exited {
        *delta.entry(*b).or_default() -= n;
    }
    let mut size = c.base;
    let mut out = Vec::with_capacity(buckets as usize + 1);
    out.push((from, size));
    for b in 0..buckets {
        size += delta.get(&b).copied().unwrap_or(0);
        out.push((from + (b + 1) * bucket, size.max(0)));
    }
    out
}

/// The bucket width that splits `span` ms into at most `points` buckets, rounded up to a whole
/// second, minute, hour or day so the chart's ticks are readable.
pub fn bucket_for(span: i64, points: i64) -> i64 {
    let raw = (span.max(1) + points.max(1) - 1) / points.max(1);
    for unit in [1_000, 60_000, 3_600_000, DAY_MS] {
        if raw <= unit * 60 || unit == DAY_MS {
            return ((raw + unit - 1) / unit).max(1) * unit;
        }
    }
    raw
}

/// What a message counts as on the plan-health page: the track's event name, `page_viewed` /
/// `screen_viewed` for page and screen calls (as the plan names them), else the call type.
pub fn event_label(kind: &str, event: Option<&str>) -> String {
    match (kind, event) {
        ("track", Some(e)) => e.to_owned(),
        ("page", _) => "page_viewed".into(),
        ("screen", _) => "screen_viewed".into(),
        (k, _) => k.to_owned(),
    }
}

/// The tracking-plan health page's data: volume per event per day, totals, violations by kind,
/// the worst sources and rejected items. `from_day` is the first UTC day (days since the epoch).
pub fn plan_health(
    plan: &TrackingPlan,
    from_day: i64,
    days: i64,
    volume: &[VolumeRow],
    violations: &[ViolationRow],
    rejected: &[RejectedRow],
) -> Value {
    let days = days.max(1);
    let slot = |day: i64| {
        usize::try_from(day - from_day)
            .ok()
            .filter(|i| (*i as i64) < days)
    };
    let zeros = || vec![0i64; days as usize];
    #[derive(Default)]
    struct Ev {
        kind: String,
        per_day: Vec<i64>,
        total: i64,
        blocked: i64,
        flagged: i64,
        violations: i64,
    }
    let mut events: BTreeMap<String, Ev> = BTreeMap::new();
    let (mut blocked_per_day, mut flagged_per_day, mut total_per_day) = (zeros(), zeros(), zeros());
    let mut totals: BTreeMap<&str, i64> = BTreeMap::new();
    for r in volume {
        let Some(i) = slot(r.day) else { continue };
        let label = event_label(&r.kind, r.event.as_deref());
        let e = events.entry(label).or_insert_with(|| Ev {
            kind: r.kind.clone(),
            per_day: zeros(),
            ..Ev::default()
        });
        e.per_day[i] += r.count;
        e.total += r.count;
        total_per_day[i] += r.count;
        *totals.entry("messages").or_default() += r.count;
        match r.status {
            Status::Blocked => {
                e.blocked += r.count;
                blocked_per_day[i] += r.count;
                *totals.entry("blocked").or_default() += r.count;
            }
            Status::Flagged => {
                e.flagged += r.count;
                flagged_per_day[i] += r.count;
                *totals.entry("flagged").or_default() += r.count;
            }
            Status::Accepted => *totals.entry("accepted").or_default() += r.count,
        }
    }
    #[derive(Default)]
    struct Kind {
        messages: i64,
        blocked: i64,
        fields: BTreeMap<String, i64>,
        events: BTreeMap<String, i64>,
        example: Option<String>,
    }
    #[derive(Default)]
    struct Src {
        messages: i64,
        blocked: i64,
        flagged: i64,
        rejected: i64,
        kinds: BTreeMap<String, i64>,
    }
    let mut kinds: BTreeMap<String, Kind> = BTreeMap::new();
    let mut sources: BTreeMap<String, Src> = BTreeMap::new();
    for r in violations {
        let label = event_label(&r.kind, r.event.as_deref());
        let list: Vec<Value> = serde_json::from_str(&r.violations).unwrap_or_default();
        let src = sources.entry(r.source.clone()).or_default();
        src.messages += r.count;
        match r.status {
            Status::Blocked => src.blocked += r.count,
            Status::Flagged => src.flagged += r.count,
            Status::Accepted => {}
        }
        if let Some(e) = events.get_mut(&label) {
            e.violations += r.count;
        }
        let mut seen = BTreeSet::new();
        for v in &list {
            let kind = v
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("other")
                .to_owned();
            let k = kinds.entry(kind.clone()).or_default();
            if let Some(f) = v.get("field").and_then(Value::as_str) {
                *k.fields.entry(f.to_owned()).or_default() += r.count;
            }
            if k.example.is_none() {
                k.example = v.get("message").and_then(Value::as_str).map(str::to_owned);
            }
            if seen.insert(kind.clone()) {
                k.messages += r.count;
                if r.status == Status::Blocked {
                    k.blocked += r.count;
                }
                *k.events.entry(label.clone()).or_default() += r.count;
                *src.kinds.entry(kind).or_default() += r.count;
            }
        }
    }
    let mut rejected_total = 0;
    for r in rejected {
        sources.entry(r.source.clone()).or_default().rejected += r.count;
        rejected_total += r.count;
    }
    totals.insert("rejected", rejected_total);
    let top = |m: &BTreeMap<String, i64>, n: usize| {
        let mut v: Vec<(&String, &i64)> = m.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        v.into_iter()
            .take(n)
            .map(|(k, c)| json!({"name": k, "count": c}))
            .collect::<Vec<_>>()
    };
    let mut kind_list: Vec<Value> = kinds
        .iter()
        .map(|(name, k)| {
            json!({"kind": name, "messages": k.messages, "blocked": k.blocked,
                   "fields": top(&k.fields, 5), "events": top(&k.events, 5), "example": k.example})
        })
        .collect();
    kind_list.sort_by_key(|k| -k["messages"].as_i64().unwrap_or(0));
    let mut source_list: Vec<(i64, Value)> = sources
        .iter()
        .map(|(name, s)| {
            (
                s.messages + s.rejected,
                json!({"source": name, "messages": s.messages, "blocked": s.blocked,
                       "flagged": s.flagged, "rejected": s.rejected, "kinds": top(&s.kinds, 3)}),
            )
        })
        .collect();
    source_list.sort_by_key(|s| std::cmp::Reverse(s.0));
    let mut event_list: Vec<Value> = events
        .iter()
        .map(|(name, e)| {
            let planned = plan.event(name).is_some();
            json!({"event": name, "type": e.kind, "planned": planned,
                   "stage": plan.stage_of(name), "total": e.total, "blocked": e.blocked,
                   "flagged": e.flagged, "violations": e.violations, "perDay": e.per_day})
        })
        .collect();
    event_list.sort_by_key(|e| -e["total"].as_i64().unwrap_or(0));
    json!({
        "days": (0..days).map(|i| (from_day + i) * DAY_MS).collect::<Vec<_>>(),
        "totals": totals,
        "totalPerDay": total_per_day,
        "blockedPerDay": blocked_per_day,
        "flaggedPerDay": flagged_per_day,
        "events": event_list,
        "violationsByKind": kind_list,
        "sources": source_list.into_iter().map(|(_, v)| v).take(10).collect::<Vec<_>>(),
        "rejected": rejected.iter().take(20).map(|r| json!({"source": r.source, "reason": r.reason, "count": r.count})).collect::<Vec<_>>(),
    })
}

/// The tracking plan as the console renders it: settings, stages, events with their
/// properties, traits and identity rules.
pub fn plan_json(plan: &TrackingPlan) -> Value {
    let property = |p: &touchpoint_tracking_plan::PropertySpec| {
        let c = &p.constraints;
        json!({"name": p.name, "type": p.ty.as_str(), "required": p.required,
               "values": c.values, "min": c.min, "max": c.max,
               "pattern": c.pattern.as_ref().map(|r| r.as_str()), "description": p.description})
    };
    let s = plan.settings();
    let id = plan.identity();
    json!({
        "version": plan.version(),
        "settings": {"naming": s.naming, "unplannedEvents": s.unplanned_events,
                     "unplannedProperties": s.unplanned_properties, "invalidEvents": s.invalid_events},
        "stages": plan.stages().iter().map(|st| json!({"name": st.name, "description": st.description})).collect::<Vec<_>>(),
        "events": plan.events().iter().map(|e| json!({"name": e.name(), "stage": e.stage(),
            "description": e.description(), "properties": e.properties().iter().map(property).collect::<Vec<_>>()}))
            .collect::<Vec<_>>(),
        "traits": plan.traits().iter().map(property).collect::<Vec<_>>(),
        "identity": {"priority": id.priority, "limits": id.limits.iter().map(|(k, n)| json!({"kind": k, "limit": n})).collect::<Vec<_>>()},
    })
}

/// A node of the identity graph: one identifier of the profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GraphIdentifier {
    /// `kind:value`, the node's id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Value.
    pub value: String,
    /// When it was attached (ms).
    pub added_at: i64,
    /// The message that attached it.
    pub seq: i64,
}

/// A message of the identity graph: one that attached an identifier or caused a merge, with the
/// profile's identifiers it carried (the graph's edges).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GraphMessage {
    /// Log position.
    pub seq: i64,
    /// Message type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Track event name.
    pub event: Option<String>,
    /// messageId.
    pub message_id: String,
    /// Event time (ms).
    pub time: i64,
    /// Node ids of the profile's identifiers the message carried.
    pub carried: Vec<String>,
    /// Node ids it attached.
    pub attached: Vec<String>,
    /// Merges it caused: `{winner, loser, reason}`.
    pub merges: Vec<Value>,
}

/// Builds the identity graph: identifiers as nodes, and the messages that attached them or merged
/// profiles, each linked to the identifiers it carried. `carried` extracts a message's
/// identifiers as `(kind, value)` (normalised as resolution does).
pub fn identity_graph(
    identities: &[(String, String, i64, i64)],
    merges: &[(ProfileId, ProfileId, String, i64, i64)],
    messages: &[LinkMessage],
    carried: impl Fn(&Value) -> Vec<(String, String)>,
) -> (Vec<GraphIdentifier>, Vec<GraphMessage>) {
    let nodes: Vec<GraphIdentifier> = identities
        .iter()
        .map(|(kind, value, added_at, seq)| GraphIdentifier {
            id: format!("{kind}:{value}"),
            kind: kind.clone(),
            value: value.clone(),
            added_at: *added_at,
            seq: *seq,
        })
        .collect();
    let known: BTreeSet<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    let mut out = Vec::new();
    for m in messages {
        let mut ids: Vec<String> = Vec::new();
        for (kind, value) in carried(&m.body) {
            // An alias's previous id names a user id or an anonymous id.
            let candidates = if kind == "previous_id" {
                vec![format!("user_id:{value}"), format!("anonymous_id:{value}")]
            } else {
                vec![format!("{kind}:{value}")]
            };
            for c in candidates {
                if known.contains(c.as_str()) && !ids.contains(&c) {
                    ids.push(c);
                }
            }
        }
        let attached: Vec<String> = nodes
            .iter()
            .filter(|n| n.seq == m.seq)
            .map(|n| n.id.clone())
            .collect();
        for a in &attached {
            if !ids.contains(a) {
                ids.push(a.clone());
            }
        }
        let merged: Vec<Value> = merges
            .iter()
            .filter(|(_, _, _, seq, _)| *seq == m.seq)
            .map(|(winner, loser, reason, _, at)| {
                json!({"winner": winner, "loser": loser, "reason": reason, "at": at})
            })
            .collect();
        out.push(GraphMessage {
            seq: m.seq,
            kind: m.kind.clone(),
            event: m.event.clone(),
            message_id: m.message_id.clone(),
            time: m.event_time,
            carried: ids,
            attached,
            merges: merged,
        });
    }
    out.sort_by_key(|m| (m.time, m.seq));
    (nodes, out)
}

/// Delivery calls per destination over time: for each destination, per bucket, the calls that
/// succeeded and the ones that did not (`retry`, `partial`, `dead`).
pub fn outcome_series(rows: &[OutcomeRow], buckets: i64) -> Value {
    /// Successes and errors per bucket, and calls by outcome.
    type Series<'a> = (Vec<i64>, Vec<i64>, BTreeMap<&'a str, i64>);
    let n = buckets.max(1) as usize;
    let mut by: BTreeMap<&str, Series> = BTreeMap::new();
    for r in rows {
        let Some(i) = usize::try_from(r.bucket).ok().filter(|i| *i < n) else {
            continue;
        };
        let e = by
            .entry(r.destination.as_str())
            .or_insert_with(|| (vec![0; n], vec![0; n], BTreeMap::new()));
        if r.outcome == "success" {
            e.0[i] += r.count;
        } else {
            e.1[i] += r.count;
        }
        *e.2.entry(r.outcome.as_str()).or_default() += r.count;
    }
    Value::Array(
        by.into_iter()
            .map(|(d, (ok, err, totals))| {
                json!({"destination": d, "success": ok, "errors": err, "totals": totals})
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> TrackingPlan {
        TrackingPlan::parse(include_str!("../../../TRACKING_PLAN.md")).expect("the repo's plan")
    }

    #[test]
    fn the_size_series_accumulates_entries_and_exits_from_the_base() {
        let c = SizeChanges {
            base: 2,
            entered: vec![(0, 3), (2, 1)],
            exited: vec![(1, 1), (2, 1), (7, 9)],
        };
        assert_eq!(
            size_series(&c, 1000, 10, 3),
            vec![(1000, 2), (1010, 5), (1020, 4), (1030, 4)]
        );
    }

    #[test]
    fn buckets_round_to_readable_units() {
        assert_eq!(bucket_for(60_000, 60), 1_000);
        assert_eq!(bucket_for(3_600_000, 60), 60_000);
        assert_eq!(bucket_for(30 * DAY_MS, 60), 12 * 3_600_000);
        assert_eq!(bucket_for(365 * DAY_MS, 60), 7 * DAY_MS);
        assert_eq!(bucket_for(0, 60), 1_000);
    }

    #[test]
    fn plan_health_counts_volume_violations_by_kind_and_the_worst_sources() {
        let volume = vec![
            VolumeRow {
                day: 100,
                kind: "track".into(),
                event: Some("trial_started".into()),
                status: Status::Accepted,
                count: 5,
            },
            VolumeRow {
                day: 101,
                kind: "track".into(),
                event: Some("trial_started".into()),
                status: Status::Blocked,
                count: 2,
            },
            VolumeRow {
                day: 101,
                kind: "page".into(),
                event: None,
                status: Status::Accepted,
                count: 6,
            },
            VolumeRow {
                day: 90,
                kind: "track".into(),
                event: Some("old".into()),
                status: Status::Accepted,
                count: 1,
            },
        ];
        let two = r#"[{"kind":"missing_required","field":"properties.trial_days","message":"trial_days is required"},
                      {"kind":"missing_required","field":"properties.plan_tier","message":"plan_tier is required"}]"#;
        let violations = vec![
            ViolationRow {
                source: "web".into(),
                kind: "track".into(),
                event: Some("trial_started".into()),
                status: Status::Blocked,
                violations: two.into(),
                count: 2,
            },
            ViolationRow {
                source: "server".into(),
                kind: "track".into(),
                event: Some("Signed Up".into()),
                status: Status::Blocked,
                violations: r#"[{"kind":"unplanned_event","field":"event","message":"x"},{"kind":"bad_event_name","message":"y"}]"#.into(),
                count: 1,
            },
        ];
        let rejected = vec![RejectedRow {
            source: "server".into(),
            reason: "missing userId and anonymousId".into(),
            count: 4,
        }];
        let h = plan_health(&plan(), 100, 2, &volume, &violations, &rejected);
        assert_eq!(h["days"], json!([100 * DAY_MS, 101 * DAY_MS]));
        assert_eq!(
            h["totals"],
            json!({"messages": 13, "accepted": 11, "blocked": 2, "rejected": 4})
        );
        assert_eq!(h["blockedPerDay"], json!([0, 2]));
        let trial = h["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["event"] == "trial_started")
            .unwrap();
        assert_eq!(trial["perDay"], json!([5, 2]));
        assert_eq!(trial["planned"], true);
        assert_eq!(trial["stage"], "Activation");
        assert_eq!(trial["violations"], 2);
        assert_eq!(h["events"][0]["event"], "trial_started");
        let kinds = h["violationsByKind"].as_array().unwrap();
        assert_eq!(kinds[0]["kind"], "missing_required");
        assert_eq!(
            kinds[0]["messages"], 2,
            "two messages, not four occurrences"
        );
        assert_eq!(kinds[0]["fields"].as_array().unwrap().len(), 2);
        assert_eq!(h["sources"][0]["source"], "server");
        assert_eq!(h["sources"][0]["rejected"], 4);
        assert_eq!(h["sources"][1]["source"], "web");
        assert_eq!(h["sources"][1]["blocked"], 2);
    }

    #[test]
    fn the_identity_graph_links_messages_to_the_identifiers_they_carried() {
        let identities = vec![
            ("anonymous_id".to_owned(), "a-1".to_owned(), 10, 1),
            ("user_id".to_owned(), "u-1".to_owned(), 20, 2),
            ("email".to_owned(), "ada@x.io".to_owned(), 20, 2),
            ("anonymous_id".to_owned(), "a-2".to_owned(), 30, 3),
        ];
        let merges = vec![(
            ProfileId::from("p-1"),
            ProfileId::from("p-2"),
            "anonymous_id a-2 seen with user_id u-1".to_owned(),
            3,
            30,
        )];
        let msg = |seq, body: Value| LinkMessage {
            seq,
            kind: body["type"].as_str().unwrap().to_owned(),
            event: None,
            message_id: format!("m{seq}"),
            event_time: seq * 10,
            body,
        };
        let messages = vec![
            msg(
                3,
                json!({"type": "alias", "userId": "u-1", "previousId": "a-2"}),
            ),
            msg(1, json!({"type": "page", "anonymousId": "a-1"})),
            msg(
                2,
                json!({"type": "identify", "userId": "u-1", "anonymousId": "a-1", "traits": {"email": "ada@x.io"}}),
            ),
        ];
        let carried = |b: &Value| {
            let mut v = Vec::new();
            for (k, f) in [
                ("user_id", "userId"),
                ("anonymous_id", "anonymousId"),
                ("previous_id", "previousId"),
            ] {
                if let Some(s) = b[f].as_str() {
                    v.push((k.to_owned(), s.to_owned()));
                }
            }
            if let Some(e) = b["traits"]["email"].as_str() {
                v.push(("email".to_owned(), e.to_owned()));
            }
            v
        };
        let (nodes, msgs) = identity_graph(&identities, &merges, &messages, carried);
        assert_eq!(nodes.len(), 4);
        assert_eq!(
            msgs.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(
            msgs[1].carried,
            vec!["user_id:u-1", "anonymous_id:a-1", "email:ada@x.io"]
        );
        assert_eq!(msgs[1].attached, vec!["user_id:u-1", "email:ada@x.io"]);
        assert_eq!(msgs[2].carried, vec!["user_id:u-1", "anonymous_id:a-2"]);
        assert_eq!(msgs[2].merges[0]["loser"], "p-2");
    }

    #[test]
    fn outcomes_split_successes_from_errors_per_bucket() {
        let rows = vec![
            OutcomeRow {
                destination: "salesforce".into(),
                bucket: 0,
                outcome: "success".into(),
                count: 3,
            },
            OutcomeRow {
                destination: "salesforce".into(),
                bucket: 1,
                outcome: "retry".into(),
                count: 2,
            },
            OutcomeRow {
                destination: "salesforce".into(),
                bucket: 1,
                outcome: "dead".into(),
                count: 1,
            },
            OutcomeRow {
                destination: "ga4".into(),
                bucket: 9,
                outcome: "success".into(),
                count: 1,
            },
        ];
        let v = outcome_series(&rows, 2);
        assert_eq!(
            v.as_array().unwrap().len(),
            1,
            "out-of-window calls are ignored"
        );
        assert_eq!(v[0]["destination"], "salesforce");
        assert_eq!(v[0]["success"], json!([3, 0]));
        assert_eq!(v[0]["errors"], json!([0, 3]));
        assert_eq!(v[0]["totals"], json!({"dead": 1, "retry": 2, "success": 3}));
    }
}
