//! Fake Meta Graph API.
//!
//! - Conversions API: `POST /{version}/{pixel_id}/events?access_token=…` with `data` of at most
//!   1,000 events, each with event_name, integer event_time, event_id, action_source and user_data
//!   whose `em` / `ph` are lowercase SHA-256 hex; events are deduplicated by event_id.
//! - Custom Audiences: `POST` (add) and `DELETE` (remove) `/{version}/{audience_id}/users`, and
//!   `POST /{version}/{audience_id}/usersreplace`, each with `payload: {schema, data}` — the
//!   multi-key schema `["EMAIL", "PHONE", "EXTERN_ID"]`, 1 to 10,000 rows of 64-hex hashes or `""`
//!   (at least one per row) — and `session: {session_id, batch_seq, last_batch_flag,
//!   estimated_num_total}`. A replace session must number its batches 1, 2, … and swaps the
//!   audience's members for everything it uploaded when the batch flagged last arrives.
//! - `GET /{version}/{node}` for the health check.
//!
//! Every call needs the `access_token` query parameter; shape problems are kept in `problems`
//! and answered with a Graph API error.

use super::{Common, Fake, HasCommon, Incoming, is_sha256_hex, json, start};
use axum::http::Method;
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The pixel id the fake serves.
pub const PIXEL_ID: &str = "1234567890";
/// The access token the fake accepts.
pub const ACCESS_TOKEN: &str = "EAAB-meta-token";
/// The Custom Audiences the fake serves.
pub const AUDIENCE_IDS: [&str; 2] = ["23850000000000001", "23850000000000002"];
/// The multi-key schema the fake expects.
pub const SCHEMA: [&str; 3] = ["EMAIL", "PHONE", "EXTERN_ID"];

/// One accepted Custom Audience call.
#[derive(Debug, Clone)]
pub struct AudienceCall {
    /// `POST` or `DELETE`.
    pub method: String,
    /// The Custom Audience id.
    pub audience: String,
    /// `users` or `usersreplace`.
    pub edge: String,
    /// The `session` object.
    pub session: Value,
    /// The rows.
    pub rows: Vec<Vec<String>>,
}

/// A replace session being uploaded.
#[derive(Debug, Clone, Default)]
pub struct Staged {
    /// The Custom Audience.
    pub audience: String,
    /// The batch_seq expected next.
    pub next_seq: i64,
    /// Rows uploaded so far.
    pub rows: Vec<Vec<String>>,
}

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
    /// Custom Audience members (rows of hashes) by audience id.
    pub audiences: BTreeMap<String, Vec<Vec<String>>>,
    /// Custom Audience calls accepted, in order.
    pub audience_calls: Vec<AudienceCall>,
    /// Replace sessions in progress by session_id.
    pub sessions: BTreeMap<i64, Staged>,
    /// Replace sessions completed: (audience, session_id, batches).
    pub replaced: Vec<(String, i64, i64)>,
}

impl State {
    /// The members of a Custom Audience.
    pub fn members(&self, audience: &str) -> Vec<Vec<String>> {
        self.audiences.get(audience).cloned().unwrap_or_default()
    }

