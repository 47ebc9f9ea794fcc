//! Fake webhook receiver: verifies `X-Touchpoint-Signature` / `X-Touchpoint-Timestamp` with the
//! shared secret and keeps events by id (so redeliveries are visible as repeats); can be told to
//! refuse every batch with a 422 that quotes it back (as careless receivers do).

use super::{Common, Fake, HasCommon, Incoming, json, start};
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The signing secret the receiver shares with Touchpoint.
pub const SECRET: &str = "whsec-test";

/// The receiver's state.
#[derive(Default)]
pub struct State {
    /// Shared request log and faults.
    pub common: Common,
    /// Events by id.
    pub events: BTreeMap<String, Value>,
    /// Deliveries per event id.
    pub deliveries: BTreeMap<String, usize>,
    /// Requests whose signature did not verify.
    pub bad_signatures: usize,
    /// While true, every signed batch is refused with a 422 quoting the body.
    pub reject: bool,
}

impl HasCommon for State {
    fn common(&mut self) -> &mut Common {
        &mut self.common
    }
}

fn handle(s: &mut State, req: &Incoming) -> Response {
    let now = chrono::Utc::now().timestamp();
    let verified = touchpoint_core::ingest::edge::verify(
        SECRET.as_bytes(),
        req.header("x-touchpoint-timestamp").as_deref(),
        req.header("x-touchpoint-signature").as_deref(),
        req.body.as_bytes(),
        now,
        std::time::Duration::from_secs(300),
    );
    if verified.is_err() {
        s.bad_signatures += 1;
        return json(401, json!({"error": "bad signature"}));
    }
    if s.reject {
        return json(422, json!({"error": "unprocessable", "received": req.body}));
    }
    for e in req
        .json()
        .and_then(|b| b.get("events").and_then(Value::as_array).cloned())
        .unwrap_or_default()
    {
        let id = e["id"].as_str().unwrap_or("").to_owned();
        *s.deliveries.entry(id.clone()).or_default() += 1;
        s.events.insert(id, e);
    }
    json(200, json!({"ok": true}))
}

/// Starts a webhook receiver.
pub async fn spawn() -> Fake<State> {
    start(|_| State::default(), handle).await
}
