//! Validation of Segment-spec messages against a [`TrackingPlan`], and enforcement of its policies.
//!
//! [`TrackingPlan::validate`] reports what is wrong; [`TrackingPlan::enforce`] also applies the
//! plan's settings (block, flag, drop) and returns a [`Verdict`]. Both are allocation-free for a
//! conforming message: one hash lookup for the event and one per property, no regex compilation,
//! no formatting until there is something to report.

use crate::lint::{is_snake_case, to_snake_case};
use crate::message::{Message, MessageType};
use crate::plan::{
    InvalidEventPolicy, NamingConvention, PropertySpec, PropertyTable, PropertyType, TrackingPlan,
    UnplannedEventPolicy, UnplannedPropertyPolicy,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};
use std::fmt;

/// The kind of a [`Violation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ViolationKind {
    /// A track of an event the plan does not define.
    UnplannedEvent,
    /// A required property is absent (or `null`).
    MissingRequired,
    /// A value has the wrong JSON type (or is not an RFC 3339 timestamp).
    WrongType,
    /// An enum value outside the allowed values.
    NotInEnum,
    /// A number (or a string's/array's length) outside `min`/`max`.
    OutOfRange,
    /// A string that does not match the property's pattern.
    PatternMismatch,
    /// An event name that breaks the naming convention, e.g. `Feature Toggled`.
    BadEventName,
    /// An unplanned property name that breaks the naming convention.
    BadPropertyName,
    /// A property the event's spec does not define.
    UnplannedProperty,
    /// A trait the traits table does not define.
    UnplannedTrait,
}

impl ViolationKind {
    /// The snake_case name used in JSON (`"missing_required"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ViolationKind::UnplannedEvent => "unplanned_event",
            ViolationKind::MissingRequired => "missing_required",
            ViolationKind::WrongType => "wrong_type",
            ViolationKind::NotInEnum => "not_in_enum",
            ViolationKind::OutOfRange => "out_of_range",
            ViolationKind::PatternMismatch => "pattern_mismatch",
            ViolationKind::BadEventName => "bad_event_name",
            ViolationKind::BadPropertyName => "bad_property_name",
            ViolationKind::UnplannedProperty => "unplanned_property",
            ViolationKind::UnplannedTrait => "unplanned_trait",
        }
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One way a message breaks the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// What kind of problem.
    pub kind: ViolationKind,
    /// The offending field, e.g. `"properties.plan_tier"`, `"traits.email"` or `"event"`.
    pub field: Option<String>,
    /// A sentence for humans.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// What to do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// It conforms: forward it.
    Accept,
    /// Forward it, and surface its violations.
    Flag,
    /// Do not forward it; store it with its violations.
    Block,
}

/// The result of [`TrackingPlan::enforce`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Accept, flag or block.
    pub verdict: Verdict,
    /// Everything [`TrackingPlan::validate`] found.
    pub violations: Vec<Violation>,
    /// Property (or trait) names removed from the message under the `drop` policy.
    pub dropped: Vec<String>,
}

impl Outcome {
    /// Whether the message must not be forwarded.
    pub fn is_blocked(&self) -> bool {
        self.verdict == Verdict::Block
    }
}

