//! Resend HTTP service: Bearer API key, 2 requests / s, a missing contact on removal is success.

use super::config::ResendConfig;
use crate::destinations::erasure::{self, Erasure, Subject};
use crate::destinations::http;
use crate::destinations::ratelimit::TokenBucket;
use crate::destinations::salesforce::encoder::segment;
use crate::destinations::{Method, Request, RetryAction, Sent};
use secrecy::ExposeSecret;
use serde_json::Value;
use std::time::Duration;

/// The service.
pub struct Service {
    config: ResendConfig,
    client: reqwest::Client,
    bucket: TokenBucket,
}

impl Service {
    /// A service for `config`.
    pub fn new(config: ResendConfig, client: reqwest::Client) -> Service {
        let bucket = TokenBucket::new(config.requests_per_sec, Duration::from_secs(1));
        Service {
            config,
            client,
            bucket,
        }
    }

    /// Makes one call.
    pub async fn send(&self, request: &Request) -> Sent {
        self.bucket.acquire().await;
        let url = format!("{}{}", self.config.url, request.path);
        let mut builder = match request.method {
            Method::Delete => self.client.delete(url),
            Method::Get => self.client.get(url),
            Method::Patch => self.client.patch(url),
            Method::Post => self.client.post(url),
        }
        .bearer_auth(self.config.api_key.expose_secret());
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        match http::execute(builder).await {
            Ok(answer) => {
                if request.method == Method::Delete && answer.status == 404 {
                    return Sent {
                        status: Some(404),
                        action: RetryAction::Success,
                    };
                }
                let body = answer.json();
                let message = match body.get("message").and_then(Value::as_str) {
                    Some(m) => format!(
                        "{}: {m}",
                        body.get("name").and_then(Value::as_str).unwrap_or("error")
                    ),
                    None => http::truncate(&answer.body),
                };
                Sent {
                    status: Some(answer.status),
                    action: http::classify(&answer, message),
                }
            }
            Err(e) => Sent {
                status: None,
                action: RetryAction::Retry {
                    after: None,
                    reason: e,
                },
            },
        }
    }

    /// Removes the person's contacts (`DELETE /audiences/{audience_id}/contacts/{email}`) from
    /// every Resend audience Touchpoint syncs to; a contact that is not there counts as removed.
    pub async fn erase(&self, subject: &Subject) -> Erasure {
        let mut audiences: Vec<&String> = self.config.audiences.values().collect();
        audiences.sort();
        audiences.dedup();
        if audiences.is_empty() {
            return Erasure::NotSupported(
                "no Resend audience is configured (TOUCHPOINT_RESEND_AUDIENCES), so no contact was ever sent"
                    .into(),
            );
        }
        if subject.emails.is_empty() {
            return Erasure::Done("no email: no contact was ever sent".into());
        }
        let mut answers = Vec::new();
        for audience in audiences {
            for email in &subject.emails {
                let request = Request {
                    method: Method::Delete,
                    path: format!(
                        "/audiences/{}/contacts/{}",
                        segment(audience),
                        segment(email)
                    ),
                    body: None,
                    covers: Vec::new(),
                    label: "contact removal".into(),
                };
                let sent = self.send(&request).await;
                let stop = matches!(sent.action, RetryAction::Retry { .. });
                answers.push(sent);
                if stop {
                    return erasure::settle("contact removal", &answers, true);
                }
            }
        }
        erasure::settle("contact removal", &answers, true)
    }

    /// Checks the key by listing audiences.
    pub async fn health(&self) -> Result<(), String> {
        let answer = http::execute(
            self.client
                .get(format!("{}/audiences", self.config.url))
                .bearer_auth(self.config.api_key.expose_secret()),
        )
        .await?;
        if (200..300).contains(&answer.status) {
            Ok(())
        } else {
            Err(format!(
                "HTTP {}: {}",
                answer.status,
                http::truncate(&answer.body)
            ))
        }
    }
}
