//! Fake Salesforce: OAuth 2.0 client-credentials token endpoint, sObject Collections upsert by
//! external id (≤ 200 records, `attributes.type`, required fields, restricted picklists, external-id
//! relationships that must resolve), composite requests with `@{ref.Field}` references, `/limits`,
//! sObject rows read, updated and deleted by Id or by external id (`GET|DELETE
//! …/sobjects/{object}/{field}/{value}`, `PATCH|DELETE …/sobjects/{object}/{id}`; 204, or 404
//! `NOT_FOUND`), and `Sforce-Limit-Info` on every API answer.

use super::{Common, Fake, HasCommon, Incoming, json, start};
use axum::http::{HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The client id the fake accepts.
pub const CLIENT_ID: &str = "tp-salesforce-client";
/// The client secret the fake accepts.
pub const CLIENT_SECRET: &str = "tp-salesforce-secret";
/// The OwnerId of every Account.
pub const OWNER_ID: &str = "005OWNER000000001";

/// The fake's state.
#[derive(Default)]
pub struct State {
    /// Shared request log and faults.
    pub common: Common,
    /// Base URL (also the instance_url).
    pub url: String,
    /// Records by object → external id value → fields (with `Id`).
    pub records: BTreeMap<String, BTreeMap<String, Map<String, Value>>>,
    /// Upsert attempts per (object, external id) (to prove a dead letter was not retried).
    pub attempts: BTreeMap<(String, String), usize>,
    /// Allowed values of restricted picklists, by field.
    pub picklists: BTreeMap<String, BTreeSet<String>>,
    /// Tokens issued.
    pub tokens: Vec<String>,
    /// API calls counted for `Sforce-Limit-Info`.
    pub api_usage: u64,
    /// Shape problems found (a correct client leaves this empty).
    pub problems: Vec<String>,
    /// Records deleted, as (object, external id value).
    pub deleted: Vec<(String, String)>,
    /// Records updated through `PATCH …/sobjects/{object}/{id}`, as (object, Id, fields sent).
    pub updated: Vec<(String, String, Map<String, Value>)>,
}

impl HasCommon for State {
    fn common(&mut self) -> &mut Common {
        &mut self.common
    }
}

/// External id field per object.
fn external_field(object: &str) -> &'static str {
    match object {
        "Contact" => "Touchpoint_User_Id__c",
        "Task" => "Touchpoint_Activation_Id__c",
        _ => "Touchpoint_Account_Id__c",
    }
}

