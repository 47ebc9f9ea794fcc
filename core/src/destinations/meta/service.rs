//! Meta HTTP service: the access token goes in the query string here (never in the outbox or the
//! log); Graph API errors `{error:{message, code, is_transient}}` are classified (rate-limit codes
//! and transient errors retry, the rest are dead with Meta's message). The same classification
//! serves the Conversions API and the Custom Audience edges (`users`, `usersreplace`).

use super::config::MetaConfig;
use crate::destinations::http::{self, Answer};
use crate::destinations::{Method, Request, RetryAction, Sent};
use secrecy::ExposeSecret;
use serde_json::Value;
use std::time::Duration;

/// Graph API error codes meaning "slow down".
const THROTTLED: [i64; 5] = [4, 17, 32, 613, 80004];

/// Classifies a Conversions API answer.
pub fn classify(answer: &Answer) -> RetryAction {
    if (200..300).contains(&answer.status) {
        return RetryAction::Success;
    }
    let body = answer.json();
    let error = body.get("error").cloned().unwrap_or(Value::Null);
    let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
    let message = match error.get("message").and_then(Value::as_str) {
        Some(m) => format!("(#{code}) {m}"),
        None => http::truncate(&answer.body),
    };
    let transient = error.get("is_transient").and_then(Value::as_bool) == Some(true);
    if THROTTLED.contains(&code) {
        return RetryAction::Retry {
            after: http::retry_after(&answer.headers).or(Some(Duration::from_secs(60))),
            reason: message,
        };
    }
    if transient {
        return RetryAction::Retry {
            after: http::retry_after(&answer.headers),
            reason: message,
        };
    }
    http::classify(answer, message)
}

/// The service.
pub struct Service {
    config: MetaConfig,
    client: reqwest::Client,
}

impl Service {
    /// A service for `config`.
    pub fn new(config: MetaConfig, client: reqwest::Client) -> Service {
        Service { config, client }
    }

    /// Makes one call.
    pub async fn send(&self, request: &Request) -> Sent {
        let url = format!("{}{}", self.config.url, request.path);
        let builder = match request.method {
            Method::Get => self.client.get(url),
            Method::Post => self.client.post(url),
            Method::Patch => self.client.patch(url),
            Method::Delete => self.client.delete(url),
        };
        let mut builder =
            builder.query(&[("access_token", self.config.access_token.expose_secret())]);
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        match http::execute(builder).await {
            Ok(answer) => Sent {
                status: Some(answer.status),
                action: classify(&answer),
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

    /// Checks the token can read the dataset and every synced Custom Audience.
    pub async fn health(&self) -> Result<(), String> {
        let nodes = self
            .config
            .pixel_id
            .iter()
            .chain(self.config.custom_audiences.values());
        for node in nodes {
            let answer = http::execute(
                self.client
                    .get(format!(
                        "{}/{}/{node}",
                        self.config.url, self.config.api_version
                    ))
                    .query(&[
                        ("fields", "id"),
                        ("access_token", self.config.access_token.expose_secret()),
                    ]),
            )
            .await?;
            match classify(&answer) {
                RetryAction::Success => {}
                other => return Err(format!("{node}: {other:?}")),
            }
        }
        Ok(())
    }
}
