//! Pure GA4 Measurement Protocol encoder: pages → `page_view` (page_location, page_title,
//! page_referrer), track → the event name with its properties as params, validated against GA4's
//! name and parameter rules first (invalid events are refused with the reason, never sent); one
//! request per (client, user, consent) with at most 25 events.
//!
//! Fidelity, so server-side events count like tagged ones:
//! - **sessions**: every event carries `session_id` — the SDK's `context.sessionId` when it sends
//!   one (RudderStack does), else the start (in seconds, like gtag's) of the visit the activation
//!   stage derived ([`crate::destinations::visits`]: 30 minutes of inactivity end a visit), else the
//!   30-minute window of the event — and `engagement_time_msec`, the time since the visit's
//!   previous event (1 for its first), so GA4 counts engaged, active users;
//! - **late events**: `timestamp_micros` (per event) is the event's own time; GA4 files events
//!   older than 72 hours under its 72-hour boundary, so such events are refused with the reason
//!   instead ([`MAX_BACKDATE_MS`], less a minute's margin for the call); events stamped now or
//!   later carry no timestamp (GA4 uses its receipt time);
//! - **campaigns**: `context.campaign` (the UTM parameters: name, source, medium, term, content,
//!   id) becomes a `campaign_details` event just before the event, once per session and request;
//! - **consent**: `context.consent.categoryPreferences` sets the request's `consent`
//!   (`ad_user_data` and `ad_personalization` both `GRANTED` when the `Advertising` category is
//!   consented, else `DENIED`; absent when no consent was collected). Analytics consent itself is
//!   enforced before an activation reaches GA4 at all.

use crate::destinations::consent::{self, Decision};
use crate::destinations::visits::INACTIVITY_MS;
use crate::destinations::{Activation, ActivationKind, Encoded, Method, Request, sha256_hex};
use serde_json::{Map, Value, json};
use touchpoint_tracking_plan::{ga4_event_problems, ga4_param_problems};

/// Events per Measurement Protocol request (GA4's limit).
pub const MAX_EVENTS: usize = 25;
/// Longest parameter value GA4 keeps (characters).
pub const MAX_VALUE_CHARS: usize = 100;
/// Parameters per event (GA4's limit).
pub const MAX_PARAMS: usize = 25;
/// How far back GA4 accepts an event's own timestamp (72 hours).
pub const MAX_BACKDATE_MS: i64 = 72 * 60 * 60 * 1000;
/// Kept off [`MAX_BACKDATE_MS`] so an event still fits when the call arrives.
pub const BACKDATE_MARGIN_MS: i64 = 60 * 1000;