impl State {
    /// Records of an object.
    pub fn objects(&self, object: &str) -> Vec<Map<String, Value>> {
        self.records
            .get(object)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// One record by external id.
    pub fn get(&self, object: &str, key: &str) -> Option<Map<String, Value>> {
        self.records.get(object)?.get(key).cloned()
    }

    /// The external id value of the record with this Salesforce Id.
    fn key_of(&self, object: &str, id: &str) -> Option<String> {
        self.records
            .get(object)?
            .iter()
            .find(|(_, rec)| rec.get("Id").and_then(Value::as_str) == Some(id))
            .map(|(k, _)| k.clone())
    }

    /// Upserts one record; returns the UpsertResult.
    fn upsert(&mut self, object: &str, field: &str, mut rec: Map<String, Value>) -> Value {
        let key = match rec.get(field) {
            Some(Value::String(k)) => k.clone(),
            _ => {
                self.problems
                    .push(format!("{object} record without {field}"));
                return error(
                    "MISSING_ARGUMENT",
                    &format!("{field} not specified"),
                    &[field],
                );
            }
        };
        *self
            .attempts
            .entry((object.to_owned(), key.clone()))
            .or_default() += 1;
        for (f, allowed) in &self.picklists {
            if let Some(Value::String(v)) = rec.get(f)
                && !allowed.contains(v)
            {
                return error(
                    "PICKLIST_INVALID_VALUE",
                    &format!("bad value for restricted picklist field: {v}"),
                    &[f],
                );
            }
        }
        // External-id relationships must resolve to an existing Account.
        for rel in ["Account", "Account__r"] {
            if let Some(r) = rec.remove(rel) {
                let Some(acc) = r.get("Touchpoint_Account_Id__c").and_then(Value::as_str) else {
                    self.problems
                        .push(format!("{object}.{rel} without an external id"));
                    return error("INVALID_FIELD", "relationship without external id", &[rel]);
                };
                let Some(account) = self.get("Account", acc) else {
                    return error(
                        "INVALID_FIELD",
                        &format!(
                            "Foreign key external ID: {acc} not found for field Touchpoint_Account_Id__c in entity Account"
                        ),
                        &[rel],
                    );
                };
                let id_field = if rel == "Account" {
                    "AccountId"
                } else {
                    "Account__c"
                };
                rec.insert(id_field.into(), account["Id"].clone());
            }
        }
        if object == "Contact" && !rec.contains_key("LastName") {
            let existing = self.get("Contact", &key);
            if existing.is_none_or(|e| !e.contains_key("LastName")) {
                return error(
                    "REQUIRED_FIELD_MISSING",
                    "Required fields are missing: [LastName]",
                    &["LastName"],
                );
            }
        }
        let prefix = match object {
            "Account" => "001",
            "Contact" => "003",
            "Task" => "00T",
            _ => "a0B",
        };
        let count = self.records.get(object).map_or(0, BTreeMap::len);
        let table = self.records.entry(object.to_owned()).or_default();
        let created = !table.contains_key(&key);
        let entry = table.entry(key).or_insert_with(|| {
            let mut m = Map::new();
            m.insert("Id".into(), json!(format!("{prefix}{:015}", count + 1)));
            if object == "Account" {
                m.insert("OwnerId".into(), json!(OWNER_ID));
            }
            m
        });
        for (k, v) in rec {
            if k != "attributes" {
                entry.insert(k, v);
            }
        }
        json!({"id": entry["Id"], "success": true, "errors": [], "created": created})
    }
}

fn error(code: &str, message: &str, fields: &[&str]) -> Value {
    json!({"success": false, "errors": [{"statusCode": code, "message": message, "fields": fields}]})
}

fn api_error(status: u16, code: &str, message: &str) -> Response {
    json(
        status,
        json!([{"message": message, "errorCode": code, "fields": []}]),
    )
}

fn not_found() -> Response {
    api_error(404, "NOT_FOUND", "The requested resource does not exist")
}

fn no_content() -> Response {
    axum::http::StatusCode::NO_CONTENT.into_response()
}

fn with_limits(mut r: Response, usage: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("api-usage={usage}/15000")) {
        r.headers_mut().insert("sforce-limit-info", v);
    }
    r
}