impl TrackingPlan {
    /// Lists every way `msg` breaks the plan; empty (and allocation-free) if it conforms.
    ///
    /// - track: the event's spec by name; an unknown event is [`ViolationKind::UnplannedEvent`] and a
    ///   name that breaks the naming convention is also [`ViolationKind::BadEventName`].
    /// - page / screen: the `page_viewed` / `screen_viewed` spec, if the plan has one.
    /// - identify: traits against the traits table (required traits included);
    ///   group: the same, without required traits.
    /// - alias: nothing.
    ///
    /// `null` counts as absent. Violations a policy says to `allow` (unplanned events, unplanned
    /// properties and their names) are not reported.
    pub fn validate(&self, msg: &Message) -> Vec<Violation> {
        let mut out = Vec::new();
        match msg.kind {
            MessageType::Track => {
                let name = msg.event.as_deref().unwrap_or("");
                if self.settings.naming == NamingConvention::SnakeCase && !is_snake_case(name) {
                    out.push(Violation {
                        kind: ViolationKind::BadEventName,
                        field: Some("event".into()),
                        message: format!(
                            "event name {name:?} is not snake_case (try {:?})",
                            to_snake_case(name)
                        ),
                    });
                }
                match self.event(name) {
                    Some(spec) => self.check_payload(
                        &spec.properties,
                        &msg.properties,
                        Bag::Properties,
                        Some(&spec.name),
                        &mut out,
                    ),
                    None if self.settings.unplanned_events != UnplannedEventPolicy::Allow => {
                        let suggestion = to_snake_case(name);
                        let hint = if suggestion != name && self.event(&suggestion).is_some() {
                            format!(" (did you mean {suggestion:?}?)")
                        } else {
                            String::new()
                        };
                        out.push(Violation {
                            kind: ViolationKind::UnplannedEvent,
                            field: Some("event".into()),
                            message: format!("event {name:?} is not in the tracking plan{hint}"),
                        });
                    }
                    None => {}
                }
            }
            MessageType::Page | MessageType::Screen => {
                let name = if msg.kind == MessageType::Page {
                    "page_viewed"
                } else {
                    "screen_viewed"
                };
                if let Some(spec) = self.event(name) {
                    self.check_payload(
                        &spec.properties,
                        &msg.properties,
                        Bag::Properties,
                        Some(&spec.name),
                        &mut out,
                    );
                }
            }
            MessageType::Identify => {
                self.check_payload(
                    &self.traits,
                    &msg.traits,
                    Bag::Traits,
                    Some("identify"),
                    &mut out,
                );
            }
            MessageType::Group => {
                self.check_payload(&self.traits, &msg.traits, Bag::Traits, None, &mut out)
            }
            MessageType::Alias => {}
        }
        // analytics.js repeats cached traits in `context.traits` on every call, and they reach the
        // profile from any message, so they answer to the traits table (never required: they
        // are a copy).
        if let Some(Value::Object(cached)) = msg.context.get("traits") {
            self.check_payload(&self.traits, cached, Bag::ContextTraits, None, &mut out);
        }
        out
    }

    /// Validates `msg` and applies the plan's policies to it.
    ///
    /// - unplanned event: `block` blocks, `flag` flags (`allow`: not reported);
    /// - missing required, wrong type, not in enum, out of range, pattern mismatch, bad event name,
    ///   bad property name: `block` blocks, `flag` flags (a badly named property that is dropped
    ///   only flags);
    /// - unplanned property or trait: `drop` removes it from [`Message::payload_mut`] and lists it in
    ///   [`Outcome::dropped`], `flag` keeps it (`allow`: not reported).
    ///
    /// The verdict is `Block` if any violation's policy blocks, else `Flag` if there is any
    /// violation, else `Accept`. A blocked message is left exactly as sent (nothing is dropped) so
    /// the stored copy shows what arrived.
    pub fn enforce(&self, msg: &mut Message) -> Outcome {
        let violations = self.validate(msg);
        if violations.is_empty() {
            return Outcome {
                verdict: Verdict::Accept,
                violations,
                dropped: Vec::new(),
            };
        }
        let s = &self.settings;
        let dropping = s.unplanned_properties == UnplannedPropertyPolicy::Drop;
        let invalid_blocks = s.invalid_events == InvalidEventPolicy::Block;
        // Cached traits an SDK repeats on a call that is not an identify never block it: one bad
        // cached value would block every later event from the device. An invalid one is dropped
        // instead (it must not reach the profile or identity resolution), an unplanned one as
        // the policy says.
        let identify = msg.kind == MessageType::Identify;
        let cached_copy =
            |v: &Violation| !identify && v.field.as_deref().is_some_and(is_cached_trait);
        let block = violations.iter().any(|v| match v.kind {
            _ if cached_copy(v) => false,
            ViolationKind::UnplannedEvent => s.unplanned_events == UnplannedEventPolicy::Block,
            ViolationKind::UnplannedProperty | ViolationKind::UnplannedTrait => false,
            ViolationKind::BadPropertyName => invalid_blocks && !dropping,
            _ => invalid_blocks,
        });
        let mut dropped = Vec::new();
        if !block {
            for v in &violations {
                let unplanned = matches!(
                    v.kind,
                    ViolationKind::UnplannedProperty | ViolationKind::UnplannedTrait
                );
                let drop_it = (dropping && unplanned) || (cached_copy(v) && !unplanned);
                if drop_it && let Some(field) = v.field.as_deref() {
                    let removed = match field.strip_prefix("context.traits.") {
                        Some(key) => msg
                            .context
                            .get_mut("traits")
                            .and_then(Value::as_object_mut)
                            .and_then(|cached| cached.shift_remove(key))
                            .map(|_| field),
                        None => field
                            .split_once('.')
                            .filter(|(_, key)| msg.payload_mut().shift_remove(*key).is_some())
                            .map(|_| field),
                    };
                    if let Some(field) = removed {
                        dropped.push(field.split_once('.').map_or(field, |(_, k)| k).to_string());
                    }
                }
            }
        }
        Outcome {
            verdict: if block { Verdict::Block } else { Verdict::Flag },
            violations,
            dropped,
        }
    }

