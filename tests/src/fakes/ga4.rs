//! Fake GA4 Measurement Protocol: `/mp/collect` (checks measurement_id, api_secret, client_id,
//! ≤ 25 events, name and parameter rules; keeps what a real property would count) and
//! `/debug/mp/collect` answering `validationMessages`.

use super::{Common, Fake, HasCommon, Incoming, json, start};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The measurement id the fake accepts.
pub const MEASUREMENT_ID: &str = "G-TOUCHPOINT";
/// The API secret the fake accepts.
pub const API_SECRET: &str = "ga4-secret";

/// The fake's state.
#[derive(Default)]
pub struct State {
    /// Shared request log and faults.
    pub common: Common,
    /// Events accepted: (client_id, user_id, event).
    pub events: Vec<(String, Option<String>, Value)>,
    /// Problems a real GA4 would silently drop the hit for.
    pub problems: Vec<String>,
}

impl HasCommon for State {
    fn common(&mut self) -> &mut Common {
        &mut self.common
    }
}

fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    n.len() <= 40
        && c.next().is_some_and(|f| f.is_ascii_alphabetic())
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
        && !["google_", "ga_", "firebase_"]
            .iter()
            .any(|p| n.starts_with(p))
}

/// The validation messages GA4 would give a body.
pub fn validate(body: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let msg = |path: &str, d: &str, code: &str| json!({"fieldPath": path, "description": d, "validationCode": code});
    if body["client_id"].as_str().is_none_or(str::is_empty) {
        out.push(msg("client_id", "client_id is required.", "VALUE_REQUIRED"));
    }
    let events = body["events"].as_array().cloned().unwrap_or_default();
    if events.is_empty() || events.len() > 25 {
        out.push(msg(
            "events",
            "A request may hold 1 to 25 events.",
            "VALUE_OUT_OF_BOUNDS",
        ));
    }
    for e in &events {
        let name = e["name"].as_str().unwrap_or("");
        if !valid_name(name) {
            out.push(msg(
                "events.name",
                &format!("Event name {name} is invalid."),
                "NAME_INVALID",
            ));
        }
        let params = e["params"].as_object().cloned().unwrap_or_default();
        if params.len() > 25 {
            out.push(msg(
                "events.params",
                "At most 25 params.",
                "VALUE_OUT_OF_BOUNDS",
            ));
        }
        for k in params.keys() {
            if !valid_name(k) {
                out.push(msg(
                    "events.params",
                    &format!("Param name {k} is invalid."),
                    "NAME_INVALID",
                ));
            }
        }
    }
    out
}

fn handle(s: &mut State, req: &Incoming) -> Response {
    let authorised = req.query.get("measurement_id").map(String::as_str) == Some(MEASUREMENT_ID)
        && req.query.get("api_secret").map(String::as_str) == Some(API_SECRET);
    let body = req.json().unwrap_or(Value::Null);
    match req.path.as_str() {
        "/debug/mp/collect" => json(
            200,
            json!({"validationMessages": if authorised {
                validate(&body)
            } else {
                vec![json!({"fieldPath": "api_secret", "description": "Unknown api_secret.", "validationCode": "VALUE_INVALID"})]
            }}),
        ),
        "/mp/collect" => {
            // Like the real endpoint: 204 whatever the content; problems are dropped silently.
            if !authorised {
                s.problems.push("unauthorised hit".into());
            } else {
                let problems = validate(&body);
                if problems.is_empty() {
                    for e in body["events"].as_array().cloned().unwrap_or_default() {
                        s.events.push((
                            body["client_id"].as_str().unwrap_or("").to_owned(),
                            body["user_id"].as_str().map(str::to_owned),
                            e,
                        ));
                    }
                } else {
                    s.problems.extend(problems.iter().map(Value::to_string));
                }
            }
            axum::http::StatusCode::NO_CONTENT.into_response()
        }
        _ => json(404, json!({})),
    }
}

/// Starts a fake GA4.
pub async fn spawn() -> Fake<State> {
    start(|_| State::default(), handle).await
}
