//! Consent categories: Segment's `context.consent.categoryPreferences` enforced per destination.
//!
//! Every destination belongs to consent categories (Segment's category names: GA4 `Analytics`,
//! Meta `Advertising`, the CRMs, Resend and the webhook `Functional`; overridable per deployment).
//! [`permits`] is the whole rule, pure and tested here; the activation stage applies it to each
//! (activation, destination) pair before an outbox row is made:
//!
//! - a destination with no categories receives everything;
//! - consent collected (`categoryPreferences` present and not null): the destination receives the
//!   activation only if **every** one of its categories is `true` (a missing category, any other
//!   value, or preferences that are not an object mean "not consented");
//! - consent not collected (no `context.consent.categoryPreferences`): delivered, as Segment does,
//!   unless the deployment sets [`ConsentConfig::require`].
//!
//! Message activations use the message's own consent (consent as it was when the event happened);
//! audience activations use the profile's latest consent (its newest message, by event time, that
//! carries `categoryPreferences`).

use crate::config::ConfigError;
use crate::destinations::config::var;
use serde_json::Value;
use std::collections::BTreeMap;

/// The consent categories each destination belongs to unless configured otherwise.
pub const DEFAULT_CATEGORIES: [(&str, &[&str]); 6] = [
    ("salesforce", &["Functional"]),
    ("hubspot", &["Functional"]),
    ("ga4", &["Analytics"]),
    ("resend", &["Functional"]),
    ("meta", &["Advertising"]),
    ("webhook", &["Functional"]),
];

/// Consent settings of the deployment.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsentConfig {
    /// Treat "no consent collected" as "nothing consented": activations without a consent object
    /// (and profiles that never sent one) reach only destinations without categories
    /// (`TOUCHPOINT_REQUIRE_CONSENT`, default false — Segment's behaviour).
    pub require: bool,
    /// Destination name → its categories (`TOUCHPOINT_<NAME>_CONSENT_CATEGORIES`, comma-separated,
    /// e.g. `TOUCHPOINT_RESEND_CONSENT_CATEGORIES=Marketing`; `none` for no categories); defaults
    /// in [`DEFAULT_CATEGORIES`].
    pub categories: BTreeMap<&'static str, Vec<String>>,
}

impl Default for ConsentConfig {
    fn default() -> Self {
        ConsentConfig {
            require: false,
            categories: DEFAULT_CATEGORIES
                .iter()
                .map(|(d, cats)| (*d, cats.iter().map(|c| (*c).to_owned()).collect()))
                .collect(),
        }
    }
}

impl ConsentConfig {
    /// Reads `TOUCHPOINT_REQUIRE_CONSENT` and every `TOUCHPOINT_<NAME>_CONSENT_CATEGORIES`.
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<ConsentConfig, ConfigError> {
        let mut c = ConsentConfig::default();
        if let Some(v) = var(get, "TOUCHPOINT_REQUIRE_CONSENT") {
            c.require = match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    return Err(ConfigError::new(
                        "TOUCHPOINT_REQUIRE_CONSENT",
                        format!("expected true or false, got {v:?}"),
                    ));
                }
            };
        }
        for (name, cats) in &mut c.categories {
            let key = format!(
                "TOUCHPOINT_{}_CONSENT_CATEGORIES",
                name.to_ascii_uppercase()
            );
            if let Some(v) = var(get, &key) {
                *cats = parse_categories(&v);
            }
        }
        Ok(c)
    }

    /// The categories of a destination (none for a name without an entry).
    pub fn categories_of(&self, destination: &str) -> &[String] {
        self.categories.get(destination).map_or(&[], Vec::as_slice)
    }
}

/// `Advertising, Analytics` → both; `none` → no categories; blanks and repeats are ignored.
fn parse_categories(v: &str) -> Vec<String> {
    if v.trim().eq_ignore_ascii_case("none") {
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::new();
    for c in v.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(c)) {
            out.push(c.to_owned());
        }
    }
    out
}

/// What consent says about delivering one activation to one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every category of the destination is consented, or it has none.
    Permit,
    /// No consent was collected and the deployment does not require it: delivered.
    NotCollected,
    /// Not delivered: the destination's categories that are not consented.
    Deny(Vec<String>),
}