    fn check_payload(
        &self,
        table: &PropertyTable,
        payload: &Map<String, Value>,
        bag: Bag,
        required_by: Option<&str>,
        out: &mut Vec<Violation>,
    ) {
        let report_unplanned = self.settings.unplanned_properties != UnplannedPropertyPolicy::Allow;
        let snake = self.settings.naming == NamingConvention::SnakeCase;
        let mut required_seen = 0usize;
        for (key, value) in payload {
            match table.get(key) {
                Some(spec) => {
                    if value.is_null() {
                        continue;
                    }
                    required_seen += usize::from(spec.required);
                    check_value(spec, value, bag, out);
                }
                None if report_unplanned => {
                    let field = bag.field(key);
                    let (kind, what) = match bag {
                        Bag::Properties => (ViolationKind::UnplannedProperty, "property"),
                        Bag::Traits | Bag::ContextTraits => {
                            (ViolationKind::UnplannedTrait, "trait")
                        }
                    };
                    let message = match required_by {
                        Some(owner) if bag == Bag::Properties => {
                            format!("{what} {key:?} is not in the plan for {owner}")
                        }
                        _ => format!("{what} {key:?} is not in the plan's traits"),
                    };
                    out.push(Violation {
                        kind,
                        field: Some(field.clone()),
                        message,
                    });
                    if snake && !is_snake_case(key) {
                        out.push(Violation {
                            kind: ViolationKind::BadPropertyName,
                            field: Some(field),
                            message: format!(
                                "{what} name {key:?} is not snake_case (try {:?})",
                                to_snake_case(key)
                            ),
                        });
                    }
                }
                None => {}
            }
        }
        let Some(owner) = required_by else { return };
        if required_seen < table.required {
            for spec in table.specs.iter().filter(|s| s.required) {
                if payload.get(&spec.name).is_none_or(Value::is_null) {
                    out.push(Violation {
                        kind: ViolationKind::MissingRequired,
                        field: Some(bag.field(&spec.name)),
                        message: format!(
                            "{} is required by {owner} and is missing",
                            bag.field(&spec.name)
                        ),
                    });
                }
            }
        }
    }
}

/// Which map of the message is being validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bag {
    Properties,
    Traits,
    ContextTraits,
}

impl Bag {
    fn field(self, key: &str) -> String {
        match self {
            Bag::Properties => format!("properties.{key}"),
            Bag::Traits => format!("traits.{key}"),
            Bag::ContextTraits => format!("context.traits.{key}"),
        }
    }
}

