//! HubSpot HTTP service: OAuth 2.0 refresh-token flow (access tokens cached until shortly before
//! they expire), the 190 requests / 10 s token bucket, and classification of batch answers
//! (207 multi-status errors dead-letter only their inputs; 429 waits out the rolling window).
//! Before an upsert, properties HubSpot changed more recently than our value are dropped; after
//! it, what was written is remembered for the inbound sync ([`crate::crm::outbound`]).

use super::config::{HubSpotAuth, HubSpotConfig};
use crate::crm::mapping::Crm;
use crate::crm::{CrmStore, outbound};
use crate::destinations::erasure::{self, Erasure, Subject};
use crate::destinations::http::{self, Answer};
use crate::destinations::ratelimit::TokenBucket;
use crate::destinations::{Method, Request, RetryAction, Sent};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The service.
pub struct Service {
    config: HubSpotConfig,
    client: reqwest::Client,
    token: Mutex<Option<(SecretString, Instant)>>,
    bucket: TokenBucket,
    crm: Option<Arc<dyn CrmStore>>,
    /// HubSpot ids of contacts (by email) and companies (by groupId) seen in upsert answers.
    ids: std::sync::Mutex<HashMap<(String, String), String>>,
}

fn message(body: &Value, raw: &str) -> String {
    match body.get("message").and_then(Value::as_str) {
        Some(m) => {
            let category = body.get("category").and_then(Value::as_str).unwrap_or("");
            if category.is_empty() {
                m.to_owned()
            } else {
                format!("{category}: {m}")
            }
        }
        None => http::truncate(raw),
    }
}

/// The object of a batch upsert path (`/crm/v3/objects/{object}/batch/upsert`).
fn upsert_object(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/crm/v3/objects/")?;
    let (object, tail) = rest.split_once('/')?;
    (tail == "batch/upsert").then(|| object.to_owned())
}

/// Classifies a batch upsert answer; `ids` are the request's input ids in order.
pub fn classify(answer: &Answer, ids: &[String]) -> RetryAction {
    let body = answer.json();
    if answer.status == 429 {
        let window = answer
            .header("x-hubspot-ratelimit-interval-milliseconds")
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis);
        return RetryAction::Retry {
            after: http::retry_after(&answer.headers)
                .or(window)
                .or(Some(Duration::from_secs(10))),
            reason: format!("HTTP 429: {}", message(&body, &answer.body)),
        };
    }
    if !(200..300).contains(&answer.status) {
        return http::classify(answer, message(&body, &answer.body));
    }
    let Some(errors) = body
        .get("errors")
        .and_then(Value::as_array)
        .filter(|e| !e.is_empty())
    else {
        return RetryAction::Success;
    };
    let mut dead = Vec::new();
    for e in errors {
        let text = message(e, "");
        let named: Vec<String> = e
            .pointer("/context/ids")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if named.is_empty() {
            // An error that names no input: the whole call is in doubt.
            return RetryAction::DontRetry(text);
        }
        for (i, id) in ids.iter().enumerate() {
            if named.iter().any(|n| n.eq_ignore_ascii_case(id)) {
                dead.push((i, text.clone()));
            }
        }
    }
    RetryAction::RetryPart {
        retry: Vec::new(),
        dead,
        reason: String::new(),
    }
}

