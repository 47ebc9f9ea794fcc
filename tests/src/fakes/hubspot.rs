//! Fake HubSpot: OAuth 2.0 refresh-token flow at `/oauth/v1/token`, CRM v3 batch upserts of contacts
//! and companies (≤ 100 inputs, `idProperty` + `id` + `properties`, enumeration options checked),
//! GDPR deletes of contacts (`POST /crm/v3/objects/contacts/gdpr-delete` with `objectId` and an
//! optional `idProperty` of `email`; 204, and an unknown email is blocklisted), and 429s with
//! HubSpot's rate-limit headers on demand.
//!
//! For the CRM loop: the search API (`POST /crm/v3/objects/{object}/search`: `filterGroups` on
//! `lastmodifieddate` / `hs_lastmodifieddate`, `sorts`, `properties`, `limit` ≤ 200, `after`
//! paging, at most 10,000 results), batch read and batch update by id, v4 association batch reads,
//! owners (`/crm/v3/owners`), the properties API (`/crm/v3/properties/{object}`), deals, and the
//! v3 webhook signature ([`sign_v3`]) a test uses to deliver signed events. Every write moves
//! `hs_lastmodifieddate` (and `lastmodifieddate` on contacts). Errors have HubSpot's shape:
//! `{"status": "error", "message", "correlationId", "category"}`.