/// Whether GA4 wants this activation.
pub fn accepts(a: &Activation) -> bool {
    matches!(
        a.kind,
        ActivationKind::Page | ActivationKind::Screen | ActivationKind::Track
    ) && (a.anonymous_id.is_some() || a.user_id.is_some())
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
    let (name, mut params) = match a.kind {
        ActivationKind::Page | ActivationKind::Screen => {
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
            let name = if a.kind == ActivationKind::Screen {
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
    // Session fields take the room the event's own parameters leave (they never displace one).
    if params.len() < MAX_PARAMS {
        params
            .entry("session_id")
            .or_insert_with(|| json!(session_id(a)));
    }
    if params.len() < MAX_PARAMS {
        // Without it GA4 does not count the user as active.
        params
            .entry("engagement_time_msec")
            .or_insert_with(|| json!(engagement_time_msec(a)));
    }
    Ok(json!({"name": name, "params": params}))
}

/// The session an event belongs to: the SDK's `context.sessionId` (a positive number, or digits),
/// else the start of the activation's visit in seconds, else its 30-minute window's start.
pub fn session_id(a: &Activation) -> i64 {
    let from_sdk = a
        .message
        .as_ref()
        .and_then(|m| m.get("context"))
        .and_then(|c| c.get("sessionId"))
        .and_then(|v| match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        })
        .filter(|n| *n > 0);
    from_sdk.unwrap_or_else(|| match &a.visit {
        Some(v) => v.started_ms.div_euclid(1000),
        None => a.timestamp_ms.div_euclid(INACTIVITY_MS) * (INACTIVITY_MS / 1000),
    })
}

/// Milliseconds since the visit's previous event (at least 1; 1 for a visit's first event).
pub fn engagement_time_msec(a: &Activation) -> i64 {
    a.visit
        .and_then(|v| v.previous_ms)
        .map_or(1, |p| (a.timestamp_ms - p).clamp(1, INACTIVITY_MS))
}

/// The event's `timestamp_micros`: `None` for an event stamped now or later (GA4 uses its receipt
/// time), an error for one older than GA4's 72-hour window.
pub fn timestamp_micros(at_ms: i64, now_ms: i64) -> Result<Option<i64>, String> {
    if at_ms >= now_ms {
        return Ok(None);
    }
    let age = now_ms - at_ms;
    if age > MAX_BACKDATE_MS - BACKDATE_MARGIN_MS {
        return Err(format!(
            "not sent to GA4: the event is {:.1} hours old and GA4 files events older than 72 \
             hours under its 72-hour boundary",
            age as f64 / 3_600_000.0
        ));
    }
    Ok(Some(at_ms.saturating_mul(1000)))
}

/// The `campaign_details` parameters of `context.campaign` (the UTM parameters), if any.
pub fn campaign(a: &Activation) -> Option<Map<String, Value>> {
    let c = a
        .message
        .as_ref()?
        .get("context")?
        .get("campaign")?
        .as_object()?;
    let mut p = Map::new();
    for (ours, theirs) in [
        ("id", "campaign_id"),
        ("name", "campaign"),
        ("source", "source"),
        ("medium", "medium"),
        ("term", "term"),
        ("content", "content"),
    ] {
        if let Some(v) = c
            .get(ours)
            .and_then(scalar)
            .filter(|v| v.as_str() != Some(""))
        {
            p.insert(theirs.into(), v);
        }
    }
    (!p.is_empty()).then_some(p)
}

/// The request's `consent` from the message's `context.consent`: `Advertising` consented →
/// `GRANTED`, refused → `DENIED`; `None` when no consent was collected.
pub fn consent_of(a: &Activation) -> Option<Value> {
    let given = a.message.as_ref().and_then(consent::of_message)?;
    let state = match consent::permits(&["Advertising".to_owned()], Some(given), false) {
        Decision::Permit => "GRANTED",
        Decision::Deny(_) => "DENIED",
        Decision::NotCollected => return None,
    };
    Some(json!({"ad_user_data": state, "ad_personalization": state}))
}

/// Encodes a batch for measurement stream `measurement_id` at `now_ms` (the api_secret is added by
/// the service).
pub fn encode(measurement_id: &str, batch: &[Activation], now_ms: i64) -> Encoded {
    let mut rejected = Vec::new();
    // (client_id, user_id, consent) → events in batch order, each with the activation it carries.
    type Client = (String, Option<String>, Option<String>);
    let mut clients: Vec<(Client, Vec<(usize, Value)>)> = Vec::new();
    let mut campaigns_sent: Vec<(Client, i64, Value)> = Vec::new();
    for (i, a) in batch.iter().enumerate() {
        if !accepts(a) {
            continue;
        }
        let Some(cid) = client_id(a) else { continue };
        let stamped = timestamp_micros(a.timestamp_ms, now_ms).and_then(|ts| Ok((ts, event(a)?)));
        let (ts, mut e) = match stamped {
            Ok(ok) => ok,
            Err(reason) => {
                rejected.push((i, reason));
                continue;
            }
        };
        if let Some(ts) = ts {
            e["timestamp_micros"] = json!(ts);
        }
        let consent = consent_of(a).map(|c| c.to_string());
        let key = (cid, a.user_id.clone(), consent);
        let mut out = Vec::with_capacity(2);
        if let Some(mut params) = campaign(a) {
            let session = session_id(a);
            let details = Value::Object(params.clone());
            let seen = campaigns_sent
                .iter()
                .any(|(k, s, d)| *k == key && *s == session && *d == details);
            if !seen {
                campaigns_sent.push((key.clone(), session, details));
                params.insert("session_id".into(), json!(session));
                let mut c = json!({"name": "campaign_details", "params": params});
                if let Some(ts) = ts {
                    c["timestamp_micros"] = json!(ts);
                }
                out.push((i, c));
            }
        }
        out.push((i, e));
        match clients.iter_mut().find(|(k, _)| *k == key) {
            Some((_, events)) => events.extend(out),
            None => clients.push((key, out)),
        }
    }
    let mut requests = Vec::new();
    for ((cid, uid, consent), events) in clients {
        for chunk in events.chunks(MAX_EVENTS) {
            let mut body = json!({
                "client_id": cid,
                "events": chunk.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
            });
            if let Some(u) = &uid {
                body["user_id"] = json!(u);
            }
            if let Some(c) = consent
                .as_deref()
                .and_then(|c| serde_json::from_str(c).ok())
            {
                body["consent"] = c;
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
    use crate::destinations::visits::Visit;

    /// 2026-09-21T14:13:20Z.
    const NOW: i64 = 1_790_000_000_000;
    const MIN: i64 = 60_000;

    fn act(kind: &str, event: Option<&str>, props: Value, anon: Option<&str>) -> Activation {
        Activation {
            key: "m:1".into(),
            kind: ActivationKind::parse(kind).unwrap(),
            message_id: None,
            event: event.map(Into::into),
            message: Some(json!({"properties": props, "name": "Pricing"})),
            timestamp_ms: NOW - MIN,
            profile_id: "p".into(),
            user_id: Some("u-1".into()),
            anonymous_id: anon.map(Into::into),
            email: None,
            phone: None,
            traits: Map::new(),
            account: None,
            audience: None,
            visit: None,
        }
    }

    fn with_context(mut a: Activation, context: Value) -> Activation {
        a.message.as_mut().unwrap()["context"] = context;
        a
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
        let e = encode("G-TEST", &[page, track], NOW);
        assert!(e.rejected.is_empty());
        assert_eq!(e.requests.len(), 1);
        let body = e.requests[0].body.as_ref().unwrap();
        assert_eq!(e.requests[0].path, "/mp/collect?measurement_id=G-TEST");
        assert_eq!(body["client_id"], "anon-1");
        assert_eq!(body["user_id"], "u-1");
        assert!(body.get("consent").is_none(), "no consent collected");
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
        let e = encode("G-TEST", &batch, NOW);
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

    #[test]
    fn events_of_a_visit_share_its_session_and_count_the_time_since_the_previous_one() {
        let start = NOW - 20 * MIN;
        let mut first = act("page", None, json!({}), Some("anon-1"));
        first.timestamp_ms = start;
        first.visit = Some(Visit {
            started_ms: start,
            previous_ms: None,
        });
        let mut second = act("track", Some("report_generated"), json!({}), Some("anon-1"));
        second.timestamp_ms = start + 90_000;
        second.visit = Some(Visit {
            started_ms: start,
            previous_ms: Some(start),
        });
        let e = encode("G-TEST", &[first, second], NOW);
        let events = &e.requests[0].body.as_ref().unwrap()["events"];
        assert_eq!(events[0]["params"]["session_id"], start / 1000);
        assert_eq!(events[1]["params"]["session_id"], start / 1000);
        assert_eq!(events[0]["params"]["engagement_time_msec"], 1);
        assert_eq!(events[1]["params"]["engagement_time_msec"], 90_000);
        assert_eq!(events[0]["timestamp_micros"], start * 1000);
        assert_eq!(events[1]["timestamp_micros"], (start + 90_000) * 1000);

        // The SDK's own session id wins; without a visit, the 30-minute window.
        let sdk = with_context(
            act("track", Some("x_done"), json!({}), Some("a")),
            json!({"sessionId": 1_789_999_000_123_i64}),
        );
        assert_eq!(session_id(&sdk), 1_789_999_000_123);
        let bare = act("track", Some("x_done"), json!({}), Some("a"));
        let window = session_id(&bare);
        assert_eq!(window % 1800, 0);
        assert!(bare.timestamp_ms / 1000 - window < 1800);
        // An event with 25 parameters of its own keeps them all.
        let full: Map<String, Value> = (0..25).map(|i| (format!("p{i}"), json!(i))).collect();
        let e = event(&act(
            "track",
            Some("x_done"),
            Value::Object(full),
            Some("a"),
        ))
        .unwrap();
        assert_eq!(e["params"].as_object().unwrap().len(), 25);
        assert!(e["params"].get("session_id").is_none());
    }

    #[test]
    fn late_events_keep_their_time_within_72_hours_and_older_ones_are_refused() {
        assert_eq!(
            timestamp_micros(NOW - 71 * 60 * MIN, NOW),
            Ok(Some((NOW - 71 * 60 * MIN) * 1000))
        );
        assert_eq!(timestamp_micros(NOW, NOW), Ok(None));
        assert_eq!(timestamp_micros(NOW + MIN, NOW), Ok(None));
        let err = timestamp_micros(NOW - 72 * 60 * MIN, NOW).unwrap_err();
        assert!(err.contains("72 hours"), "{err}");
        let mut old = act("track", Some("report_generated"), json!({}), Some("a"));
        old.timestamp_ms = NOW - 4 * 24 * 60 * MIN;
        let recent = act("track", Some("report_generated"), json!({}), Some("a"));
        let e = encode("G-TEST", &[old, recent], NOW);
        assert_eq!(e.rejected.len(), 1);
        assert_eq!(e.rejected[0].0, 0);
        assert!(
            e.rejected[0].1.contains("96.0 hours old"),
            "{}",
            e.rejected[0].1
        );
        assert_eq!(e.requests[0].covers, vec![vec![1]]);
    }

    #[test]
    fn campaigns_become_one_campaign_details_event_per_session_and_consent_sets_the_ad_signals() {
        let context = json!({
            "campaign": {"name": "spring_sale", "source": "newsletter", "medium": "email",
                         "term": "", "content": "hero"},
            "consent": {"categoryPreferences": {"Analytics": true, "Advertising": false}},
        });
        let page = with_context(
            act("page", None, json!({}), Some("anon-1")),
            context.clone(),
        );
        let track = with_context(
            act("track", Some("report_generated"), json!({}), Some("anon-1")),
            context,
        );
        let granted = with_context(
            act("track", Some("report_generated"), json!({}), Some("anon-1")),
            json!({"consent": {"categoryPreferences": {"Analytics": true, "Advertising": true}}}),
        );
        let e = encode("G-TEST", &[page, track, granted], NOW);
        assert_eq!(e.requests.len(), 2, "consent differs, so requests do");
        let denied = e.requests[0].body.as_ref().unwrap();
        assert_eq!(
            denied["consent"],
            json!({"ad_user_data": "DENIED", "ad_personalization": "DENIED"})
        );
        let names: Vec<&str> = denied["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["campaign_details", "page_view", "report_generated"]);
        let details = &denied["events"][0]["params"];
        assert_eq!(details["campaign"], "spring_sale");
        assert_eq!(details["source"], "newsletter");
        assert_eq!(details["medium"], "email");
        assert_eq!(details["content"], "hero");
        assert!(details.get("term").is_none(), "empty values are left out");
        assert_eq!(
            details["session_id"],
            denied["events"][1]["params"]["session_id"]
        );
        assert_eq!(e.requests[0].covers, vec![vec![0], vec![0], vec![1]]);
        assert_eq!(
            e.requests[1].body.as_ref().unwrap()["consent"]["ad_user_data"],
            "GRANTED"
        );
    }
}
