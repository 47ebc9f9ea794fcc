//! Resend HTTP service: Bearer API key, 2 requests / s, a missing contact on removal is success.

use super::config::ResendConfig;
use crate::destinations::http;
use crate::destinations::ratelimit::TokenBucket;
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