fn handle(s: &mut State, req: &Incoming) -> Response {
    if req.path == "/services/oauth2/token" {
        let form = super::parse_form(&req.body);
        let ok = req.method == Method::POST
            && form.get("grant_type").map(String::as_str) == Some("client_credentials")
            && form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
            && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET);
        if !ok {
            return json(
                400,
                json!({"error": "invalid_client", "error_description": "invalid client credentials"}),
            );
        }
        let token = format!("00Dfake!token{}", s.tokens.len() + 1);
        s.tokens.push(token.clone());
        return json(
            200,
            json!({"access_token": token, "instance_url": s.url,
            "id": format!("{}/id/00D/005INTEGRATION", s.url), "token_type": "Bearer",
            "issued_at": "1790000000000", "signature": "fake"}),
        );
    }
    if !req.bearer().is_some_and(|t| s.tokens.contains(&t)) {
        return api_error(401, "INVALID_SESSION_ID", "Session expired or invalid");
    }
    s.api_usage += 1;
    let usage = s.api_usage;
    let parts: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    // services/data/vXX.X/...
    if parts.len() < 4 || parts[0] != "services" || parts[1] != "data" || !parts[2].starts_with('v')
    {
        return with_limits(
            api_error(404, "NOT_FOUND", "The requested resource does not exist"),
            usage,
        );
    }
    let rest = &parts[3..];
    let r = match (req.method.clone(), rest) {
        (Method::PATCH, ["composite", "sobjects", object, field]) => {
            collection(s, object, field, req.json().unwrap_or(Value::Null))
        }
        (Method::POST, ["composite"]) => composite(s, req.json().unwrap_or(Value::Null)),
        (Method::GET, ["sobjects", object, field, value]) if *field == external_field(object) => {
            match s.get(object, &super::decode(value)) {
                Some(mut rec) => {
                    rec.insert("attributes".into(), json!({"type": object}));
                    json(200, Value::Object(rec))
                }
                None => not_found(),
            }
        }
        (Method::DELETE, ["sobjects", object, field, value])
            if *field == external_field(object) =>
        {
            let key = super::decode(value);
            match s.records.get_mut(*object).and_then(|t| t.remove(&key)) {
                Some(_) => {
                    s.deleted.push(((*object).to_owned(), key));
                    no_content()
                }
                None => not_found(),
            }
        }
        (Method::DELETE, ["sobjects", object, id]) => match s.key_of(object, id) {
            Some(key) => {
                if let Some(t) = s.records.get_mut(*object) {
                    t.remove(&key);
                }
                s.deleted.push(((*object).to_owned(), key));
                no_content()
            }
            None => not_found(),
        },
        (Method::PATCH, ["sobjects", object, id]) => {
            let Some(Value::Object(fields)) = req.json() else {
                s.problems
                    .push(format!("update of {object} {id} without a JSON object"));
                return with_limits(
                    api_error(400, "JSON_PARSER_ERROR", "body is not an object"),
                    usage,
                );
            };
            let Some(key) = s.key_of(object, id) else {
                return with_limits(not_found(), usage);
            };
            if object == &"Contact" && fields.get("LastName").is_some_and(Value::is_null) {
                return with_limits(
                    api_error(
                        400,
                        "REQUIRED_FIELD_MISSING",
                        "Required fields are missing: [LastName]",
                    ),
                    usage,
                );
            }
            if let Some(rec) = s.records.get_mut(*object).and_then(|t| t.get_mut(&key)) {
                for (k, v) in &fields {
                    if v.is_null() {
                        rec.remove(k);
                    } else {
                        rec.insert(k.clone(), v.clone());
                    }
                }
            }
            s.updated
                .push(((*object).to_owned(), (*id).to_owned(), fields));
            no_content()
        }
        (Method::GET, ["limits"]) => json(
            200,
            json!({"DailyApiRequests": {"Max": 15000, "Remaining": 15000 - usage}}),
        ),
        _ => api_error(404, "NOT_FOUND", "The requested resource does not exist"),
    };
    with_limits(r, usage)
}

fn collection(s: &mut State, object: &str, field: &str, body: Value) -> Response {
    let Some(records) = body.get("records").and_then(Value::as_array) else {
        s.problems.push("collection without records".into());
        return api_error(400, "JSON_PARSER_ERROR", "records is required");
    };
    if records.len() > 200 {
        s.problems
            .push(format!("{} records in one collection", records.len()));
        return api_error(
            400,
            "EXCEEDED_MAX_SIZE_REQUEST",
            "You can't add more than 200 objects in a request",
        );
    }
    if field != external_field(object) {
        s.problems.push(format!("{object} upserted by {field}"));
        return api_error(
            400,
            "INVALID_FIELD",
            &format!("{field} is not an external id field"),
        );
    }
    let mut results = Vec::new();
    for rec in records {
        let Some(rec) = rec.as_object().cloned() else {
            return api_error(400, "JSON_PARSER_ERROR", "records must be objects");
        };
        if rec
            .get("attributes")
            .and_then(|a| a.get("type"))
            .and_then(Value::as_str)
            != Some(object)
        {
            s.problems
                .push(format!("{object} record without attributes.type"));
            return api_error(
                400,
                "INVALID_TYPE",
                "attributes.type is required and must match the URI",
            );
        }
        results.push(s.upsert(object, field, rec));
    }
    json(200, Value::Array(results))
}