use super::{Common, Fake, HasCommon, Incoming, json, start};
use axum::http::{HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The OAuth client id the fake accepts.
pub const CLIENT_ID: &str = "tp-hubspot-client";
/// The OAuth client secret the fake accepts (also the app secret that signs webhooks).
pub const CLIENT_SECRET: &str = "tp-hubspot-secret";
/// The refresh token the fake accepts.
pub const REFRESH_TOKEN: &str = "tp-hubspot-refresh";
/// The owner every record gets unless a test changes it.
pub const OWNER_ID: &str = "41629779";
/// That owner's email.
pub const OWNER_EMAIL: &str = "owner@hubspot.example";

/// One property of the properties API.
#[derive(Debug, Clone)]
pub struct Property {
    /// Name.
    pub name: String,
    /// HubSpot type (`string`, `number`, `enumeration`, `bool`, `date`, `datetime`).
    pub ty: String,
    /// Options of an enumeration (empty: any value).
    pub options: Vec<String>,
    /// Whether only HubSpot writes it.
    pub read_only: bool,
    /// Whether values must be unique (id properties).
    pub unique: bool,
}

/// The fake's state.
pub struct State {
    /// Shared request log and faults.
    pub common: Common,
    /// Objects (`contacts`, `companies`, `deals`) → key (the idProperty value it was upserted by, or
    /// its id) → properties (with `hs_object_id`).
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
    /// Associations as (from object, from id, to object, to id), both directions.
    pub associations: BTreeSet<(String, String, String, String)>,
    /// Owners: id → email.
    pub owners: BTreeMap<String, String>,
    /// Properties by object.
    pub schema: BTreeMap<String, Vec<Property>>,
    /// The next object id.
    pub next_id: u64,
    /// The last modification time issued (ms), so times strictly increase.
    pub last_stamp: i64,
    /// Search requests received (bodies).
    pub searches: Vec<Value>,
}

impl Default for State {
    fn default() -> Self {
        State {
            common: Common::default(),
            objects: BTreeMap::new(),
            tokens: Vec::new(),
            rate_limit_next: 0,
            problems: Vec::new(),
            gdpr_deletes: Vec::new(),
            blocklist: Vec::new(),
            associations: BTreeSet::new(),
            owners: [(OWNER_ID.to_owned(), OWNER_EMAIL.to_owned())]
                .into_iter()
                .collect(),
            schema: default_schema(),
            next_id: 1001,
            last_stamp: 0,
            searches: Vec::new(),
        }
    }
}

impl HasCommon for State {
    fn common(&mut self) -> &mut Common {
        &mut self.common
    }
}

fn prop(name: &str, ty: &str) -> Property {
    Property {
        name: name.into(),
        ty: ty.into(),
        options: Vec::new(),
        read_only: false,
        unique: false,
    }
}

fn enumeration(name: &str, options: &[&str]) -> Property {
    Property {
        options: options.iter().map(|o| (*o).to_owned()).collect(),
        ..prop(name, "enumeration")
    }
}

fn read_only(name: &str, ty: &str) -> Property {
    Property {
        read_only: true,
        ..prop(name, ty)
    }
}

/// A portal with Touchpoint's custom properties.
pub fn default_schema() -> BTreeMap<String, Vec<Property>> {
    let tiers = ["free", "pro", "business", "enterprise"];
    let mut s = BTreeMap::new();
    s.insert(
        "contacts".to_owned(),
        vec![
            prop("email", "string"),
            prop("firstname", "string"),
            prop("lastname", "string"),
            prop("jobtitle", "string"),
            prop("company", "string"),
            prop("phone", "string"),
            enumeration("plan_tier", &tiers),
            enumeration(
                "lifecyclestage",
                &[
                    "subscriber",
                    "lead",
                    "marketingqualifiedlead",
                    "salesqualifiedlead",
                    "opportunity",
                    "customer",
                    "evangelist",
                    "other",
                ],
            ),
            prop("hubspot_owner_id", "enumeration"),
            prop("touchpoint_user_id", "string"),
            read_only("lastmodifieddate", "datetime"),
            read_only("hs_lastmodifieddate", "datetime"),
            read_only("hs_object_id", "number"),
        ],
    );
    s.insert(
        "companies".to_owned(),
        vec![
            prop("name", "string"),
            prop("domain", "string"),
            enumeration(
                "industry",
                &[
                    "COMPUTER_SOFTWARE",
                    "FINANCIAL_SERVICES",
                    "HOSPITAL_HEALTH_CARE",
                    "RETAIL",
                ],
            ),
            prop("numberofemployees", "number"),
            prop("annualrevenue", "number"),
            prop("seats_provisioned", "number"),
            enumeration("plan_tier", &tiers),
            Property {
                unique: true,
                ..prop("touchpoint_account_id", "string")
            },
            prop("hubspot_owner_id", "enumeration"),
            read_only("hs_lastmodifieddate", "datetime"),
            read_only("hs_object_id", "number"),
        ],
    );
    s.insert(
        "deals".to_owned(),
        vec![
            prop("dealname", "string"),
            enumeration(
                "dealstage",
                &[
                    "appointmentscheduled",
                    "qualifiedtobuy",
                    "presentationscheduled",
                    "decisionmakerboughtin",
                    "contractsent",
                    "closedwon",
                    "closedlost",
                ],
            ),
            prop("pipeline", "string"),
            prop("amount", "number"),
            prop("closedate", "datetime"),
            read_only("hs_is_closed", "bool"),
            prop("hubspot_owner_id", "enumeration"),
            read_only("hs_lastmodifieddate", "datetime"),
            read_only("hs_object_id", "number"),
        ],
    );
    s
}

/// The v3 signature: base64 of HMAC-SHA256, keyed with the app secret, over
/// `method + uri + body + timestamp` (the timestamp in ms, as sent in `X-HubSpot-Request-Timestamp`).
pub fn sign_v3(secret: &str, method: &str, uri: &str, body: &str, timestamp_ms: i64) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{method}{uri}{body}{timestamp_ms}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Delivers webhook events to `url` as HubSpot does: a JSON array, signed with `secret`.
pub async fn deliver(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    events: &Value,
) -> reqwest::Response {
    let body = events.to_string();
    let at = chrono::Utc::now().timestamp_millis();
    client
        .post(url)
        .header("content-type", "application/json")
        .header(
            "x-hubspot-signature-v3",
            sign_v3(secret, "POST", url, &body, at),
        )
        .header("x-hubspot-request-timestamp", at.to_string())
        .body(body)
        .send()
        .await
        .expect("webhook delivery")
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn ms_of(v: &Value) -> Option<i64> {
    let s = v.as_str()?;
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp_millis())
}

fn modified_property(object: &str) -> &'static str {
    if object == "contacts" {
        "lastmodifieddate"
    } else {
        "hs_lastmodifieddate"
    }
}

fn hs_error(status: u16, category: &str, message: &str) -> Response {
    json(
        status,
        json!({"status": "error", "message": message, "category": category,
               "correlationId": "aeb5f871-7f07-4993-9211-075dc63e7cbf"}),
    )
}

impl State {
    /// A strictly increasing modification time (ms).
    pub fn stamp(&mut self) -> i64 {
        let now = chrono::Utc::now().timestamp_millis();
        self.last_stamp = now.max(self.last_stamp + 1);
        self.last_stamp
    }

    fn touch(rec: &mut Map<String, Value>, object: &str, at: i64) {
        rec.insert("hs_lastmodifieddate".into(), json!(iso(at)));
        if object == "contacts" {
            rec.insert("lastmodifieddate".into(), json!(iso(at)));
        }
        if object == "deals" {
            let stage = rec.get("dealstage").and_then(Value::as_str).unwrap_or("");
            rec.insert(
                "hs_is_closed".into(),
                json!(if stage.starts_with("closed") {
                    "true"
                } else {
                    "false"
                }),
            );
        }
    }

