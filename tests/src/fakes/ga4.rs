//! Fake GA4 Measurement Protocol: `/mp/collect` (checks measurement_id, api_secret, client_id,
//! ≤ 25 events, name and parameter rules; keeps what a real property would count; and what makes
//! server-side events count like tagged ones — [`fidelity`]: `session_id` and a positive
//! `engagement_time_msec` on every event, event `timestamp_micros` within GA4's 72-hour window,
//! `consent` values, `campaign_details` parameters) and `/debug/mp/collect` answering
//! `validationMessages`; plus the Analytics Admin API's user deletion
//! (`POST /v1alpha/properties/{id}:submitUserDeletion` with exactly one of `userId`, `clientId`,
//! `appInstanceId`, `userProvidedData`, behind a Bearer token from Google's OAuth refresh-token
//! flow at `/token`).

use super::{Common, Fake, HasCommon, Incoming, json, start};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The measurement id the fake accepts.
pub const MEASUREMENT_ID: &str = "G-TOUCHPOINT";
/// The API secret the fake accepts.
pub const API_SECRET: &str = "ga4-secret";
/// The numeric property the Admin API serves.
pub const PROPERTY_ID: &str = "412345678";
/// The OAuth client id the fake accepts.
pub const CLIENT_ID: &str = "tp-ga4.apps.googleusercontent.com";
/// The OAuth client secret the fake accepts.
pub const CLIENT_SECRET: &str = "tp-ga4-oauth-secret";
/// The refresh token the fake accepts.
pub const REFRESH_TOKEN: &str = "1//tp-ga4-refresh";

/// The fake's state.
#[derive(Default)]
pub struct State {
    /// Shared request log and faults.
    pub common: Common,
    /// Events accepted: (client_id, user_id, event).
    pub events: Vec<(String, Option<String>, Value)>,
    /// Request bodies accepted, whole (consent and other request-level fields).
    pub bodies: Vec<Value>,
    /// Problems a real GA4 would silently drop the hit for.
    pub problems: Vec<String>,
    /// Access tokens issued by `/token`.
    pub tokens: Vec<String>,
    /// User deletions received, as (identifier kind, value), e.g. `("userId", "u-1")`.
    pub deletions: Vec<(String, String)>,
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

/// Parameters GA4 defines for `campaign_details` (plus the session it belongs to).
pub const CAMPAIGN_PARAMS: [&str; 7] = [
    "campaign_id",
    "campaign",
    "source",
    "medium",
    "term",
    "content",
    "session_id",
];

/// What would keep GA4 from counting a valid hit in sessions, engagement, the right day, the right
/// campaign or the right consent state, at `now_ms`.
pub fn fidelity(body: &Value, now_ms: i64) -> Vec<String> {
    let mut out = Vec::new();
    let events = body["events"].as_array().cloned().unwrap_or_default();
    for e in &events {
        let name = e["name"].as_str().unwrap_or("");
        let p = &e["params"];
        let session = &p["session_id"];
        if !(session.as_i64().is_some_and(|s| s > 0)
            || session.as_str().is_some_and(|s| !s.is_empty()))
        {
            out.push(format!("{name}: no session_id"));
        }
        if name == "campaign_details" {
            let keys: Vec<&String> = p
                .as_object()
                .map(|m| m.keys().collect())
                .unwrap_or_default();
            if let Some(k) = keys.iter().find(|k| !CAMPAIGN_PARAMS.contains(&k.as_str())) {
                out.push(format!("campaign_details: unknown parameter {k}"));
            }
            if keys.iter().all(|k| *k == "session_id") {
                out.push("campaign_details without campaign parameters".into());
            }
        } else if p["engagement_time_msec"].as_i64().is_none_or(|t| t < 1) {
            out.push(format!(
                "{name}: engagement_time_msec missing or not positive"
            ));
        }
        if let Some(ts) = e.get("timestamp_micros") {
            let window = (now_ms - 72 * 3_600_000) * 1000..=(now_ms + 60_000) * 1000;
            if !ts.as_i64().is_some_and(|t| window.contains(&t)) {
                out.push(format!(
                    "{name}: timestamp_micros {ts} outside the 72-hour window"
                ));
            }
        }
    }
    if let Some(c) = body.get("consent") {
        let ok = c.as_object().is_some_and(|m| {
            !m.is_empty()
                && m.iter().all(|(k, v)| {
                    ["ad_user_data", "ad_personalization"].contains(&k.as_str())
                        && ["GRANTED", "DENIED"].contains(&v.as_str().unwrap_or(""))
                })
        });
        if !ok {
            out.push(format!("malformed consent {c}"));
        }
    }
    out
}

fn google_error(code: u16, status: &str, message: &str) -> Response {
    json(
        code,
        json!({"error": {"code": code, "message": message, "status": status}}),
    )
}

/// Google's OAuth 2.0 token endpoint, refresh-token grant.
fn token(s: &mut State, req: &Incoming) -> Response {
    let f = super::parse_form(&req.body);
    let ok = req.method == axum::http::Method::POST
        && f.get("grant_type").map(String::as_str) == Some("refresh_token")
        && f.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && f.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET)
        && f.get("refresh_token").map(String::as_str) == Some(REFRESH_TOKEN);
    if !ok {
        return json(
            400,
            json!({"error": "invalid_grant", "error_description": "Bad Request"}),
        );
    }
    let token = format!("ya29.fake-{}", s.tokens.len() + 1);
    s.tokens.push(token.clone());
    json(
        200,
        json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer",
               "scope": "https://www.googleapis.com/auth/analytics.edit"}),
    )
}

