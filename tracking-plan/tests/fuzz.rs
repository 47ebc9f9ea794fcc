//! Property tests: the parser, the checker, the validator and the enforcer never panic, whatever
//! markdown or JSON they are given.

use proptest::prelude::*;
use serde_json::{Map, Value};
use touchpoint_tracking_plan::{Message, MessageType, TrackingPlan, Verdict, check, parse};

const PLAN: &str = include_str!("../../TRACKING_PLAN.md");

fn real_plan() -> TrackingPlan {
    PLAN.parse().expect("TRACKING_PLAN.md parses")
}

/// A cell of a plan-like table: plausible names, types, required flags and constraints, or junk.
fn cell() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-zA-Z_ ]{1,12}",
        prop::sample::select(vec![
            "string",
            "integer",
            "number",
            "boolean",
            "timestamp",
            "enum",
            "array",
            "object",
            "yes",
            "no",
            "`a`, `b`",
            "min 1, max 0",
            "min 3",
            "max -2",
            "pattern `[`",
            "pattern `^a$`",
            "`x",
            "min",
            "pattern",
            "\\|",
            "`",
            "min 1e400",
            "max NaN",
        ])
        .prop_map(String::from),
        any::<String>(),
    ]
}

/// One line of plan-like markdown.
fn plan_line() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "## Settings",
            "## Journey stages",
            "## Events",
            "## Traits",
            "## Identity",
            "## Other",
            "# Title",
            "```",
            "~~~",
            "",
            "|---|---|",
            "|-|",
            "| Name | Type |",
            "| Property | Type | Required | Constraints | Description |",
        ])
        .prop_map(String::from),
        "[a-zA-Z_ `]{0,15}".prop_map(|h| format!("### {h}")),
        cell().prop_map(|c| format!("Stage: {c}")),
        (
            prop::sample::select(vec![
                "Naming convention",
                "Unplanned events",
                "Unplanned properties",
                "Invalid events",
                "Version",
                "Priority",
                "Limits",
                "Blocked values",
                "Colour",
            ]),
            cell()
        )
            .prop_map(|(k, v)| format!("- {k}: {v}")),
        cell().prop_map(|c| format!("- **{c}** — a stage")),
        prop::collection::vec(cell(), 0..6).prop_map(|cells| format!("| {} |", cells.join(" | "))),
        any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![
            "pro",
            "Enterprise V2",
            "2026-01-31T12:00:00Z",
            "",
            "dark_mode",
            "a@b.co",
        ])
        .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Property names from the real plan, plus junk.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "plan_tier",
            "trial_days",
            "workspace_id",
            "feature_name",
            "new_status",
            "row_count",
            "email",
            "seats_provisioned",
            "created_at",
            "path",
            "Feature Name",
        ])
        .prop_map(String::from),
        "[a-zA-Z_ ]{1,10}",
    ]
}

/// A Segment-ish message: mostly valid envelopes with random payloads, sometimes pure junk.
fn message() -> impl Strategy<Value = Value> {
    let kind = prop::sample::select(vec![
        "track", "page", "screen", "identify", "group", "alias", "Track", "bogus",
    ]);
    let event = prop_oneof![
        prop::sample::select(vec![
            "trial_started",
            "workspace_created",
            "feature_toggled",
            "Feature Toggled",
            "report_generated",
            "page_viewed",
            "",
        ])
        .prop_map(String::from),
        ".{0,10}",
    ];
    prop_oneof![
        4 => (kind, event, json_value(), json_value()).prop_map(|(kind, event, props, traits)| {
            serde_json::json!({
                "type": kind, "userId": "u1", "anonymousId": "a1", "event": event,
                "groupId": "g1", "previousId": "p1", "properties": props, "traits": traits,
            })
        }),
        1 => json_value(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn parse_and_check_never_panic_on_arbitrary_strings(src in any::<String>()) {
        let _ = parse(&src);
        let _ = check(&src);
    }

    #[test]
    fn parse_and_check_never_panic_on_plan_like_markdown(
        lines in prop::collection::vec(plan_line(), 0..40)
    ) {
        let src = lines.join("\n");
        let parsed = parse(&src);
        let diags = check(&src);
        // parse fails exactly when check reports an error, and on the same first line.
        let first_error = diags
            .iter()
            .filter(|d| d.severity == touchpoint_tracking_plan::Severity::Error)
            .map(|d| d.line)
            .min();
        match parsed {
            Ok(_) => prop_assert!(diags.iter().all(|d| !d.message.is_empty())),
            Err(e) => prop_assert!(first_error.is_some_and(|l| l <= e.line)),
        }
    }

    #[test]
    fn validate_and_enforce_never_panic_on_arbitrary_messages(value in message()) {
        let plan = real_plan();
        for implied in [None, Some(MessageType::Track)] {
            if let Ok(parsed) = Message::from_value(value.clone(), implied) {
                let mut msg = parsed.message;
                let violations = plan.validate(&msg);
                let outcome = plan.enforce(&mut msg);
                prop_assert_eq!(&outcome.violations, &violations);
                prop_assert_eq!(outcome.verdict == Verdict::Accept, violations.is_empty());
                // After enforcement nothing dropped remains, and a second pass finds no unplanned
                // property left to drop.
                for key in &outcome.dropped {
                    prop_assert!(!msg.payload().contains_key(key));
                }
                if outcome.verdict != Verdict::Block {
                    prop_assert!(plan.enforce(&mut msg).dropped.is_empty());
                }
            }
        }
    }
}