/// The JSON type of a value, for messages.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if is_integer(n) => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON integer, or a float with a zero fraction such as `3.0`.
fn is_integer(n: &Number) -> bool {
    n.is_i64()
        || n.is_u64()
        || n.as_f64()
            .is_some_and(|f| f.is_finite() && f.fract() == 0.0)
}

/// What is wrong with `value` as the trait `spec` describes it (type, allowed values, range,
/// pattern, length): empty when it fits. For values that arrive outside a message, such as a CRM
/// field synced into a trait.
pub fn trait_violations(spec: &PropertySpec, value: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    check_value(spec, value, Bag::Traits, &mut out);
    out
}

fn check_value(spec: &PropertySpec, value: &Value, bag: Bag, out: &mut Vec<Violation>) {
    let c = &spec.constraints;
    let wrong_type = |expected: &str, out: &mut Vec<Violation>| {
        out.push(Violation {
            kind: ViolationKind::WrongType,
            field: Some(bag.field(&spec.name)),
            message: format!(
                "{} must be {expected}, not {}",
                bag.field(&spec.name),
                json_type(value)
            ),
        });
    };
    match (spec.ty, value) {
        (PropertyType::String, Value::String(s)) => {
            if c.min.is_some() || c.max.is_some() {
                check_range(spec, s.chars().count() as f64, "length", bag, out);
            }
            if let Some(re) = &c.pattern
                && !re.is_match(s)
            {
                out.push(Violation {
                    kind: ViolationKind::PatternMismatch,
                    field: Some(bag.field(&spec.name)),
                    message: format!(
                        "{} {s:?} does not match the pattern /{}/",
                        bag.field(&spec.name),
                        re.as_str()
                    ),
                });
            }
        }
        (PropertyType::Integer, Value::Number(n)) if is_integer(n) => {
            check_range(spec, n.as_f64().unwrap_or(0.0), "value", bag, out);
        }
        (PropertyType::Integer, _) => wrong_type("an integer", out),
        (PropertyType::Number, Value::Number(n)) => {
            check_range(spec, n.as_f64().unwrap_or(0.0), "value", bag, out);
        }
        (PropertyType::Number, _) => wrong_type("a number", out),
        (PropertyType::Boolean, Value::Bool(_)) => {}
        (PropertyType::Boolean, _) => wrong_type("a boolean", out),
        (PropertyType::Timestamp, Value::String(s)) if is_timestamp(s) => {}
        (PropertyType::Timestamp, _) => {
            wrong_type("an RFC 3339 timestamp such as 2026-01-31T12:00:00Z", out);
        }
        (PropertyType::Enum, Value::String(_) | Value::Number(_) | Value::Bool(_)) => {
            let found = match value {
                Value::String(s) => c.values.iter().any(|v| v == s),
                Value::Bool(b) => {
                    let s = if *b { "true" } else { "false" };
                    c.values.iter().any(|v| v == s)
                }
                other => {
                    let s = other.to_string();
                    c.values.contains(&s)
                }
            };
            if !found {
                out.push(Violation {
                    kind: ViolationKind::NotInEnum,
                    field: Some(bag.field(&spec.name)),
                    message: format!(
                        "{} is {value}, not one of {}",
                        bag.field(&spec.name),
                        c.values.join(", ")
                    ),
                });
            }
        }
        (PropertyType::Enum, _) => wrong_type("one of the allowed values", out),
        (PropertyType::Array, Value::Array(a)) => {
            if c.min.is_some() || c.max.is_some() {
                check_range(spec, a.len() as f64, "length", bag, out);
            }
        }
        (PropertyType::Array, _) => wrong_type("an array", out),
        (PropertyType::Object, Value::Object(_)) => {}
        (PropertyType::Object, _) => wrong_type("an object", out),
        (PropertyType::String, _) => wrong_type("a string", out),
    }
}

