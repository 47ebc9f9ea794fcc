//! Pure Meta Conversions API encoder: page views and track events with SHA-256 hashed identifiers
//! (email lowercased and trimmed, phone as digits without leading zeros, external_id from the
//! userId), `event_id` = messageId so Meta deduplicates against the browser pixel, at most 1,000
//! events a call.

use crate::destinations::{Activation, ActivationKind, Encoded, Method, Request, sha256_hex};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Events per call (Meta's limit).
pub const MAX_EVENTS: usize = 1000;

/// Whether Meta wants this activation: pages and tracks it can match to a person.
pub fn accepts(a: &Activation) -> bool {
    matches!(a.kind, ActivationKind::Page | ActivationKind::Track)
        && (a.email.is_some()
            || a.phone.is_some()
            || a.user_id.is_some()
            || a.context_str(&["ip"]).is_some())
}

/// Meta's normalisation of an email before hashing.
pub fn hash_email(email: &str) -> String {
    sha256_hex(&email.trim().to_lowercase())
}

/// Meta's normalisation of a phone before hashing: digits only, with the country code and without
/// leading zeros; `None` when too short to be a phone number.
pub fn hash_phone(phone: &str) -> Option<String> {
    super::audience::normalise_phone(phone).map(|p| sha256_hex(&p))
}

fn event_name(a: &Activation, standard: &BTreeMap<String, String>) -> String {
    match (a.kind, a.event.as_deref()) {
        (ActivationKind::Page, _) => "PageView".into(),
        (_, Some(e)) => standard.get(e).cloned().unwrap_or_else(|| e.to_owned()),
        _ => "Event".into(),
    }
}

/// The CAPI event for an activation.
pub fn event(a: &Activation, standard_events: &BTreeMap<String, String>) -> Value {
    let mut user = Map::new();
    if let Some(e) = &a.email {
        user.insert("em".into(), json!([hash_email(e)]));
    }
    if let Some(p) = a.phone.as_deref().and_then(hash_phone) {
        user.insert("ph".into(), json!([p]));
    }
    if let Some(u) = &a.user_id {
        user.insert("external_id".into(), json!([sha256_hex(u)]));
    }
    if let Some(ip) = a.context_str(&["ip"]) {
        user.insert("client_ip_address".into(), json!(ip));
    }
    if let Some(ua) = a.context_str(&["userAgent"]) {
        user.insert("client_user_agent".into(), json!(ua));
    }
    let custom: Map<String, Value> = a
        .properties()
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .collect();
    let mut e = json!({
        "event_name": event_name(a, standard_events),
        "event_time": a.timestamp_ms / 1000,
        "event_id": a.message_id.clone().unwrap_or_else(|| a.key.clone()),
        "action_source": "website",
        "user_data": user,
        "custom_data": custom,
    });
    let url = a
        .properties()
        .get("url")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| a.context_str(&["page", "url"]));
    if let Some(url) = url {
        e["event_source_url"] = json!(url);
    }
    e
}

/// Encodes a batch for `/{version}/{pixel_id}/events` (the access token is added by the service).
pub fn encode(
    version: &str,
    pixel_id: &str,
    test_code: Option<&str>,
    standard_events: &BTreeMap<String, String>,
    batch: &[Activation],
) -> Encoded {
    let chosen: Vec<(usize, Value)> = batch
        .iter()
        .enumerate()
        .filter(|(_, a)| accepts(a))
        .map(|(i, a)| (i, event(a, standard_events)))
        .collect();
    let requests = chosen
        .chunks(MAX_EVENTS)
        .map(|chunk| {
            let mut body =
                json!({"data": chunk.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>()});
            if let Some(code) = test_code {
                body["test_event_code"] = json!(code);
            }
            Request {
                method: Method::Post,
                path: format!("/{version}/{pixel_id}/events"),
                body: Some(body),
                covers: chunk.iter().map(|(i, _)| vec![*i]).collect(),
                label: "Conversions API events".into(),
            }
        })
        .collect();
    Encoded {
        requests,
        rejected: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_normalised_and_hashed_and_the_message_id_deduplicates() {
        let a = Activation {
            key: "m:1".into(),
            kind: ActivationKind::Track,
            message_id: Some("msg-1".into()),
            event: Some("trial_started".into()),
            message: Some(json!({"properties": {"plan_tier": "pro"},
                "context": {"ip": "203.0.113.9", "userAgent": "UA"}})),
            timestamp_ms: 1_790_000_000_123,
            profile_id: "p".into(),
            user_id: Some("u-1".into()),
            anonymous_id: None,
            email: Some("ada@example.com".into()),
            phone: Some("+1 (555) 010-2000".into()),
            traits: Map::new(),
            account: None,
            audience: None,
            visit: None,
        };
        assert_eq!(
            hash_email("  Ada@Example.COM "),
            "b5fc85e55755f9e0d030a10ab4429b6b2944855f9a0d60077fe832becbc41d72"
        );
        let standard = [("trial_started".to_owned(), "StartTrial".to_owned())].into();
        let e = encode("v21.0", "123", None, &standard, &[a]);
        assert_eq!(e.requests[0].path, "/v21.0/123/events");
        let ev = &e.requests[0].body.as_ref().unwrap()["data"][0];
        assert_eq!(ev["event_name"], "StartTrial");
        assert_eq!(ev["event_time"], 1_790_000_000);
        assert_eq!(ev["event_id"], "msg-1");
        assert_eq!(ev["action_source"], "website");
        assert_eq!(ev["user_data"]["em"][0], sha256_hex("ada@example.com"));
        assert_eq!(ev["user_data"]["ph"][0], sha256_hex("15550102000"));
        assert_eq!(ev["user_data"]["client_ip_address"], "203.0.113.9");
        assert_eq!(ev["custom_data"]["plan_tier"], "pro");
    }
}
