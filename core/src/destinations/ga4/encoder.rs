//! Pure GA4 Measurement Protocol encoder: pages → `page_view` (page_location, page_title,
//! page_referrer), track → the event name with its properties as params, validated against GA4's
//! name and parameter rules first (invalid events are refused with the reason, never sent); one
//! request per client with at most 25 events.

use crate::destinations::{Activation, Encoded, Method, Request, sha256_hex};
use serde_json::{Map, Value, json};
use touchpoint_tracking_plan::{ga4_event_problems, ga4_param_problems};

/// Events per Measurement Protocol request (GA4's limit).
pub const MAX_EVENTS: usize = 25;
/// Longest parameter value GA4 keeps (characters).
pub const MAX_VALUE_CHARS: usize = 100;

/// Whether GA4 wants this activation.
pub fn accepts(a: &Activation) -> bool {
    matches!(a.kind.as_str(), "page" | "screen" | "track")
        && (a.anonymous_id.is_some() || a.user_id.is_some())
}

/// The GA4 client id: the anonymousId, else a stable hash of the userId.
pub fn client_id(a: &Activation) -> Option<String> {
    if let Some(anon) = &a.anonymous_id {
        return Some(anon.clone());
    }
    a.user_id.as_deref().map(user_client_id)
}

/// The client id of a user seen without an anonymousId: a stable hash of the userId.
pub fn user_client_id(user_id: &str) -> String {
    format!("tp.{}", &sha256_hex(user_id)[..20])
}

fn scalar(v: &Value) -> Option<Value> {
    match v {
        Value::String(s) => Some(json!(s.chars().take(MAX_VALUE_CHARS).collect::<String>())),
        Value::Number(_) => Some(v.clone()),
        Value::Bool(b) => Some(json!(if *b { "true" } else { "false" })),
        _ => None,
    }
}