#[inline]
fn check_range(spec: &PropertySpec, x: f64, what: &str, bag: Bag, out: &mut Vec<Violation>) {
    let c = &spec.constraints;
    let problem = match (c.min, c.max) {
        (Some(min), _) if x < min => Some(("below the minimum", min)),
        (_, Some(max)) if x > max => Some(("above the maximum", max)),
        _ => None,
    };
    if let Some((side, bound)) = problem {
        out.push(Violation {
            kind: ViolationKind::OutOfRange,
            field: Some(bag.field(&spec.name)),
            message: format!("{} has {what} {x}, {side} {bound}", bag.field(&spec.name)),
        });
    }
}

/// Whether `s` is an RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, with `t` or a
/// space accepted for `T` and `z` for `Z`; the date must exist (leap years included) and the second
/// may be 60 (leap second).
pub fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 {
        return false;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        b[from..to].iter().try_fold(0u32, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
    };
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        num(0, 4),
        num(5, 7),
        num(8, 10),
        num(11, 13),
        num(14, 16),
        num(17, 19),
    ) else {
        return false;
    };
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return false;
    }
    if b[13] != b':' || b[16] != b':' {
        return false;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    if day == 0 || day > days || hour > 23 || minute > 59 || second > 60 {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            let two = |a: u8, b: u8| {
                (a.is_ascii_digit() && b.is_ascii_digit())
                    .then(|| u32::from(a - b'0') * 10 + u32::from(b - b'0'))
            };
            matches!((two(*h1, *h2), two(*m1, *m2)), (Some(h), Some(m)) if h <= 23 && m <= 59)
        }
        _ => false,
    }
}