impl Decision {
    /// Whether the activation may be delivered.
    pub fn allows(&self) -> bool {
        !matches!(self, Decision::Deny(_))
    }
}

/// The `context.consent` object of a message, if it has one.
pub fn of_message(message: &Value) -> Option<&Value> {
    message.get("context")?.get("consent")
}

/// Whether a `context.consent` object carries collected preferences (what makes a message count as
/// a profile's latest consent).
pub fn is_collected(consent: Option<&Value>) -> bool {
    preferences(consent).is_some()
}

fn preferences(consent: Option<&Value>) -> Option<&Value> {
    consent?.get("categoryPreferences").filter(|p| !p.is_null())
}

/// The rule: may an activation whose consent object (`context.consent`) is `consent` go to a
/// destination in `categories`? `require` is [`ConsentConfig::require`].
pub fn permits(categories: &[String], consent: Option<&Value>, require: bool) -> Decision {
    if categories.is_empty() {
        return Decision::Permit;
    }
    let Some(prefs) = preferences(consent) else {
        return if require {
            Decision::Deny(categories.to_vec())
        } else {
            Decision::NotCollected
        };
    };
    let denied: Vec<String> = categories
        .iter()
        .filter(|c| !consented(prefs, c))
        .cloned()
        .collect();
    if denied.is_empty() {
        Decision::Permit
    } else {
        Decision::Deny(denied)
    }
}

