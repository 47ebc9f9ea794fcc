//! Webhook settings: where to POST and the HMAC signing secret.

use crate::config::ConfigError;
use crate::destinations::config::{required, var};
use secrecy::SecretString;

/// Webhook destination settings.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Receiver URL (`TOUCHPOINT_WEBHOOK_URL`; enables the destination).
    pub url: String,
    /// HMAC-SHA256 signing secret (`TOUCHPOINT_WEBHOOK_SECRET`).
    pub secret: SecretString,
}

impl WebhookConfig {
    /// `None` unless `TOUCHPOINT_WEBHOOK_URL` is set.
    pub fn from_lookup(
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<WebhookConfig>, ConfigError> {
        let Some(url) = var(get, "TOUCHPOINT_WEBHOOK_URL") else {
            return Ok(None);
        };
        Ok(Some(WebhookConfig {
            url,
            secret: required(get, "TOUCHPOINT_WEBHOOK_SECRET", "TOUCHPOINT_WEBHOOK_URL")?.into(),
        }))
    }
}
