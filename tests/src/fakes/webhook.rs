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

/// Checks a webhook signature the way a receiver written from our documentation would, without
/// core's code: `X-Touchpoint-Signature: v1=hex(HMAC-SHA256(secret, "{timestamp}.{body}"))`, and
/// `X-Touchpoint-Timestamp` (Unix seconds) within five minutes of now.
fn signature_holds(
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> bool {
    use hmac::{Hmac, Mac};
    let (Some(ts), Some(sig)) = (timestamp, signature) else {
        return false;
    };
    let Ok(at) = ts.trim().parse::<i64>() else {
        return false;
    };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(format!("{at}.").as_bytes());
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    sig.trim() == format!("v1={expected}") && (now - at).abs() <= 300
}

fn handle(s: &mut State, req: &Incoming) -> Response {
    let now = chrono::Utc::now().timestamp();
    let verified = signature_holds(
        req.header("x-touchpoint-timestamp").as_deref(),
        req.header("x-touchpoint-signature").as_deref(),
        req.body.as_bytes(),
        now,
    );
    if !verified {
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
