//! GA4 HTTP service: posts to `/mp/collect` with the api_secret added here (never stored in the
//! outbox or the log), and the `/debug/mp/collect` validation call behind `touchpoint destinations
//! check ga4`.

use super::config::Ga4Config;
use crate::destinations::http;
use crate::destinations::{Request, RetryAction, Sent};
use secrecy::ExposeSecret;
use serde_json::Value;

/// The service.
pub struct Service {
    config: Ga4Config,
    client: reqwest::Client,
}

impl Service {
    /// A service for `config`.
    pub fn new(config: Ga4Config, client: reqwest::Client) -> Service {
        Service { config, client }
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
