//! Validation throughput: one plan, one conforming 20-property track, validated and enforced many
//! times; `serde_json::from_str` of the same message is printed as a baseline to compare against.
//!
//! Run with `cargo bench -p touchpoint-tracking-plan --bench validate` (a release build).
#![allow(clippy::print_stdout)]

use serde_json::Value;
use std::hint::black_box;
use std::time::Instant;
use touchpoint_tracking_plan::{Message, TrackingPlan, Verdict};

const N: u32 = 200_000;
const WARM_UP: u32 = 20_000;

/// A plan whose `checkout_completed` event has 20 properties of every type.
fn plan_source() -> String {
    let mut rows = String::new();
    for i in 0..20 {
        let row = match i % 5 {
            0 => format!("| `s{i}` | string | yes | max 64 | text |\n"),
            1 => format!("| `i{i}` | integer | yes | min 0, max 1000 | count |\n"),
            2 => format!(
                "| `e{i}` | enum | yes | `free`, `pro`, `business`, `enterprise` | tier |\n"
            ),
            3 => format!("| `b{i}` | boolean | no | | flag |\n"),
            _ => format!("| `t{i}` | timestamp | no | | when |\n"),
        };
        rows.push_str(&row);
    }
    format!(
        "## Settings\n\n- Unplanned events: `block`\n- Unplanned properties: `drop`\n- Invalid events: `block`\n- Version: `bench`\n\n\
         ## Journey stages\n\n- Activation — first value\n\n## Events\n\n### checkout_completed\n\nStage: Activation\n\nA checkout.\n\n\
         | Property | Type | Required | Constraints | Description |\n|---|---|---|---|---|\n{rows}"
    )
}

fn message_json() -> String {
    let mut props = serde_json::Map::new();
    for i in 0..20 {
        let (k, v) = match i % 5 {
            0 => (format!("s{i}"), Value::from("some text value")),
            1 => (format!("i{i}"), Value::from(42 + i)),
            2 => (format!("e{i}"), Value::from("business")),
            3 => (format!("b{i}"), Value::from(true)),
            _ => (format!("t{i}"), Value::from("2026-01-31T12:34:56.789Z")),
        };
        props.insert(k, v);
    }
    serde_json::json!({
        "type": "track", "event": "checkout_completed", "userId": "u_123",
        "anonymousId": "4f1c2d3e-aaaa-bbbb-cccc-1234567890ab", "messageId": "m-1",
        "timestamp": "2026-01-31T12:34:56.789Z", "properties": props,
    })
    .to_string()
}

fn time_per_op(mut f: impl FnMut()) -> f64 {
    for _ in 0..WARM_UP {
        f();
    }
    let start = Instant::now();
    for _ in 0..N {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(N)
}

fn main() {
    let plan: TrackingPlan = plan_source().parse().expect("bench plan parses");
    let json = message_json();
    let value: Value = serde_json::from_str(&json).expect("bench message is JSON");
    let mut msg: Message = Message::from_value(value, None)
        .expect("valid message")
        .message;
    assert_eq!(msg.properties.len(), 20);
    assert!(plan.validate(&msg).is_empty(), "{:?}", plan.validate(&msg));

    let validate = time_per_op(|| {
        let v = plan.validate(black_box(&msg));
        black_box(v);
    });
    let enforce = time_per_op(|| {
        let o = plan.enforce(black_box(&mut msg));
        debug_assert_eq!(o.verdict, Verdict::Accept);
        black_box(o);
    });
    let parse_value = time_per_op(|| {
        let v: Value = serde_json::from_str(black_box(&json)).expect("JSON");
        black_box(v);
    });
    let parse_message = time_per_op(|| {
        let m: Message = serde_json::from_str(black_box(&json)).expect("message");
        black_box(m);
    });
    println!(
        "message: 20 properties, {} bytes of JSON; N = {N}",
        json.len()
    );
    println!("validate                          {validate:>9.1} ns/message");
    println!("enforce                           {enforce:>9.1} ns/message");
    println!("serde_json::from_str::<Value>     {parse_value:>9.1} ns/message");
    println!("serde_json::from_str::<Message>   {parse_message:>9.1} ns/message");
    println!(
        "validate / from_str::<Value>      {:>9.2}",
        validate / parse_value
    );
}