/// `properties.submitUserDeletion`.
fn submit_user_deletion(s: &mut State, req: &Incoming, property: &str) -> Response {
    if !req.bearer().is_some_and(|t| s.tokens.contains(&t)) {
        return google_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        );
    }
    if req.method != axum::http::Method::POST {
        s.problems
            .push(format!("submitUserDeletion with {}", req.method));
        return google_error(405, "INVALID_ARGUMENT", "method not allowed");
    }
    if property != PROPERTY_ID {
        return google_error(
            403,
            "PERMISSION_DENIED",
            "User does not have sufficient permissions for this property.",
        );
    }
    let Some(Value::Object(body)) = req.json() else {
        s.problems
            .push(format!("submitUserDeletion body {}", req.body));
        return google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.");
    };
    const UNION: [&str; 4] = ["userId", "clientId", "appInstanceId", "userProvidedData"];
    let ids: Vec<(&String, &Value)> = body.iter().collect();
    let valid = ids.len() == 1
        && UNION.contains(&ids[0].0.as_str())
        && ids[0].1.as_str().is_some_and(|v| !v.is_empty());
    if !valid {
        s.problems
            .push(format!("submitUserDeletion body {}", req.body));
        return google_error(
            400,
            "INVALID_ARGUMENT",
            "Exactly one of userId, clientId, appInstanceId, userProvidedData is required.",
        );
    }
    let (kind, value) = ids[0];
    s.deletions
        .push((kind.clone(), value.as_str().unwrap_or("").to_owned()));
    json(
        200,
        json!({"deletionRequestTime": "2026-01-01T00:00:00.000Z"}),
    )
}

fn handle(s: &mut State, req: &Incoming) -> Response {
    if req.path == "/token" {
        return token(s, req);
    }
    if let Some(property) = req
        .path
        .strip_prefix("/v1alpha/properties/")
        .and_then(|p| p.strip_suffix(":submitUserDeletion"))
    {
        return submit_user_deletion(s, req, property);
    }
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
                    let now = chrono::Utc::now().timestamp_millis();
                    s.problems.extend(fidelity(&body, now));
                    s.bodies.push(body.clone());
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