    /// The key of the record whose key or id is `id`.
    fn key_of(&self, object: &str, id: &str) -> Option<String> {
        let table = self.objects.get(object)?;
        if table.contains_key(id) {
            return Some(id.to_owned());
        }
        table
            .iter()
            .find(|(_, r)| r.get("hs_object_id").and_then(Value::as_str) == Some(id))
            .map(|(k, _)| k.clone())
    }

    /// A record by key or id.
    pub fn get(&self, object: &str, id: &str) -> Option<Map<String, Value>> {
        let k = self.key_of(object, id)?;
        self.objects.get(object)?.get(&k).cloned()
    }

    /// The id of a record by key or id.
    pub fn id_of(&self, object: &str, key: &str) -> Option<String> {
        self.get(object, key)?
            .get("hs_object_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// Creates a record (as a user of the portal would); returns its id.
    pub fn create(&mut self, object: &str, properties: Value) -> String {
        let id = self.next_id.to_string();
        self.next_id += 1;
        let mut rec = properties.as_object().cloned().unwrap_or_default();
        rec.insert("hs_object_id".into(), json!(id));
        rec.entry("hubspot_owner_id").or_insert(json!(OWNER_ID));
        let at = self.stamp();
        rec.insert("createdate".into(), json!(iso(at)));
        Self::touch(&mut rec, object, at);
        self.objects
            .entry(object.to_owned())
            .or_default()
            .insert(id.clone(), rec);
        id
    }

    /// Changes properties of a record (as a user would); returns its id.
    pub fn edit(&mut self, object: &str, key: &str, properties: Value) -> String {
        let k = self
            .key_of(object, key)
            .unwrap_or_else(|| panic!("no {object} {key}"));
        let at = self.stamp();
        let rec = self
            .objects
            .get_mut(object)
            .and_then(|t| t.get_mut(&k))
            .expect("exists");
        for (p, v) in properties.as_object().cloned().unwrap_or_default() {
            rec.insert(p, v);
        }
        Self::touch(rec, object, at);
        rec["hs_object_id"].as_str().unwrap_or_default().to_owned()
    }

    /// Associates two records (both directions).
    pub fn associate(&mut self, from: &str, from_key: &str, to: &str, to_key: &str) {
        let a = self.id_of(from, from_key).expect("from exists");
        let b = self.id_of(to, to_key).expect("to exists");
        self.associations
            .insert((from.into(), a.clone(), to.into(), b.clone()));
        self.associations.insert((to.into(), b, from.into(), a));
    }

    fn validate(&self, object: &str, props: &Map<String, Value>) -> Result<(), String> {
        let Some(schema) = self.schema.get(object) else {
            return Ok(());
        };
        for (name, v) in props {
            let Some(p) = schema.iter().find(|p| p.name == *name) else {
                return Err(format!("Property \"{name}\" does not exist"));
            };
            if p.read_only && name != "hs_object_id" {
                return Err(format!(
                    "\"{name}\" is a read only property; its value cannot be set."
                ));
            }
            if !p.options.is_empty()
                && let Some(s) = v.as_str()
                && !s.is_empty()
                && !p.options.iter().any(|o| o == s)
            {
                return Err(format!(
                    "{s} was not one of the allowed options: [{}]",
                    p.options.join(", ")
                ));
            }
            if !v.is_string() && !v.is_null() {
                return Err(format!("Property values must be strings: {name}"));
            }
        }
        Ok(())
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
    match (req.method.clone(), parts.as_slice()) {
        (Method::POST, ["crm", "v3", "objects", object, "batch", "upsert"]) => {
            upsert(s, object, req)
        }
        (Method::POST, ["crm", "v3", "objects", object, "search"]) => search(s, object, req),
        (Method::POST, ["crm", "v3", "objects", object, "batch", "read"]) => {
            batch_read(s, object, req)
        }
        (Method::POST, ["crm", "v3", "objects", object, "batch", "update"]) => {
            batch_update(s, object, req)
        }
        (Method::POST, ["crm", "v4", "associations", from, to, "batch", "read"]) => {
            associations(s, from, to, req)
        }
        (
            Method::POST,
            [
                "crm",
                "v4",
                "associations",
                from,
                to,
                "batch",
                "associate",
                "default",
            ],
        ) => associate(s, from, to, req),
        (Method::POST, ["crm", "v3", "objects", "tasks"]) => create_task(s, req),
        (Method::GET, ["crm", "v3", "objects", object, id]) => read_one(s, object, id, req),
        (Method::PATCH, ["crm", "v3", "objects", object, id]) => update_one(s, object, id, req),
        (Method::GET, ["crm", "v3", "owners", id]) => match s.owners.get(*id) {
            Some(email) => json(200, owner(id, email)),
            None => hs_error(404, "OBJECT_NOT_FOUND", "resource not found"),
        },
        (Method::GET, ["crm", "v3", "owners"]) => json(
            200,
            json!({"results": s.owners.iter().map(|(id, e)| owner(id, e)).collect::<Vec<_>>()}),
        ),
        (Method::GET, ["crm", "v3", "properties", object]) => match s.schema.get(*object) {
            Some(props) => json(
                200,
                json!({"results": props.iter().map(|p| json!({
                    "name": p.name, "label": p.name, "type": p.ty,
                    "fieldType": if p.ty == "enumeration" { "select" } else { "text" },
                    "options": p.options.iter().enumerate().map(|(i, o)| json!({
                        "label": o, "value": o, "displayOrder": i, "hidden": false})).collect::<Vec<_>>(),
                    "hasUniqueValue": p.unique, "calculated": p.read_only,
                    "modificationMetadata": {"archivable": true, "readOnlyDefinition": p.read_only,
                                             "readOnlyValue": p.read_only},
                })).collect::<Vec<_>>()}),
            ),
            None => hs_error(
                404,
                "OBJECT_NOT_FOUND",
                "Unable to infer object type from: {object}",
            ),
        },
        _ => hs_error(404, "OBJECT_NOT_FOUND", "not found"),
    }
}

fn owner(id: &str, email: &str) -> Value {
    json!({"id": id, "email": email, "firstName": "Sam", "lastName": "Seller", "userId": 9_000_001,
           "createdAt": "2025-01-01T00:00:00.000Z", "updatedAt": "2025-01-01T00:00:00.000Z",
           "archived": false})
}

fn rate_limited(s: &mut State) -> Option<Response> {
    if s.rate_limit_next == 0 {
        return None;
    }
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
    Some(r)
}

fn upsert(s: &mut State, object: &str, req: &Incoming) -> Response {
    if let Some(r) = rate_limited(s) {
        return r;
    }
    let inputs = req
        .json()
        .and_then(|b| b.get("inputs").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    if inputs.is_empty() || inputs.len() > 100 {
        s.problems
            .push(format!("{} inputs in one batch", inputs.len()));
        return hs_error(400, "VALIDATION_ERROR", "inputs must hold 1 to 100 items");
    }
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for input in &inputs {
        let (Some(prop), Some(id), Some(props)) = (
            input["idProperty"].as_str(),
            input["id"].as_str(),
            input["properties"].as_object(),
        ) else {
            s.problems.push(format!("malformed input {input}"));
            return hs_error(
                400,
                "VALIDATION_ERROR",
                "each input needs idProperty, id and properties",
            );
        };
        if object == "contacts" && prop != "email" {
            s.problems.push(format!("contacts upserted by {prop}"));
        }
        if let Err(e) = s.validate(object, props) {
            errors.push(json!({"status": "error", "category": "VALIDATION_ERROR",
                "message": format!("Property values were not valid: {e}"), "context": {"ids": [id]}}));
            continue;
        }
        let existing = s.objects.get(object).and_then(|t| {
            t.iter()
                .find(|(k, r)| *k == id || r.get(prop).and_then(Value::as_str) == Some(id))
                .map(|(k, _)| k.clone())
        });
        let new = existing.is_none();
        let key = existing.unwrap_or_else(|| id.to_owned());
        let object_id = if new {
            let n = s.next_id.to_string();
            s.next_id += 1;
            n
        } else {
            s.id_of(object, &key).unwrap_or_default()
        };
        let at = s.stamp();
        let rec = s
            .objects
            .entry(object.to_owned())
            .or_default()
            .entry(key)
            .or_default();
        rec.insert(prop.to_owned(), json!(id));
        rec.insert("hs_object_id".into(), json!(object_id));
        for (k, v) in props {
            rec.insert(k.clone(), v.clone());
        }
        State::touch(rec, object, at);
        let mut shown = props.clone();
        shown.insert(prop.to_owned(), json!(id));
        shown.insert("hs_object_id".into(), json!(object_id));
        results.push(json!({"id": object_id, "properties": shown, "new": new,
            "createdAt": iso(at), "updatedAt": iso(at), "archived": false}));
    }
    let mut body = json!({"status": "COMPLETE", "results": results,
        "startedAt": "2026-01-01T00:00:00Z", "completedAt": "2026-01-01T00:00:01Z"});
    if errors.is_empty() {
        json(200, body)
    } else {
        body["errors"] = json!(errors);
        body["numErrors"] = json!(errors.len());
        json(207, body)
    }
}

fn shown(object: &str, rec: &Map<String, Value>, properties: &[String]) -> Value {
    let mut props = Map::new();
    let modified = modified_property(object);
    for p in properties
        .iter()
        .map(String::as_str)
        .chain(["hs_object_id", "createdate", modified])
    {
        props.insert(p.to_owned(), rec.get(p).cloned().unwrap_or(Value::Null));
    }
    json!({"id": rec.get("hs_object_id"), "properties": props,
           "createdAt": rec.get("createdate").cloned().unwrap_or(Value::Null),
           "updatedAt": rec.get(modified), "archived": false})
}

fn search(s: &mut State, object: &str, req: &Incoming) -> Response {
    let Some(body) = req.json() else {
        s.problems.push("search without a JSON body".into());
        return hs_error(400, "VALIDATION_ERROR", "Invalid input JSON on line 1");
    };
    s.searches.push(body.clone());
    let limit = body["limit"].as_u64().unwrap_or(10) as usize;
    if limit > 200 {
        s.problems.push(format!("search limit {limit}"));
        return hs_error(
            400,
            "VALIDATION_ERROR",
            "There was a problem with the request. limit must be less than or equal to 200",
        );
    }
    let after: usize = body["after"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    if after >= 10_000 {
        return hs_error(
            400,
            "VALIDATION_ERROR",
            "There was a problem with the request. Search results are limited to 10,000 records",
        );
    }
    let properties: Vec<String> = body["properties"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut rows: Vec<&Map<String, Value>> = s
        .objects
        .get(object)
        .map(|t| t.values().collect())
        .unwrap_or_default();
    let groups = body["filterGroups"].as_array().cloned().unwrap_or_default();
    if !groups.is_empty() {
        rows.retain(|r| {
            groups.iter().any(|g| {
                g["filters"].as_array().is_some_and(|fs| {
                    fs.iter().all(|f| {
                        let name = f["propertyName"].as_str().unwrap_or("");
                        let value = ms_of(&f["value"]);
                        let have = r.get(name).and_then(ms_of);
                        match (f["operator"].as_str(), have, value) {
                            (Some("GTE"), Some(h), Some(v)) => h >= v,
                            (Some("GT"), Some(h), Some(v)) => h > v,
                            (Some("LTE"), Some(h), Some(v)) => h <= v,
                            (Some("LT"), Some(h), Some(v)) => h < v,
                            (Some("EQ"), _, _) => r.get(name) == Some(&f["value"]),
                            _ => false,
                        }
                    })
                })
            })
        });
    }
    let sort = body["sorts"][0]["propertyName"]
        .as_str()
        .unwrap_or("hs_object_id")
        .to_owned();
    rows.sort_by_key(|r| {
        (
            r.get(&sort).and_then(ms_of).unwrap_or(0),
            r.get("hs_object_id")
                .and_then(Value::as_str)
                .and_then(|i| i.parse::<u64>().ok())
                .unwrap_or(0),
        )
    });
    let total = rows.len();
    let results: Vec<Value> = rows
        .iter()
        .skip(after)
        .take(limit)
        .map(|r| shown(object, r, &properties))
        .collect();
    let mut out = json!({"total": total, "results": results});
    if after + limit < total {
        let next = (after + limit).to_string();
        out["paging"] = json!({"next": {"after": next, "link": format!("?after={next}")}});
    }
    json(200, out)
}

fn batch_read(s: &mut State, object: &str, req: &Incoming) -> Response {
    let body = req.json().unwrap_or(Value::Null);
    let properties: Vec<String> = body["properties"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let Some(inputs) = body["inputs"].as_array() else {
        s.problems.push("batch read without inputs".into());
        return hs_error(400, "VALIDATION_ERROR", "inputs is required");
    };
    if inputs.len() > 100 {
        s.problems
            .push(format!("{} inputs in one batch read", inputs.len()));
        return hs_error(
            400,
            "VALIDATION_ERROR",
            "inputs must hold at most 100 items",
        );
    }
    let id_property = body["idProperty"].as_str().map(str::to_owned);
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for i in inputs {
        let id = i["id"].as_str().unwrap_or("");
        let found = match &id_property {
            Some(p) if p != "hs_object_id" => s.objects.get(object).and_then(|t| {
                t.values()
                    .find(|r| {
                        r.get(p)
                            .and_then(Value::as_str)
                            .is_some_and(|v| v.eq_ignore_ascii_case(id))
                    })
                    .cloned()
            }),
            _ => s.get(object, id),
        };
        match found {
            Some(rec) => results.push(shown(object, &rec, &properties)),
            None => missing.push(id.to_owned()),
        }
    }
    let mut out = json!({"status": "COMPLETE", "results": results,
        "startedAt": "2026-01-01T00:00:00Z", "completedAt": "2026-01-01T00:00:01Z"});
    if missing.is_empty() {
        json(200, out)
    } else {
        out["errors"] = json!([{"status": "error", "category": "OBJECT_NOT_FOUND",
            "message": "Could not get some objects, they may be deleted or not exist.",
            "context": {"ids": missing}}]);
        out["numErrors"] = json!(1);
        json(207, out)
    }
}

/// `POST /crm/v4/associations/{from}/{to}/batch/associate/default`: inputs of HubSpot ids.
fn associate(s: &mut State, from: &str, to: &str, req: &Incoming) -> Response {
    let inputs = req
        .json()
        .and_then(|b| b.get("inputs").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    if inputs.is_empty() || inputs.len() > 2000 {
        s.problems
            .push(format!("{} inputs in one associate call", inputs.len()));
        return hs_error(400, "VALIDATION_ERROR", "inputs must hold 1 to 2000 items");
    }
    let mut results = Vec::new();
    for i in &inputs {
        let (Some(a), Some(b)) = (i["from"]["id"].as_str(), i["to"]["id"].as_str()) else {
            s.problems.push(format!("malformed association input {i}"));
            return hs_error(
                400,
                "VALIDATION_ERROR",
                "each input needs from.id and to.id",
            );
        };
        let known = |s: &State, object: &str, id: &str| {
            s.objects.get(object).is_some_and(|t| {
                t.values()
                    .any(|r| r.get("hs_object_id").and_then(Value::as_str) == Some(id))
            })
        };
        if !known(s, from, a) || !known(s, to, b) {
            s.problems.push(format!(
                "association of unknown ids {a} → {b} (not HubSpot ids?)"
            ));
            return hs_error(
                400,
                "VALIDATION_ERROR",
                &format!("One or more objects could not be found: {a}, {b}"),
            );
        }
        s.associations
            .insert((from.into(), a.into(), to.into(), b.into()));
        s.associations
            .insert((to.into(), b.into(), from.into(), a.into()));
        results.push(
            json!({"fromObjectTypeId": "0-1", "fromObjectId": a.parse::<u64>().unwrap_or(0),
            "toObjectTypeId": "0-2", "toObjectId": b.parse::<u64>().unwrap_or(0), "labels": []}),
        );
    }
    json(
        200,
        json!({"status": "COMPLETE", "results": results,
        "startedAt": "2026-01-01T00:00:00Z", "completedAt": "2026-01-01T00:00:01Z"}),
    )
}

fn batch_update(s: &mut State, object: &str, req: &Incoming) -> Response {
    let inputs = req
        .json()
        .and_then(|b| b.get("inputs").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    if inputs.is_empty() || inputs.len() > 100 {
        s.problems
            .push(format!("{} inputs in one batch update", inputs.len()));
        return hs_error(400, "VALIDATION_ERROR", "inputs must hold 1 to 100 items");
    }
    let mut results = Vec::new();
    for input in &inputs {
        let (Some(id), Some(props)) = (input["id"].as_str(), input["properties"].as_object())
        else {
            s.problems.push(format!("malformed update input {input}"));
            return hs_error(
                400,
                "VALIDATION_ERROR",
                "each input needs id and properties",
            );
        };
        if let Err(e) = s.validate(object, props) {
            return hs_error(
                400,
                "VALIDATION_ERROR",
                &format!("Property values were not valid: {e}"),
            );
        }
        if s.key_of(object, id).is_none() {
            return hs_error(
                404,
                "OBJECT_NOT_FOUND",
                &format!("Object not found. objectId are usually numeric. {id}"),
            );
        }
        s.edit(object, id, Value::Object(props.clone()));
        let rec = s.get(object, id).unwrap_or_default();
        results.push(shown(
            object,
            &rec,
            &props.keys().cloned().collect::<Vec<_>>(),
        ));
    }
    json(
        200,
        json!({"status": "COMPLETE", "results": results,
        "startedAt": "2026-01-01T00:00:00Z", "completedAt": "2026-01-01T00:00:01Z"}),
    )
}

fn associations(s: &mut State, from: &str, to: &str, req: &Incoming) -> Response {
    let inputs = req
        .json()
        .and_then(|b| b.get("inputs").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    if inputs.len() > 1000 {
        s.problems
            .push(format!("{} association inputs", inputs.len()));
        return hs_error(400, "VALIDATION_ERROR", "at most 1000 inputs");
    }
    let type_id = match (from, to) {
        ("deals", "companies") => 341,
        ("contacts", "companies") => 279,
        ("companies", "contacts") => 280,
        _ => 1,
    };
    let mut results = Vec::new();
    for i in &inputs {
        let Some(id) = i["id"].as_str() else {
            s.problems
                .push(format!("association input without id: {i}"));
            continue;
        };
        let to_ids: Vec<Value> = s
            .associations
            .iter()
            .filter(|(f, fid, t, _)| f == from && fid == id && t == to)
            .map(|(_, _, _, tid)| {
                json!({"toObjectId": tid.parse::<u64>().unwrap_or(0),
                       "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": null}]})
            })
            .collect();
        if !to_ids.is_empty() {
            results.push(json!({"from": {"id": id}, "to": to_ids}));
        }
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
    let key = if id_property.as_deref() == Some("email") {
        Some(object_id.to_owned())
    } else {
        s.key_of("contacts", object_id)
    };
    let contacts = s.objects.entry("contacts".into()).or_default();
    if id_property.as_deref() == Some("email") {
        contacts.remove(object_id);
        s.blocklist.push(object_id.to_owned());
    } else if key.and_then(|k| contacts.remove(&k)).is_none() {
        return json(
            404,
            json!({"status": "error", "category": "OBJECT_NOT_FOUND", "message": "resource not found"}),
        );
    }
    axum::http::StatusCode::NO_CONTENT.into_response()
}

/// One object as the v3 object API answers it.
fn object_json(id: &str, rec: &Map<String, Value>) -> Value {
    json!({"id": id, "properties": rec, "createdAt": rec.get("createdate").cloned().unwrap_or(Value::Null),
           "updatedAt": rec.get("hs_lastmodifieddate").cloned().unwrap_or(Value::Null), "archived": false})
}

/// The id of the record `id` names: its id, or with `idProperty` that property's value.
fn find(s: &State, object: &str, id: &str, req: &Incoming) -> Option<String> {
    let id = super::decode(id);
    match req.query.get("idProperty").map(String::as_str) {
        None | Some("hs_object_id") => s.id_of(object, &id).filter(|found| *found == id),
        Some(p) => s.objects.get(object)?.values().find_map(|r| {
            (r.get(p).and_then(Value::as_str) == Some(id.as_str()))
                .then(|| {
                    r.get("hs_object_id")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .flatten()
        }),
    }
}

/// `GET /crm/v3/objects/{object}/{id}` (optionally `idProperty`, `properties`).
fn read_one(s: &mut State, object: &str, id: &str, req: &Incoming) -> Response {
    match find(s, object, id, req).and_then(|i| s.get(object, &i).map(|r| (i, r))) {
        Some((i, rec)) => json(200, object_json(&i, &rec)),
        None => hs_error(
            404,
            "OBJECT_NOT_FOUND",
            "Object not found. objectId are usually numeric.",
        ),
    }
}

fn bad_owner(s: &State, props: &Map<String, Value>) -> Option<String> {
    let owner = props.get("hubspot_owner_id")?;
    (!owner.as_str().is_some_and(|o| s.owners.contains_key(o)))
        .then(|| format!("{owner} is not a valid owner id"))
}

/// `PATCH /crm/v3/objects/{object}/{id}` with `{"properties": {...}}`.
fn update_one(s: &mut State, object: &str, id: &str, req: &Incoming) -> Response {
    let Some(props) = req
        .json()
        .and_then(|b| b.get("properties").and_then(Value::as_object).cloned())
    else {
        s.problems
            .push(format!("update of {object} {id} without properties"));
        return hs_error(400, "VALIDATION_ERROR", "properties are required");
    };
    if let Some(e) = bad_owner(s, &props) {
        s.problems.push(format!("{object} {id}: {e}"));
        return hs_error(
            400,
            "VALIDATION_ERROR",
            &format!("Property values were not valid: {e}"),
        );
    }
    if let Err(e) = s.validate(object, &props) {
        s.problems.push(format!("{object} {id}: {e}"));
        return hs_error(
            400,
            "VALIDATION_ERROR",
            &format!("Property values were not valid: {e}"),
        );
    }
    let Some(found) = find(s, object, id, req) else {
        return hs_error(
            404,
            "OBJECT_NOT_FOUND",
            "Object not found. objectId are usually numeric.",
        );
    };
    s.edit(object, &found, Value::Object(props));
    let rec = s.get(object, &found).unwrap_or_default();
    json(200, object_json(&found, &rec))
}

/// HubSpot task statuses, priorities and types (the `hs_task_*` enumerations).
pub const TASK_STATUSES: [&str; 5] = [
    "NOT_STARTED",
    "IN_PROGRESS",
    "WAITING",
    "COMPLETED",
    "DEFERRED",
];

/// `POST /crm/v3/objects/tasks`: `hs_timestamp` required, the enumerations checked, an owner that
/// exists, and associations to existing contacts with the HUBSPOT_DEFINED task-to-contact type 204.
fn create_task(s: &mut State, req: &Incoming) -> Response {
    let body = req.json().unwrap_or(Value::Null);
    let Some(props) = body.get("properties").and_then(Value::as_object).cloned() else {
        s.problems.push(format!("task without properties: {body}"));
        return hs_error(400, "VALIDATION_ERROR", "properties are required");
    };
    let mut wrong = Vec::new();
    if props
        .get("hs_timestamp")
        .and_then(Value::as_str)
        .is_none_or(|t| ms_of(&json!(t)).is_none())
    {
        wrong.push("hs_timestamp is required (a date-time)".to_owned());
    }
    for (p, allowed) in [
        ("hs_task_status", &TASK_STATUSES[..]),
        ("hs_task_priority", &["NONE", "LOW", "MEDIUM", "HIGH"][..]),
        (
            "hs_task_type",
            &["TODO", "CALL", "EMAIL", "LINKED_IN", "MEETING"][..],
        ),
    ] {
        if let Some(v) = props.get(p)
            && !v.as_str().is_some_and(|v| allowed.contains(&v))
        {
            wrong.push(format!("{v} was not one of the allowed options for {p}"));
        }
    }
    for (k, v) in &props {
        if !k.starts_with("hs_task_") && !["hs_timestamp", "hubspot_owner_id"].contains(&k.as_str())
        {
            wrong.push(format!("Property \"{k}\" does not exist"));
        }
        if !v.is_string() {
            wrong.push(format!("Property values must be strings: {k}"));
        }
    }
    if let Some(e) = bad_owner(s, &props) {
        wrong.push(e);
    }
    let mut links = Vec::new();
    for a in body
        .get("associations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let to = a["to"]["id"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| a["to"]["id"].as_u64().map(|n| n.to_string()));
        let typed = a["types"].as_array().is_some_and(|t| {
            !t.is_empty()
                && t.iter().all(|t| {
                    t["associationCategory"] == "HUBSPOT_DEFINED" && t["associationTypeId"] == 204
                })
        });
        match to {
            Some(id) if typed && s.id_of("contacts", &id).as_deref() == Some(id.as_str()) => {
                links.push(id)
            }
            _ => wrong.push(format!(
                "association {a} is not a task-to-contact (204) link to an existing contact"
            )),
        }
    }
    if !wrong.is_empty() {
        s.problems.push(format!("task: {}", wrong.join("; ")));
        return hs_error(400, "VALIDATION_ERROR", &wrong.join("; "));
    }
    let id = s.create("tasks", Value::Object(props));
    for c in links {
        s.associations
            .insert(("tasks".into(), id.clone(), "contacts".into(), c.clone()));
        s.associations
            .insert(("contacts".into(), c, "tasks".into(), id.clone()));
    }
    let rec = s.get("tasks", &id).unwrap_or_default();
    json(201, object_json(&id, &rec))
}

/// Starts a fake HubSpot.
pub async fn spawn() -> Fake<State> {
    start(|_| State::default(), handle).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v3_signature_matches_hubspot_s_documented_recipe() {
        // base64(HMAC-SHA256(secret, method + uri + body + timestamp)).
        let sig = sign_v3(
            "secret",
            "POST",
            "https://x.test/hook",
            "[]",
            1_700_000_000_000,
        );
        assert_eq!(sig.len(), 44);
        assert_ne!(
            sig,
            sign_v3(
                "secret",
                "POST",
                "https://x.test/hook",
                "[]",
                1_700_000_000_001
            )
        );
    }
}
