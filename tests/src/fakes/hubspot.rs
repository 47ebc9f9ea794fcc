//! Fake HubSpot: OAuth 2.0 refresh-token flow at `/oauth/v1/token`, CRM v3 batch upserts of contacts
//! and companies (≤ 100 inputs, `idProperty` + `id` + `properties`), GDPR deletes of contacts
//! (`POST /crm/v3/objects/contacts/gdpr-delete` with `objectId` and an optional `idProperty` of
//! `email`; 204, and an unknown email is blocklisted), and 429s with HubSpot's rate-limit headers on
//! demand.

use super::{Common, Fake, HasCommon, Incoming, json, start};
use axum::http::{HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The OAuth client id the fake accepts.
pub const CLIENT_ID: &str = "tp-hubspot-client";
/// The OAuth client secret the fake accepts.
pub const CLIENT_SECRET: &str = "tp-hubspot-secret";
/// The refresh token the fake accepts.
pub const REFRESH_TOKEN: &str = "tp-hubspot-refresh";

/// The fake's state.
#[derive(Default)]
pub struct State {
    /// Shared request log and faults.
    pub common: Common,
    /// Objects (`contacts`, `companies`) → id → properties.
    pub objects: BTreeMap<String, BTreeMap<String, Map<String, Value>>>,
    /// Access tokens issued.
    pub tokens: Vec<String>,
    /// The next N batch calls get 429.
    pub rate_limit_next: usize,
    /// Shape problems found.
    pub problems: Vec<String>,
    /// GDPR deletes received, as (idProperty, objectId).
    pub gdpr_deletes: Vec<(Option<String>, String)>,
    /// Emails blocklisted by a GDPR delete (deleted, or unknown when deleted).
    pub blocklist: Vec<String>,
}

impl HasCommon for State {
    fn common(&mut self) -> &mut Common {
        &mut self.common
    }
}

fn handle(s: &mut State, req: &Incoming) -> Response {
    if req.path == "/oauth/v1/token" {
        let f = super::parse_form(&req.body);
        let ok = f.get("grant_type").map(String::as_str) == Some("refresh_token")
            && f.get("client_id").map(String::as_str) == Some(CLIENT_ID)
            && f.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET)
            && f.get("refresh_token").map(String::as_str) == Some(REFRESH_TOKEN);
        if !ok {
            return json(
                400,
                json!({"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token"}),
            );
        }
        let token = format!("hs-access-{}", s.tokens.len() + 1);
        s.tokens.push(token.clone());
        return json(
            200,
            json!({"token_type": "bearer", "refresh_token": REFRESH_TOKEN,
            "access_token": token, "expires_in": 1800}),
        );
    }
    if !req.bearer().is_some_and(|t| s.tokens.contains(&t)) {
        return json(
            401,
            json!({"status": "error", "message": "Authentication credentials not found.",
            "category": "INVALID_AUTHENTICATION"}),
        );
    }
    if req.path == "/crm/v3/objects/contacts/gdpr-delete" {
        return gdpr_delete(s, req);
    }
    let parts: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let ["crm", "v3", "objects", object, "batch", "upsert"] = parts.as_slice() else {
        return json(404, json!({"status": "error", "message": "not found"}));
    };
    if req.method != Method::POST {
        return json(
            405,
            json!({"status": "error", "message": "method not allowed"}),
        );
    }
    if s.rate_limit_next > 0 {
        s.rate_limit_next -= 1;
        let mut r = json(
            429,
            json!({"status": "error",
            "message": "You have reached your ten_secondly_rolling limit.",
            "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"}),
        );
        for (k, v) in [
            ("x-hubspot-ratelimit-interval-milliseconds", "200"),
            ("x-hubspot-ratelimit-max", "190"),
            ("x-hubspot-ratelimit-remaining", "0"),
        ] {
            r.headers_mut().insert(k, HeaderValue::from_static(v));
        }
        return r;
    }
    let inputs = req
        .json()
        .and_then(|b| b.get("inputs").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    if inputs.is_empty() || inputs.len() > 100 {
        s.problems
            .push(format!("{} inputs in one batch", inputs.len()));
        return json(
            400,
            json!({"status": "error", "category": "VALIDATION_ERROR",
            "message": "inputs must hold 1 to 100 items"}),
        );
    }
    let mut results = Vec::new();
    for input in &inputs {
        let (Some(prop), Some(id), Some(props)) = (
            input["idProperty"].as_str(),
            input["id"].as_str(),
            input["properties"].as_object(),
        ) else {
            s.problems.push(format!("malformed input {input}"));
            return json(
                400,
                json!({"status": "error", "category": "VALIDATION_ERROR",
                "message": "each input needs idProperty, id and properties"}),
            );
        };
        if *object == "contacts" && prop != "email" {
            s.problems.push(format!("contacts upserted by {prop}"));
        }
        let table = s.objects.entry((*object).to_owned()).or_default();
        let new = !table.contains_key(id);
        let rec = table.entry(id.to_owned()).or_default();
        rec.insert(prop.to_owned(), json!(id));
        for (k, v) in props {
            rec.insert(k.clone(), v.clone());
        }
        results.push(json!({"id": format!("{}", 1000 + table_len(s, object)), "properties": props, "new": new}));
    }
    json(
        200,
        json!({"status": "COMPLETE", "results": results,
        "startedAt": "2026-01-01T00:00:00Z", "completedAt": "2026-01-01T00:00:01Z"}),
    )
}

/// `POST /crm/v3/objects/contacts/gdpr-delete`: `{"objectId": "<id or email>", "idProperty":
/// "email"?}`, nothing else; 204 No Content.
fn gdpr_delete(s: &mut State, req: &Incoming) -> Response {
    let invalid = |s: &mut State, why: String| {
        s.problems.push(why.clone());
        json(
            400,
            json!({"status": "error", "category": "VALIDATION_ERROR", "message": why}),
        )
    };
    if req.method != Method::POST {
        return invalid(s, format!("gdpr-delete called with {}", req.method));
    }
    if !req
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
    {
        return invalid(s, "gdpr-delete without a JSON content type".into());
    }
    let Some(Value::Object(body)) = req.json() else {
        return invalid(
            s,
            format!("gdpr-delete body is not a JSON object: {}", req.body),
        );
    };
    if let Some(extra) = body.keys().find(|k| *k != "objectId" && *k != "idProperty") {
        return invalid(s, format!("gdpr-delete with unknown field {extra}"));
    }
    let Some(object_id) = body
        .get("objectId")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
    else {
        return invalid(s, "gdpr-delete without objectId".into());
    };
    let id_property = match body.get("idProperty") {
        None => None,
        Some(Value::String(p)) if p == "email" || p == "hs_object_id" => Some(p.clone()),
        Some(other) => return invalid(s, format!("gdpr-delete with idProperty {other}")),
    };
    if id_property.as_deref() == Some("email") && !object_id.contains('@') {
        return invalid(s, format!("idProperty email with objectId {object_id}"));
    }
    s.gdpr_deletes
        .push((id_property.clone(), object_id.to_owned()));
    let contacts = s.objects.entry("contacts".into()).or_default();
    if id_property.as_deref() == Some("email") {
        contacts.remove(object_id);
        s.blocklist.push(object_id.to_owned());
    } else if contacts.remove(object_id).is_none() {
        return json(
            404,
            json!({"status": "error", "category": "OBJECT_NOT_FOUND", "message": "resource not found"}),
        );
    }
    axum::http::StatusCode::NO_CONTENT.into_response()
}

fn table_len(s: &State, object: &str) -> usize {
    s.objects.get(object).map_or(0, BTreeMap::len)
}

/// Starts a fake HubSpot.
pub async fn spawn() -> Fake<State> {
    start(|_| State::default(), handle).await
}