/// Whether a violation's field is one of `context.traits`.
fn is_cached_trait(field: &str) -> bool {
    field.starts_with("context.traits.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PLAN: &str = include_str!("../../TRACKING_PLAN.md");

    fn plan() -> TrackingPlan {
        PLAN.parse().unwrap()
    }

    fn msg(v: Value) -> Message {
        Message::from_value(v, None).unwrap().message
    }

    fn kinds(vs: &[Violation]) -> Vec<ViolationKind> {
        vs.iter().map(|v| v.kind).collect()
    }

    #[test]
    fn a_conforming_track_has_no_violations_and_is_accepted() {
        let mut m = msg(
            json!({"type": "track", "userId": "u1", "event": "trial_started",
            "properties": {"plan_tier": "pro", "trial_days": 14}}),
        );
        assert!(plan().validate(&m).is_empty());
        let before = m.clone();
        let outcome = plan().enforce(&mut m);
        assert_eq!(outcome.verdict, Verdict::Accept);
        assert_eq!(m, before);
    }

    #[test]
    fn a_title_case_event_name_is_a_bad_event_name_and_unplanned() {
        let m = msg(
            json!({"type": "track", "userId": "u1", "event": "Feature Toggled",
            "properties": {"feature_name": "dark_mode", "new_status": true}}),
        );
        let vs = plan().validate(&m);
        assert_eq!(
            kinds(&vs),
            [ViolationKind::BadEventName, ViolationKind::UnplannedEvent]
        );
        assert!(vs[1].message.contains("did you mean \"feature_toggled\""));
        assert_eq!(vs[0].field.as_deref(), Some("event"));
    }

    #[test]
    fn a_missing_required_property_is_reported_with_its_name() {
        let m = msg(
            json!({"type": "track", "userId": "u1", "event": "workspace_created",
            "properties": {"workspace_name": "Acme"}}),
        );
        let vs = plan().validate(&m);
        assert_eq!(kinds(&vs), [ViolationKind::MissingRequired]);
        assert_eq!(vs[0].field.as_deref(), Some("properties.workspace_id"));
        assert!(vs[0].message.contains("workspace_created"));
    }

    #[test]
    fn a_null_required_property_counts_as_missing() {
        let m = msg(
            json!({"type": "track", "userId": "u1", "event": "workspace_created",
            "properties": {"workspace_id": null}}),
        );
        assert_eq!(
            kinds(&plan().validate(&m)),
            [ViolationKind::MissingRequired]
        );
    }

    #[test]
    fn a_plan_tier_outside_the_enum_is_not_in_enum_and_blocked() {
        let mut m = msg(
            json!({"type": "track", "userId": "u1", "event": "trial_started",
            "properties": {"plan_tier": "Enterprise V2", "trial_days": 30}}),
        );
        let outcome = plan().enforce(&mut m);
        assert_eq!(kinds(&outcome.violations), [ViolationKind::NotInEnum]);
        assert_eq!(
            outcome.violations[0].field.as_deref(),
            Some("properties.plan_tier")
        );
        assert!(outcome.violations[0].message.contains("Enterprise V2"));
        assert_eq!(outcome.verdict, Verdict::Block);
    }

    #[test]
    fn an_unplanned_property_is_dropped_under_the_drop_policy() {
        let mut m = msg(
            json!({"type": "track", "userId": "u1", "event": "feature_toggled",
            "properties": {"feature_name": "dark_mode", "debug_blob": "x", "new_status": true}}),
        );
        let outcome = plan().enforce(&mut m);
        assert_eq!(outcome.verdict, Verdict::Flag);
        assert_eq!(outcome.dropped, ["debug_blob"]);
        assert_eq!(
            kinds(&outcome.violations),
            [ViolationKind::UnplannedProperty]
        );
        assert!(!m.properties.contains_key("debug_blob"));
        let keys: Vec<_> = m.properties.keys().collect();
        assert_eq!(keys, ["feature_name", "new_status"], "order is kept");
    }

    #[test]
    fn an_unplanned_event_is_blocked_under_the_block_policy() {
        let mut m = msg(json!({"type": "track", "userId": "u1", "event": "invoice_paid"}));
        let outcome = plan().enforce(&mut m);
        assert_eq!(outcome.verdict, Verdict::Block);
        assert_eq!(kinds(&outcome.violations), [ViolationKind::UnplannedEvent]);
    }

    #[test]
    fn flag_policies_flag_and_allow_policies_stay_silent() {
        let flag = PLAN
            .replace("- Unplanned events: `block`", "- Unplanned events: `flag`")
            .replace("- Invalid events: `block`", "- Invalid events: `flag`")
            .replace(
                "- Unplanned properties: `drop`",
                "- Unplanned properties: `flag`",
            );
        let flag: TrackingPlan = flag.parse().unwrap();
        let mut m = msg(json!({"type": "track", "userId": "u1", "event": "invoice_paid"}));
        assert_eq!(flag.enforce(&mut m).verdict, Verdict::Flag);
        let mut m = msg(
            json!({"type": "track", "userId": "u1", "event": "report_generated",
            "properties": {"row_count": -1, "extra": 1}}),
        );
        let outcome = flag.enforce(&mut m);
        assert_eq!(outcome.verdict, Verdict::Flag);
        assert!(outcome.dropped.is_empty());
        assert!(m.properties.contains_key("extra"));

        let allow = PLAN
            .replace("- Unplanned events: `block`", "- Unplanned events: `allow`")
            .replace(
                "- Unplanned properties: `drop`",
                "- Unplanned properties: `allow`",
            );
        let allow: TrackingPlan = allow.parse().unwrap();
        let mut m = msg(
            json!({"type": "track", "userId": "u1", "event": "invoice_paid",
            "properties": {"Amount": 3}}),
        );
        assert_eq!(allow.enforce(&mut m).verdict, Verdict::Accept);
    }

    #[test]
    fn a_blocked_message_is_left_exactly_as_sent() {
        let mut m = msg(
            json!({"type": "track", "userId": "u1", "event": "trial_started",
            "properties": {"plan_tier": "pro", "trial_days": 0, "extra": 1}}),
        );
        let before = m.clone();
        let outcome = plan().enforce(&mut m);
        assert_eq!(outcome.verdict, Verdict::Block);
        assert_eq!(
            kinds(&outcome.violations),
            [ViolationKind::OutOfRange, ViolationKind::UnplannedProperty]
        );
        assert!(outcome.dropped.is_empty());
        assert_eq!(m, before);
    }

    #[test]
    fn integers_accept_a_zero_fraction_and_reject_other_types() {
        let p = plan();
        let days = |v: Value| {
            kinds(&p.validate(&msg(
                json!({"type": "track", "userId": "u", "event": "trial_started",
                "properties": {"plan_tier": "pro", "trial_days": v}}),
            )))
        };
        assert!(days(json!(3.0)).is_empty());
        assert_eq!(days(json!(3.5)), [ViolationKind::WrongType]);
        assert_eq!(days(json!("3")), [ViolationKind::WrongType]);
        assert_eq!(days(json!(91)), [ViolationKind::OutOfRange]);
    }

    #[test]
    fn a_wrong_type_names_what_was_expected_and_what_arrived() {
        let m = msg(
            json!({"type": "track", "userId": "u", "event": "feature_toggled",
            "properties": {"feature_name": "x", "new_status": "yes"}}),
        );
        let vs = plan().validate(&m);
        assert_eq!(kinds(&vs), [ViolationKind::WrongType]);
        assert_eq!(
            vs[0].message,
            "properties.new_status must be a boolean, not a string"
        );
    }

    #[test]
    fn cached_context_traits_answer_to_the_traits_table_and_unplanned_ones_are_dropped() {
        let mut m = msg(
            json!({"type": "identify", "userId": "u", "traits": {"name": "Ada"},
            "context": {"traits": {"plan_tier": "pro", "is_admin": true}}}),
        );
        let outcome = plan().enforce(&mut m);
        assert_eq!(kinds(&outcome.violations), [ViolationKind::UnplannedTrait]);
        assert_eq!(
            outcome.violations[0].field.as_deref(),
            Some("context.traits.is_admin")
        );
        assert_eq!(outcome.verdict, Verdict::Flag);
        assert_eq!(m.context["traits"], json!({"plan_tier": "pro"}));
        assert_eq!(m.traits["name"], "Ada");
    }

    #[test]
    fn cached_context_traits_on_other_calls_are_checked_and_bad_ones_dropped_never_blocking() {
        for mut m in [
            msg(json!({"type": "page", "anonymousId": "a",
                "context": {"traits": {"email": "not-an-email", "bogus_trait": 1}}})),
            msg(json!({"type": "alias", "userId": "u", "previousId": "a",
                "context": {"traits": {"email": "not-an-email", "bogus_trait": 1}}})),
        ] {
            let outcome = plan().enforce(&mut m);
            let fields: Vec<_> = outcome
                .violations
                .iter()
                .map(|v| v.field.as_deref().unwrap_or(""))
                .collect();
            assert!(
                fields.contains(&"context.traits.email")
                    && fields.contains(&"context.traits.bogus_trait"),
                "{:?}",
                outcome.violations
            );
            // Not a block: the SDK repeats cached traits on every call. The invalid one is
            // dropped so it never reaches a profile; the unplanned one as the policy says.
            assert_eq!(outcome.verdict, Verdict::Flag);
            assert_eq!(m.context["traits"], json!({}), "{:?}", m.context);
        }
    }

    #[test]
    fn a_cached_trait_of_the_wrong_type_is_a_violation_like_any_trait() {
        let m = msg(json!({"type": "identify", "userId": "u",
            "context": {"traits": {"seats_provisioned": "many"}}}));
        let vs = plan().validate(&m);
        assert_eq!(kinds(&vs), [ViolationKind::WrongType]);
    }

    #[test]
    fn identify_traits_are_checked_against_the_traits_table() {
        let mut m = msg(json!({"type": "identify", "userId": "u", "traits": {
            "email": "not-an-email", "plan_tier": "free", "seats_provisioned": 4,
            "created_at": "yesterday", "favouriteColour": "teal"}}));
        let vs = plan().validate(&m);
        assert_eq!(
            kinds(&vs),
            [
                ViolationKind::PatternMismatch,
                ViolationKind::WrongType,
                ViolationKind::UnplannedTrait,
                ViolationKind::BadPropertyName
            ]
        );
        assert_eq!(vs[2].field.as_deref(), Some("traits.favouriteColour"));
        let outcome = plan().enforce(&mut m);
        assert_eq!(outcome.verdict, Verdict::Block);
    }

    #[test]
    fn group_traits_may_carry_account_traits() {
        let mut m = msg(json!({"type": "group", "userId": "u", "groupId": "g",
            "traits": {"seats_provisioned": 5, "plan_tier": "business", "company": "Acme", "mrr": 10}}));
        let outcome = plan().enforce(&mut m);
        assert_eq!(outcome.verdict, Verdict::Flag);
        assert_eq!(outcome.dropped, ["mrr"]);
        assert!(!m.traits.contains_key("mrr"));
    }

    #[test]
    fn pages_are_validated_against_page_viewed_and_alias_against_nothing() {
        let p = plan();
        let page = msg(
            json!({"type": "page", "anonymousId": "a", "name": "Pricing",
            "properties": {"path": "/pricing", "url": "https://x.test/pricing", "title": "Pricing",
                           "referrer": "", "search": "", "name": "Pricing"}}),
        );
        assert!(p.validate(&page).is_empty());
        let page = msg(json!({"type": "page", "anonymousId": "a", "properties": {"path": 3}}));
        assert_eq!(kinds(&p.validate(&page)), [ViolationKind::WrongType]);
        let screen = msg(json!({"type": "screen", "anonymousId": "a", "properties": {"any": 1}}));
        assert!(p.validate(&screen).is_empty());
        let alias = msg(json!({"type": "alias", "userId": "u", "previousId": "a"}));
        assert!(p.validate(&alias).is_empty());
    }

    #[test]
    fn enum_values_compare_numbers_and_booleans_by_their_string_form() {
        let src = "## Events\n\n### e\n\nd\n\n| Name | Type | Required | Constraints |\n|-|-|-|-|\n| n | enum | no | `1`, `true` |\n";
        let p: TrackingPlan = src.parse().unwrap();
        let check = |v: Value| {
            kinds(&p.validate(&msg(
                json!({"type": "track", "userId": "u", "event": "e", "properties": {"n": v}}),
            )))
        };
        assert!(check(json!(1)).is_empty());
        assert!(check(json!(true)).is_empty());
        assert!(check(json!("1")).is_empty());
        assert_eq!(check(json!(2)), [ViolationKind::NotInEnum]);
        assert_eq!(check(json!([1])), [ViolationKind::WrongType]);
    }

    #[test]
    fn violations_serialise_with_snake_case_kinds() {
        let v = Violation {
            kind: ViolationKind::MissingRequired,
            field: Some("properties.workspace_id".into()),
            message: "m".into(),
        };
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["kind"], "missing_required");
        let back: Violation = serde_json::from_value(json).unwrap();
        assert_eq!(back, v);
        assert_eq!(
            serde_json::to_value(Verdict::Block).unwrap(),
            json!("block")
        );
    }

    #[test]
    fn timestamps_follow_rfc_3339() {
        for ok in [
            "2026-01-31T12:00:00Z",
            "2026-01-31T12:00:00.123Z",
            "2024-02-29t23:59:60+05:30",
            "2026-01-31 12:00:00-00:00",
        ] {
            assert!(is_timestamp(ok), "{ok}");
        }
        for bad in [
            "2026-01-31",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-31T24:00:00Z",
            "2026-01-31T12:00:00",
            "2026-01-31T12:00:00.Z",
            "2026-01-31T12:00:00+0530",
            "１２３４-01-31T12:00:00Z",
            "yesterday at noon, roughly",
        ] {
            assert!(!is_timestamp(bad), "{bad}");
        }
    }
}