fn resolve(v: &Value, refs: &BTreeMap<String, Value>) -> Value {
    match v {
        Value::String(t) if t.starts_with("@{") && t.ends_with('}') => {
            let inner = &t[2..t.len() - 1];
            let (r, f) = inner.split_once('.').unwrap_or((inner, ""));
            refs.get(r)
                .and_then(|b| b.get(f))
                .cloned()
                .unwrap_or(Value::Null)
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), resolve(v, refs)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn composite(s: &mut State, body: Value) -> Response {
    let Some(subs) = body.get("compositeRequest").and_then(Value::as_array) else {
        s.problems.push("composite without compositeRequest".into());
        return api_error(400, "JSON_PARSER_ERROR", "compositeRequest is required");
    };
    if subs.len() > 25 {
        s.problems
            .push(format!("{} subrequests in one composite", subs.len()));
        return api_error(400, "INVALID_INPUT", "at most 25 subrequests");
    }
    let mut refs: BTreeMap<String, Value> = BTreeMap::new();
    let mut failed: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    for sub in subs {
        let reference = sub["referenceId"].as_str().unwrap_or("").to_owned();
        let url = sub["url"].as_str().unwrap_or("");
        let path = url.split('?').next().unwrap_or("");
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let depends = serde_json::to_string(&sub["body"]).unwrap_or_default();
        if failed.iter().any(|f| depends.contains(&format!("@{{{f}."))) {
            failed.insert(reference.clone());
            out.push(json!({"referenceId": reference, "httpStatusCode": 400, "httpHeaders": {},
                "body": [{"errorCode": "PROCESSING_HALTED", "message": "Invalid reference specified. No value for a dependent reference"}]}));
            continue;
        }
        let (status, result) = match (sub["method"].as_str(), parts.get(3..).unwrap_or(&[])) {
            (Some("GET"), ["sobjects", object, field, value])
                if *field == external_field(object) =>
            {
                match s.get(object, &super::decode(value)) {
                    Some(rec) => (200, Value::Object(rec)),
                    None => (
                        404,
                        json!([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]),
                    ),
                }
            }
            (Some("PATCH"), ["sobjects", object, field, value])
                if *field == external_field(object) =>
            {
                let mut rec = resolve(&sub["body"], &refs)
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                if object == &"Task" {
                    for required in ["WhatId", "OwnerId", "Subject"] {
                        if rec.get(required).is_none_or(Value::is_null) {
                            s.problems.push(format!("Task without {required}"));
                        }
                    }
                }
                rec.insert((*field).to_owned(), json!(super::decode(value)));
                let r = s.upsert(object, field, rec);
                if r["success"] == true {
                    (if r["created"] == true { 201 } else { 200 }, r)
                } else {
                    (400, r["errors"].clone())
                }
            }
            _ => {
                s.problems
                    .push(format!("unsupported composite subrequest {url}"));
                (
                    400,
                    json!([{"errorCode": "INVALID_URL", "message": "unsupported"}]),
                )
            }
        };
        if (200..300).contains(&status) {
            refs.insert(reference.clone(), result.clone());
        } else {
            failed.insert(reference.clone());
        }
        out.push(json!({"referenceId": reference, "httpStatusCode": status, "httpHeaders": {}, "body": result}));
    }
    json(200, json!({"compositeResponse": out}))
}

/// Starts a fake Salesforce.
pub async fn spawn() -> Fake<State> {
    start(
        |url| State {
            url,
            ..State::default()
        },
        handle,
    )
    .await
}