    /// Whether a member has this hash in column `col` (0 email, 1 phone, 2 external id).
    pub fn has(&self, audience: &str, col: usize, hash: &str) -> bool {
        self.members(audience).iter().any(|r| r[col] == hash)
    }
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

/// Whether two rows name the same person (a shared non-empty key in the same column).
fn same_person(a: &[String], b: &[String]) -> bool {
    a.iter().zip(b).any(|(x, y)| !x.is_empty() && x == y)
}

/// Checks a Custom Audience body; returns (session, rows) or what is wrong.
fn audience_body(req: &Incoming) -> Result<(Value, Vec<Vec<String>>), String> {
    let body = req.json().ok_or("the body is not JSON")?;
    let payload = body.get("payload").ok_or("payload is required")?;
    if payload.get("schema") != Some(&json!(SCHEMA)) {
        return Err(format!("unexpected schema {}", payload["schema"]));
    }
    let data = payload
        .get("data")
        .and_then(Value::as_array)
        .ok_or("payload.data must be an array")?;
    if data.is_empty() || data.len() > 10_000 {
        return Err(format!("{} users in one call (1 to 10000)", data.len()));
    }
    let mut rows = Vec::with_capacity(data.len());
    for row in data {
        let cells: Vec<String> = row
            .as_array()
            .filter(|r| r.len() == SCHEMA.len())
            .ok_or(format!("row {row} does not match the schema"))?
            .iter()
            .map(|c| c.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or(format!("row {row} holds a non-string"))?;
        if cells.iter().any(|c| !c.is_empty() && !is_sha256_hex(c)) {
            return Err(format!("row {row} holds an unhashed value"));
        }
        if cells.iter().all(String::is_empty) {
            return Err(format!("row {row} identifies nobody"));
        }
        rows.push(cells);
    }
    let session = body.get("session").cloned().ok_or("session is required")?;
    let ok = session["session_id"].as_i64().is_some_and(|s| s > 0)
        && session["batch_seq"].as_i64().is_some_and(|s| s >= 1)
        && session["last_batch_flag"].is_boolean()
        && session
            .get("estimated_num_total")
            .is_none_or(|n| n.as_i64().is_some_and(|n| n >= 0));
    if !ok {
        return Err(format!("malformed session {session}"));
    }
    Ok((session, rows))
}

fn custom_audience(s: &mut State, req: &Incoming, audience: &str, edge: &str) -> Response {
    if !AUDIENCE_IDS.contains(&audience) {
        return bad("Unsupported post request. Object does not exist.");
    }
    let (session, rows) = match audience_body(req) {
        Ok(ok) => ok,
        Err(e) => {
            s.problems.push(format!("{} {}: {e}", req.method, req.path));
            return bad(&format!("Invalid parameter: {e}"));
        }
    };
    let session_id = session["session_id"].as_i64().unwrap_or(0);
    let members = s.audiences.entry(audience.to_owned()).or_default();
    match (req.method.clone(), edge) {
        (Method::POST, "users") => {
            for row in &rows {
                members.retain(|m| !same_person(m, row));
                members.push(row.clone());
            }
        }
        (Method::DELETE, "users") => {
            members.retain(|m| !rows.iter().any(|r| same_person(m, r)));
        }
        (Method::POST, "usersreplace") => {
            let seq = session["batch_seq"].as_i64().unwrap_or(0);
            let staged = s.sessions.entry(session_id).or_insert_with(|| Staged {
                audience: audience.to_owned(),
                next_seq: 1,
                rows: Vec::new(),
            });
            if staged.audience != audience || staged.next_seq != seq {
                let why = format!(
                    "session {session_id}: batch_seq {seq} for {audience}, expected {} for {}",
                    staged.next_seq, staged.audience
                );
                s.problems.push(why.clone());
                return bad(&why);
            }
            staged.next_seq += 1;
            staged.rows.extend(rows.iter().cloned());
            if session["last_batch_flag"] == true {
                let done = s.sessions.remove(&session_id).unwrap_or_default();
                s.replaced
                    .push((audience.to_owned(), session_id, done.next_seq - 1));
                s.audiences.insert(audience.to_owned(), done.rows);
            }
        }
        _ => {
            s.problems
                .push(format!("{} on /{audience}/{edge}", req.method));
            return bad("Unsupported request method.");
        }
    }
    s.audience_calls.push(AudienceCall {
        method: req.method.to_string(),
        audience: audience.to_owned(),
        edge: edge.to_owned(),
        session,
        rows: rows.clone(),
    });
    json(
        200,
        json!({"audience_id": audience, "session_id": session_id, "num_received": rows.len(),
               "num_invalid_entries": 0, "invalid_entry_samples": {}}),
    )
}

fn conversions(s: &mut State, req: &Incoming) -> Response {
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

fn handle(s: &mut State, req: &Incoming) -> Response {
    if req.query.get("access_token").map(String::as_str) != Some(ACCESS_TOKEN) {
        return json(
            400,
            json!({"error": {"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190, "fbtrace_id": "Afake"}}),
        );
    }
    let parts: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    if !parts.first().is_some_and(|v| v.starts_with('v')) {
        return bad("Unsupported request: no API version.");
    }
    match (req.method.clone(), parts.as_slice()) {
        (Method::GET, [_, node]) if *node == PIXEL_ID || AUDIENCE_IDS.contains(node) => {
            json(200, json!({"id": node}))
        }
        (Method::POST, [_, pixel, "events"]) if *pixel == PIXEL_ID => conversions(s, req),
        (_, [_, audience, edge @ ("users" | "usersreplace")]) => {
            custom_audience(s, req, audience, edge)
        }
        _ => bad("Unsupported post request."),
    }
}

/// Starts a fake Meta Graph API.
pub async fn spawn() -> Fake<State> {
    start(|_| State::default(), handle).await
}
