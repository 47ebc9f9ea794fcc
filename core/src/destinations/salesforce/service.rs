//! Salesforce HTTP service: OAuth 2.0 client-credentials token for the integration user (cached,
//! renewed on `INVALID_SESSION_ID`), the daily API budget (our own count and the org's usage from
//! `Sforce-Limit-Info: api-usage=N/M`), and classification of collection / composite answers.
//! Before a collection upsert, fields the CRM changed more recently than our value are dropped;
//! after it, what was written is remembered for the inbound sync ([`crate::crm::outbound`]).

use super::config::{ErasureMode, SalesforceConfig};
use super::encoder::{ACCOUNT_KEY, CONTACT_KEY, segment};
use crate::crm::mapping::{Crm, PersonObject};
use crate::crm::{CrmStore, outbound};
use crate::destinations::erasure::{self, Erasure, Subject};
use crate::destinations::http::{self, Answer};
use crate::destinations::{Method, Request, RetryAction, Sent};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;

/// Record-level error codes worth retrying (transient on Salesforce's side).
const TRANSIENT: [&str; 4] = [
    "UNABLE_TO_LOCK_ROW",
    "REQUEST_LIMIT_EXCEEDED",
    "SERVER_UNAVAILABLE",
    "PROCESSING_HALTED",
];

#[derive(Clone)]
struct Session {
    token: SecretString,
    instance_url: String,
}

/// The service.
pub struct Service {
    config: SalesforceConfig,
    client: reqwest::Client,
    session: Mutex<Option<Session>>,
    /// Calls made in the current UTC day: (day number, count).
    day: Mutex<(i64, u64)>,
    /// The org's usage and limit from the last `Sforce-Limit-Info`.
    pub api_used: AtomicU64,
    /// The org's daily limit from the last `Sforce-Limit-Info` (0 = unknown).
    pub api_max: AtomicU64,
    /// Field states for last-modified-wins and echo suppression (absent in the CLI).
    crm: Option<Arc<dyn CrmStore>>,
    /// When a person may be a Lead (erasure then covers Leads too).
    person: PersonObject,
}

/// Parses `api-usage=N/M` out of a `Sforce-Limit-Info` header.
pub fn parse_limit_info(v: &str) -> Option<(u64, u64)> {
    v.split(',').find_map(|part| {
        let (k, val) = part.trim().split_once('=')?;
        if k.trim() != "api-usage" {
            return None;
        }
        let (used, max) = val.trim().split_once('/')?;
        Some((used.trim().parse().ok()?, max.trim().parse().ok()?))
    })
}

