//! Lints over a parsed plan: the naming convention (errors) and destination limits (warnings).
//!
//! GA4's Measurement Protocol silently drops events that break its limits, so the plan warns before a
//! name ships: event names ≤ 40 characters matching `[A-Za-z][A-Za-z0-9_]*`, no reserved prefixes
//! (`google_`, `ga_`, `firebase_`) or reserved names, ≤ 25 parameters, parameter names ≤ 40
//! characters. Core's GA4 destination reuses [`ga4_event_problems`] and [`ga4_param_problems`].

use crate::parse::Diagnostic;
use crate::plan::{NamingConvention, TrackingPlan};

/// GA4's longest event or parameter name.
pub const GA4_MAX_NAME_LEN: usize = 40;
/// GA4's most parameters on one event.
pub const GA4_MAX_PARAMS: usize = 25;
/// Prefixes GA4 reserves for event and parameter names.
pub const GA4_RESERVED_PREFIXES: [&str; 3] = ["google_", "ga_", "firebase_"];
/// Event names GA4 reserves for its own automatically collected events.
pub const GA4_RESERVED_EVENTS: [&str; 31] = [
    "ad_activeview",
    "ad_click",
    "ad_exposure",
    "ad_impression",
    "ad_query",
    "ad_reward",
    "adunit_exposure",
    "app_background",
    "app_clear_data",
    "app_exception",
    "app_remove",
    "app_store_refund",
    "app_store_subscription_cancel",
    "app_store_subscription_convert",
    "app_store_subscription_renew",
    "app_update",
    "app_upgrade",
    "dynamic_link_app_open",
    "dynamic_link_app_update",
    "dynamic_link_first_open",
    "error",
    "first_open",
    "first_visit",
    "in_app_purchase",
    "notification_dismiss",
    "notification_foreground",
    "notification_open",
    "notification_receive",
    "os_update",
    "session_start",
    "user_engagement",
];

/// Whether `name` is snake_case: `^[a-z][a-z0-9]*(_[a-z0-9]+)*$`. Allocation-free.
pub fn is_snake_case(name: &str) -> bool {
    let b = name.as_bytes();
    let Some(&first) = b.first() else {
        return false;
    };
    if !first.is_ascii_lowercase() {
        return false;
    }
    let mut prev_underscore = false;
    for &c in &b[1..] {
        match c {
            b'a'..=b'z' | b'0'..=b'9' => prev_underscore = false,
            b'_' if !prev_underscore => prev_underscore = true,
            _ => return false,
        }
    }
    !prev_underscore
}

