//! Webhook HTTP service: signs each body as `X-Touchpoint-Signature: v1=hex(HMAC-SHA256(secret,
//! "{ts}.{body}"))` with `X-Touchpoint-Timestamp` (the scheme the edge endpoint verifies), and sends
//! an `Idempotency-Key` derived from the events' ids so receivers can drop redelivered batches.

use super::config::WebhookConfig;
use crate::destinations::http;
use crate::destinations::{Request, RetryAction, Sent, sha256_hex};
use secrecy::ExposeSecret;
use serde_json::Value;

/// The service.
pub struct Service {
    config: WebhookConfig,
    client: reqwest::Client,
}

impl Service {
    /// A service for `config`.
    pub fn new(config: WebhookConfig, client: reqwest::Client) -> Service {
        Service { config, client }
    }

    /// Makes one call.
    pub async fn send(&self, request: &Request) -> Sent {
        let body = request
            .body
            .as_ref()
            .map(|b| serde_json::to_string(b).unwrap_or_default())
            .unwrap_or_default();
        let ts = chrono::Utc::now().timestamp();
        let signature = crate::ingest::edge::sign(
            self.config.secret.expose_secret().as_bytes(),
            ts,
            body.as_bytes(),
        );
        let ids: Vec<&str> = request
            .body
            .as_ref()
            .and_then(|b| b.get("events"))
            .and_then(Value::as_array)
            .map(|events| events.iter().filter_map(|e| e["id"].as_str()).collect())
            .unwrap_or_default();
        let builder = self
            .client
            .post(format!("{}{}", self.config.url, request.path))
            .header("content-type", "application/json")
            .header("X-Touchpoint-Timestamp", ts.to_string())
            .header("X-Touchpoint-Signature", signature)
            .header("Idempotency-Key", sha256_hex(&ids.join(",")))
            .body(body);
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
}
