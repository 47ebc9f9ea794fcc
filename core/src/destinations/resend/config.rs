//! Resend settings: which Touchpoint audiences sync to which Resend audience.

use crate::config::ConfigError;
use crate::destinations::config::{num, var};
use secrecy::SecretString;
use std::collections::BTreeMap;

/// Resend destination settings.
#[derive(Clone, Debug)]
pub struct ResendConfig {
    /// API base (`TOUCHPOINT_RESEND_URL`, `https://api.resend.com`).
    pub url: String,
    /// API key, sent as a Bearer token (`TOUCHPOINT_RESEND_API_KEY`; enables the destination).
    pub api_key: SecretString,
    /// Touchpoint audience id → Resend audience id (`TOUCHPOINT_RESEND_AUDIENCES`,
    /// `pql=78261eea-…,trial=…`); other audiences are not synced.
    pub audiences: BTreeMap<String, String>,
    /// Requests per second (`TOUCHPOINT_RESEND_REQUESTS_PER_SEC`, 2 — Resend's default limit).
    pub requests_per_sec: u64,
}

impl ResendConfig {
    /// `None` unless `TOUCHPOINT_RESEND_API_KEY` is set.
    pub fn from_lookup(
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<ResendConfig>, ConfigError> {
        let Some(key) = var(get, "TOUCHPOINT_RESEND_API_KEY") else {
            return Ok(None);
        };
        let mut audiences = BTreeMap::new();
        for pair in var(get, "TOUCHPOINT_RESEND_AUDIENCES")
            .unwrap_or_default()
            .split(',')
            .filter(|p| !p.trim().is_empty())
        {
            let (ours, theirs) = pair.split_once('=').ok_or_else(|| {
                ConfigError::new(
                    "TOUCHPOINT_RESEND_AUDIENCES",
                    format!("expected audience=resendAudienceId, got {pair:?}"),
                )
            })?;
            audiences.insert(ours.trim().to_owned(), theirs.trim().to_owned());
        }
        Ok(Some(ResendConfig {
            url: var(get, "TOUCHPOINT_RESEND_URL")
                .unwrap_or_else(|| "https://api.resend.com".into())
                .trim_end_matches('/')
                .to_owned(),
            api_key: key.into(),
            audiences,
            requests_per_sec: num(get, "TOUCHPOINT_RESEND_REQUESTS_PER_SEC", 2)?.max(1),
        }))
    }
}