/// Suggests the snake_case form of a name: `"Feature Toggled"` → `"feature_toggled"`,
/// `"planTier"` → `"plan_tier"`.
pub fn to_snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut prev: Option<char> = None;
    for c in name.chars() {
        if c.is_alphanumeric() {
            let boundary =
                c.is_uppercase() && prev.is_some_and(|p| p.is_lowercase() || p.is_numeric());
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
        prev = Some(c);
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

fn ga4_name_problems(what: &str, name: &str, out: &mut Vec<String>) {
    let len = name.chars().count();
    if len > GA4_MAX_NAME_LEN {
        out.push(format!(
            "GA4 {what} names are at most {GA4_MAX_NAME_LEN} characters; {name:?} has {len}"
        ));
    }
    let mut chars = name.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !well_formed {
        out.push(format!(
            "GA4 {what} names must match [A-Za-z][A-Za-z0-9_]*; {name:?} does not"
        ));
    }
    let lower = name.to_ascii_lowercase();
    if let Some(p) = GA4_RESERVED_PREFIXES.iter().find(|p| lower.starts_with(*p)) {
        out.push(format!(
            "GA4 reserves the {p:?} prefix for {what} names; {name:?} would be dropped"
        ));
    }
}

/// Why GA4 would reject an event with this name and this many parameters; empty if it would not.
pub fn ga4_event_problems(name: &str, param_count: usize) -> Vec<String> {
    let mut out = Vec::new();
    ga4_name_problems("event", name, &mut out);
    if GA4_RESERVED_EVENTS.contains(&name) {
        out.push(format!("GA4 reserves the event name {name:?}"));
    }
    if param_count > GA4_MAX_PARAMS {
        out.push(format!(
            "GA4 accepts at most {GA4_MAX_PARAMS} parameters per event; {name:?} has {param_count}"
        ));
    }
    out
}

/// Why GA4 would reject an event parameter with this name; empty if it would not.
pub fn ga4_param_problems(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    ga4_name_problems("parameter", name, &mut out);
    out
}

/// Lints a plan: naming-convention errors (when the plan says `snake_case`) and GA4 warnings, each
/// at the line of the offending heading or table row.
pub fn lint(plan: &TrackingPlan) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let snake = plan.settings().naming == NamingConvention::SnakeCase;
    let name_check = |kind: &str, name: &str, line: usize, out: &mut Vec<Diagnostic>| {
        if snake && !is_snake_case(name) {
            out.push(Diagnostic::error(
                line,
                format!(
                    "{kind} {name:?} is not snake_case (try {:?})",
                    to_snake_case(name)
                ),
            ));
        }
    };
    for event in plan.events() {
        name_check("event", event.name(), event.line(), &mut out);
        for problem in ga4_event_problems(event.name(), event.properties().len()) {
            out.push(Diagnostic::warning(event.line(), problem));
        }
        for p in event.properties() {
            name_check("property", &p.name, p.line, &mut out);
            for problem in ga4_param_problems(&p.name) {
                out.push(Diagnostic::warning(p.line, problem));
            }
        }
    }
    for t in plan.traits() {
        name_check("trait", &t.name, t.line, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Severity, check};

    #[test]
    fn snake_case_matches_the_conventions_regex() {
        for ok in ["a", "user_signed_up", "a1_b2", "x9"] {
            assert!(is_snake_case(ok), "{ok}");
        }
        for bad in [
            "",
            "A",
            "1a",
            "_a",
            "a_",
            "a__b",
            "Feature Toggled",
            "planTier",
            "a-b",
            "é",
        ] {
            assert!(!is_snake_case(bad), "{bad}");
        }
    }

    #[test]
    fn snake_case_suggestions_split_words_and_camel_humps() {
        assert_eq!(to_snake_case("Feature Toggled"), "feature_toggled");
        assert_eq!(to_snake_case("planTier"), "plan_tier");
        assert_eq!(
            to_snake_case("Integration_Connected"),
            "integration_connected"
        );
        assert_eq!(to_snake_case("  a--b  "), "a_b");
    }

    #[test]
    fn a_long_reserved_event_with_too_many_params_gets_every_ga4_problem() {
        let name = format!("google_{}", "x".repeat(40));
        let problems = ga4_event_problems(&name, 26);
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(ga4_event_problems("page_viewed", 25).is_empty());
        assert_eq!(ga4_event_problems("session_start", 0).len(), 1);
        assert_eq!(ga4_event_problems("9lives", 0).len(), 1);
    }

    #[test]
    fn parameter_names_are_checked_for_length_and_prefix() {
        assert!(ga4_param_problems("plan_tier").is_empty());
        assert_eq!(ga4_param_problems("firebase_id").len(), 1);
        assert_eq!(ga4_param_problems(&"p".repeat(41)).len(), 1);
    }

    #[test]
    fn a_title_case_event_in_the_plan_is_a_naming_error_at_its_heading() {
        let src = "## Events\n\n### Feature Toggled\n\nd\n\n| Name | Type |\n|-|-|\n| featureName | string |\n";
        let diags = check(src);
        let errors: Vec<_> = diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        assert_eq!(errors.len(), 2, "{diags:#?}");
        assert_eq!(errors[0].line, 3);
        assert!(errors[0].message.contains("feature_toggled"));
        assert_eq!(errors[1].line, 9);
        // "Feature Toggled" also breaks GA4's name rule.
        assert!(
            diags
                .iter()
                .any(|d| d.severity == Severity::Warning && d.line == 3)
        );
    }

    #[test]
    fn naming_errors_are_off_when_the_plan_says_none() {
        let src =
            "## Settings\n\n- Naming convention: none\n\n## Events\n\n### FeatureToggled\n\nd\n";
        assert!(check(src).is_empty());
    }
}
