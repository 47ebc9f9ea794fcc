//! GA4 HTTP service: posts to `/mp/collect` with the api_secret added here (never stored in the
//! outbox or the log), the `/debug/mp/collect` validation call behind `touchpoint destinations
//! check ga4`, and user deletions through the Analytics Admin API (OAuth refresh-token flow, the
//! access token cached until shortly before it expires).

use super::config::{Ga4Config, Ga4Deletion};
use super::encoder::user_client_id;
use crate::destinations::erasure::{self, Erasure, Subject};
use crate::destinations::http;
use crate::destinations::{Request, RetryAction, Sent};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The service.
pub struct Service {
    config: Ga4Config,
    client: reqwest::Client,
    token: Mutex<Option<(SecretString, Instant)>>,
}

/// A Google API error body's message (`{"error": {"code", "message", "status"}}`).
fn google_message(answer: &http::Answer) -> String {
    let body = answer.json();
    match body.pointer("/error/message").and_then(Value::as_str) {
        Some(m) => match body.pointer("/error/status").and_then(Value::as_str) {
            Some(status) => format!("{status}: {m}"),
            None => m.to_owned(),
        },
        None => http::truncate(&answer.body),
    }
}

impl Service {
    /// A service for `config`.
    pub fn new(config: Ga4Config, client: reqwest::Client) -> Service {
        Service {
            config,
            client,
            token: Mutex::new(None),
        }
    }

    async fn token(&self, d: &Ga4Deletion) -> Result<SecretString, Sent> {
        if let Some((t, until)) = self.token.lock().await.clone()
            && Instant::now() < until
        {
            return Ok(t);
        }
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", d.client_id.as_str()),
            ("client_secret", d.client_secret.expose_secret()),
            ("refresh_token", d.refresh_token.expose_secret()),
        ];
        let retry = |status, reason| Sent {
            status,
            action: RetryAction::Retry {
                after: None,
                reason,
            },
        };
        let answer = http::execute(self.client.post(&d.token_url).form(&form))
            .await
            .map_err(|e| retry(None, e))?;
        let body = answer.json();
        match body.get("access_token").and_then(Value::as_str) {
            Some(t) if answer.status == 200 => {
                let ttl = body
                    .get("expires_in")
                    .and_then(Value::as_u64)
                    .unwrap_or(3600);
                let token = SecretString::from(t.to_owned());
                let until = Instant::now() + Duration::from_secs(ttl.saturating_sub(60).max(1));
                *self.token.lock().await = Some((token.clone(), until));
                Ok(token)
            }
            _ => {
                // A credentials problem is fixable by an operator: retry with backoff.
                let why = format!(
                    "{} {}",
                    body.get("error").and_then(Value::as_str).unwrap_or(""),
                    body.get("error_description")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                );
                Err(retry(
                    Some(answer.status),
                    format!(
                        "HTTP {}: OAuth refresh failed: {}",
                        answer.status,
                        why.trim()
                    ),
                ))
            }
        }
    }

    /// Submits a user deletion (`POST {admin}/v1alpha/properties/{id}:submitUserDeletion`) for each
    /// userId and each client id the encoder may have used (the anonymousIds, and the hashed
    /// userId it falls back to). GA4 then deletes that user's data from the property.
    pub async fn erase(&self, subject: &Subject) -> Erasure {
        let Some(d) = &self.config.deletion else {
            return Erasure::NotSupported(
                "user deletion needs the Analytics Admin API: set TOUCHPOINT_GA4_PROPERTY_ID and                  TOUCHPOINT_GA4_CLIENT_ID / _CLIENT_SECRET / _REFRESH_TOKEN (the Measurement                  Protocol secret cannot delete)"
                    .into(),
            );
        };
        let mut bodies: Vec<Value> = subject
            .user_ids
            .iter()
            .map(|u| json!({ "userId": u }))
            .collect();
        let mut clients: Vec<String> = subject.anonymous_ids.clone();
        clients.extend(subject.user_ids.iter().map(|u| user_client_id(u)));
        clients.sort();
        clients.dedup();
        bodies.extend(clients.iter().map(|c| json!({ "clientId": c })));
        if bodies.is_empty() {
            return Erasure::Done("no user id or client id: nothing was ever sent".into());
        }
        let url = format!(
            "{}/v1alpha/properties/{}:submitUserDeletion",
            d.admin_url,
            crate::destinations::salesforce::encoder::segment(&d.property_id)
        );
        let mut answers = Vec::with_capacity(bodies.len());
        for body in bodies {
            let sent = match self.token(d).await {
                Err(sent) => sent,
                Ok(token) => {
                    let call = self
                        .client
                        .post(&url)
                        .bearer_auth(token.expose_secret())
                        .json(&body);
                    match http::execute(call).await {
                        Ok(answer) if answer.status == 401 => {
                            *self.token.lock().await = None;
                            Sent {
                                status: Some(401),
                                action: RetryAction::Retry {
                                    after: Some(Duration::ZERO),
                                    reason: "access token expired; refreshing".into(),
                                },
                            }
                        }
                        Ok(answer) => Sent {
                            status: Some(answer.status),
                            action: http::classify(&answer, google_message(&answer)),
                        },
                        Err(e) => Sent {
                            status: None,
                            action: RetryAction::Retry {
                                after: None,
                                reason: e,
                            },
                        },
                    }
                }
            };
            let stop = matches!(sent.action, RetryAction::Retry { .. });
            answers.push(sent);
            if stop {
                break;
            }
        }
        erasure::settle("user deletion", &answers, false)
    }

    fn url(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!(
            "{}{path}{sep}api_secret={}",
            self.config.url,
            self.config.api_secret.expose_secret()
        )
    }

    /// Makes one call.
    pub async fn send(&self, request: &Request) -> Sent {
        let mut builder = self.client.post(self.url(&request.path));
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        match http::execute(builder).await {
            Ok(answer) => Sent {
                status: Some(answer.status),
                action: http::classify(&answer, http::truncate(&answer.body)),
            },
            Err(e) => Sent {
                status: None,
                action: RetryAction::Retry {
                    after: None,
                    reason: e,
                },
            },
        }
    }

    /// Sends `body` to the validation endpoint and returns its `validationMessages`.
    pub async fn validate(&self, body: &Value) -> Result<Vec<Value>, String> {
        let path = format!(
            "/debug/mp/collect?measurement_id={}",
            self.config.measurement_id
        );
        let answer = http::execute(self.client.post(self.url(&path)).json(body)).await?;
        if !(200..300).contains(&answer.status) {
            return Err(format!(
                "HTTP {}: {}",
                answer.status,
                http::truncate(&answer.body)
            ));
        }
        Ok(answer
            .json()
            .get("validationMessages")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }
}
