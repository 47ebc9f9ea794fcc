//! Fake Resend: audience contacts (`POST /audiences/{id}/contacts`, `DELETE
//! /audiences/{id}/contacts/{email}`) and sending (`POST /emails`: `from`, `to` as an address or up
//! to 50, `subject`, `html` or `text`, optional `tags`; an `Idempotency-Key` seen before returns
//! the first email instead of sending again) behind a Bearer API key.

use super::{Common, Fake, HasCommon, Incoming, json, start};
use axum::http::Method;
use axum::response::Response;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The API key the fake accepts.
pub const API_KEY: &str = "re_test_key";

/// The fake's state.
#[derive(Default)]
pub struct State {
    /// Shared request log and faults.
    pub common: Common,
    /// Audience id → email → contact.
    pub audiences: BTreeMap<String, BTreeMap<String, Map<String, Value>>>,
    /// Shape problems found.
    pub problems: Vec<String>,
    /// Contact removals received, as (audience id, email or contact id).
    pub removals: Vec<(String, String)>,
    /// Emails sent, with their `id`, in order.
    pub emails: Vec<Map<String, Value>>,
    /// Idempotency keys seen → email id.
    pub idempotency: BTreeMap<String, String>,
}

impl HasCommon for State {
    fn common(&mut self) -> &mut Common {
        &mut self.common
    }
}

fn handle(s: &mut State, req: &Incoming) -> Response {
    if req.bearer().as_deref() != Some(API_KEY) {
        return json(
            401,
            json!({"statusCode": 401, "name": "missing_api_key", "message": "Missing API key in the authorization header."}),
        );
    }
    let parts: Vec<String> = req
        .path
        .trim_matches('/')
        .split('/')
        .map(super::decode)
        .collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    match (req.method.clone(), parts.as_slice()) {
        (Method::POST, ["emails"]) => send(s, req),
        (Method::POST, ["audiences", audience, "contacts"]) => {
            let body = req.json().unwrap_or(Value::Null);
            let Some(email) = body["email"].as_str().filter(|e| e.contains('@')) else {
                s.problems.push(format!("contact without email: {body}"));
                return json(
                    422,
                    json!({"statusCode": 422, "name": "validation_error", "message": "Missing `email` field."}),
                );
            };
            let contacts = s.audiences.entry((*audience).to_owned()).or_default();
            let id = format!("contact-{}", contacts.len() + 1);
            let mut c = body.as_object().cloned().unwrap_or_default();
            c.insert("id".into(), json!(id));
            contacts.insert(email.to_owned(), c);
            json(201, json!({"object": "contact", "id": id}))
        }
        (Method::DELETE, ["audiences", audience, "contacts", email]) => {
            if !req.body.is_empty() {
                s.problems
                    .push(format!("contact removal with a body: {}", req.body));
            }
            s.removals
                .push(((*audience).to_owned(), (*email).to_owned()));
            match s
                .audiences
                .get_mut(*audience)
                .and_then(|c| c.remove(*email))
            {
                Some(c) => json(
                    200,
                    json!({"object": "contact", "contact": c["id"], "deleted": true}),
                ),
                None => json(
                    404,
                    json!({"statusCode": 404, "name": "not_found", "message": "Contact not found"}),
                ),
            }
        }
        _ => json(
            404,
            json!({"statusCode": 404, "name": "not_found", "message": "not found"}),
        ),
    }
}

fn is_address(v: &Value) -> bool {
    v.as_str().is_some_and(|a| {
        let a = a
            .rsplit_once('<')
            .map_or(a, |(_, r)| r.trim_end_matches('>'));
        a.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
    })
}

fn send(s: &mut State, req: &Incoming) -> Response {
    let body = req.json().unwrap_or(Value::Null);
    if let Some(key) = req.header("idempotency-key")
        && let Some(id) = s.idempotency.get(&key)
    {
        return json(200, json!({"id": id}));
    }
    let mut wrong = Vec::new();
    if !is_address(&body["from"]) {
        wrong.push("`from` must be an address, e.g. `Name <a@b.example>`");
    }
    let to_ok = match &body["to"] {
        Value::Array(a) => !a.is_empty() && a.len() <= 50 && a.iter().all(is_address),
        v => is_address(v),
    };
    if !to_ok {
        wrong.push("`to` must be an address or 1 to 50 addresses");
    }
    if body["subject"].as_str().is_none_or(str::is_empty) {
        wrong.push("Missing `subject` field.");
    }
    if !body["html"].is_string() && !body["text"].is_string() {
        wrong.push("Missing `html` or `text` field.");
    }
    if let Some(tags) = body.get("tags")
        && !tags.as_array().is_some_and(|t| {
            t.iter()
                .all(|t| t["name"].is_string() && t["value"].is_string())
        })
    {
        wrong.push("`tags` must be a list of {name, value}");
    }
    if !wrong.is_empty() {
        s.problems
            .push(format!("email: {} in {body}", wrong.join("; ")));
        return json(
            422,
            json!({"statusCode": 422, "name": "validation_error", "message": wrong.join(" ")}),
        );
    }
    let id = format!("49a3999c-0ce1-4ea6-ab68-{:012}", s.emails.len() + 1);
    let mut e = body.as_object().cloned().unwrap_or_default();
    e.insert("id".into(), json!(id));
    s.emails.push(e);
    if let Some(key) = req.header("idempotency-key") {
        s.idempotency.insert(key, id.clone());
    }
    json(200, json!({"id": id}))
}

/// Starts a fake Resend.
pub async fn spawn() -> Fake<State> {
    start(|_| State::default(), handle).await
}
