//! Webhook HTTP service: signs each body as `X-Touchpoint-Signature: v1=hex(HMAC-SHA256(secret,
//! "{ts}.{body}"))` with `X-Touchpoint-Timestamp` (the scheme the edge endpoint verifies), and sends
//! an `Idempotency-Key` derived from the events' ids so receivers can drop redelivered batches.

use super::config::WebhookConfig;
use crate::destinations::erasure::{self, Erasure, Subject};
use crate::destinations::http;
use crate::destinations::{Method, Request, RetryAction, Sent, sha256_hex};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

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

    /// Sends a signed `delete` event naming every identifier of the person, so the receiver can
    /// erase its own copies (`id` is `erase:{regulation}`, stable across retries).
    pub async fn erase(&self, subject: &Subject) -> Erasure {
        let request = Request {
            method: Method::Post,
            path: String::new(),
            body: Some(json!({"events": [delete_event(subject, chrono::Utc::now())]})),
            covers: Vec::new(),
            label: "delete event".into(),
        };
        let sent = self.send(&request).await;
        erasure::settle("delete event", &[sent], false)
    }
}

/// The `delete` event a receiver gets for an erasure request.
pub fn delete_event(subject: &Subject, now: chrono::DateTime<chrono::Utc>) -> Value {
    json!({
        "id": format!("erase:{}", subject.regulation),
        "type": "delete",
        "regulationId": subject.regulation,
        "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "profileId": subject.profile_id,
        "userId": subject.user_ids.first(),
        "email": subject.emails.first(),
        "userIds": subject.user_ids,
        "emails": subject.emails,
        "phones": subject.phones,
        "anonymousIds": subject.anonymous_ids,
        "externalIds": subject.external.iter()
            .map(|(kind, id)| json!({"type": kind, "id": id}))
            .collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delete_event_names_every_identifier_and_a_stable_id() {
        let subject = Subject::new(
            "r-1",
            &"p-1".into(),
            &[
                crate::identity::Identifier::new("email", "ada@example.com"),
                crate::identity::Identifier::new("user_id", "u-1"),
                crate::identity::Identifier::new("crm_id", "c-9"),
            ],
        );
        let e = delete_event(&subject, chrono::Utc::now());
        assert_eq!(e["id"], "erase:r-1");
        assert_eq!(e["type"], "delete");
        assert_eq!(e["userId"], "u-1");
        assert_eq!(e["emails"], json!(["ada@example.com"]));
        assert_eq!(e["externalIds"], json!([{"type": "crm_id", "id": "c-9"}]));
    }
}
