//! Fake Meta Conversions API: `POST /{version}/{pixel_id}/events?access_token=…` with `data` of at
//! most 1,000 events, each with event_name, integer event_time, event_id, action_source and
//! user_data whose `em` / `ph` are lowercase SHA-256 hex; events are deduplicated by event_id.

use super::{Common, Fake, HasCommon, Incoming, is_sha256_hex, json, start};
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The pixel id the fake serves.
pub const PIXEL_ID: &str = "1234567890";
/// The access token the fake accepts.
pub const ACCESS_TOKEN: &str = "EAAB-meta-token";

/// The fake's state.
#[derive(Default)]
pub struct State {
    /// Shared request log and faults.
    pub common: Common,
    /// Events by event_id (deduplicated like Meta does).
    pub events: BTreeMap<String, Value>,
    /// Events received including duplicates.
    pub received: usize,
    /// Shape problems found.
    pub problems: Vec<String>,
}

impl HasCommon for State {
    fn common(&mut self) -> &mut Common {
        &mut self.common
    }
}

fn bad(message: &str) -> Response {
    json(
        400,
        json!({"error": {"message": message, "type": "OAuthException", "code": 100, "fbtrace_id": "Afake"}}),
    )
}

fn handle(s: &mut State, req: &Incoming) -> Response {
    if req.query.get("access_token").map(String::as_str) != Some(ACCESS_TOKEN) {
        return json(
            400,
            json!({"error": {"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190, "fbtrace_id": "Afake"}}),
        );
    }
    let parts: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let [version, pixel, "events"] = parts.as_slice() else {
        return bad("Unsupported post request.");
    };
    if !version.starts_with('v') || *pixel != PIXEL_ID {
        return bad("Unsupported post request.");
    }
    let data = req
        .json()
        .and_then(|b| b.get("data").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    if data.is_empty() || data.len() > 1000 {
        s.problems
            .push(format!("{} events in one call", data.len()));
        return bad("data must hold 1 to 1000 events");
    }
    for e in &data {
        let ok_hashes = ["em", "ph", "external_id"].iter().all(|k| {
            e["user_data"][*k]
                .as_array()
                .is_none_or(|a| a.iter().all(|h| h.as_str().is_some_and(is_sha256_hex)))
        });
        if e["event_name"].as_str().is_none()
            || !e["event_time"].is_i64()
            || e["action_source"].as_str().is_none()
            || e["event_id"].as_str().is_none()
            || !ok_hashes
        {
            s.problems.push(format!("malformed event {e}"));
            return bad("Invalid parameter");
        }
    }
    s.received += data.len();
    for e in data {
        s.events
            .insert(e["event_id"].as_str().unwrap_or("").to_owned(), e);
    }
    json(
        200,
        json!({"events_received": s.received, "messages": [], "fbtrace_id": "Afake"}),
    )
}

/// Starts a fake Meta Graph API.
pub async fn spawn() -> Fake<State> {
    start(|_| State::default(), handle).await
}
