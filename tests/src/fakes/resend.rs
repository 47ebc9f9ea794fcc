//! Fake Resend: audience contacts (`POST /audiences/{id}/contacts`, `DELETE
//! /audiences/{id}/contacts/{email}`) behind a Bearer API key.

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

/// Starts a fake Resend.
pub async fn spawn() -> Fake<State> {
    start(|_| State::default(), handle).await
}