/// A Salesforce error list (`[{"message","errorCode"|"statusCode","fields"}]`) as one line.
pub fn error_text(errors: &Value) -> String {
    let list = match errors {
        Value::Array(a) => a.clone(),
        Value::Object(_) => vec![errors.clone()],
        _ => return errors.to_string(),
    };
    list.iter()
        .map(|e| {
            let code = e
                .get("errorCode")
                .or_else(|| e.get("statusCode"))
                .and_then(Value::as_str)
                .unwrap_or("ERROR");
            let msg = e.get("message").and_then(Value::as_str).unwrap_or("");
            let fields = e
                .get("fields")
                .and_then(Value::as_array)
                .filter(|f| !f.is_empty())
                .map(|f| {
                    format!(
                        " (fields: {})",
                        f.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
                .unwrap_or_default();
            format!("{code}: {msg}{fields}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn first_code(errors: &Value) -> String {
    let e = match errors {
        Value::Array(a) => a.first().cloned().unwrap_or(Value::Null),
        other => other.clone(),
    };
    e.get("errorCode")
        .or_else(|| e.get("statusCode"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

/// The (object, external id field) of an sObject Collections upsert path
/// (`…/composite/sobjects/{object}/{field}`).
fn collection_of(path: &str) -> Option<(String, String)> {
    let rest = path.split("/composite/sobjects/").nth(1)?;
    let (object, field) = rest.split_once('/')?;
    (field == CONTACT_KEY || field == ACCOUNT_KEY).then(|| (object.to_owned(), field.to_owned()))
}

/// The error of an update to a Lead that sales has converted meanwhile.
pub const CONVERTED_LEAD: &str = "CANNOT_UPDATE_CONVERTED_LEAD";

/// Classifies an sObject Collections answer (an array of SaveResult / UpsertResult).
pub fn classify_collection(answer: &Answer) -> RetryAction {
    if !(200..300).contains(&answer.status) {
        return classify_call(answer);
    }
    let Value::Array(results) = answer.json() else {
        return RetryAction::Success;
    };
    let (mut retry, mut dead) = (Vec::new(), Vec::new());
    for (i, r) in results.iter().enumerate() {
        if r.get("success").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let errors = r.get("errors").cloned().unwrap_or(Value::Null);
        let code = first_code(&errors);
        if code == CONVERTED_LEAD {
            // Sales converted the Lead after this activation was enqueued: there is nothing left
            // to update; the person's next changes go to their Contact (the sync brings its id).
            tracing::info!("Lead already converted; its update is skipped");
            continue;
        }
        if TRANSIENT.contains(&code.as_str()) {
            retry.push(i);
        } else {
            dead.push((i, error_text(&errors)));
        }
    }
    if retry.is_empty() && dead.is_empty() {
        RetryAction::Success
    } else {
        RetryAction::RetryPart {
            retry,
            dead,
            reason: "transient Salesforce record error".into(),
        }
    }
}

/// Classifies a composite answer: subrequests `acctN`/`taskN` belong to item N.
pub fn classify_composite(answer: &Answer, items: usize) -> RetryAction {
    if !(200..300).contains(&answer.status) {
        return classify_call(answer);
    }
    let body = answer.json();
    let Some(subs) = body.get("compositeResponse").and_then(Value::as_array) else {
        return RetryAction::Success;
    };
    let (mut retry, mut dead) = (Vec::new(), Vec::new());
    for n in 0..items {
        let task = subs
            .iter()
            .find(|s| s.get("referenceId").and_then(Value::as_str) == Some(&format!("task{n}")));
        let lookup = subs
            .iter()
            .find(|s| s.get("referenceId").and_then(Value::as_str) == Some(&format!("acct{n}")));
        let status = |s: Option<&Value>| {
            s.and_then(|s| s.get("httpStatusCode"))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        if (200..300).contains(&status(task)) {
            continue;
        }
        if !(200..300).contains(&status(lookup)) {
            // The Account is not there (yet): it is upserted earlier in the same batch, so this
            // is a race or a transient error; retry.
            retry.push(n);
            continue;
        }
        let errors = task
            .and_then(|t| t.get("body"))
            .cloned()
            .unwrap_or(Value::Null);
        let code = first_code(&errors);
        if TRANSIENT.contains(&code.as_str()) || http::retryable(status(task) as u16) {
            retry.push(n);
        } else {
            dead.push((n, error_text(&errors)));
        }
    }
    if retry.is_empty() && dead.is_empty() {
        RetryAction::Success
    } else {
        RetryAction::RetryPart {
            retry,
            dead,
            reason: "Account lookup or Task upsert failed transiently".into(),
        }
    }
}

/// Classifies a failed whole call from its status and Salesforce error body.
pub fn classify_call(answer: &Answer) -> RetryAction {
    let body = answer.json();
    let message = if body.is_null() {
        http::truncate(&answer.body)
    } else {
        error_text(&body)
    };
    let code = first_code(&body);
    if code == "REQUEST_LIMIT_EXCEEDED" {
        return RetryAction::Retry {
            after: Some(http::retry_after(&answer.headers).unwrap_or(Duration::from_secs(3600))),
            reason: message,
        };
    }
    http::classify(answer, message)
}

impl Service {
    /// A service for `config`.
    pub fn new(config: SalesforceConfig, client: reqwest::Client) -> Service {
        Service {
            config,
            client,
            session: Mutex::new(None),
            day: Mutex::new((0, 0)),
            api_used: AtomicU64::new(0),
            api_max: AtomicU64::new(0),
            crm: None,
            person: PersonObject::Contact,
        }
    }

    /// Remembers writes in (and checks conflicts against) the CRM sync's store.
    pub fn with_crm(mut self, store: Option<Arc<dyn CrmStore>>, person: PersonObject) -> Service {
        self.crm = store;
        self.person = person;
        self
    }

    async fn session(&self) -> Result<Session, (Option<u16>, RetryAction)> {
        if let Some(s) = self.session.lock().await.clone() {
            return Ok(s);
        }
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.config.client_id.as_str()),
            ("client_secret", self.config.client_secret.expose_secret()),
        ];
        let answer = http::execute(
            self.client
                .post(format!("{}/services/oauth2/token", self.config.url))
                .form(&form),
        )
        .await
        .map_err(|e| {
            (
                None,
                RetryAction::Retry {
                    after: None,
                    reason: e,
                },
            )
        })?;
        let body = answer.json();
        match (
            answer.status,
            body.get("access_token").and_then(Value::as_str),
        ) {
            (200, Some(token)) => {
                let s = Session {
                    token: SecretString::from(token.to_owned()),
                    instance_url: body
                        .get("instance_url")
                        .and_then(Value::as_str)
                        .unwrap_or(&self.config.url)
                        .trim_end_matches('/')
                        .to_owned(),
                };
                *self.session.lock().await = Some(s.clone());
                Ok(s)
            }
            (status, _) => {
                // A credentials problem is fixable by an operator: retry with backoff rather than
                // dead-lettering every activation.
                let why = format!(
                    "OAuth token request failed: {} {}",
                    body.get("error").and_then(Value::as_str).unwrap_or(""),
                    body.get("error_description")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                );
                Err((
                    Some(status),
                    RetryAction::Retry {
                        after: None,
                        reason: format!("HTTP {status}: {}", why.trim()),
                    },
                ))
            }
        }
    }

    /// Whether today's budget allows another call (and counts it).
    async fn spend(&self) -> bool {
        let today = chrono::Utc::now().timestamp() / 86_400;
        let mut day = self.day.lock().await;
        if day.0 != today {
            *day = (today, 0);
        }
        let max = self.api_max.load(Ordering::Relaxed);
        let used = self.api_used.load(Ordering::Relaxed);
        let org_exhausted = max > 0 && used >= max;
        if day.1 >= self.config.daily_budget || org_exhausted {
            return false;
        }
        day.1 += 1;
        true
    }

    /// Makes one API call (budget, session, `Sforce-Limit-Info`, session renewal on 401); an
    /// answer that is not worth reading is returned as the `Sent` to report.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, Sent> {
        if !self.spend().await {
            return Err(Sent {
                status: None,
                action: RetryAction::Retry {
                    after: Some(Duration::from_secs(3600)),
                    reason: "Salesforce daily API budget exhausted; waiting".into(),
                },
            });
        }
        let session = self
            .session()
            .await
            .map_err(|(status, action)| Sent { status, action })?;
        let url = format!("{}{}", session.instance_url, path);
        let builder = match method {
            Method::Get => self.client.get(url),
            Method::Post => self.client.post(url),
            Method::Patch => self.client.patch(url),
            Method::Delete => self.client.delete(url),
        };
        let mut builder = builder.bearer_auth(session.token.expose_secret());
        if let Some(body) = body {
            builder = builder.json(body);
        }
        let answer = http::execute(builder).await.map_err(|e| Sent {
            status: None,
            action: RetryAction::Retry {
                after: None,
                reason: e,
            },
        })?;
        if let Some((used, max)) = answer
            .header("sforce-limit-info")
            .and_then(parse_limit_info)
        {
            self.api_used.store(used, Ordering::Relaxed);
            self.api_max.store(max, Ordering::Relaxed);
        }
        if answer.status == 401 {
            *self.session.lock().await = None;
            return Err(Sent {
                status: Some(401),
                action: RetryAction::Retry {
                    after: Some(Duration::ZERO),
                    reason: format!(
                        "session expired, renewing the token: {}",
                        error_text(&answer.json())
                    ),
                },
            });
        }
        Ok(answer)
    }

    /// Makes one call. A collection upsert first loses the fields the CRM changed more recently
    /// (last-modified-wins) and, once answered, its successful records are remembered.
    pub async fn send(&self, request: &Request) -> Sent {
        let collection = collection_of(&request.path);
        let mut body = request.body.clone();
        let mut times = Vec::new();
        if let (Some((object, field)), Some(b)) = (&collection, body.as_mut()) {
            let key = |r: &Value| {
                r.get(field.as_str())
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            match outbound::resolve_conflicts(
                self.crm.as_ref(),
                Crm::Salesforce,
                object,
                b,
                "records",
                key,
                None,
            )
            .await
            {
                Ok(t) => times = t,
                Err(e) => {
                    return Sent {
                        status: None,
                        action: RetryAction::Retry {
                            after: None,
                            reason: e,
                        },
                    };
                }
            }
        }
        let answer = match self
            .call(request.method, &request.path, body.as_ref())
            .await
        {
            Ok(a) => a,
            Err(sent) => return sent,
        };
        let action = if request.path.ends_with("/composite") {
            classify_composite(&answer, request.covers.len())
        } else {
            classify_collection(&answer)
        };
        if let (Some((object, field)), Some(b), true) = (
            &collection,
            body.as_ref(),
            (200..300).contains(&answer.status),
        ) {
            let results = answer.json();
            let written: Vec<(String, Map<String, Value>)> = b["records"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .filter(|(i, _)| results[*i]["success"] == Value::Bool(true))
                .filter_map(|(_, r)| {
                    let key = r.get(field.as_str())?.as_str()?.to_owned();
                    Some((key, r.as_object()?.clone()))
                })
                .collect();
            let times: Vec<Map<String, Value>> = b["records"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .filter(|(i, _)| results[*i]["success"] == Value::Bool(true))
                .map(|(i, _)| times.get(i).cloned().unwrap_or_default())
                .collect();
            outbound::remember(
                self.crm.as_ref(),
                Crm::Salesforce,
                object,
                written,
                &times,
                &[field.as_str()],
                chrono::Utc::now().timestamp_millis(),
            )
            .await;
        }
        Sent {
            status: Some(answer.status),
            action,
        }
    }

    /// Applies the configured erasure to the person's Contacts — found by the userId external id
    /// (`Touchpoint_User_Id__c`) and by Contact id when the profile holds one (`salesforce_id`
    /// identities): delete them, or blank their personal fields, or leave them (`erasure = off`).
    /// A Contact that does not exist counts as erased.
    pub async fn erase(&self, subject: &Subject) -> Erasure {
        let mode = self.config.erasure;
        if mode == ErasureMode::Off {
            return Erasure::NotSupported(
                "switched off (TOUCHPOINT_SALESFORCE_ERASURE=off): Contacts are left as they are"
                    .into(),
            );
        }
        let v = &self.config.api_version;
        let mut records: Vec<String> = subject
            .user_ids
            .iter()
            .map(|u| {
                format!(
                    "/services/data/{v}/sobjects/Contact/{CONTACT_KEY}/{}",
                    segment(u)
                )
            })
            .collect();
        records.extend(
            subject
                .external(&["salesforce_id", "salesforce_contact_id"])
                .into_iter()
                .map(|id| format!("/services/data/{v}/sobjects/Contact/{}", segment(id))),
        );
        if self.person != PersonObject::Contact {
            // People may be Leads too: by the userId external id and the Lead ids the sync saw.
            records.extend(subject.user_ids.iter().map(|u| {
                format!(
                    "/services/data/{v}/sobjects/Lead/{CONTACT_KEY}/{}",
                    segment(u)
                )
            }));
        }
        records.extend(
            subject
                .external(&["salesforce_lead_id"])
                .into_iter()
                .map(|id| format!("/services/data/{v}/sobjects/Lead/{}", segment(id))),
        );
        if records.is_empty() {
            return Erasure::Done("no userId or Contact id: no Contact was ever sent".into());
        }
        let label = match mode {
            ErasureMode::Delete => "Contact delete",
            _ => "Contact PII blanked",
        };
        let mut answers = Vec::new();
        for record in records {
            let sent = match mode {
                ErasureMode::Delete => self.erase_call(Method::Delete, &record, None).await,
                _ => self.blank(&record).await,
            };
            let stop = matches!(sent.action, RetryAction::Retry { .. });
            answers.push(sent);
            if stop {
                break;
            }
        }
        erasure::settle(label, &answers, true)
    }

    /// Reads the Contact's Id, then blanks the fields the encoder writes (LastName is required,
    /// so it becomes `[erased]`); the external id is cleared so nothing upserts into it again.
    async fn blank(&self, record: &str) -> Sent {
        let answer = match self
            .call(Method::Get, &format!("{record}?fields=Id"), None)
            .await
        {
            Ok(a) => a,
            Err(sent) => return sent,
        };
        let id = answer
            .json()
            .get("Id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let Some(id) = id.filter(|_| answer.status == 200) else {
            return Sent {
                status: Some(answer.status),
                action: classify_call(&answer),
            };
        };
        let fields = serde_json::json!({
            "Email": null, "Phone": null, "FirstName": null, "Title": null,
            "LastName": "[erased]", CONTACT_KEY: null,
        });
        let object = if record.contains("/sobjects/Lead/") {
            "Lead"
        } else {
            "Contact"
        };
        let path = format!(
            "/services/data/{}/sobjects/{object}/{}",
            self.config.api_version,
            segment(&id)
        );
        self.erase_call(Method::Patch, &path, Some(&fields)).await
    }

    async fn erase_call(&self, method: Method, path: &str, body: Option<&Value>) -> Sent {
        match self.call(method, path, body).await {
            Ok(answer) => Sent {
                status: Some(answer.status),
                action: if (200..300).contains(&answer.status) {
                    RetryAction::Success
                } else {
                    classify_call(&answer)
                },
            },
            Err(sent) => sent,
        }
    }

    /// Checks the credentials and reads the org's API usage (`/limits`).
    pub async fn health(&self) -> Result<(), String> {
        let session = self.session().await.map_err(|(_, a)| format!("{a:?}"))?;
        let answer = http::execute(
            self.client
                .get(format!(
                    "{}/services/data/{}/limits",
                    session.instance_url, self.config.api_version
                ))
                .bearer_auth(session.token.expose_secret()),
        )
        .await?;
        if (200..300).contains(&answer.status) {
            Ok(())
        } else {
            Err(format!(
                "HTTP {}: {}",
                answer.status,
                error_text(&answer.json())
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    fn answer(status: u16, body: Value) -> Answer {
        Answer {
            status,
            headers: HeaderMap::new(),
            body: body.to_string(),
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn limit_info_is_read() {
        assert_eq!(parse_limit_info("api-usage=25/15000"), Some((25, 15000)));
        assert_eq!(
            parse_limit_info("per-app-api-usage=1/100(appName=x), api-usage=7/50"),
            Some((7, 50))
        );
        assert_eq!(parse_limit_info("nonsense"), None);
    }

    #[test]
    fn a_picklist_error_dead_letters_only_its_record() {
        let a = answer(
            200,
            serde_json::json!([
                {"id": "001A", "success": true, "errors": [], "created": true},
                {"success": false, "errors": [{"statusCode": "PICKLIST_INVALID_VALUE",
                  "message": "bad value for restricted picklist field: enterprise", "fields": ["Plan_Tier__c"]}]},
                {"success": false, "errors": [{"statusCode": "UNABLE_TO_LOCK_ROW", "message": "locked", "fields": []}]}
            ]),
        );
        assert_eq!(
            classify_collection(&a),
            RetryAction::RetryPart {
                retry: vec![2],
                dead: vec![(
                    1,
                    "PICKLIST_INVALID_VALUE: bad value for restricted picklist field: enterprise (fields: Plan_Tier__c)"
                        .into()
                )],
                reason: "transient Salesforce record error".into(),
            }
        );
    }

    #[test]
    fn an_update_of_a_lead_sales_converted_meanwhile_is_not_a_dead_letter() {
        let a = answer(
            200,
            serde_json::json!([{"success": false, "errors": [{"statusCode": "CANNOT_UPDATE_CONVERTED_LEAD",
                "message": "cannot reference converted lead", "fields": []}]}]),
        );
        assert_eq!(classify_collection(&a), RetryAction::Success);
    }

    #[test]
    fn whole_call_errors_keep_salesforce_s_message() {
        let bad = answer(
            400,
            serde_json::json!([{"message": "No such column", "errorCode": "INVALID_FIELD", "fields": []}]),
        );
        assert_eq!(
            classify_call(&bad),
            RetryAction::DontRetry("HTTP 400: INVALID_FIELD: No such column".into())
        );
        let limit = answer(
            403,
            serde_json::json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]),
        );
        assert!(matches!(classify_call(&limit), RetryAction::Retry { .. }));
    }

    #[test]
    fn a_composite_task_whose_account_is_missing_is_retried() {
        let a = answer(
            200,
            serde_json::json!({"compositeResponse": [
                {"referenceId": "acct0", "httpStatusCode": 200, "body": {"Id": "001", "OwnerId": "005"}},
                {"referenceId": "task0", "httpStatusCode": 201, "body": {"id": "00T", "success": true}},
                {"referenceId": "acct1", "httpStatusCode": 404, "body": [{"errorCode": "NOT_FOUND", "message": "x"}]},
                {"referenceId": "task1", "httpStatusCode": 400, "body": [{"errorCode": "PROCESSING_HALTED", "message": "y"}]}
            ]}),
        );
        assert_eq!(
            classify_composite(&a, 2),
            RetryAction::RetryPart {
                retry: vec![1],
                dead: vec![],
                reason: "Account lookup or Task upsert failed transiently".into()
            }
        );
    }
}