/// The GA4 event for an activation, or why GA4 would refuse it.
pub fn event(a: &Activation) -> Result<Value, String> {
    let props = a.properties();
    let (name, mut params) = match a.kind.as_str() {
        "page" | "screen" => {
            let mut p = Map::new();
            let page = |k: &str| {
                props
                    .get(k)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| a.context_str(&["page", k]))
            };
            if let Some(v) = page("url") {
                p.insert("page_location".into(), json!(v));
            }
            let title = page("title").or_else(|| {
                a.message
                    .as_ref()
                    .and_then(|m| m.get("name"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
            if let Some(v) = title {
                p.insert("page_title".into(), json!(v));
            }
            if let Some(v) = page("referrer").filter(|r| !r.is_empty()) {
                p.insert("page_referrer".into(), json!(v));
            }
            let name = if a.kind == "screen" {
                "screen_view"
            } else {
                "page_view"
            };
            (name.to_owned(), p)
        }
        _ => {
            let name = a.event.clone().unwrap_or_default();
            let mut p = Map::new();
            for (k, v) in &props {
                if let Some(v) = scalar(v) {
                    p.insert(k.clone(), v);
                }
            }
            (name, p)
        }
    };
    let mut problems = ga4_event_problems(&name, params.len());
    for k in params.keys() {
        problems.extend(ga4_param_problems(k));
    }
    if !problems.is_empty() {
        return Err(format!(
            "not sent to GA4 (event {name:?}): {}",
            problems.join("; ")
        ));
    }
    if params.len() < 25 {
        // Without it GA4 does not count the user as active.
        params
            .entry("engagement_time_msec")
            .or_insert_with(|| json!(1));
    }
    Ok(json!({"name": name, "params": params}))
}

/// Encodes a batch for measurement stream `measurement_id` (the api_secret is added by the service).
pub fn encode(measurement_id: &str, batch: &[Activation]) -> Encoded {
    let mut rejected = Vec::new();
    // (client_id, user_id) → events in batch order.
    type Client = (String, Option<String>);
    let mut clients: Vec<(Client, Vec<(usize, Value)>)> = Vec::new();
    for (i, a) in batch.iter().enumerate() {
        if !accepts(a) {
            continue;
        }
        let Some(cid) = client_id(a) else { continue };
        match event(a) {
            Ok(e) => {
                let key = (cid, a.user_id.clone());
                match clients.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, events)) => events.push((i, e)),
                    None => clients.push((key, vec![(i, e)])),
                }
            }
            Err(reason) => rejected.push((i, reason)),
        }
    }
    let mut requests = Vec::new();
    for ((cid, uid), events) in clients {
        for chunk in events.chunks(MAX_EVENTS) {
            let mut body = json!({
                "client_id": cid,
                "events": chunk.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
            });
            if let Some(u) = &uid {
                body["user_id"] = json!(u);
            }
            requests.push(Request {
                method: Method::Post,
                path: format!("/mp/collect?measurement_id={measurement_id}"),
                body: Some(body),
                covers: chunk.iter().map(|(i, _)| vec![*i]).collect(),
                label: "Measurement Protocol collect".into(),
            });
        }
    }
    Encoded { requests, rejected }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(kind: &str, event: Option<&str>, props: Value, anon: Option<&str>) -> Activation {
        Activation {
            key: "m:1".into(),
            kind: kind.into(),
            message_id: None,
            event: event.map(Into::into),
            message: Some(json!({"properties": props, "name": "Pricing"})),
            timestamp_ms: 0,
            profile_id: "p".into(),
            user_id: Some("u-1".into()),
            anonymous_id: anon.map(Into::into),
            email: None,
            phone: None,
            traits: Map::new(),
            account: None,
            audience: None,
        }
    }

    #[test]
    fn pages_become_page_views_and_tracks_keep_their_name_and_params() {
        let page = act(
            "page",
            None,
            json!({"url": "https://x.io/pricing", "title": "Pricing", "referrer": "https://google.com"}),
            Some("anon-1"),
        );
        let track = act(
            "track",
            Some("feature_toggled"),
            json!({"feature_name": "dark_mode", "new_status": true}),
            Some("anon-1"),
        );
        let e = encode("G-TEST", &[page, track]);
        assert!(e.rejected.is_empty());
        assert_eq!(e.requests.len(), 1);
        let body = e.requests[0].body.as_ref().unwrap();
        assert_eq!(e.requests[0].path, "/mp/collect?measurement_id=G-TEST");
        assert_eq!(body["client_id"], "anon-1");
        assert_eq!(body["user_id"], "u-1");
        assert_eq!(body["events"][0]["name"], "page_view");
        assert_eq!(
            body["events"][0]["params"]["page_location"],
            "https://x.io/pricing"
        );
        assert_eq!(body["events"][0]["params"]["page_title"], "Pricing");
        assert_eq!(
            body["events"][0]["params"]["page_referrer"],
            "https://google.com"
        );
        assert_eq!(body["events"][1]["name"], "feature_toggled");
        assert_eq!(body["events"][1]["params"]["new_status"], "true");
    }

    #[test]
    fn invalid_names_are_refused_with_the_reason_and_requests_hold_25_events() {
        let mut batch: Vec<Activation> = (0..60)
            .map(|_| act("track", Some("report_generated"), json!({}), None))
            .collect();
        batch.push(act("track", Some("1-bad name"), json!({}), None));
        batch.push(act(
            "track",
            Some("ok_event"),
            json!({"firebase_x": 1}),
            None,
        ));
        let e = encode("G-TEST", &batch);
        assert_eq!(
            e.requests
                .iter()
                .map(|r| r.covers.len())
                .collect::<Vec<_>>(),
            vec![25, 25, 10]
        );
        assert_eq!(e.rejected.len(), 2);
        assert_eq!(e.rejected[0].0, 60);
        assert!(e.rejected[0].1.contains("[A-Za-z][A-Za-z0-9_]*"));
        assert!(e.rejected[1].1.contains("firebase_"));
        // No anonymousId: a stable hash of the user id.
        assert!(
            e.requests[0].body.as_ref().unwrap()["client_id"]
                .as_str()
                .unwrap()
                .starts_with("tp.")
        );
    }
}