impl Service {
    /// A service for `config`.
    pub fn new(config: HubSpotConfig, client: reqwest::Client) -> Service {
        let bucket = TokenBucket::new(config.requests_per_10s, Duration::from_secs(10));
        Service {
            config,
            client,
            token: Mutex::new(None),
            bucket,
            crm: None,
            ids: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Remembers writes in (and checks conflicts against) the CRM sync's store.
    pub fn with_crm(mut self, store: Option<Arc<dyn CrmStore>>) -> Service {
        self.crm = store;
        self
    }

    /// One authenticated call through the rate limit (the inbound sync's reads); a network or
    /// token failure is an error, any HTTP answer is returned.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let token = self.token().await.map_err(|(_, a)| format!("{a:?}"))?;
        self.bucket.acquire().await;
        let url = format!("{}{}", self.config.url, path);
        let builder = match method {
            Method::Get => self.client.get(url),
            Method::Post => self.client.post(url),
            Method::Patch => self.client.patch(url),
            Method::Delete => self.client.delete(url),
        };
        let mut builder = builder.bearer_auth(token.expose_secret());
        if let Some(b) = body {
            builder = builder.json(b);
        }
        let answer = http::execute(builder).await?;
        if answer.status == 401 {
            *self.token.lock().await = None;
        }
        Ok(answer)
    }

    async fn token(&self) -> Result<SecretString, (Option<u16>, RetryAction)> {
        let (client_id, client_secret, refresh) = match &self.config.auth {
            HubSpotAuth::Static(t) => return Ok(t.clone()),
            HubSpotAuth::OAuth {
                client_id,
                client_secret,
                refresh_token,
            } => (client_id, client_secret, refresh_token),
        };
        if let Some((t, until)) = self.token.lock().await.clone()
            && Instant::now() < until
        {
            return Ok(t);
        }
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", client_id.as_str()),
            ("client_secret", client_secret.expose_secret()),
            ("refresh_token", refresh.expose_secret()),
        ];
        let answer = http::execute(
            self.client
                .post(format!("{}/oauth/v1/token", self.config.url))
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
        match body.get("access_token").and_then(Value::as_str) {
            Some(t) if answer.status == 200 => {
                let ttl = body
                    .get("expires_in")
                    .and_then(Value::as_u64)
                    .unwrap_or(1800);
                let token = SecretString::from(t.to_owned());
                let until = Instant::now() + Duration::from_secs(ttl.saturating_sub(60).max(1));
                *self.token.lock().await = Some((token.clone(), until));
                Ok(token)
            }
            _ => Err((
                Some(answer.status),
                RetryAction::Retry {
                    after: None,
                    reason: format!(
                        "HTTP {}: OAuth refresh failed: {}",
                        answer.status,
                        message(&body, &answer.body)
                    ),
                },
            )),
        }
    }

    /// Makes one call. A batch upsert first loses the properties HubSpot changed more recently
    /// (last-modified-wins) and, once answered, its successful inputs are remembered.
    pub async fn send(&self, request: &Request) -> Sent {
        let token = match self.token().await {
            Ok(t) => t,
            Err((status, action)) => return Sent { status, action },
        };
        if request.path == super::encoder::ASSOCIATE_PATH {
            return self.associate(request).await;
        }
        let object = upsert_object(&request.path);
        let mut body = request.body.clone();
        let mut times = Vec::new();
        if let (Some(object), Some(b)) = (&object, body.as_mut()) {
            let key = |i: &Value| i["id"].as_str().map(str::to_owned);
            match outbound::resolve_conflicts(
                self.crm.as_ref(),
                Crm::HubSpot,
                object,
                b,
                "inputs",
                key,
                Some("properties"),
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
        self.bucket.acquire().await;
        let mut builder = self
            .client
            .post(format!("{}{}", self.config.url, request.path))
            .bearer_auth(token.expose_secret());
        if let Some(body) = &body {
            builder = builder.json(body);
        }
        let answer = match http::execute(builder).await {
            Ok(a) => a,
            Err(e) => {
                return Sent {
                    status: None,
                    action: RetryAction::Retry {
                        after: None,
                        reason: e,
                    },
                };
            }
        };
        if answer.status == 401 {
            *self.token.lock().await = None;
            return Sent {
                status: Some(401),
                action: RetryAction::Retry {
                    after: Some(Duration::ZERO),
                    reason: "access token expired; refreshing".into(),
                },
            };
        }
        let ids: Vec<String> = body
            .as_ref()
            .and_then(|b| b.get("inputs"))
            .and_then(Value::as_array)
            .map(|inputs| {
                inputs
                    .iter()
                    .map(|i| i["id"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        let action = classify(&answer, &ids);
        if let (Some(object), Some(b), true) =
            (&object, body.as_ref(), (200..300).contains(&answer.status))
        {
            self.learn_ids(object, b, &answer.json());
            let failed: Vec<usize> = match &action {
                RetryAction::RetryPart { retry, dead, .. } => retry
                    .iter()
                    .copied()
                    .chain(dead.iter().map(|(i, _)| *i))
                    .collect(),
                _ => Vec::new(),
            };
            let mut written: Vec<(String, Map<String, Value>)> = Vec::new();
            let mut kept_times = Vec::new();
            for (i, input) in b["inputs"].as_array().into_iter().flatten().enumerate() {
                if failed.contains(&i) {
                    continue;
                }
                let (Some(id), Some(props)) =
                    (input["id"].as_str(), input["properties"].as_object())
                else {
                    continue;
                };
                let key = if object == "contacts" {
                    id.to_ascii_lowercase()
                } else {
                    id.to_owned()
                };
                written.push((key, props.clone()));
                kept_times.push(times.get(i).cloned().unwrap_or_default());
            }
            outbound::remember(
                self.crm.as_ref(),
                Crm::HubSpot,
                object,
                written,
                &kept_times,
                &[
                    "email",
                    "touchpoint_user_id",
                    &self.config.company_id_property,
                ],
                chrono::Utc::now().timestamp_millis(),
            )
            .await;
        }
        Sent {
            status: Some(answer.status),
            action,
        }
    }

    /// Remembers the HubSpot ids of upserted contacts and companies (for associations).
    fn learn_ids(&self, object: &str, body: &Value, answer: &Value) {
        let id_property = body["inputs"][0]["idProperty"].as_str().unwrap_or("email");
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        for r in answer["results"].as_array().into_iter().flatten() {
            let (Some(id), Some(key)) = (r["id"].as_str(), r["properties"][id_property].as_str())
            else {
                continue;
            };
            ids.insert((object.to_owned(), key.to_ascii_lowercase()), id.to_owned());
        }
    }

    /// HubSpot ids of records by an id property: remembered ones, the rest by one batch read.
    async fn resolve(
        &self,
        object: &str,
        id_property: &str,
        keys: &[String],
    ) -> Result<HashMap<String, String>, Sent> {
        let mut out = HashMap::new();
        let mut missing = Vec::new();
        {
            let ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
            for k in keys {
                match ids.get(&(object.to_owned(), k.to_ascii_lowercase())) {
                    Some(id) => {
                        out.insert(k.clone(), id.clone());
                    }
                    None => missing.push(k.clone()),
                }
            }
        }
        missing.sort();
        missing.dedup();
        for chunk in missing.chunks(super::encoder::MAX_INPUTS) {
            let body = json!({
                "idProperty": id_property,
                "properties": [id_property],
                "inputs": chunk.iter().map(|k| json!({"id": k})).collect::<Vec<_>>(),
            });
            let answer = self
                .call(
                    Method::Post,
                    &format!("/crm/v3/objects/{object}/batch/read"),
                    Some(&body),
                )
                .await
                .map_err(|e| Sent {
                    status: None,
                    action: RetryAction::Retry {
                        after: None,
                        reason: e,
                    },
                })?;
            if !(200..300).contains(&answer.status) {
                return Err(Sent {
                    status: Some(answer.status),
                    action: classify(&answer, &[]),
                });
            }
            let json = answer.json();
            self.learn_ids(
                object,
                &json!({"inputs": [{"idProperty": id_property}]}),
                &json,
            );
            for r in json["results"].as_array().into_iter().flatten() {
                if let (Some(id), Some(key)) =
                    (r["id"].as_str(), r["properties"][id_property].as_str())
                    && let Some(k) = chunk.iter().find(|k| k.eq_ignore_ascii_case(key))
                {
                    out.insert(k.clone(), id.to_owned());
                }
            }
        }
        Ok(out)
    }

    /// Associates contacts with companies: the email and groupId of each input become HubSpot
    /// ids; an input whose contact or company HubSpot does not have yet is retried.
    async fn associate(&self, request: &Request) -> Sent {
        let Some(body) = &request.body else {
            return Sent {
                status: None,
                action: RetryAction::Success,
            };
        };
        let to_property = body[super::encoder::ID_PROPERTIES]["to"]
            .as_str()
            .unwrap_or(&self.config.company_id_property)
            .to_owned();
        let inputs: Vec<(String, String)> = body["inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| {
                Some((
                    i["from"]["id"].as_str()?.to_owned(),
                    i["to"]["id"].as_str()?.to_owned(),
                ))
            })
            .collect();
        let emails: Vec<String> = inputs.iter().map(|(e, _)| e.clone()).collect();
        let groups: Vec<String> = inputs.iter().map(|(_, g)| g.clone()).collect();
        let contacts = match self.resolve("contacts", "email", &emails).await {
            Ok(c) => c,
            Err(sent) => return sent,
        };
        let companies = match self.resolve("companies", &to_property, &groups).await {
            Ok(c) => c,
            Err(sent) => return sent,
        };
        let mut pairs = Vec::new();
        let mut unknown = Vec::new();
        for (i, (email, group)) in inputs.iter().enumerate() {
            match (contacts.get(email), companies.get(group)) {
                (Some(c), Some(g)) => pairs.push(json!({"from": {"id": c}, "to": {"id": g}})),
                _ => unknown.push(i),
            }
        }
        let mut status = None;
        if !pairs.is_empty() {
            let answer = match self
                .call(
                    Method::Post,
                    super::encoder::ASSOCIATE_PATH,
                    Some(&json!({"inputs": pairs})),
                )
                .await
            {
                Ok(a) => a,
                Err(e) => {
                    return Sent {
                        status: None,
                        action: RetryAction::Retry {
                            after: None,
                            reason: e,
                        },
                    };
                }
            };
            status = Some(answer.status);
            if !(200..300).contains(&answer.status) {
                return Sent {
                    status,
                    action: classify(&answer, &[]),
                };
            }
        }
        Sent {
            status,
            action: if unknown.is_empty() {
                RetryAction::Success
            } else {
                RetryAction::RetryPart {
                    retry: unknown,
                    dead: Vec::new(),
                    reason: "the contact or the company is not in HubSpot yet".into(),
                }
            },
        }
    }

    /// GDPR-deletes the person's contacts (`POST /crm/v3/objects/contacts/gdpr-delete`): by email
    /// (`idProperty: email`; HubSpot also blocklists an email it does not know) and by HubSpot
    /// contact id when the profile holds one (`hubspot_id` identities).
    pub async fn erase(&self, subject: &Subject) -> Erasure {
        let mut bodies: Vec<Value> = subject
            .emails
            .iter()
            .map(|e| json!({"objectId": e, "idProperty": "email"}))
            .collect();
        bodies.extend(
            subject
                .external(&["hubspot_id", "hubspot_contact_id"])
                .into_iter()
                .map(|id| json!({ "objectId": id })),
        );
        if bodies.is_empty() {
            return Erasure::Done("no email or HubSpot id: no contact was ever sent".into());
        }
        let mut answers = Vec::with_capacity(bodies.len());
        for body in bodies {
            let request = Request {
                method: Method::Post,
                path: "/crm/v3/objects/contacts/gdpr-delete".into(),
                body: Some(body),
                covers: Vec::new(),
                label: "contact GDPR delete".into(),
            };
            let sent = self.send(&request).await;
            let stop = matches!(sent.action, RetryAction::Retry { .. });
            answers.push(sent);
            if stop {
                break;
            }
        }
        erasure::settle("contact GDPR delete", &answers, true)
    }

    /// Checks the credentials can mint a token.
    pub async fn health(&self) -> Result<(), String> {
        self.token()
            .await
            .map(|_| ())
            .map_err(|(_, a)| format!("{a:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    #[test]
    fn a_rate_limited_call_waits_for_the_window_and_multi_status_errors_dead_letter_their_inputs() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-hubspot-ratelimit-interval-milliseconds",
            "10000".parse().unwrap(),
        );
        let limited = Answer {
            status: 429,
            headers,
            body: r#"{"status":"error","message":"You have reached your ten_secondly_rolling limit.","errorType":"RATE_LIMIT"}"#.into(),
            elapsed: Duration::ZERO,
        };
        assert!(matches!(
            classify(&limited, &[]),
            RetryAction::Retry { after: Some(d), .. } if d == Duration::from_secs(10)
        ));
        let partial = Answer {
            status: 207,
            headers: HeaderMap::new(),
            body: r#"{"status":"COMPLETE","results":[{}],"errors":[{"status":"error","category":"VALIDATION_ERROR","message":"Property values were not valid","context":{"ids":["b@example.com"]}}]}"#.into(),
            elapsed: Duration::ZERO,
        };
        assert_eq!(
            classify(&partial, &["a@example.com".into(), "b@example.com".into()]),
            RetryAction::RetryPart {
                retry: vec![],
                dead: vec![(1, "VALIDATION_ERROR: Property values were not valid".into())],
                reason: String::new()
            }
        );
    }
}