/// A category is consented when the preferences name it (ignoring ASCII case) and every such
/// entry is the boolean `true`.
fn consented(prefs: &Value, category: &str) -> bool {
    let Some(map) = prefs.as_object() else {
        return false;
    };
    let mut named = map
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(category))
        .peekable();
    named.peek().is_some() && named.all(|(_, v)| *v == Value::Bool(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cats(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| (*s).to_owned()).collect()
    }

    fn consent(prefs: Value) -> Value {
        json!({ "categoryPreferences": prefs })
    }

    #[test]
    fn a_destination_receives_a_message_only_when_all_its_categories_are_consented() {
        let c = consent(json!({"Advertising": false, "Analytics": true, "Functional": true}));
        assert_eq!(
            permits(&cats(&["Analytics"]), Some(&c), false),
            Decision::Permit
        );
        assert_eq!(
            permits(&cats(&["Advertising"]), Some(&c), false),
            Decision::Deny(cats(&["Advertising"]))
        );
        assert_eq!(
            permits(&cats(&["Analytics", "Advertising"]), Some(&c), false),
            Decision::Deny(cats(&["Advertising"])),
            "one refused category is enough to refuse"
        );
    }

    #[test]
    fn a_category_missing_from_collected_preferences_is_not_consented() {
        let c = consent(json!({"Analytics": true}));
        assert_eq!(
            permits(&cats(&["Functional"]), Some(&c), false),
            Decision::Deny(cats(&["Functional"]))
        );
        let empty = consent(json!({}));
        assert!(!permits(&cats(&["Analytics"]), Some(&empty), false).allows());
    }

    #[test]
    fn only_the_boolean_true_counts_as_consent() {
        for v in [
            json!("true"),
            json!(1),
            json!(null),
            json!({}),
            json!([true]),
        ] {
            let c = consent(json!({ "Analytics": v }));
            assert!(
                !permits(&cats(&["Analytics"]), Some(&c), false).allows(),
                "{v} is not consent"
            );
        }
    }

    #[test]
    fn preferences_that_are_not_an_object_consent_to_nothing() {
        for p in [json!(true), json!("all"), json!(["Analytics"])] {
            let c = consent(p.clone());
            assert!(
                !permits(&cats(&["Analytics"]), Some(&c), false).allows(),
                "{p}"
            );
        }
    }

    #[test]
    fn category_names_match_ignoring_ascii_case_and_a_conflicting_duplicate_refuses() {
        let c = consent(json!({"analytics": true}));
        assert!(permits(&cats(&["Analytics"]), Some(&c), false).allows());
        let both = consent(json!({"analytics": true, "Analytics": false}));
        assert!(!permits(&cats(&["Analytics"]), Some(&both), false).allows());
    }

    #[test]
    fn without_collected_consent_messages_are_delivered_unless_the_deployment_requires_consent() {
        let none: [Option<Value>; 4] = [
            None,
            Some(json!({})),
            Some(json!({"categoryPreferences": null})),
            Some(json!("granted")),
        ];
        for c in &none {
            assert_eq!(
                permits(&cats(&["Advertising"]), c.as_ref(), false),
                Decision::NotCollected,
                "{c:?}"
            );
            assert_eq!(
                permits(&cats(&["Advertising"]), c.as_ref(), true),
                Decision::Deny(cats(&["Advertising"])),
                "{c:?}"
            );
            assert!(!is_collected(c.as_ref()));
        }
    }

    #[test]
    fn a_destination_without_categories_receives_everything() {
        let refused = consent(json!({"Advertising": false}));
        assert_eq!(permits(&[], Some(&refused), true), Decision::Permit);
        assert_eq!(permits(&[], None, true), Decision::Permit);
    }

    #[test]
    fn the_consent_object_is_read_from_the_message_context() {
        let m = json!({"type": "track", "context": {"consent": {"categoryPreferences": {"Analytics": true}}}});
        assert!(is_collected(of_message(&m)));
        assert!(of_message(&json!({"type": "track"})).is_none());
    }

    /// Every combination of three categories, each consented `true`, `false` or absent, against every
    /// subset of them as a destination's categories: permitted exactly when the subset is all `true`.
    #[test]
    fn permission_holds_exactly_when_every_category_of_the_destination_is_true() {
        let names = ["Advertising", "Analytics", "Functional"];
        for state in 0..27u32 {
            let mut prefs = serde_json::Map::new();
            let mut yes = Vec::new();
            for (i, n) in names.iter().enumerate() {
                match state / 3u32.pow(i as u32) % 3 {
                    0 => {
                        prefs.insert((*n).into(), Value::Bool(true));
                        yes.push(*n);
                    }
                    1 => {
                        prefs.insert((*n).into(), Value::Bool(false));
                    }
                    _ => {}
                }
            }
            let c = consent(Value::Object(prefs));
            for mask in 1..8u32 {
                let dest: Vec<String> = names
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, n)| (*n).to_owned())
                    .collect();
                let expected = dest.iter().all(|d| yes.contains(&d.as_str()));
                for require in [false, true] {
                    let d = permits(&dest, Some(&c), require);
                    assert_eq!(d.allows(), expected, "{c} → {dest:?}");
                    if let Decision::Deny(missing) = d {
                        assert!(missing.iter().all(|m| !yes.contains(&m.as_str())));
                        assert!(missing.iter().all(|m| dest.contains(m)));
                    }
                }
            }
        }
    }

    #[test]
    fn categories_come_from_defaults_and_can_be_overridden_or_removed_per_destination() {
        let defaults = ConsentConfig::from_lookup(&|_| None).unwrap();
        assert!(!defaults.require);
        assert_eq!(defaults.categories_of("ga4"), ["Analytics"]);
        assert_eq!(defaults.categories_of("meta"), ["Advertising"]);
        assert_eq!(defaults.categories_of("salesforce"), ["Functional"]);
        assert!(defaults.categories_of("unknown").is_empty());
        let env = |k: &str| {
            match k {
                "TOUCHPOINT_REQUIRE_CONSENT" => Some("true"),
                "TOUCHPOINT_RESEND_CONSENT_CATEGORIES" => {
                    Some(" Marketing, Functional ,marketing,")
                }
                "TOUCHPOINT_WEBHOOK_CONSENT_CATEGORIES" => Some("none"),
                _ => None,
            }
            .map(str::to_owned)
        };
        let c = ConsentConfig::from_lookup(&env).unwrap();
        assert!(c.require);
        assert_eq!(c.categories_of("resend"), ["Marketing", "Functional"]);
        assert!(c.categories_of("webhook").is_empty());
        assert_eq!(c.categories_of("ga4"), ["Analytics"]);
    }

    #[test]
    fn an_unreadable_require_consent_names_the_variable() {
        let env = |k: &str| (k == "TOUCHPOINT_REQUIRE_CONSENT").then(|| "maybe".to_owned());
        let err = ConsentConfig::from_lookup(&env).unwrap_err();
        assert!(err.to_string().contains("TOUCHPOINT_REQUIRE_CONSENT"));
    }
}
